"""MLflow metric history endpoints."""

from __future__ import annotations

from typing import Any

from modelyard.mlflow_api.runs import metric_json
from modelyard.mlflow_api.wire import Context, Handler, Message
from modelyard.services import metric_history


def get_history(ctx: Context, msg: Message) -> dict[str, Any]:
    page = metric_history.history(
        ctx.db,
        ctx.project_id,
        msg.required("run_id", alias="run_uuid"),
        msg.required("metric_key"),
        msg.int64("max_results"),
        msg.string("page_token"),
    )
    key = msg.required("metric_key")
    out: dict[str, Any] = {
        "metrics": [{"key": key, "value": v, "timestamp": t, "step": s} for v, t, s in page.items]
    }
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return out


def get_history_bulk_interval(ctx: Context, msg: Message) -> dict[str, Any]:
    points = metric_history.bulk_interval(
        ctx.db,
        ctx.project_id,
        msg.strings("run_ids"),
        msg.string("metric_key"),
        msg.int64("start_step"),
        msg.int64("end_step"),
        msg.int64("max_results"),
    )
    return {"metrics": [metric_json(m) for m in points]}


def get_history_bulk(ctx: Context, msg: Message) -> dict[str, Any]:
    """The web UI's whole histories of several runs (``run_id`` repeated)."""
    points = metric_history.bulk(
        ctx.db,
        ctx.project_id,
        msg.strings("run_id"),
        msg.string("metric_key"),
        msg.int64("max_results"),
    )
    return {"metrics": [metric_json(m) for m in points]}


ROUTES: list[tuple[str, tuple[str, ...], Handler]] = [
    ("/metrics/get-history", ("GET",), get_history),
    ("/metrics/get-history-bulk-interval", ("GET",), get_history_bulk_interval),
]

# Answered under /ajax-api/2.0/mlflow only, as by MLflow's server (its web UI calls it).
UI_ROUTES: list[tuple[str, tuple[str, ...], Handler]] = [
    ("/metrics/get-history-bulk", ("GET",), get_history_bulk),
]
