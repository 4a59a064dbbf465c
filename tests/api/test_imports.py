"""The import endpoints (/api/v1/imports) against a live server on SQLite and PostgreSQL:
each call says what it did and is idempotent, ids and numbers are kept, NaN and infinities
survive, and what would overwrite something else is a 409 that changes nothing."""

from __future__ import annotations

import base64
import math
import struct
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy

from tests.conftest import BACKENDS, Server, _drop_pg_database, _session_backend

T0 = 1_700_000_000_000


@pytest.fixture(scope="module", params=BACKENDS)
def import_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server of this module's own: imports keep the source's ids (987654 here), which the
    session's shared server must not hold, since other tests use such ids as unknown ones."""
    backend, pg_name = _session_backend(request.param, tmp_path_factory.mktemp("imports"))
    srv = Server(backend)
    yield srv
    srv.stop()
    if pg_name:
        _drop_pg_database(pg_name)


@pytest.fixture
def http(import_server: Server) -> httpx.Client:
    return httpx.Client(base_url=import_server.url, timeout=30)


def _experiment(http: httpx.Client, **extra: Any) -> str:
    body = {
        "name": f"imp-{uuid.uuid4().hex[:8]}",
        "creation_time": T0,
        "last_update_time": T0 + 5,
        "tags": {"team": "vision"},
        **extra,
    }
    answer = http.put("/api/v1/imports/experiments/987654", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "imported"
    return str(answer.json()["experiment_id"])


def _run(experiment_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "experiment_id": experiment_id,
        "name": "parent",
        "user_id": "alice",
        "status": "FINISHED",
        "start_time": T0,
        "end_time": T0 + 100,
        "params": {"lr": "0.1"},
        "tags": {"mlflow.runName": "parent", "stage": "train"},
        "inputs": [
            {
                "dataset": {
                    "name": "train",
                    "digest": "abc123",
                    "source_type": "s3",
                    "source": "s3://b/train.csv",
                },
                "tags": {"mlflow.data.context": "training"},
            }
        ],
        **extra,
    }


def test_experiments_and_runs_are_kept_and_repeat_as_unchanged(http: httpx.Client) -> None:
    name = f"imp-{uuid.uuid4().hex[:8]}"
    body = {"name": name, "creation_time": T0, "last_update_time": T0, "tags": {"a": "1"}}
    first = http.put("/api/v1/imports/experiments/5", json=body).json()
    assert first["outcome"] == "imported"
    assert http.put("/api/v1/imports/experiments/5", json=body).json() == {
        **first,
        "outcome": "unchanged",
    }
    changed = http.put("/api/v1/imports/experiments/5", json={**body, "tags": {"a": "2"}})
    assert changed.json()["outcome"] == "updated"
    found = http.get(
        "/api/2.0/mlflow/experiments/get", params={"experiment_id": first["experiment_id"]}
    ).json()["experiment"]
    assert found["name"] == name
    assert found["creation_time"] == T0

    run_id = uuid.uuid4().hex
    run = _run(first["experiment_id"], lifecycle_stage="deleted")
    assert http.put(f"/api/v1/imports/runs/{run_id}", json=run).json() == {"outcome": "imported"}
    assert http.put(f"/api/v1/imports/runs/{run_id}", json=run).json() == {"outcome": "unchanged"}
    got = http.get("/api/2.0/mlflow/runs/get", params={"run_id": run_id}).json()["run"]
    assert got["info"]["run_id"] == run_id
    assert got["info"]["lifecycle_stage"] == "deleted"
    assert got["info"]["start_time"] == T0
    assert got["info"]["end_time"] == T0 + 100
    assert got["info"]["user_id"] == "alice"
    assert {p["key"]: p["value"] for p in got["data"]["params"]} == {"lr": "0.1"}
    assert got["inputs"]["dataset_inputs"][0]["dataset"]["digest"] == "abc123"


def test_points_keep_nan_and_infinities_and_are_stored_once(http: httpx.Client) -> None:
    run_id = uuid.uuid4().hex
    experiment = _experiment(http)
    assert http.put(f"/api/v1/imports/runs/{run_id}", json=_run(experiment)).status_code == 200
    points = [
        {"key": "odd", "value": v, "timestamp": T0 + i, "step": i}
        for i, v in enumerate(["NaN", "Infinity", "-Infinity", 0.5, 2])
    ]
    path = f"/api/v1/imports/runs/{run_id}/metrics"
    assert http.post(path, json={"points": points}).json() == {"added": 5}
    assert http.post(path, json={"points": points}).json() == {"added": 0}
    history = http.get(
        "/api/2.0/mlflow/metrics/get-history", params={"run_id": run_id, "metric_key": "odd"}
    ).json()["metrics"]
    values = [float(m["value"]) for m in sorted(history, key=lambda m: m["step"])]
    assert math.isnan(values[0])
    assert values[1:] == [math.inf, -math.inf, 0.5, 2.0]


def test_what_would_overwrite_something_else_is_a_conflict(http: httpx.Client) -> None:
    run_id = uuid.uuid4().hex
    first, second = _experiment(http), _experiment(http)
    assert http.put(f"/api/v1/imports/runs/{run_id}", json=_run(first)).status_code == 200
    taken = http.put(f"/api/v1/imports/runs/{run_id}", json=_run(second))
    assert taken.status_code == 409, taken.text
    assert "is taken by another candidate" in taken.json()["error"]["message"]
    changed = http.put(f"/api/v1/imports/runs/{run_id}", json=_run(first, params={"lr": "9"}))
    assert changed.status_code == 409, changed.text
    assert changed.json()["error"]["code"] == "RESOURCE_CONFLICT"
    got = http.get("/api/2.0/mlflow/runs/get", params={"run_id": run_id}).json()["run"]
    assert got["info"]["experiment_id"] == first
    assert {p["key"]: p["value"] for p in got["data"]["params"]} == {"lr": "0.1"}
    missing = http.post(
        f"/api/v1/imports/runs/{uuid.uuid4().hex}/metrics",
        json={"points": [{"key": "x", "value": 1, "timestamp": T0}]},
    )
    assert missing.status_code == 404
    bad = http.post(
        f"/api/v1/imports/runs/{run_id}/metrics",
        json={"points": [{"key": "../x", "value": 1, "timestamp": T0}]},
    )
    assert bad.status_code == 400
    assert "'points.0.key'" in bad.json()["error"]["message"]


def test_versions_keep_their_numbers_and_the_counter_moves_past_them(
    http: httpx.Client,
) -> None:
    name = f"imp-model-{uuid.uuid4().hex[:8]}"
    experiment = _experiment(http)
    run_id = uuid.uuid4().hex
    assert http.put(f"/api/v1/imports/runs/{run_id}", json=_run(experiment)).status_code == 200
    model = {
        "description": "Doubles.",
        "creation_time": T0,
        "last_updated_time": T0,
        "tags": {"owner": "vision"},
    }
    assert http.put(f"/api/v1/imports/models/{name}", json=model).json()["outcome"] == "imported"
    assert http.put(f"/api/v1/imports/models/{name}", json=model).json()["outcome"] == "unchanged"
    version = {
        "source": f"runs:/{run_id}/model",
        "run_id": run_id,
        "stage": "Production",
        "description": "first",
        "creation_time": T0 + 1,
        "last_updated_time": T0 + 2,
    }
    one = http.put(f"/api/v1/imports/models/{name}/versions/1", json=version)
    assert one.json() == {"outcome": "imported", "semver": "1.0.0"}
    three = http.put(
        f"/api/v1/imports/models/{name}/versions/3",
        json={**version, "stage": "None", "tags": {"modelyard.semver": "2.0.0"}},
    )
    assert three.json() == {"outcome": "imported", "semver": "2.0.0"}
    again = http.put(f"/api/v1/imports/models/{name}/versions/1", json=version)
    assert again.json() == {"outcome": "unchanged", "semver": "1.0.0"}
    other = http.put(
        f"/api/v1/imports/models/{name}/versions/1", json={**version, "source": "runs:/x/y"}
    )
    assert other.status_code == 409, other.text
    got = http.get(
        "/api/2.0/mlflow/model-versions/get", params={"name": name, "version": "1"}
    ).json()["model_version"]
    assert got["current_stage"] == "Production"
    assert got["creation_timestamp"] == T0 + 1
    created = http.post(
        "/api/2.0/mlflow/model-versions/create",
        json={"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id},
    )
    assert created.status_code == 200, created.text
    assert created.json()["model_version"]["version"] == "4"


def _summarised_points(import_server: Server, run_id: str, key: str) -> int:
    """The points the chart summaries hold for a run's key (their finest blocks' counts)."""
    engine = sqlalchemy.create_engine(import_server.backend.url)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                sqlalchemy.text(
                    "SELECT COALESCE(SUM(b.points), 0) FROM metric_blocks b JOIN runs r "
                    'ON r.pk = b.run_pk WHERE r.id = :run AND b."key" = :key AND b.level = 4'
                ),
                {"run": run_id, "key": key},
            ).scalar()
    finally:
        engine.dispose()
    return int(found or 0)


def _series(key: str, points: list[tuple[int, int, float]]) -> dict[str, Any]:
    """A metric's points as the server takes them packed: 24 bytes a point in base64."""
    raw = b"".join(struct.pack("<qqd", *point) for point in points)
    return {"key": key, "packed": base64.b64encode(raw).decode()}


def test_series_keep_every_value_and_fill_the_chart_summaries_once(
    http: httpx.Client, import_server: Server
) -> None:
    run_id = uuid.uuid4().hex
    experiment = _experiment(http)
    assert http.put(f"/api/v1/imports/runs/{run_id}", json=_run(experiment)).status_code == 200
    values = [0.1 * i for i in range(300)]
    values[3:8] = [math.nan, math.inf, -math.inf, 5e-324, 1e308]
    points = [(step, T0 + step, value) for step, value in enumerate(values)]
    points[8] = (2**62 + 1, -(2**63), 0.1 + 0.2)  # every bit of a step, a time and a value
    path = f"/api/v1/imports/runs/{run_id}/metric-series"
    first = http.post(path, json={"series": [_series("loss", points)]})
    assert first.status_code == 200, first.text
    assert first.json() == {"added": 300}
    assert _summarised_points(import_server, run_id, "loss") == 297
    # a second import, and one resumed halfway with a point of its own, add each point once
    assert http.post(path, json={"series": [_series("loss", points)]}).json() == {"added": 0}
    more = [*points[150:], (300, T0 + 300, 1.5)]
    assert http.post(path, json={"series": [_series("loss", more)]}).json() == {"added": 1}
    assert _summarised_points(import_server, run_id, "loss") == 298
    history = http.get(
        "/api/2.0/mlflow/metrics/get-history", params={"run_id": run_id, "metric_key": "loss"}
    ).json()["metrics"]
    got = {(m["step"], m["timestamp"]): float(m["value"]) for m in history}
    assert len(got) == 301
    assert math.isnan(got.pop((3, T0 + 3)))
    assert got == {(s, t): v for s, t, v in more[-1:] + points if s != 3}
    run = http.get("/api/2.0/mlflow/runs/get", params={"run_id": run_id}).json()["run"]
    assert run["data"]["metrics"] == [
        {"key": "loss", "value": 0.1 + 0.2, "timestamp": -(2**63), "step": 2**62 + 1}
    ]
    # the points of the other import call count in the summaries too
    old = f"/api/v1/imports/runs/{run_id}/metrics"
    point = {"key": "acc", "value": 0.5, "timestamp": T0, "step": 1}
    assert http.post(old, json={"points": [point]}).json() == {"added": 1}
    assert http.post(old, json={"points": [point]}).json() == {"added": 0}
    assert _summarised_points(import_server, run_id, "acc") == 1


def test_series_that_are_not_packed_points_are_refused(http: httpx.Client) -> None:
    run_id = uuid.uuid4().hex
    experiment = _experiment(http)
    assert http.put(f"/api/v1/imports/runs/{run_id}", json=_run(experiment)).status_code == 200
    path = f"/api/v1/imports/runs/{run_id}/metric-series"
    good = _series("x", [(0, T0, 1.0), (1, T0 + 1, 2.0)])["packed"]

    def refused(series: dict[str, Any]) -> str:
        answer = http.post(path, json={"series": [{"key": "x", **series}]})
        assert answer.status_code == 400, answer.text
        return str(answer.json()["error"]["message"])

    for bad in (good[:-1], good[:-1] + "=", good[:-4] + "AA==", good[:-1] + "*", 5):
        assert "series.0.packed" in refused({"packed": bad}), bad
    assert "24 bytes a point" in refused({"packed": good[:-2]})
    assert "Missing value for required parameter 'series.0.packed'" in refused({})
    assert "Unknown field 'series.0.steps'" in refused({"packed": good, "steps": [1]})
    assert "'series.0.key'" in refused({"packed": good, "key": "../x"})
    history = http.get(
        "/api/2.0/mlflow/metrics/get-history", params={"run_id": run_id, "metric_key": "x"}
    ).json()
    assert history.get("metrics", []) == []
    assert http.post(path, json={"series": [{"key": "x", "packed": good}]}).json() == {"added": 2}


def test_runs_come_many_a_call_and_one_refused_leaves_the_others(http: httpx.Client) -> None:
    first, second = _experiment(http), _experiment(http)
    taken = uuid.uuid4().hex
    assert http.put(f"/api/v1/imports/runs/{taken}", json=_run(first)).status_code == 200
    ids = [uuid.uuid4().hex for _ in range(3)]
    series = _series("acc", [(0, T0, 0.5), (1, T0 + 1, math.nan)])
    runs = [
        {**_run(second), "run_id": ids[0], "metrics": [series]},
        {**_run(second), "run_id": taken, "metrics": [series]},
        {**_run(second, params={"lr": "0.2"}), "run_id": ids[1]},
        {**_run("999999"), "run_id": ids[2], "metrics": [series]},
    ]
    answer = http.post("/api/v1/imports/runs", json={"runs": runs})
    assert answer.status_code == 200, answer.text
    results = answer.json()["runs"]
    assert [r["run_id"] for r in results] == [ids[0], taken, ids[1], ids[2]]
    assert results[0] == {"run_id": ids[0], "outcome": "imported", "added": 2}
    assert results[1]["outcome"] is None
    assert results[1]["error"]["code"] == "RESOURCE_ALREADY_EXISTS"
    assert "is taken by another candidate" in results[1]["error"]["message"]
    assert results[2] == {"run_id": ids[1], "outcome": "imported", "added": 0}
    assert results[3]["error"]["code"] == "RESOURCE_DOES_NOT_EXIST"
    assert http.get("/api/2.0/mlflow/runs/get", params={"run_id": ids[2]}).status_code == 404
    kept = http.get("/api/2.0/mlflow/runs/get", params={"run_id": taken}).json()["run"]
    assert kept["info"]["experiment_id"] == first
    assert kept["data"].get("metrics", []) == []
    got = http.get("/api/2.0/mlflow/runs/get", params={"run_id": ids[0]}).json()["run"]
    assert got["info"]["experiment_id"] == second
    assert {p["key"]: p["value"] for p in got["data"]["params"]} == {"lr": "0.1"}
    history = http.get(
        "/api/2.0/mlflow/metrics/get-history", params={"run_id": ids[0], "metric_key": "acc"}
    ).json()["metrics"]
    assert sorted(m["step"] for m in history) == [0, 1]
    again = http.post("/api/v1/imports/runs", json={"runs": [runs[0], runs[2]]}).json()["runs"]
    assert again == [
        {"run_id": ids[0], "outcome": "unchanged", "added": 0},
        {"run_id": ids[1], "outcome": "unchanged", "added": 0},
    ]
    changed = {**runs[2], "params": {"lr": "0.3"}}
    refused = http.post("/api/v1/imports/runs", json={"runs": [changed]}).json()["runs"][0]
    assert refused["error"]["code"] == "RESOURCE_CONFLICT"
    assert http.post("/api/v1/imports/runs", json={"runs": []}).status_code == 400
