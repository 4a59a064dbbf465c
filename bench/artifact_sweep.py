"""Artifact size sweep (``bench/artifacts.py --sweep``): upload and download speed at each file
size, for modelyard and the MLflow reference server in the same run, next to what the disk
itself manages with ``dd``.

For every size, each repetition sends the file with a raw HTTP ``PUT`` to each server's proxied
artifact route (the one ``MlflowClient.log_artifact`` uses), then copies it with
``dd bs=1M conv=fsync`` and with plain ``dd`` into a folder on the same filesystem as the
servers' data; the order of the four rotates from one repetition to the next, and each
repetition sends other bytes (the file's first 4 KiB are renewed). Then the last upload is
fetched back with raw ``GET``s. Both servers run side by side (each idle while the other is
measured), so every ratio compares figures taken minutes apart at most, under the same load.
Medians are printed as a table; everything goes to ``bench/results/artifact-sweep-<stamp>.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import math
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness
from harness import RESULTS_DIR, Rest, Server, artifact_server_command, log, stop_server
from procs import cpu_seconds, server_pids, wait_until_quiet
from results import host_info, load_string, print_errors, save_results

MIB = 2**20
SIZES = (1, 4, 16, 64, 256, 1024)
QUICK_SIZES = (1, 4, 16, 64)
SEND_BLOCK = MIB  # the client reads the file and writes the socket 1 MiB at a time
ARTIFACTS_ROUTE = "/api/2.0/mlflow-artifacts/artifacts/"
_STORED = re.compile(r"^mlflow-artifacts:(?://[^/]*)?/+")
_DD_SECONDS = re.compile(r"copied, ([0-9.eE+-]+) s")
SERVERS = ("modelyard", "mlflow")
IDLE_RECONNECT_S = 2.0
HEAD_BYTES = 4096


def parse_sizes(text: str | None, quick: bool) -> tuple[int, ...]:
    """``1,4,16`` -> (1, 4, 16); no list: the default sweep (the quick one stops at 64 MiB)."""
    if not text:
        return QUICK_SIZES if quick else SIZES
    sizes = tuple(int(part) for part in text.split(",") if part.strip())
    if not sizes or any(size <= 0 for size in sizes):
        raise ValueError(f"--sweep wants positive sizes in MiB separated by commas, got {text!r}")
    return sizes


def repetitions(size_mib: int, quick: bool, override: int | None) -> int:
    """More repetitions for small files, whose times are short and noisy."""
    if override:
        return override
    if size_mib <= 4:
        return 7 if quick else 11
    if size_mib <= 64:
        return 5
    return 3


@dataclass
class Endpoint:
    """One server's artifact route for one run, on one kept-alive connection."""

    kind: str
    server: Server
    prefix: str  # URL path of the run's artifact folder, ending in "/"
    connection: http.client.HTTPConnection = field(init=False)
    last_used: float = 0.0

    def __post_init__(self) -> None:
        self.connection = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(
            "127.0.0.1", self.server.port, timeout=600, blocksize=SEND_BLOCK
        )

    def fresh(self) -> None:
        """Reconnect (untimed) when the connection sat idle long enough for the server to
        close it (uvicorn's keep-alive timeout is 5 s by default)."""
        if time.perf_counter() - self.last_used > IDLE_RECONNECT_S:
            self.connection.close()
            self.connection = self._connect()
            self.connection.connect()

    def _exchange(self, method: str, name: str, **kwargs: Any) -> http.client.HTTPResponse:
        url = self.prefix + urllib.parse.quote(name)
        self.last_used = time.perf_counter()
        try:
            self.connection.request(method, url, **kwargs)
            return self.connection.getresponse()
        except (http.client.HTTPException, OSError):
            self.connection.close()
            self.connection = self._connect()
            raise

    def put(self, name: str, source: Path, size: int) -> float:
        """Seconds to send the file and get the answer."""
        self.fresh()
        with source.open("rb") as body:
            t0 = time.perf_counter()
            response = self._exchange(
                "PUT",
                name,
                body=body,
                headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
            )
            answer = response.read()
            elapsed = time.perf_counter() - t0
        self.last_used = time.perf_counter()
        if response.status != 200:
            raise RuntimeError(
                f"{self.kind}: PUT {name} -> HTTP {response.status}: {answer[:300]!r}"
            )
        return elapsed

    def get(self, name: str, size: int, digest: Any = None) -> float:
        """Seconds to receive the whole file (read into a reused buffer, not written out)."""
        buffer = bytearray(SEND_BLOCK)
        view = memoryview(buffer)
        received = 0
        self.fresh()
        t0 = time.perf_counter()
        response = self._exchange("GET", name)
        if response.status != 200:
            body = response.read()
            raise RuntimeError(f"{self.kind}: GET {name} -> HTTP {response.status}: {body[:300]!r}")
        while count := response.readinto(buffer):
            received += count
            if digest is not None:
                digest.update(view[:count])
        elapsed = time.perf_counter() - t0
        self.last_used = time.perf_counter()
        if received != size:
            raise RuntimeError(
                f"CHECK FAILED: {self.kind}: GET {name} gave {received} of {size} bytes"
            )
        return elapsed

    def delete(self, name: str) -> None:
        self._exchange("DELETE", name).read()

    def close(self) -> None:
        self.connection.close()


def make_endpoint(server: Server) -> Endpoint:
    rest = Rest(server.base_url)
    try:
        experiment = rest.create_experiment(harness.unique("sweep"))
        created = rest.post("/runs/create", {"experiment_id": experiment, "start_time": 0})
    finally:
        rest.close()
    uri = created["run"]["info"]["artifact_uri"]
    if not _STORED.match(uri):
        raise RuntimeError(f"{server.kind}: the run's artifacts are not proxied: {uri}")
    return Endpoint(server.kind, server, ARTIFACTS_ROUTE + _STORED.sub("", uri).strip("/") + "/")


def write_source(path: Path, size: int) -> None:
    """Random bytes: nothing to compress."""
    with path.open("wb") as fh:
        for offset in range(0, size, 4 * MIB):
            fh.write(os.urandom(min(4 * MIB, size - offset)))


def renew_head(path: Path) -> None:
    """New random bytes at the start of the file, in place: each repetition uploads other
    content (modelyard stores identical bytes once and would drop the copy)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, os.urandom(HEAD_BYTES), 0)
    finally:
        os.close(fd)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def dd(source: Path, target: Path, fsync: bool) -> float:
    """Seconds dd itself reports for copying ``source`` into a new file ``target`` with 1 MiB
    blocks (with ``conv=fsync`` the fsync of the data is inside that time; the start of the
    process is not)."""
    target.unlink(missing_ok=True)
    command = ["dd", f"if={source}", f"of={target}", "bs=1M"]
    if fsync:
        command.append("conv=fsync")
    env = {**os.environ, "LC_ALL": "C"}
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    found = _DD_SECONDS.search(done.stderr)
    if found is None:
        raise RuntimeError(f"cannot read the time in dd's output: {done.stderr!r}")
    return float(found.group(1))


@dataclass
class SizeResult:
    size_mib: int
    repetitions: int
    load_before: str = ""
    load_after: str = ""
    seconds: dict[str, list[float]] = field(default_factory=dict)  # "<who>.<step>" -> times
    # "<server>.upload" -> CPU seconds its processes used during each timed upload
    cpu_s: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, key: str, seconds: float) -> None:
        self.seconds.setdefault(key, []).append(seconds)

    def cpu_ms_per_mib(self, key: str) -> float:
        """Server CPU per MiB over all repetitions (/proc counts in 10 ms ticks: a sum over
        the repetitions, not a median)."""
        used = self.cpu_s.get(key)
        if not used:
            return math.nan
        return 1000 * sum(used) / (self.size_mib * len(used))

    def mib_s(self, key: str) -> float:
        times = self.seconds.get(key)
        if not times:
            return math.nan
        return self.size_mib / statistics.median(times)


def measure_size(
    size_mib: int, reps: int, endpoints: dict[str, Endpoint], source: Path, dd_dir: Path
) -> SizeResult:
    size = size_mib * MIB
    result = SizeResult(size_mib, reps, load_before=load_string())

    def upload(endpoint: Endpoint, rep: int) -> float:
        pids = server_pids(endpoint.server.proc.pid)
        before = cpu_seconds(pids)
        elapsed = endpoint.put(f"f{size_mib}-{rep}.bin", source, size)
        result.cpu_s.setdefault(f"{endpoint.kind}.upload", []).append(cpu_seconds(pids) - before)
        return elapsed

    uploaders: list[tuple[str, Any]] = [
        (f"{kind}.upload", lambda r, e=endpoint: upload(e, r))
        for kind, endpoint in endpoints.items()
    ]
    uploaders.append(("dd-fsync.upload", lambda _r: dd(source, dd_dir / "copy.bin", True)))
    uploaders.append(("dd.upload", lambda _r: dd(source, dd_dir / "copy.bin", False)))
    for rep in range(reps):
        renew_head(source)
        shift = rep % len(uploaders)
        for key, step in uploaders[shift:] + uploaders[:shift]:
            os.sync()  # untimed: nothing written earlier is still being flushed
            try:
                result.add(key, step(rep))
            except Exception as exc:  # recorded, the other steps go on
                result.errors.append(f"{key} rep {rep}: {type(exc).__name__}: {exc}")
                log(f"  {key} FAILED: {exc}")
    (dd_dir / "copy.bin").unlink(missing_ok=True)
    os.sync()
    uploaded = {k: e for k, e in endpoints.items() if result.seconds.get(f"{k}.upload")}
    name = f"f{size_mib}-{reps - 1}.bin"  # holds what the source holds now
    sha = sha256_of(source)
    for rep in range(reps):
        order = list(uploaded.items())
        if rep % 2:
            order.reverse()
        for kind, endpoint in order:
            try:
                result.add(f"{kind}.download", endpoint.get(name, size))
            except Exception as exc:
                result.errors.append(f"{kind}.download rep {rep}: {type(exc).__name__}: {exc}")
                log(f"  {kind}.download FAILED: {exc}")
    for kind, endpoint in uploaded.items():  # untimed: the bytes that come back are the same
        try:
            check_copy(endpoint, name, size, sha)
            for rep in range(reps):
                endpoint.delete(f"f{size_mib}-{rep}.bin")
        except Exception as exc:
            result.errors.append(f"{kind}.check: {type(exc).__name__}: {exc}")
            log(f"  {kind} check FAILED: {exc}")
    os.sync()
    result.load_after = load_string()
    return result


def check_copy(endpoint: Endpoint, name: str, size: int, sha: str) -> None:
    digest = hashlib.sha256()
    endpoint.get(name, size, digest)
    if digest.hexdigest() != sha:
        raise RuntimeError(f"CHECK FAILED: {endpoint.kind}: {name} came back with other bytes")


def ratio(mine: float, theirs: float) -> str:
    if math.isnan(mine) or math.isnan(theirs) or theirs <= 0:
        return "-"
    return f"{mine / theirs:.2f}x"


def figure(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}"


def cpu_figure(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def label(size_mib: int) -> str:
    return f"{size_mib // 1024} GiB" if size_mib % 1024 == 0 else f"{size_mib} MiB"


def print_sweep(rows: list[SizeResult]) -> None:
    headers = (
        "size",
        "reps",
        "up modelyard",
        "up mlflow",
        "my/mlflow",
        "dd fsync",
        "dd",
        "my/dd-fsync",
        "down modelyard",
        "down mlflow",
        "my/mlflow",
        "up CPU ms/MiB my, mlflow",
        "load (1-min) before-after",
    )
    lines = []
    for row in rows:
        mine, theirs = row.mib_s("modelyard.upload"), row.mib_s("mlflow.upload")
        synced = row.mib_s("dd-fsync.upload")
        down_mine, down_theirs = row.mib_s("modelyard.download"), row.mib_s("mlflow.download")
        lines.append(
            (
                label(row.size_mib),
                str(row.repetitions),
                figure(mine),
                figure(theirs),
                ratio(mine, theirs),
                figure(synced),
                figure(row.mib_s("dd.upload")),
                ratio(mine, synced),
                figure(down_mine),
                figure(down_theirs),
                ratio(down_mine, down_theirs),
                ", ".join(cpu_figure(row.cpu_ms_per_mib(f"{kind}.upload")) for kind in SERVERS),
                f"{row.load_before.split()[0]}-{row.load_after.split()[0]}",
            )
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    for line in lines:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) + " |")
    print(
        "MiB/s, medians over the repetitions. Uploads are raw PUTs of the file to each server's "
        "proxied artifact route; modelyard answers once the bytes are fsynced, MLflow does not "
        "sync. dd copies the same file with bs=1M into a new file on the servers' filesystem, "
        "with conv=fsync and without; the time is dd's own. Downloads are raw GETs of the "
        "last upload, read into memory. Ratios above 1: modelyard faster. Up CPU: the CPU time "
        "the server's processes used during the uploads, per MiB (on a loaded machine the "
        "server that needs less CPU loses less)."
    )


@dataclass(frozen=True)
class SweepPlan:
    sizes: tuple[int, ...]
    reps: dict[int, int]
    servers: tuple[str, ...]


def start_both(kinds: tuple[str, ...], tmp: Path, unset: tuple[str, ...]) -> dict[str, Server]:
    servers: dict[str, Server] = {}
    try:
        for kind in kinds:
            log(f"{kind}: starting")
            servers[kind] = harness.start_server(
                kind, tmp / kind, command_for=artifact_server_command, unset=unset
            )
            log(f"{kind}: /health answered after {servers[kind].cold_start_s:.1f} s")
    except BaseException:
        for server in servers.values():
            stop_server(server)
        raise
    return servers


def run_sweep(args: argparse.Namespace, unset: tuple[str, ...]) -> int:
    """The ``--sweep`` mode of ``bench/artifacts.py``; the exit status."""
    sizes = parse_sizes(args.sweep, args.quick)
    kinds = (args.only,) if args.only else SERVERS
    plan = SweepPlan(sizes, {s: repetitions(s, args.quick, args.repeats) for s in sizes}, kinds)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = args.output or RESULTS_DIR / f"artifact-sweep-{stamp}.json"
    host = host_info()
    log(f"sweep plan: {plan}")
    started = time.perf_counter()
    rows: list[SizeResult] = []
    errors: list[dict[str, str]] = []
    if args.tmp_dir is not None:
        args.tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="modelyard-sweep-", dir=args.tmp_dir) as name:
        tmp = Path(name)
        host["tmp_dir"] = str(tmp)
        host["load_start"] = load_string()
        sources = tmp / "source"
        sources.mkdir()
        dd_dir = tmp / "dd"
        dd_dir.mkdir()
        files: dict[int, Path] = {}
        for size in sizes:
            path = sources / f"s{size}.bin"
            write_source(path, size * MIB)
            files[size] = path
        servers = start_both(kinds, tmp, unset)
        endpoints: dict[str, Endpoint] = {}
        try:
            for kind, server in servers.items():
                endpoint = make_endpoint(server)
                endpoint.put("warm-up.bin", files[sizes[0]], sizes[0] * MIB)
                endpoint.get("warm-up.bin", sizes[0] * MIB)
                endpoints[kind] = endpoint
            for kind, server in servers.items():
                waited, quiet = wait_until_quiet(server.proc.pid)
                log(f"{kind}: {'idle' if quiet else 'still busy'} after {waited:.0f} s")
            for size in sizes:
                log(f"{label(size)}: {plan.reps[size]} repetitions, load {load_string()}")
                rows.append(measure_size(size, plan.reps[size], endpoints, files[size], dd_dir))
                errors += [
                    {"server": "-", "workload": label(size), "error": e} for e in rows[-1].errors
                ]
            for kind, server in servers.items():
                if server.proc.poll() is not None:
                    errors.append({"server": kind, "workload": "-", "error": "server exited"})
        finally:
            for endpoint in endpoints.values():
                endpoint.close()
            for server in servers.values():
                stop_server(server)
            if errors:
                logs = output.parent / f"artifact-sweep-{stamp}-logs"
                logs.mkdir(parents=True, exist_ok=True)
                for server in servers.values():
                    shutil.copyfile(server.log_path, logs / server.log_path.name)
    print()
    print_sweep(rows)
    print(f"load average at the start {host['load_start']}, at the end {load_string()}")
    print_errors(errors)
    save_results(
        output,
        stamp=stamp,
        started=started,
        plan=plan,
        host=host,
        fields={"sizes": [asdict(row) for row in rows], "errors": errors},
    )
    return 1 if errors else 0
