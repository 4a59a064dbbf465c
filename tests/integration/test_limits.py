"""Limits against live servers: free-text caps, slow and endless requests, the upload limit and
the project quota. Each attack is reproduced as it was found: a 1 MB model description was
stored whole; 2,000 slowloris connections stayed open; an endless chunked PUT was read until
the disk filled.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Iterator

import orjson
import pytest
import requests

from tests.conftest import SeaweedFS, Server, api, blob_args
from tests.integration.test_artifacts import store_of

ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
NATIVE = "/api/v1"
MIB = 1024 * 1024


def code_of(response: requests.Response) -> str:
    body = response.json()
    if isinstance(body.get("error"), dict):
        return str(body["error"]["code"])
    return str(body["error_code"])


# ---------------------------------------------------------------------------- free text


def test_free_text_is_capped_with_a_clear_error(server: Server) -> None:
    name = f"capped-{uuid.uuid4().hex[:8]}"
    huge = "x" * (1024 * 1024)
    refused = api(
        server.url, "POST", "registered-models/create", json={"name": name, "description": huge}
    )
    assert refused.status_code == 400, refused.text
    assert code_of(refused) == "INVALID_PARAMETER_VALUE"
    assert "262,144 characters" in refused.json()["message"]
    assert api(server.url, "GET", "registered-models/get", params={"name": name}).status_code == 404

    card = "# Card\n" + "y" * (256 * 1024 - 7)  # exactly at the limit
    assert api(
        server.url, "POST", "registered-models/create", json={"name": name, "description": card}
    ).ok
    longer = api(
        server.url,
        "PATCH",
        "registered-models/update",
        json={"name": name, "description": card + "!"},
    )
    assert longer.status_code == 400
    native = requests.put(
        f"{server.url}{NATIVE}/models/{name}/card", json={"markdown": card + "!"}, timeout=30
    )
    assert native.status_code == 400
    assert native.json()["error"]["code"] == "INVALID_PARAMETER_VALUE"
    kept = api(server.url, "GET", "registered-models/get", params={"name": name})
    assert kept.json()["registered_model"]["description"] == card

    exp = api(server.url, "POST", "experiments/create", json={"name": uuid.uuid4().hex}).json()
    run = api(server.url, "POST", "runs/create", json={"experiment_id": exp["experiment_id"]})
    run_id = run.json()["run"]["info"]["run_id"]
    requests.put(
        f"{server.url}{ARTIFACTS}/{exp['experiment_id']}/{run_id}/artifacts/model/w.bin",
        data=b"w",
        timeout=30,
    )
    version = {"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id}
    for extra in (
        {"description": "d" * (64 * 1024 + 1)},
        {"run_link": "https://ci.example/" + "l" * 5000},
    ):
        response = api(server.url, "POST", "model-versions/create", json={**version, **extra})
        assert response.status_code == 400, (extra.keys(), response.text)
    created = api(server.url, "POST", "model-versions/create", json=version).json()
    assert created["model_version"]["version"] == "1"  # the refused ones took no number
    too_long = api(
        server.url,
        "PATCH",
        "model-versions/update",
        json={"name": name, "version": "1", "description": "d" * (64 * 1024 + 1)},
    )
    assert too_long.status_code == 400

    user = api(
        server.url,
        "POST",
        "runs/create",
        json={"experiment_id": exp["experiment_id"], "user_id": "u" * 300},
    )
    assert user.status_code == 400
    assert "user_id" in user.json()["message"]
    inputs = api(
        server.url,
        "POST",
        "runs/log-inputs",
        json={
            "run_id": run_id,
            "datasets": [
                {
                    "dataset": {"name": "d", "digest": "1", "source_type": "local", "source": "s"},
                    "tags": [{"key": "mlflow.data.context", "value": "c" * 501}],
                }
            ],
        },
    )
    assert inputs.status_code == 400, inputs.text


# ---------------------------------------------------------------------- slow and endless


@pytest.fixture
def slow_server(make_backend) -> Iterator[Server]:  # type: ignore[no-untyped-def]
    server = Server(make_backend("sqlite"), env=env(header_timeout=2, body_timeout=2))
    yield server
    server.stop()


def _connect(server: Server) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def _closed(conn: socket.socket) -> bool:
    """Whether the server closed the connection (reading what it sent before, if anything)."""
    conn.setblocking(False)
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        conn.setblocking(True)


def test_slowloris_connections_are_closed(slow_server: Server) -> None:
    """Hundreds of connections trickle header bytes (and some send nothing at all): each is
    closed once the header deadline passes, and the server answers others meanwhile."""
    trickling = [_connect(slow_server) for _ in range(300)]
    silent = [_connect(slow_server) for _ in range(20)]
    for conn in trickling:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    start = time.monotonic()
    alive = list(trickling)
    while alive and time.monotonic() - start < 8:
        for conn in alive:
            with contextlib.suppress(OSError):
                conn.sendall(b"X-Slow: 1\r\n")
        answered = requests.get(f"{slow_server.url}/health", timeout=5)
        assert answered.status_code == 200
        time.sleep(0.5)
        alive = [c for c in alive if not _closed(c)]
    elapsed = time.monotonic() - start
    assert not alive, f"{len(alive)} slowloris connections still open after {elapsed:.1f} s"
    assert elapsed < 5
    assert all(_closed(c) for c in silent)
    for conn in trickling + silent:
        conn.close()


def test_a_request_is_answered_408_when_its_headers_stall(slow_server: Server) -> None:
    conn = _connect(slow_server)
    conn.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    conn.settimeout(10)
    answer = conn.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    conn.close()


def _put_head(conn: socket.socket, path: str, length: int | None) -> None:
    framing = (
        b"Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}".encode()
    )
    conn.sendall(
        f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        + framing
        + b"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )


def _response(conn: socket.socket) -> tuple[int, dict[str, str], bytes]:
    conn.settimeout(20)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    headers = {k.lower(): v for k, v in headers.items()}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


class Upload:
    """A candidate of a fresh server, and how to reach its artifacts and a package."""

    def __init__(self, server: Server) -> None:
        self.server = server
        exp = api(server.url, "POST", "experiments/create", json={"name": uuid.uuid4().hex})
        self.exp = exp.json()["experiment_id"]
        run = api(server.url, "POST", "runs/create", json={"experiment_id": self.exp})
        self.run = run.json()["run"]["info"]["run_id"]
        self.package = f"pkg-{uuid.uuid4().hex[:8]}"

    def targets(self) -> dict[str, str]:
        return {
            "artifact": f"{ARTIFACTS}/{self.exp}/{self.run}/artifacts/big.bin",
            "package": f"{NATIVE}/packages/{self.package}/1/files/big.bin",
        }

    def assert_nothing_left(self, before: set[str]) -> None:
        """No file recorded, no package created, no bytes left in the store."""
        listed = api(self.server.url, "GET", "artifacts/list", params={"run_id": self.run})
        assert listed.json().get("files", []) == []
        assert (
            requests.get(
                f"{self.server.url}{NATIVE}/packages/{self.package}/1", timeout=30
            ).status_code
            == 404
        )
        assert {o.location for o in store_of(self.server).objects()} == before


STORES = [("sqlite", "local"), ("postgresql", "s3")]


def env(**settings: float) -> dict[str, str]:
    """Settings as environment variables (a server without them starts all the same)."""
    return {f"MODELYARD_{name.upper()}": str(value) for name, value in settings.items()}


def _server(request: pytest.FixtureRequest, kind: str, store: str, **settings: float) -> Server:
    seaweed: SeaweedFS | None = request.getfixturevalue("seaweedfs") if store == "s3" else None
    make_backend = request.getfixturevalue("make_backend")
    server = Server(make_backend(kind), *blob_args(store, seaweed), env=env(**settings))
    server.store_kind = store
    return server


@pytest.mark.parametrize(("kind", "store"), STORES)
def test_a_stalled_body_is_dropped_with_408(
    request: pytest.FixtureRequest, kind: str, store: str
) -> None:
    server = _server(request, kind, store, body_timeout=2)
    try:
        upload = Upload(server)
        before = {o.location for o in store_of(server).objects()}
        for where, path in upload.targets().items():
            conn = _connect(server)
            _put_head(conn, path, 10 * MIB)
            conn.sendall(os.urandom(5 * MIB))  # then nothing more
            started = time.monotonic()
            status, headers, body = _response(conn)
            assert status == 408, (where, body)
            assert code_of_raw(body) == "DEADLINE_EXCEEDED", where
            assert headers.get("connection") == "close"
            assert time.monotonic() - started < 10
            conn.close()
        time.sleep(0.5)
        upload.assert_nothing_left(before)
    finally:
        server.stop()


def code_of_raw(body: bytes) -> str:
    data = orjson.loads(body)
    if isinstance(data.get("error"), dict):
        return str(data["error"]["code"])
    return str(data["error_code"])


@pytest.mark.parametrize(("kind", "store"), STORES)
def test_an_endless_upload_stops_at_the_limit(
    request: pytest.FixtureRequest, kind: str, store: str
) -> None:
    server = _server(request, kind, store, max_upload_mib=8)
    try:
        upload = Upload(server)
        before = {o.location for o in store_of(server).objects()}
        for where, path in upload.targets().items():
            conn = _connect(server)
            _put_head(conn, path, None)
            chunk = os.urandom(MIB)
            sent = 0
            status = 0
            try:
                while sent < 64 * MIB:  # the attack never ends; the server must stop it
                    conn.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                    sent += len(chunk)
            except OSError:
                pass
            status, _headers, body = _response(conn)
            assert status == 413, (where, body)
            assert code_of_raw(body) == "RESOURCE_LIMIT_EXCEEDED"
            assert sent < 32 * MIB, f"{where}: {sent} bytes read before the server stopped"
            conn.close()
            # announced up front: refused before a byte of the body is sent
            conn = _connect(server)
            _put_head(conn, path, 9 * MIB)
            status, _headers, body = _response(conn)
            assert status == 413, (where, body)
            conn.close()
        time.sleep(0.5)
        upload.assert_nothing_left(before)
        fits = requests.put(
            f"{server.url}{upload.targets()['package']}", data=b"x" * MIB, timeout=60
        )
        assert fits.status_code == 201
    finally:
        server.stop()


@pytest.mark.parametrize(("kind", "store"), STORES)
def test_the_project_quota(request: pytest.FixtureRequest, kind: str, store: str) -> None:
    server = _server(request, kind, store, project_quota_mib=3)
    try:
        upload = Upload(server)
        targets = upload.targets()
        first = os.urandom(2 * MIB)
        assert requests.put(f"{server.url}{targets['artifact']}", data=first, timeout=60).ok
        before = {o.location for o in store_of(server).objects()}
        for where, path in targets.items():
            over = requests.put(
                f"{server.url}{path.replace('big.bin', 'more.bin')}",
                data=os.urandom(2 * MIB),
                timeout=60,
            )
            assert over.status_code == 413, (where, over.text)
            assert code_of(over) == "QUOTA_EXCEEDED"
            streamed = requests.put(
                f"{server.url}{path.replace('big.bin', 'more.bin')}",
                data=iter([os.urandom(MIB) for _ in range(2)]),
                timeout=60,
            )
            assert streamed.status_code == 413, (where, streamed.text)
        assert {o.location for o in store_of(server).objects()} == before
        # promoting counts nothing more: a version's files are its candidate's
        api(server.url, "POST", "registered-models/create", json={"name": "quota"})
        promoted = api(
            server.url,
            "POST",
            "model-versions/create",
            json={"name": "quota", "source": f"runs:/{upload.run}", "run_id": upload.run},
        )
        assert promoted.ok, promoted.text
        fits = requests.put(
            f"{server.url}{targets['package']}", data=os.urandom(MIB // 2), timeout=60
        )
        assert fits.status_code == 201, fits.text
        # freeing space makes room again
        gone = requests.delete(f"{server.url}{targets['artifact']}", timeout=60)
        assert gone.ok
        again = requests.put(f"{server.url}{targets['artifact']}", data=first, timeout=60)
        assert again.ok, again.text
    finally:
        server.stop()
