"""``modelyard ci report`` from the client's own venv: the Markdown for a fixed data set against
a golden file, the quality gate, and ``--post`` against local GitLab and GitHub APIs."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.client.conftest import Venv, Yard, mlflow_env, modelyard, one_line_error
from tests.client.forge_server import ForgeServer

GOLDEN = Path(__file__).parent / "golden" / "ci_report.md"
METRICS = ["--metric", "val_acc:max", "--metric", "loss:min"]


@dataclass
class Dataset:
    experiment: str
    other: str  # a second experiment with a candidate of the same merge request
    model: str
    runs: dict[str, str]  # name → run id


def _mlflow(yard: Yard, method: str, path: str, **kwargs: Any) -> Any:
    answer = requests.request(
        method,
        f"{yard.uri}/api/2.0/mlflow/{path}",
        headers=yard.headers(yard.developer),
        timeout=30,
        **kwargs,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def log_run(
    yard: Yard,
    experiment_id: str,
    name: str,
    start: int,
    metrics: dict[str, float],
    params: dict[str, str],
    merge_request: str | None,
    repository: str | None = None,
) -> str:
    tags = [{"key": "ci.merge_request_id", "value": merge_request}] if merge_request else []
    if repository:
        tags.append({"key": "ci.repository_url", "value": repository})
    run = _mlflow(
        yard,
        "POST",
        "runs/create",
        json={"experiment_id": experiment_id, "run_name": name, "start_time": start, "tags": tags},
    )["run"]["info"]["run_id"]
    _mlflow(
        yard,
        "POST",
        "runs/log-batch",
        json={
            "run_id": run,
            "metrics": [
                {"key": k, "value": v, "timestamp": start, "step": 0} for k, v in metrics.items()
            ],
            "params": [{"key": k, "value": v} for k, v in params.items()],
        },
    )
    return str(run)


def _experiment(yard: Yard, name: str) -> str:
    return str(_mlflow(yard, "POST", "experiments/create", json={"name": name})["experiment_id"])


def _promote(yard: Yard, model: str, experiment_id: str, run_id: str, alias: str) -> None:
    put = requests.put(
        f"{yard.uri}/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/model/MLmodel",
        data=b"flavors: {}\n",
        headers=yard.headers(yard.developer),
        timeout=30,
    )
    assert put.status_code == 200, put.text
    base = f"{yard.uri}/api/v1/models/{model}"
    made = requests.post(
        f"{base}/versions",
        json={"candidate": run_id, "path": "model", "semver": "1.4.2"},
        headers=yard.headers(yard.developer),
        timeout=30,
    )
    assert made.status_code == 201, made.text
    moved = requests.put(
        f"{base}/aliases/{alias}",
        json={"version": str(made.json()["version"])},
        headers=yard.headers(),
        timeout=30,
    )
    assert moved.status_code == 200, moved.text


@pytest.fixture(scope="module")
def dataset(yard: Yard) -> Dataset:
    """Production (churn-golden 1.4.2 @production) and the candidates of merge request 901:
    three in the experiment, one deleted, one in another experiment; 902-906 for the gate."""
    tag = uuid.uuid4().hex[:6]
    experiment = _experiment(yard, "ci-golden")
    other = _experiment(yard, f"ci-golden-other-{tag}")
    model = "churn-golden"
    runs = {
        "prod-run": log_run(
            yard,
            experiment,
            "prod-run",
            1000,
            {"val_acc": 0.91, "loss": 0.30},
            {"lr": "0.1", "depth": "6", "optimizer": "adam"},
            None,
        )
    }
    _promote(yard, model, experiment, runs["prod-run"], "production")
    for name, start, metrics, params, mr in [
        ("calm-dog", 3000, {"val_acc": 0.90, "loss": 0.28}, {"lr": "0.2", "depth": "8"}, "901"),
        ("brave-cat", 2000, {"val_acc": 0.93, "loss": 0.25}, {"lr": "0.05", "depth": "6"}, "901"),
        ("dull-eel", 4000, {"val_acc": 0.89}, {"lr": "0.1", "optimizer": "sgd|mom`x"}, "901"),
        ("gone-gnu", 5000, {"val_acc": 0.99, "loss": 0.1}, {"lr": "0.1", "depth": "6"}, "901"),
        ("other-owl", 6000, {"val_acc": 0.99, "loss": 0.1}, {"lr": "0.1", "depth": "6"}, "900"),
        ("up-both", 7000, {"val_acc": 0.95, "loss": 0.20}, {"lr": "0.1"}, "902"),
        ("worse-loss", 7000, {"val_acc": 0.95, "loss": 0.35}, {"lr": "0.1"}, "903"),
        ("runner-up", 7100, {"val_acc": 0.92, "loss": 0.20}, {"lr": "0.1"}, "903"),
        ("same", 7000, {"val_acc": 0.91, "loss": 0.30}, {"lr": "0.1"}, "904"),
        ("no-loss", 7000, {"val_acc": 0.97}, {"lr": "0.1"}, "906"),
    ]:
        used = {**params, "optimizer": params.get("optimizer", "adam")}
        runs[name] = log_run(yard, experiment, name, start, metrics, used, mr)
    runs["far-fox"] = log_run(
        yard,
        other,
        "far-fox",
        8000,
        {"val_acc": 0.92, "loss": 0.26},
        {"lr": "0.1", "depth": "6", "optimizer": "adam"},
        "901",
    )
    _mlflow(yard, "POST", "runs/delete", json={"run_id": runs["gone-gnu"]})
    return Dataset("ci-golden", f"ci-golden-other-{tag}", model, runs)


def normalised(text: str, yard: Yard, data: Dataset) -> str:
    """The report with the server's address and the run ids replaced by stable names."""
    text = text.replace(yard.uri, "http://modelyard.example/projects/churn")
    for name, run_id in data.runs.items():
        text = text.replace(run_id, f"<{name}>")
    return text.replace(data.other, "ci-golden-other")


def report(
    venv: Venv, yard: Yard, folder: Path, *args: str, env: dict[str, str] | None = None
) -> Any:
    return modelyard(venv, {**mlflow_env(yard), **(env or {})}, folder, "ci", "report", *args)


def test_report_matches_the_golden_file(
    client_venv: Venv, yard: Yard, dataset: Dataset, empty_dir: Path
) -> None:
    args = ["--model", dataset.model, *METRICS, "--experiment", dataset.experiment]
    done = report(client_venv, yard, empty_dir, *args, "--merge-request", "901")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert normalised(done.stdout, yard, dataset) == GOLDEN.read_text()
    # every link leads to a page of the web UI: the candidates and the compare view
    links = re.findall(r"\]\((http[^)\s]+)\)", done.stdout)
    assert any("/ui/compare?" in link for link in links)
    for link in set(links):
        assert link.startswith(f"{yard.uri}/ui/")
        page = requests.get(link, headers=yard.headers(yard.reporter), timeout=30)
        assert page.status_code == 200, (link, page.text[:300])
    compare = next(link for link in links if "/ui/compare?" in link)
    page = requests.get(compare, headers=yard.headers(yard.reporter), timeout=30).text
    for name in ("prod-run", "brave-cat", "calm-dog", "dull-eel"):
        assert dataset.runs[name] in page or name in page
    # a GitLab merge-request job names the merge request itself
    gitlab = {"GITLAB_CI": "true", "CI": "true", "CI_MERGE_REQUEST_IID": "901"}
    again = report(client_venv, yard, empty_dir, *args, env=gitlab)
    assert again.returncode == 0, again.stderr
    assert again.stdout == done.stdout


def test_every_experiment_by_default(
    client_venv: Venv, yard: Yard, dataset: Dataset, empty_dir: Path
) -> None:
    done = report(
        client_venv, yard, empty_dir, "--model", dataset.model, *METRICS, "--merge-request", "901"
    )
    assert done.returncode == 0, done.stderr
    got = normalised(done.stdout, yard, dataset)
    assert "4 candidates of this merge request in `ci-golden`, `ci-golden-other`." in got
    assert "[far\\-fox]" not in got  # names are escaped only where Markdown needs it
    assert "[far-fox](http://modelyard.example/projects/churn/ui/runs/<far-fox>)" in got
    assert "<gone-gnu>" not in got
    assert "<other-owl>" not in got


def test_candidates_of_the_jobs_repository(
    client_venv: Venv, yard: Yard, dataset: Dataset, empty_dir: Path
) -> None:
    """A merge request is a number in a repository: in CI, the job's repository's only."""
    experiment = _experiment(yard, f"ci-repos-{uuid.uuid4().hex[:6]}")
    made = {
        name: log_run(yard, experiment, name, 1, {"val_acc": 0.5}, {}, "907", repository)
        for name, repository in (
            ("ours", "https://github.com/ml/churn"),
            ("theirs", "https://github.com/ml/other"),
            ("untold", None),
        )
    }
    github = {
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "ml/churn",
        "GITHUB_REF": "refs/pull/907/merge",
    }
    args = ["--model", dataset.model, *METRICS]

    def listed(done: Any) -> set[str]:
        assert done.returncode == 0, done.stderr
        return {name for name, run_id in made.items() if run_id in done.stdout}

    in_ci = report(client_venv, yard, empty_dir, *args, env=github)
    assert listed(in_ci) == {"ours"}
    # the server's page of the same merge request shows the same candidates
    page_link = re.search(r"\]\(([^)]*/ui/merge-requests/candidates\?[^)]*)\)", in_ci.stdout)
    assert page_link is not None, in_ci.stdout
    page = requests.get(page_link.group(1), headers=yard.headers(yard.reporter), timeout=30)
    assert page.status_code == 200, page.text[:300]
    assert made["ours"] in page.text
    assert made["theirs"] not in page.text
    other = ["--repository", "https://github.com/ml/other"]
    assert listed(report(client_venv, yard, empty_dir, *args, *other, env=github)) == {"theirs"}
    everywhere = report(client_venv, yard, empty_dir, *args, "--merge-request", "907")
    assert listed(everywhere) == {"ours", "theirs", "untold"}


def _gate(venv: Venv, yard: Yard, folder: Path, model: str, mr: str, *extra: str) -> Any:
    return report(
        venv,
        yard,
        folder,
        "--model",
        model,
        *METRICS,
        "--merge-request",
        mr,
        "--fail-if-worse",
        *extra,
    )


def test_fail_if_worse_exits_1_exactly_when_it_should(
    client_venv: Venv, yard: Yard, dataset: Dataset, empty_dir: Path
) -> None:
    for mr in ("901", "902", "904"):  # better on both, better on both, the same
        done = _gate(client_venv, yard, empty_dir, dataset.model, mr)
        assert done.returncode == 0, (mr, done.stderr)
        assert "**Not worse than production**" in done.stdout
    # best by val_acc but worse on loss; best without loss; no candidate at all
    for mr, why in (("903", "worse than"), ("906", "worse than"), ("905", "no candidate")):
        done = _gate(client_venv, yard, empty_dir, dataset.model, mr)
        assert why in one_line_error(done), mr
        assert done.stdout.startswith("<!-- modelyard-ci-report")
    assert "on loss." in one_line_error(_gate(client_venv, yard, empty_dir, dataset.model, "903"))
    # no version behind the alias yet: nothing to be worse than
    first = _gate(client_venv, yard, empty_dir, dataset.model, "903", "--alias", "staging")
    assert first.returncode == 0, first.stderr
    assert "No production to compare with" in first.stdout
    # without the flag, a worse candidate is only reported
    plain = report(
        client_venv, yard, empty_dir, "--model", dataset.model, *METRICS, "--merge-request", "903"
    )
    assert plain.returncode == 0, plain.stderr
    assert "**Worse than production** on `loss`." in plain.stdout


def test_bad_input_is_one_line(
    client_venv: Venv, yard: Yard, dataset: Dataset, empty_dir: Path
) -> None:
    base = ["--model", dataset.model, "--merge-request", "901"]
    assert "NAME:max" in one_line_error(
        report(client_venv, yard, empty_dir, *base, "--metric", "val_acc")
    )
    assert "no experiment named 'nope'" in one_line_error(
        report(client_venv, yard, empty_dir, *base, *METRICS, "--experiment", "nope")
    )
    assert "no merge request" in one_line_error(
        report(client_venv, yard, empty_dir, "--model", dataset.model, *METRICS)
    )
    assert "not a merge request id" in one_line_error(
        report(client_venv, yard, empty_dir, *METRICS, "--model", "m", "--merge-request", "1' OR")
    )


# --post -----------------------------------------------------------------------------------------


@pytest.fixture
def forge() -> Iterator[ForgeServer]:
    server = ForgeServer()
    try:
        yield server
    finally:
        server.stop()


def _gitlab_env(forge: ForgeServer, token: str | None) -> dict[str, str]:
    env = {
        "CI": "true",
        "GITLAB_CI": "true",
        "CI_SERVER_URL": forge.url,
        "CI_PROJECT_ID": "17",
        "CI_MERGE_REQUEST_IID": "901",
    }
    if token is not None:
        env["GITLAB_TOKEN"] = token
    return env


def _github_env(forge: ForgeServer, folder: Path, token: str | None) -> dict[str, str]:
    event = folder / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 901}}))
    env = {
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_API_URL": forge.url,
        "GITHUB_REPOSITORY": "ml/churn",
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_REF": "refs/pull/901/merge",
    }
    if token is not None:
        env["GITHUB_TOKEN"] = token
    return env


def _others(count: int) -> list[dict[str, Any]]:
    """Comments by people: more than a page, so ours is found on a later page."""
    return [{"id": i, "body": f"looks good {i}", "system": False} for i in range(1, count + 1)]


@pytest.mark.parametrize("kind", ["gitlab", "github"])
def test_post_creates_then_updates_one_comment(
    kind: str,
    client_venv: Venv,
    yard: Yard,
    dataset: Dataset,
    empty_dir: Path,
    forge: ForgeServer,
) -> None:
    if kind == "gitlab":
        store = forge.forge.notes.setdefault(("17", 901), _others(130))
        env = _gitlab_env(forge, forge.forge.gitlab_token)
    else:
        store = forge.forge.comments.setdefault(("ml/churn", 901), _others(130))
        env = _github_env(forge, empty_dir, forge.forge.github_token)
    args = ["--model", dataset.model, *METRICS, "--experiment", dataset.experiment, "--post"]
    first = report(client_venv, yard, empty_dir, *args, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stderr.startswith("created the comment"), first.stderr
    assert len(store) == 131
    ours = store[-1]
    assert ours["body"] == first.stdout
    assert "<!-- modelyard-ci-report model=churn%2Dgolden alias=production -->" in ours["body"]
    # a new candidate, then the same job again: the same comment, updated
    experiment = _mlflow(
        yard, "GET", "experiments/get-by-name", params={"experiment_name": dataset.experiment}
    )["experiment"]["experiment_id"]
    late = log_run(yard, experiment, f"late-{kind}", 9000, {"val_acc": 0.94}, {"lr": "0.3"}, "901")
    second = report(client_venv, yard, empty_dir, *args, env=env)
    assert second.returncode == 0, second.stderr
    assert second.stderr.startswith("updated the comment"), second.stderr
    assert len(store) == 131
    assert store[-1]["id"] == ours["id"]
    assert late in store[-1]["body"]
    assert store[-1]["body"] == second.stdout
    assert all(c["body"].startswith("looks good") for c in store[:-1])
    _mlflow(yard, "POST", "runs/delete", json={"run_id": late})


@pytest.mark.parametrize("kind", ["gitlab", "github"])
def test_post_errors_are_one_line(
    kind: str,
    client_venv: Venv,
    yard: Yard,
    dataset: Dataset,
    empty_dir: Path,
    forge: ForgeServer,
) -> None:
    forge.forge.notes[("17", 901)] = []
    forge.forge.comments[("ml/churn", 901)] = []
    args = ["--model", dataset.model, *METRICS, "--experiment", dataset.experiment, "--post"]

    def env(token: str | None) -> dict[str, str]:
        if kind == "gitlab":
            return _gitlab_env(forge, token)
        return _github_env(forge, empty_dir, token)

    refused = report(client_venv, yard, empty_dir, *args, env=env("wrong"))
    assert "HTTP 401" in one_line_error(refused)
    assert refused.stdout.startswith("<!-- modelyard-ci-report")
    missing = env(forge.forge.gitlab_token if kind == "gitlab" else forge.forge.github_token)
    if kind == "gitlab":
        missing["CI_PROJECT_ID"] = "99"
    else:
        missing["GITHUB_REPOSITORY"] = "ml/gone"
    unknown = report(client_venv, yard, empty_dir, *args, env=missing)
    assert "HTTP 404" in one_line_error(unknown)
    # without a token: the report, and one line saying why it was not posted
    quiet = report(client_venv, yard, empty_dir, *args, env=env(None))
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.startswith("<!-- modelyard-ci-report")
    lines = quiet.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("not posted: no token")
    assert forge.forge.notes[("17", 901)] == []
    assert forge.forge.comments[("ml/churn", 901)] == []
    assert re.search(r"Traceback", refused.stderr + unknown.stderr + quiet.stderr) is None
