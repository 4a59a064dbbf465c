"""Model registry benchmark: modelyard against the MLflow reference server, in the same run.

On each server one registered model receives N model versions (200 by default) created one
after the other, then the versions are searched, the latest version is asked for, and a version
is fetched by its alias, each call repeated and timed. Every operation is timed twice: as raw
HTTP on a thin kept-alive connection (the server's own cost) and through the stock
``MlflowClient`` (what a user feels). The servers run one after the other, each in its own
temporary directory on a free loopback port, in its own process group. Results are printed as a
table and written as JSON to ``bench/results/registry-<timestamp>.json``. See
``bench/README.md``.

    .venv/bin/python bench/registry.py --quick
    .venv/bin/python bench/registry.py --only modelyard --versions 1000
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import sys
import tempfile
import time
import urllib.parse
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import harness
import results
from harness import (
    HttpError,
    Outcome,
    Rest,
    Server,
    artifact_server_command,
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
ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts"
ARTIFACTS_SCHEME = "mlflow-artifacts:/"
MLMODEL = b"artifact_path: model\nflavors: {}\nmodel_uuid: registry-bench\n"
ALIAS = "champion"
SEARCH_MAX_RESULTS = 1000
VS_MLFLOW_TARGET = 10.0  # modelyard p50 at least 10x lower than MLflow's
#: the speed issue's absolute targets for modelyard's raw-HTTP p50 (ms), shown beside the ratio
ABSOLUTE_TARGETS_MS = {"create.raw_p50_ms": 1.0, "search.raw_p50_ms": 2.0}
WAYS = ("raw", "client")
WAY_LABELS = {"raw": "raw HTTP", "client": "MlflowClient"}
OPERATIONS = (
    ("create", "create_model_version"),
    ("search", "search_model_versions"),
    ("latest", "get_latest_versions"),
    ("alias", "get_model_version_by_alias"),
)


@dataclass(frozen=True)
class Plan:
    versions: int
    repetitions: int
    warmup: int


def make_plan(args: argparse.Namespace) -> Plan:
    return Plan(
        versions=args.versions or (50 if args.quick else 200),
        repetitions=args.repetitions or (30 if args.quick else 100),
        warmup=3,
    )


# --------------------------------------------------------------------------------------------
# Setup on one server (not timed)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    run_id: str
    source: str
    models: dict[str, str]  # way -> registered model that way fills and queries
    warmup_model: str
    alias_version: int


def put_artifact(rest: Rest, artifact_uri: str, path: str, data: bytes) -> None:
    """One proxied upload through the mlflow-artifacts PUT route."""
    if not artifact_uri.startswith(ARTIFACTS_SCHEME):
        raise RuntimeError(f"unexpected artifact_uri {artifact_uri!r}; the server must proxy")
    location = artifact_uri[len(ARTIFACTS_SCHEME) :].strip("/")
    url = f"{ARTIFACTS_API}/{urllib.parse.quote(location)}/{urllib.parse.quote(path)}"
    rest.connection.request(
        "PUT", url, body=data, headers={"Content-Type": "application/octet-stream"}
    )
    response = rest.connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise HttpError("PUT", url, f"<{len(data)} bytes>", response.status, body.decode())


def set_up(server: Server, plan: Plan, rest: Rest, client: Any) -> Setup:
    """Experiment, run with a tiny ``model/MLmodel`` artifact, registered models, and a warm-up
    of every operation on its own model (so code loaded on first use is not timed)."""
    stamp = time.time_ns()
    experiment_id = rest.create_experiment(f"registry-{stamp}")
    info = rest.post("/runs/create", {"experiment_id": experiment_id, "run_name": "model"})
    run_id = info["run"]["info"]["run_id"]
    put_artifact(rest, info["run"]["info"]["artifact_uri"], "model/MLmodel", MLMODEL)
    models = {way: f"bench-{way}-{stamp}" for way in WAYS}
    warmup_model = f"bench-warm-up-{stamp}"
    for name in (*models.values(), warmup_model):
        rest.post("/registered-models/create", {"name": name})
    source = f"runs:/{run_id}/model"
    for _ in range(plan.warmup):
        rest.post(
            "/model-versions/create", {"name": warmup_model, "source": source, "run_id": run_id}
        )
        client.create_model_version(warmup_model, source, run_id=run_id)
    rest.post("/registered-models/alias", {"name": warmup_model, "alias": ALIAS, "version": "1"})
    for _ in range(plan.warmup):
        rest.get(
            "/model-versions/search",
            {"filter": f"name='{warmup_model}'", "max_results": SEARCH_MAX_RESULTS},
        )
        client.search_model_versions(f"name='{warmup_model}'")
        rest.post("/registered-models/get-latest-versions", {"name": warmup_model})
        latest_versions(client, warmup_model)
        rest.get("/registered-models/alias", {"name": warmup_model, "alias": ALIAS})
        client.get_model_version_by_alias(warmup_model, ALIAS)
    log(f"{server.kind}: set up run {run_id} and models {', '.join(models.values())}")
    return Setup(run_id, source, models, warmup_model, max(1, plan.versions // 2))


def latest_versions(client: Any, name: str) -> list[Any]:
    """``MlflowClient.get_latest_versions``, without its deprecation warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return list(client.get_latest_versions(name))


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def check_numbers(where: str, numbers: list[int], expected: int) -> None:
    """``numbers`` must be exactly the version numbers 1..expected, each once."""
    if len(numbers) != expected or sorted(numbers) != list(range(1, expected + 1)):
        distinct = sorted(set(numbers))
        shown = distinct if len(distinct) <= 12 else [*distinct[:6], "...", *distinct[-6:]]
        raise RuntimeError(
            f"CHECK FAILED: {where}: got {len(numbers)} versions ({len(distinct)} distinct "
            f"numbers: {shown}); expected {expected} versions numbered 1..{expected}"
        )


def check_single(where: str, numbers: list[int], expected: int) -> None:
    if numbers != [expected]:
        raise RuntimeError(f"CHECK FAILED: {where}: got versions {numbers}, expected [{expected}]")


# --------------------------------------------------------------------------------------------
# Workloads. Each fills figures "<operation>.<way>_p50_ms" / "_p95_ms" for both ways.
# --------------------------------------------------------------------------------------------


def record_times(out: Outcome, operation: str, way: str, times: list[float]) -> None:
    out.figures[f"{operation}.{way}_p50_ms"] = percentile(times, 50) * 1e3
    out.figures[f"{operation}.{way}_p95_ms"] = percentile(times, 95) * 1e3
    out.details.setdefault(operation, {})[f"{way}_calls"] = len(times)


def repeat(call: Callable[[int], object], count: int) -> list[float]:
    return timed_calls(call, count, math.inf, min_count=count)


def workload_create(plan: Plan, rest: Rest, client: Any, setup: Setup, out: Outcome) -> None:
    name = setup.models["raw"]
    created: list[int] = []

    def raw_call(_i: int) -> None:
        answer = rest.post(
            "/model-versions/create",
            {"name": name, "source": setup.source, "run_id": setup.run_id},
        )
        created.append(int(answer["model_version"]["version"]))

    raw_times = repeat(raw_call, plan.versions)
    check_numbers(f"model-versions/create on {name}", created, plan.versions)
    record_times(out, "create", "raw", raw_times)

    name = setup.models["client"]
    made: list[int] = []

    def client_call(_i: int) -> None:
        version = client.create_model_version(name, setup.source, run_id=setup.run_id)
        made.append(int(version.version))

    client_times = repeat(client_call, plan.versions)
    check_numbers(f"MlflowClient.create_model_version on {name}", made, plan.versions)
    record_times(out, "create", "client", client_times)


def workload_search(plan: Plan, rest: Rest, client: Any, setup: Setup, out: Outcome) -> None:
    name = setup.models["raw"]
    params = {"filter": f"name='{name}'", "max_results": SEARCH_MAX_RESULTS}
    raw_answers: list[dict[str, Any]] = []
    raw_times = repeat(
        lambda _i: raw_answers.append(rest.get("/model-versions/search", params)),
        plan.repetitions,
    )
    for i, answer in enumerate(raw_answers):
        numbers = [int(v["version"]) for v in answer.get("model_versions", [])]
        check_numbers(f"model-versions/search on {name}, call {i + 1}", numbers, plan.versions)
        if answer.get("next_page_token"):
            raise RuntimeError(f"CHECK FAILED: search on {name} returned a next_page_token")
    record_times(out, "search", "raw", raw_times)

    name = setup.models["client"]
    client_answers: list[list[Any]] = []
    client_times = repeat(
        lambda _i: client_answers.append(client.search_model_versions(f"name='{name}'")),
        plan.repetitions,
    )
    for i, answer in enumerate(client_answers):
        numbers = [int(v.version) for v in answer]
        check_numbers(
            f"MlflowClient.search_model_versions on {name}, call {i + 1}", numbers, plan.versions
        )
    record_times(out, "search", "client", client_times)


def workload_latest(plan: Plan, rest: Rest, client: Any, setup: Setup, out: Outcome) -> None:
    name = setup.models["raw"]
    raw_answers: list[dict[str, Any]] = []
    raw_times = repeat(
        lambda _i: raw_answers.append(
            rest.post("/registered-models/get-latest-versions", {"name": name})
        ),
        plan.repetitions,
    )
    for i, answer in enumerate(raw_answers):
        numbers = [int(v["version"]) for v in answer.get("model_versions", [])]
        check_single(f"get-latest-versions on {name}, call {i + 1}", numbers, plan.versions)
    record_times(out, "latest", "raw", raw_times)

    name = setup.models["client"]
    client_answers: list[list[Any]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client_times = repeat(
            lambda _i: client_answers.append(client.get_latest_versions(name)),
            plan.repetitions,
        )
    for i, answer in enumerate(client_answers):
        numbers = [int(v.version) for v in answer]
        check_single(
            f"MlflowClient.get_latest_versions on {name}, call {i + 1}", numbers, plan.versions
        )
    record_times(out, "latest", "client", client_times)


def workload_alias(plan: Plan, rest: Rest, client: Any, setup: Setup, out: Outcome) -> None:
    target = setup.alias_version
    for name in setup.models.values():
        rest.post(
            "/registered-models/alias", {"name": name, "alias": ALIAS, "version": str(target)}
        )
    name = setup.models["raw"]
    params = {"name": name, "alias": ALIAS}
    raw_answers: list[dict[str, Any]] = []
    raw_times = repeat(
        lambda _i: raw_answers.append(rest.get("/registered-models/alias", params)),
        plan.repetitions,
    )
    for i, answer in enumerate(raw_answers):
        numbers = [int(answer["model_version"]["version"])]
        check_single(f"registered-models/alias on {name}, call {i + 1}", numbers, target)
    record_times(out, "alias", "raw", raw_times)

    name = setup.models["client"]
    client_answers: list[Any] = []
    client_times = repeat(
        lambda _i: client_answers.append(client.get_model_version_by_alias(name, ALIAS)),
        plan.repetitions,
    )
    for i, answer in enumerate(client_answers):
        check_single(
            f"MlflowClient.get_model_version_by_alias on {name}, call {i + 1}",
            [int(answer.version)],
            target,
        )
    record_times(out, "alias", "client", client_times)


WORKLOADS: list[tuple[str, Callable[[Plan, Rest, Any, Setup, Outcome], None]]] = [
    ("create", workload_create),
    ("search", workload_search),
    ("latest", workload_latest),
    ("alias", workload_alias),
]


def reconnect(rest: Rest, model: str) -> None:
    """Open a new connection with one untimed call: the servers close kept-alive connections
    that stay idle for a few seconds (uvicorn after 5 s), as during the wait for MLflow."""
    rest.close()
    rest.get("/registered-models/get", {"name": model})


def start_server(kind: str, workdir: Path) -> Server:
    """modelyard with SQLite and local blobs; MLflow with SQLite and proxied local artifacts."""
    return harness.start_server(kind, workdir, command_for=artifact_server_command)


def bench_server(kind: str, tmp: Path, plan: Plan, logs_dir: Path) -> Outcome:
    from mlflow.tracking import MlflowClient

    # create_model_version logs "Waiting up to 300 seconds ..." at INFO level on every call.
    logging.getLogger("mlflow.store.model_registry.abstract_store").setLevel(logging.WARNING)

    out = Outcome()
    workdir = tmp / kind
    log(f"{kind}: starting")
    try:
        server = start_server(kind, workdir)
    except Exception as exc:
        record_error(out, kind, "start", exc)
        return out
    out.details["command"] = server.command_line()
    out.details["cold_start_s"] = server.cold_start_s
    log(f"{kind}: /health answered after {server.cold_start_s:.1f} s on port {server.port}")
    rest = Rest(server.base_url)
    try:
        client = MlflowClient(tracking_uri=server.base_url, registry_uri=server.base_url)
        try:
            setup = set_up(server, plan, rest, client)
        except Exception as exc:
            record_error(out, kind, "setup", exc)
            return out
        log(f"{kind}: waiting until the server is idle")
        waited, quiet = wait_until_quiet(server.proc.pid)
        out.details["quiet_wait_s"] = waited
        out.details["quiet_before_measuring"] = quiet
        log(f"{kind}: {'idle' if quiet else 'still busy, measuring anyway'} after {waited:.0f} s")
        for name, workload in WORKLOADS:
            log(f"{kind}: {name}")
            t0 = time.perf_counter()
            try:
                reconnect(rest, setup.warmup_model)
                workload(plan, rest, client, setup, out)
            except Exception as exc:
                record_error(out, kind, name, exc)
            out.details.setdefault("wall_s", {})[name] = time.perf_counter() - t0
        if server.proc.poll() is not None:
            out.errors.append(
                {
                    "server": kind,
                    "workload": "-",
                    "error": f"server exited with {server.proc.returncode}",
                }
            )
    finally:
        rest.close()
        log(f"{kind}: stopping process group {server.proc.pid}")
        stop_server(server)
        if out.errors:
            logs_dir.mkdir(parents=True, exist_ok=True)
            kept = logs_dir / server.log_path.name
            shutil.copyfile(server.log_path, kept)
            out.details["server_log"] = str(kept)
        shutil.rmtree(workdir, ignore_errors=True)
    return out


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    target: bool  # p50 rows carry the ">= 10x mlflow" target


def table_rows(plan: Plan) -> list[Row]:
    details = {
        "create": f", {plan.versions} sequential, one model",
        "search": f", {plan.versions} versions",
    }
    return [
        Row(
            f"{operation}.{way}_{q}_ms",
            f"{call} {q} ({WAY_LABELS[way]}){details.get(operation, '')}",
            q == "p50",
        )
        for operation, call in OPERATIONS
        for way in WAYS
        for q in ("p50", "p95")
    ]


def build_report(plan: Plan, outcomes: dict[str, Outcome]) -> list[dict[str, Any]]:
    report = []
    for row in table_rows(plan):
        values: dict[str, float | None] = {}
        texts: dict[str, str] = {}
        for kind in SERVERS:
            outcome = outcomes.get(kind)
            if outcome is None:
                values[kind], texts[kind] = None, "not run"
                continue
            values[kind] = outcome.figures.get(row.key)
            texts[kind] = "error" if values[kind] is None else fmt(values[kind], "ms")
        mine, theirs = values["modelyard"], values["mlflow"]
        ratio = theirs / mine if mine and theirs and mine > 0 and theirs > 0 else None
        met: bool | None = None
        target_text = "-"
        if row.target:
            met = None if ratio is None else ratio >= VS_MLFLOW_TARGET
            verdict = "n/a" if met is None else ("ok" if met else "MISS")
            target_text = f">= {VS_MLFLOW_TARGET:g}x mlflow  {verdict}"
        if row.key in ABSOLUTE_TARGETS_MS:
            limit = ABSOLUTE_TARGETS_MS[row.key]
            within = None if mine is None else mine <= limit
            met = within if met is None else (met and within is not False)
            verdict = "n/a" if within is None else ("ok" if within else "MISS")
            target_text += f"; <= {limit:g} ms  {verdict}"
        report.append(
            {
                "key": row.key,
                "label": row.label,
                "unit": "ms",
                "modelyard": mine,
                "mlflow": theirs,
                "ratio": ratio,
                "modelyard_text": texts["modelyard"],
                "mlflow_text": texts["mlflow"],
                "ratio_text": "-" if ratio is None else f"{ratio:,.1f}x",
                "target_text": target_text,
                "target_met": met,
            }
        )
    return report


def print_table(report: list[dict[str, Any]]) -> None:
    headers = ("workload", "modelyard", "mlflow", "ratio (mlflow / modelyard)", "target")
    results.print_table(report, headers)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the model registry: modelyard against the MLflow tracking server."
    )
    parser.add_argument(
        "--quick", action="store_true", help="50 versions and 30 repetitions (default 200, 100)"
    )
    parser.add_argument("--only", choices=SERVERS, help="measure one server only")
    parser.add_argument(
        "--versions", type=int, metavar="N", help="model versions to create (default 200)"
    )
    parser.add_argument(
        "--repetitions",
        type=int,
        metavar="N",
        help="calls per search / latest / alias measurement (default 100)",
    )
    parser.add_argument("--output", type=Path, help="JSON file to write (default bench/results/)")
    args = parser.parse_args(argv)
    for value in (args.versions, args.repetitions):
        if value is not None and value <= 0:
            parser.error("--versions and --repetitions must be positive")
    if args.versions is not None and args.versions > SEARCH_MAX_RESULTS:
        parser.error(f"--versions must be at most {SEARCH_MAX_RESULTS} (one search page)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    run = begin("registry", plan, args.only, SERVERS, args.output)
    outcomes: dict[str, Outcome] = {}
    with tempfile.TemporaryDirectory(prefix="modelyard-registry-") as name:
        for kind in run.kinds:
            outcomes[kind] = bench_server(kind, Path(name), plan, run.logs)
    report = build_report(plan, outcomes)
    print()
    print_table(report)
    print("ratio > 1 means modelyard is faster (mlflow p50 or p95 / modelyard p50 or p95)")
    for kind, outcome in outcomes.items():
        d = outcome.details
        if "cold_start_s" in d:
            waited = d.get("quiet_wait_s")
            print(
                f"{kind}: /health after {d['cold_start_s']:.1f} s; measured after waiting "
                f"{'-' if waited is None else f'{waited:.0f}'} s for the server to go idle"
                f"{'' if d.get('quiet_before_measuring', True) else ' (it never did)'}"
            )
    errors = [e for o in outcomes.values() for e in o.errors]
    checked = [
        kind
        for kind, o in outcomes.items()
        if not o.errors and o.figures.get("search.raw_p50_ms") is not None
    ]
    if checked:
        print(
            f"checked on {', '.join(checked)}: creations numbered 1..{plan.versions}, every "
            f"search returned {plan.versions} distinct versions 1..{plan.versions}, latest and "
            "alias answers as expected"
        )
    fields = {
        "rows": report,
        "servers": {kind: asdict(o) for kind, o in outcomes.items()},
        "errors": errors,
    }
    return run.finish(plan, errors, fields)


if __name__ == "__main__":
    sys.exit(main())
