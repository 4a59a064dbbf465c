"""The native registry API: promotion, versions by number/semver/range/alias, lineage, files
shared with the candidate (no copy), archives, alias history, cards rendered safely."""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=60) as client:
        yield client


@pytest.fixture
def candidate(client, experiment_id: str, tmp_path: Path) -> tuple[str, bytes]:  # type: ignore[no-untyped-def]
    """A run with model files, a commit and a CI tag."""
    import mlflow

    run_id = client.create_run(experiment_id).info.run_id
    weights = uuid.uuid4().bytes * 1000
    client.set_tag(run_id, "mlflow.source.git.commit", "0123abcd")
    client.set_tag(run_id, "ci.job_id", "4242")
    mlflow.log_text("flavors: {}\n", "model/MLmodel", run_id=run_id)
    path = tmp_path / "weights.bin"
    path.write_bytes(weights)
    client.log_artifact(run_id, str(path), "model")
    return run_id, weights


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def test_promote_resolve_and_download(server: Server, http: httpx.Client, candidate) -> None:  # type: ignore[no-untyped-def]
    run_id, weights = candidate
    name = f"native-{uuid.uuid4().hex[:8]}"
    blobs = server.backend.data_dir / "blobs"
    before = sum(p.stat().st_size for p in blobs.rglob("*") if p.is_file())

    first = http.post(f"/models/{name}/versions", json={"candidate": run_id})
    assert first.status_code == 201, first.text
    assert (first.json()["version"], first.json()["semver"]) == (1, "1.0.0")
    minor = http.post(f"/models/{name}/versions", json={"candidate": run_id, "bump": "minor"})
    assert minor.json()["semver"] == "1.1.0"
    rc = http.post(f"/models/{name}/versions", json={"candidate": run_id, "semver": "2.0.0-rc1"})
    assert rc.json()["version"] == 3
    after = sum(p.stat().st_size for p in blobs.rglob("*") if p.is_file())
    assert after == before  # the versions point at the candidate's blobs

    for ref, number in (("1", 1), ("1.1.0", 2), ("^1", 2), ("~1.0", 1), ("2.0.0-rc1", 3)):
        found = http.get(f"/models/{name}/versions/{ref}")
        assert found.status_code == 200, (ref, found.text)
        assert found.json()["version"] == number, ref
    detail = http.get(f"/models/{name}/versions/1").json()
    assert detail["lineage"]["candidate"]["run_id"] == run_id
    assert detail["lineage"]["commit"] == "0123abcd"
    assert detail["lineage"]["ci"] == {"ci.job_id": "4242"}
    files = {f["path"]: f["sha256"] for f in detail["files"]}
    assert files["weights.bin"] == hashlib.sha256(weights).hexdigest()
    assert set(files) == {"MLmodel", "weights.bin"}

    archive = http.get(f"/models/{name}/versions/^1/archive")
    assert archive.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        root = f"{name}-1.1.0"
        sums = tar.extractfile(f"{root}/SHA256SUMS").read().decode()  # type: ignore[union-attr]
        body = tar.extractfile(f"{root}/weights.bin").read()  # type: ignore[union-attr]
    assert body == weights
    assert f"{hashlib.sha256(weights).hexdigest()}  weights.bin" in sums

    # The versions' packages are published: their files cannot change.
    listed = http.get("/packages", params={"limit": 1000}).json()["packages"]
    frozen = [p for p in listed if p["kind"] == "model_version"]
    assert frozen
    assert all(p["status"] == "published" for p in frozen)
    target = frozen[0]
    write = http.put(f"/packages/{target['name']}/{target['version']}/files/evil.txt", content=b"x")
    assert write.status_code == 409


def test_aliases_history_and_time_travel(http: httpx.Client, candidate) -> None:  # type: ignore[no-untyped-def]
    run_id, _weights = candidate
    name = f"alias-{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        assert http.post(f"/models/{name}/versions", json={"candidate": run_id}).status_code == 201
    assert http.put(f"/models/{name}/aliases/production", json={"version": "1"}).status_code == 200
    time.sleep(0.05)
    between = int(time.time() * 1000)
    time.sleep(0.05)
    moved = http.put(f"/models/{name}/aliases/production", json={"version": "1.0.1"})
    assert moved.json()["version"] == 2
    assert http.get(f"/models/{name}/versions/production").json()["version"] == 2
    history = http.get(f"/models/{name}/aliases/production/history", params={"at": str(between)})
    events = history.json()["events"]
    assert [(e["from_version"], e["to_version"]) for e in events] == [(None, 1), (1, 2)]
    assert history.json()["version_at"] == 1
    assert http.delete(f"/models/{name}/aliases/production").status_code == 204
    last = http.get(f"/models/{name}/aliases/production/history").json()["events"][-1]
    assert (last["from_version"], last["to_version"]) == (2, None)
    iso = http.get(f"/models/{name}/aliases/production/history", params={"at": "2000-01-01"})
    assert iso.json()["version_at"] is None


def test_model_card_is_rendered_safely(http: httpx.Client, candidate) -> None:  # type: ignore[no-untyped-def]
    run_id, _weights = candidate
    name = f"card-{uuid.uuid4().hex[:8]}"
    http.post(f"/models/{name}/versions", json={"candidate": run_id})
    markdown = "# Churn <script>alert(1)</script>\n\n**Use** it [here](javascript:alert(1)).\n"
    card = http.put(f"/models/{name}/card", json={"markdown": markdown}).json()
    assert card["markdown"] == markdown
    assert "<script>" not in card["html"]
    assert "&lt;script&gt;" in card["html"]
    assert 'href="javascript' not in card["html"]
    model = http.get(f"/models/{name}").json()
    assert model["card"]["html"] == card["html"]
    assert [v["version"] for v in model["versions"]] == [1]


def test_bad_promotions_store_nothing(http: httpx.Client, candidate) -> None:  # type: ignore[no-untyped-def]
    run_id, _weights = candidate
    name = f"bad-{uuid.uuid4().hex[:8]}"
    assert http.post(f"/models/{name}/versions", json={"candidate": run_id}).status_code == 201
    cases = [
        ({"candidate": run_id, "semver": "1.0"}, 400, "INVALID_PARAMETER_VALUE"),
        ({"candidate": run_id, "semver": "1.0.0"}, 409, "RESOURCE_ALREADY_EXISTS"),
        ({"candidate": run_id, "bump": "huge"}, 400, "INVALID_PARAMETER_VALUE"),
        ({"candidate": run_id, "logged_model": "m-" + "0" * 32}, 400, "INVALID_PARAMETER_VALUE"),
        ({}, 400, "INVALID_PARAMETER_VALUE"),
        ({"candidate": uuid.uuid4().hex}, 404, "RESOURCE_DOES_NOT_EXIST"),
        ({"candidate": run_id, "path": "../other"}, 400, "INVALID_PARAMETER_VALUE"),
        ({"candidate": run_id, "path": "nothing-here"}, 409, "RESOURCE_CONFLICT"),
    ]
    for body, status, code in cases:
        answer = http.post(f"/models/{name}/versions", json=body)
        assert (answer.status_code, error_code(answer)) == (status, code), body
    assert [v["version"] for v in http.get(f"/models/{name}/versions").json()["versions"]] == [1]
    for unknown in ("m-unknown", "m-" + "0" * 32):
        answer = http.post(f"/models/{name}/versions", json={"logged_model": unknown})
        assert (answer.status_code, error_code(answer)) == (404, "RESOURCE_DOES_NOT_EXIST")
        assert answer.json()["error"]["message"] == (
            f"Logged model '{unknown}' does not exist in this project."
        )
    fresh = f"fresh-{uuid.uuid4().hex[:8]}"
    assert http.post(f"/models/{fresh}/versions", json={"logged_model": "m-x"}).status_code == 404
    assert http.get(f"/models/{fresh}").status_code == 404  # no empty model left behind
    assert http.get(f"/models/{name}/versions/9.9.9").status_code == 404
    assert http.get(f"/models/{name}/versions/^bad").status_code == 400
    assert http.put(f"/models/{name}/aliases/prod", json={"version": "7"}).status_code == 404
    assert (
        http.get(f"/models/{name}/aliases/prod/history", params={"at": "yesterday"}).status_code
        == 400
    )
