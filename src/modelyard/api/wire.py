"""The native API's wire: JSON responses, errors as ``{"error": {"code", "message"}}``, and
the Starlette route that runs declared endpoints (one route per path, so that a method the
path does not have answers 405 with every method it does have in ``Allow``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.api.declare import JSON, Args, Endpoint
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.mlflow_api.wire import Context, audited, call
from modelyard.services import audit

#: The native API answers "already exists" as a conflict with the state, not a bad request.
_STATUS = {ErrorCode.RESOURCE_ALREADY_EXISTS: 409}


def respond(payload: dict[str, Any], status: int = 200, **headers: str) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON, headers=headers)


def error(code: str, message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"error": {"code": code, "message": message}}),
        status_code=status,
        media_type=JSON,
        headers=headers,
    )


def status_of(code: ErrorCode) -> int:
    return _STATUS.get(code, code.http_status)


def failure(exc: ModelyardError) -> Response:
    return error(exc.code.value, exc.message, status_of(exc.code))


async def run(endpoint: Endpoint[Any, Any], request: Request, context: Context) -> Response:
    """Validate the request against the declaration, run the page, record audited calls."""
    params = endpoint.parse_params(request)
    body, raw = await endpoint.parse_body(request)
    response = await endpoint.page(Args(request, context, params, body, raw))
    action = audited(request)
    if action is not None and response.status_code < 400:
        data: dict[str, Any] = dict(request.path_params)
        data.update(raw)
        await call(context, audit.record_call, context, action, data)
    return response


def route(
    path: str, endpoints: Sequence[Endpoint[Any, Any]], context_of: Callable[[Request], Context]
) -> Route:
    """One route for every endpoint of ``path`` (a GET endpoint also answers HEAD)."""
    by_method = {e.method: e for e in endpoints}
    if "GET" in by_method:
        by_method.setdefault("HEAD", by_method["GET"])

    async def handle(request: Request) -> Response:
        try:
            return await run(by_method[request.method], request, context_of(request))
        except ModelyardError as exc:
            return failure(exc)

    handle.__name__ = "_".join(e.page.__name__ for e in endpoints)
    return Route(path, handle, methods=[e.method for e in endpoints])
