"""Chart workloads of ``bench/ui.py``: long metric histories, as the chart views ask for them.

Data, the same for both servers (written straight into their databases, like the candidates):
``RUNS`` candidates with ``METRICS`` metrics of ``STEPS`` steps each, and one candidate with a
single metric of ``LONG_STEPS`` steps. Every history is a noisy falling curve with one spike
and one dip at steps of its own, so a chart that loses extremes is caught. modelyard's
summaries (``metric_blocks``) are written with the points, as logging writes them.

(e) the experiment's chart view, one chart per metric over the 100 candidates of the table:
    modelyard's page (``/ui/experiments/<id>/charts?metrics=…``); MLflow's UI asks
    ``get-history-bulk-interval`` for each metric with the 100 run ids and its default
    sample of 320 steps, so its figure is those five calls one after the other;
(f) the chart data of the long history: modelyard's ``/ui/charts/data`` (1,000 columns);
    MLflow's ``get-history-bulk-interval`` for that run with 1,000 steps.

Every modelyard answer is checked: each series keeps the history's lowest and highest value.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import BASE_TS, Outcome, Server, log, percentile, timed_calls
from procs import cpu_seconds, server_pids

RUNS = 100
METRICS = 5
STEPS = 10_000
LONG_STEPS = 1_000_000
VIEW_TARGET_MS = 500.0
LONG_TARGET_MS = 200.0
MLFLOW_SAMPLE = 320
LONG_COLUMNS = 1000
_DATA_BLOCK = re.compile(r'<script type="application/json" id="chart-data">(.*?)</script>', re.S)


@dataclass(frozen=True)
class ChartPlan:
    runs: int = RUNS
    metrics: int = METRICS
    steps: int = STEPS
    long_steps: int = LONG_STEPS


@dataclass
class ChartSet:
    """What was loaded: the experiments (the long history has one of its own, so the chart
    view shows the 100 others), the run ids, and each history's extremes."""

    experiment: str = ""
    long_experiment: str = ""
    run_ids: list[str] = field(default_factory=list)
    long_run: str = ""
    extremes: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)


def keys(plan: ChartPlan) -> list[str]:
    return [f"m{i}" for i in range(plan.metrics)]


def history(run: int, metric: int, steps: int) -> Iterator[tuple[int, int, float]]:
    """(step, timestamp, value): a falling curve, noise, a spike and a dip."""
    spike = (run * 7919 + metric * 104_729) % steps
    dip = (spike + steps // 3) % steps
    scale = 1.0 + 0.1 * metric
    for step in range(steps):
        noise = ((step * 2_654_435_761 + run * 97 + metric * 13) % 1000) / 10_000
        value = scale * math.exp(-step / (steps / 4)) + noise
        if step == spike:
            value += 100.0
        elif step == dip:
            value -= 100.0
        yield step, BASE_TS + step * 10, value


def run_ids(plan: ChartPlan) -> list[str]:
    return [f"{0xC0FFEE:08x}{i:024x}" for i in range(plan.runs + 1)]


def load_modelyard(plan: ChartPlan, database_url: str) -> tuple[ChartSet, float]:
    """Runs, points, latest values and blocks through modelyard's tables in one transaction."""
    from sqlalchemy import func, insert, select

    from modelyard.db.engine import Database
    from modelyard.db.migrate import ensure_schema
    from modelyard.db.schema import DEFAULT_PROJECT_ID, latest_metrics, runs
    from modelyard.services import experiments, metric_blocks

    db = Database(database_url)
    found = ChartSet(run_ids=run_ids(plan)[: plan.runs], long_run=run_ids(plan)[-1])
    mark = "?" if db.is_sqlite else "%s"
    insert_points = (
        'INSERT INTO metrics (run_pk, "key", step, "timestamp", "value", is_nan) '
        f"VALUES ({', '.join([mark] * 6)})"
    )
    try:
        ensure_schema(db)
        started = time.perf_counter()
        experiment = experiments.create(db, DEFAULT_PROJECT_ID, "chart-bench")
        long_experiment = experiments.create(db, DEFAULT_PROJECT_ID, "chart-bench-long")
        found.experiment, found.long_experiment = str(experiment), str(long_experiment)
        with db.write() as conn:
            pk = (conn.execute(select(func.max(runs.c.pk))).scalar() or 0) + 1
            for i, run_id in enumerate([*found.run_ids, found.long_run]):
                owner = long_experiment if run_id == found.long_run else experiment
                conn.execute(
                    insert(runs),
                    {
                        "pk": pk + i,
                        "id": run_id,
                        "project_id": DEFAULT_PROJECT_ID,
                        "experiment_id": owner,
                        "name": f"chart-{i:03d}",
                        "user_id": "bench",
                        "status": "FINISHED",
                        "start_time": BASE_TS + i,
                        "end_time": BASE_TS + i + 1,
                        "artifact_uri": None,
                        "lifecycle_stage": "active",
                        "deleted_time": None,
                    },
                )
                for m, key, steps in _histories(plan, run_id == found.long_run):
                    points = list(history(i, m, steps))
                    conn.exec_driver_sql(
                        insert_points, [(pk + i, key, s, t, v, False) for s, t, v in points]
                    )
                    last = points[-1]
                    conn.execute(
                        insert(latest_metrics),
                        {
                            "run_pk": pk + i,
                            "experiment_id": owner,
                            "key": key,
                            "step": last[0],
                            "timestamp": last[1],
                            "value": last[2],
                            "is_nan": False,
                        },
                    )
                    metric_blocks.add(conn, pk + i, ((key, s, t, v) for s, t, v in points))
                    values = [v for _, _, v in points]
                    found.extremes[(run_id, key)] = (min(values), max(values))
        loaded_s = time.perf_counter() - started
        if not db.is_sqlite:
            with db.write() as conn:
                conn.exec_driver_sql("ANALYZE")
        return found, loaded_s
    finally:
        db.dispose()


def _histories(plan: ChartPlan, long: bool) -> list[tuple[int, str, int]]:
    if long:
        return [(0, "long", plan.long_steps)]
    return [(m, key, plan.steps) for m, key in enumerate(keys(plan))]


def load_mlflow(plan: ChartPlan, workdir: Path) -> tuple[ChartSet, float]:
    """MLflow's schema through its store, then its runs, metrics and latest_metrics rows."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path = workdir / "mlflow.db"
    store = SqlAlchemyStore(f"sqlite:///{path}", str(workdir / "art"))
    experiment = store.create_experiment("chart-bench")
    long_experiment = store.create_experiment("chart-bench-long")
    store.engine.dispose()
    found = ChartSet(
        str(experiment), str(long_experiment), run_ids(plan)[: plan.runs], run_ids(plan)[-1]
    )
    started = time.perf_counter()
    conn = sqlite3.connect(path)
    try:
        with conn:
            for i, run_id in enumerate([*found.run_ids, found.long_run]):
                owner = long_experiment if run_id == found.long_run else experiment
                conn.execute(
                    "INSERT INTO runs (run_uuid, name, source_type, source_name, "
                    "entry_point_name, user_id, status, start_time, end_time, source_version, "
                    "lifecycle_stage, artifact_uri, experiment_id) VALUES (?, ?, 'LOCAL', '', "
                    "'', 'bench', 'FINISHED', ?, ?, '', 'active', ?, ?)",
                    (run_id, f"chart-{i:03d}", BASE_TS + i, BASE_TS + i + 1,
                     f"{workdir}/art/{run_id}", int(owner)),
                )  # fmt: skip
                for m, key, steps in _histories(plan, run_id == found.long_run):
                    points = [(key, v, t, run_id, s) for s, t, v in history(i, m, steps)]
                    conn.executemany(
                        "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                        "VALUES (?, ?, ?, ?, ?, 0)",
                        points,
                    )
                    conn.execute(
                        "INSERT INTO latest_metrics (key, value, timestamp, run_uuid, step, "
                        "is_nan) VALUES (?, ?, ?, ?, ?, 0)",
                        points[-1],
                    )
    finally:
        conn.close()
    return found, time.perf_counter() - started


def _get(connection: http.client.HTTPConnection, path: str) -> bytes:
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
    except (http.client.HTTPException, OSError):
        connection.close()
        raise
    if response.status != 200:
        raise RuntimeError(f"GET {path} -> HTTP {response.status}: {body[:500]!r}")
    return body


def _check_view(body: bytes, data: ChartSet, plan: ChartPlan) -> bool:
    found = _DATA_BLOCK.search(body.decode())
    if found is None:
        return False
    charts = json.loads(found.group(1))["charts"]
    if [c["key"] for c in charts] != keys(plan):
        return False
    return all(
        len(chart["series"]) == plan.runs
        and all(_keeps(s, chart["key"], data) for s in chart["series"])
        for chart in charts
    )


def _keeps(series: dict[str, Any], key: str, data: ChartSet) -> bool:
    low, high = data.extremes[(series["run"], key)]
    values = series["values"]
    return bool(values) and min(values) == low and max(values) == high


def _check_long(body: bytes, data: ChartSet) -> bool:
    (series,) = json.loads(body)["series"]
    return _keeps(series, "long", data) and len(series["values"]) <= 2 * LONG_COLUMNS


def measure(
    server: Server,
    data: ChartSet,
    plan: ChartPlan,
    repetitions: int,
    budget_s: float,
    out: Outcome,
) -> None:
    parts = urllib.parse.urlsplit(server.base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=600)
    checks: dict[str, bool] = out.details.setdefault("checks", {})
    cases: list[tuple[str, Callable[[], bytes], Callable[[bytes], bool] | None]]
    if server.kind.startswith("modelyard"):
        view = f"/ui/experiments/{data.experiment}/charts?" + urllib.parse.urlencode(
            {"metrics": ",".join(keys(plan))}
        )
        long = "/ui/charts/data?" + urllib.parse.urlencode(
            {"runs": data.long_run, "key": "long", "columns": LONG_COLUMNS}
        )
        cases = [
            ("charts.view", lambda: _get(connection, view), lambda b: _check_view(b, data, plan)),
            ("charts.long", lambda: _get(connection, long), lambda b: _check_long(b, data)),
        ]
    else:
        interval = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?"
        ids = [("run_ids", run_id) for run_id in data.run_ids]
        sample = ("max_results", MLFLOW_SAMPLE)
        views = [
            interval + urllib.parse.urlencode([*ids, ("metric_key", k), sample]) for k in keys(plan)
        ]
        long = interval + urllib.parse.urlencode(
            {"run_ids": data.long_run, "metric_key": "long", "max_results": LONG_COLUMNS}
        )
        cases = [
            ("charts.view", lambda: b"".join(_get(connection, v) for v in views), None),
            ("charts.long", lambda: _get(connection, long), None),
        ]
    try:
        for name, call, check in cases:
            connection.close()  # a fresh connection: idle ones are dropped after a while
            bodies: list[bytes] = [call()]  # the first call warms up
            pids = server_pids(server.proc.pid)
            cpu: list[float] = []

            def timed(
                _i: int,
                call: Callable[[], bytes] = call,
                bodies: list[bytes] = bodies,
                cpu: list[float] = cpu,
                pids: list[int] = pids,
            ) -> None:
                before = cpu_seconds(pids)
                bodies.append(call())
                cpu.append(cpu_seconds(pids) - before)

            times = timed_calls(timed, repetitions, budget_s, 3)
            # the server's own CPU time per call: what the machine's other load cannot inflate
            out.figures[f"{name}.cpu_ms"] = percentile(cpu, 50) * 1e3
            if check is not None:
                checks[name] = all(check(body) for body in bodies[-2:])
                if not checks[name]:
                    log(f"  {server.kind}: {name} CHECK FAILED")
            out.figures[f"{name}.p50_ms"] = percentile(times, 50) * 1e3
            out.figures[f"{name}.p95_ms"] = percentile(times, 95) * 1e3
            out.details.setdefault("bytes", {})[name] = len(bodies[-1])
            log(
                f"  {server.kind}: {name} p50 {out.figures[f'{name}.p50_ms']:.1f} ms, "
                f"p95 {out.figures[f'{name}.p95_ms']:.1f} ms over {len(times)} calls, "
                f"server CPU p50 {out.figures[f'{name}.cpu_ms']:.0f} ms, {len(bodies[-1]):,} bytes"
            )
    finally:
        connection.close()


ROWS = (
    ("charts.view", "(e) chart view, {runs} x {metrics} metrics x {steps:,} steps", VIEW_TARGET_MS),
    ("charts.long", "(f) chart data of {long_steps:,} steps", LONG_TARGET_MS),
)
