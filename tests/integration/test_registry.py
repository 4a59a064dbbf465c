"""The MLflow model registry through the real client: models, versions with numbers and
semvers, aliases (and semver aliases), stages, search, loading by URI, concurrency, bad input."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from mlflow.exceptions import MlflowException

from tests.conftest import Server


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def model_run(client, experiment_id: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A candidate holding a saved sklearn model under artifacts/model (as 2.x clients do)."""
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    features = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.9, 0.1]])
    model = LogisticRegression().fit(features, [0, 1, 0, 1])
    mlflow.sklearn.save_model(model, str(tmp_path / "model"), pip_requirements=["scikit-learn"])
    run_id = client.create_run(experiment_id).info.run_id
    client.log_artifacts(run_id, str(tmp_path / "model"), "model")
    return run_id, model, features


def codes(exc: pytest.ExceptionInfo[MlflowException]) -> str:
    return str(exc.value.error_code)


def test_models_crud_and_search(client) -> None:  # type: ignore[no-untyped-def]
    name = unique("reg")
    created = client.create_registered_model(name, tags={"team": "a"}, description="first")
    assert created.name == name
    assert created.tags == {"team": "a"}
    with pytest.raises(MlflowException) as dup:
        client.create_registered_model(name)
    assert codes(dup) == "RESOURCE_ALREADY_EXISTS"
    client.update_registered_model(name, description="second")
    assert client.get_registered_model(name).description == "second"
    renamed = unique("renamed")
    client.rename_registered_model(name, renamed)
    with pytest.raises(MlflowException) as gone:
        client.get_registered_model(name)
    assert codes(gone) == "RESOURCE_DOES_NOT_EXIST"
    client.set_registered_model_tag(renamed, "stage", "beta")
    client.delete_registered_model_tag(renamed, "team")
    assert client.get_registered_model(renamed).tags == {"stage": "beta"}

    prefix = unique("search")
    for i in range(5):
        client.create_registered_model(f"{prefix}-{i}", tags={"parity": str(i % 2)})
    found = client.search_registered_models(f"name LIKE '{prefix}-%' AND tags.parity = '1'")
    assert sorted(m.name for m in found) == [f"{prefix}-1", f"{prefix}-3"]
    first = client.search_registered_models(
        f"name LIKE '{prefix}-%'", max_results=2, order_by=["name DESC"]
    )
    assert [m.name for m in first] == [f"{prefix}-4", f"{prefix}-3"]
    second = client.search_registered_models(
        f"name LIKE '{prefix}-%'", max_results=2, order_by=["name DESC"], page_token=first.token
    )
    assert [m.name for m in second] == [f"{prefix}-2", f"{prefix}-1"]
    client.delete_registered_model(renamed)
    assert client.search_registered_models(f"name = '{renamed}'") == []


def test_versions_numbers_semvers_aliases_and_stages(client, model_run) -> None:  # type: ignore[no-untyped-def]
    run_id, _model, _features = model_run
    name = unique("versions")
    client.create_registered_model(name)
    source = f"runs:/{run_id}/model"
    v1 = client.create_model_version(name, source, run_id=run_id, description="one")
    assert (v1.version, v1.status, v1.tags["modelyard.semver"]) == ("1", "READY", "1.0.0")
    v2 = client.create_model_version(
        name, source, run_id=run_id, tags={"modelyard.semver": "2.0.0-rc1"}
    )
    assert v2.tags["modelyard.semver"] == "2.0.0-rc1"
    v3 = client.create_model_version(name, source, run_id=run_id)
    assert (v3.version, v3.tags["modelyard.semver"]) == ("3", "2.0.0")

    client.set_registered_model_alias(name, "champion", "1")
    client.set_registered_model_alias(name, "champion", "3")
    assert client.get_model_version_by_alias(name, "champion").version == "3"
    assert client.get_registered_model(name).aliases == {"champion": "3"}
    assert client.get_model_version_by_alias(name, "v1_0_0").version == "1"
    assert client.get_model_version_by_alias(name, "v2_0_0-rc1").version == "2"
    assert client.get_model_version_by_alias(name, "v2").version == "3"
    with pytest.raises(MlflowException) as reserved:
        client.set_registered_model_alias(name, "v1_2_3", "1")
    assert codes(reserved) == "INVALID_PARAMETER_VALUE"
    client.delete_registered_model_alias(name, "champion")
    with pytest.raises(MlflowException) as missing:
        client.get_model_version_by_alias(name, "champion")
    assert codes(missing) == "RESOURCE_DOES_NOT_EXIST"

    client.transition_model_version_stage(name, "1", "Production")
    client.transition_model_version_stage(name, "3", "production", archive_existing_versions=True)
    assert client.get_model_version(name, "1").current_stage == "Archived"
    latest = client.get_latest_versions(name, stages=["Production"])
    assert [v.version for v in latest] == ["3"]
    client.update_model_version(name, "1", description="updated")
    client.set_model_version_tag(name, "1", "checked", "yes")
    assert client.get_model_version(name, "1").tags["checked"] == "yes"
    client.delete_model_version_tag(name, "1", "checked")

    client.delete_model_version(name, "2")
    with pytest.raises(MlflowException):
        client.get_model_version(name, "2")
    v4 = client.create_model_version(name, source, run_id=run_id)
    assert (v4.version, v4.tags["modelyard.semver"]) == ("4", "2.0.1")
    found = client.search_model_versions(f"name = '{name}' AND version_number > 2")
    assert sorted(v.version for v in found) == ["3", "4"]
    ordered = client.search_model_versions(f"name = '{name}'", order_by=["version_number ASC"])
    assert [v.version for v in ordered] == ["1", "3", "4"]


def test_one_models_versions_paged_in_every_order(client, model_run) -> None:  # type: ignore[no-untyped-def]
    """A model's own versions (``name = '…'``) come a page at a time from the database: the
    same versions, in the same order, as the general filter that is evaluated version by
    version; deleted versions left out; tags and aliases on every page."""
    run_id, _model, _features = model_run
    name = unique("paged")
    client.create_registered_model(name)
    for n in range(7):
        client.create_model_version(
            name, f"runs:/{run_id}/model", run_id=run_id, tags={"n": str(n)}
        )
    client.delete_model_version(name, "4")
    client.update_model_version(name, "2", description="touched last")
    client.set_registered_model_alias(name, "best", "6")

    def pages(filter_string: str, order_by: list[str]) -> list[list[str]]:
        found, token = [], None
        while True:
            page = client.search_model_versions(
                filter_string, max_results=3, order_by=order_by, page_token=token
            )
            found.append([v.version for v in page])
            assert all(v.tags["n"] == str(int(v.version) - 1) for v in page)
            assert all(v.aliases == (["best"] if v.version == "6" else []) for v in page)
            token = page.token
            if not token:
                return found

    orders = {
        (): ["2", "7", "6", "5", "3", "1"],
        ("version_number ASC",): ["1", "2", "3", "5", "6", "7"],
        ("creation_timestamp ASC", "version_number DESC"): None,
        ("last_updated_timestamp DESC",): ["2", "7", "6", "5", "3", "1"],
        ("name DESC", "version_number ASC"): ["1", "2", "3", "5", "6", "7"],
    }
    for order_by, expected in orders.items():
        by_name = pages(f"name = '{name}'", list(order_by))
        general = pages(f"name LIKE '{name}'", list(order_by))
        assert by_name == general, order_by
        flat = [v for page in by_name for v in page]
        assert sorted(flat, key=int) == ["1", "2", "3", "5", "6", "7"]
        assert [len(page) for page in by_name] == [3, 3]
        if expected is not None:
            assert flat == expected, order_by
    with pytest.raises(MlflowException, match="max_results"):
        client.search_model_versions(f"name = '{name}'", max_results=0)
    first = client.search_model_versions(f"name = '{name}'", max_results=3)
    with pytest.raises(MlflowException, match="page token"):
        client.search_model_versions(
            f"name = '{name}'", max_results=3, order_by=["version_number ASC"],
            page_token=first.token,
        )  # fmt: skip
    assert client.search_model_versions("name = 'no-such-model'") == []


def test_load_by_number_alias_semver_and_latest(client, model_run) -> None:  # type: ignore[no-untyped-def]
    import mlflow.pyfunc

    run_id, model, features = model_run
    name = unique("load")
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(name, "production", "1")
    expected = model.predict(features)
    for uri in (
        f"models:/{name}/1",
        f"models:/{name}@production",
        f"models:/{name}@v1_0_0",
        f"models:/{name}/latest",
    ):
        loaded = mlflow.pyfunc.load_model(uri)
        assert list(loaded.predict(features)) == list(expected), uri


def test_fifty_concurrent_versions_get_distinct_numbers(server: Server, client, model_run) -> None:  # type: ignore[no-untyped-def]
    run_id, _model, _features = model_run
    name = unique("race")
    client.create_registered_model(name)

    def create(_: int) -> requests.Response:
        return requests.post(
            f"{server.url}/api/2.0/mlflow/model-versions/create",
            json={"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id},
            timeout=60,
        )

    with ThreadPoolExecutor(max_workers=25) as pool:
        answers = list(pool.map(create, range(50)))
    assert all(r.status_code == 200 for r in answers), {r.status_code for r in answers}
    numbers = sorted(int(r.json()["model_version"]["version"]) for r in answers)
    assert numbers == list(range(1, 51))
    semvers = {r.json()["model_version"]["tags"][0]["value"] for r in answers}
    assert len(semvers) == 50


@pytest.mark.parametrize(
    ("source", "code"),
    [
        ("file:///etc/passwd", "INVALID_PARAMETER_VALUE"),
        ("/tmp/model", "INVALID_PARAMETER_VALUE"),
        (
            "http://elsewhere.example/api/2.0/mlflow-artifacts/artifacts/0/x/artifacts/model",
            "INVALID_PARAMETER_VALUE",
        ),
        ("s3://bucket/model", "INVALID_PARAMETER_VALUE"),
        ("models:/other/1", "INVALID_PARAMETER_VALUE"),
        ("runs:/0123456789abcdef0123456789abcdef/model", "RESOURCE_DOES_NOT_EXIST"),
        ("runs:/RUN/../../secret", "INVALID_PARAMETER_VALUE"),
        ("runs:/RUN/%2e%2e/secret", "INVALID_PARAMETER_VALUE"),
    ],
)
def test_bad_sources_are_refused_and_store_nothing(
    server: Server, client, model_run, source: str, code: str
) -> None:  # type: ignore[no-untyped-def]
    run_id, _model, _features = model_run
    name = unique("bad")
    client.create_registered_model(name)
    answer = requests.post(
        f"{server.url}/api/2.0/mlflow/model-versions/create",
        json={"name": name, "source": source.replace("RUN", run_id)},
        timeout=30,
    )
    assert answer.status_code in (400, 404)
    assert answer.json()["error_code"] == code
    assert client.search_model_versions(f"name = '{name}'") == []


def test_bad_registry_input(server: Server, client, model_run) -> None:  # type: ignore[no-untyped-def]
    run_id, _model, _features = model_run
    name = unique("badinput")
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    base = f"{server.url}/api/2.0/mlflow"
    cases = [
        (
            "POST",
            "model-versions/create",
            {
                "name": name,
                "source": f"runs:/{run_id}/model",
                "tags": [{"key": "modelyard.semver", "value": "1.0"}],
            },
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "POST",
            "model-versions/create",
            {
                "name": name,
                "source": f"runs:/{run_id}/model",
                "tags": [{"key": "modelyard.semver", "value": "1.0.0"}],
            },
            "RESOURCE_ALREADY_EXISTS",
        ),
        (
            "POST",
            "registered-models/alias",
            {"name": name, "alias": "prod", "version": "9"},
            "RESOURCE_DOES_NOT_EXIST",
        ),
        (
            "POST",
            "registered-models/alias",
            {"name": name, "alias": "latest", "version": "1"},
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "POST",
            "registered-models/alias",
            {"name": name, "alias": "bad alias!", "version": "1"},
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "POST",
            "model-versions/transition-stage",
            {"name": name, "version": "1", "stage": "Live"},
            "INVALID_PARAMETER_VALUE",
        ),
        (
            "POST",
            "model-versions/set-tag",
            {"name": name, "version": "1", "key": "modelyard.semver", "value": "9.9.9"},
            "INVALID_PARAMETER_VALUE",
        ),
        ("POST", "registered-models/create", {"name": "a/b"}, "INVALID_PARAMETER_VALUE"),
        (
            "POST",
            "model-versions/create",
            {"name": "nobody-" + name, "source": f"runs:/{run_id}/model"},
            "RESOURCE_DOES_NOT_EXIST",
        ),
    ]
    for method, path, body, code in cases:
        answer = requests.request(method, f"{base}/{path}", json=body, timeout=30)
        assert answer.status_code < 500, (path, body, answer.text)
        assert answer.json()["error_code"] == code, (path, body, answer.text)
    stored = client.search_model_versions(f"name = '{name}'")
    assert [(v.version, v.tags["modelyard.semver"]) for v in stored] == [("1", "1.0.0")]
    assert client.get_registered_model(name).aliases == {}


def test_log_model_with_registration_then_serve(
    server: Server, client, experiment_id: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """The path from a candidate to a served model: log_model(registered_model_name=...),
    an alias, and `mlflow models serve` answering /invocations like the original model."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    features = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.9, 0.1]])
    model = LogisticRegression().fit(features, [0, 1, 0, 1])
    name = unique("served")
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name=name, pip_requirements=["scikit-learn"]
        )
    assert str(info.registered_model_version) == "1"
    raw = requests.get(
        f"{server.url}/api/2.0/mlflow/model-versions/get",
        params={"name": name, "version": "1"},
        timeout=10,
    ).json()["model_version"]
    assert raw["model_id"] == info.model_id
    client.set_registered_model_alias(name, "production", "1")
    expected = list(model.predict(features))
    for uri in (f"models:/{name}/1", f"models:/{name}@production", f"models:/{name}@v1_0_0"):
        assert list(mlflow.pyfunc.load_model(uri).predict(features)) == expected, uri

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    scripts = str(Path(sys.executable).parent)  # `mlflow models serve` runs uvicorn from here
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": server.url,
        "PATH": scripts + os.pathsep + os.environ.get("PATH", ""),
    }
    serving = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            f"models:/{name}@production",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=(tmp_path / "serve.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        answer = None
        while time.monotonic() < deadline:
            assert serving.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                answer = requests.post(
                    f"http://127.0.0.1:{port}/invocations",
                    json={"inputs": features.tolist()},
                    timeout=5,
                )
                break
            except requests.ConnectionError:
                time.sleep(0.5)
        log = (tmp_path / "serve.log").read_text()
        assert answer is not None, log
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == expected
    finally:
        os.killpg(serving.pid, 15)
        serving.wait(timeout=30)


def test_version_files_are_frozen_at_registration(
    server: Server, client, model_run, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import mlflow

    run_id, _model, _features = model_run
    name = unique("frozen")
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    uri = client.get_model_version_download_uri(name, "1")
    assert uri.startswith("mlflow-artifacts:/registry/")
    original = Path(
        mlflow.artifacts.download_artifacts(f"models:/{name}/1", dst_path=str(tmp_path / "a"))
    )
    before = (original / "MLmodel").read_text()
    mlflow.log_text("changed after registration", "model/MLmodel", run_id=run_id)
    again = Path(
        mlflow.artifacts.download_artifacts(f"models:/{name}/1", dst_path=str(tmp_path / "b"))
    )
    assert (again / "MLmodel").read_text() == before
    path = uri.removeprefix("mlflow-artifacts:/")
    base = f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{path}"
    assert requests.put(f"{base}/MLmodel", data=b"x", timeout=10).status_code == 409
    assert requests.delete(f"{base}/MLmodel", timeout=10).status_code == 409
    assert requests.get(f"{base}/MLmodel", timeout=10).text == before
