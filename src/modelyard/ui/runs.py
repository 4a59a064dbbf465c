"""The candidate page (everything about one run, with its metric charts and files), a file's
preview and download, and the comparison of 2 to 50 candidates.

Files are previewed only as escaped text or as raster images; anything a browser could run
(HTML, SVG, scripts) is served as opaque bytes to download."""

from __future__ import annotations

import math
import posixpath
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from modelyard.db.engine import Database
from modelyard.errors import InvalidParameter, ModelyardError, NotFound
from modelyard.mlflow_api.artifacts import download_headers
from modelyard.mlflow_api.wire import Context, call
from modelyard.services import artifacts, experiments, logged_models, packages
from modelyard.services import runs as run_service
from modelyard.services.entities import Experiment, Run
from modelyard.services.logged_models import LoggedModel
from modelyard.services.paths import safe_path
from modelyard.ui import chartdata, charts
from modelyard.ui.ci import ci_links, web_link
from modelyard.ui.images import stepped_images
from modelyard.ui.render import page, prefix
from modelyard.web import routing as _routing  # noqa: F401 - registers {path:anypath}
from modelyard.web.media import served_type
from modelyard.web.transfer import BlobResponse, unreadable

MAX_RUN_CHARTS = 50
MAX_COMPARE_CHARTS = 20
MAX_PARALLEL_AXES = 40
MAX_CHILDREN = 200
MAX_LOGGED_MODELS = 100
MAX_FILES = 2000
PREVIEW_BYTES = 256 * 1024
MIN_COMPARE, MAX_COMPARE = 2, 50
PARENT_TAG = "mlflow.parentRunId"
SYSTEM_PREFIX = "mlflow."
CI_PREFIXES = ("ci.", "gitlab.", "github.")
LINEAGE_TAGS = (
    ("mlflow.source.name", "source"),
    ("mlflow.source.type", "source type"),
    ("mlflow.source.git.repoURL", "git repository"),
    ("mlflow.source.git.branch", "git branch"),
    ("mlflow.source.git.commit", "git commit"),
)
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
TEXT_SUFFIXES = frozenset(
    (".json", ".yaml", ".yml", ".txt", ".md", ".csv", ".tsv", ".log", ".py", ".toml", ".ini")
)
TEXT_NAMES = frozenset(("MLmodel", "LICENSE", "README"))
# never shown, never served with their own type, whatever they were uploaded as
ACTIVE_SUFFIXES = frozenset(
    (".html", ".htm", ".xhtml", ".shtml", ".svg", ".svgz", ".xml", ".js", ".mjs", ".xsl")
)


def _run_id(request: Request) -> str:
    return str(request.path_params["run_id"])


def human_size(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def quoted(path: str) -> str:
    return quote(path, safe="/")


# The candidate page ----------------------------------------------------------------------------


@dataclass(slots=True)
class Candidate:
    run: Run
    experiment: Experiment | None
    charts: list[chartdata.Chart]
    parent: Run | None
    children: list[Run]
    models: list[LoggedModel]
    files: list[packages.PackageFile] = field(default_factory=list)


def _optional_run(db: Database, project_id: int, run_id: str) -> Run | None:
    try:
        return run_service.get(db, project_id, run_id)
    except ModelyardError:
        return None


def _load_candidate(db: Database, project_id: int, run_id: str) -> Candidate:
    run = run_service.get(db, project_id, run_id)
    experiment_id = str(run.info.experiment_id)
    try:
        experiment: Experiment | None = experiments.get(db, project_id, experiment_id)
    except ModelyardError:
        experiment = None
    keys = sorted({m.key for m in run.metrics})[:MAX_RUN_CHARTS]
    label = run.info.run_name or run.info.run_id[:8]
    shown = chartdata.load_charts(db, project_id, [(label, run)], keys, chartdata.PAGE_COLUMNS)
    parent_id = run.tags.get(PARENT_TAG)
    parent = _optional_run(db, project_id, parent_id) if parent_id else None
    children = run_service.search(
        db,
        project_id,
        experiment_ids=[experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{run.info.run_id}'",
        run_view_type="ACTIVE_ONLY",
        max_results=MAX_CHILDREN,
        order_by=["attributes.start_time DESC"],
        page_token=None,
    ).items
    models = logged_models.search(
        db,
        project_id,
        experiment_ids=[experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}'",
        datasets=[],
        max_results=MAX_LOGGED_MODELS,
        order_by=[],
        page_token=None,
    ).items
    target = artifacts.run_target(db, project_id, run.info.run_id, "")
    files = [] if target.package is None else packages.files(db, target.package.id)
    charts = [chart for chart in shown if chart.worth_drawing]
    return Candidate(run, experiment, charts, parent, children, models, files)


def _tree(files: Iterable[packages.PackageFile]) -> list[tuple[str, str, str, int, int | None]]:
    """The files as (kind, name, path, depth, size) events, folders first at each level:
    kind "open" and "close" for a folder, "file" for a file."""

    def order(file: packages.PackageFile) -> list[tuple[int, str]]:
        parts = file.path.split("/")
        return [(0, p) for p in parts[:-1]] + [(1, parts[-1])]

    events: list[tuple[str, str, str, int, int | None]] = []
    open_folders: list[str] = []
    for file in sorted(files, key=order):
        parts = file.path.split("/")
        folders = parts[:-1]
        shared = 0
        while (
            shared < len(open_folders)
            and shared < len(folders)
            and open_folders[shared] == folders[shared]
        ):
            shared += 1
        while len(open_folders) > shared:
            open_folders.pop()
            events.append(("close", "", "", len(open_folders), None))
        for name in folders[shared:]:
            events.append(("open", name, "/".join([*open_folders, name]), len(open_folders), None))
            open_folders.append(name)
        events.append(("file", parts[-1], file.path, len(folders), file.size))
    events.extend(("close", "", "", depth, None) for depth in reversed(range(len(open_folders))))
    return events


def _tag_rows(
    tags: dict[str, str], keys: Iterable[tuple[str, str]]
) -> list[tuple[str, str, str | None]]:
    return [(label, tags[key], web_link(tags[key])) for key, label in keys if tags.get(key)]


async def run_page(request: Request, ctx: Context) -> Response:
    found = await call(ctx, _load_candidate, ctx.db, ctx.project_id, _run_id(request))
    run = found.run
    tags = sorted(run.tags.items())
    ci = [(k, v, web_link(v)) for k, v in tags if k.startswith(CI_PREFIXES)]
    duration = None
    if run.info.start_time and run.info.end_time:
        duration = _duration(run.info.end_time - run.info.start_time)
    return page(
        request,
        "run.html",
        run=run,
        experiment=found.experiment,
        duration=duration,
        params=sorted(run.params.items()),
        metrics=sorted(run.metrics, key=lambda m: m.key),
        charts=[(chart.key, chartdata.svg(chart)) for chart in found.charts],
        chart_data=chartdata.data_block(request, found.charts, chartdata.PAGE_COLUMNS),
        user_tags=[(k, v) for k, v in tags if not k.startswith(SYSTEM_PREFIX)],
        system_tags=[(k, v) for k, v in tags if k.startswith(SYSTEM_PREFIX)],
        parent_id=run.tags.get(PARENT_TAG),
        parent=found.parent,
        children=found.children,
        lineage=_tag_rows(run.tags, LINEAGE_TAGS),
        ci=ci,
        ci_links=ci_links(run.tags, prefix(request)),
        models=found.models,
        images=stepped_images(f.path for f in found.files),
        tree=_tree(found.files[:MAX_FILES]),
        file_count=len(found.files),
        max_files=MAX_FILES,
        human_size=human_size,
        quoted=quoted,
    )


def _duration(ms: int) -> str:
    seconds = max(ms, 0) // 1000
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m {seconds}s"
    return f"{minutes}m {seconds}s" if minutes else f"{seconds}s"


# One file: preview and download ----------------------------------------------------------------


def _suffix(path: str) -> str:
    return posixpath.splitext(posixpath.basename(path))[1].lower()


def preview_kind(path: str, media_type: str) -> str:
    """ "image", "text" or "download" (shown only as a link)."""
    suffix = _suffix(path)
    if suffix in ACTIVE_SUFFIXES:
        return "download"
    if suffix in IMAGE_TYPES:
        return "image"
    if (
        suffix in TEXT_SUFFIXES
        or posixpath.basename(path) in TEXT_NAMES
        or media_type.lower() == "text/plain"
    ):
        return "text"
    return "download"


def _run_file(db: Database, project_id: int, run_id: str, raw: str) -> packages.PackageFile:
    path = safe_path(raw)
    target = artifacts.run_target(db, project_id, run_id, path)
    found = None
    if target.package is not None:
        found = packages.get_file(db, target.package.id, target.path)
    if found is None:
        raise NotFound(f"No file '{path[:500]}' among the artifacts of run {run_id[:64]}.")
    return found


async def _head(ctx: Context, file: packages.PackageFile, size: int) -> bytes:
    try:
        if ctx.store.inline_reads:
            return ctx.store.read_bytes(file.location, 0, size)
        return await run_in_threadpool(ctx.store.read_bytes, file.location, 0, size)
    except Exception as exc:
        raise unreadable(file.location, exc) from exc


def _pretty_json(data: bytes) -> str | None:
    try:
        return orjson.dumps(orjson.loads(data), option=orjson.OPT_INDENT_2).decode()
    except (orjson.JSONDecodeError, TypeError):
        return None


async def file_page(request: Request, ctx: Context) -> Response:
    run_id = _run_id(request)
    raw_path = str(request.path_params.get("path", ""))
    file = await call(ctx, _run_file, ctx.db, ctx.project_id, run_id, raw_path)
    run = await call(ctx, run_service.get, ctx.db, ctx.project_id, run_id)
    kind = preview_kind(file.path, file.media_type)
    text = None
    truncated = False
    if kind == "text":
        data = await _head(ctx, file, min(file.size, PREVIEW_BYTES))
        truncated = file.size > PREVIEW_BYTES
        if b"\x00" in data:
            kind = "download"
        else:
            pretty = None
            if _suffix(file.path) == ".json" and not truncated:
                pretty = _pretty_json(data)
            text = pretty if pretty is not None else data.decode("utf-8", "replace")
    parts = file.path.split("/")
    return page(
        request,
        "artifact.html",
        run=run,
        file=file,
        kind=kind,
        text=text,
        truncated=truncated,
        preview_bytes=PREVIEW_BYTES,
        crumbs=parts[:-1],
        name=parts[-1],
        human_size=human_size,
        quoted=quoted,
    )


async def file_raw(request: Request, ctx: Context) -> Response:
    run_id = _run_id(request)
    raw_path = str(request.path_params.get("path", ""))
    file = await call(ctx, _run_file, ctx.db, ctx.project_id, run_id, raw_path)
    headers = download_headers(file.path, file.sha256)
    suffix = _suffix(file.path)
    media = served_type(file.path)
    if suffix in IMAGE_TYPES:
        media = IMAGE_TYPES[suffix]
        headers["content-disposition"] = headers["content-disposition"].replace(
            "attachment", "inline", 1
        )
    if request.headers.get("if-none-match", "").strip() == headers["etag"]:
        return Response(status_code=304, headers=headers)
    return BlobResponse(ctx.store, file.location, 0, file.size, headers=headers, media_type=media)


# Comparing candidates --------------------------------------------------------------------------


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number


@dataclass(slots=True)
class Comparison:
    runs: list[Run]
    metric_keys: list[str]
    param_keys: list[str]
    numeric_params: list[str]
    charts: list[chartdata.Chart]


def _load_comparison(db: Database, project_id: int, run_ids: list[str]) -> Comparison:
    found = [run_service.get(db, project_id, run_id) for run_id in run_ids]
    metric_keys = sorted({m.key for run in found for m in run.metrics})
    param_keys = sorted({k for run in found for k in run.params})
    numeric = [
        key
        for key in param_keys
        if all(_number(run.params[key]) is not None for run in found if key in run.params)
    ]
    labelled = list(zip(_labels(found), found, strict=True))
    shown: list[chartdata.Chart] = []
    for key in metric_keys:
        if len(shown) >= MAX_COMPARE_CHARTS:
            break
        shown.extend(
            chart
            for chart in chartdata.load_charts(
                db, project_id, labelled, [key], chartdata.PAGE_COLUMNS
            )
            if chart.worth_drawing
        )
    return Comparison(found, metric_keys, param_keys, numeric, shown)


def _requested_runs(request: Request) -> list[str]:
    ids: list[str] = []
    for value in request.query_params.getlist("runs"):
        ids.extend(part.strip() for part in value.split(",") if part.strip())
    unique = list(dict.fromkeys(ids))
    if not MIN_COMPARE <= len(unique) <= MAX_COMPARE:
        raise InvalidParameter(
            f"Choose between {MIN_COMPARE} and {MAX_COMPARE} candidates to compare "
            f"(runs=<id>&runs=<id>…); {len(unique)} given."
        )
    return unique


def _metric_of(run: Run, key: str) -> float | None:
    return next((m.value for m in run.metrics if m.key == key), None)


def _value_of(run: Run, choice: str) -> float | None:
    kind, _, key = choice.partition(".")
    if kind == "params":
        raw = run.params.get(key)
        return None if raw is None else _number(raw)
    return _metric_of(run, key)


def _row(section: str, key: str, values: list[str | None]) -> dict[str, Any]:
    same = all(v is not None for v in values) and len(set(values)) == 1
    return {"section": section, "key": key, "values": values, "same": same}


def _metric_text(value: float | None) -> str | None:
    if value is None:
        return None
    return repr(value) if not math.isfinite(value) else f"{value:.6g}"


def _query(request: Request, **changes: str | None) -> str:
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in changes]
    kept.extend((k, v) for k, v in changes.items() if v is not None)
    return urlencode(kept)


async def compare(request: Request, ctx: Context) -> Response:
    ids = _requested_runs(request)
    found = await call(ctx, _load_comparison, ctx.db, ctx.project_id, ids)
    labels = _labels(found.runs)
    rows = [_row("param", k, [r.params.get(k) for r in found.runs]) for k in found.param_keys]
    rows.extend(
        _row("metric", k, [_metric_text(_metric_of(r, k)) for r in found.runs])
        for k in found.metric_keys
    )
    diff = request.query_params.get("diff") == "1"
    choices = [f"params.{k}" for k in found.numeric_params]
    choices += [f"metrics.{k}" for k in found.metric_keys]
    x = request.query_params.get("x")
    y = request.query_params.get("y")
    x = x if x in choices else (choices[0] if choices else None)
    y = y if y in choices else (choices[1] if len(choices) > 1 else x)
    scatter = None
    if x is not None and y is not None:
        points = [
            (label, _value_of(r, x), _value_of(r, y))
            for label, r in zip(labels, found.runs, strict=True)
        ]
        scatter = charts.scatter(
            [(label, px, py) for label, px, py in points if px is not None and py is not None],
            x,
            y,
        )
    axes = choices[:MAX_PARALLEL_AXES]
    parallel = None
    if axes:
        parallel = charts.parallel_coordinates(
            axes,
            [
                (label, [_value_of(r, axis) for axis in axes])
                for label, r in zip(labels, found.runs, strict=True)
            ],
        )
    return page(
        request,
        "compare.html",
        runs=list(zip(labels, found.runs, strict=True)),
        rows=rows,
        diff=diff,
        diff_query=_query(request, diff=None if diff else "1"),
        hidden=sum(1 for row in rows if row["same"]) if diff else 0,
        charts=[(chart.key, chartdata.svg(chart)) for chart in found.charts],
        chart_data=chartdata.data_block(request, found.charts, chartdata.PAGE_COLUMNS),
        choices=choices,
        x=x,
        y=y,
        scatter=scatter,
        parallel=parallel,
        parallel_axes=len(axes),
        all_axes=len(choices),
        palette_size=len(charts.PALETTE),
        quoted=quoted,
    )


def _labels(found: list[Run]) -> list[str]:
    """Run names, with a short id where two candidates share a name."""
    names = [r.info.run_name or r.info.run_id[:8] for r in found]
    seen: dict[str, int] = defaultdict(int)
    for name in names:
        seen[name] += 1
    return [
        name if seen[name] == 1 else f"{name} ({r.info.run_id[:6]})"
        for name, r in zip(names, found, strict=True)
    ]
