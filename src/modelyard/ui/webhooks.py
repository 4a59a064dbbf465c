"""The maintainers' webhook pages: a project's webhooks with a form for a new one, and a
webhook's page: its deliveries (event, attempts, last status, latency, next retry, given up),
a banner when the server disabled it, "send test", enable/disable and delete. Every change
goes through the webhook services, which audit it; the secret is never shown."""

from __future__ import annotations

from functools import partial
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from modelyard.errors import InvalidParameter
from modelyard.mlflow_api.wire import Context, call
from modelyard.services import outbox, webhooks
from modelyard.services.webhooks import Changes
from modelyard.ui.render import form, page, prefix, redirect
from modelyard.webhooks.worker import send_test


def _allow_private(request: Request) -> bool:
    return bool(request.app.state.settings.webhook_allow_private)


def _webhook_id(request: Request) -> str:
    return str(request.path_params["webhook_id"])


def _url(request: Request, webhook_id: str = "") -> str:
    base = f"{prefix(request)}/ui/webhooks"
    return f"{base}/{quote(webhook_id, safe='')}" if webhook_id else base


async def webhook_list(request: Request, ctx: Context) -> Response:
    found, _token = await call(ctx, webhooks.list_webhooks, ctx.db, ctx.project_id, 1000)
    return page(
        request,
        "webhooks.html",
        webhooks=found,
        events=webhooks.EVENTS,
        saved=request.query_params.get("saved", ""),
    )


async def create(request: Request, ctx: Context) -> Response:
    fields = await form(request)
    chosen = [e for e in webhooks.EVENTS if fields.get(f"event.{e}")]
    if not chosen:
        raise InvalidParameter("Choose at least one event.")
    created = await call(
        ctx,
        partial(
            webhooks.create,
            ctx.db,
            ctx.project_id,
            name=fields.get("name", "").strip(),
            url=fields.get("url", "").strip(),
            events=chosen,
            description=fields.get("description", ""),
            secret=fields.get("secret", ""),
            actor=ctx.actor,
            address=ctx.address,
            allow_private=_allow_private(request),
        ),
    )
    return redirect(_url(request, created.webhook_id) + "?saved=created")


async def webhook_page(request: Request, ctx: Context) -> Response:
    webhook_id = _webhook_id(request)
    webhook = await call(ctx, webhooks.get, ctx.db, ctx.project_id, webhook_id)
    deliveries = await call(
        ctx,
        partial(
            outbox.deliveries,
            ctx.db,
            ctx.project_id,
            webhook_id,
            before=request.query_params.get("before") or None,
        ),
    )
    return page(
        request,
        "webhook.html",
        webhook=webhook,
        deliveries=deliveries,
        events=webhooks.EVENTS,
        saved=request.query_params.get("saved", ""),
        page_size=outbox.PAGE,
    )


async def test(request: Request, ctx: Context) -> Response:
    fields = await form(request)
    webhook_id = _webhook_id(request)
    event = fields.get("event") or None
    # a test waits on the receiver: always off the event loop
    _delivery, attempt = await run_in_threadpool(
        partial(
            send_test,
            ctx.db,
            ctx.project_id,
            webhook_id,
            event,
            actor=ctx.actor,
            address=ctx.address,
            allow_private=_allow_private(request),
        )
    )
    outcome = "test-ok" if attempt.ok else "test-failed"
    return redirect(_url(request, webhook_id) + f"?saved={outcome}#deliveries")


async def set_status(request: Request, ctx: Context) -> Response:
    fields = await form(request)
    webhook_id = _webhook_id(request)
    status = fields.get("status", "")
    await call(
        ctx,
        partial(
            webhooks.update_webhook,
            ctx.db,
            ctx.project_id,
            webhook_id,
            Changes(status=webhooks.check_status(status)),
            actor=ctx.actor,
            address=ctx.address,
        ),
    )
    return redirect(_url(request, webhook_id) + f"?saved={status.lower()}")


async def delete(request: Request, ctx: Context) -> Response:
    await form(request)
    await call(
        ctx,
        partial(
            webhooks.delete_webhook,
            ctx.db,
            ctx.project_id,
            _webhook_id(request),
            actor=ctx.actor,
            address=ctx.address,
        ),
    )
    return redirect(_url(request) + "?saved=deleted")
