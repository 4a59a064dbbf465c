"""The 2.x client (mlflow-skinny 2.22.5, in its own virtualenv) works against the server too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Server, run_cli, run_client

ROOT = Path(__file__).resolve().parents[2]
LEGACY_VENV = ROOT / ".venv" / "mlflow2"
LEGACY_VERSION = "2.22.5"

SCRIPT = r"""
import json, sys
import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

name = sys.argv[1]
mlflow.set_experiment(name)
with mlflow.start_run(run_name="legacy") as run:
    mlflow.log_param("alpha", 0.3)
    mlflow.log_metric("loss", 0.9, step=0)
    mlflow.log_metrics({"loss": 0.4, "acc": 0.8}, step=1)
    mlflow.set_tag("client", "2.x")
    mlflow.log_text("from the 2.x client", "notes/hello.txt")
    mlflow.log_dict({"k": [1, 2]}, "cfg.json")
client = MlflowClient()
client.log_batch(run.info.run_id, metrics=[Metric("b", float(i), 0, i) for i in range(1500)],
                 params=[Param("p", "v")], tags=[RunTag("t", "v")])
mlflow.log_text("flavors: {}\n", "model/MLmodel", run_id=run.info.run_id)
client.create_registered_model(name + "-model")
registered = client.create_model_version(
    name + "-model", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
)
client.set_registered_model_alias(name + "-model", "production", registered.version)
by_alias = client.get_model_version_by_alias(name + "-model", "production")
model_dir = mlflow.artifacts.download_artifacts(f"models:/{name}-model@production")
found = client.search_runs([run.info.experiment_id], "metrics.loss < 0.5 and params.alpha = '0.3'")
got = client.get_run(run.info.run_id)
print(json.dumps({
    "version": mlflow.__version__,
    "found": [r.info.run_id for r in found],
    "run_id": run.info.run_id,
    "status": got.info.status,
    "metrics": got.data.metrics,
    "params": got.data.params,
    "history": len(client.get_metric_history(run.info.run_id, "b")),
    "artifacts": sorted(f.path for f in client.list_artifacts(run.info.run_id)),
    "text": mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/notes/hello.txt"),
    "dict": mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/cfg.json"),
    "registered": [registered.version, by_alias.version, registered.tags.get("modelyard.semver")],
    "model_files": sorted(__import__("os").listdir(model_dir)),
}))
"""


@pytest.fixture(scope="session")
def legacy_python() -> Path:
    python = LEGACY_VENV / "bin" / "python"
    marker = LEGACY_VENV / f".mlflow-skinny-{LEGACY_VERSION}"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", str(LEGACY_VENV)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                f"mlflow-skinny=={LEGACY_VERSION}",
            ],
            check=True,
        )
        marker.touch()
    return python


def test_mlflow_2_client_logs_and_searches(server, legacy_python: Path) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.url, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    done = subprocess.run(
        [str(legacy_python), "-c", SCRIPT, f"legacy-{os.getpid()}-{server.port}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["version"] == LEGACY_VERSION
    assert result["found"] == [result["run_id"]]
    assert result["status"] == "FINISHED"
    assert result["metrics"] == {"loss": 0.4, "acc": 0.8, "b": 1499.0}
    assert result["params"] == {"alpha": "0.3", "p": "v"}
    assert result["history"] == 1500
    assert result["artifacts"] == ["cfg.json", "model", "notes"]
    assert result["text"] == "from the 2.x client"
    assert result["dict"] == {"k": [1, 2]}
    assert result["registered"] == ["1", "1", "1.0.0"]
    assert "MLmodel" in result["model_files"]


def test_mlflow_2_client_with_a_token_in_a_project(make_backend, legacy_python: Path) -> None:  # type: ignore[no-untyped-def]
    """The same work on a server with authentication, through a project's tracking URI, with
    the 2.x client's MLFLOW_TRACKING_TOKEN; without the token it is refused."""
    server = Server(make_backend("sqlite"), env={"MODELYARD_AUTH": "1"})
    try:
        made = run_cli(server, "admin", "users", "create", "legacy", "--admin")
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip()
        assert run_cli(server, "admin", "projects", "create", "old-clients").returncode == 0
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"{server.url}/projects/old-clients",
            "MLFLOW_REGISTRY_URI": f"{server.url}/projects/old-clients",
            "MLFLOW_TRACKING_TOKEN": token,
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        }
        done = subprocess.run(
            [str(legacy_python), "-c", SCRIPT, "in-project"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["found"] == [result["run_id"]]
        assert result["text"] == "from the 2.x client"
        assert result["registered"] == ["1", "1", "1.0.0"]
        assert "MLmodel" in result["model_files"]
        # the run lives in the project, not in the default one
        default = run_client(server, "models", "list", token=token)
        assert default.returncode == 0, default.stderr
        assert "in-project-model" not in default.stdout
        listed = run_client(server, "models", "list", "--project", "old-clients", token=token)
        assert "in-project-model" in listed.stdout
        refused = subprocess.run(
            [str(legacy_python), "-c", SCRIPT, "no-token"],
            capture_output=True,
            text=True,
            env={k: v for k, v in env.items() if k != "MLFLOW_TRACKING_TOKEN"},
            timeout=300,
            check=False,
        )
        assert refused.returncode != 0
        assert "401" in refused.stderr or "UNAUTHENTICATED" in refused.stderr
    finally:
        server.stop()
