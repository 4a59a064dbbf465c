"""The real mlflow client against a live ``--auth`` server (SQLite and PostgreSQL): it works
with a token, as Bearer or Basic credentials, and fails clearly without a valid one."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from mlflow.exceptions import MlflowException

from tests.integration.auth_world import (
    Yard,
    error_message,
    yard,
)

__all__ = ["yard"]  # the fixture, shared with the other authentication tests


# ---------------------------------------------------------------- 4. the real mlflow client


@dataclass
class ClientWorld:
    yard: Yard
    uri: str
    token: str
    expiring: str
    expires_at: float


@pytest.fixture(scope="module")
def e2e(yard: Yard) -> ClientWorld:
    yard.project("e2e")
    token = yard.user("carl")
    yard.member("e2e", "carl", "maintainer")
    # made early, so it has expired by the time a test uses it
    _id, expiring = yard.token("--user", "carl", "--expires", "2s", "--name", "short")
    return ClientWorld(yard, f"{yard.url}/projects/e2e", token, expiring, time.time() + 2)


@pytest.fixture
def mlflow_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    import mlflow

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch
    while mlflow.active_run():
        mlflow.end_run()
    # the registry URI is process-wide (and exported to subprocesses): leave none behind
    mlflow.set_registry_uri(None)  # type: ignore[arg-type]


def point_client(monkeypatch: pytest.MonkeyPatch, uri: str, **credentials: str) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    for name, value in credentials.items():
        monkeypatch.setenv(f"MLFLOW_TRACKING_{name.upper()}", value)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


def test_mlflow_client_with_a_bearer_token_end_to_end(
    e2e: ClientWorld, mlflow_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import mlflow
    import mlflow.pyfunc
    import mlflow.sklearn
    from mlflow.tracking import MlflowClient
    from sklearn.linear_model import LogisticRegression

    point_client(mlflow_env, e2e.uri, token=e2e.token)
    experiment = mlflow.set_experiment("bearer-experiment")
    features = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.9, 0.1]])
    model = LogisticRegression().fit(features, [0, 1, 0, 1])
    notes = tmp_path / "notes.txt"
    notes.write_text("logged with a token")
    with mlflow.start_run() as run:
        mlflow.log_params({"C": 1.0, "solver": "lbfgs"})
        for step in range(3):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_artifact(str(notes), "docs")
        mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name="bearer-model",
            pip_requirements=["scikit-learn"],
        )
    client = MlflowClient()
    fetched = client.get_run(run.info.run_id)
    assert fetched.data.params == {"C": "1.0", "solver": "lbfgs"}
    assert fetched.data.metrics["loss"] == pytest.approx(1 / 3)
    assert [m.value for m in client.get_metric_history(run.info.run_id, "loss")] == [
        1.0,
        0.5,
        pytest.approx(1 / 3),
    ]
    downloaded = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="docs/notes.txt", dst_path=str(tmp_path / "dl")
    )
    assert Path(downloaded).read_text() == "logged with a token"
    versions = client.search_model_versions("name = 'bearer-model'")
    assert [v.version for v in versions] == ["1"]
    client.set_registered_model_alias("bearer-model", "champion", "1")
    loaded = mlflow.pyfunc.load_model("models:/bearer-model@champion")
    assert list(loaded.predict(features)) == [0, 1, 0, 1]
    found = mlflow.search_runs([experiment.experiment_id], output_format="list")
    assert [r.info.run_id for r in found] == [run.info.run_id]
    # the project holds it all; the default project does not even see the experiment
    default = e2e.yard.mlflow(
        "GET", "experiments/get-by-name", e2e.token, params={"experiment_name": "bearer-experiment"}
    )
    assert default.status_code == 404


def test_mlflow_client_with_basic_credentials(
    e2e: ClientWorld, mlflow_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    point_client(mlflow_env, e2e.uri, username="carl", password=e2e.token)
    experiment = mlflow.set_experiment("basic-experiment")
    data = tmp_path / "table.csv"
    data.write_text("a,b\n1,2\n")
    with mlflow.start_run() as run:
        mlflow.log_param("auth", "basic")
        mlflow.log_metric("accuracy", 0.9)
        mlflow.log_artifact(str(data))
    client = MlflowClient()
    assert client.get_run(run.info.run_id).data.params == {"auth": "basic"}
    assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["table.csv"]
    local = client.download_artifacts(run.info.run_id, "table.csv", str(tmp_path))
    assert Path(local).read_text() == "a,b\n1,2\n"
    client.create_registered_model("basic-model")
    client.create_model_version(
        "basic-model", f"runs:/{run.info.run_id}/table.csv", run.info.run_id
    )
    client.set_registered_model_alias("basic-model", "prod", "1")
    assert client.get_model_version_by_alias("basic-model", "prod").version == "1"
    found = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in found] == [run.info.run_id]


def assert_client_refused(uri: str) -> None:
    from mlflow.tracking import MlflowClient

    with pytest.raises(MlflowException) as refused:
        MlflowClient(uri).search_experiments()
    text = str(refused.value)
    assert "UNAUTHENTICATED" in text or "401" in text, text


def test_mlflow_client_fails_clearly_without_a_valid_token(
    e2e: ClientWorld, mlflow_env: pytest.MonkeyPatch
) -> None:
    yard = e2e.yard
    point_client(mlflow_env, e2e.uri)
    assert_client_refused(e2e.uri)  # no token at all

    mlflow_env.setenv("MLFLOW_TRACKING_TOKEN", "myd_" + "x" * 40)
    assert_client_refused(e2e.uri)
    mlflow_env.setenv(
        "MLFLOW_TRACKING_TOKEN", e2e.token[:-1] + ("A" if e2e.token[-1] != "A" else "B")
    )
    assert_client_refused(e2e.uri)

    time.sleep(max(0.0, e2e.expires_at - time.time() + 0.2))
    mlflow_env.setenv("MLFLOW_TRACKING_TOKEN", e2e.expiring)
    assert_client_refused(e2e.uri)
    expired = yard.mlflow(
        "POST", "experiments/search", e2e.expiring, "e2e", json={"max_results": 10}
    )
    assert expired.status_code == 401
    assert "expired" in error_message(expired)

    token_id, revocable = yard.token("--user", "carl", "--name", "revocable")
    mlflow_env.setenv("MLFLOW_TRACKING_TOKEN", revocable)
    from mlflow.tracking import MlflowClient

    assert MlflowClient(e2e.uri).search_experiments() is not None  # works until revoked
    yard.cli("admin", "tokens", "revoke", str(token_id))
    assert_client_refused(e2e.uri)
    listed = yard.cli("admin", "tokens", "list", "--user", "carl")
    assert re.search(rf"^{token_id}\t.*revoked$", listed, re.MULTILINE), listed

    # Basic: a wrong user name for a good token, and a wrong token for the right user
    mlflow_env.delenv("MLFLOW_TRACKING_TOKEN")
    mlflow_env.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    mlflow_env.setenv("MLFLOW_TRACKING_PASSWORD", e2e.token)
    assert_client_refused(e2e.uri)
    mlflow_env.setenv("MLFLOW_TRACKING_USERNAME", "carl")
    mlflow_env.setenv("MLFLOW_TRACKING_PASSWORD", "not-a-token")
    assert_client_refused(e2e.uri)
