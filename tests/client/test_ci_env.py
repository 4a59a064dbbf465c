"""What the CI variables say, in the cases a merge-request job of tests/client/ci_envs.py does
not show: pushes, clone addresses, credentials, values without their expected form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelyard_client.ci_env import detect, url, web_url


@pytest.mark.parametrize(
    ("clone", "web"),
    [
        ("git@github.com:ml/churn.git", "https://github.com/ml/churn"),
        ("ssh://git@gitlab.example.com:2222/ml/churn.git", "https://gitlab.example.com/ml/churn"),
        ("git://example.com/ml/churn.git", "https://example.com/ml/churn"),
        ("https://bot:s3cret@github.com/ml/churn.git", "https://github.com/ml/churn"),
        (
            "https://s3cret@dev.azure.com/acme/p/_git/churn",
            "https://dev.azure.com/acme/p/_git/churn",
        ),
        ("https://github.com/ml/churn/?token=s3cret#x", "https://github.com/ml/churn"),
        ("file:///srv/git/churn.git", None),
        ("/srv/git/churn.git", None),
        ("", None),
    ],
)
def test_web_addresses_of_clone_addresses(clone: str, web: str | None) -> None:
    assert web_url(clone) == web


def test_urls_keep_no_credentials() -> None:
    assert url("https://u:p@ci.example.com:8443/job/1?x=1#y") == "https://ci.example.com:8443/job/1"
    assert url("javascript:alert(1)") is None
    assert url("https://[::1]:8080/a") == "https://[::1]:8080/a"
    assert url("https://[bad/") is None


def test_outside_ci_nothing() -> None:
    assert detect({}) is None
    assert detect({"CI": "false", "PATH": "/usr/bin"}) is None


def test_a_push_has_no_merge_request() -> None:
    found = detect(
        {
            "GITHUB_ACTIONS": "true",
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_REPOSITORY": "ml/churn",
            "GITHUB_EVENT_NAME": "push",
            "GITHUB_REF": "refs/heads/main",
            "GITHUB_REF_NAME": "main",
            "GITHUB_SHA": "A" * 40,
        }
    )
    assert found is not None
    assert found.tags == {
        "ci.provider": "github",
        "ci.source_branch": "main",
        "ci.commit": "a" * 40,
        "ci.repository_url": "https://github.com/ml/churn",
    }
    tagged = detect({"GITHUB_ACTIONS": "true", "GITHUB_REF": "refs/tags/v1.0.0"})
    assert tagged is not None
    assert tagged.tags == {"ci.provider": "github"}


def _merge_request(env: dict[str, str]) -> str | None:
    found = detect(env)
    assert found is not None
    return found.get("ci.merge_request_id")


def test_github_reads_only_the_pull_request_number(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "pull_request_target",
        "GITHUB_EVENT_PATH": str(event),
    }
    event.write_text(json.dumps({"pull_request": {"number": 12}}))
    assert _merge_request(env) == "12"
    for broken in ("{", json.dumps({"pull_request": {"number": "12; rm"}}), "[]"):
        event.write_text(broken)
        assert _merge_request(env) is None
    event.unlink()
    assert _merge_request(env) is None


def test_values_without_their_form_are_left_out() -> None:
    found = detect(
        {
            "GITLAB_CI": "true",
            "CI_COMMIT_SHA": "HEAD",
            "CI_PIPELINE_URL": "ftp://gitlab.example.com/p/1",
            "CI_JOB_URL": "https://gitlab.example.com/p/-/jobs/1",
            "CI_MERGE_REQUEST_IID": "12 OR 1=1",
            "CI_COMMIT_BRANCH": "a\nb",
            "GITLAB_USER_LOGIN": "x" * 2000,
        }
    )
    assert found is not None
    assert found.tags == {
        "ci.provider": "gitlab",
        "ci.job_url": "https://gitlab.example.com/p/-/jobs/1",
    }
    assert found.git_tags() == {}


def test_buildkite_symbolic_commit_and_no_pull_request() -> None:
    found = detect(
        {
            "BUILDKITE": "true",
            "BUILDKITE_COMMIT": "HEAD",
            "BUILDKITE_PULL_REQUEST": "false",
            "BUILDKITE_BRANCH": "main",
        }
    )
    assert found is not None
    assert found.tags == {"ci.provider": "buildkite", "ci.source_branch": "main"}


def test_azure_github_pull_request() -> None:
    found = detect(
        {
            "TF_BUILD": "True",
            "BUILD_REPOSITORY_PROVIDER": "GitHub",
            "BUILD_REPOSITORY_URI": "https://github.com/ml/churn",
            "SYSTEM_PULLREQUEST_PULLREQUESTID": "987654321",
            "SYSTEM_PULLREQUEST_PULLREQUESTNUMBER": "42",
            "BUILD_SOURCEBRANCH": "refs/pull/42/merge",
        }
    )
    assert found is not None
    assert found.get("ci.merge_request_id") == "42"
    assert found.get("ci.merge_request_url") == "https://github.com/ml/churn/pull/42"
    assert found.get("ci.source_branch") is None
