"""The native API's JSON: responses, and errors as ``{"error": {"code", "message"}}``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelyard.errors import ModelyardError
from modelyard.mlflow_api.wire import Context, audited, call
from modelyard.services import audit

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


def _json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object body if the page has read it (for the audit log)."""
    raw = getattr(request, "_body", None)
    if not isinstance(raw, bytes) or not raw or len(raw) > 65536:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def guarded(page: Page, context_of: Callable[[Request], Context]) -> Endpoint:
    """Bind a page to the request's context; domain errors become the native error JSON."""

    async def route(request: Request) -> Response:
        try:
            context = context_of(request)
            response = await page(request, context)
            action = audited(request)
            if action is not None and response.status_code < 400:
                data: dict[str, Any] = dict(request.path_params)
                data.update(_json_body(request))
                await call(context, audit.record_call, context, action, data)
            return response
        except ModelyardError as exc:
            return failure(exc)

    route.__name__ = page.__name__
    return route
