"""Blobs in a local folder: ``<root>/<aa>/<bb>/<sha256>-<nonce>``, unfinished writes in ``tmp/``.

Each write gets its own file name (the nonce), so a blob being written never replaces one that
another request or the garbage collector is looking at. Files are written to ``tmp/``, their
bytes written out to the disk, renamed into place, and then the file and the folder are
fsynced before the location is returned: a file outside ``tmp/`` is always complete.

On Linux the disk writes start while the body still streams in (``sync_file_range``), and the
rename comes before the fsync, so that one journal commit makes both the file and its name
durable (the folder's fsync then finds nothing left to commit). The bytes are on the disk
before the rename, so on journaling filesystems that keep data ordered before metadata (ext4,
XFS) a rename that survives a crash has the whole file under it; in any case nothing refers to
the location until both fsyncs are done, and a leftover without a reference is an orphan that
garbage collection removes. Elsewhere the file is fsynced in ``tmp/`` before the rename.

Below the root nothing is ever reached through a symbolic link: every folder on the way to a
blob is opened relative to its parent with ``O_NOFOLLOW``, and so is the blob itself, so a link
planted anywhere inside the store (to a file or to a folder) is refused as :class:`UnsafeBlob`
instead of being read, written through or deleted through. The root itself may be a link.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import logging
import os
import re
import stat
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
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
    UnsafeBlob,
)

log = logging.getLogger(__name__)

_LOCATION = re.compile(r"^(?:[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}-[0-9a-f]{32}|tmp/[0-9a-f]{32})$")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_ROOT_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC
_FOLDER_FLAGS = _ROOT_FLAGS | _NOFOLLOW
# O_NONBLOCK: opening a FIFO planted in the store must not hang the reader
_READ_FLAGS = os.O_RDONLY | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0)
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
_REFUSED = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)
FLUSH_EVERY = 32 * 1024 * 1024
_FLUSHER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="blob-flush")
_HASHER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="blob-hash")
PARALLEL_HASH = 1024 * 1024
PAGE = 4096
_IOV_MAX = 512  # pieces per writev (Linux allows 1024)
# sync_file_range(2) flags
_WAIT_BEFORE, _WRITE, _WAIT_AFTER = 1, 2, 4


def _find_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's ``sync_file_range`` (Linux only), which ``os`` does not offer."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function


_SYNC_FILE_RANGE = _find_sync_file_range()


def _write_out(fd: int, start: int, length: int, flags: int) -> bool:
    """Start (and with the wait flags, finish) writing bytes of ``fd`` to the disk; no
    metadata and no disk cache flush. False when the system cannot (then fsync alone does)."""
    if _SYNC_FILE_RANGE is None:
        return False
    if _SYNC_FILE_RANGE(fd, start, length, flags) != 0:
        number = ctypes.get_errno()
        if number in (errno.ENOSYS, errno.EINVAL, errno.ESPIPE, errno.EOPNOTSUPP):
            return False
        raise OSError(number, os.strerror(number))
    return True


def _hash(hasher: hashlib._Hash, pieces: Sequence[bytes | bytearray | memoryview]) -> None:
    for piece in pieces:
        hasher.update(piece)


def _write_all(fd: int, pieces: Sequence[bytes | bytearray | memoryview]) -> None:
    """Write the pieces in order with as few system calls as the kernel allows."""
    for first in range(0, len(pieces), _IOV_MAX):
        batch = [memoryview(piece) for piece in pieces[first : first + _IOV_MAX]]
        while batch:
            written = os.writev(fd, batch)
            while batch and written >= len(batch[0]):
                written -= len(batch[0])
                batch.pop(0)
            if batch and written:
                batch[0] = batch[0][written:]
            batch = [piece for piece in batch if piece]


def _unsafe(location: str, what: str) -> UnsafeBlob:
    return UnsafeBlob(f"{location}: {what} is a symbolic link or not a plain file or folder")


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

    @contextlib.contextmanager
    def _folder(
        self, location: str, parts: Sequence[str], *, create: bool = False
    ) -> Iterator[int]:
        """The folder ``root/parts…`` opened without following any link below the root."""
        fd = os.open(self.root, _ROOT_FLAGS)
        try:
            for part in parts:
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o750, dir_fd=fd)
                try:
                    inner = os.open(part, _FOLDER_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in _REFUSED:
                        raise _unsafe(location, f"the folder '{part}'") from None
                    raise
                os.close(fd)
                fd = inner
            yield fd
        finally:
            os.close(fd)

    def _split(self, location: str) -> tuple[list[str], str]:
        self.path_of(location)  # checks the pattern
        *folders, name = location.split("/")
        return folders, name

    def writer(self) -> BlobWriter:
        return _LocalWriter(self)

    def open(self, location: str, start: int = 0, end: int | None = None) -> BlobReader:
        folders, name = self._split(location)
        with self._folder(location, folders) as parent:
            try:
                fd = os.open(name, _READ_FLAGS, dir_fd=parent)
            except OSError as exc:
                if exc.errno in _REFUSED:
                    raise _unsafe(location, "the blob") from None
                raise
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise _unsafe(location, "the blob")
        return _LocalReader(fd, start, info.st_size if end is None else end)

    def size(self, location: str) -> int | None:
        folders, name = self._split(location)
        try:
            with self._folder(location, folders) as parent:
                info = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(info.st_mode):
            raise _unsafe(location, "the blob")
        return info.st_size

    def delete(self, location: str) -> None:
        """Remove the blob (a link planted in its place goes too, never what it points at)."""
        folders, name = self._split(location)
        try:
            with self._folder(location, folders) as parent:
                os.unlink(name, dir_fd=parent)
        except FileNotFoundError:
            pass
        except UnsafeBlob as exc:
            log.warning("Not deleting through a link in the blob store: %s", exc)

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

    def anomalies(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for folder, dirs, files in os.walk(self.root):
            for name in [*dirs, *files]:
                path = os.path.join(folder, name)
                info = os.stat(path, follow_symlinks=False)
                relative = os.path.relpath(path, self.root)
                if stat.S_ISLNK(info.st_mode):
                    yield f"{relative}: symbolic link to {os.readlink(path)} (never followed)"
                elif not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                    yield f"{relative}: not a plain file or folder"


class _LocalWriter(BlobWriter):
    def __init__(self, store: LocalBlobStore) -> None:
        self.store = store
        self.nonce = uuid.uuid4().hex
        # the tmp folder stays open until the blob is renamed into place or dropped
        self.tmp_fd = self._open_tmp(f"tmp/{self.nonce}")
        try:
            self.fd: int | None = os.open(self.nonce, _CREATE_FLAGS, 0o640, dir_fd=self.tmp_fd)
        except BaseException:
            self._close_tmp()
            raise
        self.hasher = hashlib.sha256()
        self.size = 0
        self.unflushed = 0
        self.flushing: Future[None] | None = None
        self.started_out = 0  # bytes whose writing to the disk has been started
        self.early = _SYNC_FILE_RANGE is not None

    def _open_tmp(self, location: str) -> int:
        self.store.root.mkdir(parents=True, exist_ok=True)
        root = os.open(self.store.root, _ROOT_FLAGS)
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir("tmp", 0o750, dir_fd=root)
            return os.open("tmp", _FOLDER_FLAGS, dir_fd=root)
        except OSError as exc:
            if exc.errno in _REFUSED:
                raise _unsafe(location, "the folder 'tmp'") from None
            raise
        finally:
            os.close(root)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.write_pieces([data])

    def write_pieces(self, pieces: Sequence[bytes | bytearray | memoryview]) -> None:
        assert self.fd is not None
        size = sum(len(piece) for piece in pieces)
        # Hash on another thread while this one writes: both release the GIL.
        hashing = _HASHER.submit(_hash, self.hasher, pieces) if size >= PARALLEL_HASH else None
        if hashing is None:
            _hash(self.hasher, pieces)
        try:
            _write_all(self.fd, pieces)
        finally:
            if hashing is not None:
                hashing.result()
        self._written(size)

    def _written(self, size: int) -> None:
        assert self.fd is not None
        self.size += size
        if self.early:
            # Let the disk start on the whole pages written so far while more bytes arrive
            # (the last, partial page is left alone: the next write still changes it).
            end = self.size - self.size % PAGE
            if end > self.started_out:
                self.early = _write_out(self.fd, self.started_out, end - self.started_out, _WRITE)
                self.started_out = end
            return
        self.unflushed += size
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
        # All bytes on the disk (not yet the metadata) before the file gets its name; where
        # that cannot be done, the whole file is made durable in tmp/ first.
        written_out = self.early and _write_out(self.fd, 0, 0, _WAIT_BEFORE | _WRITE | _WAIT_AFTER)
        if not written_out:
            os.fsync(self.fd)
        sha = self.hasher.hexdigest()
        location = f"{sha[:2]}/{sha[2:4]}/{sha}-{self.nonce}"
        with self.store._folder(location, [sha[:2], sha[2:4]], create=True) as target:
            name = location.rsplit("/", 1)[1]
            os.rename(self.nonce, name, src_dir_fd=self.tmp_fd, dst_dir_fd=target)
            if written_out:
                os.fsync(self.fd)  # one journal commit: the file's metadata and its new name
            os.close(self.fd)
            self.fd = None
            os.fsync(target)
        self._close_tmp()
        return StoredBlob(sha, self.size, location)

    def _close_tmp(self) -> None:
        if self.tmp_fd >= 0:
            os.close(self.tmp_fd)
            self.tmp_fd = -1

    def abort(self) -> None:
        self._settle()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.tmp_fd >= 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.nonce, dir_fd=self.tmp_fd)
            self._close_tmp()


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
