"""A local HTTP server with the documented subset of GitLab's merge-request notes API and
GitHub's issue-comments API that ``modelyard ci report --post`` uses: list (paged), create,
update; a wrong token answers 401 and an unknown project or pull request 404, with each
API's error body.

GitLab (https://docs.gitlab.com/api/notes/#merge-requests): ``PRIVATE-TOKEN`` header;
``GET/POST /api/v4/projects/:id/merge_requests/:iid/notes`` (``per_page``, ``page``,
``X-Next-Page``), ``PUT …/notes/:note_id``. GitHub
(https://docs.github.com/rest/issues/comments): ``Authorization: Bearer``;
``GET/POST /repos/:owner/:repo/issues/:number/comments`` (``per_page``, ``page``, ``Link``),
``PATCH /repos/:owner/:repo/issues/comments/:comment_id``."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

GITLAB_NOTES = re.compile(r"^/api/v4/projects/([^/]+)/merge_requests/(\d+)/notes(?:/(\d+))?$")
GITHUB_LIST = re.compile(r"^/repos/([^/]+)/([^/]+)/issues/(\d+)/comments$")
GITHUB_ONE = re.compile(r"^/repos/([^/]+)/([^/]+)/issues/comments/(\d+)$")


@dataclass
class Forge:
    """Both APIs' state: comments by merge request, the token each accepts, what was asked."""

    gitlab_token: str = "glpat-right"
    github_token: str = "ghs-right"
    notes: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)
    comments: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    next_id: int = 1000
    url: str = ""

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id


def _page(items: list[dict[str, Any]], query: dict[str, list[str]]) -> tuple[list[Any], bool]:
    per_page = min(int(query.get("per_page", ["20"])[0]), 100)
    page = max(int(query.get("page", ["1"])[0]), 1)
    start = (page - 1) * per_page
    return items[start : start + per_page], start + per_page < len(items)


class _Handler(BaseHTTPRequestHandler):
    forge: Forge

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        found = json.loads(self.rfile.read(length) or b"{}")
        assert isinstance(found, dict)
        return found

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        self.forge.requests.append((method, parts.path))
        if parts.path.startswith("/api/v4/"):
            self._gitlab(method, parts.path, query)
        else:
            self._github(method, parts.path, query)

    def _gitlab(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        if self.headers.get("PRIVATE-TOKEN") != self.forge.gitlab_token:
            self._send(401, {"message": "401 Unauthorized"})
            return
        found = GITLAB_NOTES.match(path)
        key = (found.group(1), int(found.group(2))) if found else None
        if found is None or key not in self.forge.notes:
            self._send(404, {"message": "404 Not found"})
            return
        notes = self.forge.notes[key]
        note_id = found.group(3)
        if method == "GET" and note_id is None:
            page, more = _page(notes, query)
            headers = {"X-Total": str(len(notes))}
            if more:
                headers["X-Next-Page"] = str(int(query.get("page", ["1"])[0]) + 1)
            self._send(200, page, headers)
        elif method == "POST" and note_id is None:
            note = {"id": self.forge.new_id(), "body": self._body()["body"], "system": False}
            notes.append(note)
            self._send(201, note)
        elif method == "PUT" and note_id is not None:
            for note in notes:
                if note["id"] == int(note_id):
                    note["body"] = self._body()["body"]
                    self._send(200, note)
                    return
            self._send(404, {"message": "404 Note Not Found"})
        else:
            self._send(405, {"message": "405 Method Not Allowed"})

    def _github(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        if self.headers.get("Authorization") != f"Bearer {self.forge.github_token}":
            self._send(401, {"message": "Bad credentials", "status": "401"})
            return
        listed, one = GITHUB_LIST.match(path), GITHUB_ONE.match(path)
        if listed is not None:
            key = (f"{listed.group(1)}/{listed.group(2)}", int(listed.group(3)))
            comments = self.forge.comments.get(key)
            if comments is None:
                self._send(404, {"message": "Not Found", "status": "404"})
            elif method == "GET":
                page, more = _page(comments, query)
                headers = {}
                if more:
                    number = int(query.get("page", ["1"])[0]) + 1
                    headers["Link"] = f'<{self.forge.url}{path}?page={number}>; rel="next"'
                self._send(200, page, headers)
            elif method == "POST":
                made = self.forge.new_id()
                comment = {
                    "id": made,
                    "body": self._body()["body"],
                    "html_url": f"https://github.com/{key[0]}/pull/{key[1]}#issuecomment-{made}",
                }
                comments.append(comment)
                self._send(201, comment)
            else:
                self._send(404, {"message": "Not Found", "status": "404"})
            return
        if one is not None and method == "PATCH":
            repo = f"{one.group(1)}/{one.group(2)}"
            for (name, _), comments in self.forge.comments.items():
                for comment in comments:
                    if name == repo and comment["id"] == int(one.group(3)):
                        comment["body"] = self._body()["body"]
                        self._send(200, comment)
                        return
        self._send(404, {"message": "Not Found", "status": "404"})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")


class ForgeServer:
    """The fake APIs on a free local port, in a thread."""

    def __init__(self) -> None:
        self.forge = Forge()
        handler = type("Handler", (_Handler,), {"forge": self.forge})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.forge.url = self.url
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
