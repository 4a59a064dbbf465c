"""A SQLite database held busy by another process answers a retryable 503, never a 500."""

from __future__ import annotations

import sqlite3

from tests.conftest import Server, api


def test_busy_sqlite_answers_503_and_recovers(make_backend) -> None:
    backend = make_backend("sqlite")
    server = Server(backend, "--busy-timeout", "0.3")
    try:
        exp = api(server.url, "POST", "experiments/create", json={"name": "busy"}).json()
        run = api(server.url, "POST", "runs/create", json={"experiment_id": exp["experiment_id"]})
        run_id = run.json()["run"]["info"]["run_id"]
        point = {"run_id": run_id, "key": "m", "value": 1.0, "timestamp": 1, "step": 0}

        holder = sqlite3.connect(backend.data_dir / "modelyard.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            busy = api(server.url, "POST", "runs/log-metric", json=point)
            assert busy.status_code == 503
            assert busy.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
            readable = api(server.url, "GET", "runs/get", params={"run_id": run_id})
            assert readable.status_code == 200
        finally:
            holder.execute("ROLLBACK")
            holder.close()

        assert api(server.url, "POST", "runs/log-metric", json=point).status_code == 200
        run = api(server.url, "GET", "runs/get", params={"run_id": run_id}).json()["run"]
        assert run["data"]["metrics"] == [{"key": "m", "value": 1.0, "timestamp": 1, "step": 0}]
    finally:
        server.stop()
