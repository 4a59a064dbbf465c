"""The sign-in limit (SQLite and PostgreSQL): five attempts without success per user name and
address, then 429 even for the right password; it is kept in the database, so a restarted
server (or another one) still applies it, and a success starts the count again."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import BACKENDS, Server
from tests.integration.test_several_servers import PASSWORD, http, login


@pytest.mark.parametrize("kind", BACKENDS)
def test_five_failed_sign_ins_hold_back_the_name_across_restarts(make_backend, kind: str) -> None:  # type: ignore[no-untyped-def]
    backend = make_backend(kind)
    server = Server(backend, "--auth")
    try:
        command = [sys.executable, "-m", "modelyard", "admin", "users", "create", "admin"]
        command += ["--admin", "--data-dir", str(backend.data_dir)]
        if kind == "postgresql":
            command += ["--database-url", backend.url]
        made = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert made.returncode == 0, made.stderr
        admin = http(made.stdout.strip())
        for name in ("carol", "dave"):
            created = admin.post(
                f"{server.url}/api/v1/users", json={"name": name, "password": PASSWORD}, timeout=30
            )
            assert created.status_code == 201, created.text

        # A success clears the count: four failures, a success, five more failures are checked.
        assert [login(server.url, "carol", "nope").status_code for _ in range(4)] == [401] * 4
        assert login(server.url, "carol", PASSWORD).status_code == 303
        assert [login(server.url, "carol", "nope").status_code for _ in range(5)] == [401] * 5
        refused = login(server.url, "carol", PASSWORD)
        assert refused.status_code == 429
        assert "Too many failed attempts" in refused.text

        server.stop()  # the count outlives the process
        server = Server(backend, "--auth")
        assert login(server.url, "carol", PASSWORD).status_code == 429
        assert login(server.url, "dave", PASSWORD).status_code == 303
    finally:
        server.stop()
