"""Chart data: metric histories cut down to what a chart can show, every extreme kept.

A history that fits (at most two points per pixel column) is returned whole. A longer one is
cut to the lowest and the highest finite point of each column, so a spike narrower than a
pixel still shows. Where columns are at least 16 steps wide they are aligned blocks of
``2**w`` steps (between half and all of the columns asked for), and their extremes come from
the summaries of ``metric_blocks`` (a few rows per column); only a zoomed range's partial
first and last columns are read from the points. Narrower columns, and metrics logged without
steps (charted along time), are computed from the points.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, bindparam, select

from modelyard.db.dialect import driver_rows
from modelyard.db.engine import Database
from modelyard.db.schema import runs
from modelyard.errors import InvalidParameter, NotFound
from modelyard.services import metric_blocks, validation
from modelyard.services.metric_blocks import higher

DEFAULT_COLUMNS = 1000
MAX_COLUMNS = 4000
MAX_CHART_RUNS = 100
#: columns at least this many steps wide are read from blocks
BLOCK_COLUMN_STEPS = 1 << metric_blocks.FINEST

_BIG = 1.7976931348623157e308
_FINITE = (False, -_BIG, _BIG)
_FINITE_SQL = 'AND is_nan = ? AND "value" BETWEEN ? AND ? '
_ENDS = (
    "SELECT pk, "
    '(SELECT MIN({dim}) FROM metrics WHERE metrics.run_pk = runs.pk AND "key" = ?{where}), '
    '(SELECT MAX({dim}) FROM metrics WHERE metrics.run_pk = runs.pk AND "key" = ?{where}) '
    "FROM runs WHERE pk IN ({runs})"
)
_POINTS = (
    'SELECT step, "timestamp", "value" FROM metrics WHERE run_pk = ? AND "key" = ? {where}'
    f"AND {{dim}} BETWEEN ? AND ? {_FINITE_SQL}"
    'ORDER BY step, "timestamp", "value"{limit}'
)
_EXTREME = (
    'SELECT step, "timestamp", "value" FROM metrics WHERE run_pk = ? AND "key" = ? '
    f"AND step BETWEEN ? AND ? {_FINITE_SQL}"
    'ORDER BY "value" {direction}, step, "timestamp" LIMIT 1'
)
_BLOCKS = (
    "SELECT run_pk, bucket, points, min_value, min_step, min_ts, max_value, max_step, max_ts "
    'FROM metric_blocks WHERE run_pk IN ({runs}) AND "key" = ? AND level = ? '
    "AND bucket BETWEEN ? AND ? ORDER BY run_pk, bucket"
)
_RUN_PKS = select(runs.c.id, runs.c.pk).where(
    runs.c.project_id == bindparam("project_id"), runs.c.id.in_(bindparam("ids", expanding=True))
)

_COUNT = itemgetter(2)
# A point (step, timestamp, value); as an extreme: (value, step, timestamp)
Point = tuple[int, int, float]
Extreme = tuple[float, int, int]


@dataclass(frozen=True, slots=True)
class ChartSeries:
    """One candidate's history of one metric as a chart draws it: finite points in step
    (then time) order. ``sampled`` when it was cut down to the lowest and highest point of
    each pixel column, which keeps every extreme."""

    run_id: str
    steps: list[int]
    timestamps: list[int]
    values: list[float]
    sampled: bool


@dataclass(frozen=True, slots=True)
class ChartData:
    """A metric's histories across candidates. ``by`` is what they were sampled along:
    "step", or "time" when every point has the same step (a metric logged without steps)."""

    key: str
    by: str
    low: int | None
    high: int | None
    series: list[ChartSeries]


@dataclass(frozen=True, slots=True)
class _Dimension:
    column: str  # step or "timestamp"
    where: str  # the condition that restricts the other column (for "timestamp": one step)
    params: tuple[int, ...]


_BY_STEP = _Dimension("step", "", ())


@dataclass(frozen=True, slots=True)
class _Request:
    key: str
    dim: _Dimension
    low: int
    high: int
    columns: int
    start: int | None
    end: int | None

    @property
    def room(self) -> int:
        return 2 * self.columns


def chart_data(
    db: Database,
    project_id: int,
    run_ids: Sequence[str],
    key: str,
    *,
    start: int | None = None,
    end: int | None = None,
    columns: int = DEFAULT_COLUMNS,
) -> ChartData:
    """The histories of ``key`` of several candidates between ``start`` and ``end`` (steps,
    or milliseconds for a metric logged without steps), each cut to at most two points per
    column of a chart ``columns`` wide: the column's lowest and highest. A history that
    already fits is returned whole. All histories share the columns, so candidates line up."""
    if not run_ids:
        raise InvalidParameter("At least one run is required.")
    if len(run_ids) > MAX_CHART_RUNS:
        raise InvalidParameter(f"At most {MAX_CHART_RUNS} runs per chart; got {len(run_ids)}.")
    if not key:
        raise InvalidParameter("Missing value for required parameter 'key'.")
    if not 1 <= columns <= MAX_COLUMNS:
        raise InvalidParameter(f"columns must be between 1 and {MAX_COLUMNS}; got {columns}.")
    if start is not None and end is not None and start > end:
        raise InvalidParameter("The start of the range must not be after its end.")
    checked = [validation.run_id(run_id) for run_id in dict.fromkeys(run_ids)]
    with db.read() as conn:
        pks = _run_pks(conn, project_id, checked)
        ends = _ends(conn, [pk for _, pk in pks], key, _BY_STEP, None, None)
        steps = {s for found in ends.values() if found is not None for s in found}
        dim = _BY_STEP
        if len(steps) == 1:
            dim = _Dimension('"timestamp"', "AND step = ? ", (steps.pop(),))
        by = "step" if dim is _BY_STEP else "time"
        if dim is not _BY_STEP or start is not None or end is not None:
            ends = _ends(conn, [pk for _, pk in pks], key, dim, start, end)
        present = [found for found in ends.values() if found is not None]
        if not present:
            return ChartData(key, by, None, None, [])
        low = min(lo for lo, _ in present)
        high = max(hi for _, hi in present)
        request = _Request(key, dim, low, high, columns, start, end)
        having = [(run_id, pk) for run_id, pk in pks if ends[pk] is not None]
        wide = (high - low + 1) >= BLOCK_COLUMN_STEPS * columns
        if dim is _BY_STEP and wide:
            series = _from_blocks(conn, request, having)
        else:
            series = [_from_points(conn, request, run_id, pk) for run_id, pk in having]
    return ChartData(key, by, low, high, series)


def _run_pks(conn: Connection, project_id: int, run_ids: list[str]) -> list[tuple[str, int]]:
    found = dict(conn.execute(_RUN_PKS, {"project_id": project_id, "ids": run_ids}).all())
    for run_id in run_ids:
        if run_id not in found:
            raise NotFound(f"Run with id={run_id} not found")
    return [(run_id, int(found[run_id])) for run_id in run_ids]


def _ends(
    conn: Connection,
    pks: list[int],
    key: str,
    dim: _Dimension,
    start: int | None,
    end: int | None,
) -> dict[int, tuple[int, int] | None]:
    """The first and last step (or time) of each history within the range, of every point
    (one query: each end is a seek in the key's index)."""
    where = f" {dim.where}".rstrip()
    params: tuple[Any, ...] = (key, *dim.params)
    if start is not None:
        where += f" AND {dim.column} >= ?"
        params += (start,)
    if end is not None:
        where += f" AND {dim.column} <= ?"
        params += (end,)
    sql = _ENDS.format(dim=dim.column, where=where, runs=", ".join("?" * len(pks)))
    found = {pk: (low, high) for pk, low, high in driver_rows(conn, sql, (*params * 2, *pks))}
    out: dict[int, tuple[int, int] | None] = {}
    for pk in pks:
        low, high = found.get(pk, (None, None))
        out[pk] = None if low is None else (int(low), int(high))
    return out


def _series(run_id: str, points: Sequence[Sequence[Any]], sampled: bool) -> ChartSeries:
    if not points:
        return ChartSeries(run_id, [], [], [], sampled)
    steps, times, values = zip(*points, strict=True)
    return ChartSeries(run_id, list(steps), list(times), list(values), sampled)


def _points(
    conn: Connection, request: _Request, pk: int, limit: int | None
) -> list[tuple[Any, ...]]:
    dim = request.dim
    sql = _POINTS.format(where=dim.where, dim=dim.column, limit="" if limit is None else " LIMIT ?")
    params = (pk, request.key, *dim.params, request.low, request.high, *_FINITE)
    return driver_rows(conn, sql, params if limit is None else (*params, limit))


def _from_points(conn: Connection, request: _Request, run_id: str, pk: int) -> ChartSeries:
    """A history read point by point: whole when it fits, otherwise each column's extremes;
    columns split the range evenly (column of x: (x - low) * columns // span)."""
    rows = _points(conn, request, pk, request.room + 1)
    if len(rows) <= request.room:
        return _series(run_id, rows, False)
    rows = _points(conn, request, pk, None)
    index = 0 if request.dim is _BY_STEP else 1
    low, span, columns = request.low, request.high - request.low + 1, request.columns
    extremes: dict[int, list[Extreme]] = {}
    for step, ts, value in rows:
        point = (float(value), int(step), int(ts))
        column = ((step, ts)[index] - low) * columns // span
        found = extremes.get(column)
        if found is None:
            extremes[column] = [point, point]
            continue
        found[0] = min(found[0], point)
        if higher(point, found[1]):
            found[1] = point
    return _series(run_id, _in_order(extremes[c] for c in sorted(extremes)), True)


def _in_order(columns: Iterable[Sequence[Extreme]]) -> list[Point]:
    """Each column's extremes as points in (step, timestamp, value) order, each once."""
    out: list[Point] = []
    for lowest, highest in columns:
        a, b = (lowest[1], lowest[2], lowest[0]), (highest[1], highest[2], highest[0])
        if a == b:
            out.append(a)
        else:
            out.extend((a, b) if a < b else (b, a))
    return out


def _from_blocks(
    conn: Connection, request: _Request, having: list[tuple[str, int]]
) -> list[ChartSeries]:
    """Histories charted from blocks: columns of ``2**w`` aligned steps, the smallest width
    that needs no more columns than asked for; each column's extremes merged from its blocks
    of the coarsest level that fits in it (one to four; more only above 2**24 steps)."""
    low, high = request.low, request.high
    wanted = -(-(high - low + 1) // request.columns)
    width = (wanted - 1).bit_length()
    level = metric_blocks.level_for(width)
    shift = width - level
    # partial first and last columns of a zoomed range hold points outside of it
    first = low >> width if request.start is not None and low & ((1 << width) - 1) else None
    last = high >> width if request.end is not None and (high + 1) & ((1 << width) - 1) else None
    whole = shift == 0 and first is None and last is None  # one block per column
    by_run: dict[int, list[tuple[Any, ...]]] = {pk: [] for _, pk in having}
    for part in range(0, len(having), MAX_CHART_RUNS):
        pks = [pk for _, pk in having[part : part + MAX_CHART_RUNS]]
        sql = _BLOCKS.format(runs=", ".join("?" * len(pks)))
        params = (*pks, request.key, level, low >> level, high >> level)
        for row in driver_rows(conn, sql, params):
            by_run[row[0]].append(row)
    out = []
    for run_id, pk in having:
        blocks = by_run[pk]
        # perhaps it fits: every block holds a point at least, and counts are upper bounds
        # (a point logged twice is counted twice); the partial end columns hold others too
        if _inside(blocks, shift, first, last) <= request.room:
            rows = _points(conn, request, pk, request.room + 1)
            if len(rows) <= request.room:
                out.append(_series(run_id, rows, False))
                continue
        if whole:
            out.append(_series(run_id, _block_points(blocks), True))
            continue
        extremes: dict[int, list[Extreme]] = {}
        for _, bucket, _count, *point in blocks:
            column = bucket >> shift
            if column in (first, last):
                continue
            lowest = (float(point[0]), int(point[1]), int(point[2]))
            highest = (float(point[3]), int(point[4]), int(point[5]))
            found = extremes.get(column)
            if found is None:
                extremes[column] = [lowest, highest]
                continue
            found[0] = min(found[0], lowest)
            if higher(highest, found[1]):
                found[1] = highest
        for column in {first, last} - {None}:
            assert column is not None
            edge = (max(low, column << width), min(high, ((column + 1) << width) - 1))
            found_edge = _edge(conn, request.key, pk, edge)
            if found_edge is not None:
                extremes[column] = found_edge
        out.append(_series(run_id, _in_order(extremes[c] for c in sorted(extremes)), True))
    return out


def _inside(blocks: list[tuple[Any, ...]], shift: int, first: int | None, last: int | None) -> int:
    """The points counted in the blocks, less those of partial end columns."""
    count: int = sum(map(_COUNT, blocks))
    if first is None and last is None:
        return count
    return count - int(sum(row[2] for row in blocks if (row[1] >> shift) in (first, last)))


def _block_points(blocks: list[tuple[Any, ...]]) -> list[Point]:
    """Each block's lowest and highest point, in order, each once."""
    out: list[Point] = []
    for _, _, _, low_value, low_step, low_ts, high_value, high_step, high_ts in blocks:
        a, b = (low_step, low_ts, low_value), (high_step, high_ts, high_value)
        if a == b:
            out.append(a)
        elif a < b:
            out += (a, b)
        else:
            out += (b, a)
    return out


def _edge(conn: Connection, key: str, pk: int, span: tuple[int, int]) -> list[Extreme] | None:
    """The lowest and highest finite point of a history between two steps, from the points."""
    found = []
    for direction in ("ASC", "DESC"):
        rows = driver_rows(conn, _EXTREME.format(direction=direction), (pk, key, *span, *_FINITE))
        if not rows:
            return None
        step, ts, value = rows[0]
        found.append((float(value), int(step), int(ts)))
    return found
