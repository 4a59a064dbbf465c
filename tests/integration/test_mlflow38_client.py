"""An older 3.x client (mlflow-skinny 3.8.1, in its own virtualenv) works against the server:
its image names carry ``%`` sequences, and it reads the server's version before sending
trace spans."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import modelyard
from tests.conftest import Server

ROOT = Path(__file__).resolve().parents[2]
OLDER_VENV = ROOT / ".venv" / "mlflow38"
OLDER_VERSION = "3.8.1"

SCRIPT = r"""
import json, os, sys
import mlflow, numpy, PIL.Image
from mlflow.store.tracking.rest_store import RestStore
from mlflow.utils.rest_utils import MlflowHostCreds

mlflow.set_experiment(sys.argv[1])
with mlflow.start_run() as run:
    image = PIL.Image.new("RGB", (4, 3), (200, 10, 10))
    mlflow.log_image(image, key="k", step=1, synchronous=True)
    mlflow.log_image(numpy.zeros((2, 2, 3), dtype=numpy.uint8), key="loss_curve", step=12,
                     timestamp=1700000000000, synchronous=True)
client = mlflow.MlflowClient()
names = sorted(f.path for f in client.list_artifacts(run.info.run_id, "images"))
folder = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="images")
png = next(n for n in names if n.endswith(".png"))
loaded = mlflow.artifacts.load_image(f"runs:/{run.info.run_id}/{png}")
creds = MlflowHostCreds(os.environ["MLFLOW_TRACKING_URI"])
print(json.dumps({
    "version": mlflow.__version__,
    "names": names,
    "downloaded": sorted(os.listdir(folder)),
    "size": list(loaded.size),
    "server_version": str(RestStore._get_server_version(creds)),
}))
"""


@pytest.fixture(scope="session")
def older_python() -> Path:
    python = OLDER_VENV / "bin" / "python"
    marker = OLDER_VENV / f".mlflow-skinny-{OLDER_VERSION}"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", str(OLDER_VENV)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                f"mlflow-skinny=={OLDER_VERSION}",
                "pillow",
                "numpy",
            ],
            check=True,
        )
        marker.touch()
    return python


def test_images_logged_by_key_and_step(server: Server, older_python: Path) -> None:
    """``log_image(key=, step=)`` names files ``images/<key>%step%<n>%timestamp%<ms>%<id>``;
    each name is stored, listed and served exactly as the client sent it."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.url, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    done = subprocess.run(
        [str(older_python), "-c", SCRIPT, f"images-{os.getpid()}-{server.port}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["version"] == OLDER_VERSION
    names = result["names"]
    assert len(names) == 4
    assert sum(n.startswith("images/k%step%1%timestamp%") for n in names) == 2
    assert (
        sum(n.startswith("images/loss_curve%step%12%timestamp%1700000000000%") for n in names) == 2
    )
    assert {n.rsplit(".", 1)[1] for n in names} == {"png", "webp"}
    assert result["downloaded"] == sorted(n.removeprefix("images/") for n in names)
    assert result["size"] == [4, 3]
    # the client reads the version (modelyard's own); below 3.4 it sends no trace spans
    assert result["server_version"] == modelyard.__version__
