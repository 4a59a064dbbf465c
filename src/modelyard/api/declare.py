"""One typed declaration per native route: it parses and validates the request and it is what
the OpenAPI document is made from, so the two cannot drift apart.

A route is an ``Endpoint``: its method and path, a pydantic model of its parameters (each
field marked ``PATH``, ``QUERY`` or ``header(...)``), a pydantic model of its JSON body, the
replies it documents and the errors it can answer. The page (the handler) receives ``Args``
with the validated parameters and body, the request and its ``Context``::

    class ModelRef(Input):
        name: Annotated[ModelName, PATH]

    @endpoint("GET", "/models/{name}", "getModel", "A model", params=ModelRef,
              ok=Reply(200, "The model.", ModelOut), errors={404: "No such model."})
    async def get_model(args: Args[ModelRef, NoBody]) -> Response: ...

Anything a request gets wrong answers 400 with the native error JSON naming the field.
"""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from starlette.requests import Request
from starlette.responses import Response

from modelyard.errors import BadRequest, InvalidParameter, TooLarge
from modelyard.mlflow_api.wire import Context

JSON = "application/json"
MAX_JSON_BODY = 1024 * 1024


class Where(StrEnum):
    PATH = "path"
    QUERY = "query"
    HEADER = "header"


@dataclass(frozen=True, slots=True)
class In:
    """Where a parameter is read from (``Annotated`` metadata of a params model field)."""

    where: Where
    name: str | None = None  # the name on the wire, when it differs from the field's


PATH = In(Where.PATH)
QUERY = In(Where.QUERY)


def header(name: str) -> In:
    return In(Where.HEADER, name)


class Input(BaseModel):
    """Parameters and bodies: unknown body fields are refused, values are never coerced
    from another JSON type."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Out(BaseModel):
    """A response shape, for the document only (pages write their JSON with orjson)."""


class NoParams(Input):
    pass


class NoBody(Input):
    pass


P = TypeVar("P", bound=Input)
B = TypeVar("B", bound=Input)


@dataclass(frozen=True, slots=True)
class Args(Generic[P, B]):
    """What a page gets: the request, its context, and the validated parameters and body
    (``raw_body`` is the body's JSON object as sent, for the audit log)."""

    request: Request
    ctx: Context
    params: P
    body: B
    raw_body: dict[str, Any]


Page = Callable[[Args[P, B]], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Link:
    """An OpenAPI link: a following call whose parameters come from this answer."""

    operation: str
    parameters: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Reply:
    """A documented success answer."""

    status: int
    description: str
    model: type[Out] | None = None
    media: str | None = JSON  # None: no body
    headers: Mapping[str, str] = field(default_factory=dict)  # header -> components/headers
    links: Mapping[str, Link] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Param:
    field: str
    where: Where
    wire: str
    many: bool


@dataclass(eq=False)
class Endpoint(Generic[P, B]):
    method: str
    path: str  # below /api/v1, a Starlette template ({path:anypath} allowed)
    operation_id: str
    summary: str
    page: Page[P, B]
    params: type[P]
    body: type[B]
    replies: tuple[Reply, ...]
    errors: Mapping[int, str]
    description: str = ""
    raw_body: str | None = None  # media type of a body streamed to the page, unread here
    head: bool = False  # HEAD is documented too (downloads)
    max_body: int = MAX_JSON_BODY  # bytes of JSON body taken
    fields: tuple[_Param, ...] = ()

    def __post_init__(self) -> None:
        self.fields = tuple(_params_of(self.params))

    def parse_params(self, request: Request) -> P:
        data: dict[str, Any] = {}
        for param in self.fields:
            if param.where is Where.PATH:
                data[param.field] = request.path_params[param.wire]
            elif param.where is Where.QUERY:
                if param.many:
                    values = request.query_params.getlist(param.wire)
                    if values:
                        data[param.field] = values
                elif (value := request.query_params.get(param.wire)) is not None:
                    data[param.field] = value
            elif (value := request.headers.get(param.wire)) is not None:
                data[param.field] = value
        try:
            return self.params.model_validate(data)
        except ValidationError as exc:
            raise InvalidParameter(self._message(exc.errors()[0], self.params)) from None

    async def parse_body(self, request: Request) -> tuple[B, dict[str, Any]]:
        if self.body is NoBody:
            return NoBody(), {}  # type: ignore[return-value]
        data = await json_object(request, self.max_body)
        try:
            return self.body.model_validate(data, strict=True), data
        except ValidationError as exc:
            raise InvalidParameter(self._message(exc.errors()[0], self.body)) from None

    def _message(self, error: ErrorDetails, model: type[Input]) -> str:
        loc = [str(part) for part in error["loc"]]
        name = ".".join(loc)
        where = "in the request body"
        if model is self.params and loc:
            param = next((p for p in self.fields if p.field == loc[0]), None)
            if param is not None:
                name, where = param.wire, f"in the {param.where.value}"
        kind = error["type"]
        if kind == "missing":
            return f"Missing value for required parameter '{name}' ({where})."
        if kind == "extra_forbidden":
            return f"Unknown field '{name}' {where}."
        if not loc:  # a rule about the body as a whole
            return _reason(error, None)
        reason = _reason(error, model.model_fields.get(loc[0]))
        return f"Invalid value {_shown(error['input'])} for '{name}' {where}: {reason}"


def _reason(error: ErrorDetails, info: FieldInfo | None) -> str:
    """Why a value was refused: the field's documented rule when it has one (a pattern
    mismatch says nothing a person can act on), else pydantic's sentence."""
    if error["type"] == "string_pattern_mismatch" and info is not None and info.description:
        return info.description
    message = error["msg"].removeprefix("Value error, ")
    return message if message.endswith(".") else message + "."


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 100 else text[:100] + "…"


def _params_of(model: type[Input]) -> list[_Param]:
    out = []
    for name, info in model.model_fields.items():
        found = [m for m in info.metadata if isinstance(m, In)]
        if len(found) != 1:
            raise TypeError(f"{model.__name__}.{name}: mark it PATH, QUERY or header(...)")
        where = found[0]
        many = typing.get_origin(info.annotation) is list
        out.append(_Param(name, where.where, where.name or info.alias or name, many))
    return out


async def json_object(request: Request, limit: int = MAX_JSON_BODY) -> dict[str, Any]:
    """The request's JSON object body ({} when empty), read up to ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"The request body exceeds the limit of {limit} bytes.")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    if not request.headers.get("content-type", "").startswith(JSON):
        raise BadRequest("Send a JSON body with Content-Type: application/json.")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Malformed JSON in request body: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    return {key: _whole_numbers(value) for key, value in data.items()}


def _whole_numbers(value: Any) -> Any:
    """JSON does not tell 3 from 3.0: both are the integer 3 to JSON Schema, and to us."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):  # long lists of numbers come in metric points: one pass
        return [
            int(item)
            if item.__class__ is float and item.is_integer()
            else _whole_numbers(item)
            if item.__class__ in _NESTED
            else item
            for item in value
        ]
    return value


_NESTED = frozenset((dict, list))


def endpoint(
    method: str,
    path: str,
    operation_id: str,
    summary: str,
    *,
    ok: Reply | tuple[Reply, ...],
    errors: Mapping[int, str] | None = None,
    params: type[P] = NoParams,  # type: ignore[assignment]
    body: type[B] = NoBody,  # type: ignore[assignment]
    description: str = "",
    raw_body: str | None = None,
    head: bool = False,
    max_body: int = MAX_JSON_BODY,
) -> Callable[[Page[P, B]], Endpoint[P, B]]:
    """Declare the decorated page as the route ``method path``."""

    def declare(page: Page[P, B]) -> Endpoint[P, B]:
        _check_signature(page, params, body)
        return Endpoint(
            method=method,
            path=path,
            operation_id=operation_id,
            summary=summary,
            page=page,
            params=params,
            body=body,
            replies=ok if isinstance(ok, tuple) else (ok,),
            errors=dict(errors or {}),
            description=description,
            raw_body=raw_body,
            head=head,
            max_body=max_body,
        )

    return declare


def _check_signature(page: Callable[..., Any], params: type[Input], body: type[Input]) -> None:
    """The page's ``Args[...]`` must name the declared models (mypy cannot see defaults)."""
    hints = typing.get_type_hints(page)
    declared = next(iter(hints.values()))
    if typing.get_args(declared) != (params, body):
        raise TypeError(
            f"{page.__name__} takes {declared}, but is declared with "
            f"Args[{params.__name__}, {body.__name__}]"
        )
