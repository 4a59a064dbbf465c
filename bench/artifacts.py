"""Artifact transfer benchmark: modelyard against the MLflow reference server, in the same run.

One big file (1 GiB by default) is uploaded with ``MlflowClient.log_artifact`` and downloaded
with ``MlflowClient.download_artifacts`` through each server's proxied artifact routes, while the
server's resident memory is sampled; then 1,000 small files go up with ``log_artifacts`` and come
back with ``download_artifacts``. A plain ``cp`` of the big file on the same disk is the
baseline. The servers run one after the other, each in its own temporary directory on a free
loopback port. Results are printed as a table and written as JSON to
``bench/results/artifacts-<timestamp>.json``. See ``bench/README.md``.

    .venv/bin/python bench/artifacts.py --quick
    .venv/bin/python bench/artifacts.py --only modelyard --size-mib 2048
    .venv/bin/python bench/artifacts.py --sweep 1,4,16,64,256,1024   # see artifact_sweep.py
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import artifact_sweep
import harness
import results
from harness import (
    CLIENT_ENV,
    Outcome,
    Server,
    artifact_server_command,
    log,
    stop_on_sigterm,
    stop_server,
)
from procs import RssSampler, wait_until_quiet
from results import begin

SERVERS = ("modelyard", "mlflow")
MIB = 2**20
WRITE_CHUNK = 4 * MIB
HASH_CHUNK = 4 * MIB
BIG_NAME = "big.bin"
WARMUP_NAME = "warm-up.bin"
WARMUP_BYTES = MIB
SMALL_FOLDERS = 10
SMALL_MIN_BYTES = 1024
SMALL_MAX_BYTES = 4096
VS_MLFLOW_TARGET = 4.0  # modelyard throughput at least 4x MLflow's for the big file
VS_CP_TARGET = 2.0  # modelyard transfer time at most 2x the time of a plain cp
RSS_GROWTH_TARGET_MIB = 64.0
# The client must send each file as one proxied PUT, not as a multipart upload.
UNSET_ENV = ("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD",)
EXTRA_CLIENT_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


@dataclass(frozen=True)
class Plan:
    size_mib: int
    small_files: int
    cp_repeats: int
    settle_s: float

    @property
    def size_bytes(self) -> int:
        return self.size_mib * MIB

    @property
    def size_label(self) -> str:
        if self.size_mib % 1024 == 0:
            return f"{self.size_mib // 1024} GiB"
        return f"{self.size_mib} MiB"


def make_plan(args: argparse.Namespace) -> Plan:
    return Plan(
        size_mib=args.size_mib or (128 if args.quick else 1024),
        small_files=args.small_files if args.small_files is not None else 1000,
        cp_repeats=2 if args.quick else 3,
        settle_s=1.0 if args.quick else 2.0,
    )


# --------------------------------------------------------------------------------------------
# Input files, created once before any server starts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    big: Path
    big_sha256: str
    small_dir: Path
    small_count: int
    small_bytes: int
    warmup: Path


def write_big_file(path: Path, size: int) -> str:
    """Random bytes (no two chunks alike, nothing to compress or deduplicate); returns sha256."""
    digest = hashlib.sha256()
    remaining = size
    with path.open("wb") as fh:
        while remaining > 0:
            chunk = os.urandom(min(WRITE_CHUNK, remaining))
            digest.update(chunk)
            fh.write(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


def small_folder(index: int) -> Path:
    """Folder ``index`` of a chain d0/d1/.../d9: ten folders, each inside the previous one."""
    return Path(*(f"d{i}" for i in range(index % SMALL_FOLDERS + 1)))


def write_small_files(root: Path, count: int) -> int:
    """``count`` files of 1-4 KiB of random bytes spread over ten nested folders; total bytes."""
    sizes = random.Random(20240601)
    total = 0
    for i in range(count):
        folder = root / small_folder(i)
        folder.mkdir(parents=True, exist_ok=True)
        data = os.urandom(sizes.randint(SMALL_MIN_BYTES, SMALL_MAX_BYTES))
        (folder / f"f{i:05d}.bin").write_bytes(data)
        total += len(data)
    return total


def make_inputs(tmp: Path, plan: Plan) -> Inputs:
    source = tmp / "source"
    source.mkdir()
    big = source / BIG_NAME
    log(f"writing the {plan.size_label} source file {big}")
    sha = write_big_file(big, plan.size_bytes)
    small_dir = source / "small"
    small_dir.mkdir()
    small_bytes = write_small_files(small_dir, plan.small_files)
    warmup = source / WARMUP_NAME
    warmup.write_bytes(os.urandom(WARMUP_BYTES))
    return Inputs(big, sha, small_dir, plan.small_files, small_bytes, warmup)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}


def compare_trees(expected: Path, got: Path) -> list[str]:
    """Differences between two folders (missing, extra or different files); empty if equal."""
    want, have = tree_files(expected), tree_files(got)
    problems = [f"missing {name}" for name in sorted(want.keys() - have.keys())]
    problems += [f"unexpected {name}" for name in sorted(have.keys() - want.keys())]
    problems += [
        f"content differs: {name}"
        for name in sorted(want.keys() & have.keys())
        if want[name].read_bytes() != have[name].read_bytes()
    ]
    return problems


# --------------------------------------------------------------------------------------------
# Baseline: cp on the same disk
# --------------------------------------------------------------------------------------------


def measure_cp(inputs: Inputs, tmp: Path, plan: Plan) -> dict[str, Any]:
    """Time ``cp src dst`` (no sync in the timing); the fsync that follows is timed apart."""
    target = tmp / "cp-copy.bin"
    copies: list[float] = []
    fsyncs: list[float] = []
    for _ in range(plan.cp_repeats):
        os.sync()  # flush earlier writes, untimed, so each copy starts from the same state
        t0 = time.perf_counter()
        subprocess.run(["cp", str(inputs.big), str(target)], check=True)
        copies.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fsyncs.append(time.perf_counter() - t0)
        target.unlink()
    cp_s = statistics.median(copies)
    fsync_s = statistics.median(fsyncs)
    return {
        "cp_s": cp_s,
        "cp_mib_s": plan.size_mib / cp_s,
        "fsync_after_cp_s": fsync_s,
        "cp_fsync_mib_s": plan.size_mib / (cp_s + fsync_s),
        "cp_runs_s": copies,
        "fsync_runs_s": fsyncs,
    }


# --------------------------------------------------------------------------------------------
# Server processes
# --------------------------------------------------------------------------------------------


def start_server(kind: str, workdir: Path) -> Server:
    """A server whose artifact routes proxy to a folder (see ``artifact_server_command``)."""
    return harness.start_server(kind, workdir, command_for=artifact_server_command, unset=UNSET_ENV)


# --------------------------------------------------------------------------------------------
# Workloads on one server
# --------------------------------------------------------------------------------------------


def attempt(out: Outcome, kind: str, name: str, step: Callable[[], None]) -> bool:
    """Run one step; an exception is recorded (with its traceback) instead of propagating."""
    try:
        step()
    except Exception as exc:
        log(f"{kind}: {name} FAILED: {exc}")
        out.errors.append(
            {
                "server": kind,
                "workload": name,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
            }
        )
        return False
    return True


def run_workloads(
    server: Server, inputs: Inputs, plan: Plan, out: Outcome, sampler_box: list[RssSampler]
) -> None:
    from mlflow.tracking import MlflowClient

    kind = server.kind
    scratch = server.workdir / "downloads"
    scratch.mkdir()
    client = MlflowClient(tracking_uri=server.base_url)
    experiment_id = client.create_experiment(f"artifacts-{time.time_ns()}")

    # Warm-up: one small upload and download, so that code loaded on first use is not counted
    # as growth during the measured transfers.
    warm_run = client.create_run(experiment_id, run_name="warm-up").info.run_id
    client.log_artifact(warm_run, str(inputs.warmup))
    client.download_artifacts(warm_run, WARMUP_NAME, str(scratch))
    (scratch / WARMUP_NAME).unlink()

    big_run = client.create_run(experiment_id, run_name="big-file").info
    out.details["artifact_uri"] = big_run.artifact_uri
    log(f"{kind}: waiting until the server is idle")
    waited, quiet = wait_until_quiet(server.proc.pid)
    out.details["quiet_wait_s"] = waited
    out.details["quiet_before_measuring"] = quiet
    log(f"{kind}: {'idle' if quiet else 'still busy, measuring anyway'} after {waited:.0f} s")
    os.sync()  # untimed: no earlier write is still being flushed during the transfers
    sampler = RssSampler(server.proc.pid)
    sampler_box.append(sampler)
    sampler.start()
    time.sleep(plan.settle_s)
    baseline = sampler.median("idle")
    out.figures["rss.baseline_mib"] = baseline
    size = plan.size_mib

    def upload() -> None:
        log(f"{kind}: upload {plan.size_label}")
        sampler.enter("upload")
        t0 = time.perf_counter()
        try:
            client.log_artifact(big_run.run_id, str(inputs.big))
        finally:
            elapsed = time.perf_counter() - t0
            sampler.enter("after-upload")
        out.figures["upload.s"] = elapsed
        out.figures["upload.mib_s"] = size / elapsed

    def download() -> None:
        log(f"{kind}: download {plan.size_label}")
        out.figures["rss.before_download_mib"] = sampler.median("after-upload")
        os.sync()
        sampler.enter("download")
        t0 = time.perf_counter()
        try:
            local = Path(client.download_artifacts(big_run.run_id, BIG_NAME, str(scratch)))
        finally:
            elapsed = time.perf_counter() - t0
            sampler.enter("after-download")
        out.details["download_s_unverified"] = elapsed
        got = sha256_of(local)
        got_size = local.stat().st_size
        local.unlink()
        if got != inputs.big_sha256 or got_size != plan.size_bytes:
            raise RuntimeError(
                f"CHECK FAILED: downloaded {BIG_NAME} has {got_size} bytes, sha256 {got}; "
                f"the source has {plan.size_bytes} bytes, sha256 {inputs.big_sha256}"
            )
        out.figures["download.s"] = elapsed
        out.figures["download.mib_s"] = size / elapsed

    uploaded = attempt(out, kind, "upload", upload)
    out.figures["rss.upload_peak_mib"] = sampler.peak("upload")
    out.figures["rss.upload_growth_mib"] = sampler.peak("upload") - baseline
    if uploaded:
        attempt(out, kind, "download", download)
        out.figures["rss.download_peak_mib"] = sampler.peak("download")
        out.figures["rss.download_growth_mib"] = sampler.peak("download") - baseline

    small_run = client.create_run(experiment_id, run_name="small-files").info.run_id

    def small_upload() -> None:
        log(f"{kind}: upload {inputs.small_count:,} small files")
        sampler.enter("small-upload")
        t0 = time.perf_counter()
        try:
            client.log_artifacts(small_run, str(inputs.small_dir))
        finally:
            elapsed = time.perf_counter() - t0
            sampler.enter("after-small-upload")
        out.figures["small.upload_s"] = elapsed
        out.figures["small.upload_files_s"] = inputs.small_count / elapsed

    def small_download() -> None:
        log(f"{kind}: download {inputs.small_count:,} small files")
        target = scratch / "small"
        target.mkdir()
        sampler.enter("small-download")
        t0 = time.perf_counter()
        try:
            local = Path(client.download_artifacts(small_run, "", str(target)))
        finally:
            elapsed = time.perf_counter() - t0
            sampler.enter("after-small-download")
        problems = compare_trees(inputs.small_dir, local)
        shutil.rmtree(target)
        if problems:
            raise RuntimeError(
                f"CHECK FAILED: {len(problems)} differences between the small files sent and "
                f"received, e.g. {'; '.join(problems[:5])}"
            )
        out.figures["small.download_s"] = elapsed
        out.figures["small.download_files_s"] = inputs.small_count / elapsed

    if attempt(out, kind, "small files upload", small_upload):
        attempt(out, kind, "small files download", small_download)
    out.details["rss_peak_small_mib"] = {
        "upload": sampler.peak("small-upload"),
        "download": sampler.peak("small-download"),
    }


def bench_server(kind: str, tmp: Path, inputs: Inputs, plan: Plan, logs_dir: Path) -> Outcome:
    out = Outcome()
    workdir = tmp / kind
    log(f"{kind}: starting")
    try:
        server = start_server(kind, workdir)
    except Exception as exc:
        out.errors.append({"server": kind, "workload": "start", "error": str(exc)})
        return out
    out.details["command"] = " ".join(str(a) for a in server.proc.args)  # type: ignore[union-attr]
    out.details["cold_start_s"] = server.cold_start_s
    log(f"{kind}: /health answered after {server.cold_start_s:.1f} s on port {server.port}")
    samplers: list[RssSampler] = []
    try:
        attempt(out, kind, "setup", lambda: run_workloads(server, inputs, plan, out, samplers))
        if server.proc.poll() is not None:
            out.errors.append(
                {
                    "server": kind,
                    "workload": "-",
                    "error": f"server exited with {server.proc.returncode}",
                }
            )
    finally:
        for sampler in samplers:
            sampler.stop()
            out.details["rss_samples"] = len(sampler.samples)
            out.details["server_processes"] = max(sampler.process_counts, default=0)
            out.details["rss_end_mib"] = sampler.samples[-1][2] if sampler.samples else None
            out.details["cpu_s"] = sampler.cpu()
            first = sampler.samples[0][0] if sampler.samples else 0.0
            out.details["rss_series"] = [
                [round(t - first, 3), phase, round(mib, 1)] for t, phase, mib in sampler.samples
            ]
        log(f"{kind}: stopping process group {server.proc.pid}")
        stop_server(server)
        if out.errors:
            logs_dir.mkdir(parents=True, exist_ok=True)
            kept = logs_dir / server.log_path.name
            shutil.copyfile(server.log_path, kept)
            out.details["server_log"] = str(kept)
        shutil.rmtree(workdir, ignore_errors=True)  # frees the disk before the next server
    return out


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    unit: str
    better: str  # "higher", "lower", or "" when no ratio is shown
    target: str = ""  # "vs-mlflow", "max", or ""
    limit: float = math.nan


def table_rows(plan: Plan) -> list[Row]:
    size = plan.size_label
    n = f"{plan.small_files:,}"
    return [
        Row("upload.mib_s", f"upload {size}", "MiB/s", "higher", "vs-mlflow", VS_MLFLOW_TARGET),
        Row("download.mib_s", f"download {size}", "MiB/s", "higher", "vs-mlflow", VS_MLFLOW_TARGET),
        Row(
            "rss.upload_growth_mib",
            "RSS growth upload",
            "MiB",
            "lower",
            "max",
            RSS_GROWTH_TARGET_MIB,
        ),
        Row(
            "rss.download_growth_mib",
            "RSS growth download",
            "MiB",
            "lower",
            "max",
            RSS_GROWTH_TARGET_MIB,
        ),
        Row("small.upload_files_s", f"{n} small files upload", "files/s", "higher"),
        Row("small.download_files_s", f"{n} small files download", "files/s", "higher"),
        Row("cp.mib_s", f"cp {size} (baseline)", "MiB/s", ""),
        Row("upload.vs_cp", "modelyard upload vs cp", "x cp", "", "max", VS_CP_TARGET),
        Row("download.vs_cp", "modelyard download vs cp", "x cp", "", "max", VS_CP_TARGET),
    ]


def fmt(value: float | None, unit: str) -> str:
    if value is None or math.isnan(value):
        return "-"
    if unit == "x cp":
        return f"{value:.2f}x cp"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    if abs(value) >= 10:
        return f"{value:.1f} {unit}"
    return f"{value:.2f} {unit}"


def add_cp_ratios(outcomes: dict[str, Outcome], cp: dict[str, Any] | None) -> None:
    if not cp:
        return
    for outcome in outcomes.values():
        for step in ("upload", "download"):
            seconds = outcome.figures.get(f"{step}.s")
            if seconds is not None:
                outcome.figures[f"{step}.vs_cp"] = seconds / cp["cp_s"]


def build_report(
    plan: Plan, outcomes: dict[str, Outcome], cp: dict[str, Any] | None
) -> list[dict[str, Any]]:
    report = []
    for row in table_rows(plan):
        values: dict[str, float | None] = {}
        texts: dict[str, str] = {}
        for kind in SERVERS:
            if row.key == "cp.mib_s":
                values[kind] = cp["cp_mib_s"] if cp and kind == "modelyard" else None
                texts[kind] = fmt(values[kind], row.unit) if kind == "modelyard" else "(same)"
                continue
            outcome = outcomes.get(kind)
            if outcome is None:
                values[kind], texts[kind] = None, "not run"
                continue
            values[kind] = outcome.figures.get(row.key)
            texts[kind] = "error" if values[kind] is None else fmt(values[kind], row.unit)
        mine, theirs = values["modelyard"], values["mlflow"]
        ratio: float | None = None
        if row.better and mine is not None and theirs is not None and mine > 0 and theirs > 0:
            ratio = mine / theirs if row.better == "higher" else theirs / mine
        met: bool | None = None
        target_text = ""
        if row.target == "vs-mlflow":
            target_text = f">= {row.limit:g}x mlflow"
            if ratio is not None:
                met = ratio >= row.limit
        elif row.target == "max":
            unit = "x cp time" if row.unit == "x cp" else row.unit
            sign = "<=" if row.unit == "x cp" else "<"
            target_text = f"{sign} {row.limit:g} {unit}"
            if mine is not None:
                met = mine <= row.limit if row.unit == "x cp" else mine < row.limit
        if target_text:
            target_text += "  n/a" if met is None else ("  ok" if met else "  MISS")
        report.append(
            {
                "key": row.key,
                "label": row.label,
                "unit": row.unit,
                "modelyard": mine,
                "mlflow": theirs,
                "ratio": ratio,
                "modelyard_text": texts["modelyard"],
                "mlflow_text": texts["mlflow"],
                "ratio_text": "-" if ratio is None else f"{ratio:,.2f}x",
                "target_text": target_text or "-",
                "target_met": met,
            }
        )
    return report


def print_table(report: list[dict[str, Any]]) -> None:
    headers = ("workload", "modelyard", "mlflow", "ratio (mlflow time / modelyard time)", "target")
    results.print_table(report, headers)


def print_notes(plan: Plan, outcomes: dict[str, Outcome], cp: dict[str, Any] | None) -> None:
    print(
        "ratio > 1 means modelyard did better (throughput: modelyard/mlflow, which is the inverse "
        "ratio of the times; memory: mlflow/modelyard)"
    )
    for kind, outcome in outcomes.items():
        f = outcome.figures
        parts = [
            f"baseline {fmt(f.get('rss.baseline_mib'), 'MiB')}",
            f"peak upload {fmt(f.get('rss.upload_peak_mib'), 'MiB')}",
            f"peak download {fmt(f.get('rss.download_peak_mib'), 'MiB')}",
        ]
        seconds = [
            f"{step} {f[f'{step}.s']:.2f} s"
            for step in ("upload", "download")
            if f.get(f"{step}.s") is not None
        ]
        processes = outcome.details.get("server_processes", "?")
        cpu = outcome.details.get("cpu_s", {})
        busy = [
            f"{step} server {cpu[step]['server_cpu_s']:.2f} s"
            f" / client {cpu[step]['client_cpu_s']:.2f} s"
            f" / rest of machine {max(cpu[step]['other_cpu_s'], 0.0):.2f} s"
            for step in ("upload", "download")
            if step in cpu
        ]
        print(
            f"{kind}: server RSS ({processes} processes) {', '.join(parts)}; "
            f"{plan.size_label} {', '.join(seconds) or 'not measured'}; "
            f"CPU time {', '.join(busy) or '-'}"
        )
    if cp:
        print(
            f"cp: {cp['cp_s']:.2f} s (median of {len(cp['cp_runs_s'])}), not synced; "
            f"the fsync after it took {cp['fsync_after_cp_s']:.2f} s more "
            f"(cp + fsync: {cp['cp_fsync_mib_s']:,.0f} MiB/s)"
        )


def filesystem_of(path: Path) -> str:
    try:
        done = subprocess.run(
            ["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True, check=False
        )
    except OSError:
        return "?"
    return done.stdout.strip() or "?"


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark artifact uploads and downloads: modelyard against the MLflow "
        "tracking server, with a plain cp as the baseline."
    )
    parser.add_argument(
        "--quick", action="store_true", help="a 128 MiB file instead of 1 GiB (about 2 minutes)"
    )
    parser.add_argument("--only", choices=SERVERS, help="measure one server only")
    parser.add_argument(
        "--size-mib", type=int, metavar="N", help="size of the big file (default 1024; quick 128)"
    )
    parser.add_argument(
        "--small-files", type=int, metavar="N", help="number of small files (default 1000)"
    )
    parser.add_argument(
        "--tmp-dir",
        type=Path,
        help="where the temporary data goes (default: the system temp folder)",
    )
    parser.add_argument("--output", type=Path, help="JSON file to write (default bench/results/)")
    parser.add_argument(
        "--sweep",
        nargs="?",
        const="",
        metavar="MIB,MIB,...",
        help="instead: raw upload/download speed at each size, with dd as the disk's baseline "
        "(default sizes 1,4,16,64,256,1024; quick 1,4,16,64)",
    )
    parser.add_argument(
        "--repeats", type=int, metavar="N", help="repetitions per size in --sweep mode"
    )
    args = parser.parse_args(argv)
    if args.sweep is not None:
        try:
            artifact_sweep.parse_sizes(args.sweep, args.quick)
        except ValueError as exc:
            parser.error(str(exc))
    if args.repeats is not None and args.repeats <= 0:
        parser.error("--repeats must be positive")
    if args.size_mib is not None and args.size_mib <= 0:
        parser.error("--size-mib must be positive")
    if args.small_files is not None and args.small_files <= 0:
        parser.error("--small-files must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.update(CLIENT_ENV)
    os.environ.update(EXTRA_CLIENT_ENV)
    for name in UNSET_ENV:
        os.environ.pop(name, None)

    stop_on_sigterm()
    if args.sweep is not None:
        return artifact_sweep.run_sweep(args, UNSET_ENV)
    plan = make_plan(args)
    run = begin("artifacts", plan, args.only, SERVERS, args.output)
    host = run.host
    outcomes: dict[str, Outcome] = {}
    cp: dict[str, Any] | None = None
    errors: list[dict[str, str]] = []
    if args.tmp_dir is not None:
        args.tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="modelyard-artifacts-", dir=args.tmp_dir) as name:
        tmp = Path(name)
        host["tmp_dir"] = str(tmp)
        host["tmp_filesystem"] = filesystem_of(tmp)
        inputs = make_inputs(tmp, plan)
        log(f"cp baseline ({plan.cp_repeats} copies)")
        try:
            cp = measure_cp(inputs, tmp, plan)
        except (OSError, subprocess.CalledProcessError) as exc:
            errors.append({"server": "-", "workload": "cp", "error": str(exc)})
        for kind in run.kinds:
            outcomes[kind] = bench_server(kind, tmp, inputs, plan, run.logs)
    add_cp_ratios(outcomes, cp)
    report = build_report(plan, outcomes, cp)
    print()
    print_table(report)
    print_notes(plan, outcomes, cp)
    errors += [e for o in outcomes.values() for e in o.errors]
    fields = {
        "inputs": {
            "big_bytes": plan.size_bytes,
            "big_sha256": inputs.big_sha256,
            "small_files": inputs.small_count,
            "small_bytes": inputs.small_bytes,
        },
        "cp": cp,
        "rows": report,
        "servers": {kind: asdict(o) for kind, o in outcomes.items()},
        "errors": errors,
    }
    return run.finish(plan, errors, fields, where=host["tmp_filesystem"])


if __name__ == "__main__":
    sys.exit(main())
