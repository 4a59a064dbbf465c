"""Tracking benchmark: modelyard against the MLflow reference server, same workloads on each.

Each server is started in its own temporary directory on a free loopback port, measured on its
own (one after the other, so they never compete for the CPU), and stopped with a kill of its
whole process group. Results are printed as a table and written as JSON to
``bench/results/tracking-<timestamp>.json``. See ``bench/README.md`` for what each workload does.

    .venv/bin/python bench/tracking.py --quick
    .venv/bin/python bench/tracking.py --only modelyard --runs 300 10000
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
import requests

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
API = "/api/2.0/mlflow"
SERVERS = ("modelyard", "mlflow")
BATCH_SIZE = 1000  # MLflow's per-request metric limit
HISTORY_PAGE = 25_000  # what MlflowClient.get_metric_history asks for per page
BASE_TS = 1_700_000_000_000  # fixed timestamps so both servers hold identical data
ALPHAS = ("0.1", "0.01", "0.001", "1.0")
TEAMS = ("vision", "speech", "search", "video")
SEARCH_STEPS = 3
SEARCH_FILTER = "metrics.acc > 0.5 and params.alpha = '0.1'"
TAG_FILTER = "tags.team LIKE 'v%'"
SEARCH_ORDER = ("metrics.loss ASC",)
SEARCH_MAX = 100
START_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 20.0

# Environment for the in-process MLflow client (set before mlflow is imported) and the servers.
CLIENT_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "600",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}


def log(message: str) -> None:
    """Progress goes to stderr so stdout holds only the result table."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Sizes and repetitions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    log_metric_calls: int
    warmup: int
    batches_one_client: int
    concurrency: int
    batches_per_concurrent_client: int
    create_runs: int
    search_sizes: tuple[int, ...]
    search_calls: int
    history_sizes: tuple[int, ...]
    history_calls: int
    budget_s: float
    mlflow_max_search_runs: int
    seed_threads: int
    settle_s: float
    workloads: tuple[str, ...] = ()


def make_plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        plan = Plan(
            log_metric_calls=50,
            warmup=3,
            batches_one_client=3,
            concurrency=8,
            batches_per_concurrent_client=1,
            create_runs=30,
            search_sizes=(300,),
            search_calls=10,
            history_sizes=(1_000, 5_000),
            history_calls=3,
            budget_s=12.0,
            mlflow_max_search_runs=10_000,
            seed_threads=4,
            settle_s=2.0,
        )
    else:
        plan = Plan(
            log_metric_calls=300,
            warmup=10,
            batches_one_client=20,
            concurrency=8,
            batches_per_concurrent_client=5,
            create_runs=200,
            search_sizes=(300, 10_000),
            search_calls=30,
            history_sizes=(5_000, 100_000),
            history_calls=5,
            budget_s=45.0,
            mlflow_max_search_runs=10_000,
            seed_threads=4,
            settle_s=5.0,
        )
    sizes = tuple(args.runs) if args.runs else plan.search_sizes
    if args.big and 100_000 not in sizes:
        sizes = (*sizes, 100_000)
    changes: dict[str, Any] = {
        "search_sizes": tuple(sorted(set(sizes))),
        "workloads": tuple(args.workloads or WORKLOAD_NAMES),
    }
    if args.history_steps:
        changes["history_sizes"] = tuple(sorted(set(args.history_steps)))
    if args.budget is not None:
        changes["budget_s"] = args.budget
    if args.mlflow_max_runs is not None:
        changes["mlflow_max_search_runs"] = args.mlflow_max_runs
    return Plan(**{**asdict(plan), **changes})


# --------------------------------------------------------------------------------------------
# Small helpers: statistics, timing loops, raw HTTP
# --------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def timed_calls(
    call: Callable[[int], object], count: int, budget_s: float, min_count: int = 1
) -> list[float]:
    """Call ``call(i)`` up to ``count`` times; stop early once ``budget_s`` is spent."""
    durations: list[float] = []
    started = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        call(i)
        durations.append(time.perf_counter() - t0)
        if len(durations) >= min_count and time.perf_counter() - started > budget_s:
            break
    return durations


class HttpError(RuntimeError):
    """A non-2xx answer, with enough of the request and response to reproduce it."""

    def __init__(self, method: str, url: str, sent: str, status: int, body: str) -> None:
        super().__init__(
            f"{method} {url} -> HTTP {status}\n  request: {sent[:400]}\n  response: {body[:800]}"
        )
        self.status = status


class Rest:
    """Raw JSON calls on one kept-alive ``http.client`` connection (TCP_NODELAY set).

    A deliberately thin client, so that the "raw" rows show the servers' own cost: on this
    machine ``requests`` alone adds about 1-3 ms per call. Not thread-safe: one per thread.
    """

    def __init__(self, base_url: str, timeout_s: float = 600.0) -> None:
        self.base_url = base_url
        parts = urllib.parse.urlsplit(base_url)
        self.connection = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port, timeout=timeout_s
        )

    def _call(self, method: str, url: str, body: bytes | None, sent: str) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            self.connection.request(method, url, body=body, headers=headers)
            response = self.connection.getresponse()
            data = response.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # A kept-alive connection left idle longer than the server's keep-alive timeout
            # (while a slow MlflowClient loop ran) is closed by the server: a GET is sent once
            # more on a new connection; anything else is an error.
            self.connection.close()
            if method != "GET":
                raise
            self.connection.request(method, url, body=body, headers=headers)
            response = self.connection.getresponse()
            data = response.read()
        except (http.client.HTTPException, OSError):
            self.connection.close()  # reconnect on the next call
            raise
        if response.status != 200:
            raise HttpError(method, url, sent, response.status, data.decode(errors="replace"))
        return orjson.loads(data) if data else {}  # type: ignore[no-any-return]

    def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self.post_body(path, json.dumps(payload).encode())

    def post_body(self, path: str, body: bytes) -> dict[str, Any]:
        return self._call("POST", API + path, body, body.decode(errors="replace"))

    def get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        url = API + path + "?" + urllib.parse.urlencode(params, doseq=True)
        return self._call("GET", url, None, json.dumps(params))

    def create_experiment(self, name: str) -> str:
        return str(self.post("/experiments/create", {"name": name})["experiment_id"])

    def create_run(
        self, experiment_id: str, name: str | None = None, start_time: int = BASE_TS
    ) -> str:
        payload: dict[str, Any] = {"experiment_id": experiment_id, "start_time": start_time}
        if name is not None:
            payload["run_name"] = name
        return str(self.post("/runs/create", payload)["run"]["info"]["run_id"])

    def close(self) -> None:
        self.connection.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{time.time_ns()}"


def mlflow_client(base_url: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=base_url)


def metric_objects(key: str, first_step: int, count: int) -> list[Any]:
    from mlflow.entities import Metric

    return [
        Metric(key, (first_step + i) * 0.001, BASE_TS + first_step + i, first_step + i)
        for i in range(count)
    ]


def batch_body(run_id: str, key: str, first_step: int, count: int) -> bytes:
    metrics = [
        {
            "key": key,
            "value": (first_step + i) * 0.001,
            "timestamp": BASE_TS + first_step + i,
            "step": first_step + i,
        }
        for i in range(count)
    ]
    return json.dumps({"run_id": run_id, "metrics": metrics}).encode()


# --------------------------------------------------------------------------------------------
# Server processes
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def executable(name: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"cannot find the '{name}' command next to {sys.executable}")
    return found


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from the parent ids in /proc/<pid>/stat."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
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


@dataclass
class Server:
    kind: str
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    cold_start_s: float = math.nan

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command_line(self) -> str:
        return " ".join(str(a) for a in self.proc.args)  # type: ignore[union-attr]


def server_command(kind: str, workdir: Path, port: int) -> list[str]:
    if kind == "modelyard":
        return [
            executable("modelyard"),
            "server",
            "--data-dir",
            str(workdir / "data"),
            "--port",
            str(port),
        ]
    return [
        executable("mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{workdir / 'mlflow.db'}",
        "--default-artifact-root",
        str(workdir / "art"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def start_server(
    kind: str,
    workdir: Path,
    command_for: Callable[[str, Path, int], list[str]] | None = None,
    unset: Collection[str] = (),
) -> Server:
    """Spawn in a new session (own process group); time until GET /health answers 200.
    ``command_for(kind, workdir, port)`` gives the command (default: ``server_command``);
    ``unset`` names environment variables the server must not see."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_") and k not in unset}
    env.update(CLIENT_ENV)
    log_path = workdir / f"{kind}-server.log"
    log_file = log_path.open("wb")
    command = (command_for or server_command)(kind, workdir, port)
    started = time.perf_counter()
    proc = subprocess.Popen(
        command,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=workdir,
        env=env,
        start_new_session=True,
    )
    log_file.close()
    server = Server(kind, port, workdir, proc, log_path)
    probe = requests.Session()
    probe.trust_env = False
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{kind} exited with {proc.returncode} before answering "
                    f"/health:\n{tail(log_path)}"
                )
            if time.perf_counter() - started > START_TIMEOUT_S:
                stop_server(server)
                raise RuntimeError(f"{kind} did not answer /health within {START_TIMEOUT_S} s")
            try:
                if probe.get(f"{server.base_url}/health", timeout=1.0).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.02)
    finally:
        probe.close()
    server.cold_start_s = time.perf_counter() - started
    return server


def stop_server(server: Server) -> None:
    """SIGTERM the whole process group, then SIGKILL whatever is left after a grace period."""
    pgid = server.proc.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline:
            server.proc.poll()
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                server.proc.wait()
                return
            time.sleep(0.1)
    server.proc.wait()


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------
# Workloads. Each takes the server and the plan and returns flat figures plus extra details.
# --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    figures: dict[str, float | None] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)


def workload_log_metric(server: Server, plan: Plan, out: Outcome) -> None:
    client = mlflow_client(server.base_url)
    experiment_id = client.create_experiment(unique("log-metric"))
    run_id = client.create_run(experiment_id).info.run_id
    for i in range(plan.warmup):
        client.log_metric(run_id, "warmup", float(i), step=i)
    client_times = timed_calls(
        lambda i: client.log_metric(run_id, "m", i * 0.5, step=i),
        plan.log_metric_calls,
        plan.budget_s,
        min_count=min(plan.log_metric_calls, 20),
    )
    rest = Rest(server.base_url)
    raw_run = rest.create_run(experiment_id, "raw")

    def raw_call(i: int) -> object:
        return rest.post(
            "/runs/log-metric",
            {"run_id": raw_run, "key": "m", "value": i * 0.5, "timestamp": BASE_TS + i, "step": i},
        )

    for i in range(plan.warmup):
        raw_call(-1 - i)
    raw_times = timed_calls(
        raw_call, plan.log_metric_calls, plan.budget_s, min_count=min(plan.log_metric_calls, 20)
    )
    rest.close()
    out.figures.update(
        {
            "log_metric.client_p50_ms": percentile(client_times, 50) * 1e3,
            "log_metric.client_p95_ms": percentile(client_times, 95) * 1e3,
            "log_metric.raw_p50_ms": percentile(raw_times, 50) * 1e3,
            "log_metric.raw_p95_ms": percentile(raw_times, 95) * 1e3,
        }
    )
    out.details["log_metric"] = {"client_calls": len(client_times), "raw_calls": len(raw_times)}


def workload_log_batch(server: Server, plan: Plan, out: Outcome) -> None:
    client = mlflow_client(server.base_url)
    experiment_id = client.create_experiment(unique("log-batch"))

    # One MlflowClient: Metric objects are built before the clock starts.
    run_id = client.create_run(experiment_id).info.run_id
    client.log_batch(run_id, metrics=metric_objects("warmup", 0, BATCH_SIZE))
    batches = [
        metric_objects("tp", b * BATCH_SIZE, BATCH_SIZE) for b in range(plan.batches_one_client)
    ]
    times = timed_calls(
        lambda i: client.log_batch(run_id, metrics=batches[i]),
        len(batches),
        plan.budget_s,
        min_count=min(len(batches), 3),
    )
    out.figures["log_batch.client1_pts_s"] = len(times) * BATCH_SIZE / sum(times)

    # One raw HTTP client: bodies serialised before the clock starts.
    rest = Rest(server.base_url)
    raw_run = rest.create_run(experiment_id, "raw")
    rest.post_body("/runs/log-batch", batch_body(raw_run, "warmup", 0, BATCH_SIZE))
    bodies = [
        batch_body(raw_run, "tp", b * BATCH_SIZE, BATCH_SIZE)
        for b in range(plan.batches_one_client)
    ]
    raw_times = timed_calls(
        lambda i: rest.post_body("/runs/log-batch", bodies[i]),
        len(bodies),
        plan.budget_s,
        min_count=min(len(bodies), 3),
    )
    out.figures["log_batch.raw1_pts_s"] = len(raw_times) * BATCH_SIZE / sum(raw_times)

    # N concurrent raw HTTP clients, one thread, session and run each.
    clients = [Rest(server.base_url) for _ in range(plan.concurrency)]
    runs = [rest.create_run(experiment_id, f"concurrent-{i}") for i in range(plan.concurrency)]
    payloads = [
        [
            batch_body(run, "tp", b * BATCH_SIZE, BATCH_SIZE)
            for b in range(plan.batches_per_concurrent_client)
        ]
        for run in runs
    ]
    barrier = threading.Barrier(plan.concurrency + 1)
    sent = [0] * plan.concurrency
    failures: list[str] = []

    def worker(index: int) -> None:
        barrier.wait()
        started = time.perf_counter()
        try:
            for body in payloads[index]:
                clients[index].post_body("/runs/log-batch", body)
                sent[index] += 1
                if time.perf_counter() - started > plan.budget_s:
                    break
        except Exception as exc:  # reported below, the other clients carry on
            failures.append(str(exc))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(plan.concurrency)]
    for thread in threads:
        thread.start()
    barrier.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - t0
    for c in (*clients, rest):
        c.close()
    if failures:
        raise RuntimeError(f"{len(failures)} concurrent client(s) failed; first: {failures[0]}")
    out.figures["log_batch.rawN_pts_s"] = sum(sent) * BATCH_SIZE / elapsed
    out.details["log_batch"] = {
        "client1_batches": len(times),
        "raw1_batches": len(raw_times),
        "concurrent_clients": plan.concurrency,
        "concurrent_batches": sum(sent),
    }


def workload_create_run(server: Server, plan: Plan, out: Outcome) -> None:
    client = mlflow_client(server.base_url)
    experiment_id = client.create_experiment(unique("create-run"))
    for _ in range(min(plan.warmup, 3)):
        client.create_run(experiment_id)
    times = timed_calls(
        lambda _i: client.create_run(experiment_id),
        plan.create_runs,
        plan.budget_s,
        min_count=min(plan.create_runs, 10),
    )
    out.figures["create_run.client_runs_s"] = len(times) / sum(times)
    out.figures["create_run.client_p50_ms"] = percentile(times, 50) * 1e3
    rest = Rest(server.base_url)
    tags = [
        {"key": "mlflow.user", "value": "bench"},
        {"key": "mlflow.source.name", "value": "bench/tracking.py"},
        {"key": "mlflow.source.type", "value": "LOCAL"},
    ]
    raw = timed_calls(
        lambda _i: rest.post("/runs/create", {"experiment_id": experiment_id, "tags": tags}),
        plan.create_runs,
        plan.budget_s,
        min_count=min(plan.create_runs, 10),
    )
    rest.close()
    out.figures["create_run.raw_runs_s"] = len(raw) / sum(raw)
    out.details["create_run"] = {"runs": len(times), "raw_runs": len(raw)}


def workload_history(server: Server, plan: Plan, out: Outcome) -> None:
    client = mlflow_client(server.base_url)
    rest = Rest(server.base_url)
    experiment_id = rest.create_experiment(unique("history"))
    details: dict[str, Any] = {}
    for size in plan.history_sizes:
        run_id = rest.create_run(experiment_id, f"history-{size}")
        t0 = time.perf_counter()
        for first in range(0, size, BATCH_SIZE):
            rest.post_body(
                "/runs/log-batch", batch_body(run_id, "h", first, min(BATCH_SIZE, size - first))
            )
        seed_s = time.perf_counter() - t0
        log(
            f"  {server.kind}: seeded {size} steps in {seed_s:.1f} s "
            f"({size / seed_s:,.0f} points/s)"
        )

        def via_client(_i: int, run_id: str = run_id, size: int = size) -> None:
            got = len(client.get_metric_history(run_id, "h"))
            if got != size:
                raise RuntimeError(f"get_metric_history returned {got} points, expected {size}")

        def via_http(_i: int, run_id: str = run_id, size: int = size) -> None:
            params: dict[str, Any] = {
                "run_id": run_id,
                "metric_key": "h",
                "max_results": HISTORY_PAGE,
            }
            got, pages = 0, 0
            while True:
                page = rest.get("/metrics/get-history", params)
                got += len(page.get("metrics", []))
                pages += 1
                token = page.get("next_page_token")
                if not token or pages > size // HISTORY_PAGE + 2:
                    break
                params["page_token"] = token
            if got != size:
                raise RuntimeError(f"raw get-history pages held {got} points, expected {size}")

        def via_interval(_i: int, run_id: str = run_id, size: int = size) -> None:
            params = {"run_ids": run_id, "metric_key": "h", "max_results": 1000}
            answer = rest.get("/metrics/get-history-bulk-interval", params)
            got = [m["step"] for m in answer["metrics"]]
            # modelyard answers the step sample of MLflow's server before 3.17; MLflow 3.17
            # samples rows per run (NTILE), so its answer is only checked for its size.
            wanted = sampled_steps(list(range(size)), 1000)
            if server.kind == "modelyard" and got != wanted:
                raise RuntimeError(f"bulk-interval gave {got[:5]}..., not {wanted[:5]}...")
            if not 0 < len(got) <= len(wanted):
                raise RuntimeError(f"bulk-interval gave {len(got)} points for {len(wanted)}")

        client_times = timed_calls(via_client, plan.history_calls, plan.budget_s)
        out.figures[f"history.{size}.client_p50_ms"] = percentile(client_times, 50) * 1e3
        raw_times = timed_calls(via_http, plan.history_calls, plan.budget_s)
        out.figures[f"history.{size}.raw_p50_ms"] = percentile(raw_times, 50) * 1e3
        via_interval(-1)
        interval_times = timed_calls(via_interval, max(plan.history_calls, 20), plan.budget_s)
        out.figures[f"history.{size}.interval_p50_ms"] = percentile(interval_times, 50) * 1e3
        details[str(size)] = {
            "seed_s": seed_s,
            "client_calls": len(client_times),
            "raw_calls": len(raw_times),
        }
    rest.close()
    out.details["history"] = details


def sampled_steps(steps: list[int], limit: int) -> list[int]:
    """The steps MLflow's server answers for sorted distinct ``steps`` and ``max_results``:
    the steps at indexes ``int(i * len / limit)``, the last, and the run's first and last."""
    if len(steps) <= limit:
        return steps
    interval = len(steps) / limit
    return sorted({*(steps[int(i * interval)] for i in range(limit)), steps[0], steps[-1]})


@dataclass(frozen=True)
class SeedRun:
    index: int
    name: str
    alpha: str
    team: str
    loss: tuple[float, ...]
    acc: tuple[float, ...]


def search_data(size: int) -> list[SeedRun]:
    rng = random.Random(9_000_000 + size)
    return [
        SeedRun(
            index=i,
            name=f"run-{i:06d}",
            alpha=rng.choice(ALPHAS),
            team=TEAMS[i % len(TEAMS)],
            loss=tuple(rng.uniform(0.05, 2.5) for _ in range(SEARCH_STEPS)),
            acc=tuple(rng.random() for _ in range(SEARCH_STEPS)),
        )
        for i in range(size)
    ]


def expected_search(data: list[SeedRun]) -> list[str]:
    """The answer the search must give: filter on latest values, order by latest loss."""
    hits = [r for r in data if r.acc[-1] > 0.5 and r.alpha == "0.1"]
    hits.sort(key=lambda r: r.loss[-1])
    return [r.name for r in hits[:SEARCH_MAX]]


def expected_newest(data: list[SeedRun], team_prefix: str = "") -> list[str]:
    """The answer of a search without order: newest start time first (each run has its own)."""
    hits = [r for r in data if r.team.startswith(team_prefix)]
    hits.sort(key=lambda r: -r.index)
    return [r.name for r in hits[:SEARCH_MAX]]


def log_search_run(rest: Rest, experiment_id: str, run: Any) -> str:
    """One candidate of the search data set: its loss and accuracy histories, alpha and team,
    created and logged with two calls (the first batch)."""
    run_id = rest.create_run(experiment_id, run.name, start_time=BASE_TS + run.index)
    metrics = [
        {"key": key, "value": values[s], "timestamp": BASE_TS + s, "step": s}
        for key, values in (("loss", run.loss), ("acc", run.acc))
        for s in range(SEARCH_STEPS)
    ]
    rest.post(
        "/runs/log-batch",
        {
            "run_id": run_id,
            "metrics": metrics,
            "params": [{"key": "alpha", "value": run.alpha}],
            "tags": [{"key": "team", "value": run.team}],
        },
    )
    return run_id


def seed_search(server: Server, experiment_id: str, data: list[SeedRun], threads: int) -> float:
    """Create the runs and log their data with raw HTTP; returns the wall time."""
    local = threading.local()
    sessions: list[Rest] = []
    lock = threading.Lock()
    done = [0]
    step = max(len(data) // 10, 1)

    def seed_one(run: SeedRun) -> None:
        rest: Rest | None = getattr(local, "rest", None)
        if rest is None:
            rest = Rest(server.base_url)
            local.rest = rest
            with lock:
                sessions.append(rest)
        log_search_run(rest, experiment_id, run)
        with lock:
            done[0] += 1
            if done[0] % step == 0:
                log(f"  {server.kind}: seeded {done[0]}/{len(data)} runs")

    t0 = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for future in [pool.submit(seed_one, run) for run in data]:
                future.result()
    finally:
        for rest in sessions:
            rest.close()
    return time.perf_counter() - t0


def workload_search(server: Server, plan: Plan, out: Outcome) -> None:
    client = mlflow_client(server.base_url)
    details: dict[str, Any] = out.details.setdefault("search", {})
    for size in plan.search_sizes:
        if server.kind == "mlflow" and size > plan.mlflow_max_search_runs:
            log(f"  mlflow: search at {size} runs skipped (above --mlflow-max-runs)")
            details[str(size)] = {"skipped": True}
            continue
        try:
            search_one_size(server, plan, client, size, out)
        except Exception as exc:
            record_error(out, server.kind, f"search {size}", exc)


def search_one_size(server: Server, plan: Plan, client: Any, size: int, out: Outcome) -> None:
    rest = Rest(server.base_url)
    experiment_id = rest.create_experiment(unique(f"search-{size}"))
    rest.close()
    data = search_data(size)
    seed_s = seed_search(server, experiment_id, data, plan.seed_threads)
    log(f"  {server.kind}: seeded {size} runs in {seed_s:.1f} s ({size / seed_s:,.1f} runs/s)")
    results: list[list[str]] = []

    def search(_i: int) -> None:
        runs = client.search_runs(
            [experiment_id], SEARCH_FILTER, order_by=list(SEARCH_ORDER), max_results=SEARCH_MAX
        )
        results.append([r.info.run_name for r in runs])

    for i in range(2):
        search(i)
    times = timed_calls(search, plan.search_calls, plan.budget_s, min_count=3)

    rest = Rest(server.base_url)
    request = {
        "experiment_ids": [experiment_id],
        "filter": SEARCH_FILTER,
        "order_by": list(SEARCH_ORDER),
        "max_results": SEARCH_MAX,
    }
    raw_names: list[list[str]] = []

    def raw_search(_i: int) -> None:
        page = rest.post("/runs/search", request)
        raw_names.append([r["info"]["run_name"] for r in page.get("runs", [])])

    raw_search(-1)
    raw_times = timed_calls(raw_search, plan.search_calls, plan.budget_s, min_count=3)
    others: dict[str, tuple[dict[str, Any], list[str]]] = {
        "nofilter": (
            {"experiment_ids": [experiment_id], "max_results": SEARCH_MAX},
            expected_newest(data),
        ),
        "tag_like": (
            {"experiment_ids": [experiment_id], "filter": TAG_FILTER, "max_results": SEARCH_MAX},
            expected_newest(data, "v"),
        ),
    }
    other_ok = True
    for label, (body, wanted) in others.items():
        answers: list[list[str]] = []

        def other_search(
            _i: int, body: dict[str, Any] = body, answers: Any = answers, label: str = label
        ) -> None:
            page = rest.post("/runs/search", body)
            runs = page.get("runs", [])
            if runs and not (runs[0]["data"].get("params") and runs[0]["data"].get("tags")):
                raise RuntimeError(f"runs/search ({label}) answered runs without params or tags")
            answers.append([r["info"]["run_name"] for r in runs])

        other_search(-1)
        other_times = timed_calls(other_search, plan.search_calls, plan.budget_s, min_count=3)
        out.figures[f"search.{size}.{label}_raw_p50_ms"] = percentile(other_times, 50) * 1e3
        if answers[0] != wanted:
            other_ok = False
            log(f"  {server.kind}: {label} search at {size} runs returned {answers[0][:3]}...")
    rest.close()
    expected = expected_search(data)
    matches = results[0] == expected and raw_names[0] == expected and other_ok
    if not matches:
        same_set = set(results[0]) == set(expected)
        log(
            f"  {server.kind}: search at {size} runs returned {len(results[0])} runs; expected "
            f"{len(expected)}; same set: {same_set}"
        )
    out.figures[f"search.{size}.p50_ms"] = percentile(times, 50) * 1e3
    out.figures[f"search.{size}.p95_ms"] = percentile(times, 95) * 1e3
    out.figures[f"search.{size}.raw_p50_ms"] = percentile(raw_times, 50) * 1e3
    out.figures[f"search.{size}.seed_runs_s"] = size / seed_s
    out.details["search"][str(size)] = {
        "calls": len(times),
        "raw_calls": len(raw_times),
        "seed_s": seed_s,
        "returned": len(results[0]),
        "expected": len(expected),
        "matches_expected": matches,
        "first_names": results[0][:5],
    }


def record_error(out: Outcome, kind: str, workload: str, exc: BaseException) -> None:
    text = f"{type(exc).__name__}: {exc}"
    out.errors.append(
        {
            "server": kind,
            "workload": workload,
            "error": text,
            "traceback": traceback.format_exc(limit=6),
        }
    )
    log(f"  {kind}: {workload} FAILED: {text}")


WORKLOADS: list[tuple[str, Callable[[Server, Plan, Outcome], None]]] = [
    ("log_metric", workload_log_metric),
    ("log_batch", workload_log_batch),
    ("create_run", workload_create_run),
    ("history", workload_history),
    ("search", workload_search),
]
WORKLOAD_NAMES = tuple(name for name, _ in WORKLOADS)


def bench_server(kind: str, workdir: Path, plan: Plan, keep_logs_in: Path) -> Outcome:
    out = Outcome()
    log(f"{kind}: starting")
    try:
        server = start_server(kind, workdir)
    except Exception as exc:
        record_error(out, kind, "start", exc)
        return out
    try:
        log(f"{kind}: /health answered after {server.cold_start_s:.2f} s on port {server.port}")
        time.sleep(plan.settle_s)
        rss, procs = tree_rss(server.proc.pid)
        out.figures["start.cold_s"] = server.cold_start_s
        out.figures["start.idle_rss_mib"] = rss
        out.figures["start.idle_processes"] = float(procs)
        out.details["command"] = server.command_line()
        for name, workload in WORKLOADS:
            if name not in plan.workloads:
                continue
            log(f"{kind}: {name}")
            t0 = time.perf_counter()
            try:
                workload(server, plan, out)
            except Exception as exc:
                record_error(out, kind, name, exc)
            out.details.setdefault("wall_s", {})[name] = time.perf_counter() - t0
        rss, procs = tree_rss(server.proc.pid)
        out.figures["end.rss_mib"] = rss
        if server.proc.poll() is not None:
            out.errors.append(
                {
                    "server": kind,
                    "workload": "-",
                    "error": f"server exited with {server.proc.returncode}",
                }
            )
    finally:
        log(f"{kind}: stopping process group {server.proc.pid}")
        stop_server(server)
        if out.errors:
            keep_logs_in.mkdir(parents=True, exist_ok=True)
            kept = keep_logs_in / server.log_path.name
            shutil.copyfile(server.log_path, kept)
            out.details["server_log"] = str(kept)
    return out


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    unit: str
    better: str  # "lower", "higher", or "" for figures shown without a ratio
    target: float | None = None


def table_rows(plan: Plan) -> list[Row]:
    rows = [
        Row("start.cold_s", "cold start: spawn -> /health 200", "s", "lower", 2.0),
        Row("start.idle_rss_mib", "idle RSS, all processes", "MiB", "lower", 150.0),
        Row("start.idle_processes", "idle process count", "", ""),
        Row("log_metric.client_p50_ms", "log_metric p50 (MlflowClient)", "ms", "lower", 3.0),
        Row("log_metric.client_p95_ms", "log_metric p95 (MlflowClient)", "ms", "lower"),
        Row("log_metric.raw_p50_ms", "log-metric p50 (raw HTTP)", "ms", "lower", 0.4),
        Row("log_metric.raw_p95_ms", "log-metric p95 (raw HTTP)", "ms", "lower"),
        Row(
            "log_batch.client1_pts_s",
            "log_batch 1 client (MlflowClient)",
            "pts/s",
            "higher",
            100_000.0,
        ),
        Row("log_batch.raw1_pts_s", "log-batch 1 client (raw HTTP)", "pts/s", "higher", 300_000.0),
        Row(
            "log_batch.rawN_pts_s",
            f"log-batch {plan.concurrency} clients (raw HTTP)",
            "pts/s",
            "higher",
        ),
        Row(
            "create_run.client_runs_s",
            "create_run sequential (MlflowClient)",
            "runs/s",
            "higher",
            200.0,
        ),
        Row("create_run.client_p50_ms", "create_run p50 (MlflowClient)", "ms", "lower"),
        Row("create_run.raw_runs_s", "create_run sequential (raw HTTP)", "runs/s", "higher", 200.0),
    ]
    search_targets = {10_000: 30.0, 100_000: 150.0}
    raw_targets = {300: 3.0, 10_000: 3.0}
    for size in plan.search_sizes:
        rows += [
            Row(
                f"search.{size}.p50_ms",
                f"search_runs p50, {size:,} runs",
                "ms",
                "lower",
                search_targets.get(size),
            ),
            Row(f"search.{size}.p95_ms", f"search_runs p95, {size:,} runs", "ms", "lower"),
            Row(
                f"search.{size}.raw_p50_ms",
                f"runs/search p50 (raw), {size:,} runs, metric+param",
                "ms",
                "lower",
                raw_targets.get(size),
            ),
            Row(
                f"search.{size}.nofilter_raw_p50_ms",
                f"runs/search p50 (raw), {size:,} runs, no filter",
                "ms",
                "lower",
                raw_targets.get(size),
            ),
            Row(
                f"search.{size}.tag_like_raw_p50_ms",
                f"runs/search p50 (raw), {size:,} runs, tag LIKE",
                "ms",
                "lower",
                raw_targets.get(size),
            ),
            Row(
                f"search.{size}.seed_runs_s",
                f"  create run + first batch, {size:,} runs (raw, {plan.seed_threads} threads)",
                "runs/s",
                "higher",
                1000.0 if size >= 10_000 else None,
            ),
        ]
    for size in plan.history_sizes:
        rows += [
            Row(
                f"history.{size}.client_p50_ms",
                f"get_metric_history p50, {size:,} steps",
                "ms",
                "lower",
            ),
            Row(
                f"history.{size}.raw_p50_ms",
                f"get-history all pages (raw), {size:,} steps",
                "ms",
                "lower",
                150.0 if size == 100_000 else None,
            ),
            Row(
                f"history.{size}.interval_p50_ms",
                f"get-history-bulk-interval p50 (raw), {size:,} steps",
                "ms",
                "lower",
            ),
        ]
    rows.append(Row("end.rss_mib", "RSS after all workloads", "MiB", "lower"))
    return rows


def fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit in {"pts/s", "runs/s"}:
        number = f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"
    elif unit == "":
        return f"{value:.0f}"
    elif value >= 100:
        number = f"{value:,.0f}"
    elif value >= 10:
        number = f"{value:.1f}"
    else:
        number = f"{value:.2f}"
    return f"{number} {unit}"


def ratio(row: Row, mine: float | None, theirs: float | None) -> float | None:
    if not row.better or mine is None or theirs is None or mine <= 0 or theirs <= 0:
        return None
    return theirs / mine if row.better == "lower" else mine / theirs


def cell(
    kind: str, row: Row, outcomes: dict[str, Outcome], skipped: Iterable[str]
) -> tuple[str, float | None]:
    outcome = outcomes.get(kind)
    if outcome is None:
        return "not run", None
    value = outcome.figures.get(row.key)
    if value is None:
        workload = row.key.split(".", 1)[0]
        ran = workload in ("start", "end") or workload in outcome.details.get("wall_s", {})
        if row.key in skipped or not ran:
            return "skipped", None
        return "error", None
    return fmt(value, row.unit), value


def build_report(plan: Plan, outcomes: dict[str, Outcome]) -> list[dict[str, Any]]:
    skipped_mlflow = {
        f"search.{size}.{suffix}"
        for size in plan.search_sizes
        if size > plan.mlflow_max_search_runs
        for suffix in (
            "p50_ms",
            "p95_ms",
            "raw_p50_ms",
            "nofilter_raw_p50_ms",
            "tag_like_raw_p50_ms",
            "seed_runs_s",
        )
    }
    report = []
    for row in table_rows(plan):
        my_text, my_value = cell("modelyard", row, outcomes, ())
        ml_text, ml_value = cell("mlflow", row, outcomes, skipped_mlflow)
        r = ratio(row, my_value, ml_value)
        target = ""
        met: bool | None = None
        if row.target is not None:
            sign = "<=" if row.better == "lower" else ">="
            target = f"{sign} {fmt(row.target, row.unit)}"
            if my_value is not None:
                met = my_value <= row.target if row.better == "lower" else my_value >= row.target
                target += "  ok" if met else "  MISS"
        report.append(
            {
                "key": row.key,
                "label": row.label,
                "unit": row.unit,
                "better": row.better,
                "modelyard": my_value,
                "mlflow": ml_value,
                "ratio": r,
                "modelyard_text": my_text,
                "mlflow_text": ml_text,
                "ratio_text": "-" if r is None else f"{r:,.1f}x",
                "target": row.target,
                "target_text": target,
                "target_met": met,
            }
        )
    return report


def print_table(
    report: list[dict[str, Any]],
    headers: tuple[str, ...] = ("workload", "modelyard", "mlflow", "ratio", "modelyard target"),
) -> None:
    """The report as a Markdown table (label left, figures right, target left)."""
    lines = [
        (r["label"], r["modelyard_text"], r["mlflow_text"], r["ratio_text"], r["target_text"])
        for r in report
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]

    def render(cells: tuple[str, ...]) -> str:
        parts = [cells[0].ljust(widths[0])]
        parts += [c.rjust(w) for c, w in zip(cells[1:4], widths[1:4], strict=True)]
        parts.append(cells[4].ljust(widths[4]))
        return "| " + " | ".join(parts) + " |"

    print(render(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        print(render(line))


def versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for package in ("modelyard", "mlflow", "requests"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "?"
    found["modelyard_commit"] = git("rev-parse", "--short", "HEAD") or "?"
    status = git("status", "--porcelain", "--", "src")
    found["modelyard_src_dirty"] = "?" if status is None else ("yes" if status else "no")
    return found


def git(*args: str) -> str | None:
    """Output of a git command in this checkout (None when git is unavailable)."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=BENCH_DIR, capture_output=True, text=True, check=False, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark modelyard against the MLflow tracking server on this machine."
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and few repetitions (about 3 minutes)"
    )
    parser.add_argument("--only", choices=SERVERS, help="measure one server only")
    parser.add_argument(
        "--runs",
        type=int,
        nargs="+",
        metavar="N",
        help="search workload sizes in runs (default 300 10000; quick: 300)",
    )
    parser.add_argument("--big", action="store_true", help="add a 100,000-run search size")
    parser.add_argument(
        "--workloads",
        nargs="+",
        choices=WORKLOAD_NAMES,
        metavar="NAME",
        help=f"run only these workloads ({', '.join(WORKLOAD_NAMES)}; default all)",
    )
    parser.add_argument(
        "--history-steps",
        type=int,
        nargs="+",
        metavar="N",
        help="metric history lengths (default 5000 100000; quick: 1000 5000)",
    )
    parser.add_argument(
        "--mlflow-max-runs",
        type=int,
        metavar="N",
        help="skip MLflow search sizes above N runs (default 10000)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        metavar="S",
        help="wall-time cap in seconds for each timed loop (default 45; quick 12)",
    )
    parser.add_argument("--output", type=Path, help="JSON file to write (default bench/results/)")
    args = parser.parse_args(argv)
    for sizes in (args.runs or [], args.history_steps or []):
        if any(n <= 0 for n in sizes):
            parser.error("sizes must be positive")
    return args


def stop_on_sigterm() -> None:
    """SIGTERM unwinds through the finally blocks that stop the servers."""

    def on_term(_signum: int, _frame: object) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_term)


def host_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        **versions(),
    }


def load_string() -> str:
    """The machine's load average: the benchmark shares its cores with whatever else runs."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def print_errors(errors: list[dict[str, str]]) -> None:
    for error in errors:
        print(f"ERROR [{error['server']} / {error['workload']}]: {error['error']}")


def save_results(
    output: Path,
    *,
    stamp: str,
    started: float,
    plan: Any,
    host: dict[str, Any],
    fields: dict[str, Any],
    where: str = "",
) -> None:
    """Print the run's provenance line and write the results document."""
    total_s = time.perf_counter() - started
    dirty = " with uncommitted changes in src/" if host["modelyard_src_dirty"] == "yes" else ""
    place = f", temp data on {where}" if where else ""
    print(
        f"modelyard commit {host['modelyard_commit']}{dirty}, mlflow {host['mlflow']}, "
        f"{host['cpus']} CPUs{place}; total wall time {total_s / 60:.1f} min"
    )
    document = {
        "started_utc": stamp,
        "wall_s": total_s,
        "argv": sys.argv[1:],
        "plan": asdict(plan),
        "host": host,
        **fields,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"results written to {output}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.update(CLIENT_ENV)

    stop_on_sigterm()
    plan = make_plan(args)
    kinds = [args.only] if args.only else list(SERVERS)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = args.output or RESULTS_DIR / f"tracking-{stamp}.json"
    host = host_info()
    log(f"plan: {plan}")
    log(f"versions: {host}")
    started = time.perf_counter()
    load_before = load_string()
    outcomes: dict[str, Outcome] = {}
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as tmp:
        for kind in kinds:
            outcomes[kind] = bench_server(
                kind, Path(tmp) / kind, plan, output.parent / f"tracking-{stamp}-logs"
            )
    report = build_report(plan, outcomes)
    print()
    print_table(report)
    print(
        "ratio > 1 means modelyard is better (latency: mlflow/modelyard; "
        "throughput: modelyard/mlflow)"
    )
    errors = [e for o in outcomes.values() for e in o.errors]
    mismatches = [
        f"{kind} search at {size} runs: returned {d['returned']}, expected {d['expected']}"
        for kind, o in outcomes.items()
        for size, d in o.details.get("search", {}).items()
        if not d.get("skipped") and not d.get("matches_expected")
    ]
    checked = [
        f"{kind} {size}"
        for kind, o in outcomes.items()
        for size, d in o.details.get("search", {}).items()
        if d.get("matches_expected")
    ]
    if checked:
        print(f"search answers equal to the locally computed answer: {', '.join(checked)}")
    mine = outcomes.get("modelyard")
    several = mine.figures.get("log_batch.rawN_pts_s") if mine else None
    one = mine.figures.get("log_batch.raw1_pts_s") if mine else None
    if several and one:
        verdict = "ok" if several >= one else "MISS"
        print(
            f"modelyard log-batch {plan.concurrency} clients / 1 client: {several / one:.2f}x "
            f"(target >= 1.00x) {verdict}"
        )
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_string()}")
    for line in mismatches:
        print(f"CHECK FAILED: {line} (or different order)")
    print_errors(errors)
    save_results(
        output,
        stamp=stamp,
        started=started,
        plan=plan,
        host=host,
        fields={
            "rows": report,
            "servers": {kind: asdict(o) for kind, o in outcomes.items()},
            "search_mismatches": mismatches,
        },
    )
    return 1 if errors or mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
