"""Chart data against the points themselves: random histories (NaN and infinities, several
points per step, negative steps, ties, batches out of order, points logged twice) logged
through the real services on SQLite and PostgreSQL; every chart must be exactly what a plain
reading of the points gives: the whole history when it fits in two points per column,
otherwise the lowest and the highest finite point of each column."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import text

from modelyard.db.engine import Database
from modelyard.db.migrate import ensure_schema
from modelyard.services import chart_data, experiments, metric_blocks, run_data, runs
from modelyard.services.entities import Metric

PROJECT = 1
SPECIAL = (float("nan"), float("inf"), float("-inf"))

# A point: its step, timestamp and value
Point = tuple[int, int, float]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, make_backend) -> Iterator[Database]:  # type: ignore[no-untyped-def]
    db = Database(make_backend(request.param).url)
    ensure_schema(db)
    yield db
    db.dispose()


def new_run(db: Database, experiment: str) -> str:
    return runs.create(
        db, PROJECT, experiment_id=experiment, user_id="u", run_name=None, start_time=1, tags={}
    ).info.run_id


def log(db: Database, run_id: str, key: str, points: list[Point]) -> None:
    for start in range(0, len(points), 1000):
        part = [Metric(key, v, t, s) for s, t, v in points[start : start + 1000]]
        run_data.log_batch(db, PROJECT, run_id, run_data.check_batch(part, [], []))


def random_history(rng: random.Random, size: int, *, first: int, gap: int) -> list[Point]:
    """Steps from ``first`` rising by 0 (another point at the same step) up to ``gap``;
    values with ties, NaN and infinities; one spike and one dip."""
    points: list[Point] = []
    step = first
    for i in range(size):
        step += rng.choice((0, *([1] * 6), gap))
        if rng.random() < 0.03:
            value = rng.choice(SPECIAL)
        elif rng.random() < 0.2:
            value = float(rng.randint(0, 3))  # ties
        else:
            value = rng.uniform(-10, 10)
        points.append((step, 1_700_000_000_000 + i * 7 + rng.randint(0, 3), value))
    spike, dip = rng.sample(range(size), 2)
    points[spike] = (points[spike][0], points[spike][1], 1e6)
    points[dip] = (points[dip][0], points[dip][1], -1e6)
    unique = {(s, t, v if v == v else "nan"): (s, t, v) for s, t, v in points}
    return list(unique.values())


@dataclass(frozen=True)
class Expected:
    whole: list[Point]
    sampled: list[Point]
    fits: bool


def expected(
    history: list[Point], low: int, high: int, columns: int, *, by_time: bool = False
) -> Expected:
    """Written from the rules, not from the code: finite points in [low, high]; when even
    columns would be 16 steps wide or more, columns of 2**w aligned steps (the narrowest that
    need no more than ``columns``), otherwise ``columns`` even slices of the range."""
    index = 1 if by_time else 0
    finite = sorted(
        (s, t, v) for s, t, v in history if math.isfinite(v) and low <= (s, t)[index] <= high
    )
    span = high - low + 1
    width = 0
    while (1 << width) * columns < span:
        width += 1
    aligned = not by_time and span >= 16 * columns

    def column(point: Point) -> int:
        x = point[index]
        return x >> width if aligned else (x - low) * columns // span

    cut: dict[int, list[Point]] = {}
    for point in finite:
        cut.setdefault(column(point), []).append(point)
    sampled: list[Point] = []
    for c in sorted(cut):
        points = cut[c]
        lowest = min(points, key=lambda p: (p[2], p[0], p[1]))
        highest = min(points, key=lambda p: (-p[2], p[0], p[1]))
        sampled.extend(sorted({lowest, highest}))
    return Expected(finite, sampled, len(finite) <= 2 * columns)


def as_points(series: chart_data.ChartSeries) -> list[Point]:
    return list(zip(series.steps, series.timestamps, series.values, strict=True))


def check(found: chart_data.ChartSeries, want: Expected, *, counted_exactly: bool = True) -> None:
    if counted_exactly:
        assert found.sampled is not want.fits
    if found.sampled:
        assert as_points(found) == want.sampled
    else:
        assert want.fits
        assert as_points(found) == want.whole


CASES = [
    # (seed, points per run, gap, columns, zoom)
    (1, 2500, 1, 7, False),  # blocks of 256 steps, one column each
    (2, 2500, 1, 3, False),  # columns of 1024 steps: two blocks of 512 each
    (3, 2500, 40, 9, False),  # sparse steps
    (4, 2500, 1, 400, False),  # narrow columns: from the points
    (5, 2500, 1, 7, True),  # a zoomed range: partial columns at both ends
    (6, 2500, 3, 2, True),
    (7, 900, 1, 500, False),  # fits
    (8, 2500, 5, 1, False),  # one column of 4096 steps
    (9, 2500, 1, 100, False),  # columns of 64 steps: one block each
    (10, 2500, 1, 200, False),  # columns of 32 steps: two blocks of 16 each
    (13, 2500, 40, 300, False),  # columns of 64 steps, some holding one point
    (11, 600, 10**9, 10, False),  # steps far apart: columns of many top-level blocks
    (12, 600, 10**9, 10, True),
]


@pytest.mark.parametrize(("seed", "size", "gap", "columns", "zoom"), CASES)
def test_chart_data_is_exact(
    database: Database, seed: int, size: int, gap: int, columns: int, zoom: bool
) -> None:
    rng = random.Random(seed)
    experiment = str(experiments.create(database, PROJECT, f"charts-{uuid.uuid4().hex}"))
    histories = {}
    for first in (-37, 5, 1000):
        run_id = new_run(database, experiment)
        history = random_history(rng, size, first=first, gap=gap)
        shuffled = history[:]
        rng.shuffle(shuffled)  # batches out of order merge into the same blocks
        log(database, run_id, "loss", shuffled)
        histories[run_id] = history
    everything = [p for h in histories.values() for p in h]
    start = end = None
    low, high = min(s for s, _, _ in everything), max(s for s, _, _ in everything)
    if zoom:
        start, end = low + (high - low) // 7 + 3, high - (high - low) // 5 - 1
        within = [s for s, _, _ in everything if start <= s <= end]
        low, high = min(within), max(within)
    found = chart_data.chart_data(
        database, PROJECT, list(histories), "loss", start=start, end=end, columns=columns
    )
    assert (found.by, found.low, found.high) == ("step", low, high)
    assert [s.run_id for s in found.series] == list(histories)
    for series in found.series:
        check(series, expected(histories[series.run_id], low, high, columns))


def test_points_logged_twice(database: Database) -> None:
    """A batch logged again is stored once; the blocks count it twice, which may only make
    a history that fits come back as its extremes, never with a wrong point."""
    rng = random.Random(11)
    experiment = str(experiments.create(database, PROJECT, f"charts-{uuid.uuid4().hex}"))
    run_id = new_run(database, experiment)
    history = random_history(rng, 1500, first=0, gap=1)
    log(database, run_id, "acc", history)
    log(database, run_id, "acc", history[200:1200])
    for columns in (4, 1000, 20):
        (series,) = chart_data.chart_data(
            database, PROJECT, [run_id], "acc", columns=columns
        ).series
        low, high = min(s for s, _, _ in history), max(s for s, _, _ in history)
        check(series, expected(history, low, high, columns), counted_exactly=False)


def test_without_steps_charted_along_time(database: Database) -> None:
    rng = random.Random(12)
    experiment = str(experiments.create(database, PROJECT, f"charts-{uuid.uuid4().hex}"))
    run_id = new_run(database, experiment)
    history = [(0, t, v) for _, t, v in random_history(rng, 1200, first=0, gap=1)]
    log(database, run_id, "lr", history)
    found = chart_data.chart_data(database, PROJECT, [run_id], "lr", columns=50)
    times = [t for _, t, _ in history]
    assert (found.by, found.low, found.high) == ("time", min(times), max(times))
    (series,) = found.series
    check(series, expected(history, min(times), max(times), 50, by_time=True))


def test_blocks_of_stored_points_are_filled_alike(database: Database) -> None:
    """The upgrade fills the blocks of points already stored; the same as logging builds."""
    rng = random.Random(13)
    experiment = str(experiments.create(database, PROJECT, f"charts-{uuid.uuid4().hex}"))
    for first in (-5000, 3):
        run_id = new_run(database, experiment)
        log(database, run_id, "loss", random_history(rng, 3000, first=first, gap=9))
        log(database, run_id, "acc", random_history(rng, 40, first=first, gap=1))
    query = text(
        "SELECT run_pk, key, level, bucket, points, min_value, min_step, min_ts, max_value, "
        "max_step, max_ts FROM metric_blocks ORDER BY run_pk, key, level, bucket"
    )
    with database.read() as conn:
        logged = [tuple(row) for row in conn.execute(query)]
    assert {row[2] for row in logged} == set(metric_blocks.LEVELS)
    with database.write() as conn:
        conn.execute(text("DELETE FROM metric_blocks"))
        stored = conn.execute(text("SELECT COUNT(*) FROM metrics")).scalar()
        assert metric_blocks.fill(conn) == stored
    with database.read() as conn:
        filled = [tuple(row) for row in conn.execute(query)]
    assert filled == logged
