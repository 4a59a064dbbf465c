"""What a benchmark run prints and keeps: the figures as a table, the host and versions it
ran on, the machine load, errors, and the JSON results document."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from harness import BENCH_DIR, CLIENT_ENV, RESULTS_DIR, log, stop_on_sigterm


def fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit in {"pts/s", "runs/s"}:
        number = f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"
    elif unit == "":
        return f"{value:.0f}"
    elif value >= 100:
        number = f"{value:,.0f}"
    elif value >= 10:
        number = f"{value:.1f}"
    else:
        number = f"{value:.2f}"
    return f"{number} {unit}"


def print_table(
    report: list[dict[str, Any]],
    headers: tuple[str, ...] = ("workload", "modelyard", "mlflow", "ratio", "modelyard target"),
) -> None:
    """The report as a Markdown table (label left, figures right, target left)."""
    lines = [
        (r["label"], r["modelyard_text"], r["mlflow_text"], r["ratio_text"], r["target_text"])
        for r in report
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]

    def render(cells: tuple[str, ...]) -> str:
        parts = [cells[0].ljust(widths[0])]
        parts += [c.rjust(w) for c, w in zip(cells[1:4], widths[1:4], strict=True)]
        parts.append(cells[4].ljust(widths[4]))
        return "| " + " | ".join(parts) + " |"

    print(render(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        print(render(line))


def versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for package in ("modelyard", "mlflow", "requests"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "?"
    found["modelyard_commit"] = git("rev-parse", "--short", "HEAD") or "?"
    status = git("status", "--porcelain", "--", "src")
    found["modelyard_src_dirty"] = "?" if status is None else ("yes" if status else "no")
    return found


def git(*args: str) -> str | None:
    """Output of a git command in this checkout (None when git is unavailable)."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=BENCH_DIR, capture_output=True, text=True, check=False, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def host_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        **versions(),
    }


def load_string() -> str:
    """The machine's load average: the benchmark shares its cores with whatever else runs."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def print_errors(errors: list[dict[str, str]]) -> None:
    for error in errors:
        print(f"ERROR [{error['server']} / {error['workload']}]: {error['error']}")


def save_results(
    output: Path,
    *,
    stamp: str,
    started: float,
    plan: Any,
    host: dict[str, Any],
    fields: dict[str, Any],
    where: str = "",
) -> None:
    """Print the run's provenance line and write the results document."""
    total_s = time.perf_counter() - started
    dirty = " with uncommitted changes in src/" if host["modelyard_src_dirty"] == "yes" else ""
    place = f", temp data on {where}" if where else ""
    print(
        f"modelyard commit {host['modelyard_commit']}{dirty}, mlflow {host['mlflow']}, "
        f"{host['cpus']} CPUs{place}; total wall time {total_s / 60:.1f} min"
    )
    document = {
        "started_utc": stamp,
        "wall_s": total_s,
        "argv": sys.argv[1:],
        "plan": asdict(plan),
        "host": host,
        **fields,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"results written to {output}")


@dataclass
class Session:
    """One benchmark run: the servers it measures, when it started, where its results go."""

    name: str
    kinds: list[str]
    stamp: str
    output: Path
    host: dict[str, Any]
    started: float

    @property
    def logs(self) -> Path:
        """Where the servers' logs are kept."""
        return self.output.parent / f"{self.name}-{self.stamp}-logs"

    def finish(
        self,
        plan: Any,
        errors: list[dict[str, str]],
        fields: dict[str, Any],
        *,
        where: str = "",
        failed: bool = False,
    ) -> int:
        """Print the errors, write the results document; the exit status."""
        print_errors(errors)
        save_results(
            self.output,
            stamp=self.stamp,
            started=self.started,
            plan=plan,
            host=self.host,
            fields=fields,
            where=where,
        )
        return 1 if errors or failed else 0


def begin(
    name: str, plan: Any, only: str | None, servers: Iterable[str], output: Path | None
) -> Session:
    """Start a run: the reference client's environment, SIGTERM ending it cleanly, the plan and
    the versions logged; results go to ``output`` or ``bench/results/<name>-<stamp>.json``."""
    os.environ.update(CLIENT_ENV)
    stop_on_sigterm()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    host = host_info()
    log(f"plan: {plan}")
    log(f"versions: {host}")
    return Session(
        name=name,
        kinds=[only] if only else list(servers),
        stamp=stamp,
        output=output or RESULTS_DIR / f"{name}-{stamp}.json",
        host=host,
        started=time.perf_counter(),
    )
