"""Projects are sealed from each other, on SQLite and PostgreSQL.

Projects ``alpha`` and ``bravo`` both hold data: an experiment, a run with a param, metrics, a
tag and files, a logged model with a file, a registered model with a version and an alias, and
a native package. Two principals that may act only in ``alpha`` — a maintainer token of the
project, and the personal token of ``alpha``'s owner, who is a member of nothing else — try
every read, search, list, download and write against ``bravo``'s ids and names:

* through ``bravo``'s URL: each answer is byte for byte the answer for a project that does not
  exist (404);
* through ``alpha``'s URL with ``bravo``'s ids: each answer is the answer for ids that do not
  exist (404, 403, or an empty search result), and names none of ``bravo``'s data;

``alpha``'s own searches list ``alpha``'s data and never ``bravo``'s; and afterwards ``bravo``
is exactly as before, read with an admin token (experiments, runs, params, metrics and their
history, files and their bytes, logged models, models, versions, aliases, packages, members,
tokens, audit log).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from tests.integration.auth_world import (
    ARTIFACTS,
    MLFLOW,
    NATIVE,
    Candidate,
    Yard,
    error_code,
    make_candidate,
    yard,
)

__all__ = ["yard"]  # the fixture, shared with the other authentication tests

A, B, NOWHERE = "alpha", "bravo", "no-such-project"


@dataclass
class World:
    yard: Yard
    a: Candidate
    b: Candidate
    #: principals confined to alpha: name -> token
    principals: dict[str, str]
    before: dict[str, Any] = field(default_factory=dict)


def snapshot(yard: Yard, project: str) -> dict[str, Any]:
    """Everything in a project, read with the admin token."""

    def get(where: str, **params: Any) -> Any:
        return yard.ok("GET", where, project=project, params=params)

    def post(where: str, body: dict[str, Any]) -> Any:
        return yard.ok("POST", where, project=project, json=body)

    out: dict[str, Any] = {}
    experiments = post(f"{MLFLOW}/experiments/search", {"max_results": 1000, "view_type": "ALL"})[
        "experiments"
    ]
    out["experiments"] = experiments
    ids = [e["experiment_id"] for e in experiments]
    runs = post(
        f"{MLFLOW}/runs/search",
        {"experiment_ids": ids, "run_view_type": "ALL", "max_results": 1000},
    ).get("runs", [])
    out["runs"] = runs
    files: dict[str, bytes] = {}
    for run in runs:
        run_id = run["info"]["run_id"]
        for metric in run["data"].get("metrics", []):
            out[f"history {run_id} {metric['key']}"] = get(
                f"{MLFLOW}/metrics/get-history", run_id=run_id, metric_key=metric["key"]
            )
        folders = [""]
        while folders:
            listing = get(f"{MLFLOW}/artifacts/list", run_id=run_id, path=folders.pop())
            for entry in listing.get("files", []):
                if entry["is_dir"]:
                    folders.append(entry["path"])
                else:
                    files[f"{run_id}/{entry['path']}"] = yard.ok(
                        "GET",
                        f"{MLFLOW}/get-artifact",
                        project=project,
                        params={"run_id": run_id, "path": entry["path"]},
                    )
    out["files"] = files
    logged = post(f"{MLFLOW}/logged-models/search", {"experiment_ids": ids}).get("models", [])
    out["logged models"] = logged
    for model in logged:
        info = model["info"]
        out[f"logged file {info['model_id']}"] = yard.ok(
            "GET",
            f"{ARTIFACTS}/{info['experiment_id']}/models/{info['model_id']}/artifacts/MLmodel",
            project=project,
        )
    models = get(f"{MLFLOW}/registered-models/search", max_results=1000)
    out["models"] = models
    for model in models.get("registered_models", []):
        out[f"model {model['name']}"] = get(f"{MLFLOW}/registered-models/get", name=model["name"])
    out["versions"] = get(f"{MLFLOW}/model-versions/search", max_results=1000)
    packages = get(f"{NATIVE}/packages")
    out["packages"] = packages
    for package in packages["packages"]:
        where = f"{NATIVE}/packages/{package['name']}/{package['version']}"
        listed = get(f"{where}/files")
        out[f"package {where}"] = listed
        for item in listed["files"]:
            out[f"package file {where}/{item['path']}"] = yard.ok(
                "GET", f"{where}/files/{item['path']}", project=project
            )
    out["native models"] = get(f"{NATIVE}/models")
    out["project"] = yard.ok("GET", f"{NATIVE}/projects/{project}")
    out["members"] = yard.members(project)
    out["tokens"] = yard.ok("GET", f"{NATIVE}/projects/{project}/tokens")
    out["audit"] = yard.ok("GET", f"{NATIVE}/projects/{project}/audit", params={"limit": 1000})
    return out


@pytest.fixture(scope="module")
def world(yard: Yard) -> World:
    yard.project(A)
    yard.project(B)
    ann = yard.user("ann")
    yard.member(A, "ann", "owner")
    created = yard.ok(
        "POST", f"{NATIVE}/projects/{A}/tokens", json={"name": "ci", "role": "maintainer"}
    )
    assert created["token"]["role"] == "maintainer"
    a = make_candidate(yard, A, A)
    b = make_candidate(yard, B, B)
    world = World(yard, a, b, {"alpha project token": created["secret"], "alpha owner": ann})
    world.before = snapshot(yard, B)
    return world


# --------------------------------------------------------------------------------- probes


@dataclass(frozen=True)
class Probe:
    """One request against another project's data; strings hold ``{placeholders}``."""

    kind: str  # read | write: 404/403 | search: an (empty) answer | create: only through B's URL
    method: str
    path: str
    json: Any = None
    params: dict[str, str] | None = None
    data: bytes | None = None


def _r(method: str, path: str, **kwargs: Any) -> Probe:
    return Probe("read", method, path, **kwargs)


def _s(method: str, path: str, **kwargs: Any) -> Probe:
    return Probe("search", method, path, **kwargs)


def _w(method: str, path: str, **kwargs: Any) -> Probe:
    return Probe("write", method, path, **kwargs)


def _c(method: str, path: str, **kwargs: Any) -> Probe:
    return Probe("create", method, path, **kwargs)


RUN_FILE = ARTIFACTS + "/{exp}/{run}/artifacts/data/file.txt"
LOGGED_FILE = ARTIFACTS + "/{exp}/models/{logged}/artifacts/MLmodel"
PACKAGE = NATIVE + "/packages/{pkg}/{ver}"
MODEL = NATIVE + "/models/{model}"
PROJECT = NATIVE + "/projects/{project}"
RUN_AND_PATH = {"run_id": "{run}", "path": "data/file.txt"}
MODEL_V1 = {"name": "{model}", "version": "1"}

PROBES: list[Probe] = [
    # tracking reads and searches
    _r("GET", f"{MLFLOW}/experiments/get", params={"experiment_id": "{exp}"}),
    _r("GET", f"{MLFLOW}/experiments/get-by-name", params={"experiment_name": "{exp_name}"}),
    _s(
        "POST",
        f"{MLFLOW}/experiments/search",
        json={"max_results": 100, "filter": "name = '{exp_name}'"},
    ),
    _r("GET", f"{MLFLOW}/runs/get", params={"run_id": "{run}"}),
    _s("POST", f"{MLFLOW}/runs/search", json={"experiment_ids": ["{exp}"]}),
    _s("POST", f"{MLFLOW}/runs/search", json={"experiment_ids": ["{exp}"], "run_view_type": "ALL"}),
    _s("GET", f"{MLFLOW}/runs/search", params={"experiment_ids": "{exp}"}),
    _r(
        "GET", f"{MLFLOW}/metrics/get-history", params={"run_id": "{run}", "metric_key": "{metric}"}
    ),
    _r(
        "GET",
        f"{MLFLOW}/metrics/get-history-bulk-interval",
        params={"run_ids": "{run}", "metric_key": "{metric}", "max_results": "10"},
    ),
    # files
    _r("GET", f"{MLFLOW}/artifacts/list", params={"run_id": "{run}"}),
    _r("GET", f"{MLFLOW}/artifacts/list", params={"run_id": "{run}", "path": "data"}),
    _r("GET", f"{MLFLOW}/get-artifact", params=RUN_AND_PATH),
    _r("GET", "/get-artifact", params=RUN_AND_PATH),
    _r("GET", RUN_FILE),
    _r("GET", "/api/2.0/mlflow-artifacts/artifacts", params={"path": "{exp}/{run}/artifacts/data"}),
    _r("GET", LOGGED_FILE),
    # logged models
    _r("GET", MLFLOW + "/logged-models/{logged}"),
    _r("POST", f"{MLFLOW}/logged-models/search", json={"experiment_ids": ["{exp}"]}),
    # registry
    _r("GET", f"{MLFLOW}/registered-models/get", params={"name": "{model}"}),
    _s("GET", f"{MLFLOW}/registered-models/search", params={"filter": "name = '{model}'"}),
    _r("GET", f"{MLFLOW}/registered-models/get-latest-versions", params={"name": "{model}"}),
    _r("GET", f"{MLFLOW}/registered-models/alias", params={"name": "{model}", "alias": "{alias}"}),
    _r("GET", f"{MLFLOW}/model-versions/get", params=MODEL_V1),
    _s("GET", f"{MLFLOW}/model-versions/search", params={"filter": "name = '{model}'"}),
    _r("GET", f"{MLFLOW}/model-versions/get-download-uri", params=MODEL_V1),
    # a model version's files, by the registry path and as the packages behind them
    _r("GET", ARTIFACTS + "/registry/{model_key}/1/MLmodel"),
    _r("GET", "/api/2.0/mlflow-artifacts/artifacts", params={"path": "registry/{model_key}/1"}),
    _r("GET", NATIVE + "/packages/model-{model_key}/1/files/MLmodel"),
    _r("GET", NATIVE + "/packages/{run}/0/files/data/file.txt"),
    _r("GET", NATIVE + "/packages/{logged}/0/files/MLmodel"),
    # native packages and models
    _r("GET", PACKAGE),
    _r("GET", PACKAGE + "/files"),
    _r("GET", PACKAGE + "/files/weights.bin"),
    _r("GET", PACKAGE + "/archive"),
    _r("GET", MODEL),
    _r("GET", MODEL + "/versions"),
    _r("GET", MODEL + "/versions/1"),
    _r("GET", MODEL + "/versions/{alias}"),
    _r("GET", MODEL + "/versions/1/archive"),
    _r("GET", MODEL + "/aliases/{alias}/history"),
    # the project itself
    _r("GET", PROJECT),
    _r("GET", PROJECT + "/members"),
    _r("GET", PROJECT + "/tokens"),
    _r("GET", PROJECT + "/audit"),
    # tracking writes
    _w(
        "POST", f"{MLFLOW}/experiments/update", json={"experiment_id": "{exp}", "new_name": "taken"}
    ),
    _w("POST", f"{MLFLOW}/experiments/delete", json={"experiment_id": "{exp}"}),
    _w(
        "POST",
        f"{MLFLOW}/experiments/set-experiment-tag",
        json={"experiment_id": "{exp}", "key": "k", "value": "v"},
    ),
    _w("POST", f"{MLFLOW}/runs/create", json={"experiment_id": "{exp}", "run_name": "intruder"}),
    _w("POST", f"{MLFLOW}/runs/update", json={"run_id": "{run}", "status": "FAILED"}),
    _w("POST", f"{MLFLOW}/runs/delete", json={"run_id": "{run}"}),
    _w(
        "POST",
        f"{MLFLOW}/runs/log-metric",
        json={"run_id": "{run}", "key": "{metric}", "value": 99.0, "timestamp": 1, "step": 99},
    ),
    _w(
        "POST",
        f"{MLFLOW}/runs/log-parameter",
        json={"run_id": "{run}", "key": "{param}", "value": "changed"},
    ),
    _w("POST", f"{MLFLOW}/runs/set-tag", json={"run_id": "{run}", "key": "k", "value": "v"}),
    _w(
        "POST",
        f"{MLFLOW}/runs/log-batch",
        json={"run_id": "{run}", "params": [{"key": "new", "value": "v"}]},
    ),
    _w("PUT", RUN_FILE, data=b"overwritten"),
    _w("DELETE", RUN_FILE),
    _w("PUT", LOGGED_FILE, data=b"overwritten"),
    _w("PATCH", MLFLOW + "/logged-models/{logged}", json={"status": "LOGGED_MODEL_READY"}),
    _w("DELETE", MLFLOW + "/logged-models/{logged}"),
    _w(
        "PATCH",
        MLFLOW + "/logged-models/{logged}/tags",
        json={"tags": [{"key": "k", "value": "v"}]},
    ),
    # registry writes
    _w("POST", f"{MLFLOW}/registered-models/rename", json={"name": "{model}", "new_name": "taken"}),
    _w("PATCH", f"{MLFLOW}/registered-models/update", json={"name": "{model}", "description": "x"}),
    _w("DELETE", f"{MLFLOW}/registered-models/delete", json={"name": "{model}"}),
    _w(
        "POST",
        f"{MLFLOW}/registered-models/set-tag",
        json={"name": "{model}", "key": "k", "value": "v"},
    ),
    _w(
        "POST",
        f"{MLFLOW}/registered-models/alias",
        json={"name": "{model}", "alias": "{alias}", "version": "1"},
    ),
    _w("DELETE", f"{MLFLOW}/registered-models/alias", json={"name": "{model}", "alias": "{alias}"}),
    _w(
        "POST",
        f"{MLFLOW}/model-versions/create",
        json={"name": "{model}", "source": "runs:/{run}/model"},
    ),
    _w("PATCH", f"{MLFLOW}/model-versions/update", json={**MODEL_V1, "description": "x"}),
    _w("DELETE", f"{MLFLOW}/model-versions/delete", json=MODEL_V1),
    _w(
        "POST",
        f"{MLFLOW}/model-versions/transition-stage",
        json={**MODEL_V1, "stage": "Archived", "archive_existing_versions": False},
    ),
    _w("POST", f"{MLFLOW}/model-versions/set-tag", json={**MODEL_V1, "key": "k", "value": "v"}),
    # registering the other project's files as a version of one's own model
    _w(
        "POST",
        f"{MLFLOW}/model-versions/create",
        json={"name": "{own_model}", "source": "runs:/{run}/model", "run_id": "{run}"},
    ),
    _w(
        "POST",
        f"{MLFLOW}/model-versions/create",
        json={"name": "{own_model}", "source": "mlflow-artifacts:/{exp}/{run}/artifacts/model"},
    ),
    _w(
        "POST",
        f"{MLFLOW}/model-versions/create",
        json={"name": "{own_model}", "source": "models:/{logged}", "model_id": "{logged}"},
    ),
    _w("POST", NATIVE + "/models/{own_model}/versions", json={"candidate": "{run}"}),
    _w("POST", NATIVE + "/models/{own_model}/versions", json={"logged_model": "{logged}"}),
    # native writes
    _w("DELETE", PACKAGE),
    _w("DELETE", PACKAGE + "/files/weights.bin"),
    _w("POST", PACKAGE + "/publish"),
    _w("PUT", MODEL + "/card", json={"markdown": "defaced"}),
    _w("PUT", MODEL + "/aliases/{alias}", json={"version": "1"}),
    _w("DELETE", MODEL + "/aliases/{alias}"),
    _w("POST", MODEL + "/versions", json={"candidate": "{run}"}),
    # the project itself: rename, delete, join it, mint a token for it
    _w("PATCH", PROJECT, json={"name": "taken"}),
    _w("DELETE", PROJECT),
    _w("PUT", PROJECT + "/members/ann", json={"role": "owner"}),
    _w("DELETE", PROJECT + "/members/admin"),
    _w("POST", PROJECT + "/tokens", json={"name": "backdoor", "role": "maintainer"}),
    # creating things: in one's own project that is fine, in another one it is not
    _c("PUT", PACKAGE + "/files/intruder.bin", data=b"intruder"),
    _c("POST", f"{MLFLOW}/experiments/create", json={"name": "intruder"}),
    _c("POST", f"{MLFLOW}/registered-models/create", json={"name": "intruder"}),
]


def values_of(c: Candidate, project: str, own_model: str) -> dict[str, str]:
    return {
        "exp": c.exp,
        "exp_name": c.exp_name,
        "run": c.run,
        "metric": c.metric,
        "param": c.param,
        "logged": c.logged,
        "model": c.model,
        "model_key": c.model_key,
        "alias": c.alias,
        "pkg": c.pkg,
        "ver": c.pkg_version,
        "project": project,
        "own_model": own_model,
    }


def fake_values(own_model: str) -> dict[str, str]:
    """Ids and names of the same shapes that exist nowhere."""
    return {
        "exp": "987654321",
        "exp_name": "nowhere-experiment",
        "run": uuid.uuid4().hex,
        "metric": "nowhere_metric",
        "param": "nowhere_param",
        "logged": f"m-{uuid.uuid4().hex}",
        "model": "nowhere-registered-model",
        "model_key": "987654",
        "alias": "nowhere_alias",
        "pkg": "nowhere-package",
        "ver": "1.0.0",
        "project": NOWHERE,
        "own_model": own_model,
    }


def fill(template: Any, values: dict[str, str]) -> Any:
    if isinstance(template, str):
        return template.format_map(values)
    if isinstance(template, dict):
        return {k: fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, values) for v in template]
    return template


def placeholders(probe: Probe) -> set[str]:
    """The names of the values a probe sends."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, str):
            found.update(re.findall(r"\{(\w+)\}", node))
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk([probe.path, probe.json, probe.params])
    return found


def send(
    yard: Yard, token: str, project: str, probe: Probe, values: dict[str, str]
) -> requests.Response:
    return yard.request(
        probe.method,
        fill(probe.path, values),
        token,
        project=project,
        json=fill(probe.json, values),
        params=fill(probe.params, values),
        data=probe.data,
    )


def normalized(response: requests.Response, values: dict[str, str]) -> tuple[int, str]:
    """Status and body with the ids and names the request sent replaced by their names."""
    body = response.text
    for key, value in sorted(values.items(), key=lambda kv: -len(kv[1])):
        body = re.sub(rf"(?<![0-9A-Za-z_]){re.escape(value)}(?![0-9A-Za-z_])", f"<{key}>", body)
    return response.status_code, body


def assert_no_leak(response: requests.Response, c: Candidate, sent: set[str], where: str) -> None:
    for secret in c.secrets():
        if secret in sent:
            continue  # the caller's own words echoed back tell them nothing
        assert secret not in response.text, f"{where} leaks {secret!r}: {response.text[:300]}"


def test_the_probes_find_the_data_for_someone_who_may_see_it(world: World) -> None:
    """The reads and searches below are real requests: an admin gets bravo's data with them."""
    values = values_of(world.b, B, world.a.model)
    for probe in PROBES:
        if probe.kind not in ("read", "search"):
            continue
        response = send(world.yard, world.yard.admin, B, probe, values)
        where = f"{probe.method} {probe.path}"
        assert response.status_code == 200, (where, response.text)
        assert response.content.strip() not in (b"", b"{}"), where


@pytest.mark.parametrize("who", ["alpha project token", "alpha owner"])
def test_another_project_looks_like_no_project_at_all(world: World, who: str) -> None:
    yard, token = world.yard, world.principals[who]
    own = world.a.model
    for probe in PROBES:
        values = values_of(world.b, B, own)
        sent = {values[name] for name in placeholders(probe)}
        where = f"{who}: {probe.method} {probe.path} via /projects/{B}"
        through_b = send(yard, token, B, probe, values)
        through_nowhere = send(yard, token, NOWHERE, probe, {**values, "project": NOWHERE})
        assert through_b.status_code == 404, (where, through_b.text)
        assert normalized(through_b, {"project": B}) == normalized(
            through_nowhere, {"project": NOWHERE}
        ), where
        assert_no_leak(through_b, world.b, sent, where)


@pytest.mark.parametrize("who", ["alpha project token", "alpha owner"])
def test_another_projects_ids_do_not_resolve_in_ones_own_project(world: World, who: str) -> None:
    yard, token = world.yard, world.principals[who]
    own = world.a.model
    for probe in PROBES:
        if probe.kind == "create":
            continue
        values = values_of(world.b, B, own)
        fakes = fake_values(own)
        sent = {values[name] for name in placeholders(probe)}
        where = f"{who}: {probe.method} {probe.path} via /projects/{A} with {B}'s ids"
        with_b = send(yard, token, A, probe, values)
        with_fakes = send(yard, token, A, probe, fakes)
        if probe.kind == "search":
            assert with_b.status_code == 200, (where, with_b.text)
        else:
            assert with_b.status_code in (403, 404), (where, with_b.status_code, with_b.text)
        assert error_code(with_b) != "ENDPOINT_NOT_FOUND", where
        assert normalized(with_b, values) == normalized(with_fakes, fakes), where
        assert_no_leak(with_b, world.b, sent, where)


@pytest.mark.parametrize("who", ["alpha project token", "alpha owner"])
def test_searches_and_lists_in_ones_own_project_show_only_its_data(world: World, who: str) -> None:
    yard, token = world.yard, world.principals[who]
    a, b = world.a, world.b

    def ok(method: str, path: str, **kwargs: Any) -> requests.Response:
        response = yard.request(method, path, token, project=A, **kwargs)
        assert response.status_code == 200, (path, response.text)
        assert_no_leak(response, b, set(), f"{who}: {method} {path}")
        return response

    experiments = ok("POST", f"{MLFLOW}/experiments/search", json={"max_results": 1000})
    assert a.exp_name in {e["name"] for e in experiments.json()["experiments"]}
    runs = ok("POST", f"{MLFLOW}/runs/search", json={"experiment_ids": [a.exp, b.exp]})
    assert [r["info"]["run_id"] for r in runs.json()["runs"]] == [a.run]
    everything = ok(
        "POST",
        f"{MLFLOW}/runs/search",
        json={"experiment_ids": [e["experiment_id"] for e in experiments.json()["experiments"]]},
    )
    assert [r["info"]["run_id"] for r in everything.json()["runs"]] == [a.run]
    logged = ok("POST", f"{MLFLOW}/logged-models/search", json={"experiment_ids": [a.exp]})
    assert [m["info"]["model_id"] for m in logged.json()["models"]] == [a.logged]
    models = ok("GET", f"{MLFLOW}/registered-models/search", params={"max_results": 1000})
    assert [m["name"] for m in models.json()["registered_models"]] == [a.model]
    versions = ok("GET", f"{MLFLOW}/model-versions/search", params={"max_results": 1000})
    assert {v["name"] for v in versions.json()["model_versions"]} == {a.model}
    packages = ok("GET", f"{NATIVE}/packages")
    assert a.pkg in {p["name"] for p in packages.json()["packages"]}
    native_models = ok("GET", f"{NATIVE}/models")
    assert [m["name"] for m in native_models.json()["models"]] == [a.model]
    listing = ok("GET", f"{MLFLOW}/artifacts/list", params={"run_id": a.run, "path": "data"})
    assert [f["path"] for f in listing.json()["files"]] == ["data/file.txt"]
    ok("GET", f"{MLFLOW}/get-artifact", params={"run_id": a.run, "path": "data/file.txt"})
    if who == "alpha owner":
        projects = yard.request("GET", f"{NATIVE}/projects", token)
        assert projects.status_code == 200
        assert [p["name"] for p in projects.json()["projects"]] == [A]
    else:  # a project token is no person: it has no list of projects
        assert yard.request("GET", f"{NATIVE}/projects", token).status_code == 403
    # the default project is another project too
    default = yard.mlflow("POST", "experiments/search", token, json={"max_results": 10})
    assert default.status_code == 404


def test_the_other_project_is_unchanged(world: World) -> None:
    """Last in this module: every probe above, by both principals, left bravo as it was."""
    after = snapshot(world.yard, B)
    assert after.keys() == world.before.keys()
    for key, value in world.before.items():
        assert after[key] == value, key
    assert world.before["files"][f"{world.b.run}/data/file.txt"] == world.b.file_bytes
    projects = world.yard.cli("admin", "projects", "list")
    assert not re.search(r"^(taken|intruder)\t", projects, re.MULTILINE)
