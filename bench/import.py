"""Import throughput from an MLflow SQL store, and the import's peak memory.

An MLflow SQLite store is filled with the stock client writing to the database directly:
--runs runs (params, tags, a few points each) and one run with a --points history. Then:

- ``modelyard import mlflow --store sqlite:///…`` into a fresh modelyard server (SQLite):
  runs/s over the small runs, points/s over the long history, and the peak RSS of the import
  process and of the server (the history streams: memory should not grow with --points);
- the same history copied into a fresh ``mlflow server`` (SQLite) with the stock client's
  ``log_batch`` (1,000 points a call, MLflow's limit): what moving it between MLflow servers
  costs, as the reference.

Targets (issue): at least 200,000 points/s and 100 runs/s into modelyard on SQLite.

    .venv/bin/python bench/import.py                      # 300 runs, 100,000 points
    .venv/bin/python bench/import.py --runs 100 --points 20000 --skip-mlflow
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

BIN = Path(sys.executable).parent
QUIET = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
    "NO_PROXY": "127.0.0.1",
}
os.environ.update(QUIET)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (from /proc), MiB."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        return 0.0
    for one in pids:
        try:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class Peak(threading.Thread):
    """The highest RSS of a process seen every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.05)


def start(command: list[str], folder: Path, url: str) -> subprocess.Popen[bytes]:
    log = (folder / "server.log").open("wb")
    proc = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((folder / "server.log").read_text()[-3000:])
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return proc
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{command[0]} did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def points(count: int, key: str = "loss") -> list[Any]:
    from mlflow.entities import Metric

    now = 1_700_000_000_000
    return [Metric(key, 1.0 / (s + 1), now + s, s) for s in range(count)]


def fill(uri: str, runs: int, history: int) -> str:
    """The store; the id of the run with the long history."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(uri)
    experiment = client.create_experiment("bench-import")
    for n in range(runs):
        run = client.create_run(experiment, run_name=f"r{n}")
        client.log_batch(
            run.info.run_id,
            metrics=[Metric("acc", 0.5 + s / 100, 1_700_000_000_000 + s, s) for s in range(5)],
            params=[Param("lr", str(n)), Param("depth", "3")],
            tags=[RunTag("team", "bench")],
        )
        client.set_terminated(run.info.run_id)
    long = client.create_run(experiment, run_name="long")
    batch = points(history)
    for first in range(0, history, 1000):
        client.log_batch(long.info.run_id, metrics=batch[first : first + 1000])
    client.set_terminated(long.info.run_id)
    return str(long.info.run_id)


def import_into_modelyard(db: Path, folder: Path) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start(
        [str(BIN / "modelyard"), "server", "--data-dir", str(folder / "data"), "--port", str(port)],
        folder,
        url,
    )
    try:
        server_peak = Peak(server.pid)
        server_peak.start()
        env = {**os.environ, "MODELYARD_URL": url}
        began = time.perf_counter()
        importer = subprocess.Popen(
            [str(BIN / "modelyard"), "import", "mlflow", "--store", f"sqlite:///{db}", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        client_peak = Peak(importer.pid)
        client_peak.start()
        out, err = importer.communicate()
        seconds = time.perf_counter() - began
        client_peak.done.set()
        server_peak.done.set()
        done = subprocess.CompletedProcess(importer.args, importer.returncode, out, err)
        if done.returncode != 0:
            raise RuntimeError(done.stdout[-3000:] + done.stderr[-3000:])
        report = json.loads(done.stdout)
        return {
            "seconds": seconds,
            "report": report,
            "client_peak_mib": client_peak.peak,
            "server_peak_mib": server_peak.peak,
        }
    finally:
        stop(server)


def copy_into_mlflow(folder: Path, history: int) -> float:
    """Seconds to write the long history into a fresh mlflow server with log_batch."""
    from mlflow import MlflowClient

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination",
            str(folder / "art"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        folder,
        url,
    )
    try:
        client = MlflowClient(url)
        run = client.create_run(client.create_experiment("copy"))
        batch = points(history)
        began = time.perf_counter()
        for first in range(0, history, 1000):
            client.log_batch(run.info.run_id, metrics=batch[first : first + 1000])
        return time.perf_counter() - began
    finally:
        stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary folder.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        store = work / "source.db"
        print(f"filling an MLflow SQLite store: {args.runs} runs, {args.points:,} points …")
        fill(f"sqlite:///{store}", args.runs, args.points)
        (work / "runs").mkdir()
        # the small runs alone, then the long history alone: two rates
        small = work / "small.db"
        fill(f"sqlite:///{small}", args.runs, 0)
        runs_only = import_into_modelyard(small, work / "runs")
        (work / "all").mkdir()
        everything = import_into_modelyard(store, work / "all")
        run_rate = args.runs / runs_only["seconds"]
        history_seconds = max(everything["seconds"] - runs_only["seconds"], 1e-6)
        point_rate = args.points / history_seconds
        print(
            f"modelyard import, {args.runs} small runs: {runs_only['seconds']:.2f} s = "
            f"{run_rate:,.0f} runs/s (target ≥ 100)"
        )
        print(
            f"modelyard import, + {args.points:,} points: {everything['seconds']:.2f} s; "
            f"the history ≈ {point_rate:,.0f} points/s (target ≥ 200,000)"
        )
        print(
            f"peak RSS: import {everything['client_peak_mib']:.0f} MiB, "
            f"server {everything['server_peak_mib']:.0f} MiB"
        )
        results: dict[str, Any] = {
            "runs": args.runs,
            "points": args.points,
            "runs_per_s": run_rate,
            "points_per_s": point_rate,
            "import_peak_mib": everything["client_peak_mib"],
            "server_peak_mib": everything["server_peak_mib"],
            "report": everything["report"]["entities"],
        }
        if not args.skip_mlflow:
            (work / "mlflow").mkdir()
            seconds = copy_into_mlflow(work / "mlflow", args.points)
            mlflow_rate = args.points / seconds
            print(
                f"mlflow server, log_batch of the same history: {seconds:.2f} s = "
                f"{mlflow_rate:,.0f} points/s; modelyard import is {point_rate / mlflow_rate:.1f}x"
            )
            results["mlflow_log_batch_points_per_s"] = mlflow_rate
            results["ratio"] = point_rate / mlflow_rate
        print(json.dumps(results, indent=1))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
