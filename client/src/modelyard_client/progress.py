"""A progress line on standard error for long transfers: files, bytes, rate and ETA. Drawn only
on a terminal; quiet otherwise (CI logs, pipes). Safe to update from several threads."""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType

from modelyard_client.output import is_terminal, size

REDRAW_SECONDS = 0.1


class Progress:
    def __init__(
        self,
        label: str,
        total_bytes: int,
        total_files: int,
        done_bytes: int = 0,
        unit: str = "files",
    ) -> None:
        """``total_bytes`` 0: the total is not known; the share is then counted in ``unit``."""
        self.label = label
        self.unit = unit
        self.total_bytes = total_bytes
        self.total_files = total_files
        self.done_files = 0
        self.done_bytes = done_bytes
        self.base = done_bytes
        self.enabled = is_terminal()
        self.started = time.monotonic()
        self.drawn = 0.0
        self.lock = threading.Lock()

    def advance(self, count: int) -> None:
        with self.lock:
            self.done_bytes += count
            self._maybe_draw()

    def file_done(self) -> None:
        with self.lock:
            self.done_files += 1
            self._maybe_draw()

    def _maybe_draw(self) -> None:
        now = time.monotonic()
        if self.enabled and now - self.drawn >= REDRAW_SECONDS:
            self.drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-6)
        rate = (self.done_bytes - self.base) / elapsed
        if self.total_bytes:
            left = self.total_bytes - self.done_bytes
            eta = "--:--" if rate <= 0 else _clock(left / rate)
            share = self.done_bytes / self.total_bytes
            amount = f"{size(self.done_bytes)}/{size(self.total_bytes)}  {size(rate)}/s  ETA {eta}"
        else:
            share = self.done_files / self.total_files if self.total_files else 1.0
            amount = f"{size(self.done_bytes)}  {size(rate)}/s" if self.done_bytes else ""
        bar = ("#" * int(share * 24)).ljust(24)
        line = (
            f"\r{self.label} [{bar}] {share:4.0%}  {self.done_files}/{self.total_files} "
            f"{self.unit}  {amount}"
        ).rstrip()
        sys.stderr.write(line + "\x1b[K")
        sys.stderr.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        if self.enabled:
            with self.lock:
                self._draw(time.monotonic())
            sys.stderr.write("\n")
            sys.stderr.flush()


def _clock(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
