"""Merge requests with candidates: runs logged by the stock mlflow client with the ci.* tags the
client's plugin sets, grouped by merge request and repository, through the native API and the
service (on SQLite and PostgreSQL): counts, last activity, the best value of a metric either
way, paging, what is left out (deleted candidates and experiments, other projects), bad
parameters."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from modelyard.db.engine import Database
from modelyard.services import access, merge_requests
from tests.conftest import Server, run_cli

GITLAB = "https://gitlab.example.com/ml/churn"
GITHUB = "https://github.com/ml/churn"
T0 = 1_800_000_000_000


def ci_tags(mr: str, repository: str | None, pipeline: str, **more: str) -> dict[str, str]:
    provider = "github" if repository and "github" in repository else "gitlab"
    tags = {
        "ci.provider": provider,
        "ci.merge_request_id": mr,
        "ci.pipeline_id": pipeline,
        "ci.job_id": f"{pipeline}1",
        "ci.source_branch": f"feature-{mr}",
        "ci.target_branch": "main",
        "ci.commit": "a" * 40,
        **more,
    }
    if repository:
        tags["ci.repository_url"] = repository
        tags["ci.merge_request_url"] = f"{repository}/-/merge_requests/{mr}"
        tags["ci.pipeline_url"] = f"{repository}/-/pipelines/{pipeline}"
    return tags


@dataclass
class Yard:
    """A project of its own on the session's server, the mlflow client pointed at it."""

    server: Server
    name: str
    client: Any
    http: httpx.Client
    db: Database

    @property
    def project_id(self) -> int:
        return access.find_project(self.db, self.name).id

    def candidate(
        self,
        experiment: str,
        tags: dict[str, str],
        *,
        started: int,
        ended: int | None = None,
        metrics: dict[str, float] | None = None,
        name: str | None = None,
    ) -> str:
        from mlflow.entities import Metric

        run = self.client.create_run(experiment, start_time=started, tags=tags, run_name=name)
        run_id: str = run.info.run_id
        points = [Metric(k, v, started, 0) for k, v in (metrics or {}).items()]
        if points:
            self.client.log_batch(run_id, metrics=points)
        if ended is not None:
            self.client.set_terminated(run_id, end_time=ended)
        return run_id


@pytest.fixture
def yard(server: Server) -> Iterator[Yard]:
    from mlflow.tracking import MlflowClient

    name = f"mr-{uuid.uuid4().hex[:10]}"
    made = run_cli(server, "admin", "projects", "create", name)
    assert made.returncode == 0, made.stderr
    uri = f"{server.url}/projects/{name}"
    db = Database(server.backend.url)
    with httpx.Client(base_url=f"{uri}/api/v1", timeout=60) as http:
        yield Yard(server, name, MlflowClient(uri, uri), http, db)
    db.dispose()


@pytest.fixture
def logged(yard: Yard) -> dict[str, str]:
    """Two merge requests of GitLab's repository (!12 in two experiments, !7), !12 of a
    GitHub repository (a different pull request), and what must not count."""
    c = yard.client
    first, second, gone = (c.create_experiment(f"e{i}-{uuid.uuid4().hex[:6]}") for i in range(3))
    runs = {
        "a": yard.candidate(first, ci_tags("12", GITLAB, "100"), started=T0, ended=T0 + 50,
                            metrics={"acc": 0.8, "loss": 0.5}, name="a"),
        "b": yard.candidate(second, ci_tags("12", GITLAB, "101"), started=T0 + 100,
                            metrics={"acc": 0.9, "loss": 0.7}, name="b"),
        "c": yard.candidate(first, ci_tags("12", GITLAB, "102"), started=T0 + 200,
                            ended=T0 + 900, metrics={"acc": 0.85, "loss": 0.2}, name="c"),
        "nan": yard.candidate(first, ci_tags("12", GITLAB, "103"), started=T0 + 300,
                              metrics={"acc": float("nan")}, name="nan"),
        "deleted": yard.candidate(first, ci_tags("12", GITLAB, "104"), started=T0 + 5000,
                                  metrics={"acc": 0.99}),
        "gh": yard.candidate(first, ci_tags("12", GITHUB, "200"), started=T0 + 400,
                             metrics={"acc": 0.5}, name="gh"),
        "seven": yard.candidate(second, ci_tags("7", GITLAB, "300"), started=T0 + 2000,
                                metrics={"acc": 0.7}, name="seven"),
        "seven-bare": yard.candidate(second, ci_tags("7", GITLAB, "301"), started=T0 + 1000),
        "no-repo": yard.candidate(second, ci_tags("3", None, "400"), started=T0 - 1000),
        "local": yard.candidate(first, {"mlflow.source.git.commit": "b" * 40}, started=T0 + 9000),
        "in-gone": yard.candidate(gone, ci_tags("99", GITLAB, "500"), started=T0 + 9000),
    }  # fmt: skip
    c.delete_run(runs["deleted"])
    c.delete_experiment(gone)
    return runs


def listed(yard: Yard, **params: object) -> dict[str, Any]:
    answer = yard.http.get("/merge-requests", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_merge_requests_grouped_with_the_best_value(yard: Yard, logged: dict[str, str]) -> None:
    body = listed(yard, metric="acc")
    assert body["metric"] == "acc"
    assert body["direction"] == "max"
    assert body["next_offset"] is None
    found = [(m["id"], m["repository_url"], m["candidates"]) for m in body["merge_requests"]]
    assert found == [
        ("7", GITLAB, 2),  # last active T0 + 2000
        ("12", GITLAB, 4),  # T0 + 900: c ended then; the deleted candidate does not count
        ("12", GITHUB, 1),
        ("3", None, 1),
    ]
    seven, twelve, pull, bare = body["merge_requests"]
    assert twelve == {
        "id": "12",
        "repository_url": GITLAB,
        "url": f"{GITLAB}/-/merge_requests/12",
        "provider": "gitlab",
        "source_branch": "feature-12",
        "target_branch": "main",
        "candidates": 4,
        "last_activity": T0 + 900,
        "best": {"metric": "acc", "value": 0.9, "run_id": logged["b"]},
    }
    assert seven["best"] == {"metric": "acc", "value": 0.7, "run_id": logged["seven"]}
    assert pull["best"]["run_id"] == logged["gh"]
    assert pull["provider"] == "github"
    assert bare["best"] is None  # it logged no acc
    assert (bare["url"], bare["last_activity"]) == (None, T0 - 1000)

    lowest = listed(yard, metric="loss", direction="min")["merge_requests"]
    assert lowest[1]["best"] == {"metric": "loss", "value": 0.2, "run_id": logged["c"]}
    assert lowest[0]["best"] is None
    highest = listed(yard, metric="loss", direction="max")["merge_requests"]
    assert highest[1]["best"] == {"metric": "loss", "value": 0.7, "run_id": logged["b"]}
    assert all(m["best"] is None for m in listed(yard)["merge_requests"])
    assert all(m["best"] is None for m in listed(yard, metric="")["merge_requests"])
    assert all(m["best"] is None for m in listed(yard, metric="nowhere")["merge_requests"])


def test_pages_follow_each_other(yard: Yard, logged: dict[str, str]) -> None:
    whole = listed(yard, metric="acc", limit=100)["merge_requests"]
    pages, offset = [], 0
    while offset is not None:
        body = listed(yard, metric="acc", limit=1, offset=offset)
        pages.extend(body["merge_requests"])
        offset = body["next_offset"]
    assert pages == whole
    assert len(whole) == 4
    assert listed(yard, offset=10)["merge_requests"] == []


def test_only_the_project_sees_its_merge_requests(
    server: Server, yard: Yard, logged: dict[str, str]
) -> None:
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=60) as default:
        answer = default.get("/merge-requests", params={"limit": 1000})
    assert answer.status_code == 200
    seen = {(m["id"], m["repository_url"]) for m in answer.json()["merge_requests"]}
    assert ("12", GITLAB) not in seen
    assert ("99", GITLAB) not in listed(yard)["merge_requests"]


def test_bad_parameters_are_400_naming_them(yard: Yard) -> None:
    cases = {
        "direction": {"direction": "up"},
        "limit": {"limit": "0"},
        "offset": {"offset": "-1"},
        "metric": {"metric": "acc\x00"},
    }
    for name, params in cases.items():
        answer = yard.http.get("/merge-requests", params=params)
        assert answer.status_code == 400, (name, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "INVALID_PARAMETER_VALUE"
        assert f"'{name}'" in error["message"]
    long_metric = yard.http.get("/merge-requests", params={"metric": "m" * 251})
    assert long_metric.status_code == 400
    fine = yard.http.get("/merge-requests", params={"metric": "m" * 250})
    assert fine.status_code == 200


def test_service_candidates_of_one_merge_request(yard: Yard, logged: dict[str, str]) -> None:
    project = yard.project_id
    best_first = merge_requests.candidates(yard.db, project, "12", GITLAB, metric="acc")
    names = [run.info.run_name for run in best_first]
    assert names == ["b", "c", "a", "nan"]  # without a (finite) value last
    lowest = merge_requests.candidates(yard.db, project, "12", GITLAB, metric="acc", order="min")
    assert [run.info.run_name for run in lowest] == ["a", "c", "b", "nan"]
    newest = merge_requests.candidates(yard.db, project, "12", GITLAB)
    assert [run.info.run_name for run in newest] == ["nan", "c", "b", "a"]
    assert newest[0].tags["ci.pipeline_id"] == "103"
    assert [r.info.run_name for r in merge_requests.candidates(yard.db, project, "12", GITHUB)] == [
        "gh"
    ]
    bare = merge_requests.candidates(yard.db, project, "3", None)
    assert [r.info.run_id for r in bare] == [logged["no-repo"]]
    assert merge_requests.candidates(yard.db, project, "3", "") == bare
    assert merge_requests.candidates(yard.db, project, "99", GITLAB) == []  # experiment deleted
    assert merge_requests.candidates(yard.db, project, "12", GITLAB, limit=2)[1].info.run_name
    assert merge_requests.metric_keys(yard.db, project, ["12", "7"]) == ["acc", "loss"]
    assert merge_requests.metric_keys(yard.db, project, ["7"]) == ["acc"]
    assert merge_requests.metric_keys(yard.db, project, []) == []

    found = merge_requests.find(yard.db, project, "12", GITLAB)
    assert found is not None
    assert (found.candidates, found.last_activity, found.url) == (
        4,
        T0 + 900,
        f"{GITLAB}/-/merge_requests/12",
    )
    assert merge_requests.find(yard.db, project, "12", "https://elsewhere.example") is None
    with pytest.raises(merge_requests.InvalidParameter):
        merge_requests.candidates(yard.db, project, "12\x00", GITLAB)
    with pytest.raises(merge_requests.InvalidParameter):
        merge_requests.list_merge_requests(yard.db, project, order="sideways")
