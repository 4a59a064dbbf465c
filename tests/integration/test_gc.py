"""``modelyard gc``: deleted candidates past the grace period lose their rows and their bytes;
bytes another candidate still uses stay; ``--dry-run`` removes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests

from tests.conftest import SeaweedFS, Server, blob_args, run_cli
from tests.integration.test_artifacts import store_of


@pytest.mark.parametrize(("kind", "store"), [("sqlite", "local"), ("postgresql", "s3")])
def test_gc_frees_deleted_candidates(
    make_backend, request: pytest.FixtureRequest, tmp_path: Path, kind: str, store: str
) -> None:  # type: ignore[no-untyped-def]
    from mlflow.tracking import MlflowClient

    seaweed: SeaweedFS | None = request.getfixturevalue("seaweedfs") if store == "s3" else None
    server = Server(make_backend(kind), *blob_args(store, seaweed))
    try:
        client = MlflowClient(server.url)
        experiment = client.create_experiment("gc")
        shared = tmp_path / "shared.bin"
        shared.write_bytes(os.urandom(3 << 20))
        own = tmp_path / "own.bin"
        own.write_bytes(os.urandom(2 << 20))
        keep = client.create_run(experiment).info.run_id
        doomed = client.create_run(experiment).info.run_id
        client.log_artifact(keep, str(shared))
        client.log_artifact(doomed, str(shared))
        client.log_artifact(doomed, str(own))
        client.log_param(doomed, "p", "1")
        client.delete_run(doomed)
        logged = client.create_logged_model(experiment, name="gone")
        put = requests.put(
            f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{experiment}/models/"
            f"{logged.model_id}/artifacts/w.bin",
            data=os.urandom(1 << 20),
            timeout=30,
        )
        assert put.status_code == 200
        client.delete_logged_model(logged.model_id)
        blobs = store_of(server)
        assert sum(o.size for o in blobs.objects()) == 6 << 20

        young = run_cli(server, "gc")  # deleted just now: inside the default grace period of 7 days
        assert young.returncode == 0, young.stderr
        assert "0 deleted candidates" in young.stdout
        dry = run_cli(server, "gc", "--older-than", "0", "--dry-run")
        assert "would remove: 0 deleted projects, 1 deleted candidates" in dry.stdout
        assert sum(o.size for o in blobs.objects()) == 6 << 20

        done = run_cli(server, "gc", "--older-than", "0")
        assert done.returncode == 0, done.stderr
        assert (
            "removed: 0 deleted projects, 1 deleted candidates, 1 deleted logged models"
            in done.stdout
        )
        assert "2 unreferenced blobs (3.0 MiB)" in done.stdout
        assert sum(o.size for o in blobs.objects()) == 3 << 20
        gone = requests.get(
            f"{server.url}/api/2.0/mlflow/runs/get", params={"run_id": doomed}, timeout=10
        )
        assert gone.status_code == 404
        back = client.download_artifacts(keep, "shared.bin", str(tmp_path / "back"))
        assert Path(back).read_bytes() == shared.read_bytes()
        checked = run_cli(server, "fsck")
        assert checked.returncode == 0, checked.stdout
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_deleted_project_is_purged_and_its_blobs_released(
    make_backend, tmp_path: Path, kind: str
) -> None:  # type: ignore[no-untyped-def]
    """A deleted project answers 404 at once; gc then removes every row of it and the bytes
    only it used, keeps bytes another project shares, and the name can be used again."""
    from mlflow.tracking import MlflowClient

    server = Server(make_backend(kind))
    try:
        for name in ("doomed", "kept"):
            made = run_cli(server, "admin", "projects", "create", name)
            assert made.returncode == 0, made.stderr
        doomed = MlflowClient(*[f"{server.url}/projects/doomed"] * 2)
        kept = MlflowClient(*[f"{server.url}/projects/kept"] * 2)
        shared = tmp_path / "shared.bin"
        shared.write_bytes(os.urandom(1 << 20))
        own = tmp_path / "own.bin"
        own.write_bytes(os.urandom(2 << 20))
        experiment = doomed.create_experiment("e")
        run = doomed.create_run(experiment).info.run_id
        doomed.log_artifact(run, str(shared))
        doomed.log_artifact(run, str(own))
        doomed.log_metric(run, "m", 1.0)
        doomed.create_registered_model("model")
        doomed.create_model_version("model", f"runs:/{run}/own.bin", run_id=run)
        doomed.set_registered_model_alias("model", "production", "1")
        doomed.create_webhook("hook", "https://hooks.example.com/x", ["model_version_tag.deleted"])
        kept_run = kept.create_run("0").info.run_id
        kept.log_artifact(kept_run, str(shared))
        blobs = store_of(server)
        assert sum(o.size for o in blobs.objects()) == 3 << 20

        deleted = run_cli(server, "admin", "projects", "delete", "doomed", "--yes")
        assert deleted.returncode == 0, deleted.stderr
        gone = requests.get(
            f"{server.url}/projects/doomed/api/2.0/mlflow/runs/get",
            params={"run_id": run},
            timeout=10,
        )
        assert gone.status_code == 404
        young = run_cli(server, "gc")
        assert "0 deleted projects" in young.stdout
        assert sum(o.size for o in blobs.objects()) == 3 << 20

        done = run_cli(server, "gc", "--older-than", "0")
        assert done.returncode == 0, done.stderr
        assert "removed: 1 deleted projects, 0 deleted candidates" in done.stdout
        assert sum(o.size for o in blobs.objects()) == 1 << 20
        back = kept.download_artifacts(kept_run, "shared.bin", str(tmp_path / "back"))
        assert Path(back).read_bytes() == shared.read_bytes()
        checked = run_cli(server, "fsck")
        assert checked.returncode == 0, checked.stdout
        listed = run_cli(server, "admin", "projects", "list")
        assert "doomed" not in listed.stdout
        assert "kept" in listed.stdout

        again = run_cli(server, "admin", "projects", "create", "doomed")
        assert again.returncode == 0, again.stderr
        fresh = MlflowClient(*[f"{server.url}/projects/doomed"] * 2)
        assert fresh.search_registered_models() == []
        assert list(fresh.list_webhooks()) == []
        assert [e.name for e in fresh.search_experiments()] == ["Default"]
    finally:
        server.stop()
