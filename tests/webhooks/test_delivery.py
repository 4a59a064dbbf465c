"""One delivery attempt against a real receiver on loopback: MLflow's headers and signature,
no redirects followed, a bounded wait, a short excerpt, and nothing sent where it is refused."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from mlflow.webhooks.constants import (
    WEBHOOK_DELIVERY_ID_HEADER,
    WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_TIMESTAMP_HEADER,
)
from mlflow.webhooks.delivery import _generate_hmac_signature

from modelyard.webhooks import delivery
from tests.webhooks.receiver import Receiver

BODY = b'{"entity":"model_version_alias","action":"created","data":{"alias":"production"}}'


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.stop()


def send(url: str, secret: str = "s3cret", **kwargs: object) -> delivery.Outcome:
    headers = delivery.headers("d-1", BODY, secret, time.time())
    return delivery.post(url, BODY, headers, allow_private=True, **kwargs)  # type: ignore[arg-type]


def test_headers_and_signature_are_mlflows(receiver: Receiver) -> None:
    outcome = send(receiver.url + "?x=1")
    assert outcome.ok
    assert outcome.status == 200
    assert outcome.excerpt == '{"ok": true}'
    got = receiver.wait_for(1)[0]
    assert got.path == "/hook?x=1"
    assert got.body == BODY
    assert got.headers["host"] == f"127.0.0.1:{receiver.port}"
    delivery_id = got.headers[WEBHOOK_DELIVERY_ID_HEADER.lower()]
    timestamp = got.headers[WEBHOOK_TIMESTAMP_HEADER.lower()]
    assert delivery_id == "d-1"
    assert abs(int(timestamp) - time.time()) < 5
    expected = _generate_hmac_signature("s3cret", delivery_id, timestamp, got.body.decode())
    assert got.headers[WEBHOOK_SIGNATURE_HEADER.lower()] == expected


def test_no_signature_without_a_secret(receiver: Receiver) -> None:
    assert send(receiver.url, secret="").ok
    assert WEBHOOK_SIGNATURE_HEADER.lower() not in receiver.wait_for(1)[0].headers


def test_redirects_are_not_followed(receiver: Receiver) -> None:
    target = Receiver()
    try:
        receiver.status, receiver.location = 302, target.url
        outcome = send(receiver.url)
        assert outcome.status == 302
        assert not outcome.ok
        time.sleep(0.3)
        assert target.received == []
    finally:
        target.stop()


def test_error_statuses_are_failures_with_an_excerpt(receiver: Receiver) -> None:
    receiver.status, receiver.answer = 503, b"x" * 20_000
    outcome = send(receiver.url)
    assert outcome.status == 503
    assert not outcome.ok
    assert outcome.excerpt == "x" * delivery.EXCERPT_CHARS


def test_a_silent_receiver_times_out(receiver: Receiver) -> None:
    receiver.delay = 3
    started = time.monotonic()
    outcome = send(receiver.url, timeout=0.5)
    assert time.monotonic() - started < 2
    assert outcome.status is None
    assert "timed out" in outcome.error


def test_a_receiver_that_trickles_forever_is_cut_at_the_timeout() -> None:
    """A peer that sends one byte at a time never lets a per-read timeout expire: the
    attempt's deadline still ends it."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            while not stop.is_set():
                try:
                    conn.sendall(b"H")
                except OSError:
                    return
                time.sleep(0.05)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        outcome = send(f"http://127.0.0.1:{listener.getsockname()[1]}/", timeout=1.0)
        assert time.monotonic() - started < 2.5
        assert outcome.status is None
        assert "timed out" in outcome.error
    finally:
        stop.set()
        listener.close()


def test_nothing_listening_is_a_connection_failure() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcome = send(f"http://127.0.0.1:{port}/")
    assert outcome.status is None
    assert outcome.error.startswith("connection failed")


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "0x7f000001", "2130706433", "127.1", "[::ffff:127.0.0.1]"]
)
def test_refused_destinations_never_reach_the_listener(receiver: Receiver, host: str) -> None:
    url = f"http://{host}:{receiver.port}/hook"
    headers = delivery.headers("d-2", BODY, "s", time.time())
    outcome = delivery.post(url, BODY, headers, allow_private=False)
    assert outcome.status is None
    assert outcome.error.startswith("refused")
    time.sleep(0.2)
    assert receiver.received == []
