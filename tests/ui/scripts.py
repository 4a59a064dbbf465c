"""What a page may hold of scripts: only files of the server's own /static folder, and JSON
data blocks (never run) whose text cannot end the element early."""

from __future__ import annotations

import json
import re

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
