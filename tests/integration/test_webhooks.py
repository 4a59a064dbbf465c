"""Webhooks through the stock MLflow client against a live server (SQLite and PostgreSQL):
every webhook call, events from every way of changing the registry, signatures checked with
the mlflow package's own code, retries with the same delivery id, and a secret that never
comes back out."""

from __future__ import annotations

import hmac
import itertools
import time
import uuid
from collections.abc import Iterator

import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.webhooks.constants import (
    WEBHOOK_DELIVERY_ID_HEADER,
    WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_TIMESTAMP_HEADER,
)
from mlflow.webhooks.delivery import _generate_hmac_signature
from sqlalchemy import create_engine, inspect, text

from tests.conftest import BACKENDS, Server, _drop_pg_database, _session_backend, run_client
from tests.webhooks.receiver import Received, Receiver

ALIAS_EVENTS = ["model_version_alias.created", "model_version_alias.deleted"]


@pytest.fixture(scope="module", params=BACKENDS)
def hook_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    backend, pg_name = _session_backend(request.param, tmp_path_factory.mktemp("hooks"))
    srv = Server(
        backend, env={"MODELYARD_WEBHOOK_ALLOW_PRIVATE": "1", "MODELYARD_LOG_LEVEL": "debug"}
    )
    yield srv
    srv.stop()
    if pg_name:
        _drop_pg_database(pg_name)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.stop()


@pytest.fixture
def mlflow_client(hook_server: Server, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    return MlflowClient(hook_server.url)


def verified_with_mlflow(got: Received, secret: str) -> bool:
    """The receiver's check, with the signing code that ships in the mlflow package."""
    expected = _generate_hmac_signature(
        secret,
        got.headers[WEBHOOK_DELIVERY_ID_HEADER.lower()],
        got.headers[WEBHOOK_TIMESTAMP_HEADER.lower()],
        got.body.decode(),
    )
    return hmac.compare_digest(got.headers[WEBHOOK_SIGNATURE_HEADER.lower()], expected)


def about(model: str):  # type: ignore[no-untyped-def]
    return lambda got: got.json["data"].get("name") == model


def new_model(client: MlflowClient, versions: int) -> str:
    name = f"m-{uuid.uuid4().hex[:10]}"
    client.create_registered_model(name)
    experiment = client.create_experiment(f"e-{uuid.uuid4().hex[:10]}")
    run = client.create_run(experiment)
    for _ in range(versions):
        client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
    return name


def test_every_webhook_call_of_the_mlflow_client(
    mlflow_client: MlflowClient, receiver: Receiver
) -> None:
    created = mlflow_client.create_webhook(
        name="deploy-prod",
        url=receiver.url,
        events=["model_version_alias.created", "registered_model.created"],
        description="deploys production",
        secret="first-secret",
        status="ACTIVE",
    )
    assert created.name == "deploy-prod"
    assert created.url == receiver.url
    assert [str(e) for e in created.events] == [
        "model_version_alias.created",
        "registered_model.created",
    ]
    assert created.description == "deploys production"
    assert str(created.status) == "ACTIVE"
    assert mlflow_client.get_webhook(created.webhook_id).name == "deploy-prod"
    other = mlflow_client.create_webhook(
        name="audit", url=receiver.url, events=["model_version.created"], status="DISABLED"
    )
    first = mlflow_client.list_webhooks(max_results=1)
    assert [w.webhook_id for w in first] == [other.webhook_id]
    assert first.token
    second = mlflow_client.list_webhooks(max_results=1, page_token=first.token)
    assert created.webhook_id in [w.webhook_id for w in second]

    updated = mlflow_client.update_webhook(
        created.webhook_id,
        name="deploy-production",
        description="",
        url=receiver.url + "?v=2",
        events=["model_version_alias.created"],
        secret="second-secret",
        status="DISABLED",
    )
    assert (updated.name, updated.url, str(updated.status)) == (
        "deploy-production",
        receiver.url + "?v=2",
        "DISABLED",
    )
    assert [str(e) for e in updated.events] == ["model_version_alias.created"]
    assert updated.last_updated_timestamp >= created.last_updated_timestamp

    result = mlflow_client.test_webhook(created.webhook_id)
    assert result.success
    assert result.response_status == 200
    got = receiver.wait_for(1)[0]
    assert got.json["entity"] == "model_version_alias"
    assert got.json["action"] == "created"
    assert verified_with_mlflow(got, "second-secret")
    result = mlflow_client.test_webhook(created.webhook_id, event="registered_model.created")
    assert result.success
    assert receiver.wait_for(2)[1].json["entity"] == "registered_model"
    receiver.status = 500
    failed = mlflow_client.test_webhook(created.webhook_id)
    assert not failed.success
    assert failed.response_status == 500

    for webhook_id in (created.webhook_id, other.webhook_id):
        mlflow_client.delete_webhook(webhook_id)
    with pytest.raises(MlflowException, match="not found") as missing:
        mlflow_client.get_webhook(created.webhook_id)
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bad name!", "url": "http://127.0.0.1:9/"}, "name"),
        ({"name": "n", "url": "ftp://127.0.0.1/"}, "scheme"),
        ({"name": "n", "url": "http://0x7f000001/"}, "usual form"),
        ({"name": "n", "url": "http://127.0.0.1:9/", "events": ["prompt.created"]}, "event"),
    ],
)
def test_invalid_webhooks_are_refused_clearly(
    mlflow_client: MlflowClient, kwargs: dict[str, object], message: str
) -> None:
    kwargs.setdefault("events", ["model_version.created"])
    with pytest.raises(MlflowException, match=message) as refused:
        mlflow_client.create_webhook(**kwargs)  # type: ignore[arg-type]
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"


def test_raw_requests_get_mlflow_errors(hook_server: Server) -> None:
    base = f"{hook_server.url}/api/2.0/mlflow/webhooks"
    missing = requests.post(base, json={"name": "x", "url": "http://127.0.0.1:9/"}, timeout=10)
    assert missing.status_code == 400
    assert missing.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    bad_event = requests.post(
        base,
        json={"name": "x", "url": "http://127.0.0.1:9/", "events": [{"entity": 99}]},
        timeout=10,
    )
    assert bad_event.status_code == 400
    assert requests.get(base, params={"max_results": -1}, timeout=10).status_code == 400
    assert requests.get(base, params={"page_token": "garbage"}, timeout=10).status_code == 400
    assert requests.get(f"{base}/nope", timeout=10).status_code == 404
    assert requests.patch(f"{base}/nope", json={}, timeout=10).status_code == 404
    for path in ("/api/2.0/mlflow/webhooks", "/ajax-api/2.0/mlflow/webhooks"):
        assert requests.get(hook_server.url + path, timeout=10).status_code == 200


def test_an_alias_move_reaches_the_receiver_signed(
    hook_server: Server, mlflow_client: MlflowClient, receiver: Receiver
) -> None:
    hook = mlflow_client.create_webhook(
        name="prod", url=receiver.url, events=ALIAS_EVENTS, secret="deploy-key"
    )
    try:
        name = new_model(mlflow_client, 2)
        mlflow_client.set_registered_model_alias(name, "production", "1")
        mlflow_client.set_registered_model_alias(name, "production", "2")
        mlflow_client.delete_registered_model_alias(name, "production")
        got = receiver.wait_for(3, where=about(name))
        assert [g.json["data"] for g in got] == [
            {"name": name, "alias": "production", "version": "1"},
            {"name": name, "alias": "production", "version": "2"},
            {"name": name, "alias": "production"},
        ]
        assert [g.json["action"] for g in got] == ["created", "created", "deleted"]
        assert all(verified_with_mlflow(g, "deploy-key") for g in got)
        assert not verified_with_mlflow(got[0], "another-key")
        assert len({g.delivery_id for g in got}) == 3
        assert got[0].json["workspace"] == "default"
    finally:
        mlflow_client.delete_webhook(hook.webhook_id)


def test_deliveries_in_the_native_api(
    hook_server: Server, mlflow_client: MlflowClient, receiver: Receiver
) -> None:
    hook = mlflow_client.create_webhook(name="deploys", url=receiver.url, events=ALIAS_EVENTS)
    native = f"{hook_server.url}/api/v1/webhooks"
    try:
        name = new_model(mlflow_client, 3)
        for version in ("1", "2", "3"):
            mlflow_client.set_registered_model_alias(name, "production", version)
        got = receiver.wait_for(3, where=about(name))
        listed = requests.get(native, params={"limit": 1000}, timeout=10).json()
        mine = [w for w in listed["webhooks"] if w["webhook_id"] == hook.webhook_id]
        assert len(mine) == 1
        assert mine[0]["events"] == ALIAS_EVENTS
        assert mine[0]["status"] == "ACTIVE"
        assert mine[0]["signed"] is False
        assert mine[0]["url"] == receiver.url
        one = requests.get(f"{native}/{hook.webhook_id}", timeout=10).json()
        assert one == mine[0]

        deadline = time.monotonic() + 20
        while True:  # the receiver has the bodies; the server records its outcome after
            first = requests.get(
                f"{native}/{hook.webhook_id}/deliveries", params={"limit": 2}, timeout=10
            ).json()
            assert "deliveries" in first, first
            if all(d["state"] == "delivered" for d in first["deliveries"]):
                break
            assert time.monotonic() < deadline, first
            time.sleep(0.1)
        assert len(first["deliveries"]) == 2
        assert first["next_before"]
        rest = requests.get(
            f"{native}/{hook.webhook_id}/deliveries",
            params={"limit": 2, "before": first["next_before"]},
            timeout=10,
        ).json()
        assert rest["next_before"] is None
        listed_ids = [d["delivery_id"] for d in first["deliveries"] + rest["deliveries"]]
        assert listed_ids == [g.delivery_id for g in reversed(got)]  # newest first
        for delivery in first["deliveries"] + rest["deliveries"]:
            assert delivery["event"] == "model_version_alias.created"
            assert delivery["last_status"] == 200
            assert delivery["attempts"] == 1
            assert delivery["latency_ms"] is not None
            assert delivery["latency_ms"] >= 0
            assert delivery["test"] is False

        unknown = requests.get(f"{native}/{uuid.uuid4()}/deliveries", timeout=10)
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "RESOURCE_DOES_NOT_EXIST"
        bad = requests.get(f"{native}/not-an-id", timeout=10)
        assert bad.status_code == 400
        assert "webhook_id" in bad.json()["error"]["message"]
    finally:
        mlflow_client.delete_webhook(hook.webhook_id)


def test_every_way_of_changing_the_registry_raises_the_events(
    hook_server: Server, mlflow_client: MlflowClient, receiver: Receiver
) -> None:
    hook = mlflow_client.create_webhook(
        name="all",
        url=receiver.url,
        events=[
            *ALIAS_EVENTS,
            "model_version_tag.set",
            "model_version_tag.deleted",
            "model_version.created",
            "registered_model.created",
        ],
    )
    try:
        name = new_model(mlflow_client, 2)
        mlflow_client.set_model_version_tag(name, "1", "stage", "qa")
        mlflow_client.delete_model_version_tag(name, "1", "stage")
        native = requests.put(
            f"{hook_server.url}/api/v1/models/{name}/aliases/production",
            json={"version": "2"},
            timeout=10,
        )
        assert native.status_code == 200, native.text
        cli = run_client(hook_server, "models", "alias", name, "staging", "1")
        assert cli.returncode == 0, cli.stderr
        got = receiver.wait_for(7, where=about(name))
        assert [f"{g.json['entity']}.{g.json['action']}" for g in got] == [
            "registered_model.created",
            "model_version.created",
            "model_version.created",
            "model_version_tag.set",
            "model_version_tag.deleted",
            "model_version_alias.created",
            "model_version_alias.created",
        ]
        assert got[1].json["data"]["tags"] == {"modelyard.semver": "1.0.0"}
        assert got[1].json["data"]["source"].startswith("runs:/")
        assert got[5].json["data"]["version"] == "2"
        assert got[6].json["data"]["alias"] == "staging"
        mlflow_client.delete_model_version(name, "1")  # staging pointed at it
        removed = receiver.wait_for(8, where=about(name))[7]
        assert removed.json["data"] == {"name": name, "alias": "staging"}
    finally:
        mlflow_client.delete_webhook(hook.webhook_id)


def test_a_receiver_down_gets_the_event_later_with_the_same_delivery_id(
    mlflow_client: MlflowClient, receiver: Receiver
) -> None:
    hook = mlflow_client.create_webhook(name="flaky", url=receiver.url, events=ALIAS_EVENTS)
    try:
        name = new_model(mlflow_client, 1)
        receiver.status = 503
        mlflow_client.set_registered_model_alias(name, "production", "1")
        failures = receiver.wait_for(3, timeout=15, where=about(name))
        port = receiver.port
        receiver.stop()  # and now nothing listens at all for a while
        time.sleep(3)
        back = Receiver(port=port)
        try:
            arrived = back.wait_for(1, timeout=30, where=about(name))[0]
        finally:
            back.stop()
        assert {g.delivery_id for g in failures} == {arrived.delivery_id}
        gaps = [b.at - a.at for a, b in itertools.pairwise(failures)]
        # about 1 s, then about 2 s: each wait is drawn between half and all of its step
        assert gaps[0] > 0.45, gaps
        assert gaps[1] > 0.95, gaps
    finally:
        mlflow_client.delete_webhook(hook.webhook_id)


def stored_outside_its_column(server: Server, secret: str) -> list[str]:
    """Every column of every row holding ``secret``, except the webhook's own secret column
    (which must hold it, to sign)."""
    engine = create_engine(
        server.backend.url.replace("sqlite:///", "sqlite:///file:", 1)
        + ("?mode=ro&uri=true" if server.backend.name == "sqlite" else "")
    )
    found: list[str] = []
    try:
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()
            assert "webhooks" in tables
            for table in tables:
                for row in conn.execute(text(f'SELECT * FROM "{table}"')).mappings():
                    found += [
                        f"{table}.{column}"
                        for column, value in row.items()
                        if secret in str(value) and (table, column) != ("webhooks", "secret")
                    ]
            held = conn.execute(text("SELECT secret FROM webhooks")).scalars().all()
            assert secret in held
    finally:
        engine.dispose()
    return found


def test_the_secret_never_comes_back_out(
    hook_server: Server, mlflow_client: MlflowClient, receiver: Receiver
) -> None:
    secret = f"never-shown-{uuid.uuid4().hex}"
    base = f"{hook_server.url}/api/2.0/mlflow/webhooks"
    answers: list[str] = []
    created = requests.post(
        base,
        json={
            "name": "secretive",
            "url": receiver.url,
            "events": [{"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"}],
            "secret": secret,
        },
        timeout=10,
    )
    answers.append(created.text)
    webhook_id = created.json()["webhook"]["webhook_id"]
    answers.append(requests.get(f"{base}/{webhook_id}", timeout=10).text)
    answers.append(requests.get(base, timeout=10).text)
    answers.append(
        requests.patch(f"{base}/{webhook_id}", json={"secret": secret + "2"}, timeout=10).text
    )
    answers.append(requests.post(f"{base}/{webhook_id}/test", json={}, timeout=30).text)
    name = new_model(mlflow_client, 1)
    mlflow_client.set_registered_model_alias(name, "production", "1")
    receiver.wait_for(2)
    answers.append(
        requests.get(f"{hook_server.url}/api/v1/projects/default/audit", timeout=10).text
    )
    native = f"{hook_server.url}/api/v1/webhooks"
    answers.append(requests.get(native, timeout=10).text)
    answers.append(requests.get(f"{native}/{webhook_id}", timeout=10).text)
    answers.append(requests.get(f"{native}/{webhook_id}/deliveries", timeout=10).text)
    assert stored_outside_its_column(hook_server, secret + "2") == []
    answers.append(requests.delete(f"{base}/{webhook_id}", timeout=10).text)
    for answer in answers:
        assert secret not in answer
    assert "webhook.create" in answers[5]
    assert '"secret":"changed"' in answers[5]
    assert webhook_id in answers[6]
    assert '"signed":true' in answers[7]
    assert secret not in hook_server.log.read_text()


def test_only_maintainers_manage_webhooks(make_backend) -> None:  # type: ignore[no-untyped-def]
    from modelyard.auth.roles import Role
    from modelyard.services import access
    from modelyard.settings import Settings

    backend = make_backend("sqlite")
    server = Server(backend, "--auth")
    db = Settings(data_dir=backend.data_dir).database()
    tokens = {}
    try:
        for name, role in (("dev", Role.DEVELOPER), ("lead", Role.MAINTAINER)):
            access.create_user(db, name, actor="test")
            access.set_member(db, 1, name, role, by=Role.OWNER, actor="test")
            tokens[name] = access.create_token(db, name="t", user_name=name, actor="test")[1]
        base = f"{server.url}/api/2.0/mlflow/webhooks"
        body = {
            "name": "hook",
            "url": "https://hooks.example.com/x",
            "events": [{"entity": "REGISTERED_MODEL", "action": "CREATED"}],
        }

        def call(who: str, method: str, url: str, **kwargs: object) -> requests.Response:
            headers = {"Authorization": f"Bearer {tokens[who]}"}
            return requests.request(method, url, headers=headers, timeout=10, **kwargs)

        assert requests.get(base, timeout=10).status_code == 401
        assert call("dev", "POST", base, json=body).status_code == 403
        assert call("dev", "GET", base).status_code == 403
        created = call("lead", "POST", base, json=body)
        assert created.status_code == 200, created.text
        webhook_id = created.json()["webhook"]["webhook_id"]
        assert call("dev", "DELETE", f"{base}/{webhook_id}").status_code == 403
        assert call("dev", "POST", f"{base}/{webhook_id}/test", json={}).status_code == 403
        assert call("lead", "DELETE", f"{base}/{webhook_id}").status_code == 200
        audit = call("lead", "GET", f"{server.url}/api/v1/projects/default/audit").json()
        actions = [(e["action"], e["actor"].split()[0]) for e in audit["events"]]
        assert ("webhook.create", "lead") in actions
        assert ("webhook.delete", "lead") in actions
    finally:
        db.dispose()
        server.stop()
