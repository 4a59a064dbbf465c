"""``models upload``: a folder's files become a new version.

The files go to a staging package whose name follows from the model and the files' sha256s
(a new version of it for each new attempt), each with its checksum (the server refuses bytes
that do not match); a large file goes up in parts, which the server joins and checks. Run
again after an interruption, the upload finds the open attempt, asks which files and parts
already arrived and sends only the rest. Only when every file is there does one request turn
the staging package into the version; before that, no version exists."""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard_client.errors import ClientError
from modelyard_client.files import Entry, checked_path, hash_all
from modelyard_client.http import Http, file_path, seg
from modelyard_client.progress import Progress

SMALL = 8 * 1024 * 1024  # sent from memory; larger files are streamed from disk
PART = 32 * 1024 * 1024  # files larger than this go up in parts of this size (resumable)
PARTS = ".parts"


def scan(folder: Path) -> list[Path]:
    """Every regular file under ``folder`` (links to files outside are refused)."""
    found = []
    root = folder.resolve()
    for path in sorted(folder.rglob("*")):
        if path.is_dir():
            continue
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            raise ClientError(f"{path} links outside {folder}; copy the file in instead")
        if path.is_file():
            found.append(path)
    if not found:
        raise ClientError(f"{folder} holds no files to upload")
    return found


class Upload:
    def __init__(self, client: Http, name: str, folder: Path, workers: int = 4) -> None:
        self.client = client
        self.name = name
        self.folder = folder
        self.workers = workers

    def _manifest(self) -> tuple[list[Entry], dict[str, Path]]:
        paths = scan(self.folder)
        total = sum(p.stat().st_size for p in paths)
        with Progress("hash", total, len(paths)) as progress:
            digests = hash_all(paths, progress.advance)
        local = {checked_path(p.relative_to(self.folder).as_posix()): p for p in paths}
        files = [
            Entry(rel, p.stat().st_size, d)
            for (rel, p), d in zip(local.items(), digests, strict=True)
        ]
        return files, local

    def staging(self, files: list[Entry]) -> str:
        digest = hashlib.sha256(self.name.encode())
        for entry in sorted(files, key=lambda e: e.path):
            digest.update(f"\n{entry.sha256} {entry.path}".encode())
        return f"upload-{digest.hexdigest()[:32]}"

    def _attempt(self, package: str) -> tuple[str, dict[str, str]]:
        """The staging version to fill: an open one left by an interrupted run (and the files
        that arrived there), else a new one."""
        listed = self.client.call("GET", "/packages", query={"name": package})["packages"]
        open_ = [p for p in listed if p.get("status") == "open"]
        if not open_:
            return str(time.time_ns() // 1_000_000), {}
        version = str(open_[0]["version"])
        found = self.client.call("GET", f"/packages/{seg(package)}/{seg(version)}/files")
        return version, {f["path"]: f["sha256"] for f in found["files"]}

    def run(self, *, semantic_version: str | None, bump: str, description: str) -> dict[str, Any]:
        files, local = self._manifest()
        package = self.staging(files)
        staging_version, arrived = self._attempt(package)
        tasks: list[Task] = []
        announced: list[dict[str, Any]] = []
        for entry in files:
            whole = arrived.get(entry.path) == entry.sha256
            count = 0 if whole or entry.size <= PART else -(-entry.size // PART)
            announced.append({"path": entry.path, "sha256": entry.sha256, "parts": count})
            if whole:
                continue
            if count:
                tasks += [Task(entry, local[entry.path], i) for i in range(count)]
            else:
                tasks.append(Task(entry, local[entry.path], None))
        target = Target(self.client, package, staging_version, arrived)
        total = sum(t.length for t in tasks)
        with (
            Progress("upload", total, len(tasks)) as progress,
            ThreadPoolExecutor(self.workers) as pool,
        ):
            sent = list(pool.map(lambda t: target.send(t, progress), tasks))
        payload: dict[str, Any] = {
            "package": package,
            "package_version": staging_version,
            "files": announced,
            "bump": bump,
            "description": description,
        }
        if semantic_version:
            payload["semver"] = semantic_version
        version = self.client.call("POST", f"/models/{seg(self.name)}/versions", payload=payload)
        return {
            "version": version,
            "files": len(files),
            "bytes": sum(e.size for e in files),
            "skipped": sum(1 for e in files if arrived.get(e.path) == e.sha256),
            "skipped_parts": sent.count(False),
            "staging_package": package,
        }


@dataclass(frozen=True)
class Task:
    """A whole file, or part ``part`` of a large one."""

    entry: Entry
    source: Path
    part: int | None

    @property
    def offset(self) -> int:
        return 0 if self.part is None else self.part * PART

    @property
    def length(self) -> int:
        if self.part is None:
            return self.entry.size
        return min(PART, self.entry.size - self.offset)

    @property
    def path(self) -> str:
        if self.part is None:
            return self.entry.path
        return f"{PARTS}/{self.entry.sha256}/{self.part:05d}"


@dataclass
class Target:
    """Where the files go: one attempt (version) of the staging package."""

    client: Http
    package: str
    version: str
    arrived: dict[str, str]

    def send(self, task: Task, progress: Progress) -> bool:
        """Send one file or part; False when it had arrived already."""
        try:
            with task.source.open("rb") as handle:
                handle.seek(task.offset)
                if task.part is None and task.length > SMALL:
                    digest = task.entry.sha256
                    body: Any = handle
                else:
                    body = handle.read(task.length)
                    digest = hashlib.sha256(body).hexdigest()
                    if task.part is not None and self.arrived.get(task.path) == digest:
                        progress.advance(task.length)
                        progress.file_done()
                        return False
                self._put(task, body, digest)
        except OSError as exc:
            raise ClientError(f"cannot read {task.source}: {exc.strerror or exc}") from None
        progress.advance(task.length)
        progress.file_done()
        return True

    def _put(self, task: Task, body: Any, digest: str) -> None:
        path = (
            f"/api/v1/packages/{seg(self.package)}/{seg(self.version)}/files/{file_path(task.path)}"
        )
        headers = {
            "X-Checksum-Sha256": digest,
            "Content-Length": str(task.length),
            "Content-Type": "application/octet-stream",
        }
        if not isinstance(body, bytes):
            self.client.close()  # a fresh connection: a streamed body cannot be resent
        response = self.client.send("PUT", path, body=body, headers=headers)
        raw = self.client.read(response)
        if response.status >= 400:
            raise self.client.failure(response, raw)
