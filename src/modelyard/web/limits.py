"""How long and how large a request may be, and how much a project may store.

- **Headers**: a connection has ``header_timeout`` seconds, from its first byte (or from the
  first byte of its next request), to finish a request's headers; then it gets 408 and is
  closed. A connection that sends nothing is closed after the same time. Slowloris clients
  trickling a header byte at a time no longer hold connections open. This is done in the HTTP
  protocol itself (``protocol``), since the application sees a request only once its headers
  are in.
- **Body**: while a handler waits for more of a request body, at most ``body_timeout`` seconds
  may pass without a byte arriving (408 ``DEADLINE_EXCEEDED``); a body longer than
  ``max_upload`` bytes is refused as soon as its length is announced or reached (413
  ``RESOURCE_LIMIT_EXCEEDED``); an upload into a project (a route whose rule counts against
  the quota) that would take the project's stored bytes over ``quota`` is refused the same way
  (413 ``QUOTA_EXCEEDED``). These are errors raised from the request's ``receive``: the
  handler's upload stops, its bytes are dropped (``web.transfer.store_stream``) and the
  handler answers in its own error format.
- Any response that starts before the request body was read to its end closes the connection,
  so a client can never keep one busy by streaming a body nobody reads.

The protocol also holds a response's head until its first body bytes are written, and sends
both with one write: one segment and one wake-up of the client instead of two, which on a
small answer (log-metric) is a good part of the server's time per call.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from modelyard.auth.gate import PROJECT, RULE
from modelyard.db.engine import Database
from modelyard.errors import QuotaExceeded, RequestTimeout, TooLarge
from modelyard.services import packages

if TYPE_CHECKING:
    from modelyard.settings import Settings

MIB = 1024 * 1024
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 42\r\n"
    b"connection: close\r\n"
    b"\r\n"
    b"The request headers took too long to send."
)
_CLOSE = (b"connection", b"close")


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol with a deadline for request headers."""

    header_timeout: float = 20.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        self._started = False  # some bytes of a request arrived, its headers are not complete
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        if self.header_timeout > 0 and self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._started = True
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        self._started = False
        super().on_headers_complete()
        # (a HEAD response has no body write to carry its head)
        if self.cycle is not None and self.cycle.scope["method"] != "HEAD":
            self.cycle.transport = _Coalescing(self.transport)  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm()  # a response is on its way; the next request's clock starts again
            return
        if self._started:
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


class _Coalescing:
    """A response's view of the connection: the head of a final (not 1xx) response is held
    until the next write, or the close, and goes out with it in one write."""

    __slots__ = ("_head", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._head is not None:
            data, self._head = self._head + data, None
        elif data.startswith(b"HTTP/1.1 ") and not data.startswith(b"HTTP/1.1 1"):
            self._head = data
            return
        self._transport.write(data)

    def close(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            self._transport.write(head)
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def protocol(header_timeout: float) -> type[GuardedProtocol]:
    """The HTTP protocol class for uvicorn, with this header deadline (0: none)."""
    return type("GuardedProtocol", (GuardedProtocol,), {"header_timeout": header_timeout})


def _declared(scope: Scope) -> tuple[bool, int | None]:
    """Whether the request has a body, and its announced length (None: chunked)."""
    length: int | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None
        elif name == b"transfer-encoding":
            chunked = True
    if chunked:
        return True, None
    return bool(length), length


class BodyLimits:
    """ASGI middleware: the body deadline, the upload limit and the project quota."""

    def __init__(
        self, app: ASGIApp, *, db: Database, max_upload: int, body_timeout: float, quota: int
    ) -> None:
        self.app = app
        self.db = db
        self.max_upload = max_upload
        self.body_timeout = body_timeout
        self.quota = quota

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        has_body, length = _declared(scope)
        if not has_body:
            await self.app(scope, receive, send)
            return
        body = _Body(self, scope, receive, length)

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and not body.complete:
                message["headers"] = [*message.get("headers", []), _CLOSE]
            await send(message)

        await self.app(scope, body.receive, send_closing)

    async def remaining_quota(self, scope: Scope) -> int | None:
        """Bytes the project may still store, for a route that counts against the quota."""
        rule = scope.get(RULE)
        project_id = scope.get(PROJECT)
        if self.quota <= 0 or rule is None or not rule.quota or project_id is None:
            return None
        if self.db.is_sqlite:
            used = packages.stored_bytes(self.db, project_id)
        else:
            used = await run_in_threadpool(packages.stored_bytes, self.db, project_id)
        return self.quota - used


class _Body:
    """One request's ``receive``, with the limits applied until its body is complete."""

    def __init__(self, limits: BodyLimits, scope: Scope, receive: Receive, length: int | None):
        self.limits = limits
        self.scope = scope
        self.inner = receive
        self.length = length
        self.received = 0
        self.complete = False
        self.allowed: int | None = None  # bytes under the quota; None: no quota applies
        self.started = False

    async def receive(self) -> Message:
        if self.complete:
            return await self.inner()
        if not self.started:
            self.started = True
            await self._admit()
        message = await self._next()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self._check(self.received)
            if not message.get("more_body", False):
                self.complete = True
        else:
            self.complete = True
        return message

    async def _next(self) -> Message:
        timeout = self.limits.body_timeout
        if timeout <= 0:
            return await self.inner()
        try:
            async with asyncio.timeout(timeout):
                return await self.inner()
        except TimeoutError:
            raise RequestTimeout(
                f"No byte of the request body arrived for {timeout:g} seconds; the request "
                "was dropped and nothing was stored."
            ) from None

    async def _admit(self) -> None:
        """Refuse at once what the announced length already tells is too much."""
        self.allowed = await self.limits.remaining_quota(self.scope)
        if self.allowed is not None and self.allowed <= 0:
            raise _over_quota(self.limits.quota, self.allowed)
        if self.length is not None:
            self._check(self.length)

    def _check(self, size: int) -> None:
        limit = self.limits.max_upload
        if limit > 0 and size > limit:
            raise TooLarge(
                f"The request body is larger than this server accepts ({_mib(limit)}); "
                "nothing was stored."
            )
        if self.allowed is not None and size > self.allowed:
            raise _over_quota(self.limits.quota, self.allowed)


def _mib(size: int) -> str:
    return f"{size / MIB:,.1f} MiB"


def _over_quota(quota: int, allowed: int) -> QuotaExceeded:
    used = quota - allowed
    return QuotaExceeded(
        f"This upload would take the project over its storage quota of {_mib(quota)} "
        f"({_mib(max(used, 0))} used); nothing was stored. Delete packages, candidates or "
        "versions (then run `modelyard gc`), or ask an administrator for a larger quota."
    )


def middleware_options(settings: Settings) -> dict[str, Any]:
    """The middleware's options from the settings."""
    return {
        "max_upload": settings.max_upload_mib * MIB,
        "body_timeout": settings.body_timeout,
        "quota": settings.project_quota_mib * MIB,
    }
