"""Client-supplied file paths inside a package: checked and confined, never decoded again.

A path arrives decoded once by HTTP, and that is the name: ``100%.txt`` stays itself, and so
does an MLflow image name such as ``k%step%1%timestamp%1700000000000%<uuid>.png``. The name
must be a plain relative path: no ``..`` or ``.`` segments, no empty segments, no leading
slash or drive letter, no backslash, NUL or other control characters, no ``?`` or ``#``.

Something further down the line might decode a name once more (a proxy, a script, a browser),
so every further decoding of it (to a fixpoint) must not become a way out or a rewrite
either: no ``..`` or empty segment (with ``/`` or ``\\`` as separators, so no absolute part),
no drive letter, no NUL, line break, tab, backspace, escape or delete. Other characters that
only a further decoding would produce (MLflow's ``%12``, ``%17`` → ``\\x12``, ``\\x17``) are
text in the name and are accepted.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from modelyard.errors import InvalidParameter

MAX_PATH_LENGTH = 1000
_MAX_DECODINGS = 8
_DRIVE = re.compile(r"^[A-Za-z]:")
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\?#]")
_SEPARATORS = re.compile(r"[/\\]")
# NUL, backspace, tab, line breaks, escape, delete: what changes a name's meaning in a C
# string, a log line, a header or a terminal.
_DEEP_FORBIDDEN = re.compile(r"[\x00\x08-\x0d\x1b\x7f]")


class InvalidPath(InvalidParameter):
    """A path refused by ``safe_path``. MLflow's routes answer with MLflow's own message
    (``MESSAGE``); ``message`` says what is wrong with it."""

    MESSAGE = "Invalid path"


def _problem(path: str) -> str | None:
    """What is wrong with the name itself."""
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


def _escape(decoded: str) -> str | None:
    """What a further decoding of the name would turn into a way out of the package."""
    if _DEEP_FORBIDDEN.search(decoded):
        return "decoding it again gives NUL, a line break or a terminal control character"
    for segment in _SEPARATORS.split(decoded):
        if segment in ("", ".."):
            return "decoding it again gives an absolute path or a '..' segment"
        if _DRIVE.match(segment):
            return "decoding it again names a drive"
    return None


def _decodings(path: str) -> list[str]:
    """Each further percent-decoding of ``path``, until one changes nothing."""
    forms: list[str] = []
    current = path
    for _ in range(_MAX_DECODINGS):
        decoded = unquote(current, errors="replace") if "%" in current else current
        if decoded == current:
            return forms
        forms.append(decoded)
        current = decoded
    raise InvalidPath("Invalid path: encoded too many times.")


def safe_path(raw: str, *, allow_root: bool = False) -> str:
    """The checked relative path, as sent; ``""`` (the package root) only when
    ``allow_root``."""
    path = raw.rstrip("/") if raw not in ("/",) else raw
    if path == "" and allow_root:
        return ""
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidPath(f"Invalid path: longer than {MAX_PATH_LENGTH} characters.")
    problem = _problem(path)
    for form in _decodings(path) if problem is None else ():
        problem = _escape(form)
        if problem is not None:
            break
    if problem is not None:
        raise InvalidPath(f"Invalid path {_shown(raw)}: {problem}.")
    return path


def join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def _shown(raw: str) -> str:
    text = repr(raw[:200])
    return text if len(raw) <= 200 else text + "…"
