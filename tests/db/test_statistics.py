"""PostgreSQL without planner statistics: a search right after a bulk load analyses the tables
it reads first (a quick sample), so it is planned on real figures, and it answers correctly;
the full sample follows outside the request."""

from __future__ import annotations

import time

import psycopg
from sqlalchemy import text

from modelyard.db.engine import Database
from modelyard.db.migrate import ensure_schema
from modelyard.db.schema import DEFAULT_PROJECT_ID
from modelyard.db.statistics import SEARCHED
from modelyard.services import experiments, runs

RUNS = 6000


def reltuples(db: Database) -> dict[str, float]:
    with db.read() as conn:
        found = conn.execute(
            text("SELECT relname, reltuples FROM pg_class WHERE relname = ANY(:t)"),
            {"t": list(SEARCHED)},
        )
        return {str(name): float(count) for name, count in found.all()}


def test_a_search_after_a_bulk_load_analyses_first(make_backend) -> None:  # type: ignore[no-untyped-def]
    backend = make_backend("postgresql")
    db = Database(backend.url)
    try:
        ensure_schema(db)
        experiment = experiments.create(db, DEFAULT_PROJECT_ID, "bulk")
        plain = backend.url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain, autocommit=True) as conn:
            for table in SEARCHED:
                conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
            conn.execute(
                "INSERT INTO runs (pk, id, project_id, experiment_id, name, user_id, status, "
                "start_time, lifecycle_stage) SELECT g, md5('r' || g), %s, %s, 'r' || g, 'u', "
                "'FINISHED', g, 'active' FROM generate_series(1, %s) g",
                (DEFAULT_PROJECT_ID, int(experiment), RUNS),
            )
            conn.execute(
                "INSERT INTO params (run_pk, experiment_id, key, value) "
                "SELECT g, %s, 'alpha', (g %% 4)::text FROM generate_series(1, %s) g",
                (int(experiment), RUNS),
            )
            conn.execute(
                "INSERT INTO latest_metrics (run_pk, experiment_id, key, step, timestamp, value, "
                "is_nan) SELECT g, %s, k, 0, g, (g * 7919 %% 1000) / 1000.0, false "
                "FROM generate_series(1, %s) g, unnest(ARRAY['acc', 'loss']) k",
                (int(experiment), RUNS),
            )
            conn.execute("SELECT setval('runs_pk_seq', %s)", (RUNS,))
        time.sleep(1.5)  # the loading session's table counters reach the statistics views
        before = reltuples(db)
        assert max(before.values()) < 0, before  # never analysed

        page = runs.search(
            db,
            DEFAULT_PROJECT_ID,
            experiment_ids=[experiment],
            filter_string="metrics.acc > 0.5 and params.alpha = '1'",
            run_view_type=None,
            max_results=50,
            order_by=["metrics.loss ASC"],
            page_token=None,
        )
        after = reltuples(db)
        assert after["run_tags"] < 0  # empty: nothing to plan on
        del after["run_tags"]
        assert after == {"runs": RUNS, "params": RUNS, "latest_metrics": 2 * RUNS}
        # the answer: runs with alpha 1 and acc > 0.5, lowest loss first
        expected = sorted(
            (
                (g * 7919 % 1000) / 1000.0,
                -g,
            )
            for g in range(1, RUNS + 1)
            if g % 4 == 1 and (g * 7919 % 1000) / 1000.0 > 0.5
        )[:50]
        assert [r.info.start_time for r in page.items] == [-g for _v, g in expected]
        # the search waited for a quick sample only; a thread then analyses with the full one
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and histogram_bounds(db) < 101:
            time.sleep(0.2)
        assert histogram_bounds(db) == 101  # PostgreSQL's default target (100) plus one
    finally:
        db.dispose()


def histogram_bounds(db: Database) -> int:
    """How many bounds the histogram of runs.pk has (its statistics target plus one)."""
    with db.read() as conn:
        found = conn.execute(
            text(
                "SELECT cardinality(histogram_bounds::text::text[]) FROM pg_stats "
                "WHERE tablename = 'runs' AND attname = 'pk'"
            )
        ).scalar()
        return int(found or 0)
