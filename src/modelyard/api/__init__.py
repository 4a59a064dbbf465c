"""The native JSON API under /api/v1: packages and their files, the model registry, merge
requests with candidates, projects, members, tokens, users, the audit log and webhooks,
described by an OpenAPI document at /api/v1/openapi.json that is made from the same
declarations that validate the requests.
Errors answer ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from modelyard.api import (
    access,
    imports,
    merge_requests,
    openapi,
    packages,
    projects,
    registry,
    webhooks,
    wire,
)
from modelyard.api.declare import Args, Endpoint, NoBody, NoParams, Out, Reply, endpoint
from modelyard.mlflow_api.wire import Context
from modelyard.web import routing as _routing  # noqa: F401 - registers {path:anypath}

PREFIX = "/api/v1"


class Document(Out):
    """The OpenAPI 3.1 document."""


@endpoint(
    "GET",
    "/openapi.json",
    "openapi",
    "This document",
    ok=Reply(200, "The OpenAPI 3.1 document of this API.", Document),
)
async def openapi_json(_args: Args[NoParams, NoBody]) -> Response:
    return wire.respond(document())


#: Every native endpoint, in the document's order.
ENDPOINTS: tuple[Endpoint[Any, Any], ...] = (
    *packages.ENDPOINTS,
    *registry.ENDPOINTS,
    *merge_requests.ENDPOINTS,
    openapi_json,
    *access.ENDPOINTS,
    *projects.ENDPOINTS,
    *webhooks.ENDPOINTS,
    *imports.ENDPOINTS,
)


@cache
def document() -> dict[str, Any]:
    """The OpenAPI document (built once; treat it as read-only)."""
    return openapi.document(ENDPOINTS)


def routes(context_of: Callable[[Request], Context]) -> list[BaseRoute]:
    """One route per path, running each method's endpoint with the request's context."""
    by_path: dict[str, list[Endpoint[Any, Any]]] = {}
    for declared in ENDPOINTS:
        by_path.setdefault(declared.path, []).append(declared)
    return [wire.route(PREFIX + path, declared, context_of) for path, declared in by_path.items()]
