"""Attacks on a live server, each reproduced the way it was found, with what the server must
answer instead: links planted in the local blob store, wrong checksums, downloads a browser
could render as pages.

Squatted package names, confusable names, unbounded fields and slow or endless requests have
modules of their own (``test_names.py``, ``test_limits.py``).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import BACKENDS, Server, run_cli

ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
MLFLOW = "/api/2.0/mlflow"
NATIVE = "/api/v1"
SECRET = b"bytes from outside the blob store " * 8


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def error_code(response: requests.Response) -> str:
    body = response.json()
    if isinstance(body.get("error"), dict):
        return str(body["error"]["code"])
    return str(body["error_code"])


class Site:
    """A fresh server on its own storage, with one candidate to put files in."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.url = server.url
        self.http = requests.Session()
        experiment = self.post("experiments/create", {"name": f"attack-{uuid.uuid4().hex[:8]}"})
        self.exp = experiment["experiment_id"]
        self.run = self.post("runs/create", {"experiment_id": self.exp})["run"]["info"]["run_id"]
        self.blobs = server.backend.data_dir / "blobs"

    def post(self, endpoint: str, body: dict[str, object]) -> dict[str, object]:
        response = self.http.post(f"{self.url}{MLFLOW}/{endpoint}", json=body, timeout=30)
        assert response.status_code == 200, (endpoint, response.text)
        return response.json()  # type: ignore[no-any-return]

    def artifact_url(self, path: str) -> str:
        return f"{self.url}{ARTIFACTS}/{self.exp}/{self.run}/artifacts/{path}"

    def put_artifact(self, path: str, data: bytes) -> requests.Response:
        return self.http.put(self.artifact_url(path), data=data, timeout=30)

    def put_package_file(self, name: str, path: str, data: bytes) -> requests.Response:
        return self.http.put(
            f"{self.url}{NATIVE}/packages/{name}/1.0.0/files/{path}", data=data, timeout=30
        )

    def downloads(self, path: str, package: str) -> dict[str, str]:
        """Every way the file's bytes can be downloaded."""
        return {
            "artifact proxy": self.artifact_url(path),
            "get-artifact": f"{self.url}{MLFLOW}/get-artifact?run_uuid={self.run}&path={path}",
            "web UI raw file": f"{self.url}/ui/runs/{self.run}/raw/{path}",
            "package file": f"{self.url}{NATIVE}/packages/{package}/1.0.0/files/{path}",
            "package archive": f"{self.url}{NATIVE}/packages/{package}/1.0.0/archive",
        }

    def blob_folder(self, digest: str) -> Path:
        return self.blobs / digest[:2] / digest[2:4]


@pytest.fixture(params=BACKENDS)
def site(make_backend, request: pytest.FixtureRequest) -> Iterator[Site]:  # type: ignore[no-untyped-def]
    server = Server(make_backend(request.param))
    try:
        yield Site(server)
    finally:
        server.stop()


def _refused_without_the_bytes(response: requests.Response, where: str) -> None:
    assert response.status_code == 500, (where, response.status_code, response.content[:200])
    assert SECRET not in response.content, where
    assert error_code(response) == "DATA_LOSS", (where, response.text)
    assert "fsck" in response.text, where


def test_a_linked_folder_in_the_blob_store_is_never_followed(site: Site, tmp_path: Path) -> None:
    """Someone with access to the store's folder swaps the folder holding a blob for a link to
    a folder of theirs, holding a file of the same name: its bytes must never be served."""
    content = b"the candidate's own bytes " * 8
    assert site.put_artifact("notes.txt", content).status_code == 200
    assert site.put_package_file("shared", "notes.txt", content).status_code == 201
    digest = sha(content)
    [stored] = site.blob_folder(digest).glob(f"{digest}-*")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / stored.name).write_bytes(SECRET)
    shutil.rmtree(site.blob_folder(digest))
    os.symlink(outside, site.blob_folder(digest))

    for where, url in site.downloads("notes.txt", "shared").items():
        _refused_without_the_bytes(site.http.get(url, timeout=30), where)

    report = run_cli(site.server, "fsck")
    assert report.returncode == 1, report.stdout
    assert "symbolic link" in report.stdout, report.stdout
    assert f"{digest[:2]}/{digest[2:4]}" in report.stdout, report.stdout
    assert str(outside) in report.stdout


def test_a_blob_replaced_by_a_link_is_refused_clearly(site: Site, tmp_path: Path) -> None:
    content = b"model weights " * 64
    assert site.put_artifact("weights.bin", content).status_code == 200
    assert site.put_package_file("weights", "weights.bin", content).status_code == 201
    digest = sha(content)
    [stored] = site.blob_folder(digest).glob(f"{digest}-*")
    planted = tmp_path / "planted.bin"
    planted.write_bytes(SECRET)
    stored.unlink()
    os.symlink(planted, stored)

    for where, url in site.downloads("weights.bin", "weights").items():
        _refused_without_the_bytes(site.http.get(url, timeout=30), where)

    report = run_cli(site.server, "fsck")
    assert report.returncode == 1
    assert f"blob {digest}" in report.stdout, report.stdout
    assert "not served" in report.stdout


def test_nothing_is_written_through_a_linked_folder(site: Site, tmp_path: Path) -> None:
    """A link planted where the next blob's folder will be: the upload fails cleanly and no
    byte lands outside the store."""
    content = os.urandom(4096)
    while (site.blobs / sha(content)[:2]).exists():
        content = os.urandom(4096)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, site.blobs / sha(content)[:2])

    for response in (
        site.put_artifact("data.bin", content),
        site.put_package_file("data", "data.bin", content),
    ):
        assert response.status_code == 500, response.text
        assert error_code(response) == "DATA_LOSS", response.text
    assert list(outside.rglob("*")) == []
    assert list((site.blobs / "tmp").iterdir()) == []
    listed = site.http.get(f"{site.url}{MLFLOW}/artifacts/list", params={"run_id": site.run})
    assert listed.json().get("files", []) == []


def test_a_checksum_mismatch_is_digest_invalid(site: Site) -> None:
    response = site.http.put(
        f"{site.url}{NATIVE}/packages/checked/1/files/a.bin",
        data=b"what arrived",
        headers={"X-Checksum-Sha256": sha(b"what was meant")},
        timeout=30,
    )
    assert response.status_code == 400
    assert error_code(response) == "DIGEST_INVALID"
    assert "Nothing was stored" in response.json()["error"]["message"]
    assert site.http.get(f"{site.url}{NATIVE}/packages/checked/1/files/a.bin").status_code == 404


def test_every_download_is_a_sandboxed_document(site: Site) -> None:
    """Downloads carry ``Content-Security-Policy: sandbox``: even a file a browser decided to
    render could run no script and reach no origin."""
    page = b"<html><script>alert(document.cookie)</script></html>"
    assert site.put_artifact("page.html", page).status_code == 200
    assert site.put_package_file("pages", "page.html", page).status_code == 201
    site.post("registered-models/create", {"name": "sandboxed"})
    site.post(
        "model-versions/create",
        {"name": "sandboxed", "source": f"runs:/{site.run}", "run_id": site.run},
    )
    urls = {
        **site.downloads("page.html", "pages"),
        "version archive": f"{site.url}{NATIVE}/models/sandboxed/versions/1/archive",
        "candidates CSV": f"{site.url}/ui/experiments/{site.exp}/candidates.csv",
    }
    for where, url in urls.items():
        response = site.http.get(url, timeout=30)
        assert response.status_code == 200, (where, response.text)
        policy = [p.strip() for p in response.headers["content-security-policy"].split(";")]
        assert "sandbox" in policy, (where, policy)
        assert "frame-ancestors 'none'" in policy, (where, policy)
        assert response.headers["x-content-type-options"] == "nosniff", where
        if where.endswith("archive"):
            with tarfile.open(fileobj=io.BytesIO(response.content)) as archive:
                assert any(m.name.endswith("page.html") for m in archive.getmembers())
    page_view = site.http.get(f"{site.url}/ui/runs/{site.run}", timeout=30)
    assert "sandbox" not in page_view.headers["content-security-policy"]


def test_a_checksum_mismatch_leaves_no_bytes_in_any_store(blob_server: Server) -> None:
    """On every database and blob store: the refused bytes are gone from the store too."""
    from tests.integration.test_artifacts import store_of

    store = store_of(blob_server)
    before = {o.location for o in store.objects()}
    response = requests.put(
        f"{blob_server.url}{NATIVE}/packages/checked-{uuid.uuid4().hex[:8]}/1/files/a.bin",
        data=os.urandom(5 << 20),
        params={"sha256": sha(b"what was meant")},
        timeout=60,
    )
    assert response.status_code == 400
    assert error_code(response) == "DIGEST_INVALID"
    assert {o.location for o in store.objects()} == before
