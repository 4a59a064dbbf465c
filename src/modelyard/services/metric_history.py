"""Metric step histories: paged reads of one run, sampled reads across runs."""

from __future__ import annotations

from math import isfinite
from typing import Any

from sqlalchemy import Connection

from modelyard.db.dialect import driver_rows
from modelyard.db.engine import Database
from modelyard.errors import InvalidParameter
from modelyard.services import runs as run_service
from modelyard.services import validation
from modelyard.services.entities import Metric, Page
from modelyard.services.search import sql

MAX_HISTORY_PAGE = 25_000
MAX_BULK_RUNS = 100
MAX_BULK_RESULTS = 2_500

# A value as MLflow's JSON writes it: a double, or "NaN", "Infinity", "-Infinity".
WireValue = float | str
# One point of a history as answered: (value, timestamp, step).
WirePoint = tuple[WireValue, int, int]

_ORDER = 'ORDER BY step, "timestamp", "value", is_nan LIMIT ?'
_AFTER = 'AND (step, "timestamp", "value", is_nan) > (?, ?, ?, ?) '
# SQLite answers the value in its wire form itself (one column less for Python to build);
# PostgreSQL does not mix types in one column, so its rows are converted after the read.
_SQLITE_POINTS = (
    "SELECT CASE WHEN is_nan THEN 'NaN' WHEN abs(\"value\") <= 1.7976931348623157e308 "
    'THEN "value" WHEN "value" > 0 THEN \'Infinity\' ELSE \'-Infinity\' END, "timestamp", step '
    'FROM metrics WHERE run_pk = ? AND "key" = ? {after}' + _ORDER
)
_PG_POINTS = (
    'SELECT "value", "timestamp", step, is_nan FROM metrics WHERE run_pk = ? AND "key" = ? '
    "{after}" + _ORDER
)
_PAGES = {
    (True, False): _SQLITE_POINTS.format(after=""),
    (True, True): _SQLITE_POINTS.format(after=_AFTER),
    (False, False): _PG_POINTS.format(after=""),
    (False, True): _PG_POINTS.format(after=_AFTER),
}


def wire_value(value: float, is_nan: bool) -> WireValue:
    """A stored value as MLflow's JSON writes it (protobuf's strings for non-finite doubles)."""
    if is_nan:
        return "NaN"
    if isfinite(value):
        return value
    return "Infinity" if value > 0 else "-Infinity"


def history(
    db: Database,
    project_id: int,
    run_id: str | None,
    key: str | None,
    max_results: int | None,
    page_token: str | None,
) -> Page[WirePoint]:
    """One page of a metric's history in (step, timestamp, value) order, each point as
    (wire value, timestamp, step)."""
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
        sqlite = conn.dialect.name == "sqlite"
        params: tuple[Any, ...] = (run.pk, key)
        if after is not None:
            params += _after_params(after)
        rows: list[Any] = driver_rows(conn, _PAGES[sqlite, after is not None], (*params, limit + 1))
    if not sqlite:
        rows = [(wire_value(v, n), t, s) for v, t, s, n in rows]
    token = None
    if len(rows) > limit:
        del rows[limit:]
        v, t, s = rows[-1]
        token = sql.encode_token([s, t, v, isinstance(v, str) and v == "NaN"], print_)
    return Page(rows, token)


def _after_params(after: list[Any]) -> tuple[Any, ...]:
    """The stored (step, timestamp, value, is_nan) of a page token's last point; its value is
    in wire form (older tokens: a plain number)."""
    step, timestamp, value, is_nan = after
    try:
        number = 0.0 if is_nan else float(value)
    except (TypeError, ValueError):
        raise InvalidParameter("Invalid page token: unexpected content.") from None
    return (step, timestamp, number, bool(is_nan))


def _bulk_interval_checks(
    run_ids: list[str],
    key: str | None,
    start_step: int | None,
    end_step: int | None,
    max_results: int | None,
) -> tuple[str, int]:
    """MLflow's checks, in its order and words; the metric key and the step limit."""
    if not run_ids:
        raise InvalidParameter("Missing value for required parameter 'run_ids'.")
    if len(run_ids) > MAX_BULK_RUNS:
        raise InvalidParameter(
            f"GetMetricHistoryBulkInterval request must specify at most {MAX_BULK_RUNS} "
            f"run_ids. Received {len(run_ids)} run_ids."
        )
    if not key:
        raise InvalidParameter("Missing value for required parameter 'metric_key'.")
    limit = MAX_BULK_RESULTS if max_results is None else max_results
    if not 1 <= limit <= MAX_BULK_RESULTS:
        raise InvalidParameter(f"max_results must be between 1 and {MAX_BULK_RESULTS}.")
    if start_step is not None and end_step is not None:
        if start_step > end_step:
            raise InvalidParameter(
                "end_step must be greater than start_step. "
                f"Found start_step={start_step} and end_step={end_step}."
            )
    elif start_step is not None or end_step is not None:
        raise InvalidParameter(
            "If either start step or end step are specified, both must be specified."
        )
    return key, limit


# MLflow's sample, computed by the database: the distinct steps of all the runs within the
# bounds, numbered in order; with n of them and a limit L, the steps numbered
# trunc(i * (n / L)) for i < L (in doubles, as MLflow's server computes it), the last one, and
# all of them when n <= L; plus each run's first and last step when within the bounds. When the
# steps are contiguous (n = last - first + 1, the usual history), step number k is first + k:
# the sample is then computed from the count, the first and the last step alone, without
# numbering every step (which costs more than reading them).
_SAMPLE = """
WITH RECURSIVE stats AS (
    SELECT COUNT(DISTINCT step) AS n, MIN(step) AS lo, MAX(step) AS hi FROM metrics
    WHERE run_pk IN ({runs}) AND "key" = ? AND step BETWEEN ? AND ?
), picks(i) AS (
    SELECT 0 UNION ALL SELECT i + 1 FROM picks WHERE i + 1 < ?
), chosen AS (
    SELECT {trunc} AS idx FROM picks, stats WHERE n > ?
    UNION SELECT i FROM picks, stats WHERE n <= ? AND i < n
    UNION SELECT n - 1 FROM stats WHERE n > 0
), numbered AS (
    SELECT step, ROW_NUMBER() OVER (ORDER BY step) - 1 AS idx FROM (
        SELECT DISTINCT step FROM metrics
        WHERE (SELECT hi - lo + 1 <> n FROM stats)
        AND run_pk IN ({runs}) AND "key" = ? AND step BETWEEN ? AND ?
    ) AS found
)
SELECT lo + idx FROM chosen, stats WHERE hi - lo + 1 = n
UNION SELECT step FROM numbered WHERE idx IN (SELECT idx FROM chosen)
{ends}
ORDER BY 1
"""
_TRUNC = {
    "sqlite": "CAST(i * (CAST(n AS REAL) / ?) AS INTEGER)",
    "postgresql": "CAST(TRUNC(i * (CAST(n AS DOUBLE PRECISION) / ?)) AS BIGINT)",
}
_END = (
    "UNION SELECT e.step FROM (SELECT (SELECT {agg}(step) FROM metrics "
    'WHERE run_pk = ? AND "key" = ?) AS step) AS e WHERE e.step BETWEEN ? AND ?'
)
_POINTS_AT = (
    'SELECT step, "timestamp", "value", is_nan FROM metrics WHERE run_pk = ? AND "key" = ? '
    'AND step IN ({steps}) ORDER BY step, "timestamp", "value", is_nan LIMIT ?'
)
_MAX_STEP = 2**63 - 1


def bulk_interval(
    db: Database,
    project_id: int,
    run_ids: list[str],
    key: str | None,
    start_step: int | None,
    end_step: int | None,
    max_results: int | None,
) -> list[Metric]:
    """Histories of several runs at a common sample of at most ``max_results`` steps (plus
    each run's first and last step), chosen as MLflow's server chooses them: without a range,
    steps from 0 up; the distinct steps of all runs taken at even index intervals, and the
    last one always. The database answers the distinct steps and each run's ends; only the
    points at the chosen steps are read."""
    key, limit = _bulk_interval_checks(run_ids, key, start_step, end_step, max_results)
    low, high = (0, _MAX_STEP) if start_step is None or end_step is None else (start_step, end_step)
    out: list[Metric] = []
    with db.read() as conn:
        pks = {
            run_id: run_service.load_row(conn, project_id, validation.run_id(run_id, "run_ids")).pk
            for run_id in dict.fromkeys(run_ids)
        }
        steps = _chosen_steps(conn, list(pks.values()), key, (low, high), limit)
        if not steps:
            return out
        sql_points = _POINTS_AT.format(steps=", ".join("?" * len(steps)))
        for run_id, pk in pks.items():
            rows = driver_rows(conn, sql_points, (pk, key, *steps, MAX_HISTORY_PAGE))
            out.extend(Metric(key, float("nan") if n else v, t, s, run_id) for s, t, v, n in rows)
    return out


def _chosen_steps(
    conn: Connection, pks: list[int], key: str, bounds: tuple[int, int], limit: int
) -> list[int]:
    """The sorted steps to answer, sampled by the database (see ``_SAMPLE``)."""
    statement = _SAMPLE.format(
        runs=", ".join("?" * len(pks)),
        trunc=_TRUNC[conn.dialect.name],
        ends="\n".join(_END.format(agg=agg) for _ in pks for agg in ("MIN", "MAX")),
    )
    ends = [(pk, key, *bounds) for pk in pks for _ in range(2)]
    found = (*pks, key, *bounds)
    params = (*found, limit, limit, limit, limit, *found, *(p for end in ends for p in end))
    return [row[0] for row in driver_rows(conn, statement, params) if row[0] is not None]


MAX_BULK_HISTORY = 25_000
_HISTORY_BY_TIME = (
    'SELECT step, "timestamp", "value", is_nan FROM metrics WHERE run_pk = ? AND "key" = ? '
    'ORDER BY "timestamp", step, "value", is_nan LIMIT ?'
)


def bulk(
    db: Database, project_id: int, run_ids: list[str], key: str | None, max_results: int | None
) -> list[Metric]:
    """Whole histories of several runs (the web UI's ``get-history-bulk``): runs in id order,
    each by timestamp, step and value, at most ``max_results`` points in all."""
    if not run_ids:
        raise InvalidParameter("GetMetricHistoryBulk request must specify at least one run_id.")
    if len(run_ids) > MAX_BULK_RUNS:
        raise InvalidParameter(
            f"GetMetricHistoryBulk request cannot specify more than {MAX_BULK_RUNS} run_ids. "
            f"Received {len(run_ids)} run_ids."
        )
    if key is None:
        raise InvalidParameter("GetMetricHistoryBulk request must specify a metric_key.")
    left = MAX_BULK_HISTORY if max_results is None else min(max_results, MAX_BULK_HISTORY)
    if left <= 0:
        raise InvalidParameter(f"max_results must be between 1 and {MAX_BULK_HISTORY}.")
    out: list[Metric] = []
    with db.read() as conn:
        found = [
            (run_id, run_service.load_row(conn, project_id, validation.run_id(run_id)).pk)
            for run_id in sorted(set(run_ids))
        ]
        for run_id, pk in found:
            rows = driver_rows(conn, _HISTORY_BY_TIME, (pk, key, left - len(out)))
            out.extend(Metric(key, float("nan") if n else v, t, s, run_id) for s, t, v, n in rows)
            if len(out) >= left:
                break
    return out
