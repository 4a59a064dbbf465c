"""Bad input gets MLflow's error code and status, never a 5xx, and changes nothing stored."""

from __future__ import annotations

import pytest
import requests

import modelyard
from tests.conftest import api


@pytest.fixture
def run_id(client, experiment_id: str) -> str:
    run_id = client.create_run(experiment_id).info.run_id
    client.log_param(run_id, "keep", "1")
    client.log_metric(run_id, "kept", 1.0, step=1)
    client.set_tag(run_id, "t", "v")
    return run_id


def snapshot(server_url: str, run_id: str) -> dict:
    run = api(server_url, "GET", "runs/get", params={"run_id": run_id}).json()["run"]
    history = api(
        server_url, "GET", "metrics/get-history", params={"run_id": run_id, "metric_key": "kept"}
    ).json()
    return {"run": run, "history": history}


def post_raw(
    server_url: str, path: str, data: bytes, content_type: str | None
) -> requests.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    return requests.post(
        f"{server_url}/api/2.0/mlflow/{path}", data=data, headers=headers, timeout=30
    )


def body_for(run_id: str, **extra: object) -> dict:
    return {"run_id": run_id, **extra}


BAD_JSON_REQUESTS = [
    # (path, json body builder, expected status, expected code)
    (
        "runs/log-metric",
        lambda r: body_for(r, key="m", value="abc", timestamp=1),
        400,
        "INVALID_PARAMETER_VALUE",
    ),
    ("runs/log-metric", lambda r: body_for(r, key="m", value=1.0), 400, "INVALID_PARAMETER_VALUE"),
    (
        "runs/log-metric",
        lambda r: body_for(r, key="m", value=1.0, timestamp="soon"),
        400,
        "INVALID_PARAMETER_VALUE",
    ),
    (
        "runs/log-metric",
        lambda r: body_for(r, key="m", value=1.0, timestamp=1, step=[1]),
        400,
        "INVALID_PARAMETER_VALUE",
    ),
    (
        "runs/log-metric",
        lambda r: body_for(r, key="../up", value=1.0, timestamp=1),
        400,
        "INVALID_PARAMETER_VALUE",
    ),
    (
        "runs/log-metric",
        lambda r: body_for(r, key="k" * 251, value=1.0, timestamp=1),
        400,
        "INVALID_PARAMETER_VALUE",
    ),
    (
        "runs/log-metric",
        lambda r: body_for(r, key="bad!", value=1.0, timestamp=1),
        400,
        "INVALID_PARAMETER_VALUE",
    ),
    (
        "runs/log-metric",
        lambda r: {"key": "m", "value": 1.0, "timestamp": 1},
        400,
        "INVALID_PARAMETER_VALUE",
    ),
    (
        "runs/log-metric",
        lambda r: body_for("f" * 32, key="m", value=1.0, timestamp=1),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    ),
    (
        "runs/log-parameter",
        lambda r: body_for(r, key="keep", value="2"),
        400,
        "INVALID_PARAMETER_VALUE",
    ),
    (
        "runs/log-parameter",
        lambda r: body_for(r, key={"a": 1}, value="2"),
        400,
        "INVALID_PARAMETER_VALUE",
    ),
    ("runs/set-tag", lambda r: body_for(r, key="", value="x"), 400, "INVALID_PARAMETER_VALUE"),
    (
        "runs/log-batch",
        lambda r: body_for(
            r,
            metrics=[
                {"key": "m", "value": float(i), "timestamp": 1, "step": i} for i in range(1001)
            ],
        ),
        400,
        "INVALID_PARAMETER_VALUE",
    ),
    (
        "runs/log-batch",
        lambda r: body_for(r, params=[{"key": f"p{i}", "value": "v"} for i in range(101)]),
        400,
        "INVALID_PARAMETER_VALUE",
    ),
    (
        "runs/log-batch",
        lambda r: body_for(r, tags=[{"key": f"t{i}", "value": "v"} for i in range(101)]),
        400,
        "INVALID_PARAMETER_VALUE",
    ),
    (
        "runs/log-batch",
        lambda r: body_for(r, params=[{"key": "d", "value": "1"}, {"key": "d", "value": "2"}]),
        400,
        "INVALID_PARAMETER_VALUE",
    ),
    (
        "runs/log-batch",
        lambda r: body_for(
            r,
            metrics=[{"key": "ok", "value": 1, "timestamp": 1}],
            params=[{"key": "keep", "value": "changed"}],
        ),
        400,
        "INVALID_PARAMETER_VALUE",
    ),
    ("runs/log-batch", lambda r: body_for(r, metrics="nope"), 400, "INVALID_PARAMETER_VALUE"),
    (
        "runs/log-batch",
        lambda r: body_for(r, metrics=[{"key": "m", "value": True, "timestamp": 1}]),
        400,
        "INVALID_PARAMETER_VALUE",
    ),
    (
        "runs/log-batch",
        lambda r: body_for(r, params=[{"key": "big", "value": "x" * 1_100_000}]),
        400,
        "INVALID_PARAMETER_VALUE",
    ),
    ("runs/update", lambda r: body_for(r, status="DONE"), 400, "INVALID_PARAMETER_VALUE"),
    ("runs/update", lambda r: body_for(r, end_time="yesterday"), 400, "INVALID_PARAMETER_VALUE"),
    ("runs/create", lambda r: {"experiment_id": "999999"}, 404, "RESOURCE_DOES_NOT_EXIST"),
    ("runs/create", lambda r: {"experiment_id": "x"}, 400, "INVALID_PARAMETER_VALUE"),
    (
        "runs/create",
        lambda r: {
            "experiment_id": "0",
            "run_name": "a",
            "tags": [{"key": "mlflow.runName", "value": "b"}],
        },
        400,
        "INVALID_PARAMETER_VALUE",
    ),
    (
        "runs/search",
        lambda r: {"experiment_ids": ["0"], "filter": "metrics.a >"},
        400,
        "INVALID_PARAMETER_VALUE",
    ),
    (
        "runs/search",
        lambda r: {"experiment_ids": ["0"], "run_view_type": "SOME"},
        400,
        "INVALID_PARAMETER_VALUE",
    ),
    (
        "runs/search",
        lambda r: {"experiment_ids": ["0"], "max_results": -1},
        400,
        "INVALID_PARAMETER_VALUE",
    ),
    ("experiments/create", lambda r: {"name": ""}, 400, "INVALID_PARAMETER_VALUE"),
    ("experiments/create", lambda r: {"name": "n" * 501}, 400, "INVALID_PARAMETER_VALUE"),
    ("experiments/create", lambda r: {"name": ["list"]}, 400, "INVALID_PARAMETER_VALUE"),
    (
        "experiments/set-experiment-tag",
        lambda r: {"experiment_id": "0", "key": "k", "value": "v" * 20001},
        400,
        "INVALID_PARAMETER_VALUE",
    ),
    (
        "experiments/update",
        lambda r: {"experiment_id": "0", "new_name": ""},
        400,
        "INVALID_PARAMETER_VALUE",
    ),
]


@pytest.mark.parametrize(("path", "build", "status", "code"), BAD_JSON_REQUESTS)
def test_bad_json_request(server, run_id: str, path: str, build, status: int, code: str) -> None:
    before = snapshot(server.url, run_id)
    response = api(server.url, "POST", path, json=build(run_id))
    assert response.status_code == status, response.text
    assert response.json()["error_code"] == code
    assert response.json()["message"]
    assert snapshot(server.url, run_id) == before


@pytest.mark.parametrize(
    ("data", "content_type", "code"),
    [
        (b"{not json", "application/json", "BAD_REQUEST"),
        (b"[1, 2]", "application/json", "BAD_REQUEST"),
        (b'{"run_id": "x"}', None, "BAD_REQUEST"),
        (b"\xff\xfe\x00", "application/json", "BAD_REQUEST"),
    ],
)
def test_malformed_bodies(
    server, run_id: str, data: bytes, content_type: str | None, code: str
) -> None:
    before = snapshot(server.url, run_id)
    response = post_raw(server.url, "runs/log-batch", data, content_type)
    assert response.status_code == 400
    assert response.json()["error_code"] == code
    assert snapshot(server.url, run_id) == before


def test_oversized_body_is_refused(server, run_id: str) -> None:
    before = snapshot(server.url, run_id)
    huge = b'{"run_id": "' + run_id.encode() + b'", "params": [], "pad": "' + b"x" * (17 << 20)
    response = post_raw(server.url, "runs/log-batch", huge + b'"}', "application/json")
    assert response.status_code == 400
    assert "exceeds the limit" in response.json()["message"]
    assert snapshot(server.url, run_id) == before


def test_numeric_strings_are_numbers(server, client, run_id: str) -> None:
    point = {"run_id": run_id, "key": "s", "value": "2.5", "timestamp": "7", "step": "3"}
    assert api(server.url, "POST", "runs/log-metric", json=point).status_code == 200
    history = client.get_metric_history(run_id, "s")
    assert [(m.value, m.timestamp, m.step) for m in history] == [(2.5, 7, 3)]


def test_unknown_route_and_wrong_method(server) -> None:
    missing = api(server.url, "GET", "nothing/here")
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    wrong = api(server.url, "GET", "runs/create")
    assert wrong.status_code == 405
    assert wrong.json()["error_code"] == "ENDPOINT_NOT_FOUND"


def test_unknown_run_reads(server) -> None:
    missing = api(server.url, "GET", "runs/get", params={"run_id": "0" * 32})
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    history = api(
        server.url, "GET", "metrics/get-history", params={"run_id": "0" * 32, "metric_key": "m"}
    )
    assert history.status_code == 404
    invalid = api(server.url, "GET", "runs/get", params={"run_id": "../etc"})
    assert invalid.status_code == 400


def test_server_info_and_health(server) -> None:
    info = requests.get(f"{server.url}/api/3.0/mlflow/server-info", timeout=10).json()
    assert info["multipart_uploads_enabled"] is False
    assert info["store_type"] == "SqlStore"
    assert requests.get(f"{server.url}/health", timeout=10).text == "OK"


def test_ajax_prefix_mirrors_the_api(server, run_id: str) -> None:
    api_answer = api(server.url, "GET", "runs/get", params={"run_id": run_id}).json()
    ajax = requests.get(
        f"{server.url}/ajax-api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=10
    )
    assert ajax.status_code == 200
    assert ajax.json() == api_answer
    info = requests.get(f"{server.url}/ajax-api/3.0/mlflow/server-info", timeout=10)
    assert info.json()["store_type"] == "SqlStore"
    assert requests.get(f"{server.url}/version", timeout=10).text == modelyard.__version__
