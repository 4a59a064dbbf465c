"""Merge requests with candidates: the first page of the list with the best value of a metric,
modelyard's GET /api/v1/merge-requests against what the reference MLflow server offers for the
same answer (every CI candidate through runs/search, grouped by merge request in the client).

Both servers get identical candidates (the same ci.* tags, metric and start times) through
MLflow's REST API; each is measured on its own. The ratio is mlflow / modelyard (above 1:
modelyard is faster).

    .venv/bin/python bench/merge_requests.py                    # 3,000 candidates, 300 MRs
    .venv/bin/python bench/merge_requests.py --runs 10000 --merge-requests 1000
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import requests

from harness import BASE_TS, CLIENT_ENV, Rest, start_server, stop_server

REPOSITORY = "https://gitlab.example.com/ml/churn"
PAGE = 50
SEARCH_PAGE = 1000  # runs/search's largest page in MLflow's REST API


def candidates(count: int, merge_requests: int) -> list[dict[str, Any]]:
    """Deterministic candidates: a quarter logged outside CI, the rest spread over MRs."""
    rng = random.Random(7)
    out = []
    for index in range(count):
        tags = [{"key": "mlflow.user", "value": "bench"}]
        if index % 4:
            mr = str(rng.randrange(merge_requests))
            tags += [
                {"key": "ci.provider", "value": "gitlab"},
                {"key": "ci.merge_request_id", "value": mr},
                {"key": "ci.repository_url", "value": REPOSITORY},
                {"key": "ci.merge_request_url", "value": f"{REPOSITORY}/-/merge_requests/{mr}"},
                {"key": "ci.source_branch", "value": f"feature-{mr}"},
                {"key": "ci.target_branch", "value": "main"},
                {"key": "ci.pipeline_id", "value": str(index)},
            ]
        metrics = [{"key": "acc", "value": rng.random(), "timestamp": BASE_TS, "step": 0}]
        out.append({"start": BASE_TS + index, "tags": tags, "metrics": metrics})
    return out


def seed(base_url: str, data: list[dict[str, Any]]) -> str:
    experiment = Rest(base_url).create_experiment(f"mr-{time.time_ns()}")

    def log(chunk: list[dict[str, Any]]) -> None:
        rest = Rest(base_url)
        for run in chunk:
            run_id = rest.create_run(experiment, start_time=run["start"])
            rest.post(
                "/runs/log-batch",
                {"run_id": run_id, "tags": run["tags"], "metrics": run["metrics"]},
            )
        rest.close()

    chunks = [data[i::4] for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(log, chunks))
    return experiment


def modelyard_page(session: requests.Session, base_url: str) -> list[tuple[str, float | None]]:
    answer = session.get(
        f"{base_url}/api/v1/merge-requests",
        params={"metric": "acc", "direction": "max", "limit": PAGE},
        timeout=600,
    )
    answer.raise_for_status()
    return [
        (m["id"], m["best"]["value"] if m["best"] else None)
        for m in answer.json()["merge_requests"]
    ]


def mlflow_page(
    session: requests.Session, base_url: str, experiment: str
) -> list[tuple[str, float | None]]:
    """Every CI candidate, page by page, grouped here: the same first page."""
    groups: dict[tuple[str, str], list[Any]] = {}
    token = None
    while True:
        body: dict[str, Any] = {
            "experiment_ids": [experiment],
            "filter": "tags.`ci.merge_request_id` LIKE '%'",
            "max_results": SEARCH_PAGE,
        }
        if token:
            body["page_token"] = token
        answer = session.post(f"{base_url}/api/2.0/mlflow/runs/search", json=body, timeout=600)
        answer.raise_for_status()
        data = answer.json()
        for run in data.get("runs", []):
            tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
            points = run["data"].get("metrics", [])
            acc = next((m["value"] for m in points if m["key"] == "acc"), None)
            info = run["info"]
            active = info.get("end_time") or info["start_time"]
            key = (tags["ci.merge_request_id"], tags.get("ci.repository_url", ""))
            group = groups.setdefault(key, [0, 0, None])
            group[0] += 1
            group[1] = max(group[1], int(active))
            if acc is not None and (group[2] is None or acc > group[2]):
                group[2] = acc
        token = data.get("next_page_token")
        if not token:
            break
    ranked = sorted(groups.items(), key=lambda item: (-item[1][1], item[0]))
    return [(key[0], group[2]) for key, group in ranked[:PAGE]]


def timed(call: Callable[[], object], repeat: int) -> float:
    call()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--merge-requests", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    os.environ.update(CLIENT_ENV)
    data = candidates(args.runs, args.merge_requests)
    figures: dict[str, float] = {}
    answers: dict[str, list[tuple[str, float | None]]] = {}
    for kind in ("modelyard", "mlflow"):
        workdir = Path(tempfile.mkdtemp(prefix=f"bench-mr-{kind}-"))
        server = start_server(kind, workdir)
        try:
            started = time.perf_counter()
            experiment = seed(server.base_url, data)
            print(f"{kind}: {args.runs} candidates logged in {time.perf_counter() - started:.0f} s")
            session = requests.Session()
            session.trust_env = False
            call: Callable[[], list[Any]] = (
                partial(modelyard_page, session, server.base_url)
                if kind == "modelyard"
                else partial(mlflow_page, session, server.base_url, experiment)
            )
            answers[kind] = call()
            figures[kind] = timed(call, args.repeat)
        finally:
            stop_server(server)
            shutil.rmtree(workdir, ignore_errors=True)
    same = [mr for mr, _ in answers["modelyard"]] == [mr for mr, _ in answers["mlflow"]]
    print(
        f"first page of {PAGE} merge requests with the best acc, {args.runs} candidates, "
        f"{args.merge_requests} merge requests (median of {args.repeat}):\n"
        f"  modelyard {figures['modelyard']:.1f} ms  mlflow {figures['mlflow']:.1f} ms  "
        f"ratio {figures['mlflow'] / figures['modelyard']:.1f}x  same answer: {same}"
    )


if __name__ == "__main__":
    main()
