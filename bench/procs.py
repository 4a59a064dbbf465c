"""What the benchmarks read from /proc about a server: its processes, their resident memory
and CPU time, a memory sampler, and a wait until the server is idle."""

from __future__ import annotations

import itertools
import math
import os
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

SAMPLE_INTERVAL_S = 0.05
PIDS_REFRESH_EVERY = 20  # samples between two scans of /proc for the server's processes
QUIET_WINDOW_S = 2.0
QUIET_CPU_SHARE = 0.1  # of one core, summed over the server's processes
QUIET_RSS_MIB = 2.0
QUIET_LIMIT_S = 240.0


# --------------------------------------------------------------------------------------------
# Process trees
# --------------------------------------------------------------------------------------------


def _processes() -> Iterator[tuple[int, int, int]]:
    """(pid, parent pid, process group) of every process, from /proc/<pid>/stat."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        yield int(entry.name), int(fields[1]), int(fields[2])


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from the parent ids in /proc/<pid>/stat."""
    children: dict[int, list[int]] = {}
    for pid, ppid, _group in _processes():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    stack = [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def tree_rss(root: int) -> tuple[float, int]:
    """Summed resident memory (MiB) and process count of ``root`` and its descendants."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    count = 0
    for pid in process_tree(root):
        try:
            resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        total += resident * page
        count += 1
    return total / 2**20, count


def server_pids(root: int) -> list[int]:
    """Processes in the process group led by ``root``, plus any descendant that left it."""
    children: dict[int, list[int]] = {}
    found: set[int] = set()
    for pid, ppid, pgrp in _processes():
        children.setdefault(ppid, []).append(pid)
        if pgrp == root:
            found.add(pid)
    stack = [root]
    while stack:
        pid = stack.pop()
        found.add(pid)
        stack.extend(children.get(pid, []))
    return sorted(found)


def vm_rss_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_bytes()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith(b"VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time consumed so far by ``pids`` (from /proc/<pid>/stat)."""
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time all processes on the machine have used since boot (all cores, /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class RssSampler(threading.Thread):
    """Samples the server's summed RSS every ``interval`` seconds, each sample tagged with the
    phase the benchmark is in when it is taken."""

    def __init__(self, root: int, interval: float = SAMPLE_INTERVAL_S) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.root = root
        self.interval = interval
        self.phase = "idle"
        self.samples: list[tuple[float, str, float]] = []
        self.pids: list[int] = []
        self.process_counts: list[int] = []
        # (phase entered, wall clock, CPU seconds of the server, of the benchmark process and of
        # the whole machine)
        self.marks: list[tuple[str, float, float, float, float]] = []
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        while True:
            self.sample()
            if self._stop_event.wait(self.interval):
                return

    def sample(self) -> None:
        with self._lock:
            if len(self.samples) % PIDS_REFRESH_EVERY == 0:
                self.pids = server_pids(self.root)
                self.process_counts.append(len(self.pids))
            phase = self.phase
            mib = sum(vm_rss_kib(pid) for pid in self.pids) / 1024
            self.samples.append((time.perf_counter(), phase, mib))

    def enter(self, phase: str) -> None:
        """Sample at the end of the current phase, switch, and sample at once in the new one."""
        self.sample()
        self.phase = phase
        with self._lock:
            server_cpu = cpu_seconds(self.pids)
        self.marks.append(
            (phase, time.perf_counter(), server_cpu, time.process_time(), machine_busy_seconds())
        )
        self.sample()

    def cpu(self) -> dict[str, dict[str, float]]:
        """Per phase: wall time, server CPU, benchmark-process CPU (the client and this sampler),
        and the CPU used by everything else (other programs, kernel threads, interrupts, part of
        it the loopback traffic and disk writeback of the transfer itself)."""
        return {
            phase: {
                "wall_s": nxt[1] - wall,
                "server_cpu_s": nxt[2] - server,
                "client_cpu_s": nxt[3] - client,
                "other_cpu_s": (nxt[4] - machine) - (nxt[2] - server) - (nxt[3] - client),
            }
            for (phase, wall, server, client, machine), nxt in itertools.pairwise(self.marks)
        }

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def values(self, phase: str) -> list[float]:
        with self._lock:
            return [mib for _, p, mib in self.samples if p == phase]

    def peak(self, phase: str) -> float:
        values = self.values(phase)
        return max(values) if values else math.nan

    def median(self, phase: str) -> float:
        values = self.values(phase)
        return statistics.median(values) if values else math.nan


def wait_until_quiet(root: int) -> tuple[float, bool]:
    """Wait until the server's processes are idle: two windows in a row with little CPU, no
    change in RSS and no process started or ended. MLflow keeps starting its job consumers for
    about a minute after /health answers; measuring during that time would charge their start
    to the transfers. Returns the seconds waited and whether the server became quiet."""
    started = time.perf_counter()
    quiet_windows = 0
    pids = server_pids(root)
    cpu = cpu_seconds(pids)
    rss = sum(vm_rss_kib(pid) for pid in pids) / 1024
    while time.perf_counter() - started < QUIET_LIMIT_S:
        time.sleep(QUIET_WINDOW_S)
        now_pids = server_pids(root)
        now_cpu = cpu_seconds(now_pids)
        now_rss = sum(vm_rss_kib(pid) for pid in now_pids) / 1024
        calm = (
            now_pids == pids
            and now_cpu - cpu < QUIET_CPU_SHARE * QUIET_WINDOW_S
            and abs(now_rss - rss) < QUIET_RSS_MIB
        )
        quiet_windows = quiet_windows + 1 if calm else 0
        if quiet_windows >= 2:
            return time.perf_counter() - started, True
        pids, cpu, rss = now_pids, now_cpu, now_rss
    return time.perf_counter() - started, False
