"""MLflow's REST protocol: tracking under /api/2.0/mlflow and /ajax-api/2.0/mlflow (plus the
few routes MLflow's server answers for its web UI under /ajax-api only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from modelyard import __version__
from modelyard.mlflow_api import artifacts, experiments, logged_models, metrics, registry, runs
from modelyard.mlflow_api.wire import Context, Handler, Message, endpoint

PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
INFO_PREFIXES = ("/api/3.0/mlflow", "/ajax-api/3.0/mlflow")
UI_PREFIXES = ("/ajax-api/2.0/mlflow",)


def server_info(ctx: Context, _msg: Message) -> dict[str, Any]:
    presigned = ctx.store.presigned
    return {
        "store_type": "SqlStore",
        "server": "modelyard",
        "version": __version__,
        "workspaces_enabled": False,
        "multipart_uploads_enabled": presigned,
        "multipart_downloads_enabled": presigned,
        "artifact_serving_enabled": True,
        "artifacts_presigned_only": False,
    }


TRACKING: list[tuple[str, tuple[str, ...], Handler]] = [
    *experiments.ROUTES,
    *runs.ROUTES,
    *metrics.ROUTES,
    *logged_models.ROUTES,
    *registry.ROUTES,
]
INFO: list[tuple[str, tuple[str, ...], Handler]] = [
    ("/server-info", ("GET",), server_info),
]
UI_ONLY: list[tuple[str, tuple[str, ...], Handler]] = [
    *experiments.UI_ROUTES,
    *metrics.UI_ROUTES,
]


def routes(context_of: Callable[[Request], Context]) -> list[BaseRoute]:
    """Every MLflow route, bound to a function that tells each request's context."""
    out: list[BaseRoute] = []
    tables = ((PREFIXES, TRACKING), (INFO_PREFIXES, INFO), (UI_PREFIXES, UI_ONLY))
    for prefixes, table in tables:
        for path, methods, handler in table:
            wrapped = endpoint(handler, context_of)
            out.extend(Route(p + path, wrapped, methods=list(methods)) for p in prefixes)
    out.extend(artifacts.routes(context_of))
    return out
