"""The deploy receiver of docs/webhooks.md, as printed there, run against a live server: it
verifies the signature and starts a GitLab pipeline or a GitHub repository_dispatch (stand-ins
for both APIs record what it sends) when production moves, and nothing else."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
import requests

from tests.conftest import Server, free_port
from tests.integration.test_webhook_durability import mlflow, setup_model
from tests.webhooks.receiver import Receiver

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
SECRET = "recipe-secret"


def recipe() -> str:
    """The Python block under the recipe's heading."""
    text = DOC.read_text().split("## Deploy when production moves", 1)[1]
    found = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    assert found is not None
    return found.group(1)


def start_receiver(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    script = tmp_path / "deploy_receiver.py"
    script.write_text(recipe())
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env={**os.environ, **env, "WEBHOOK_SECRET": SECRET, "HOST": "127.0.0.1", "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/modelyard"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            requests.post(url, data=b"{}", timeout=1)
            return proc, url
        except requests.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the recipe's receiver did not start")


@pytest.mark.parametrize("ci", ["gitlab", "github"])
def test_the_documented_receiver_deploys_when_production_moves(
    make_backend, tmp_path: Path, ci: str
) -> None:  # type: ignore[no-untyped-def]
    api = Receiver()
    api.status = 201 if ci == "gitlab" else 204
    env = (
        {
            "GITLAB_URL": f"http://127.0.0.1:{api.port}",
            "GITLAB_PROJECT": "ml/deploy",
            "GITLAB_TRIGGER_TOKEN": "glptt-token",
            "GITLAB_REF": "release",
        }
        if ci == "gitlab"
        else {
            "GITHUB_API_URL": f"http://127.0.0.1:{api.port}",
            "GITHUB_REPOSITORY": "acme/deploy",
            "GITHUB_TOKEN": "ghp-token",
        }
    )
    proc, url = start_receiver(tmp_path, env)
    server = Server(make_backend("sqlite"), env={"MODELYARD_WEBHOOK_ALLOW_PRIVATE": "1"})
    try:
        forged = requests.post(
            url,
            data=b'{"entity":"model_version_alias","action":"created"}',
            headers={
                "X-MLflow-Delivery-Id": "x",
                "X-MLflow-Timestamp": str(int(time.time())),
                "X-MLflow-Signature": "v1,AAAA",
            },
            timeout=5,
        )
        assert forged.status_code == 401
        events = [{"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"}]
        model = setup_model(server, url, events)
        hook = mlflow(server, "GET", "webhooks").json()["webhooks"][0]["webhook_id"]
        assert mlflow(server, "PATCH", f"webhooks/{hook}", secret=SECRET).status_code == 200
        for alias, version in (("staging", "1"), ("production", "2")):
            moved = mlflow(
                server, "POST", "registered-models/alias", name=model, alias=alias, version=version
            )
            assert moved.status_code == 200
        call = api.wait_for(1, timeout=20)[0]
        time.sleep(1.0)
        assert len(api.received) == 1  # staging started nothing
        if ci == "gitlab":
            assert call.path == "/api/v4/projects/ml%2Fdeploy/trigger/pipeline"
            form = dict(urllib.parse.parse_qsl(call.body.decode()))
            assert form == {
                "token": "glptt-token",
                "ref": "release",
                "variables[MODEL_NAME]": model,
                "variables[MODEL_VERSION]": "2",
            }
        else:
            assert call.path == "/repos/acme/deploy/dispatches"
            assert call.headers["authorization"] == "Bearer ghp-token"
            assert json.loads(call.body) == {
                "event_type": "deploy-model",
                "client_payload": {"model": model, "version": "2"},
            }
    finally:
        server.stop()
        proc.kill()
        proc.wait(10)
        api.stop()
