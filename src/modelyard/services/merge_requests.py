"""Merge requests with candidates: the candidates logged from CI carry ``ci.*`` tags (the
client's plugin sets them), and a merge request is every active candidate of the project's
active experiments with the same ``ci.merge_request_id`` and ``ci.repository_url``.

The list is one grouped query over the merge-request tags (found by run_tags' (experiment,
key) index) joined with their runs and repository tags on their keys, so its cost grows with
the candidates logged from CI and nothing else; links, branches and the best candidate by a
metric are read in a second query, for the page's merge requests only."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, func, literal, select
from sqlalchemy.sql.selectable import FromClause

from modelyard.db.engine import Database
from modelyard.db.schema import experiments, latest_metrics, run_tags, runs
from modelyard.errors import InvalidParameter
from modelyard.services.entities import Run
from modelyard.services.experiments import ACTIVE
from modelyard.services.runs import hydrate

MERGE_REQUEST = "ci.merge_request_id"
REPOSITORY = "ci.repository_url"
MERGE_REQUEST_URL = "ci.merge_request_url"
PROVIDER = "ci.provider"
SOURCE_BRANCH = "ci.source_branch"
TARGET_BRANCH = "ci.target_branch"
DIRECTIONS = ("max", "min")
MAX_METRIC_KEY = 250
MAX_PAGE = 1000
MAX_CANDIDATES = 500
MAX_METRIC_KEYS = 500


@dataclass(frozen=True, slots=True)
class Best:
    """The best value of the chosen metric among a merge request's candidates (latest values)."""

    metric: str
    value: float
    run_id: str


@dataclass(frozen=True, slots=True)
class MergeRequest:
    id: str
    repository_url: str | None
    url: str | None
    provider: str | None
    source_branch: str | None
    target_branch: str | None
    candidates: int
    last_activity: int
    best: Best | None

    def to_json(self) -> dict[str, Any]:
        best = self.best
        return {
            "id": self.id,
            "repository_url": self.repository_url,
            "url": self.url,
            "provider": self.provider,
            "source_branch": self.source_branch,
            "target_branch": self.target_branch,
            "candidates": self.candidates,
            "last_activity": self.last_activity,
            "best": None
            if best is None
            else {"metric": best.metric, "value": best.value, "run_id": best.run_id},
        }


@dataclass(frozen=True, slots=True)
class MergeRequestPage:
    items: list[MergeRequest]
    next_offset: int | None


def metric_key(value: str | None) -> str | None:
    """The chosen metric (None: none): at most 250 characters, no control characters."""
    if not value:
        return None
    if len(value) > MAX_METRIC_KEY or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidParameter(
            f"Invalid metric {value[:100]!r}: at most {MAX_METRIC_KEY} characters, without "
            "control characters."
        )
    return value


def direction(value: str | None) -> str:
    """'max' (higher is better, the default) or 'min'."""
    if not value:
        return "max"
    if value not in DIRECTIONS:
        raise InvalidParameter(f"Invalid direction {value[:100]!r}: use 'max' or 'min'.")
    return value


def _text(value: str, what: str) -> str:
    if "\x00" in value:
        raise InvalidParameter(f"Invalid {what}: it holds a NUL character.")
    return value


# The shared FROM: merge-request tags of the project's active candidates ----------------------

_mr = run_tags.alias("mr")


def _tag(key: str) -> FromClause:
    return run_tags.alias(f"t_{key.removeprefix('ci.')}")


def _joined(keys: tuple[str, ...], metric: str | None) -> tuple[Any, dict[str, Any], Any]:
    """FROM merge-request tags ⋈ runs ⟕ the other tags ⟕ the metric; the aliases by key."""
    source: Any = _mr.join(runs, runs.c.pk == _mr.c.run_pk)
    aliases = {}
    for key in keys:
        alias = _tag(key)
        source = source.outerjoin(alias, and_(alias.c.run_pk == _mr.c.run_pk, alias.c.key == key))
        aliases[key] = alias
    metric_alias = None
    if metric is not None:
        metric_alias = latest_metrics.alias("m")
        source = source.outerjoin(
            metric_alias,
            and_(
                metric_alias.c.run_pk == _mr.c.run_pk,
                metric_alias.c.key == metric,
                metric_alias.c.is_nan == false(),
            ),
        )
    return source, aliases, metric_alias


def _scope(project_id: int) -> list[ColumnElement[bool]]:
    active_experiments = select(experiments.c.id).where(
        experiments.c.project_id == project_id, experiments.c.lifecycle_stage == ACTIVE
    )
    return [
        _mr.c.experiment_id.in_(active_experiments.scalar_subquery()),
        _mr.c.key == MERGE_REQUEST,
        runs.c.project_id == project_id,
        runs.c.lifecycle_stage == ACTIVE,
    ]


def _repository(alias: Any) -> Any:
    return func.coalesce(alias.c.value, literal(""))


# The list --------------------------------------------------------------------------------------

_DETAILS = (REPOSITORY, MERGE_REQUEST_URL, PROVIDER, SOURCE_BRANCH, TARGET_BRANCH)


def list_merge_requests(
    db: Database,
    project_id: int,
    *,
    metric: str | None = None,
    order: str = "max",
    limit: int = 100,
    offset: int = 0,
) -> MergeRequestPage:
    """The project's merge requests with candidates, most recently active first: for each, its
    candidate count, last activity (a candidate's end, else its start), link, provider and
    branches (as its most recently active candidate has them) and, with ``metric``, the best
    latest value of that metric (``order`` max or min).

    The grouping reads only the merge-request and repository tags and the runs; everything
    else is read for the page's merge requests alone."""
    metric, order = metric_key(metric), direction(order)
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise InvalidParameter(f"limit must be 1 to {MAX_PAGE} and offset at least 0.")
    source, tags, _ = _joined((REPOSITORY,), None)
    repository = _repository(tags[REPOSITORY])
    last = func.max(func.coalesce(runs.c.end_time, runs.c.start_time))
    query = (
        select(_mr.c.value, repository, func.count(), last)
        .select_from(source)
        .where(*_scope(project_id))
        .group_by(_mr.c.value, repository)
        .order_by(last.desc(), _mr.c.value, repository)
        .limit(limit + 1)
        .offset(offset)
    )
    with db.read() as conn:
        rows = list(conn.execute(query).all())
        more = len(rows) > limit
        rows = rows[:limit]
        details = _details(conn, project_id, metric, order, {(r[0], r[1]) for r in rows})
    items = [
        MergeRequest(
            id=mr_id,
            repository_url=repo or None,
            candidates=int(count),
            last_activity=int(active),
            **details[(mr_id, repo)],
        )
        for mr_id, repo, count, active in rows
    ]
    return MergeRequestPage(items, offset + limit if more else None)


def _details(
    conn: Any, project_id: int, metric: str | None, order: str, wanted: set[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """For each wanted (merge request, repository): link, provider and branches of its most
    recently active candidate, and its best candidate by ``metric`` (ties to the newest)."""
    source, tags, metric_alias = _joined(_DETAILS, metric)
    value = literal(None) if metric_alias is None else metric_alias.c.value
    query = select(
        _mr.c.value,
        _repository(tags[REPOSITORY]),
        func.coalesce(runs.c.end_time, runs.c.start_time),
        runs.c.start_time,
        runs.c.id,
        value,
        *(tags[key].c.value for key in _DETAILS[1:]),
    ).select_from(source)
    query = query.where(*_scope(project_id), _mr.c.value.in_({mr_id for mr_id, _ in wanted}))
    sign = 1 if order == "max" else -1
    latest: dict[tuple[str, str], tuple[Any, ...]] = {}
    best: dict[tuple[str, str], tuple[float, int, str]] = {}
    for mr_id, repo, active, started, run_id, found, *more in conn.execute(query):
        key = (mr_id, repo)
        if key not in wanted:
            continue
        if key not in latest or (active, started, run_id) > latest[key][:3]:
            latest[key] = (active, started, run_id, *more)
        if found is not None and (key not in best or (sign * found, started, run_id) > best[key]):
            best[key] = (sign * found, started, run_id)
    out = {}
    for key in wanted:
        # (a candidate deleted between the two reads may leave a merge request without one)
        url, provider, source_branch, target_branch = latest.get(key, (None,) * 7)[3:]
        top = best.get(key)
        out[key] = {
            "url": url,
            "provider": provider,
            "source_branch": source_branch,
            "target_branch": target_branch,
            "best": None if top is None or metric is None else Best(metric, sign * top[0], top[2]),
        }
    return out


# One merge request -----------------------------------------------------------------------------


def _one(
    project_id: int, mr_id: str, repository: str | None, metric: str | None
) -> tuple[Any, list[ColumnElement[bool]], Any]:
    source, tags, metric_alias = _joined((REPOSITORY,), metric)
    conditions = [
        *_scope(project_id),
        _mr.c.value == _text(mr_id, "merge request"),
        _repository(tags[REPOSITORY]) == _text(repository or "", "repository"),
    ]
    return source, conditions, metric_alias


def candidates(
    db: Database,
    project_id: int,
    mr_id: str,
    repository: str | None,
    *,
    metric: str | None = None,
    order: str = "max",
    limit: int = MAX_CANDIDATES,
) -> list[Run]:
    """The merge request's active candidates: the best by ``metric`` first (those without it
    last), then the newest; at most ``limit``."""
    metric, order = metric_key(metric), direction(order)
    source, conditions, metric_alias = _one(project_id, mr_id, repository, metric)
    sort: list[Any] = []
    if metric_alias is not None:
        value = metric_alias.c.value
        sort = [value.is_(None), value.desc() if order == "max" else value.asc()]
    query = (
        select(runs)
        .select_from(source)
        .where(*conditions)
        .order_by(*sort, runs.c.start_time.desc(), runs.c.id)
        .limit(limit)
    )
    with db.read() as conn:
        return hydrate(conn, conn.execute(query).all())


def metric_keys(db: Database, project_id: int, mr_ids: Collection[str]) -> list[str]:
    """The metric keys the candidates of these merge requests logged, sorted; at most 500."""
    if not mr_ids:
        return []
    ids = {_text(mr_id, "merge request") for mr_id in mr_ids}
    query = (
        select(latest_metrics.c.key)
        .select_from(_mr.join(runs, runs.c.pk == _mr.c.run_pk))
        .join(latest_metrics, latest_metrics.c.run_pk == _mr.c.run_pk)
        .where(*_scope(project_id), _mr.c.value.in_(ids))
        .distinct()
        .order_by(latest_metrics.c.key)
        .limit(MAX_METRIC_KEYS)
    )
    with db.read() as conn:
        return [row[0] for row in conn.execute(query)]


def find(db: Database, project_id: int, mr_id: str, repository: str | None) -> MergeRequest | None:
    """One merge request's summary (no metric), or None when it has no active candidate."""
    source, tags, _ = _joined(_DETAILS, None)
    last = func.max(func.coalesce(runs.c.end_time, runs.c.start_time))
    query: Select[Any] = (
        select(func.count(), last, *(func.max(tags[key].c.value) for key in _DETAILS[1:]))
        .select_from(source)
        .where(
            *_scope(project_id),
            _mr.c.value == _text(mr_id, "merge request"),
            _repository(tags[REPOSITORY]) == _text(repository or "", "repository"),
        )
    )
    with db.read() as conn:
        row = conn.execute(query).one()
    if not row[0]:
        return None
    return MergeRequest(
        id=mr_id,
        repository_url=repository or None,
        url=row[2],
        provider=row[3],
        source_branch=row[4],
        target_branch=row[5],
        candidates=int(row[0]),
        last_activity=int(row[1]),
        best=None,
    )
