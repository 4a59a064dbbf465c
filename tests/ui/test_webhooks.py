"""The webhook pages against a live server: a project's webhooks and the form for a new one, a
webhook's deliveries (event, attempts, status, latency, next retry, given up), "send test",
the banner of a webhook the server disabled, enable and delete; CSRF and roles on an
``--auth`` server; the secret never on a page."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from html import unescape

import pytest
import requests

from tests.conftest import Backend, Server, screenshot
from tests.integration.test_webhook_durability import mlflow, setup_model
from tests.ui.test_models import PASSWORD, cli
from tests.ui.test_models import browser as signed_in
from tests.webhooks.receiver import Receiver

SECRET = "ui-secret-never-shown"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.stop()


@pytest.fixture
def server(make_backend) -> Iterator[Server]:  # type: ignore[no-untyped-def]
    backend: Backend = make_backend("sqlite")
    srv = Server(
        backend,
        env={
            "MODELYARD_WEBHOOK_ALLOW_PRIVATE": "1",
            "MODELYARD_WEBHOOK_DISABLE_AFTER_HOURS": "0.0005",  # 1.8 s
        },
    )
    yield srv
    srv.stop()


def create_in_ui(server: Server, receiver: Receiver) -> str:
    created = requests.post(
        f"{server.url}/ui/webhooks",
        data={
            "name": "deploy",
            "url": receiver.url,
            "event.model_version_alias.created": "1",
            "secret": SECRET,
            "description": "starts the deploy",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert created.status_code == 303, created.text
    found = re.search(r"/ui/webhooks/([0-9a-f-]{36})\?saved=created", created.headers["location"])
    assert found is not None
    return found.group(1)


def wait_for_page(url: str, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        html = requests.get(url, timeout=10).text
        if text in html or time.monotonic() > deadline:
            return html
        time.sleep(0.2)


def test_webhook_pages_show_deliveries_tests_and_the_disabled_banner(
    server: Server, receiver: Receiver
) -> None:
    listing = requests.get(f"{server.url}/ui/webhooks", timeout=10)
    assert listing.status_code == 200
    assert "No webhooks yet" in listing.text
    assert 'href="/ui/webhooks"' in requests.get(f"{server.url}/ui/models", timeout=10).text
    webhook_id = create_in_ui(server, receiver)
    page_url = f"{server.url}/ui/webhooks/{webhook_id}"
    quiet = [{"entity": "MODEL_VERSION_TAG", "action": "DELETED"}]  # a webhook that stays idle
    model = setup_model(server, receiver.url, quiet)
    moved = mlflow(server, "POST", "registered-models/alias", name=model, alias="prod", version="1")
    assert moved.status_code == 200
    html = wait_for_page(page_url, "delivered")
    table = unescape(html.split('id="delivery-table"', 1)[1])
    assert "model_version_alias.created" in table
    assert "delivered" in table
    assert re.search(r"\d+ ms", table)
    assert '{"ok": true}' in table
    assert SECRET not in html
    assert SECRET not in requests.get(f"{server.url}/ui/webhooks", timeout=10).text

    tested = requests.post(
        f"{page_url}/test",
        data={"event": "registered_model.created"},
        allow_redirects=False,
        timeout=30,
    )
    assert tested.status_code == 303
    assert "saved=test-ok" in tested.headers["location"]
    html = requests.get(page_url, timeout=10).text
    assert "registered_model.created" in html
    assert "(test)" in html

    receiver.status = 500
    mlflow(server, "POST", "registered-models/alias", name=model, alias="prod", version="2")
    html = wait_for_page(page_url, 'id="disabled-banner"')
    assert 'id="disabled-banner"' in html
    assert "failed for" in html
    assert "retrying" in html or "given up" in html
    enabled = requests.post(
        f"{page_url}/status", data={"status": "ACTIVE"}, allow_redirects=False, timeout=10
    )
    assert enabled.status_code == 303
    html = requests.get(page_url, timeout=10).text
    assert 'id="disabled-banner"' not in html
    assert '<dd id="status">active</dd>' in html

    gone = requests.post(f"{page_url}/delete", allow_redirects=False, timeout=10)
    assert gone.status_code == 303
    assert requests.get(page_url, timeout=10).status_code == 404


def test_the_form_refuses_a_private_address_without_the_setting(make_backend) -> None:  # type: ignore[no-untyped-def]
    server = Server(make_backend("sqlite"))
    try:
        refused = requests.post(
            f"{server.url}/ui/webhooks",
            data={
                "name": "x",
                "url": "http://169.254.169.254/latest",
                "event.model_version_alias.created": "1",
            },
            timeout=10,
        )
        assert refused.status_code == 400
        assert "not a public address" in refused.text
    finally:
        server.stop()


def test_roles_and_csrf_on_an_auth_server(make_backend, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    server = Server(make_backend("sqlite"), env={"MODELYARD_AUTH": "1"})
    try:
        new_user = ("admin", "users", "create", "lead", "--password-stdin", "--no-token")
        cli(server, *new_user, stdin=PASSWORD)
        new_user = ("admin", "users", "create", "dev", "--password-stdin", "--no-token")
        cli(server, *new_user, stdin=PASSWORD)
        cli(server, "admin", "projects", "add-member", "default", "lead", "maintainer")
        cli(server, "admin", "projects", "add-member", "default", "dev", "developer")
        dev, _ = signed_in(server, "dev")
        assert dev.get(f"{server.url}/ui/webhooks", timeout=10).status_code == 403
        assert 'href="/ui/webhooks"' not in dev.get(f"{server.url}/ui/models", timeout=10).text
        lead, token = signed_in(server, "lead")
        assert 'href="/ui/webhooks"' in lead.get(f"{server.url}/ui/models", timeout=10).text
        fields = {
            "name": "d",
            "url": "https://hooks.example.com/x",
            "event.model_version.created": "1",
        }
        for forged in ({}, {"csrf_token": "x" * 40}):
            refused = lead.post(
                f"{server.url}/ui/webhooks",
                data={**fields, **forged},
                allow_redirects=False,
                timeout=10,
            )
            assert refused.status_code == 403
        made = lead.post(
            f"{server.url}/ui/webhooks",
            data={**fields, "csrf_token": token},
            allow_redirects=False,
            timeout=10,
        )
        assert made.status_code == 303, made.text
        page = lead.get(server.url + made.headers["location"], timeout=10)
        assert 'name="csrf_token"' in page.text
        assert "https://hooks.example.com/x" in page.text
    finally:
        server.stop()


def test_send_test_in_the_browser(server: Server, receiver: Receiver, browser) -> None:  # type: ignore[no-untyped-def]
    webhook_id = create_in_ui(server, receiver)
    page = browser.new_page()
    try:
        page.goto(f"{server.url}/ui/webhooks/{webhook_id}")
        page.click("#send-test button")
        page.wait_for_url(re.compile(r"saved=test-ok"))
        assert "The test was delivered." in page.content()
        assert page.locator("#delivery-table tbody tr").count() == 1
        screenshot(page, "webhook-page")
    finally:
        page.close()
    assert len(receiver.wait_for(1)) == 1
