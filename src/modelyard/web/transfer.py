"""Bytes between HTTP and the blob store, streamed both ways with bounded memory.

Uploads: the request body's pieces are gathered until they make ``CHUNK`` bytes; each such
chunk is hashed and written (as a list of pieces, never joined) by a worker thread while the
next one is being received, so the network, the hash and the disk (or the bucket) work at the
same time. At most two chunks are held at once.

Downloads: chunks are read by a worker thread, the next read starting before the previous chunk
is sent; the server's send waits while the client is slower than the disk, so memory stays
bounded whatever the size of the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from modelyard.blobs import BlobReader, BlobStore, BlobWriter, StoredBlob, UnsafeBlob
from modelyard.errors import DataLoss

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024  # small enough that each piece is still in the CPU cache when written
#: every download is a sandboxed document: even if a browser renders it, it runs no script,
#: submits no form and reaches no origin (added to the security headers every response has)
DOWNLOAD_CSP = (
    "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


class UnreadableBlob(DataLoss):
    """A file's stored bytes are missing, or refused by the store (e.g. a planted link)."""


def unreadable(location: str, exc: BaseException) -> UnreadableBlob:
    """The error for bytes the store cannot give back; logged with the store's reason."""
    if isinstance(exc, UnsafeBlob):
        log.error("Refusing to serve blob %s: %s", location, exc)
        return UnreadableBlob(
            "The stored bytes of this file failed an integrity check and are not served; "
            "an administrator should run `modelyard fsck`."
        )
    log.error("Cannot read blob %s: %s", location, exc)
    return UnreadableBlob("The stored bytes of this file cannot be read; run `modelyard fsck`.")


SEND_CHUNK = 1024 * 1024
SMALL = 256 * 1024  # ranges up to this size are read in one call


def unwritable(exc: UnsafeBlob) -> UnreadableBlob:
    """The error for an upload the store refused to write through a planted link."""
    log.error("Refusing to write into the blob store: %s", exc)
    return UnreadableBlob(
        "The blob store holds a link (or something else the server never writes) where this "
        "upload would go; nothing was stored. An administrator should run `modelyard fsck`."
    )


async def store_stream(store: BlobStore, body: AsyncIterator[bytes]) -> StoredBlob:
    """Write a body into the store; the blob is durable when this returns. A body of up to
    one chunk (and the piece that completes it) is stored with a single call to a worker
    thread; the last chunk of a longer one is written and made durable in one call."""
    try:
        return await _store_stream(store, body)
    except UnsafeBlob as exc:
        raise unwritable(exc) from exc


def _write_and_finish(writer: BlobWriter, pieces: list[bytes]) -> StoredBlob:
    if pieces:
        writer.write_pieces(pieces)
    return writer.finish()


async def _store_stream(store: BlobStore, body: AsyncIterator[bytes]) -> StoredBlob:
    writer: BlobWriter | None = None
    pending: asyncio.Future[None] | None = None
    pieces: list[bytes] = []
    size = 0
    try:
        async for piece in body:
            if not piece:
                continue
            if size >= CHUNK:
                # More of the body follows: the gathered chunk goes to the store now.
                if writer is None:
                    writer = await run_in_threadpool(store.writer)
                if pending is not None:
                    await pending
                chunk, pieces, size = pieces, [], 0
                pending = asyncio.ensure_future(run_in_threadpool(writer.write_pieces, chunk))
            pieces.append(piece)
            size += len(piece)
        if writer is None:
            return await run_in_threadpool(store.put_pieces, pieces)
        if pending is not None:
            await pending
            pending = None
        return await run_in_threadpool(_write_and_finish, writer, pieces)
    except BaseException:
        if pending is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(pending)
        if writer is not None:
            await asyncio.shield(run_in_threadpool(writer.abort))
        raise


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The byte range of a ``Range: bytes=a-b`` header as (start, end-exclusive), or None for
    the whole file. Raises ValueError when the range cannot be satisfied."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # several ranges or other units: answer with the whole file
    first, _, last = spec.strip().partition("-")
    if first == "":
        if not last.isdigit() or int(last) == 0:
            raise ValueError(header)
        start, end = max(size - int(last), 0), size
    else:
        if not first.isdigit() or (last and not last.isdigit()):
            return None
        start = int(first)
        end = min(int(last) + 1, size) if last else size
    if start >= size or start >= end:
        raise ValueError(header)
    return start, end


class BlobResponse(Response):
    """Streams ``[start, end)`` of a blob."""

    def __init__(
        self,
        store: BlobStore,
        location: str,
        start: int,
        end: int,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
    ) -> None:
        self.store = store
        self.location = location
        self.start = start
        self.end = end
        self.status_code = status_code
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)
        self.headers["content-length"] = str(end - start)
        self.headers.setdefault("content-security-policy", DOWNLOAD_CSP)

    async def __call__(self, scope: Scope, _receive: Receive, send: Send) -> None:
        # The bytes are opened (or, when small, read) before the status line goes out, so that
        # a blob the store cannot give back is a clean error response, not a cut-off body.
        head_only = scope.get("method") == "HEAD" or self.end <= self.start
        small: bytes | None = None
        reader: BlobReader | None = None
        if not head_only:
            try:
                if self.end - self.start <= SMALL:
                    small = await self._small()
                else:
                    reader = await run_in_threadpool(
                        self.store.open, self.location, self.start, self.end
                    )
            except Exception as exc:
                raise unreadable(self.location, exc) from exc
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        if reader is None:
            await send({"type": "http.response.body", "body": small or b""})
            return
        try:
            chunk = await run_in_threadpool(reader.read, SEND_CHUNK)
            while chunk:
                following = asyncio.ensure_future(run_in_threadpool(reader.read, SEND_CHUNK))
                try:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except BaseException:
                    with contextlib.suppress(BaseException):
                        await following
                    raise
                chunk = await following
            await send({"type": "http.response.body", "body": b""})
        finally:
            await run_in_threadpool(reader.close)

    async def _small(self) -> bytes:
        if self.store.inline_reads:
            return self.store.read_bytes(self.location, self.start, self.end)
        return await run_in_threadpool(self.store.read_bytes, self.location, self.start, self.end)
