"""The table of ``bench/tracking.py``: one row per figure, modelyard's and MLflow's values,
their ratio (above 1 when modelyard does better) and modelyard's target."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from harness import Outcome
from results import fmt
from tracking_workloads import Plan


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
