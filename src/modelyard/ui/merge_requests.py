"""Merge requests with candidates logged from CI: the project's list (with the best value of
a chosen metric), one merge request's candidates across experiments with a one-click compare,
and the CI links a candidate and a version show (pipeline, job, merge request, commit). Only
http(s) URLs become links; anything else is shown as escaped text."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from modelyard.db.engine import Database
from modelyard.errors import InvalidParameter, ModelyardError, NotFound
from modelyard.mlflow_api.wire import Context, call
from modelyard.services import experiments, merge_requests
from modelyard.services.entities import Run
from modelyard.services.merge_requests import MergeRequest, MergeRequestPage
from modelyard.ui.ci import CiLink, ci_links, label, page_url, web_link
from modelyard.ui.render import page, prefix, redirect
from modelyard.ui.runs import MAX_COMPARE, MIN_COMPARE

PAGE_SIZE = 50
_PLAIN_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")
#: a repository address the filter language can quote as it is
_PLAIN_URL = re.compile(r"[A-Za-z0-9._~:/@+%=-]{1,2000}")


# The list --------------------------------------------------------------------------------------


def _choice(request: Request) -> tuple[str | None, str]:
    return (
        merge_requests.metric_key(request.query_params.get("metric")),
        merge_requests.direction(request.query_params.get("direction")),
    )


def _offset(request: Request) -> int:
    raw = request.query_params.get("offset", "0") or "0"
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise InvalidParameter(f"Invalid offset {raw[:50]!r}: a whole number.")
    return int(raw)


def _list(
    db: Database, project_id: int, metric: str | None, order: str, offset: int
) -> tuple[MergeRequestPage, list[str]]:
    found = merge_requests.list_merge_requests(
        db, project_id, metric=metric, order=order, limit=PAGE_SIZE, offset=offset
    )
    return found, merge_requests.metric_keys(db, project_id, {item.id for item in found.items})


async def merge_request_list(request: Request, ctx: Context) -> Response:
    metric, order = _choice(request)
    offset = _offset(request)
    found, keys = await call(ctx, _list, ctx.db, ctx.project_id, metric, order, offset)
    base = prefix(request)
    chosen = {"metric": metric, "direction": order if metric else None}
    rows = [_row(base, item, chosen) for item in found.items]

    def at(where: int) -> str:
        query = [(k, v) for k, v in chosen.items() if v]
        if where:
            query.append(("offset", str(where)))
        return f"{base}/ui/merge-requests?{urlencode(query)}"

    return page(
        request,
        "merge_requests.html",
        rows=rows,
        metric=metric,
        direction=order,
        metric_keys=keys if metric is None or metric in keys else [metric, *keys],
        next_url=at(found.next_offset) if found.next_offset is not None else None,
        previous_url=at(max(offset - PAGE_SIZE, 0)) if offset else None,
    )


def _row(base: str, item: MergeRequest, chosen: dict[str, str | None]) -> dict[str, Any]:
    more = {k: v for k, v in chosen.items() if v}
    compare = None
    if item.candidates >= MIN_COMPARE:
        query = urlencode([("id", item.id), *(
            [("repository", item.repository_url)] if item.repository_url else []
        ), *more.items()])  # fmt: skip
        compare = f"{base}/ui/merge-requests/compare?{query}"
    return {
        "item": item,
        "label": label(item.id, item.provider),
        "url": web_link(item.url or ""),
        "repository_url": web_link(item.repository_url or ""),
        "page": page_url(base, item.id, item.repository_url, **more),
        "compare": compare,
    }


# One merge request -----------------------------------------------------------------------------


def _identity(request: Request) -> tuple[str, str | None]:
    mr_id = request.query_params.get("id", "")
    if not mr_id:
        raise InvalidParameter("Name the merge request: ?id=<its id>&repository=<its URL>.")
    return mr_id, request.query_params.get("repository") or None


@dataclass(slots=True)
class Loaded:
    merge_request: MergeRequest
    runs: list[Run]
    experiments: dict[int, str]
    metric_keys: list[str]


def _load(
    db: Database,
    project_id: int,
    mr_id: str,
    repository: str | None,
    metric: str | None,
    order: str,
) -> Loaded:
    found = merge_requests.find(db, project_id, mr_id, repository)
    if found is None:
        raise NotFound(f"No candidate of this project was logged for merge request {mr_id!r}.")
    runs = merge_requests.candidates(db, project_id, mr_id, repository, metric=metric, order=order)
    names: dict[int, str] = {}
    for experiment_id in sorted({run.info.experiment_id for run in runs}):
        try:
            names[experiment_id] = experiments.get(db, project_id, str(experiment_id)).name
        except ModelyardError:
            names[experiment_id] = str(experiment_id)
    keys = merge_requests.metric_keys(db, project_id, [mr_id])
    return Loaded(found, runs, names, keys)


def _short(link: CiLink) -> CiLink:
    """A commit by its first 12 digits in a table (the link and its title keep all of it)."""
    return replace(link, text=link.text[:12]) if link.what == "commit" else link


def _value(run: Run, metric: str | None) -> float | None:
    if metric is None:
        return None
    return next((m.value for m in run.metrics if m.key == metric), None)


async def merge_request_page(request: Request, ctx: Context) -> Response:
    mr_id, repository = _identity(request)
    metric, order = _choice(request)
    loaded = await call(ctx, _load, ctx.db, ctx.project_id, mr_id, repository, metric, order)
    base = prefix(request)
    item = loaded.merge_request
    more = {"metric": metric, "direction": order if metric else None}
    shown = loaded.runs[:MAX_COMPARE]
    compare = None
    if len(shown) >= MIN_COMPARE:
        compare = f"{base}/ui/compare?{urlencode([('runs', r.info.run_id) for r in shown])}"
    in_tables = []
    if _PLAIN_ID.fullmatch(mr_id):
        flt = f"tags.`{merge_requests.MERGE_REQUEST}` = '{mr_id}'"
        if repository and _PLAIN_URL.fullmatch(repository):
            flt += f" AND tags.`{merge_requests.REPOSITORY}` = '{repository}'"
        for experiment_id, name in loaded.experiments.items():
            query = urlencode([("filter", flt)])
            in_tables.append((name, f"{base}/ui/experiments/{experiment_id}?{query}"))
    rows = [
        {
            "run": run,
            "experiment": loaded.experiments.get(run.info.experiment_id, ""),
            "links": {link.what: _short(link) for link in ci_links(run.tags, base)},
            "value": _value(run, metric),
        }
        for run in loaded.runs
    ]
    return page(
        request,
        "merge_request.html",
        item=item,
        label=label(item.id, item.provider),
        url=web_link(item.url or ""),
        repository_url=web_link(item.repository_url or ""),
        rows=rows,
        metric=metric,
        direction=order,
        metric_keys=loaded.metric_keys,
        compare=compare,
        compared=len(shown),
        in_tables=in_tables,
        here=page_url(base, item.id, item.repository_url),
        list_url=f"{base}/ui/merge-requests?{urlencode({k: v for k, v in more.items() if v})}",
        max_listed=merge_requests.MAX_CANDIDATES,
    )


async def compare(request: Request, ctx: Context) -> Response:
    """One click from the list: the merge request's best candidates (at most 50) compared."""
    mr_id, repository = _identity(request)
    metric, order = _choice(request)
    found = await call(
        ctx,
        lambda: merge_requests.candidates(
            ctx.db, ctx.project_id, mr_id, repository, metric=metric, order=order,
            limit=MAX_COMPARE,
        ),
    )  # fmt: skip
    if len(found) < MIN_COMPARE:
        raise InvalidParameter(
            f"Merge request {mr_id!r} has {len(found)} candidate(s): comparing takes at least "
            f"{MIN_COMPARE}."
        )
    query = urlencode([("runs", run.info.run_id) for run in found])
    return redirect(f"{prefix(request)}/ui/compare?{query}")
