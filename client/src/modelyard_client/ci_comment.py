"""``modelyard ci report --post``: one comment on the merge request (GitLab's notes API) or
the pull request (GitHub's issue-comments API), found again by its hidden marker and updated
in place on later runs."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelyard_client.ci_env import github_pull_request, url
from modelyard_client.config import Target
from modelyard_client.errors import ClientError
from modelyard_client.http import Http, seg

PER_PAGE = 100
MAX_PAGES = 50
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="next"')


class NotPosted(Exception):
    """Posting was asked for but cannot happen here (no token, no merge request): the
    report is still printed, with this one line why."""


@dataclass
class Forge:
    """Where the comment goes: the API, the comments' path and how to authenticate."""

    name: str  # GitLab | GitHub
    api: str  # https://gitlab.example.com/api/v4 | https://api.github.com
    comments: str  # the collection's path under api
    item: str  # one comment's path under api, with {id}
    update: str  # PUT (GitLab) | PATCH (GitHub)
    headers: dict[str, str]
    origin: str  # the variable the API's address came from

    def http(self) -> Http:
        return Http(Target(self.api, None, None, self.origin))


def _env(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def forge(env: Mapping[str, str], merge_request: str | None) -> Forge:
    """The forge this job runs on, from its variables; NotPosted when something is missing."""
    if _env(env, "GITLAB_CI") or _env(env, "CI_SERVER_URL"):
        return _gitlab(env, merge_request)
    if _env(env, "GITHUB_ACTIONS") or _env(env, "GITHUB_REPOSITORY"):
        return _github(env, merge_request)
    raise NotPosted(
        "not posted: --post needs GitLab CI (CI_SERVER_URL, CI_PROJECT_ID) or GitHub Actions "
        "(GITHUB_API_URL, GITHUB_REPOSITORY), and neither is set."
    )


def _gitlab(env: Mapping[str, str], merge_request: str | None) -> Forge:
    server = url(_env(env, "CI_SERVER_URL"))
    project = _env(env, "CI_PROJECT_ID")
    iid = merge_request or _env(env, "CI_MERGE_REQUEST_IID")
    if server is None or project is None:
        raise NotPosted("not posted: CI_SERVER_URL and CI_PROJECT_ID are not both set.")
    if iid is None:
        raise NotPosted(
            "not posted: no merge request (CI_MERGE_REQUEST_IID is set only in merge-request "
            "pipelines; or pass --merge-request)."
        )
    token = _env(env, "MODELYARD_CI_COMMENT_TOKEN") or _env(env, "GITLAB_TOKEN")
    if token is None:
        raise NotPosted(
            "not posted: no token to comment with (set MODELYARD_CI_COMMENT_TOKEN or "
            "GITLAB_TOKEN to a token with the api scope)."
        )
    notes = f"/projects/{seg(project)}/merge_requests/{seg(iid)}/notes"
    return Forge(
        "GitLab",
        server.rstrip("/") + "/api/v4",
        notes,
        notes + "/{id}",
        "PUT",
        {"PRIVATE-TOKEN": token},
        "CI_SERVER_URL",
    )


def _github(env: Mapping[str, str], merge_request: str | None) -> Forge:
    api = url(_env(env, "GITHUB_API_URL") or "https://api.github.com")
    repository = _env(env, "GITHUB_REPOSITORY")
    number = merge_request or github_pull_request(env)
    if api is None or repository is None or repository.count("/") != 1:
        raise NotPosted("not posted: GITHUB_API_URL and GITHUB_REPOSITORY are not both set.")
    if number is None:
        raise NotPosted(
            "not posted: no pull request (GITHUB_EVENT_PATH holds one only for pull_request "
            "events; or pass --merge-request)."
        )
    token = _env(env, "MODELYARD_CI_COMMENT_TOKEN") or _env(env, "GITHUB_TOKEN")
    if token is None:
        raise NotPosted(
            "not posted: no token to comment with (set GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN "
            "}} with pull-requests: write, or MODELYARD_CI_COMMENT_TOKEN)."
        )
    owner, repo = repository.split("/")
    base = f"/repos/{seg(owner)}/{seg(repo)}/issues"
    return Forge(
        "GitHub",
        api,
        f"{base}/{seg(number)}/comments",
        base + "/comments/{id}",
        "PATCH",
        {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        },
        "GITHUB_API_URL",
    )


def _call(
    where: Forge, client: Http, method: str, path: str, payload: Any = None, query: Any = None
) -> tuple[Any, str | None]:
    """A JSON call; (answer, the next page's URL from a Link header)."""
    body = None if payload is None else json.dumps(payload).encode()
    headers = dict(where.headers)
    if body is not None:
        headers["Content-Type"] = "application/json"
    response = client.send(method, path, query=query, body=body, headers=headers)
    raw = client.read(response)
    if response.status >= 400:
        raise ClientError(_failure(where, method, response.status, raw))
    link = response.getheader("link") or ""
    found = _NEXT.search(link)
    try:
        return (json.loads(raw) if raw else {}), (found.group(1) if found else None)
    except ValueError:
        raise ClientError(
            f"{where.name} answered {method} {where.api}{path} with something that is not "
            f"JSON: is {where.origin} right?"
        ) from None


def _failure(where: Forge, method: str, status: int, raw: bytes) -> str:
    message = ""
    try:
        found = json.loads(raw)
        if isinstance(found, dict):
            message = str(found.get("message") or found.get("error") or "")
    except ValueError:
        pass
    hint = {
        401: "the token was refused: is it valid and unexpired?",
        403: "the token may not comment here (GitLab: api scope; GitHub: pull-requests: write).",
        404: "no such merge request or project, or the token cannot see it.",
    }.get(status, "")
    said = f" ({' '.join(message.split())[:200]})" if message else ""
    return f"{where.name} refused to {method} the comment: HTTP {status}{said}; {hint}".rstrip("; ")


def _existing(where: Forge, client: Http, mark: str) -> dict[str, Any] | None:
    """Our comment: the first one whose body holds the marker."""
    page = 1
    while page <= MAX_PAGES:
        query = {"per_page": PER_PAGE, "page": page}
        found, next_link = _call(where, client, "GET", where.comments, query=query)
        if not isinstance(found, list):
            raise ClientError(f"{where.name} listed the comments as something other than a list.")
        for comment in found:
            if isinstance(comment, dict) and mark in str(comment.get("body", "")):
                return comment
        if len(found) < PER_PAGE and next_link is None:
            return None
        page += 1
    return None


def post(where: Forge, body: str, mark: str) -> tuple[str, str]:
    """Create or update the comment; (``created``|``updated``, its id or web address)."""
    client = where.http()
    try:
        mine = _existing(where, client, mark)
        if mine is None:
            made, _ = _call(where, client, "POST", where.comments, {"body": body})
            return "created", _where(made)
        path = where.item.format(id=seg(str(mine.get("id", ""))))
        updated, _ = _call(where, client, where.update, path, {"body": body})
        return "updated", _where(updated)
    finally:
        client.close()


def _where(comment: Any) -> str:
    if isinstance(comment, dict):
        return str(comment.get("html_url") or f"comment {comment.get('id', '?')}")
    return "comment"
