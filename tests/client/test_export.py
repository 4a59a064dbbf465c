"""``modelyard export mlflow``: a project filled by the stock MLflow client, exported to a fresh
real ``mlflow server`` (SQLite, proxied artifacts), then read back through the stock client
from both servers and compared, run by run through the mapping file."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.client.conftest import Yard, one_line_error
from tests.conftest import free_port

MAX = sys.float_info.max  # MLflow's SQL store keeps ±inf as ±max float
HISTORY = 2500  # more points than one log-batch holds


class MlflowServer:
    """The reference server: ``mlflow server`` on SQLite, serving artifacts from a folder."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "mlflow-server.log"
        executable = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        self.proc = subprocess.Popen(
            [
                executable,
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--backend-store-uri",
                f"sqlite:///{folder / 'mlflow.db'}",
                "--artifacts-destination",
                str(folder / "mlartifacts"),
                "--serve-artifacts",
                "--workers",
                "1",
            ],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {self.log.read_text()}")
            try:
                if requests.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        self.stop()  # with every process it started
        raise RuntimeError(f"mlflow server did not start: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:  # its job workers can outlive the signal
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=15)


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[MlflowServer]:
    folder = tmp_path / "mlflow"
    folder.mkdir()
    server = MlflowServer(folder)
    yield server
    server.stop()


def _client(uri: str, token: str | None, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    import mlflow
    from mlflow.tracking import MlflowClient

    if token:
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    else:
        monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # set_registry_uri exports MLFLOW_REGISTRY_URI: set it here first so that it is undone
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(uri, registry_uri=uri)


@pytest.fixture(autouse=True)
def _no_uri_left_behind(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """MLflow's URIs are process-wide: the tests after these must not talk to their servers
    (monkeypatch, torn down after this, then restores the environment)."""
    yield
    import mlflow

    mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


def _fill(yard: Yard, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """The source project, written by the stock client."""
    import mlflow
    import pandas as pd

    class Doubler(mlflow.pyfunc.PythonModel):  # type: ignore[misc, name-defined]
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            return model_input * 2

    client = _client(yard.uri, yard.admin, monkeypatch)
    tag = uuid.uuid4().hex[:8]
    experiment = client.create_experiment(f"export-{tag}", tags={"team": "vision"})
    mlflow.set_experiment(experiment_id=experiment)
    files = tmp_path / "files"
    (files / "plots" / "deep").mkdir(parents=True)
    (files / "notes.txt").write_text("hello\n")
    (files / "plots" / "deep" / "weights.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    with mlflow.start_run(run_name="parent") as parent:
        mlflow.log_params({"lr": "0.01", "layers": "3"})
        mlflow.set_tags({"stage": "train", "owner": "ana"})
        mlflow.log_input(mlflow.data.from_pandas(frame, name="train"), context="training")
        history = [
            mlflow.entities.Metric("loss", 1.0 / (step + 1), 1_700_000_000_000 + step, step)
            for step in range(HISTORY)
        ]
        history[10] = mlflow.entities.Metric("loss", math.nan, 1_700_000_000_010, 10)
        history[11] = mlflow.entities.Metric("loss", math.inf, 1_700_000_000_011, 11)
        history[12] = mlflow.entities.Metric("loss", -math.inf, 1_700_000_000_012, 12)
        client.log_batch(parent.info.run_id, metrics=history)
        mlflow.log_metric("acc", 0.5, step=0)
        mlflow.log_metric("acc", 0.75, step=1)
        mlflow.log_artifacts(str(files))
        model_info = mlflow.pyfunc.log_model(
            name="model", python_model=Doubler(), pip_requirements=["pandas"]
        )
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("child_metric", 3.0)
        with mlflow.start_run(run_name="failed child", nested=True) as failed:
            mlflow.log_param("p", "1")
    client.set_terminated(failed.info.run_id, "FAILED")
    doomed = client.create_run(experiment, run_name="doomed")
    client.log_metric(doomed.info.run_id, "m", 1.0)
    client.set_terminated(doomed.info.run_id)
    client.delete_run(doomed.info.run_id)
    gone = client.create_experiment(f"gone-{tag}")
    lost = client.create_run(gone, run_name="in a deleted experiment")
    client.set_terminated(lost.info.run_id, "KILLED")
    client.delete_experiment(gone)

    name = f"churn-{tag}"
    client.create_registered_model(name, tags={"domain": "churn"}, description="predicts churn")
    for _ in range(3):
        client.create_model_version(
            name,
            model_info.model_uri,
            run_id=parent.info.run_id,
            model_id=model_info.model_id,
            description="a version",
        )
    client.delete_model_version(name, "2")
    client.set_model_version_tag(name, "3", "validated", "yes")
    client.transition_model_version_stage(name, "1", "Production")
    client.set_registered_model_alias(name, "champion", "3")
    return {
        "experiments": [experiment, gone],
        "runs": [parent.info.run_id, child.info.run_id, failed.info.run_id, doomed.info.run_id],
        "model_id": model_info.model_id,
        "registered": name,
    }


def _export(
    yard: Yard,
    target: str,
    mapping: Path,
    *extra: str,
    settings: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MODELYARD_"))}
    env.update(settings or {"MODELYARD_URL": yard.uri, "MODELYARD_TOKEN": yard.admin})
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "modelyard_client",
            "export",
            "mlflow",
            "--to",
            target,
            "--mapping",
            str(mapping),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        check=False,
    )


def _points(client: Any, run_id: str, key: str) -> list[tuple[int, int, float]]:
    out = []
    for m in client.get_metric_history(run_id, key):
        value = m.value
        if math.isinf(value):
            value = math.copysign(MAX, value)
        out.append((m.step, m.timestamp, "nan" if math.isnan(value) else value))
    return sorted(out, key=repr)


def later_point_time(client: Any, run: Any) -> int:
    return int(client.get_metric_history(run.info.run_id, "late")[0].timestamp)


def _files(client: Any, run_id: str, folder: Path, root: str = "") -> dict[str, bytes]:
    local = client.download_artifacts(run_id, root, str(folder))
    base = Path(local)
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*") if p.is_file()}


def _run_view(client: Any, run_id: str, ids: dict[str, str]) -> dict[str, Any]:
    run = client.get_run(run_id)
    tags = dict(run.data.tags)
    if "mlflow.parentRunId" in tags:
        tags["mlflow.parentRunId"] = ids.get(tags["mlflow.parentRunId"], "?")
    return {
        "name": run.info.run_name,
        "status": run.info.status,
        "user": run.info.user_id,
        "start": run.info.start_time,
        "end": run.info.end_time,
        "lifecycle": run.info.lifecycle_stage,
        "params": run.data.params,
        "tags": {k: v for k, v in tags.items() if k != "mlflow.log-model.history"},
        "metrics": sorted(run.data.metrics),
        "datasets": sorted(
            (
                d.dataset.name,
                d.dataset.digest,
                d.dataset.source_type,
                d.dataset.schema,
                tuple(sorted((t.key, t.value) for t in d.tags)),
            )
            for d in run.inputs.dataset_inputs
        ),
    }


def _own_project(yard: Yard) -> Yard:
    """The session's server, in a new project: an export copies a whole project, and other
    tests leave runs (some still running) in the shared one."""
    name = f"export-{uuid.uuid4().hex[:8]}"
    made = requests.post(
        f"{yard.server.url}/api/v1/projects",
        json={"name": name},
        headers=yard.headers(),
        timeout=30,
    )
    assert made.status_code == 201, made.text
    return dataclasses.replace(yard, project=name)


@pytest.mark.parametrize("yard", ["sqlite"], indirect=True)
def test_export_to_a_fresh_mlflow_server(
    yard: Yard, mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import mlflow

    yard = _own_project(yard)

    made = _fill(yard, monkeypatch, tmp_path)
    mapping = tmp_path / "mapping.json"
    done = _export(yard, mlflow_server.url, mapping)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert str(mapping) in done.stderr  # the new ids are announced
    assert f"into {mlflow_server.url}" in done.stdout
    ids = json.loads(mapping.read_text())
    runs = ids["runs"]
    assert set(made["runs"]) <= set(runs)
    assert all(runs[old] != old for old in made["runs"])  # MLflow chose new ids

    source = _client(yard.uri, yard.admin, monkeypatch)
    source_view = {
        "experiments": [
            (e.name, e.lifecycle_stage, e.tags)
            for e in (source.get_experiment(x) for x in made["experiments"])
        ],
        "runs": [_run_view(source, r, runs) for r in made["runs"]],
        "histories": {
            r: {k: _points(source, r, k) for k in source.get_run(r).data.metrics}
            for r in made["runs"]
        },
        "files": _files(source, made["runs"][0], tmp_path / "from-source"),
    }
    registered = source.get_registered_model(made["registered"])
    source_versions = sorted(
        (v.version, v.current_stage, v.description, v.tags, runs.get(v.run_id))
        for v in source.search_model_versions(f"name = '{made['registered']}'")
    )
    source_model = source.get_logged_model(made["model_id"])
    source_model_status = source_model.status
    source_model_metrics = sorted((m.key, m.step, m.value) for m in source_model.metrics or [])
    frame = __import__("pandas").DataFrame({"a": [1.0, 2.5]})
    source_prediction = mlflow.pyfunc.load_model(f"models:/{made['registered']}@champion").predict(
        frame
    )

    target = _client(mlflow_server.url, None, monkeypatch)
    mapped = [runs[r] for r in made["runs"]]
    experiments = ids["experiments"]
    target_view = {
        "experiments": [
            (e.name, e.lifecycle_stage, e.tags)
            for e in (target.get_experiment(experiments[x]) for x in made["experiments"])
        ],
        "runs": [_run_view(target, r, {v: v for v in runs.values()}) for r in mapped],
        "histories": {
            old: {k: _points(target, new, k) for k in target.get_run(new).data.metrics}
            for old, new in zip(made["runs"], mapped, strict=True)
        },
        "files": _files(target, mapped[0], tmp_path / "from-target"),
    }
    assert target_view == source_view
    assert len(source_view["histories"][made["runs"][0]]["loss"]) == HISTORY
    assert target.get_run(mapped[1]).data.tags["mlflow.parentRunId"] == mapped[0]

    new_model = ids["logged_models"][made["model_id"]]
    model = target.get_logged_model(new_model)
    assert model.name == "model"
    assert model.source_run_id == mapped[0]
    assert model.status == source_model_status
    assert model.params == source_model.params
    assert sorted((m.key, m.step, m.value) for m in model.metrics or []) == source_model_metrics
    assert source_model_metrics  # log_model linked the run's points to the model

    target_registered = target.get_registered_model(made["registered"])
    assert target_registered.description == registered.description == "predicts churn"
    assert target_registered.tags == registered.tags
    assert target_registered.aliases == registered.aliases == {"champion": "3"}
    target_versions = sorted(
        (v.version, v.current_stage, v.description, v.tags, v.run_id)
        for v in target.search_model_versions(f"name = '{made['registered']}'")
    )
    assert target_versions == source_versions
    assert [v[0] for v in target_versions] == ["1", "3"]
    assert ids["model_versions"][made["registered"]] == {"1": "1", "3": "3"}
    target_prediction = mlflow.pyfunc.load_model(f"models:/{made['registered']}@champion").predict(
        frame
    )
    assert list(target_prediction["a"]) == list(source_prediction["a"]) == [2.0, 5.0]

    # a second export finds everything in place and adds nothing
    again = _export(yard, mlflow_server.url, mapping)
    assert again.returncode == 0, again.stderr
    assert "exported 0 experiments, 0 runs, 0 logged models" in again.stdout
    found = target.search_runs(
        [experiments[x] for x in made["experiments"]], run_view_type=3, max_results=100
    )
    assert len(found) == len(made["runs"]) + 1
    assert json.loads(mapping.read_text())["runs"] == runs

    # what changed at the source since arrives with the next export
    source = _client(yard.uri, yard.admin, monkeypatch)
    later = source.create_run(made["experiments"][0], run_name="later")
    source.log_metric(later.info.run_id, "late", 2.0, step=4)
    source.set_terminated(later.info.run_id)
    source.transition_model_version_stage(made["registered"], "3", "Staging")
    source.delete_registered_model_alias(made["registered"], "champion")
    source.set_registered_model_alias(made["registered"], "challenger", "1")
    late_time = later_point_time(source, later)
    synced = _export(yard, mlflow_server.url, mapping)
    assert synced.returncode == 0, synced.stderr
    assert "exported 0 experiments, 1 runs, 0 logged models" in synced.stdout
    target = _client(mlflow_server.url, None, monkeypatch)
    late = json.loads(mapping.read_text())["runs"][later.info.run_id]
    assert _points(target, late, "late") == [(4, late_time, 2.0)]
    assert target.get_model_version(made["registered"], "3").current_stage == "Staging"
    assert target.get_registered_model(made["registered"]).aliases == {"challenger": "1"}

    # a run left half-copied (as by an interrupted export) is completed, nothing doubled
    state = json.loads(mapping.read_text())
    state["finished"]["runs"].remove(made["runs"][0])
    mapping.write_text(json.dumps(state))
    resumed = _export(yard, mlflow_server.url, mapping)
    assert resumed.returncode == 0, resumed.stderr
    assert "exported 0 experiments, 1 runs, 0 logged models" in resumed.stdout
    assert _points(target, mapped[0], "loss") == source_view["histories"][made["runs"][0]]["loss"]
    outputs = target.get_run(mapped[0]).outputs.model_outputs
    assert [o.model_id for o in outputs] == [new_model]
    assert _files(target, mapped[0], tmp_path / "again") == source_view["files"]


@pytest.mark.parametrize("yard", ["sqlite"], indirect=True)
def test_export_errors_are_one_line(yard: Yard, tmp_path: Path) -> None:
    port = free_port()
    refused = _export(yard, f"http://127.0.0.1:{port}", tmp_path / "m.json")
    assert "cannot reach" in one_line_error(refused)
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"format": 1, "source": "elsewhere", "target": "x"}))
    assert "--mapping" in one_line_error(_export(yard, f"http://127.0.0.1:{port}", bad))
    # MLflow's variables are the target's: the source is never read with them
    mlflow_only = {"MLFLOW_TRACKING_URI": yard.uri, "MLFLOW_TRACKING_TOKEN": yard.admin}
    unnamed = _export(yard, f"http://127.0.0.1:{port}", tmp_path / "n.json", settings=mlflow_only)
    assert "MODELYARD_URL" in one_line_error(unnamed)
    anonymous = _export(
        yard,
        f"http://127.0.0.1:{port}",
        tmp_path / "a.json",
        settings={**mlflow_only, "MODELYARD_URL": yard.uri},
    )
    assert "HTTP 401" in one_line_error(anonymous)
    assert not (tmp_path / "a.json").exists()
