"""Requests are checked before anything is looked up, with MLflow's codes and in MLflow's
words (values quoted as JSON: strings in double quotes, numbers bare), as MLflow's own REST
tests expect them."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.conftest import api

UNKNOWN_RUN = "f" * 32


def refused(server_url: str, path: str, body: dict[str, Any]) -> str:
    response = api(server_url, "POST", path, json=body)
    assert response.status_code == 400, (path, body, response.text)
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE", response.text
    return response.json()["message"]


@pytest.fixture
def run_id(client, experiment_id: str) -> str:  # type: ignore[no-untyped-def]
    return client.create_run(experiment_id).info.run_id


@pytest.mark.parametrize("path", ["runs/log-metric", "runs/log-parameter", "runs/set-tag"])
def test_a_run_id_that_is_not_a_string_is_a_bad_request(server, path: str) -> None:
    body = {"run_id": 31, "key": "k", "value": "1", "timestamp": 59, "step": 26}
    if path == "runs/log-metric":
        body["value"] = 41
    message = refused(server.url, path, body)
    assert "Invalid value 31 for parameter 'run_id' supplied" in message


@pytest.mark.parametrize("run", ["mine", UNKNOWN_RUN])
def test_log_metric_fields(server, run_id: str, run: str) -> None:
    """Field errors win over an unknown run: nothing is looked up before the checks."""
    target = run_id if run == "mine" else run
    base = {"run_id": target, "key": "foo", "value": 31, "timestamp": 59, "step": 41}
    cases = [
        ({"key": 31}, "Invalid value 31 for parameter 'key' supplied"),
        ({"step": "foo"}, "Invalid value \"foo\" for parameter 'step' supplied"),
        ({"timestamp": "foo"}, "Invalid value \"foo\" for parameter 'timestamp' supplied"),
        ({"value": "abc"}, "Invalid value \"abc\" for parameter 'value' supplied"),
        ({"value": [1]}, "Invalid value [1] for parameter 'value' supplied"),
        ({"run_id": None}, "Missing value for required parameter 'run_id'"),
        ({"key": None}, "Missing value for required parameter 'key'"),
        ({"timestamp": None}, "Missing value for required parameter 'timestamp'"),
    ]
    for change, expected in cases:
        assert expected in refused(server.url, "runs/log-metric", {**base, **change}), change


def test_log_param_and_set_tag_fields(server, run_id: str) -> None:
    message = refused(server.url, "runs/log-parameter", {"run_id": run_id, "key": 31, "value": 41})
    assert "Invalid value 31 for parameter 'key' supplied" in message
    message = refused(server.url, "runs/set-tag", {"run_id": run_id, "key": "t", "value": 41})
    assert "Invalid value 41 for parameter 'value' supplied" in message
    message = refused(server.url, "runs/set-tag", {"run_id": run_id, "value": "v"})
    assert "Missing value for required parameter 'key'" in message
    message = refused(server.url, "runs/log-parameter", {"run_id": run_id, "key": "../x"})
    assert "Invalid value \"../x\" for parameter 'key' supplied: Names may be treated" in message
    body = {"run_id": run_id, "key": "bad!", "value": 1, "timestamp": 1}
    message = refused(server.url, "runs/log-metric", body)
    assert "Invalid value \"bad!\" for parameter 'name' supplied: Names may only" in message
    assert api(
        server.url, "POST", "runs/set-tag", json={"run_uuid": run_id, "key": "k", "value": "v"}
    ).ok


def test_experiment_create_fields(server) -> None:
    message = refused(server.url, "experiments/create", {"name": 123})
    assert "Invalid value 123 for parameter 'name'" in message
    message = refused(server.url, "experiments/create", {})
    assert "Missing value for required parameter 'name'." in message
    body = {"name": "experiment name", "artifact_location": 9.0}
    message = refused(server.url, "experiments/create", body)
    assert "Invalid value 9.0 for parameter 'artifact_location'" in message
    message = refused(server.url, "experiments/create", {"name": "x", "tags": "5"})
    assert "Invalid value \"5\" for parameter 'tags'" in message


def test_log_batch_fields(server, client, run_id: str) -> None:  # type: ignore[no-untyped-def]
    for field in ("metrics", "params", "tags"):
        message = refused(server.url, "runs/log-batch", {"run_id": run_id, field: "foo"})
        assert f"Invalid value \"foo\" for parameter '{field}' supplied" in message
    no_time = {"run_id": run_id, "metrics": [{"key": "mae", "value": 2.5}]}
    message = refused(server.url, "runs/log-batch", no_time)
    assert "Missing value for required parameter 'metrics[0].timestamp'" in message
    second = {
        "run_id": UNKNOWN_RUN,
        "metrics": [{"key": "a", "value": 1, "timestamp": 1}, {"value": 1, "timestamp": 1}],
    }
    message = refused(server.url, "runs/log-batch", second)
    assert "Missing value for required parameter 'metrics[1].key'" in message
    message = refused(server.url, "runs/log-batch", {"run_id": run_id, "params": [{"value": "v"}]})
    assert "Missing value for required parameter 'params[0].key'" in message
    assert client.get_run(run_id).data.metrics == {}
    ok = {"run_id": run_id, "metrics": [{"key": "mae", "value": 2.5, "timestamp": 123456789}]}
    assert api(server.url, "POST", "runs/log-batch", json=ok).status_code == 200
    assert client.get_run(run_id).data.metrics == {"mae": 2.5}


def test_search_max_results_is_quoted(client, experiment_id: str) -> None:  # type: ignore[no-untyped-def]
    from mlflow.exceptions import MlflowException

    with pytest.raises(
        MlflowException, match="Invalid value 123456789 for parameter 'max_results'"
    ):
        client.search_runs([experiment_id], max_results=123456789)


BULK_INTERVAL = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"


def test_bulk_interval_checks(server) -> None:
    cases = [
        ({"metric_key": "key"}, "Missing value for required parameter 'run_ids'."),
        (
            {"run_ids": [f"id_{i}" for i in range(1000)], "metric_key": "key"},
            "GetMetricHistoryBulkInterval request must specify at most 100 run_ids.",
        ),
        (
            {"run_ids": ["123"], "metric_key": "key", "max_results": 0},
            "max_results must be between 1 and 2500",
        ),
        (
            {"run_ids": ["123"], "metric_key": ""},
            "Missing value for required parameter 'metric_key'",
        ),
        (
            {"run_ids": ["123"], "max_results": 5},
            "Missing value for required parameter 'metric_key'",
        ),
        (
            {"run_ids": ["123"], "metric_key": "key", "start_step": 1, "end_step": 0},
            "end_step must be greater than start_step. ",
        ),
        (
            {"run_ids": ["123"], "metric_key": "key", "start_step": 1},
            "If either start step or end step are specified, both must be specified.",
        ),
    ]
    for params, expected in cases:
        response = requests.get(server.url + BULK_INTERVAL, params=params, timeout=30)
        assert response.status_code == 400, params
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert expected in response.json()["message"], params


def test_bulk_interval_samples_steps_as_mlflow(server, client, experiment_id: str) -> None:  # type: ignore[no-untyped-def]
    def points(**params: Any) -> list[dict[str, Any]]:
        response = requests.get(server.url + BULK_INTERVAL, params=params, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["metrics"]

    def expected(run: str, steps: list[int], timestamps: tuple[int, ...] = (1,)) -> list[dict]:
        return [
            {"key": "metricA", "value": 10.0, "timestamp": t, "step": s, "run_id": run}
            for s in steps
            for t in timestamps
        ]

    first = client.create_run(experiment_id).info.run_id
    for i in range(10):
        client.log_metric(first, "metricA", 10.0, timestamp=1, step=i)
    got = points(run_ids=[first], metric_key="metricA", max_results=5)
    assert got == expected(first, [0, 2, 4, 6, 8, 9])
    got = points(run_ids=[first], metric_key="metricA", start_step=0, end_step=4, max_results=5)
    assert got == expected(first, [0, 1, 2, 3, 4])
    second = client.create_run(experiment_id).info.run_id
    for i in range(20):
        client.log_metric(second, "metricA", 10.0, timestamp=1, step=i)
    # the sample is taken over the steps of all runs; each run's first and last step are kept
    got = points(run_ids=[first, second], metric_key="metricA", max_results=5)
    assert got == expected(first, [0, 4, 8, 9]) + expected(second, [0, 4, 8, 9, 12, 16, 19])
    for i in range(10):
        client.log_metric(first, "metricA", 10.0, timestamp=2, step=i)
    got = points(run_ids=[first], metric_key="metricA", max_results=5)
    assert got == expected(first, [0, 2, 4, 6, 8, 9], (1, 2))
    # without a range, negative steps are left out, as by MLflow's server
    client.log_metric(first, "metricA", 10.0, timestamp=1, step=-3)
    assert [p["step"] for p in points(run_ids=[first], metric_key="metricA", max_results=2500)] == [
        s for s in range(10) for _ in (1, 2)
    ]


BULK = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"


def test_history_bulk_checks(server) -> None:
    cases = [
        ({"metric_key": "key"}, "GetMetricHistoryBulk request must specify at least one run_id"),
        (
            {"run_id": [f"id_{i}" for i in range(1000)], "metric_key": "key"},
            "GetMetricHistoryBulk request cannot specify more than",
        ),
        ({"run_id": ["123"]}, "GetMetricHistoryBulk request must specify a metric_key"),
    ]
    for params, expected in cases:
        response = requests.get(server.url + BULK, params=params, timeout=30)
        assert response.status_code == 400, params
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert expected in response.json()["message"]
    assert (
        requests.get(
            server.url + "/api/2.0/mlflow/metrics/get-history-bulk", timeout=30
        ).status_code
        == 404
    )


def test_history_bulk_answers_whole_histories(server, client, experiment_id: str) -> None:  # type: ignore[no-untyped-def]
    history = [
        {"key": "metricA", "timestamp": 1, "step": 2, "value": 10.0},
        {"key": "metricA", "timestamp": 1, "step": 3, "value": 11.0},
        {"key": "metricA", "timestamp": 1, "step": 3, "value": 12.0},
        {"key": "metricA", "timestamp": 2, "step": 3, "value": 12.0},
    ]
    runs = sorted(client.create_run(experiment_id).info.run_id for _ in range(2))
    for offset, run in enumerate(runs):
        for point in history:
            client.log_metric(run, **{**point, "value": point["value"] + offset})

    def bulk(**params: Any) -> list[dict[str, Any]]:
        response = requests.get(server.url + BULK, params=params, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["metrics"]

    mine = [{**p, "run_id": runs[0]} for p in history]
    theirs = [{**p, "run_id": runs[1], "value": p["value"] + 1} for p in history]
    assert bulk(run_id=[runs[0]], metric_key="metricA") == mine
    assert bulk(run_id=[runs[1], runs[0]], metric_key="metricA") == mine + theirs
    assert bulk(run_id=runs, metric_key="metricA", max_results=2) == mine[:2]
    assert bulk(run_id=runs, metric_key="other") == []
