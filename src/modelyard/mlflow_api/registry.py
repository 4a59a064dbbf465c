"""MLflow's model registry endpoints: registered models, model versions, aliases, stages,
and ``runs/log-model`` for 2.x clients."""

from __future__ import annotations

import json
from typing import Any

from modelyard.errors import InvalidParameter
from modelyard.mlflow_api.wire import Context, Handler, Message
from modelyard.services import aliases, model_versions, registry, registry_search
from modelyard.services import runs as run_service
from modelyard.services.registry import SEMVER_TAG, ModelVersion, RegisteredModel

# Until users exist (the projects and tokens issue), alias moves are recorded as anonymous.
LOG_MODEL_HISTORY = "mlflow.log-model.history"


def _tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in tags.items()]


def version_json(version: ModelVersion) -> dict[str, Any]:
    tags = dict(version.tags)
    if version.semver:
        tags[SEMVER_TAG] = version.semver
    out: dict[str, Any] = {
        "name": version.name,
        "version": str(version.version),
        "creation_timestamp": version.creation_time,
        "last_updated_timestamp": version.last_updated_time,
        "current_stage": version.current_stage,
        "description": version.description,
        "source": version.source,
        "run_id": version.run_id,
        "status": version.status,
        "run_link": version.run_link,
        "tags": _tags(tags),
        "aliases": version.aliases,
    }
    if version.model_id:
        out["model_id"] = version.model_id
    return out


def model_json(model: RegisteredModel) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": model.name,
        "creation_timestamp": model.creation_time,
        "last_updated_timestamp": model.last_updated_time,
        "description": model.description,
        "tags": _tags(model.tags),
        "aliases": [{"alias": a, "version": str(v)} for a, v in model.aliases],
    }
    if model.latest_versions:
        out["latest_versions"] = [version_json(v) for v in model.latest_versions]
    return out


def _max_results(msg: Message, default: int) -> int:
    value = msg.int64("max_results", default=default)
    assert value is not None
    return value


# ---- registered models


def create_model(ctx: Context, msg: Message) -> dict[str, Any]:
    model = registry.create_model(
        ctx.db,
        ctx.project_id,
        msg.string("name"),
        msg.key_values("tags"),
        msg.string("description") or "",
    )
    return {"registered_model": model_json(model)}


def get_model(ctx: Context, msg: Message) -> dict[str, Any]:
    return {
        "registered_model": model_json(
            registry.get_model(ctx.db, ctx.project_id, msg.string("name"))
        )
    }


def rename_model(ctx: Context, msg: Message) -> dict[str, Any]:
    model = registry.rename_model(
        ctx.db, ctx.project_id, msg.string("name"), msg.string("new_name")
    )
    return {"registered_model": model_json(model)}


def update_model(ctx: Context, msg: Message) -> dict[str, Any]:
    model = registry.update_model(
        ctx.db, ctx.project_id, msg.string("name"), msg.string("description") or ""
    )
    return {"registered_model": model_json(model)}


def delete_model(ctx: Context, msg: Message) -> dict[str, Any]:
    registry.delete_model(ctx.db, ctx.project_id, msg.string("name"))
    return {}


def search_models(ctx: Context, msg: Message) -> dict[str, Any]:
    found, token = registry_search.search_models(
        ctx.db,
        ctx.project_id,
        msg.string("filter"),
        msg.strings("order_by"),
        _max_results(msg, 100),
        msg.string("page_token"),
    )
    out: dict[str, Any] = {"registered_models": [model_json(m) for m in found]}
    if token:
        out["next_page_token"] = token
    return out


def latest_versions(ctx: Context, msg: Message) -> dict[str, Any]:
    found = registry.latest_versions(
        ctx.db, ctx.project_id, msg.string("name"), msg.strings("stages")
    )
    return {"model_versions": [version_json(v) for v in found]}


def set_model_tag(ctx: Context, msg: Message) -> dict[str, Any]:
    registry.set_model_tag(
        ctx.db, ctx.project_id, msg.string("name"), msg.string("key"), msg.string("value")
    )
    return {}


def delete_model_tag(ctx: Context, msg: Message) -> dict[str, Any]:
    registry.delete_model_tag(ctx.db, ctx.project_id, msg.string("name"), msg.string("key"))
    return {}


def set_alias(ctx: Context, msg: Message) -> dict[str, Any]:
    aliases.set_alias(
        ctx.db,
        ctx.project_id,
        msg.string("name"),
        msg.string("alias"),
        msg.string("version"),
        ctx.actor,
    )
    return {}


def delete_alias(ctx: Context, msg: Message) -> dict[str, Any]:
    aliases.delete_alias(ctx.db, ctx.project_id, msg.string("name"), msg.string("alias"), ctx.actor)
    return {}


def get_by_alias(ctx: Context, msg: Message) -> dict[str, Any]:
    found = aliases.version_by_alias(
        ctx.db, ctx.project_id, msg.string("name"), msg.string("alias")
    )
    return {"model_version": version_json(found)}


# ---- model versions


def create_version(ctx: Context, msg: Message) -> dict[str, Any]:
    version = model_versions.create_version(
        ctx.db,
        ctx.project_id,
        msg.string("name"),
        msg.string("source"),
        run_id=msg.string("run_id"),
        model_id=msg.string("model_id"),
        tags=msg.key_values("tags"),
        run_link=msg.string("run_link") or "",
        description=msg.string("description") or "",
    )
    return {"model_version": version_json(version)}


def get_version(ctx: Context, msg: Message) -> dict[str, Any]:
    found = registry.get_version(ctx.db, ctx.project_id, msg.string("name"), msg.string("version"))
    return {"model_version": version_json(found)}


def update_version(ctx: Context, msg: Message) -> dict[str, Any]:
    found = model_versions.update_version(
        ctx.db,
        ctx.project_id,
        msg.string("name"),
        msg.string("version"),
        msg.string("description") or "",
    )
    return {"model_version": version_json(found)}


def delete_version(ctx: Context, msg: Message) -> dict[str, Any]:
    model_versions.delete_version(
        ctx.db, ctx.project_id, msg.string("name"), msg.string("version"), ctx.actor
    )
    return {}


def transition_stage(ctx: Context, msg: Message) -> dict[str, Any]:
    archive = msg.data.get("archive_existing_versions", False)
    if isinstance(archive, str):
        archive = archive.lower() == "true"
    found = model_versions.transition_stage(
        ctx.db,
        ctx.project_id,
        msg.string("name"),
        msg.string("version"),
        msg.string("stage"),
        bool(archive),
    )
    return {"model_version": version_json(found)}


def search_versions(ctx: Context, msg: Message) -> dict[str, Any]:
    found, token = registry_search.search_versions(
        ctx.db,
        ctx.project_id,
        msg.string("filter"),
        msg.strings("order_by"),
        _max_results(msg, 10_000),
        msg.string("page_token"),
    )
    out: dict[str, Any] = {"model_versions": [version_json(v) for v in found]}
    if token:
        out["next_page_token"] = token
    return out


def download_uri(ctx: Context, msg: Message) -> dict[str, Any]:
    uri = registry.download_uri(ctx.db, ctx.project_id, msg.string("name"), msg.string("version"))
    return {"artifact_uri": uri}


def set_version_tag(ctx: Context, msg: Message) -> dict[str, Any]:
    model_versions.set_version_tag(
        ctx.db,
        ctx.project_id,
        msg.string("name"),
        msg.string("version"),
        msg.string("key"),
        msg.string("value"),
    )
    return {}


def delete_version_tag(ctx: Context, msg: Message) -> dict[str, Any]:
    model_versions.delete_version_tag(
        ctx.db, ctx.project_id, msg.string("name"), msg.string("version"), msg.string("key")
    )
    return {}


def log_model(ctx: Context, msg: Message) -> dict[str, Any]:
    """2.x clients record each logged model's MLmodel in a run tag."""
    run_id = msg.required("run_id", alias="run_uuid")
    text = msg.required("model_json")
    try:
        model = json.loads(text)
    except ValueError:
        raise InvalidParameter("model_json must be a JSON object.") from None
    if not isinstance(model, dict):
        raise InvalidParameter("model_json must be a JSON object.")
    with ctx.db.write() as conn:
        row = run_service.load_active(conn, ctx.project_id, run_id)
        history = run_service.tag_of(conn, row, LOG_MODEL_HISTORY)
        entries = json.loads(history) if history else []
        entries.append(model)
        run_service.set_tag(conn, row, LOG_MODEL_HISTORY, json.dumps(entries))
    return {}


ROUTES: list[tuple[str, tuple[str, ...], Handler]] = [
    ("/registered-models/create", ("POST",), create_model),
    ("/registered-models/get", ("GET",), get_model),
    ("/registered-models/rename", ("POST",), rename_model),
    ("/registered-models/update", ("PATCH",), update_model),
    ("/registered-models/delete", ("DELETE",), delete_model),
    ("/registered-models/search", ("GET", "POST"), search_models),
    ("/registered-models/get-latest-versions", ("GET", "POST"), latest_versions),
    ("/registered-models/set-tag", ("POST",), set_model_tag),
    ("/registered-models/delete-tag", ("DELETE",), delete_model_tag),
    ("/registered-models/alias", ("POST",), set_alias),
    ("/registered-models/alias", ("DELETE",), delete_alias),
    ("/registered-models/alias", ("GET",), get_by_alias),
    ("/model-versions/create", ("POST",), create_version),
    ("/model-versions/get", ("GET",), get_version),
    ("/model-versions/update", ("PATCH",), update_version),
    ("/model-versions/delete", ("DELETE",), delete_version),
    ("/model-versions/transition-stage", ("POST",), transition_stage),
    ("/model-versions/search", ("GET", "POST"), search_versions),
    ("/model-versions/get-download-uri", ("GET",), download_uri),
    ("/model-versions/set-tag", ("POST",), set_version_tag),
    ("/model-versions/delete-tag", ("DELETE",), delete_version_tag),
    ("/runs/log-model", ("POST",), log_model),
]
