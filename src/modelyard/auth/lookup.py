"""The gate's one read per request: the caller (token or session), the project the URL names,
and the caller's role there, in a single driver-level query.

Nothing is cached between requests, so a revoked token, a disabled user, a removed member or a
deleted project fails on the very next request, in every server process. The query runs on a
connection of its own: on SQLite an autocommit connection per thread (each SELECT sees the
latest commit), on PostgreSQL a pooled one.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelyard.auth import secrets
from modelyard.auth.roles import READ_SCOPE, Principal, Role
from modelyard.db.dialect import driver_sql
from modelyard.db.engine import Database
from modelyard.db.schema import DEFAULT_PROJECT_ID
from modelyard.errors import Unauthenticated
from modelyard.services import canonical
from modelyard.services.entities import now_ms

_PROJECT_BY_NAME = "p.name_key = ?"
_PROJECT_BY_ID = "p.id = ?"

_BEARER_SQL = """
SELECT t.id, t.name, t.user_id, t.project_id, t.role, t.scope, t.expires_at, t.revoked_at,
       t.last_used_at, u.name, u.is_admin, u.disabled, tp.deleted_at, p.id, m.role
FROM tokens t
LEFT JOIN users u ON u.id = t.user_id
LEFT JOIN projects tp ON tp.id = t.project_id
LEFT JOIN projects p ON {project} AND p.deleted_at IS NULL
LEFT JOIN memberships m ON m.project_id = p.id AND m.user_id = t.user_id
WHERE t.secret_hash = ?
"""

_SESSION = """
SELECT s.user_id, s.csrf_token, s.expires_at, u.name, u.is_admin, u.disabled, p.id, m.role
FROM sessions s
JOIN users u ON u.id = s.user_id
LEFT JOIN projects p ON {project} AND p.deleted_at IS NULL
LEFT JOIN memberships m ON m.project_id = p.id AND m.user_id = s.user_id
WHERE s.secret_hash = ?
"""

_PROJECT = "SELECT p.id FROM projects p WHERE {project} AND p.deleted_at IS NULL"


#: (token, session, project) statements, by project name (True) or by id (False)
_STATEMENTS = {
    by_name: tuple(
        sql.format(project=_PROJECT_BY_NAME if by_name else _PROJECT_BY_ID)
        for sql in (_BEARER_SQL, _SESSION, _PROJECT)
    )
    for by_name in (True, False)
}


@dataclass(slots=True)
class Found:
    """What the gate learnt: the project (None: no such project), the caller (None: no
    credentials) and, for a token, whether its "last used" time is due for a refresh."""

    project_id: int | None
    principal: Principal | None
    stale_token: int | None = None


#: how stale a token's "last used" time may get before a request refreshes it
LAST_USED_RESOLUTION_MS = 60_000


def role_for(principal: Principal, project_id: int, member_role: str | None) -> Role | None:
    """The principal's role in a live project, given its membership there (if any)."""
    role: Role | None
    if principal.anonymous or principal.is_admin:
        role = Role.OWNER
    elif principal.token_project_id is not None:
        role = principal.token_role if principal.token_project_id == project_id else None
    else:
        role = Role.parse(member_role) if member_role else None
    return principal.cap(role)


class Lookup:
    """Runs the gate's query on a connection of its own."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.paramstyle = db.engine.dialect.paramstyle
        self._local = threading.local()
        self._sqlite_path = db.engine.url.database if db.is_sqlite else None

    def _sqlite(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self._sqlite_path or ":memory:",
                isolation_level=None,
                check_same_thread=False,
                timeout=self.db.busy_timeout,
            )
            # after every write by another connection this one re-reads changed pages: map
            # the file so that costs a memory read, not a read() call
            conn.execute("PRAGMA mmap_size=1073741824")
            self._local.conn = conn
        return conn

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        statement = driver_sql(sql, self.paramstyle)
        if self.db.is_sqlite:
            return self._sqlite().execute(statement, params).fetchall()
        raw = self.db.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(statement, params)
            rows = list(cursor.fetchall())
            cursor.close()
            raw.commit()
            return rows
        finally:
            raw.close()

    def find(
        self,
        project: str | int,
        *,
        token: str | None = None,
        basic_user: str | None = None,
        session: str | None = None,
    ) -> Found:
        """``project``: a project name (from the URL) or the default project's id. A token
        sent with Basic credentials must be the named user's (any name for a project token)."""
        by_name = isinstance(project, str)
        if isinstance(project, str):
            project = canonical.folded_key(project, "project name")
        if token is not None:
            rows = self._rows(_STATEMENTS[by_name][0], (project, secrets.digest(token)))
            found = token_found(rows[0] if rows else None)
            principal = found.principal
            if (
                basic_user is not None
                and principal is not None
                and principal.user_id is not None
                and principal.name != basic_user
            ):
                raise Unauthenticated("The token does not belong to that user.")
            return found
        if session is not None:
            rows = self._rows(_STATEMENTS[by_name][1], (project, secrets.digest(session)))
            if rows and not rows[0][5] and rows[0][2] > now_ms():
                return self._session(rows[0])
        rows = self._rows(_STATEMENTS[by_name][2], (project,))
        return Found(rows[0][0] if rows else None, None)

    @staticmethod
    def _session(row: tuple[Any, ...]) -> Found:
        user_id, csrf, _expires, name, is_admin, _disabled, project_id, member = row
        principal = Principal(
            name=name,
            user_id=user_id,
            is_admin=bool(is_admin),
            via_session=True,
            csrf_token=csrf,
        )
        if project_id is not None:
            principal.roles[project_id] = role_for(principal, project_id, member)
        return Found(project_id, principal)


def token_found(row: Sequence[Any] | None, now: int | None = None) -> Found:
    """The caller a row of the token query stands for; Unauthenticated when the token is
    unknown, revoked, expired, or its user is disabled or its project deleted."""
    if row is None:
        raise Unauthenticated("The token is not valid.")
    (token_id, name, user_id, token_project, role, scope, expires_at, revoked_at) = row[:8]
    last_used, user_name, is_admin, disabled, project_deleted, project_id, member = row[8:]
    now = now_ms() if now is None else now
    if revoked_at is not None:
        raise Unauthenticated("The token has been revoked.")
    if expires_at is not None and expires_at <= now:
        raise Unauthenticated("The token has expired.")
    if user_id is not None and disabled:
        raise Unauthenticated("The token's user is disabled.")
    if project_deleted is not None:
        raise Unauthenticated("The token's project has been deleted.")
    read_only = scope == READ_SCOPE
    if user_id is None:
        principal = Principal(
            name=name,
            token_id=token_id,
            token_project_id=token_project,
            token_role=Role.parse(role),
            read_only=read_only,
        )
    else:
        principal = Principal(
            name=user_name,
            user_id=user_id,
            is_admin=bool(is_admin),
            token_id=token_id,
            read_only=read_only,
        )
    if project_id is not None:
        principal.roles[project_id] = role_for(principal, project_id, member)
    stale = last_used is None or last_used < now - LAST_USED_RESOLUTION_MS
    return Found(project_id, principal, token_id if stale else None)


def authenticate_token(db: Database, secret: str) -> Principal:
    """The principal a token stands for (the login form accepts a personal token too)."""
    with db.read() as conn:
        row = conn.exec_driver_sql(
            driver_sql(_STATEMENTS[False][0], conn.dialect.paramstyle),
            (DEFAULT_PROJECT_ID, secrets.digest(secret)),
        ).first()
    found = token_found(None if row is None else tuple(row))
    assert found.principal is not None
    return found.principal
