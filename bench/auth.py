"""Authentication benchmark: what the auth gate costs per call, measured in the same run.

Two modelyard servers run side by side on free loopback ports, each in its own temporary
directory and process group: one without authentication, one with ``--auth``. Every call is
timed from one client in four ways (variants), and the variants take turns call by call, in a
shuffled order each cycle, so that noise on the machine hits all of them alike:

- no auth, default project (the baseline every ratio is taken against);
- no auth, project URL ``/projects/bench`` (the project prefix without authentication);
- ``--auth``, the personal token of a non-admin user who is a developer of ``bench``, on
  ``/projects/bench``;
- ``--auth``, the first admin's token, default project.

Measured: ``POST runs/log-metric`` on a raw kept-alive ``http.client`` connection and through
the stock ``MlflowClient.log_metric``, then raw ``GET runs/get`` and ``POST runs/search``.
Results are printed as a table and written as JSON to ``bench/results/auth-<timestamp>.json``.
See ``bench/README.md``.

    .venv/bin/python bench/auth.py --quick
    .venv/bin/python bench/auth.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import harness
import results
from harness import (
    BASE_TS,
    Outcome,
    Rest,
    Server,
    executable,
    log,
    percentile,
    record_error,
    stop_server,
)
from procs import process_tree
from results import begin, fmt
from tracking_workloads import (
    SEARCH_FILTER,
    SEARCH_MAX,
    SEARCH_ORDER,
    expected_search,
    log_search_run,
    search_data,
)

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
PROJECT = "bench"
TARGET_RATIO = 1.10  # authenticated p50 at most 10 % above the unauthenticated one
SEARCH_RUNS = 100
HISTORY_PAGE = 25_000
TOKEN_ENV = "MLFLOW_TRACKING_TOKEN"
SEED = 20_240_601


@dataclass(frozen=True)
class Plan:
    raw_cycles: int  # raw log-metric calls per variant
    client_cycles: int  # MlflowClient.log_metric calls per variant
    get_cycles: int  # raw runs/get calls per variant
    search_cycles: int  # raw runs/search calls per variant
    warmup: int  # untimed calls per variant before each phase
    budget_s: float  # wall-time cap of each timed phase


def make_plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        plan = Plan(
            raw_cycles=400,
            client_cycles=50,
            get_cycles=200,
            search_cycles=60,
            warmup=10,
            budget_s=8.0,
        )
    else:
        plan = Plan(
            raw_cycles=3000,
            client_cycles=800,
            get_cycles=1200,
            search_cycles=400,
            warmup=30,
            budget_s=40.0,
        )
    if args.cycles is not None:
        plan = Plan(**{**asdict(plan), "raw_cycles": args.cycles})
    return plan


# --------------------------------------------------------------------------------------------
# The four ways of calling
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    server: str  # "plain" (no auth) or "auth"
    project: str | None  # None: the default project (bare URL)
    user: str | None  # whose token is sent (None: no token)


VARIANTS = (
    Variant("plain", "no auth, default project", "plain", None, None),
    Variant("plain_project", f"no auth, /projects/{PROJECT}", "plain", PROJECT, None),
    Variant("dev", f"--auth, developer token, /projects/{PROJECT}", "auth", PROJECT, "dev"),
    Variant("admin", "--auth, admin token, default project", "auth", None, "admin"),
)
BASELINE = "plain"
AUTHENTICATED = frozenset(v.key for v in VARIANTS if v.user is not None)


class _Connection(http.client.HTTPConnection):
    """Sends every request below a path prefix, with a Bearer token when there is one."""

    def __init__(self, host: str, port: int | None, prefix: str, token: str | None) -> None:
        super().__init__(host, port, timeout=600.0)
        self.prefix = prefix
        self.authorization = f"Bearer {token}" if token else None

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        *,
        encode_chunked: bool = False,
    ) -> None:
        headers = dict(headers or {})
        if self.authorization:
            headers["Authorization"] = self.authorization
        super().request(method, self.prefix + url, body, headers, encode_chunked=encode_chunked)


class TokenRest(Rest):
    """``harness.Rest`` on a project URL, sending a token: same thin client, same cost."""

    def __init__(self, server_url: str, project: str | None, token: str | None) -> None:
        super().__init__(server_url)
        prefix = f"/projects/{project}" if project else ""
        self.base_url = server_url + prefix
        self.connection = _Connection("127.0.0.1", self.connection.port, prefix, token)


@dataclass
class Caller:
    """One variant, ready to call: its connection, its MlflowClient and its data."""

    variant: Variant
    url: str
    token: str | None
    rest: TokenRest
    client: Any
    pid: int  # the server's process
    ids: dict[str, str] = field(default_factory=dict)
    search_data: list[Any] = field(default_factory=list)

    def use_token(self) -> None:
        """The MLflow client reads MLFLOW_TRACKING_TOKEN on every call; set before timing."""
        if self.token:
            os.environ[TOKEN_ENV] = self.token
        else:
            os.environ.pop(TOKEN_ENV, None)


# --------------------------------------------------------------------------------------------
# Storage, users, servers
# --------------------------------------------------------------------------------------------


def fresh_pg_databases(url: str, roles: list[str]) -> dict[str, str]:
    """A new, empty PostgreSQL database per server, on the server of ``url`` and named after
    its database (``<db>_<role>_<random>``); created from the ``postgres`` maintenance
    database like the test suite does, dropped by ``drop_pg_databases``."""
    import psycopg
    from sqlalchemy.engine import make_url

    given = make_url(url)
    admin = given.set(drivername="postgresql", database="postgres")
    suffix = uuid.uuid4().hex[:8]
    made: dict[str, str] = {}
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        for role in roles:
            name = f"{given.database or 'modelyard'}_auth_{role}_{suffix}"[-63:]
            conn.execute(f'CREATE DATABASE "{name}"')
            made[role] = given.set(database=name).render_as_string(hide_password=False)
    return made


def drop_pg_databases(urls: dict[str, str]) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    for url in urls.values():
        parsed = make_url(url)
        admin = parsed.set(drivername="postgresql", database="postgres")
        try:
            with psycopg.connect(
                admin.render_as_string(hide_password=False), autocommit=True
            ) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
        except Exception as exc:  # a leftover database is no reason to lose the results
            log(f"could not drop database {parsed.database}: {exc}")


def storage_args(workdir: Path, database_url: str | None) -> list[str]:
    args = ["--data-dir", str(workdir / "data")]
    return [*args, "--database-url", database_url] if database_url else args


def modelyard(*args: str) -> str:
    """Run a ``modelyard`` command (no ``MODELYARD_*`` variables); its standard output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    done = subprocess.run(
        [executable("modelyard"), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"modelyard {' '.join(args[:3])} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def prepare_storage(kind: str, workdir: Path, database_url: str | None) -> dict[str, str]:
    """Users, tokens and the project, created with the CLI before the server starts.
    Returns the tokens by user name."""
    storage = storage_args(workdir, database_url)
    if kind == "plain":
        modelyard("admin", "projects", "create", PROJECT, *storage)
        return {}
    tokens = {
        "admin": modelyard("admin", "users", "create", "admin", "--admin", *storage),
        "dev": modelyard("admin", "users", "create", "dev", *storage),
    }
    modelyard("admin", "projects", "create", PROJECT, "--owner", "admin", *storage)
    modelyard("admin", "projects", "add-member", PROJECT, "dev", "developer", *storage)
    return tokens


def command_for(database_urls: dict[str, str]) -> Callable[[str, Path, int], list[str]]:
    def command(kind: str, workdir: Path, port: int) -> list[str]:
        extra = ["--auth"] if kind == "auth" else []
        return [
            executable("modelyard"),
            "server",
            "--port",
            str(port),
            *storage_args(workdir, database_urls.get(kind)),
            *extra,
        ]

    return command


# --------------------------------------------------------------------------------------------
# Setup (not timed) and the interleaved timing loop
# --------------------------------------------------------------------------------------------


def set_up(caller: Caller) -> None:
    """An experiment with a run per timed workload, and SEARCH_RUNS seeded runs to read."""
    rest = caller.rest
    stamp = time.time_ns()
    experiment = rest.create_experiment(f"auth-{caller.variant.key}-{stamp}")
    caller.ids["raw_run"] = rest.create_run(experiment, "raw")
    caller.ids["client_run"] = rest.create_run(experiment, "client")
    search_experiment = rest.create_experiment(f"auth-search-{caller.variant.key}-{stamp}")
    caller.ids["search_experiment"] = search_experiment
    caller.search_data = search_data(SEARCH_RUNS)
    for run in caller.search_data:
        run_id = log_search_run(rest, search_experiment, run)
        caller.ids.setdefault("get_run", run_id)


@dataclass(frozen=True)
class Probe:
    call: Callable[[int], object]
    server: str  # the variant's server kind
    pid: int  # and its process
    before: Callable[[], None] | None = None  # untimed, just before each call


def cpu_seconds(root: int) -> float:
    """User + system CPU time of ``root`` and its descendants, from /proc/<pid>/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def interleaved(
    probes: dict[str, Probe], cycles: int, budget_s: float, rng: random.Random, first: int = 0
) -> dict[str, list[float]]:
    """``cycles`` rounds; in each, every variant makes one call, in a new random order.
    Stops early (after whole rounds, at least 20) once ``budget_s`` is spent."""
    times: dict[str, list[float]] = {key: [] for key in probes}
    order = list(probes)
    started = time.perf_counter()
    for i in range(first, first + cycles):
        rng.shuffle(order)
        for key in order:
            probe = probes[key]
            if probe.before is not None:
                probe.before()
            t0 = time.perf_counter()
            probe.call(i)
            times[key].append(time.perf_counter() - t0)
        if i - first >= 20 and time.perf_counter() - started > budget_s:
            break
    return times


def measure(
    out: Outcome,
    operation: str,
    probes: dict[str, Probe],
    cycles: int,
    budget_s: float,
    rng: random.Random,
) -> dict[str, list[float]]:
    """The timed, interleaved calls; records their figures, and each server's CPU time per
    call (robust to a busy machine, though it mixes the variants each server serves)."""
    pids = {p.server: p.pid for p in probes.values()}
    before = {server: cpu_seconds(pid) for server, pid in pids.items()}
    times = interleaved(probes, cycles, budget_s, rng)
    for server, pid in pids.items():
        calls = sum(len(times[k]) for k, p in probes.items() if p.server == server)
        used = cpu_seconds(pid) - before[server]
        out.figures[f"{operation}.cpu.{server}_ms"] = used / calls * 1e3 if calls else None
    record(out, operation, times)
    return times


def reconnect(callers: list[Caller]) -> None:
    """New connections: the server closes kept-alive connections idle for 30 s."""
    for caller in callers:
        caller.rest.close()


def record(out: Outcome, operation: str, times: dict[str, list[float]]) -> None:
    for key, values in times.items():
        if not values:
            continue
        out.figures[f"{operation}.{key}.p50_ms"] = percentile(values, 50) * 1e3
        out.figures[f"{operation}.{key}.p95_ms"] = percentile(values, 95) * 1e3
        out.figures[f"{operation}.{key}.p99_ms"] = percentile(values, 99) * 1e3
        out.figures[f"{operation}.{key}.mean_ms"] = statistics.fmean(values) * 1e3
        out.figures[f"{operation}.{key}.min_ms"] = min(values) * 1e3
        out.details.setdefault("calls", {}).setdefault(operation, {})[key] = len(values)


# --------------------------------------------------------------------------------------------
# Workloads: each warms up every variant (untimed, interleaved too), then times them
# --------------------------------------------------------------------------------------------


def history_length(caller: Caller, run_key: str) -> int:
    page = caller.rest.get(
        "/metrics/get-history",
        {"run_id": caller.ids[run_key], "metric_key": "m", "max_results": HISTORY_PAGE},
    )
    return len(page.get("metrics", []))


def workload_raw_log_metric(
    callers: list[Caller], plan: Plan, rng: random.Random, out: Outcome
) -> None:
    def probe(caller: Caller) -> Probe:
        rest, run_id = caller.rest, caller.ids["raw_run"]

        def call(i: int) -> object:
            return rest.post(
                "/runs/log-metric",
                {
                    "run_id": run_id,
                    "key": "m",
                    "value": i * 0.5,
                    "timestamp": BASE_TS + i,
                    "step": i,
                },
            )

        return Probe(call, caller.variant.server, caller.pid)

    probes = {c.variant.key: probe(c) for c in callers}
    interleaved(probes, plan.warmup, 60.0, rng, first=-plan.warmup)
    times = measure(out, "log_metric_raw", probes, plan.raw_cycles, plan.budget_s, rng)
    for caller in callers:
        stored = history_length(caller, "raw_run")
        expected = plan.warmup + len(times[caller.variant.key])
        if stored != expected:
            raise RuntimeError(
                f"CHECK FAILED: {caller.variant.key}: {stored} points stored, {expected} logged"
            )


def workload_client_log_metric(
    callers: list[Caller], plan: Plan, rng: random.Random, out: Outcome
) -> None:
    def probe(caller: Caller) -> Probe:
        client, run_id = caller.client, caller.ids["client_run"]

        def call(i: int) -> object:
            return client.log_metric(run_id, "m", i * 0.5, timestamp=BASE_TS + i, step=i)

        return Probe(call, caller.variant.server, caller.pid, caller.use_token)

    probes = {c.variant.key: probe(c) for c in callers}
    try:
        interleaved(probes, plan.warmup, 60.0, rng, first=-plan.warmup)
        times = measure(out, "log_metric_client", probes, plan.client_cycles, plan.budget_s, rng)
    finally:
        os.environ.pop(TOKEN_ENV, None)
    for caller in callers:
        stored = history_length(caller, "client_run")
        expected = plan.warmup + len(times[caller.variant.key])
        if stored != expected:
            raise RuntimeError(
                f"CHECK FAILED: {caller.variant.key}: {stored} points stored, {expected} logged"
            )


def workload_get(callers: list[Caller], plan: Plan, rng: random.Random, out: Outcome) -> None:
    def probe(caller: Caller) -> Probe:
        rest, run_id = caller.rest, caller.ids["get_run"]

        def call(_i: int) -> object:
            answer = rest.get("/runs/get", {"run_id": run_id})
            if answer["run"]["info"]["run_id"] != run_id:
                raise RuntimeError(f"CHECK FAILED: runs/get answered another run: {answer}")
            return answer

        return Probe(call, caller.variant.server, caller.pid)

    probes = {c.variant.key: probe(c) for c in callers}
    interleaved(probes, plan.warmup, 60.0, rng)
    measure(out, "get_run_raw", probes, plan.get_cycles, plan.budget_s, rng)


def workload_search(callers: list[Caller], plan: Plan, rng: random.Random, out: Outcome) -> None:
    def probe(caller: Caller) -> Probe:
        rest = caller.rest
        request = {
            "experiment_ids": [caller.ids["search_experiment"]],
            "filter": SEARCH_FILTER,
            "order_by": list(SEARCH_ORDER),
            "max_results": SEARCH_MAX,
        }
        expected = expected_search(caller.search_data)

        def call(_i: int) -> object:
            page = rest.post("/runs/search", request)
            names = [r["info"]["run_name"] for r in page.get("runs", [])]
            if names != expected:
                raise RuntimeError(
                    f"CHECK FAILED: {caller.variant.key}: runs/search returned {len(names)} "
                    f"runs {names[:5]}...; expected {len(expected)} runs {expected[:5]}..."
                )
            return page

        return Probe(call, caller.variant.server, caller.pid)

    probes = {c.variant.key: probe(c) for c in callers}
    interleaved(probes, plan.warmup, 60.0, rng)
    measure(out, "search_raw", probes, plan.search_cycles, plan.budget_s, rng)


OPERATIONS: list[tuple[str, str, Callable[[list[Caller], Plan, random.Random, Outcome], None]]] = [
    ("log_metric_raw", "log-metric (raw HTTP)", workload_raw_log_metric),
    ("log_metric_client", "log_metric (MlflowClient)", workload_client_log_metric),
    ("get_run_raw", "runs/get (raw HTTP)", workload_get),
    ("search_raw", f"runs/search, {SEARCH_RUNS} runs (raw HTTP)", workload_search),
]


def check_alive(servers: dict[str, Server]) -> None:
    for kind, server in servers.items():
        if server.proc.poll() is not None:
            raise RuntimeError(f"{kind} server exited with {server.proc.returncode}")


def run_bench(
    tmp: Path, plan: Plan, database_url: str | None, logs_dir: Path
) -> tuple[Outcome, dict[str, str]]:
    """Start both servers, set up, run every workload; returns the outcome and pg databases."""
    from mlflow.tracking import MlflowClient

    out = Outcome()
    databases = fresh_pg_databases(database_url, ["plain", "auth"]) if database_url else {}
    servers: dict[str, Server] = {}
    callers: list[Caller] = []
    try:
        tokens: dict[str, str] = {}
        for kind in ("plain", "auth"):
            log(f"{kind}: creating {'users, tokens and ' if kind == 'auth' else ''}the project")
            tokens.update(prepare_storage(kind, tmp / kind, databases.get(kind)))
            log(f"{kind}: starting")
            servers[kind] = harness.start_server(kind, tmp / kind, command_for(databases))
            log(f"{kind}: /health after {servers[kind].cold_start_s:.1f} s")
            out.details.setdefault("commands", {})[kind] = servers[kind].command_line()
        for variant in VARIANTS:
            server_url = servers[variant.server].base_url
            token = tokens.get(variant.user) if variant.user else None
            rest = TokenRest(server_url, variant.project, token)
            client = MlflowClient(tracking_uri=rest.base_url)
            pid = servers[variant.server].proc.pid
            callers.append(Caller(variant, rest.base_url, token, rest, client, pid))
        for caller in callers:
            log(f"setting up {caller.variant.key} ({caller.url})")
            set_up(caller)
        unauthenticated = TokenRest(servers["auth"].base_url, None, None)
        try:
            unauthenticated.get("/experiments/search", {"max_results": 1})
            raise RuntimeError("CHECK FAILED: the --auth server answered a call without token")
        except harness.HttpError as exc:
            if exc.status != 401:
                raise
        finally:
            unauthenticated.close()
        rng = random.Random(SEED)
        for operation, label, workload in OPERATIONS:
            log(f"{label}: {len(VARIANTS)} variants, interleaved")
            t0 = time.perf_counter()
            reconnect(callers)
            try:
                workload(callers, plan, rng, out)
            except Exception as exc:
                record_error(out, "all", operation, exc)
            out.details.setdefault("wall_s", {})[operation] = time.perf_counter() - t0
        check_alive(servers)
    except Exception as exc:
        record_error(out, "all", "setup", exc)
    finally:
        for caller in callers:
            caller.rest.close()
        for kind, server in servers.items():
            log(f"{kind}: stopping process group {server.proc.pid}")
            stop_server(server)
            if out.errors:
                logs_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(server.log_path, logs_dir / server.log_path.name)
                out.details.setdefault("server_logs", []).append(
                    str(logs_dir / server.log_path.name)
                )
    return out, databases


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def build_report(out: Outcome) -> list[dict[str, Any]]:
    report = []
    for operation, label, _workload in OPERATIONS:
        base = out.figures.get(f"{operation}.{BASELINE}.p50_ms")
        base_mean = out.figures.get(f"{operation}.{BASELINE}.mean_ms")
        for variant in VARIANTS:
            figures = {
                q: out.figures.get(f"{operation}.{variant.key}.{q}_ms")
                for q in ("p50", "p95", "p99", "mean", "min")
            }
            p50, mean = figures["p50"], figures["mean"]
            ratio = p50 / base if p50 and base else None
            ratio_mean = mean / base_mean if mean and base_mean else None
            met: bool | None = None
            if variant.key == BASELINE:
                verdict = "baseline" if p50 is not None else "-"
            elif ratio is None or ratio_mean is None or p50 is None or base is None:
                verdict = "-"
            else:
                verdict = f"{p50 - base:+.3f} ms, {ratio:.2f}x / {ratio_mean:.2f}x"
                if variant.key in AUTHENTICATED:
                    met = ratio <= TARGET_RATIO
                    verdict += "  ok" if met else "  MISS"
            report.append(
                {
                    "key": f"{operation}.{variant.key}",
                    "operation": operation,
                    "variant": variant.key,
                    "label": f"{label}: {variant.label}",
                    **{f"{q}_ms": v for q, v in figures.items()},
                    "calls": out.details.get("calls", {}).get(operation, {}).get(variant.key),
                    "ratio_p50": ratio,
                    "ratio_mean": ratio_mean,
                    "delta_p50_ms": None if p50 is None or base is None else p50 - base,
                    "target_ratio": TARGET_RATIO if variant.key in AUTHENTICATED else None,
                    "target_met": met,
                    "p50_text": "error" if p50 is None else fmt(p50, "ms"),
                    "p95_text": "error" if figures["p95"] is None else fmt(figures["p95"], "ms"),
                    "mean_text": "error" if mean is None else fmt(mean, "ms"),
                    "verdict_text": verdict,
                }
            )
    return report


def print_table(report: list[dict[str, Any]]) -> None:
    headers = (
        "call: server, credentials, project URL",
        "p50",
        "p95",
        "mean",
        f"vs no auth: p50 delta, p50 / mean ratio, target p50 <= {TARGET_RATIO:.2f}x",
    )
    results.print_table(
        [
            {
                "label": r["label"],
                "modelyard_text": r["p50_text"],
                "mlflow_text": r["p95_text"],
                "ratio_text": r["mean_text"],
                "target_text": r["verdict_text"],
            }
            for r in report
        ],
        headers,
    )


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the cost of modelyard's authentication gate (same run, "
        "interleaved calls)."
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer calls (about 25 s; default about 1.5 min)"
    )
    parser.add_argument(
        "--cycles", type=int, metavar="N", help="raw log-metric calls per variant (default 3000)"
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="run on PostgreSQL: postgresql+psycopg://USER@HOST:PORT/DB; a fresh database per "
        "server, named DB_auth_<server>_<random>, is created and dropped afterwards",
    )
    parser.add_argument("--output", type=Path, help="JSON file to write (default bench/results/)")
    args = parser.parse_args(argv)
    if args.cycles is not None and args.cycles <= 0:
        parser.error("--cycles must be positive")
    if args.database_url and not args.database_url.startswith("postgresql"):
        parser.error("--database-url must be a postgresql+psycopg:// URL")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    run = begin("auth", plan, "modelyard", (), args.output)
    os.environ.pop(TOKEN_ENV, None)
    databases: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="modelyard-auth-") as name:
        try:
            out, databases = run_bench(Path(name), plan, args.database_url, run.logs)
        finally:
            if databases:
                drop_pg_databases(databases)
    report = build_report(out)
    print()
    print_table(report)
    print(
        "ratio = variant / no auth on the default project; the target applies to the p50 of "
        "the authenticated rows"
    )
    for operation, label, _workload in OPERATIONS:
        plain = out.figures.get(f"{operation}.cpu.plain_ms")
        auth = out.figures.get(f"{operation}.cpu.auth_ms")
        if plain and auth:
            print(
                f"server CPU per call, {label}: no-auth server {plain:.2f} ms, --auth server "
                f"{auth:.2f} ms ({auth / plain - 1:+.0%})"
            )
    where = "PostgreSQL" if args.database_url else "SQLite"
    fields = {"database": where, "rows": report, "outcome": asdict(out), "errors": out.errors}
    return run.finish(plan, out.errors, fields, where=where)


if __name__ == "__main__":
    sys.exit(main())
