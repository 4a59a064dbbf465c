"""schemathesis against a live server with authentication on, as its first admin: every check,
the examples, coverage, fuzzing and stateful phases over /api/v1/openapi.json, no failure.

Kept short for the suite; run it longer with, for example::

    MODELYARD_FUZZ_EXAMPLES=200 MODELYARD_FUZZ_STEPS=200 ./dev test tests/api/test_schemathesis.py

``MODELYARD_FUZZ_SEED`` replays a run (its seed is printed on failure).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, _drop_pg_database, _session_backend, run_cli

EXAMPLES = os.environ.get("MODELYARD_FUZZ_EXAMPLES", "8")
STEPS = os.environ.get("MODELYARD_FUZZ_STEPS", "25")
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str, int]]:
    """A server with --auth on SQLite, and a token of its first admin made for this run."""
    backend, pg_name = _session_backend("sqlite", tmp_path_factory.mktemp("fuzz"))
    srv = Server(backend, env={"MODELYARD_AUTH": "1"})
    try:
        made = run_cli(srv, "admin", "users", "create", "root", "--admin")
        assert made.returncode == 0, made.stderr
        token = httpx.post(
            f"{srv.url}/api/v1/tokens",
            json={"name": "fuzzing"},
            headers={"authorization": f"Bearer {made.stdout.strip()}"},
            timeout=30,
        ).json()
        yield srv, token["secret"], token["token"]["id"]
    finally:
        srv.stop()
        if pg_name:
            _drop_pg_database(pg_name)


def test_schemathesis_finds_nothing(fuzz_server: tuple[Server, str, int], tmp_path: Path) -> None:
    srv, secret, token_id = fuzz_server
    config = tmp_path / "schemathesis.toml"
    # Links are declared; the guessed ones would take a project's id for its name. A range
    # past the end of a stored file is refused for what is stored (416), like a 404 or 409.
    # Invalid data may also be refused for its size alone, before it is read: a body over the
    # route's limit answers 413 whatever else is wrong with it.
    config.write_text(
        f"[phases.stateful]\nmax-steps = {int(STEPS)}\n\n"
        '[phases.stateful.inference]\nalgorithms = ["location-headers"]\n\n'
        "[checks.positive_data_acceptance]\n"
        'expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "416", "429", "5xx"]\n\n'
        "[checks.negative_data_rejection]\n"
        'expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", '
        '"422", "428", "429", "5xx"]\n'
    )
    command = [
        str(Path(sys.executable).parent / "st"),
        "--config-file",
        str(config),
        "run",
        f"{srv.url}/api/v1/openapi.json",
        "--header",
        f"Authorization: Bearer {secret}",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        EXAMPLES,
        "--workers",
        "1",  # hypothesis describes strategies with ast.parse, which 3.11 runs unsafely in threads
        "--generation-database",
        "none",
        "--no-color",
        "--warnings",
        "off",
    ]
    if "MODELYARD_FUZZ_SEED" in os.environ:
        command += ["--seed", os.environ["MODELYARD_FUZZ_SEED"]]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.api.schemathesis_hooks",
        "MODELYARD_FUZZ_TOKEN_ID": str(token_id),
        "PYTHONPATH": str(HERE.parents[1]),
    }
    done = subprocess.run(  # in tmp_path: schemathesis keeps a cache in its working folder
        command, capture_output=True, text=True, timeout=900, env=env, check=False, cwd=tmp_path
    )
    report = done.stdout + done.stderr
    failures = report.find("= FAILURES =")  # the findings first, not the run's last lines
    start = failures if failures >= 0 else max(len(report) - 20000, 0)
    assert done.returncode == 0, report[start : start + 20000]
    assert " passed" in report, report[-5000:]
    assert "Stateful" in report, report[-5000:]
    # the run was made as the admin all along: its token still works
    me = httpx.get(
        f"{srv.url}/api/v1/me", headers={"authorization": f"Bearer {secret}"}, timeout=30
    )
    assert me.status_code == 200, me.text
