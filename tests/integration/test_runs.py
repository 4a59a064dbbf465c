"""Candidates (runs) through the real mlflow client: lifecycle, logging, inputs, nesting."""

from __future__ import annotations

import math
import time

import mlflow
import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from tests.conftest import api


def test_fluent_run_end_to_end(tracking_uri: str, experiment_id: str, client) -> None:
    with mlflow.start_run(experiment_id=experiment_id, run_name="first") as run:
        mlflow.log_param("alpha", 0.5)
        mlflow.log_params({"beta": "x", "gamma": 3})
        mlflow.log_metric("loss", 1.5)
        mlflow.log_metric("loss", 0.5, step=2)
        mlflow.log_metrics({"acc": 0.9, "f1": 0.8}, step=1)
        mlflow.set_tag("team", "a")
        mlflow.set_tags({"k1": "v1"})
    got = client.get_run(run.info.run_id)
    assert got.info.status == "FINISHED"
    assert got.info.end_time >= got.info.start_time
    assert got.info.run_name == "first"
    assert got.info.artifact_uri == f"mlflow-artifacts:/{experiment_id}/{run.info.run_id}/artifacts"
    assert got.data.params == {"alpha": "0.5", "beta": "x", "gamma": "3"}
    assert got.data.metrics == {"loss": 0.5, "acc": 0.9, "f1": 0.8}
    assert got.data.tags["team"] == "a"
    assert got.data.tags["k1"] == "v1"
    assert got.data.tags["mlflow.runName"] == "first"
    assert got.data.tags["mlflow.user"]


def test_generated_run_name(client, experiment_id: str) -> None:
    run = client.create_run(experiment_id)
    assert run.info.run_name
    assert client.get_run(run.info.run_id).data.tags["mlflow.runName"] == run.info.run_name


def test_latest_metric_is_highest_step_then_timestamp(client, experiment_id: str) -> None:
    run_id = client.create_run(experiment_id).info.run_id
    client.log_metric(run_id, "m", 5.0, timestamp=100, step=3)
    client.log_metric(run_id, "m", 7.0, timestamp=50, step=1)
    client.log_metric(run_id, "m", 6.0, timestamp=200, step=3)
    assert client.get_run(run_id).data.metrics["m"] == 6.0
    history = client.get_metric_history(run_id, "m")
    assert [(h.step, h.timestamp, h.value) for h in history] == [
        (1, 50, 7.0),
        (3, 100, 5.0),
        (3, 200, 6.0),
    ]


def test_nan_and_infinity_round_trip(client, experiment_id: str) -> None:
    run_id = client.create_run(experiment_id).info.run_id
    client.log_metric(run_id, "nan", float("nan"))
    client.log_metric(run_id, "pinf", float("inf"))
    client.log_metric(run_id, "ninf", float("-inf"))
    metrics = client.get_run(run_id).data.metrics
    assert math.isnan(metrics["nan"])
    assert metrics["pinf"] == math.inf
    assert metrics["ninf"] == -math.inf


def test_params_are_immutable(client, experiment_id: str) -> None:
    run_id = client.create_run(experiment_id).info.run_id
    client.log_param(run_id, "lr", "0.1")
    client.log_param(run_id, "lr", "0.1")
    with pytest.raises(MlflowException) as err:
        client.log_param(run_id, "lr", "0.2")
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    assert client.get_run(run_id).data.params == {"lr": "0.1"}


def test_long_values_are_truncated(client, experiment_id: str) -> None:
    run_id = client.create_run(experiment_id).info.run_id
    client.log_param(run_id, "long", "p" * 9000)
    client.set_tag(run_id, "long", "t" * 9000)
    data = client.get_run(run_id).data
    assert data.params["long"] == "p" * 6000
    assert data.tags["long"] == "t" * 8000


def test_log_batch_and_splitting(client, experiment_id: str) -> None:
    run_id = client.create_run(experiment_id).info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric("series", float(i), now, i) for i in range(2500)]
    params = [Param(f"p{i}", str(i)) for i in range(150)]
    tags = [RunTag(f"t{i}", str(i)) for i in range(120)]
    client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
    run = client.get_run(run_id)
    assert run.data.metrics["series"] == 2499.0
    assert len(run.data.params) == 150
    assert all(run.data.tags[f"t{i}"] == str(i) for i in range(120))
    assert len(client.get_metric_history(run_id, "series")) == 2500


def test_update_delete_restore(client, experiment_id: str) -> None:
    run_id = client.create_run(experiment_id).info.run_id
    client.update_run(run_id, status="KILLED", name="renamed")
    got = client.get_run(run_id)
    assert got.info.status == "KILLED"
    assert got.info.run_name == "renamed"
    assert got.data.tags["mlflow.runName"] == "renamed"
    client.delete_run(run_id)
    assert client.get_run(run_id).info.lifecycle_stage == "deleted"
    with pytest.raises(MlflowException) as err:
        client.log_metric(run_id, "x", 1.0)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "must be in the 'active' state" in err.value.message
    client.restore_run(run_id)
    client.log_metric(run_id, "x", 1.0)
    assert client.get_run(run_id).data.metrics == {"x": 1.0}


def test_set_terminated_and_delete_tag(client, experiment_id: str) -> None:
    run_id = client.create_run(experiment_id).info.run_id
    client.set_tag(run_id, "temp", "1")
    client.delete_tag(run_id, "temp")
    assert "temp" not in client.get_run(run_id).data.tags
    with pytest.raises(MlflowException) as err:
        client.delete_tag(run_id, "temp")
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    client.set_terminated(run_id, "FAILED")
    assert client.get_run(run_id).info.status == "FAILED"


def test_nested_runs(tracking_uri: str, experiment_id: str, client) -> None:
    with (
        mlflow.start_run(experiment_id=experiment_id) as parent,
        mlflow.start_run(experiment_id=experiment_id, nested=True) as child,
    ):
        mlflow.log_metric("inner", 1.0)
    kids = client.search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert [r.info.run_id for r in kids] == [child.info.run_id]


def test_log_inputs_datasets(tracking_uri: str, experiment_id: str, client) -> None:
    import pandas as pd

    frame = pd.DataFrame({"x": [1, 2, 3], "y": [0, 1, 0]})
    dataset = mlflow.data.from_pandas(frame, name="train_ds", targets="y")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_input(dataset, context="training")
        mlflow.log_input(dataset, context="training")
    inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert len(inputs) == 1
    assert inputs[0].dataset.name == "train_ds"
    assert inputs[0].dataset.digest == dataset.digest
    assert {t.key: t.value for t in inputs[0].tags}["mlflow.data.context"] == "training"
    found = client.search_runs(
        [experiment_id], "datasets.name = 'train_ds' AND datasets.context = 'training'"
    )
    assert [r.info.run_id for r in found] == [run.info.run_id]


def test_outputs_and_model_inputs(server, client, experiment_id: str) -> None:
    run_id = client.create_run(experiment_id).info.run_id
    out = api(
        server.url,
        "POST",
        "runs/outputs",
        json={"run_id": run_id, "models": [{"model_id": "m-abc", "step": 3}]},
    )
    assert out.status_code == 200
    inp = api(
        server.url,
        "POST",
        "runs/log-inputs",
        json={"run_id": run_id, "models": [{"model_id": "m-def"}]},
    )
    assert inp.status_code == 200
    got = api(server.url, "GET", "runs/get", params={"run_id": run_id}).json()["run"]
    assert got["outputs"] == {"model_outputs": [{"model_id": "m-abc", "step": 3}]}
    assert got["inputs"] == {"model_inputs": [{"model_id": "m-def"}]}


def test_run_uuid_alias_is_accepted(server, client, experiment_id: str) -> None:
    run_id = client.create_run(experiment_id).info.run_id
    response = api(server.url, "GET", "runs/get", params={"run_uuid": run_id})
    assert response.status_code == 200
    assert response.json()["run"]["info"]["run_uuid"] == run_id
    logged = api(
        server.url,
        "POST",
        "runs/log-metric",
        json={"run_uuid": run_id, "key": "k", "value": 2, "timestamp": 1},
    )
    assert logged.status_code == 200
    assert client.get_run(run_id).data.metrics == {"k": 2.0}


def test_metric_history_paging(server, client, experiment_id: str) -> None:
    run_id = client.create_run(experiment_id).info.run_id
    client.log_batch(run_id, metrics=[Metric("h", float(i), i, i) for i in range(7)])
    pages, token = [], None
    while True:
        params = {"run_id": run_id, "metric_key": "h", "max_results": 3}
        if token:
            params["page_token"] = token
        body = api(server.url, "GET", "metrics/get-history", params=params).json()
        pages.append([m["step"] for m in body["metrics"]])
        token = body.get("next_page_token")
        if not token:
            break
    assert pages == [[0, 1, 2], [3, 4, 5], [6]]


def test_history_bulk_interval_samples(server, client, experiment_id: str) -> None:
    runs = [client.create_run(experiment_id).info.run_id for _ in range(2)]
    for run_id in runs:
        client.log_batch(run_id, metrics=[Metric("b", float(i), i, i) for i in range(100)])
    params = {"run_ids": runs, "metric_key": "b", "max_results": 10}
    body = api(server.url, "GET", "metrics/get-history-bulk-interval", params=params).json()
    for run_id in runs:
        steps = [m["step"] for m in body["metrics"] if m["run_id"] == run_id]
        # MLflow's sample: every 100/10-th distinct step, and the last one
        assert steps == [*range(0, 100, 10), 99]
    ranged = api(
        server.url,
        "GET",
        "metrics/get-history-bulk-interval",
        params={**params, "start_step": 10, "end_step": 19},
    ).json()
    assert {m["step"] for m in ranged["metrics"]} == set(range(10, 20))


def test_metrics_linked_to_models_and_datasets(server, client, experiment_id: str) -> None:
    run_id = client.create_run(experiment_id).info.run_id
    metrics = [
        {"key": "acc", "value": 0.5, "timestamp": 1, "step": 0},
        {
            "key": "acc",
            "value": 0.7,
            "timestamp": 2,
            "step": 1,
            "model_id": "m-1",
            "dataset_name": "eval",
            "dataset_digest": "abc",
        },
    ]
    response = api(
        server.url, "POST", "runs/log-batch", json={"run_id": run_id, "metrics": metrics}
    )
    assert response.status_code == 200
    history = client.get_metric_history(run_id, "acc")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 0.7)]
    bad = api(
        server.url,
        "POST",
        "runs/log-batch",
        json={
            "run_id": run_id,
            "metrics": [{"key": "acc", "value": 1.0, "timestamp": 3, "step": 2, "model_id": 7}],
        },
    )
    assert bad.status_code == 400
    assert len(client.get_metric_history(run_id, "acc")) == 2
