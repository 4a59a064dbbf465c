"""The local blob store's writer on a real folder: bytes handed over in many pieces are stored
exactly, under their sha256, with nothing left in ``tmp/``."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from modelyard.blobs.local import LocalBlobStore


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_many_pieces_of_every_size_are_stored_exactly(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    store.check()
    # more pieces than one writev takes, empty ones, one-byte ones and some over a MiB,
    # handed over in several calls, as an upload's body arrives
    sizes = [1, 0, 7, 4096, 4095, 1] * 300 + [3 * 1024 * 1024 + 5, 0, 65_537] * 2
    pieces = [os.urandom(size) for size in sizes]
    writer = store.writer()
    for first in range(0, len(pieces), 700):
        writer.write_pieces(pieces[first : first + 700])
    blob = writer.finish()

    data = b"".join(pieces)
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    assert blob.size == len(data)
    assert store.read_bytes(blob.location, 0, blob.size) == data
    assert store.digest(blob.location) == (blob.sha256, blob.size)
    assert not stored_files(store.tmp)
    assert stored_files(store.root) == [store.path_of(blob.location)]


def test_put_pieces_and_an_aborted_writer(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    store.check()
    blob = store.put_pieces([b"abc", bytearray(b"def"), memoryview(b"ghi")])
    assert store.read_bytes(blob.location, 0, blob.size) == b"abcdefghi"
    assert blob.sha256 == hashlib.sha256(b"abcdefghi").hexdigest()

    writer = store.writer()
    writer.write_pieces([os.urandom(2 * 1024 * 1024), b"tail"])
    writer.abort()
    writer.abort()
    assert not stored_files(store.tmp)
    assert stored_files(store.root) == [store.path_of(blob.location)]
