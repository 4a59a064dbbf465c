"""What a webhook can never reach without the operator's setting, and what becomes of one
that keeps failing: given up after its retry window, disabled after a long failing streak."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.conftest import Backend, Server
from tests.integration.test_webhook_durability import mlflow, setup_model
from tests.webhooks.receiver import Receiver

ALIAS_CREATED = [{"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"}]


@pytest.fixture
def listener() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.stop()


def deliveries(server: Server) -> list[dict[str, object]]:
    engine = create_engine(server.backend.url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT * FROM webhook_deliveries ORDER BY id")).mappings()
            return [dict(r) for r in rows]
    finally:
        engine.dispose()


def wait_until(check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.2)


def hosts_name_for_loopback() -> str | None:
    """A name other than localhost that /etc/hosts maps to 127.0.0.1, if there is one."""
    for line in Path("/etc/hosts").read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if fields and fields[0] == "127.0.0.1":
            for name in fields[1:]:
                if "localhost" not in name:
                    return name
    return None


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_private_destinations_never_reach_the_listener(  # type: ignore[no-untyped-def]
    make_backend, listener: Receiver, kind: str
) -> None:
    backend: Backend = make_backend(kind)
    port = listener.port
    refused = [
        f"http://127.0.0.1:{port}/hook",
        "http://10.0.0.1/hook",
        "http://172.16.0.1/hook",
        "http://192.168.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        f"http://[::1]:{port}/hook",
        f"http://0x7f000001:{port}/hook",
        f"http://2130706433:{port}/hook",
        f"http://0177.0.0.1:{port}/hook",
        f"http://127.1:{port}/hook",
        f"http://[::ffff:127.0.0.1]:{port}/hook",
        f"http://localhost:{port}/hook",
    ]
    # stored while the operator allowed private addresses, then sent without that setting
    allowed = Server(backend, env={"MODELYARD_WEBHOOK_ALLOW_PRIVATE": "1"})
    model = setup_model(allowed, f"http://localhost:{port}/hook", ALIAS_CREATED)
    allowed.stop()
    server = Server(backend)
    try:
        for url in refused:
            answer = mlflow(server, "POST", "webhooks", name="x", url=url, events=ALIAS_CREATED)
            assert answer.status_code == 400, url
            assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        hosts_name = hosts_name_for_loopback()
        if hosts_name is not None:  # a name that passes when saved, refused after DNS
            url = f"http://{hosts_name}:{port}/hook"
            created = mlflow(server, "POST", "webhooks", name="n", url=url, events=ALIAS_CREATED)
            assert created.status_code == 200, created.text
        moved = mlflow(
            server, "POST", "registered-models/alias", name=model, alias="prod", version="1"
        )
        assert moved.status_code == 200
        expected = 2 if hosts_name else 1
        wait_until(lambda: sum(d["attempts"] > 0 for d in deliveries(server)) >= expected)
        for row in deliveries(server):
            assert row["last_status"] is None
            assert "not a public address" in str(row["last_error"])
        time.sleep(0.5)
        assert listener.received == []
    finally:
        server.stop()


NETNS_RECEIVER = textwrap.dedent(
    """
    import sys
    from http.server import BaseHTTPRequestHandler, HTTPServer

    host, port, location, log = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with open(log, "a") as out:
                out.write(self.path + "\\n")
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    HTTPServer((host, port), Redirect).serve_forever()
    """
)
#: a globally routable address (IANA's PCP anycast, 192.0.0.9/32) given to a veth pair of our
#: own: traffic to it never leaves this machine, and the address check counts it as public
PUBLIC_HOST, PEER = "192.0.0.9", "192.0.0.10"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


@pytest.fixture
def public_looking_host(tmp_path: Path) -> Iterator[str]:
    """A network namespace reachable from this one at 192.0.0.9 over a veth pair."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to make a network namespace")
    tag = uuid.uuid4().hex[:6]
    ns, outside, inside = f"myard-{tag}", f"myo{tag}", f"myi{tag}"
    lock = (tmp_path.parent / "netns.lock").open("w")
    import fcntl

    fcntl.flock(lock, fcntl.LOCK_EX)  # one such namespace at a time on this machine
    ip("netns", "add", ns)
    try:
        ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        ip("link", "set", inside, "netns", ns)
        ip("addr", "add", f"{PEER}/32", "dev", outside)
        ip("link", "set", outside, "up")
        ip("route", "add", f"{PUBLIC_HOST}/32", "dev", outside)
        ip("-n", ns, "addr", "add", f"{PUBLIC_HOST}/32", "dev", inside)
        ip("-n", ns, "link", "set", inside, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "route", "add", f"{PEER}/32", "dev", inside)
        route = subprocess.run(
            ["ip", "route", "get", PUBLIC_HOST], capture_output=True, text=True, check=True
        ).stdout
        assert f"dev {outside}" in route, route  # never anywhere else
        yield ns
    finally:
        subprocess.run(["ip", "link", "del", outside], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        lock.close()


@pytest.mark.parametrize("kind", ["sqlite"])
def test_a_redirect_to_loopback_is_not_followed(  # type: ignore[no-untyped-def]
    make_backend, listener: Receiver, public_looking_host: str, tmp_path: Path, kind: str
) -> None:
    script = tmp_path / "redirect.py"
    script.write_text(NETNS_RECEIVER)
    hits = tmp_path / "hits.log"
    hits.touch()
    location = f"http://127.0.0.1:{listener.port}/stolen"
    redirector = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            public_looking_host,
            sys.executable,
            str(script),
            PUBLIC_HOST,
            "8080",
            location,
            str(hits),
        ],
        start_new_session=True,
    )
    server = Server(make_backend(kind))
    try:
        time.sleep(0.5)
        model = setup_model(server, f"http://{PUBLIC_HOST}:8080/hook", ALIAS_CREATED)
        moved = mlflow(
            server, "POST", "registered-models/alias", name=model, alias="prod", version="1"
        )
        assert moved.status_code == 200
        wait_until(lambda: any(d["last_status"] == 302 for d in deliveries(server)))
        assert hits.read_text().splitlines()[0] == "/hook"
        time.sleep(0.5)
        assert listener.received == []
    finally:
        server.stop()
        os.killpg(redirector.pid, 9)
        redirector.wait(10)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_failing_deliveries_are_given_up_and_the_webhook_disabled(  # type: ignore[no-untyped-def]
    make_backend, listener: Receiver, kind: str
) -> None:
    listener.status = 500
    server = Server(
        make_backend(kind),
        env={
            "MODELYARD_WEBHOOK_ALLOW_PRIVATE": "1",
            "MODELYARD_WEBHOOK_RETRY_HOURS": "0.001",  # 3.6 s
            "MODELYARD_WEBHOOK_DISABLE_AFTER_HOURS": "0.0015",  # 5.4 s
        },
    )
    try:
        model = setup_model(server, listener.url, ALIAS_CREATED)
        hook_id = mlflow(server, "GET", "webhooks").json()["webhooks"][0]["webhook_id"]

        def status() -> str:
            return str(mlflow(server, "GET", f"webhooks/{hook_id}").json()["webhook"]["status"])

        for n in range(8):
            moved = mlflow(
                server, "POST", "registered-models/alias", name=model, alias=f"a{n}", version="1"
            )
            assert moved.status_code == 200
            # the move's own delivery (its event becomes one a moment after the commit)
            wait_until(
                lambda n=n: (
                    (len(rows := deliveries(server)) > n and rows[-1]["state"] == "failed")
                    or status() == "DISABLED"
                ),
                timeout=20,
            )
            if status() == "DISABLED":
                break
        assert status() == "DISABLED"
        given_up = [d for d in deliveries(server) if d["state"] == "failed"]
        assert given_up
        assert all(str(d["last_error"]).startswith("gave up after") for d in given_up)
        assert all(d["last_status"] == 500 for d in given_up)
        attempts = sum(int(d["attempts"]) for d in deliveries(server))  # type: ignore[call-overload]
        assert len(listener.received) == attempts
        audit = requests.get(f"{server.url}/api/v1/projects/default/audit", timeout=10).json()
        disabled = [e for e in audit["events"] if e["action"] == "webhook.disable"]
        assert len(disabled) == 1
        assert disabled[0]["actor"] == "modelyard"
        assert "failed for" in disabled[0]["details"]["reason"]
        queued = len(deliveries(server))
        moved = mlflow(
            server, "POST", "registered-models/alias", name=model, alias="later", version="1"
        )
        assert moved.status_code == 200
        time.sleep(1.5)  # longer than the worker's slowest look at waiting events
        assert len(deliveries(server)) == queued  # a disabled webhook gets no new deliveries
        enabled = mlflow(server, "PATCH", f"webhooks/{hook_id}", status="ACTIVE")
        assert enabled.json()["webhook"]["status"] == "ACTIVE"
    finally:
        server.stop()
