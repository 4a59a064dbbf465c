"""``models pull`` and ``models verify``: every byte as MLflow's own download has it, resumed
after SIGKILL without fetching finished files again, altered bytes refused."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.client.conftest import (
    Venv,
    Yard,
    candidate_with_files,
    mlflow_env,
    modelyard,
    one_line_error,
)

BIG_MIB = int(os.environ.get("MODELYARD_TEST_BIG_MIB", "1024"))
SMALL_FILES = 1000
BIG = "weights/big.bin"


def _small_files() -> dict[str, bytes]:
    return {
        f"part-{i % 10}/f{i:04d}.txt": os.urandom(i % 97) + f"file {i}\n".encode()
        for i in range(SMALL_FILES)
    }


def _big_chunks(seed: bytes) -> Iterator[bytes]:
    block = hashlib.sha256(seed).digest() * 32768  # 1 MiB
    for i in range(BIG_MIB):
        yield i.to_bytes(8, "big") + block[8:]


def _tree(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): _file_sha(p) for p in folder.rglob("*") if p.is_file()
    }


def _file_sha(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _mlflow_download(yard: Yard, name: str, target: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import mlflow

    before = mlflow.get_tracking_uri()
    for key, value in mlflow_env(yard).items():
        if key.startswith("MLFLOW_"):
            monkeypatch.setenv(key, value)
    # set_registry_uri exports MLFLOW_REGISTRY_URI: set it here first so that it is undone
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", yard.uri)
    mlflow.set_tracking_uri(yard.uri)
    mlflow.set_registry_uri(yard.uri)
    try:
        return Path(mlflow.artifacts.download_artifacts(f"models:/{name}/1", dst_path=str(target)))
    finally:  # the URIs are process-wide: leave none behind for the tests after this one
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
        mlflow.set_tracking_uri(before)


def _wait_for(condition, proc: subprocess.Popen[str], what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            raise AssertionError(
                f"the pull ended before {what}: {proc.stderr.read() if proc.stderr else ''}"
            )
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def test_pull_equals_mlflow_and_resumes_after_sigkill(
    client_venv: Venv, yard: Yard, tmp_path: Path, empty_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = yard.server.backend.name == "sqlite"  # the big file once, on one backend
    files = _small_files()
    run_id = candidate_with_files(yard, files)
    if big:
        experiment = requests.get(
            f"{yard.uri}/api/2.0/mlflow/runs/get",
            params={"run_id": run_id},
            headers=yard.headers(),
            timeout=30,
        ).json()["run"]["info"]["experiment_id"]
        put = requests.put(
            f"{yard.uri}/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run_id}/artifacts/"
            f"model/{BIG}",
            data=_big_chunks(run_id.encode()),
            headers=yard.headers(yard.developer),
            timeout=900,
        )
        assert put.status_code == 200, put.text
    name = f"pull{uuid.uuid4().hex[:6]}"
    env = mlflow_env(yard)
    made = modelyard(client_venv, env, empty_dir, "models", "promote", name, "--candidate", run_id)
    assert made.returncode == 0, made.stderr
    modelyard(client_venv, env, empty_dir, "models", "alias", name, "production", "1")

    dest = empty_dir / "deploy"
    partial = empty_dir / "deploy.partial"
    workers = [] if big and BIG_MIB >= 256 else ["--workers", "1"]
    proc = subprocess.Popen(
        [str(client_venv.modelyard), "models", "pull", name, "production", "deploy", *workers],
        env=env,
        cwd=empty_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def done_lines() -> int:
        try:
            return len((partial / "done").read_text().splitlines())
        except FileNotFoundError:
            return 0

    def midway() -> bool:
        if done_lines() < 200:
            return False
        if not big or BIG_MIB < 256:  # a small big file may be whole before it can be caught
            return True
        local = partial / "files" / BIG
        return local.exists() and 0 < local.stat().st_size < BIG_MIB * 1048576 // 2

    try:
        _wait_for(midway, proc, "the kill")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not dest.exists()
    finished = {
        line.split(" ", 1)[1]: (partial / "files" / line.split(" ", 1)[1]).stat()
        for line in (partial / "done").read_text().splitlines()
    }
    assert 200 <= len(finished) < len(files) + big

    again = modelyard(
        client_venv, env, empty_dir, "models", "pull", name, "production", "deploy", "--json"
    )
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["resolved"] == f"{name} 1.0.0 (version 1) via alias production"
    assert report["reused_files"] == len(finished)
    if big and BIG not in finished:
        assert report["resumed_files"] >= 1  # the big file went on with a ranged request
    for path, before in finished.items():
        after = (dest / path).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), path
    assert not partial.exists()

    theirs = _mlflow_download(yard, name, tmp_path / "mlflow", monkeypatch)
    ours = _tree(dest)
    ours.pop("modelyard.lock.json")
    assert ours == _tree(theirs)
    assert len(ours) == len(files) + big
    if big:
        assert (dest / BIG).stat().st_size == BIG_MIB * 1048576

    lock = json.loads((dest / "modelyard.lock.json").read_text())
    assert {k: lock[k] for k in ("server", "project", "model", "version", "semver", "alias")} == {
        "server": yard.server.url,
        "project": "churn",
        "model": name,
        "version": 1,
        "semver": "1.0.0",
        "alias": "production",
    }
    assert yard.admin not in json.dumps(lock)
    assert len(lock["files"]) == len(files) + big
    verified = modelyard(client_venv, env, empty_dir, "models", "verify", "deploy")
    assert verified.returncode == 0, verified.stderr


def _version(client_venv: Venv, yard: Yard, folder: Path, files: dict[str, bytes]) -> str:
    name = f"v{uuid.uuid4().hex[:6]}"
    run_id = candidate_with_files(yard, files)
    made = modelyard(
        client_venv, mlflow_env(yard), folder, "models", "promote", name, "--candidate", run_id
    )
    assert made.returncode == 0, made.stderr
    return name


def test_verify_catches_changes(client_venv: Venv, yard: Yard, empty_dir: Path) -> None:
    env = mlflow_env(yard, yard.reporter)
    name = _version(client_venv, yard, empty_dir, {"MLmodel": b"a: 1\n", "sub/w.bin": b"xyz"})
    pulled = modelyard(client_venv, env, empty_dir, "models", "pull", name, "1", "out")
    assert pulled.returncode == 0, pulled.stderr
    assert modelyard(client_venv, env, empty_dir, "models", "verify", "out").returncode == 0
    (empty_dir / "out" / "sub" / "w.bin").write_bytes(b"xyZ")
    changed = modelyard(client_venv, env, empty_dir, "models", "verify", "out")
    assert "1 changed, 0 missing, 0 unexpected" in one_line_error(changed)
    assert "changed: sub/w.bin" in changed.stdout
    (empty_dir / "out" / "sub" / "w.bin").write_bytes(b"xyz")
    (empty_dir / "out" / "extra").write_bytes(b"")
    (empty_dir / "out" / "MLmodel").unlink()
    both = modelyard(client_venv, env, empty_dir, "models", "verify", "out")
    assert "0 changed, 1 missing, 1 unexpected" in one_line_error(both)
    again = modelyard(client_venv, env, empty_dir, "models", "pull", name, "1", "out")
    assert "already exists" in one_line_error(again)


def test_altered_bytes_on_the_server_are_refused(
    client_venv: Venv, yard: Yard, empty_dir: Path
) -> None:
    env = mlflow_env(yard, yard.reporter)
    secret = os.urandom(4096)
    name = _version(client_venv, yard, empty_dir, {"MLmodel": b"m\n", "w.bin": secret})
    digest = hashlib.sha256(secret).hexdigest()
    stored = list((yard.server.backend.data_dir / "blobs").rglob(f"{digest}*"))
    assert len(stored) == 1
    altered = bytearray(secret)
    altered[100] ^= 0xFF
    os.chmod(stored[0], 0o644)
    stored[0].write_bytes(bytes(altered))
    failed = modelyard(client_venv, env, empty_dir, "models", "pull", name, "1", "out")
    message = one_line_error(failed)
    assert "w.bin" in message
    assert "does not match the server's manifest" in message
    assert not (empty_dir / "out").exists()
    assert not (empty_dir / "out.partial" / "files" / "w.bin").exists()
    tarred = modelyard(client_venv, env, empty_dir, "models", "pull", name, "1", "--tar", "o.tar")
    assert "does not match the server's manifest" in one_line_error(tarred)
    assert not (empty_dir / "o.tar").exists()


def test_pull_tar(client_venv: Venv, yard: Yard, empty_dir: Path) -> None:
    env = mlflow_env(yard, yard.reporter)
    files = {"MLmodel": b"flavors: {}\n", "a/b.bin": os.urandom(3000)}
    name = _version(client_venv, yard, empty_dir, files)
    done = modelyard(client_venv, env, empty_dir, "models", "pull", name, "^1", "--tar", "v.tar")
    assert done.returncode == 0, done.stderr
    with tarfile.open(empty_dir / "v.tar") as tar:
        got = {
            m.name.split("/", 1)[1]: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar
            if m.isfile() and not m.name.endswith("SHA256SUMS")
        }
    assert got == files
