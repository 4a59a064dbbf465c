"""The delivery process's bell: a burst of changes wakes the sender once, after the burst (or
at the latest ``most`` seconds after its first change), and the pipe's end-of-file ends it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

from modelyard.webhooks.process import quiet_wakes


class Bell:
    """A real pipe read by ``quiet_wakes`` in a thread, recording when it woke the sender."""

    def __init__(self, quiet: float, most: float) -> None:
        self.reading, self.writing = os.pipe()
        self.wakes: list[float] = []
        self.thread = threading.Thread(
            target=quiet_wakes,
            args=(self.reading, lambda: self.wakes.append(time.monotonic()), quiet, most),
            daemon=True,
        )
        self.thread.start()

    def ring(self) -> float:
        os.write(self.writing, b"\1")
        return time.monotonic()

    def close(self) -> None:
        os.close(self.writing)
        self.thread.join(5)
        os.close(self.reading)


@pytest.fixture
def bell() -> Iterator[Bell]:
    made = Bell(quiet=0.05, most=0.4)
    yield made
    if made.thread.is_alive():
        made.close()


def test_a_burst_wakes_once_after_it_ends(bell: Bell) -> None:
    for _ in range(5):
        last = bell.ring()
        time.sleep(0.01)
    time.sleep(0.2)
    assert len(bell.wakes) == 1
    assert bell.wakes[0] - last >= 0.05 - 0.001


def test_a_burst_longer_than_most_wakes_within_it(bell: Bell) -> None:
    first = bell.ring()
    while time.monotonic() - first < 1.0:
        bell.ring()
        time.sleep(0.01)
    time.sleep(0.2)
    during = [t for t in bell.wakes if t - first < 1.0]
    assert during, "a burst of a second never woke the sender"
    assert during[0] - first <= 0.4 + 0.1
    assert len(bell.wakes) >= 3


def test_a_single_ring_wakes_and_end_of_file_ends(bell: Bell) -> None:
    rang = bell.ring()
    time.sleep(0.2)
    assert len(bell.wakes) == 1
    assert 0.05 - 0.001 <= bell.wakes[0] - rang < 0.4
    bell.close()
    assert not bell.thread.is_alive()
    assert len(bell.wakes) == 1
