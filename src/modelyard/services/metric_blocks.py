"""Summaries of metric histories for the charts, kept with the points.

For every run and metric key, a *block* of level ``L`` holds the steps ``s`` with
``s >> L == bucket`` (2**L consecutive steps, aligned): how many finite points were logged into
it, its lowest finite point and its highest (ties: the earliest by step, then timestamp).
A chart whose pixel columns are ``2**w`` steps wide reads the blocks of the coarsest level
that fits in a column (``chart_data``): one to four per column instead of every point.

The blocks are written in the transaction that writes the points (``run_data``): a batch is
summed up in memory first, then one upsert per level and bucket merges it into the stored
block. Only the count can be off, and only upwards: a point logged again (the same step,
timestamp and value, which the history stores once) is counted again.
"""

from __future__ import annotations

import functools
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection

from modelyard.db.dialect import driver_rows, pg_array
from modelyard.services.entities import Metric

#: the levels kept (stored data: changing them needs a migration): blocks of 16, 64, 256,
#: 1024 and 4096 steps, then by factors of eight up to 2**24 steps. Wider columns merge the
#: blocks of the top level they hold, which are never more than the points themselves.
LEVELS: tuple[int, ...] = (4, 6, 8, 10, 12, 15, 18, 21, 24)
FINEST = LEVELS[0]
_INF = float("inf")
_VALUE = itemgetter(2)
_STEP = itemgetter(0)

# A block while it is being summed: [points, min (value, step, ts), max (value, step, ts)]
Summary = list[Any]
# A stored block: (key, level, bucket, points, min_value, min_step, min_ts, max_value, max_step,
# max_ts)
BlockRow = tuple[str, int, int, int, float, int, int, float, int, int]


def level_for(width_exponent: int) -> int:
    """The coarsest level whose blocks are at most ``2**width_exponent`` steps wide."""
    return max((level for level in LEVELS if level <= width_exponent), default=FINEST)


def higher(a: tuple[float, int, int], b: tuple[float, int, int]) -> bool:
    """Whether point ``a`` comes before ``b`` as a column's highest: a higher value, or the
    same value earlier."""
    return a[0] > b[0] or (a[0] == b[0] and a[1:] < b[1:])


def merge(into: Summary, other: Summary) -> None:
    into[0] += other[0]
    into[1] = min(into[1], other[1])
    if higher(other[2], into[2]):
        into[2] = other[2]


def summarise(points: Iterable[tuple[str, int, int, float]]) -> list[BlockRow]:
    """The blocks of every level for points (key, step, timestamp, value); points that are not
    finite are left out."""
    by_key: dict[str, list[tuple[int, int, float]]] = {}
    for key, step, ts, value in points:
        if -_INF < value < _INF:
            found = by_key.get(key)
            if found is None:
                by_key[key] = [(step, ts, value)]
            else:
                found.append((step, ts, value))
    return summarise_by_key(by_key)


def add_metrics(conn: Connection, run_pk: int, points: Iterable[Metric]) -> None:
    """Merge logged points into the run's stored blocks."""
    by_key: dict[str, list[tuple[int, int, float]]] = {}
    for p in points:
        value = p.value
        if -_INF < value < _INF:
            found = by_key.get(p.key)
            if found is None:
                by_key[p.key] = [(p.step, p.timestamp, value)]
            else:
                found.append((p.step, p.timestamp, value))
    write(conn, run_pk, summarise_by_key(by_key))


def add_history(
    conn: Connection, run_pk: int, key: str, points: list[tuple[int, int, float]]
) -> None:
    """Merge one key's new points (step, timestamp, value) into the run's stored blocks; points
    that are not finite are left out. (``add_metrics`` for points that come in columns.)"""
    if not points:
        return
    if min(map(_VALUE, points)) == -_INF or max(map(_VALUE, points)) == _INF:
        points = [p for p in points if -_INF < p[2] < _INF]
    if points:
        write(conn, run_pk, summarise_by_key({key: points}))


def summarise_by_key(by_key: dict[str, list[tuple[int, int, float]]]) -> list[BlockRow]:
    """The blocks of every level for finite points (step, timestamp, value) by key. Each
    key's points are sorted, so a block is a slice and its extremes are the first lowest and
    the first highest value in it (the earliest of equal ones)."""
    out: list[BlockRow] = []
    for key, points in by_key.items():
        points.sort()
        steps = list(map(_STEP, points))
        values = list(map(_VALUE, points))
        end = len(points)
        finest: dict[int, Summary] = {}
        i = 0
        while i < end:
            bucket = steps[i] >> FINEST
            j = bisect_left(steps, (bucket + 1) << FINEST, i)
            part = values[i:j]
            low = points[i + part.index(min(part))]  # the first of equal values: the earliest
            high = points[i + part.index(max(part))]
            finest[bucket] = [j - i, (low[2], low[0], low[1]), (high[2], high[0], high[1])]
            i = j
        out.extend(_levels(key, finest))
    return out


def _levels(key: str, finest: dict[int, Summary]) -> Iterator[BlockRow]:
    level, blocks = FINEST, finest
    while True:
        for bucket, (count, low, high) in blocks.items():
            yield (key, level, bucket, count, *low, *high)
        index = LEVELS.index(level) + 1
        if index == len(LEVELS):
            return
        shift, level = LEVELS[index] - level, LEVELS[index]
        coarser: dict[int, Summary] = {}
        for bucket, summary in blocks.items():
            found = coarser.get(bucket >> shift)
            if found is None:
                coarser[bucket >> shift] = list(summary)
            else:
                merge(found, summary)
        blocks = coarser


_ROWS_PER_STATEMENT = 100
_COLUMNS = (
    "run_pk",
    '"key"',
    "level",
    "bucket",
    "points",
    "min_value",
    "min_step",
    "min_ts",
    "max_value",
    "max_step",
    "max_ts",
)


def add(conn: Connection, run_pk: int, points: Iterable[tuple[str, int, int, float]]) -> None:
    """Merge points (key, step, timestamp, value) into the run's stored blocks."""
    write(conn, run_pk, summarise(points))


def write(conn: Connection, run_pk: int, rows: list[BlockRow]) -> None:
    """Upsert blocks, in key order (concurrent writers of a run lock them in one order)."""
    style = conn.dialect.paramstyle
    rows.sort()
    if conn.dialect.name == "postgresql" and rows:
        # one short statement (the driver caches its parsing): a literal array per column
        columns = [[run_pk] * len(rows), *map(list, zip(*rows, strict=True))]
        literals = tuple(pg_array(c, t) for c, t in zip(columns, _ARRAY_TYPES, strict=True))
        conn.exec_driver_sql(_UNNEST_UPSERT, literals)
        return
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        chunk = rows[start : start + _ROWS_PER_STATEMENT]
        values = tuple(v for row in chunk for v in (run_pk, *row))
        conn.exec_driver_sql(_upsert_sql(style, len(chunk)), values)


_B = "metric_blocks"
_LOWER = (
    f"(excluded.min_value, excluded.min_step, excluded.min_ts) < "
    f"({_B}.min_value, {_B}.min_step, {_B}.min_ts)"
)
_HIGHER = (
    f"(excluded.max_value > {_B}.max_value OR (excluded.max_value = {_B}.max_value AND "
    f"(excluded.max_step, excluded.max_ts) < ({_B}.max_step, {_B}.max_ts)))"
)


def _pick(column: str, better: str) -> str:
    return f"{column} = CASE WHEN {better} THEN excluded.{column} ELSE {_B}.{column} END"


_MERGE = 'ON CONFLICT (run_pk, "key", level, bucket) DO UPDATE SET ' + ", ".join(
    [
        f"points = {_B}.points + excluded.points",
        *(_pick(column, _LOWER) for column in ("min_value", "min_step", "min_ts")),
        *(_pick(column, _HIGHER) for column in ("max_value", "max_step", "max_ts")),
    ]
)


@functools.cache
def _upsert_sql(paramstyle: str, rows: int) -> str:
    mark = "?" if paramstyle == "qmark" else "%s"
    row = f"({', '.join([mark] * len(_COLUMNS))})"
    return f"INSERT INTO {_B} ({', '.join(_COLUMNS)}) VALUES {', '.join([row] * rows)} {_MERGE}"


# PostgreSQL: the blocks as one array per column. (A VALUES list of 1,100 placeholders was
# parsed again by the driver on every call, half the server's work for a 1,000-point batch.)
_ARRAY_TYPES = (
    "int",
    "text",
    "smallint",
    "bigint",
    "bigint",
    "float8",
    "bigint",
    "bigint",
    "float8",
    "bigint",
    "bigint",
)
_UNNEST_UPSERT = (
    f"INSERT INTO {_B} ({', '.join(_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"%s::{t}[]" for t in _ARRAY_TYPES)
    + f") {_MERGE}"
)


_FILL_CHUNK = 50_000
_ALL_POINTS = (
    'SELECT run_pk, "key", step, "timestamp", "value", is_nan FROM metrics {after}'
    'ORDER BY run_pk, "key", step, "timestamp", "value", is_nan LIMIT ?'
)
_AFTER = 'WHERE (run_pk, "key", step, "timestamp", "value", is_nan) > (?, ?, ?, ?, ?, ?) '


def fill(conn: Connection) -> int:
    """The blocks of every stored point, written from scratch into an empty table (the upgrade
    that adds it, and loads that write points directly); returns how many points were read.
    Reads the history in key order, a chunk at a time."""
    read = 0
    last: tuple[Any, ...] | None = None
    while True:
        if last is None:
            rows = driver_rows(conn, _ALL_POINTS.format(after=""), (_FILL_CHUNK,))
        else:
            rows = driver_rows(conn, _ALL_POINTS.format(after=_AFTER), (*last, _FILL_CHUNK))
        if not rows:
            return read
        read += len(rows)
        last = tuple(rows[-1])
        by_run: dict[int, list[tuple[str, int, int, float]]] = {}
        for run_pk, key, step, ts, value, is_nan in rows:
            if not is_nan:
                by_run.setdefault(run_pk, []).append((key, step, ts, value))
        for run_pk, points in by_run.items():
            add(conn, run_pk, points)
