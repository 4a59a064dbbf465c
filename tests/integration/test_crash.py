"""Crash safety: the server is killed with SIGKILL at random points of a large upload, many
times. After each restart no file is visible with missing or short bytes; after
``modelyard gc`` the store passes ``modelyard fsck``; and the same upload then succeeds."""

from __future__ import annotations

import hashlib
import http.client
import os
import random
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests.conftest import SeaweedFS, Server, blob_args, run_cli

ROUNDS = int(os.environ.get("MODELYARD_CRASH_ROUNDS", "8"))
SIZE = 192 << 20
BLOCK = os.urandom(1 << 20)


def body() -> Iterator[bytes]:
    for i in range(SIZE >> 20):
        yield i.to_bytes(8, "little") + BLOCK[8:]


def expected_sha256() -> str:
    hasher = hashlib.sha256()
    for chunk in body():
        hasher.update(chunk)
    return hasher.hexdigest()


def upload(server: Server, path: str, outcome: list[object]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    try:
        conn.putrequest("PUT", f"/api/2.0/mlflow-artifacts/artifacts/{path}")
        conn.putheader("Content-Length", str(SIZE))
        conn.endheaders()
        for chunk in body():
            conn.send(chunk)
        outcome.append(conn.getresponse().status)
    except OSError as exc:
        outcome.append(exc)
    finally:
        conn.close()


def visible_files_are_whole(server: Server, experiment: str, run_id: str, digest: str) -> bool:
    """Every listed file downloads completely; returns whether big.bin is there."""
    base = f"{server.url}/api/2.0/mlflow-artifacts/artifacts"
    listing = requests.get(
        base, params={"path": f"{experiment}/{run_id}/artifacts"}, timeout=30
    ).json()
    files = {f["path"]: f.get("file_size") for f in listing.get("files", [])}
    assert set(files) <= {"big.bin"}
    if "big.bin" not in files:
        return False
    assert files["big.bin"] == SIZE
    hasher = hashlib.sha256()
    with requests.get(
        f"{base}/{experiment}/{run_id}/artifacts/big.bin", stream=True, timeout=120
    ) as r:
        assert r.status_code == 200
        for chunk in r.iter_content(1 << 20):
            hasher.update(chunk)
    assert hasher.hexdigest() == digest
    return True


@pytest.mark.parametrize(("kind", "store"), [("sqlite", "local"), ("postgresql", "s3")])
def test_sigkill_during_uploads(
    make_backend, request: pytest.FixtureRequest, kind: str, store: str
) -> None:  # type: ignore[no-untyped-def]
    seaweed: SeaweedFS | None = request.getfixturevalue("seaweedfs") if store == "s3" else None
    backend = make_backend(kind)
    extra = blob_args(store, seaweed)
    server = Server(backend, *extra)
    digest = expected_sha256()
    rng = random.Random(20261128)
    try:
        experiment = requests.post(
            f"{server.url}/api/2.0/mlflow/experiments/create", json={"name": "crash"}, timeout=30
        ).json()["experiment_id"]
        run_id = requests.post(
            f"{server.url}/api/2.0/mlflow/runs/create",
            json={"experiment_id": experiment},
            timeout=30,
        ).json()["run"]["info"]["run_id"]
        path = f"{experiment}/{run_id}/artifacts/big.bin"
        for _ in range(ROUNDS):
            outcome: list[object] = []
            sender = threading.Thread(target=upload, args=(server, path, outcome))
            sender.start()
            time.sleep(rng.uniform(0.05, 2.5 if store == "local" else 6.0))
            server.kill()
            sender.join(timeout=120)
            server = Server(backend, *extra)
            visible_files_are_whole(server, experiment, run_id, digest)
            requests.delete(f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{path}", timeout=30)
        server.stop()
        collected = run_cli(server, "gc", "--orphan-grace", "0", "--older-than", "0")
        assert collected.returncode == 0, collected.stderr
        checked = run_cli(server, "fsck")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "clean" in checked.stdout
        server = Server(backend, *extra)
        outcome = []
        upload(server, path, outcome)
        assert outcome == [200]
        assert visible_files_are_whole(server, experiment, run_id, digest)
    finally:
        server.stop()
