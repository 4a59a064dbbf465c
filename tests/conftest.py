"""Shared fixtures: real databases (SQLite and PostgreSQL) and a live modelyard server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import requests
from bench.seaweed import SeaweedFS

from tests.embedded_postgres import EmbeddedPostgres, answers

PG_ADMIN_URL = os.environ.get("MODELYARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
EMBEDDED_PG: EmbeddedPostgres | None = None
BACKENDS = ["sqlite", "postgresql"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pytest_configure(config: pytest.Config) -> None:
    """Without MODELYARD_TEST_PG and with nothing on 127.0.0.1:5432 (or with
    MODELYARD_TEST_PG=embedded), the PostgreSQL tests run on a PostgreSQL from the
    embedded-postgres package, started for this session."""
    global PG_ADMIN_URL, EMBEDDED_PG  # noqa: PLW0603 - one server for the whole session
    wanted = os.environ.get("MODELYARD_TEST_PG")
    if wanted != "embedded" and (wanted or answers("127.0.0.1", 5432)):
        return
    EMBEDDED_PG = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="modelyard-pg-"))).start()
    PG_ADMIN_URL = EMBEDDED_PG.admin_url
    os.environ["MODELYARD_TEST_PG"] = PG_ADMIN_URL  # for the processes the tests start
    print(f"PostgreSQL tests: embedded-postgres at {PG_ADMIN_URL}")


def pytest_unconfigure(config: pytest.Config) -> None:
    if EMBEDDED_PG is not None:
        EMBEDDED_PG.stop()


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
        self.extra = list(extra)
        self.store_kind = "local"
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

    def kill(self) -> None:
        """SIGKILL, as a crash or an out-of-memory killer would."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=20)


def _session_backend(kind: str, data_dir: Path) -> tuple[Backend, str | None]:
    if kind == "sqlite":
        return Backend(kind, f"sqlite:///{data_dir / 'modelyard.db'}", data_dir), None
    pg_name, url = _create_pg_database()
    return Backend(kind, url, data_dir), pg_name


@pytest.fixture(scope="session", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One live server per backend for the whole session; tests make their own experiments."""
    kind = request.param
    backend, pg_name = _session_backend(kind, tmp_path_factory.mktemp(f"server-{kind}"))
    srv = Server(backend)
    yield srv
    srv.stop()
    if pg_name:
        _drop_pg_database(pg_name)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    weed = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    yield weed
    weed.stop()


BLOB_BACKENDS = [
    ("sqlite", "local"),
    ("sqlite", "s3"),
    ("postgresql", "local"),
    ("postgresql", "s3"),
]


def blob_args(store: str, seaweed: SeaweedFS | None) -> list[str]:
    """Server options for a local blob folder (the default) or a fresh bucket."""
    if store == "local":
        return []
    assert seaweed is not None
    return seaweed.server_args(f"modelyard-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session", params=BLOB_BACKENDS, ids=lambda p: f"{p[0]}-{p[1]}")
def blob_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One live server per (database, blob store) pair: SQLite or PostgreSQL, local or S3."""
    kind, store = request.param
    seaweed = request.getfixturevalue("seaweedfs") if store == "s3" else None
    backend, pg_name = _session_backend(kind, tmp_path_factory.mktemp(f"blobs-{kind}-{store}"))
    srv = Server(backend, *blob_args(store, seaweed))
    srv.store_kind = store
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


def run_cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    """A ``modelyard`` command on the same database and blob store as ``server``."""
    command = [sys.executable, "-m", "modelyard", *args, "--data-dir", str(server.backend.data_dir)]
    if server.backend.name == "postgresql":
        command += ["--database-url", server.backend.url]
    return subprocess.run(
        command + server.extra, capture_output=True, text=True, timeout=600, check=False
    )


def run_client(
    server: Server, *args: str, token: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A client ``modelyard`` command over HTTP against ``server`` (with ``token``)."""
    settings = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MODELYARD_"))}
    settings["MODELYARD_URL"] = server.url
    if token is not None:
        settings["MODELYARD_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "modelyard_client", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**settings, **(env or {})},
        check=False,
    )


ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Debian's chromium, headless, driven by Playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        pytest.fail("The browser tests need Debian's chromium (apt-get install chromium).")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


def screenshot(page: object, name: str) -> Path:
    """Keep a picture of the page under test-artifacts/ (kept by CI as a test artifact)."""
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(target), full_page=True)  # type: ignore[attr-defined]
    return target
