"""The native API's declarations: every route has one, the OpenAPI document made from them is
valid OpenAPI 3.1 and lists every route, and requests that break a declared rule get a 400
naming the field. Also: 405 answers say what is allowed, anywhere in the application."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from modelyard.api import ENDPOINTS, document
from modelyard.api.declare import Where
from modelyard.app import create_app
from modelyard.settings import Settings
from tests.conftest import Server

METHODS = {"get", "put", "post", "delete", "head", "patch", "options", "trace"}


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=60) as client:
        yield client


def error_of(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    return body["error"]  # type: ignore[no-any-return]


def app_routes(data_dir: Path) -> dict[str, set[str]]:
    """Every /api/v1 route of the application's router: OpenAPI path → methods."""
    app = create_app(Settings(data_dir=data_dir))
    out: dict[str, set[str]] = {}
    for route in app.routes:
        if isinstance(route, Route) and route.path.startswith("/api/v1/"):
            templated = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
            out.setdefault(templated, set()).update(m.lower() for m in route.methods or ())
    return out


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_every_route_is_declared_and_documented(tmp_path: Path) -> None:
    routes = app_routes(tmp_path)
    spec = document()
    documented: dict[str, set[str]] = {}
    for path, method, _operation in operations(spec):
        documented.setdefault(path, set()).add(method)
    declared: dict[str, set[str]] = {}
    for endpoint in ENDPOINTS:
        path = "/api/v1" + re.sub(r"\{(\w+):\w+\}", r"{\1}", endpoint.path)
        declared.setdefault(path, set()).add(endpoint.method.lower())
    assert len(routes) >= 25, "the router looks incomplete"
    assert set(routes) == set(declared) == set(documented)
    for path, methods in routes.items():
        # the router answers HEAD on every GET route; the document names it for downloads
        assert methods - {"head"} == declared[path], path
        assert declared[path] <= documented[path] <= methods, path


def test_the_document_is_valid_openapi_31() -> None:
    spec = document()
    assert spec["openapi"] == "3.1.0"
    validate(spec)  # raises on any violation of the OpenAPI 3.1 schema
    ids = [operation["operationId"] for _path, _method, operation in operations(spec)]
    assert len(ids) == len(set(ids))
    # every link names an operation that exists, with parameters it has
    by_id = {operation["operationId"]: operation for _p, _m, operation in operations(spec)}
    for _path, _method, operation in operations(spec):
        for reply in operation["responses"].values():
            for link in reply.get("links", {}).values():
                target = by_id[link["operationId"]]
                names = {p["name"] for p in target.get("parameters", [])}
                assert set(link["parameters"]) <= names, link


def test_every_operation_declares_what_the_gate_answers() -> None:
    for path, method, operation in operations(document()):
        statuses = set(operation["responses"])
        assert {"400", "401", "403"} <= statuses, (method, path)
        assert any(s.startswith("2") for s in statuses), (method, path)
        if path.startswith(("/api/v1/packages", "/api/v1/models")):
            assert "404" in statuses, (method, path)  # an unknown project
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                schema = parameter["schema"]
                assert schema.get("pattern") or schema.get("type") == "integer", (path, parameter)


def test_path_parameters_match_the_template() -> None:
    for endpoint in ENDPOINTS:
        in_path = set(re.findall(r"\{(\w+)(?::\w+)?\}", endpoint.path))
        declared = {p.wire for p in endpoint.fields if p.where is Where.PATH}
        assert in_path == declared, endpoint.path


def test_the_document_is_served(http: httpx.Client) -> None:
    response = http.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == document()


def test_documented_shapes_match_answers(http: httpx.Client) -> None:
    schemas = document()["components"]["schemas"]
    name = f"pkg-{uuid.uuid4().hex[:12]}"
    file = http.put(f"/packages/{name}/1/files/a.txt", content=b"a").json()
    assert set(file) == set(schemas["PackageFile"]["properties"])
    package = http.post(f"/packages/{name}/1/publish").json()
    assert set(package) == set(schemas["Package"]["properties"])
    error = http.get(f"/packages/{name}/9").json()
    assert set(error["error"]) == set(schemas["ErrorDetail"]["properties"])


# Validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "field"),
    [
        ("GET", "/packages", {"params": {"limit": "ten"}}, "limit"),
        ("GET", "/packages", {"params": {"limit": ""}}, "limit"),
        ("GET", "/models", {"params": {"order_by": "size"}}, "order_by"),
        ("GET", "/models", {"params": {"offset": "-1"}}, "offset"),
        ("GET", "/models/a%3Ab", {}, "name"),
        ("GET", "/models/churn/versions/0", {}, "ref"),
        ("GET", "/models/churn/versions/^x", {}, "ref"),
        ("PUT", "/models/churn/aliases/latest", {"json": {"version": 1}}, "alias"),
        ("PUT", "/models/churn/aliases/v1_4_0", {"json": {"version": 1}}, "alias"),
        ("PUT", "/models/churn/aliases/prod", {"json": {"version": 0}}, "version"),
        ("PUT", "/models/churn/aliases/prod", {"json": {}}, "version"),
        ("PUT", "/models/churn/card", {"json": {"markdown": 5}}, "markdown"),
        ("PUT", "/models/churn/card", {"json": {"markdown": "x", "extra": 1}}, "extra"),
        ("POST", "/models/churn/versions", {"json": {"bump": "huge"}}, "bump"),
        ("POST", "/models/churn/versions", {"json": {"candidate": "x"}}, "candidate"),
        ("POST", "/models/churn/versions", {"json": {"semver": "1.0"}}, "semver"),
        ("GET", "/models/churn/aliases/prod/history", {"params": {"at": "soon"}}, "at"),
        ("GET", "/packages/p/1/files/a%2500b", {}, "path"),
        ("PUT", "/packages/p/1/files/x", {"headers": {"x-checksum-sha256": "AB"}}, "X-Checksum"),
        ("POST", "/projects", {"json": {"name": 7}}, "name"),
        ("POST", "/tokens", {"json": {"name": "t", "expires_in_days": True}}, "expires_in_days"),
        ("POST", "/tokens", {"json": {"name": "t", "role": "guest"}}, "role"),
        ("GET", "/audit", {"params": {"before": "0"}}, "before"),
        ("DELETE", "/tokens/0", {}, "token_id"),
    ],
)
def test_a_broken_rule_is_a_400_naming_the_field(
    http: httpx.Client, method: str, path: str, kwargs: dict[str, Any], field: str
) -> None:
    response = http.request(method, path, **kwargs)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["code"] == "INVALID_PARAMETER_VALUE", error
    assert field in error["message"], error


def test_json_bodies_are_checked_before_anything_is_read(http: httpx.Client) -> None:
    for content in (b"{not json", b"[1, 2]", b'"text"'):
        response = http.put(
            "/models/churn/card", content=content, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400
        assert error_of(response)["code"] == "BAD_REQUEST"
    too_big = http.put(
        "/models/churn/card",
        content=b'{"markdown": "' + b"x" * (1024 * 1024) + b'"}',
        headers={"content-type": "application/json"},
    )
    assert too_big.status_code == 413
    assert error_of(too_big)["code"] == "RESOURCE_LIMIT_EXCEEDED"


def test_an_empty_filter_means_every_model(http: httpx.Client) -> None:
    every = http.get("/models").json()
    assert http.get("/models", params={"filter": ""}).json() == every
    assert http.get("/models", params={"filter": "", "order_by": ""}).json() == every
    refused = http.get("/models", params={"filter": "name = 5"})
    assert refused.status_code == 400  # a bad filter is refused even with no model to test
    assert error_of(refused)["code"] == "INVALID_PARAMETER_VALUE"
    refused = http.get("/models", params={"filter": "params.x = 'a'"})
    assert refused.status_code == 400


def test_models_are_paged_by_offset(http: httpx.Client, server: Server) -> None:
    prefix = f"page-{uuid.uuid4().hex[:8]}"
    for i in range(3):
        made = httpx.post(
            f"{server.url}/api/2.0/mlflow/registered-models/create",
            json={"name": f"{prefix}-{i}"},
            timeout=30,
        )
        assert made.status_code == 200, made.text
    query = {"filter": f"name LIKE '{prefix}%'", "limit": "2"}
    first = http.get("/models", params=query).json()
    assert [m["name"] for m in first["models"]] == [f"{prefix}-0", f"{prefix}-1"]
    assert first["next_offset"] == 2
    second = http.get("/models", params={**query, "offset": "2"}).json()
    assert [m["name"] for m in second["models"]] == [f"{prefix}-2"]
    assert second["next_offset"] is None


# 405 --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PATCH", "/api/v1/packages/p/1", {"GET", "HEAD", "DELETE"}),
        ("POST", "/api/v1/models/m/aliases/a", {"PUT", "DELETE"}),
        ("PUT", "/api/v1/projects", {"GET", "HEAD", "POST"}),
        ("DELETE", "/api/2.0/mlflow/experiments/search", {"GET", "HEAD", "POST"}),
        ("PUT", "/ajax-api/2.0/mlflow/runs/create", {"POST"}),
        ("PATCH", "/api/2.0/mlflow-artifacts/artifacts/a/b", {"GET", "HEAD", "PUT", "DELETE"}),
        ("POST", "/health", {"GET", "HEAD"}),
        ("OPTIONS", "/api/v1/models", {"GET", "HEAD"}),
    ],
)
def test_a_wrong_method_is_405_with_allow(
    server: Server, method: str, path: str, allowed: set[str]
) -> None:
    response = httpx.request(method, server.url + path, timeout=30)
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed
    body = response.json()
    if path.startswith("/api/v1/"):
        assert error_of(response)["code"] == "ENDPOINT_NOT_FOUND"
    else:
        assert body["error_code"] == "ENDPOINT_NOT_FOUND"
    prefixed = httpx.request(method, server.url + "/projects/default" + path, timeout=30)
    assert prefixed.status_code == 405
    assert prefixed.headers["allow"] == response.headers["allow"]
