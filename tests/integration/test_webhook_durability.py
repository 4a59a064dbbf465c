"""The outbox survives crashes, and several servers share it: SIGKILL at random moments of a
burst of alias moves loses no event; two servers on one PostgreSQL send each delivery once."""

from __future__ import annotations

import itertools
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import Backend, Server
from tests.webhooks.receiver import Received, Receiver

ALLOW_PRIVATE = {"MODELYARD_WEBHOOK_ALLOW_PRIVATE": "1"}
#: SIGKILLs per run (each costs a server start); MODELYARD_WEBHOOK_KILLS raises both
KILLS = {"sqlite": 20, "postgresql": 10}


def mlflow(server: Server, method: str, path: str, **body: object) -> requests.Response:
    return requests.request(
        method, f"{server.url}/api/2.0/mlflow/{path}", json=body or None, timeout=10
    )


def setup_model(server: Server, receiver_url: str, events: list[dict[str, str]]) -> str:
    """A webhook on ``receiver_url`` and a model with two versions; returns the model name."""
    hook = mlflow(server, "POST", "webhooks", name="hook", url=receiver_url, events=events)
    assert hook.status_code == 200, hook.text
    name = f"m-{uuid.uuid4().hex[:8]}"
    assert mlflow(server, "POST", "registered-models/create", name=name).status_code == 200
    experiment = mlflow(server, "POST", "experiments/create", name=name).json()["experiment_id"]
    run_id = mlflow(server, "POST", "runs/create", experiment_id=experiment).json()["run"]["info"][
        "run_id"
    ]
    for _ in range(2):
        created = mlflow(
            server, "POST", "model-versions/create", name=name, source=f"runs:/{run_id}/model"
        )
        assert created.status_code == 200, created.text
    return name


class Mover(threading.Thread):
    """Moves ``production`` between versions 1 and 2 as fast as the server answers, following
    the server across restarts."""

    def __init__(self, name: str) -> None:
        super().__init__(daemon=True)
        self.model = name
        self.url = ""
        self.stopped = threading.Event()
        self.answered = 0

    def run(self) -> None:
        for version in itertools.cycle(("1", "2")):
            if self.stopped.is_set():
                return
            try:
                response = requests.post(
                    f"{self.url}/api/2.0/mlflow/registered-models/alias",
                    json={"name": self.model, "alias": "production", "version": version},
                    timeout=5,
                )
                self.answered += response.status_code == 200
            except requests.RequestException:
                time.sleep(0.02)


def moves_seen(received: list[Received], model: str) -> list[str]:
    """The versions ``production`` was moved to, as a receiver that drops repeated delivery
    ids sees them, with repeats of one version (a set that changed nothing) folded."""
    seen: set[str] = set()
    versions: list[str] = []
    for got in received:
        data = got.json["data"]
        if data.get("name") != model or got.delivery_id in seen:
            continue
        seen.add(got.delivery_id)
        if not versions or versions[-1] != data["version"]:
            versions.append(data["version"])
    return versions


def committed_moves(server: Server, model: str) -> list[str]:
    history = requests.get(
        f"{server.url}/api/v1/models/{model}/aliases/production/history", timeout=10
    )
    assert history.status_code == 200, history.text
    body = history.json()
    events = body["events"] if isinstance(body, dict) else body
    return [str(e["to_version"]) for e in events]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.stop()


@pytest.mark.parametrize("kind", sorted(KILLS))
def test_no_event_is_lost_to_sigkill(make_backend, receiver: Receiver, kind: str) -> None:  # type: ignore[no-untyped-def]
    backend: Backend = make_backend(kind)
    server = Server(backend, env=ALLOW_PRIVATE)
    events = [{"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"}]
    model = setup_model(server, receiver.url, events)
    mover = Mover(model)
    mover.url = server.url
    mover.start()
    rng = random.Random(14)
    try:
        for _ in range(int(os.environ.get("MODELYARD_WEBHOOK_KILLS", KILLS[kind]))):
            time.sleep(rng.uniform(0.05, 0.5))
            server.kill()
            server = Server(backend, env=ALLOW_PRIVATE)
            mover.url = server.url
        time.sleep(0.5)
    finally:
        mover.stopped.set()
        mover.join(10)
    try:
        committed = committed_moves(server, model)
        assert mover.answered > 0
        assert committed
        deadline = time.monotonic() + 60
        while moves_seen(receiver.received, model) != committed and time.monotonic() < deadline:
            time.sleep(0.2)
        assert moves_seen(receiver.received, model) == committed
    finally:
        server.stop()


def test_two_servers_on_one_postgresql_send_each_delivery_once(make_backend) -> None:  # type: ignore[no-untyped-def]
    backend: Backend = make_backend("postgresql")
    first = Server(backend, env=ALLOW_PRIVATE)
    second = Server(backend, env=ALLOW_PRIVATE)
    receivers = [Receiver(), Receiver()]
    try:
        events = [{"entity": "MODEL_VERSION_TAG", "action": "SET"}]
        model = setup_model(first, receivers[0].url, events)
        extra = mlflow(first, "POST", "webhooks", name="two", url=receivers[1].url, events=events)
        assert extra.status_code == 200

        def tag(n: int) -> None:
            server = (first, second)[n % 2]
            answer = mlflow(
                server,
                "POST",
                "model-versions/set-tag",
                name=model,
                version="1",
                key=f"k{n:03d}",
                value="v",
            )
            assert answer.status_code == 200, answer.text

        threads = [
            threading.Thread(target=lambda start=start: [tag(n) for n in range(start, 500, 4)])
            for start in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for rec in receivers:
            got = rec.wait_for(500, timeout=120)
            time.sleep(1.0)  # anything sent twice would arrive by now
            assert len(rec.received) == 500
            assert len({g.delivery_id for g in rec.received}) == 500
            assert {g.json["data"]["key"] for g in got} == {f"k{n:03d}" for n in range(500)}
    finally:
        for rec in receivers:
            rec.stop()
        first.stop()
        second.stop()


def test_one_process_sends_on_sqlite_with_several_workers(make_backend) -> None:  # type: ignore[no-untyped-def]
    """``--workers 2`` on SQLite: one process holds the send lock; the other rings it. Every
    delivery arrives once, soon after its change, whichever process took the request."""
    server = Server(make_backend("sqlite"), "--workers", "2", env=ALLOW_PRIVATE)
    receiver = Receiver()
    try:
        events = [{"entity": "MODEL_VERSION_TAG", "action": "SET"}]
        model = setup_model(server, receiver.url, events)
        started = time.monotonic()
        for n in range(100):
            answer = mlflow(
                server,
                "POST",
                "model-versions/set-tag",
                name=model,
                version="1",
                key=f"k{n:03d}",
                value="v",
            )
            assert answer.status_code == 200, answer.text
        got = receiver.wait_for(100, timeout=60)
        elapsed = time.monotonic() - started
        time.sleep(1.0)
        assert len(receiver.received) == 100
        assert len({g.delivery_id for g in got}) == 100
        assert [g.json["data"]["key"] for g in got] == [f"k{n:03d}" for n in range(100)]
        assert elapsed < 60
    finally:
        receiver.stop()
        server.stop()


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize("kind", sorted(KILLS))
def test_the_delivery_process_ends_with_its_server(  # type: ignore[no-untyped-def]
    make_backend, receiver: Receiver, kind: str
) -> None:
    """Deliveries are sent by a child process of the server. SIGKILL to the server process
    alone (not its process group, as an out-of-memory killer does) ends that child too, and the
    next server sends the delivery left waiting, with the same delivery id."""
    backend: Backend = make_backend(kind)
    server = Server(backend, env=ALLOW_PRIVATE)
    receiver.status = 503
    events = [{"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"}]
    model = setup_model(server, receiver.url, events)
    moved = mlflow(
        server, "POST", "registered-models/alias", name=model, alias="production", version="2"
    )
    assert moved.status_code == 200, moved.text
    refused = receiver.wait_for(1, timeout=20)
    children = _children(server.proc.pid)
    assert children, "the server started no delivery process"
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=20)
    deadline = time.monotonic() + 10
    while any(_running(child) for child in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_running(child) for child in children)
    receiver.status = 200
    server = Server(backend, env=ALLOW_PRIVATE)
    try:
        got = receiver.wait_for(
            1,
            timeout=30,
            where=lambda r: r is not refused[0] and r.delivery_id == refused[0].delivery_id,
        )
        assert got[0].json["data"] == {"name": model, "alias": "production", "version": "2"}
    finally:
        server.stop()


@pytest.mark.parametrize("kind", sorted(KILLS))
def test_finished_deliveries_are_removed_after_the_retention(  # type: ignore[no-untyped-def]
    make_backend, receiver: Receiver, kind: str
) -> None:
    """Delivered and given-up deliveries older than ``--webhook-retention-days`` are removed
    by the server; pending ones stay, whatever their age."""
    backend: Backend = make_backend(kind)
    server = Server(backend, env=ALLOW_PRIVATE)
    events = [{"entity": "MODEL_VERSION_TAG", "action": "SET"}]
    try:
        model = setup_model(server, receiver.url, events)
        for n in range(3):
            tagged = mlflow(
                server,
                "POST",
                "model-versions/set-tag",
                name=model,
                version="1",
                key=f"k{n}",
                value="v",
            )
            assert tagged.status_code == 200, tagged.text
        receiver.wait_for(3)
        hooks = requests.get(f"{server.url}/api/v1/webhooks", timeout=10).json()["webhooks"]
        hook_id = hooks[0]["webhook_id"]

        def states() -> list[str]:
            answer = requests.get(f"{server.url}/api/v1/webhooks/{hook_id}/deliveries", timeout=10)
            assert answer.status_code == 200, answer.text
            return [d["state"] for d in answer.json()["deliveries"]]

        deadline = time.monotonic() + 20
        while states() != ["delivered"] * 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert states() == ["delivered"] * 3
        receiver.status = 503  # the next one stays pending, retried
        tagged = mlflow(
            server, "POST", "model-versions/set-tag", name=model, version="1", key="late", value="v"
        )
        assert tagged.status_code == 200
        receiver.wait_for(4)
    finally:
        server.stop()
    time.sleep(1.0)  # every delivery is now older than the retention below (0.5 s)
    server = Server(backend, "--webhook-retention-days", str(0.5 / 86400), env=ALLOW_PRIVATE)
    try:
        deadline = time.monotonic() + 20
        while states() != ["pending"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert states() == ["pending"]
    finally:
        server.stop()


def test_a_delivery_process_that_dies_is_started_again(  # type: ignore[no-untyped-def]
    make_backend, receiver: Receiver
) -> None:
    """The server starts its delivery process again when it dies; what was queued meanwhile
    goes out."""
    server = Server(make_backend("sqlite"), env=ALLOW_PRIVATE)
    try:
        events = [{"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"}]
        model = setup_model(server, receiver.url, events)
        before = set(_children(server.proc.pid))
        for child in before:
            os.kill(child, signal.SIGKILL)
        moved = mlflow(
            server, "POST", "registered-models/alias", name=model, alias="production", version="1"
        )
        assert moved.status_code == 200, moved.text
        got = receiver.wait_for(1, timeout=30, where=lambda r: r.json["data"]["name"] == model)
        assert got[0].json["data"]["version"] == "1"
        assert set(_children(server.proc.pid)) - before, "no new delivery process"
    finally:
        server.stop()
