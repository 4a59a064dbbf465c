"""The PostgreSQL that ``./dev test`` starts on a machine without one on 127.0.0.1:5432."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import psycopg
import requests

from tests.conftest import Backend, Server
from tests.embedded_postgres import EmbeddedPostgres, answers


def test_embedded_postgres_serves_a_modelyard_server(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="modelyard-pg-"))).start()
    try:
        assert answers("127.0.0.1", pg.port)
        name = f"embedded_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(pg.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = pg.admin_url.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0]
        server = Server(Backend("postgresql", f"{url}/{name}", tmp_path))
        try:
            created = requests.post(
                f"{server.url}/api/2.0/mlflow/experiments/create",
                json={"name": "on-embedded"},
                timeout=10,
            )
            assert created.status_code == 200, created.text
            with psycopg.connect(f"{pg.admin_url.rsplit('/', 1)[0]}/{name}") as conn:
                names = [row[0] for row in conn.execute("SELECT name FROM experiments")]
            assert "on-embedded" in names
        finally:
            server.stop()
    finally:
        pg.stop()
    assert not answers("127.0.0.1", pg.port)
    assert not pg.folder.exists()
