"""Candidate search through the real mlflow client: filters, order_by, paging, view types."""

from __future__ import annotations

import time

import pytest
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException

from tests.conftest import api


@pytest.fixture
def seeded(client, experiment_id: str) -> dict[str, str]:
    """Five runs with known params, metrics and tags; returns run ids by name."""
    now = int(time.time() * 1000)
    ids = {}
    table = [
        ("r0", "0.1", 0.9, 0.2, "a"),
        ("r1", "0.5", 0.7, 0.4, "a"),
        ("r2", "0.5", 0.4, 0.9, "b"),
        ("r3", "1.0", float("nan"), 0.5, "b"),
        ("r4", "0.1", 0.8, None, None),
    ]
    for i, (name, alpha, acc, loss, team) in enumerate(table):
        run = client.create_run(experiment_id, run_name=name, start_time=now + i)
        metrics = [Metric("acc", acc, now, 1)]
        if loss is not None:
            metrics.append(Metric("loss", loss, now, 1))
        tags = [RunTag("team", team)] if team else []
        client.log_batch(
            run.info.run_id, metrics=metrics, params=[Param("alpha", alpha)], tags=tags
        )
        ids[name] = run.info.run_id
    client.set_terminated(ids["r1"], "FINISHED")
    return ids


def names(runs) -> list[str]:
    return [r.info.run_name for r in runs]


CASES = [
    ("metrics.acc > 0.5", ["r4", "r1", "r0"]),
    ("metrics.acc > 0.5 and params.alpha = '0.1'", ["r4", "r0"]),
    ("params.alpha != '0.1'", ["r3", "r2", "r1"]),
    ("params.alpha LIKE '0.%'", ["r4", "r2", "r1", "r0"]),
    ("tags.team = 'a'", ["r1", "r0"]),
    ("tags.team IS NULL", ["r4"]),
    ("tags.team IS NOT NULL AND metrics.loss >= 0.5", ["r3", "r2"]),
    ("attributes.status = 'FINISHED'", ["r1"]),
    ("attributes.run_name LIKE 'r%' AND metrics.loss < 0.3", ["r0"]),
    ("run_name ILIKE 'R2'", ["r2"]),
    ("tags.`mlflow.runName` = 'r3'", ["r3"]),
    ("metrics.acc > 0.75 OR tags.team = 'b'", ["r4", "r3", "r2", "r0"]),
    ("(params.alpha = '0.5' OR params.alpha = '1.0') AND metrics.loss > 0.45", ["r3", "r2"]),
    ("metrics.missing > 0", []),
]


@pytest.mark.parametrize(("flt", "expected"), CASES)
def test_filters(client, experiment_id: str, seeded, flt: str, expected: list[str]) -> None:
    assert names(client.search_runs([experiment_id], flt)) == expected


def test_run_id_in(client, experiment_id: str, seeded) -> None:
    wanted = [seeded["r1"], seeded["r3"]]
    flt = f"attributes.run_id IN ('{wanted[0]}', '{wanted[1]}', 'nope')"
    assert names(client.search_runs([experiment_id], flt)) == ["r3", "r1"]


def test_order_by_metric_nulls_and_nan_last(client, experiment_id: str, seeded) -> None:
    asc = client.search_runs([experiment_id], order_by=["metrics.loss ASC"])
    assert names(asc) == ["r0", "r1", "r3", "r2", "r4"]
    by_acc = client.search_runs([experiment_id], order_by=["metrics.acc DESC"])
    assert names(by_acc) == ["r0", "r4", "r1", "r2", "r3"]


def test_order_by_param_then_name(client, experiment_id: str, seeded) -> None:
    ordered = client.search_runs(
        [experiment_id], order_by=["params.alpha DESC", "attributes.run_name ASC"]
    )
    assert names(ordered) == ["r3", "r1", "r2", "r0", "r4"]


def test_default_order_is_start_time_desc(client, experiment_id: str, seeded) -> None:
    assert names(client.search_runs([experiment_id])) == ["r4", "r3", "r2", "r1", "r0"]


@pytest.mark.parametrize("order", [[], ["metrics.loss ASC"], ["params.alpha DESC", "tags.team"]])
def test_paging_visits_every_run_once(client, experiment_id: str, seeded, order) -> None:
    everything = names(client.search_runs([experiment_id], order_by=order))
    paged, token = [], None
    while True:
        page = client.search_runs([experiment_id], order_by=order, max_results=2, page_token=token)
        paged += names(page)
        token = page.token
        if not token:
            break
    assert paged == everything


def test_several_experiments_and_view_types(client, seeded, experiment_id: str) -> None:
    other = client.create_experiment(f"other-{experiment_id}")
    extra = client.create_run(other, run_name="x0")
    found = client.search_runs([experiment_id, other], "attributes.run_name LIKE '%0'")
    assert sorted(names(found)) == ["r0", "x0"]
    client.delete_run(extra.info.run_id)
    assert names(client.search_runs([other])) == []
    assert names(client.search_runs([other], run_view_type=ViewType.DELETED_ONLY)) == ["x0"]
    assert names(client.search_runs([other], run_view_type=ViewType.ALL)) == ["x0"]


@pytest.mark.parametrize(
    ("flt", "fragment"),
    [
        ("foo.bar = 1", "foo"),
        ("metrics.acc >> 1", ">"),
        ("params.alpha = 0.1", "quoted string"),
        ("metrics.acc = 'high'", "numeric"),
        ("attributes.nope = 'x'", "nope"),
        ("metrics.acc > 1 AND", "end of input"),
        ("(metrics.acc > 1", "')'"),
        ("params.alpha ~ 'x'", "~"),
    ],
)
def test_invalid_filters_name_the_token(
    client, experiment_id: str, flt: str, fragment: str
) -> None:
    with pytest.raises(MlflowException) as err:
        client.search_runs([experiment_id], flt)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    assert fragment in err.value.message


def test_bad_page_token_and_order_by(server, experiment_id: str) -> None:
    bad = api(
        server.url,
        "POST",
        "runs/search",
        json={"experiment_ids": [experiment_id], "page_token": "!!notbase64"},
    )
    assert bad.status_code == 400
    assert bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    dup = api(
        server.url,
        "POST",
        "runs/search",
        json={"experiment_ids": [experiment_id], "order_by": ["metrics.a", "metrics.a DESC"]},
    )
    assert dup.status_code == 400
    too_many = api(
        server.url,
        "POST",
        "runs/search",
        json={"experiment_ids": [experiment_id], "max_results": 50001},
    )
    assert too_many.status_code == 400


def test_get_search_with_repeated_query_keys(server, client, seeded, experiment_id: str) -> None:
    response = api(
        server.url,
        "GET",
        "runs/search",
        params=[
            ("experiment_ids", experiment_id),
            ("order_by", "params.alpha DESC"),
            ("order_by", "attributes.run_name"),
            ("max_results", "2"),
        ],
    )
    assert response.status_code == 200
    body = response.json()
    assert [r["info"]["run_name"] for r in body["runs"]] == ["r3", "r1"]
    assert body["next_page_token"]


def test_fluent_search_returns_a_frame(tracking_uri: str, seeded, experiment_id: str) -> None:
    import mlflow

    frame = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string="metrics.acc > 0.5",
        order_by=["metrics.acc DESC"],
    )
    assert list(frame["tags.mlflow.runName"]) == ["r0", "r4", "r1"]
    assert list(frame["params.alpha"]) == ["0.1", "0.1", "0.5"]
    every = mlflow.search_runs(search_all_experiments=True, filter_string="run_name = 'r2'")
    assert seeded["r2"] in set(every["run_id"])


def test_search_by_experiment_name(tracking_uri: str, client, seeded, experiment_id) -> None:
    import mlflow

    name = client.get_experiment(experiment_id).name
    frame = mlflow.search_runs(experiment_names=[name], output_format="list")
    assert sorted(r.info.run_name for r in frame) == ["r0", "r1", "r2", "r3", "r4"]
