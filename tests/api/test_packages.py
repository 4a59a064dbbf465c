"""The native package API against a live server, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import uuid
from collections.abc import Iterator
from http.client import HTTPConnection

import httpx
import pytest

from tests.conftest import Server, api

Client = httpx.Client


@pytest.fixture
def http(server: Server) -> Iterator[Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=60) as client:
        yield client


@pytest.fixture
def name() -> str:
    return f"pkg-{uuid.uuid4().hex[:12]}"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put(
    http: Client, name: str, version: str, path: str, data: bytes, **headers: str
) -> httpx.Response:
    return http.put(f"/packages/{name}/{version}/files/{path}", content=data, headers=headers)


def file_paths(http: Client, name: str, version: str) -> list[str]:
    response = http.get(f"/packages/{name}/{version}/files")
    assert response.status_code == 200, response.text
    return [f["path"] for f in response.json()["files"]]


def blob_files(server: Server) -> set[str]:
    root = server.backend.data_dir / "blobs"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    return str(body["error"]["code"])


def raw_status(server: Server, method: str, target: str, body: bytes = b"") -> int:
    """A request whose target is sent exactly as given (no dot-segment normalisation)."""
    conn = HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, target, body=body)
        return conn.getresponse().status
    finally:
        conn.close()


def test_upload_list_and_download(http: Client, name: str) -> None:
    weights = os.urandom(300_000)
    config = b'{"layers": 3}'
    created = put(http, name, "1.0.0", "model/weights.bin", weights)
    assert created.status_code == 201, created.text
    stored = created.json()
    assert stored["path"] == "model/weights.bin"
    assert stored["size"] == len(weights)
    assert stored["sha256"] == sha(weights)
    assert stored["media_type"] == "application/octet-stream"
    assert isinstance(stored["created_at"], int)
    response = put(
        http, name, "1.0.0", "config.json", config, **{"Content-Type": "application/json"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["media_type"] == "application/json"

    listed = http.get("/packages", params={"name": name}).json()["packages"]
    assert len(listed) == 1
    package = listed[0]
    assert package["name"] == name
    assert package["version"] == "1.0.0"
    assert package["kind"] == "generic"
    assert package["status"] == "open"
    assert package["published_at"] is None
    assert package["file_count"] == 2
    assert package["size"] == len(weights) + len(config)
    assert any(p["name"] == name for p in http.get("/packages").json()["packages"])

    detail = http.get(f"/packages/{name}/1.0.0").json()
    assert detail["file_count"] == 2
    assert [f["path"] for f in detail["files"]] == ["config.json", "model/weights.bin"]
    assert detail["files"][1] == stored
    assert file_paths(http, name, "1.0.0") == ["config.json", "model/weights.bin"]

    download = http.get(f"/packages/{name}/1.0.0/files/model/weights.bin")
    assert download.status_code == 200
    assert download.content == weights
    assert download.headers["content-length"] == str(len(weights))
    assert http.get(f"/packages/{name}/1.0.0/files/config.json").content == config


def test_replacing_a_file_and_empty_files(http: Client, name: str) -> None:
    assert put(http, name, "1", "a.txt", b"first").status_code == 201
    assert put(http, name, "1", "a.txt", b"second").status_code == 201
    assert put(http, name, "1", "empty", b"").status_code == 201
    assert http.get(f"/packages/{name}/1/files/a.txt").content == b"second"
    empty = http.get(f"/packages/{name}/1/files/empty")
    assert empty.status_code == 200
    assert empty.content == b""
    assert http.get(f"/packages/{name}/1").json()["size"] == len(b"second")


def test_pagination(http: Client, name: str) -> None:
    for version in ("1", "2", "3"):
        assert put(http, name, version, "f", version.encode()).status_code == 201
    page = http.get("/packages", params={"name": name, "limit": 2}).json()["packages"]
    assert [p["version"] for p in page] == ["3", "2"]
    rest = http.get("/packages", params={"name": name, "limit": 2, "offset": 2}).json()
    assert [p["version"] for p in rest["packages"]] == ["1"]


def test_checksum_header_and_query(http: Client, name: str) -> None:
    data = os.urandom(5000)
    ok = put(http, name, "1", "a.bin", data, **{"X-Checksum-Sha256": sha(data)})
    assert ok.status_code == 201, ok.text
    also = http.put(f"/packages/{name}/1/files/b.bin", content=data, params={"sha256": sha(data)})
    assert also.status_code == 201, also.text
    assert file_paths(http, name, "1") == ["a.bin", "b.bin"]


def test_checksum_mismatch_stores_nothing(http: Client, server: Server, name: str) -> None:
    assert put(http, name, "1", "kept.bin", b"kept").status_code == 201
    blobs_before = blob_files(server)
    data = os.urandom(7000)
    wrong = sha(b"something else")
    response = put(http, name, "1", "bad.bin", data, **{"X-Checksum-Sha256": wrong})
    assert response.status_code == 400
    assert error_code(response) == "DIGEST_INVALID"
    assert "mismatch" in response.json()["error"]["message"].lower()
    by_query = http.put(f"/packages/{name}/1/files/bad.bin", content=data, params={"sha256": wrong})
    assert by_query.status_code == 400
    assert file_paths(http, name, "1") == ["kept.bin"]
    assert blob_files(server) == blobs_before
    assert http.get(f"/packages/{name}/1/files/bad.bin").status_code == 404


@pytest.mark.parametrize("value", ["ABC", "0" * 63, "F" * 64, "g" * 64, "0" * 65])
def test_malformed_checksum(http: Client, name: str, value: str) -> None:
    response = put(http, name, "1", "a.bin", b"data", **{"X-Checksum-Sha256": value})
    assert response.status_code == 400
    assert error_code(response) == "INVALID_PARAMETER_VALUE"
    assert http.get(f"/packages/{name}/1/files/a.bin").status_code == 404


def test_etag_and_if_none_match(http: Client, name: str) -> None:
    data = b"conditional bytes"
    put(http, name, "1", "c.bin", data)
    url = f"/packages/{name}/1/files/c.bin"
    first = http.get(url)
    assert first.headers["etag"] == f'"{sha(data)}"'
    etag = first.headers["etag"]
    for tag in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        again = http.get(url, headers={"If-None-Match": tag})
        assert again.status_code == 304, tag
        assert again.content == b""
        assert again.headers["etag"] == etag
    stale = http.get(url, headers={"If-None-Match": f'"{sha(b"old")}"'})
    assert stale.status_code == 200
    assert stale.content == data


def test_range_requests(http: Client, name: str) -> None:
    data = bytes(range(256)) * 40
    size = len(data)
    put(http, name, "1", "r.bin", data)
    url = f"/packages/{name}/1/files/r.bin"
    cases = {
        "bytes=2-5": (2, 6),
        "bytes=100-": (100, size),
        "bytes=-10": (size - 10, size),
        f"bytes=0-{size + 500}": (0, size),
    }
    for header, (start, end) in cases.items():
        part = http.get(url, headers={"Range": header})
        assert part.status_code == 206, header
        assert part.content == data[start:end], header
        assert part.headers["content-range"] == f"bytes {start}-{end - 1}/{size}"
        assert part.headers["content-length"] == str(end - start)
    etag = f'"{sha(data)}"'
    current = http.get(url, headers={"Range": "bytes=0-0", "If-Range": etag})
    assert current.status_code == 206
    assert current.content == data[:1]
    stale = http.get(url, headers={"Range": "bytes=0-0", "If-Range": f'"{sha(b"x")}"'})
    assert stale.status_code == 200
    assert stale.content == data


def test_unsatisfiable_range(http: Client, name: str) -> None:
    put(http, name, "1", "ten.bin", b"0123456789")
    for header in ("bytes=10-20", "bytes=100-", "bytes=-0"):
        response = http.get(f"/packages/{name}/1/files/ten.bin", headers={"Range": header})
        assert response.status_code == 416, header
        assert response.headers["content-range"] == "bytes */10"
        assert error_code(response) == "RANGE_NOT_SATISFIABLE"


def test_download_headers_and_head(http: Client, name: str) -> None:
    data = b"weights" * 100
    put(http, name, "1", "deep/folder/model weights.bin", data)
    url = f"/packages/{name}/1/files/deep/folder/model weights.bin"
    response = http.get(url)
    assert response.headers["content-disposition"] == 'attachment; filename="model weights.bin"'
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["accept-ranges"] == "bytes"
    head = http.head(url)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(data))
    assert head.headers["etag"] == f'"{sha(data)}"'


@pytest.mark.parametrize(
    ("path", "declared"),
    [
        ("evil.html", "text/html"),
        ("evil.htm", ""),
        ("page.xhtml", "application/xhtml+xml"),
        ("icon.svg", "image/svg+xml"),
        ("data.xml", "text/xml"),
        ("script.js", "text/javascript"),
        ("module.mjs", "application/javascript"),
    ],
)
def test_active_content_is_served_as_bytes(
    http: Client, name: str, path: str, declared: str
) -> None:
    body = b"<html><script>alert(1)</script></html>"
    headers = {"Content-Type": declared} if declared else {}
    assert put(http, name, "1", path, body, **headers).status_code == 201
    response = http.get(f"/packages/{name}/1/files/{path}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.content == body


def test_harmless_media_types_are_kept(http: Client, name: str) -> None:
    put(http, name, "1", "a.json", b"{}", **{"Content-Type": "application/json"})
    put(http, name, "1", "b.png", b"\x89PNG", **{"Content-Type": "image/png"})
    assert http.get(f"/packages/{name}/1/files/a.json").headers["content-type"] == (
        "application/json; charset=utf-8"
    )
    assert http.get(f"/packages/{name}/1/files/b.png").headers["content-type"] == "image/png"


def test_a_declared_type_is_never_echoed(http: Client, name: str) -> None:
    """The type a download is served with comes from the file's name, not the uploader."""
    put(http, name, "1", "notes.txt", b"<b>hi</b>", **{"Content-Type": "text/html"})
    put(http, name, "1", "blob", b"\x00\x01", **{"Content-Type": "image/png"})
    notes = http.get(f"/packages/{name}/1/files/notes.txt")
    assert notes.headers["content-type"] == "text/plain; charset=utf-8"
    assert notes.content == b"<b>hi</b>"
    assert http.get(f"/packages/{name}/1/files/blob").headers["content-type"] == (
        "application/octet-stream"
    )


def read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    extracted = tar.extractfile(member)
    assert extracted is not None
    return extracted.read()


def test_archive(http: Client, name: str) -> None:
    contents = {
        "README.md": b"# model\n",
        "model/weights.bin": os.urandom(3 * 1024 * 1024 + 123),
        "model/empty": b"",
        "model/tiny": b"x",
        "données/é.txt": "unicode ✓".encode(),
        "/".join(["long-folder-name"] * 8) + "/file.txt": b"deep",
    }
    for path, data in contents.items():
        assert put(http, name, "2.0", path, data).status_code == 201, path
    response = http.get(f"/packages/{name}/2.0/archive")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-tar"
    assert response.headers["content-disposition"] == f'attachment; filename="{name}-2.0.tar"'
    assert response.headers["content-length"] == str(len(response.content))
    assert len(response.content) % 512 == 0
    assert response.content.endswith(bytes(1024))

    with tarfile.open(fileobj=io.BytesIO(response.content)) as tar:
        members = tar.getmembers()
        root = f"{name}-2.0"
        listed = file_paths(http, name, "2.0")
        assert sorted(listed) == sorted(contents)
        assert [m.name for m in members] == [f"{root}/SHA256SUMS"] + [f"{root}/{p}" for p in listed]
        for member in members:
            assert member.isfile()
            assert member.mode == 0o644
            assert member.mtime > 1_600_000_000
        extracted = {m.name.removeprefix(f"{root}/"): read_member(tar, m) for m in members}
    manifest = extracted.pop("SHA256SUMS").decode()
    assert extracted == contents
    lines = manifest.splitlines()
    assert len(lines) == len(contents)
    for line in lines:
        digest, path = line.split("  ", 1)
        assert digest == sha(contents[path])

    head = http.head(f"/packages/{name}/2.0/archive")
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(response.content))
    assert head.content == b""


def test_archive_of_an_empty_package(http: Client, name: str) -> None:
    put(http, name, "1", "only", b"x")
    assert http.delete(f"/packages/{name}/1/files/only").status_code == 204
    response = http.get(f"/packages/{name}/1/archive")
    assert response.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(response.content)) as tar:
        (member,) = tar.getmembers()
        assert member.name == f"{name}-1/SHA256SUMS"
        assert member.size == 0


def test_publish_freezes(http: Client, name: str) -> None:
    put(http, name, "1", "a/b.txt", b"frozen")
    published = http.post(f"/packages/{name}/1/publish")
    assert published.status_code == 200, published.text
    body = published.json()
    assert body["status"] == "published"
    assert isinstance(body["published_at"], int)
    assert body["file_count"] == 1
    assert body["size"] == len(b"frozen")

    for response in (
        put(http, name, "1", "a/b.txt", b"changed"),
        put(http, name, "1", "new.txt", b"new"),
        http.delete(f"/packages/{name}/1/files/a/b.txt"),
        http.delete(f"/packages/{name}/1/files/a"),
    ):
        assert response.status_code == 409
        assert error_code(response) == "RESOURCE_CONFLICT"
    again = http.post(f"/packages/{name}/1/publish")
    assert again.status_code == 200
    assert again.json()["published_at"] == body["published_at"]
    assert file_paths(http, name, "1") == ["a/b.txt"]
    assert http.get(f"/packages/{name}/1/files/a/b.txt").content == b"frozen"


def test_delete_files_and_folders(http: Client, name: str) -> None:
    for path in ("keep.txt", "dir/a", "dir/sub/b", "dirty"):
        put(http, name, "1", path, path.encode())
    assert http.delete(f"/packages/{name}/1/files/dir/a").status_code == 204
    assert file_paths(http, name, "1") == ["dir/sub/b", "dirty", "keep.txt"]
    assert http.delete(f"/packages/{name}/1/files/dir").status_code == 204
    assert file_paths(http, name, "1") == ["dirty", "keep.txt"]
    missing = http.delete(f"/packages/{name}/1/files/dir")
    assert missing.status_code == 404
    assert error_code(missing) == "RESOURCE_DOES_NOT_EXIST"


def test_file_and_folder_clash(http: Client, name: str) -> None:
    put(http, name, "1", "a/b", b"file")
    assert put(http, name, "1", "a", b"over a folder").status_code == 400
    assert put(http, name, "1", "a/b/c", b"under a file").status_code == 400
    assert file_paths(http, name, "1") == ["a/b"]


def test_delete_version(http: Client, name: str) -> None:
    put(http, name, "1", "a.txt", b"gone soon")
    put(http, name, "2", "a.txt", b"stays")
    assert http.delete(f"/packages/{name}/1").status_code == 204
    for response in (
        http.get(f"/packages/{name}/1"),
        http.get(f"/packages/{name}/1/files"),
        http.get(f"/packages/{name}/1/files/a.txt"),
        http.get(f"/packages/{name}/1/archive"),
        http.post(f"/packages/{name}/1/publish"),
        http.delete(f"/packages/{name}/1"),
    ):
        assert response.status_code == 404
        assert error_code(response) == "RESOURCE_DOES_NOT_EXIST"
    listed = http.get("/packages", params={"name": name}).json()["packages"]
    assert [p["version"] for p in listed] == ["2"]
    reused = put(http, name, "1", "a.txt", b"again")
    assert reused.status_code == 409
    assert error_code(reused) == "RESOURCE_CONFLICT"
    assert http.get(f"/packages/{name}/2/files/a.txt").content == b"stays"


def test_published_version_can_be_deleted(http: Client, name: str) -> None:
    put(http, name, "1", "a.txt", b"x")
    http.post(f"/packages/{name}/1/publish")
    assert http.delete(f"/packages/{name}/1").status_code == 204
    assert http.get(f"/packages/{name}/1").status_code == 404


def test_candidate_package_cannot_be_deleted(http: Client, server: Server) -> None:
    experiment = api(server.url, "POST", "experiments/create", json={"name": uuid.uuid4().hex})
    experiment_id = experiment.json()["experiment_id"]
    run = api(server.url, "POST", "runs/create", json={"experiment_id": experiment_id})
    run_id = run.json()["run"]["info"]["run_id"]
    uploaded = httpx.put(
        f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/m.txt",
        content=b"candidate file",
        timeout=30,
    )
    assert uploaded.status_code == 200, uploaded.text
    package = http.get(f"/packages/{run_id}/0")
    assert package.status_code == 200
    assert package.json()["kind"] == "candidate"
    refused = http.delete(f"/packages/{run_id}/0")
    assert refused.status_code == 409
    assert error_code(refused) == "RESOURCE_CONFLICT"
    assert "candidate" in refused.json()["error"]["message"]
    assert http.get(f"/packages/{run_id}/0/files/m.txt").content == b"candidate file"


def test_missing_things(http: Client, name: str) -> None:
    for response in (
        http.get(f"/packages/{name}/1"),
        http.get(f"/packages/{name}/1/files"),
        http.get(f"/packages/{name}/1/files/a"),
        http.delete(f"/packages/{name}/1/files/a"),
        http.get(f"/packages/{name}/1/archive"),
        http.post(f"/packages/{name}/1/publish"),
        http.delete(f"/packages/{name}/1"),
    ):
        assert response.status_code == 404
        assert error_code(response) == "RESOURCE_DOES_NOT_EXIST"
    put(http, name, "1", "a", b"a")
    assert http.get(f"/packages/{name}/1/files/b").status_code == 404
    assert http.get("/packages", params={"name": f"{name}-none"}).json() == {"packages": []}


@pytest.mark.parametrize(
    ("package", "version"),
    [
        ("-leading-dash", "1"),
        (".hidden", "1"),
        ("has space", "1"),
        ("x" * 256, "1"),
        ("ok", "+1"),
        ("ok", "_1"),
        ("ok", "1 0"),
        ("ok", "v" * 129),
        ("ok", "1~rc"),
    ],
)
def test_bad_names_and_versions(http: Client, package: str, version: str) -> None:
    base = f"/packages/{package}/{version}"
    for response in (
        http.put(f"{base}/files/a.txt", content=b"x"),
        http.get(base),
        http.get(f"{base}/files"),
        http.get(f"{base}/files/a.txt"),
        http.get(f"{base}/archive"),
        http.post(f"{base}/publish"),
        http.delete(base),
    ):
        assert response.status_code == 400, (response.request.method, response.request.url)
        assert error_code(response) == "INVALID_PARAMETER_VALUE"


@pytest.mark.parametrize(
    "path",
    [
        "%2e%2e/x",
        "%252e%252e/x",
        "a/%2e%2e/b",
        "a%5Cb",
        "a\\b",
        "%5C%5Cserver/x",
        "C:/x",
        "a%0ab",
        "a%00b",
        "%250a",
        "a%3Fb",
        "a%23b",
    ],
)
def test_bad_paths(http: Client, name: str, path: str) -> None:
    put(http, name, "1", "ok", b"ok")
    url = f"/packages/{name}/1/files/{path}"
    for response in (
        http.put(url, content=b"x"),
        http.get(url),
        http.delete(url),
    ):
        assert response.status_code == 400, (response.request.method, path)
        assert error_code(response) == "INVALID_PARAMETER_VALUE"
    assert file_paths(http, name, "1") == ["ok"]


@pytest.mark.parametrize("path", ["../x", "a/../../x", "./x", "a//b", "a\\b", "a/./b"])
def test_dot_segments_sent_verbatim(server: Server, http: Client, name: str, path: str) -> None:
    put(http, name, "1", "ok", b"ok")
    target = f"/api/v1/packages/{name}/1/files/{path}"
    for method in ("PUT", "GET", "DELETE"):
        assert raw_status(server, method, target, b"x" if method == "PUT" else b"") == 400
    assert file_paths(http, name, "1") == ["ok"]


def test_empty_path_is_refused(http: Client, name: str) -> None:
    put(http, name, "1", "ok", b"ok")
    assert http.put(f"/packages/{name}/1/files/", content=b"x").status_code == 400
    assert http.delete(f"/packages/{name}/1/files/").status_code == 400
    assert file_paths(http, name, "1") == ["ok"]


@pytest.mark.parametrize(
    "params", [{"limit": "0"}, {"limit": "1001"}, {"limit": "ten"}, {"offset": "-1"}]
)
def test_bad_listing_parameters(http: Client, params: dict[str, str]) -> None:
    response = http.get("/packages", params=params)
    assert response.status_code == 400
    assert error_code(response) == "INVALID_PARAMETER_VALUE"
