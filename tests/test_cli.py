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
from tests.conftest import Backend, Server, free_port, run_client

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
    """Promote, resolve a semver range, move an alias and read its history from the CLI (over
    HTTP, with the server's URL and nothing else)."""
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

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return run_client(server, *args)

        first = cli("models", "promote", "churn", "--candidate", run_id)
        assert first.returncode == 0, first.stderr
        assert "churn 1.0.0 (version 1)" in first.stdout
        minor = cli("models", "promote", "churn", "--candidate", run_id, "--bump", "minor")
        assert "churn 1.1.0 (version 2)" in minor.stdout
        assert "churn 1.1.0 (version 2)" in cli("models", "resolve", "churn", "^1").stdout
        moved = cli("models", "alias", "churn", "production", "1.0.0")
        assert moved.returncode == 0, moved.stderr
        assert cli("models", "alias", "churn", "production", "~1.1").returncode == 0
        history = cli("models", "history", "churn", "production").stdout.splitlines()[1:]
        assert [line.split()[-2:] for line in history] == [["-", "1"], ["1", "2"]]
        listed = cli("models", "list").stdout.splitlines()
        assert listed[1].split()[:4] == ["churn", "2", "1.1.0", "@production=2"]
        versions = cli("models", "versions", "churn").stdout.splitlines()
        assert versions[1].split()[:3] == ["2", "1.1.0", "@production"]
        missing = cli("models", "resolve", "churn", "^3")
        assert missing.returncode == 1
        assert missing.stderr == "error: No version of churn matches '^3'.\n"
    finally:
        server.stop()


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_storage_problems_are_one_line(tmp_path: Path) -> None:
    bad_url = modelyard("db", "upgrade", "--database-url", "postgres-ish://nowhere")
    assert "invalid database URL" in _one_line(bad_url)
    from tests import conftest

    admin = conftest.PG_ADMIN_URL.rsplit("/", 1)[0].replace(
        "postgresql://", "postgresql+psycopg://"
    )
    pg = f"{admin}/modelyard_no_such_db"
    missing = modelyard("server", "--database-url", pg, "--port", str(free_port()))
    assert "'modelyard_no_such_db' does not exist" in _one_line(missing)
    assert "does not exist" in _one_line(modelyard("fsck", "--database-url", pg))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    unwritable = modelyard(
        "server", "--data-dir", str(blocker / "data"), "--port", str(free_port())
    )
    assert "cannot write" in _one_line(unwritable) or "cannot use" in _one_line(unwritable)
    first_admin = modelyard("admin", "users", "create", "x", "--data-dir", str(blocker / "data"))
    assert str(blocker) in _one_line(first_admin)


def test_one_console_script(tmp_path: Path) -> None:
    """The client owns `modelyard`; the server adds its commands through entry points."""
    from importlib.metadata import distribution

    server = distribution("modelyard")
    client = distribution("modelyard-client")
    assert not [e for e in server.entry_points if e.group == "console_scripts"]
    assert [e.name for e in client.entry_points if e.group == "console_scripts"] == ["modelyard"]
    commands = {e.name for e in server.entry_points if e.group == "modelyard.commands"}
    assert commands == {"server", "db", "gc", "fsck", "admin"}
    assert "Start the server" in modelyard("server", "--help").stdout
