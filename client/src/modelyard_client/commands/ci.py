"""``modelyard ci report``: a merge request's candidates against the version behind a model's
alias, as Markdown, optionally posted on the merge request and used as a quality gate.

Everything is read over the server's public HTTP APIs: MLflow's REST routes (experiments,
candidates) and the native API (the version behind the alias)."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import click

from modelyard_client import ci_comment, output
from modelyard_client.ci_env import MERGE_REQUEST_ID, REPOSITORY_URL, detect
from modelyard_client.ci_report import Candidate, Goal, Production, Report, marker, rank, render
from modelyard_client.ci_report import worse as worse_goals
from modelyard_client.errors import ClientError, HttpError
from modelyard_client.http import Http, seg
from modelyard_client.session import connection_options, http, project_option

MLFLOW = "/api/2.0/mlflow"
PAGE = 1000
_MERGE_REQUEST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@click.group()
@connection_options
def ci() -> None:
    """For CI jobs: compare a merge request's candidates with production."""


def _goal(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[Goal]:  # noqa: ARG001
    try:
        return [Goal.parse(v) for v in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@ci.command("report")
@click.option(
    "--model", required=True, help="The model whose version is the baseline (e.g. churn)."
)
@click.option(
    "--alias",
    default="production",
    show_default=True,
    help="The alias naming the baseline version.",
)
@click.option(
    "--metric",
    "goals",
    multiple=True,
    required=True,
    callback=_goal,
    help="NAME:max or NAME:min, repeatable; the first one ranks the candidates.",
)
@click.option(
    "--experiment",
    "experiments",
    multiple=True,
    help="Look for candidates in this experiment (repeatable; default: every experiment).",
)
@click.option(
    "--merge-request",
    help="The merge request's id (GitLab's iid, GitHub's number); default: the CI job's.",
)
@click.option(
    "--repository",
    help="Only candidates tagged with this ci.repository_url; default: the CI job's "
    "repository (outside CI: any).",
)
@click.option(
    "--post",
    is_flag=True,
    help="Also post the report as one comment on the merge request, updated on later runs "
    "(GitLab CI or GitHub Actions; token from MODELYARD_CI_COMMENT_TOKEN, GITLAB_TOKEN or "
    "GITHUB_TOKEN).",
)
@click.option(
    "--fail-if-worse",
    is_flag=True,
    help="Exit 1 when the best candidate is worse than production on a chosen metric (or "
    "the merge request has no candidate).",
)
@project_option
@connection_options
def report(
    model: str,
    alias: str,
    goals: list[Goal],
    experiments: tuple[str, ...],
    merge_request: str | None,
    repository: str | None,
    post: bool,
    fail_if_worse: bool,
    project: str | None,
) -> None:
    """Compare this merge request's candidates (runs tagged ci.merge_request_id) with the
    version behind --alias of --model, as Markdown on standard output."""
    number = merge_request or _current_merge_request()
    if not _MERGE_REQUEST.fullmatch(number):
        raise click.BadParameter(f"{number[:80]!r} is not a merge request id.")
    found = detect()
    repository = repository or (found.get(REPOSITORY_URL) if found else None)
    if repository is not None and ("'" in repository or "\\" in repository):
        raise click.BadParameter(f"{repository[:200]!r} is not a repository address.")
    client = http(project)
    try:
        made = gather(client, model, alias, goals, list(experiments), number, repository)
    finally:
        client.close()
    body = render(made)
    click.echo(body, nl=False)
    if post:
        try:
            where = ci_comment.forge(os.environ, merge_request)
        except ci_comment.NotPosted as exc:
            output.note(str(exc))
        else:
            done, link = ci_comment.post(where, body, marker(model, alias))
            output.note(f"{done} the comment on {where.name}: {link}")
    if fail_if_worse:
        failing = worse_goals(made)
        if not made.candidates:
            raise ClientError(f"merge request {number} has no candidate to compare.")
        if failing:
            raise ClientError(
                f"the best candidate ({made.candidates[0].name}) is worse than {model} "
                f"@{alias} on {', '.join(failing)}."
            )


def _current_merge_request() -> str:
    found = detect()
    number = found.get(MERGE_REQUEST_ID) if found else None
    if number is None:
        where = f"this {found.provider} job" if found else "outside CI"
        raise ClientError(f"no merge request: {where} is not part of one; pass --merge-request ID.")
    return number


# reading ----------------------------------------------------------------------------------------


def mlflow(
    client: Http,
    method: str,
    path: str,
    payload: Any = None,
    query: dict[str, Any] | None = None,
) -> Any:
    """A call to MLflow's REST routes under the project; the decoded answer."""
    body = None if payload is None else json.dumps(payload).encode()
    headers = {} if body is None else {"Content-Type": "application/json"}
    response = client.send(method, MLFLOW + path, query=query, body=body, headers=headers)
    raw = client.read(response)
    if response.status >= 400:
        raise client.failure(response, raw)
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        raise ClientError(
            f"{client.target.server} answered {path} with something that is not JSON: is it "
            f"a modelyard server? Check {client.target.origin}."
        ) from None


def _experiments(client: Http, names: list[str]) -> dict[str, str]:
    """Experiment id → name: the named ones, or every active one."""
    found: dict[str, str] = {}
    if names:
        for name in dict.fromkeys(names):
            try:
                got = mlflow(
                    client, "GET", "/experiments/get-by-name", query={"experiment_name": name}
                )
            except HttpError as exc:
                if exc.status == 404:
                    raise ClientError(
                        f"no experiment named {name!r} at {client.target.base}."
                    ) from None
                raise
            experiment = got["experiment"]
            found[str(experiment["experiment_id"])] = str(experiment["name"])
        return found
    token = None
    while True:
        payload: dict[str, Any] = {"max_results": PAGE, "view_type": "ACTIVE_ONLY"}
        if token:
            payload["page_token"] = token
        page = mlflow(client, "POST", "/experiments/search", payload)
        for experiment in page.get("experiments", []):
            found[str(experiment["experiment_id"])] = str(experiment["name"])
        token = page.get("next_page_token")
        if not token:
            return found


def _value(raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        return float("nan")


def candidate(run: dict[str, Any], experiments: dict[str, str]) -> Candidate:
    info, data = run["info"], run.get("data", {})
    return Candidate(
        run_id=str(info["run_id"]),
        name=str(info.get("run_name") or ""),
        experiment=experiments.get(str(info.get("experiment_id")), ""),
        metrics={str(m["key"]): _value(m.get("value")) for m in data.get("metrics", [])},
        params={str(p["key"]): str(p.get("value", "")) for p in data.get("params", [])},
        start_time=int(info.get("start_time") or 0),
    )


def _candidates(
    client: Http, experiments: dict[str, str], number: str, repository: str | None
) -> list[Candidate]:
    if not experiments:
        return []
    wanted = f"tags.`{MERGE_REQUEST_ID}` = '{number}'"
    if repository:
        wanted += f" AND tags.`{REPOSITORY_URL}` = '{repository}'"
    found: list[Candidate] = []
    token = None
    while True:
        payload: dict[str, Any] = {
            "experiment_ids": list(experiments),
            "filter": wanted,
            "run_view_type": "ACTIVE_ONLY",
            "max_results": PAGE,
        }
        if token:
            payload["page_token"] = token
        page = mlflow(client, "POST", "/runs/search", payload)
        found.extend(candidate(run, experiments) for run in page.get("runs", []))
        token = page.get("next_page_token")
        if not token:
            return found


def _production(client: Http, model: str, alias: str) -> tuple[Production | None, str]:
    """The version behind the alias and its candidate; or None and why."""
    try:
        version = client.call("GET", f"/models/{seg(model)}/versions/{seg(alias)}")
    except HttpError as exc:
        if exc.status == 404:
            return None, (f"No production to compare with: {exc.message.rstrip('.')}.")
        raise
    label = f"{version['name']} {version.get('semver') or ''} (version {version['version']})"
    run_id = version.get("run_id")
    if not run_id and version.get("logged_model_id"):
        logged = mlflow(client, "GET", f"/logged-models/{seg(version['logged_model_id'])}")
        run_id = logged.get("model", {}).get("info", {}).get("source_run_id")
    if not run_id:
        return Production(" ".join(label.split()), None), ""
    try:
        run = mlflow(client, "GET", "/runs/get", query={"run_id": run_id})["run"]
    except HttpError as exc:
        if exc.status == 404:
            return Production(" ".join(label.split()), None), ""
        raise
    return Production(" ".join(label.split()), candidate(run, {})), ""


def gather(
    client: Http,
    model: str,
    alias: str,
    goals: list[Goal],
    experiment_names: list[str],
    number: str,
    repository: str | None = None,
) -> Report:
    experiments = _experiments(client, experiment_names)
    found = _candidates(client, experiments, number, repository)
    production, why = _production(client, model, alias)
    return Report(
        merge_request=number,
        model=model,
        alias=alias,
        goals=goals,
        candidates=rank(found, goals),
        production=production,
        experiments=sorted({c.experiment for c in found if c.experiment})
        or sorted(experiments.values())[:10],
        ui=f"{client.target.base}/ui",
        missing_production=why,
        repository=repository,
    )
