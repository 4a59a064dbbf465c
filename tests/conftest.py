"""Shared fixtures: real databases (SQLite and PostgreSQL) and a live modelyard server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import requests

PG_ADMIN_URL = os.environ.get("MODELYARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ["sqlite", "postgresql"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Backend:
    name: str
    url: str
    data_dir: Path


def _create_pg_database() -> tuple[str, str]:
    name = f"modelyard_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return name, f"{base}/{name}"


def _drop_pg_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def make_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A factory of fresh, empty databases of either kind, dropped afterwards."""
    created: list[str] = []

    def make(kind: str) -> Backend:
        data_dir = tmp_path_factory.mktemp(f"data-{kind}")
        if kind == "sqlite":
            return Backend(kind, f"sqlite:///{data_dir / 'modelyard.db'}", data_dir)
        name, url = _create_pg_database()
        created.append(name)
        return Backend(kind, url, data_dir)

    yield make
    for name in created:
        _drop_pg_database(name)


class Server:
    """A modelyard server in a child process, as a user would start it."""

    def __init__(self, backend: Backend, *extra: str, env: dict[str, str] | None = None) -> None:
        self.backend = backend
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [
            sys.executable,
            "-m",
            "modelyard",
            "server",
            "--port",
            str(self.port),
            "--data-dir",
            str(backend.data_dir),
            *extra,
        ]
        if backend.name == "postgresql":
            args += ["--database-url", backend.url]
        self.log = backend.data_dir / f"server-{self.port}.log"
        self.proc = subprocess.Popen(
            args,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                if requests.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(timeout=20)


@pytest.fixture(scope="session", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One live server per backend for the whole session; tests make their own experiments."""
    kind = request.param
    data_dir = tmp_path_factory.mktemp(f"server-{kind}")
    pg_name = None
    if kind == "sqlite":
        backend = Backend(kind, f"sqlite:///{data_dir / 'modelyard.db'}", data_dir)
    else:
        pg_name, url = _create_pg_database()
        backend = Backend(kind, url, data_dir)
    srv = Server(backend)
    yield srv
    srv.stop()
    if pg_name:
        _drop_pg_database(pg_name)


@pytest.fixture
def tracking_uri(server: Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """Points the real mlflow client (fluent API too) at the live server."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(server.url)
    yield server.url
    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture
def client(tracking_uri: str):  # type: ignore[no-untyped-def]
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri)


@pytest.fixture
def experiment_id(client) -> str:  # type: ignore[no-untyped-def]
    return str(client.create_experiment(f"exp-{uuid.uuid4().hex[:10]}"))


def api(server_url: str, method: str, path: str, **kwargs: object) -> requests.Response:
    """A raw call to the MLflow REST API, for what the client never sends."""
    return requests.request(method, f"{server_url}/api/2.0/mlflow/{path}", timeout=30, **kwargs)
