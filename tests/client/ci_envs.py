"""Each CI system's variables as its documentation lists them (a merge-request or pull-request
job), the tags a run started there must get, and its secret variables, set to a canary."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

CANARY = "canary-5f0c1e9d7ab34c2e"
COMMIT = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


@dataclass
class Provider:
    name: str
    env: dict[str, str]
    tags: dict[str, str]  # the ci.* and mlflow.source.git.* tags, exactly
    secrets: list[str] = field(default_factory=list)  # names set to (or holding) the canary


def _git(tags: dict[str, str]) -> dict[str, str]:
    out = dict(tags)
    for ci, git in (
        ("ci.commit", "mlflow.source.git.commit"),
        ("ci.source_branch", "mlflow.source.git.branch"),
        ("ci.repository_url", "mlflow.source.git.repoURL"),
    ):
        if ci in tags:
            out[git] = tags[ci]
    return out


def providers(folder: Path) -> list[Provider]:
    """Every provider, in the order the docs list them; ``folder`` holds GitHub's event file."""
    event = folder / "github-event.json"
    event.write_text(
        json.dumps(
            {
                "action": "synchronize",
                "number": 42,
                "pull_request": {"number": 42, "body": "no secret here"},
            }
        )
    )
    return [
        Provider(
            "gitlab",
            {
                "CI": "true",
                "GITLAB_CI": "true",
                "CI_SERVER_URL": "https://gitlab.example.com",
                "CI_PROJECT_ID": "17",
                "CI_PROJECT_URL": "https://gitlab.example.com/ml/churn",
                "CI_PIPELINE_ID": "1001",
                "CI_PIPELINE_URL": "https://gitlab.example.com/ml/churn/-/pipelines/1001",
                "CI_JOB_ID": "5005",
                "CI_JOB_URL": "https://gitlab.example.com/ml/churn/-/jobs/5005",
                "CI_PIPELINE_SOURCE": "merge_request_event",
                "CI_MERGE_REQUEST_IID": "42",
                "CI_MERGE_REQUEST_PROJECT_URL": "https://gitlab.example.com/ml/churn",
                "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "feature/wider",
                "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
                "CI_COMMIT_SHA": COMMIT,
                "CI_COMMIT_REF_NAME": "feature/wider",
                "GITLAB_USER_LOGIN": "ana",
                "CI_REPOSITORY_URL": f"https://gitlab-ci-token:{CANARY}@gitlab.example.com/ml/churn.git",
                "CI_JOB_TOKEN": CANARY,
                "CI_JOB_JWT": CANARY,
                "CI_JOB_JWT_V2": CANARY,
                "CI_REGISTRY_PASSWORD": CANARY,
                "CI_DEPLOY_PASSWORD": CANARY,
                "CI_DEPENDENCY_PROXY_PASSWORD": CANARY,
                "GITLAB_TOKEN": CANARY,
            },
            _git(
                {
                    "ci.provider": "gitlab",
                    "ci.pipeline_id": "1001",
                    "ci.pipeline_url": "https://gitlab.example.com/ml/churn/-/pipelines/1001",
                    "ci.job_id": "5005",
                    "ci.job_url": "https://gitlab.example.com/ml/churn/-/jobs/5005",
                    "ci.merge_request_id": "42",
                    "ci.merge_request_url": "https://gitlab.example.com/ml/churn/-/merge_requests/42",
                    "ci.source_branch": "feature/wider",
                    "ci.target_branch": "main",
                    "ci.commit": COMMIT,
                    "ci.repository_url": "https://gitlab.example.com/ml/churn",
                    "ci.triggered_by": "ana",
                }
            ),
            [
                "CI_REPOSITORY_URL",
                "CI_JOB_TOKEN",
                "CI_JOB_JWT",
                "CI_JOB_JWT_V2",
                "CI_REGISTRY_PASSWORD",
                "CI_DEPLOY_PASSWORD",
                "CI_DEPENDENCY_PROXY_PASSWORD",
                "GITLAB_TOKEN",
            ],
        ),
        Provider(
            "github",
            {
                "CI": "true",
                "GITHUB_ACTIONS": "true",
                "GITHUB_SERVER_URL": "https://github.com",
                "GITHUB_API_URL": "https://api.github.com",
                "GITHUB_REPOSITORY": "ml/churn",
                "GITHUB_RUN_ID": "7007",
                "GITHUB_RUN_ATTEMPT": "1",
                "GITHUB_JOB": "train",
                "GITHUB_EVENT_NAME": "pull_request",
                "GITHUB_EVENT_PATH": str(event),
                "GITHUB_REF": "refs/pull/42/merge",
                "GITHUB_REF_NAME": "42/merge",
                "GITHUB_HEAD_REF": "feature/wider",
                "GITHUB_BASE_REF": "main",
                "GITHUB_SHA": COMMIT,
                "GITHUB_ACTOR": "ana",
                "GITHUB_TRIGGERING_ACTOR": "ana",
                "GITHUB_TOKEN": CANARY,
                "ACTIONS_RUNTIME_TOKEN": CANARY,
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN": CANARY,
                "ACTIONS_ID_TOKEN_REQUEST_URL": f"https://token.actions.example.com/?t={CANARY}",
            },
            _git(
                {
                    "ci.provider": "github",
                    "ci.pipeline_id": "7007",
                    "ci.pipeline_url": "https://github.com/ml/churn/actions/runs/7007",
                    "ci.job_id": "train",
                    "ci.merge_request_id": "42",
                    "ci.merge_request_url": "https://github.com/ml/churn/pull/42",
                    "ci.source_branch": "feature/wider",
                    "ci.target_branch": "main",
                    "ci.commit": COMMIT,
                    "ci.repository_url": "https://github.com/ml/churn",
                    "ci.triggered_by": "ana",
                }
            ),
            [
                "GITHUB_TOKEN",
                "ACTIONS_RUNTIME_TOKEN",
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
                "ACTIONS_ID_TOKEN_REQUEST_URL",
            ],
        ),
        Provider(
            "jenkins",
            {
                "JENKINS_URL": "https://jenkins.example.com/",
                "BUILD_NUMBER": "88",
                "BUILD_ID": "88",
                "BUILD_URL": "https://jenkins.example.com/job/churn/view/change-requests/job/PR-42/88/",
                "JOB_NAME": "churn/PR-42",
                "JOB_URL": "https://jenkins.example.com/job/churn/view/change-requests/job/PR-42/",
                "BRANCH_NAME": "PR-42",
                "CHANGE_ID": "42",
                "CHANGE_URL": "https://github.com/ml/churn/pull/42",
                "CHANGE_BRANCH": "feature/wider",
                "CHANGE_TARGET": "main",
                "CHANGE_AUTHOR": "ana",
                "GIT_COMMIT": COMMIT,
                "GIT_URL": f"https://ci-bot:{CANARY}@github.com/ml/churn.git",
                "GIT_PASSWORD": CANARY,
            },
            _git(
                {
                    "ci.provider": "jenkins",
                    "ci.pipeline_id": "88",
                    "ci.pipeline_url": "https://jenkins.example.com/job/churn/view/change-requests/job/PR-42/88/",
                    "ci.job_id": "churn/PR-42",
                    "ci.job_url": "https://jenkins.example.com/job/churn/view/change-requests/job/PR-42/",
                    "ci.merge_request_id": "42",
                    "ci.merge_request_url": "https://github.com/ml/churn/pull/42",
                    "ci.source_branch": "feature/wider",
                    "ci.target_branch": "main",
                    "ci.commit": COMMIT,
                    "ci.repository_url": "https://github.com/ml/churn",
                    "ci.triggered_by": "ana",
                }
            ),
            ["GIT_URL", "GIT_PASSWORD"],
        ),
        Provider(
            "buildkite",
            {
                "CI": "true",
                "BUILDKITE": "true",
                "BUILDKITE_BUILD_ID": "f62a1b4d-10f9-4790-bc1c-e2c3a0c80983",
                "BUILDKITE_BUILD_NUMBER": "1514",
                "BUILDKITE_BUILD_URL": "https://buildkite.com/ml/churn/builds/1514",
                "BUILDKITE_JOB_ID": "e44f9784-e20e-4b93-a21d-f41fd5869db9",
                "BUILDKITE_PULL_REQUEST": "42",
                "BUILDKITE_PULL_REQUEST_BASE_BRANCH": "main",
                "BUILDKITE_BRANCH": "feature/wider",
                "BUILDKITE_COMMIT": COMMIT,
                "BUILDKITE_REPO": "git@github.com:ml/churn.git",
                "BUILDKITE_BUILD_CREATOR": "Ana Lima",
                "BUILDKITE_AGENT_ACCESS_TOKEN": CANARY,
            },
            _git(
                {
                    "ci.provider": "buildkite",
                    "ci.pipeline_id": "1514",
                    "ci.pipeline_url": "https://buildkite.com/ml/churn/builds/1514",
                    "ci.job_id": "e44f9784-e20e-4b93-a21d-f41fd5869db9",
                    "ci.job_url": "https://buildkite.com/ml/churn/builds/1514#e44f9784-e20e-4b93-a21d-f41fd5869db9",
                    "ci.merge_request_id": "42",
                    "ci.source_branch": "feature/wider",
                    "ci.target_branch": "main",
                    "ci.commit": COMMIT,
                    "ci.repository_url": "https://github.com/ml/churn",
                    "ci.triggered_by": "Ana Lima",
                }
            ),
            ["BUILDKITE_AGENT_ACCESS_TOKEN"],
        ),
        Provider(
            "circleci",
            {
                "CI": "true",
                "CIRCLECI": "true",
                "CIRCLE_WORKFLOW_ID": "6e1b2f7a-5d2c-4c55-9f0e-3a1c0de2a7b1",
                "CIRCLE_BUILD_NUM": "321",
                "CIRCLE_BUILD_URL": "https://circleci.com/gh/ml/churn/321",
                "CIRCLE_JOB": "train",
                "CIRCLE_PULL_REQUEST": "https://github.com/ml/churn/pull/42",
                "CIRCLE_BRANCH": "feature/wider",
                "CIRCLE_SHA1": COMMIT,
                "CIRCLE_REPOSITORY_URL": "git@github.com:ml/churn.git",
                "CIRCLE_USERNAME": "ana",
                "CIRCLE_OIDC_TOKEN": CANARY,
                "CIRCLE_OIDC_TOKEN_V2": CANARY,
            },
            _git(
                {
                    "ci.provider": "circleci",
                    "ci.pipeline_id": "6e1b2f7a-5d2c-4c55-9f0e-3a1c0de2a7b1",
                    "ci.job_id": "321",
                    "ci.job_url": "https://circleci.com/gh/ml/churn/321",
                    "ci.merge_request_id": "42",
                    "ci.merge_request_url": "https://github.com/ml/churn/pull/42",
                    "ci.source_branch": "feature/wider",
                    "ci.commit": COMMIT,
                    "ci.repository_url": "https://github.com/ml/churn",
                    "ci.triggered_by": "ana",
                }
            ),
            ["CIRCLE_OIDC_TOKEN", "CIRCLE_OIDC_TOKEN_V2"],
        ),
        Provider(
            "azure",
            {
                "TF_BUILD": "True",
                "SYSTEM_COLLECTIONURI": "https://dev.azure.com/acme/",
                "SYSTEM_TEAMFOUNDATIONCOLLECTIONURI": "https://dev.azure.com/acme/",
                "SYSTEM_TEAMPROJECT": "Churn Models",
                "BUILD_BUILDID": "2468",
                "SYSTEM_JOBID": "12f1170f-54f2-53f3-20dd-22fc7dff55f9",
                "BUILD_REPOSITORY_PROVIDER": "TfsGit",
                "BUILD_REPOSITORY_URI": f"https://{CANARY}@dev.azure.com/acme/Churn%20Models/_git/churn",
                "BUILD_SOURCEBRANCH": "refs/pull/42/merge",
                "BUILD_SOURCEVERSION": COMMIT,
                "BUILD_REQUESTEDFOR": "Ana Lima",
                "SYSTEM_PULLREQUEST_PULLREQUESTID": "42",
                "SYSTEM_PULLREQUEST_SOURCEBRANCH": "refs/heads/feature/wider",
                "SYSTEM_PULLREQUEST_TARGETBRANCH": "refs/heads/main",
                "SYSTEM_ACCESSTOKEN": CANARY,
            },
            _git(
                {
                    "ci.provider": "azure",
                    "ci.pipeline_id": "2468",
                    "ci.pipeline_url": "https://dev.azure.com/acme/Churn%20Models/_build/results?buildId=2468",
                    "ci.job_id": "12f1170f-54f2-53f3-20dd-22fc7dff55f9",
                    "ci.job_url": "https://dev.azure.com/acme/Churn%20Models/_build/results?buildId=2468&view=logs&j=12f1170f-54f2-53f3-20dd-22fc7dff55f9",
                    "ci.merge_request_id": "42",
                    "ci.merge_request_url": "https://dev.azure.com/acme/Churn%20Models/_git/churn/pullrequest/42",
                    "ci.source_branch": "feature/wider",
                    "ci.target_branch": "main",
                    "ci.commit": COMMIT,
                    "ci.repository_url": "https://dev.azure.com/acme/Churn%20Models/_git/churn",
                    "ci.triggered_by": "Ana Lima",
                }
            ),
            ["BUILD_REPOSITORY_URI", "SYSTEM_ACCESSTOKEN"],
        ),
        Provider(
            "bitbucket",
            {
                "CI": "true",
                "BITBUCKET_BUILD_NUMBER": "77",
                "BITBUCKET_PIPELINE_UUID": "{a5b6c7d8-0000-4000-8000-000000000001}",
                "BITBUCKET_STEP_UUID": "{1e2f3a4b-0000-4000-8000-000000000002}",
                "BITBUCKET_GIT_HTTP_ORIGIN": "http://bitbucket.org/acme/churn",
                "BITBUCKET_PR_ID": "42",
                "BITBUCKET_PR_DESTINATION_BRANCH": "main",
                "BITBUCKET_BRANCH": "feature/wider",
                "BITBUCKET_COMMIT": COMMIT,
                "BITBUCKET_STEP_TRIGGERER_UUID": "{9f8e7d6c-0000-4000-8000-000000000003}",
                "BITBUCKET_STEP_OIDC_TOKEN": CANARY,
            },
            _git(
                {
                    "ci.provider": "bitbucket",
                    "ci.pipeline_id": "77",
                    "ci.pipeline_url": "http://bitbucket.org/acme/churn/pipelines/results/77",
                    "ci.job_id": "{1e2f3a4b-0000-4000-8000-000000000002}",
                    "ci.job_url": "http://bitbucket.org/acme/churn/pipelines/results/77/steps/%7B1e2f3a4b-0000-4000-8000-000000000002%7D",
                    "ci.merge_request_id": "42",
                    "ci.merge_request_url": "http://bitbucket.org/acme/churn/pull-requests/42",
                    "ci.source_branch": "feature/wider",
                    "ci.target_branch": "main",
                    "ci.commit": COMMIT,
                    "ci.repository_url": "http://bitbucket.org/acme/churn",
                    "ci.triggered_by": "{9f8e7d6c-0000-4000-8000-000000000003}",
                }
            ),
            ["BITBUCKET_STEP_OIDC_TOKEN"],
        ),
        Provider(
            "generic",
            {"CI": "true", "CI_TOKEN": CANARY},
            {"ci.provider": "generic"},
            ["CI_TOKEN"],
        ),
    ]
