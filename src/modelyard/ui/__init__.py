"""The web UI: server-rendered pages over the same services as the APIs, under ``/ui`` (and
``/projects/<name>/ui`` for a project), with the home page at ``/`` and static files at
``/static``. Errors become an HTML page with the error's status."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from modelyard.errors import ModelyardError, NotFound
from modelyard.mlflow_api.wire import Context, audited, call
from modelyard.services import audit
from modelyard.ui import (
    candidates,
    chartdata,
    experiment_charts,
    links,
    logged_models,
    merge_requests,
    models,
    pages,
    runs,
    webhooks,
)
from modelyard.ui.render import error_page

Page = Callable[[Request, Context], Awaitable[Response]]
STATIC = Path(__file__).parent / "static"
STATIC_FILES = {
    "ui.css": "text/css",
    "charts.js": "text/javascript",
    "links.js": "text/javascript",
    "images.js": "text/javascript",
    "uPlot.iife.min.js": "text/javascript",
    "uPlot.min.css": "text/css",
    "uPlot.LICENSE.txt": "text/plain; charset=utf-8",
}

#: (path, methods, page) of every page
ROUTES: list[tuple[str, tuple[str, ...], Page]] = [
    ("/", ("GET",), pages.home),
    ("/ui/experiments", ("GET",), pages.experiment_list),
    ("/ui/experiments/{experiment_id}", ("GET",), candidates.candidates),
    ("/ui/experiments/{experiment_id}/candidates.csv", ("GET",), candidates.candidates_csv),
    ("/ui/experiments/{experiment_id}/charts", ("GET",), experiment_charts.experiment_charts),
    ("/ui/selection", ("GET",), candidates.selection),
    ("/ui/models", ("GET",), models.model_list),
    ("/ui/models/{name}", ("GET",), models.model_page),
    ("/ui/models/{name}/versions/{ref}", ("GET",), models.version_page),
    ("/ui/models/{name}/aliases", ("POST",), models.set_alias),
    ("/ui/models/{name}/card", ("POST",), models.save_card),
    ("/ui/models/{name}/key-metric", ("POST",), models.set_key_metric),
    ("/ui/promote", ("GET",), models.promote_form),
    ("/ui/promote", ("POST",), models.promote),
    ("/ui/runs/{run_id}", ("GET",), runs.run_page),
    ("/ui/runs/{run_id}/files/{path:anypath}", ("GET",), runs.file_page),
    ("/ui/runs/{run_id}/raw/{path:anypath}", ("GET",), runs.file_raw),
    ("/ui/compare", ("GET",), runs.compare),
    ("/ui/charts/data", ("GET",), chartdata.chart_route),
    ("/ui/link", ("GET",), links.follow),
    ("/ui/logged-models/{model_id}", ("GET",), logged_models.logged_model_page),
    ("/ui/merge-requests", ("GET",), merge_requests.merge_request_list),
    ("/ui/merge-requests/candidates", ("GET",), merge_requests.merge_request_page),
    ("/ui/merge-requests/compare", ("GET",), merge_requests.compare),
    ("/ui/webhooks", ("GET",), webhooks.webhook_list),
    ("/ui/webhooks", ("POST",), webhooks.create),
    ("/ui/webhooks/{webhook_id}", ("GET",), webhooks.webhook_page),
    ("/ui/webhooks/{webhook_id}/test", ("POST",), webhooks.test),
    ("/ui/webhooks/{webhook_id}/status", ("POST",), webhooks.set_status),
    ("/ui/webhooks/{webhook_id}/delete", ("POST",), webhooks.delete),
]


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC_FILES:
        raise NotFound(f"No static file {name!r}.")
    return FileResponse(
        STATIC / name,
        media_type=STATIC_FILES[name],
        headers={"cache-control": "public, max-age=3600"},
    )


def _guarded(
    page: Page, context_of: Callable[[Request], Context]
) -> Callable[[Request], Awaitable[Response]]:
    async def route(request: Request) -> Response:
        context = context_of(request)
        try:
            response = await page(request, context)
            action = audited(request)
            if action is not None and response.status_code < 400:
                fields = dict(getattr(request.state, "form", {}))
                fields.pop("csrf_token", None)
                fields.update(request.path_params)
                await call(context, audit.record_call, context, action, fields)
            return response
        except ModelyardError as exc:
            return error_page(request, exc)

    route.__name__ = page.__name__
    return route


def routes(context_of: Callable[[Request], Context]) -> list[Route]:
    out = [
        Route(path, _guarded(page, context_of), methods=list(methods))
        for path, methods, page in ROUTES
    ]
    out.append(Route("/static/{name}", static, methods=["GET"]))
    return out
