"""A package version as one tar archive, streamed straight from the blob store.

Every member's header is computed before the first byte is sent, so the archive's length is
known up front (``Content-Length``) and nothing is copied to a temporary file: the response
writes each header, then the blob's bytes as the store reads them, then the padding to the
next 512-byte block, and finally the two zero blocks that end a tar archive.
"""

from __future__ import annotations

import asyncio
import contextlib
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from modelyard.blobs import BlobReader, BlobStore
from modelyard.web.transfer import DOWNLOAD_CSP, unreadable

BLOCK = tarfile.BLOCKSIZE
END_OF_ARCHIVE = bytes(2 * BLOCK)
SEND_CHUNK = 1024 * 1024
MEDIA_TYPE = "application/x-tar"


@dataclass(frozen=True, slots=True)
class Member:
    """One regular file of the archive: its header and where its bytes come from, either a
    blob ``location`` in the store or ``data`` held here."""

    header: bytes
    size: int
    location: str | None = None
    data: bytes = b""

    @property
    def length(self) -> int:
        """The bytes this member takes in the archive, header and padding included."""
        return len(self.header) + self.size + padding(self.size)


def padding(size: int) -> int:
    return -size % BLOCK


def member(name: str, size: int, mtime: int, *, location: str | None = None) -> Member:
    """A member whose bytes are the blob at ``location``."""
    return Member(_header(name, size, mtime), size, location=location)


def inline_member(name: str, data: bytes, mtime: int) -> Member:
    """A member whose (small) content is given here."""
    return Member(_header(name, len(data), mtime), len(data), data=data)


def _header(name: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = mtime
    info.type = tarfile.REGTYPE
    return info.tobuf(format=tarfile.PAX_FORMAT)


def archive_length(members: Sequence[Member]) -> int:
    return sum(m.length for m in members) + len(END_OF_ARCHIVE)


class TarResponse(Response):
    """Streams ``members`` as a tar archive of a length known before it starts."""

    def __init__(
        self,
        store: BlobStore,
        members: Sequence[Member],
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.members = list(members)
        self.status_code = 200
        self.media_type = MEDIA_TYPE
        self.background = None
        self.init_headers(headers)
        self.headers["content-length"] = str(archive_length(self.members))
        self.headers.setdefault("content-security-policy", DOWNLOAD_CSP)

    def _check(self) -> None:
        """Every member's bytes are there and are plain stored blobs (a cheap look in a local
        folder), so a damaged store is a clean error rather than a cut-off archive."""
        for item in self.members:
            if item.location is None:
                continue
            try:
                size = self.store.size(item.location)
            except Exception as exc:
                raise unreadable(item.location, exc) from exc
            if size is None:
                raise unreadable(item.location, FileNotFoundError(item.location))

    async def __call__(self, scope: Scope, _receive: Receive, send: Send) -> None:
        if self.store.inline_reads:
            self._check()
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        if scope.get("method") == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        out = _Sender(send)
        for item in self.members:
            await out.add(item.header)
            if item.location is None:
                await out.add(item.data)
            else:
                await self._blob(item, out)
            await out.add(bytes(padding(item.size)))
        await out.add(END_OF_ARCHIVE)
        await out.finish()

    async def _blob(self, item: Member, out: _Sender) -> None:
        assert item.location is not None
        if item.size == 0:
            return
        reader: BlobReader = await run_in_threadpool(self.store.open, item.location, 0, item.size)
        sent = 0
        try:
            chunk = await run_in_threadpool(reader.read, SEND_CHUNK)
            while chunk:
                sent += len(chunk)
                following = asyncio.ensure_future(run_in_threadpool(reader.read, SEND_CHUNK))
                try:
                    await out.add(chunk)
                except BaseException:
                    with contextlib.suppress(BaseException):
                        await following
                    raise
                chunk = await following
        finally:
            await run_in_threadpool(reader.close)
        if sent != item.size:
            # The announced length can no longer be met: end the response without its last
            # bytes, so the client sees a truncated download rather than a corrupt archive.
            raise OSError(
                f"Blob {item.location} holds {sent} bytes where {item.size} were recorded."
            )


class _Sender:
    """Gathers small pieces (headers, padding, small files) into chunks of about
    ``SEND_CHUNK`` bytes; large pieces go out as they are."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.buffer = bytearray()

    async def add(self, data: bytes) -> None:
        if not data:
            return
        if len(data) >= SEND_CHUNK:
            await self._flush()
            await self._send(data)
            return
        self.buffer += data
        if len(self.buffer) >= SEND_CHUNK:
            await self._flush()

    async def _flush(self) -> None:
        if self.buffer:
            data, self.buffer = bytes(self.buffer), bytearray()
            await self._send(data)

    async def _send(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def finish(self) -> None:
        await self._flush()
        await self.send({"type": "http.response.body", "body": b""})
