"""Eight clients logging to one SQLite server at once lose nothing and never see a 5xx."""

from __future__ import annotations

import os
import threading
import time

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from tests.conftest import Server

CLIENTS = 8
SECONDS = float(os.environ.get("MODELYARD_SOAK_SECONDS", "60"))


def test_eight_clients_for_a_minute(make_backend, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    server = Server(make_backend("sqlite"), "--workers", "2")
    try:
        client = MlflowClient(server.url)
        exp = client.create_experiment("soak")
        shared = client.create_run(exp).info.run_id
        sent: dict[int, int] = {}
        errors: list[BaseException] = []
        deadline = time.monotonic() + SECONDS

        def work(worker: int) -> None:
            own = MlflowClient(server.url)
            run_id = own.create_run(exp).info.run_id
            step = 0
            try:
                while time.monotonic() < deadline:
                    batch = [Metric("loss", step + i / 10, 0, step + i) for i in range(50)]
                    own.log_batch(run_id, metrics=batch)
                    step += 50
                    own.log_metric(shared, f"w{worker}", float(step), step=step)
                    own.set_tag(run_id, "progress", str(step))
            except BaseException as exc:  # any failure fails the test below
                errors.append(exc)
            sent[worker] = step
            own.set_tag(run_id, "worker", str(worker))

        threads = [threading.Thread(target=work, args=(w,)) for w in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        runs = client.search_runs([exp], "tags.worker IS NOT NULL", max_results=100)
        assert len(runs) == CLIENTS
        for run in runs:
            worker = int(run.data.tags["worker"])
            history = client.get_metric_history(run.info.run_id, "loss")
            assert len(history) == sent[worker]
            assert run.data.tags["progress"] == str(sent[worker])
        shared_run = client.get_run(shared)
        for worker, steps in sent.items():
            assert len(client.get_metric_history(shared, f"w{worker}")) == steps // 50
            assert shared_run.data.metrics[f"w{worker}"] == float(steps)
        assert sum(sent.values()) > 0
    finally:
        server.stop()
