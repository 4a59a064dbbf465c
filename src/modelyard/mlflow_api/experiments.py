"""MLflow experiment endpoints."""

from __future__ import annotations

from typing import Any

from modelyard.errors import InvalidParameter
from modelyard.mlflow_api.wire import Context, Handler, Message
from modelyard.services import experiments as service
from modelyard.services.entities import Experiment


def experiment_json(exp: Experiment) -> dict[str, Any]:
    out: dict[str, Any] = {
        "experiment_id": str(exp.experiment_id),
        "name": exp.name,
        "artifact_location": exp.artifact_location,
        "lifecycle_stage": exp.lifecycle_stage,
        "last_update_time": exp.last_update_time,
        "creation_time": exp.creation_time,
    }
    if exp.tags:
        out["tags"] = [{"key": k, "value": v} for k, v in exp.tags.items()]
    return out


def create(ctx: Context, msg: Message) -> dict[str, Any]:
    name = msg.required("name")
    location = msg.string("artifact_location")
    tags = dict(msg.key_values("tags"))
    new_id = service.create(ctx.db, ctx.project_id, name, location, tags)
    return {"experiment_id": str(new_id)}


def get(ctx: Context, msg: Message) -> dict[str, Any]:
    exp = service.get(ctx.db, ctx.project_id, msg.required("experiment_id"))
    return {"experiment": experiment_json(exp)}


def get_by_name(ctx: Context, msg: Message) -> dict[str, Any]:
    exp = service.get_by_name(ctx.db, ctx.project_id, msg.required("experiment_name"))
    return {"experiment": experiment_json(exp)}


def search(ctx: Context, msg: Message) -> dict[str, Any]:
    max_results = msg.int64("max_results")
    if max_results is None:
        raise InvalidParameter("Missing value for required parameter 'max_results'.")
    page = service.search(
        ctx.db,
        ctx.project_id,
        view_type=msg.string("view_type"),
        max_results=max_results,
        filter_string=msg.string("filter"),
        order_by=msg.strings("order_by"),
        page_token=msg.string("page_token"),
    )
    out: dict[str, Any] = {}
    if page.items:
        out["experiments"] = [experiment_json(e) for e in page.items]
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return out


def update(ctx: Context, msg: Message) -> dict[str, Any]:
    service.rename(ctx.db, ctx.project_id, msg.required("experiment_id"), msg.string("new_name"))
    return {}


def delete(ctx: Context, msg: Message) -> dict[str, Any]:
    service.set_lifecycle(ctx.db, ctx.project_id, msg.required("experiment_id"), service.DELETED)
    return {}


def restore(ctx: Context, msg: Message) -> dict[str, Any]:
    service.set_lifecycle(ctx.db, ctx.project_id, msg.required("experiment_id"), service.ACTIVE)
    return {}


def set_tag(ctx: Context, msg: Message) -> dict[str, Any]:
    service.set_tag(
        ctx.db,
        ctx.project_id,
        msg.required("experiment_id"),
        msg.required("key"),
        msg.string("value"),
    )
    return {}


def delete_tag(ctx: Context, msg: Message) -> dict[str, Any]:
    service.delete_tag(ctx.db, ctx.project_id, msg.required("experiment_id"), msg.required("key"))
    return {}


def search_datasets(ctx: Context, msg: Message) -> dict[str, Any]:
    """The web UI's summary of the datasets the experiments' candidates used."""
    found = service.dataset_summaries(ctx.db, ctx.project_id, msg.strings("experiment_ids"))
    summaries = []
    for summary in found:
        out = {
            "experiment_id": str(summary.experiment_id),
            "name": summary.name,
            "digest": summary.digest,
        }
        if summary.context:
            out["context"] = summary.context
        summaries.append(out)
    return {"dataset_summaries": summaries} if summaries else {}


ROUTES: list[tuple[str, tuple[str, ...], Handler]] = [
    ("/experiments/create", ("POST",), create),
    ("/experiments/get", ("GET",), get),
    ("/experiments/get-by-name", ("GET",), get_by_name),
    ("/experiments/search", ("POST", "GET"), search),
    ("/experiments/update", ("POST",), update),
    ("/experiments/delete", ("POST",), delete),
    ("/experiments/restore", ("POST",), restore),
    ("/experiments/set-experiment-tag", ("POST",), set_tag),
    ("/experiments/delete-experiment-tag", ("POST",), delete_tag),
]

# Answered under /ajax-api/2.0/mlflow only, as by MLflow's server (its web UI calls it).
UI_ROUTES: list[tuple[str, tuple[str, ...], Handler]] = [
    ("/experiments/search-datasets", ("POST",), search_datasets),
]
