"""Webhook benchmark: modelyard against the MLflow reference server, in the same run.

On each server (one after the other, each in its own temporary directory on a free loopback
port) a model with two versions gets its ``production`` alias moved back and forth:

1. latency: with one webhook, each move waits for its delivery at a receiver in this process;
   the figure is the time from sending the move to the delivery's arrival (p50, p95);
2. cost: moves timed with three webhooks disabled, then enabled (deliveries are not waited
   for), in rounds of 25 moves each, so that the load of a shared machine weighs on both
   alike; a round's deliveries have all arrived before the next round's moves without
   webhooks start. The ratio with/without is what an alias move pays for its webhooks
   (modelyard's target: at most 1.10). The receiver of this phase runs in a process of its own
   at the lowest priority (``os.nice(19)``): it stands for a receiver on another machine, so
   receiving takes neither the timing loop's interpreter lock nor, on a small machine, its
   CPU;
3. modelyard alone: the same move as a service call in this process, with no webhook and with
   three whose event is only kept (the outbox's own cost, without the sending), and the pages
   each writes to SQLite's log (WAL frames: a figure the machine's load does not move).

Moves are raw HTTP on one kept-alive connection. MLflow runs with private addresses and http
allowed for its webhooks (``MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS``, ``MLFLOW_WEBHOOK_ALLOWED_SCHEMES``)
and a 1 s webhook cache (``MLFLOW_WEBHOOK_CACHE_TTL``) so it sees the new webhooks.

    .venv/bin/python bench/webhooks.py --quick
    .venv/bin/python bench/webhooks.py --only modelyard --moves 1000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from harness import (
    Outcome,
    Rest,
    Server,
    log,
    percentile,
    record_error,
    server_command,
    start_server,
    stop_server,
)
from results import begin

SERVERS = ("modelyard", "mlflow")
COST_TARGET = 1.10
#: moves per round of the cost phase (without, then with the webhooks)
ROUND = 25
ALIAS_EVENT = [{"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"}]
MLFLOW_ENV = {
    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
    "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
    "MLFLOW_WEBHOOK_CACHE_TTL": "1",
}


class Receiver:
    """Counts deliveries per path and notes when each arrived."""

    def __init__(self) -> None:
        self.arrivals: dict[str, list[float]] = {}
        self.cv = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.perf_counter()
                with receiver.cv:
                    receiver.arrivals.setdefault(self.path, []).append(now)
                    receiver.cv.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def count(self, path: str) -> int:
        with self.cv:
            return len(self.arrivals.get(path, []))

    def wait(self, path: str, count: int, timeout: float) -> float:
        """When the ``count``-th delivery to ``path`` arrived."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while len(self.arrivals.get(path, [])) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(
                        f"{count} deliveries to {path} did not arrive in {timeout} s"
                    )
                self.cv.wait(left)
            return self.arrivals[path][count - 1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


RECEIVER_NICE = 19


def _serve_receiver(ready: Any) -> None:
    """A receiver process: counts deliveries per path; ``GET /count?path=...`` tells how many
    arrived so far."""
    os.nice(RECEIVER_NICE)
    counts: dict[str, int] = {}
    guard = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with guard:
                counts[self.path] = counts.get(self.path, 0) + 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            path = self.path.partition("?path=")[2]
            with guard:
                body = str(counts.get(path, 0)).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    ready.send(server.server_address[1])
    server.serve_forever(0.05)


class RemoteReceiver:
    """A receiver in a separate, lower-priority process: it stands for a receiver on another
    machine (the cost phase must not time the receiving)."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self.process = context.Process(target=_serve_receiver, args=(child,), daemon=True)
        self.process.start()
        if not parent.poll(60):
            raise RuntimeError("the receiver process did not start")
        self.base = f"http://127.0.0.1:{parent.recv()}"

    def count(self, path: str) -> int:
        with urllib.request.urlopen(f"{self.base}/count?path={path}", timeout=10) as answer:
            return int(answer.read())

    def wait(self, path: str, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count(path) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} deliveries to {path} did not arrive in {timeout} s")
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(10)


@dataclass
class Plan:
    moves: int
    latency_moves: int
    warmup: int


def command_for(kind: str, workdir: Path, port: int) -> list[str]:
    """The bench's usual server; modelyard allowed to deliver to the receiver on loopback."""
    command = server_command(kind, workdir, port)
    return [*command, "--webhook-allow-private"] if kind == "modelyard" else command


def prepare(rest: Rest, name: str) -> None:
    """A model with two versions registered from one run."""
    experiment = rest.create_experiment(name)
    run_id = rest.create_run(experiment)
    rest.post("/registered-models/create", {"name": name})
    for _ in range(2):
        rest.post(
            "/model-versions/create",
            {"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id},
        )


def move(rest: Rest, name: str, i: int) -> None:
    body = {"name": name, "alias": "production", "version": str(1 + i % 2)}
    rest.post("/registered-models/alias", body)


def webhook(rest: Rest, url: str, n: int) -> str:
    created = rest.post("/webhooks", {"name": f"bench-{n}", "url": url, "events": ALIAS_EVENT})
    return str(created["webhook"]["webhook_id"])


def timed(action: Callable[[int], None], count: int) -> list[float]:
    out = []
    for i in range(count):
        started = time.perf_counter()
        action(i)
        out.append(time.perf_counter() - started)
    return out


def latency(rest: Rest, receiver: Receiver, moves: int) -> dict[str, float]:
    """Move, then wait for the delivery: from the move's request to the delivery's arrival."""
    name = f"latency-{time.time_ns()}"
    prepare(rest, name)
    hook = webhook(rest, f"{receiver.base}/latency", 0)
    time.sleep(1.5)  # MLflow's webhook cache
    delays = []
    for i in range(moves):
        started = time.perf_counter()
        move(rest, name, i)
        delays.append(receiver.wait("/latency", i + 1, 30) - started)
    rest._call("DELETE", f"/api/2.0/mlflow/webhooks/{hook}", None, "")
    return {
        "delivery_p50_ms": percentile(delays, 50) * 1000,
        "delivery_p95_ms": percentile(delays, 95) * 1000,
    }


def set_status(rest: Rest, hooks: list[str], status: str) -> None:
    body = json.dumps({"status": status}).encode()
    for hook in hooks:
        rest._call("PATCH", f"/api/2.0/mlflow/webhooks/{hook}", body, body.decode())
    time.sleep(1.5)  # MLflow's webhook cache


def cost(rest: Rest, receiver: RemoteReceiver, moves: int, warmup: int) -> dict[str, float]:
    """Alias moves with three webhooks disabled, then enabled (deliveries not waited for), in
    rounds of ``ROUND`` moves each, so that a machine whose load changes weighs on both alike;
    a round's deliveries have all arrived before the next round's moves without webhooks."""
    name = f"cost-{time.time_ns()}"
    prepare(rest, name)
    hooks = [webhook(rest, f"{receiver.base}/cost{n}", n) for n in range(3)]
    set_status(rest, hooks, "DISABLED")
    timed(lambda i: move(rest, name, i), warmup)
    bare: list[float] = []
    hooked: list[float] = []
    for start in range(0, moves, ROUND):
        size = min(ROUND, moves - start)
        set_status(rest, hooks, "DISABLED")
        bare += timed(lambda i: move(rest, name, i), size)
        set_status(rest, hooks, "ACTIVE")
        hooked += timed(lambda i: move(rest, name, i), size)
        for n in range(3):
            receiver.wait(f"/cost{n}", len(hooked), 120)
    without, with_three = percentile(bare, 50), percentile(hooked, 50)
    return {
        "move_p50_ms": without * 1000,
        "move_with_3_webhooks_p50_ms": with_three * 1000,
        "webhook_cost_ratio": with_three / without,
    }


def outbox_cost(workdir: Path, moves: int) -> dict[str, float]:
    """modelyard only, in this process, no HTTP and no sending: the alias move's service call
    with no webhook and with three subscribed webhooks (whose deliveries are only queued),
    interleaved in blocks so that a busy machine weighs on both alike."""
    from modelyard.db.migrate import ensure_schema
    from modelyard.services import aliases, model_versions, registry, runs, webhooks
    from modelyard.settings import Settings

    times: dict[str, list[float]] = {"bare": [], "hooked": []}
    databases = {}
    for kind in times:
        db = Settings(data_dir=workdir / f"outbox-{kind}").database()
        (workdir / f"outbox-{kind}").mkdir(parents=True, exist_ok=True)
        ensure_schema(db)
        registry.create_model(db, 1, "m", [], "")
        for n in range(3 if kind == "hooked" else 0):
            webhooks.create(
                db,
                1,
                name=f"h{n}",
                url="https://hooks.example.com/x",
                events=["model_version_alias.created"],
                actor="bench",
            )
        run = runs.create(
            db, 1, experiment_id="0", user_id=None, run_name=None, start_time=None, tags={}
        )
        for _ in range(2):
            model_versions.create_version(db, 1, "m", f"runs:/{run.info.run_id}/model")
        databases[kind] = db
    for block in range(0, moves, 50):
        for kind, db in databases.items():
            for i in range(block, min(block + 50, moves)):
                started = time.perf_counter()
                aliases.set_alias(db, 1, "m", "production", str(1 + i % 2), "bench")
                times[kind].append(time.perf_counter() - started)
    bare, hooked = percentile(times["bare"], 50), percentile(times["hooked"], 50)
    frames = {
        kind: wal_frames_per_move(db, workdir / f"outbox-{kind}" / "modelyard.db")
        for kind, db in databases.items()
    }
    return {
        "outbox_move_p50_ms": bare * 1000,
        "outbox_move_with_3_webhooks_p50_ms": hooked * 1000,
        "outbox_cost_ratio": hooked / bare,
        "outbox_wal_frames": frames["bare"],
        "outbox_wal_frames_with_3_webhooks": frames["hooked"],
    }


def wal_frames_per_move(db: Any, path: Path, moves: int = 101) -> float:
    """The pages an alias move writes (SQLite's WAL frames, median): a figure that, unlike the
    times, does not move with the machine's load. A checkpoint after each move empties the WAL,
    so the frames it finds are that move's."""
    import sqlite3

    from modelyard.services import aliases

    watcher = sqlite3.connect(path, isolation_level=None)
    try:
        watcher.execute("PRAGMA wal_checkpoint(PASSIVE)")
        counts = []
        for i in range(moves):
            aliases.set_alias(db, 1, "m", "production", str(1 + i % 2), "bench")
            counts.append(watcher.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])
    finally:
        watcher.close()
    return float(sorted(counts)[len(counts) // 2])


def bench(kind: str, workdir: Path, args: Plan) -> Outcome:
    out = Outcome()
    if kind == "mlflow":
        os.environ.update(MLFLOW_ENV)
    receiver = Receiver()
    remote = RemoteReceiver()
    log(f"{kind}: starting")
    server: Server = start_server(kind, workdir, command_for=command_for)
    rest = Rest(server.base_url)
    try:
        out.figures.update(latency(rest, receiver, args.latency_moves))
        log(f"{kind}: latency {out.figures}")
        out.figures.update(cost(rest, remote, args.moves, args.warmup))
        log(f"{kind}: cost {out.figures}")
        if kind == "modelyard":
            out.figures.update(outbox_cost(workdir, args.moves * 2))
            log(f"{kind}: outbox {out.figures}")
    except Exception as exc:  # recorded, the other server still runs
        record_error(out, kind, "webhooks", exc)
    finally:
        rest.close()
        stop_server(server)
        receiver.stop()
        remote.stop()
    return out


def report(outcomes: dict[str, Outcome]) -> None:
    rows = [
        ("event -> delivery p50 (ms)", "delivery_p50_ms"),
        ("event -> delivery p95 (ms)", "delivery_p95_ms"),
        ("alias move p50, no webhook (ms)", "move_p50_ms"),
        ("alias move p50, 3 webhooks (ms)", "move_with_3_webhooks_p50_ms"),
        ("3 webhooks / none", "webhook_cost_ratio"),
        ("service call p50, no webhook (ms)", "outbox_move_p50_ms"),
        ("service call p50, 3 queued (ms)", "outbox_move_with_3_webhooks_p50_ms"),
        ("service: 3 webhooks / none", "outbox_cost_ratio"),
        ("pages written per move, no webhook", "outbox_wal_frames"),
        ("pages written per move, 3 webhooks", "outbox_wal_frames_with_3_webhooks"),
    ]
    mine = outcomes.get("modelyard", Outcome()).figures
    theirs = outcomes.get("mlflow", Outcome()).figures
    print(f"{'':34} {'modelyard':>10} {'mlflow':>10} {'mlflow/modelyard':>17}")
    for label, key in rows:
        a, b = mine.get(key), theirs.get(key)
        ratio = f"{b / a:17.2f}" if a and b else f"{'-':>17}"
        print(f"{label:34} {_num(a):>10} {_num(b):>10} {ratio}")
    got = mine.get("webhook_cost_ratio")
    if got is not None:
        verdict = "ok" if got <= COST_TARGET else "MISS"
        print(f"target: an alias move with 3 webhooks costs at most {COST_TARGET:.2f}x: {verdict}")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Plan]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=SERVERS)
    parser.add_argument("--quick", action="store_true", help="fewer moves (about a minute)")
    parser.add_argument("--moves", type=int, default=None, help="timed moves per phase")
    parser.add_argument("--latency-moves", type=int, default=None)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    plan = Plan(
        moves=args.moves or (150 if args.quick else 600),
        latency_moves=args.latency_moves or (50 if args.quick else 200),
        warmup=20,
    )
    return args, plan


def main(argv: list[str] | None = None) -> int:
    args, plan = parse_args(argv)
    run = begin("webhooks", plan, args.only, SERVERS, args.output)
    outcomes: dict[str, Outcome] = {}
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as tmp:
        for kind in run.kinds:
            outcomes[kind] = bench(kind, Path(tmp) / kind, plan)
    print()
    report(outcomes)
    errors = [e for o in outcomes.values() for e in o.errors]
    fields: dict[str, Any] = {
        k: {"figures": o.figures, "errors": o.errors} for k, o in outcomes.items()
    }
    return run.finish(plan, errors, fields)


if __name__ == "__main__":
    sys.exit(main())
