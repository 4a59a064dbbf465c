"""The native access API under /api/v1: who am I, projects and their members, project and
personal tokens, users (admins only) and the audit log. The gate has checked the caller's role
before a page runs; the services record every change in the audit log."""

from __future__ import annotations

from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from modelyard.api.registry import _body
from modelyard.api.wire import respond
from modelyard.auth.gate import PRINCIPAL, ROLE
from modelyard.auth.roles import WRITE_SCOPE, Principal, Role
from modelyard.db.schema import DEFAULT_PROJECT_ID
from modelyard.errors import BadRequest, InvalidParameter, NotFound, PermissionDenied
from modelyard.mlflow_api.wire import Context, call
from modelyard.services import access, audit
from modelyard.services.access import Project, Token
from modelyard.services.entities import now_ms

DAY_MS = 86_400_000
DEFAULT_TOKEN_DAYS = 365
MAX_TOKEN_DAYS = 36_500
MAX_INT64 = 2**63 - 1
MAX_EVENTS = 1000

# ------------------------------------------------------------------------------ helpers


def _principal(request: Request) -> Principal:
    principal: Principal = request.scope[PRINCIPAL]
    return principal


def _role(request: Request) -> Role:
    role: Role = request.scope[ROLE]
    return role


def _fields(data: dict[str, Any], *allowed: str) -> dict[str, Any]:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise InvalidParameter(
            f"Unknown field(s) {', '.join(map(repr, unknown))}; expected {', '.join(allowed)}."
        )
    return data


def _flag(data: dict[str, Any], key: str) -> bool | None:
    value = data.get(key)
    if value is not None and not isinstance(value, bool):
        raise InvalidParameter(f"'{key}' must be true or false.")
    return value


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidParameter(f"'{key}' must be a string.")
    return value


def _integer(value: Any, name: str, low: int = 0, high: int = MAX_INT64) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        bounds = f"of at least {low}" if high == MAX_INT64 else f"from {low} to {high}"
        raise InvalidParameter(f"'{name}' must be a whole number {bounds}.")
    return value


def _token_id(request: Request) -> int:
    return _integer(request.path_params["token_id"], "token_id", 1)


def _expiry(data: dict[str, Any]) -> int:
    """A new token's expiry in ms: ``expires_at``, or ``expires_in_days`` (365) from now."""
    at, days = data.get("expires_at"), data.get("expires_in_days")
    if at is not None and days is not None:
        raise InvalidParameter("Give expires_at or expires_in_days, not both.")
    if at is not None:
        return _integer(at, "expires_at", 1)
    days = (
        DEFAULT_TOKEN_DAYS if days is None else _integer(days, "expires_in_days", 1, MAX_TOKEN_DAYS)
    )
    return now_ms() + days * DAY_MS


def _project_json(request: Request, project: Project, role: Role) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/")
    uri = base if project.id == DEFAULT_PROJECT_ID else f"{base}/projects/{project.name}"
    return {**project.to_json(), "role": role.label, "tracking_uri": uri}


async def _project(request: Request, ctx: Context) -> Project:
    """The project the URL names (the gate has checked the caller's role there)."""
    return await call(ctx, access.find_project, ctx.db, str(request.path_params["project"]))


async def _events(request: Request, ctx: Context, project_id: int | None) -> Response:
    query = request.query_params
    limit = _integer(query.get("limit", "100"), "limit", 1, MAX_EVENTS)
    before = query.get("before")
    found = await call(
        ctx,
        partial(
            audit.events,
            ctx.db,
            project_id,
            limit=limit,
            before=None if before is None else _integer(before, "before", 1),
            action=query.get("action") or None,
        ),
    )
    next_before = found[-1]["id"] if len(found) == limit else None
    return respond({"events": found, "next_before": next_before})


async def _new_token(ctx: Context, data: dict[str, Any], **owner: Any) -> Response:
    _fields(data, "name", "scope", "role", "expires_at", "expires_in_days")
    token, secret = await call(
        ctx,
        partial(
            access.create_token,
            ctx.db,
            name=data.get("name", ""),
            scope=data.get("scope", WRITE_SCOPE),
            expires_at=_expiry(data),
            actor=ctx.actor,
            address=ctx.address,
            **owner,
        ),
    )
    return respond({"token": token.to_json(), "secret": secret}, status=201)


async def _revoke(ctx: Context, token: Token) -> Response:
    revoked = await call(
        ctx, partial(access.revoke_token, ctx.db, token.id, actor=ctx.actor, address=ctx.address)
    )
    return respond({"token": revoked.to_json()})


# ----------------------------------------------------------------------------- me, projects


async def me(request: Request, ctx: Context) -> Response:
    principal = _principal(request)
    user = token = None
    if principal.user_id is not None:
        found = await call(ctx, access.get_user, ctx.db, principal.name)
        user = {"name": found.name, "is_admin": found.is_admin}
    if principal.token_id is not None:
        token = (await call(ctx, access.get_token, ctx.db, principal.token_id)).to_json()
    return respond({"user": user, "token": token, "anonymous": principal.anonymous})


async def list_projects(request: Request, ctx: Context) -> Response:
    found = await call(ctx, access.list_projects, ctx.db, _principal(request))
    return respond({"projects": [_project_json(request, p, role) for p, role in found]})


async def create_project(request: Request, ctx: Context) -> Response:
    data = _fields(await _body(request), "name")
    project = await call(
        ctx,
        partial(
            access.create_project,
            ctx.db,
            data.get("name", ""),
            owner=_principal(request).user_id,
            actor=ctx.actor,
            address=ctx.address,
        ),
    )
    return respond({"project": _project_json(request, project, Role.OWNER)}, status=201)


async def get_project(request: Request, ctx: Context) -> Response:
    project, role = await _project(request, ctx), _role(request)
    return respond({"project": _project_json(request, project, role), "role": role.label})


async def rename_project(request: Request, ctx: Context) -> Response:
    data = _fields(await _body(request), "name")
    project = await _project(request, ctx)
    renamed = await call(
        ctx,
        partial(
            access.rename_project,
            ctx.db,
            project.id,
            data.get("name", ""),
            actor=ctx.actor,
            address=ctx.address,
        ),
    )
    return respond({"project": _project_json(request, renamed, _role(request))})


async def delete_project(request: Request, ctx: Context) -> Response:
    project = await _project(request, ctx)
    await call(
        ctx,
        partial(access.delete_project, ctx.db, project.id, actor=ctx.actor, address=ctx.address),
    )
    return respond({"deleted": project.name})


# ---------------------------------------------------------------------------------- members


async def list_members(request: Request, ctx: Context) -> Response:
    project = await _project(request, ctx)
    return respond({"members": await call(ctx, access.list_members, ctx.db, project.id)})


async def set_member(request: Request, ctx: Context) -> Response:
    data = _fields(await _body(request), "role")
    role = Role.parse(_text(data, "role"))
    project = await _project(request, ctx)
    user = str(request.path_params["user"])
    await call(
        ctx,
        partial(
            access.set_member,
            ctx.db,
            project.id,
            user,
            role,
            by=_role(request),
            actor=ctx.actor,
            address=ctx.address,
        ),
    )
    members = await call(ctx, access.list_members, ctx.db, project.id)
    member = next((m for m in members if m["user"] == user), {"user": user, "role": role.label})
    return respond({"member": member})


async def remove_member(request: Request, ctx: Context) -> Response:
    project = await _project(request, ctx)
    await call(
        ctx,
        partial(
            access.remove_member,
            ctx.db,
            project.id,
            str(request.path_params["user"]),
            by=_role(request),
            actor=ctx.actor,
            address=ctx.address,
        ),
    )
    return respond({})


# --------------------------------------------------------------------------- project tokens


async def list_project_tokens(request: Request, ctx: Context) -> Response:
    project = await _project(request, ctx)
    found = await call(ctx, partial(access.list_tokens, ctx.db, project_id=project.id))
    return respond({"tokens": [t.to_json() for t in found]})


async def create_project_token(request: Request, ctx: Context) -> Response:
    data = await _body(request)
    role = data.get("role")
    project = await _project(request, ctx)
    return await _new_token(
        ctx, data, project_id=project.id, role=None if role is None else Role.parse(role)
    )


async def revoke_project_token(request: Request, ctx: Context) -> Response:
    token_id = _token_id(request)
    project = await _project(request, ctx)
    token = await call(ctx, access.get_token, ctx.db, token_id)
    if token.project_id != project.id:
        raise NotFound(f"Token {token_id} does not exist.")
    return await _revoke(ctx, token)


async def project_audit(request: Request, ctx: Context) -> Response:
    project = await _project(request, ctx)
    return await _events(request, ctx, project.id)


# -------------------------------------------------------------------------- personal tokens


async def list_tokens(request: Request, ctx: Context) -> Response:
    principal = _principal(request)
    found = (
        []
        if principal.user_id is None
        else await call(ctx, partial(access.list_tokens, ctx.db, user_name=principal.name))
    )
    return respond({"tokens": [t.to_json() for t in found]})


async def create_token(request: Request, ctx: Context) -> Response:
    principal = _principal(request)
    if principal.user_id is None:
        raise PermissionDenied("Only a signed-in user has personal tokens.")
    data = await _body(request)
    if data.get("role") is not None:
        raise InvalidParameter("A personal token acts with its user's roles; give no role.")
    return await _new_token(ctx, data, user_name=principal.name)


async def revoke_token(request: Request, ctx: Context) -> Response:
    token_id = _token_id(request)
    principal = _principal(request)
    token = await call(ctx, access.get_token, ctx.db, token_id)
    if principal.user_id is None or token.user != principal.name:
        raise NotFound(f"Token {token_id} does not exist.")
    return await _revoke(ctx, token)


# ------------------------------------------------------------------------ users, audit log


async def list_users(_request: Request, ctx: Context) -> Response:
    found = await call(ctx, access.list_users, ctx.db)
    return respond({"users": [u.to_json() for u in found]})


async def create_user(request: Request, ctx: Context) -> Response:
    data = _fields(await _body(request), "name", "admin", "password")
    user = await call(
        ctx,
        partial(
            access.create_user,
            ctx.db,
            data.get("name", ""),
            admin=bool(_flag(data, "admin")),
            password=_text(data, "password"),
            actor=ctx.actor,
            address=ctx.address,
        ),
    )
    return respond({"user": user.to_json()}, status=201)


async def get_user(request: Request, ctx: Context) -> Response:
    user = await call(ctx, access.get_user, ctx.db, str(request.path_params["user"]))
    return respond({"user": user.to_json()})


async def update_user(request: Request, ctx: Context) -> Response:
    data = _fields(await _body(request), "admin", "disabled", "password")
    admin, disabled, password = (
        _flag(data, "admin"),
        _flag(data, "disabled"),
        _text(data, "password"),
    )
    if admin is None and disabled is None and password is None:
        raise InvalidParameter("Nothing to change: give admin, disabled or password.")
    name = str(request.path_params["user"])
    principal = _principal(request)
    if principal.user_id is not None and name == principal.name and (admin is False or disabled):
        raise BadRequest("You cannot take away your own admin rights or disable yourself.")
    user = await call(
        ctx,
        partial(
            access.update_user,
            ctx.db,
            name,
            admin=admin,
            disabled=disabled,
            password=password,
            actor=ctx.actor,
            address=ctx.address,
        ),
    )
    return respond({"user": user.to_json()})


async def instance_audit(request: Request, ctx: Context) -> Response:
    return await _events(request, ctx, None)
