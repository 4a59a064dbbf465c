"""Plumbing shared by the benchmarks: server processes, a thin raw HTTP client, timing loops,
progress lines and error records.

Each server runs in its own session (process group) on a free loopback port and is stopped by a
kill of the whole group; see ``bench/README.md`` ("How it runs").
"""

from __future__ import annotations

import http.client
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.parse
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import requests

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
API = "/api/2.0/mlflow"
BATCH_SIZE = 1000  # MLflow's per-request metric limit
BASE_TS = 1_700_000_000_000  # fixed timestamps so both servers hold identical data
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
# Statistics, timing loops, raw HTTP
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


def artifact_server_command(kind: str, workdir: Path, port: int) -> list[str]:
    """A server whose artifact routes proxy to a folder: modelyard with its defaults, MLflow
    with ``--serve-artifacts`` and one worker."""
    if kind == "modelyard":
        return [
            sys.executable,
            "-m",
            "modelyard",
            "server",
            "--port",
            str(port),
            "--data-dir",
            str(workdir / "data"),
        ]
    return [
        executable("mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{workdir / 'mlflow.db'}",
        "--artifacts-destination",
        str(workdir / "mlartifacts"),
        "--serve-artifacts",
        "--workers",
        "1",
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
# Outcomes and errors
# --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    figures: dict[str, float | None] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)


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


def stop_on_sigterm() -> None:
    """SIGTERM unwinds through the finally blocks that stop the servers."""

    def on_term(_signum: int, _frame: object) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, on_term)
