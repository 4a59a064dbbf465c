"""The delivery worker: the threads of a server's delivery process (``webhooks.process``)
that drain the outbox.

A commit that queued deliveries wakes the worker at once (through its server's pipe);
otherwise the threads look again when the earliest retry falls due, and at least every second
(for events written by other processes and the CLI). Finished deliveries past their retention
are removed at start and hourly.

- PostgreSQL: every process sends. A sender claims one due delivery with ``FOR UPDATE SKIP
  LOCKED``, sends it and records the outcome in the claim's transaction; a process that dies
  mid-send rolls back, and the delivery is sent again, with the same delivery id.
- SQLite: one process sends: the one holding an exclusive ``flock`` on a file beside the
  database (the kernel releases it when that process dies, and another takes over within a
  second). A dispatcher hands due deliveries to sender threads; a recorder records what they
  sent, several in one transaction, and hands on each webhook's next due delivery. Processes
  that do not send ring the sender through a datagram socket when they queue deliveries, so
  ``--workers N`` keeps the latency low.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection

from modelyard.db.engine import Database
from modelyard.services import outbox, webhooks
from modelyard.services.entities import now_ms
from modelyard.services.webhooks import safe_url
from modelyard.webhooks import delivery

logger = logging.getLogger("modelyard.webhooks")
POLL_SECONDS = 1.0
#: deliveries sent within one claim transaction on PostgreSQL, at most, and for how long
BATCH = 50
BATCH_SECONDS = 1.0
#: how long the SQLite dispatcher waits at least while deliveries are in flight
BUSY_WAIT_SECONDS = 0.2
#: how often finished deliveries past their retention are removed (also once at start)
PRUNE_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    allow_private: bool = False
    senders: int = 4
    policy: outbox.Policy = field(default_factory=outbox.Policy)
    #: added to the niceness of every thread but SQLite's recorder (see ``_lowered``)
    niceness: int = 0


def _lowered(target: Callable[[], None], niceness: int) -> Callable[[], None]:
    """``target`` run in a thread of lower CPU priority. On Linux a thread has a niceness of
    its own: the threads that wait on receivers, look for due deliveries and prune run at the
    lowest priority, while SQLite's recorder, which holds the database's write lock that the
    server's writes wait for, keeps its server's priority: a busy machine does not starve it
    while it holds the lock."""

    def run() -> None:
        if niceness:
            with contextlib.suppress(OSError, AttributeError):
                tid = threading.get_native_id()
                os.setpriority(
                    os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + niceness
                )
        target()

    return run


def attempt(
    url: str, body: bytes, delivery_id: str, secret: str, allow_private: bool
) -> outbox.Attempt:
    """Send one delivery (signed when the webhook has a secret)."""
    sent = delivery.post(
        url,
        body,
        delivery.headers(delivery_id, body, secret, time.time()),
        allow_private=allow_private,
    )
    return outbox.Attempt(sent.ok, sent.status, sent.excerpt, sent.error, sent.duration_ms)


def send_test(
    db: Database,
    project_id: int,
    webhook_id: str | None,
    event: str | None,
    *,
    actor: str,
    address: str = "",
    allow_private: bool = False,
) -> tuple[str, outbox.Attempt]:
    """Send an example of ``event`` (the webhook's first event by default) now, whatever the
    webhook's status; the send is kept with its deliveries and in the audit log."""
    test = webhooks.prepare_test(db, project_id, webhook_id, event)
    delivery_id = str(uuid.uuid4())
    result = attempt(test.webhook.url, test.body, delivery_id, test.secret, allow_private)
    outbox.record_test(db, project_id, test, delivery_id, result, actor=actor, address=address)
    return delivery_id, result


class _SendLock:
    """On SQLite: whether this process is the one that sends (an exclusive ``flock``)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._fd: int | None = None
        self._tried = 0.0
        self._guard = threading.Lock()

    def held(self) -> bool:
        if self.path is None or self._fd is not None:
            return True
        with self._guard:
            if self._fd is not None:
                return True
            if time.monotonic() - self._tried < POLL_SECONDS:
                return False
            self._tried = time.monotonic()
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
            self._fd = fd
            return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _lock_path(db: Database) -> str | None:
    name = db.engine.url.database
    if not db.is_sqlite or not name or name == ":memory:":
        return None
    return f"{name}.webhooks.lock"


class _Doorbell:
    """A datagram socket in Linux's abstract namespace, named after the database: processes
    that queued deliveries ring it; the sending process listens."""

    def __init__(self, lock_path: str | None) -> None:
        self.address: str | None = None
        if lock_path is not None and hasattr(socket, "AF_UNIX"):
            digest = hashlib.sha256(str(Path(lock_path).resolve()).encode()).hexdigest()[:24]
            self.address = f"\0modelyard-webhooks-{digest}"
        self._sock: socket.socket | None = None

    def ring(self) -> None:
        if self.address is None:
            return
        with (
            contextlib.suppress(OSError),
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
        ):
            sock.setblocking(False)
            sock.sendto(b"1", self.address)

    def listen(self) -> bool:
        if self.address is None or self._sock is not None:
            return self._sock is not None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(self.address)
        except OSError:
            sock.close()
            return False
        sock.settimeout(POLL_SECONDS)
        self._sock = sock
        return True

    def wait(self) -> bool:
        """Whether it rang (False after a second of silence)."""
        if self._sock is None:
            time.sleep(POLL_SECONDS)
            return False
        try:
            self._sock.recv(64)
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class DeliveryWorker:
    """Sender threads of one server process (see the module's notes)."""

    def __init__(self, db: Database, settings: WorkerSettings) -> None:
        self.db = db
        self.settings = settings
        self._cv = threading.Condition()
        self._generation = 0
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        path = _lock_path(db)
        self._lock = _SendLock(path)
        self._bell = _Doorbell(path)
        self._busy: set[int] = set()
        #: the dispatcher's last look filled every sender (something due may have been left)
        self._saturated = False
        #: SQLite: attempts that ended, waiting for the recorder (None: not attempted)
        self._done: list[tuple[outbox.Claim, outbox.Attempt | None]] = []
        self._done_cv = threading.Condition()
        self._busy_guard = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        #: set when events may wait to be turned into deliveries
        self._events = threading.Event()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.db.wake_listeners.append(self.wake)
        self._spawn(self._prune, "webhook-pruner")
        self._spawn(self._fan_out, "webhook-fan-out", lowered=False)
        if self.db.is_sqlite:
            self._pool = ThreadPoolExecutor(
                max(self.settings.senders, 1),
                thread_name_prefix="webhook-sender",
                initializer=_lowered(lambda: None, self.settings.niceness),
            )
            self._spawn(self._run, "webhook-dispatcher")
            self._spawn(self._record_sent, "webhook-recorder", lowered=False)
            self._spawn(self._listen, "webhook-doorbell")
            return
        for n in range(max(self.settings.senders, 1)):
            self._spawn(self._run, f"webhook-sender-{n}")

    def _spawn(self, target: Callable[[], None], name: str, *, lowered: bool = True) -> None:
        if lowered:
            target = _lowered(target, self.settings.niceness)
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        with contextlib.suppress(ValueError):
            self.db.wake_listeners.remove(self.wake)
        self._notify()
        with self._done_cv:
            self._done_cv.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0))
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._bell.close()
        self._lock.release()

    def wake(self) -> None:
        """A commit queued deliveries: send them now (or ring the process that sends)."""
        if self._lock.path is None or self._lock.held():
            self._notify()
        else:
            self._bell.ring()

    def _notify(self) -> None:
        self._events.set()
        self._notify_senders()

    def _notify_senders(self) -> None:
        with self._cv:
            self._generation += 1
            self._cv.notify_all()

    def _fan_out(self) -> None:
        """Turn waiting events into deliveries (``outbox.fan_out``) when woken, and every second
        at least (events of other processes and the CLI), then wake the senders. On SQLite in
        the process that sends. Not lowered: it holds the database's write lock."""
        while not self._stopping.is_set():
            self._events.wait(POLL_SECONDS)
            self._events.clear()
            if self._stopping.is_set() or not self._lock.held():
                continue
            moved = 0
            try:
                with self.db.read() as conn:
                    waiting = outbox.events_waiting(conn)
                while waiting:
                    with self.db.write() as conn:
                        taken = outbox.fan_out(conn)
                    moved += taken
                    waiting = taken == outbox.FAN_OUT_BATCH
            except Exception:
                logger.exception("turning webhook events into deliveries failed")
            if moved:
                self._notify_senders()

    def _listen(self) -> None:
        while not self._stopping.is_set():
            if not self._lock.held() or not self._bell.listen():
                self._stopping.wait(POLL_SECONDS)
                continue
            if self._bell.wait():
                self._notify()

    def _prune(self) -> None:
        """Remove finished deliveries past their retention, at start and then hourly (on
        SQLite in the process that sends; on PostgreSQL any process may, it is idempotent)."""
        while not self._stopping.is_set():
            if self._lock.held():
                try:
                    removed = outbox.prune(self.db, self.settings.policy)
                except Exception:
                    logger.exception("removing old webhook deliveries failed")
                else:
                    if removed:
                        logger.info("removed %d webhook deliveries past retention", removed)
                self._stopping.wait(PRUNE_SECONDS)
            else:
                self._stopping.wait(POLL_SECONDS)

    # ------------------------------------------------------------ sending

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._cv:
                generation = self._generation
            if not self._lock.held():
                self._stopping.wait(POLL_SECONDS)
                continue
            try:
                more = self._send_one()
            except Exception:
                logger.exception("webhook delivery failed unexpectedly")
                more = False
            if more:
                continue
            # the earliest due may be one in flight: its end wakes us anyway
            idle = BUSY_WAIT_SECONDS if self._busy else self._idle_seconds()
            with self._cv:
                if self._generation == generation and not self._stopping.is_set():
                    self._cv.wait(idle)

    def _idle_seconds(self) -> float:
        try:
            with self.db.read() as conn:
                due = outbox.next_due_ms(conn)
        except Exception:
            return POLL_SECONDS
        if due is None:
            return POLL_SECONDS
        return min(max((due - now_ms()) / 1000, 0.01), POLL_SECONDS)

    def _send_one(self) -> bool:
        """Send what is due: on PostgreSQL in this thread, under a lock; on SQLite by handing
        each due webhook's oldest delivery to a sender thread. True when more may be due now
        (on SQLite: every sender got one, and another may be free already)."""
        if not self.db.is_sqlite:
            return self._send_locked()
        with self._busy_guard:
            room = self.settings.senders - len(self._busy)
            if room <= 0:
                return False
            with self.db.read() as conn:
                found = outbox.due(conn, self._busy, room)
            self._busy.update(claim.webhook_pk for claim in found)
            self._saturated = len(found) == room
        assert self._pool is not None
        for claim in found:
            self._pool.submit(self._send_here, claim)
        return self._saturated

    def _send_here(self, claim: outbox.Claim) -> None:
        """SQLite, a sender thread: one attempt, handed to the recorder."""
        result: outbox.Attempt | None = None
        try:
            result = self._attempt(claim)
        except Exception:
            logger.exception("webhook delivery failed unexpectedly")
        with self._done_cv:
            self._done.append((claim, result))
            self._done_cv.notify()

    def _record_sent(self) -> None:
        """SQLite, the recorder thread: records every attempt that has ended in one write
        transaction (fewer, shorter holds of the database's write lock), and in it looks up
        the next due delivery of each webhook that succeeded, which goes to a sender at once
        (the webhook stays busy, so its deliveries stay in order). A webhook with nothing due
        is freed; the dispatcher is woken if it may have left something for later."""
        while True:
            with self._done_cv:
                while not self._done and not self._stopping.is_set():
                    self._done_cv.wait(POLL_SECONDS)
                if not self._done:  # stopping (what has ended is still recorded)
                    return
                done, self._done = self._done, []
            with self._cv:
                generation = self._generation
            following: list[outbox.Claim] = []
            failed = False
            try:
                with self.db.write() as conn:
                    for claim, result in done:
                        if result is None:  # nothing to record: sent again later
                            failed = True
                            continue
                        self._record(conn, claim, result)
                        found = outbox.next_of(conn, claim.webhook_pk) if result.ok else None
                        failed = failed or not result.ok
                        if found is not None and not self._stopping.is_set():
                            following.append(found)
            except Exception:
                logger.exception("recording webhook deliveries failed")
                failed, following = True, []
            going_on = {claim.webhook_pk for claim in following}
            assert self._pool is not None
            try:
                for claim in following:
                    self._pool.submit(self._send_here, claim)
            except RuntimeError:  # the pool was shut down: stopping
                going_on = set()
            with self._busy_guard:
                self._busy.difference_update(
                    claim.webhook_pk for claim, _ in done if claim.webhook_pk not in going_on
                )
                recheck = self._saturated or failed
            with self._cv:
                # an event queued since the last look may have been skipped as busy
                recheck = recheck or self._generation != generation
            if recheck:  # (recording makes no new events: the fan-out need not look)
                self._notify_senders()

    def _send_locked(self) -> bool:
        """PostgreSQL: claim, send and record in one transaction, and go on with what falls
        due next (up to a batch): one commit for a run of deliveries, which matters where a
        commit waits on the disk. A crash mid-batch sends the batch's deliveries again."""
        started = time.monotonic()
        sent = 0
        with self.db.write() as conn:
            while sent < BATCH and time.monotonic() - started < BATCH_SECONDS:
                claim = outbox.claim_locked(conn)
                if claim is None:
                    break
                result = self._attempt(claim)
                self._record(conn, claim, result)
                sent += 1
                if not result.ok or self._stopping.is_set():
                    break
        return sent > 0

    def _attempt(self, claim: outbox.Claim) -> outbox.Attempt:
        stale = outbox.expired(claim, self.settings.policy)
        if stale is not None:
            return stale
        return attempt(
            claim.url, claim.body, claim.delivery_id, claim.secret, self.settings.allow_private
        )

    def _record(self, conn: Connection, claim: outbox.Claim, result: outbox.Attempt) -> None:
        state = outbox.record(conn, claim, result, self.settings.policy)
        if not result.ok:
            logger.info(
                "webhook %s: delivery %s of %s to %s failed (%s): %s",
                claim.webhook_id,
                claim.delivery_id,
                claim.event,
                safe_url(claim.url),
                state,
                result.error or f"status {result.status}",
            )
