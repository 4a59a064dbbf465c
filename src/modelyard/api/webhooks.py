"""The native webhook API under /api/v1: a project's webhooks and each one's deliveries, for
maintainers. Webhooks are created and changed through MLflow's webhook routes or the UI; the
secret is never part of an answer."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from pydantic import Field
from starlette.responses import Response

from modelyard.api.declare import (
    PATH,
    QUERY,
    Args,
    Endpoint,
    Input,
    Link,
    NoBody,
    Out,
    Reply,
    endpoint,
)
from modelyard.api.fields import Millis
from modelyard.api.wire import respond
from modelyard.mlflow_api.wire import call
from modelyard.services import outbox, webhooks
from modelyard.services.outbox import Delivery as StoredDelivery
from modelyard.services.webhooks import Webhook as StoredWebhook

MAX_LIMIT = 1000
_UUID = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
WebhookId = Annotated[str, Field(pattern=_UUID, description="A webhook's id.")]
_NO_WEBHOOK = {404: "No such webhook in the project."}

# Shapes -----------------------------------------------------------------------------------------


class Webhook(Out):
    webhook_id: str
    name: str
    description: str
    url: str
    events: list[str] = Field(description="Events it is sent, e.g. model_version_alias.created.")
    status: str = Field(description="ACTIVE or DISABLED.")
    signed: bool = Field(description="Whether deliveries carry a signature (a secret is set).")
    created_at: Millis
    updated_at: Millis
    failing_since: Millis | None = Field(description="When its deliveries started failing.")
    disabled_reason: str = Field(description="Why the server disabled it, if it did.")


class WebhookList(Out):
    webhooks: list[Webhook]
    next_offset: int | None


class Delivery(Out):
    delivery_id: str = Field(description="The id the receiver sees in each attempt.")
    event: str
    state: str = Field(description="pending, delivered or failed (given up).")
    test: bool = Field(description="A test send.")
    attempts: int
    created_at: Millis
    last_attempt_at: Millis | None
    last_status: int | None = Field(description="The receiver's last HTTP status.")
    last_error: str
    response_excerpt: str = Field(description="The start of the receiver's last answer.")
    duration_ms: int | None = Field(description="How long the last attempt took.")
    latency_ms: int | None = Field(description="From the event to its delivery.")
    delivered_at: Millis | None
    next_attempt_at: Millis | None = Field(description="When the next retry is due.")


class DeliveryList(Out):
    deliveries: list[Delivery]
    next_before: str | None = Field(description="Pass as 'before' for the next (older) page.")


def webhook_json(webhook: StoredWebhook) -> dict[str, Any]:
    return {
        "webhook_id": webhook.webhook_id,
        "name": webhook.name,
        "description": webhook.description,
        "url": webhook.url,
        "events": webhook.events,
        "status": webhook.status,
        "signed": webhook.signed,
        "created_at": webhook.created_at,
        "updated_at": webhook.updated_at,
        "failing_since": webhook.failing_since,
        "disabled_reason": webhook.disabled_reason,
    }


def delivery_json(found: StoredDelivery) -> dict[str, Any]:
    return {
        "delivery_id": found.delivery_id,
        "event": found.event,
        "state": found.state,
        "test": found.test,
        "attempts": found.attempts,
        "created_at": found.created_at,
        "last_attempt_at": found.last_attempt_at,
        "last_status": found.last_status,
        "last_error": found.last_error,
        "response_excerpt": found.response_excerpt,
        "duration_ms": found.duration_ms,
        "latency_ms": found.latency_ms,
        "delivered_at": found.delivered_at,
        "next_attempt_at": found.next_attempt_at,
    }


# Requests ---------------------------------------------------------------------------------------


class WebhookPage(Input):
    limit: Annotated[int, QUERY, Field(ge=1, le=MAX_LIMIT)] = 100
    offset: Annotated[int, QUERY, Field(ge=0, le=2**62)] = 0


class WebhookRef(Input):
    webhook_id: Annotated[WebhookId, PATH]


class DeliveryPage(WebhookRef):
    limit: Annotated[int, QUERY, Field(ge=1, le=MAX_LIMIT)] = 50
    before: Annotated[
        str,
        QUERY,
        Field(
            max_length=100,
            description="A delivery id: the page starts after it (older ones). Empty: the newest.",
        ),
    ] = ""


_TO_WEBHOOK = {"webhook_id": "$response.body#/webhooks/0/webhook_id"}

# Pages ------------------------------------------------------------------------------------------


@endpoint(
    "GET",
    "/webhooks",
    "listWebhooks",
    "The project's webhooks, newest first (maintainers)",
    params=WebhookPage,
    ok=Reply(
        200,
        "The webhooks; the secret is never shown.",
        WebhookList,
        links={
            "first": Link("getWebhook", _TO_WEBHOOK),
            "deliveries": Link("listWebhookDeliveries", _TO_WEBHOOK),
        },
    ),
)
async def list_webhooks(args: Args[WebhookPage, NoBody]) -> Response:
    ctx, query = args.ctx, args.params
    found, more = await call(
        ctx, webhooks.list_webhooks, ctx.db, ctx.project_id, query.limit, None, query.offset
    )
    following = query.offset + query.limit if more else None
    return respond({"webhooks": [webhook_json(w) for w in found], "next_offset": following})


@endpoint(
    "GET",
    "/webhooks/{webhook_id}",
    "getWebhook",
    "A webhook (maintainers)",
    params=WebhookRef,
    ok=Reply(200, "The webhook; the secret is never shown.", Webhook),
    errors=_NO_WEBHOOK,
)
async def get_webhook(args: Args[WebhookRef, NoBody]) -> Response:
    ctx = args.ctx
    found = await call(ctx, webhooks.get, ctx.db, ctx.project_id, args.params.webhook_id)
    return respond(webhook_json(found))


@endpoint(
    "GET",
    "/webhooks/{webhook_id}/deliveries",
    "listWebhookDeliveries",
    "A webhook's deliveries, newest first: attempts, last status, latency, next retry "
    "(maintainers)",
    params=DeliveryPage,
    ok=Reply(200, "The deliveries.", DeliveryList),
    errors=_NO_WEBHOOK,
)
async def list_deliveries(args: Args[DeliveryPage, NoBody]) -> Response:
    ctx, query = args.ctx, args.params
    listing = partial(outbox.deliveries, limit=query.limit + 1, before=query.before or None)
    found = await call(ctx, listing, ctx.db, ctx.project_id, query.webhook_id)
    page = found[: query.limit]
    following = page[-1].delivery_id if len(found) > query.limit else None
    return respond({"deliveries": [delivery_json(d) for d in page], "next_before": following})


ENDPOINTS: tuple[Endpoint[Any, Any], ...] = (list_webhooks, get_webhook, list_deliveries)
