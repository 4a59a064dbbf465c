"""The OpenAPI 3.1 description of the native API, served at /api/v1/openapi.json."""

from __future__ import annotations

from functools import cache
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from modelyard import __version__
from modelyard.api import openapi_access, openapi_registry
from modelyard.api.wire import respond
from modelyard.mlflow_api.wire import Context

JSON = "application/json"
Schema = dict[str, Any]


def _ref(kind: str, name: str) -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: Schema) -> Schema:
    return {JSON: {"schema": schema}}


def _ok(description: str, schema_name: str) -> Schema:
    return {"description": description, "content": _json(_ref("schemas", schema_name))}


def _errors(*statuses: str) -> dict[str, Schema]:
    return {status: _ref("responses", _ERROR_RESPONSES[status]) for status in statuses}


_ERROR_RESPONSES = {
    "400": "BadRequest",
    "404": "NotFound",
    "409": "Conflict",
}

_IDENTITY = [_ref("parameters", "Name"), _ref("parameters", "Version")]
_FILE = [*_IDENTITY, _ref("parameters", "Path")]


def _schemas() -> dict[str, Schema]:
    timestamp = {"type": "integer", "format": "int64", "minimum": 0}
    sha256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
    package_properties: dict[str, Schema] = {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"},
        "version": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9.+_-]{0,127}$"},
        "kind": {
            "type": "string",
            "enum": ["generic", "candidate", "logged_model"],
            "description": "generic: made through this API; candidate: the files of a "
            "candidate (a tracked run), which go with it; logged_model: the files of an "
            "MLflow logged model, named by its id.",
        },
        "status": {
            "type": "string",
            "enum": ["open", "published"],
            "description": "An open package's files may change; a published one is frozen.",
        },
        "created_at": {**timestamp, "description": "Milliseconds since the epoch."},
        "published_at": {
            "type": ["integer", "null"],
            "format": "int64",
            "description": "Milliseconds since the epoch; null while the package is open.",
        },
        "file_count": {"type": "integer", "minimum": 0},
        "size": {"type": "integer", "format": "int64", "minimum": 0, "description": "Bytes."},
    }
    return {
        "Package": {
            "type": "object",
            "required": list(package_properties),
            "properties": package_properties,
        },
        "PackageFile": {
            "type": "object",
            "required": ["path", "size", "sha256", "media_type", "created_at"],
            "properties": {
                "path": {
                    "type": "string",
                    "description": "Relative path inside the package, '/' between folders.",
                },
                "size": {"type": "integer", "format": "int64", "minimum": 0},
                "sha256": {**sha256, "description": "Hex SHA-256 of the file's bytes."},
                "media_type": {
                    "type": "string",
                    "description": "The Content-Type the file was uploaded with (or guessed "
                    "from its name).",
                },
                "created_at": {**timestamp, "description": "Milliseconds since the epoch."},
            },
        },
        "PackageWithFiles": {
            "allOf": [
                _ref("schemas", "Package"),
                {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {"type": "array", "items": _ref("schemas", "PackageFile")}
                    },
                },
            ]
        },
        "PackageList": {
            "type": "object",
            "required": ["packages"],
            "properties": {"packages": {"type": "array", "items": _ref("schemas", "Package")}},
        },
        "FileList": {
            "type": "object",
            "required": ["files"],
            "properties": {"files": {"type": "array", "items": _ref("schemas", "PackageFile")}},
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {
                            "type": "string",
                            "description": "A stable error code, e.g. INVALID_PARAMETER_VALUE, "
                            "RESOURCE_DOES_NOT_EXIST, RESOURCE_CONFLICT, "
                            "RANGE_NOT_SATISFIABLE, TEMPORARILY_UNAVAILABLE.",
                        },
                        "message": {"type": "string"},
                    },
                }
            },
        },
    }


def _parameters() -> dict[str, Schema]:
    return {
        "Name": {
            "name": "name",
            "in": "path",
            "required": True,
            "description": "Package name: letters, digits, '.', '_' and '-', starting with a "
            "letter or digit, at most 255 characters.",
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"},
        },
        "Version": {
            "name": "version",
            "in": "path",
            "required": True,
            "description": "Package version: letters, digits, '.', '+', '_' and '-', starting "
            "with a letter or digit, at most 128 characters.",
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9.+_-]{0,127}$"},
        },
        "Path": {
            "name": "path",
            "in": "path",
            "required": True,
            "description": "The file's relative path; it may span several segments "
            "(a/b/c.bin). Empty, '.' or '..' segments, a leading '/', backslashes, control "
            "characters, '?' and '#' are refused, also when percent-encoded. A folder path "
            "(on DELETE) means everything under it.",
            "schema": {"type": "string", "maxLength": 1000},
        },
    }


def _responses() -> dict[str, Schema]:
    def error(description: str) -> Schema:
        return {"description": description, "content": _json(_ref("schemas", "Error"))}

    return {
        "BadRequest": error("An invalid name, version, path or parameter."),
        "NotFound": error("No such package version or file."),
        "Conflict": error("The request contradicts the package's state."),
    }


def _headers() -> dict[str, Schema]:
    def header(description: str, schema: Schema | None = None) -> Schema:
        return {"description": description, "schema": schema or {"type": "string"}}

    return {
        "ETag": header('The quoted SHA-256 of the file: "<sha256>".'),
        "ContentDisposition": header('attachment; filename="<file name>"'),
        "ContentRange": header("bytes <first>-<last>/<size>, or bytes */<size> on 416."),
        "AcceptRanges": header("bytes", {"type": "string", "const": "bytes"}),
        "ContentTypeOptions": header("nosniff", {"type": "string", "const": "nosniff"}),
        "ContentLength": header("Bytes in the body.", {"type": "integer", "minimum": 0}),
    }


def _download_headers(*, ranged: bool = False) -> dict[str, Schema]:
    headers = {
        "ETag": _ref("headers", "ETag"),
        "Content-Disposition": _ref("headers", "ContentDisposition"),
        "Accept-Ranges": _ref("headers", "AcceptRanges"),
        "X-Content-Type-Options": _ref("headers", "ContentTypeOptions"),
        "Content-Length": _ref("headers", "ContentLength"),
    }
    if ranged:
        headers["Content-Range"] = _ref("headers", "ContentRange")
    return headers


_BYTES = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}

_SERVED_AS = (
    "The Content-Type is the file's media type, except that HTML, SVG, XML and script types "
    "are served as application/octet-stream."
)


def _download_responses(*, body: bool) -> dict[str, Schema]:
    def with_body(response: Schema) -> Schema:
        return {**response, "content": _BYTES} if body else response

    return {
        "200": with_body(
            {"description": "The file. " + _SERVED_AS, "headers": _download_headers()}
        ),
        "206": with_body(
            {
                "description": "The requested byte range of the file.",
                "headers": _download_headers(ranged=True),
            }
        ),
        "304": {
            "description": "If-None-Match names the file's ETag: the client's copy is current.",
            "headers": {"ETag": _ref("headers", "ETag")},
        },
        **_errors("400", "404"),
        "416": {
            "description": "The Range cannot be satisfied.",
            "headers": {"Content-Range": _ref("headers", "ContentRange")},
            "content": _json(_ref("schemas", "Error")) if body else {},
        },
    }


def _download_parameters() -> list[Schema]:
    return [
        *_FILE,
        {
            "name": "Range",
            "in": "header",
            "required": False,
            "description": "One byte range: bytes=<first>-<last>, bytes=<first>- or "
            "bytes=-<suffix length>. Other forms get the whole file.",
            "schema": {"type": "string"},
        },
        {
            "name": "If-Range",
            "in": "header",
            "required": False,
            "description": "An ETag: the Range applies only while the file still has it.",
            "schema": {"type": "string"},
        },
        {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "description": "ETags (or *) the client holds; a match answers 304.",
            "schema": {"type": "string"},
        },
    ]


def _archive_responses() -> dict[str, Schema]:
    return {
        "200": {
            "description": "A tar archive (POSIX pax) of every file of the version under the "
            "folder <name>-<version>/, led by <name>-<version>/SHA256SUMS, which lists "
            "'<sha256>  <path>' for each file. Its length is known up front.",
            "headers": {
                "Content-Disposition": _ref("headers", "ContentDisposition"),
                "Content-Length": _ref("headers", "ContentLength"),
            },
            "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}},
        },
        **_errors("400", "404"),
    }


def _paths() -> dict[str, Schema]:
    package = "/api/v1/packages/{name}/{version}"
    file = package + "/files/{path}"
    return {
        "/api/v1/packages": {
            "get": {
                "operationId": "listPackages",
                "summary": "List packages, newest first",
                "parameters": [
                    {
                        "name": "name",
                        "in": "query",
                        "required": False,
                        "description": "Only the versions of this package.",
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
                        "name": "offset",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 0, "default": 0},
                    },
                ],
                "responses": {"200": _ok("The packages.", "PackageList"), **_errors("400")},
            }
        },
        package: {
            "parameters": _IDENTITY,
            "get": {
                "operationId": "getPackage",
                "summary": "A package version and its files",
                "responses": {
                    "200": _ok("The package and its files.", "PackageWithFiles"),
                    **_errors("400", "404"),
                },
            },
            "delete": {
                "operationId": "deletePackage",
                "summary": "Delete a package version",
                "description": "Its files go; the version is never reused. A candidate's "
                "package goes with its candidate and cannot be deleted here (409).",
                "responses": {
                    "204": {"description": "Deleted."},
                    **_errors("400", "404", "409"),
                },
            },
        },
        package + "/files": {
            "parameters": _IDENTITY,
            "get": {
                "operationId": "listFiles",
                "summary": "Every file of a package version, by path",
                "responses": {
                    "200": _ok("The files.", "FileList"),
                    **_errors("400", "404"),
                },
            },
        },
        file: {
            "put": {
                "operationId": "uploadFile",
                "summary": "Upload a file",
                "description": "The request body becomes the file at the path, replacing any "
                "file there. The package version is created (open, kind generic) when it does "
                "not exist. The request's Content-Type is kept as the file's media type.",
                "parameters": [
                    *_FILE,
                    {
                        "name": "X-Checksum-Sha256",
                        "in": "header",
                        "required": False,
                        "description": "The expected SHA-256 of the body; on a mismatch "
                        "nothing is stored and the answer is 400.",
                        "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    },
                    {
                        "name": "sha256",
                        "in": "query",
                        "required": False,
                        "description": "The same as X-Checksum-Sha256 (the header wins).",
                        "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                },
                "responses": {
                    "201": _ok("The stored file.", "PackageFile"),
                    **_errors("400", "404", "409"),
                },
            },
            "get": {
                "operationId": "downloadFile",
                "summary": "Download a file, or a byte range of it",
                "parameters": _download_parameters(),
                "responses": _download_responses(body=True),
            },
            "head": {
                "operationId": "headFile",
                "summary": "The headers a download would get, without its body",
                "parameters": _download_parameters(),
                "responses": _download_responses(body=False),
            },
            "delete": {
                "operationId": "deleteFile",
                "summary": "Delete a file, or every file under a folder",
                "parameters": _FILE,
                "responses": {
                    "204": {"description": "Deleted."},
                    **_errors("400", "404", "409"),
                },
            },
        },
        package + "/archive": {
            "parameters": _IDENTITY,
            "get": {
                "operationId": "downloadArchive",
                "summary": "The whole version as one tar archive",
                "responses": _archive_responses(),
            },
            "head": {
                "operationId": "headArchive",
                "summary": "The headers the archive would get, without its body",
                "responses": {
                    "200": {
                        "description": "The archive's headers; Content-Length is its size.",
                        "headers": {"Content-Length": _ref("headers", "ContentLength")},
                    },
                    **_errors("400", "404"),
                },
            },
        },
        package + "/publish": {
            "parameters": _IDENTITY,
            "post": {
                "operationId": "publishPackage",
                "summary": "Publish (freeze) a package version",
                "description": "Its files can no longer change. Publishing twice is harmless.",
                "responses": {
                    "200": _ok("The published package.", "Package"),
                    **_errors("400", "404"),
                },
            },
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.1 document.",
                        "content": _json({"type": "object"}),
                    }
                },
            }
        },
    }


@cache
def document() -> dict[str, Any]:
    """The OpenAPI document (built once; treat it as read-only)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "modelyard native API",
            "version": __version__,
            "description": "Packages (named, versioned sets of files), the model registry, "
            "projects, members, tokens, users and the audit log. Errors answer "
            '{"error": {"code": ..., "message": ...}}.',
        },
        "security": [{openapi_access.BEARER: []}],
        "paths": {**_paths(), **openapi_registry.paths(), **openapi_access.paths()},
        "components": {
            "schemas": {**_schemas(), **openapi_registry.schemas(), **openapi_access.schemas()},
            "parameters": _parameters(),
            "responses": {**_responses(), **openapi_access.responses()},
            "headers": _headers(),
            "securitySchemes": openapi_access.security_schemes(),
        },
    }


async def openapi_json(_request: Request, _ctx: Context) -> Response:
    return respond(document())
