"""The workloads of ``bench/tracking.py``: log_metric, log_batch, create_run, history and
search, each run against one server, and the deterministic search data set (also seeded by
``bench/auth.py``). See ``bench/README.md`` ("Workloads")."""

from __future__ import annotations

import random
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import (
    BASE_TS,
    BATCH_SIZE,
    Outcome,
    Rest,
    Server,
    batch_body,
    log,
    percentile,
    record_error,
    start_server,
    stop_server,
    timed_calls,
    unique,
)
from procs import tree_rss

HISTORY_PAGE = 25_000  # what MlflowClient.get_metric_history asks for per page
ALPHAS = ("0.1", "0.01", "0.001", "1.0")
TEAMS = ("vision", "speech", "search", "video")
SEARCH_STEPS = 3
SEARCH_FILTER = "metrics.acc > 0.5 and params.alpha = '0.1'"
TAG_FILTER = "tags.team LIKE 'v%'"
SEARCH_ORDER = ("metrics.loss ASC",)
SEARCH_MAX = 100


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


# --------------------------------------------------------------------------------------------
# Workloads. Each takes the server and the plan and returns flat figures plus extra details.
# --------------------------------------------------------------------------------------------


def mlflow_client(base_url: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=base_url)


def metric_objects(key: str, first_step: int, count: int) -> list[Any]:
    from mlflow.entities import Metric

    return [
        Metric(key, (first_step + i) * 0.001, BASE_TS + first_step + i, first_step + i)
        for i in range(count)
    ]


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
