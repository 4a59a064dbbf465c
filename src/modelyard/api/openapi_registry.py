"""The registry part of the OpenAPI document (paths and schemas under /api/v1/models)."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]
JSON = "application/json"


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _body(schema: Schema, description: str) -> Schema:
    return {"required": True, "description": description, "content": {JSON: {"schema": schema}}}


def _ok(description: str, schema: Schema, status: str = "200") -> dict[str, Schema]:
    return {status: {"description": description, "content": {JSON: {"schema": schema}}}}


def _errors(*statuses: str) -> dict[str, Schema]:
    names = {"400": "BadRequest", "404": "NotFound", "409": "Conflict"}
    return {s: {"$ref": f"#/components/responses/{names[s]}"} for s in statuses}


def _path_param(name: str, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


NAME = _path_param("name", "The model's name.")
REF = _path_param(
    "ref", "A version: its number (3), semver (1.4.0), a range (^1.4, ~2.0) or an alias."
)
FILE_PATH = _path_param("path", "The file's relative path inside the version (a/b/c.bin).")
BYTES = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
ALIAS = _path_param("alias", "An alias name (letters, digits, '_' and '-').")


def schemas() -> dict[str, Schema]:
    nullable_string = {"type": ["string", "null"]}
    return {
        "ModelVersion": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "integer", "description": "MLflow's version number."},
                "semver": nullable_string,
                "status": {"type": "string"},
                "stage": {"type": "string"},
                "aliases": {"type": "array", "items": {"type": "string"}},
                "description": {"type": "string"},
                "source": {"type": "string"},
                "run_id": nullable_string,
                "logged_model_id": nullable_string,
                "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                "created_at": {"type": "integer"},
                "updated_at": {"type": "integer"},
            },
        },
        "Model": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "aliases": {"type": "object", "additionalProperties": {"type": "integer"}},
                "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                "latest_version": {"oneOf": [_ref("ModelVersion"), {"type": "null"}]},
                "created_at": {"type": "integer"},
                "updated_at": {"type": "integer"},
            },
        },
        "ModelCard": {
            "type": "object",
            "properties": {
                "markdown": {"type": "string"},
                "html": {"type": "string", "description": "Rendered with all input escaped."},
            },
        },
        "Promotion": {
            "type": "object",
            "description": "Exactly one of candidate and logged_model.",
            "properties": {
                "candidate": {"type": "string", "description": "A run id."},
                "path": {"type": "string", "default": "model"},
                "logged_model": {"type": "string", "description": "A logged model id, m-…"},
                "semver": {"type": "string"},
                "bump": {"type": "string", "enum": ["major", "minor", "patch"]},
                "description": {"type": "string"},
            },
        },
        "AliasEvent": {
            "type": "object",
            "properties": {
                "alias": {"type": "string"},
                "from_version": {"type": ["integer", "null"]},
                "to_version": {"type": ["integer", "null"]},
                "actor": {"type": "string"},
                "at": {"type": "integer"},
            },
        },
    }


def paths() -> dict[str, Schema]:
    model = "/api/v1/models/{name}"
    version = model + "/versions/{ref}"
    alias = model + "/aliases/{alias}"
    versions = {
        "type": "object",
        "properties": {"versions": {"type": "array", "items": _ref("ModelVersion")}},
    }
    return {
        "/api/v1/models": {
            "get": {
                "operationId": "listModels",
                "summary": "Search models (filter and order_by as in MLflow, plus OR)",
                "parameters": [
                    {
                        "name": "filter",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "order_by",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 1000,
                            "default": 100,
                        },
                    },
                    {
                        "name": "page_token",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    **_ok(
                        "The models.",
                        {
                            "type": "object",
                            "properties": {
                                "models": {"type": "array", "items": _ref("Model")},
                                "next_page_token": {"type": "string"},
                            },
                        },
                    ),
                    **_errors("400"),
                },
            }
        },
        model: {
            "parameters": [NAME],
            "get": {
                "operationId": "getModel",
                "summary": "A model, its card and its versions",
                "responses": {**_ok("The model.", _ref("Model")), **_errors("404")},
            },
        },
        model + "/card": {
            "parameters": [NAME],
            "put": {
                "operationId": "putModelCard",
                "summary": "Replace the model card (Markdown)",
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {"markdown": {"type": "string"}},
                        "required": ["markdown"],
                    },
                    "The card.",
                ),
                "responses": {
                    **_ok("The card, with its safe HTML.", _ref("ModelCard")),
                    **_errors("400", "404"),
                },
            },
        },
        model + "/versions": {
            "parameters": [NAME],
            "get": {
                "operationId": "listModelVersions",
                "summary": "The model's versions, newest first",
                "responses": {**_ok("The versions.", versions), **_errors("404")},
            },
            "post": {
                "operationId": "promote",
                "summary": "Promote a candidate or logged model into a new version",
                "description": "Creates the model on first use. The semver is the one given or "
                "the latest bumped (patch by default). The version's files are the source's "
                "blobs, published (immutable).",
                "requestBody": _body(_ref("Promotion"), "What to promote."),
                "responses": {
                    **_ok("The new version.", _ref("ModelVersion"), "201"),
                    **_errors("400", "404"),
                },
            },
        },
        version: {
            "parameters": [NAME, REF],
            "get": {
                "operationId": "getModelVersion",
                "summary": "A version with its lineage and files (size, sha256)",
                "responses": {**_ok("The version.", _ref("ModelVersion")), **_errors("400", "404")},
            },
        },
        version + "/archive": {
            "parameters": [NAME, REF],
            "get": {
                "operationId": "downloadModelVersion",
                "summary": "The version's files as one tar with a SHA256SUMS manifest",
                "responses": {
                    "200": {
                        "description": "The archive.",
                        "content": {
                            "application/x-tar": {"schema": {"type": "string", "format": "binary"}}
                        },
                    },
                    **_errors("400", "404"),
                },
            },
        },
        version + "/files/{path}": {
            "parameters": [NAME, REF, FILE_PATH],
            "get": {
                "operationId": "downloadModelVersionFile",
                "summary": "One file of the version; ranged requests resume a download",
                "description": "The ETag is the file's sha256. Range (one range) answers 206 "
                "with Content-Range; If-Range with a stale ETag gets the whole file; "
                "If-None-Match with the current ETag answers 304.",
                "parameters": [
                    {
                        "name": "Range",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "If-Range",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {"description": "The file.", "content": BYTES},
                    "206": {"description": "The requested range.", "content": BYTES},
                    "304": {"description": "The client's copy is current."},
                    "416": {"description": "The Range cannot be satisfied."},
                    **_errors("400", "404"),
                },
            },
        },
        alias: {
            "parameters": [NAME, ALIAS],
            "put": {
                "operationId": "setAlias",
                "summary": "Point an alias at a version (the move is recorded)",
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {"version": {"type": "string"}},
                        "required": ["version"],
                    },
                    "The version (number, semver, range or alias).",
                ),
                "responses": {
                    **_ok("Where the alias now points.", {"type": "object"}),
                    **_errors("400", "404"),
                },
            },
            "delete": {
                "operationId": "deleteAlias",
                "summary": "Remove an alias (recorded)",
                "responses": {"204": {"description": "Removed."}, **_errors("404")},
            },
        },
        alias + "/history": {
            "parameters": [NAME, ALIAS],
            "get": {
                "operationId": "aliasHistory",
                "summary": "Every move of an alias; with ?at=, where it pointed at that time",
                "parameters": [
                    {
                        "name": "at",
                        "in": "query",
                        "required": False,
                        "description": "Milliseconds since the epoch or an ISO 8601 time.",
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    **_ok(
                        "The moves, oldest first.",
                        {
                            "type": "object",
                            "properties": {
                                "alias": {"type": "string"},
                                "events": {"type": "array", "items": _ref("AliasEvent")},
                                "at": {"type": "integer"},
                                "version_at": {"type": ["integer", "null"]},
                            },
                        },
                    ),
                    **_errors("400", "404"),
                },
            },
        },
    }
