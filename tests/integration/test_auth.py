"""Authentication and authorisation against live ``--auth`` servers (SQLite and PostgreSQL):
every route of the router needs credentials, each role may do exactly what the policy says,
the real mlflow client works with a token (Bearer or Basic) and fails clearly without a valid
one, the usual attacks are refused without changing anything, and a server never listens on a
public address without authentication unless told to.

Isolation between projects lives in ``test_isolation.py``, which reuses the helpers here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from mlflow.exceptions import MlflowException
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from modelyard.app import create_app
from modelyard.auth import policy
from modelyard.auth.gate import GatedRoute, gate_routes
from modelyard.auth.roles import Role
from modelyard.services import access
from modelyard.settings import Settings
from tests.conftest import (
    BACKENDS,
    Backend,
    Server,
    _create_pg_database,
    _drop_pg_database,
    free_port,
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


# ---------------------------------------------------------------------- 1. route inventory


SAMPLES = {
    "name": "sample-name",
    "version": "1.0.0",
    "path": "some/file.txt",
    "model_id": "m-0123456789abcdef0123456789abcdef",
    "tag_key": "some.tag",
    "ref": "1",
    "alias": "champion",
    "project": "default",
    "user": "someone",
    "token_id": "1",
}
PUBLIC = {
    ("GET", "/health"),
    ("HEAD", "/health"),
    ("GET", "/login"),
    ("HEAD", "/login"),
    ("GET", "/static/{name}"),
    ("HEAD", "/static/{name}"),
}
PUBLIC_POST = {("POST", "/login")}


def concrete(template: str) -> str:
    """A request path for a route template: every ``{param[:convertor]}`` gets a sample."""

    def sample(match: re.Match[str]) -> str:
        name = match.group(1)
        return SAMPLES.get(name, "x")

    return re.sub(r"\{(\w+)(?::\w+)?\}", sample, template)


def routes_of(data_dir: Path) -> list[GatedRoute]:
    app = create_app(Settings(auth=True, data_dir=data_dir))
    found = list(app.routes)
    assert all(isinstance(route, GatedRoute) for route in found), [
        r for r in found if not isinstance(r, GatedRoute)
    ]
    return found  # type: ignore[return-value]


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    """(method, path template) of every route of the application's router, HEAD included."""
    pairs = {
        (method, route.path)
        for route in routes_of(tmp_path_factory.mktemp("inventory"))
        for method in route.methods or ()
    }
    assert len(pairs) > 150, "the router looks incomplete"
    return sorted(pairs)


def test_every_route_of_the_router_has_its_rule(tmp_path: Path) -> None:
    routes = routes_of(tmp_path)
    paths = {route.path for route in routes}
    for expected in ("/api/2.0/mlflow/runs/create", "/api/v1/packages", "/login", "/"):
        assert expected in paths
    for route in routes:
        methods = set(route.methods or ()) - {"HEAD"}
        assert set(route.rules) == methods, route.path
        for method, rule in route.rules.items():
            assert rule == policy.rule_for(method, route.path), (method, route.path)
    # only health and the login page are open to anyone
    public = {
        (method, route.path)
        for route in routes
        for method, rule in route.rules.items()
        if rule.capability is policy.C.PUBLIC
    }
    assert public == {
        ("GET", "/health"),
        ("GET", "/login"),
        ("POST", "/login"),
        ("GET", "/static/{name}"),
    }


def test_a_route_without_a_rule_stops_the_server(tmp_path: Path) -> None:
    async def page(_request: Any) -> PlainTextResponse:
        return PlainTextResponse("secret")

    db = Settings(data_dir=tmp_path).database()
    with pytest.raises(RuntimeError, match=re.escape("POST /api/2.0/mlflow/runs/teleport")):
        gate_routes([Route("/api/2.0/mlflow/runs/teleport", page, methods=["POST"])], db)
    # a known path with a method the policy does not list
    with pytest.raises(RuntimeError, match="DELETE /health"):
        gate_routes([Route("/health", page, methods=["GET", "DELETE"])], db)
    with pytest.raises(RuntimeError, match="GET /debug"):
        gate_routes([Route("/debug", page, methods=["GET"])], db)
    with pytest.raises(TypeError):
        gate_routes([Mount("/static", routes=[])], db)
    # with rules, the same call passes
    gated = gate_routes([Route("/health", page, methods=["GET"])], db)
    assert isinstance(gated[0], GatedRoute)


def test_every_route_refuses_a_caller_without_credentials(
    yard: Yard, inventory: list[tuple[str, str]]
) -> None:
    prefixes = ["", "/projects/default", "/projects/no-such-project"]
    checked = 0
    for method, template in inventory:
        path = "/static/ui.css" if template == "/static/{name}" else concrete(template)
        for prefix in prefixes:
            response = yard.http.request(
                method,
                yard.url + prefix + path,
                headers={"Accept": "application/json", "Content-Type": "application/json"},
                data=b"{}" if method not in ("GET", "HEAD") else None,
                timeout=30,
                allow_redirects=False,
            )
            where = f"{method} {prefix}{path}"
            checked += 1
            if (method, template) in PUBLIC:
                assert response.status_code == 200, where
                continue
            if (method, template) in PUBLIC_POST:
                # the login form without its CSRF cookie: refused, but not as 401
                assert response.status_code == 403, where
                continue
            assert response.status_code == 401, f"{where} -> {response.status_code}"
            assert response.headers.get("www-authenticate", "").startswith("Bearer"), where
            if method == "HEAD":
                continue
            body = response.json()
            if path.startswith(NATIVE + "/"):
                assert body["error"]["code"] == "UNAUTHENTICATED", where
            else:
                assert body["error_code"] == "UNAUTHENTICATED", where
            assert "sample-name" not in response.text, where
    assert checked >= 3 * len(inventory)


def test_the_home_page_sends_a_browser_to_the_login_page(yard: Yard) -> None:
    for prefix in ("", "/projects/default"):
        response = yard.request("GET", prefix + "/", headers={"Accept": "text/html"})
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=")
        assert not response.content
    # an API client gets a 401, not a page
    assert yard.request("GET", "/", headers={"Accept": "application/json"}).status_code == 401
    assert yard.request("GET", "/health").text == "OK"
    page = yard.request("GET", "/login")
    assert page.status_code == 200
    assert 'name="csrf_token"' in page.text


# ------------------------------------------------------------------------------- 3. roles


ROLES = ["guest", "reporter", "developer", "maintainer", "owner"]
ROLE_PROJECT = "roles"


@dataclass
class RolesWorld:
    yard: Yard
    tokens: dict[str, str]
    read_token: str
    data: Candidate
    delete_exps: dict[str, str]


@pytest.fixture(scope="module")
def roles(yard: Yard) -> RolesWorld:
    # many users: made straight through the services (the CLI, a process each, is slow)
    tokens = {role: yard.quick_user(f"{role}-user") for role in ROLES}
    read_token = yard.quick_token("maintainer-user", scope="read")
    yard.project(ROLE_PROJECT)
    for role in ROLES:
        yard.member(ROLE_PROJECT, f"{role}-user", role)
        yard.bare_user(f"target-{role}")
    data = make_candidate(yard, ROLE_PROJECT, "roles")
    delete_exps = {}
    for role in ROLES:
        yard.ok(
            "POST",
            f"{MLFLOW}/registered-models/create",
            project=ROLE_PROJECT,
            json={"name": f"del-{role}"},
        )
        delete_exps[role] = yard.ok(
            "POST",
            f"{MLFLOW}/experiments/create",
            project=ROLE_PROJECT,
            json={"name": f"del-{role}"},
        )["experiment_id"]
    return RolesWorld(yard, tokens, read_token, data, delete_exps)


Attempt = Callable[[RolesWorld, str, str], requests.Response]
Effect = Callable[[RolesWorld, str], bool]


def _read(w: RolesWorld, token: str, _role: str) -> requests.Response:
    response = w.yard.mlflow(
        "POST", "runs/search", token, ROLE_PROJECT, json={"experiment_ids": [w.data.exp]}
    )
    if response.status_code == 200:
        assert [r["info"]["run_id"] for r in response.json()["runs"]] == [w.data.run]
    return response


def _download(w: RolesWorld, token: str, _role: str) -> requests.Response:
    response = w.yard.mlflow(
        "GET",
        "get-artifact",
        token,
        ROLE_PROJECT,
        params={"run_id": w.data.run, "path": "data/file.txt"},
    )
    if response.status_code == 200:
        assert response.content == w.data.file_bytes
    return response


def _download_proxy(w: RolesWorld, token: str, _role: str) -> requests.Response:
    path = f"{ARTIFACTS}/{w.data.exp}/{w.data.run}/artifacts/data/file.txt"
    return w.yard.request("GET", path, token, project=ROLE_PROJECT)


def _log_metric(w: RolesWorld, token: str, role: str) -> requests.Response:
    body = {"run_id": w.data.run, "key": f"m_{role}", "value": 1.5, "timestamp": now_ms()}
    return w.yard.mlflow("POST", "runs/log-metric", token, ROLE_PROJECT, json=body)


def _logged_metric(w: RolesWorld, role: str) -> bool:
    run = w.yard.ok(
        "GET", f"{MLFLOW}/runs/get", project=ROLE_PROJECT, params={"run_id": w.data.run}
    )
    return f"m_{role}" in {m["key"] for m in run["run"]["data"].get("metrics", [])}


def _upload(w: RolesWorld, token: str, role: str) -> requests.Response:
    path = f"{ARTIFACTS}/{w.data.exp}/{w.data.run}/artifacts/up/{role}.txt"
    return w.yard.request("PUT", path, token, project=ROLE_PROJECT, data=role.encode())


def _uploaded(w: RolesWorld, role: str) -> bool:
    response = w.yard.mlflow(
        "GET",
        "get-artifact",
        w.yard.admin,
        ROLE_PROJECT,
        params={"run_id": w.data.run, "path": f"up/{role}.txt"},
    )
    return response.status_code == 200


def _create_version(w: RolesWorld, token: str, role: str) -> requests.Response:
    body = {
        "name": w.data.model,
        "source": f"runs:/{w.data.run}/model",
        "run_id": w.data.run,
        "description": f"by {role}",
    }
    return w.yard.mlflow("POST", "model-versions/create", token, ROLE_PROJECT, json=body)


def _version_created(w: RolesWorld, role: str) -> bool:
    found = w.yard.ok(
        "GET",
        f"{MLFLOW}/model-versions/search",
        project=ROLE_PROJECT,
        params={"filter": f"name = '{w.data.model}'", "max_results": 100},
    )
    return f"by {role}" in {v.get("description") for v in found.get("model_versions", [])}


def _set_alias(w: RolesWorld, token: str, role: str) -> requests.Response:
    body = {"name": w.data.model, "alias": f"a_{role}", "version": "1"}
    return w.yard.mlflow("POST", "registered-models/alias", token, ROLE_PROJECT, json=body)


def _alias_set(w: RolesWorld, role: str) -> bool:
    model = w.yard.ok(
        "GET",
        f"{MLFLOW}/registered-models/get",
        project=ROLE_PROJECT,
        params={"name": w.data.model},
    )
    return f"a_{role}" in {a["alias"] for a in model["registered_model"].get("aliases", [])}


def _delete_model(w: RolesWorld, token: str, role: str) -> requests.Response:
    return w.yard.mlflow(
        "DELETE", "registered-models/delete", token, ROLE_PROJECT, json={"name": f"del-{role}"}
    )


def _model_deleted(w: RolesWorld, role: str) -> bool:
    response = w.yard.mlflow(
        "GET", "registered-models/get", w.yard.admin, ROLE_PROJECT, params={"name": f"del-{role}"}
    )
    return response.status_code == 404


def _delete_experiment(w: RolesWorld, token: str, role: str) -> requests.Response:
    body = {"experiment_id": w.delete_exps[role]}
    return w.yard.mlflow("POST", "experiments/delete", token, ROLE_PROJECT, json=body)


def _experiment_deleted(w: RolesWorld, role: str) -> bool:
    found = w.yard.ok(
        "GET",
        f"{MLFLOW}/experiments/get",
        project=ROLE_PROJECT,
        params={"experiment_id": w.delete_exps[role]},
    )
    return found["experiment"]["lifecycle_stage"] == "deleted"


def _add_member(w: RolesWorld, token: str, role: str) -> requests.Response:
    path = f"{NATIVE}/projects/{ROLE_PROJECT}/members/target-{role}"
    return w.yard.request("PUT", path, token, json={"role": "guest"})


def _member_added(w: RolesWorld, role: str) -> bool:
    return f"target-{role}" in w.yard.members(ROLE_PROJECT)


CAPABILITIES: dict[str, tuple[Role, Attempt, Effect | None]] = {
    "read": (Role.GUEST, _read, None),
    "download": (Role.REPORTER, _download, None),
    "download-proxy": (Role.REPORTER, _download_proxy, None),
    "log-metric": (Role.DEVELOPER, _log_metric, _logged_metric),
    "upload": (Role.DEVELOPER, _upload, _uploaded),
    "create-version": (Role.DEVELOPER, _create_version, _version_created),
    "set-alias": (Role.MAINTAINER, _set_alias, _alias_set),
    "delete-model": (Role.MAINTAINER, _delete_model, _model_deleted),
    "delete-experiment": (Role.MAINTAINER, _delete_experiment, _experiment_deleted),
    "add-member": (Role.MAINTAINER, _add_member, _member_added),
}


@pytest.mark.parametrize("role", ROLES)
def test_each_role_may_do_what_the_policy_says(roles: RolesWorld, role: str) -> None:
    token = roles.tokens[role]
    level = Role.parse(role)
    for capability, (needed, attempt, effect) in CAPABILITIES.items():
        response = attempt(roles, token, role)
        allowed = level >= needed
        if allowed:
            assert response.status_code in (200, 201), (capability, response.text)
        else:
            assert response.status_code == 403, (capability, response.status_code, response.text)
            assert error_code(response) == "PERMISSION_DENIED", capability
            assert f"needs {needed.label}" in error_message(response), capability
        if effect is not None:
            assert effect(roles, role) is allowed, (capability, "effect")


def test_only_an_owner_renames_or_deletes_a_project(roles: RolesWorld) -> None:
    yard = roles.yard
    for role in ROLES[:-1]:
        token = roles.tokens[role]
        renamed = yard.request(
            "PATCH", f"{NATIVE}/projects/{ROLE_PROJECT}", token, json={"name": f"by-{role}"}
        )
        assert renamed.status_code == 403, (role, renamed.text)
        assert error_code(renamed) == "PERMISSION_DENIED"
        deleted = yard.request("DELETE", f"{NATIVE}/projects/{ROLE_PROJECT}", token)
        assert deleted.status_code == 403, (role, deleted.text)
    projects = {line.split("\t")[0] for line in yard.cli("admin", "projects", "list").splitlines()}
    assert ROLE_PROJECT in projects
    assert not any(name.startswith("by-") for name in projects)

    owner = roles.tokens["owner"]
    renamed = yard.request(
        "PATCH", f"{NATIVE}/projects/{ROLE_PROJECT}", owner, json={"name": "roles-renamed"}
    )
    assert renamed.status_code == 200, renamed.text
    # the project answers under its new name only
    assert _read(roles, owner, "owner").status_code == 404
    moved = yard.mlflow(
        "POST", "runs/search", owner, "roles-renamed", json={"experiment_ids": [roles.data.exp]}
    )
    assert moved.status_code == 200
    back = yard.request(
        "PATCH", f"{NATIVE}/projects/roles-renamed", owner, json={"name": ROLE_PROJECT}
    )
    assert back.status_code == 200, back.text
    assert _read(roles, owner, "owner").status_code == 200

    # an owner deletes a project of theirs; a maintainer of it could not
    yard.project("doomed")
    yard.member("doomed", "owner-user", "owner")
    yard.member("doomed", "maintainer-user", "maintainer")
    refused = yard.request("DELETE", f"{NATIVE}/projects/doomed", roles.tokens["maintainer"])
    assert refused.status_code == 403
    done = yard.request("DELETE", f"{NATIVE}/projects/doomed", owner)
    assert done.status_code == 200, done.text
    gone = yard.mlflow("POST", "experiments/search", owner, "doomed", json={"max_results": 10})
    assert gone.status_code == 404


def test_a_read_token_of_a_maintainer_reads_and_downloads_only(roles: RolesWorld) -> None:
    token = roles.read_token
    assert _read(roles, token, "maintainer").status_code == 200
    assert _download(roles, token, "maintainer").status_code == 200
    assert _download_proxy(roles, token, "maintainer").status_code == 200
    for attempt, effect in (
        (_log_metric, _logged_metric),
        (_upload, _uploaded),
        (_create_version, _version_created),
        (_set_alias, _alias_set),
    ):
        response = attempt(roles, token, "read-only")
        assert response.status_code == 403, (attempt.__name__, response.text)
        assert effect(roles, "read-only") is False
    response = roles.yard.request(
        "PUT",
        f"{NATIVE}/projects/{ROLE_PROJECT}/members/target-guest",
        token,
        json={"role": "developer"},
    )
    assert response.status_code == 403
    # the token may not mint a write token for its user either
    minted = roles.yard.request("POST", f"{NATIVE}/tokens", token, json={"name": "escalate"})
    assert minted.status_code == 403, minted.text


# ---------------------------------------------------------------- 4. the real mlflow client


@dataclass
class ClientWorld:
    yard: Yard
    uri: str
    token: str
    expiring: str
    expires_at: float


@pytest.fixture(scope="module")
def e2e(yard: Yard) -> ClientWorld:
    yard.project("e2e")
    token = yard.user("carl")
    yard.member("e2e", "carl", "maintainer")
    # made early, so it has expired by the time a test uses it
    _id, expiring = yard.token("--user", "carl", "--expires", "2s", "--name", "short")
    return ClientWorld(yard, f"{yard.url}/projects/e2e", token, expiring, time.time() + 2)


@pytest.fixture
def mlflow_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    import mlflow

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch
    while mlflow.active_run():
        mlflow.end_run()
    # the registry URI is process-wide (and exported to subprocesses): leave none behind
    mlflow.set_registry_uri(None)  # type: ignore[arg-type]


def point_client(monkeypatch: pytest.MonkeyPatch, uri: str, **credentials: str) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    for name, value in credentials.items():
        monkeypatch.setenv(f"MLFLOW_TRACKING_{name.upper()}", value)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


def test_mlflow_client_with_a_bearer_token_end_to_end(
    e2e: ClientWorld, mlflow_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import mlflow
    import mlflow.pyfunc
    import mlflow.sklearn
    from mlflow.tracking import MlflowClient
    from sklearn.linear_model import LogisticRegression

    point_client(mlflow_env, e2e.uri, token=e2e.token)
    experiment = mlflow.set_experiment("bearer-experiment")
    features = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.9, 0.1]])
    model = LogisticRegression().fit(features, [0, 1, 0, 1])
    notes = tmp_path / "notes.txt"
    notes.write_text("logged with a token")
    with mlflow.start_run() as run:
        mlflow.log_params({"C": 1.0, "solver": "lbfgs"})
        for step in range(3):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_artifact(str(notes), "docs")
        mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name="bearer-model",
            pip_requirements=["scikit-learn"],
        )
    client = MlflowClient()
    fetched = client.get_run(run.info.run_id)
    assert fetched.data.params == {"C": "1.0", "solver": "lbfgs"}
    assert fetched.data.metrics["loss"] == pytest.approx(1 / 3)
    assert [m.value for m in client.get_metric_history(run.info.run_id, "loss")] == [
        1.0,
        0.5,
        pytest.approx(1 / 3),
    ]
    downloaded = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="docs/notes.txt", dst_path=str(tmp_path / "dl")
    )
    assert Path(downloaded).read_text() == "logged with a token"
    versions = client.search_model_versions("name = 'bearer-model'")
    assert [v.version for v in versions] == ["1"]
    client.set_registered_model_alias("bearer-model", "champion", "1")
    loaded = mlflow.pyfunc.load_model("models:/bearer-model@champion")
    assert list(loaded.predict(features)) == [0, 1, 0, 1]
    found = mlflow.search_runs([experiment.experiment_id], output_format="list")
    assert [r.info.run_id for r in found] == [run.info.run_id]
    # the project holds it all; the default project does not even see the experiment
    default = e2e.yard.mlflow(
        "GET", "experiments/get-by-name", e2e.token, params={"experiment_name": "bearer-experiment"}
    )
    assert default.status_code == 404


def test_mlflow_client_with_basic_credentials(
    e2e: ClientWorld, mlflow_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    point_client(mlflow_env, e2e.uri, username="carl", password=e2e.token)
    experiment = mlflow.set_experiment("basic-experiment")
    data = tmp_path / "table.csv"
    data.write_text("a,b\n1,2\n")
    with mlflow.start_run() as run:
        mlflow.log_param("auth", "basic")
        mlflow.log_metric("accuracy", 0.9)
        mlflow.log_artifact(str(data))
    client = MlflowClient()
    assert client.get_run(run.info.run_id).data.params == {"auth": "basic"}
    assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["table.csv"]
    local = client.download_artifacts(run.info.run_id, "table.csv", str(tmp_path))
    assert Path(local).read_text() == "a,b\n1,2\n"
    client.create_registered_model("basic-model")
    client.create_model_version(
        "basic-model", f"runs:/{run.info.run_id}/table.csv", run.info.run_id
    )
    client.set_registered_model_alias("basic-model", "prod", "1")
    assert client.get_model_version_by_alias("basic-model", "prod").version == "1"
    found = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in found] == [run.info.run_id]


def assert_client_refused(uri: str) -> None:
    from mlflow.tracking import MlflowClient

    with pytest.raises(MlflowException) as refused:
        MlflowClient(uri).search_experiments()
    text = str(refused.value)
    assert "UNAUTHENTICATED" in text or "401" in text, text


def test_mlflow_client_fails_clearly_without_a_valid_token(
    e2e: ClientWorld, mlflow_env: pytest.MonkeyPatch
) -> None:
    yard = e2e.yard
    point_client(mlflow_env, e2e.uri)
    assert_client_refused(e2e.uri)  # no token at all

    mlflow_env.setenv("MLFLOW_TRACKING_TOKEN", "myd_" + "x" * 40)
    assert_client_refused(e2e.uri)
    mlflow_env.setenv(
        "MLFLOW_TRACKING_TOKEN", e2e.token[:-1] + ("A" if e2e.token[-1] != "A" else "B")
    )
    assert_client_refused(e2e.uri)

    time.sleep(max(0.0, e2e.expires_at - time.time() + 0.2))
    mlflow_env.setenv("MLFLOW_TRACKING_TOKEN", e2e.expiring)
    assert_client_refused(e2e.uri)
    expired = yard.mlflow(
        "POST", "experiments/search", e2e.expiring, "e2e", json={"max_results": 10}
    )
    assert expired.status_code == 401
    assert "expired" in error_message(expired)

    token_id, revocable = yard.token("--user", "carl", "--name", "revocable")
    mlflow_env.setenv("MLFLOW_TRACKING_TOKEN", revocable)
    from mlflow.tracking import MlflowClient

    assert MlflowClient(e2e.uri).search_experiments() is not None  # works until revoked
    yard.cli("admin", "tokens", "revoke", str(token_id))
    assert_client_refused(e2e.uri)
    listed = yard.cli("admin", "tokens", "list", "--user", "carl")
    assert re.search(rf"^{token_id}\t.*revoked$", listed, re.MULTILINE), listed

    # Basic: a wrong user name for a good token, and a wrong token for the right user
    mlflow_env.delenv("MLFLOW_TRACKING_TOKEN")
    mlflow_env.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    mlflow_env.setenv("MLFLOW_TRACKING_PASSWORD", e2e.token)
    assert_client_refused(e2e.uri)
    mlflow_env.setenv("MLFLOW_TRACKING_USERNAME", "carl")
    mlflow_env.setenv("MLFLOW_TRACKING_PASSWORD", "not-a-token")
    assert_client_refused(e2e.uri)


# ----------------------------------------------------------------------------- 5. attacks


@dataclass
class Target:
    yard: Yard
    mallory: str  # a developer of the target project, not an admin
    exp: str


@pytest.fixture(scope="module")
def target(yard: Yard) -> Target:
    mallory = yard.user("mallory")
    yard.project("target")
    yard.member("target", "mallory", "developer")
    exp = yard.ok(
        "POST", f"{MLFLOW}/experiments/create", project="target", json={"name": "target-exp"}
    )["experiment_id"]
    return Target(yard, mallory, exp)


def run_count(t: Target) -> int:
    found = t.yard.ok(
        "POST", f"{MLFLOW}/runs/search", project="target", json={"experiment_ids": [t.exp]}
    )
    return len(found.get("runs", []))


def test_nobody_signs_themselves_up(target: Target) -> None:
    yard = target.yard
    before = yard.cli("admin", "users", "list")
    new_user = {"name": "eve", "admin": True}
    assert yard.request("POST", f"{NATIVE}/users", json=new_user).status_code == 401
    for project in (None, "target", "default"):
        denied = yard.request(
            "POST", f"{NATIVE}/users", target.mallory, project=project, json=new_user
        )
        assert denied.status_code == 403, denied.text
        assert denied.json()["error"]["code"] == "PERMISSION_DENIED"
    # nor promotes themselves
    promoted = yard.request(
        "PATCH", f"{NATIVE}/users/mallory", target.mallory, json={"admin": True}
    )
    assert promoted.status_code == 403
    for path, body in (
        ("/signup", {"username": "eve", "password": "eve-password-123"}),
        ("/register", {"username": "eve", "password": "eve-password-123"}),
        (f"{MLFLOW}/users/create", {"username": "eve", "password": "eve-password-123"}),
        ("/api/2.0/mlflow/users/update-admin", {"username": "mallory", "is_admin": True}),
    ):
        for token in (None, target.mallory):
            response = yard.request("POST", path, token, json=body)
            assert response.status_code in (401, 403, 404), (path, response.status_code)
        form = yard.request("POST", path, data={"username": "eve", "password": "x" * 12})
        assert form.status_code in (401, 403, 404), path
    after = yard.cli("admin", "users", "list")
    assert after == before
    assert "eve" not in {line.split("\t")[0] for line in after.splitlines()}
    mallory = next(line for line in before.splitlines() if line.startswith("mallory\t"))
    assert "admin" not in mallory


@pytest.mark.parametrize("name", ["token", "access_token", "private_token", "api_key"])
def test_a_token_in_the_query_string_is_refused(target: Target, name: str) -> None:
    yard = target.yard
    for method, endpoint in (("GET", "experiments/search"), ("POST", "runs/create")):
        response = yard.http.request(
            method,
            f"{yard.url}/projects/target{MLFLOW}/{endpoint}?{name}={yard.admin}",
            json={"experiment_id": target.exp} if method == "POST" else None,
            timeout=30,
        )
        assert response.status_code == 401, (name, endpoint, response.text)
        assert "query string" in error_message(response)
    upper = yard.http.get(f"{yard.url}/api/v1/packages?{name.upper()}={yard.admin}", timeout=30)
    assert upper.status_code == 401
    assert run_count(target) == 0


def test_a_revoked_token_is_refused(target: Target) -> None:
    yard = target.yard
    token_id, secret = yard.token("--user", "mallory", "--name", "leaked")
    assert yard.request("GET", f"{NATIVE}/me", secret).json()["user"]["name"] == "mallory"
    yard.cli("admin", "tokens", "revoke", str(token_id))
    for headers in (
        bearer(secret),
        {"Authorization": "Basic " + _basic("mallory", secret)},
    ):
        response = yard.request("GET", f"{NATIVE}/me", headers=headers)
        assert response.status_code == 401
        assert "revoked" in error_message(response)
        write = yard.mlflow(
            "POST",
            "runs/create",
            None,
            "target",
            headers=headers,
            json={"experiment_id": target.exp},
        )
        assert write.status_code == 401
    assert run_count(target) == 0


def _basic(user: str, password: str) -> str:
    import base64

    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_foreign_host_header_is_refused(target: Target) -> None:
    yard = target.yard
    for host in ("evil.example", f"evil.example:{yard.server.port}", "127.0.0.1.evil.example"):
        for path in ("/health", f"/projects/target{MLFLOW}/experiments/search"):
            response = yard.request("GET", path, yard.admin, headers={"Host": host})
            assert response.status_code == 400, (host, path)
            assert error_code(response) == "BAD_REQUEST"
        create = yard.mlflow(
            "POST",
            "runs/create",
            yard.admin,
            "target",
            headers={"Host": host},
            json={"experiment_id": target.exp},
        )
        assert create.status_code == 400
    assert yard.request("GET", "/health", headers={"Host": f"localhost:{yard.server.port}"}).ok
    assert run_count(target) == 0


def test_cross_origin_and_simple_requests_change_nothing(target: Target) -> None:
    yard = target.yard
    body = json.dumps({"experiment_id": target.exp})
    evil = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    for token in (None, target.mallory):
        response = yard.mlflow("POST", "runs/create", token, "target", headers=evil, data=body)
        assert response.status_code == 403, response.text
        assert error_code(response) == "PERMISSION_DENIED"
    for origin in (
        "null",
        f"http://127.0.0.1:{yard.server.port}.evil.example",
        "https://evil.example",
    ):
        response = yard.mlflow(
            "POST",
            "runs/create",
            target.mallory,
            "target",
            headers={"Origin": origin},
            json={"experiment_id": target.exp},
        )
        assert response.status_code == 403, origin
    # a "simple" request (no preflight in a browser) is never a JSON call, even with a token
    for media in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x"):
        response = yard.mlflow(
            "POST",
            "runs/create",
            target.mallory,
            "target",
            headers={"Content-Type": media},
            data=body,
        )
        assert response.status_code == 400, (media, response.text)
        assert error_code(response) == "BAD_REQUEST"
    native = yard.request(
        "POST",
        f"{NATIVE}/projects",
        target.mallory,
        headers={"Content-Type": "text/plain"},
        data='{"name": "sneaky"}',
    )
    assert native.status_code == 400
    assert run_count(target) == 0
    # a preflight from another origin fails, and never with CORS headers (checked on every
    # response by check_headers)
    for path in (f"/projects/target{MLFLOW}/runs/create", f"{NATIVE}/projects", "/login"):
        preflight = yard.request(
            "OPTIONS",
            path,
            headers={
                "Origin": "http://evil.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 403, path
    # the same request from the server's own origin works
    same = yard.mlflow(
        "POST",
        "runs/create",
        target.mallory,
        "target",
        headers={"Origin": f"http://127.0.0.1:{yard.server.port}"},
        json={"experiment_id": target.exp},
    )
    assert same.status_code == 200, same.text
    assert run_count(target) == 1
    yard.ok(
        "POST",
        f"{MLFLOW}/runs/delete",
        project="target",
        json={"run_id": same.json()["run"]["info"]["run_id"]},
    )


def test_security_headers_on_every_kind_of_response(target: Target) -> None:
    """``check_headers`` runs on every response of these tests; here one of each kind."""
    yard = target.yard
    kinds = {
        200: yard.request("GET", "/health"),
        303: yard.request("GET", "/", headers={"Accept": "text/html"}),
        400: yard.request("GET", "/health", headers={"Host": "evil.example"}),
        401: yard.mlflow("GET", "experiments/search", None),
        403: yard.request("POST", f"{NATIVE}/users", target.mallory, json={"name": "x"}),
        404: yard.request("GET", "/no/such/page", yard.admin),
        405: yard.request("DELETE", "/health", yard.admin),
    }
    for status, response in kinds.items():
        assert response.status_code == status, (status, response.text)
        check_headers(response)
    page = yard.request("GET", "/login")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_a_crash_still_answers_with_the_security_headers(tmp_path: Path) -> None:
    """A handler that fails unexpectedly is answered by Starlette's outermost error
    middleware, outside the gate: the headers must be there all the same."""
    import anyio
    import httpx

    async def boom(_request: Any) -> PlainTextResponse:
        raise RuntimeError("boom")

    app = create_app(Settings(auth=True, data_dir=tmp_path))
    rules = {"GET": policy.Rule(policy.C.PUBLIC)}
    app.router.routes.append(GatedRoute(Route("/boom", boom, methods=["GET"]), rules, app.state.db))

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.get("/boom")

    # in a thread of its own: the session's browser may hold an event loop in this one
    with ThreadPoolExecutor(1) as pool:
        response = pool.submit(anyio.run, get).result(timeout=60)
    assert response.status_code == 500
    assert response.json()["error_code"] == "INTERNAL_ERROR"
    assert "boom" not in response.text
    for name in SECURITY_HEADERS:
        assert name in response.headers, name


LOGIN_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def login_form(session: requests.Session, url: str) -> tuple[str, str]:
    """The login page: its CSRF cookie and the same value in the form's hidden field."""
    page = session.get(f"{url}/login", timeout=30)
    assert page.status_code == 200
    found = LOGIN_FIELD.search(page.text)
    assert found
    assert page.cookies["modelyard_login_csrf"] == found.group(1)
    return page.cookies["modelyard_login_csrf"], found.group(1)


def test_a_browser_session_needs_its_csrf_token_to_write(target: Target) -> None:
    yard = target.yard
    password = "correct horse battery staple"
    yard.user("sam", "--password-stdin", stdin=password + "\n")
    yard.member("target", "sam", "developer")
    browser = http_session()

    def post_login(form: dict[str, str], cookie: str | None) -> requests.Response:
        return browser.post(
            f"{yard.url}/login",
            data=form,
            cookies={} if cookie is None else {"modelyard_login_csrf": cookie},
            allow_redirects=False,
            timeout=30,
        )

    cookie, field_value = login_form(browser, yard.url)
    wrong = post_login(
        {"csrf_token": field_value, "username": "sam", "password": "wrong password!!"}, cookie
    )
    assert wrong.status_code == 401
    assert "text/html" in wrong.headers["content-type"]
    assert "modelyard_session" not in wrong.cookies
    unknown = post_login(
        {"csrf_token": field_value, "username": "nobody", "password": password}, cookie
    )
    assert unknown.status_code == 401
    assert error_message_html(unknown) == error_message_html(wrong)
    no_field = post_login({"username": "sam", "password": password}, cookie)
    assert no_field.status_code == 403
    no_cookie = post_login(
        {"csrf_token": field_value, "username": "sam", "password": password}, None
    )
    assert no_cookie.status_code == 403
    mismatch = post_login({"csrf_token": "x" * 30, "username": "sam", "password": password}, cookie)
    assert mismatch.status_code == 403
    for response in (no_field, no_cookie, mismatch):
        assert "modelyard_session" not in response.cookies

    for evil_next in ("//evil.example", "https://evil.example/", "/\\evil.example", "http:evil"):
        cookie, field_value = login_form(browser, yard.url)
        done = post_login(
            {"csrf_token": field_value, "username": "sam", "password": password, "next": evil_next},
            cookie,
        )
        assert done.status_code == 303, done.text
        assert done.headers["location"] == "/", evil_next
    cookie, field_value = login_form(browser, yard.url)
    done = post_login(
        {
            "csrf_token": field_value,
            "username": "sam",
            "password": password,
            "next": "/projects/target",
        },
        cookie,
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/projects/target"
    set_cookie = done.headers["set-cookie"]
    session_cookie = next(c for c in set_cookie.split(", ") if c.startswith("modelyard_session="))
    attributes = [a.strip().lower() for a in session_cookie.split(";")]
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "path=/" in attributes
    secret = done.cookies["modelyard_session"]
    jar = {"modelyard_session": secret}

    home = browser.get(f"{yard.url}/", cookies=jar, headers={"Accept": "text/html"}, timeout=30)
    assert home.status_code == 200
    assert "sam" in home.text
    csrf = LOGIN_FIELD.search(home.text)
    assert csrf
    search = f"{yard.url}/projects/target{MLFLOW}/experiments/search"
    reads = browser.get(search, cookies=jar, params={"max_results": 10}, timeout=30)
    assert reads.status_code == 200  # the cookie alone reads

    def create(name: str, **headers: str) -> requests.Response:
        return browser.post(
            f"{yard.url}/projects/target{MLFLOW}/experiments/create",
            cookies=jar,
            headers=headers,
            json={"name": name},
            timeout=30,
        )

    assert create("by-cookie-alone").status_code == 403
    assert create("by-wrong-csrf", **{"X-CSRF-Token": "nope"}).status_code == 403
    assert create("by-other-csrf", **{"X-CSRF-Token": field_value}).status_code == 403
    names = {
        e["name"]
        for e in yard.ok(
            "POST", f"{MLFLOW}/experiments/search", project="target", json={"max_results": 1000}
        )["experiments"]
    }
    assert not names & {"by-cookie-alone", "by-wrong-csrf", "by-other-csrf"}
    made = create("by-session", **{"X-CSRF-Token": csrf.group(1)})
    assert made.status_code == 200, made.text

    # signing out needs the token too, and ends the session
    refused = browser.post(
        f"{yard.url}/logout", cookies=jar, data={}, timeout=30, allow_redirects=False
    )
    assert refused.status_code == 403
    out = browser.post(
        f"{yard.url}/logout",
        cookies=jar,
        data={"csrf_token": csrf.group(1)},
        timeout=30,
        allow_redirects=False,
    )
    assert out.status_code == 303
    after = browser.get(search, cookies=jar, params={"max_results": 10}, timeout=30)
    assert after.status_code == 401


def error_message_html(response: requests.Response) -> str:
    found = re.search(r'<p role="alert">([^<]*)</p>', response.text)
    return found.group(1) if found else ""


# -------------------------------------------------------------------- 6. secure by default


def serve(data_dir: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "modelyard", "server", "--data-dir", str(data_dir), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_healthy(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError("server did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)


def refuse_to_serve(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``modelyard server`` with these options, expected to refuse to start."""
    return subprocess.run(
        [sys.executable, "-m", "modelyard", "server", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_a_public_address_needs_auth_or_an_explicit_opt_out(tmp_path: Path) -> None:
    port = free_port()
    refused = refuse_to_serve(tmp_path, "--host", "0.0.0.0", "--port", str(port))
    assert refused.returncode != 0
    assert "--auth" in refused.stderr
    assert "--insecure-no-auth" in refused.stderr
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=1)
    # the environment cannot sneak past it either
    env_refused = refuse_to_serve(
        tmp_path, "--port", str(port), env={**os.environ, "MODELYARD_HOST": "0.0.0.0"}
    )
    assert env_refused.returncode != 0
    assert "--auth" in env_refused.stderr

    for flags in (["--insecure-no-auth"], ["--auth"]):
        port = free_port()
        proc = serve(tmp_path, "--host", "0.0.0.0", "--port", str(port), *flags)
        try:
            wait_healthy(proc, port)
            answer = requests.get(
                f"http://127.0.0.1:{port}{MLFLOW}/experiments/search?max_results=5", timeout=5
            )
            assert answer.status_code == (401 if flags == ["--auth"] else 200)
        finally:
            stop(proc)
