"""Client-supplied file paths inside a package: decoded, checked, confined.

A path is percent-decoded until decoding changes nothing more, and every form on the way must
be a plain relative path: no ``..`` or ``.`` segments, no empty segments, no leading slash or
drive letter, no backslash, NUL or other control characters, no ``?`` or ``#``. The stored
name is the path as the client sent it (decoded once by HTTP), so ``100%.txt`` stays itself.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from modelyard.errors import InvalidParameter

MAX_PATH_LENGTH = 1000
_MAX_DECODINGS = 8
_DRIVE = re.compile(r"^[A-Za-z]:")
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\?#]")


def _problem(path: str) -> str | None:
    if _FORBIDDEN.search(path):
        return "it contains a backslash, '?', '#' or a control character"
    if path.startswith("/"):
        return "it is absolute"
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            return "it has an empty, '.' or '..' segment"
        if _DRIVE.match(segment):
            return "it names a drive"
    return None


def safe_path(raw: str, *, allow_root: bool = False) -> str:
    """The checked relative path; ``""`` (the package root) only when ``allow_root``."""
    path = raw.rstrip("/") if raw not in ("/",) else raw
    if path == "" and allow_root:
        return ""
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidParameter(f"Invalid path: longer than {MAX_PATH_LENGTH} characters.")
    forms = [path]
    for _ in range(_MAX_DECODINGS):
        decoded = unquote(forms[-1], errors="replace") if "%" in forms[-1] else forms[-1]
        if decoded == forms[-1]:
            break
        forms.append(decoded)
    else:
        raise InvalidParameter("Invalid path: encoded too many times.")
    for form in forms:
        problem = _problem(form)
        if problem is not None:
            raise InvalidParameter(f"Invalid path {_shown(raw)}: {problem}.")
    return path


def join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def _shown(raw: str) -> str:
    text = repr(raw[:200])
    return text if len(raw) <= 200 else text + "…"
