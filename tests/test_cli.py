"""The command line as a user runs it: schema commands, settings from flags and environment."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import requests

from modelyard.db.migrate import HEAD_REVISION
from modelyard.settings import Settings
from tests.conftest import Backend, Server, free_port

ROOT = Path(__file__).resolve().parents[1]


def modelyard(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelyard", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_db_upgrade_and_current(tmp_path: Path) -> None:
    upgraded = modelyard("db", "upgrade", "--data-dir", str(tmp_path))
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"-> {HEAD_REVISION}" in upgraded.stdout
    current = modelyard("db", "current", "--data-dir", str(tmp_path))
    assert current.stdout.startswith(HEAD_REVISION)


def test_db_upgrade_on_postgresql(make_backend) -> None:
    backend = make_backend("postgresql")
    upgraded = modelyard("db", "upgrade", "--database-url", backend.url)
    assert upgraded.returncode == 0, upgraded.stderr
    current = modelyard("db", "current", env={"MODELYARD_DATABASE_URL": backend.url})
    assert current.stdout.startswith(HEAD_REVISION)


def test_server_refuses_outdated_schema(tmp_path: Path) -> None:
    assert modelyard("db", "upgrade", "--data-dir", str(tmp_path)).returncode == 0
    with sqlite3.connect(tmp_path / "modelyard.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0000'")
    started = modelyard("server", "--data-dir", str(tmp_path), "--port", str(free_port()))
    assert started.returncode != 0
    assert "modelyard db upgrade" in started.stderr


def test_settings_from_environment(tmp_path: Path) -> None:
    port = free_port()
    env = {"MODELYARD_PORT": str(port), "MODELYARD_DATA_DIR": str(tmp_path / "envdata")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelyard", "server"],
        env={**os.environ, **env},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                assert requests.get(f"http://127.0.0.1:{port}/health", timeout=1).text == "OK"
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            raise AssertionError("server did not answer on the port from MODELYARD_PORT")
        assert (tmp_path / "envdata" / "modelyard.db").exists()
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)


def test_flags_override_environment(monkeypatch) -> None:
    monkeypatch.setenv("MODELYARD_PORT", "7000")
    monkeypatch.setenv("MODELYARD_WORKERS", "3")
    settings = Settings.load(port=7100)
    assert settings.port == 7100
    assert settings.workers == 3


def test_every_setting_is_documented() -> None:
    docs = (ROOT / "docs" / "configuration.md").read_text()
    from dataclasses import fields

    for field in fields(Settings):
        assert f"MODELYARD_{field.name.upper()}" in docs, field.name
        assert f"--{field.name.replace('_', '-')}" in docs, field.name


def test_several_workers_share_one_database(make_backend) -> None:
    backend: Backend = make_backend("sqlite")
    server = Server(backend, "--workers", "2")
    try:
        ids = set()
        for i in range(20):
            response = requests.post(
                f"{server.url}/api/2.0/mlflow/experiments/create",
                json={"name": f"w{i}"},
                timeout=10,
            )
            ids.add(response.json()["experiment_id"])
        assert len(ids) == 20
    finally:
        server.stop()


def test_models_commands(tmp_path: Path) -> None:
    """Promote, resolve a semver range, move an alias and read its history from the CLI."""
    backend = Backend("sqlite", f"sqlite:///{tmp_path / 'modelyard.db'}", tmp_path)
    server = Server(backend)
    try:
        base = f"{server.url}/api/2.0/mlflow"
        run_id = requests.post(
            f"{base}/runs/create", json={"experiment_id": "0"}, timeout=10
        ).json()["run"]["info"]["run_id"]
        put = requests.put(
            f"{server.url}/api/2.0/mlflow-artifacts/artifacts/0/{run_id}/artifacts/model/MLmodel",
            data=b"flavors: {}\n",
            timeout=10,
        )
        assert put.status_code == 200
    finally:
        server.stop()
    data = ["--data-dir", str(tmp_path)]
    first = modelyard("models", "promote", "churn", "--candidate", run_id, *data)
    assert first.returncode == 0, first.stderr
    assert "version 1  semver 1.0.0" in first.stdout
    minor = modelyard("models", "promote", "churn", "--candidate", run_id, "--bump", "minor", *data)
    assert "version 2  semver 1.1.0" in minor.stdout
    resolved = modelyard("models", "resolve", "churn", "^1", *data)
    assert "version 2  semver 1.1.0" in resolved.stdout
    moved = modelyard("models", "alias", "churn", "production", "1.0.0", *data)
    assert moved.returncode == 0, moved.stderr
    assert modelyard("models", "alias", "churn", "production", "~1.1", *data).returncode == 0
    history = modelyard("models", "history", "churn", "production", *data).stdout.splitlines()
    assert [line.split()[-3:] for line in history] == [["-", "->", "1"], ["1", "->", "2"]]
    listed = modelyard("models", "list", *data).stdout
    assert "churn  v2 (1.1.0)  @production=2" in listed
    versions = modelyard("models", "versions", "churn", *data).stdout.splitlines()
    assert versions[0].startswith("churn  version 2")
    missing = modelyard("models", "resolve", "churn", "^3", *data)
    assert missing.returncode != 0
    assert "No version of churn matches '^3'" in missing.stderr
