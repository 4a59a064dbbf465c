"""What a candidate logged from CI links to: its merge request (outside and on this UI's
merge-request page), pipeline, job and commit. Only http(s) URLs become links; anything else
is shown as text (escaped by the templates)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

_HEX = re.compile(r"[0-9a-fA-F]{7,64}")


def web_link(value: str) -> str | None:
    """The value when it is an http(s) URL (and so may be a link), else None."""
    if any(c.isspace() or ord(c) < 32 for c in value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return value if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def label(mr_id: str, provider: str | None) -> str:
    """!12 for GitLab's merge requests, #12 for pull requests elsewhere."""
    return f"!{mr_id}" if provider == "gitlab" else f"#{mr_id}"


def commit_url(repository: str | None, provider: str | None, commit: str | None) -> str | None:
    """The commit's page on the repository's web site, when both are safe to link."""
    if not repository or not commit or not _HEX.fullmatch(commit):
        return None
    site = web_link(repository)
    if site is None or urlsplit(site).query or urlsplit(site).fragment:
        return None
    site = site.rstrip("/").removesuffix(".git")
    host = urlsplit(site).netloc.lower()
    if provider == "gitlab" or "gitlab" in host:
        return f"{site}/-/commit/{commit}"
    if provider == "bitbucket" or "bitbucket" in host:
        return f"{site}/commits/{commit}"
    return f"{site}/commit/{commit}"


def page_url(base: str, mr_id: str, repository: str | None, **more: str | None) -> str:
    """This UI's page of one merge request's candidates."""
    query = [("id", mr_id)]
    if repository:
        query.append(("repository", repository))
    query.extend((k, v) for k, v in more.items() if v)
    return f"{base}/ui/merge-requests/candidates?{urlencode(query)}"


@dataclass(frozen=True, slots=True)
class CiLink:
    """One row of a candidate's CI facts: its text, an outside link (http(s) only) and a page
    of this UI."""

    what: str
    text: str
    url: str | None = None
    page: str | None = None


def ci_links(tags: dict[str, str], base: str) -> list[CiLink]:
    """Merge request, pipeline, job, commit, branch and who triggered it, for a candidate
    logged from CI (none for one logged elsewhere)."""
    if not any(key.startswith("ci.") for key in tags):
        return []
    out: list[CiLink] = []
    provider = tags.get("ci.provider")
    repository = tags.get("ci.repository_url")
    mr_id = tags.get("ci.merge_request_id")
    mr_url = web_link(tags.get("ci.merge_request_url", ""))
    if mr_id:
        here = page_url(base, mr_id, repository)
        out.append(CiLink("merge request", label(mr_id, provider), mr_url, here))
    elif mr_url:
        out.append(CiLink("merge request", mr_url, mr_url))
    for what in ("pipeline", "job"):
        given = tags.get(f"ci.{what}_id")
        url = web_link(tags.get(f"ci.{what}_url", ""))
        if given or url:
            out.append(CiLink(what, given or str(url), url))
        elif tags.get(f"ci.{what}_url"):
            out.append(CiLink(what, tags[f"ci.{what}_url"]))
    commit = tags.get("ci.commit") or tags.get("mlflow.source.git.commit")
    if commit:
        out.append(CiLink("commit", commit, commit_url(repository, provider, commit)))
    source, target = tags.get("ci.source_branch"), tags.get("ci.target_branch")
    if source or target:
        out.append(CiLink("branch", f"{source or '?'} → {target}" if target else str(source)))
    if tags.get("ci.triggered_by"):
        out.append(CiLink("triggered by", tags["ci.triggered_by"]))
    return out
