"""Local files: safe relative paths, sha256 of a file, the lock file a pull leaves in its
folder, and checking a folder against it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from modelyard_client.errors import ClientError

LOCK_FILE = "modelyard.lock.json"
LOCK_FORMAT = 1
READ_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Entry:
    """One file of a version: its relative path, size and sha256."""

    path: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


def checked_path(path: str) -> str:
    """A relative POSIX path that stays inside its folder (refused otherwise: a server's
    manifest decides where files land, so it is checked like any input)."""
    pure = PurePosixPath(path)
    if (
        not path
        or pure.is_absolute()
        or "\\" in path
        or any(c in path for c in "\x00\n\r")
        or any(part in ("", ".", "..") for part in path.split("/"))
    ):
        raise ClientError(f"refusing the file path {path[:200]!r}: not a plain relative path")
    return path


def entries(raw: list[dict[str, Any]]) -> list[Entry]:
    found = [Entry(checked_path(str(f["path"])), int(f["size"]), str(f["sha256"])) for f in raw]
    if any(e.path == LOCK_FILE for e in found):
        raise ClientError(f"the version holds a file named {LOCK_FILE}, which pull writes itself")
    return found


def sha256_of(path: Path, progress: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as handle:
        buffer = bytearray(READ_CHUNK)
        view = memoryview(buffer)
        while count := handle.readinto(buffer):
            digest.update(view[:count])
            if progress is not None:
                progress(count)
    return digest.hexdigest()


def hash_all(paths: list[Path], progress: Callable[[int], None] | None = None) -> list[str]:
    """sha256 of many files, several at a time (hashing releases the GIL)."""
    workers = min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda p: sha256_of(p, progress), paths))


def write_lock(folder: Path, lock: dict[str, Any]) -> None:
    target = folder / LOCK_FILE
    with target.open("w", encoding="utf-8") as handle:
        json.dump(lock, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())


def make_lock(
    server: str, project: str, version: dict[str, Any], ref: str, files: list[Entry]
) -> dict[str, Any]:
    alias = ref if ref in version.get("aliases", []) else None
    return {
        "format": LOCK_FORMAT,
        "server": server,
        "project": project,
        "model": version["name"],
        "version": version["version"],
        "semver": version.get("semver"),
        "ref": ref,
        "alias": alias,
        "pulled_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "files": [e.to_json() for e in sorted(files, key=lambda e: e.path)],
    }


def read_lock(folder: Path) -> dict[str, Any]:
    target = folder / LOCK_FILE
    try:
        lock = json.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClientError(
            f"{folder} has no {LOCK_FILE}: verify checks a folder made by `modelyard models pull`"
        ) from None
    except (OSError, ValueError) as exc:
        raise ClientError(f"cannot read {target}: {exc}") from None
    if not isinstance(lock, dict) or not isinstance(lock.get("files"), list):
        raise ClientError(f"{target} is not a modelyard lock file")
    return lock


@dataclass
class Check:
    changed: list[str]
    missing: list[str]
    unexpected: list[str]

    @property
    def clean(self) -> bool:
        return not (self.changed or self.missing or self.unexpected)


def check_folder(folder: Path, progress: Callable[[int], None] | None = None) -> Check:
    """Compare a folder with its lock file: every file present with its size and sha256, and
    nothing else."""
    lock = read_lock(folder)
    expected = entries(lock["files"])
    result = Check([], [], [])
    present: list[Entry] = []
    for entry in expected:
        local = folder / entry.path
        if not local.is_file() or local.is_symlink():
            result.missing.append(entry.path)
        elif local.stat().st_size != entry.size:
            result.changed.append(entry.path)
        else:
            present.append(entry)
    digests = hash_all([folder / e.path for e in present], progress)
    result.changed += [e.path for e, d in zip(present, digests, strict=True) if d != e.sha256]
    known = {e.path for e in expected} | {LOCK_FILE}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if (path.is_file() or path.is_symlink()) and relative not in known:
            result.unexpected.append(relative)
    result.changed.sort()
    return result
