"""The delivery process: each server process runs its webhook worker in a child process of its
own, so sending never competes with answering requests for the interpreter lock; its threads
run at the lowest CPU priority (but SQLite's recorder, which holds the database's write lock:
see ``worker._lowered``), so on a busy machine they use what CPU answering requests leaves.

- Waking: the commit of a write that queued deliveries writes a byte to a pipe the child
  reads (``Database.wake_listeners``); the child's worker then sends at once, or, on SQLite
  when another process holds the send lock, rings that process's doorbell.
- Tied to its server: the child holds only the pipe's reading end. When the server dies, by
  SIGKILL included, the kernel closes the writing end and the child exits at once (a send in
  flight is abandoned, never recorded, and sent again with the same delivery id). On SQLite
  the send lock dies with the child, so a restarted server's child takes over; on PostgreSQL
  a claim dies with its connection.
- Supervised: a child that dies while the server runs is started again after a second.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from modelyard.db.engine import Database
from modelyard.webhooks.worker import DeliveryWorker, WorkerSettings

logger = logging.getLogger("modelyard.webhooks")
#: the delivery threads' niceness above their server's: the lowest priority
NICENESS = 19
RESTART_SECONDS = 1.0
STOP_SECONDS = 5.0
#: deliveries go once the server's changes pause this long, or at the latest this long after
#: the first change waiting (see ``quiet_wakes``)
QUIET_SECONDS = 0.005
MOST_SECONDS = 0.1


def _run_child(url: str, busy_timeout: float, settings: WorkerSettings, bell: Connection) -> None:
    """The child: a delivery worker, woken by the bytes on ``bell`` once its server's changes
    pause (see ``quiet_wakes``), ended by the pipe's end-of-file."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C: the server ends us
    db = Database(url, busy_timeout=busy_timeout)
    worker = DeliveryWorker(db, dataclasses.replace(settings, niceness=NICENESS))
    worker.start()
    try:
        quiet_wakes(bell.fileno(), worker.wake)
    finally:
        worker.stop(timeout=1.0)
        db.dispose()
        os._exit(0)


def quiet_wakes(
    fd: int, wake: Callable[[], None], quiet: float = QUIET_SECONDS, most: float = MOST_SECONDS
) -> None:
    """Read the bell ``fd`` until its end-of-file; ``wake()`` once the bytes have stopped for
    ``quiet`` seconds, or ``most`` seconds after the first unanswered byte. A burst of changes
    is sent after it, not while it runs: on a small machine the sending would otherwise take
    CPU from the burst's own requests."""
    first: float | None = None  # when the first byte not yet answered came
    last = 0.0
    while True:
        if first is None:
            timeout = None
        else:
            timeout = max(min(last + quiet, first + most) - time.monotonic(), 0.0)
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            first = None
            wake()
            continue
        try:
            rang = os.read(fd, 4096)
        except (InterruptedError, BlockingIOError):
            continue
        if not rang:  # the server closed the pipe, or died
            return
        last = time.monotonic()
        if first is None:
            first = last


class SenderProcess:
    """The server's side: starts, wakes, supervises and stops the delivery process."""

    def __init__(self, db: Database, settings: WorkerSettings) -> None:
        self.db = db
        self.settings = settings
        self._context = multiprocessing.get_context("spawn")
        self._guard = threading.Lock()
        self._process: Any = None
        self._bell: Connection | None = None
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    def start(self) -> None:
        self._spawn()
        self.db.wake_listeners.append(self.wake)
        self._supervisor = threading.Thread(
            target=self._supervise, name="webhook-supervisor", daemon=True
        )
        self._supervisor.start()

    def _spawn(self) -> None:
        reading, writing = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_run_child,
            args=(self.db.url, self.db.busy_timeout, self.settings, reading),
            name="modelyard-webhooks",
            daemon=True,
        )
        process.start()
        reading.close()
        os.set_blocking(writing.fileno(), False)
        old: Connection | None
        with self._guard:
            if self._stopping.is_set():  # stopped meanwhile: end the new child at once
                old, self._process = writing, process
            else:
                old, self._bell, self._process = self._bell, writing, process
        if old is not None:
            old.close()

    def wake(self) -> None:
        """Deliveries were queued: wake the delivery process (a full pipe is awake already)."""
        with self._guard:
            if self._bell is None:
                return
            with contextlib.suppress(BlockingIOError, BrokenPipeError, OSError):
                os.write(self._bell.fileno(), b"\1")

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            process = self._process
            process.join()
            if self._stopping.wait(RESTART_SECONDS):
                return
            logger.warning(
                "the webhook delivery process ended (exit code %s); starting it again",
                process.exitcode,
            )
            try:
                self._spawn()
            except Exception:
                logger.exception("could not start the webhook delivery process")

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(ValueError):
            self.db.wake_listeners.remove(self.wake)
        with self._guard:
            bell, self._bell = self._bell, None
            process = self._process
        if bell is not None:
            bell.close()  # end-of-file: the child stops its worker and exits
        if process is None:
            return
        process.join(STOP_SECONDS)
        if process.is_alive():
            process.kill()
            process.join(STOP_SECONDS)
        if self._supervisor is not None:
            self._supervisor.join(STOP_SECONDS)
