"""The gate: every request passes it, on every route.

``Gate`` (ASGI middleware, outermost) checks the Host header against DNS rebinding, refuses
requests from other origins (so no CORS preflight ever succeeds), picks the project from a
``/projects/<name>`` prefix, authenticates the caller (Bearer token, Basic with a token as
password, or a session cookie; never a token in the query string) and adds security headers to
every response. ``GatedRoute`` wraps each route with its rule from ``auth.policy`` and decides
there, before the handler runs, whether the caller may: no credentials → 401; a project the
caller cannot read (or that does not exist) → 404; too small a role → 403. A session cookie
alone never changes anything: writes need the session's CSRF token as well.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import socket
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any
from urllib.parse import urlencode

import orjson
from anyio import to_thread
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard.auth import policy
from modelyard.auth.lookup import Found, Lookup
from modelyard.auth.roles import NOBODY, Capability, Principal, Role
from modelyard.db.engine import Database
from modelyard.db.schema import DEFAULT_PROJECT_ID
from modelyard.errors import ErrorCode, ModelyardError, Unauthenticated
from modelyard.services import access

SESSION_COOKIE = "modelyard_session"
CSRF_HEADER = "x-csrf-token"
PRINCIPAL = "modelyard.principal"
PROJECT = "modelyard.project_id"
RULE = "modelyard.rule"
ROLE = "modelyard.role"
PREFIX = "modelyard.prefix"
_QUERY_TOKEN_NAMES = (b"token", b"access_token", b"private_token", b"api_key")
_SIMPLE_TYPES = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data")
_SAFE_METHODS = frozenset({"GET", "HEAD"})

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (
        b"content-security-policy",
        (
            b"default-src 'self'; img-src 'self' data:; object-src 'none'; "
            b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        ),
    ),
]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(bind_host: str, extra: Iterable[str]) -> frozenset[str] | None:
    """Host names the server answers to (None: any). Loopback names always; when bound to a
    wildcard address, also this machine's names and addresses; plus the configured ones."""
    names = {"localhost", "127.0.0.1", "::1"}
    extra = [h.strip().lower() for h in extra if h.strip()]
    if "*" in extra:
        return None
    names.update(extra)
    if bind_host not in ("0.0.0.0", "::", ""):  # noqa: S104 - detecting, not binding
        names.add(bind_host.strip("[]").lower())
    else:
        for name in {socket.gethostname(), socket.getfqdn()}:
            names.add(name.lower())
            with contextlib.suppress(OSError):
                names.update(socket.gethostbyname_ex(name)[2])
    return frozenset(names)


def _host_name(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def is_native(path: str) -> bool:
    return path.startswith(policy.NATIVE_FAMILY + "/")


def error_body(path: str, code: ErrorCode, message: str) -> bytes:
    if is_native(path):
        return orjson.dumps({"error": {"code": code.value, "message": message}})
    return orjson.dumps({"error_code": code.value, "message": message})


async def send_error(
    send: Send,
    path: str,
    code: ErrorCode,
    message: str,
    status: int | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = error_body(path, code, message)
    if code is ErrorCode.UNAUTHENTICATED:
        headers = [*(headers or []), (b"www-authenticate", b'Bearer realm="modelyard"')]
    await send(
        {
            "type": "http.response.start",
            "status": status or code.http_status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Gate:
    """ASGI middleware: host and origin checks, project prefix, authentication, headers."""

    def __init__(
        self, app: ASGIApp, db: Database, *, auth: bool, hosts: frozenset[str] | None
    ) -> None:
        self.app = app
        self.db = db
        self.lookup = Lookup(db)
        self.auth = auth
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = _headers(scope)
        host = headers.get("host", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [h for h in SECURITY_HEADERS if h[0] not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        if self.hosts is not None and _host_name(host) not in self.hosts:
            await send_error(
                send_with_headers,
                path,
                ErrorCode.BAD_REQUEST,
                f"Host {host!r} is not one this server answers to (see --allowed-hosts).",
            )
            return
        origin = headers.get("origin")
        if origin is not None and not _same_origin(origin, host):
            await send_error(
                send_with_headers,
                path,
                ErrorCode.PERMISSION_DENIED,
                "Requests from other origins are not allowed.",
            )
            return
        try:
            found = await self._identify(scope, headers)
        except ModelyardError as exc:
            await send_error(send_with_headers, scope["path"], exc.code, exc.message)
            return
        scope[PROJECT] = found.project_id
        scope[PRINCIPAL] = found.principal
        await self.app(scope, receive, send_with_headers)

    async def _run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.db.is_sqlite:
            return function(*args, **kwargs)
        return await to_thread.run_sync(partial(function, *args, **kwargs))

    async def _identify(self, scope: Scope, headers: dict[str, str]) -> Found:
        """The URL's project and the caller. A ``/projects/<name>/…`` path is rewritten to
        ``/…``; a project that does not exist is None (answered 404 by the route, after
        authentication, like a project the caller may not read)."""
        path: str = scope["path"]
        project: str | int = DEFAULT_PROJECT_ID
        if path.startswith("/projects/"):
            project, _, rest = path[len("/projects/") :].partition("/")
            scope["path"] = "/" + rest
            scope[PREFIX] = f"/projects/{project}"
            raw = scope.get("raw_path")
            if raw is not None:
                scope["raw_path"] = b"/" + raw[len("/projects/") :].partition(b"/")[2]
        if not self.auth:
            anonymous = Principal(name=NOBODY.name, is_admin=True, anonymous=True)
            if project == DEFAULT_PROJECT_ID:
                return Found(DEFAULT_PROJECT_ID, anonymous)
            found: Found = await self._run(self.lookup.find, project)
            found.principal = anonymous
            return found
        found = await self._run(self.lookup.find, project, **_credentials(scope, headers))
        if found.stale_token is not None:
            await self._run(access.touch_token, self.db, found.stale_token)
        return found


def _credentials(scope: Scope, headers: dict[str, str]) -> dict[str, str]:
    """The caller's secret: ``token`` (Bearer, or Basic with the token as password) or
    ``session`` (the cookie); none at all is an empty dict. Never from the query string."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer" and value:
            return {"token": value}
        if scheme == "basic" and value:
            user, password = _basic(value)
            return {"token": password, "basic_user": user}
        raise Unauthenticated("Unsupported Authorization header: use a Bearer token.")
    query: bytes = scope.get("query_string", b"")
    if query and any(
        part.split(b"=", 1)[0].lower() in _QUERY_TOKEN_NAMES for part in query.split(b"&")
    ):
        raise Unauthenticated(
            "Tokens are not accepted in the query string; send them in the Authorization header."
        )
    cookie = _cookie(headers.get("cookie", ""), SESSION_COOKIE)
    return {"session": cookie} if cookie else {}


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in scope["headers"]:
        out[name.decode("latin-1").lower()] = value.decode("latin-1")
    return out


def _same_origin(origin: str, host: str) -> bool:
    if origin == "null":
        return False
    _, _, rest = origin.partition("://")
    return rest.lower() == host.lower()


def _basic(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("Malformed Basic credentials.") from None
    user, sep, password = decoded.partition(":")
    if not sep or not password:
        raise Unauthenticated("Basic credentials need a user name and a token as password.")
    return user, password


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


def _media_type(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name.lower() == b"content-type":
            return str(value.decode("latin-1")).split(";", 1)[0].strip().lower()
    return ""


def _wants_page(scope: Scope) -> bool:
    path: str = scope["path"]
    if scope["method"] != "GET" or path.startswith(("/api/", "/ajax-api/")):
        return False
    return "text/html" in _headers(scope).get("accept", "")


async def _redirect_to_login(scope: Scope, send: Send) -> None:
    here = scope.get(PREFIX, "") + scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    target = "/login?" + urlencode({"next": here + ("?" + query if query else "")})
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", target.encode()), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


class GatedRoute(Route):
    """A route with its rules: checked by ``_authorize`` before the route's handler runs.
    It takes over the wrapped route's matching state, so routing costs what it did."""

    def __init__(self, route: Route, rules: dict[str, policy.Rule], db: Database) -> None:
        self.__dict__.update(route.__dict__)
        self.route = route
        self.rules = rules
        self.db = db

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        rule = self.rules.get("GET" if method == "HEAD" else method)
        if rule is None:  # a method the route does not have: the route answers 405
            await self.route.handle(scope, receive, send)
            return
        try:
            scope[ROLE] = await self._authorize(scope, rule)
        except ModelyardError as exc:
            if exc.code is ErrorCode.UNAUTHENTICATED and _wants_page(scope):
                await _redirect_to_login(scope, send)
                return
            await send_error(send, scope["path"], exc.code, exc.message)
            return
        scope[RULE] = rule
        await self.route.handle(scope, receive, send)

    async def _authorize(self, scope: Scope, rule: policy.Rule) -> Role | None:
        capability = rule.capability
        if capability is Capability.PUBLIC:
            return None
        principal: Principal | None = scope.get(PRINCIPAL)
        if principal is None:
            raise Unauthenticated(
                "Authentication required: send a token as 'Authorization: Bearer <token>' "
                "(MLFLOW_TRACKING_TOKEN) or sign in."
            )
        method = scope["method"]
        if method not in _SAFE_METHODS:
            if method == "POST" and not rule.forms and _media_type(scope) in _SIMPLE_TYPES:
                raise ModelyardError(
                    "This call takes a JSON body (Content-Type: application/json).",
                    ErrorCode.BAD_REQUEST,
                )
            if principal.via_session and not rule.forms:
                sent = _headers(scope).get(CSRF_HEADER)
                if not sent or sent != principal.csrf_token:
                    raise ModelyardError(
                        "Missing or wrong CSRF token (X-CSRF-Token).", ErrorCode.PERMISSION_DENIED
                    )
        if capability is Capability.CALLER:
            return None
        if capability is Capability.USER:
            if principal.user_id is None and not principal.anonymous:
                raise ModelyardError(
                    "Only a user can do this, not a project token.", ErrorCode.PERMISSION_DENIED
                )
            if principal.read_only and method not in _SAFE_METHODS:
                raise ModelyardError("This token may only read.", ErrorCode.PERMISSION_DENIED)
            return None
        if capability is Capability.ADMIN:
            if not principal.is_admin:
                raise ModelyardError(
                    "Only an administrator can do this.", ErrorCode.PERMISSION_DENIED
                )
            if principal.read_only and method not in _SAFE_METHODS:
                raise ModelyardError("This token may only read.", ErrorCode.PERMISSION_DENIED)
            return None
        project_name = scope.get("path_params", {}).get("project")
        role = await self._role(principal, scope.get(PROJECT), project_name)
        if role is None:
            raise ModelyardError(
                f"Project '{project_name}' does not exist." if project_name else "No such project.",
                ErrorCode.RESOURCE_DOES_NOT_EXIST,
            )
        if role < capability:
            raise ModelyardError(
                f"Your role in this project ({role.label}) may not do this; it needs "
                f"{Role(int(capability)).label} or above.",
                ErrorCode.PERMISSION_DENIED,
            )
        return role

    async def _role(
        self, principal: Principal, prefix_project: int | None, project_name: str | None
    ) -> Role | None:
        def lookup() -> Role | None:
            with self.db.read() as conn:
                project_id = prefix_project
                if project_name is not None:
                    project_id = access.project_id_by_name(conn, project_name)
                if project_id is None:
                    return None
                return access.role_in(conn, principal, project_id, live=project_name is None)

        if project_name is None:
            if prefix_project is None:
                return None
            if principal.anonymous:
                return Role.OWNER
            if prefix_project in principal.roles:  # read with the caller, by the gate
                return principal.roles[prefix_project]
        if self.db.is_sqlite:
            return lookup()
        return await to_thread.run_sync(lookup)


def gate_routes(routes: list[BaseRoute], db: Database) -> list[BaseRoute]:
    """Every route wrapped with its rules; a route or method without a rule is an error."""
    out: list[BaseRoute] = []
    missing: list[str] = []
    for route in routes:
        if not isinstance(route, Route):
            raise TypeError(f"Cannot gate {route!r}: only plain routes are served.")
        rules: dict[str, policy.Rule] = {}
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            rule = policy.rule_for(method, route.path)
            if rule is None:
                missing.append(f"{method} {route.path}")
            else:
                rules[method] = rule
        out.append(GatedRoute(route, rules, db))
    if missing:
        raise RuntimeError("Routes without an access rule: " + ", ".join(missing))
    return out
