"""The OpenAPI 3.1 document of the native API, made from the endpoints' declarations: their
parameters and bodies (pydantic models), replies, errors and access rules."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode

from modelyard import __version__
from modelyard.api.declare import JSON, Endpoint, NoBody, Reply
from modelyard.auth import policy
from modelyard.auth.roles import Capability

Schema = dict[str, Any]
PREFIX = policy.NATIVE_FAMILY
REF = "#/components/schemas/{model}"
BEARER = "bearerAuth"
BASIC = "basicAuth"
BINARY = {"type": "string", "format": "binary"}

#: statuses every endpoint may answer, with the components/responses entry documenting them
COMMON = {
    400: "BadRequest",
    403: "Forbidden",
    503: "Unavailable",
}
NAMED = {
    400: "BadRequest",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "NotFound",
    408: "Slow",
    409: "Conflict",
    413: "TooLarge",
    416: "RangeNotSatisfiable",
    503: "Unavailable",
}


_GATE_TOO = {
    400: "Or a Host header the server does not answer to.",
    408: "",
    413: "",
    401: "",
    403: "Or a role, token scope or kind that may not do this, or another origin.",
    404: "Or a project that does not exist or that the caller may not read.",
    503: "",
}


class _Generator(GenerateJsonSchema):
    """pydantic's JSON Schema without a title on every field."""

    def field_title_should_be_set(self, schema: Any) -> bool:  # noqa: ARG002 - an override
        return False

    def default_schema(self, schema: Any) -> Any:
        """No ``"default": null`` on a value that may not be null (a field left out)."""
        out = super().default_schema(schema)
        if isinstance(out, dict) and out.get("default", 0) is None and not _nullable(out):
            del out["default"]
        return out


def _nullable(schema: Schema) -> bool:
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    return any(_nullable(option) for option in schema.get("anyOf", []))


def _error(description: str, **extra: Any) -> Schema:
    return {
        "description": description,
        "content": {JSON: {"schema": {"$ref": REF.format(model="Error")}}},
        **extra,
    }


def _responses() -> dict[str, Schema]:
    return {
        "BadRequest": _error(
            "A parameter or body the route does not accept, or a Host header the server does "
            "not answer to."
        ),
        "Unauthenticated": _error(
            "No credentials, or a token that is unknown, expired or revoked.",
            headers={"WWW-Authenticate": {"$ref": "#/components/headers/WWWAuthenticate"}},
        ),
        "Forbidden": _error(
            "The caller's role, token scope or kind may not do this; or the request came from "
            "another origin."
        ),
        "NotFound": _error("No such resource, or a project the caller may not read."),
        "Conflict": _error("The request contradicts the resource's state (e.g. it exists)."),
        "Slow": _error("The body did not arrive in time."),
        "TooLarge": _error("The body is larger than the server accepts."),
        "RangeNotSatisfiable": _error(
            "The Range cannot be satisfied.",
            headers={"Content-Range": {"$ref": "#/components/headers/ContentRange"}},
        ),
        "Unavailable": _error("The database is busy; retry."),
    }


def _headers() -> dict[str, Schema]:
    def text(description: str, **schema: Any) -> Schema:
        return {"description": description, "schema": {"type": "string", **schema}}

    return {
        "ETag": text('The quoted SHA-256 of the file: "<sha256>".'),
        "ContentDisposition": text('attachment; filename="<file name>"'),
        "ContentRange": text("bytes <first>-<last>/<size>, or bytes */<size> on 416."),
        "AcceptRanges": text("bytes", const="bytes"),
        "ContentTypeOptions": text("nosniff", const="nosniff"),
        "ContentLength": {
            "description": "Bytes in the body.",
            "schema": {"type": "integer", "minimum": 0},
        },
        "WWWAuthenticate": text('Bearer realm="modelyard"'),
    }


class ErrorDetail(BaseModel):
    code: str
    message: str


class Error(BaseModel):
    """Every error answer: a stable code (INVALID_PARAMETER_VALUE, BAD_REQUEST,
    RESOURCE_DOES_NOT_EXIST, RESOURCE_ALREADY_EXISTS, RESOURCE_CONFLICT, PERMISSION_DENIED,
    UNAUTHENTICATED, RANGE_NOT_SATISFIABLE, TEMPORARILY_UNAVAILABLE, …) and a message."""

    error: ErrorDetail


class _Schemas:
    """components/schemas, filled as models are referenced."""

    def __init__(self) -> None:
        self.found: dict[str, Schema] = {}

    def of(self, model: type[BaseModel], mode: JsonSchemaMode) -> Schema:
        schema = model.model_json_schema(ref_template=REF, schema_generator=_Generator, mode=mode)
        for name, definition in schema.pop("$defs", {}).items():
            self._add(name, definition)
        return schema

    def ref(self, model: type[BaseModel], mode: JsonSchemaMode) -> Schema:
        self._add(model.__name__, self.of(model, mode))
        return {"$ref": REF.format(model=model.__name__)}

    def _add(self, name: str, schema: Schema) -> None:
        known = self.found.setdefault(name, schema)
        if known != schema:
            raise ValueError(f"Two different schemas are named {name}")


def _openapi_path(path: str) -> str:
    return PREFIX + re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def _parameters(endpoint: Endpoint[Any, Any], schemas: _Schemas) -> list[Schema]:
    if not endpoint.fields:
        return []
    properties = schemas.of(endpoint.params, "validation").get("properties", {})
    out = []
    for param in endpoint.fields:
        info = endpoint.params.model_fields[param.field]
        schema = _not_null(dict(properties[param.field]))
        description = schema.pop("description", None) or info.description
        item: Schema = {
            "name": param.wire,
            "in": param.where.value,
            "required": param.where.value == "path" or info.is_required(),
            "schema": schema,
        }
        if description:
            item["description"] = description
        out.append(item)
    return out


def _not_null(schema: Schema) -> Schema:
    """A parameter's schema without pydantic's ``null`` for optional values: a parameter left
    out is absent, never null."""
    options = schema.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        kept = [o for o in options if o != {"type": "null"}]
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
        return {**rest, **kept[0]} if len(kept) == 1 else {**rest, "anyOf": kept}
    return schema


def _request_body(endpoint: Endpoint[Any, Any], schemas: _Schemas) -> Schema | None:
    if endpoint.raw_body is not None:
        # no body at all is an empty one
        return {"required": False, "content": {endpoint.raw_body: {"schema": BINARY}}}
    if endpoint.body is NoBody:
        return None
    return {
        "required": True,
        "content": {JSON: {"schema": schemas.ref(endpoint.body, "validation")}},
    }


def _reply(reply: Reply, schemas: _Schemas, *, with_body: bool) -> Schema:
    out: Schema = {"description": reply.description}
    if reply.headers:
        out["headers"] = {
            name: {"$ref": f"#/components/headers/{ref}"} for name, ref in reply.headers.items()
        }
    if with_body and reply.media is not None:
        schema = BINARY if reply.model is None else schemas.ref(reply.model, "serialization")
        out["content"] = {reply.media: {"schema": schema}}
    if reply.links:
        out["links"] = {
            name: {"operationId": link.operation, "parameters": dict(link.parameters)}
            for name, link in reply.links.items()
        }
    return out


def gate_statuses(endpoint: Endpoint[Any, Any]) -> set[int]:
    """What may be answered before the page runs: the gate's statuses by the route's access
    rule, and the body limits."""
    rule = policy.rule_for(endpoint.method, PREFIX + endpoint.path)
    statuses = set(COMMON)
    if endpoint.raw_body is not None or endpoint.body is not NoBody:
        statuses.update((408, 413))  # the server's body time and size limits
    if rule is None or rule.capability is not Capability.PUBLIC:
        statuses.add(401)
    if rule is not None and rule.capability >= Capability.READ:
        statuses.add(404)  # the project does not exist or the caller may not read it
    return statuses


def _operation(endpoint: Endpoint[Any, Any], schemas: _Schemas, *, head: bool = False) -> Schema:
    responses: dict[str, Schema] = {
        str(reply.status): _reply(reply, schemas, with_body=not head) for reply in endpoint.replies
    }
    gate = gate_statuses(endpoint)
    for status in sorted(gate | set(endpoint.errors)):
        described = endpoint.errors.get(status)
        if described is not None and status in gate and _GATE_TOO[status]:
            described += " " + _GATE_TOO[status]
        if head:
            responses[str(status)] = {"description": described or NAMED[status]}
        elif described is None:
            responses[str(status)] = {"$ref": f"#/components/responses/{NAMED[status]}"}
        else:
            responses[str(status)] = _error(described, **_error_headers(status))
    operation: Schema = {
        "operationId": endpoint.operation_id + ("Head" if head else ""),
        "summary": endpoint.summary if not head else "Headers of: " + endpoint.summary.lower(),
        "responses": dict(sorted(responses.items())),
    }
    if endpoint.description:
        operation["description"] = endpoint.description
    parameters = _parameters(endpoint, schemas)
    if parameters:
        operation["parameters"] = parameters
    body = _request_body(endpoint, schemas)
    if body is not None and not head:
        operation["requestBody"] = body
    return operation


def _error_headers(status: int) -> dict[str, Any]:
    if status == 416:
        return {"headers": {"Content-Range": {"$ref": "#/components/headers/ContentRange"}}}
    if status == 401:
        return {"headers": {"WWW-Authenticate": {"$ref": "#/components/headers/WWWAuthenticate"}}}
    return {}


def document(endpoints: Iterable[Endpoint[Any, Any]]) -> dict[str, Any]:
    schemas = _Schemas()
    schemas.ref(Error, "serialization")
    paths: dict[str, Schema] = {}
    for endpoint in endpoints:
        item = paths.setdefault(_openapi_path(endpoint.path), {})
        item[endpoint.method.lower()] = _operation(endpoint, schemas)
        if endpoint.head:
            item["head"] = _operation(endpoint, schemas, head=True)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "modelyard native API",
            "version": __version__,
            "description": "Packages (named, versioned sets of files), the model registry, "
            "projects, members, tokens, users and the audit log. Errors answer "
            '{"error": {"code": ..., "message": ...}}. A path under /projects/<name> '
            "(e.g. /projects/churn/api/v1/models) works in that project; without it, in the "
            "default project. A server started without --auth accepts calls without "
            "credentials.",
        },
        "security": [{BEARER: []}, {BASIC: []}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.found.items())),
            "responses": _responses(),
            "headers": _headers(),
            "securitySchemes": {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A personal or project token (myd_…): "
                    "'Authorization: Bearer <token>'.",
                },
                BASIC: {
                    "type": "http",
                    "scheme": "basic",
                    "description": "Any user name, with a token as the password.",
                },
            },
        },
    }
