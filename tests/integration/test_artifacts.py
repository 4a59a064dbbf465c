"""The real mlflow client logging, listing and downloading artifacts through the server, on every
(database, blob store) pair: SQLite or PostgreSQL, a local folder or S3 (SeaweedFS)."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest
import requests

from modelyard.blobs import open_blob_store
from modelyard.settings import Settings
from tests.conftest import Server

BIG_MIB = int(os.environ.get("MODELYARD_TEST_BIG_MIB", "1024"))


@pytest.fixture
def blob_client(blob_server: Server, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    import mlflow
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", blob_server.url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(blob_server.url)
    yield MlflowClient(blob_server.url)
    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture
def run_id(blob_client) -> str:  # type: ignore[no-untyped-def]
    experiment = blob_client.create_experiment(f"art-{uuid.uuid4().hex[:10]}")
    return str(blob_client.create_run(experiment).info.run_id)


def store_of(server: Server):  # type: ignore[no-untyped-def]
    """The server's blob store, opened with the server's own settings (to measure it)."""
    options = dict(zip(server.extra[::2], server.extra[1::2], strict=True))
    return open_blob_store(
        Settings.load(
            data_dir=server.backend.data_dir,
            blob_store_url=options.get("--blob-store-url"),
            s3_endpoint_url=options.get("--s3-endpoint-url"),
            s3_access_key_id=options.get("--s3-access-key-id"),
            s3_secret_access_key=options.get("--s3-secret-access-key"),
        )
    )


def sha256_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(8 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): sha256_of(p) for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_nested_folders_round_trip(blob_client, run_id: str, tmp_path: Path) -> None:
    source = tmp_path / "src"
    for rel, content in {
        "model/weights.bin": os.urandom(70_000),
        "model/config/params.yaml": b"alpha: 0.5\n",
        "notes.txt": "naïve — unicode ✓".encode(),
        "deep/a/b/c/d/leaf.json": b'{"x": 1}',
        "with space/and%percent.txt": b"odd names",
        "empty.txt": b"",
    }.items():
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_bytes(content)
    blob_client.log_artifacts(run_id, str(source), artifact_path="bundle")

    top = blob_client.list_artifacts(run_id)
    assert [(f.path, f.is_dir) for f in top] == [("bundle", True)]
    inner = {f.path: (f.is_dir, f.file_size) for f in blob_client.list_artifacts(run_id, "bundle")}
    assert inner == {
        "bundle/deep": (True, None),
        "bundle/empty.txt": (False, 0),
        "bundle/model": (True, None),
        "bundle/notes.txt": (False, len("naïve — unicode ✓".encode())),
        "bundle/with space": (True, None),
    }
    assert blob_client.list_artifacts(run_id, "bundle/notes.txt") == []
    assert blob_client.list_artifacts(run_id, "nowhere") == []

    target = Path(blob_client.download_artifacts(run_id, "bundle", str(tmp_path / "dst")))
    assert tree(target) == tree(source)
    single = blob_client.download_artifacts(
        run_id, "bundle/model/weights.bin", str(tmp_path / "one")
    )
    assert sha256_of(Path(single)) == sha256_of(source / "model/weights.bin")


def test_fluent_logging_and_loading(blob_client, tmp_path: Path) -> None:
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    import numpy as np

    experiment = blob_client.create_experiment(f"fluent-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_text("hello, artifacts", "texts/hello.txt")
        mlflow.log_dict({"a": [1, 2, 3], "b": {"c": "d"}}, "config.json")
        mlflow.log_dict({"k": "v"}, "config.yaml")
        mlflow.log_image(np.full((8, 8, 3), 200, dtype=np.uint8), "images/grey.png")
        figure, axes = plt.subplots()
        axes.plot([1, 2, 3], [3, 1, 2])
        mlflow.log_figure(figure, "figures/line.png")
        plt.close(figure)
    uri = f"runs:/{run.info.run_id}"
    assert mlflow.artifacts.load_text(f"{uri}/texts/hello.txt") == "hello, artifacts"
    assert mlflow.artifacts.load_dict(f"{uri}/config.json") == {"a": [1, 2, 3], "b": {"c": "d"}}
    assert mlflow.artifacts.load_text(f"{uri}/config.yaml").strip() == "k: v"
    image = mlflow.artifacts.load_image(f"{uri}/images/grey.png")
    assert image.size == (8, 8)
    assert image.getpixel((3, 3))[:3] == (200, 200, 200)
    names = {f.path for f in mlflow.artifacts.list_artifacts(run_id=run.info.run_id)}
    assert names == {"texts", "config.json", "config.yaml", "images", "figures"}
    figure_path = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{uri}/figures/line.png", dst_path=str(tmp_path)
    )
    assert Path(figure_path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_many_small_files(blob_client, run_id: str, tmp_path: Path) -> None:
    source = tmp_path / "many"
    for i in range(400):
        path = source / f"group-{i % 8}" / f"file-{i:04d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{i}:".encode() + os.urandom(i % 97))
    blob_client.log_artifacts(run_id, str(source))
    assert len(blob_client.list_artifacts(run_id, "group-3")) == 50
    target = Path(blob_client.download_artifacts(run_id, "", str(tmp_path / "back")))
    assert tree(target) == tree(source)


def test_big_file_byte_exact(blob_server: Server, blob_client, run_id: str, tmp_path: Path) -> None:
    """A 1 GiB file (MODELYARD_TEST_BIG_MIB) up and down. On S3 the client uses the presigned
    multipart protocol the server advertises, so the bytes bypass the server."""
    big = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    with big.open("wb") as f:
        for i in range(BIG_MIB):
            f.write(i.to_bytes(8, "little") + block[8:])
    blob_client.log_artifact(run_id, str(big), artifact_path="weights")
    listed = blob_client.list_artifacts(run_id, "weights")
    assert [(f.path, f.file_size) for f in listed] == [("weights/big.bin", BIG_MIB << 20)]
    expected = sha256_of(big)
    big.unlink()
    back = blob_client.download_artifacts(run_id, "weights/big.bin", str(tmp_path / "dl"))
    assert sha256_of(Path(back)) == expected
    info = requests.get(f"{blob_server.url}/api/3.0/mlflow/server-info", timeout=10).json()
    assert info["multipart_uploads_enabled"] is (blob_server.store_kind == "s3")


def test_proxied_transfer_through_the_server(
    blob_client, run_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With presigned transfers turned off on the client, bytes stream through the server
    (on S3: the server's own multipart writer, several parts)."""
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "false")
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "false")
    data = tmp_path / "mid.bin"
    data.write_bytes(os.urandom(27 << 20))
    blob_client.log_artifact(run_id, str(data))
    back = blob_client.download_artifacts(run_id, "mid.bin", str(tmp_path / "dl"))
    assert sha256_of(Path(back)) == sha256_of(data)


def test_same_bytes_are_stored_once(blob_server: Server, blob_client, tmp_path: Path) -> None:
    """The same 100 MiB file logged to 10 candidates occupies about 100 MiB of blob storage."""
    experiment = blob_client.create_experiment(f"dedup-{uuid.uuid4().hex[:8]}")
    data = tmp_path / "shared.bin"
    data.write_bytes(os.urandom(100 << 20))
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    store = store_of(blob_server)
    before = {o.location: o.size for o in store.objects()}
    runs = [blob_client.create_run(experiment).info.run_id for _ in range(10)]
    for run in runs:
        blob_client.log_artifact(run, str(data))
    after = {o.location: o.size for o in store.objects()}
    added = sum(size for loc, size in after.items() if loc not in before)
    assert added == 100 << 20
    for run in (runs[0], runs[-1]):
        back = blob_client.download_artifacts(run, "shared.bin", str(tmp_path / run))
        assert hashlib.sha256(Path(back).read_bytes()).hexdigest() == digest


def test_delete_and_overwrite(
    blob_server: Server, blob_client, run_id: str, tmp_path: Path
) -> None:
    import mlflow

    mlflow.log_text("one", "dir/a.txt", run_id=run_id)
    mlflow.log_text("two", "dir/b.txt", run_id=run_id)
    mlflow.log_text("three", "keep.txt", run_id=run_id)
    mlflow.log_text("one, again", "dir/a.txt", run_id=run_id)
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/dir/a.txt") == "one, again"
    experiment = blob_client.get_run(run_id).info.experiment_id
    base = f"{blob_server.url}/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run_id}/artifacts"
    assert requests.delete(f"{base}/dir/b.txt", timeout=10).status_code == 200
    assert [f.path for f in blob_client.list_artifacts(run_id, "dir")] == ["dir/a.txt"]
    assert requests.delete(f"{base}/dir", timeout=10).status_code == 200
    assert [f.path for f in blob_client.list_artifacts(run_id)] == ["keep.txt"]
    missing = requests.get(f"{base}/dir/a.txt", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_writing_over_a_folder_or_under_a_file_is_refused(
    blob_server: Server, blob_client, run_id: str
) -> None:
    import mlflow

    mlflow.log_text("x", "a/b.txt", run_id=run_id)
    experiment = blob_client.get_run(run_id).info.experiment_id
    base = f"{blob_server.url}/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run_id}/artifacts"
    over = requests.put(f"{base}/a", data=b"y", timeout=10)
    assert over.status_code == 400
    assert over.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    under = requests.put(f"{base}/a/b.txt/c", data=b"y", timeout=10)
    assert under.status_code == 400
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/a/b.txt") == "x"


def test_unknown_run_and_wrong_experiment(blob_server: Server, run_id: str) -> None:
    base = f"{blob_server.url}/api/2.0/mlflow-artifacts/artifacts"
    nobody = requests.put(f"{base}/0/{uuid.uuid4().hex}/artifacts/x.txt", data=b"x", timeout=10)
    assert nobody.status_code == 404
    assert nobody.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    wrong = requests.put(f"{base}/999999/{run_id}/artifacts/x.txt", data=b"x", timeout=10)
    assert wrong.status_code == 404
    outside = requests.put(f"{base}/loose-file.txt", data=b"x", timeout=10)
    assert outside.status_code == 400


def test_multipart_answers_not_implemented_without_presigned_store(
    blob_server: Server, run_id: str, blob_client
) -> None:
    if blob_server.store_kind == "s3":
        pytest.skip("S3 supports presigned multipart uploads")
    experiment = blob_client.get_run(run_id).info.experiment_id
    response = requests.post(
        f"{blob_server.url}/api/2.0/mlflow-artifacts/mpu/create/{experiment}/{run_id}/artifacts",
        json={"path": "/tmp/x.bin", "num_parts": 2},
        timeout=10,
    )
    assert response.status_code == 501
    assert response.json()["message"].startswith(
        "Multipart upload is not supported for the current artifact repository"
    )


def test_experiment_artifact_location_is_chosen_by_the_server(blob_server: Server) -> None:
    response = requests.post(
        f"{blob_server.url}/api/2.0/mlflow/experiments/create",
        json={"name": f"loc-{uuid.uuid4().hex[:8]}", "artifact_location": "s3://elsewhere/x"},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_run_artifacts_list_and_get_artifact(blob_server: Server, run_id: str) -> None:
    import mlflow

    mlflow.log_text("payload", "sub/file.txt", run_id=run_id)
    listed = requests.get(
        f"{blob_server.url}/api/2.0/mlflow/artifacts/list",
        params={"run_id": run_id, "path": "sub"},
        timeout=10,
    ).json()
    assert listed["root_uri"].endswith(f"/{run_id}/artifacts")
    assert listed["files"] == [{"path": "sub/file.txt", "is_dir": False, "file_size": 7}]
    fetched = requests.get(
        f"{blob_server.url}/get-artifact",
        params={"run_id": run_id, "path": "sub/file.txt"},
        timeout=10,
    )
    assert fetched.status_code == 200
    assert fetched.content == b"payload"
    assert fetched.headers["x-content-type-options"] == "nosniff"
