"""The database handle: engines, transactions and the write discipline.

SQLite runs in WAL mode; writes are serialised by a process-wide lock and ``BEGIN IMMEDIATE``
(which also serialises between server processes). A database that stays busy past the busy
timeout raises :class:`~modelyard.errors.Unavailable` (a retryable 503), never a 500.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from modelyard.db.statistics import PlannerStatistics
from modelyard.errors import Conflict, InvalidParameter, Unavailable

log = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT = 15.0
#: set in ``conn.info`` by a write whose commit others want to hear of (the webhook outbox)
WAKE = "modelyard.wake"


class Rider:
    """Work that rides in the next write transaction of the current context (a request's
    audit entry joins the change it records: one commit, stored exactly when the change is).
    ``work`` is None once done; if no write came, the caller does it on its own."""

    __slots__ = ("work",)

    def __init__(self, work: Callable[[Connection], None]) -> None:
        self.work: Callable[[Connection], None] | None = work


_RIDER: ContextVar[Rider | None] = ContextVar("modelyard_rider", default=None)


@contextmanager
def riding(work: Callable[[Connection], None]) -> Iterator[Rider]:
    """Within this block, the first write transaction to commit also runs ``work``."""
    rider = Rider(work)
    token = _RIDER.set(rider)
    try:
        yield rider
    finally:
        _RIDER.reset(token)


def _ride(conn: Connection) -> None:
    rider = _RIDER.get()
    if rider is not None and rider.work is not None:
        work, rider.work = rider.work, None
        work(conn)


class Database:
    """Owns the engine; hands out read and write transactions."""

    def __init__(self, url: str, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.busy_timeout = busy_timeout
        self._write_lock = threading.Lock() if self.is_sqlite else None
        self.engine = _make_engine(url, busy_timeout)
        #: called after the commit of a write that set ``conn.info[WAKE]``
        self.wake_listeners: list[Callable[[], None]] = []
        self._statistics = None if self.is_sqlite else PlannerStatistics(self.engine)

    def fresh_statistics(self) -> None:
        """On PostgreSQL, analyse the searched tables whose planner statistics are missing or
        stale (checked at most every few seconds), so a search is not planned blind."""
        if self._statistics is not None:
            self._statistics.ensure()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction."""
        with _translate_busy(), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction, serialised on SQLite."""
        if self._write_lock is None:
            with (
                _translate_busy(),
                self.engine.connect() as conn,
                self._woken(conn),
                conn.begin(),
            ):
                yield conn
                _ride(conn)
            return
        if not self._write_lock.acquire(timeout=self.busy_timeout):
            raise Unavailable("The database is busy; please retry.")
        try:
            with _translate_busy(), self.engine.connect() as conn:
                conn.info["begin_immediate"] = True
                with self._woken(conn), conn.begin():
                    yield conn
                    _ride(conn)
        finally:
            self._write_lock.release()

    @contextmanager
    def _woken(self, conn: Connection) -> Iterator[None]:
        """Tell the wake listeners once the transaction has committed (if it asked to)."""
        conn.info.pop(WAKE, None)
        try:
            yield
        except BaseException:
            conn.info.pop(WAKE, None)
            raise
        if conn.info.pop(WAKE, False):
            for listener in self.wake_listeners:
                listener()

    def dispose(self) -> None:
        self.engine.dispose()


def _make_engine(url: str, busy_timeout: float) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=False)
    engine = create_engine(
        url,
        pool_size=8,
        max_overflow=24,
        connect_args={
            "check_same_thread": False,
            "isolation_level": None,
            "timeout": busy_timeout,
        },
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA cache_size=-65536")
        cur.execute("PRAGMA mmap_size=1073741824")
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA case_sensitive_like=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.info.pop("begin_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


_BUSY_MARKERS = (
    "database is locked",
    "database is busy",
    "could not serialize",
    "deadlock detected",
    "too many connections",
    "connection refused",
)


@contextmanager
def _translate_busy() -> Iterator[None]:
    """Database errors a request can cause become domain errors: busy → 503 (retry), a
    unique or other constraint a service did not foresee → 409, a value too long for its
    column → 400. Nothing a client sends ends as a 500 from here."""
    try:
        yield
    except IntegrityError as exc:
        log.warning("Constraint violation answered as a conflict: %s", exc.orig)
        raise Conflict(
            "The change conflicts with data already stored (or stored at the same moment); "
            "nothing was changed."
        ) from exc
    except DataError as exc:
        log.warning("Value refused by the database: %s", exc.orig)
        raise InvalidParameter(
            "A value is too long or malformed for where it is stored; nothing was changed."
        ) from exc
    except DBAPIError as exc:
        text = str(exc.orig if exc.orig is not None else exc).lower()
        if any(marker in text for marker in _BUSY_MARKERS):
            raise Unavailable("The database is busy; please retry.") from exc
        raise
