"""The registry pages: models, a model (card, versions, aliases and their history), a version
(files, lineage, downloads), promotion of a candidate or logged model, and the maintainers'
alias and card forms. Everything goes through the services the native API uses."""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import quote

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from modelyard.db.engine import Database
from modelyard.db.schema import latest_metrics, registered_models, runs
from modelyard.errors import InvalidParameter, ModelyardError, NotFound
from modelyard.mlflow_api.wire import Context, call
from modelyard.services import aliases, artifacts, logged_models, packages, promotion, registry
from modelyard.services import runs as run_service
from modelyard.services import semver as semvers
from modelyard.services.registry import ModelVersion
from modelyard.ui.ci import ci_links
from modelyard.ui.render import form, page, prefix, redirect
from modelyard.web.markdown import render

MLMODEL = "MLmodel"
#: the registered-model tag that keeps the metric shown for every version on the model page
KEY_METRIC_TAG = "modelyard.key_metric"
#: the CI steps a version's lineage chain starts with
CHAIN = ("merge request", "pipeline", "job")


def _name(request: Request) -> str:
    return str(request.path_params["name"])


def model_url(request: Request, name: str) -> str:
    return f"{prefix(request)}/ui/models/{quote(name, safe='')}"


def _links(tags: dict[str, str]) -> list[tuple[str, str, bool]]:
    """Tags as (key, value, is a link): only http(s) values become links. The key metric's
    tag is shown as the key metric, not among the tags."""
    return [
        (key, value, value.startswith(("http://", "https://")))
        for key, value in sorted(tags.items())
        if key != KEY_METRIC_TAG
    ]


def _candidate_metrics(db: Database, run_ids: list[str]) -> dict[str, dict[str, float]]:
    """The latest value of every metric of these candidates, by run id (NaN left out)."""
    if not run_ids:
        return {}
    out: dict[str, dict[str, float]] = {run_id: {} for run_id in run_ids}
    with db.read() as conn:
        rows = conn.execute(
            select(runs.c.id, latest_metrics.c.key, latest_metrics.c.value)
            .join(latest_metrics, latest_metrics.c.run_pk == runs.c.pk)
            .where(runs.c.id.in_(run_ids), latest_metrics.c.is_nan.is_(False))
        ).all()
    for run_id, key, value in rows:
        out[run_id][key] = value
    return out


def _newest_first(versions: list[ModelVersion]) -> list[ModelVersion]:
    return sorted(versions, key=lambda v: v.version, reverse=True)


# Models -----------------------------------------------------------------------------------------


async def model_list(request: Request, ctx: Context) -> Response:
    models = await call(ctx, registry.all_models, ctx.db, ctx.project_id)
    versions = await call(ctx, registry.all_versions, ctx.db, ctx.project_id)
    semver_of = {(v.name, v.version): v.semver for v in versions}
    rows = []
    for model in sorted(models, key=lambda m: m.last_updated_time, reverse=True):
        latest = max(model.latest_versions, key=lambda v: v.version, default=None)
        pointed = [
            (alias, number, semver_of.get((model.name, number))) for alias, number in model.aliases
        ]
        rows.append((model, latest, pointed))
    return page(request, "models.html", models=rows)


async def model_page(request: Request, ctx: Context) -> Response:
    model = await call(ctx, registry.get_model, ctx.db, ctx.project_id, _name(request))
    versions = await call(ctx, registry.versions_of, ctx.db, ctx.project_id, model.name)
    history = await call(ctx, aliases.alias_history, ctx.db, ctx.project_id, model.name)
    run_ids = sorted({v.run_id for v in versions if v.run_id})
    values = await call(ctx, _candidate_metrics, ctx.db, run_ids)
    key_metric = model.tags.get(KEY_METRIC_TAG, "")
    return page(
        request,
        "model.html",
        model=model,
        card_html=render(model.description),
        tags=_links(model.tags),
        versions=_newest_first(versions),
        history=list(reversed(history)),
        saved=request.query_params.get("saved", ""),
        key_metric=key_metric,
        key_values={run_id: found.get(key_metric) for run_id, found in values.items()},
        metric_choices=sorted({key for found in values.values() for key in found} | {key_metric}),
    )


async def set_key_metric(request: Request, ctx: Context) -> Response:
    """The metric whose value the model page shows for every version (empty: none), kept as
    the model's tag ``modelyard.key_metric``."""
    fields = await form(request)
    name = _name(request)
    metric = fields.get("metric", "").strip()

    def save() -> None:
        if metric:
            registry.set_model_tag(ctx.db, ctx.project_id, name, KEY_METRIC_TAG, metric)
            return
        registry.get_model(ctx.db, ctx.project_id, name)  # 404 for a model that is not there
        with contextlib.suppress(NotFound):  # there was none
            registry.delete_model_tag(ctx.db, ctx.project_id, name, KEY_METRIC_TAG)

    await call(ctx, save)
    return redirect(model_url(request, name) + "?saved=key_metric#versions")


async def set_alias(request: Request, ctx: Context) -> Response:
    fields = await form(request)
    name = _name(request)
    alias = fields.get("alias", "").strip()
    ref = fields.get("version", "").strip()
    if not ref:
        raise InvalidParameter("Choose the version the alias should name.")
    version = await call(ctx, promotion.resolve_version, ctx.db, ctx.project_id, name, ref)
    await call(
        ctx,
        aliases.set_alias,
        ctx.db,
        ctx.project_id,
        name,
        alias,
        str(version.version),
        ctx.actor,
    )
    return redirect(model_url(request, name) + "?saved=alias#aliases")


async def save_card(request: Request, ctx: Context) -> Response:
    fields = await form(request)
    markdown = fields.get("markdown", "").replace("\r\n", "\n")
    name = _name(request)
    await call(ctx, registry.update_model, ctx.db, ctx.project_id, name, markdown)
    return redirect(model_url(request, name) + "?saved=card#card")


# Versions ---------------------------------------------------------------------------------------


def _version_details(
    ctx: Context, name: str, ref: str
) -> tuple[ModelVersion, packages.Package | None, list[packages.PackageFile], dict[str, Any]]:
    version = promotion.resolve_version(ctx.db, ctx.project_id, name, ref)
    package_id = promotion.version_package(ctx.db, ctx.project_id, version.name, version.version)
    package = None if package_id is None else packages.get_by_id(ctx.db, package_id)
    files = [] if package_id is None else packages.files(ctx.db, package_id)
    lineage = promotion.lineage(ctx.db, ctx.project_id, version)
    source = None
    if lineage.get("candidate"):
        try:
            source = run_service.get(ctx.db, ctx.project_id, version.run_id)
        except ModelyardError:
            source = None
    logged = None
    if version.model_id:
        try:
            logged = logged_models.get(ctx.db, ctx.project_id, version.model_id)
        except ModelyardError:
            logged = None
    return (
        version,
        package,
        files,
        {
            "candidate": None,
            "experiment": None,
            "commit": None,
            **lineage,
            "run": source,
            "logged_model": logged,
        },
    )


async def version_page(request: Request, ctx: Context) -> Response:
    ref = str(request.path_params["ref"])
    version, package, files, lineage = await call(ctx, _version_details, ctx, _name(request), ref)
    return page(
        request,
        "version.html",
        version=version,
        package=package,
        files=files,
        lineage=lineage,
        source_tags=_links(lineage.get("source_tags", {})),
        ci_tags=_links(lineage.get("ci", {})),
        ci_chain=[
            link for link in ci_links(lineage.get("ci", {}), prefix(request)) if link.what in CHAIN
        ],
        tags=_links(version.tags),
        created=request.query_params.get("created") == "1",
    )


# Promotion --------------------------------------------------------------------------------------


def _highest_semvers(db: Database, project_id: int) -> dict[str, str | None]:
    """Every model of the project and its highest semver (kept on the model's row)."""
    with db.read() as conn:
        rows = conn.execute(
            select(registered_models.c.name, registered_models.c.highest_semver)
            .where(registered_models.c.project_id == project_id)
            .order_by(registered_models.c.name)
        ).all()
    return {str(name): highest for name, highest in rows}


def _folders(paths: list[str]) -> tuple[list[str], str]:
    """The folders of a candidate's files ("" = its root) and the one to promote by default:
    the first holding an MLmodel file, else the root."""
    folders = {""}
    for path in paths:
        parts = path.split("/")[:-1]
        folders.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    models = sorted(p.rpartition("/")[0] for p in paths if p.rpartition("/")[2] == MLMODEL)
    return sorted(folders), models[0] if models else ""


def _source(ctx: Context, run_id: str | None, model_id: str | None) -> dict[str, Any]:
    """What is promoted: the candidate (its name and folders) or the logged model."""
    if model_id:
        logged = logged_models.get(ctx.db, ctx.project_id, model_id)
        return {"logged": logged, "run": None, "folders": [], "default_path": ""}
    if not run_id:
        raise InvalidParameter("Open this page from a candidate (?run=) or a logged model.")
    run = run_service.get(ctx.db, ctx.project_id, run_id)
    target = artifacts.run_target(ctx.db, ctx.project_id, run_id, "")
    paths = (
        []
        if target.package is None
        else [f.path for f in packages.files(ctx.db, target.package.id)]
    )
    folders, default = _folders(paths)
    return {
        "logged": None,
        "run": run,
        "folders": folders,
        "default_path": default,
        "empty": not paths,
    }


def _suggestions(highest: str | None) -> dict[str, str]:
    top = semvers.parse(highest) if highest else None
    return {part: str(semvers.bump(top, part)) for part in semvers.BUMPS}


def _promote_values(
    ctx: Context, run_id: str | None, model_id: str | None, model: str, bump: str, strict: bool
) -> dict[str, Any]:
    try:
        source = _source(ctx, run_id, model_id)
    except ModelyardError:
        if strict:
            raise
        source = {"logged": None, "run": None, "folders": [""], "default_path": ""}
    highest = _highest_semvers(ctx.db, ctx.project_id)
    if model not in highest:
        model = ""
    if bump not in semvers.BUMPS:
        bump = "patch"
    suggestions = _suggestions(highest.get(model))
    return {
        **source,
        "empty": source.get("empty", False),
        "run_id": run_id or "",
        "model_id": model_id or "",
        "models": highest,
        "model": model,
        "bump": bump,
        "suggestions": suggestions,
        "suggested": suggestions[bump],
    }


async def promote_form(request: Request, ctx: Context) -> Response:
    query = request.query_params
    values = await call(
        ctx,
        _promote_values,
        ctx,
        query.get("run") or None,
        query.get("logged_model") or None,
        query.get("model", ""),
        query.get("bump", "patch"),
        True,
    )
    fields = {
        "new_name": "",
        "semver": values["suggested"],
        "path": values["default_path"],
        "description": "",
    }
    return page(request, "promote.html", error="", fields=fields, **values)


async def promote(request: Request, ctx: Context) -> Response:
    fields = await form(request)
    run_id = fields.get("run", "").strip() or None
    model_id = fields.get("logged_model", "").strip() or None
    name = fields.get("new_name", "").strip() or fields.get("model", "")
    bump = fields.get("bump", "patch")
    typed = fields.get("semver", "").strip()
    # an untouched suggestion follows the bump chosen (computed again when the version is made)
    wanted = None if typed in ("", fields.get("suggested", "")) else typed

    def make() -> ModelVersion:
        if not name:
            raise InvalidParameter("Choose a model or type the name of a new one.")
        return promotion.promote(
            ctx.db,
            ctx.project_id,
            name,
            candidate=run_id,
            path=fields.get("path", ""),
            logged_model=model_id,
            semantic_version=wanted,
            bump=bump,
            description=fields.get("description", "").replace("\r\n", "\n"),
        )

    try:
        version = await call(ctx, make)
    except ModelyardError as exc:
        values = await call(
            ctx, _promote_values, ctx, run_id, model_id, fields.get("model", ""), bump, False
        )
        shown = {
            "new_name": fields.get("new_name", ""),
            "semver": typed,
            "path": fields.get("path", ""),
            "description": fields.get("description", ""),
        }
        return page(request, "promote.html", status=400, error=exc.message, fields=shown, **values)
    return redirect(f"{model_url(request, version.name)}/versions/{version.version}?created=1")
