"""Several servers on one PostgreSQL database and one S3 bucket: ingest throughput with 1, 2
and 3 server processes on different ports, clients spread over them, for modelyard and for
the reference MLflow server set up the same way, in one run.

    .venv/bin/python bench/servers.py --quick               # 1 and 3 servers, about 4 minutes
    .venv/bin/python bench/servers.py                       # 1, 2 and 3 servers
    .venv/bin/python bench/servers.py --only modelyard --servers 1 2 3 4

See bench/README.md ("Several servers").
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness
from harness import (
    API,
    BATCH_SIZE,
    Rest,
    Server,
    batch_body,
    executable,
    log,
    start_server,
    stop_server,
    tail,
)
from procs import process_tree
from results import host_info
from seaweed import SeaweedFS

ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
KINDS = ("modelyard", "mlflow")
S3_KEY = "bench"


# --------------------------------------------------------------------------------------------
# Shared storage: a SeaweedFS S3 endpoint and fresh PostgreSQL databases
# --------------------------------------------------------------------------------------------


def start_seaweedfs(root: Path, attempts: int = 3) -> SeaweedFS:
    """SeaweedFS on free ports; again on others when one was taken meanwhile."""
    for attempt in range(1, attempts + 1):
        folder = root / f"weed{attempt}"
        folder.mkdir()
        try:
            return SeaweedFS(folder, key=S3_KEY)
        except RuntimeError as exc:
            if attempt == attempts:
                raise SystemExit(str(exc)) from None
            log(f"SeaweedFS did not start (attempt {attempt}); trying other ports")
    raise AssertionError("unreachable")


def admin_url(url: str) -> Any:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql", database="postgres")


def create_database(url: str, label: str) -> str:
    import psycopg
    from sqlalchemy.engine import make_url

    given = make_url(url)
    name = f"bench_servers_{label}_{uuid.uuid4().hex[:8]}"
    admin = admin_url(url).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    made = given.set(drivername="postgresql+psycopg", database=name)
    return str(made.render_as_string(hide_password=False))


def drop_database(url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    admin = admin_url(url).render_as_string(hide_password=False)
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    except Exception as exc:  # a leftover database is no reason to lose the results
        log(f"could not drop {make_url(url).database}: {exc}")


# --------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------


def commands(
    kind: str, database: str, bucket: str, weed: SeaweedFS, workers: int
) -> tuple[Callable[[str, Path, int], list[str]], dict[str, str]]:
    """The command of one server process of ``kind`` on the shared database and bucket."""
    if kind == "modelyard":

        def modelyard(_kind: str, workdir: Path, port: int) -> list[str]:
            return [
                executable("modelyard"), "server", "--port", str(port), "--workers",
                str(workers), "--data-dir", str(workdir / "data"), "--database-url", database,
                *weed.server_args(bucket),
            ]  # fmt: skip

        return modelyard, {}

    def mlflow(_kind: str, _workdir: Path, port: int) -> list[str]:
        return [
            executable("mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--backend-store-uri", database,
            "--artifacts-destination", f"s3://{bucket}/mlartifacts", "--serve-artifacts",
        ]  # fmt: skip

    env = {
        "MLFLOW_S3_ENDPOINT_URL": weed.endpoint,
        "AWS_ACCESS_KEY_ID": S3_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    return mlflow, env


def start_many(
    kind: str, count: int, workdir: Path, command: Callable[..., list[str]], env: dict[str, str]
) -> list[Server]:
    """The first server alone (it creates the schema), then the others side by side."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    servers: list[Server] = []
    try:
        servers.append(start_server(kind, workdir / "s0", command))
        if count > 1:
            with ThreadPoolExecutor(max_workers=count - 1) as pool:
                found = pool.map(
                    lambda i: start_server(kind, workdir / f"s{i}", command), range(1, count)
                )
                servers += list(found)
    except BaseException:
        for server in servers:
            stop_server(server)
        raise
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return servers


def cpu_ticks(pids: list[int]) -> dict[int, int]:
    """User + system CPU ticks of each of these processes and their descendants."""
    found: dict[int, int] = {}
    for root in pids:
        for pid in process_tree(root):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found[pid] = int(stat[11]) + int(stat[12])
    return found


def cpu_used(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU seconds spent between two snapshots (processes that ended meanwhile are lost)."""
    ticks = sum(t - before.get(pid, 0) for pid, t in after.items())
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_pids(database_url: str) -> list[int]:
    """The PostgreSQL backends serving this database (not the server's shared background
    processes, nor other databases' backends: other work on the machine is left out)."""
    import psycopg
    from sqlalchemy.engine import make_url

    plain = make_url(database_url).set(drivername="postgresql")
    with psycopg.connect(plain.render_as_string(hide_password=False)) as conn:
        found = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        return [int(pid) for (pid,) in found.fetchall()]


# --------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------


@dataclass
class Plan:
    servers: list[int]
    clients: int
    batches: int
    files: int
    file_mib: int
    workers: int


@dataclass
class Figures:
    kind: str
    servers: int
    points_per_s: float = float("nan")
    mib_per_s: float = float("nan")
    cpu: dict[str, float] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    error: str = ""


class Raw:
    """One kept-alive connection: raw bodies in, status checked."""

    def __init__(self, url: str) -> None:
        self.port = int(url.rsplit(":", 1)[1])
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)

    def send(self, method: str, path: str, body: bytes, kind: str = "application/json") -> bytes:
        try:
            self.conn.request(method, path, body=body, headers={"Content-Type": kind})
            response = self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # the server closed the kept-alive connection while it was idle: once more
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
            self.conn.request(method, path, body=body, headers={"Content-Type": kind})
            response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path} -> {response.status}: {data[:300]!r}")
        return data


def together(count: int, work: Callable[[int], None]) -> float:
    """``work(i)`` in ``count`` threads released by one barrier; the wall time."""
    barrier = threading.Barrier(count + 1)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def measure(servers: list[Server], database: str, plan: Plan, out: Figures) -> None:
    urls = [s.base_url for s in servers]
    n = len(servers)
    rest = Rest(urls[0])
    experiment = rest.create_experiment(f"servers-{uuid.uuid4().hex[:8]}")
    runs = [rest.create_run(experiment) for _ in range(plan.clients)]
    rest.close()
    bodies = [
        [batch_body(runs[c], "loss", b * BATCH_SIZE, BATCH_SIZE) for b in range(plan.batches + 1)]
        for c in range(plan.clients)
    ]
    links = [Raw(urls[c % n]) for c in range(plan.clients)]
    for c in range(plan.clients):  # warm-up: one batch per client, on its server
        links[c].send("POST", API + "/runs/log-batch", bodies[c][0])
    pids = [s.proc.pid for s in servers]
    pg = postgres_pids(database)
    before = (cpu_ticks(pids), cpu_ticks(pg), time.process_time())

    def ingest(c: int) -> None:
        for body in bodies[c][1:]:
            links[c].send("POST", API + "/runs/log-batch", body)

    wall = together(plan.clients, ingest)
    client_cpu = time.process_time()
    after = (cpu_ticks(pids), cpu_ticks(pg), client_cpu)
    points = plan.clients * plan.batches * BATCH_SIZE
    out.points_per_s = points / wall
    out.cpu = {
        "wall_s": wall,
        "servers_cpu_s": cpu_used(before[0], after[0]),
        "postgres_cpu_s": cpu_used(before[1], after[1]),
        "client_cpu_s": after[2] - before[2],
    }
    for c, run_id in enumerate(runs):  # every point once, read through another server
        reader = Rest(urls[(c + 1) % n])
        got = reader.get("/metrics/get-history", {"run_id": run_id, "metric_key": "loss"})
        reader.close()
        steps = sorted(int(m["step"]) for m in got.get("metrics", []))
        if steps != list(range((plan.batches + 1) * BATCH_SIZE)):
            raise RuntimeError(f"run {c}: {len(steps)} points stored, not each step once")
    out.checks.append("every point stored once")

    if plan.files:
        size = plan.file_mib << 20
        payloads = [os.urandom(size) for _ in range(plan.files)]

        def upload(c: int) -> None:
            for f, payload in enumerate(payloads):
                path = f"{ARTIFACTS}/{experiment}/{runs[c]}/artifacts/f{f}-{c}.bin"
                body = payload[:-8] + c.to_bytes(8, "big")  # distinct bytes per client
                links[c].send("PUT", path, body, "application/octet-stream")

        wall = together(plan.clients, upload)
        out.mib_per_s = plan.clients * plan.files * plan.file_mib / wall
        for c, run_id in enumerate(runs):
            reader = Rest(urls[(c + 1) % n])
            listed = reader.get("/artifacts/list", {"run_id": run_id})
            reader.close()
            sizes = sorted((f["path"], int(f.get("file_size", 0))) for f in listed["files"])
            if sizes != sorted((f"f{f}-{c}.bin", size) for f in range(plan.files)):
                raise RuntimeError(f"run {c}: artifacts listed as {sizes}")
        out.checks.append("every artifact listed with its size")
    for link in links:
        link.conn.close()


def bench(kind: str, n: int, plan: Plan, weed: SeaweedFS, base_url: str, root: Path) -> Figures:
    out = Figures(kind, n)
    workdir = root / f"{kind}-{n}"
    database = create_database(base_url, kind)
    command, env = commands(kind, database, weed.bucket(), weed, plan.workers)
    servers: list[Server] = []
    try:
        log(f"{kind}: starting {n} server(s)")
        servers = start_many(kind, n, workdir, command, env)
        log(f"{kind}: {n} server(s) up; ingest from {plan.clients} clients")
        measure(servers, database, plan, out)
        log(
            f"{kind} x{n}: {out.points_per_s:,.0f} pts/s, {out.mib_per_s:,.1f} MiB/s, "
            f"cpu {json.dumps({k: round(v, 2) for k, v in out.cpu.items()})}"
        )
    except Exception as exc:
        out.error = f"{type(exc).__name__}: {exc}"
        log(f"{kind} x{n} FAILED: {out.error}")
        for server in servers:
            log(tail(server.log_path, 15))
    finally:
        for server in servers:
            stop_server(server)
        drop_database(database)
    return out


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def report(results: list[Figures], plan: Plan) -> list[dict[str, Any]]:
    rows = []
    by = {(r.kind, r.servers): r for r in results}
    for metric, unit in (("points_per_s", "pts/s"), ("mib_per_s", "MiB/s")):
        if metric == "mib_per_s" and not plan.files:
            continue
        for n in plan.servers:
            mine, theirs = by.get(("modelyard", n)), by.get(("mlflow", n))
            one = by.get(("modelyard", plan.servers[0]))
            value = getattr(mine, metric) if mine and not mine.error else None
            other = getattr(theirs, metric) if theirs and not theirs.error else None
            base = getattr(one, metric) if one and not one.error else None
            rows.append(
                {
                    "workload": "metric ingest" if unit == "pts/s" else "artifact upload",
                    "servers": n,
                    "unit": unit,
                    "modelyard": value,
                    "mlflow": other,
                    "ratio": value / other if value and other else None,
                    "vs_first": value / base if value and base else None,
                }
            )
    return rows


def print_table(rows: list[dict[str, Any]], plan: Plan) -> None:
    def num(v: float | None, digits: int = 0) -> str:
        return "-" if v is None else f"{v:,.{digits}f}"

    print(
        f"\nSeveral servers on one PostgreSQL + one S3 bucket: {plan.clients} clients "
        f"({BATCH_SIZE}-point log-batch), --workers {plan.workers} per server"
    )
    print(f"{'workload':<22}{'servers':>8}{'modelyard':>14}{'mlflow':>12}{'ratio':>8}{'scale':>8}")
    for r in rows:
        digits = 0 if r["unit"] == "pts/s" else 1
        print(
            f"{r['workload'] + ' ' + r['unit']:<22}{r['servers']:>8}"
            f"{num(r['modelyard'], digits):>14}{num(r['mlflow'], digits):>12}"
            f"{num(r['ratio'], 1) + 'x' if r['ratio'] else '-':>8}"
            f"{num(r['vs_first'], 2) + 'x' if r['vs_first'] else '-':>8}"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 and 3 servers, fewer batches")
    parser.add_argument("--servers", type=int, nargs="+", default=None)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batches", type=int, default=None, help="per client (default 15)")
    parser.add_argument("--files", type=int, default=None, help="artifacts per client (2)")
    parser.add_argument("--file-mib", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1, help="--workers of each server")
    parser.add_argument("--only", choices=KINDS, default=None)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("MODELYARD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/bench"),
        help="a PostgreSQL server; a fresh database is made on it for every set-up",
    )
    parser.add_argument("--output", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    harness.stop_on_sigterm()
    os.environ.update(harness.CLIENT_ENV)
    plan = Plan(
        servers=args.servers or ([1, 3] if args.quick else [1, 2, 3]),
        clients=args.clients,
        batches=args.batches or (6 if args.quick else 15),
        files=args.files if args.files is not None else (1 if args.quick else 2),
        file_mib=args.file_mib,
        workers=args.workers,
    )
    kinds = [args.only] if args.only else list(KINDS)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    root = Path(tempfile.mkdtemp(prefix="bench-servers-"))
    results: list[Figures] = []
    weed = start_seaweedfs(root)
    try:
        results += [
            bench(kind, n, plan, weed, args.database_url, root)
            for kind in kinds
            for n in plan.servers
        ]
    finally:
        weed.stop()
        shutil.rmtree(root, ignore_errors=True)
    rows = report(results, plan)
    print_table(rows, plan)
    for r in results:
        if r.error:
            print(f"ERROR [{r.kind} x{r.servers}]: {r.error}")
    output = args.output or harness.RESULTS_DIR / f"servers-{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "host": host_info(),
                "plan": plan.__dict__,
                "rows": rows,
                "results": [r.__dict__ for r in results],
            },
            indent=2,
        )
    )
    log(f"results: {output}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
