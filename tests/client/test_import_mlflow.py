"""``modelyard import mlflow`` from a real ``mlflow server`` (SQLite backend, proxied artifacts)
filled by the stock client, into a project of a live ``--auth`` server, run from a venv that
holds only the client. The stock client then reads the same answers from both servers; a
second import changes nothing; an import killed with SIGKILL and run again completes with
nothing duplicated; ids taken by another project are refused, not overwritten."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.client.conftest import Venv, Yard, _token
from tests.conftest import (
    BACKENDS,
    Server,
    _drop_pg_database,
    _session_backend,
    free_port,
    run_cli,
)

ROOT = Path(__file__).resolve().parents[2]
# what tests/integration/mlflow_history.py fills (not imported here: it imports mlflow)
STEPS = 100_000
BIG_FILE = 200 * 1024 * 1024
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "NO_PROXY": "127.0.0.1"}


def _python(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The stock MLflow client in a process of its own (its tracking URI is global state)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MODELYARD_"))}
    return subprocess.run(
        [sys.executable, "-m", "tests.integration.mlflow_history", *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env={**base, **QUIET, **(env or {})},
        check=False,
    )


@pytest.fixture(scope="module")
def source_folder(source: str) -> Path:
    """Where the source server keeps its database (mlflow.db) and files (artifacts/)."""
    return FOLDERS[source]


FOLDERS: dict[str, Path] = {}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` 3.17 on SQLite with proxied artifacts, filled by the stock client."""
    folder = tmp_path_factory.mktemp("mlflow-source")
    port = free_port()
    log = (folder / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=folder,
        env={**os.environ, **QUIET},
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (folder / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow server did not start"
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        filled = _python("fill", url, str(folder / "fill"))
        assert filled.returncode == 0, filled.stderr[-5000:]
        FOLDERS[url] = folder
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.fixture(params=BACKENDS)
def yard(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Yard]:
    """A fresh ``--auth`` server for each test (run ids are unique on a server), with an admin,
    the project ``churn`` and a developer's token there."""
    kind = request.param
    backend, pg_name = _session_backend(kind, tmp_path_factory.mktemp(f"import-{kind}"))
    server = Server(backend, env={"MODELYARD_AUTH": "1"})
    try:
        made = run_cli(server, "admin", "users", "create", "root", "--admin")
        assert made.returncode == 0, made.stderr
        admin = made.stdout.strip()
        _project_named(server.url, admin, "churn")
        yield Yard(server, admin, _token(server, admin, "developer"), "")
    finally:
        server.stop()
        if pg_name:
            _drop_pg_database(pg_name)


def _project_named(url: str, admin: str, name: str) -> str:
    made = requests.post(
        f"{url}/api/v1/projects",
        json={"name": name},
        headers={"authorization": f"Bearer {admin}"},
        timeout=30,
    )
    assert made.status_code == 201, made.text
    return name


def _project(yard: Yard) -> str:
    return _project_named(yard.server.url, yard.admin, f"imp-{uuid.uuid4().hex[:8]}")


def _import(
    venv: Venv, yard: Yard, project: str, source: str, *extra: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "MODELYARD_URL": f"{yard.server.url}/projects/{project}",
        "MODELYARD_TOKEN": token or yard.admin,
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",  # the source's variable: not the target
        **QUIET,
    }
    return subprocess.run(
        [str(venv.modelyard), "import", "mlflow", "--from", source, "--json", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )


def _reads(uri: str, token: str | None, where: Path) -> dict[str, Any]:
    env = {"MLFLOW_TRACKING_TOKEN": token} if token else {}
    done = _python("read", uri, str(where), env=env)
    assert done.returncode == 0, done.stderr[-5000:]
    found: dict[str, Any] = json.loads(where.read_text())
    for run in found["runs"].values():  # MLflow's listing leaves out a size of 0 (proto3)
        for entry in run["files"].values():
            entry[0] = entry[0] or 0
    return found


def _run_count(yard: Yard, project: str) -> int:
    base = f"{yard.server.url}/projects/{project}/api/2.0/mlflow"
    experiments = requests.post(
        f"{base}/experiments/search",
        json={"view_type": "ALL", "max_results": 100},
        headers=yard.headers(),
        timeout=30,
    ).json()["experiments"]
    found = requests.post(
        f"{base}/runs/search",
        json={"experiment_ids": [e["experiment_id"] for e in experiments], "run_view_type": "ALL"},
        headers=yard.headers(),
        timeout=30,
    ).json()
    return len(found.get("runs", []))


def _totals(report: dict[str, Any]) -> dict[str, dict[str, int]]:
    return report["entities"]  # type: ignore[no-any-return]


def test_import_reads_the_same_and_repeats_as_a_no_op(
    client_venv: Venv, yard: Yard, source: str, tmp_path: Path
) -> None:
    project = _project(yard)
    first = _import(client_venv, yard, project, source, "--verify")
    assert first.returncode == 0, first.stdout + first.stderr
    report = json.loads(first.stdout)
    assert report["failures"] == []
    assert report["verify"] == {"ok": True, "differences": []}
    totals = _totals(report)
    assert totals["runs"]["imported"] == 5  # parent, child, second, deleted, in a deleted exp.
    assert totals["metric points"]["imported"] == STEPS + 4 + 1 + 1 + 1
    assert totals["versions"]["imported"] == 2
    assert totals["aliases"]["imported"] == 2
    assert report["bytes"] > BIG_FILE + 600_000  # the 200 MiB file, streamed

    theirs = _reads(source, None, tmp_path / "theirs.json")
    ours = _reads(f"{yard.server.url}/projects/{project}", yard.admin, tmp_path / "ours.json")
    assert ours == theirs
    assert ours["predictions"] == [2.0, 10.0]
    assert ours["experiments"]["imported-gone"]["lifecycle"] == "deleted"
    assert any(r["lifecycle"] == "deleted" for r in ours["runs"].values())

    again = _import(client_venv, yard, project, source)
    assert again.returncode == 0, again.stdout + again.stderr
    repeat = json.loads(again.stdout)
    assert repeat["bytes"] == 0
    for entity, tally in _totals(repeat).items():
        assert tally["imported"] == tally["updated"] == tally["failed"] == 0, (entity, tally)
        assert tally["unchanged"] == sum(_totals(report)[entity].values()), entity
    assert (
        _reads(f"{yard.server.url}/projects/{project}", yard.admin, tmp_path / "again.json")
        == theirs
    )


def test_skip_deleted_leaves_deleted_behind(client_venv: Venv, yard: Yard, source: str) -> None:
    project = _project(yard)
    done = _import(client_venv, yard, project, source, "--skip-deleted")
    assert done.returncode == 0, done.stdout + done.stderr
    totals = _totals(json.loads(done.stdout))
    assert totals["runs"]["imported"] == 3
    assert totals["experiments"]["imported"] + totals["experiments"]["updated"] == 2


def test_killed_import_completes_without_duplicates(
    client_venv: Venv, yard: Yard, source: str
) -> None:
    project = _project(yard)
    env = {
        "PATH": "/usr/bin:/bin",
        "MODELYARD_URL": f"{yard.server.url}/projects/{project}",
        "MODELYARD_TOKEN": yard.admin,
        **QUIET,
    }
    proc = subprocess.Popen(
        [str(client_venv.modelyard), "import", "mlflow", "--from", source],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:  # kill it once runs arrive
        if _run_count(yard, project):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    resumed = _import(client_venv, yard, project, source, "--verify")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["verify"]["ok"], report["verify"]
    assert _run_count(yard, project) == 5
    again = json.loads(_import(client_venv, yard, project, source).stdout)
    assert all(t["imported"] == t["updated"] == 0 for t in _totals(again).values()), again


def test_ids_taken_elsewhere_are_refused_and_roles_are_checked(
    client_venv: Venv, yard: Yard, source: str
) -> None:
    first, second = _project(yard), _project(yard)
    assert _import(client_venv, yard, first, source).returncode == 0
    clash = _import(client_venv, yard, second, source)
    assert clash.returncode == 1
    report = json.loads(clash.stdout)
    assert _totals(report)["runs"]["failed"] == 5
    assert any("is taken by another candidate" in f for f in report["failures"])
    # the first project's runs are untouched
    run_id = next(f.split()[1].rstrip(":") for f in report["failures"] if f.startswith("run "))
    here = requests.get(
        f"{yard.server.url}/projects/{first}/api/2.0/mlflow/runs/get",
        params={"run_id": run_id},
        headers=yard.headers(),
        timeout=30,
    )
    assert here.status_code == 200, here.text

    refused = _import(client_venv, yard, "churn", source, token=yard.developer)
    assert refused.returncode == 1
    assert "permission denied" in json.loads(refused.stdout)["failures"][0]


def test_import_from_the_sql_store_reads_the_same(
    client_venv: Venv, yard: Yard, source: str, source_folder: Path, tmp_path: Path
) -> None:
    """MLflow's database and artifact folder read directly; the client alone says what it
    lacks in one line."""
    store = ["--store", f"sqlite:///{source_folder / 'mlflow.db'}"]
    store += ["--artifact-root", str(source_folder / "artifacts")]
    project = _project(yard)
    bare = subprocess.run(
        [str(client_venv.modelyard), "import", "mlflow", *store],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "MODELYARD_URL": f"{yard.server.url}/projects/{project}"},
        timeout=60,
        check=False,
    )
    assert bare.returncode == 1
    assert bare.stderr.strip().splitlines()[-1] == (
        "error: reading an MLflow database needs sqlalchemy: pip install 'modelyard-client[stores]'"
    ), bare.stderr
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "modelyard"),
            "import",
            "mlflow",
            *store,
            "--verify",
            "--json",
        ],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "MODELYARD_URL": f"{yard.server.url}/projects/{project}",
            "MODELYARD_TOKEN": yard.admin,
        },
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["verify"]["ok"], report["verify"]
    assert _totals(report)["runs"]["imported"] == 5
    theirs = _reads(source, None, tmp_path / "theirs.json")
    ours = _reads(f"{yard.server.url}/projects/{project}", yard.admin, tmp_path / "ours.json")
    assert ours == theirs


FILE_STORE = """
import math, sys
import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric
uri = "file://" + sys.argv[1]
mlflow.set_tracking_uri(uri)
client = MlflowClient(uri)
experiment = client.create_experiment("imported-files", tags={"k": "v"})
mlflow.set_experiment(experiment_id=experiment)
with mlflow.start_run(run_name="parent") as run:
    mlflow.log_params({"a": "1"})
    client.log_batch(run.info.run_id, metrics=[Metric("loss", 1 / (s + 1), 1700000000000 + s, s)
                                                for s in range(500)])
    mlflow.log_metric("odd", math.nan, step=0)
    mlflow.log_metric("odd", math.inf, step=1)
    mlflow.log_text("hello", "folder/hello.txt")
    with mlflow.start_run(run_name="child", nested=True):
        mlflow.log_metric("acc", 0.5)
client.create_registered_model("files-model", description="from the file store")
version = client.create_model_version("files-model", f"runs:/{run.info.run_id}/folder",
                                      run_id=run.info.run_id)
client.set_registered_model_alias("files-model", "champion", version.version)
"""


def test_import_from_a_file_store(yard: Yard, tmp_path: Path) -> None:
    """An ``mlruns`` folder read directly: everything found again by --verify; run twice,
    nothing changes."""
    store = tmp_path / "mlruns"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MODELYARD_"))}
    made = subprocess.run(
        [sys.executable, "-c", FILE_STORE, str(store)],
        capture_output=True,
        text=True,
        env={**base, **QUIET, "MLFLOW_ALLOW_FILE_STORE": "true"},
        timeout=300,
        check=False,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    project = _project(yard)
    env = {
        **base,
        "MODELYARD_URL": f"{yard.server.url}/projects/{project}",
        "MODELYARD_TOKEN": yard.admin,
    }
    command = [str(Path(sys.executable).parent / "modelyard"), "import", "mlflow", "--json"]
    command += ["--store", str(store)]
    first = subprocess.run(
        [*command, "--verify"], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    assert first.returncode == 0, first.stdout + first.stderr
    report = json.loads(first.stdout)
    assert report["verify"] == {"ok": True, "differences": []}
    totals = _totals(report)
    assert totals["runs"]["imported"] == 2
    assert totals["metric points"]["imported"] == 503
    assert totals["files"]["imported"] == 1
    assert totals["versions"]["imported"] == 1
    assert totals["aliases"]["imported"] == 1
    again = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=600, check=False
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert all(
        t["imported"] == t["updated"] == 0 for t in _totals(json.loads(again.stdout)).values()
    )
