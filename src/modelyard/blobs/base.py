"""The blob store interface.

A blob is an immutable byte string stored at a *location* the store chooses itself (never one a
client supplied). Writers stream bytes in while hashing them; ``finish`` returns only once the
bytes are durable, and only then may a database row point at the location. A crash before
that leaves an orphan that garbage collection removes.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

READ_CHUNK = 1024 * 1024


class UnsafeBlob(Exception):
    """Something other than a stored blob sits where a blob should be: a symbolic link (to
    the blob or to a folder on its way), a folder, a device. Such bytes are never served,
    written through or deleted through; ``modelyard fsck`` lists them."""


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """Bytes made durable at ``location``: their sha256 (hex) and size."""

    sha256: str
    size: int
    location: str


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object found in the store when listing it (for gc and fsck)."""

    location: str
    size: int
    modified: float  # seconds since the epoch


@dataclass(frozen=True, slots=True)
class PendingUpload:
    """A multipart upload the store still holds open."""

    location: str
    upload_id: str
    started: float  # seconds since the epoch


class BlobWriter(ABC):
    """Receives one blob's bytes in order."""

    @abstractmethod
    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    def write_pieces(self, pieces: Sequence[bytes | bytearray | memoryview]) -> None:
        """Several pieces, in order, as if joined (a store may write them without joining)."""
        for piece in pieces:
            self.write(piece)

    @abstractmethod
    def finish(self) -> StoredBlob:
        """Make the bytes durable and tell where they are."""

    @abstractmethod
    def abort(self) -> None:
        """Drop whatever was written; safe to call more than once."""


class BlobReader(ABC):
    """Reads one byte range of a blob, chunk by chunk."""

    @abstractmethod
    def read(self, size: int = READ_CHUNK) -> bytes:
        """The next chunk, or ``b""`` at the end of the range."""

    @abstractmethod
    def close(self) -> None: ...


class BlobStore(ABC):
    """Where blobs live. Implementations are thread-safe; every call may block."""

    url: str
    #: whether clients may move bytes straight to and from the store with presigned URLs
    presigned: bool = False

    @abstractmethod
    def writer(self) -> BlobWriter: ...

    @abstractmethod
    def open(self, location: str, start: int = 0, end: int | None = None) -> BlobReader:
        """A reader of bytes ``start`` to ``end`` (exclusive; None = to the end)."""

    @abstractmethod
    def size(self, location: str) -> int | None:
        """The stored size, or None when nothing is stored there."""

    @abstractmethod
    def delete(self, location: str) -> None:
        """Remove a blob; a missing one is not an error."""

    @abstractmethod
    def objects(self) -> Iterator[StoredObject]:
        """Everything stored, including unfinished writes."""

    def anomalies(self) -> Iterator[str]:
        """Things in the store that no write of the server makes (symbolic links, devices),
        each described in one line. Object stores have none."""
        return iter(())

    #: whether small reads are cheap enough to do without leaving the event loop
    inline_reads: bool = False

    def put(self, data: bytes | bytearray) -> StoredBlob:
        """Store a body that is already in memory, in one call."""
        return self.put_pieces([data])

    def put_pieces(self, pieces: Sequence[bytes | bytearray | memoryview]) -> StoredBlob:
        """Store a body that is already in memory, in pieces, in one call."""
        writer = self.writer()
        try:
            writer.write_pieces(pieces)
            return writer.finish()
        except BaseException:
            writer.abort()
            raise

    def read_bytes(self, location: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` of a blob, read in one call (for small ranges)."""
        reader = self.open(location, start, end)
        try:
            parts = []
            while chunk := reader.read(end - start):
                parts.append(chunk)
            return b"".join(parts)
        finally:
            reader.close()

    def check(self) -> None:  # noqa: B027 - optional hook
        """Fail early (at start-up) when the store cannot be used."""

    def digest(self, location: str) -> tuple[str, int]:
        """Re-read a blob: its sha256 and size."""
        hasher = hashlib.sha256()
        size = 0
        reader = self.open(location)
        try:
            while chunk := reader.read(8 * READ_CHUNK):
                hasher.update(chunk)
                size += len(chunk)
        finally:
            reader.close()
        return hasher.hexdigest(), size

    # Presigned transfers; only stores with ``presigned = True`` implement them.

    def start_multipart(self) -> tuple[str, str]:
        """Open a multipart upload: its location and upload id."""
        raise NotImplementedError

    def presign_part(self, location: str, upload_id: str, part_number: int) -> str:
        raise NotImplementedError

    def complete_multipart(
        self, location: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> None:
        raise NotImplementedError

    def abort_multipart(self, location: str, upload_id: str) -> None:
        raise NotImplementedError

    def pending_multipart(self) -> Iterator[PendingUpload]:
        return iter(())

    def presign_get(self, location: str) -> str:
        raise NotImplementedError
