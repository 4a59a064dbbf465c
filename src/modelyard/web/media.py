"""The content type a stored file is served with, decided by its name alone.

What an uploader declared is never echoed: a ``.txt`` sent as ``text/html`` is still plain
text. Text (MLflow's text files, ``MLmodel``, ``MLproject``, logs, CSV, YAML, JSON) is served
as its type with ``charset=utf-8``; anything a browser would run or render as a page (HTML,
SVG, XML, scripts) as opaque bytes; other known types (images, archives, PDF) as themselves;
the rest as opaque bytes. Downloads also carry ``nosniff`` and ``attachment``.
"""

from __future__ import annotations

import mimetypes
import posixpath

OPAQUE = "application/octet-stream"
UTF8 = "; charset=utf-8"

_PLAIN_NAMES = frozenset({"MLmodel", "MLproject", "Dockerfile", "LICENSE", "README"})
_TEXT_SUFFIXES = {
    ".txt": "text/plain",
    ".log": "text/plain",
    ".err": "text/plain",
    ".out": "text/plain",
    ".cfg": "text/plain",
    ".conf": "text/plain",
    ".ini": "text/plain",
    ".toml": "text/plain",
    ".properties": "text/plain",
    ".yaml": "text/plain",
    ".yml": "text/plain",
    ".md": "text/plain",
    ".rst": "text/plain",
    ".py": "text/plain",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".json": "application/json",
    ".jsonl": "application/json",
}
# Types a browser runs or renders as a document, whatever they are called.
_ACTIVE_MARKERS = ("html", "svg", "xml", "javascript", "ecmascript", "x-sh", "wasm")
_ACTIVE_SUFFIXES = frozenset(
    {".html", ".htm", ".xhtml", ".shtml", ".svg", ".svgz", ".xml", ".xsl", ".xslt"}
    | {".js", ".mjs", ".cjs", ".wasm", ".swf"}
)


def served_type(path: str) -> str:
    """The Content-Type a download of the file at ``path`` is served with."""
    name = posixpath.basename(path)
    suffix = posixpath.splitext(name)[1].lower()
    if suffix in _ACTIVE_SUFFIXES:
        return OPAQUE
    if name in _PLAIN_NAMES:
        return "text/plain" + UTF8
    if suffix in _TEXT_SUFFIXES:
        return _TEXT_SUFFIXES[suffix] + UTF8
    guessed, encoding = mimetypes.guess_type(name, strict=False)
    if guessed is None or encoding or any(marker in guessed for marker in _ACTIVE_MARKERS):
        return OPAQUE
    if guessed.startswith("text/"):
        return guessed + UTF8
    return guessed


def stored_type(path: str) -> str:
    """The media type recorded for a file written through MLflow's routes (its served type
    without the charset)."""
    return served_type(path).removesuffix(UTF8)
