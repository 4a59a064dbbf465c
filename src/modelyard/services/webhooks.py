"""Webhooks of a project: create, read, list, update, delete; every change audited.

A webhook's secret is write-only: it is stored to sign deliveries and leaves the database only
for that. ``Webhook`` carries whether one is set, never the value, and audit entries say that it
changed, never what to.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, Row, delete, insert, select, update

from modelyard.db.engine import Database
from modelyard.db.schema import projects, webhook_deliveries, webhook_events, webhooks
from modelyard.errors import InvalidParameter, NotFound
from modelyard.services import audit
from modelyard.services.entities import now_ms
from modelyard.webhooks.addresses import check_url

#: the events the registry raises (MLflow's names)
EVENTS = (
    "registered_model.created",
    "model_version.created",
    "model_version_tag.set",
    "model_version_tag.deleted",
    "model_version_alias.created",
    "model_version_alias.deleted",
)
ACTIVE = "ACTIVE"
DISABLED = "DISABLED"
STATUSES = (ACTIVE, DISABLED)
MAX_DESCRIPTION = 5000
MAX_SECRET = 1024
MAX_RESULTS = 1000
_NAME = re.compile(r"^(?=.{1,63}$)[a-z0-9]([a-z0-9._-]*[a-z0-9])?$", re.IGNORECASE)


@dataclass(slots=True)
class Webhook:
    webhook_id: str
    name: str
    description: str
    url: str
    events: list[str]
    status: str
    created_at: int
    updated_at: int
    signed: bool
    failing_since: int | None = None
    disabled_reason: str = ""
    pk: int = field(default=0, repr=False)


@dataclass(frozen=True, slots=True)
class Changes:
    """What an update sets; None leaves a field as it is."""

    name: str | None = None
    description: str | None = None
    url: str | None = None
    events: Sequence[str] | None = None
    secret: str | None = None
    status: str | None = None


# ---------------------------------------------------------------- validation


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidParameter(
            f"Webhook name {str(name)[:100]!r} is invalid: 1 to 63 letters, digits, '.', '_' "
            "or '-', starting and ending with a letter or digit."
        )
    return name


def check_events(events: Sequence[str]) -> list[str]:
    if not events:
        raise InvalidParameter("Webhook events must be a non-empty list of events.")
    chosen: list[str] = []
    for event in events:
        if event not in EVENTS:
            raise InvalidParameter(
                f"Unsupported webhook event {str(event)[:100]!r}: one of {', '.join(EVENTS)}."
            )
        if event not in chosen:
            chosen.append(event)
    return chosen


def check_status(status: str) -> str:
    if status not in STATUSES:
        raise InvalidParameter(f"Invalid webhook status {status!r}: ACTIVE or DISABLED.")
    return status


def _text(value: str, limit: int, what: str) -> str:
    if len(value) > limit:
        raise InvalidParameter(f"The webhook {what} exceeds {limit} characters.")
    return value


def _events_column(events: Sequence[str]) -> str:
    return "," + ",".join(events) + ","


def payload(event: str, data: dict[str, Any], project: str, at_ms: int) -> bytes:
    """MLflow's envelope: entity, action, when, the event's data (and the project, as
    MLflow names it when it has workspaces)."""
    entity, action = event.split(".", 1)
    when = datetime.fromtimestamp(at_ms / 1000, tz=UTC).isoformat()
    envelope = {"entity": entity, "action": action, "timestamp": when, "data": data}
    envelope["workspace"] = project
    return orjson.dumps(envelope)


def safe_url(url: str) -> str:
    """The URL as the audit log records it: without its query, which may carry a token."""
    return url.split("?", 1)[0].split("#", 1)[0]


# ---------------------------------------------------------------- reading


def _webhook(row: Row[Any]) -> Webhook:
    return Webhook(
        webhook_id=row.webhook_id,
        name=row.name,
        description=row.description,
        url=row.url,
        events=[e for e in row.events.split(",") if e],
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
        signed=bool(row.secret),
        failing_since=row.failing_since,
        disabled_reason=row.disabled_reason,
        pk=row.id,
    )


def _row(conn: Connection, project_id: int, webhook_id: str | None) -> Row[Any]:
    row = None
    if webhook_id:
        row = conn.execute(
            select(webhooks).where(
                webhooks.c.webhook_id == webhook_id, webhooks.c.project_id == project_id
            )
        ).first()
    if row is None:
        raise NotFound(f"Webhook with ID {str(webhook_id)[:100]} not found.")
    return row


def get(db: Database, project_id: int, webhook_id: str | None) -> Webhook:
    with db.read() as conn:
        return _webhook(_row(conn, project_id, webhook_id))


def secret_of(db: Database, project_id: int, webhook_id: str) -> tuple[Webhook, str]:
    """The webhook and its secret, for signing a delivery (never for showing)."""
    with db.read() as conn:
        row = _row(conn, project_id, webhook_id)
    return _webhook(row), row.secret


def _page_token(last_pk: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"before": last_pk})).decode()


def _before(token: str | None) -> int | None:
    if not token:
        return None
    try:
        before = orjson.loads(base64.urlsafe_b64decode(token.encode()))["before"]
    except (ValueError, TypeError, KeyError):
        raise InvalidParameter("Invalid page token.") from None
    if not isinstance(before, int) or isinstance(before, bool):
        raise InvalidParameter("Invalid page token.")
    return before


def list_webhooks(
    db: Database,
    project_id: int,
    max_results: int = 100,
    page_token: str | None = None,
    offset: int = 0,
) -> tuple[list[Webhook], str | None]:
    """Newest first, ``max_results`` at a time (1 to 1000), from a page token or after
    skipping ``offset``."""
    if not 1 <= max_results <= MAX_RESULTS:
        raise InvalidParameter(f"max_results must be between 1 and {MAX_RESULTS}.")
    query = (
        select(webhooks)
        .where(webhooks.c.project_id == project_id)
        .order_by(webhooks.c.id.desc())
        .limit(max_results + 1)
        .offset(offset)
    )
    before = _before(page_token)
    if before is not None:
        query = query.where(webhooks.c.id < before)
    with db.read() as conn:
        rows = conn.execute(query).all()
    found = [_webhook(r) for r in rows[:max_results]]
    token = _page_token(found[-1].pk) if len(rows) > max_results else None
    return found, token


# ---------------------------------------------------------------- changing


def create(
    db: Database,
    project_id: int,
    *,
    name: Any,
    url: Any,
    events: Sequence[str],
    description: str = "",
    secret: str = "",
    status: str = ACTIVE,
    actor: str,
    address: str = "",
    allow_private: bool = False,
) -> Webhook:
    name = check_name(name)
    check_url(url, allow_private=allow_private)
    chosen = check_events(events)
    description = _text(description or "", MAX_DESCRIPTION, "description")
    secret = _text(secret or "", MAX_SECRET, "secret")
    status = check_status(status or ACTIVE)
    now = now_ms()
    webhook_id = str(uuid.uuid4())
    with db.write() as conn:
        conn.execute(
            insert(webhooks).values(
                webhook_id=webhook_id,
                project_id=project_id,
                name=name,
                description=description,
                url=url,
                secret=secret,
                events=_events_column(chosen),
                status=status,
                created_at=now,
                updated_at=now,
                failing_since=None,
                disabled_reason="",
            )
        )
        details = {"url": safe_url(url), "events": chosen, "status": status, "signed": bool(secret)}
        audit.record(
            conn, project_id, actor, "webhook.create", _target(webhook_id, name), details, address
        )
        return _webhook(_row(conn, project_id, webhook_id))


def _target(webhook_id: str, name: str) -> str:
    return f"webhook={webhook_id} name={name}"


def _values(changes: Changes, allow_private: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The columns an update writes, and what the audit log says of them."""
    values: dict[str, Any] = {}
    if changes.name is not None:
        values["name"] = check_name(changes.name)
    if changes.description is not None:
        values["description"] = _text(changes.description, MAX_DESCRIPTION, "description")
    if changes.url is not None:
        check_url(changes.url, allow_private=allow_private)
        values["url"] = changes.url
    if changes.events is not None:
        values["events"] = _events_column(check_events(changes.events))
    if changes.status is not None:
        values["status"] = check_status(changes.status)
        if values["status"] == ACTIVE:
            values.update(failing_since=None, disabled_reason="")
    details: dict[str, Any] = {
        k: v for k, v in values.items() if k in ("name", "description", "status")
    }
    if "url" in values:
        details["url"] = safe_url(values["url"])
    if "events" in values:
        details["events"] = [e for e in values["events"].split(",") if e]
    if changes.secret is not None:
        values["secret"] = _text(changes.secret, MAX_SECRET, "secret")
        details["secret"] = "changed" if changes.secret else "removed"
    return values, details


def update_webhook(
    db: Database,
    project_id: int,
    webhook_id: str | None,
    changes: Changes,
    *,
    actor: str,
    address: str = "",
    allow_private: bool = False,
) -> Webhook:
    values, details = _values(changes, allow_private)
    with db.write() as conn:
        row = _row(conn, project_id, webhook_id)
        conn.execute(
            update(webhooks).where(webhooks.c.id == row.id).values(updated_at=now_ms(), **values)
        )
        audit.record(
            conn,
            project_id,
            actor,
            "webhook.update",
            _target(row.webhook_id, values.get("name", row.name)),
            details,
            address,
        )
        return _webhook(_row(conn, project_id, row.webhook_id))


def delete_webhook(
    db: Database, project_id: int, webhook_id: str | None, *, actor: str, address: str = ""
) -> None:
    """The webhook and its deliveries (those not yet sent are dropped)."""
    with db.write() as conn:
        row = _row(conn, project_id, webhook_id)
        conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.webhook_pk == row.id))
        conn.execute(delete(webhooks).where(webhooks.c.id == row.id))
        audit.record(
            conn,
            project_id,
            actor,
            "webhook.delete",
            _target(row.webhook_id, row.name),
            {"url": safe_url(row.url)},
            address,
        )


# ---------------------------------------------------------------- test sends

#: the data of each event's example, as a test send carries it
EXAMPLES: dict[str, dict[str, Any]] = {
    "registered_model.created": {
        "name": "example_model",
        "tags": {"example_key": "example_value"},
        "description": "An example registered model",
    },
    "model_version.created": {
        "name": "example_model",
        "version": "1",
        "source": "models:/123",
        "run_id": "abcd1234abcd5678",
        "tags": {"example_key": "example_value"},
        "description": "An example model version",
    },
    "model_version_tag.set": {
        "name": "example_model",
        "version": "1",
        "key": "example_key",
        "value": "example_value",
    },
    "model_version_tag.deleted": {"name": "example_model", "version": "1", "key": "example_key"},
    "model_version_alias.created": {
        "name": "example_model",
        "alias": "example_alias",
        "version": "1",
    },
    "model_version_alias.deleted": {"name": "example_model", "alias": "example_alias"},
}


@dataclass(frozen=True, slots=True)
class TestSend:
    """What a test send needs: the webhook, its secret, the event and the signed body."""

    webhook: Webhook
    secret: str
    event: str
    body: bytes


def prepare_test(
    db: Database, project_id: int, webhook_id: str | None, event: str | None
) -> TestSend:
    with db.read() as conn:
        row = _row(conn, project_id, webhook_id)
        project = conn.execute(
            select(projects.c.name).where(projects.c.id == project_id)
        ).scalar_one()
    webhook = _webhook(row)
    chosen = check_events([event])[0] if event else webhook.events[0]
    body = payload(chosen, EXAMPLES[chosen], project, now_ms())
    return TestSend(webhook, row.secret, chosen, body)


def purge_project(conn: Connection, project_id: int) -> None:
    """Every webhook of a project being purged, with its events and deliveries."""
    owned = select(webhooks.c.id).where(webhooks.c.project_id == project_id)
    conn.execute(delete(webhook_events).where(webhook_events.c.project_id == project_id))
    conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.webhook_pk.in_(owned)))
    conn.execute(delete(webhooks).where(webhooks.c.project_id == project_id))
