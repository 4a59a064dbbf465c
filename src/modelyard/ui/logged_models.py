"""A logged model's page: what it is, its params, metrics and tags, its files, the candidate
it came from and the model versions registered from it."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from modelyard.db.engine import Database
from modelyard.errors import ModelyardError
from modelyard.mlflow_api.wire import Context, call
from modelyard.services import artifacts, logged_models, packages, registry
from modelyard.services import runs as run_service
from modelyard.services.entities import Metric, Run
from modelyard.services.logged_models import LoggedModel
from modelyard.services.registry import ModelVersion
from modelyard.ui.render import page
from modelyard.ui.runs import MAX_FILES, human_size, quoted


@dataclass(slots=True)
class Found:
    model: LoggedModel
    run: Run | None
    files: list[packages.PackageFile]
    versions: list[ModelVersion]


def _load(db: Database, project_id: int, model_id: str) -> Found:
    model = logged_models.get(db, project_id, model_id)
    run = None
    if model.source_run_id:
        try:
            run = run_service.get(db, project_id, model.source_run_id)
        except ModelyardError:
            run = None
    root = f"{model.experiment_id}/models/{model.model_id}/artifacts"
    target = artifacts.locate(db, project_id, root)
    package = None if target is None else target.package
    files = [] if package is None else packages.files(db, package.id)
    versions = [v for v in registry.all_versions(db, project_id) if v.model_id == model.model_id]
    return Found(model, run, files, sorted(versions, key=lambda v: (v.name, v.version)))


def _latest(metrics: list[Metric]) -> list[Metric]:
    """The latest point of each metric (highest step, then time)."""
    latest: dict[str, Metric] = {}
    for metric in metrics:
        seen = latest.get(metric.key)
        if seen is None or (metric.step, metric.timestamp) >= (seen.step, seen.timestamp):
            latest[metric.key] = metric
    return [latest[key] for key in sorted(latest)]


async def logged_model_page(request: Request, ctx: Context) -> Response:
    model_id = str(request.path_params["model_id"])
    found = await call(ctx, _load, ctx.db, ctx.project_id, model_id)
    model = found.model
    return page(
        request,
        "logged_model.html",
        model=model,
        run=found.run,
        params=sorted(model.params.items()),
        metrics=_latest(model.metrics),
        tags=sorted(model.tags.items()),
        files=found.files[:MAX_FILES],
        file_count=len(found.files),
        versions=found.versions,
        files_root=f"/api/2.0/mlflow-artifacts/artifacts/{model.experiment_id}/models/"
        f"{quoted(model.model_id)}/artifacts",
        human_size=human_size,
        quoted=quoted,
    )
