"""A small Markdown renderer for model cards, safe by construction: every character of the
source is HTML-escaped before any markup is added, links are kept only for http(s) URLs, and
no raw HTML passes through."""

from __future__ import annotations

import html
import re

_LINK = re.compile(r"\[([^\]]+)\]\((https?://[^\s)]+)\)")
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_ITALIC = re.compile(r"(?<![*\w])\*([^*]+)\*(?!\*)")


def _inline(text: str) -> str:
    escaped = html.escape(text, quote=True)
    codes: list[str] = []

    def keep_code(match: re.Match[str]) -> str:
        codes.append(f"<code>{match.group(1)}</code>")
        return f"\x00{len(codes) - 1}\x00"

    escaped = _CODE.sub(keep_code, escaped)
    escaped = _LINK.sub(
        lambda m: f'<a href="{m.group(2)}" rel="nofollow noopener noreferrer">{m.group(1)}</a>',
        escaped,
    )
    escaped = _BOLD.sub(r"<strong>\1</strong>", escaped)
    escaped = _ITALIC.sub(r"<em>\1</em>", escaped)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], escaped)


def render(source: str) -> str:
    """HTML for headings, paragraphs, bullet and numbered lists, fenced code and inline
    code, bold, italics and http(s) links."""
    out: list[str] = []
    paragraph: list[str] = []
    list_kind: str | None = None
    fence: list[str] | None = None

    def flush() -> None:
        nonlocal list_kind
        if paragraph:
            out.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()
        if list_kind:
            out.append(f"</{list_kind}>")
            list_kind = None

    for line in source.splitlines():
        if fence is not None:
            if line.strip().startswith("```"):
                out.append(f"<pre><code>{html.escape(chr(10).join(fence))}</code></pre>")
                fence = None
            else:
                fence.append(line)
            continue
        stripped = line.strip()
        if stripped.startswith("```"):
            flush()
            fence = []
        elif not stripped:
            flush()
        elif heading := re.match(r"^(#{1,6})\s+(.*)$", stripped):
            flush()
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif item := re.match(r"^(?:[-*]|(\d+)\.)\s+(.*)$", stripped):
            kind = "ol" if item.group(1) else "ul"
            if paragraph or list_kind != kind:
                flush()
                out.append(f"<{kind}>")
                list_kind = kind
            out.append(f"<li>{_inline(item.group(2))}</li>")
        else:
            if list_kind:
                flush()
            paragraph.append(stripped)
    if fence is not None:
        out.append(f"<pre><code>{html.escape(chr(10).join(fence))}</code></pre>")
    flush()
    return "\n".join(out)
