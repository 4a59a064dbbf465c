"""MLflow's webhook endpoints (``/webhooks``, ``/webhooks/{webhook_id}``, ``…/test``) and the
``Webhook`` JSON shape of its ``webhooks.proto``: events as ``{"entity", "action"}`` enum
names, the status as ``ACTIVE``/``DISABLED``, and never the secret."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from modelyard.errors import InvalidParameter, ModelyardError
from modelyard.mlflow_api.wire import Context, Message, endpoint, error_response, respond
from modelyard.services import webhooks
from modelyard.services.webhooks import Changes, Webhook
from modelyard.webhooks.worker import send_test

#: the proto enums' numbers, for clients that send them instead of names
_ENTITIES = {
    1: "registered_model",
    2: "model_version",
    3: "model_version_tag",
    4: "model_version_alias",
    5: "prompt",
    6: "prompt_version",
    7: "prompt_tag",
    8: "prompt_version_tag",
    9: "prompt_alias",
    10: "budget_policy",
}
_ACTIONS = {1: "created", 2: "updated", 3: "deleted", 4: "set", 5: "exceeded"}
_STATUSES = {1: webhooks.ACTIVE, 2: webhooks.DISABLED}


def webhook_json(webhook: Webhook) -> dict[str, Any]:
    out: dict[str, Any] = {
        "webhook_id": webhook.webhook_id,
        "name": webhook.name,
        "url": webhook.url,
        "events": [event_json(e) for e in webhook.events],
        "status": webhook.status,
        "creation_timestamp": webhook.created_at,
        "last_updated_timestamp": webhook.updated_at,
    }
    if webhook.description:
        out["description"] = webhook.description
    return out


def event_json(event: str) -> dict[str, str]:
    entity, action = event.split(".", 1)
    return {"entity": entity.upper(), "action": action.upper()}


def _enum(value: Any, numbers: dict[int, str], what: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        if value in numbers:
            return numbers[value]
    elif isinstance(value, str) and value:
        return value.lower()
    raise InvalidParameter(f"Invalid webhook event {what} {str(value)[:100]!r}.")


def parse_event(value: Any) -> str:
    """``{"entity": "MODEL_VERSION", "action": "CREATED"}`` (or ``"model_version.created"``)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        raise InvalidParameter(f"Invalid webhook event {str(value)[:100]!r}.")
    entity = _enum(value.get("entity"), _ENTITIES, "entity")
    action = _enum(value.get("action"), _ACTIONS, "action")
    return f"{entity}.{action}"


def _events(msg: Message) -> list[str] | None:
    value = msg.data.get("events")
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidParameter("Webhook events must be a list of events.")
    return [parse_event(v) for v in value]


def _status(msg: Message) -> str | None:
    value = msg.data.get("status")
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value in _STATUSES:
            return _STATUSES[value]
    elif isinstance(value, str):
        return webhooks.check_status(value.upper())
    raise InvalidParameter(f"Invalid webhook status {str(value)[:100]!r}: ACTIVE or DISABLED.")


def _text(msg: Message, name: str) -> str | None:
    value = msg.data.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidParameter(f"Invalid value for parameter '{name}': expected a string.")
    return value


# ---------------------------------------------------------------- handlers


def create(allow_private: bool, ctx: Context, msg: Message) -> dict[str, Any]:
    name = msg.required("name")
    url = msg.required("url")
    events = _events(msg)
    if not events:
        raise InvalidParameter("Missing value for required parameter 'events'.")
    webhook = webhooks.create(
        ctx.db,
        ctx.project_id,
        name=name,
        url=url,
        events=events,
        description=_text(msg, "description") or "",
        secret=_text(msg, "secret") or "",
        status=_status(msg) or webhooks.ACTIVE,
        actor=ctx.actor,
        address=ctx.address,
        allow_private=allow_private,
    )
    return {"webhook": webhook_json(webhook)}


def list_all(ctx: Context, msg: Message) -> dict[str, Any]:
    found, token = webhooks.list_webhooks(
        ctx.db,
        ctx.project_id,
        msg.int64("max_results", default=100) or 100,
        msg.string("page_token"),
    )
    out: dict[str, Any] = {"webhooks": [webhook_json(w) for w in found]}
    if token:
        out["next_page_token"] = token
    return out


def get(ctx: Context, msg: Message) -> dict[str, Any]:
    return {"webhook": webhook_json(webhooks.get(ctx.db, ctx.project_id, msg.string("webhook_id")))}


def update(allow_private: bool, ctx: Context, msg: Message) -> dict[str, Any]:
    changes = Changes(
        name=_text(msg, "name") or None,
        description=_text(msg, "description"),
        url=_text(msg, "url") or None,
        events=_events(msg) or None,
        secret=_text(msg, "secret"),
        status=_status(msg),
    )
    webhook = webhooks.update_webhook(
        ctx.db,
        ctx.project_id,
        msg.string("webhook_id"),
        changes,
        actor=ctx.actor,
        address=ctx.address,
        allow_private=allow_private,
    )
    return {"webhook": webhook_json(webhook)}


def delete(ctx: Context, msg: Message) -> dict[str, Any]:
    webhooks.delete_webhook(
        ctx.db, ctx.project_id, msg.string("webhook_id"), actor=ctx.actor, address=ctx.address
    )
    return {}


def test(allow_private: bool, ctx: Context, msg: Message) -> dict[str, Any]:
    event = msg.data.get("event")
    _delivery_id, attempt = send_test(
        ctx.db,
        ctx.project_id,
        msg.string("webhook_id"),
        None if event in (None, {}, "") else parse_event(event),
        actor=ctx.actor,
        address=ctx.address,
        allow_private=allow_private,
    )
    result: dict[str, Any] = {"success": attempt.ok}
    if attempt.status is not None:
        result["response_status"] = attempt.status
        result["response_body"] = attempt.excerpt
    if attempt.error:
        result["error_message"] = f"Failed to test webhook: {attempt.error}"
    return {"result": result}


def _threaded(
    handler: Callable[[Context, Message], dict[str, Any]],
    context_of: Callable[[Request], Context],
) -> Callable[[Request], Awaitable[Response]]:
    """Like ``wire.endpoint``, but always off the event loop: a test send waits on the
    receiver for up to its timeout."""

    async def route(request: Request) -> Response:
        try:
            message = await Message.read(request)
            message.data.update(request.path_params)
            result = await run_in_threadpool(handler, context_of(request), message)
        except ModelyardError as exc:
            return error_response(exc.code, exc.message)
        return respond(result)

    return route


def routes(
    prefixes: tuple[str, ...], context_of: Callable[[Request], Context], allow_private: bool
) -> list[BaseRoute]:
    one = "/webhooks/{webhook_id}"
    table: list[tuple[str, str, Callable[[Request], Awaitable[Response]]]] = [
        ("/webhooks", "POST", endpoint(partial(create, allow_private), context_of)),
        ("/webhooks", "GET", endpoint(list_all, context_of)),
        (one, "GET", endpoint(get, context_of)),
        (one, "PATCH", endpoint(partial(update, allow_private), context_of)),
        (one, "DELETE", endpoint(delete, context_of)),
        (one + "/test", "POST", _threaded(partial(test, allow_private), context_of)),
    ]
    return [
        Route(prefix + path, handler, methods=[method])
        for prefix in prefixes
        for path, method, handler in table
    ]
