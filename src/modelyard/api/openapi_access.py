"""The access part of the OpenAPI document: who am I, projects, members, tokens, users and the
audit log, and how callers authenticate."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]
JSON = "application/json"
BEARER = "bearerAuth"


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _body(schema_name: str, description: str) -> Schema:
    return {
        "required": True,
        "description": description,
        "content": {JSON: {"schema": _ref(schema_name)}},
    }


def _ok(description: str, properties: dict[str, Schema], status: str = "200") -> dict[str, Schema]:
    schema = {"type": "object", "required": list(properties), "properties": properties}
    return {status: {"description": description, "content": {JSON: {"schema": schema}}}}


def _errors(*statuses: str) -> dict[str, Schema]:
    names = {
        "400": "BadRequest",
        "401": "Unauthenticated",
        "403": "Forbidden",
        "404": "NotFound",
    }
    return {s: {"$ref": f"#/components/responses/{names[s]}"} for s in ("401", *statuses)}


def _path_param(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema or {"type": "string"},
    }


PROJECT = _path_param("project", "The project's name.")
USER = _path_param("user", "A user name.")
TOKEN_ID = _path_param("token_id", "The token's id.", {"type": "integer", "minimum": 1})
_AUDIT_QUERY = [
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    },
    {
        "name": "before",
        "in": "query",
        "required": False,
        "description": "Only events older than this event id (next_before of the last page).",
        "schema": {"type": "integer", "minimum": 1},
    },
    {
        "name": "action",
        "in": "query",
        "required": False,
        "description": "Only actions starting with this, e.g. 'member.' or 'token.create'.",
        "schema": {"type": "string"},
    },
]

_ROLES = ["guest", "reporter", "developer", "maintainer", "owner"]
_NULLABLE_MS = {"type": ["integer", "null"], "format": "int64"}


def security_schemes() -> dict[str, Schema]:
    return {
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal or project token (myd_…), as 'Authorization: Bearer "
            "<token>' or as the password of Basic credentials. Servers started without "
            "--auth accept anonymous calls.",
        }
    }


def responses() -> dict[str, Schema]:
    def error(description: str) -> Schema:
        return {"description": description, "content": {JSON: {"schema": _ref("Error")}}}

    return {
        "Unauthenticated": error("No credentials, or a token that is unknown, expired or revoked."),
        "Forbidden": error("The caller's role, token scope or kind may not do this."),
    }


def schemas() -> dict[str, Schema]:
    role = {"type": "string", "enum": _ROLES}
    return {
        "Project": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "name": {"type": "string"},
                "created_at": {"type": "integer", "format": "int64"},
                "role": {**role, "description": "The caller's role in the project."},
                "tracking_uri": {
                    "type": "string",
                    "description": "The MLFLOW_TRACKING_URI of the project.",
                },
            },
        },
        "Member": {
            "type": "object",
            "properties": {
                "user": {"type": "string"},
                "role": role,
                "since": {"type": "integer", "format": "int64"},
            },
        },
        "Token": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "name": {"type": "string"},
                "prefix": {"type": "string", "description": "The first characters of the secret."},
                "user": {"type": ["string", "null"], "description": "A personal token's user."},
                "project_id": {
                    "type": ["integer", "null"],
                    "description": "A project token's project.",
                },
                "role": {"type": ["string", "null"], "description": "A project token's role."},
                "scope": {"type": "string", "enum": ["read", "write"]},
                "created_at": {"type": "integer", "format": "int64"},
                "expires_at": _NULLABLE_MS,
                "revoked_at": _NULLABLE_MS,
                "last_used_at": _NULLABLE_MS,
                "active": {"type": "boolean"},
            },
        },
        "TokenRequest": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100},
                "scope": {"type": "string", "enum": ["read", "write"], "default": "write"},
                "role": {
                    "type": "string",
                    "enum": _ROLES[:-1],
                    "description": "Project tokens only; developer for write, reporter for "
                    "read by default.",
                },
                "expires_at": {
                    "type": "integer",
                    "format": "int64",
                    "description": "Milliseconds since the epoch, in the future.",
                },
                "expires_in_days": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 36500,
                    "description": "Instead of expires_at; 365 when neither is given.",
                },
            },
        },
        "User": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "name": {"type": "string"},
                "is_admin": {"type": "boolean"},
                "disabled": {"type": "boolean"},
                "has_password": {"type": "boolean"},
                "created_at": {"type": "integer", "format": "int64"},
            },
        },
        "AuditEvent": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "project_id": {"type": ["integer", "null"]},
                "at": {"type": "integer", "format": "int64"},
                "actor": {"type": "string"},
                "action": {"type": "string"},
                "target": {"type": "string"},
                "details": {"type": "object"},
                "address": {"type": "string"},
            },
        },
    }


def _events(summary: str, operation_id: str) -> Schema:
    return {
        "operationId": operation_id,
        "summary": summary,
        "parameters": _AUDIT_QUERY,
        "responses": {
            **_ok(
                "The events, newest first.",
                {
                    "events": {"type": "array", "items": _ref("AuditEvent")},
                    "next_before": {
                        "type": ["integer", "null"],
                        "description": "Pass as 'before' for the next page; null on the last.",
                    },
                },
            ),
            **_errors("400", "403"),
        },
    }


def paths() -> dict[str, Schema]:
    project = "/api/v1/projects/{project}"
    token_list = {"tokens": {"type": "array", "items": _ref("Token")}}
    new_token = {"token": _ref("Token"), "secret": {"type": "string"}}
    token_body = _body("TokenRequest", "The new token.")
    name_body = {
        "required": True,
        "content": {
            JSON: {
                "schema": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}},
                }
            }
        },
    }
    project_out = {"project": _ref("Project")}
    user_out = {"user": _ref("User")}
    return {
        "/api/v1/me": {
            "get": {
                "operationId": "me",
                "summary": "Who the caller is",
                "responses": {
                    **_ok(
                        "The caller: a user (null for a project token) and the token used.",
                        {
                            "user": {
                                "type": ["object", "null"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "is_admin": {"type": "boolean"},
                                },
                            },
                            "token": {"oneOf": [_ref("Token"), {"type": "null"}]},
                            "anonymous": {"type": "boolean"},
                        },
                    ),
                    **_errors("403"),
                },
            }
        },
        "/api/v1/projects": {
            "get": {
                "operationId": "listProjects",
                "summary": "The projects the caller can read, with its role in each",
                "responses": {
                    **_ok(
                        "The projects.",
                        {"projects": {"type": "array", "items": _ref("Project")}},
                    ),
                    **_errors("403"),
                },
            },
            "post": {
                "operationId": "createProject",
                "summary": "Create a project; the caller becomes its owner",
                "requestBody": name_body,
                "responses": {
                    **_ok("The new project.", project_out, "201"),
                    **_errors("400", "403"),
                },
            },
        },
        project: {
            "parameters": [PROJECT],
            "get": {
                "operationId": "getProject",
                "summary": "A project and the caller's role in it",
                "responses": {
                    **_ok("The project.", {**project_out, "role": {"type": "string"}}),
                    **_errors("404"),
                },
            },
            "patch": {
                "operationId": "renameProject",
                "summary": "Rename a project (owners)",
                "description": "Tracking URIs with the old name stop working.",
                "requestBody": name_body,
                "responses": {
                    **_ok("The renamed project.", project_out),
                    **_errors("400", "403", "404"),
                },
            },
            "delete": {
                "operationId": "deleteProject",
                "summary": "Delete a project (owners)",
                "description": "It answers 404 at once and its tokens stop working; "
                "'modelyard gc' purges its data.",
                "responses": {
                    **_ok("Deleted.", {"deleted": {"type": "string"}}),
                    **_errors("400", "403", "404"),
                },
            },
        },
        project + "/members": {
            "parameters": [PROJECT],
            "get": {
                "operationId": "listMembers",
                "summary": "The project's members and their roles",
                "responses": {
                    **_ok("The members.", {"members": {"type": "array", "items": _ref("Member")}}),
                    **_errors("404"),
                },
            },
        },
        project + "/members/{user}": {
            "parameters": [PROJECT, USER],
            "put": {
                "operationId": "setMember",
                "summary": "Add a member or change a member's role (maintainers)",
                "description": "Only owners appoint, demote or remove owners; a project keeps "
                "at least one owner.",
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "required": ["role"],
                                "properties": {"role": {"type": "string", "enum": _ROLES}},
                            }
                        }
                    },
                },
                "responses": {
                    **_ok("The membership.", {"member": _ref("Member")}),
                    **_errors("400", "403", "404"),
                },
            },
            "delete": {
                "operationId": "removeMember",
                "summary": "Remove a member (maintainers)",
                "responses": {
                    **_ok("Removed.", {}),
                    **_errors("400", "403", "404"),
                },
            },
        },
        project + "/tokens": {
            "parameters": [PROJECT],
            "get": {
                "operationId": "listProjectTokens",
                "summary": "The project's tokens (maintainers)",
                "responses": {**_ok("The tokens.", token_list), **_errors("403", "404")},
            },
            "post": {
                "operationId": "createProjectToken",
                "summary": "Create a project token (maintainers); its secret is shown once",
                "requestBody": token_body,
                "responses": {
                    **_ok("The token and its secret.", new_token, "201"),
                    **_errors("400", "403", "404"),
                },
            },
        },
        project + "/tokens/{token_id}": {
            "parameters": [PROJECT, TOKEN_ID],
            "delete": {
                "operationId": "revokeProjectToken",
                "summary": "Revoke a project token (maintainers)",
                "responses": {
                    **_ok("The revoked token.", {"token": _ref("Token")}),
                    **_errors("400", "403", "404"),
                },
            },
        },
        project + "/audit": {
            "parameters": [PROJECT],
            "get": _events("The project's audit log (maintainers)", "projectAudit"),
        },
        "/api/v1/tokens": {
            "get": {
                "operationId": "listTokens",
                "summary": "The caller's personal tokens",
                "responses": {**_ok("The tokens.", token_list), **_errors("403")},
            },
            "post": {
                "operationId": "createToken",
                "summary": "Create a personal token; its secret is shown once",
                "description": "It acts with its user's roles (read scope: read only).",
                "requestBody": token_body,
                "responses": {
                    **_ok("The token and its secret.", new_token, "201"),
                    **_errors("400", "403"),
                },
            },
        },
        "/api/v1/tokens/{token_id}": {
            "parameters": [TOKEN_ID],
            "delete": {
                "operationId": "revokeToken",
                "summary": "Revoke one of the caller's personal tokens",
                "responses": {
                    **_ok("The revoked token.", {"token": _ref("Token")}),
                    **_errors("400", "403", "404"),
                },
            },
        },
        "/api/v1/users": {
            "get": {
                "operationId": "listUsers",
                "summary": "Every user (admins)",
                "responses": {
                    **_ok("The users.", {"users": {"type": "array", "items": _ref("User")}}),
                    **_errors("403"),
                },
            },
            "post": {
                "operationId": "createUser",
                "summary": "Create a user (admins); no token is made",
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "admin": {"type": "boolean", "default": False},
                                    "password": {"type": "string", "minLength": 12},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    **_ok("The new user.", user_out, "201"),
                    **_errors("400", "403"),
                },
            },
        },
        "/api/v1/users/{user}": {
            "parameters": [USER],
            "get": {
                "operationId": "getUser",
                "summary": "A user (admins)",
                "responses": {**_ok("The user.", user_out), **_errors("403", "404")},
            },
            "patch": {
                "operationId": "updateUser",
                "summary": "Change a user's admin flag, disabled state or password (admins)",
                "description": "Admins cannot drop their own admin flag or disable themselves.",
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "minProperties": 1,
                                "properties": {
                                    "admin": {"type": "boolean"},
                                    "disabled": {"type": "boolean"},
                                    "password": {"type": "string", "minLength": 12},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    **_ok("The user.", user_out),
                    **_errors("400", "403", "404"),
                },
            },
        },
        "/api/v1/audit": {
            "get": _events("Instance-wide events: users and personal tokens (admins)", "audit"),
        },
    }
