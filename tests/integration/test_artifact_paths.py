"""Every path-attack shape, on every artifact route of both prefixes, is refused with
INVALID_PARAMETER_VALUE, and nothing outside the package is read, written or deleted."""

from __future__ import annotations

import hashlib
import http.client
import json
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import Server

SECRET = b"the other candidate's secret " + uuid.uuid4().hex.encode()
PREFIXES = ["/api/2.0", "/ajax-api/2.0"]


def shapes(other: str) -> dict[str, str]:
    """Raw URL tails after ``<exp>/<run>/artifacts/``, each trying to leave the package."""
    return {
        "dot-dot": f"../../{other}/artifacts/secret.txt",
        "dot-dot-encoded": f"%2e%2e/%2E%2E/{other}/artifacts/secret.txt",
        "dot-dot-double-encoded": f"%252e%252e/%252e%252e/{other}/artifacts/secret.txt",
        "dot-dot-triple-encoded": f"%25252e%25252e/{other}/artifacts/secret.txt",
        "encoded-slashes": f"..%2f..%2f{other}%2fartifacts%2fsecret.txt",
        "double-encoded-slashes": f"..%252f..%252f{other}%252fartifacts%252fsecret.txt",
        "absolute": "/etc/passwd",
        "absolute-encoded": "%2fetc%2fpasswd",
        "drive-letter": "C:/Windows/win.ini",
        "drive-letter-encoded": "C%3a%5cWindows%5cwin.ini",
        "backslashes": f"..\\..\\{other}\\artifacts\\secret.txt",
        "backslashes-encoded": f"..%5c..%5c{other}%5cartifacts%5csecret.txt",
        "question-mark": f"x%3f/../../../{other}/artifacts/secret.txt",
        "hash": f"x%23/../../../{other}/artifacts/secret.txt",
        "nul-byte": "innocent.txt%00.png",
        "nul-byte-double-encoded": "innocent.txt%2500.png",
        "dot-segment": "./secret.txt",
        "empty-segment": "a//b.txt",
        "control-character": "a%0ab.txt",
    }


def raw(server: Server, method: str, target: str, body: bytes | None = None) -> tuple[int, bytes]:
    """A request whose path is sent exactly as written (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        headers = {"Content-Type": "application/json"} if method == "POST" else {}
        conn.request(method, target, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def snapshot(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith("modelyard.db") and not p.name.endswith(".log")
    }


@pytest.fixture
def two_runs(server: Server, client, experiment_id: str):  # type: ignore[no-untyped-def]
    import mlflow

    mine = client.create_run(experiment_id).info.run_id
    other = client.create_run(experiment_id).info.run_id
    mlflow.log_text("mine", "innocent.txt", run_id=mine)
    mlflow.log_text(SECRET.decode(), "secret.txt", run_id=other)
    outside = server.backend.data_dir.parent / f"outside-{uuid.uuid4().hex[:6]}.txt"
    outside.write_bytes(b"outside the store")
    return mine, other, outside


def requests_for(prefix: str, base: str, tail: str) -> list[tuple[str, str, bytes | None]]:
    arts = f"{prefix}/mlflow-artifacts"
    return [
        ("PUT", f"{arts}/artifacts/{base}/{tail}", b"overwrite attempt"),
        ("GET", f"{arts}/artifacts/{base}/{tail}", None),
        ("DELETE", f"{arts}/artifacts/{base}/{tail}", None),
        ("GET", f"{arts}/artifacts?path={quote(base + '/' + tail, safe='')}", None),
        ("GET", f"{arts}/presigned/{base}/{tail}", None),
        (
            "POST",
            f"{arts}/mpu/create/{base}/{tail}",
            json.dumps({"path": "x", "num_parts": 1}).encode(),
        ),
    ]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_path_attacks_are_refused(
    server: Server, client, experiment_id: str, two_runs, prefix: str
) -> None:  # type: ignore[no-untyped-def]
    import mlflow

    mine, other, outside = two_runs
    base = f"{experiment_id}/{mine}/artifacts"
    data_dir = server.backend.data_dir
    before = snapshot(data_dir)
    for name, tail in shapes(other).items():
        for method, target, body in requests_for(prefix, base, tail):
            status, payload = raw(server, method, target, body)
            where = f"{name}: {method} {target}"
            assert status == 400, f"{where} -> {status} {payload[:200]!r}"
            assert json.loads(payload)["error_code"] == "INVALID_PARAMETER_VALUE", where
            assert SECRET not in payload, where
    for name, tail in shapes(other).items():
        for route in ("mlflow/artifacts/list", "mlflow/get-artifact"):
            status, payload = raw(
                server, "GET", f"{prefix}/{route}?run_id={mine}&path={quote(tail, safe='')}"
            )
            assert status == 400, f"{name}: {route} -> {status} {payload[:200]!r}"
            assert SECRET not in payload
    assert snapshot(data_dir) == before
    assert outside.read_bytes() == b"outside the store"
    assert mlflow.artifacts.load_text(f"runs:/{other}/secret.txt") == SECRET.decode()
    assert mlflow.artifacts.load_text(f"runs:/{mine}/innocent.txt") == "mine"
    assert [f.path for f in client.list_artifacts(other)] == ["secret.txt"]


def test_names_that_only_look_odd_are_kept(server: Server, client, experiment_id: str) -> None:  # type: ignore[no-untyped-def]
    """A lone percent sign, dots inside names and unicode are ordinary characters."""
    import mlflow

    run = client.create_run(experiment_id).info.run_id
    for name in ("100%.txt", "a..b.txt", "...", "naïve résumé.txt"):
        mlflow.log_text(name, f"odd/{name}", run_id=run)
    listed = sorted(f.path for f in client.list_artifacts(run, "odd"))
    assert listed == sorted(f"odd/{n}" for n in ("100%.txt", "a..b.txt", "...", "naïve résumé.txt"))
    assert mlflow.artifacts.load_text(f"runs:/{run}/odd/100%.txt") == "100%.txt"


def test_a_symlink_planted_in_the_blob_store_is_not_followed(
    server: Server, client, experiment_id: str
) -> None:  # type: ignore[no-untyped-def]
    """Blob files are opened without following symlinks: a link swapped in for a blob (by
    someone with access to the server's disk) yields an error, never the link's target."""
    import mlflow

    run = client.create_run(experiment_id).info.run_id
    payload = f"unique content {uuid.uuid4().hex}"
    mlflow.log_text(payload, "victim.txt", run_id=run)
    digest = hashlib.sha256(payload.encode()).hexdigest()
    blob = next((server.backend.data_dir / "blobs").rglob(f"{digest}-*"))
    outside = server.backend.data_dir.parent / f"target-{uuid.uuid4().hex[:6]}.txt"
    outside.write_bytes(b"server-side file that must never be served")
    blob.unlink()
    blob.symlink_to(outside)
    status, body = raw(
        server,
        "GET",
        f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run}/artifacts/victim.txt",
    )
    assert status == 500
    assert b"never be served" not in body
    assert "modelyard fsck" in json.loads(body)["message"]


def test_names_with_percent_sequences_are_decoded_once(
    server: Server, client, experiment_id: str
) -> None:  # type: ignore[no-untyped-def]
    """MLflow 3.x clients up to 3.8 name images ``<key>%step%<n>%timestamp%<ms>%<id>`` and
    send each ``%`` as ``%25``. The name is the path decoded once, as sent: a second decoding
    (``%12``, ``%17`` → control characters) is never applied, so the name is accepted, listed
    and served as itself."""
    run = client.create_run(experiment_id).info.run_id
    name = "k%step%12%timestamp%1700000000000%g1e4c2b8-9f00-4a8e-8f3b-0c6d2a9e1f00.png"
    sent = quote(name, safe="")
    assert "%2512%25timestamp%2517" in sent
    for prefix in PREFIXES:
        target = (
            f"{prefix}/mlflow-artifacts/artifacts/{experiment_id}/{run}/artifacts/images/{sent}"
        )
        status, payload = raw(server, "PUT", target, b"\x89PNG image bytes")
        assert status == 200, payload
        status, payload = raw(server, "GET", target)
        assert (status, payload) == (200, b"\x89PNG image bytes")
    assert [f.path for f in client.list_artifacts(run, "images")] == [f"images/{name}"]


MLFLOW_INVALID_PATH = {"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid path"}


def test_mlflow_routes_answer_invalid_path_in_mlflow_words(
    server: Server, client, experiment_id: str
) -> None:  # type: ignore[no-untyped-def]
    """As MLflow's server answers (and its tests compare exactly), whatever else is wrong:
    the path is checked before the run or model version is looked up."""
    run = client.create_run(experiment_id).info.run_id
    bad = quote("../path", safe="")
    for target in (
        f"/api/2.0/mlflow/artifacts/list?run_id={run}&path={bad}",
        f"/get-artifact?run_id={run}&path={bad}",
        f"/model-versions/get-artifact?name=no-such-model&version=1&path={bad}",
        f"/api/2.0/mlflow-artifacts/artifacts?path={experiment_id}%2F{run}%2Fartifacts%2F{bad}",
    ):
        status, payload = raw(server, "GET", target)
        assert status == 400, target
        assert json.loads(payload) == MLFLOW_INVALID_PATH, target
    status, payload = raw(
        server, "POST", f"/ajax-api/2.0/mlflow/upload-artifact?run_uuid={run}&path={bad}", b"x"
    )
    assert status == 400
    assert json.loads(payload) == MLFLOW_INVALID_PATH
