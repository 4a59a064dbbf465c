"""Which CI system a process runs in, and what it says about the pipeline, the job, the merge
request and the commit, read from the variables each system documents.

Only the variables named here are read: never a token, a password or a key. URLs lose any
credentials, query and fragment; clone addresses (``git@host:group/repo.git``) become the
repository's web address; a tag whose value does not have its expected form is left out."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

PROVIDER = "ci.provider"
PIPELINE_ID = "ci.pipeline_id"
PIPELINE_URL = "ci.pipeline_url"
JOB_ID = "ci.job_id"
JOB_URL = "ci.job_url"
MERGE_REQUEST_ID = "ci.merge_request_id"
MERGE_REQUEST_URL = "ci.merge_request_url"
SOURCE_BRANCH = "ci.source_branch"
TARGET_BRANCH = "ci.target_branch"
COMMIT = "ci.commit"
REPOSITORY_URL = "ci.repository_url"
TRIGGERED_BY = "ci.triggered_by"

#: every tag a provider may set, in the order the docs list them
CI_TAGS = (
    PROVIDER,
    PIPELINE_ID,
    PIPELINE_URL,
    JOB_ID,
    JOB_URL,
    MERGE_REQUEST_ID,
    MERGE_REQUEST_URL,
    SOURCE_BRANCH,
    TARGET_BRANCH,
    COMMIT,
    REPOSITORY_URL,
    TRIGGERED_BY,
)

GIT_COMMIT = "mlflow.source.git.commit"
GIT_BRANCH = "mlflow.source.git.branch"
GIT_REPO_URL = "mlflow.source.git.repoURL"

MAX_VALUE = 1000  # longer values are not what the variable is documented to hold
_HEX = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_NUMBER = re.compile(r"[1-9][0-9]{0,17}")
_SCP = re.compile(r"^(?:[^@/\s]+@)?([A-Za-z0-9.-]+):(?!//)(.+)$")
_GITHUB_PR_REF = re.compile(r"^refs/pull/([1-9][0-9]*)/(?:merge|head)$")

Env = Mapping[str, str]


@dataclass(frozen=True)
class CiRun:
    """The CI system found and the ``ci.*`` tags it yields (only those with a value)."""

    provider: str
    tags: dict[str, str]

    def get(self, key: str) -> str | None:
        return self.tags.get(key)

    def git_tags(self) -> dict[str, str]:
        """MLflow's own source tags, from the same facts."""
        pairs = {
            GIT_COMMIT: self.tags.get(COMMIT),
            GIT_BRANCH: self.tags.get(SOURCE_BRANCH),
            GIT_REPO_URL: self.tags.get(REPOSITORY_URL),
        }
        return {k: v for k, v in pairs.items() if v}


# values ---------------------------------------------------------------------------------------


def _get(env: Env, *names: str) -> str | None:
    """The first of ``names`` set to something, stripped."""
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def _flag(env: Env, name: str) -> bool:
    return env.get(name, "").strip().lower() in ("true", "1", "yes")


def url(value: str | None, keep_query: bool = False) -> str | None:
    """An http(s) URL without credentials (and without query and fragment unless asked)."""
    if not value:
        return None
    try:
        parts = urlsplit(value.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    netloc = host if ":" not in host else f"[{host}]"
    if port is not None:
        netloc += f":{port}"
    query = parts.query if keep_query else ""
    return urlunsplit((parts.scheme.lower(), netloc, parts.path, query, ""))


def web_url(clone: str | None) -> str | None:
    """The web address of a repository from its clone address (https, ssh, git or scp-like
    ``git@host:group/repo.git``), without credentials and without ``.git``."""
    if not clone:
        return None
    clone = clone.strip()
    scp = _SCP.match(clone)
    if scp and "://" not in clone:
        host, path = scp.groups()
        found = url(f"https://{host}/{path.lstrip('/')}")
    elif clone.lower().startswith(("ssh://", "git://", "git+ssh://")):
        try:
            parts = urlsplit(clone)
        except ValueError:
            return None
        found = url(f"https://{parts.hostname}{parts.path}") if parts.hostname else None
    else:
        found = url(clone)
    if found is None:
        return None
    found = found.rstrip("/")
    return found[: -len(".git")] if found.endswith(".git") else found


def _commit(value: str | None) -> str | None:
    value = (value or "").lower()
    return value if _HEX.fullmatch(value) else None


def _number(value: str | None) -> str | None:
    return value if value and _NUMBER.fullmatch(value) else None


def _branch(value: str | None) -> str | None:
    """A branch name; ``refs/heads/`` dropped, other refs (tags, pulls) are not branches."""
    if not value:
        return None
    if value.startswith("refs/heads/"):
        return value[len("refs/heads/") :] or None
    if value.startswith("refs/"):
        return None
    return value


def _join(base: str | None, *rest: str) -> str | None:
    return None if not base else base.rstrip("/") + "".join(rest)


# providers ------------------------------------------------------------------------------------


def _gitlab(env: Env) -> dict[str, str | None]:
    project = url(_get(env, "CI_PROJECT_URL"))
    iid = _number(_get(env, "CI_MERGE_REQUEST_IID"))
    mr_project = url(_get(env, "CI_MERGE_REQUEST_PROJECT_URL")) or project
    return {
        PIPELINE_ID: _get(env, "CI_PIPELINE_ID"),
        PIPELINE_URL: url(_get(env, "CI_PIPELINE_URL")),
        JOB_ID: _get(env, "CI_JOB_ID"),
        JOB_URL: url(_get(env, "CI_JOB_URL")),
        MERGE_REQUEST_ID: iid,
        MERGE_REQUEST_URL: _join(mr_project, "/-/merge_requests/", iid) if iid else None,
        SOURCE_BRANCH: _get(env, "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "CI_COMMIT_BRANCH"),
        TARGET_BRANCH: _get(env, "CI_MERGE_REQUEST_TARGET_BRANCH_NAME"),
        COMMIT: _commit(_get(env, "CI_COMMIT_SHA")),
        REPOSITORY_URL: project,
        TRIGGERED_BY: _get(env, "GITLAB_USER_LOGIN"),
    }


def github_pull_request(env: Env) -> str | None:
    """The pull request's number: from the event payload of a pull-request event, else from
    ``GITHUB_REF`` (``refs/pull/<n>/merge``)."""
    path = _get(env, "GITHUB_EVENT_PATH")
    if path and (_get(env, "GITHUB_EVENT_NAME") or "").startswith("pull_request"):
        try:
            event = json.loads(Path(path).read_text(encoding="utf-8"))
            pull = event.get("pull_request") if isinstance(event, dict) else None
            number = pull.get("number") if isinstance(pull, dict) else None
            if isinstance(number, int) and not isinstance(number, bool) and number > 0:
                return str(number)
        except (OSError, ValueError):
            pass
    found = _GITHUB_PR_REF.match(_get(env, "GITHUB_REF") or "")
    return found.group(1) if found else None


def _github(env: Env) -> dict[str, str | None]:
    server = url(_get(env, "GITHUB_SERVER_URL"))
    repository = _get(env, "GITHUB_REPOSITORY")
    repo = _join(server, "/", repository) if repository else None
    run_id = _number(_get(env, "GITHUB_RUN_ID"))
    pull = github_pull_request(env)
    source = _get(env, "GITHUB_HEAD_REF") or _branch(_get(env, "GITHUB_REF"))
    return {
        PIPELINE_ID: run_id,
        PIPELINE_URL: _join(repo, "/actions/runs/", run_id) if run_id else None,
        JOB_ID: _get(env, "GITHUB_JOB"),
        MERGE_REQUEST_ID: pull,
        MERGE_REQUEST_URL: _join(repo, "/pull/", pull) if pull else None,
        SOURCE_BRANCH: source,
        TARGET_BRANCH: _get(env, "GITHUB_BASE_REF"),
        COMMIT: _commit(_get(env, "GITHUB_SHA")),
        REPOSITORY_URL: repo,
        TRIGGERED_BY: _get(env, "GITHUB_TRIGGERING_ACTOR", "GITHUB_ACTOR"),
    }


def _jenkins(env: Env) -> dict[str, str | None]:
    branch = _get(env, "CHANGE_BRANCH", "BRANCH_NAME", "GIT_BRANCH")
    if branch and branch.startswith("origin/"):
        branch = branch[len("origin/") :]
    return {
        PIPELINE_ID: _get(env, "BUILD_NUMBER"),
        PIPELINE_URL: url(_get(env, "BUILD_URL")),
        JOB_ID: _get(env, "JOB_NAME"),
        JOB_URL: url(_get(env, "JOB_URL")),
        MERGE_REQUEST_ID: _get(env, "CHANGE_ID"),
        MERGE_REQUEST_URL: url(_get(env, "CHANGE_URL")),
        SOURCE_BRANCH: _branch(branch),
        TARGET_BRANCH: _get(env, "CHANGE_TARGET"),
        COMMIT: _commit(_get(env, "GIT_COMMIT")),
        REPOSITORY_URL: web_url(_get(env, "GIT_URL")),
        TRIGGERED_BY: _get(env, "CHANGE_AUTHOR"),
    }


def _buildkite(env: Env) -> dict[str, str | None]:
    build_url = url(_get(env, "BUILDKITE_BUILD_URL"))
    job = _get(env, "BUILDKITE_JOB_ID")
    return {
        PIPELINE_ID: _get(env, "BUILDKITE_BUILD_NUMBER"),
        PIPELINE_URL: build_url,
        JOB_ID: job,
        JOB_URL: f"{build_url}#{quote(job, safe='')}" if build_url and job else None,
        MERGE_REQUEST_ID: _number(_get(env, "BUILDKITE_PULL_REQUEST")),
        SOURCE_BRANCH: _get(env, "BUILDKITE_BRANCH"),
        TARGET_BRANCH: _get(env, "BUILDKITE_PULL_REQUEST_BASE_BRANCH"),
        COMMIT: _commit(_get(env, "BUILDKITE_COMMIT")),
        REPOSITORY_URL: web_url(_get(env, "BUILDKITE_REPO")),
        TRIGGERED_BY: _get(env, "BUILDKITE_BUILD_CREATOR"),
    }


def _circleci(env: Env) -> dict[str, str | None]:
    pull_url = url(_get(env, "CIRCLE_PULL_REQUEST"))
    number = _number(_get(env, "CIRCLE_PR_NUMBER"))
    if number is None and pull_url:
        number = _number(pull_url.rstrip("/").rpartition("/")[2])
    return {
        PIPELINE_ID: _get(env, "CIRCLE_WORKFLOW_ID"),
        JOB_ID: _get(env, "CIRCLE_BUILD_NUM"),
        JOB_URL: url(_get(env, "CIRCLE_BUILD_URL")),
        MERGE_REQUEST_ID: number,
        MERGE_REQUEST_URL: pull_url,
        SOURCE_BRANCH: _get(env, "CIRCLE_BRANCH"),
        COMMIT: _commit(_get(env, "CIRCLE_SHA1")),
        REPOSITORY_URL: web_url(_get(env, "CIRCLE_REPOSITORY_URL")),
        TRIGGERED_BY: _get(env, "CIRCLE_USERNAME"),
    }


def _azure(env: Env) -> dict[str, str | None]:
    collection = url(_get(env, "SYSTEM_COLLECTIONURI", "SYSTEM_TEAMFOUNDATIONCOLLECTIONURI"))
    project = _get(env, "SYSTEM_TEAMPROJECT")
    build = _number(_get(env, "BUILD_BUILDID"))
    results = None
    if collection and project and build:
        results = f"{collection.rstrip('/')}/{quote(project, safe='')}/_build/results"
        results += f"?buildId={build}"
    job = _get(env, "SYSTEM_JOBID")
    repo = web_url(_get(env, "BUILD_REPOSITORY_URI"))
    kind = (_get(env, "BUILD_REPOSITORY_PROVIDER") or "").lower()
    number = _number(_get(env, "SYSTEM_PULLREQUEST_PULLREQUESTNUMBER"))
    pr_id = _number(_get(env, "SYSTEM_PULLREQUEST_PULLREQUESTID"))
    pull_url = None
    if repo and kind == "tfsgit" and pr_id:
        pull_url = f"{repo}/pullrequest/{pr_id}"
    elif repo and kind.startswith("github") and number:
        pull_url = f"{repo}/pull/{number}"
    elif repo and kind.startswith("bitbucket") and (number or pr_id):
        pull_url = f"{repo}/pull-requests/{number or pr_id}"
    return {
        PIPELINE_ID: build,
        PIPELINE_URL: results,
        JOB_ID: job,
        JOB_URL: f"{results}&view=logs&j={quote(job, safe='')}" if results and job else None,
        MERGE_REQUEST_ID: number or pr_id,
        MERGE_REQUEST_URL: pull_url,
        SOURCE_BRANCH: _branch(
            _get(env, "SYSTEM_PULLREQUEST_SOURCEBRANCH") or _get(env, "BUILD_SOURCEBRANCH")
        ),
        TARGET_BRANCH: _branch(_get(env, "SYSTEM_PULLREQUEST_TARGETBRANCH")),
        COMMIT: _commit(_get(env, "BUILD_SOURCEVERSION")),
        REPOSITORY_URL: repo,
        TRIGGERED_BY: _get(env, "BUILD_REQUESTEDFOR"),
    }


def _bitbucket(env: Env) -> dict[str, str | None]:
    origin = web_url(_get(env, "BITBUCKET_GIT_HTTP_ORIGIN"))
    build = _number(_get(env, "BITBUCKET_BUILD_NUMBER"))
    step = _get(env, "BITBUCKET_STEP_UUID")
    results = _join(origin, "/pipelines/results/", build) if build else None
    pr = _number(_get(env, "BITBUCKET_PR_ID"))
    return {
        PIPELINE_ID: build,
        PIPELINE_URL: results,
        JOB_ID: step,
        JOB_URL: f"{results}/steps/{quote(step, safe='')}" if results and step else None,
        MERGE_REQUEST_ID: pr,
        MERGE_REQUEST_URL: _join(origin, "/pull-requests/", pr) if pr else None,
        SOURCE_BRANCH: _get(env, "BITBUCKET_BRANCH"),
        TARGET_BRANCH: _get(env, "BITBUCKET_PR_DESTINATION_BRANCH"),
        COMMIT: _commit(_get(env, "BITBUCKET_COMMIT")),
        REPOSITORY_URL: origin,
        TRIGGERED_BY: _get(env, "BITBUCKET_STEP_TRIGGERER_UUID"),
    }


def _generic(env: Env) -> dict[str, str | None]:  # noqa: ARG001
    return {}


#: (provider, is this it?, its tags), tried in order
PROVIDERS: tuple[tuple[str, Callable[[Env], bool], Callable[[Env], dict[str, str | None]]], ...] = (
    ("gitlab", lambda env: _flag(env, "GITLAB_CI"), _gitlab),
    ("github", lambda env: _flag(env, "GITHUB_ACTIONS"), _github),
    ("jenkins", lambda env: bool(_get(env, "JENKINS_URL")), _jenkins),
    ("buildkite", lambda env: _flag(env, "BUILDKITE"), _buildkite),
    ("circleci", lambda env: _flag(env, "CIRCLECI"), _circleci),
    ("azure", lambda env: _flag(env, "TF_BUILD"), _azure),
    ("bitbucket", lambda env: bool(_get(env, "BITBUCKET_BUILD_NUMBER")), _bitbucket),
    ("generic", lambda env: _flag(env, "CI"), _generic),
)


def detect(env: Env | None = None) -> CiRun | None:
    """The CI system this process runs in (None outside CI) and its tags."""
    env = os.environ if env is None else env
    for name, present, read in PROVIDERS:
        if present(env):
            found = {
                key: value
                for key, value in read(env).items()
                if value and len(value) <= MAX_VALUE and "\n" not in value
            }
            return CiRun(name, {PROVIDER: name, **found})
    return None
