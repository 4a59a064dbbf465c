"""The native access API on a server with authentication: users (admins), projects and their
members, project and personal tokens, scopes, the audit log, renames and deletes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests.conftest import (
    BACKENDS,
    Server,
    _drop_pg_database,
    _session_backend,
    run_cli,
)

PASSWORD = "correct horse battery"
DAY_MS = 86_400_000
SEARCH = "/experiments/search?max_results=10"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


@pytest.fixture(scope="module", params=BACKENDS)
def auth_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, str]]:
    """A server with authentication on (MODELYARD_AUTH, the environment form of --auth, so
    that ``run_cli`` gets only storage options) and the token of its first admin, made by the
    CLI."""
    kind = request.param
    backend, pg_name = _session_backend(kind, tmp_path_factory.mktemp(f"access-{kind}"))
    srv = Server(backend, env={"MODELYARD_AUTH": "1"})
    try:
        made = run_cli(srv, "admin", "users", "create", "root", "--admin")
        assert made.returncode == 0, made.stderr
        yield srv, made.stdout.strip()
    finally:
        srv.stop()
        if pg_name:
            _drop_pg_database(pg_name)


@dataclass
class Person:
    name: str
    token: str
    http: httpx.Client


@dataclass
class Yard:
    server: Server
    root: httpx.Client
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, token: str | None) -> httpx.Client:
        headers = {} if token is None else {"authorization": f"Bearer {token}"}
        made = httpx.Client(base_url=f"{self.server.url}/api/v1", headers=headers, timeout=60)
        self.clients.append(made)
        return made

    def person(self, prefix: str = "user", *, admin: bool = False) -> Person:
        """A user an admin creates through the API (no token comes with it), with a first
        personal token from the CLI."""
        name = unique(prefix)
        made = self.root.post("/users", json={"name": name, "password": PASSWORD, "admin": admin})
        assert made.status_code == 201, made.text
        token = run_cli(self.server, "admin", "tokens", "create", "--user", name)
        assert token.returncode == 0, token.stderr
        return Person(name, token.stdout.strip(), self.client(token.stdout.strip()))

    def mlflow(self, token: str, method: str, path: str, **kwargs: object) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.server.url}{path}",
            headers={"authorization": f"Bearer {token}"},
            timeout=60,
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture
def yard(auth_server: tuple[Server, str]) -> Iterator[Yard]:
    srv, root_token = auth_server
    with httpx.Client(
        base_url=f"{srv.url}/api/v1",
        headers={"authorization": f"Bearer {root_token}"},
        timeout=60,
    ) as root:
        made = Yard(srv, root)
        yield made
        for client in made.clients:
            client.close()


def new_project(person: Person) -> str:
    name = unique("proj")
    made = person.http.post("/projects", json={"name": name})
    assert made.status_code == 201, made.text
    return name


# Users ------------------------------------------------------------------------------------------


def test_me(yard: Yard) -> None:
    me = yard.root.get("/me").json()
    assert me["user"] == {"name": "root", "is_admin": True}
    assert me["anonymous"] is False
    assert me["token"]["user"] == "root"
    assert me["token"]["active"] is True
    assert yard.client(None).get("/me").status_code == 401
    assert yard.client("myd_" + "x" * 40).get("/me").status_code == 401


def test_admin_creates_users(yard: Yard) -> None:
    name = unique("alice")
    made = yard.root.post("/users", json={"name": name})
    assert made.status_code == 201, made.text
    assert set(made.json()) == {"user"}  # no token is handed out
    user = made.json()["user"]
    assert (user["name"], user["is_admin"], user["disabled"], user["has_password"]) == (
        name,
        False,
        False,
        False,
    )
    assert yard.root.get(f"/users/{name}").json()["user"] == user
    assert name in [u["name"] for u in yard.root.get("/users").json()["users"]]
    assert yard.root.get(f"/users/{unique('ghost')}").status_code == 404

    again = yard.root.post("/users", json={"name": name})
    assert (again.status_code, error_code(again)) == (409, "RESOURCE_ALREADY_EXISTS")
    for body in (
        {"name": "bad name"},
        {"name": ""},
        {},
        {"name": 7},
        {"name": unique("u"), "password": "short"},
        {"name": unique("u"), "password": 123456789012345},
        {"name": unique("u"), "admin": "yes"},
        {"name": unique("u"), "token": True},
    ):
        refused = yard.root.post("/users", json=body)
        assert (refused.status_code, error_code(refused)) == (400, "INVALID_PARAMETER_VALUE"), body

    changed = yard.root.patch(f"/users/{name}", json={"password": PASSWORD, "admin": True})
    assert changed.status_code == 200, changed.text
    assert changed.json()["user"]["has_password"] is True
    assert changed.json()["user"]["is_admin"] is True
    assert yard.root.patch(f"/users/{name}", json={}).status_code == 400
    assert yard.root.patch(f"/users/{name}", json={"disabled": 1}).status_code == 400
    assert yard.root.patch(f"/users/{unique('ghost')}", json={"admin": True}).status_code == 404


def test_admins_keep_themselves(yard: Yard) -> None:
    admin = yard.person("admin", admin=True)
    for body in ({"admin": False}, {"disabled": True}):
        refused = admin.http.patch(f"/users/{admin.name}", json=body)
        assert (refused.status_code, error_code(refused)) == (409, "RESOURCE_CONFLICT"), body
    assert admin.http.get("/me").json()["user"]["is_admin"] is True
    # another admin may do it
    demoted = yard.root.patch(f"/users/{admin.name}", json={"admin": False})
    assert demoted.json()["user"]["is_admin"] is False
    assert admin.http.get("/users").status_code == 403


def test_disabled_user_is_locked_out(yard: Yard) -> None:
    bob = yard.person("bob")
    assert bob.http.get("/me").status_code == 200
    disabled = yard.root.patch(f"/users/{bob.name}", json={"disabled": True})
    assert disabled.json()["user"]["disabled"] is True
    assert bob.http.get("/me").status_code == 401
    yard.root.patch(f"/users/{bob.name}", json={"disabled": False})
    assert bob.http.get("/me").status_code == 200


def test_only_admins_manage_users(yard: Yard) -> None:
    carol = yard.person("carol")
    for method, path, body in (
        ("GET", "/users", None),
        ("POST", "/users", {"name": unique("x")}),
        ("GET", f"/users/{carol.name}", None),
        ("PATCH", f"/users/{carol.name}", {"admin": True}),
        ("GET", "/audit", None),
    ):
        refused = carol.http.request(method, path, json=body)
        assert (refused.status_code, error_code(refused)) == (403, "PERMISSION_DENIED"), path
    assert carol.http.get("/me").json()["user"] == {"name": carol.name, "is_admin": False}
    events = yard.root.get("/audit", params={"action": "user."}).json()["events"]
    assert any(e["action"] == "user.create" and e["target"] == carol.name for e in events)
    assert all(e["project_id"] is None for e in events)


# Projects and members ---------------------------------------------------------------------------


def test_projects_and_tracking_uris(yard: Yard) -> None:
    alice = yard.person("alice")
    name = new_project(alice)
    made = next(p for p in alice.http.get("/projects").json()["projects"] if p["name"] == name)
    assert made["role"] == "owner"
    assert made["tracking_uri"] == f"{yard.server.url}/projects/{name}"
    got = alice.http.get(f"/projects/{name}").json()
    assert (got["role"], got["project"]["name"]) == ("owner", name)
    assert [m["user"] for m in alice.http.get(f"/projects/{name}/members").json()["members"]] == [
        alice.name
    ]
    # the admin sees every project, the default one at the bare URL
    listed = {p["name"]: p for p in yard.root.get("/projects").json()["projects"]}
    assert listed["default"]["tracking_uri"] == yard.server.url
    assert listed[name]["role"] == "owner"
    # others do not see it at all
    bob = yard.person("bob")
    assert name not in [p["name"] for p in bob.http.get("/projects").json()["projects"]]
    assert bob.http.get(f"/projects/{name}").status_code == 404
    assert bob.http.get(f"/projects/{name}/members").status_code == 404
    # the tracking URI works with the owner's token
    created = yard.mlflow(
        alice.token,
        "POST",
        f"/projects/{name}/api/2.0/mlflow/experiments/create",
        json={"name": "e1"},
    )
    assert created.status_code == 200, created.text
    again = alice.http.post("/projects", json={"name": name})
    assert (again.status_code, error_code(again)) == (409, "RESOURCE_ALREADY_EXISTS")
    for body in ({"name": "no spaces"}, {}, {"name": ["x"]}, {"name": "ok", "owner": "me"}):
        assert alice.http.post("/projects", json=body).status_code == 400, body


def test_members(yard: Yard) -> None:
    alice, bob, carol = yard.person("alice"), yard.person("bob"), yard.person("carol")
    name = new_project(alice)
    members = f"/projects/{name}/members"

    added = alice.http.put(f"{members}/{bob.name}", json={"role": "developer"})
    assert added.status_code == 200, added.text
    assert (added.json()["member"]["user"], added.json()["member"]["role"]) == (
        bob.name,
        "developer",
    )
    assert bob.http.get(f"/projects/{name}").json()["role"] == "developer"
    # a developer does not manage members
    assert bob.http.put(f"{members}/{carol.name}", json={"role": "guest"}).status_code == 403
    assert bob.http.delete(f"{members}/{bob.name}").status_code == 403

    assert alice.http.put(f"{members}/{carol.name}", json={"role": "maintainer"}).status_code == 200
    # a maintainer manages members, but only an owner appoints or removes owners
    promoted = carol.http.put(f"{members}/{bob.name}", json={"role": "maintainer"})
    assert promoted.json()["member"]["role"] == "maintainer"
    for refused in (
        carol.http.put(f"{members}/{bob.name}", json={"role": "owner"}),
        carol.http.put(f"{members}/{carol.name}", json={"role": "owner"}),
        carol.http.put(f"{members}/{alice.name}", json={"role": "guest"}),
        carol.http.delete(f"{members}/{alice.name}"),
    ):
        assert (refused.status_code, error_code(refused)) == (403, "PERMISSION_DENIED")

    # the last owner cannot leave or step down
    for refused in (
        alice.http.delete(f"{members}/{alice.name}"),
        alice.http.put(f"{members}/{alice.name}", json={"role": "maintainer"}),
    ):
        assert (refused.status_code, error_code(refused)) == (409, "RESOURCE_CONFLICT")
    assert alice.http.put(f"{members}/{carol.name}", json={"role": "owner"}).status_code == 200
    assert alice.http.delete(f"{members}/{alice.name}").json() == {}
    listed = {m["user"]: m["role"] for m in carol.http.get(members).json()["members"]}
    assert listed == {bob.name: "maintainer", carol.name: "owner"}
    assert alice.http.get(f"/projects/{name}").status_code == 404

    # bad input
    for body in ({"role": "king"}, {"role": 3}, {}, {"role": "guest", "extra": 1}):
        refused = carol.http.put(f"{members}/{bob.name}", json=body)
        assert (refused.status_code, error_code(refused)) == (400, "INVALID_PARAMETER_VALUE")
    assert carol.http.put(f"{members}/{unique('ghost')}", json={"role": "guest"}).status_code == 404
    assert carol.http.delete(f"{members}/{alice.name}").status_code == 404
    assert carol.http.delete(f"{members}/{bob.name}").json() == {}
    assert bob.http.get(f"/projects/{name}").status_code == 404


# Tokens -----------------------------------------------------------------------------------------


def test_project_tokens(yard: Yard) -> None:
    alice = yard.person("alice")
    name = new_project(alice)
    tokens = f"/projects/{name}/tokens"
    api = f"/projects/{name}/api/2.0/mlflow"

    made = alice.http.post(tokens, json={"name": "ci"})
    assert made.status_code == 201, made.text
    writer, secret = made.json()["token"], made.json()["secret"]
    assert (writer["role"], writer["scope"], writer["user"]) == ("developer", "write", None)
    expected = time.time() * 1000 + 365 * DAY_MS
    assert abs(writer["expires_at"] - expected) < DAY_MS
    reader = alice.http.post(tokens, json={"name": "dash", "scope": "read", "expires_in_days": 7})
    reader_secret = reader.json()["secret"]
    assert reader.json()["token"]["role"] == "reporter"
    assert reader.json()["token"]["expires_at"] < expected - 300 * DAY_MS

    # a project token is not a user: /me says so, the user routes refuse it
    who = yard.client(secret).get("/me")
    assert who.status_code == 200, who.text
    assert who.json()["user"] is None
    assert who.json()["token"]["name"] == "ci"
    logged = yard.mlflow(secret, "POST", f"{api}/experiments/create", json={"name": "ci-exp"})
    assert logged.status_code == 200, logged.text
    # a project token works in its project only and is not a user
    assert yard.mlflow(secret, "GET", "/api/2.0/mlflow" + SEARCH).status_code == 404
    assert yard.client(secret).get("/projects").status_code == 403
    assert yard.client(secret).post("/tokens", json={"name": "x"}).status_code == 403
    # a read-scoped token reads but cannot write
    found = yard.mlflow(reader_secret, "GET", f"{api}{SEARCH}")
    assert found.status_code == 200, found.text
    refused = yard.mlflow(reader_secret, "POST", f"{api}/experiments/create", json={"name": "r"})
    assert (refused.status_code, refused.json()["error_code"]) == (403, "PERMISSION_DENIED")

    listed = alice.http.get(tokens).json()["tokens"]
    assert [t["name"] for t in listed] == ["ci", "dash"]
    revoked = alice.http.delete(f"{tokens}/{writer['id']}")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["token"]["active"] is False
    assert yard.mlflow(secret, "GET", f"{api}{SEARCH}").status_code == 401
    assert yard.client(secret).get("/projects").status_code == 401

    # another project's token is not found here, nor is a personal token
    other = new_project(alice)
    foreign = alice.http.post(f"/projects/{other}/tokens", json={"name": "x"}).json()["token"]
    assert alice.http.delete(f"{tokens}/{foreign['id']}").status_code == 404
    personal = alice.http.get("/me").json()["token"]
    assert alice.http.delete(f"{tokens}/{personal['id']}").status_code == 404
    assert alice.http.get(f"/projects/{other}/tokens").json()["tokens"][0]["active"] is True

    for body in (
        {"name": "x", "role": "owner"},
        {"name": "x", "role": "king"},
        {"name": "x", "scope": "admin"},
        {"name": ""},
        {},
        {"name": "x", "expires_at": 1000},
        {"name": "x", "expires_at": "soon"},
        {"name": "x", "expires_in_days": 0},
        {"name": "x", "expires_in_days": True},
        {"name": "x", "expires_in_days": 10**30},
        {"name": "x", "expires_in_days": 1, "expires_at": 2**40},
        {"name": "x", "secret": "mine"},
    ):
        refused = alice.http.post(tokens, json=body)
        assert (refused.status_code, error_code(refused)) == (400, "INVALID_PARAMETER_VALUE"), body
    assert alice.http.delete(f"{tokens}/abc").status_code == 400
    assert alice.http.delete(f"{tokens}/99999999").status_code == 404
    assert alice.http.get(tokens).json()["tokens"][-1]["name"] == "dash"

    # tokens are for maintainers
    bob = yard.person("bob")
    alice.http.put(f"/projects/{name}/members/{bob.name}", json={"role": "developer"})
    assert bob.http.get(tokens).status_code == 403
    assert bob.http.post(tokens, json={"name": "mine"}).status_code == 403


def test_personal_tokens(yard: Yard) -> None:
    alice, bob = yard.person("alice"), yard.person("bob")
    made = alice.http.post("/tokens", json={"name": "reader", "scope": "read"})
    assert made.status_code == 201, made.text
    reader = made.json()["token"]
    assert (reader["user"], reader["project_id"], reader["scope"]) == (alice.name, None, "read")
    read_only = yard.client(made.json()["secret"])
    assert read_only.get("/me").json()["user"]["name"] == alice.name
    # a read-scoped token cannot write, not even to make tokens or projects
    assert read_only.post("/projects", json={"name": unique("p")}).status_code == 403
    assert read_only.post("/tokens", json={"name": "more"}).status_code == 403

    mine = alice.http.get("/tokens").json()["tokens"]
    assert {t["name"] for t in mine} == {"cli token", "reader"}
    assert all(t["user"] == alice.name for t in mine)
    # someone else's token is not found
    assert bob.http.delete(f"/tokens/{reader['id']}").status_code == 404
    assert read_only.get("/me").status_code == 200
    # nor is a project token
    name = new_project(alice)
    project_token = alice.http.post(f"/projects/{name}/tokens", json={"name": "p"}).json()
    assert alice.http.delete(f"/tokens/{project_token['token']['id']}").status_code == 404

    revoked = alice.http.delete(f"/tokens/{reader['id']}")
    assert revoked.json()["token"]["revoked_at"] is not None
    assert read_only.get("/me").status_code == 401
    assert alice.http.get("/me").status_code == 200

    for body in ({"name": "x", "role": "developer"}, {"name": 5}, {"name": "x", "scope": None}):
        refused = alice.http.post("/tokens", json=body)
        assert (refused.status_code, error_code(refused)) == (400, "INVALID_PARAMETER_VALUE"), body
    assert alice.http.delete("/tokens/-1").status_code == 400


# Audit log --------------------------------------------------------------------------------------


def test_project_audit_log(yard: Yard) -> None:
    alice, bob, carol = yard.person("alice"), yard.person("bob"), yard.person("carol")
    name = new_project(alice)
    alice.http.put(f"/projects/{name}/members/{bob.name}", json={"role": "developer"})
    alice.http.put(f"/projects/{name}/members/{carol.name}", json={"role": "maintainer"})
    token = alice.http.post(f"/projects/{name}/tokens", json={"name": "ci"}).json()["token"]
    carol.http.delete(f"/projects/{name}/tokens/{token['id']}")
    carol.http.delete(f"/projects/{name}/members/{bob.name}")

    audit = f"/projects/{name}/audit"
    answer = carol.http.get(audit)
    assert answer.status_code == 200, answer.text
    events = answer.json()["events"]
    assert answer.json()["next_before"] is None
    assert [e["action"] for e in events] == [
        "member.remove",
        "token.revoke",
        "token.create",
        "member.set",
        "member.set",
        "project.create",
    ]
    assert [e["actor"].split(" ")[0] for e in events] == [carol.name] * 2 + [alice.name] * 4
    assert events[0]["target"] == bob.name
    assert events[3]["details"]["role"] == "maintainer"
    assert all(e["address"] == "127.0.0.1" for e in events)

    members_only = carol.http.get(audit, params={"action": "member."}).json()["events"]
    assert [e["action"] for e in members_only] == ["member.remove", "member.set", "member.set"]
    first = carol.http.get(audit, params={"limit": 2}).json()
    assert [e["action"] for e in first["events"]] == ["member.remove", "token.revoke"]
    rest = carol.http.get(audit, params={"before": first["next_before"]}).json()["events"]
    assert [e["id"] for e in first["events"] + rest] == [e["id"] for e in events]

    # maintainers only; others do not even see the project
    alice.http.put(f"/projects/{name}/members/{bob.name}", json={"role": "developer"})
    assert bob.http.get(audit).status_code == 403
    assert yard.person("dave").http.get(audit).status_code == 404
    for params in ({"limit": "0"}, {"limit": "1001"}, {"limit": "x"}, {"before": "abc"}):
        refused = carol.http.get(audit, params=params)
        assert (refused.status_code, error_code(refused)) == (400, "INVALID_PARAMETER_VALUE")
    # project events stay out of the instance log
    instance = yard.root.get("/audit", params={"limit": 1000}).json()["events"]
    assert not any(e["target"] == name for e in instance)


# Rename and delete ------------------------------------------------------------------------------


def test_rename_and_delete_project(yard: Yard) -> None:
    alice, carol = yard.person("alice"), yard.person("carol")
    old = new_project(alice)
    alice.http.put(f"/projects/{old}/members/{carol.name}", json={"role": "maintainer"})
    token = alice.http.post(f"/projects/{old}/tokens", json={"name": "ci"}).json()["secret"]
    search = "/api/2.0/mlflow" + SEARCH

    new = unique("renamed")
    assert carol.http.patch(f"/projects/{old}", json={"name": new}).status_code == 403
    renamed = alice.http.patch(f"/projects/{old}", json={"name": new})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["project"]["tracking_uri"] == f"{yard.server.url}/projects/{new}"
    assert alice.http.get(f"/projects/{old}").status_code == 404
    assert yard.mlflow(alice.token, "GET", f"/projects/{old}{search}").status_code == 404
    assert alice.http.get(f"/projects/{new}").json()["project"]["name"] == new
    assert yard.mlflow(alice.token, "GET", f"/projects/{new}{search}").status_code == 200
    assert yard.mlflow(token, "GET", f"/projects/{new}{search}").status_code == 200

    taken = new_project(alice)
    assert alice.http.patch(f"/projects/{new}", json={"name": taken}).status_code == 409
    for body in ({"name": "bad/name"}, {}, {"name": new, "x": 1}):
        assert alice.http.patch(f"/projects/{new}", json=body).status_code == 400, body

    assert carol.http.delete(f"/projects/{new}").status_code == 403
    deleted = alice.http.delete(f"/projects/{new}")
    assert deleted.json() == {"deleted": new}
    assert alice.http.get(f"/projects/{new}").status_code == 404
    assert alice.http.delete(f"/projects/{new}").status_code == 404
    assert new not in [p["name"] for p in alice.http.get("/projects").json()["projects"]]
    assert yard.mlflow(alice.token, "GET", f"/projects/{new}{search}").status_code == 404
    assert yard.mlflow(token, "GET", f"/projects/{new}{search}").status_code == 401
    # the name is free again
    assert alice.http.post("/projects", json={"name": new}).status_code == 201
    # the default project stays
    assert yard.root.delete("/projects/default").status_code == 409


def test_bad_requests(yard: Yard) -> None:
    alice = yard.person("alice")
    name = new_project(alice)
    for method, path in (
        ("POST", "/projects"),
        ("POST", "/tokens"),
        ("PATCH", f"/projects/{name}"),
        ("PUT", f"/projects/{name}/members/{alice.name}"),
        ("POST", f"/projects/{name}/tokens"),
    ):
        for content in (b"{not json", b"[1, 2]", b'"text"'):
            answer = alice.http.request(
                method, path, content=content, headers={"content-type": "application/json"}
            )
            assert answer.status_code == 400, (method, path, content)
            assert error_code(answer) == "BAD_REQUEST"
    plain = alice.http.post("/projects", content=b"name=x", headers={"content-type": "text/plain"})
    assert plain.status_code == 400
    assert alice.http.request("PATCH", "/projects", json={}).status_code == 405
    assert alice.http.get(f"/projects/{name}/nothing").status_code == 404
    assert alice.http.get(f"/projects/{name}").json()["role"] == "owner"


def test_without_authentication(server: Server) -> None:
    """A server without --auth: the caller is anonymous and may do everything but own tokens."""
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=60) as http:
        assert http.get("/me").json() == {"user": None, "token": None, "anonymous": True}
        name = unique("anon")
        made = http.post("/projects", json={"name": name})
        assert made.status_code == 201, made.text
        assert made.json()["project"]["role"] == "owner"
        assert http.get(f"/projects/{name}/members").json() == {"members": []}
        assert http.get("/tokens").json() == {"tokens": []}
        refused = http.post("/tokens", json={"name": "mine"})
        assert (refused.status_code, error_code(refused)) == (403, "PERMISSION_DENIED")
        token = http.post(f"/projects/{name}/tokens", json={"name": "ci"})
        assert token.status_code == 201, token.text
        events = http.get(f"/projects/{name}/audit").json()["events"]
        assert [(e["action"], e["actor"]) for e in events] == [
            ("token.create", "anonymous"),
            ("project.create", "anonymous"),
        ]
        assert http.delete(f"/projects/{name}").json() == {"deleted": name}
