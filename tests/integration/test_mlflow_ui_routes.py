"""The routes MLflow's server answers for its web UI (datasets of experiments, uploads, a
logged model's files, a model version's files), the types downloads are served with, what
``model-versions/create`` records on a logged model, and ``/version``."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

import modelyard
from tests.conftest import Server, api

AJAX = "/ajax-api/2.0/mlflow"


def ajax(server: Server, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, server.url + AJAX + path, timeout=30, **kwargs)


def test_search_datasets(server: Server, client, experiment_id: str) -> None:  # type: ignore[no-untyped-def]
    from mlflow.entities import Dataset, DatasetInput, InputTag

    for body, expected in (
        ({}, "SearchDatasets request must specify at least one experiment_id."),
        ({"experiment_ids": []}, "SearchDatasets request must specify at least one experiment_id."),
        (
            {"experiment_ids": [f"id_{i}" for i in range(1000)]},
            "SearchDatasets request cannot specify more than",
        ),
    ):
        response = ajax(server, "POST", "/experiments/search-datasets", json=body)
        assert response.status_code == 400
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert expected in response.json()["message"]
    empty = ajax(
        server, "POST", "/experiments/search-datasets", json={"experiment_ids": [experiment_id]}
    )
    assert empty.status_code == 200
    assert empty.json().get("dataset_summaries", []) == []
    run = client.create_run(experiment_id).info.run_id
    training = DatasetInput(
        Dataset(name="name1", digest="digest1", source_type="local", source="s"),
        tags=[InputTag(key="mlflow.data.context", value="training")],
    )
    plain = DatasetInput(Dataset(name="name2", digest="digest2", source_type="local", source="s"))
    client.log_inputs(run, [training, plain])
    response = ajax(
        server, "POST", "/experiments/search-datasets", json={"experiment_ids": [experiment_id]}
    )
    assert response.status_code == 200
    assert response.json()["dataset_summaries"] == [
        {
            "experiment_id": experiment_id,
            "name": "name1",
            "digest": "digest1",
            "context": "training",
        },
        {"experiment_id": experiment_id, "name": "name2", "digest": "digest2"},
    ]
    # only under the UI's prefix, as with MLflow's server
    assert api(server.url, "POST", "experiments/search-datasets", json={}).status_code == 404


def test_upload_artifact(server: Server, client, experiment_id: str) -> None:  # type: ignore[no-untyped-def]
    run = client.create_run(experiment_id).info.run_id
    for params, data, expected in (
        ({}, b"x", "Request must specify run_uuid."),
        ({"run_uuid": run}, b"x", "Request must specify path."),
        ({"run_uuid": run, "path": ""}, b"x", "Request must specify path."),
        ({"run_uuid": run, "path": "../test.txt"}, b"x", "Invalid path"),
        ({"run_uuid": run, "path": "test.txt"}, b"", "Request must specify data."),
        ({"run_uuid": run, "path": "big.bin"}, b"x" * (10 * 1024 * 1024 + 1), "too large"),
    ):
        response = ajax(server, "POST", "/upload-artifact", params=params, data=data)
        assert response.status_code == 400, params
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert expected in response.json()["message"]
    unknown = ajax(
        server, "POST", "/upload-artifact", params={"run_uuid": "f" * 32, "path": "a"}, data=b"x"
    )
    assert unknown.status_code == 404
    stored = ajax(
        server,
        "POST",
        "/upload-artifact",
        params={"run_uuid": run, "path": "sub/test.txt"},
        data=b"hello world",
    )
    assert stored.status_code == 200, stored.text
    fetched = requests.get(
        f"{server.url}/get-artifact", params={"run_uuid": run, "path": "sub/test.txt"}, timeout=30
    )
    assert fetched.status_code == 200
    assert fetched.text == "hello world"
    assert [f.path for f in client.list_artifacts(run, "sub")] == ["sub/test.txt"]


def test_logged_model_files(server: Server, client, experiment_id: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = client.create_logged_model(experiment_id, name="files")
    (tmp_path / "MLmodel").write_text(f"model_id: {model.model_id}\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "weights.bin").write_bytes(b"\x00\x01")
    client.log_model_artifacts(model.model_id, str(tmp_path))
    listing = ajax(server, "GET", f"/logged-models/{model.model_id}/artifacts/directories")
    assert listing.status_code == 200, listing.text
    assert listing.json() == {
        "root_uri": model.artifact_location,
        "files": [
            {"path": "MLmodel", "is_dir": False, "file_size": len(f"model_id: {model.model_id}\n")},
            {"path": "data", "is_dir": True},
        ],
    }
    inner = api(
        server.url,
        "GET",
        f"logged-models/{model.model_id}/artifacts/directories",
        params={"artifact_directory_path": "data"},
    )
    assert inner.json()["files"] == [{"path": "data/weights.bin", "is_dir": False, "file_size": 2}]
    bad = api(
        server.url,
        "GET",
        f"logged-models/{model.model_id}/artifacts/directories",
        params={"artifact_directory_path": "../x"},
    )
    assert bad.json() == {"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid path"}
    missing = api(server.url, "GET", f"logged-models/m-{'0' * 32}/artifacts/directories")
    assert missing.status_code == 404
    files = f"/logged-models/{model.model_id}/artifacts/files"
    got = ajax(server, "GET", files, params={"artifact_file_path": "MLmodel"})
    assert got.status_code == 200
    assert model.model_id in got.text
    assert got.headers["content-type"] == "text/plain; charset=utf-8"
    no_path = ajax(server, "GET", files)
    assert no_path.status_code == 400
    assert no_path.json()["error_code"] == "BAD_REQUEST"
    assert ajax(server, "GET", files, params={"artifact_file_path": "nope"}).status_code == 404


def test_model_version_files(server: Server, client, experiment_id: str) -> None:  # type: ignore[no-untyped-def]
    import mlflow

    run = client.create_run(experiment_id).info.run_id
    mlflow.log_text("flavors: {}\n", "model/MLmodel", run_id=run)
    name = f"files-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run}/model", run_id=run).version
    url = f"{server.url}/model-versions/get-artifact"
    got = requests.get(
        url, params={"name": name, "version": version, "path": "MLmodel"}, timeout=30
    )
    assert got.status_code == 200
    assert got.text == "flavors: {}\n"
    assert got.headers["content-disposition"].startswith("attachment")
    missing = requests.get(url, params={"name": name, "version": version, "path": "x"}, timeout=30)
    assert missing.status_code == 404
    no_model = requests.get(
        url, params={"name": "nope", "version": "1", "path": "MLmodel"}, timeout=30
    )
    assert no_model.status_code == 404


def test_model_version_from_a_logged_model_is_recorded_on_it(client, experiment_id: str) -> None:  # type: ignore[no-untyped-def]
    """MLflow's server appends each version made from a logged model to its
    ``mlflow.modelVersions`` tag (JSON, versions as numbers)."""
    name = f"reg-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    model = client.create_logged_model(experiment_id=experiment_id)
    client.create_model_version(name=name, source=model.artifact_location, model_id=model.model_id)
    tag = client.get_logged_model(model.model_id).tags["mlflow.modelVersions"]
    assert tag == f'[{{"name": "{name}", "version": 1}}]'
    client.create_model_version(name=name, source=model.model_uri, model_id=model.model_id)
    tag = client.get_logged_model(model.model_id).tags["mlflow.modelVersions"]
    assert json.loads(tag) == [{"name": name, "version": 1}, {"name": name, "version": 2}]
    # a model_id that names no logged model of the project registers nothing
    other = client.create_run(experiment_id).info.run_id
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="not found"):
        client.create_model_version(
            name, f"runs:/{other}/x", run_id=other, model_id=f"m-{'0' * 32}"
        )
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == ["2", "1"]


TEXT_FILES = {
    "notes.txt": "text/plain; charset=utf-8",
    "train.log": "text/plain; charset=utf-8",
    "table.csv": "text/csv; charset=utf-8",
    "MLmodel": "text/plain; charset=utf-8",
    "MLproject": "text/plain; charset=utf-8",
    "conda.yaml": "text/plain; charset=utf-8",
    "metrics.json": "application/json; charset=utf-8",
    "plot.png": "image/png",
    "page.html": "application/octet-stream",
    "icon.svg": "application/octet-stream",
    "data.xml": "application/octet-stream",
    "app.js": "application/octet-stream",
    "weights.bin": "application/octet-stream",
}


def test_downloads_are_typed_by_name(server: Server, client, experiment_id: str) -> None:  # type: ignore[no-untyped-def]
    """Text is served as text with charset=utf-8; what a browser would run is opaque bytes;
    the Content-Type the uploader declared is never echoed."""
    run = client.create_run(experiment_id).info.run_id
    base = f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run}/artifacts"
    for name in TEXT_FILES:
        sent = requests.put(
            f"{base}/{name}",
            data=b"<html><script>1</script>",
            headers={"Content-Type": "text/html"},
            timeout=30,
        )
        assert sent.status_code == 200
    for name, served in TEXT_FILES.items():
        for url, params in (
            (f"{base}/{name}", None),
            (f"{server.url}/get-artifact", {"run_id": run, "path": name}),
        ):
            got = requests.get(url, params=params, timeout=30)
            assert got.status_code == 200
            assert got.headers["content-type"] == served, (name, url)
            assert got.headers["x-content-type-options"] == "nosniff"
            assert got.headers["content-disposition"].startswith("attachment")


def test_version_is_modelyards_and_any_caller_may_read_it(make_backend) -> None:  # type: ignore[no-untyped-def]
    """``/version`` answers modelyard's version. MLflow clients read it before sending trace
    spans and send none to a server below 3.4, which is what modelyard wants: it does not
    offer tracing. A project token reads it too (the client sends whatever credentials it
    has)."""
    from mlflow.store.tracking.rest_store import RestStore
    from mlflow.utils.rest_utils import MlflowHostCreds
    from packaging.version import Version

    from tests.conftest import run_cli

    server = Server(make_backend("sqlite"), env={"MODELYARD_AUTH": "1"})
    try:
        admin = run_cli(server, "admin", "users", "create", "versions", "--admin").stdout.strip()
        assert run_cli(server, "admin", "projects", "create", "traced").returncode == 0
        made = requests.post(
            f"{server.url}/api/v1/projects/traced/tokens",
            json={"name": "ci", "role": "reporter"},
            headers={"Authorization": f"Bearer {admin}"},
            timeout=30,
        )
        assert made.status_code == 201, made.text
        project_token = made.json()["secret"]
        for token, uri in ((admin, server.url), (project_token, f"{server.url}/projects/traced")):
            creds = MlflowHostCreds(uri, token=token)
            version = RestStore._get_server_version.__wrapped__(creds)
            assert version == Version(modelyard.__version__), uri
            assert version < Version("3.4")
            store = RestStore(lambda creds=creds: creds)
            with pytest.raises(NotImplementedError, match=r"less than 3\.4"):
                store.log_spans("0", [object()])
        assert requests.get(f"{server.url}/version", timeout=30).status_code == 401
    finally:
        server.stop()
