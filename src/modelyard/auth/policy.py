"""What every route needs: one table, read by the gate. A route missing from it stops the
server from starting, so nothing is reachable by accident.

Keys are the route's path below its API family prefix (MLflow's ``/api/2.0/mlflow`` and
``/ajax-api/2.0/mlflow``, the artifact proxy, the native ``/api/v1``) and its method.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelyard.auth.roles import Capability

C = Capability


@dataclass(frozen=True, slots=True)
class Rule:
    capability: Capability
    #: name of the audit-log action this route's successful calls are recorded as
    audit: str | None = None
    #: HTML form posts are allowed (the handler checks the CSRF token itself)
    forms: bool = False
    #: the route stores bytes in the project: refused once the project's quota is reached
    quota: bool = False


def _r(
    capability: Capability, audit: str | None = None, *, forms: bool = False, quota: bool = False
) -> Rule:
    return Rule(capability, audit, forms, quota)


MLFLOW_FAMILIES = (
    "/api/2.0/mlflow",
    "/ajax-api/2.0/mlflow",
    "/api/3.0/mlflow",
    "/ajax-api/3.0/mlflow",
)
ARTIFACT_FAMILIES = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")
NATIVE_FAMILY = "/api/v1"

MLFLOW: dict[tuple[str, str], Rule] = {
    ("POST", "/experiments/create"): _r(C.WRITE),
    ("GET", "/experiments/get"): _r(C.READ),
    ("GET", "/experiments/get-by-name"): _r(C.READ),
    ("GET", "/experiments/search"): _r(C.READ),
    ("POST", "/experiments/search"): _r(C.READ),
    ("POST", "/experiments/update"): _r(C.WRITE),
    ("POST", "/experiments/delete"): _r(C.MAINTAIN, "experiment.delete"),
    ("POST", "/experiments/restore"): _r(C.MAINTAIN, "experiment.restore"),
    ("POST", "/experiments/set-experiment-tag"): _r(C.WRITE),
    ("POST", "/experiments/delete-experiment-tag"): _r(C.WRITE),
    ("POST", "/runs/create"): _r(C.WRITE),
    ("GET", "/runs/get"): _r(C.READ),
    ("POST", "/runs/update"): _r(C.WRITE),
    ("POST", "/runs/delete"): _r(C.WRITE),
    ("POST", "/runs/restore"): _r(C.WRITE),
    ("POST", "/runs/log-metric"): _r(C.WRITE),
    ("POST", "/runs/log-parameter"): _r(C.WRITE),
    ("POST", "/runs/set-tag"): _r(C.WRITE),
    ("POST", "/runs/delete-tag"): _r(C.WRITE),
    ("POST", "/runs/log-batch"): _r(C.WRITE),
    ("POST", "/runs/log-inputs"): _r(C.WRITE),
    ("POST", "/runs/outputs"): _r(C.WRITE),
    ("POST", "/runs/search"): _r(C.READ),
    ("GET", "/runs/search"): _r(C.READ),
    ("POST", "/runs/log-model"): _r(C.WRITE),
    ("GET", "/metrics/get-history"): _r(C.READ),
    ("GET", "/metrics/get-history-bulk-interval"): _r(C.READ),
    ("GET", "/metrics/get-history-bulk"): _r(C.READ),
    ("POST", "/logged-models"): _r(C.WRITE),
    ("POST", "/logged-models/search"): _r(C.READ),
    ("GET", "/logged-models/{model_id}"): _r(C.READ),
    ("PATCH", "/logged-models/{model_id}"): _r(C.WRITE),
    ("DELETE", "/logged-models/{model_id}"): _r(C.WRITE),
    ("PATCH", "/logged-models/{model_id}/tags"): _r(C.WRITE),
    ("DELETE", "/logged-models/{model_id}/tags/{tag_key:path}"): _r(C.WRITE),
    ("POST", "/logged-models/{model_id}/params"): _r(C.WRITE),
    ("GET", "/logged-models/{model_id}/artifacts/directories"): _r(C.READ),
    ("GET", "/logged-models/{model_id}/artifacts/files"): _r(C.DOWNLOAD),
    ("POST", "/registered-models/create"): _r(C.WRITE, "model.create"),
    ("GET", "/registered-models/get"): _r(C.READ),
    ("POST", "/registered-models/rename"): _r(C.MAINTAIN, "model.rename"),
    ("PATCH", "/registered-models/update"): _r(C.MAINTAIN, "model.update"),
    ("DELETE", "/registered-models/delete"): _r(C.MAINTAIN, "model.delete"),
    ("GET", "/registered-models/search"): _r(C.READ),
    ("POST", "/registered-models/search"): _r(C.READ),
    ("GET", "/registered-models/get-latest-versions"): _r(C.READ),
    ("POST", "/registered-models/get-latest-versions"): _r(C.READ),
    ("POST", "/registered-models/set-tag"): _r(C.MAINTAIN, "model.set_tag"),
    ("DELETE", "/registered-models/delete-tag"): _r(C.MAINTAIN, "model.delete_tag"),
    ("POST", "/registered-models/alias"): _r(C.MAINTAIN, "alias.set"),
    ("DELETE", "/registered-models/alias"): _r(C.MAINTAIN, "alias.delete"),
    ("GET", "/registered-models/alias"): _r(C.READ),
    ("POST", "/model-versions/create"): _r(C.WRITE, "version.create"),
    ("GET", "/model-versions/get"): _r(C.READ),
    ("PATCH", "/model-versions/update"): _r(C.WRITE, "version.update"),
    ("DELETE", "/model-versions/delete"): _r(C.MAINTAIN, "version.delete"),
    ("POST", "/model-versions/transition-stage"): _r(C.MAINTAIN, "version.transition_stage"),
    ("GET", "/model-versions/search"): _r(C.READ),
    ("POST", "/model-versions/search"): _r(C.READ),
    ("GET", "/model-versions/get-download-uri"): _r(C.READ),
    ("POST", "/model-versions/set-tag"): _r(C.WRITE, "version.set_tag"),
    ("DELETE", "/model-versions/delete-tag"): _r(C.WRITE, "version.delete_tag"),
    ("GET", "/server-info"): _r(C.READ),
    # webhooks: their URLs and deliveries are for maintainers (changes audited by the service)
    ("POST", "/webhooks"): _r(C.MAINTAIN),
    ("GET", "/webhooks"): _r(C.MAINTAIN),
    ("GET", "/webhooks/{webhook_id}"): _r(C.MAINTAIN),
    ("PATCH", "/webhooks/{webhook_id}"): _r(C.MAINTAIN),
    ("DELETE", "/webhooks/{webhook_id}"): _r(C.MAINTAIN),
    ("POST", "/webhooks/{webhook_id}/test"): _r(C.MAINTAIN),
    # run artifacts through the tracking API
    ("GET", "/artifacts/list"): _r(C.READ),
    ("GET", "/get-artifact"): _r(C.DOWNLOAD),
    # MLflow's web UI: the datasets of experiments, uploads into a candidate's files
    ("POST", "/experiments/search-datasets"): _r(C.READ),
    ("POST", "/upload-artifact"): _r(C.WRITE, quota=True),
}

ARTIFACTS: dict[tuple[str, str], Rule] = {
    ("PUT", "/artifacts/{path:anypath}"): _r(C.WRITE, quota=True),
    ("GET", "/artifacts/{path:anypath}"): _r(C.DOWNLOAD),
    ("DELETE", "/artifacts/{path:anypath}"): _r(C.WRITE),
    ("GET", "/artifacts"): _r(C.READ),
    ("POST", "/mpu/create/{path:anypath}"): _r(C.WRITE, quota=True),
    ("POST", "/mpu/complete/{path:anypath}"): _r(C.WRITE),
    ("POST", "/mpu/abort/{path:anypath}"): _r(C.WRITE),
    ("GET", "/presigned/{path:anypath}"): _r(C.DOWNLOAD),
}

_PACKAGE = "/packages/{name}/{version}"
_MODEL = "/models/{name}"
_PROJECT = "/projects/{project}"

NATIVE: dict[tuple[str, str], Rule] = {
    ("GET", "/packages"): _r(C.READ),
    ("GET", _PACKAGE): _r(C.READ),
    ("DELETE", _PACKAGE): _r(C.MAINTAIN, "package.delete"),
    ("GET", _PACKAGE + "/files"): _r(C.READ),
    ("PUT", _PACKAGE + "/files/{path:anypath}"): _r(C.WRITE, quota=True),
    ("GET", _PACKAGE + "/files/{path:anypath}"): _r(C.DOWNLOAD),
    ("DELETE", _PACKAGE + "/files/{path:anypath}"): _r(C.WRITE),
    ("GET", _PACKAGE + "/archive"): _r(C.DOWNLOAD),
    ("POST", _PACKAGE + "/publish"): _r(C.WRITE, "package.publish"),
    ("GET", "/models"): _r(C.READ),
    ("GET", _MODEL): _r(C.READ),
    ("PUT", _MODEL + "/card"): _r(C.MAINTAIN, "model.card"),
    ("GET", _MODEL + "/versions"): _r(C.READ),
    ("POST", _MODEL + "/versions"): _r(C.WRITE, "version.promote"),
    ("GET", _MODEL + "/versions/{ref}"): _r(C.READ),
    ("GET", _MODEL + "/versions/{ref}/archive"): _r(C.DOWNLOAD),
    ("GET", _MODEL + "/versions/{ref}/files/{path:anypath}"): _r(C.DOWNLOAD),
    ("PUT", _MODEL + "/aliases/{alias}"): _r(C.MAINTAIN, "alias.set"),
    ("DELETE", _MODEL + "/aliases/{alias}"): _r(C.MAINTAIN, "alias.delete"),
    ("GET", _MODEL + "/aliases/{alias}/history"): _r(C.READ),
    ("GET", "/merge-requests"): _r(C.READ),
    ("GET", "/openapi.json"): _r(C.READ),
    # importing another tracker's history (ids, times and lifecycle as they were)
    ("PUT", "/imports/experiments/{source_id}"): _r(C.MAINTAIN),
    ("PUT", "/imports/runs/{run_id}"): _r(C.MAINTAIN),
    ("POST", "/imports/runs"): _r(C.MAINTAIN),
    ("POST", "/imports/runs/{run_id}/metrics"): _r(C.MAINTAIN),
    ("POST", "/imports/runs/{run_id}/metric-series"): _r(C.MAINTAIN),
    ("PUT", "/imports/logged-models/{model_id}"): _r(C.MAINTAIN),
    ("PUT", "/imports/models/{name}"): _r(C.MAINTAIN),
    ("PUT", "/imports/models/{name}/versions/{version}"): _r(C.MAINTAIN),
    # access: projects, members, tokens, users, audit log (changes are audited by the services)
    ("GET", "/me"): _r(C.CALLER),
    ("GET", "/projects"): _r(C.USER),
    ("POST", "/projects"): _r(C.USER),
    ("GET", _PROJECT): _r(C.READ),
    ("PATCH", _PROJECT): _r(C.OWN),
    ("DELETE", _PROJECT): _r(C.OWN),
    ("GET", _PROJECT + "/members"): _r(C.READ),
    ("PUT", _PROJECT + "/members/{user}"): _r(C.MAINTAIN),
    ("DELETE", _PROJECT + "/members/{user}"): _r(C.MAINTAIN),
    ("GET", _PROJECT + "/tokens"): _r(C.MAINTAIN),
    ("POST", _PROJECT + "/tokens"): _r(C.MAINTAIN),
    ("DELETE", _PROJECT + "/tokens/{token_id}"): _r(C.MAINTAIN),
    ("GET", _PROJECT + "/audit"): _r(C.MAINTAIN),
    ("GET", "/tokens"): _r(C.USER),
    ("POST", "/tokens"): _r(C.USER),
    ("DELETE", "/tokens/{token_id}"): _r(C.USER),
    ("GET", "/users"): _r(C.ADMIN),
    ("POST", "/users"): _r(C.ADMIN),
    ("GET", "/users/{user}"): _r(C.ADMIN),
    ("PATCH", "/users/{user}"): _r(C.ADMIN),
    ("GET", "/audit"): _r(C.ADMIN),
    # webhooks and their deliveries: for maintainers, like MLflow's webhook routes
    ("GET", "/webhooks"): _r(C.MAINTAIN),
    ("GET", "/webhooks/{webhook_id}"): _r(C.MAINTAIN),
    ("GET", "/webhooks/{webhook_id}/deliveries"): _r(C.MAINTAIN),
}

#: routes outside the API families
TOP: dict[tuple[str, str], Rule] = {
    ("GET", "/health"): _r(C.PUBLIC),
    ("GET", "/"): _r(C.USER),
    ("GET", "/version"): _r(C.CALLER),
    ("GET", "/login"): _r(C.PUBLIC),
    ("POST", "/login"): _r(C.PUBLIC, forms=True),
    ("POST", "/logout"): _r(C.USER, forms=True),
    ("GET", "/static/{name}"): _r(C.PUBLIC),
    # the web UI (forms check the session's CSRF token themselves)
    ("GET", "/ui/experiments"): _r(C.READ),
    ("GET", "/ui/experiments/{experiment_id}"): _r(C.READ),
    ("GET", "/ui/experiments/{experiment_id}/candidates.csv"): _r(C.READ),
    ("GET", "/ui/experiments/{experiment_id}/charts"): _r(C.READ),
    ("GET", "/ui/selection"): _r(C.READ),
    ("GET", "/ui/models"): _r(C.READ),
    ("GET", "/ui/models/{name}"): _r(C.READ),
    ("GET", "/ui/models/{name}/versions/{ref}"): _r(C.READ),
    ("POST", "/ui/models/{name}/aliases"): _r(C.MAINTAIN, "alias.set", forms=True),
    ("POST", "/ui/models/{name}/card"): _r(C.MAINTAIN, "model.card", forms=True),
    ("POST", "/ui/models/{name}/key-metric"): _r(C.MAINTAIN, "model.key_metric", forms=True),
    ("GET", "/ui/promote"): _r(C.WRITE),
    ("POST", "/ui/promote"): _r(C.WRITE, "version.promote", forms=True),
    ("GET", "/ui/runs/{run_id}"): _r(C.READ),
    ("GET", "/ui/runs/{run_id}/files/{path:anypath}"): _r(C.DOWNLOAD),
    ("GET", "/ui/runs/{run_id}/raw/{path:anypath}"): _r(C.DOWNLOAD),
    ("GET", "/ui/compare"): _r(C.READ),
    ("GET", "/ui/charts/data"): _r(C.READ),
    ("GET", "/ui/link"): _r(C.READ),
    ("GET", "/ui/logged-models/{model_id}"): _r(C.READ),
    ("GET", "/ui/merge-requests"): _r(C.READ),
    ("GET", "/ui/merge-requests/candidates"): _r(C.READ),
    ("GET", "/ui/merge-requests/compare"): _r(C.READ),
    # webhooks (the services audit every change)
    ("GET", "/ui/webhooks"): _r(C.MAINTAIN),
    ("POST", "/ui/webhooks"): _r(C.MAINTAIN, forms=True),
    ("GET", "/ui/webhooks/{webhook_id}"): _r(C.MAINTAIN),
    ("POST", "/ui/webhooks/{webhook_id}/test"): _r(C.MAINTAIN, forms=True),
    ("POST", "/ui/webhooks/{webhook_id}/status"): _r(C.MAINTAIN, forms=True),
    ("POST", "/ui/webhooks/{webhook_id}/delete"): _r(C.MAINTAIN, forms=True),
    # MLflow's UI asks for run artifacts and model versions' files here
    ("GET", "/get-artifact"): _r(C.DOWNLOAD),
    ("GET", "/model-versions/get-artifact"): _r(C.DOWNLOAD),
}


def rule_for(method: str, path: str) -> Rule | None:
    """The rule of one route (its path template as registered) and method."""
    for family in ARTIFACT_FAMILIES:
        if path.startswith(family):
            return ARTIFACTS.get((method, path[len(family) :]))
    for family in MLFLOW_FAMILIES:
        if path.startswith(family + "/"):
            return MLFLOW.get((method, path[len(family) :]))
    if path.startswith(NATIVE_FAMILY + "/"):
        return NATIVE.get((method, path[len(NATIVE_FAMILY) :]))
    return TOP.get((method, path))
