"""Blobs in a local folder: ``<root>/<aa>/<bb>/<sha256>-<nonce>``, unfinished writes in ``tmp/``.

Each write gets its own file name (the nonce), so a blob being written never replaces one that
another request or the garbage collector is looking at. Files are written to ``tmp/``, fsynced,
renamed into place and the folder fsynced: a file outside ``tmp/`` is always complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlsplit

from modelyard.blobs.base import (
    READ_CHUNK,
    BlobReader,
    BlobStore,
    BlobWriter,
    StoredBlob,
    StoredObject,
)

_LOCATION = re.compile(r"^(?:[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}-[0-9a-f]{32}|tmp/[0-9a-f]{32})$")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
FLUSH_EVERY = 32 * 1024 * 1024
_FLUSHER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="blob-flush")
_HASHER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="blob-hash")
PARALLEL_HASH = 1024 * 1024


class LocalBlobStore(BlobStore):
    inline_reads = True  # a small read from the page cache takes microseconds

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root}"
        self.tmp = root / "tmp"

    @classmethod
    def from_url(cls, url: str) -> LocalBlobStore:
        if url.startswith("file:"):
            parts = urlsplit(url)
            if parts.netloc not in ("", "localhost"):
                raise ValueError(f"Blob store URL {url!r} names a remote host")
            url = unquote(parts.path)
        return cls(Path(url).absolute())

    def check(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path_of(self, location: str) -> Path:
        if not _LOCATION.match(location):
            raise ValueError(f"Not a blob location: {location!r}")
        return self.root / location

    def writer(self) -> BlobWriter:
        self.tmp.mkdir(parents=True, exist_ok=True)
        return _LocalWriter(self)

    def open(self, location: str, start: int = 0, end: int | None = None) -> BlobReader:
        fd = os.open(self.path_of(location), os.O_RDONLY | _NOFOLLOW)
        if end is None:
            end = os.fstat(fd).st_size
        return _LocalReader(fd, start, end)

    def size(self, location: str) -> int | None:
        try:
            return os.stat(self.path_of(location), follow_symlinks=False).st_size
        except FileNotFoundError:
            return None

    def delete(self, location: str) -> None:
        self.path_of(location).unlink(missing_ok=True)

    def objects(self) -> Iterator[StoredObject]:
        if not self.root.is_dir():
            return
        for folder, _dirs, files in os.walk(self.root):
            relative = Path(folder).relative_to(self.root).as_posix()
            for name in files:
                location = name if relative == "." else f"{relative}/{name}"
                if not _LOCATION.match(location):
                    continue
                info = os.stat(os.path.join(folder, name), follow_symlinks=False)
                yield StoredObject(location, info.st_size, info.st_mtime)


class _LocalWriter(BlobWriter):
    def __init__(self, store: LocalBlobStore) -> None:
        self.store = store
        self.nonce = uuid.uuid4().hex
        self.tmp_path = store.tmp / self.nonce
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
        self.fd: int | None = os.open(self.tmp_path, flags, 0o640)
        self.hasher = hashlib.sha256()
        self.size = 0
        self.unflushed = 0
        self.flushing: Future[None] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert self.fd is not None
        # Hash on another thread while this one writes: both release the GIL.
        hashing = _HASHER.submit(self.hasher.update, data) if len(data) >= PARALLEL_HASH else None
        if hashing is None:
            self.hasher.update(data)
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        if hashing is not None:
            hashing.result()
        self.size += len(data)
        self.unflushed += len(data)
        if self.unflushed >= FLUSH_EVERY and (self.flushing is None or self.flushing.done()):
            # Flush to disk in the background while more bytes arrive, so that the fsync at
            # the end has little left to do.
            self.unflushed = 0
            self.flushing = _FLUSHER.submit(os.fdatasync, self.fd)

    def _settle(self) -> None:
        if self.flushing is not None:
            with contextlib.suppress(OSError):
                self.flushing.result()
            self.flushing = None

    def finish(self) -> StoredBlob:
        assert self.fd is not None
        self._settle()
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = None
        sha = self.hasher.hexdigest()
        location = f"{sha[:2]}/{sha[2:4]}/{sha}-{self.nonce}"
        final = self.store.root / location
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(self.tmp_path, final)
        _fsync_dir(final.parent)
        return StoredBlob(sha, self.size, location)

    def abort(self) -> None:
        self._settle()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.tmp_path.unlink(missing_ok=True)


class _LocalReader(BlobReader):
    def __init__(self, fd: int, start: int, end: int) -> None:
        self.fd = fd
        self.offset = start
        self.end = end

    def read(self, size: int = READ_CHUNK) -> bytes:
        want = min(size, self.end - self.offset)
        if want <= 0:
            return b""
        data = os.pread(self.fd, want, self.offset)
        self.offset += len(data)
        if not data:
            self.end = self.offset
        return data

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
