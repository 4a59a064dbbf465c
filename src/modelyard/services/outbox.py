"""The webhook outbox: an event is written in the transaction of the change that raises it;
the delivery worker turns it into deliveries, claims, records and retries them.

``emit`` runs inside the caller's write transaction: one query finds the project's active
webhooks subscribed to the event, and one row keeps the event, with the exact body that will
be signed and sent and the webhooks it goes to. Nothing is written when no webhook listens.
The commit wakes the worker of this process (``Database.wake_listeners``). The worker's
``fan_out`` turns waiting events into one delivery per webhook, in event order, and removes
them, in one transaction of its own: a change pays for one row however many webhooks listen.

Order: a webhook's deliveries go out one at a time, oldest first; a delivery is due only when
it is the oldest pending one of its webhook. On PostgreSQL a claim is a row lock
(``FOR UPDATE SKIP LOCKED``) held while the delivery is sent, so several processes never send
the same delivery and a process that dies releases its claim at once; fan-outs take an
advisory lock, so that they number deliveries in event order.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select, update

from modelyard.db.dialect import driver_rows, driver_sql
from modelyard.db.engine import WAKE, Database
from modelyard.db.schema import webhook_deliveries, webhooks
from modelyard.errors import NotFound
from modelyard.services import audit
from modelyard.services.entities import now_ms
from modelyard.services.webhooks import TestSend, payload

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
FIRST_RETRY_MS = 1000
LONGEST_WAIT_MS = 3600 * 1000
SYSTEM_ACTOR = "modelyard"
#: deliveries shown per page
PAGE = 50

_d = webhook_deliveries
_w = webhooks


@dataclass(frozen=True, slots=True)
class Policy:
    """How long deliveries are retried and when a failing webhook is disabled."""

    retry_ms: int = 24 * 3600 * 1000
    disable_after_ms: int = 72 * 3600 * 1000
    #: finished deliveries (delivered or given up) older than this are removed; 0: never
    retention_ms: int = 30 * 24 * 3600 * 1000


_SUBSCRIBERS = (
    "SELECT w.id, p.name FROM webhooks w JOIN projects p ON p.id = w.project_id "
    "WHERE w.project_id = ? AND w.status = 'ACTIVE' AND w.events LIKE ? ESCAPE '!'"
)
_EVENT = (
    "INSERT INTO webhook_events (project_id, event, body, webhook_pks, created_at) "
    "VALUES (?, ?, ?, ?, ?)"
)
_QUEUE = (
    "INSERT INTO webhook_deliveries (delivery_id, webhook_pk, event, body, state, test, "
    "attempts, created_at, next_attempt_at, last_error, response_excerpt) "
    "VALUES (?, ?, ?, ?, 'pending', ?, 0, ?, ?, '', '')"
)


def emit(conn: Connection, project_id: int, event: str, data: dict[str, Any]) -> int:
    """Keep ``event`` for every active webhook of the project that subscribes to it, in the
    caller's transaction (one row, see ``fan_out``). Returns how many webhooks it goes to.
    (Driver-level statements: this runs inside every registry change.)"""
    pattern = "%," + event.replace("!", "!!").replace("_", "!_").replace("%", "!%") + ",%"
    rows = driver_rows(conn, _SUBSCRIBERS, (project_id, pattern))
    if not rows:
        return 0
    now = now_ms()
    body = payload(event, data, rows[0][1], now).decode()
    pks = ",".join(str(pk) for pk, _name in rows)
    _execute(conn, _EVENT, (project_id, event, body, pks, now))
    conn.info[WAKE] = True
    return len(rows)


#: events turned into deliveries per transaction, at most
FAN_OUT_BATCH = 500
_WAITING = "SELECT id FROM webhook_events LIMIT 1"
_EVENTS = "SELECT id, event, body, webhook_pks, created_at FROM webhook_events ORDER BY id LIMIT ?"
#: any number: the key of the PostgreSQL advisory lock that fan-outs take
_FAN_OUT_LOCK = 0x6D79_6477


def events_waiting(conn: Connection) -> bool:
    """Whether events wait to be turned into deliveries."""
    return bool(driver_rows(conn, _WAITING, ()))


def fan_out(conn: Connection, limit: int = FAN_OUT_BATCH) -> int:
    """Turn up to ``limit`` waiting events, oldest first, into one pending delivery per webhook
    that still exists, and remove them; in the caller's write transaction. Deliveries are
    numbered in event order (on PostgreSQL under an advisory lock held to the commit, so two
    processes never interleave). Returns how many events were taken."""
    if conn.dialect.name == "postgresql":
        _execute(conn, "SELECT pg_advisory_xact_lock(?)", (_FAN_OUT_LOCK,))
    events = driver_rows(conn, _EVENTS, (limit,))
    if not events:
        return 0
    targets = [[int(pk) for pk in str(row[3]).split(",") if pk] for row in events]
    wanted = tuple({pk for pks in targets for pk in pks})
    alive: set[int] = set()
    if wanted:  # (an event listing no webhook is only removed)
        marks = ", ".join("?" * len(wanted))
        found = driver_rows(conn, f"SELECT id FROM webhooks WHERE id IN ({marks})", wanted)
        alive = {row[0] for row in found}
    queued = [
        (str(uuid.uuid4()), pk, event, body, False, created_at, created_at)
        for (_id, event, body, _pks, created_at), pks in zip(events, targets, strict=True)
        for pk in pks
        if pk in alive
    ]
    if queued:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(driver_sql(_QUEUE, conn.dialect.paramstyle), queued)
        finally:
            cursor.close()
    # by id, not by range: on PostgreSQL an event of a transaction that commits meanwhile may
    # have a lower id than the last one read, and must wait for the next fan-out
    taken = tuple(row[0] for row in events)
    _execute(conn, f"DELETE FROM webhook_events WHERE id IN ({', '.join('?' * len(taken))})", taken)
    return len(events)


# ---------------------------------------------------------------- the worker's side


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery taken by the worker, with what sending it needs."""

    pk: int
    delivery_id: str
    webhook_pk: int
    webhook_id: str
    project_id: int
    event: str
    body: bytes
    attempts: int
    created_at: int
    url: str
    secret: str
    failing_since: int | None = None


#: the oldest pending delivery of each webhook (the only one of its webhook that may go), when
#: due; written for the driver (this runs for every delivery)
_DUE = (
    "SELECT d.id, d.delivery_id, d.webhook_pk, w.webhook_id, w.project_id, w.failing_since, "
    "d.event, d.body, d.attempts, d.created_at, w.url, w.secret "
    "FROM (SELECT webhook_pk, MIN(id) AS head FROM webhook_deliveries "
    "WHERE state = 'pending' GROUP BY webhook_pk) heads "
    "JOIN webhook_deliveries d ON d.id = heads.head "
    "JOIN webhooks w ON w.id = d.webhook_pk "
    "WHERE w.status = 'ACTIVE' AND d.state = 'pending' AND d.next_attempt_at <= ? "
    "ORDER BY d.id LIMIT ?"
)
_NEXT_DUE = (
    "SELECT MIN(d.next_attempt_at) "
    "FROM (SELECT webhook_pk, MIN(id) AS head FROM webhook_deliveries "
    "WHERE state = 'pending' GROUP BY webhook_pk) heads "
    "JOIN webhook_deliveries d ON d.id = heads.head "
    "JOIN webhooks w ON w.id = d.webhook_pk WHERE w.status = 'ACTIVE'"
)
_HEAD_OF = (
    "SELECT d.id, d.delivery_id, d.webhook_pk, w.webhook_id, w.project_id, w.failing_since, "
    "d.event, d.body, d.attempts, d.created_at, w.url, w.secret, d.next_attempt_at "
    "FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_pk "
    "WHERE d.webhook_pk = ? AND d.state = 'pending' AND w.status = 'ACTIVE' "
    "ORDER BY d.id LIMIT 1"
)
_RECORD = (
    "UPDATE webhook_deliveries SET attempts = ?, last_attempt_at = ?, last_status = ?, "
    "last_error = ?, response_excerpt = ?, duration_ms = ?, state = ?, delivered_at = ?, "
    "next_attempt_at = ? WHERE id = ? AND state = 'pending'"
)


def _execute(conn: Connection, sql: str, params: tuple[Any, ...]) -> None:
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(driver_sql(sql, conn.dialect.paramstyle), params)
    finally:
        cursor.close()


def _claim(row: tuple[Any, ...]) -> Claim:
    (pk, delivery_id, webhook_pk, webhook_id, project_id, failing_since) = row[:6]
    event, body, attempts, created_at, url, secret = row[6:]
    return Claim(
        pk=pk,
        delivery_id=delivery_id,
        webhook_pk=webhook_pk,
        webhook_id=webhook_id,
        project_id=project_id,
        event=event,
        body=body.encode(),
        attempts=attempts,
        created_at=created_at,
        url=url,
        secret=secret,
        failing_since=failing_since,
    )


def due(conn: Connection, busy: Collection[int], limit: int) -> list[Claim]:
    """Due deliveries of webhooks not in ``busy`` (the single sender of a SQLite database)."""
    rows = driver_rows(conn, _DUE, (now_ms(), limit + len(busy)))
    return [_claim(row) for row in rows if row[2] not in busy][:limit]


def next_of(conn: Connection, webhook_pk: int) -> Claim | None:
    """The webhook's oldest pending delivery, when it is due (its sender goes on with it)."""
    rows = driver_rows(conn, _HEAD_OF, (webhook_pk,))
    if not rows or rows[0][12] > now_ms():
        return None
    return _claim(rows[0][:12])


def claim_locked(conn: Connection) -> Claim | None:
    """One due delivery, locked until ``conn``'s transaction ends (PostgreSQL); deliveries
    other transactions hold are skipped, not waited for. The lock's re-check of the row sees
    a delivery another process has just finished as no longer pending."""
    rows = driver_rows(conn, _DUE + " FOR UPDATE OF d SKIP LOCKED", (now_ms(), 1))
    return _claim(rows[0]) if rows else None


def next_due_ms(conn: Connection) -> int | None:
    """When the earliest waiting delivery falls due (None when nothing waits)."""
    earliest = driver_rows(conn, _NEXT_DUE, ())[0][0]
    return None if earliest is None else int(earliest)


def backoff_ms(attempts: int) -> int:
    """Exponential backoff with jitter: about 1 s, 2 s, 4 s … up to an hour, each drawn
    between half and all of its step."""
    step: int = min(FIRST_RETRY_MS << min(max(attempts - 1, 0), 32), LONGEST_WAIT_MS)
    return step // 2 + random.randint(0, step // 2)  # noqa: S311 - jitter, not a secret


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one send came to (see ``modelyard.webhooks.delivery.Outcome``)."""

    ok: bool
    status: int | None
    excerpt: str
    error: str
    duration_ms: int
    #: False when the delivery was given up without a request
    sent: bool = True


def expired(claim: Claim, policy: Policy) -> Attempt | None:
    """A delivery past its retry window (its webhook was disabled meanwhile) is given up
    without being sent: a stale event must not start a deploy."""
    if now_ms() <= claim.created_at + policy.retry_ms:
        return None
    return Attempt(False, None, "", "not sent: the retry window had passed", 0, sent=False)


def record(conn: Connection, claim: Claim, attempt: Attempt, policy: Policy) -> str:
    """Store an attempt's outcome: delivered, retried later, or given up. Returns the state."""
    now = now_ms()
    attempts = claim.attempts + attempt.sent
    error = attempt.error[:500]
    state, delivered_at, retry_at = PENDING, None, None
    if attempt.ok:
        state, delivered_at = DELIVERED, now
    else:
        retry_at = now + backoff_ms(attempts)
        if retry_at > claim.created_at + policy.retry_ms:
            state, retry_at = FAILED, None
            error = f"gave up after {attempts} attempts: {error}"
    if not attempt.sent:
        conn.execute(
            update(_d)
            .where(_d.c.id == claim.pk, _d.c.state == PENDING)
            .values(state=state, last_error=error, next_attempt_at=retry_at)
        )
        return state
    _execute(
        conn,
        _RECORD,
        (
            attempts,
            now,
            attempt.status,
            error,
            attempt.excerpt,
            attempt.duration_ms,
            state,
            delivered_at,
            retry_at,
            claim.pk,
        ),
    )
    _track_health(conn, claim, attempt.ok, now, policy)
    return state


def _track_health(conn: Connection, claim: Claim, ok: bool, now: int, policy: Policy) -> None:
    """A success clears the webhook's failing streak; a streak longer than the policy's limit
    disables the webhook, with an audit entry and the reason for its page's banner."""
    if ok:
        if claim.failing_since is not None:
            conn.execute(update(_w).where(_w.c.id == claim.webhook_pk).values(failing_since=None))
        return
    since = claim.failing_since
    if since is None:
        conn.execute(
            update(_w)
            .where(_w.c.id == claim.webhook_pk, _w.c.failing_since.is_(None))
            .values(failing_since=now)
        )
        since = now
    if now - since < policy.disable_after_ms:
        return
    hours = (now - since) / 3_600_000
    reason = (
        f"Disabled by the server on {datetime.fromtimestamp(now / 1000, tz=UTC):%Y-%m-%d %H:%M} "
        f"UTC: every delivery failed for {hours:.0f} hours in a row."
    )
    disabled = conn.execute(
        update(_w)
        .where(_w.c.id == claim.webhook_pk, _w.c.status == "ACTIVE")
        .values(status="DISABLED", disabled_reason=reason, updated_at=now)
    ).rowcount
    if disabled:
        audit.record(
            conn,
            claim.project_id,
            SYSTEM_ACTOR,
            "webhook.disable",
            f"webhook={claim.webhook_id}",
            {"reason": reason},
        )


def record_test(
    db: Database,
    project_id: int,
    test: TestSend,
    delivery_id: str,
    attempt: Attempt,
    *,
    actor: str,
    address: str = "",
) -> None:
    """A test send, kept with the webhook's deliveries (final at once, never retried) and in
    the audit log."""
    now = now_ms()
    with db.write() as conn:
        conn.execute(
            insert(_d).values(
                delivery_id=delivery_id,
                webhook_pk=test.webhook.pk,
                event=test.event,
                body=test.body.decode(),
                state=DELIVERED if attempt.ok else FAILED,
                test=True,
                attempts=1,
                created_at=now - attempt.duration_ms,
                next_attempt_at=None,
                last_attempt_at=now,
                last_status=attempt.status,
                last_error=attempt.error[:500],
                response_excerpt=attempt.excerpt,
                duration_ms=attempt.duration_ms,
                delivered_at=now if attempt.ok else None,
            )
        )
        audit.record(
            conn,
            project_id,
            actor,
            "webhook.test",
            f"webhook={test.webhook.webhook_id} name={test.webhook.name}",
            {"event": test.event, "status": attempt.status, "error": attempt.error[:200]},
            address,
        )


def prune(db: Database, policy: Policy, *, batch: int = 1000) -> int:
    """Remove finished deliveries (delivered, given up, test sends) whose event is older than
    the policy's retention, in short transactions of ``batch`` rows; pending ones are kept
    whatever their age. Returns how many were removed."""
    if policy.retention_ms <= 0:
        return 0
    cutoff = now_ms() - policy.retention_ms
    old = (
        select(_d.c.id)
        .where(_d.c.state != PENDING, _d.c.created_at < cutoff)
        .limit(batch)
        .scalar_subquery()
    )
    removed = 0
    while True:
        with db.write() as conn:
            count = conn.execute(delete(_d).where(_d.c.id.in_(old))).rowcount
        removed += count
        if count < batch:
            return removed


# ---------------------------------------------------------------- reading deliveries


@dataclass(frozen=True, slots=True)
class Delivery:
    delivery_id: str
    event: str
    state: str
    test: bool
    attempts: int
    created_at: int
    last_attempt_at: int | None
    last_status: int | None
    last_error: str
    response_excerpt: str
    duration_ms: int | None
    delivered_at: int | None
    next_attempt_at: int | None

    @property
    def latency_ms(self) -> int | None:
        """From the event to its delivery."""
        return None if self.delivered_at is None else self.delivered_at - self.created_at


def deliveries(
    db: Database,
    project_id: int,
    webhook_id: str,
    *,
    limit: int = PAGE,
    before: str | None = None,
) -> list[Delivery]:
    """A webhook's deliveries, newest first; ``before`` is a delivery id to page on from."""
    with db.read() as conn:
        pk = conn.execute(
            select(_w.c.id).where(_w.c.webhook_id == webhook_id, _w.c.project_id == project_id)
        ).scalar()
        if pk is None:
            raise NotFound(f"Webhook with ID {webhook_id[:100]} not found.")
        query = select(_d).where(_d.c.webhook_pk == pk).order_by(_d.c.id.desc()).limit(limit)
        if before:
            start = select(_d.c.id).where(and_(_d.c.delivery_id == before, _d.c.webhook_pk == pk))
            query = query.where(_d.c.id < start.scalar_subquery())
        rows = conn.execute(query).all()
    return [
        Delivery(
            delivery_id=r.delivery_id,
            event=r.event,
            state=r.state,
            test=r.test,
            attempts=r.attempts,
            created_at=r.created_at,
            last_attempt_at=r.last_attempt_at,
            last_status=r.last_status,
            last_error=r.last_error,
            response_excerpt=r.response_excerpt,
            duration_ms=r.duration_ms,
            delivered_at=r.delivered_at,
            next_attempt_at=r.next_attempt_at,
        )
        for r in rows
    ]
