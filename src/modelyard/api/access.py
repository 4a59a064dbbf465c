"""The native access API under /api/v1: who am I, personal tokens, users (admins only) and
the instance's audit log, and what the project API (``api/projects.py``) shares with it: token
and audit shapes, the caller and their role. The gate has checked the caller's role
before a page runs; the services record every change in the audit log."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema, model_validator
from starlette.requests import Request
from starlette.responses import Response

from modelyard.api.declare import (
    PATH,
    QUERY,
    Args,
    Endpoint,
    Input,
    Link,
    NoBody,
    NoParams,
    Out,
    Reply,
    endpoint,
)
from modelyard.api.fields import (
    MAX_INT64,
    Id,
    Millis,
    RoleName,
    Scope,
    UserName,
)
from modelyard.api.wire import respond
from modelyard.auth.gate import PRINCIPAL, ROLE
from modelyard.auth.roles import Principal, Role
from modelyard.errors import Conflict, NotFound, PermissionDenied
from modelyard.mlflow_api.wire import Context, call
from modelyard.services import access, audit
from modelyard.services.entities import now_ms

DAY_MS = 86_400_000
DEFAULT_TOKEN_DAYS = 365
MAX_TOKEN_DAYS = 36_500
MAX_EVENTS = 1000

# Shapes -----------------------------------------------------------------------------------------


class Token(Out):
    id: int
    name: str
    prefix: str = Field(description="The first characters of the secret.")
    user: str | None = Field(description="A personal token's user.")
    project_id: int | None = Field(description="A project token's project.")
    role: RoleName | None = Field(description="A project token's role.")
    scope: Scope
    created_at: Millis
    expires_at: Millis | None
    revoked_at: Millis | None
    last_used_at: Millis | None
    active: bool


class TokenReply(Out):
    token: Token


class NewToken(TokenReply):
    secret: str = Field(description="The token itself; shown this once.")


class TokenList(Out):
    tokens: list[Token]


class User(Out):
    id: int
    name: str
    is_admin: bool
    disabled: bool
    has_password: bool
    created_at: Millis


class UserReply(Out):
    user: User


class UserList(Out):
    users: list[User]


class AuditEvent(Out):
    id: int
    project_id: int | None
    at: Millis
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    address: str


class AuditPage(Out):
    events: list[AuditEvent] = Field(description="Newest first.")
    next_before: int | None = Field(
        description="Pass as 'before' for the next page; null on the last."
    )


class Caller(Out):
    name: str
    is_admin: bool


class Me(Out):
    user: Caller | None = Field(description="null for a project token.")
    token: Token | None
    anonymous: bool


# Requests ---------------------------------------------------------------------------------------


class UserRef(Input):
    user: Annotated[UserName, PATH]


class TokenRef(Input):
    token_id: Annotated[Id, PATH]


class AuditQuery(Input):
    limit: Annotated[int, QUERY, Field(ge=1, le=MAX_EVENTS)] = 100
    before: Annotated[
        Id | None,
        QUERY,
        Field(description="Only events older than this event id (next_before of a page)."),
    ] = None
    action: Annotated[
        str,
        QUERY,
        Field(description="Only actions starting with this, e.g. 'member.' or 'token.create'."),
    ] = ""


class TokenRequest(Input):
    """A personal token; it acts with its user's roles."""

    model_config = Input.model_config | {
        "json_schema_extra": {"not": {"required": ["expires_at", "expires_in_days"]}}
    }

    name: str = Field(min_length=1, max_length=100)
    scope: Scope = Field(default="write", description="read: the token may only read.")
    expires_at: int | None = Field(
        default=None, ge=1, le=MAX_INT64, description="Milliseconds since the epoch, in the future."
    )
    expires_in_days: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TOKEN_DAYS,
        description=f"Instead of expires_at; {DEFAULT_TOKEN_DAYS} when neither is given.",
    )

    @model_validator(mode="after")
    def _one_expiry(self) -> TokenRequest:
        if "expires_at" in self.model_fields_set and "expires_in_days" in self.model_fields_set:
            raise ValueError("Give expires_at or expires_in_days, not both.")
        return self

    def expiry(self) -> int:
        if self.expires_at is not None:
            return self.expires_at
        return now_ms() + (self.expires_in_days or DEFAULT_TOKEN_DAYS) * DAY_MS


_PASSWORD = Field(default=None, min_length=12, description="At least 12 characters.")


class UserIn(Input):
    name: UserName
    admin: bool = False
    password: str | None = _PASSWORD


def _not_null(value: object) -> object:
    if value is None:
        raise ValueError("null is not a value here; leave the field out instead.")
    return value


class UserChange(Input):
    """What to change: at least one of admin, disabled and password."""

    model_config = Input.model_config | {"json_schema_extra": {"minProperties": 1}}

    admin: Annotated[
        bool | None, BeforeValidator(_not_null), WithJsonSchema({"type": "boolean"})
    ] = None
    disabled: Annotated[
        bool | None, BeforeValidator(_not_null), WithJsonSchema({"type": "boolean"})
    ] = None
    password: Annotated[
        str | None,
        BeforeValidator(_not_null),
        Field(min_length=12),
        WithJsonSchema({"type": "string", "minLength": 12}),
    ] = None

    @model_validator(mode="after")
    def _something(self) -> UserChange:
        if not self.model_fields_set:
            raise ValueError("Nothing to change: give admin, disabled or password.")
        return self


# Helpers ----------------------------------------------------------------------------------------


def principal_of(request: Request) -> Principal:
    principal: Principal = request.scope[PRINCIPAL]
    return principal


def role_of(request: Request) -> Role:
    role: Role = request.scope[ROLE]
    return role


async def audit_events(ctx: Context, query: AuditQuery, project_id: int | None) -> Response:
    found = await call(
        ctx,
        partial(
            audit.events,
            ctx.db,
            project_id,
            limit=query.limit,
            before=query.before,
            action=query.action or None,
        ),
    )
    next_before = found[-1]["id"] if len(found) == query.limit else None
    return respond({"events": found, "next_before": next_before})


async def new_token(ctx: Context, data: TokenRequest, **owner: Any) -> Response:
    token, secret = await call(
        ctx,
        partial(
            access.create_token,
            ctx.db,
            name=data.name,
            scope=data.scope,
            expires_at=data.expiry(),
            actor=ctx.actor,
            address=ctx.address,
            **owner,
        ),
    )
    return respond({"token": token.to_json(), "secret": secret}, status=201)


async def revoke(ctx: Context, token: access.Token) -> Response:
    revoked = await call(
        ctx, partial(access.revoke_token, ctx.db, token.id, actor=ctx.actor, address=ctx.address)
    )
    return respond({"token": revoked.to_json()})


_NO_USER = {404: "No such user."}
_NO_TOKEN = {404: "No such token."}
TOKEN_ERRORS = {400: "An invalid body, or an expiry that is not in the future."}

# Me, projects -----------------------------------------------------------------------------------


@endpoint("GET", "/me", "me", "Who the caller is", ok=Reply(200, "The caller.", Me))
async def me(args: Args[NoParams, NoBody]) -> Response:
    ctx, principal = args.ctx, principal_of(args.request)
    user = token = None
    if principal.user_id is not None:
        found = await call(ctx, access.get_user, ctx.db, principal.name)
        user = {"name": found.name, "is_admin": found.is_admin}
    if principal.token_id is not None:
        token = (await call(ctx, access.get_token, ctx.db, principal.token_id)).to_json()
    return respond({"user": user, "token": token, "anonymous": principal.anonymous})


# Personal tokens --------------------------------------------------------------------------------


@endpoint(
    "GET",
    "/tokens",
    "listTokens",
    "The caller's personal tokens",
    ok=Reply(200, "The tokens.", TokenList),
)
async def list_tokens(args: Args[NoParams, NoBody]) -> Response:
    principal = principal_of(args.request)
    found = (
        []
        if principal.user_id is None
        else await call(
            args.ctx, partial(access.list_tokens, args.ctx.db, user_name=principal.name)
        )
    )
    return respond({"tokens": [t.to_json() for t in found]})


@endpoint(
    "POST",
    "/tokens",
    "createToken",
    "Create a personal token; its secret is shown once",
    description="It acts with its user's roles (read scope: read only).",
    body=TokenRequest,
    ok=Reply(
        201,
        "The token and its secret.",
        NewToken,
        links={"revoke": Link("revokeToken", {"token_id": "$response.body#/token/id"})},
    ),
    errors=TOKEN_ERRORS,
)
async def create_token(args: Args[NoParams, TokenRequest]) -> Response:
    principal = principal_of(args.request)
    if principal.user_id is None:
        raise PermissionDenied("Only a signed-in user has personal tokens.")
    return await new_token(args.ctx, args.body, user_name=principal.name)


@endpoint(
    "DELETE",
    "/tokens/{token_id}",
    "revokeToken",
    "Revoke one of the caller's personal tokens",
    params=TokenRef,
    ok=Reply(200, "The revoked token.", TokenReply),
    errors={404: "No such token of the caller's."},
)
async def revoke_token(args: Args[TokenRef, NoBody]) -> Response:
    ctx, token_id = args.ctx, args.params.token_id
    principal = principal_of(args.request)
    token = await call(ctx, access.get_token, ctx.db, token_id)
    if principal.user_id is None or token.user != principal.name:
        raise NotFound(f"Token {token_id} does not exist.")
    return await revoke(ctx, token)


# Users, audit log -------------------------------------------------------------------------------

_TO_USER = {"user": "$response.body#/user/name"}


@endpoint(
    "GET", "/users", "listUsers", "Every user (admins)", ok=Reply(200, "The users.", UserList)
)
async def list_users(args: Args[NoParams, NoBody]) -> Response:
    found = await call(args.ctx, access.list_users, args.ctx.db)
    return respond({"users": [u.to_json() for u in found]})


@endpoint(
    "POST",
    "/users",
    "createUser",
    "Create a user (admins); no token is made",
    body=UserIn,
    ok=Reply(
        201,
        "The new user.",
        UserReply,
        links={
            "user": Link("getUser", _TO_USER),
            "update": Link("updateUser", _TO_USER),
        },
    ),
    errors={409: "A user of that name exists."},
)
async def create_user(args: Args[NoParams, UserIn]) -> Response:
    ctx, body = args.ctx, args.body
    user = await call(
        ctx,
        partial(
            access.create_user,
            ctx.db,
            body.name,
            admin=body.admin,
            password=body.password,
            actor=ctx.actor,
            address=ctx.address,
        ),
    )
    return respond({"user": user.to_json()}, status=201)


@endpoint(
    "GET",
    "/users/{user}",
    "getUser",
    "A user (admins)",
    params=UserRef,
    ok=Reply(200, "The user.", UserReply),
    errors=_NO_USER,
)
async def get_user(args: Args[UserRef, NoBody]) -> Response:
    user = await call(args.ctx, access.get_user, args.ctx.db, args.params.user)
    return respond({"user": user.to_json()})


@endpoint(
    "PATCH",
    "/users/{user}",
    "updateUser",
    "Change a user's admin flag, disabled state or password (admins)",
    description="Admins cannot drop their own admin flag or disable themselves (409).",
    params=UserRef,
    body=UserChange,
    ok=Reply(200, "The user.", UserReply),
    errors={**_NO_USER, 409: "An admin may not drop their own admin flag or disable themselves."},
)
async def update_user(args: Args[UserRef, UserChange]) -> Response:
    ctx, name, change = args.ctx, args.params.user, args.body
    principal = principal_of(args.request)
    if (
        principal.user_id is not None
        and name == principal.name
        and (change.admin is False or change.disabled)
    ):
        raise Conflict("You cannot take away your own admin rights or disable yourself.")
    user = await call(
        ctx,
        partial(
            access.update_user,
            ctx.db,
            name,
            admin=change.admin,
            disabled=change.disabled,
            password=change.password,
            actor=ctx.actor,
            address=ctx.address,
        ),
    )
    return respond({"user": user.to_json()})


@endpoint(
    "GET",
    "/audit",
    "audit",
    "Instance-wide events: users and personal tokens (admins)",
    params=AuditQuery,
    ok=Reply(200, "The events, newest first.", AuditPage),
)
async def instance_audit(args: Args[AuditQuery, NoBody]) -> Response:
    return await audit_events(args.ctx, args.params, None)


ENDPOINTS: tuple[Endpoint[Any, Any], ...] = (
    me,
    list_tokens,
    create_token,
    revoke_token,
    list_users,
    create_user,
    get_user,
    update_user,
    instance_audit,
)
