"""The native API's JSON: responses, and errors as ``{"error": {"code", "message"}}``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelyard.errors import ModelyardError
from modelyard.mlflow_api.wire import Context

JSON = "application/json"

Page = Callable[[Request, Context], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def respond(payload: dict[str, Any], status: int = 200, **headers: str) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON, headers=headers)


def error(code: str, message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"error": {"code": code, "message": message}}),
        status_code=status,
        media_type=JSON,
        headers=headers,
    )


def failure(exc: ModelyardError) -> Response:
    return error(exc.code.value, exc.message, exc.code.http_status)


def guarded(page: Page, context_of: Callable[[Request], Context]) -> Endpoint:
    """Bind a page to the request's context; domain errors become the native error JSON."""

    async def route(request: Request) -> Response:
        try:
            return await page(request, context_of(request))
        except ModelyardError as exc:
            return failure(exc)

    route.__name__ = page.__name__
    return route
