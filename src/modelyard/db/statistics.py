"""Planner statistics on PostgreSQL, kept fit for the candidate search.

PostgreSQL plans a search's joins from the statistics ANALYZE gathers. Right after a bulk
load, an import or a restore (before autovacuum's next look, or with autovacuum off) they are
missing or describe a much smaller table, and a filtered search is then planned as nested
loops over every row: minutes instead of milliseconds. So at start-up and before a search,
the tables it reads are checked (one small catalogue query, at most every CHECK_SECONDS per
process); those without statistics, or changed by more than half since their last ANALYZE,
are analysed at once, side by side. One process analyses at a time (an advisory lock); the
others wait for it, then find the statistics fresh. ANALYZE reads a fixed-size sample, so it
takes about the same time at any size.
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
_LOCK_KEY = 7_236_000_417  # pg_advisory_lock key of the analysing process

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
                if stale:  # side by side, one connection each: on several cores, sooner
                    with ThreadPoolExecutor(max_workers=len(stale)) as pool:
                        list(pool.map(self._analyze, stale))
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})

    def _analyze(self, table: str) -> None:
        started = time.perf_counter()
        with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'ANALYZE "{table}"'))
        log.warning(
            "analysed %s (statistics missing or stale) in %.2f s",
            table,
            time.perf_counter() - started,
        )
