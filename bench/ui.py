"""UI benchmark: the candidates page of an experiment with 100,000 candidates, against the
reference MLflow server's ``runs/search`` for the same page.

Both servers get the same candidates (same run ids, names, start times, params, metrics and
tags), written straight into their databases: modelyard's through its schema and services
(``modelyard.db``), MLflow's through its SQLAlchemy store (schema and experiment) and bulk
inserts into its tables. Loading 100,000 runs through either HTTP API would take most of an
hour and measure nothing this benchmark is about. Each server is then started on its data,
one after the other, and every request is timed on a kept-alive ``http.client`` connection:

(a) the experiment page, newest 100 candidates;
(b) a filtered and sorted page (``FILTER`` ordered by ``ORDER``), and (d) its second page;
(c) the CSV export of the first 1,000 candidates.

MLflow renders its UI in the browser from ``runs/search``, so its figure for each page is that
call for the same rows (``max_results`` 100, or 1,000 for the CSV). modelyard's own
``runs/search`` is timed too. Every answer is checked against the rows computed locally.
The charts of long histories are measured on data of their own (``bench/ui_charts.py``):
(e) an experiment's chart view, 100 candidates x 5 metrics x 10,000 steps, and (f) the chart
data of a 1,000,000-step history. ``--part`` runs one of the two parts only.
Results are printed as a table and written to ``bench/results/ui-<timestamp>.json``.

    .venv/bin/python bench/ui.py --quick
    .venv/bin/python bench/ui.py --only modelyard --candidates 300000
    .venv/bin/python bench/ui.py --part charts --only modelyard
"""

from __future__ import annotations

import argparse
import csv
import html
import http.client
import io
import json
import random
import re
import shutil
import sqlite3
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import harness
import results
import ui_charts
from harness import (
    BASE_TS,
    Outcome,
    Server,
    executable,
    log,
    percentile,
    record_error,
    stop_server,
    timed_calls,
)
from procs import wait_until_quiet
from results import begin, fmt

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
SERVERS = ("modelyard", "mlflow")
API = "/api/2.0/mlflow"
PAGE = 100
CSV_ROWS = 1000
TARGET_MS = 300.0
FILTER = "metrics.loss < 0.5 AND params.optimizer = 'adam'"
ORDER = "metrics.loss ASC"
OPTIMIZERS = ("adam", "sgd", "rmsprop")
RATES = ("0.1", "0.01", "0.001", "0.0001")
BATCHES = ("32", "64", "128")
TEAMS = ("vision", "speech", "nlp", "ranking")
CHUNK = 5000
_RUN_ID = re.compile(r'name="run" value="([0-9a-f]{32})"')
_NEXT = re.compile(r'<a href="([^"]+)" rel="next"')


@dataclass(frozen=True)
class Plan:
    candidates: int
    mlflow_candidates: int
    repetitions: int
    warmup: int
    budget_s: float


def make_plan(args: argparse.Namespace) -> Plan:
    size = args.candidates or (10_000 if args.quick else 100_000)
    return Plan(
        candidates=size,
        mlflow_candidates=min(size, args.mlflow_candidates or size),
        repetitions=args.repetitions or (20 if args.quick else 50),
        warmup=3,
        budget_s=args.budget or (20.0 if args.quick else 60.0),
    )


# --------------------------------------------------------------------------------------------
# The candidates, and the answers every server must give
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    run_id: str
    name: str
    start: int
    optimizer: str
    lr: str
    batch_size: str
    team: str
    loss: float
    acc: float
    f1: float

    @property
    def params(self) -> dict[str, str]:
        return {"optimizer": self.optimizer, "lr": self.lr, "batch_size": self.batch_size}

    @property
    def metrics(self) -> dict[str, float]:
        return {"loss": self.loss, "acc": self.acc, "f1": self.f1}

    @property
    def tags(self) -> dict[str, str]:
        return {"team": self.team, "mlflow.runName": self.name}


def make_candidates(size: int) -> list[Candidate]:
    rng = random.Random(20_240_000 + size)
    return [
        Candidate(
            run_id=f"{rng.getrandbits(128):032x}",
            name=f"cand-{i:06d}",
            start=BASE_TS + i * 1000,
            optimizer=rng.choice(OPTIMIZERS),
            lr=rng.choice(RATES),
            batch_size=rng.choice(BATCHES),
            team=rng.choice(TEAMS),
            loss=rng.uniform(0.05, 2.5),
            acc=rng.random(),
            f1=rng.random(),
        )
        for i in range(size)
    ]


def expected_answers(data: list[Candidate]) -> dict[str, list[str]]:
    """Run ids of each page: newest first (ties: id), and the filter ordered by loss."""
    newest = sorted(data, key=lambda c: (-c.start, c.run_id))
    hits = sorted((c for c in data if c.loss < 0.5 and c.optimizer == "adam"), key=lambda c: c.loss)
    return {
        "first": [c.run_id for c in newest[:PAGE]],
        "filtered": [c.run_id for c in hits[:PAGE]],
        "filtered_page2": [c.run_id for c in hits[PAGE : 2 * PAGE]],
        "csv": [c.run_id for c in newest[:CSV_ROWS]],
    }


def chunks(items: Sequence[Candidate], size: int = CHUNK) -> Iterator[Sequence[Candidate]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --------------------------------------------------------------------------------------------
# Loading (not timed as part of the requests)
# --------------------------------------------------------------------------------------------


def load_modelyard(data: list[Candidate], database_url: str) -> tuple[str, float]:
    """The schema, one experiment (through the service), then every row with multi-row
    INSERTs through modelyard's table definitions in one transaction; on PostgreSQL an
    ANALYZE afterwards (not part of the load time)."""
    from sqlalchemy import func, insert, select

    from modelyard.db.engine import Database
    from modelyard.db.migrate import ensure_schema
    from modelyard.db.schema import (
        DEFAULT_PROJECT_ID,
        latest_metrics,
        metrics,
        params,
        run_tags,
        runs,
    )
    from modelyard.services import experiments

    db = Database(database_url)
    try:
        ensure_schema(db)
        started = time.perf_counter()
        experiment = experiments.create(db, DEFAULT_PROJECT_ID, f"ui-bench-{len(data)}")
        with db.write() as conn:
            pk = (conn.execute(select(func.max(runs.c.pk))).scalar() or 0) + 1
            for part in chunks(data):
                pks = range(pk, pk + len(part))
                pk += len(part)
                conn.execute(
                    insert(runs),
                    [
                        {
                            "pk": p,
                            "id": c.run_id,
                            "project_id": DEFAULT_PROJECT_ID,
                            "experiment_id": experiment,
                            "name": c.name,
                            "user_id": "bench",
                            "status": "FINISHED",
                            "start_time": c.start,
                            "end_time": c.start + 500,
                            "artifact_uri": f"mlflow-artifacts:/{experiment}/{c.run_id}/artifacts",
                            "lifecycle_stage": "active",
                            "deleted_time": None,
                        }
                        for p, c in zip(pks, part, strict=True)
                    ],
                )
                for table, source in ((params, "params"), (run_tags, "tags")):
                    conn.execute(
                        insert(table),
                        [
                            {"run_pk": p, "experiment_id": experiment, "key": k, "value": v}
                            for p, c in zip(pks, part, strict=True)
                            for k, v in getattr(c, source).items()
                        ],
                    )
                points = [
                    {"run_pk": p, "key": k, "step": 0, "timestamp": c.start + 400, "value": v}
                    for p, c in zip(pks, part, strict=True)
                    for k, v in c.metrics.items()
                ]
                conn.execute(insert(metrics), [{**m, "is_nan": False} for m in points])
                conn.execute(
                    insert(latest_metrics),
                    [{**m, "experiment_id": experiment, "is_nan": False} for m in points],
                )
        loaded_s = time.perf_counter() - started
        if not db.is_sqlite:
            # What autovacuum does after such a load (the test server runs without it);
            # without statistics PostgreSQL plans the filtered search as nested loops.
            with db.write() as conn:
                conn.exec_driver_sql("ANALYZE")
        return str(experiment), loaded_s
    finally:
        db.dispose()


def load_mlflow(data: list[Candidate], workdir: Path) -> tuple[str, float, float]:
    """MLflow's schema and experiment through its SqlAlchemyStore, then bulk INSERTs into its
    runs, params, tags, metrics and latest_metrics tables. Returns the experiment id, the
    seconds to create the schema and the seconds to load the rows."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path = workdir / "mlflow.db"
    started = time.perf_counter()
    store = SqlAlchemyStore(f"sqlite:///{path}", str(workdir / "art"))
    experiment = store.create_experiment(f"ui-bench-{len(data)}")
    store.engine.dispose()
    schema_s = time.perf_counter() - started
    started = time.perf_counter()
    conn = sqlite3.connect(path)
    try:
        with conn:
            for part in chunks(data):
                conn.executemany(
                    "INSERT INTO runs (run_uuid, name, source_type, source_name, "
                    "entry_point_name, user_id, status, start_time, end_time, source_version, "
                    "lifecycle_stage, artifact_uri, experiment_id) "
                    "VALUES (?, ?, 'LOCAL', '', '', 'bench', 'FINISHED', ?, ?, '', 'active', ?, ?)",
                    [
                        (c.run_id, c.name, c.start, c.start + 500, f"{workdir}/art/{c.run_id}",
                         int(experiment))
                        for c in part
                    ],
                )  # fmt: skip
                for table, source in (("params", "params"), ("tags", "tags")):
                    conn.executemany(
                        f"INSERT INTO {table} (key, value, run_uuid) VALUES (?, ?, ?)",
                        [(k, v, c.run_id) for c in part for k, v in getattr(c, source).items()],
                    )
                points = [
                    (k, v, c.start + 400, c.run_id) for c in part for k, v in c.metrics.items()
                ]
                conn.executemany(
                    "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                    "VALUES (?, ?, ?, ?, 0, 0)",
                    points,
                )
                conn.executemany(
                    "INSERT INTO latest_metrics (key, value, timestamp, run_uuid, step, is_nan) "
                    "VALUES (?, ?, ?, ?, 0, 0)",
                    points,
                )
    finally:
        conn.close()
    return str(experiment), schema_s, time.perf_counter() - started


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


class Http:
    """Raw requests on one kept-alive connection; the whole body is read."""

    def __init__(self, base_url: str) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
            data = response.read()
        except (http.client.HTTPException, OSError):
            self.connection.close()
            raise
        if response.status != 200:
            raise RuntimeError(f"{method} {path} -> HTTP {response.status}: {data[:500]!r}")
        return response.status, data

    def close(self) -> None:
        self.connection.close()


@dataclass(frozen=True)
class Case:
    """One timed request and how to read the run ids out of its answer."""

    key: str
    method: str
    path: str
    body: bytes | None
    ids: Callable[[bytes], list[str]]
    expected: str


def html_ids(body: bytes) -> list[str]:
    return _RUN_ID.findall(body.decode())


def csv_ids(body: bytes) -> list[str]:
    return [row[0] for row in list(csv.reader(io.StringIO(body.decode())))[1:]]


def api_ids(body: bytes) -> list[str]:
    return [r["info"]["run_id"] for r in json.loads(body).get("runs", [])]


def search_body(experiment: str, size: int, *, filtered: bool, token: str | None = None) -> bytes:
    request: dict[str, Any] = {"experiment_ids": [experiment], "max_results": size}
    if filtered:
        request |= {"filter": FILTER, "order_by": [ORDER]}
    if token:
        request["page_token"] = token
    return json.dumps(request).encode()


def api_cases(http_: Http, experiment: str) -> list[Case]:
    search = f"{API}/runs/search"
    filtered = search_body(experiment, PAGE, filtered=True)
    token = json.loads(http_.call("POST", search, filtered)[1]).get("next_page_token")
    second = search_body(experiment, PAGE, filtered=True, token=token)
    return [
        Case("api.first", "POST", search, search_body(experiment, PAGE, filtered=False),
             api_ids, "first"),
        Case("api.filtered", "POST", search, filtered, api_ids, "filtered"),
        Case("api.filtered_page2", "POST", search, second, api_ids, "filtered_page2"),
        Case("api.csv", "POST", search, search_body(experiment, CSV_ROWS, filtered=False),
             api_ids, "csv"),
    ]  # fmt: skip


def ui_cases(http_: Http, experiment: str) -> list[Case]:
    page = f"/ui/experiments/{experiment}"
    view = urllib.parse.urlencode({"filter": FILTER, "order": ORDER})
    found = _NEXT.search(http_.call("GET", f"{page}?{view}")[1].decode())
    second = html.unescape(found.group(1)) if found else f"{page}?{view}&page_token=missing"
    return [
        Case("ui.first", "GET", page, None, html_ids, "first"),
        Case("ui.filtered", "GET", f"{page}?{view}", None, html_ids, "filtered"),
        Case("ui.filtered_page2", "GET", second, None, html_ids, "filtered_page2"),
        Case("ui.csv", "GET", f"{page}/candidates.csv?limit={CSV_ROWS}", None, csv_ids, "csv"),
    ]


def measure(
    server: Server, experiment: str, plan: Plan, data: list[Candidate], out: Outcome
) -> None:
    expected = expected_answers(data)
    http_ = Http(server.base_url)
    try:
        cases = api_cases(http_, experiment)
        if server.kind.startswith("modelyard"):
            cases = ui_cases(http_, experiment) + cases
        checks: dict[str, bool] = out.details.setdefault("checks", {})
        for case in cases:
            http_.close()  # a fresh connection: servers drop idle ones after a few seconds
            answers: list[list[str]] = []
            sizes: list[int] = []

            def request(
                _i: int,
                case: Case = case,
                answers: list[list[str]] = answers,
                sizes: list[int] = sizes,
            ) -> None:
                body = http_.call(case.method, case.path, case.body)[1]
                sizes.append(len(body))
                answers.append(case.ids(body))

            # warm-up: fewer calls when each takes long (MLflow's filtered search at 100k)
            warm_started = time.perf_counter()
            for i in range(plan.warmup):
                request(i)
                if time.perf_counter() - warm_started > plan.budget_s / 4:
                    break
            times = timed_calls(request, plan.repetitions, plan.budget_s, min_count=3)
            good = all(a == expected[case.expected] for a in answers)
            checks[case.key] = good
            if not good:
                log(f"  {server.kind}: {case.key} CHECK FAILED ({len(answers[0])} rows)")
            out.figures[f"{case.key}.p50_ms"] = percentile(times, 50) * 1e3
            out.figures[f"{case.key}.p95_ms"] = percentile(times, 95) * 1e3
            out.details.setdefault("calls", {})[case.key] = len(times)
            out.details.setdefault("bytes", {})[case.key] = sizes[-1]
            log(
                f"  {server.kind}: {case.key} p50 {out.figures[f'{case.key}.p50_ms']:.1f} ms, "
                f"p95 {out.figures[f'{case.key}.p95_ms']:.1f} ms over {len(times)} calls"
            )
    finally:
        http_.close()


# --------------------------------------------------------------------------------------------
# One server
# --------------------------------------------------------------------------------------------


def command_for(database_url: str | None) -> Callable[[str, Path, int], list[str]]:
    def command(kind: str, workdir: Path, port: int) -> list[str]:
        if kind == "mlflow":
            return harness.server_command(kind, workdir, port)
        extra = ["--database-url", database_url] if database_url else []
        return [
            executable("modelyard"), "server", "--data-dir", str(workdir / "data"),
            "--port", str(port), *extra,
        ]  # fmt: skip

    return command


def bench_server(
    kind: str, tmp: Path, plan: Plan, database_url: str | None, logs_dir: Path
) -> Outcome:
    out = Outcome()
    workdir = tmp / kind
    workdir.mkdir(parents=True, exist_ok=True)
    size = plan.candidates if kind == "modelyard" else plan.mlflow_candidates
    data = make_candidates(size)
    out.details["candidates"] = size
    log(f"{kind}: loading {size:,} candidates")
    try:
        if kind == "modelyard":
            (workdir / "data").mkdir(exist_ok=True)
            url = database_url or f"sqlite:///{workdir / 'data' / 'modelyard.db'}"
            experiment, load_s = load_modelyard(data, url)
        else:
            experiment, schema_s, load_s = load_mlflow(data, workdir)
            out.details["schema_s"] = schema_s
    except Exception as exc:
        record_error(out, kind, "load", exc)
        return out
    out.details["load_s"] = load_s
    out.figures["load_runs_s"] = size / load_s
    log(f"{kind}: loaded in {load_s:.1f} s ({size / load_s:,.0f} candidates/s)")
    try:
        server = harness.start_server(kind, workdir, command_for=command_for(database_url))
    except Exception as exc:
        record_error(out, kind, "start", exc)
        return out
    out.details["command"] = server.command_line().replace(database_url or "\0", "<database>")
    log(f"{kind}: /health answered after {server.cold_start_s:.1f} s; waiting until idle")
    try:
        waited, quiet = wait_until_quiet(server.proc.pid)
        out.details["quiet_wait_s"], out.details["quiet"] = waited, quiet
        try:
            measure(server, experiment, plan, data, out)
        except Exception as exc:
            record_error(out, kind, "measure", exc)
    finally:
        stop_server(server)
        if out.errors:
            logs_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(server.log_path, logs_dir / server.log_path.name)
        shutil.rmtree(workdir, ignore_errors=True)
    return out


def bench_charts_server(
    kind: str, tmp: Path, plan: Plan, database_url: str | None, logs_dir: Path
) -> Outcome:
    out = Outcome()
    workdir = tmp / f"{kind}-charts"
    workdir.mkdir(parents=True, exist_ok=True)
    charts = ui_charts.ChartPlan()
    log(f"{kind}: loading the chart histories ({charts})")
    try:
        if kind == "modelyard":
            (workdir / "data").mkdir(exist_ok=True)
            url = database_url or f"sqlite:///{workdir / 'data' / 'modelyard.db'}"
            data, load_s = ui_charts.load_modelyard(charts, url)
        else:
            data, load_s = ui_charts.load_mlflow(charts, workdir)
    except Exception as exc:
        record_error(out, kind, "load charts", exc)
        return out
    out.details["charts_load_s"] = load_s
    log(f"{kind}: loaded in {load_s:.1f} s")
    try:
        server = harness.start_server(kind, workdir, command_for=command_for(database_url))
    except Exception as exc:
        record_error(out, kind, "start", exc)
        return out
    try:
        wait_until_quiet(server.proc.pid)
        try:
            ui_charts.measure(server, data, charts, plan.repetitions, plan.budget_s, out)
        except Exception as exc:
            record_error(out, kind, "measure charts", exc)
    finally:
        stop_server(server)
        if out.errors:
            logs_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(server.log_path, logs_dir / f"charts-{server.log_path.name}")
        shutil.rmtree(workdir, ignore_errors=True)
    return out


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

PAGES = (
    ("first", "(a) experiment page, newest 100"),
    ("filtered", "(b) filtered + sorted page, 100"),
    ("filtered_page2", "(b2) its next page"),
    ("csv", "(c) CSV, first 1,000"),
)


def build_report(outcomes: dict[str, Outcome]) -> list[dict[str, Any]]:
    mine, theirs = outcomes.get("modelyard"), outcomes.get("mlflow")
    report: list[dict[str, Any]] = []

    def row(
        label: str, my_key: str, ml_key: str | None, target: bool, limit: float = TARGET_MS
    ) -> None:
        value = None if mine is None else mine.figures.get(my_key)
        other = None if theirs is None or ml_key is None else theirs.figures.get(ml_key)
        ratio = other / value if value and other else None
        met = None if value is None or not target else value < limit
        report.append(
            {
                "key": my_key,
                "label": label,
                "modelyard": value,
                "mlflow": other,
                "ratio": ratio,
                "modelyard_text": "not run" if mine is None else fmt(value, "ms"),
                "mlflow_text": "-" if ml_key is None else fmt(other, "ms"),
                "ratio_text": "-" if ratio is None else f"{ratio:,.1f}x",
                "target_text": (f"< {limit:g} ms  {'ok' if met else 'MISS'}")
                if met is not None
                else "-",
                "target_met": met,
            }
        )

    for name, label in PAGES:
        for q in ("p50", "p95"):
            row(f"{label}: UI {q}", f"ui.{name}.{q}_ms", f"api.{name}.{q}_ms", True)
    for name, label in PAGES:
        row(f"{label}: runs/search p50", f"api.{name}.p50_ms", f"api.{name}.p50_ms", False)
    sizes = asdict(ui_charts.ChartPlan())
    for name, label, limit in ui_charts.ROWS:
        for q in ("p50", "p95"):
            key = f"{name}.{q}_ms"
            row(f"{label.format(**sizes)}: {q}", key, key, True, limit)
        key = f"{name}.cpu_ms"
        row(f"{label.format(**sizes)}: server CPU p50", key, key, True, limit)
    loads = [o.figures.get("load_runs_s") if o else None for o in (mine, theirs)]
    report.append(
        {
            "key": "load_runs_s",
            "modelyard": loads[0],
            "label": "bulk load, candidates/s (not a server figure)",
            "modelyard_text": fmt(loads[0], "runs/s"),
            "mlflow_text": fmt(loads[1], "runs/s"),
            "ratio_text": "-",
            "target_text": "-",
        }
    )
    return report


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the candidates page against MLflow's runs/search."
    )
    parser.add_argument("--quick", action="store_true", help="10,000 candidates, 20 calls each")
    parser.add_argument("--only", choices=SERVERS, help="measure one server only")
    parser.add_argument("--candidates", type=int, metavar="N", help="default 100,000")
    parser.add_argument(
        "--mlflow-candidates", type=int, metavar="N", help="fewer candidates for MLflow"
    )
    parser.add_argument("--repetitions", type=int, metavar="N", help="timed calls (default 50)")
    parser.add_argument(
        "--budget", type=float, metavar="S", help="wall-time cap per timed loop (default 60 s)"
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="run modelyard on a fresh database on this PostgreSQL server (dropped afterwards) "
        "instead of SQLite",
    )
    parser.add_argument(
        "--part",
        choices=("candidates", "charts"),
        help="only the candidates pages, or only the charts of long histories",
    )
    parser.add_argument("--output", type=Path, help="JSON file to write (default bench/results/)")
    args = parser.parse_args(argv)
    for value in (args.candidates, args.mlflow_candidates, args.repetitions):
        if value is not None and value <= 0:
            parser.error("sizes and counts must be positive")
    if args.candidates is not None and args.candidates < 2 * PAGE:
        parser.error(f"--candidates must be at least {2 * PAGE}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    run = begin("ui", plan, args.only, SERVERS, args.output)
    outcomes: dict[str, Outcome] = {}
    databases: dict[str, str] = {}
    if args.database_url and "modelyard" in run.kinds:
        from auth import fresh_pg_databases

        databases = fresh_pg_databases(args.database_url, ["ui", "charts"])
    try:
        with tempfile.TemporaryDirectory(prefix="modelyard-ui-") as name:
            logs = run.logs
            for kind in run.kinds:
                outcomes[kind] = out = Outcome()
                if args.part in (None, "candidates"):
                    out = bench_server(kind, Path(name), plan, databases.get("ui"), logs)
                    outcomes[kind] = out
                if args.part in (None, "charts"):
                    charts = bench_charts_server(
                        kind, Path(name), plan, databases.get("charts"), logs
                    )
                    out.figures |= charts.figures
                    out.errors += charts.errors
                    out.details.setdefault("checks", {}).update(charts.details.pop("checks", {}))
                    out.details["charts"] = charts.details
    finally:
        if databases:
            from auth import drop_pg_databases

            drop_pg_databases(databases)
    report = [r for r in build_report(outcomes) if r.get("modelyard") is not None]
    print()
    database = "PostgreSQL" if databases else "SQLite"
    print(
        f"{plan.candidates:,} candidates in one experiment (modelyard on {database}); MLflow "
        f"{plan.mlflow_candidates:,} candidates on SQLite"
        + ("" if plan.mlflow_candidates == plan.candidates else " (fewer: --mlflow-candidates)")
    )
    headers = ("request", "modelyard", "mlflow runs/search", "ratio", "modelyard target")
    results.print_table(report, headers)
    print(
        "UI rows: modelyard's server-rendered page (or CSV) against MLflow's runs/search for the "
        "same rows, which its browser UI renders; ratio > 1 means modelyard is faster"
    )
    errors = [e for o in outcomes.values() for e in o.errors]
    failed = [
        f"{kind} {key}"
        for kind, o in outcomes.items()
        for key, good in o.details.get("checks", {}).items()
        if not good
    ]
    checked = sum(len(o.details.get("checks", {})) for o in outcomes.values())
    if checked and not failed:
        print(f"all {checked} answers equal the locally computed rows, in order")
    for line in failed:
        print(f"CHECK FAILED: {line}")
    fields = {
        "database": database,
        "rows": report,
        "servers": {kind: asdict(o) for kind, o in outcomes.items()},
        "check_failures": failed,
    }
    return run.finish(plan, errors, fields, failed=bool(failed))


if __name__ == "__main__":
    sys.exit(main())
