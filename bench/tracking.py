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
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness import Outcome
from results import begin, load_string, print_table
from tracking_report import build_report
from tracking_workloads import WORKLOAD_NAMES, Plan, bench_server

SERVERS = ("modelyard", "mlflow")


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    run = begin("tracking", plan, args.only, SERVERS, args.output)
    load_before = load_string()
    outcomes: dict[str, Outcome] = {}
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-") as tmp:
        for kind in run.kinds:
            outcomes[kind] = bench_server(kind, Path(tmp) / kind, plan, run.logs)
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
    fields = {
        "rows": report,
        "servers": {kind: asdict(o) for kind, o in outcomes.items()},
        "search_mismatches": mismatches,
    }
    return run.finish(plan, errors, fields, failed=bool(mismatches))


if __name__ == "__main__":
    sys.exit(main())
