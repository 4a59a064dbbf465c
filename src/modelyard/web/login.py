"""Signing in and out in a browser: a login form, a session cookie (HttpOnly, SameSite=Lax)
and a CSRF token per session; the form itself is protected by a double-submit cookie."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from html import escape
from typing import Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from modelyard.auth import secrets
from modelyard.auth.gate import PRINCIPAL, SESSION_COOKIE
from modelyard.auth.roles import Principal
from modelyard.db.engine import Database
from modelyard.errors import Unauthenticated
from modelyard.services import access, throttle

LOGIN_CSRF_COOKIE = "modelyard_login_csrf"
MAX_FORM_BYTES = 16 * 1024


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · modelyard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/ui.css"></head>
<body><header class="top"><a class="brand" href="/">modelyard</a></header>
<main class="login">{body}</main></body></html>"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        _PAGE.format(title=escape(title), body=body),
        status_code=status,
        headers={"cache-control": "no-store"},
    )


def _safe_next(value: str | None) -> str:
    """Only a path on this server: never another site (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _login_form(next_path: str, csrf: str, message: str = "") -> str:
    notice = f'<p role="alert">{escape(message)}</p>' if message else ""
    return (
        "<h1>Sign in to modelyard</h1>"
        f"{notice}"
        '<form method="post" action="/login">'
        f'<input type="hidden" name="csrf_token" value="{escape(csrf)}">'
        f'<input type="hidden" name="next" value="{escape(next_path)}">'
        '<p><label>User name <input name="username" autocomplete="username" required></label></p>'
        '<p><label>Password or personal token <input name="password" type="password" '
        'autocomplete="current-password" required></label></p>'
        '<p><button type="submit">Sign in</button></p></form>'
        "<p>No account? An administrator creates one (<code>modelyard users create</code>).</p>"
    )


def routes(db: Database) -> list[Route]:
    async def run(function: Callable[..., Any], *args: Any) -> Any:
        if db.is_sqlite:
            return function(*args)
        return await run_in_threadpool(function, *args)

    async def login_page(request: Request) -> Response:
        csrf = secrets.new_secret("")
        response = _page("Sign in", _login_form(_safe_next(request.query_params.get("next")), csrf))
        _set_login_csrf(response, csrf, _secure(request))
        return response

    async def login(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return _page("Sign in", "<p>Form too large.</p>", 413)
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        next_path = _safe_next(form.get("next"))
        expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        sent = form.get("csrf_token", "")
        if not expected or not hmac.compare_digest(expected, sent):
            return _form_again(request, next_path, "The form expired; please sign in again.", 403)
        client = request.client
        name = form.get("username", "")
        address = client.host if client else ""
        if not await run(throttle.attempt, db, name, address):
            return _form_again(
                request, next_path, "Too many failed attempts; try again later.", 429
            )
        try:
            user_id = await run(access.check_login, db, name, form.get("password", ""))
        except Unauthenticated as exc:
            return _form_again(request, next_path, exc.message, 401)
        await run(throttle.succeeded, db, name, address)
        secret, _csrf = await run(lambda: access.create_session(db, user_id, address=address))
        done = RedirectResponse(next_path, status_code=303)
        done.set_cookie(
            SESSION_COOKIE,
            secret,
            max_age=access.SESSION_TTL_MS // 1000,
            httponly=True,
            samesite="lax",
            secure=_secure(request),
            path="/",
        )
        done.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return done

    async def logout(request: Request) -> Response:
        principal: Principal | None = request.scope.get(PRINCIPAL)
        body = await request.body()
        form = {
            k: v[0] for k, v in parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", "replace")).items()
        }
        sent = form.get("csrf_token") or request.headers.get("x-csrf-token", "")
        if (
            principal is None
            or not principal.via_session
            or not hmac.compare_digest(principal.csrf_token or "", sent)
        ):
            return _page("Sign out", "<p>Missing or wrong CSRF token.</p>", 403)
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            await run(access.end_session, db, cookie)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]


def _form_again(request: Request, next_path: str, message: str, status: int) -> Response:
    """The login form once more, with a message and a fresh form token."""
    fresh = secrets.new_secret("")
    response = _page("Sign in", _login_form(next_path, fresh, message), status)
    _set_login_csrf(response, fresh, _secure(request))
    return response


def _set_login_csrf(response: Response, value: str, secure: bool) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        value,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/login",
    )
