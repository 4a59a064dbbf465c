"""The CI examples of docs/ci.md, run: each job's commands (what the CI would run after its
`pip install` lines, whose packages this venv holds) in a shell with the variables GitLab CI
or GitHub Actions sets in a merge-request pipeline and on the default branch, against a live
server and local GitLab and GitHub APIs. Which jobs and steps run is decided by the files'
own rules and conditions."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.client.ci_envs import providers
from tests.client.conftest import Yard
from tests.client.forge_server import ForgeServer

DOC = Path(__file__).resolve().parents[2] / "docs" / "ci.md"
EXAMPLE_SERVER = "https://models.example.com/projects/churn"
MARKER = "<!-- modelyard-ci-report model=churn alias=production -->"


def examples() -> dict[str, str]:
    """The fenced blocks of docs/ci.md whose first line names a file (``# train.py``)."""
    found = {}
    for block in re.findall(r"```(?:yaml|python)\n(.*?)```", DOC.read_text(), re.S):
        first = block.splitlines()[0]
        if first.startswith("# "):
            found[first[2:].strip()] = block
    return found


@pytest.fixture
def forge() -> Iterator[ForgeServer]:
    server = ForgeServer()
    try:
        yield server
    finally:
        server.stop()


class Project:
    """A project of its own on the live server, with a developer and a maintainer token."""

    def __init__(self, yard: Yard) -> None:
        self.yard = yard
        self.name = f"docs-{uuid.uuid4().hex[:8]}"
        made = requests.post(
            f"{yard.server.url}/api/v1/projects",
            json={"name": self.name},
            headers=yard.headers(),
            timeout=30,
        )
        assert made.status_code == 201, made.text
        self.developer = self._token("developer")
        self.maintainer = self._token("maintainer")
        self.uri = f"{yard.server.url}/projects/{self.name}"

    def _token(self, role: str) -> str:
        made = requests.post(
            f"{self.yard.server.url}/api/v1/projects/{self.name}/tokens",
            json={"name": role, "role": role},
            headers=self.yard.headers(),
            timeout=30,
        )
        assert made.status_code == 201, made.text
        return str(made.json()["secret"])

    def get(self, path: str, **params: str) -> Any:
        got = requests.get(
            f"{self.uri}{path}", params=params, headers=self.yard.headers(), timeout=30
        )
        assert got.status_code == 200, got.text
        return got.json()

    def run_tags(self, run_id: str) -> dict[str, str]:
        run = self.get("/api/2.0/mlflow/runs/get", run_id=run_id)["run"]
        return {t["key"]: t["value"] for t in run["data"]["tags"]}

    def set_alias(self, model: str, alias: str, ref: str) -> None:
        moved = requests.put(
            f"{self.uri}/api/v1/models/{model}/aliases/{alias}",
            json={"version": ref},
            headers=self.yard.headers(),
            timeout=30,
        )
        assert moved.status_code == 200, moved.text


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), value)


def _shell(command: str, env: dict[str, str], folder: Path) -> None:
    if re.match(r"^\s*pip install ", command):
        return  # this venv holds mlflow and the client already
    done = subprocess.run(
        ["bash", "-e", "-c", command],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr


def _base_env() -> dict[str, str]:
    return {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": "/tmp"}


def _server(env: dict[str, str], project: Project) -> dict[str, str]:
    """The example's server address, pointed at the test's server and project."""
    assert env["MLFLOW_TRACKING_URI"] == EXAMPLE_SERVER
    return {**env, "MLFLOW_TRACKING_URI": project.uri}


# GitLab -----------------------------------------------------------------------------------------


def _gitlab_rule(rule: str, env: dict[str, str]) -> bool:
    found = re.fullmatch(r'\$(\w+) == (?:"([^"]*)"|\$(\w+))', rule.strip())
    assert found is not None, f"the test does not read the rule {rule!r}"
    left = env.get(found.group(1), "")
    right = found.group(2) if found.group(2) is not None else env.get(found.group(3) or "", "")
    return bool(left) and left == right


def run_gitlab(
    pipeline: dict[str, Any], ci: dict[str, str], folder: Path, project: Project
) -> list[str]:
    """The pipeline's jobs in stage order, each after its rules; the names of those run."""
    ran = []
    for stage in pipeline["stages"]:
        for name, job in pipeline.items():
            if not isinstance(job, dict) or job.get("stage") != stage:
                continue
            if not any(_gitlab_rule(r["if"], ci) for r in job.get("rules", [])):
                continue
            env = dict(ci)
            for key, value in pipeline.get("variables", {}).items():
                env[key] = _expand(str(value), env)
            for key, value in job.get("variables", {}).items():
                env[key] = _expand(str(value), {**ci, **env})
            env = _server(env, project)
            for command in [*pipeline["default"]["before_script"], *job["script"]]:
                _shell(command, env, folder)
            ran.append(name)
    return ran


def _gitlab_ci(forge: ForgeServer, project: Project, merge_request: str | None) -> dict[str, str]:
    env = {k: v for k, v in providers(Path("/tmp"))[0].env.items() if "MERGE_REQUEST" not in k}
    env.update(
        {
            **_base_env(),
            "CI_SERVER_URL": forge.url,
            "CI_DEFAULT_BRANCH": "main",
            "MODELS_TOKEN": project.developer,
            "MODELYARD_CI_COMMENT_TOKEN": forge.forge.gitlab_token,
        }
    )
    if merge_request is None:  # a push to the default branch: protected variables too
        env.update(
            {
                "CI_PIPELINE_SOURCE": "push",
                "CI_COMMIT_BRANCH": "main",
                "CI_PIPELINE_ID": "2002",
                "MODELS_RELEASE_TOKEN": project.maintainer,
            }
        )
    else:
        env.update(
            {
                "CI_PIPELINE_SOURCE": "merge_request_event",
                "CI_MERGE_REQUEST_IID": merge_request,
                "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "feature/wider",
                "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
                "CI_MERGE_REQUEST_PROJECT_URL": env["CI_PROJECT_URL"],
            }
        )
    return env


# GitHub -----------------------------------------------------------------------------------------


def _github_value(value: str, secrets: dict[str, str]) -> str:
    def secret(found: re.Match[str]) -> str:
        return secrets[found.group(1)]

    out = re.sub(r"\$\{\{\s*secrets\.(\w+)\s*\}\}", secret, value)
    assert "${{" not in out, f"the test does not read {value!r}"
    return out


def run_github(
    workflow: dict[str, Any],
    ci: dict[str, str],
    secrets: dict[str, str],
    folder: Path,
    project: Project,
) -> list[str]:
    """Every job's steps in order, each after its ``if``; the commands run."""
    ran = []
    event = ci["GITHUB_EVENT_NAME"]
    for job in workflow["jobs"].values():
        env = {**ci, **{k: _github_value(str(v), secrets) for k, v in workflow["env"].items()}}
        env.update({k: _github_value(str(v), secrets) for k, v in job.get("env", {}).items()})
        for step in job["steps"]:
            if "uses" in step:
                continue
            if "if" in step:
                found = re.fullmatch(r"github\.event_name == '(\w+)'", step["if"].strip())
                assert found is not None, f"the test does not read {step['if']!r}"
                if found.group(1) != event:
                    continue
            step_env = {
                **env,
                **{k: _github_value(str(v), secrets) for k, v in step.get("env", {}).items()},
            }
            if not re.match(r"^\s*pip install ", step["run"]):
                ran.append(" ".join(step["run"].split()[:2]))
            _shell(step["run"], _server(step_env, project), folder)
    return ran


def _github_ci(
    forge: ForgeServer, project: Project, folder: Path, pull: str | None
) -> dict[str, str]:
    github = providers(folder)[1].env
    env = {k: v for k, v in github.items() if k not in ("GITHUB_TOKEN",)}
    env.update({**_base_env(), "GITHUB_API_URL": forge.url})
    if pull is None:
        env.update(
            {
                "GITHUB_EVENT_NAME": "push",
                "GITHUB_REF": "refs/heads/main",
                "GITHUB_REF_NAME": "main",
                "GITHUB_RUN_ID": "8008",
            }
        )
        for key in ("GITHUB_HEAD_REF", "GITHUB_BASE_REF", "GITHUB_EVENT_PATH"):
            env.pop(key)
    else:
        event = folder / f"event-{pull}.json"
        event.write_text(f'{{"pull_request": {{"number": {pull}}}}}')
        env.update(
            {
                "GITHUB_EVENT_PATH": str(event),
                "GITHUB_REF": f"refs/pull/{pull}/merge",
            }
        )
    return env


# the tests --------------------------------------------------------------------------------------


def _checkout(tmp_path: Path) -> Path:
    folder = tmp_path / "checkout"
    folder.mkdir()
    (folder / "train.py").write_text(examples()["train.py"])
    return folder


def _check_release(project: Project, folder: Path, pipeline_id: str, provider: str) -> None:
    run_id = (folder / "candidate.txt").read_text().strip()
    staging = project.get("/api/v1/models/churn/versions/staging")
    assert staging["run_id"] == run_id
    tags = project.run_tags(run_id)
    assert tags["ci.provider"] == provider
    assert tags["ci.pipeline_id"] == pipeline_id
    assert "ci.merge_request_id" not in tags


def _check_merge_request(project: Project, folder: Path, number: str, provider: str) -> str:
    run_id = (folder / "candidate.txt").read_text().strip()
    tags = project.run_tags(run_id)
    assert tags["ci.provider"] == provider
    assert tags["ci.merge_request_id"] == number
    return run_id


def test_gitlab_example(yard: Yard, forge: ForgeServer, tmp_path: Path) -> None:
    pipeline = yaml.safe_load(examples()[".gitlab-ci.yml"])
    project = Project(yard)
    folder = _checkout(tmp_path)
    notes = forge.forge.notes.setdefault(("17", 7), [])

    ran = run_gitlab(pipeline, _gitlab_ci(forge, project, "7"), folder, project)
    assert ran == ["train", "report"]
    first = _check_merge_request(project, folder, "7", "gitlab")
    assert len(notes) == 1
    assert MARKER in notes[0]["body"]
    assert first in notes[0]["body"]
    assert "No production to compare with" in notes[0]["body"]

    ran = run_gitlab(pipeline, _gitlab_ci(forge, project, None), folder, project)
    assert ran == ["train", "release"]
    _check_release(project, folder, "2002", "gitlab")

    project.set_alias("churn", "production", "staging")  # the deliberate step
    ran = run_gitlab(pipeline, _gitlab_ci(forge, project, "7"), folder, project)
    assert ran == ["train", "report"]
    second = _check_merge_request(project, folder, "7", "gitlab")
    assert len(notes) == 1
    assert second in notes[0]["body"]
    assert "= same" in notes[0]["body"]
    assert "**Not worse than production**" in notes[0]["body"]


def test_github_example(yard: Yard, forge: ForgeServer, tmp_path: Path) -> None:
    workflow = yaml.safe_load(examples()[".github/workflows/model.yml"])
    project = Project(yard)
    folder = _checkout(tmp_path)
    comments = forge.forge.comments.setdefault(("ml/churn", 8), [])
    secrets = {
        "MODELS_TOKEN": project.developer,
        "MODELS_RELEASE_TOKEN": project.maintainer,
        "GITHUB_TOKEN": forge.forge.github_token,
    }

    ran = run_github(workflow, _github_ci(forge, project, tmp_path, "8"), secrets, folder, project)
    assert ran == ["python train.py", "modelyard ci"]
    first = _check_merge_request(project, folder, "8", "github")
    assert len(comments) == 1
    assert MARKER in comments[0]["body"]
    assert first in comments[0]["body"]

    ran = run_github(workflow, _github_ci(forge, project, tmp_path, None), secrets, folder, project)
    assert ran == ["python train.py", "modelyard models"]
    _check_release(project, folder, "8008", "github")

    project.set_alias("churn", "production", "staging")
    run_github(workflow, _github_ci(forge, project, tmp_path, "8"), secrets, folder, project)
    second = _check_merge_request(project, folder, "8", "github")
    assert len(comments) == 1
    assert second in comments[0]["body"]
    assert "**Not worse than production**" in comments[0]["body"]
