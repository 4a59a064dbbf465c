"""MLflow 3 LoggedModel routes and their JSON shapes: create, get, finalize, delete, search,
tags, params and the listing of its files. The model id (and a tag key) come from the URL
path."""

from __future__ import annotations

from typing import Any

from modelyard.errors import InvalidParameter
from modelyard.mlflow_api.artifacts import entry_json
from modelyard.mlflow_api.wire import Context, Handler, Message, number
from modelyard.services import artifacts, packages, validation
from modelyard.services import logged_models as service
from modelyard.services.entities import Metric
from modelyard.services.logged_models import LoggedModel
from modelyard.services.paths import join
from modelyard.services.search.logged_models import DatasetFilter, OrderBy


def _pairs(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in values.items()]


def metric_json(m: Metric) -> dict[str, Any]:
    out: dict[str, Any] = {
        "key": m.key,
        "value": number(m.value),
        "timestamp": m.timestamp,
        "step": m.step,
    }
    for name in ("model_id", "run_id", "dataset_name", "dataset_digest"):
        value = getattr(m, name)
        if value:
            out[name] = value
    return out


def model_json(model: LoggedModel) -> dict[str, Any]:
    info: dict[str, Any] = {
        "model_id": model.model_id,
        "experiment_id": str(model.experiment_id),
        "name": model.name,
        "creation_timestamp_ms": model.creation_time,
        "last_updated_timestamp_ms": model.last_updated_time,
        "artifact_uri": model.artifact_location,
        "status": model.status,
        "model_type": model.model_type,
    }
    if model.source_run_id:
        info["source_run_id"] = model.source_run_id
    if model.tags:
        info["tags"] = _pairs(model.tags)
    data: dict[str, Any] = {}
    if model.params:
        data["params"] = _pairs(model.params)
    if model.metrics:
        data["metrics"] = [metric_json(m) for m in model.metrics]
    return {"info": info, "data": data}


def _model_id(msg: Message) -> str:
    return msg.required("model_id")


def create(ctx: Context, msg: Message) -> dict[str, Any]:
    model = service.create(
        ctx.db,
        ctx.project_id,
        experiment_id=msg.required("experiment_id"),
        name=msg.string("name"),
        model_type=msg.string("model_type"),
        source_run_id=msg.string("source_run_id"),
        params=msg.key_values("params"),
        tags=msg.key_values("tags"),
    )
    return {"model": model_json(model)}


def get(ctx: Context, msg: Message) -> dict[str, Any]:
    allow_deleted = str(msg.data.get("allow_deleted", "")).lower() == "true"
    model = service.get(ctx.db, ctx.project_id, _model_id(msg), allow_deleted=allow_deleted)
    return {"model": model_json(model)}


def finalize(ctx: Context, msg: Message) -> dict[str, Any]:
    model = service.finalize(ctx.db, ctx.project_id, _model_id(msg), msg.data.get("status"))
    return {"model": model_json(model)}


def delete(ctx: Context, msg: Message) -> dict[str, Any]:
    service.delete_model(ctx.db, ctx.project_id, _model_id(msg))
    return {}


def set_tags(ctx: Context, msg: Message) -> dict[str, Any]:
    service.set_tags(ctx.db, ctx.project_id, _model_id(msg), msg.key_values("tags"))
    return {}


def delete_tag(ctx: Context, msg: Message) -> dict[str, Any]:
    service.delete_tag(ctx.db, ctx.project_id, _model_id(msg), msg.string("tag_key"))
    return {}


def log_params(ctx: Context, msg: Message) -> dict[str, Any]:
    service.log_params(ctx.db, ctx.project_id, _model_id(msg), msg.key_values("params"))
    return {}


def _optional_string(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise validation.invalid_value(value, name)
    return value


def _datasets(msg: Message) -> list[DatasetFilter]:
    out: list[DatasetFilter] = []
    for item in msg.objects("datasets"):
        name = _optional_string(item, "dataset_name")
        if name is None:
            raise InvalidParameter("`dataset_name` in the `datasets` clause must be specified.")
        out.append(DatasetFilter(name, _optional_string(item, "dataset_digest")))
    return out


def _order_by(msg: Message) -> list[OrderBy]:
    out: list[OrderBy] = []
    for item in msg.objects("order_by"):
        field_name = _optional_string(item, "field_name")
        if field_name is None:
            raise InvalidParameter("Missing value for required parameter 'order_by.field_name'.")
        ascending = item.get("ascending", True)
        if ascending is None:
            ascending = True
        if not isinstance(ascending, bool):
            raise validation.invalid_value(ascending, "order_by.ascending")
        out.append(
            OrderBy(
                field_name,
                ascending,
                _optional_string(item, "dataset_name"),
                _optional_string(item, "dataset_digest"),
            )
        )
    return out


def search(ctx: Context, msg: Message) -> dict[str, Any]:
    page = service.search(
        ctx.db,
        ctx.project_id,
        experiment_ids=msg.strings("experiment_ids"),
        filter_string=msg.string("filter"),
        datasets=_datasets(msg),
        max_results=msg.int64("max_results"),
        order_by=_order_by(msg),
        page_token=msg.string("page_token"),
    )
    out: dict[str, Any] = {}
    if page.items:
        out["models"] = [model_json(m) for m in page.items]
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return out


def list_artifacts(ctx: Context, msg: Message) -> dict[str, Any]:
    """The files and folders directly inside ``artifact_directory_path`` of the model's
    artifacts, named from the model's artifact root."""
    folder = msg.string("artifact_directory_path") or ""
    target = artifacts.model_target(ctx.db, ctx.project_id, msg.required("model_id"), folder)
    out: dict[str, Any] = {"root_uri": target.artifact_uri}
    if target.package is not None:
        entries = packages.list_folder(ctx.db, target.package.id, target.path)
        if entries:
            out["files"] = [
                entry_json(join(target.path, e.name), e.is_dir, e.size) for e in entries
            ]
    return out


# Literal paths come before "{model_id}" so that "search" is never taken for a model id.
ROUTES: list[tuple[str, tuple[str, ...], Handler]] = [
    ("/logged-models", ("POST",), create),
    ("/logged-models/search", ("POST",), search),
    ("/logged-models/{model_id}", ("GET",), get),
    ("/logged-models/{model_id}", ("PATCH",), finalize),
    ("/logged-models/{model_id}", ("DELETE",), delete),
    ("/logged-models/{model_id}/tags", ("PATCH",), set_tags),
    ("/logged-models/{model_id}/tags/{tag_key:path}", ("DELETE",), delete_tag),
    ("/logged-models/{model_id}/params", ("POST",), log_params),
    ("/logged-models/{model_id}/artifacts/directories", ("GET",), list_artifacts),
]
