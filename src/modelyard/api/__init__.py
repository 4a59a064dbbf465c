"""The native JSON API under /api/v1: packages and their files, the model registry, projects,
members, tokens, users and the audit log, described by an OpenAPI document at
/api/v1/openapi.json. Errors answer ``{"error": {"code": ..., "message": ...}}`` with the HTTP
status of the code."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from modelyard.api import access, openapi, packages, registry
from modelyard.api.wire import Page, guarded
from modelyard.mlflow_api.wire import Context
from modelyard.web import routing as _routing  # noqa: F401 - registers {path:anypath}

PREFIX = "/api/v1"
PACKAGE = "/packages/{name}/{version}"
MODEL = "/models/{name}"
PROJECT = "/projects/{project}"

#: (path, methods, page) of every route; a GET route also answers HEAD.
ROUTES: list[tuple[str, tuple[str, ...], Page]] = [
    ("/packages", ("GET",), packages.list_packages),
    (PACKAGE, ("GET",), packages.get_package),
    (PACKAGE, ("DELETE",), packages.delete_package),
    (PACKAGE + "/files", ("GET",), packages.list_files),
    (PACKAGE + "/files/{path:anypath}", ("PUT",), packages.upload),
    (PACKAGE + "/files/{path:anypath}", ("GET",), packages.download),
    (PACKAGE + "/files/{path:anypath}", ("DELETE",), packages.delete_file),
    (PACKAGE + "/archive", ("GET",), packages.download_archive),
    (PACKAGE + "/publish", ("POST",), packages.publish),
    ("/models", ("GET",), registry.list_models),
    (MODEL, ("GET",), registry.get_model),
    (MODEL + "/card", ("PUT",), registry.put_card),
    (MODEL + "/versions", ("GET",), registry.list_versions),
    (MODEL + "/versions", ("POST",), registry.promote),
    (MODEL + "/versions/{ref}", ("GET",), registry.get_version),
    (MODEL + "/versions/{ref}/archive", ("GET",), registry.version_archive),
    (MODEL + "/versions/{ref}/files/{path:anypath}", ("GET",), registry.version_file),
    (MODEL + "/aliases/{alias}", ("PUT",), registry.set_alias),
    (MODEL + "/aliases/{alias}", ("DELETE",), registry.delete_alias),
    (MODEL + "/aliases/{alias}/history", ("GET",), registry.alias_history),
    ("/openapi.json", ("GET",), openapi.openapi_json),
    ("/me", ("GET",), access.me),
    ("/projects", ("GET",), access.list_projects),
    ("/projects", ("POST",), access.create_project),
    (PROJECT, ("GET",), access.get_project),
    (PROJECT, ("PATCH",), access.rename_project),
    (PROJECT, ("DELETE",), access.delete_project),
    (PROJECT + "/members", ("GET",), access.list_members),
    (PROJECT + "/members/{user}", ("PUT",), access.set_member),
    (PROJECT + "/members/{user}", ("DELETE",), access.remove_member),
    (PROJECT + "/tokens", ("GET",), access.list_project_tokens),
    (PROJECT + "/tokens", ("POST",), access.create_project_token),
    (PROJECT + "/tokens/{token_id}", ("DELETE",), access.revoke_project_token),
    (PROJECT + "/audit", ("GET",), access.project_audit),
    ("/tokens", ("GET",), access.list_tokens),
    ("/tokens", ("POST",), access.create_token),
    ("/tokens/{token_id}", ("DELETE",), access.revoke_token),
    ("/users", ("GET",), access.list_users),
    ("/users", ("POST",), access.create_user),
    ("/users/{user}", ("GET",), access.get_user),
    ("/users/{user}", ("PATCH",), access.update_user),
    ("/audit", ("GET",), access.instance_audit),
]


def routes(context_of: Callable[[Request], Context]) -> list[BaseRoute]:
    """Every native API route, bound to a function that tells each request's context."""
    return [
        Route(PREFIX + path, guarded(page, context_of), methods=list(methods))
        for path, methods, page in ROUTES
    ]
