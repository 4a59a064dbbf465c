"""Metric step histories: paged reads of one run, sampled reads across runs."""

from __future__ import annotations

from sqlalchemy import select

from modelyard.db.dialect import driver_rows
from modelyard.db.engine import Database
from modelyard.db.schema import metrics
from modelyard.errors import InvalidParameter
from modelyard.services import runs as run_service
from modelyard.services import validation
from modelyard.services.entities import Metric, Page
from modelyard.services.search import sql

MAX_HISTORY_PAGE = 25_000
MAX_BULK_RUNS = 100
MAX_BULK_RESULTS = 2_500

_COLUMNS = (metrics.c.step, metrics.c.timestamp, metrics.c.value, metrics.c.is_nan)
_POINTS = (
    'SELECT step, "timestamp", "value", is_nan FROM metrics WHERE run_pk = ? AND "key" = ? '
    '{after}ORDER BY step, "timestamp", "value", is_nan LIMIT ?'
)
_FIRST_PAGE = _POINTS.format(after="")
_NEXT_PAGE = _POINTS.format(after='AND (step, "timestamp", "value", is_nan) > (?, ?, ?, ?) ')

# One point of a history: (step, timestamp, value); NaN is float("nan").
Point = tuple[int, int, float]


def history(
    db: Database,
    project_id: int,
    run_id: str | None,
    key: str | None,
    max_results: int | None,
    page_token: str | None,
) -> Page[Point]:
    """One page of a metric's history in (step, timestamp, value) order."""
    checked = validation.run_id(run_id)
    if not key:
        raise InvalidParameter("Missing value for required parameter 'metric_key'.")
    limit = MAX_HISTORY_PAGE if max_results is None else max_results
    if limit <= 0 or limit > MAX_HISTORY_PAGE:
        raise InvalidParameter(
            f"Invalid value {limit} for parameter 'max_results': it must be between 1 and "
            f"{MAX_HISTORY_PAGE}."
        )
    print_ = sql.fingerprint("history", checked, key)
    after = sql.decode_token(page_token, print_, 4)
    with db.read() as conn:
        run = run_service.load_row(conn, project_id, checked)
        if after is None:
            rows = driver_rows(conn, _FIRST_PAGE, (run.pk, key, limit + 1))
        else:
            rows = driver_rows(conn, _NEXT_PAGE, (run.pk, key, *after, limit + 1))
    nan = float("nan")
    points = [(s, t, nan if n else v) for s, t, v, n in rows[:limit]]
    token = None
    if len(rows) > limit:
        s, t, v, n = rows[limit - 1]
        token = sql.encode_token([s, t, v, bool(n)], print_)
    return Page(points, token)


def bulk_interval(
    db: Database,
    project_id: int,
    run_ids: list[str],
    key: str | None,
    start_step: int | None,
    end_step: int | None,
    max_results: int | None,
) -> list[Metric]:
    """Histories of several runs, sampled to at most ``max_results`` steps per run."""
    if not run_ids:
        raise InvalidParameter("At least one run_id is required.")
    if len(run_ids) > MAX_BULK_RUNS:
        raise InvalidParameter(f"At most {MAX_BULK_RUNS} run_ids may be given; got {len(run_ids)}.")
    if not key:
        raise InvalidParameter("Missing value for required parameter 'metric_key'.")
    limit = MAX_BULK_RESULTS if max_results is None else max_results
    if limit <= 0 or limit > MAX_BULK_RESULTS:
        raise InvalidParameter(
            f"max_results must be between 1 and {MAX_BULK_RESULTS}. Got {limit}."
        )
    if (start_step is None) != (end_step is None):
        raise InvalidParameter("If either start step or end step are specified, both must be.")
    if start_step is not None and end_step is not None and start_step > end_step:
        raise InvalidParameter("end_step must be greater than or equal to start_step.")
    out: list[Metric] = []
    with db.read() as conn:
        for run_id in dict.fromkeys(run_ids):
            run = run_service.load_row(conn, project_id, validation.run_id(run_id, "run_ids"))
            query = select(*_COLUMNS).where(metrics.c.run_pk == run.pk, metrics.c.key == key)
            if start_step is not None:
                query = query.where(metrics.c.step.between(start_step, end_step))
            rows = conn.execute(query.order_by(*_COLUMNS)).all()
            keep = _sampled_steps(sorted({r.step for r in rows}), limit)
            out.extend(
                Metric(key, float("nan") if r.is_nan else r.value, r.timestamp, r.step, run_id)
                for r in rows
                if r.step in keep
            )
    return out


def _sampled_steps(steps: list[int], limit: int) -> set[int]:
    """Evenly spaced steps, always keeping the first and the last."""
    if len(steps) <= limit:
        return set(steps)
    if limit == 1:
        return {steps[-1]}
    stride = (len(steps) - 1) / (limit - 1)
    return {steps[round(i * stride)] for i in range(limit)}
