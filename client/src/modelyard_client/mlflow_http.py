"""MLflow's REST protocol over :class:`~modelyard_client.http.Http`: JSON calls under
``/api/2.0/mlflow``, the ``mlflow-artifacts`` proxy (listing, streamed downloads and uploads),
and every error status as one line naming the server and the call.

Used by ``export mlflow`` on both sides (the modelyard server it reads through its MLflow
routes, and the MLflow server it writes), and by ``import mlflow``, whose reader of a live
server (``mlflow_rest.MlflowRest``) is built on it."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO
from urllib.parse import quote

from modelyard_client.errors import ClientError, HttpError
from modelyard_client.http import Http

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
ARTIFACT_SCHEME = "mlflow-artifacts:"


def artifact_path(uri: str, what: str) -> str:
    """The path inside the artifact proxy of an ``mlflow-artifacts:`` URI (with or without a
    host); any other kind of location cannot be reached over HTTP."""
    if not uri.startswith(ARTIFACT_SCHEME):
        raise ClientError(
            f"{what} keeps its files at {uri!r}, which is not reachable over HTTP: start the "
            "MLflow server with --serve-artifacts (artifact locations mlflow-artifacts:/…)"
        )
    rest = uri[len(ARTIFACT_SCHEME) :]
    if rest.startswith("//"):
        rest = rest[2:].partition("/")[2]
    return rest.strip("/")


class Rest:
    """One MLflow-speaking server: ``label`` names it in error messages."""

    def __init__(self, client: Http, label: str) -> None:
        self.client = client
        self.label = label

    # JSON calls ---------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        route: str,
        payload: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        body = None if payload is None else json.dumps(payload, allow_nan=False).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        response = self.client.send(method, API + route, query=query, body=body, headers=headers)
        raw = self.client.read(response)
        if response.status >= 400:
            raise self.failure(response, raw, f"{method} {route}")
        if not raw:
            return {}
        try:
            found = json.loads(raw)
        except ValueError:
            raise ClientError(
                f"{self.label} answered {method} {route} with something that is not JSON: is "
                "it an MLflow server?"
            ) from None
        return found if isinstance(found, dict) else {}

    def get(self, route: str, **query: Any) -> dict[str, Any]:
        return self.call("GET", route, query=query)

    def post(self, route: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        return self.call("POST", route, payload)

    def each_page(
        self, method: str, route: str, payload: Mapping[str, Any]
    ) -> Iterator[dict[str, Any]]:
        """Every answer of a paged call, following ``next_page_token`` (in the query of a
        GET, in the body otherwise)."""
        token: str | None = None
        while True:
            request = {**payload, **({"page_token": token} if token else {})}
            if method == "GET":
                page = self.call("GET", route, query=request)
            else:
                page = self.call(method, route, request)
            yield page
            token = page.get("next_page_token") or None
            if not token:
                return

    def pages(
        self, method: str, route: str, key: str, payload: Mapping[str, Any]
    ) -> Iterator[dict[str, Any]]:
        """Every item of a paged search."""
        for page in self.each_page(method, route, payload):
            yield from page.get(key, [])

    def failure(self, response: http.client.HTTPResponse, raw: bytes, what: str) -> HttpError:
        code, message = "", ""
        try:
            found = json.loads(raw)
            if isinstance(found, dict):
                error = found.get("error")
                if isinstance(error, dict):
                    code, message = str(error.get("code", "")), str(error.get("message", ""))
                else:
                    code = str(found.get("error_code", ""))
                    message = str(found.get("message", ""))
        except ValueError:
            pass
        status = response.status
        if status == 401:
            message = f"not signed in ({message or 'HTTP 401'}); check the credentials"
        detail = f"{code}: {message}" if code and message else message or code or "no details"
        return HttpError(
            f"{self.label} refused {what} (HTTP {status}) {detail[:500]}", status, code
        )

    # artifacts ----------------------------------------------------------------------------------

    def list_files(self, root: str) -> Iterator[tuple[str, int]]:
        """Every file under ``root`` in the artifact proxy, as (path below root, size)."""
        folders = [""]
        while folders:
            folder = folders.pop()
            where = f"{root}/{folder}".rstrip("/") if folder else root
            for entry in self._list(where):
                name = str(entry["path"]).rsplit("/", 1)[-1]
                path = f"{folder}/{name}" if folder else name
                if entry.get("is_dir"):
                    folders.append(path)
                else:
                    yield path, int(entry.get("file_size") or 0)

    def _list(self, where: str) -> list[dict[str, Any]]:
        response = self.client.send("GET", ARTIFACTS, query={"path": where})
        raw = self.client.read(response)
        if response.status >= 400:
            raise self.failure(response, raw, f"the listing of {where}")
        found = json.loads(raw) if raw else {}
        files = found.get("files", []) if isinstance(found, dict) else []
        return sorted(files, key=lambda f: str(f.get("path")))

    def open_file(self, path: str) -> tuple[http.client.HTTPResponse, int | None]:
        """A download with its body unread, and its length when the server gives one."""
        response = self.client.send("GET", f"{ARTIFACTS}/{quote(path)}")
        if response.status >= 400:
            raw = self.client.read(response)
            raise self.failure(response, raw, f"the download of {path}")
        length = response.getheader("content-length")
        return response, int(length) if length and length.isdigit() else None

    def put_file(self, path: str, body: BinaryIO | bytes, length: int) -> None:
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(length)}
        response = self.client.send("PUT", f"{ARTIFACTS}/{quote(path)}", body=body, headers=headers)
        raw = self.client.read(response)
        if response.status >= 400:
            raise self.failure(response, raw, f"the upload of {path}")
