"""The outbox on both databases: a change keeps one event row whatever the number of webhooks
listening; the worker's fan-out turns waiting events into one delivery per webhook, in event
order, skips webhooks deleted meanwhile, and removes what it took."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from modelyard.db.engine import Database
from modelyard.db.migrate import ensure_schema
from modelyard.services import outbox, webhooks

EVENT = "model_version_alias.created"


def _count(db: Database, table: str) -> int:
    with db.read() as conn:
        return int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_one_event_row_then_one_delivery_per_webhook_in_order(make_backend, kind: str) -> None:
    db = Database(make_backend(kind).url)
    ensure_schema(db)
    hooks = [
        webhooks.create(
            db,
            1,
            name=f"h{n}",
            url="https://hooks.example.com/x",
            events=[EVENT],
            actor="test",
        )
        for n in range(3)
    ]
    for version in range(1, 6):
        with db.write() as conn:
            queued = outbox.emit(
                conn, 1, EVENT, {"name": "m", "alias": "a", "version": str(version)}
            )
        assert queued == 3
    assert _count(db, "webhook_events") == 5
    assert _count(db, "webhook_deliveries") == 0

    webhooks.delete_webhook(db, 1, hooks[2].webhook_id, actor="test")
    with db.write() as conn:
        assert outbox.fan_out(conn, limit=2) == 2
    with db.write() as conn:
        assert outbox.fan_out(conn) == 3
    with db.write() as conn:
        assert outbox.fan_out(conn) == 0
    assert _count(db, "webhook_events") == 0

    with db.read() as conn:
        rows = conn.execute(
            text("SELECT webhook_pk, body, state, delivery_id FROM webhook_deliveries ORDER BY id")
        ).all()
    kept = {hooks[0].pk, hooks[1].pk}
    assert {row.webhook_pk for row in rows} == kept  # the deleted webhook gets nothing
    assert len({row.delivery_id for row in rows}) == len(rows) == 10
    assert all(row.state == "pending" for row in rows)
    for pk in kept:
        versions = [row.body for row in rows if row.webhook_pk == pk]
        assert len(versions) == 5
        for n, body in enumerate(versions, start=1):
            assert f'"version":"{n}"' in body


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_no_webhook_listening_writes_nothing(make_backend, kind: str) -> None:
    db = Database(make_backend(kind).url)
    ensure_schema(db)
    webhooks.create(
        db,
        1,
        name="other",
        url="https://hooks.example.com/x",
        events=["registered_model.created"],
        actor="test",
    )
    with db.write() as conn:
        assert outbox.emit(conn, 1, EVENT, {"name": "m", "alias": "a", "version": "1"}) == 0
    assert _count(db, "webhook_events") == 0


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_an_event_listing_no_webhook_is_only_removed(make_backend, kind: str) -> None:
    db = Database(make_backend(kind).url)
    ensure_schema(db)
    with db.write() as conn:
        conn.execute(
            text(
                "INSERT INTO webhook_events (project_id, event, body, webhook_pks, created_at) "
                "VALUES (1, :event, '{}', '', 0)"
            ),
            {"event": EVENT},
        )
    with db.write() as conn:
        assert outbox.fan_out(conn) == 1
    assert _count(db, "webhook_events") == 0
    assert _count(db, "webhook_deliveries") == 0
