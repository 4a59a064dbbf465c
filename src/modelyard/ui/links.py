"""Links in the MLflow UI's form (``/#/experiments/<id>/runs/<run id>``, as the MLflow client
prints them after every run). The fragment never reaches a server, so the home page's script
(``static/links.js``) sends it here as ``/ui/link?to=<fragment>``; the matching page answers
with a redirect, and a link of no known form gets a page that says so."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from starlette.requests import Request
from starlette.responses import Response

from modelyard.errors import NotFound
from modelyard.mlflow_api.wire import Context
from modelyard.ui.render import prefix, redirect

MAX_LINK = 2000
_SEGMENT = r"([^/?#]+)"
#: (the fragment's path, the page it opens) with {1}, {2} the fragment's segments, quoted
FORMS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), target)
    for pattern, target in (
        (r"/?", ""),
        (r"/experiments/?", "/ui/experiments"),
        (rf"/experiments/{_SEGMENT}(?:/runs)?/?", "/ui/experiments/{1}"),
        (rf"/experiments/{_SEGMENT}/runs/{_SEGMENT}(?:/.*)?", "/ui/runs/{2}"),
        (rf"/experiments/{_SEGMENT}/models/{_SEGMENT}(?:/.*)?", "/ui/logged-models/{2}"),
        (rf"/experiments/{_SEGMENT}/(?:chart|charts)/?", "/ui/experiments/{1}/charts"),
        (r"/models/?", "/ui/models"),
        (rf"/models/{_SEGMENT}/?", "/ui/models/{1}"),
        (rf"/models/{_SEGMENT}/versions/{_SEGMENT}(?:/.*)?", "/ui/models/{1}/versions/{2}"),
    )
)


def target(fragment: str) -> str | None:
    """The modelyard path (without the project prefix) of an MLflow UI link's fragment, or
    None when the fragment has no form we know."""
    path = fragment.split("?", 1)[0]
    for pattern, page in FORMS:
        found = pattern.fullmatch(path)
        if found is not None:
            parts = [quote(unquote(part), safe="") for part in found.groups()]
            return page.format(None, *parts) or "/"
    return None


async def follow(request: Request, _ctx: Context) -> Response:
    fragment = request.query_params.get("to", "").removeprefix("#")[:MAX_LINK]
    page = target(fragment)
    if page is None:
        raise NotFound(
            f"No page answers the link #{fragment[:200]}: it is not one of the forms "
            "#/experiments/<id>, #/experiments/<id>/runs/<run id>, #/models/<name> or "
            "#/models/<name>/versions/<version>."
        )
    base = prefix(request)
    return redirect(f"{base}{page}" if page != "/" else f"{base}/")
