"""What a page may hold of scripts: only files of the server's own /static folder, and JSON
data blocks (never run) whose text cannot end the element early. And what a browser may ask
for: nothing from any host but the server itself."""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Any

_SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL)


def assert_only_safe_scripts(page: str) -> list[object]:
    """Fails on any inline script; returns the parsed data blocks."""
    blocks: list[object] = []
    found = _SCRIPT.findall(page)
    assert page.lower().count("<script") == len(found), "a script element that never ends"
    for attributes, body in found:
        if re.search(r'\bsrc="/static/[\w.\-]+"', attributes):
            assert body.strip() == "", body[:200]
            assert "defer" in attributes
            continue
        assert 'type="application/json"' in attributes, attributes
        assert "<" not in body, body[:200]
        blocks.append(json.loads(body))
    return blocks


def watch_origin(context: Any, server_url: str) -> list[str]:
    """Records every request of the browser context that goes anywhere but ``server_url``'s
    scheme, host and port (pages, scripts, styles, images, fonts, fetches alike)."""
    own = urllib.parse.urlsplit(server_url)
    elsewhere: list[str] = []

    def check(request: Any) -> None:
        url = urllib.parse.urlsplit(request.url)
        if url.scheme in ("data", "blob", "about"):
            return
        if (url.scheme, url.netloc) != (own.scheme, own.netloc):
            elsewhere.append(request.url)

    context.on("request", check)
    return elsewhere
