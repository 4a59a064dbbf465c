"""The client's MLflow plugin: a run started with the stock MLflow client inside each CI system
gets exactly the documented tags, none outside CI, a user's tags and MLflow's own git tags
are never replaced, and no secret variable reaches the server."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import requests

from tests.client.ci_envs import CANARY, COMMIT, providers
from tests.client.conftest import Yard

LOGGER = """
import json, os, sys
import mlflow

cases = json.loads(sys.argv[1])
base = dict(os.environ)
mlflow.set_experiment(sys.argv[2])
made = {}
for case in cases:
    os.environ.clear()
    os.environ.update(base)
    os.environ.update(case["env"])
    with mlflow.start_run(run_name=case["name"], tags=case.get("tags") or None) as run:
        mlflow.log_metric("val_acc", 0.5)
    made[case["name"]] = run.info.run_id
print(json.dumps(made))
"""


def log_runs(
    yard: Yard, folder: Path, experiment: str, cases: list[dict[str, Any]]
) -> dict[str, str]:
    """Runs logged by MLflow's fluent API in a new process (the script lives in ``folder``),
    one per case under that case's variables and nothing else of ours; run name → run id."""
    script = folder / "train.py"
    script.write_text(LOGGER)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(folder),
        "MLFLOW_TRACKING_URI": yard.uri,
        "MLFLOW_TRACKING_TOKEN": yard.developer,
    }
    done = subprocess.run(
        [sys.executable, str(script), json.dumps(cases), experiment],
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    made: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return made


def run_tags(yard: Yard, run_id: str) -> dict[str, str]:
    got = requests.get(
        f"{yard.uri}/api/2.0/mlflow/runs/get",
        params={"run_id": run_id},
        headers=yard.headers(),
        timeout=30,
    )
    assert got.status_code == 200, got.text
    return {t["key"]: t["value"] for t in got.json()["run"]["data"].get("tags", [])}


def ours(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if k.startswith(("ci.", "mlflow.source.git."))}


def test_each_provider_gives_exactly_its_tags(yard: Yard, tmp_path: Path) -> None:
    found = providers(tmp_path)
    cases: list[dict[str, Any]] = [{"name": p.name, "env": p.env} for p in found]
    cases.append({"name": "outside", "env": {}})
    made = log_runs(yard, tmp_path, f"ci-{uuid.uuid4().hex[:8]}", cases)
    for provider in found:
        assert ours(run_tags(yard, made[provider.name])) == provider.tags, provider.name
    assert ours(run_tags(yard, made["outside"])) == {}


def test_user_tags_win(yard: Yard, tmp_path: Path) -> None:
    gitlab = providers(tmp_path)[0]
    mine = {"ci.merge_request_id": "7", "mlflow.source.git.branch": "mine", "ci.job_url": "x"}
    made = log_runs(
        yard,
        tmp_path,
        f"ci-{uuid.uuid4().hex[:8]}",
        [{"name": "u", "env": gitlab.env, "tags": mine}],
    )
    assert ours(run_tags(yard, made["u"])) == {**gitlab.tags, **mine}


def _git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_mlflow_git_tags_are_kept(yard: Yard, tmp_path: Path) -> None:
    """In a checkout, MLflow's own commit and remote stand; the CI fills in the branch a
    detached checkout (as CI jobs have) does not name."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "remote", "add", "origin", f"https://ci:{CANARY}@git.example.com/ml/churn.git")
    (repo / "README").write_text("x\n")
    _git(repo, "add", "README")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "x")
    head = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-q", "--detach")
    (repo / ".gitignore").write_text("train.py\n__pycache__/\n")
    gitlab = providers(tmp_path)[0]
    made = log_runs(yard, repo, f"ci-{uuid.uuid4().hex[:8]}", [{"name": "g", "env": gitlab.env}])
    tags = ours(run_tags(yard, made["g"]))
    assert head != COMMIT
    expected = {
        **gitlab.tags,
        "mlflow.source.git.commit": head,
        "mlflow.source.git.repoURL": "https://git.example.com/ml/churn.git",
    }
    assert tags == expected


def _database_text(yard: Yard) -> str:
    """Every row of every table, as text."""
    backend = yard.server.backend
    rows: list[str] = []
    if backend.name == "sqlite":
        with sqlite3.connect(backend.data_dir / "modelyard.db") as conn:
            tables = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            for table in tables:
                rows.extend(repr(r) for r in conn.execute(f'SELECT * FROM "{table}"'))
        return "\n".join(rows)
    url = backend.url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        ]
        for table in tables:
            rows.extend(repr(r) for r in conn.execute(f'SELECT * FROM "{table}"'))
    return "\n".join(rows)


def test_no_secret_reaches_the_server(yard: Yard, tmp_path: Path) -> None:
    found = providers(tmp_path)
    assert all(p.secrets for p in found)
    for provider in found:
        for name in provider.secrets:
            assert CANARY in provider.env[name], (provider.name, name)
    experiment = f"ci-{uuid.uuid4().hex[:8]}"
    made = log_runs(yard, tmp_path, experiment, [{"name": p.name, "env": p.env} for p in found])
    headers = yard.headers()
    answers = [
        requests.post(
            f"{yard.uri}/api/2.0/mlflow/runs/search",
            json={"experiment_ids": [_experiment_id(yard, experiment)], "max_results": 100},
            headers=headers,
            timeout=30,
        ),
        requests.get(f"{yard.uri}/ui/experiments", headers=headers, timeout=30),
    ]
    answers.extend(
        requests.get(f"{yard.uri}/ui/runs/{run_id}", headers=headers, timeout=30)
        for run_id in made.values()
    )
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert CANARY not in answer.text
    assert len(answers[0].json()["runs"]) == len(found)
    assert "ci.provider" in answers[0].text
    assert CANARY not in _database_text(yard)
    assert made["gitlab"] in _database_text(yard)


def _experiment_id(yard: Yard, name: str) -> str:
    got = requests.get(
        f"{yard.uri}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": name},
        headers=yard.headers(),
        timeout=30,
    )
    assert got.status_code == 200, got.text
    return str(got.json()["experiment"]["experiment_id"])
