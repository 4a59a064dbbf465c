"""Authentication and authorisation against live ``--auth`` servers (SQLite and PostgreSQL):
every route of the router needs credentials, each role may do exactly what the policy says, and
a server never listens on a public address without authentication unless told to. The real
mlflow client with tokens is in ``test_auth_client.py``, the usual attacks in
``test_auth_attacks.py``, isolation between projects in ``test_isolation.py``; the shared
helpers in ``auth_world.py``.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from modelyard.app import create_app
from modelyard.auth import policy
from modelyard.auth.gate import GatedRoute, gate_routes
from modelyard.auth.roles import Role
from modelyard.settings import Settings
from tests.conftest import (
    free_port,
)
from tests.integration.auth_world import (
    ARTIFACTS,
    MLFLOW,
    NATIVE,
    Candidate,
    Yard,
    error_code,
    error_message,
    make_candidate,
    now_ms,
    yard,
)

__all__ = ["yard"]  # the fixture, shared with the other authentication tests


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
