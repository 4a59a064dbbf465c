"""The registry pages against live servers (SQLite and PostgreSQL): the models list, a model
(card, versions, aliases and their history), a version (files, lineage, downloads), promotion
from a candidate, the maintainers' alias and card forms, CSRF and roles on an ``--auth`` server,
and user-supplied text always escaped."""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from tests.conftest import Backend, Server

SCRIPT = "<script>alert(1)</script>"


class Form(HTMLParser):
    """The fields of a page's forms: inputs' values, selects' chosen options, textareas,
    and the action of every form."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.checked: dict[str, str] = {}
        self.options: dict[str, list[str]] = {}
        self.actions: list[str] = []
        self._select: str | None = None
        self._textarea: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.actions.append(a.get("action", ""))
        elif tag == "input" and a.get("type") == "radio":
            if "checked" in a:
                self.checked[a["name"]] = a["value"]
        elif tag == "input" and "name" in a:
            self.values[a["name"]] = a.get("value", "")
        elif tag == "select":
            self._select = a["name"]
            self.options[a["name"]] = []
        elif tag == "option" and self._select:
            self.options[self._select].append(a["value"])
            if "selected" in a:
                self.values[self._select] = a["value"]
        elif tag == "textarea":
            self._textarea = a["name"]
            self.values[a["name"]] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.values[self._textarea] += data


def no_raw_script(html: str) -> None:
    assert "<script" not in html.lower()


def section(html: str, element_id: str) -> str:
    """The element with that id, up to the end of its table, section or paragraph."""
    start = html.index(f'id="{element_id}"')
    ends = (html.find(f"</{tag}>", start) for tag in ("table", "section", "p"))
    end = min(i for i in ends if i > 0)
    return html[start:end]


def text_of(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", html))


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture
def candidate(client, experiment_id: str, tmp_path: Path) -> tuple[str, bytes]:  # type: ignore[no-untyped-def]
    """A run with an MLflow model folder, another file, a commit and CI tags."""
    import mlflow

    run_id = client.create_run(experiment_id, run_name="good-run").info.run_id
    weights = uuid.uuid4().bytes * 100
    client.set_tag(run_id, "mlflow.source.git.commit", "0123abcd")
    client.set_tag(run_id, "ci.pipeline_url", "https://ci.example/pipelines/42")
    client.set_tag(run_id, "ci.job_id", "javascript:alert(1)")
    mlflow.log_text("flavors: {}\n", "model/MLmodel", run_id=run_id)
    mlflow.log_text("hello\n", "notes/readme.txt", run_id=run_id)
    path = tmp_path / "weights.bin"
    path.write_bytes(weights)
    client.log_artifact(run_id, str(path), "model")
    return run_id, weights


def get(server: Server, path: str, **kwargs: Any) -> requests.Response:
    return requests.get(server.url + path, timeout=30, allow_redirects=False, **kwargs)


def post(server: Server, path: str, data: dict[str, str], **kwargs: Any) -> requests.Response:
    return requests.post(server.url + path, data=data, timeout=30, allow_redirects=False, **kwargs)


def promote(server: Server, run_id: str, **fields: str) -> requests.Response:
    """The promotion form as a browser would send it (the fields pre-filled, then ``fields``)."""
    query = {"run": run_id, "model": fields.get("model", "")}
    page = get(server, "/ui/promote", params=query)
    assert page.status_code == 200, page.text
    form = Form(page.text)
    data = {**form.values, "bump": form.checked["bump"], **fields}
    return post(server, "/ui/promote", data)


# ------------------------------------------------------------------------- auth-off server


def test_promote_list_model_and_version_pages(server: Server, client, candidate) -> None:  # type: ignore[no-untyped-def]
    run_id, weights = candidate
    name = f"ui-{uuid.uuid4().hex[:8]}"

    # the form: a new model starts at 1.0.0, the folder holding MLmodel is chosen
    page = get(server, "/ui/promote", params={"run": run_id})
    assert page.status_code == 200
    form = Form(page.text)
    assert form.values["semver"] == "1.0.0"
    assert form.values["path"] == "model"
    assert set(form.options["path"]) == {"", "model", "notes"}
    assert form.checked["bump"] == "patch"
    assert "/ui/promote" in form.actions
    assert "good-run" in page.text

    done = promote(server, run_id, new_name=name, description="first cut")
    assert done.status_code == 303, done.text
    assert done.headers["location"] == f"/ui/models/{name}/versions/1?created=1"
    registered = client.get_model_version(name, "1")
    assert registered.run_id == run_id
    assert registered.description == "first cut"

    landed = get(server, done.headers["location"])
    assert landed.status_code == 200
    assert "was created" in landed.text
    files = text_of(section(landed.text, "files"))
    assert hashlib.sha256(weights).hexdigest() in files
    assert "weights.bin" in files
    assert "MLmodel" in files
    assert "readme.txt" not in files
    lineage = section(landed.text, "lineage")
    assert f'href="/ui/runs/{run_id}"' in lineage
    assert "0123abcd" in lineage
    assert 'href="https://ci.example/pipelines/42"' in lineage
    assert "javascript:alert(1)" in lineage
    assert 'href="javascript' not in lineage
    archive_link = re.search(r'id="download-archive" href="([^"]+)"', landed.text)
    assert archive_link
    assert archive_link.group(1) == f"/api/v1/models/{name}/versions/1/archive"
    archive = get(server, unescape(archive_link.group(1)))
    assert archive.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        assert tar.extractfile(f"{name}-1.0.0/weights.bin").read() == weights  # type: ignore[union-attr]
    file_link = re.search(r'href="([^"]+/files/weights\.bin)"', landed.text)
    assert file_link
    assert file_link.group(1).startswith("/api/v1/packages/")
    assert get(server, unescape(file_link.group(1))).content == weights

    # later versions: the next patch, or the chosen bump; an untouched field follows the bump
    page = get(server, "/ui/promote", params={"run": run_id, "model": name})
    assert Form(page.text).values["semver"] == "1.0.1"
    page = get(server, "/ui/promote", params={"run": run_id, "model": name, "bump": "minor"})
    assert Form(page.text).values["semver"] == "1.1.0"
    assert Form(page.text).values["model"] == name
    done = promote(server, run_id, model=name, bump="minor")
    assert done.headers["location"] == f"/ui/models/{name}/versions/2?created=1"
    second = requests.get(f"{server.url}/api/v1/models/{name}/versions/2", timeout=30).json()
    assert second["semver"] == "1.1.0"
    typed = promote(server, run_id, model=name, semver="3.0.0-rc1", path="")
    assert typed.status_code == 303, typed.text
    third = get(server, f"/ui/models/{name}/versions/3.0.0-rc1")
    assert third.status_code == 200
    assert "readme.txt" in third.text  # the whole candidate

    # the list: latest version and aliases
    client.set_registered_model_alias(name, "production", "1")
    listed = get(server, "/ui/models")
    assert listed.status_code == 200
    row = next(r for r in listed.text.split("<tr>") if f">{name}</a>" in r)
    assert "v3" in row
    assert "3.0.0-rc1" in row
    assert "production → " in text_of(row)
    assert ">v1</a>" in row

    # the model page: versions with their candidate, an empty card
    model = get(server, f"/ui/models/{name}")
    versions = section(model.text, "versions")
    for number, semver in ((1, "1.0.0"), (2, "1.1.0"), (3, "3.0.0-rc1")):
        assert f">v{number}</a>" in versions
        assert semver in versions
    assert f'href="/ui/runs/{run_id}"' in versions
    assert "No model card yet" in model.text
    by_alias = get(server, f"/ui/models/{name}/versions/production")
    facts = text_of(section(by_alias.text, "version-facts"))
    assert "version 1 " in re.sub(r"\s+", " ", facts)
    assert "production" in facts


def test_promote_a_logged_model(server: Server, client, experiment_id: str) -> None:  # type: ignore[no-untyped-def]
    run_id = client.create_run(experiment_id).info.run_id
    logged = client.create_logged_model(experiment_id, name="lm", source_run_id=run_id)
    base = f"{server.url}/api/2.0/mlflow-artifacts/artifacts"
    path = f"{base}/{experiment_id}/models/{logged.model_id}/artifacts/MLmodel"
    assert requests.put(path, data=b"flavors: {}\n", timeout=30).status_code == 200
    name = f"ui-{uuid.uuid4().hex[:8]}"

    page = get(server, "/ui/promote", params={"logged_model": logged.model_id})
    assert page.status_code == 200
    form = Form(page.text)
    assert form.values["logged_model"] == logged.model_id
    assert "path" not in form.values
    assert f'href="/ui/runs/{run_id}"' in page.text
    done = post(server, "/ui/promote", {**form.values, "bump": "patch", "new_name": name})
    assert done.status_code == 303, done.text
    version = client.get_model_version(name, "1")
    assert version.source == f"models:/{logged.model_id}"
    shown = get(server, done.headers["location"]).text
    assert logged.model_id in section(shown, "lineage")
    assert "MLmodel" in section(shown, "files")


def test_alias_and_card_forms(server: Server, client, candidate) -> None:  # type: ignore[no-untyped-def]
    run_id, _ = candidate
    name = f"ui-{uuid.uuid4().hex[:8]}"
    assert promote(server, run_id, new_name=name).status_code == 303
    assert promote(server, run_id, model=name).status_code == 303

    page = get(server, f"/ui/models/{name}")
    form = Form(page.text)
    assert f"/ui/models/{name}/aliases" in form.actions
    assert f"/ui/models/{name}/card" in form.actions
    assert form.options["version"] == ["2", "1"]

    for ref in ("1", "1.0.1"):
        moved = post(server, f"/ui/models/{name}/aliases", {"alias": "production", "version": ref})
        assert moved.status_code == 303
        assert moved.headers["location"].startswith(f"/ui/models/{name}?")
    assert client.get_model_version_by_alias(name, "production").version == "2"
    history = text_of(section(get(server, f"/ui/models/{name}").text, "alias-history"))
    rows = [re.sub(r"\s+", " ", r).strip() for r in history.split("production")[1:]]
    assert rows[0].startswith("v1 v2 anonymous")  # newest first
    assert rows[1].startswith("— v1 anonymous")

    card = "# Churn model\n\nUse **v2**; see [docs](https://docs.example/churn).\n"
    saved = post(server, f"/ui/models/{name}/card", {"markdown": card.replace("\n", "\r\n")})
    assert saved.status_code == 303
    assert client.get_registered_model(name).description == card
    shown = get(server, f"/ui/models/{name}").text
    assert "<h1>Churn model</h1>" in shown
    assert '<a href="https://docs.example/churn"' in shown
    assert "<strong>v2</strong>" in shown

    unknown = post(server, f"/ui/models/{name}/aliases", {"alias": "staging", "version": "9"})
    assert unknown.status_code == 404
    assert "text/html" in unknown.headers["content-type"]


def test_bad_promotions_create_nothing(server: Server, client, candidate) -> None:  # type: ignore[no-untyped-def]
    run_id, _ = candidate
    name = f"ui-{uuid.uuid4().hex[:8]}"

    bad = promote(server, run_id, new_name=name, semver="1.x")
    assert bad.status_code == 400
    assert "Invalid semantic version" in text_of(section(bad.text, "promote-error"))
    again = Form(bad.text)
    assert again.values["semver"] == "1.x"
    assert again.values["new_name"] == name
    assert not client.search_registered_models(f"name = '{name}'")

    assert promote(server, run_id, new_name=name).status_code == 303
    duplicate = promote(server, run_id, model=name, semver="1.0.0")
    assert duplicate.status_code == 400
    assert "already exists" in duplicate.text
    missing = post(server, "/ui/promote", {"run": uuid.uuid4().hex, "model": name})
    assert missing.status_code == 400
    assert "not found" in missing.text
    nameless = promote(server, run_id)
    assert nameless.status_code == 400
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == ["1"]
    assert get(server, "/ui/promote", params={"run": "nope"}).status_code == 404


def test_user_text_is_escaped(server: Server, client, candidate) -> None:  # type: ignore[no-untyped-def]
    run_id, _ = candidate
    name = f"ui-{uuid.uuid4().hex[:6]}<script>alert(1)<"
    done = promote(server, run_id, new_name=name, description=SCRIPT)
    assert done.status_code == 303, done.text
    assert done.headers["location"].startswith(f"/ui/models/{quote(name, safe='')}/")
    client.update_registered_model(name, description=f"{SCRIPT}\n\n[x](javascript:alert(1))")
    client.set_registered_model_tag(name, "owner", SCRIPT)
    client.set_model_version_tag(name, "1", "note", SCRIPT)
    refused = post(server, f"/ui/models/{quote(name)}/aliases", {"alias": SCRIPT, "version": "1"})
    assert refused.status_code == 400
    no_raw_script(refused.text)

    pages = [
        get(server, "/ui/models"),
        get(server, f"/ui/models/{quote(name)}"),
        get(server, f"/ui/models/{quote(name)}/versions/1"),
        get(server, "/ui/promote", params={"run": run_id, "model": name}),
    ]
    for page in pages:
        assert page.status_code == 200, page.url
        no_raw_script(page.text)
        assert "&lt;script&gt;" in page.text
    model = pages[1].text
    assert 'href="javascript' not in model
    assert model.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3  # card, its source, tag
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[2].text  # description and tag


def test_pages_of_a_project_keep_its_prefix(server: Server, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    project = f"p{uuid.uuid4().hex[:8]}"
    made = requests.post(f"{server.url}/api/v1/projects", json={"name": project}, timeout=30)
    assert made.status_code == 201, made.text
    base = f"/projects/{project}"
    client = MlflowClient(server.url + base)
    run_id = client.create_run(client.create_experiment("prefixed")).info.run_id
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    client.log_artifact(run_id, str(tmp_path / "MLmodel"), "model")

    form = get(server, f"{base}/ui/promote", params={"run": run_id})
    assert f'action="{base}/ui/promote"' in form.text
    assert get(server, "/ui/promote", params={"run": run_id}).status_code == 404  # not default
    done = post(server, f"{base}/ui/promote", {"run": run_id, "new_name": "m", "path": "model"})
    assert done.headers["location"] == f"{base}/ui/models/m/versions/1?created=1"
    version = get(server, done.headers["location"]).text
    assert f'href="{base}/ui/runs/{run_id}"' in version
    downloads = re.findall(r'href="(/projects/[^"]+/api/v1/[^"]+)"', version)
    assert len(downloads) == 2  # the archive and the one file
    for link in downloads:
        assert get(server, unescape(link)).status_code == 200, link
    assert f'href="{base}/ui/models/m"' in get(server, f"{base}/ui/models").text
    assert "No models yet" not in get(server, f"{base}/ui/models").text


# ---------------------------------------------------------------------------- --auth server

PASSWORD = "correct horse battery staple"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def cli(server: Server, *args: str, stdin: str | None = None) -> str:
    """A ``modelyard`` command on the server's storage (as ``run_cli``, with standard input)."""
    backend = server.backend
    command = [sys.executable, "-m", "modelyard", *args, "--data-dir", str(backend.data_dir)]
    if backend.name == "postgresql":
        command += ["--database-url", backend.url]
    done = subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def browser(server: Server, user: str) -> tuple[requests.Session, str]:
    """A signed-in browser session and its CSRF token."""
    session = requests.Session()
    login = session.get(f"{server.url}/login", timeout=30)
    field = CSRF_FIELD.search(login.text)
    assert field
    assert session.cookies.get("modelyard_login_csrf") == field.group(1)
    done = session.post(
        f"{server.url}/login",
        data={"csrf_token": field.group(1), "username": user, "password": PASSWORD},
        allow_redirects=False,
        timeout=30,
    )
    assert done.status_code == 303, done.text
    home = session.get(f"{server.url}/ui/models", timeout=30)
    token = CSRF_FIELD.search(home.text)
    assert token
    return session, token.group(1)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def auth_server(
    request: pytest.FixtureRequest, make_backend_module
) -> Iterator[tuple[Server, str]]:  # type: ignore[no-untyped-def]
    """An ``--auth`` server with an admin ``boss`` and a developer ``dev`` (both with passwords)
    and a model ``guarded`` with one version; yields the server and the admin's token."""
    srv = Server(make_backend_module(request.param), env={"MODELYARD_AUTH": "1"})
    try:
        token = cli(
            srv, "admin", "users", "create", "boss", "--admin", "--password-stdin", stdin=PASSWORD
        )
        cli(
            srv, "admin", "users", "create", "dev", "--password-stdin", "--no-token", stdin=PASSWORD
        )
        cli(srv, "admin", "projects", "add-member", "default", "dev", "developer")
        auth = {"Authorization": f"Bearer {token}"}
        mlflow_api = f"{srv.url}/api/2.0/mlflow"
        experiment = requests.post(
            f"{mlflow_api}/experiments/create", json={"name": "auth-ui"}, headers=auth, timeout=30
        ).json()["experiment_id"]
        run = requests.post(
            f"{mlflow_api}/runs/create",
            json={"experiment_id": experiment},
            headers=auth,
            timeout=30,
        ).json()["run"]["info"]["run_id"]
        uploaded = requests.put(
            f"{srv.url}/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run}/artifacts/model/MLmodel",
            data=b"flavors: {}\n",
            headers=auth,
            timeout=30,
        )
        assert uploaded.status_code == 200, uploaded.text
        made = requests.post(
            f"{srv.url}/api/v1/models/guarded/versions",
            json={"candidate": run},
            headers=auth,
            timeout=30,
        )
        assert made.status_code == 201, made.text
        yield srv, run
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def make_backend_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``make_backend`` for a module-scoped server."""
    from tests.conftest import _create_pg_database, _drop_pg_database

    created: list[str] = []

    def make(kind: str) -> Backend:
        data_dir = tmp_path_factory.mktemp(f"ui-auth-{kind}")
        if kind == "sqlite":
            return Backend(kind, f"sqlite:///{data_dir / 'modelyard.db'}", data_dir)
        name, url = _create_pg_database()
        created.append(name)
        return Backend(kind, url, data_dir)

    yield make
    for name in created:
        _drop_pg_database(name)


def test_browser_forms_need_the_csrf_token(auth_server: tuple[Server, str]) -> None:
    srv, run = auth_server
    session, token = browser(srv, "boss")
    page = session.get(f"{srv.url}/ui/models/guarded", timeout=30)
    assert page.status_code == 200
    form = Form(page.text)
    assert "/ui/models/guarded/aliases" in form.actions
    assert form.values["csrf_token"] == token

    def send(path: str, data: dict[str, str]) -> requests.Response:
        return session.post(f"{srv.url}{path}", data=data, allow_redirects=False, timeout=30)

    alias = {"alias": "production", "version": "1"}
    for fields in ({}, {"csrf_token": "x" * 40}):
        assert send("/ui/models/guarded/aliases", {**alias, **fields}).status_code == 403
        assert send("/ui/models/guarded/card", {"markdown": "x", **fields}).status_code == 403
        assert send("/ui/models/guarded/key-metric", {"metric": "x", **fields}).status_code == 403
        refused = send("/ui/promote", {"run": run, "model": "guarded", **fields})
        assert refused.status_code == 403
    assert "production" not in text_of(section(session.get(page.url).text, "aliases"))

    moved = send("/ui/models/guarded/aliases", {**alias, "csrf_token": token})
    assert moved.status_code == 303
    history = text_of(section(session.get(page.url).text, "alias-history"))
    assert "boss" in history
    made = send("/ui/promote", {"run": run, "model": "guarded", "csrf_token": token})
    assert made.status_code == 303
    assert made.headers["location"] == "/ui/models/guarded/versions/2?created=1"
    # both changes are in the audit log, with who made them and without the form's token
    events = session.get(
        f"{srv.url}/api/v1/projects/default/audit", params={"limit": 10}, timeout=30
    ).json()["events"]
    by_action = {event["action"]: event for event in reversed(events)}  # newest wins
    assert by_action["alias.set"]["actor"] == "boss"
    assert "alias=production" in by_action["alias.set"]["target"]
    assert by_action["version.promote"]["actor"] == "boss"
    assert token not in str(events)
    keyed = send("/ui/models/guarded/key-metric", {"metric": "loss", "csrf_token": token})
    assert keyed.status_code == 303
    events = session.get(
        f"{srv.url}/api/v1/projects/default/audit", params={"limit": 1}, timeout=30
    ).json()["events"]
    assert events[0]["action"] == "model.key_metric"
    assert events[0]["actor"] == "boss"
    assert events[0]["target"] == "name=guarded"
    assert events[0]["details"]["metric"] == "loss"


def test_a_developer_sees_no_maintainer_forms(auth_server: tuple[Server, str]) -> None:
    srv, run = auth_server
    session, token = browser(srv, "dev")
    page = session.get(f"{srv.url}/ui/models/guarded", timeout=30)
    assert page.status_code == 200
    actions = Form(page.text).actions
    assert not any(a.endswith(("/aliases", "/card", "/key-metric")) for a in actions)
    assert 'name="markdown"' not in page.text
    for path, data in (
        ("/ui/models/guarded/aliases", {"alias": "dev-pick", "version": "1"}),
        ("/ui/models/guarded/card", {"markdown": "dev was here"}),
        ("/ui/models/guarded/key-metric", {"metric": "dev-metric"}),
    ):
        refused = session.post(
            f"{srv.url}{path}", data={**data, "csrf_token": token}, allow_redirects=False
        )
        assert refused.status_code == 403
    assert "dev was here" not in session.get(page.url).text
    # promoting is a developer's job
    form = session.get(f"{srv.url}/ui/promote", params={"run": run, "model": "guarded"})
    assert form.status_code == 200
    assert Form(form.text).values["csrf_token"] == token
