"""Reading an MLflow tracking server (2.x or 3.x) through its REST API: experiments, runs,
metric histories, artifacts, logged models, registered models and versions. Every list is
paged and every file streamed. The same reader reads a modelyard server's MLflow routes,
which is how ``--verify`` compares the two. The calls themselves are ``mlflow_http.Rest``'s.

Credentials are MLflow's own variables: MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD; MLFLOW_TRACKING_INSECURE_TLS and MLFLOW_TRACKING_SERVER_CERT_PATH.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from modelyard_client.config import Target, _basic, _split, _tls_verify
from modelyard_client.errors import ClientError, HttpError
from modelyard_client.http import Http
from modelyard_client.mlflow_http import ARTIFACT_SCHEME, Rest, artifact_path

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


class MlflowRest(Rest):
    """One MLflow server's REST API, read."""

    def __init__(self, http: Http, label: str | None = None) -> None:
        super().__init__(http, label or f"the MLflow server {http.target.server}")

    # tracking ---------------------------------------------------------------------------------

    def experiments(self) -> Iterator[Json]:
        return self.pages(
            "POST", "/experiments/search", "experiments", {"max_results": PAGE, "view_type": "ALL"}
        )

    def runs(self, experiment_id: str) -> Iterator[Json]:
        search = {
            "experiment_ids": [experiment_id],
            "run_view_type": "ALL",
            "max_results": PAGE,
            "order_by": ["attributes.start_time ASC"],
        }
        return self.pages("POST", "/runs/search", "runs", search)

    def history(self, run_id: str, key: str) -> Iterator[list[Json]]:
        """The metric's points, a page at a time."""
        query = {"run_id": run_id, "metric_key": key, "max_results": HISTORY_PAGE}
        for page in self.each_page("GET", "/metrics/get-history", query):
            points = page.get("metrics", [])
            if points:
                yield points

    def logged_models(self, experiment_ids: list[str]) -> Iterator[Json]:
        if not experiment_ids:
            return
        search = {"experiment_ids": experiment_ids, "max_results": 100}
        try:
            yield from self.pages("POST", "/logged-models/search", "models", search)
        except HttpError as exc:
            if exc.status not in (404, 405, 501):  # MLflow 2.x: no logged models
                raise

    # artifacts --------------------------------------------------------------------------------

    def run_files(self, run_id: str, folder: str = "") -> Iterator[tuple[str, int]]:
        """(path, size) of every file of the run, depth first."""
        query = {"run_id": run_id, **({"path": folder} if folder else {})}
        for entry in self.get("/artifacts/list", **query).get("files", []):
            path = str(entry["path"])
            if entry.get("is_dir"):
                yield from self.run_files(run_id, path)
            else:
                yield path, int(entry.get("file_size") or 0)

    def open_run_file(self, run_id: str, path: str) -> Any:
        response = self.client.send(
            "GET",
            "/get-artifact",
            query={"run_id": run_id, "path": path},
            headers={"Accept": "*/*"},
        )
        if response.status >= 400:
            raise self.failure(response, self.client.read(response), f"the download of {path}")
        return response

    def model_files(self, model: Json) -> Iterator[tuple[str, int]]:
        """(path, size) of a logged model's files, through the artifact proxy (none when the
        proxy does not know its folder)."""
        root = _proxied_root(str(model["info"].get("artifact_uri") or ""))
        if root is None:
            return
        try:
            yield from self.list_files(root)
        except HttpError as exc:
            if exc.status != 404:
                raise

    def open_model_file(self, model: Json, path: str) -> Any:
        root = _proxied_root(str(model["info"].get("artifact_uri") or ""))
        if root is None:
            raise ClientError(
                f"the files of logged model {model['info'].get('model_id')} are "
                "not served by the source's artifact proxy"
            )
        return self.open_file(f"{root}/{path}")[0]

    # registry ---------------------------------------------------------------------------------

    def registered_models(self) -> Iterator[Json]:
        return self.pages(
            "GET", "/registered-models/search", "registered_models", {"max_results": PAGE}
        )

    def versions(self, name: str) -> list[Json]:
        quoted = name.replace("\\", "\\\\").replace("'", "\\'")
        search = {"filter": f"name='{quoted}'", "max_results": 200_000}
        found = list(self.pages("GET", "/model-versions/search", "model_versions", search))
        return sorted(found, key=lambda v: int(v["version"]))


def _proxied_root(uri: str) -> str | None:
    """The proxy path of an ``mlflow-artifacts:`` location (None for other stores)."""
    return artifact_path(uri, "a logged model") if uri.startswith(ARTIFACT_SCHEME) else None
