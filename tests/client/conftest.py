"""The client as a deploy job has it: a fresh venv holding only ./client, run from an empty
folder with nothing but MLflow's environment variables, against live ``--auth`` servers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import BACKENDS, Server, _drop_pg_database, _session_backend, run_cli

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Venv:
    path: Path
    install_seconds: float

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def modelyard(self) -> Path:
        return self.path / "bin" / "modelyard"


@pytest.fixture(scope="session")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A new venv with ``pip install ./client`` and nothing else."""
    folder = tmp_path_factory.mktemp("client-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    started = time.monotonic()
    done = subprocess.run(
        [
            str(folder / "bin" / "pip"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(ROOT / "client"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return Venv(folder, time.monotonic() - started)


@dataclass
class Yard:
    """A live ``--auth`` server with an admin, a project ``churn`` and its tokens."""

    server: Server
    admin: str
    developer: str
    reporter: str
    project: str = "churn"

    @property
    def uri(self) -> str:
        return f"{self.server.url}/projects/{self.project}"

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {token or self.admin}"}


def _token(server: Server, token: str, role: str) -> str:
    made = requests.post(
        f"{server.url}/api/v1/projects/churn/tokens",
        json={"name": role, "role": role},
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert made.status_code == 201, made.text
    return str(made.json()["secret"])


@pytest.fixture(scope="session", params=BACKENDS)
def yard(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Yard]:
    kind = request.param
    backend, pg_name = _session_backend(kind, tmp_path_factory.mktemp(f"client-{kind}"))
    server = Server(backend, env={"MODELYARD_AUTH": "1"})
    try:
        made = run_cli(server, "admin", "users", "create", "root", "--admin")
        assert made.returncode == 0, made.stderr
        admin = made.stdout.strip()
        created = requests.post(
            f"{server.url}/api/v1/projects",
            json={"name": "churn"},
            headers={"authorization": f"Bearer {admin}"},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        yield Yard(
            server, admin, _token(server, admin, "developer"), _token(server, admin, "reporter")
        )
    finally:
        server.stop()
        if pg_name:
            _drop_pg_database(pg_name)


def mlflow_env(yard: Yard, token: str | None = None) -> dict[str, str]:
    """Only what a CI job that logs runs has: MLflow's variables (and a PATH)."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "MLFLOW_TRACKING_URI": yard.uri,
        "MLFLOW_TRACKING_TOKEN": token or yard.admin,
    }


@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    folder = tmp_path / f"work-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    return folder


def modelyard(
    venv: Venv, env: dict[str, str], cwd: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv.modelyard), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        input=stdin,
        timeout=900,
        check=False,
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The failure's message, after checking it is one line, exit status 1, no traceback."""
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def candidate_with_files(yard: Yard, files: dict[str, bytes], folder: str = "model") -> str:
    """A candidate (run) in ``churn`` whose ``folder`` holds ``files``, logged over
    MLflow's REST routes."""
    base = f"{yard.uri}/api/2.0/mlflow"
    headers = yard.headers(yard.developer)
    experiment = requests.post(
        f"{base}/experiments/create",
        json={"name": f"e-{uuid.uuid4().hex[:8]}"},
        headers=headers,
        timeout=30,
    ).json()["experiment_id"]
    run = requests.post(
        f"{base}/runs/create", json={"experiment_id": experiment}, headers=headers, timeout=30
    ).json()["run"]["info"]
    with requests.Session() as http:
        for path, data in files.items():
            put = http.put(
                f"{yard.uri}/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run['run_id']}"
                f"/artifacts/{folder}/{path}",
                data=data,
                headers=headers,
                timeout=300,
            )
            assert put.status_code == 200, put.text
    return str(run["run_id"])
