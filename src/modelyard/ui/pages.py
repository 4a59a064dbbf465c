"""The pages: home (projects) and experiments. Each reads through the same services as the
APIs and renders a template; the gate has already checked the caller's role."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from modelyard.auth.gate import PRINCIPAL
from modelyard.auth.roles import Principal
from modelyard.db.schema import DEFAULT_PROJECT_ID
from modelyard.mlflow_api.wire import Context, call
from modelyard.services import access, experiments
from modelyard.services.access import Project
from modelyard.ui.render import page, prefix

MAX_EXPERIMENTS = 1000


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def project_path(project: Project) -> str:
    return "" if project.id == DEFAULT_PROJECT_ID else f"/projects/{project.name}"


async def home(request: Request, ctx: Context) -> Response:
    principal: Principal = request.scope[PRINCIPAL]
    found = await call(ctx, access.list_projects, ctx.db, principal)
    root = base_url(request)
    rows = [(project, role, root + project_path(project)) for project, role in found]
    example = rows[0][2] if rows else root
    return page(request, "home.html", projects=rows, uri_path=project_path, example_uri=example)


async def experiment_list(request: Request, ctx: Context) -> Response:
    found = await call(
        ctx,
        lambda: experiments.search(
            ctx.db,
            ctx.project_id,
            view_type="ACTIVE_ONLY",
            max_results=MAX_EXPERIMENTS,
            filter_string=None,
            order_by=["last_update_time DESC"],
            page_token=None,
        ),
    )
    counts = await call(ctx, experiments.activity, ctx.db, [e.experiment_id for e in found.items])
    rows = []
    for experiment in found.items:
        count, last = counts[experiment.experiment_id]
        rows.append((experiment, count, max(last or 0, experiment.last_update_time)))
    rows.sort(key=lambda row: row[2], reverse=True)
    return page(
        request,
        "experiments.html",
        experiments=rows,
        tracking_uri=base_url(request) + prefix(request),
    )
