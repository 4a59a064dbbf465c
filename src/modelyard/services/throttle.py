"""The sign-in limit, kept in the database so that every server process sharing it applies
the same count: per (user name, client address), at most MAX_FAILURES attempts that did not
succeed within WINDOW_MS of the first one; further attempts are refused until the window has
passed. An attempt is counted before the password is checked, in one atomic upsert, so
attempts sent at once to several servers cannot slip past the limit together."""

from __future__ import annotations

from sqlalchemy import case, delete

from modelyard.db.dialect import insert_for
from modelyard.db.engine import Database
from modelyard.db.schema import login_attempts
from modelyard.errors import ModelyardError
from modelyard.services.entities import now_ms

MAX_FAILURES = 5
WINDOW_MS = 15 * 60 * 1000
_NAME = 64
_ADDRESS = 64


def _key(name: str, address: str) -> tuple[str, str]:
    return name[:_NAME], address[:_ADDRESS]


def attempt(db: Database, name: str, address: str) -> bool:
    """Counts one sign-in attempt; False when the name and address have no attempt left."""
    name, address = _key(name, address)
    now = now_ms()
    stale = login_attempts.c.window_start <= now - WINDOW_MS
    with db.write() as conn:
        statement = insert_for(conn.dialect.name, login_attempts).values(
            name=name, address=address, attempts=1, window_start=now
        )
        statement = statement.on_conflict_do_update(
            index_elements=[login_attempts.c.name, login_attempts.c.address],
            set_={
                "attempts": case((stale, 1), else_=login_attempts.c.attempts + 1),
                "window_start": case((stale, now), else_=login_attempts.c.window_start),
            },
        ).returning(login_attempts.c.attempts)
        count = int(conn.execute(statement).scalar_one())
    forget_stale(db)
    return count <= MAX_FAILURES


def succeeded(db: Database, name: str, address: str) -> None:
    """A successful sign-in clears the count of its name and address."""
    name, address = _key(name, address)
    with db.write() as conn:
        conn.execute(
            delete(login_attempts).where(
                login_attempts.c.name == name, login_attempts.c.address == address
            )
        )


def forget_stale(db: Database) -> None:
    """Removes windows that have passed, so the table holds only names tried in the last
    WINDOW_MS; best effort (another process may be doing the same)."""
    try:
        with db.write() as conn:
            conn.execute(
                delete(login_attempts).where(login_attempts.c.window_start <= now_ms() - WINDOW_MS)
            )
    except ModelyardError:
        pass
