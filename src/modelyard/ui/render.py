"""Server-rendered pages: one Jinja2 environment (everything escaped), the context every page
gets (who is signed in, the project and its URL prefix, the CSRF token) and form handling."""

from __future__ import annotations

import datetime as dt
import hmac
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from modelyard.auth.gate import PREFIX, PRINCIPAL, ROLE
from modelyard.auth.roles import Principal, Role
from modelyard.errors import ModelyardError, PermissionDenied

TEMPLATES = Path(__file__).parent / "templates"
MAX_FORM_BYTES = 64 * 1024


def _when(ms: int | None) -> str:
    if not ms:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters["when"] = _when
environment.filters["number"] = _number
environment.globals["urlencode"] = urlencode


def prefix(request: Request) -> str:
    """The URL prefix of the request's project: ``/projects/<name>``, or empty for the
    default project reached without one."""
    return str(request.scope.get(PREFIX, ""))


def page(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    principal: Principal | None = request.scope.get(PRINCIPAL)
    role: Role | None = request.scope.get(ROLE)
    html = environment.get_template(template).render(
        principal=principal,
        role=role,
        roles=Role,
        base=prefix(request),
        csrf=(principal.csrf_token if principal is not None else "") or "",
        path=request.url.path,
        **values,
    )
    return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})


def error_page(request: Request, exc: ModelyardError) -> HTMLResponse:
    return page(
        request,
        "error.html",
        status=exc.code.http_status,
        code=exc.code.value,
        message=exc.message,
    )


async def form(request: Request) -> dict[str, str]:
    """A posted HTML form, after its CSRF token was checked against the session's (a caller
    with a token instead of a session has no CSRF exposure and may post without one)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ModelyardError("The form is too large.")
    fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    principal: Principal | None = request.scope.get(PRINCIPAL)
    if principal is not None and principal.via_session:
        sent = fields.get("csrf_token") or request.headers.get("x-csrf-token", "")
        if not hmac.compare_digest(principal.csrf_token or "", sent):
            raise PermissionDenied("The form expired or came from elsewhere; reload the page.")
    request.state.form = fields
    return fields


def redirect(location: str) -> Response:
    return RedirectResponse(location, status_code=303)
