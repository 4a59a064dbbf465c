"""Three ``modelyard server`` processes on different ports sharing one PostgreSQL database and
one S3 bucket (SeaweedFS), with the stock MLflow client and raw HTTP spread over them, while
``modelyard gc`` runs: every metric point, artifact and version number arrives exactly once,
each webhook delivery is sent once by one of the servers, sessions and tokens made (or ended)
through one server count on the others at once, the sign-in limit holds across servers, and the
collector removes only what nothing uses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from mlflow.webhooks.constants import WEBHOOK_DELIVERY_ID_HEADER

from tests.conftest import Backend, SeaweedFS, Server, _create_pg_database, _drop_pg_database
from tests.webhooks.receiver import Receiver

MLFLOW = "/api/2.0/mlflow"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "several servers, one database"
RUNS = 6
BATCHES = 8  # raw log-batch calls per run, each through the next server
POINTS = 250  # per raw batch
CLIENT_BATCHES = 3  # MlflowClient.log_batch calls per run
CLIENT_POINTS = 100
VERSIONS = 24  # created concurrently on one model, through all three servers
FILES = 4  # artifacts per run


class Cluster:
    """Three servers on one database and one bucket; the CLI on the same storage."""

    def __init__(self, shared: Backend, seaweed: SeaweedFS, folder: Path) -> None:
        self.shared = shared
        self.store = seaweed.server_args(f"modelyard-{uuid.uuid4().hex[:12]}")
        self.servers: list[Server] = []
        env = {"MODELYARD_WEBHOOK_ALLOW_PRIVATE": "1"}

        def start(i: int) -> Server:
            own = Backend(shared.name, shared.url, folder / f"server{i}")
            own.data_dir.mkdir()
            server = Server(own, "--auth", *self.store, env=env)
            self.servers.append(server)
            return server

        try:
            start(0)  # the schema exists now; the first admin comes from the CLI
            self.admin = self.cli("admin", "users", "create", "admin", "--admin")
            with ThreadPoolExecutor(max_workers=2) as pool:
                self.servers[1:] = list(pool.map(start, (1, 2)))
        except BaseException:
            self.stop()
            raise

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def run_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "modelyard", *args]
        command += ["--data-dir", str(self.shared.data_dir), "--database-url", self.shared.url]
        return subprocess.run(
            command + self.store, capture_output=True, text=True, timeout=120, check=False
        )

    def cli(self, *args: str) -> str:
        done = self.run_cli(*args)
        assert done.returncode == 0, f"modelyard {' '.join(args)}: {done.stderr}"
        return done.stdout.strip()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="module")
def cluster(seaweedfs: SeaweedFS, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster for the module: the tests use names of their own."""
    name, url = _create_pg_database()
    folder = tmp_path_factory.mktemp("cluster")
    made = None
    try:
        made = Cluster(Backend("postgresql", url, folder), seaweedfs, folder)
        yield made
    finally:
        if made is not None:
            made.stop()
        _drop_pg_database(name)


def http(token: str | None) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    return session


def call(session: requests.Session, url: str, endpoint: str, body: dict[str, Any]) -> Any:
    done = session.post(f"{url}{MLFLOW}/{endpoint}", json=body, timeout=60)
    assert done.status_code == 200, (url, endpoint, done.status_code, done.text)
    return done.json()


def value(run: int, step: int) -> float:
    return run * 1000.0 + step / 8


def test_three_servers_share_one_database_and_one_bucket(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", cluster.admin)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    urls = cluster.urls
    clients = [MlflowClient(url) for url in urls]
    admin = http(cluster.admin)
    receiver = Receiver()
    try:
        experiment = clients[0].create_experiment("several-servers")
        runs = [
            call(admin, urls[i % 3], "runs/create", {"experiment_id": experiment})["run"]["info"][
                "run_id"
            ]
            for i in range(RUNS)
        ]
        model = "shared-model"
        clients[1].create_registered_model(model)
        hook = clients[2].create_webhook(
            name="versions", url=receiver.url, events=["model_version.created"], secret="s3cret"
        )
        assert hook.webhook_id

        # Files: every run gets FILES files; half of them have the same bytes in every run
        # (stored once); candidates deleted during the load share those bytes too.
        common = [os.urandom(200_000 + i) for i in range(FILES // 2)]
        files: dict[tuple[int, str], bytes] = {}
        for r in range(RUNS):
            for f in range(FILES):
                files[(r, f"f{f}.bin")] = (
                    common[f] if f < FILES // 2 else os.urandom(150_000 + 1000 * r + f)
                )
        doomed = [
            call(admin, urls[i % 3], "runs/create", {"experiment_id": experiment})["run"]["info"][
                "run_id"
            ]
            for i in range(3)
        ]
        for i, run_id in enumerate(doomed):
            path = tmp_path / f"doomed{i}" / "f0.bin"
            path.parent.mkdir()
            path.write_bytes(common[0])
            clients[i % 3].log_artifact(run_id, str(path))

        stop_gc = threading.Event()
        gc_runs: list[subprocess.CompletedProcess[str]] = []

        def collect() -> None:
            while not stop_gc.is_set():
                gc_runs.append(cluster.run_cli("gc", "--older-than", "0", "--orphan-grace", "20s"))

        def raw_batches(r: int) -> None:
            session = http(cluster.admin)
            for b in range(BATCHES):
                steps = range(b * POINTS, (b + 1) * POINTS)
                body = {
                    "run_id": runs[r],
                    "metrics": [
                        {"key": "loss", "value": value(r, s), "timestamp": 1_000 + s, "step": s}
                        for s in steps
                    ],
                }
                call(session, urls[(r + b) % 3], "runs/log-batch", body)

        def client_batches(r: int) -> None:
            for b in range(CLIENT_BATCHES):
                steps = range(b * CLIENT_POINTS, (b + 1) * CLIENT_POINTS)
                clients[(r + b + 1) % 3].log_batch(
                    runs[r], metrics=[Metric("acc", value(r, s), 2_000 + s, s) for s in steps]
                )

        def upload(r: int) -> None:
            for f in range(FILES):
                name = f"f{f}.bin"
                path = tmp_path / f"run{r}" / name
                path.parent.mkdir(exist_ok=True)
                path.write_bytes(files[(r, name)])
                clients[(r + f) % 3].log_artifact(runs[r], str(path))

        def new_version(i: int) -> int:
            source = f"runs:/{runs[i % RUNS]}/model"
            if i % 2:
                return int(
                    clients[i % 3].create_model_version(model, source, runs[i % RUNS]).version
                )
            body = {"name": model, "source": source, "run_id": runs[i % RUNS]}
            got = call(http(cluster.admin), urls[i % 3], "model-versions/create", body)
            return int(got["model_version"]["version"])

        def delete_doomed() -> None:
            for i, run_id in enumerate(doomed):
                time.sleep(0.5)
                call(http(cluster.admin), urls[i % 3], "runs/delete", {"run_id": run_id})

        gc_thread = threading.Thread(target=collect)
        gc_thread.start()
        try:
            with ThreadPoolExecutor(max_workers=10) as pool:
                work: list[Any] = [pool.submit(delete_doomed)]
                work += [pool.submit(raw_batches, r) for r in range(RUNS)]
                work += [pool.submit(client_batches, r) for r in range(RUNS)]
                work += [pool.submit(upload, r) for r in range(RUNS)]
                numbers = [pool.submit(new_version, i) for i in range(VERSIONS)]
                for done in work:
                    done.result()
                versions = sorted(n.result() for n in numbers)
        finally:
            stop_gc.set()
            gc_thread.join()
        last = cluster.run_cli("gc", "--older-than", "0", "--orphan-grace", "20s")
        gc_runs.append(last)
        assert all(g.returncode == 0 for g in gc_runs), [g.stderr for g in gc_runs]
        assert len(gc_runs) >= 2

        # Every version number once, whichever server made it.
        assert versions == list(range(1, VERSIONS + 1))
        listed = clients[0].search_model_versions(f"name='{model}'")
        assert sorted(int(v.version) for v in listed) == versions

        # Every point once, read through each server.
        for r, run_id in enumerate(runs):
            url = urls[r % 3]
            loss = admin.get(
                f"{url}{MLFLOW}/metrics/get-history",
                params={"run_id": run_id, "metric_key": "loss", "max_results": 25000},
                timeout=60,
            ).json()["metrics"]
            assert [(m["step"], m["value"]) for m in loss] == [
                (s, value(r, s)) for s in range(BATCHES * POINTS)
            ]
            acc = clients[(r + 2) % 3].get_metric_history(run_id, "acc")
            assert sorted((m.step, m.value) for m in acc) == [
                (s, value(r, s)) for s in range(CLIENT_BATCHES * CLIENT_POINTS)
            ]

        # Every artifact, byte for byte, through a server other than the one it went to.
        for r, run_id in enumerate(runs):
            reader = clients[(r + 1) % 3]
            names = sorted(a.path for a in reader.list_artifacts(run_id))
            assert names == [f"f{f}.bin" for f in range(FILES)]
            back = Path(reader.download_artifacts(run_id, "", str(tmp_path / f"back{r}")))
            for name in names:
                assert (back / name).read_bytes() == files[(r, name)], (r, name)

        # The deleted candidates are gone, and nothing else.
        for run_id in doomed:
            gone = admin.get(f"{urls[0]}{MLFLOW}/runs/get", params={"run_id": run_id}, timeout=30)
            assert gone.status_code == 404, gone.text
        purged = [re.search(r"(\d+) deleted candidates", g.stdout) for g in gc_runs]
        assert sum(int(p.group(1)) for p in purged if p) == len(doomed)
        checked = cluster.run_cli("fsck")
        assert checked.returncode == 0, checked.stdout + checked.stderr

        # One delivery per version, each sent once (by whichever server claimed it).
        got = receiver.wait_for(VERSIONS, timeout=30)
        time.sleep(1.5)  # a duplicate would arrive within the senders' next look
        ids = [g.headers[WEBHOOK_DELIVERY_ID_HEADER.lower()] for g in receiver.received]
        assert len(ids) == len(set(ids)) == VERSIONS
        assert sorted(int(g.json["data"]["version"]) for g in got) == versions
    finally:
        receiver.stop()


def login(url: str, name: str, password: str) -> requests.Response:
    """One sign-in through the form of the server at ``url``."""
    browser = http(None)
    form = browser.get(f"{url}/login", timeout=30)
    field = CSRF_FIELD.search(form.text)
    assert field, form.text
    return browser.post(
        f"{url}/login",
        data={"csrf_token": field.group(1), "username": name, "password": password},
        allow_redirects=False,
        timeout=30,
    )


def test_sessions_tokens_and_the_sign_in_limit_span_the_servers(cluster: Cluster) -> None:
    urls = cluster.urls
    admin = http(cluster.admin)

    def me(url: str, session: requests.Session) -> requests.Response:
        return session.get(f"{url}/api/v1/me", timeout=30)

    # A token made through one server works on the others at once; revoked, it stops at once.
    made = admin.post(f"{urls[0]}/api/v1/tokens", json={"name": "spread"}, timeout=30)
    assert made.status_code == 201, made.text
    token = http(made.json()["secret"])
    assert [me(u, token).status_code for u in urls[::-1]] == [200, 200, 200]
    revoked = token.delete(f"{urls[1]}/api/v1/tokens/{made.json()['token']['id']}", timeout=30)
    assert revoked.status_code == 200, revoked.text
    assert [me(u, token).status_code for u in urls] == [401, 401, 401]

    # A session signed in through one server is signed in on the others; signed out through
    # one, it is out everywhere.
    for name in ("ann", "bob"):
        created = admin.post(
            f"{urls[2]}/api/v1/users", json={"name": name, "password": PASSWORD}, timeout=30
        )
        assert created.status_code == 201, created.text
    signed_in = login(urls[1], "ann", PASSWORD)
    assert signed_in.status_code == 303, signed_in.text
    browser = http(None)
    browser.cookies.update(signed_in.cookies)
    for url in urls:
        answer = me(url, browser)
        assert answer.status_code == 200, answer.text
        assert answer.json()["user"]["name"] == "ann"
    page = browser.get(f"{urls[0]}/", timeout=30)
    csrf = CSRF_FIELD.search(page.text)
    assert csrf, page.text
    out = browser.post(
        f"{urls[2]}/logout", data={"csrf_token": csrf.group(1)}, allow_redirects=False, timeout=30
    )
    assert out.status_code == 303, out.text
    browser.cookies.update(signed_in.cookies)  # the old cookie, kept by an attacker
    assert [me(u, browser).status_code for u in urls] == [401, 401, 401]

    # The sign-in limit: wrong passwords sent at once to all three servers; exactly five are
    # checked, the rest refused, and then the right password is refused too, on every server.
    with ThreadPoolExecutor(max_workers=9) as pool:
        tries = list(
            pool.map(
                lambda i: login(urls[i % 3], "bob", f"wrong password {i}").status_code,
                range(9),
            )
        )
    assert sorted(tries) == [401] * 5 + [429] * 4, tries
    assert [login(u, "bob", PASSWORD).status_code for u in urls] == [429, 429, 429]
    # Another name from the same address is not held back.
    assert login(urls[0], "ann", PASSWORD).status_code == 303
