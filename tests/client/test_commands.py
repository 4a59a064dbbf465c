"""Every client command from an empty folder, with only MLflow's environment variables, in a
venv that holds nothing but ./client."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

from tests.client.conftest import (
    Venv,
    Yard,
    candidate_with_files,
    mlflow_env,
    modelyard,
    one_line_error,
)
from tests.conftest import free_port

SERVER_ONLY = ["sqlalchemy", "boto3", "alembic", "psycopg", "uvicorn", "starlette", "jinja2"]


def test_the_client_venv_holds_no_server_parts(client_venv: Venv, empty_dir: Path) -> None:
    for module in [*SERVER_ONLY, "modelyard"]:
        found = subprocess.run(
            [str(client_venv.python), "-c", f"import {module}"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert found.returncode != 0, f"{module} is importable in the client's venv"
        assert "ModuleNotFoundError" in found.stderr
    listed = subprocess.run(
        [str(client_venv.path / "bin" / "pip"), "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {p["name"].lower() for p in json.loads(listed.stdout)} - {"pip", "setuptools"}
    assert names == {"modelyard-client", "click"}
    for command in ("server", "db", "gc", "fsck", "admin"):
        done = modelyard(client_venv, {"PATH": "/usr/bin:/bin"}, empty_dir, command, "--port", "1")
        assert "pip install modelyard" in one_line_error(done)


def test_every_command(client_venv: Venv, yard: Yard, empty_dir: Path) -> None:
    env = mlflow_env(yard)

    def ok(*args: str, stdin: str | None = None) -> str:
        done = modelyard(client_venv, env, empty_dir, *args, stdin=stdin)
        assert done.returncode == 0, (args, done.stderr)
        assert "Traceback" not in done.stderr
        return done.stdout

    def as_json(*args: str) -> object:
        return json.loads(ok(*args, "--json"))

    who = as_json("whoami")
    assert who["user"] == "root"  # type: ignore[index]
    assert who["admin"] is True  # type: ignore[index]
    assert who["project"] == "churn"  # type: ignore[index]
    assert who["role"] == "owner"  # type: ignore[index]
    shown = dict(line.split(":", 1) for line in ok("whoami").splitlines())
    assert {k: v.strip() for k, v in shown.items() if k != "token"} == {
        "server": yard.server.url,
        "project": "churn",
        "user": "root (admin)",
        "role": "owner",
    }

    run_id = candidate_with_files(yard, {"MLmodel": b"flavors: {}\n", "w.bin": b"\x00" * 10})
    name = f"m{uuid.uuid4().hex[:8]}"
    promoted = ok("models", "promote", name, "--candidate", run_id)
    assert f"{name} 1.0.0 (version 1)" in promoted
    assert "(version 2)" in ok("models", "promote", name, "--candidate", run_id, "--bump", "minor")
    assert f"{name} 1.1.0 (version 2)" in ok("models", "resolve", name, "^1")
    assert "@production -> " in ok("models", "alias", name, "production", "1.0.0")
    ok("models", "alias", name, "production", "~1.1")
    assert f"{name} 1.1.0 (version 2) via alias production" in ok(
        "models", "resolve", name, "production"
    )
    history = as_json("models", "history", name, "production")["events"]  # type: ignore[index]
    assert [(e["from_version"], e["to_version"]) for e in history] == [(None, 1), (1, 2)]
    assert ok("models", "history", name, "production").splitlines()[0].split() == [
        "WHEN",
        "(UTC)",
        "BY",
        "FROM",
        "TO",
    ]
    listed = ok("models", "list")
    assert any(line.split()[:3] == [name, "2", "1.1.0"] for line in listed.splitlines())
    assert "@production=2" in listed
    versions = as_json("models", "versions", name)["versions"]  # type: ignore[index]
    assert [v["version"] for v in versions] == [2, 1]
    assert ok("models", "versions", name).splitlines()[0].split()[:2] == ["VERSION", "SEMVER"]

    assert any(p["name"] == "churn" for p in as_json("projects", "list")["projects"])  # type: ignore[index]
    other = f"p{uuid.uuid4().hex[:8]}"
    assert f"created project {other}" in ok("projects", "create", other)
    created = ok("users", "create", "dana", "--password-stdin", stdin="pw-123456789\n")
    assert "created user dana" in created
    assert any(u["name"] == "dana" for u in as_json("users", "list")["users"])  # type: ignore[index]
    assert "admin=False disabled=True" in ok("users", "update", "dana", "--disable")
    assert "dana is reporter" in ok("projects", "add-member", other, "dana", "reporter")
    members = as_json("projects", "members", other)["members"]  # type: ignore[index]
    assert {m["user"]: m["role"] for m in members}["dana"] == "reporter"
    assert "dana removed" in ok("projects", "remove-member", other, "dana")
    assert "remove" in json.dumps(as_json("projects", "audit", other))
    secret = ok("tokens", "create", "--project", other, "--role", "reporter").strip()
    assert len(secret) > 20
    assert "\n" not in secret
    tokens = as_json("tokens", "list", "--project", other)["tokens"]  # type: ignore[index]
    assert "revoked token" in ok("tokens", "revoke", str(tokens[0]["id"]), "--project", other)
    mine = ok("tokens", "create", "--name", "laptop", "--expires", "30d").strip()
    assert any(t["name"] == "laptop" for t in as_json("tokens", "list")["tokens"])  # type: ignore[index]
    reader = modelyard(client_venv, {**env, "MLFLOW_TRACKING_TOKEN": mine}, empty_dir, "whoami")
    assert "root" in reader.stdout


def test_versions_show_the_logged_model(client_venv: Venv, yard: Yard, empty_dir: Path) -> None:
    import requests

    headers = yard.headers(yard.developer)
    base = f"{yard.uri}/api/2.0/mlflow"
    experiment = requests.post(
        f"{base}/experiments/create",
        json={"name": f"lm-{uuid.uuid4().hex[:6]}"},
        headers=headers,
        timeout=30,
    ).json()["experiment_id"]
    model = requests.post(
        f"{yard.uri}/api/2.0/mlflow/logged-models",
        json={"experiment_id": experiment},
        headers=headers,
        timeout=30,
    ).json()["model"]["info"]
    put = requests.put(
        f"{yard.uri}/api/2.0/mlflow-artifacts/artifacts/{experiment}/models/{model['model_id']}"
        "/artifacts/MLmodel",
        data=b"flavors: {}\n",
        headers=headers,
        timeout=30,
    )
    assert put.status_code == 200, put.text
    env = mlflow_env(yard, yard.developer)
    name = f"lm{uuid.uuid4().hex[:6]}"
    done = modelyard(
        client_venv, env, empty_dir, "models", "promote", name, "--logged-model", model["model_id"]
    )
    assert done.returncode == 0, done.stderr
    shown = modelyard(client_venv, env, empty_dir, "models", "versions", name).stdout
    assert model["model_id"] in shown
    missing = modelyard(
        client_venv, env, empty_dir, "models", "promote", name, "--logged-model", "m-unknown"
    )
    assert "Logged model 'm-unknown' does not exist" in one_line_error(missing)


def test_errors_are_one_line(client_venv: Venv, yard: Yard, empty_dir: Path) -> None:
    env = mlflow_env(yard)
    name = f"e{uuid.uuid4().hex[:8]}"
    run_id = candidate_with_files(yard, {"MLmodel": b"flavors: {}\n"})
    assert (
        modelyard(
            client_venv, env, empty_dir, "models", "promote", name, "--candidate", run_id
        ).returncode
        == 0
    )

    def error(*args: str, **changes: str) -> str:
        return one_line_error(modelyard(client_venv, {**env, **changes}, empty_dir, *args))

    closed = f"http://127.0.0.1:{free_port()}"
    assert "connection refused" in error("models", "list", MLFLOW_TRACKING_URI=closed)
    assert "unknown host" in error(
        "models", "list", MLFLOW_TRACKING_URI="http://no-such-host.invalid"
    )
    tls = yard.server.url.replace("http://", "https://")
    assert "TLS failure" in error("models", "list", MLFLOW_TRACKING_URI=tls)
    assert "not signed in" in error("models", "list", MLFLOW_TRACKING_TOKEN="wrong")
    assert "permission denied" in error(
        "models", "promote", name, "--candidate", run_id, MLFLOW_TRACKING_TOKEN=yard.reporter
    )
    assert "not found" in error("models", "versions", "no-such-model").lower()
    assert f"No version of {name} matches '^9'" in error("models", "resolve", name, "^9")
    assert (
        "invalid semantic version"
        in error("models", "promote", name, "--candidate", run_id, "--semver", "one").lower()
    )
    assert "--bump" in error("models", "promote", name, "--candidate", run_id, "--bump", "huge")
    assert "not a server address" in error("models", "list", MLFLOW_TRACKING_URI="file:///tmp/x")
    assert "no such command" in error("modles").lower()
