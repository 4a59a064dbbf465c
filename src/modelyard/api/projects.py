"""The native project API under /api/v1/projects: projects, their members, project tokens
and the project's audit log. The gate has checked the caller's role in the project before a
page runs; the services record every change in the audit log."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response

from modelyard.api.access import (
    TOKEN_ERRORS,
    AuditPage,
    AuditQuery,
    NewToken,
    TokenList,
    TokenReply,
    TokenRequest,
    audit_events,
    new_token,
    principal_of,
    revoke,
    role_of,
)
from modelyard.api.declare import (
    PATH,
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
from modelyard.api.fields import Id, Millis, ProjectName, RoleName, TokenRole, UserName
from modelyard.api.wire import respond
from modelyard.auth.roles import Role
from modelyard.db.schema import DEFAULT_PROJECT_ID
from modelyard.errors import NotFound
from modelyard.mlflow_api.wire import Context, call
from modelyard.services import access

PROJECT = "/projects/{project}"

# Shapes and requests ----------------------------------------------------------------------------


class Project(Out):
    id: int
    name: str
    created_at: Millis
    role: RoleName = Field(description="The caller's role in the project.")
    tracking_uri: str = Field(description="The MLFLOW_TRACKING_URI of the project.")


class ProjectReply(Out):
    project: Project


class ProjectAndRole(ProjectReply):
    role: RoleName


class ProjectList(Out):
    projects: list[Project]


class Deleted(Out):
    deleted: str


class Member(Out):
    user: str
    role: RoleName
    since: Millis


class MemberReply(Out):
    member: Member


class MemberList(Out):
    members: list[Member]


class Empty(Out):
    pass


class ProjectRef(Input):
    project: Annotated[ProjectName, PATH]


class MemberRef(ProjectRef):
    user: Annotated[UserName, PATH]


class ProjectTokenRef(ProjectRef):
    token_id: Annotated[Id, PATH]


class ProjectAudit(ProjectRef, AuditQuery):
    pass


class NameIn(Input):
    name: ProjectName


class MemberIn(Input):
    role: RoleName


class ProjectTokenRequest(TokenRequest):
    """A project token; its role defaults to developer (write) or reporter (read)."""

    role: TokenRole | None = None


_TO_PROJECT = {"project": "$request.path.project"}
_NEW_PROJECT = {"project": "$response.body#/project/name"}
_NO_PROJECT = {404: "No such project, or one the caller may not read."}


def _project_json(request: Request, project: access.Project, role: Role) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/")
    uri = base if project.id == DEFAULT_PROJECT_ID else f"{base}/projects/{project.name}"
    return {**project.to_json(), "role": role.label, "tracking_uri": uri}


async def _project(ctx: Context, ref: ProjectRef) -> access.Project:
    """The project the URL names (the gate has checked the caller's role there)."""
    return await call(ctx, access.find_project, ctx.db, ref.project)


@endpoint(
    "GET",
    "/projects",
    "listProjects",
    "The projects the caller can read, with its role in each",
    ok=Reply(200, "The projects.", ProjectList),
)
async def list_projects(args: Args[NoParams, NoBody]) -> Response:
    found = await call(args.ctx, access.list_projects, args.ctx.db, principal_of(args.request))
    return respond({"projects": [_project_json(args.request, p, role) for p, role in found]})


@endpoint(
    "POST",
    "/projects",
    "createProject",
    "Create a project; the caller becomes its owner",
    body=NameIn,
    ok=Reply(
        201,
        "The new project.",
        ProjectReply,
        links={
            "project": Link("getProject", _NEW_PROJECT),
            "members": Link("listMembers", _NEW_PROJECT),
            "member": Link("setMember", _NEW_PROJECT),
            "tokens": Link("listProjectTokens", _NEW_PROJECT),
            "token": Link("createProjectToken", _NEW_PROJECT),
            "audit": Link("projectAudit", _NEW_PROJECT),
            "delete": Link("deleteProject", _NEW_PROJECT),
        },
    ),
    errors={409: "A project of that name exists."},
)
async def create_project(args: Args[NoParams, NameIn]) -> Response:
    ctx = args.ctx
    project = await call(
        ctx,
        partial(
            access.create_project,
            ctx.db,
            args.body.name,
            owner=principal_of(args.request).user_id,
            actor=ctx.actor,
            address=ctx.address,
        ),
    )
    return respond({"project": _project_json(args.request, project, Role.OWNER)}, status=201)


@endpoint(
    "GET",
    PROJECT,
    "getProject",
    "A project and the caller's role in it",
    params=ProjectRef,
    ok=Reply(200, "The project.", ProjectAndRole),
    errors=_NO_PROJECT,
)
async def get_project(args: Args[ProjectRef, NoBody]) -> Response:
    project, role = await _project(args.ctx, args.params), role_of(args.request)
    return respond({"project": _project_json(args.request, project, role), "role": role.label})


@endpoint(
    "PATCH",
    PROJECT,
    "renameProject",
    "Rename a project (owners)",
    description="Tracking URIs with the old name stop working.",
    params=ProjectRef,
    body=NameIn,
    ok=Reply(200, "The renamed project.", ProjectReply),
    errors={**_NO_PROJECT, 409: "A project of that name exists."},
)
async def rename_project(args: Args[ProjectRef, NameIn]) -> Response:
    ctx = args.ctx
    project = await _project(ctx, args.params)
    renamed = await call(
        ctx,
        partial(
            access.rename_project,
            ctx.db,
            project.id,
            args.body.name,
            actor=ctx.actor,
            address=ctx.address,
        ),
    )
    return respond({"project": _project_json(args.request, renamed, role_of(args.request))})


@endpoint(
    "DELETE",
    PROJECT,
    "deleteProject",
    "Delete a project (owners)",
    description="It answers 404 at once and its tokens stop working; 'modelyard gc' purges "
    "its data.",
    params=ProjectRef,
    ok=Reply(200, "Deleted.", Deleted),
    errors={**_NO_PROJECT, 409: "The default project cannot be deleted."},
)
async def delete_project(args: Args[ProjectRef, NoBody]) -> Response:
    ctx = args.ctx
    project = await _project(ctx, args.params)
    await call(
        ctx,
        partial(access.delete_project, ctx.db, project.id, actor=ctx.actor, address=ctx.address),
    )
    return respond({"deleted": project.name})


# Members ----------------------------------------------------------------------------------------


@endpoint(
    "GET",
    PROJECT + "/members",
    "listMembers",
    "The project's members and their roles",
    params=ProjectRef,
    ok=Reply(200, "The members.", MemberList),
    errors=_NO_PROJECT,
)
async def list_members(args: Args[ProjectRef, NoBody]) -> Response:
    project = await _project(args.ctx, args.params)
    return respond({"members": await call(args.ctx, access.list_members, args.ctx.db, project.id)})


@endpoint(
    "PUT",
    PROJECT + "/members/{user}",
    "setMember",
    "Add a member or change a member's role (maintainers)",
    description="Only owners appoint, demote or remove owners; a project keeps at least one owner.",
    params=MemberRef,
    body=MemberIn,
    ok=Reply(
        200,
        "The membership.",
        MemberReply,
        links={
            "remove": Link(
                "removeMember", {"project": "$request.path.project", "user": "$request.path.user"}
            )
        },
    ),
    errors={404: "No such project or user.", 409: "The project would have no owner left."},
)
async def set_member(args: Args[MemberRef, MemberIn]) -> Response:
    ctx, ref = args.ctx, args.params
    role = Role.parse(args.body.role)
    project = await _project(ctx, ref)
    await call(
        ctx,
        partial(
            access.set_member,
            ctx.db,
            project.id,
            ref.user,
            role,
            by=role_of(args.request),
            actor=ctx.actor,
            address=ctx.address,
        ),
    )
    members = await call(ctx, access.list_members, ctx.db, project.id)
    member = next((m for m in members if m["user"] == ref.user), None)
    return respond({"member": member or {"user": ref.user, "role": role.label, "since": 0}})


@endpoint(
    "DELETE",
    PROJECT + "/members/{user}",
    "removeMember",
    "Remove a member (maintainers)",
    params=MemberRef,
    ok=Reply(200, "Removed.", Empty),
    errors={
        404: "No such project or user, or the user is not a member.",
        409: "The project would have no owner left.",
    },
)
async def remove_member(args: Args[MemberRef, NoBody]) -> Response:
    ctx, ref = args.ctx, args.params
    project = await _project(ctx, ref)
    await call(
        ctx,
        partial(
            access.remove_member,
            ctx.db,
            project.id,
            ref.user,
            by=role_of(args.request),
            actor=ctx.actor,
            address=ctx.address,
        ),
    )
    return respond({})


# Project tokens ---------------------------------------------------------------------------------


@endpoint(
    "GET",
    PROJECT + "/tokens",
    "listProjectTokens",
    "The project's tokens (maintainers)",
    params=ProjectRef,
    ok=Reply(200, "The tokens.", TokenList),
    errors=_NO_PROJECT,
)
async def list_project_tokens(args: Args[ProjectRef, NoBody]) -> Response:
    project = await _project(args.ctx, args.params)
    found = await call(args.ctx, partial(access.list_tokens, args.ctx.db, project_id=project.id))
    return respond({"tokens": [t.to_json() for t in found]})


@endpoint(
    "POST",
    PROJECT + "/tokens",
    "createProjectToken",
    "Create a project token (maintainers); its secret is shown once",
    params=ProjectRef,
    body=ProjectTokenRequest,
    ok=Reply(
        201,
        "The token and its secret.",
        NewToken,
        links={
            "revoke": Link(
                "revokeProjectToken",
                {"project": "$request.path.project", "token_id": "$response.body#/token/id"},
            )
        },
    ),
    errors={**TOKEN_ERRORS, **_NO_PROJECT},
)
async def create_project_token(args: Args[ProjectRef, ProjectTokenRequest]) -> Response:
    project = await _project(args.ctx, args.params)
    role = args.body.role
    return await new_token(
        args.ctx,
        args.body,
        project_id=project.id,
        role=None if role is None else Role.parse(role),
    )


@endpoint(
    "DELETE",
    PROJECT + "/tokens/{token_id}",
    "revokeProjectToken",
    "Revoke a project token (maintainers)",
    params=ProjectTokenRef,
    ok=Reply(200, "The revoked token.", TokenReply),
    errors={404: "No such project, or no such token in it."},
)
async def revoke_project_token(args: Args[ProjectTokenRef, NoBody]) -> Response:
    ctx, ref = args.ctx, args.params
    project = await _project(ctx, ref)
    token = await call(ctx, access.get_token, ctx.db, ref.token_id)
    if token.project_id != project.id:
        raise NotFound(f"Token {ref.token_id} does not exist.")
    return await revoke(ctx, token)


@endpoint(
    "GET",
    PROJECT + "/audit",
    "projectAudit",
    "The project's audit log (maintainers)",
    params=ProjectAudit,
    ok=Reply(200, "The events, newest first.", AuditPage),
    errors=_NO_PROJECT,
)
async def project_audit(args: Args[ProjectAudit, NoBody]) -> Response:
    project = await _project(args.ctx, args.params)
    return await audit_events(args.ctx, args.params, project.id)


ENDPOINTS: tuple[Endpoint[Any, Any], ...] = (
    list_projects,
    create_project,
    get_project,
    rename_project,
    delete_project,
    list_members,
    set_member,
    remove_member,
    list_project_tokens,
    create_project_token,
    revoke_project_token,
    project_audit,
)
