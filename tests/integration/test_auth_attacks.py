"""The usual attacks against a live ``--auth`` server (SQLite and PostgreSQL), each refused
without changing anything: signing oneself up, tokens in the query string, revoked tokens, a
foreign Host header, cross-origin and simple requests, writes without the CSRF token; and the
security headers on every kind of answer, a crash included."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from modelyard.app import create_app
from modelyard.auth import policy
from modelyard.auth.gate import GatedRoute
from modelyard.settings import Settings
from tests.integration.auth_world import (
    MLFLOW,
    NATIVE,
    SECURITY_HEADERS,
    Yard,
    bearer,
    check_headers,
    error_code,
    error_message,
    http_session,
    yard,
)

__all__ = ["yard"]  # the fixture, shared with the other authentication tests


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
