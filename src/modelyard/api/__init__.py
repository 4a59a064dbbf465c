"""The native JSON API under /api/v1: packages and their files, described by an OpenAPI document
at /api/v1/openapi.json. Errors answer ``{"error": {"code": ..., "message": ...}}`` with the
HTTP status of the code."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from modelyard.api import openapi, packages
from modelyard.api.wire import Page, guarded
from modelyard.mlflow_api.wire import Context
from modelyard.web import routing as _routing  # noqa: F401 - registers {path:anypath}

PREFIX = "/api/v1"
PACKAGE = "/packages/{name}/{version}"

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
    ("/openapi.json", ("GET",), openapi.openapi_json),
]


def routes(context_of: Callable[[Request], Context]) -> list[BaseRoute]:
    """Every native API route, bound to a function that tells each request's context."""
    return [
        Route(PREFIX + path, guarded(page, context_of), methods=list(methods))
        for path, methods, page in ROUTES
    ]
