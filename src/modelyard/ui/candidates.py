"""The candidates of one or more experiments: a table with chosen param, metric and tag
columns, sortable headers, the API's filter language and keyset paging (never a count), the
same rows as a streamed CSV, and the hand-off of a selection to the compare and promote pages."""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from modelyard.auth.roles import Role
from modelyard.errors import InvalidParameter
from modelyard.mlflow_api.wire import Context, call
from modelyard.services import experiments, runs
from modelyard.services.entities import Experiment, Page, Run
from modelyard.services.search.grammar import Ident, parse_order_by
from modelyard.ui.render import page, prefix, redirect
from modelyard.web.transfer import DOWNLOAD_CSP

PAGE_SIZE = 100
CSV_PAGE = 1000
DEFAULT_COLUMNS = 6
MAX_EXPERIMENTS = 50
MAX_SELECTED = 100
#: cell starts a spreadsheet may read as a formula; such cells get a leading apostrophe
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_KEY = re.compile(r"[\w.\-/:]+")

#: attribute columns: (key in the filter language, header)
ATTRIBUTES = (
    ("run_name", "name"),
    ("status", "status"),
    ("start_time", "started"),
    ("user_id", "user"),
)
PREFIXES = {"attribute": "attributes", "parameter": "params", "metric": "metrics", "tag": "tags"}


@dataclass(frozen=True, slots=True)
class Column:
    entity: str  # attribute, parameter, metric or tag
    key: str
    label: str

    @property
    def order_key(self) -> str:
        """The column in order_by syntax, its key quoted when it needs to be."""
        key = self.key if _PLAIN_KEY.fullmatch(self.key) else f"`{self.key}`"
        return f"{PREFIXES[self.entity]}.{key}"


@dataclass(slots=True)
class Query:
    """What the URL asks for. Columns are explicit when any of params/metrics/tags is given;
    otherwise the most common keys of the page are shown."""

    experiment_ids: list[str]
    filter: str
    order: list[str]
    params: list[str]
    metrics: list[str]
    tags: list[str]
    page_token: str | None

    @property
    def explicit(self) -> bool:
        return bool(self.params or self.metrics or self.tags)

    def pairs(
        self, *, order: list[str] | None = None, token: str | None = None
    ) -> list[tuple[str, str]]:
        """Query-string pairs that keep this view (experiments, filter, order, columns)."""
        out: list[tuple[str, str]] = []
        if len(self.experiment_ids) > 1:
            out.append(("experiments", ",".join(self.experiment_ids[1:])))
        if self.filter:
            out.append(("filter", self.filter))
        out += [("order", o) for o in (self.order if order is None else order)]
        for name in ("params", "metrics", "tags"):
            keys: list[str] = getattr(self, name)
            if keys:
                out.append((name, ",".join(keys)))
        if token:
            out.append(("page_token", token))
        return out


def _listed(request: Request, name: str) -> list[str]:
    """Comma-separated values of a repeatable query parameter, stripped and deduplicated."""
    found: list[str] = []
    for value in request.query_params.getlist(name):
        for part in value.split(","):
            item = part.strip()
            if item and item not in found:
                found.append(item)
    return found


def read_query(request: Request) -> Query:
    ids = [request.path_params["experiment_id"]]
    ids += [i for i in _listed(request, "experiments") if i not in ids]
    if len(ids) > MAX_EXPERIMENTS:
        raise InvalidParameter(f"Show at most {MAX_EXPERIMENTS} experiments at once.")
    return Query(
        experiment_ids=ids,
        filter=text if (text := request.query_params.get("filter", "")).strip() else "",
        order=[o.strip() for o in request.query_params.getlist("order") if o.strip()],
        params=_listed(request, "params"),
        metrics=_listed(request, "metrics"),
        tags=_listed(request, "tags"),
        page_token=request.query_params.get("page_token") or None,
    )


def _experiments(ctx: Context, ids: list[str]) -> list[Experiment]:
    """The experiments, each of which must exist in the caller's project (else 404)."""
    return [experiments.get(ctx.db, ctx.project_id, i) for i in ids]


def _search(
    ctx: Context, query: Query, chosen: list[Experiment], size: int, token: str | None
) -> Page[Run]:
    return runs.search(
        ctx.db,
        ctx.project_id,
        experiment_ids=[str(e.experiment_id) for e in chosen],
        filter_string=query.filter or None,
        run_view_type="ACTIVE_ONLY",
        max_results=size,
        order_by=query.order,
        page_token=token,
    )


def _common(counts: Counter[str]) -> list[str]:
    return [key for key, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def default_columns(found: Sequence[Run]) -> tuple[list[str], list[str]]:
    """Up to DEFAULT_COLUMNS of the page's most common (params, metrics), half each when
    both have enough."""
    params = _common(Counter(k for r in found for k in r.params))
    metrics = _common(Counter(m.key for r in found for m in r.metrics))
    half = DEFAULT_COLUMNS // 2
    take_metrics = min(len(metrics), max(half, DEFAULT_COLUMNS - len(params)))
    take_params = min(len(params), DEFAULT_COLUMNS - take_metrics)
    return params[:take_params], metrics[:take_metrics]


def resolve_columns(query: Query, found: Sequence[Run]) -> None:
    if not query.explicit:
        query.params, query.metrics = default_columns(found)


def columns_of(query: Query, several: bool) -> list[Column]:
    out = [Column("attribute", key, label) for key, label in ATTRIBUTES]
    if several:
        out.insert(1, Column("attribute", "experiment_id", "experiment"))
    out += [Column("parameter", k, k) for k in query.params]
    out += [Column("metric", k, k) for k in query.metrics]
    out += [Column("tag", k, k) for k in query.tags]
    return out


def _time(ms: int | None, *, iso: bool = False) -> str:
    if not ms:
        return ""
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    if iso:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _metric_text(value: float) -> str:
    return "NaN" if math.isnan(value) else repr(value)


def _current_sort(order: list[str]) -> tuple[Ident, bool]:
    """The first sort key of the view (start time, newest first, when none is given)."""
    try:
        keys = parse_order_by(order)
    except InvalidParameter:
        keys = []
    if not keys:
        return Ident("attribute", "start_time"), True
    return keys[0].ident, keys[0].descending


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------


async def candidates(request: Request, ctx: Context) -> Response:
    query = read_query(request)
    chosen = await call(ctx, _experiments, ctx, query.experiment_ids)
    error = None
    found: Page[Run] = Page([], None)
    try:
        found = await call(ctx, _search, ctx, query, chosen, PAGE_SIZE, query.page_token)
    except InvalidParameter as exc:
        error = exc.message
    resolve_columns(query, found.items)
    several = len(chosen) > 1
    columns = columns_of(query, several)
    names = {e.experiment_id: e.name for e in chosen}
    here = f"{prefix(request)}/ui/experiments/{query.experiment_ids[0]}"
    sorted_by, descending = _current_sort(query.order)
    headers = []
    for column in columns:
        url, arrow = None, ""
        if column.key != "experiment_id":
            active = Ident(column.entity, column.key) == sorted_by
            ascending_next = not (active and not descending)
            direction = "ASC" if ascending_next else "DESC"
            url = f"{here}?{urlencode(query.pairs(order=[f'{column.order_key} {direction}']))}"
            arrow = ("▼" if descending else "▲") if active else ""
        headers.append((column, url, arrow))
    rows = [_row(run, columns, names) for run in found.items]
    role: Role | None = request.scope.get("modelyard.role")
    return page(
        request,
        "candidates.html",
        status=400 if error else 200,
        experiments=chosen,
        query=query,
        here=here,
        error=error,
        headers=headers,
        rows=rows,
        next_url=f"{here}?{urlencode(query.pairs(token=found.next_page_token))}"
        if found.next_page_token
        else None,
        first_url=f"{here}?{urlencode(query.pairs())}" if query.page_token else None,
        csv_url=f"{here}/candidates.csv?{urlencode(query.pairs())}",
        charts_url=f"{here}/charts?{urlencode(query.pairs())}",
        can_promote=role is not None and role >= Role.DEVELOPER,
    )


def _row(run: Run, columns: list[Column], names: dict[int, str]) -> dict[str, object]:
    """One table row: the run's id and name and a (text, numeric, title) cell per column
    after the name."""
    metrics = {m.key: m.value for m in run.metrics}
    info = run.info
    cells: list[tuple[str, bool, str]] = []
    for column in columns[1:]:
        if column.entity == "attribute":
            text = {
                "experiment_id": names.get(info.experiment_id, str(info.experiment_id)),
                "status": info.status,
                "start_time": _time(info.start_time),
                "user_id": info.user_id,
            }[column.key]
            cells.append((text, False, ""))
        elif column.entity == "metric":
            value = metrics.get(column.key)
            if value is None:
                cells.append(("", True, ""))
            else:
                cells.append((_short(value), True, _metric_text(value)))
        else:
            source = run.params if column.entity == "parameter" else run.tags
            cells.append((source.get(column.key, ""), False, ""))
    return {"id": info.run_id, "name": info.run_name, "cells": cells}


def _short(value: float) -> str:
    return "NaN" if math.isnan(value) else f"{value:.6g}"


# --------------------------------------------------------------------------------------------
# CSV export
# --------------------------------------------------------------------------------------------


def safe_cell(text: str) -> str:
    """A text cell that a spreadsheet will not evaluate as a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _csv_lines(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


def _csv_header(query: Query) -> list[str]:
    names = ["run_id", "run_name", "experiment_id", "status", "start_time", "end_time", "user_id"]
    names += [f"params.{k}" for k in query.params]
    names += [f"metrics.{k}" for k in query.metrics]
    names += [f"tags.{k}" for k in query.tags]
    return [safe_cell(n) for n in names]


def _csv_row(run: Run, query: Query) -> list[str]:
    info = run.info
    metrics = {m.key: m.value for m in run.metrics}
    texts = [info.run_id, info.run_name, str(info.experiment_id), info.status]
    out = [safe_cell(t) for t in texts]
    out += [_time(info.start_time, iso=True), _time(info.end_time, iso=True)]
    out.append(safe_cell(info.user_id))
    out += [safe_cell(run.params.get(k, "")) for k in query.params]
    out += ["" if metrics.get(k) is None else _metric_text(metrics[k]) for k in query.metrics]
    out += [safe_cell(run.tags.get(k, "")) for k in query.tags]
    return out


def _limit(request: Request) -> int | None:
    text = request.query_params.get("limit")
    if not text:
        return None
    if not text.isdigit() or int(text) <= 0:
        raise InvalidParameter(f"Invalid limit {text!r}: a positive number of rows.")
    return int(text)


async def candidates_csv(request: Request, ctx: Context) -> Response:
    """Every matching candidate (or the first ``?limit=N``), read page by page as it is
    sent. The first page is the table's first page, read before answering: a bad filter is a
    400 page, and default columns are the ones the table shows. Later pages are larger."""
    query = read_query(request)
    limit = _limit(request)
    chosen = await call(ctx, _experiments, ctx, query.experiment_ids)
    size = PAGE_SIZE if limit is None else min(PAGE_SIZE, limit)
    first = await call(ctx, _search, ctx, query, chosen, size, None)
    resolve_columns(query, first.items)

    async def body() -> AsyncIterator[str]:
        yield _csv_lines([_csv_header(query)])
        found, sent = first, 0
        while True:
            items = found.items if limit is None else found.items[: limit - sent]
            sent += len(items)
            yield _csv_lines([_csv_row(run, query) for run in items])
            if found.next_page_token is None or (limit is not None and sent >= limit):
                return
            wanted = CSV_PAGE if limit is None else min(CSV_PAGE, limit - sent)
            found = await call(ctx, _search, ctx, query, chosen, wanted, found.next_page_token)

    filename = f"experiment-{'-'.join(str(e.experiment_id) for e in chosen)}-candidates.csv"
    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={
            "content-disposition": f'attachment; filename="{filename}"',
            "cache-control": "no-store",
            "content-security-policy": DOWNLOAD_CSP,
        },
    )


# --------------------------------------------------------------------------------------------
# The selection: ticked rows go to the compare or promote page
# --------------------------------------------------------------------------------------------


async def selection(request: Request, _ctx: Context) -> Response:
    """``?do=compare|promote&run=<id>...`` from the table's form, sent on as
    ``/ui/compare?runs=<id>...`` or ``/ui/promote?run=<id>``."""
    ticked = [r for r in request.query_params.getlist("run") if r][:MAX_SELECTED]
    action = request.query_params.get("do", "")
    base = prefix(request)
    if action == "compare":
        if not ticked:
            raise InvalidParameter("Tick the candidates to compare first.")
        return redirect(f"{base}/ui/compare?{urlencode([('runs', r) for r in ticked])}")
    if action == "promote":
        if len(ticked) != 1:
            raise InvalidParameter("Tick exactly one candidate to promote.")
        return redirect(f"{base}/ui/promote?{urlencode([('run', ticked[0])])}")
    raise InvalidParameter(f"Unknown action {action!r}: compare or promote.")
