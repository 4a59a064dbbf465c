"""Large files of an upload arrive in parts, each its own file of the staging package under
``.parts/<sha256 of the whole file>/<index>`` (so a broken upload resumes part by part).
Assembling joins the parts in order into one blob, checks it against the announced sha256,
records it at its path and removes the parts."""

from __future__ import annotations

import contextlib

from modelyard.blobs import BlobStore, StoredBlob
from modelyard.db.engine import Database
from modelyard.errors import Conflict, InvalidParameter
from modelyard.services import packages
from modelyard.services.packages import Package

PARTS = ".parts"
CHUNK = 4 * 1024 * 1024
MAX_PARTS = 100_000


def staging(db: Database, project_id: int, name: str, version: str) -> Package:
    """The staging package of an upload (a generic package; nothing else can become a
    version this way)."""
    found = packages.get(db, project_id, name, version)
    if found.kind != packages.GENERIC:
        raise Conflict(f"Package {name[:100]!r} is not an upload.")
    return found


def part_path(sha256: str, index: int) -> str:
    return f"{PARTS}/{sha256}/{index:05d}"


def assemble(
    db: Database, store: BlobStore, package: Package, path: str, sha256: str, parts: int
) -> None:
    """Join the ``parts`` parts of the file ``path`` (announced as ``sha256``) into its blob."""
    if not 1 <= parts <= MAX_PARTS:
        raise InvalidParameter(f"'parts' of {path[:300]!r} must be from 1 to {MAX_PARTS}.")
    held = {f.path: f for f in packages.files(db, package.id, f"{PARTS}/{sha256}")}
    wanted = [held.get(part_path(sha256, i)) for i in range(parts)]
    missing = sum(1 for w in wanted if w is None)
    if missing:
        raise Conflict(
            f"The upload is incomplete: {missing} of {parts} parts of {path[:300]!r} have not "
            "arrived; send them, then create the version."
        )
    blob = _join(store, [w.location for w in wanted if w is not None])
    if blob.sha256 != sha256:
        store.delete(blob.location)
        raise InvalidParameter(
            f"The parts of {path[:300]!r} join into sha256 {blob.sha256}, not the announced "
            f"{sha256}; nothing was stored."
        )
    try:
        _file, redundant = packages.add_file(db, package.id, path, blob, "application/octet-stream")
    except BaseException:
        store.delete(blob.location)
        raise
    if redundant is not None:
        store.delete(redundant)
    packages.delete_files(db, package.id, f"{PARTS}/{sha256}")


def _join(store: BlobStore, locations: list[str]) -> StoredBlob:
    writer = store.writer()
    try:
        for location in locations:
            reader = store.open(location)
            try:
                while chunk := reader.read(CHUNK):
                    writer.write(chunk)
            finally:
                reader.close()
        return writer.finish()
    except BaseException:
        with contextlib.suppress(Exception):
            writer.abort()
        raise
