"""``models pull``: a version's files into a new folder, several at a time, each checked
against the server's sha256, the folder appearing complete or not at all.

Work happens in ``DEST.partial/`` next to DEST: ``files/`` holds the tree being filled,
``done`` lists (append-only) the files already checked, ``pull.json`` says which version this
is. A pull run again after an interruption (even SIGKILL) keeps checked files, continues
partial ones with ranged requests, and fetches the rest. At the end the lock file is written
and ``files/`` is renamed to DEST in one step."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard_client.errors import ClientError
from modelyard_client.files import Entry, make_lock, sha256_of, write_lock
from modelyard_client.http import Http, file_path, seg
from modelyard_client.progress import Progress

CHUNK = 1024 * 1024
WORKERS = 8
STATE = "pull.json"
DONE = "done"


class Cancelled(Exception):
    """Another file failed: stop this one."""


@dataclass
class Report:
    files: int = 0
    reused_files: int = 0
    resumed_files: int = 0
    fetched_bytes: int = 0
    total_bytes: int = 0
    lock: dict[str, Any] = field(default_factory=dict)


class Pull:
    def __init__(
        self,
        client: Http,
        version: dict[str, Any],
        ref: str,
        files: list[Entry],
        dest: Path,
        project: str,
        workers: int = WORKERS,
    ) -> None:
        self.client = client
        self.version = version
        self.ref = ref
        self.files = files
        self.dest = dest
        self.project = project
        self.workers = workers
        self.partial = dest.with_name(dest.name + ".partial")
        self.tree = self.partial / "files"
        self.report = Report(files=len(files), total_bytes=sum(e.size for e in files))
        self.cancel = threading.Event()
        self.journal_lock = threading.Lock()
        self.base = (
            f"/api/v1/models/{seg(version['name'])}/versions/{seg(version['version'])}/files/"
        )

    # state --------------------------------------------------------------------------------

    def _identity(self) -> dict[str, Any]:
        return {
            "server": self.client.target.server,
            "project": self.project,
            "model": self.version["name"],
            "version": self.version["version"],
        }

    def _prepare(self) -> set[str]:
        """The partial folder for this version (a stale one for another version is
        discarded) and the paths already checked there."""
        state = self.partial / STATE
        if self.partial.exists():
            try:
                same = json.loads(state.read_text()) == self._identity()
            except (OSError, ValueError):
                same = False
            if not same:
                shutil.rmtree(self.partial)
        self.tree.mkdir(parents=True, exist_ok=True)
        if not state.exists():
            state.write_text(json.dumps(self._identity()))
        journal = self.partial / DONE
        if not journal.exists():
            return set()
        known = {e.path: e for e in self.files}
        done = set()
        for line in journal.read_text(encoding="utf-8").splitlines():
            digest, _, path = line.partition(" ")
            entry = known.get(path)
            local = self.tree / path
            if (
                entry
                and entry.sha256 == digest
                and local.is_file()
                and local.stat().st_size == entry.size
            ):
                done.add(path)
        return done

    def _record(self, entry: Entry) -> None:
        with self.journal_lock, (self.partial / DONE).open("a", encoding="utf-8") as handle:
            handle.write(f"{entry.sha256} {entry.path}\n")

    # the run ------------------------------------------------------------------------------

    def run(self) -> Report:
        done = self._prepare()
        todo = sorted((e for e in self.files if e.path not in done), key=lambda e: -e.size)
        self.report.reused_files = len(done)
        kept = sum(e.size for e in self.files if e.path in done)
        with (
            Progress("pull", self.report.total_bytes, len(self.files), kept) as progress,
            ThreadPoolExecutor(self.workers) as pool,
        ):
            progress.done_files = len(done)
            futures = [pool.submit(self._fetch, e, progress) for e in todo]
            try:
                self._wait(futures)
            except BaseException:  # also Ctrl-C: stop the other transfers at their next chunk
                self.cancel.set()
                for future in futures:
                    future.cancel()
                raise
        self._finish()
        return self.report

    def _wait(self, futures: list[Future[None]]) -> None:
        finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in finished if f.exception() is not None]
        if not failed:
            return
        self.cancel.set()
        wait(futures)
        errors = [f.exception() for f in futures if f.exception() is not None]
        first = next((e for e in errors if not isinstance(e, Cancelled)), errors[0])
        assert first is not None
        raise first

    def _finish(self) -> None:
        lock = make_lock(
            self.client.target.server, self.project, self.version, self.ref, self.files
        )
        write_lock(self.tree, lock)
        self.tree.replace(self.dest)
        _fsync_dir(self.dest.parent)
        shutil.rmtree(self.partial, ignore_errors=True)
        self.report.lock = lock

    # one file -----------------------------------------------------------------------------

    def _fetch(self, entry: Entry, progress: Progress) -> None:
        if self.cancel.is_set():
            raise Cancelled
        local = self.tree / entry.path
        local.parent.mkdir(parents=True, exist_ok=True)
        have = local.stat().st_size if local.is_file() else 0
        digest = hashlib.sha256()
        if 0 < have <= entry.size:
            _hash_prefix(local, digest)
            progress.advance(have)
            self.report.resumed_files += 1
        elif have:
            have = 0
        if have < entry.size:
            digest = self._download(entry, local, have, digest, progress)
        found = digest.hexdigest()
        if found != entry.sha256 and have:
            # the bytes kept from an earlier attempt may be what is wrong: fetch it all once
            local.unlink(missing_ok=True)
            progress.advance(-entry.size)
            found = self._download(entry, local, 0, hashlib.sha256(), progress).hexdigest()
        if found != entry.sha256:
            local.unlink(missing_ok=True)
            raise ClientError(
                f"{entry.path}: sha256 {found} does not match the server's manifest "
                f"({entry.sha256}); the file was removed. The server's stored bytes differ "
                "from what it recorded: run `modelyard fsck` on the server."
            )
        if have == entry.size == 0:
            local.touch()
        self._record(entry)
        progress.file_done()

    def _download(
        self, entry: Entry, local: Path, have: int, digest: Any, progress: Progress
    ) -> Any:
        """Fetch the rest of the file (from byte ``have``); the digest of the whole file."""
        headers = {"Accept": "*/*"}
        if have:
            headers["Range"] = f"bytes={have}-"
            headers["If-Range"] = f'"{entry.sha256}"'
        response = self.client.send("GET", self.base + file_path(entry.path), headers=headers)
        if response.status >= 400:
            raise self.client.failure(response, self.client.read(response))
        if response.status == 200 and have:
            digest = hashlib.sha256()  # the whole file came back: start over
            progress.advance(-have)
            have = 0
        mode = "ab" if have else "wb"
        received = have
        try:
            with local.open(mode, buffering=0) as out:
                received += self._copy(response, out, digest, progress)
        except (OSError, ValueError) as exc:
            self.client.close()
            if isinstance(exc, OSError) and exc.filename:
                raise ClientError(f"cannot write {exc.filename}: {exc.strerror}") from None
            raise ClientError(
                f"the download of {entry.path} broke off after {received} of {entry.size} "
                f"bytes ({exc or type(exc).__name__}); run the same pull again to resume"
            ) from None
        if received != entry.size:
            self.client.close()
            raise ClientError(
                f"{entry.path}: received {received} bytes where the manifest says "
                f"{entry.size}; run the same pull again to resume"
            )
        return digest

    def _copy(self, response: Any, out: Any, digest: Any, progress: Progress) -> int:
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        total = 0
        while True:
            if self.cancel.is_set():
                self.client.close()
                raise Cancelled
            count = response.readinto(buffer)
            if not count:
                return total
            chunk = view[:count]
            out.write(chunk)
            digest.update(chunk)
            total += count
            progress.advance(count)


def _hash_prefix(local: Path, digest: Any) -> None:
    with local.open("rb", buffering=0) as handle:
        while block := handle.read(CHUNK):
            digest.update(block)


def _fsync_dir(folder: Path) -> None:
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


__all__ = ["Pull", "Report", "sha256_of"]
