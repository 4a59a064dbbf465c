"""The native registry API under /api/v1/models: models with their cards, versions by number,
semver, range or alias, promotion of a candidate or logged model, alias moves and their
history, and a version's files as one archive with a checksum manifest."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelyard.api.packages import file_json, package_archive, serve_file
from modelyard.api.wire import respond
from modelyard.errors import BadRequest, InvalidParameter, NotFound
from modelyard.mlflow_api.wire import Context, call
from modelyard.services import (
    aliases,
    packages,
    promotion,
    registry,
    registry_search,
    uploads,
)
from modelyard.services.paths import safe_path
from modelyard.services.registry import ModelVersion, RegisteredModel
from modelyard.web.markdown import render

# Until users exist (the projects and tokens issue), alias moves are recorded as anonymous.


def version_json(version: ModelVersion) -> dict[str, Any]:
    return {
        "name": version.name,
        "version": version.version,
        "semver": version.semver,
        "status": version.status,
        "stage": version.current_stage,
        "aliases": version.aliases,
        "description": version.description,
        "source": version.source,
        "run_id": version.run_id or None,
        "logged_model_id": version.model_id or None,
        "tags": version.tags,
        "created_at": version.creation_time,
        "updated_at": version.last_updated_time,
    }


def model_json(model: RegisteredModel) -> dict[str, Any]:
    latest = max(model.latest_versions, key=lambda v: v.version, default=None)
    return {
        "name": model.name,
        "aliases": dict(model.aliases),
        "tags": model.tags,
        "latest_version": None if latest is None else version_json(latest),
        "created_at": model.creation_time,
        "updated_at": model.last_updated_time,
    }


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise BadRequest("Send a JSON body with Content-Type: application/json.")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Malformed JSON in request body: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    return data


def _text(data: dict[str, Any], key: str, default: str | None = None) -> str | None:
    value = data.get(key, default)
    if value is not None and not isinstance(value, str | int):
        raise InvalidParameter(f"'{key}' must be a string.")
    return None if value is None else str(value)


def _name(request: Request) -> str:
    return str(request.path_params["name"])


async def list_models(request: Request, ctx: Context) -> Response:
    query = request.query_params
    limit = query.get("limit", "100")
    if not limit.isdigit():
        raise InvalidParameter("limit must be a number from 1 to 1000.")
    found, token = await call(
        ctx,
        registry_search.search_models,
        ctx.db,
        ctx.project_id,
        query.get("filter"),
        query.getlist("order_by"),
        int(limit),
        query.get("page_token"),
    )
    out: dict[str, Any] = {"models": [model_json(m) for m in found]}
    if token:
        out["next_page_token"] = token
    return respond(out)


async def get_model(request: Request, ctx: Context) -> Response:
    model = await call(ctx, registry.get_model, ctx.db, ctx.project_id, _name(request))
    versions = await call(ctx, _versions_of, ctx, model.name)
    return respond(
        {
            **model_json(model),
            "card": {"markdown": model.description, "html": render(model.description)},
            "versions": [version_json(v) for v in versions],
        }
    )


def _versions_of(ctx: Context, name: str) -> list[ModelVersion]:
    found = [v for v in registry.all_versions(ctx.db, ctx.project_id) if v.name == name]
    return sorted(found, key=lambda v: v.version, reverse=True)


async def put_card(request: Request, ctx: Context) -> Response:
    data = await _body(request)
    markdown = _text(data, "markdown")
    if markdown is None:
        raise InvalidParameter("Missing value for required parameter 'markdown'.")
    model = await call(ctx, registry.update_model, ctx.db, ctx.project_id, _name(request), markdown)
    return respond({"markdown": model.description, "html": render(model.description)})


async def list_versions(request: Request, ctx: Context) -> Response:
    model = await call(ctx, registry.get_model, ctx.db, ctx.project_id, _name(request))
    versions = await call(ctx, _versions_of, ctx, model.name)
    return respond({"versions": [version_json(v) for v in versions]})


async def promote(request: Request, ctx: Context) -> Response:
    data = await _body(request)
    client = request.headers.get("user-agent", "")
    version = await call(ctx, _promote, ctx, _name(request), data, client)
    return respond(version_json(version), status=201)


def _promote(ctx: Context, name: str, data: dict[str, Any], client: str) -> ModelVersion:
    if data.get("package") is not None:
        package = _text(data, "package") or ""
        package_version = _text(data, "package_version", "1") or ""
        announced = _announced(data.get("files"))
        staged = uploads.staging(ctx.db, ctx.project_id, package, package_version)
        for path, sha256, parts in announced:
            if parts:
                uploads.assemble(ctx.db, ctx.store, staged, path, sha256, parts)
        return promotion.promote_upload(
            ctx.db,
            ctx.project_id,
            name,
            package=package,
            package_version=package_version,
            files=[(path, sha256) for path, sha256, _parts in announced],
            uploaded_by=ctx.actor,
            client=client,
            semantic_version=_text(data, "semver"),
            bump=_text(data, "bump", "patch") or "patch",
            description=_text(data, "description", "") or "",
        )
    return promotion.promote(
        ctx.db,
        ctx.project_id,
        name,
        candidate=_text(data, "candidate"),
        path=_text(data, "path", "model") or "",
        logged_model=_text(data, "logged_model"),
        semantic_version=_text(data, "semver"),
        bump=_text(data, "bump", "patch") or "patch",
        description=_text(data, "description", "") or "",
    )


def _announced(raw: Any) -> list[tuple[str, str, int]]:
    """The files an uploader says it sent: ``[{"path", "sha256", "parts"?}, …]`` (``parts``:
    how many parts of a large file wait to be joined)."""
    if not isinstance(raw, list) or not all(
        isinstance(f, dict)
        and isinstance(f.get("path"), str)
        and isinstance(f.get("sha256"), str)
        and isinstance(f.get("parts", 0), int)
        and not isinstance(f.get("parts", 0), bool)
        for f in raw
    ):
        raise InvalidParameter(
            "'files' must list the uploaded files as {path, sha256, parts?} objects."
        )
    return [(safe_path(f["path"]), f["sha256"], int(f.get("parts", 0))) for f in raw]


def _resolved(ctx: Context, name: str, ref: str) -> tuple[ModelVersion, int | None]:
    """The version ``ref`` names and its package (None when it has no files)."""
    version = promotion.resolve_version(ctx.db, ctx.project_id, name, ref)
    package_id = promotion.version_package(ctx.db, ctx.project_id, version.name, version.version)
    return version, package_id


async def get_version(request: Request, ctx: Context) -> Response:
    ref = str(request.path_params["ref"])
    version, package_id = await call(ctx, _resolved, ctx, _name(request), ref)
    lineage = await call(ctx, promotion.lineage, ctx.db, ctx.project_id, version)
    files = [] if package_id is None else await call(ctx, packages.files, ctx.db, package_id)
    return respond(
        {**version_json(version), "lineage": lineage, "files": [file_json(f) for f in files]}
    )


async def version_archive(request: Request, ctx: Context) -> Response:
    ref = str(request.path_params["ref"])
    version, package_id = await call(ctx, _resolved, ctx, _name(request), ref)
    if package_id is None:
        raise NotFound(f"Version {version.version} of {version.name} has no files.")
    package = await call(ctx, packages.get_by_id, ctx.db, package_id)
    root = f"{version.name}-{version.semver or version.version}".replace(" ", "_")
    return await package_archive(ctx, package, root)


async def version_file(request: Request, ctx: Context) -> Response:
    """One file of a version, with ranged requests: what ``modelyard models pull`` fetches."""
    ref = str(request.path_params["ref"])
    path = safe_path(str(request.path_params["path"]))
    version, package_id = await call(ctx, _resolved, ctx, _name(request), ref)
    found = (
        None if package_id is None else await call(ctx, packages.get_file, ctx.db, package_id, path)
    )
    if found is None:
        raise NotFound(f"No file '{path[:500]}' in version {version.version} of {version.name}.")
    return serve_file(request, ctx, found)


async def set_alias(request: Request, ctx: Context) -> Response:
    data = await _body(request)
    ref = _text(data, "version")
    if ref is None:
        raise InvalidParameter("Missing value for required parameter 'version'.")
    name = _name(request)
    version = await call(ctx, promotion.resolve_version, ctx.db, ctx.project_id, name, ref)
    alias = str(request.path_params["alias"])
    await call(
        ctx, aliases.set_alias, ctx.db, ctx.project_id, name, alias, str(version.version), ctx.actor
    )
    return respond({"alias": alias, "version": version.version, "semver": version.semver})


async def delete_alias(request: Request, ctx: Context) -> Response:
    name, alias = _name(request), str(request.path_params["alias"])
    await call(ctx, aliases.delete_alias, ctx.db, ctx.project_id, name, alias, ctx.actor)
    return Response(status_code=204)


def _moment(text: str) -> int:
    """Milliseconds since the epoch from a number of ms or an ISO 8601 date/time (UTC if
    no zone is given)."""
    if text.isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidParameter(
            f"Invalid time {text[:50]!r}: use milliseconds or ISO 8601."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


async def alias_history(request: Request, ctx: Context) -> Response:
    name, alias = _name(request), str(request.path_params["alias"])
    events = await call(ctx, aliases.alias_history, ctx.db, ctx.project_id, name, alias)
    out: dict[str, Any] = {"alias": alias, "events": events}
    at = request.query_params.get("at")
    if at is not None:
        moment = _moment(at)
        before = [e for e in events if e["at"] <= moment]
        out["at"] = moment
        out["version_at"] = before[-1]["to_version"] if before else None
    return respond(out)
