"""Planner statistics on PostgreSQL, kept fit for the candidate search.

PostgreSQL plans a search's joins from the statistics ANALYZE gathers. Right after a bulk
load, an import or a restore (before autovacuum's next look, or with autovacuum off) they are
missing or describe a much smaller table, and a filtered search is then planned as nested
loops over every row: minutes instead of milliseconds. So at start-up and before a search,
the tables it reads are checked (one small catalogue query, at most every CHECK_SECONDS per
process); those without statistics, or changed by more than half since their last ANALYZE,
are analysed at once. One process analyses at a time (an advisory lock); the others wait for
it, then find the statistics fresh.

That first ANALYZE is a quick one: a sample a tenth of PostgreSQL's default (statistics target
10), about 20 ms a table at a million rows instead of 0.2-0.3 s, which is enough for the
planner to choose the joins. A thread then analyses the same tables again with the default
sample, outside the request (one process at a time: a second advisory lock, tried, not
waited for). ANALYZE reads a fixed-size sample, so both take about the same time at any size.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Connection, Engine, text

log = logging.getLogger(__name__)

#: the tables the candidate search reads
SEARCHED = ("runs", "params", "run_tags", "latest_metrics")
CHECK_SECONDS = 2.0
MIN_ROWS = 1000  # smaller tables plan well enough on any statistics
STALE_SHARE = 0.5  # rows changed since the last ANALYZE, as a share of the rows it saw
QUICK_TARGET = 10  # the statistics target of the ANALYZE a search waits for
_LOCK_KEY = 7_236_000_417  # pg_advisory_lock key of the analysing process
_REFINE_LOCK_KEY = 7_236_000_418  # ... and of the process analysing again with the full sample

_STALE = text(
    """
    SELECT s.relname
    FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid
    WHERE s.schemaname = current_schema() AND s.relname = ANY(:tables)
      AND GREATEST(s.n_live_tup, s.n_mod_since_analyze) >= :min_rows
      AND (c.reltuples < 0 OR s.n_mod_since_analyze > :share * GREATEST(c.reltuples, :min_rows))
    ORDER BY s.relname
    """
)


class PlannerStatistics:
    """Checks the searched tables' statistics and analyses those that are missing or stale."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._checked = -CHECK_SECONDS
        self._lock = threading.Lock()
        self._refining: threading.Thread | None = None

    def ensure(self) -> None:
        if time.monotonic() - self._checked < CHECK_SECONDS:
            return
        with self._lock:
            if time.monotonic() - self._checked < CHECK_SECONDS:
                return
            try:
                self._ensure()
            except Exception:  # statistics help the planner; a search must not fail on them
                log.exception("checking the planner statistics failed")
            self._checked = time.monotonic()

    def _stale(self, conn: Connection) -> list[str]:
        found = conn.execute(
            _STALE, {"tables": list(SEARCHED), "min_rows": MIN_ROWS, "share": STALE_SHARE}
        )
        return [str(name) for name in found.scalars()]

    def _ensure(self) -> None:
        with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            if not self._stale(conn):
                return
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _LOCK_KEY})
            try:
                stale = self._stale(conn)  # another process may have analysed meanwhile
                for table in stale:
                    self._analyze(table, QUICK_TARGET)
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})
        if stale:
            self._refine(stale)

    def _analyze(self, table: str, target: int | None) -> None:
        started = time.perf_counter()
        with self._engine.begin() as conn:
            if target is not None:  # (for this transaction only)
                conn.execute(text(f"SET LOCAL default_statistics_target = {int(target)}"))
            conn.execute(text(f'ANALYZE "{table}"'))
        log.warning(
            "analysed %s (statistics missing or stale%s) in %.2f s",
            table,
            "" if target is None else f", quick sample: target {target}",
            time.perf_counter() - started,
        )

    def _refine(self, tables: list[str]) -> None:
        """Analyse ``tables`` again with the full sample, in a thread of its own."""
        if self._refining is not None and self._refining.is_alive():
            return
        self._refining = threading.Thread(
            target=self._analyze_fully, args=(tables,), name="analyse", daemon=True
        )
        self._refining.start()

    def _analyze_fully(self, tables: list[str]) -> None:
        try:
            with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                got = conn.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": _REFINE_LOCK_KEY}
                )
                if not got.scalar():
                    return  # another process is at it
                try:
                    # side by side, one connection each: on several cores, sooner
                    with ThreadPoolExecutor(max_workers=len(tables)) as pool:
                        list(pool.map(self._analyze, tables, [None] * len(tables)))
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _REFINE_LOCK_KEY})
        except Exception:  # the quick statistics stand; autovacuum refines them later
            log.exception("analysing with the full sample failed")
