"""What the authentication tests share: live ``--auth`` servers on a fresh database (a
``Yard`` with its admin, tokens and projects), candidates with files, and the helpers that read
MLflow's and the native API's error answers. Used by ``test_auth*.py``, ``test_isolation.py`` and
``test_names.py``."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from modelyard.services import access
from modelyard.settings import Settings
from tests.conftest import (
    BACKENDS,
    Backend,
    Server,
    _create_pg_database,
    _drop_pg_database,
)

MLFLOW = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
NATIVE = "/api/v1"
SECURITY_HEADERS = (
    "x-content-type-options",
    "x-frame-options",
    "content-security-policy",
    "referrer-policy",
)


# ------------------------------------------------------------------------------------ helpers


def check_headers(response: requests.Response, *_args: Any, **_kwargs: Any) -> None:
    """Every response, errors and redirects included: security headers, never CORS."""
    where = f"{response.request.method} {response.request.url} -> {response.status_code}"
    for name in SECURITY_HEADERS:
        assert name in response.headers, f"{name} missing on {where}"
    assert response.headers["x-content-type-options"] == "nosniff", where
    assert response.headers["x-frame-options"] == "DENY", where
    leaked = [h for h in response.headers if h.lower().startswith("access-control-")]
    assert not leaked, f"CORS headers {leaked} on {where}"


def http_session() -> requests.Session:
    """A session whose every response is checked by ``check_headers``."""
    session = requests.Session()
    session.hooks["response"].append(check_headers)
    return session


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def error_code(response: requests.Response) -> str | None:
    """The error code of an MLflow (``error_code``) or native (``error.code``) error body."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("error"), dict):
        return str(body["error"].get("code"))
    return body.get("error_code")


def error_message(response: requests.Response) -> str:
    body = response.json()
    if isinstance(body.get("error"), dict):
        return str(body["error"].get("message"))
    return str(body.get("message"))


def now_ms() -> int:
    return int(time.time() * 1000)


class Yard:
    """A live ``--auth`` server, the ``modelyard`` CLI on its storage, and an admin token."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.url = server.url
        self.http = http_session()
        self.admin = self.cli("admin", "users", "create", "admin", "--admin", "--expires", "never")
        backend = server.backend
        self.db = Settings(
            data_dir=backend.data_dir,
            database_url=backend.url if backend.name == "postgresql" else "",
        ).database()

    # the command line, with the server's storage options (never its --auth flag)
    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        backend = self.server.backend
        command = [sys.executable, "-m", "modelyard", *args, "--data-dir", str(backend.data_dir)]
        if backend.name == "postgresql":
            command += ["--database-url", backend.url]
        return subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=120, check=False
        )

    def cli(self, *args: str, stdin: str | None = None) -> str:
        done = self.run(*args, stdin=stdin)
        assert done.returncode == 0, f"modelyard {' '.join(args)}: {done.stderr}"
        return done.stdout.strip()

    def user(self, name: str, *extra: str, stdin: str | None = None) -> str:
        """A new user; the CLI prints their first token, and nothing else, on stdout."""
        out = self.cli("admin", "users", "create", name, *extra, stdin=stdin)
        assert re.fullmatch(r"\S{20,}", out), f"stdout is not just a token: {out!r}"
        return out

    def quick_user(self, name: str) -> str:
        """A user and a personal token, made through the services, as the CLI makes them."""
        access.create_user(self.db, name, actor="test")
        return self.quick_token(name)

    def quick_token(self, user: str, scope: str = "write") -> str:
        _token, secret = access.create_token(
            self.db, name="test", user_name=user, scope=scope, actor="test"
        )
        return secret

    def token(self, *args: str) -> tuple[int, str]:
        """A new token (``tokens create`` options): its id and its secret."""
        done = self.run("admin", "tokens", "create", *args)
        assert done.returncode == 0, done.stderr
        secret = done.stdout.strip()
        assert re.fullmatch(r"\S{20,}", secret), f"stdout is not just a token: {secret!r}"
        found = re.search(r"created token (\d+)", done.stderr)
        assert found, done.stderr
        return int(found.group(1)), secret

    # HTTP
    def base(self, project: str | None) -> str:
        return self.url if project is None else f"{self.url}/projects/{project}"

    def request(
        self,
        method: str,
        path: str,
        token: str | None = None,
        *,
        project: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        return self.http.request(
            method,
            self.base(project) + path,
            headers={**bearer(token), **(headers or {})},
            timeout=60,
            allow_redirects=False,
            **kwargs,
        )

    def mlflow(
        self,
        method: str,
        endpoint: str,
        token: str | None,
        project: str | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        return self.request(method, f"{MLFLOW}/{endpoint}", token, project=project, **kwargs)

    def ok(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        """A call that must succeed; its JSON body (or bytes)."""
        response = self.request(method, path, token or self.admin, **kwargs)
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.content

    # setting things up as the admin
    def project(self, name: str) -> None:
        self.ok("POST", f"{NATIVE}/projects", json={"name": name})

    def member(self, project: str, user: str, role: str) -> None:
        self.ok("PUT", f"{NATIVE}/projects/{project}/members/{user}", json={"role": role})

    def bare_user(self, name: str) -> None:
        """A user without a token, through the API."""
        self.ok("POST", f"{NATIVE}/users", json={"name": name})

    def members(self, project: str) -> dict[str, str]:
        body = self.ok("GET", f"{NATIVE}/projects/{project}/members")
        return {m["user"]: m["role"] for m in body["members"]}


@dataclass
class Candidate:
    """A project's sample data, all made through the API: experiment, run with a param,
    a metric, a tag and files (a text file and a model folder), a logged model with a file,
    a registered model with one version and an alias, and a native package."""

    project: str
    exp: str
    exp_name: str
    run: str
    run_name: str
    param: str
    param_value: str
    metric: str
    tag_value: str
    file_bytes: bytes
    logged: str
    logged_name: str
    model: str
    model_key: str  # where the version's files live: registry/<model key>/<version>
    alias: str
    pkg: str
    pkg_version: str
    pkg_bytes: bytes

    def secrets(self) -> list[str]:
        """Strings only this project's data contains (what must never leak elsewhere)."""
        return [
            self.exp_name,
            self.run,
            self.run_name,
            self.param,
            self.param_value,
            self.metric,
            self.tag_value,
            self.file_bytes.decode(),
            self.logged,
            self.logged_name,
            self.model,
            self.alias,
            self.pkg,
            self.pkg_bytes.decode(),
        ]


def make_candidate(yard: Yard, project: str, tag: str, token: str | None = None) -> Candidate:
    token = token or yard.admin

    def post(endpoint: str, body: dict[str, Any]) -> Any:
        response = yard.mlflow("POST", endpoint, token, project, json=body)
        assert response.status_code == 200, (endpoint, response.text)
        return response.json()

    def put(path: str, data: bytes) -> None:
        response = yard.request("PUT", path, token, project=project, data=data)
        assert response.status_code < 300, (path, response.text)

    exp_name = f"{tag}-experiment"
    exp = post("experiments/create", {"name": exp_name})["experiment_id"]
    run_name = f"{tag}-run"
    run = post("runs/create", {"experiment_id": exp, "run_name": run_name, "start_time": now_ms()})[
        "run"
    ]["info"]["run_id"]
    param, param_value, metric = f"{tag}_param", f"{tag}-param-value", f"{tag}_metric"
    tag_value = f"{tag}-tag-value"
    post(
        "runs/log-batch",
        {
            "run_id": run,
            "params": [{"key": param, "value": param_value}],
            "metrics": [
                {"key": metric, "value": 0.25 + i, "timestamp": now_ms(), "step": i}
                for i in range(3)
            ],
            "tags": [{"key": f"{tag}_tag", "value": tag_value}],
        },
    )
    file_bytes = f"{tag}-artifact-bytes".encode()
    put(f"{ARTIFACTS}/{exp}/{run}/artifacts/data/file.txt", file_bytes)
    put(f"{ARTIFACTS}/{exp}/{run}/artifacts/model/MLmodel", f"{tag}-mlmodel".encode())
    logged_name = f"{tag}-logged-model"
    logged = post(
        "logged-models", {"experiment_id": exp, "name": logged_name, "source_run_id": run}
    )["model"]["info"]["model_id"]
    put(f"{ARTIFACTS}/{exp}/models/{logged}/artifacts/MLmodel", f"{tag}-logged-bytes".encode())
    model, alias = f"{tag}-registered-model", f"{tag}_alias"
    post("registered-models/create", {"name": model})
    version = post(
        "model-versions/create", {"name": model, "source": f"runs:/{run}/model", "run_id": run}
    )["model_version"]["version"]
    post("registered-models/alias", {"name": model, "alias": alias, "version": version})
    uri = yard.mlflow(
        "GET",
        "model-versions/get-download-uri",
        token,
        project,
        params={"name": model, "version": version},
    ).json()["artifact_uri"]
    model_key = re.fullmatch(r"mlflow-artifacts:/registry/(\d+)/\d+", uri)
    assert model_key, uri
    pkg, pkg_version, pkg_bytes = f"{tag}-package", "1.0.0", f"{tag}-package-bytes".encode()
    put(f"{NATIVE}/packages/{pkg}/{pkg_version}/files/weights.bin", pkg_bytes)
    return Candidate(
        project=project,
        exp=exp,
        exp_name=exp_name,
        run=run,
        run_name=run_name,
        param=param,
        param_value=param_value,
        metric=metric,
        tag_value=tag_value,
        file_bytes=file_bytes,
        logged=logged,
        logged_name=logged_name,
        model=model,
        model_key=model_key.group(1),
        alias=alias,
        pkg=pkg,
        pkg_version=pkg_version,
        pkg_bytes=pkg_bytes,
    )


def start_yard(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Yard]:
    """A fresh database of ``kind`` and a live ``--auth`` server on it."""
    data_dir = tmp_path_factory.mktemp(f"auth-{kind}")
    pg_name = None
    if kind == "sqlite":
        backend = Backend(kind, f"sqlite:///{data_dir / 'modelyard.db'}", data_dir)
    else:
        pg_name, url = _create_pg_database()
        backend = Backend(kind, url, data_dir)
    server = Server(backend, "--auth")
    yard = None
    try:
        yard = Yard(server)
        yield yard
    finally:
        if yard is not None:
            yard.db.dispose()
        server.stop()
        if pg_name:
            _drop_pg_database(pg_name)


@pytest.fixture(scope="module", params=BACKENDS)
def yard(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Yard]:
    yield from start_yard(request.param, tmp_path_factory)
