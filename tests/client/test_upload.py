"""``models upload``: a folder becomes a version and comes back byte for byte; an interrupted
upload publishes nothing and the next run sends only what is missing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import requests

from tests.client.conftest import Venv, Yard, mlflow_env, modelyard, one_line_error


def _folder(root: Path, files: dict[str, bytes]) -> Path:
    for path, data in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def _read(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_upload_then_pull_round_trips(client_venv: Venv, yard: Yard, empty_dir: Path) -> None:
    files = {
        "MLmodel": b"flavors: {}\n",
        "empty": b"",
        "nested/deeper/weights.bin": os.urandom(12 * 1024 * 1024),  # streamed from disk
        "large.bin": os.urandom(70 * 1024 * 1024),  # in three parts, joined by the server
        "nested/config.json": b'{"a": 1}',
    }
    source = _folder(empty_dir / "trained", files)
    env = mlflow_env(yard, yard.developer)
    name = f"up{uuid.uuid4().hex[:6]}"
    done = modelyard(
        client_venv,
        env,
        empty_dir,
        "models",
        "upload",
        name,
        "trained",
        "--semver",
        "2.0.0",
        "--description",
        "trained elsewhere",
    )
    assert done.returncode == 0, done.stderr
    assert f"uploaded: {name} 2.0.0 (version 1), 5 files" in done.stdout
    pulled = modelyard(client_venv, env, empty_dir, "models", "pull", name, "2.0.0", "back")
    assert pulled.returncode == 0, pulled.stderr
    back = _read(empty_dir / "back")
    back.pop("modelyard.lock.json")
    assert back == _read(source) == files
    resolved = modelyard(client_venv, env, empty_dir, "models", "resolve", name, "2.0.0", "--json")
    assert resolved.returncode == 0, resolved.stderr
    version = json.loads(resolved.stdout)
    assert version["description"] == "trained elsewhere"
    assert version["lineage"]["upload"]["client"].startswith("modelyard-client/")
    assert "developer" in version["lineage"]["upload"]["by"]
    bumped = modelyard(
        client_venv,
        env,
        empty_dir,
        "models",
        "upload",
        name,
        "trained",
        "--bump",
        "minor",
        "--json",
    )
    assert bumped.returncode == 0, bumped.stderr
    assert json.loads(bumped.stdout)["version"]["semver"] == "2.1.0"
    assert json.loads(bumped.stdout)["skipped"] == 0  # a new upload: staging was removed
    reader = modelyard(
        client_venv, mlflow_env(yard, yard.reporter), empty_dir, "models", "upload", name, "trained"
    )
    assert "permission denied" in one_line_error(reader)


def _staged(yard: Yard) -> list[dict[str, object]]:
    listed = requests.get(
        f"{yard.uri}/api/v1/packages", headers=yard.headers(), params={"limit": 1000}, timeout=30
    ).json()["packages"]
    return [p for p in listed if str(p["name"]).startswith("upload-")]


def _parts_arrived(yard: Yard, before: set[object]) -> int:
    for package in _staged(yard):
        if package["name"] not in before:
            held = requests.get(
                f"{yard.uri}/api/v1/packages/{package['name']}/{package['version']}/files",
                headers=yard.headers(),
                timeout=30,
            ).json()["files"]
            return sum(1 for f in held if f["path"].startswith(".parts/"))
    return 0


def test_parts_are_checked_when_joined(yard: Yard) -> None:
    """The server joins a large file's parts only when all are there and they hash to the
    announced sha256."""
    headers = yard.headers(yard.developer)
    package = f"upload-{uuid.uuid4().hex}"
    base = f"{yard.uri}/api/v1/packages/{package}/1/files"
    claimed = "ab" * 32
    for index in (0, 2):
        put = requests.put(
            f"{base}/.parts/{claimed}/{index:05d}", data=b"x" * 10, headers=headers, timeout=30
        )
        assert put.status_code == 201, put.text
    body = {
        "package": package,
        "package_version": "1",
        "files": [{"path": "big.bin", "sha256": claimed, "parts": 3}],
    }
    name = f"parts{uuid.uuid4().hex[:6]}"
    versions = f"{yard.uri}/api/v1/models/{name}/versions"
    missing = requests.post(versions, json=body, headers=headers, timeout=30)
    assert missing.status_code == 409  # the state of the upload, not the request
    assert "1 of 3 parts of 'big.bin' have not arrived" in missing.json()["error"]["message"]
    put = requests.put(f"{base}/.parts/{claimed}/00001", data=b"y", headers=headers, timeout=30)
    assert put.status_code == 201
    wrong = requests.post(versions, json=body, headers=headers, timeout=30)
    assert wrong.status_code == 400
    assert "not the announced" in wrong.json()["error"]["message"]
    model = requests.get(f"{yard.uri}/api/v1/models/{name}", headers=headers, timeout=30)
    assert model.status_code == 404


def test_an_interrupted_upload_publishes_nothing(
    client_venv: Venv, yard: Yard, empty_dir: Path
) -> None:
    files = {f"small/{i:03d}.txt": os.urandom(200) for i in range(200)}
    files["a-big.bin"] = os.urandom(300 * 1024 * 1024)
    _folder(empty_dir / "trained", files)
    env = mlflow_env(yard, yard.developer)
    name = f"cut{uuid.uuid4().hex[:6]}"
    before = {p["name"] for p in _staged(yard)}
    proc = subprocess.Popen(
        [str(client_venv.modelyard), "models", "upload", name, "trained"],
        env=env,
        cwd=empty_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if _parts_arrived(yard, before) >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the upload ended before it could be interrupted"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    model = requests.get(f"{yard.uri}/api/v1/models/{name}", headers=yard.headers(), timeout=30)
    assert model.status_code == 404
    staged = [p for p in _staged(yard) if p["name"] not in before]
    assert len(staged) == 1
    # A part whose body was wholly sent before the kill may still be stored by the server
    # (written, synced, recorded) after it: count the parts once their number stays put.
    counts = [-1]
    settle = time.monotonic() + 60
    while time.monotonic() < settle:
        counts.append(_parts_arrived(yard, before))
        if len(counts) >= 5 and len(set(counts[-5:])) == 1:
            break
        time.sleep(0.2)
    held = requests.get(
        f"{yard.uri}/api/v1/packages/{staged[0]['name']}/{staged[0]['version']}/files",
        headers=yard.headers(),
        timeout=30,
    ).json()["files"]
    parts = [f for f in held if f["path"].startswith(".parts/")]
    assert len(parts) == counts[-1]
    assert 2 <= len(parts) < 10
    again = modelyard(client_venv, env, empty_dir, "models", "upload", name, "trained", "--json")
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["skipped_parts"] == len(parts)
    assert result["version"]["version"] == 1
    assert not [p for p in _staged(yard) if p["name"] not in before]
