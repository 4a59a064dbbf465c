"""The audit log: who changed the registry or access, when, what, and from where."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import Connection, insert, select

from modelyard.db.engine import Database
from modelyard.db.schema import audit_events
from modelyard.services.entities import now_ms

MAX_DETAIL_CHARS = 4000


def record(
    conn: Connection,
    project_id: int | None,
    actor: str,
    action: str,
    target: str,
    details: dict[str, Any],
    address: str = "",
) -> None:
    """Append one event, in the caller's transaction: it is stored exactly when the change is."""
    text = orjson.dumps(details, default=str).decode()
    if len(text) > MAX_DETAIL_CHARS:
        text = orjson.dumps({"truncated": text[:MAX_DETAIL_CHARS]}).decode()
    conn.execute(
        _INSERT,
        {
            "project_id": project_id,
            "at": now_ms(),
            "actor": actor[:256],
            "action": action,
            "target": target,
            "details": text,
            "address": address[:64],
        },
    )


_INSERT = insert(audit_events)


_TARGET_KEYS = ("name", "new_name", "version", "ref", "alias", "key", "stage", "experiment_id")


def record_call(ctx: Any, action: str, data: dict[str, Any]) -> None:
    """Record a successful API call (``ctx`` is the request's context) in a transaction of its
    own (for a call that changed nothing: see ``call_recorder``)."""
    with ctx.db.write() as conn:
        call_recorder(ctx, action, data)(conn)


def call_recorder(ctx: Any, action: str, data: dict[str, Any]) -> Callable[[Connection], None]:
    """What records an API call in a given transaction: the resource named by the request as
    the target, the rest of the request's small fields as details. Given to
    ``Database``'s ``riding``, it joins the transaction of the change the call makes."""
    target = " ".join(f"{k}={data[k]}" for k in _TARGET_KEYS if data.get(k) not in (None, ""))
    details = {
        k: v
        for k, v in data.items()
        if k not in _TARGET_KEYS and isinstance(v, str | int | float | bool) and len(str(v)) < 500
    }

    def write(conn: Connection) -> None:
        record(conn, ctx.project_id, ctx.actor, action, target, details, ctx.address)

    return write


def events(
    db: Database,
    project_id: int | None,
    *,
    limit: int = 100,
    before: int | None = None,
    action: str | None = None,
) -> list[dict[str, Any]]:
    """Newest first; ``before`` is an event id to page on from."""
    query = select(audit_events).order_by(audit_events.c.id.desc()).limit(limit)
    if project_id is None:
        query = query.where(audit_events.c.project_id.is_(None))
    else:
        query = query.where(audit_events.c.project_id == project_id)
    if before is not None:
        query = query.where(audit_events.c.id < before)
    if action:
        query = query.where(audit_events.c.action.startswith(action, autoescape=True))
    with db.read() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "id": row.id,
            "project_id": row.project_id,
            "at": row.at,
            "actor": row.actor,
            "action": row.action,
            "target": row.target,
            "details": orjson.loads(row.details),
            "address": row.address,
        }
        for row in rows
    ]
