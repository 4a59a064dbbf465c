"""Reading an MLflow tracking server (2.x or 3.x) through its REST API: experiments, runs,
metric histories, artifacts, logged models, registered models and versions. Every list is
paged and every file streamed. The same reader reads a modelyard server's MLflow routes,
which is how ``--verify`` compares the two.

Credentials are MLflow's own variables: MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD; MLFLOW_TRACKING_INSECURE_TLS and MLFLOW_TRACKING_SERVER_CERT_PATH.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from modelyard_client.config import Target, _basic, _split, _tls_verify
from modelyard_client.errors import ClientError, HttpError
from modelyard_client.http import Http

MLFLOW = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
PAGE = 1000
HISTORY_PAGE = 25_000

Json = dict[str, Any]


def source_target(url: str, origin: str = "--from") -> Target:
    """The MLflow server at ``url`` (a modelyard project's URL works too) with MLflow's
    credentials from the environment."""
    server, project, in_url = _split(url, origin)
    token = os.environ.get("MLFLOW_TRACKING_TOKEN", "").strip()
    user = os.environ.get("MLFLOW_TRACKING_USERNAME", "").strip()
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD", "").strip()
    authorization = in_url
    if token:
        authorization = f"Bearer {token}"
    elif user or password:
        authorization = _basic(user, password)
    return Target(server, project, authorization, origin, _tls_verify())


def pairs(items: list[Json] | None) -> dict[str, str]:
    """MLflow's [{"key", "value"}] lists as a dict."""
    return {str(i["key"]): str(i.get("value", "")) for i in items or []}


class MlflowRest:
    """One MLflow server's REST API."""

    def __init__(self, http: Http) -> None:
        self.http = http

    # plumbing ---------------------------------------------------------------------------------

    def get(self, path: str, query: dict[str, Any] | None = None) -> Json:
        return self._json("GET", path, query=query)

    def post(self, path: str, payload: Json) -> Json:
        return self._json("POST", path, payload=payload)

    def _json(
        self, method: str, path: str, *, query: dict[str, Any] | None = None, payload: Any = None
    ) -> Json:
        body = None if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        response = self.http.send(method, path, query=query, body=body, headers=headers)
        raw = self.http.read(response)
        if response.status >= 400:
            raise self.http.failure(response, raw)
        try:
            found = json.loads(raw) if raw else {}
        except ValueError:
            raise ClientError(
                f"{self.http.target.server} answered {path} with something other than JSON: "
                "is it an MLflow tracking server?"
            ) from None
        return found if isinstance(found, dict) else {}

    # tracking ---------------------------------------------------------------------------------

    def experiments(self) -> Iterator[Json]:
        token = None
        while True:
            page = self.post(
                MLFLOW + "/experiments/search",
                {
                    "max_results": PAGE,
                    "view_type": "ALL",
                    **({"page_token": token} if token else {}),
                },
            )
            yield from page.get("experiments", [])
            token = page.get("next_page_token")
            if not token:
                return

    def runs(self, experiment_id: str) -> Iterator[Json]:
        token = None
        while True:
            payload: Json = {
                "experiment_ids": [experiment_id],
                "run_view_type": "ALL",
                "max_results": PAGE,
                "order_by": ["attributes.start_time ASC"],
            }
            if token:
                payload["page_token"] = token
            page = self.post(MLFLOW + "/runs/search", payload)
            yield from page.get("runs", [])
            token = page.get("next_page_token")
            if not token:
                return

    def history(self, run_id: str, key: str) -> Iterator[list[Json]]:
        """The metric's points, a page at a time."""
        token = None
        while True:
            query: dict[str, Any] = {
                "run_id": run_id,
                "metric_key": key,
                "max_results": HISTORY_PAGE,
            }
            if token:
                query["page_token"] = token
            page = self.get(MLFLOW + "/metrics/get-history", query)
            points = page.get("metrics", [])
            if points:
                yield points
            token = page.get("next_page_token")
            if not token:
                return

    def logged_models(self, experiment_ids: list[str]) -> Iterator[Json]:
        if not experiment_ids:
            return
        token = None
        while True:
            payload: Json = {"experiment_ids": experiment_ids, "max_results": 100}
            if token:
                payload["page_token"] = token
            try:
                page = self.post(MLFLOW + "/logged-models/search", payload)
            except HttpError as exc:
                if exc.status in (404, 405, 501):  # MLflow 2.x: no logged models
                    return
                raise
            yield from page.get("models", [])
            token = page.get("next_page_token")
            if not token:
                return

    # artifacts --------------------------------------------------------------------------------

    def run_files(self, run_id: str, folder: str = "") -> Iterator[tuple[str, int]]:
        """(path, size) of every file of the run, depth first."""
        query: dict[str, Any] = {"run_id": run_id}
        if folder:
            query["path"] = folder
        for entry in self.get(MLFLOW + "/artifacts/list", query).get("files", []):
            path = str(entry["path"])
            if entry.get("is_dir"):
                yield from self.run_files(run_id, path)
            else:
                yield path, int(entry.get("file_size") or 0)

    def open_run_file(self, run_id: str, path: str) -> Any:
        response = self.http.send(
            "GET",
            "/get-artifact",
            query={"run_id": run_id, "path": path},
            headers={"Accept": "*/*"},
        )
        return self._stream(response)

    def proxied_files(self, root: str, folder: str = "") -> Iterator[tuple[str, int]]:
        """(path below ``root``, size) of every file under an ``mlflow-artifacts:/`` root
        (a logged model's files), through the artifact proxy."""
        listed = f"{root}/{folder}" if folder else root
        try:
            found = self.get(ARTIFACTS, {"path": listed})
        except HttpError as exc:
            if exc.status == 404:
                return
            raise
        for entry in found.get("files", []):
            name = str(entry["path"]).removeprefix(listed + "/").rsplit("/", 1)[-1]
            path = f"{folder}/{name}" if folder else name
            if entry.get("is_dir"):
                yield from self.proxied_files(root, path)
            else:
                yield path, int(entry.get("file_size") or 0)

    def open_proxied_file(self, root: str, path: str) -> Any:
        location = quote(f"{root}/{path}", safe="/")
        response = self.http.send("GET", f"{ARTIFACTS}/{location}", headers={"Accept": "*/*"})
        return self._stream(response)

    def model_files(self, model: Json) -> Iterator[tuple[str, int]]:
        root = _proxied_root(str(model["info"].get("artifact_uri") or ""))
        if root is not None:
            yield from self.proxied_files(root)

    def open_model_file(self, model: Json, path: str) -> Any:
        root = _proxied_root(str(model["info"].get("artifact_uri") or ""))
        if root is None:
            raise ClientError(
                f"the files of logged model {model['info'].get('model_id')} are "
                "not served by the source's artifact proxy"
            )
        return self.open_proxied_file(root, path)

    def _stream(self, response: Any) -> Any:
        if response.status >= 400:
            raise self.http.failure(response, self.http.read(response))
        return response

    # registry ---------------------------------------------------------------------------------

    def registered_models(self) -> Iterator[Json]:
        token = None
        while True:
            query: dict[str, Any] = {"max_results": PAGE}
            if token:
                query["page_token"] = token
            page = self.get(MLFLOW + "/registered-models/search", query)
            yield from page.get("registered_models", [])
            token = page.get("next_page_token")
            if not token:
                return

    def versions(self, name: str) -> list[Json]:
        quoted = name.replace("\\", "\\\\").replace("'", "\\'")
        found: list[Json] = []
        token = None
        while True:
            query: dict[str, Any] = {"filter": f"name='{quoted}'", "max_results": 200_000}
            if token:
                query["page_token"] = token
            page = self.get(MLFLOW + "/model-versions/search", query)
            found += page.get("model_versions", [])
            token = page.get("next_page_token")
            if not token:
                break
        return sorted(found, key=lambda v: int(v["version"]))


def _proxied_root(uri: str) -> str | None:
    """The proxy path of an ``mlflow-artifacts:`` location (None for other stores)."""
    if not uri.startswith("mlflow-artifacts:"):
        return None
    rest = uri.removeprefix("mlflow-artifacts:")
    if rest.startswith("//"):  # mlflow-artifacts://host:port/path
        rest = "/" + rest[2:].partition("/")[2]
    return rest.strip("/")
