"""MLflow's JSON wire format: request messages in, protobuf-style JSON out, errors."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from modelyard.auth.roles import NOBODY, Principal
from modelyard.blobs import BlobStore
from modelyard.db.engine import Database, riding
from modelyard.errors import BadRequest, ErrorCode, InvalidParameter, ModelyardError
from modelyard.services import audit, validation
from modelyard.services.paths import InvalidPath

T = TypeVar("T")
JSON = "application/json"
MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Context:
    """What a handler may use: the database, the blob store, the caller's project, who the
    caller is and where the request came from."""

    db: Database
    store: BlobStore
    project_id: int
    principal: Principal = NOBODY
    address: str = ""

    @property
    def actor(self) -> str:
        return self.principal.actor


async def call(ctx: Context, function: Callable[..., T], *args: Any) -> T:
    """Run a blocking service call: inline on SQLite, in the thread pool on PostgreSQL
    (see ``endpoint``)."""
    if ctx.db.is_sqlite:
        return function(*args)
    return await run_in_threadpool(function, *args)


class Message:
    """One request message, read from the query string (GET) or the JSON body."""

    __slots__ = ("data", "size")

    def __init__(self, data: dict[str, Any], size: int = 0) -> None:
        self.data = data
        self.size = size

    @classmethod
    async def read(cls, request: Request) -> Message:
        if request.method == "GET":
            merged: dict[str, Any] = {}
            for key, value in request.query_params.multi_items():
                if key in merged:
                    previous = merged[key]
                    merged[key] = (
                        [*previous, value] if isinstance(previous, list) else [previous, value]
                    )
                else:
                    merged[key] = value
            return cls(merged)
        body = await _bounded_body(request)
        if not body.strip():
            return cls({}, 0)
        if "content-type" not in request.headers:
            raise BadRequest("Bad Request. Content-Type header is missing.")
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"Malformed JSON in request body: {exc}") from None
        if not isinstance(data, dict):
            raise BadRequest("The request body must be a JSON object.")
        return cls(data, len(body))

    def string(self, name: str, *, required: bool = False, alias: str | None = None) -> str | None:
        value = self.data.get(name)
        if (value is None or value == "") and alias is not None:
            value = self.data.get(alias)
        if value is None or value == "":
            if required:
                raise InvalidParameter(f"Missing value for required parameter '{name}'.")
            return None if value is None else ""
        if not isinstance(value, str):  # protobuf JSON: string fields are JSON strings
            raise validation.invalid_value(value, name)
        return value

    def required(self, name: str, alias: str | None = None) -> str:
        value = self.string(name, required=True, alias=alias)
        assert value is not None
        return value

    def int64(self, name: str, *, required: bool = False, default: int | None = None) -> int | None:
        value = self.data.get(name)
        if value is None or value == "":
            if required:
                raise InvalidParameter(f"Missing value for required parameter '{name}'.")
            return default
        return validation.int64(value, name)

    def strings(self, name: str) -> list[str]:
        value = self.data.get(name)
        if value is None:
            return []
        items = value if isinstance(value, list) else [value]
        for item in items:
            if not isinstance(item, str):
                raise validation.invalid_value(value, name)
        return items

    def objects(self, name: str) -> list[dict[str, Any]]:
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise validation.invalid_value(value, name)
        return value

    def key_values(self, name: str) -> list[tuple[str, str]]:
        """``[{"key": k, "value": v}]`` pairs, as used for params and tags."""
        pairs: list[tuple[str, str]] = []
        for index, item in enumerate(self.objects(name)):
            key, value = item.get("key"), item.get("value")
            if key is None or key == "":
                raise InvalidParameter(
                    f"Missing value for required parameter '{name}[{index}].key'."
                )
            if not isinstance(key, str):
                raise validation.invalid_value(key, f"{name}[{index}].key")
            if value is not None and not isinstance(value, str):
                raise validation.invalid_value(value, f"{name}[{index}].value")
            pairs.append((key, value or ""))
        return pairs


async def _bounded_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BadRequest(_too_large(int(declared)))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BadRequest(_too_large(size))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int) -> str:
    return f"The request body ({size} bytes or more) exceeds the limit of {MAX_BODY_BYTES} bytes."


def number(value: float) -> float | str:
    """Doubles as protobuf JSON writes them: NaN and infinities become strings."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def respond(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON)


def error_response(code: ErrorCode, message: str) -> Response:
    return respond({"error_code": code.value, "message": message}, code.http_status)


def failure(exc: ModelyardError) -> Response:
    """MLflow's error body for a domain error. A refused file path is answered in MLflow's
    own words ("Invalid path"), which its clients and tests compare exactly."""
    message = InvalidPath.MESSAGE if isinstance(exc, InvalidPath) else exc.message
    return error_response(exc.code, message)


Handler = Callable[[Context, Message], dict[str, Any]]


def audited(request: Request) -> str | None:
    """The audit action of the request's route, if its calls are recorded."""
    rule = request.scope.get("modelyard.rule")
    return None if rule is None else rule.audit


async def _handle(handler: Handler, context: Context, message: Message) -> Any:
    if context.db.is_sqlite:
        return handler(context, message)
    return await run_in_threadpool(handler, context, message)


def endpoint(
    handler: Handler, context_of: Callable[[Request], Context]
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a synchronous handler: parse, run, serialise, map errors. Path parameters of the
    route are part of the message, under their own names.

    On SQLite the handler runs on the event loop itself: its queries take microseconds and
    release the GIL only briefly, so handing them to a worker thread costs more than it saves
    (about half of a small request's time). On PostgreSQL, whose queries wait on the network,
    handlers run in the worker thread pool.
    """

    async def route(request: Request) -> Response:
        try:
            message = await Message.read(request)
            if request.path_params:
                # the resource the URL names, e.g. /logged-models/{model_id}, wins over the body
                message.data.update(request.path_params)
            context = context_of(request)
            action = audited(request)
            if action is None:
                result = await _handle(handler, context, message)
            else:  # the entry rides in the change's own transaction; alone if nothing changed
                with riding(audit.call_recorder(context, action, message.data)) as entry:
                    result = await _handle(handler, context, message)
                if entry.work is not None:
                    await call(context, audit.record_call, context, action, message.data)
        except ModelyardError as exc:
            return failure(exc)
        return respond(result)

    return route
