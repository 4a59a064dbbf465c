"""The whole lineage on the pages: a logged model's page (reached from its candidate, its
version and the promotion form), a version's source candidate with its metrics and params,
the model's key metric per version (kept as a model tag), and links of the MLflow UI's form
sent to their pages; on SQLite and PostgreSQL with authentication off."""

from __future__ import annotations

import uuid
from typing import Any

import requests

from tests.conftest import Server
from tests.ui.test_models import Form, candidate, get, post, promote, section, text_of
from tests.ui.test_runs import rows
from tests.ui.test_runs import section as element

SCRIPT = "<script>alert(1)</script>"
__all__ = ["candidate"]  # the fixture


def test_logged_model_page(server: Server, client: Any, experiment_id: str) -> None:
    from mlflow.entities import Metric

    run_id = client.create_run(experiment_id, run_name="trainer").info.run_id
    client.log_batch(run_id, metrics=[Metric("loss", 0.25, 1_700_000_000_000, 3)])
    logged = client.create_logged_model(
        experiment_id, name="<b>lm", source_run_id=run_id, params={"depth": "4"},
        tags={"note": SCRIPT},
    )  # fmt: skip
    client.log_batch(
        run_id, metrics=[Metric("acc", 0.9, 1_700_000_000_001, 3, model_id=logged.model_id)]
    )
    base = f"{server.url}/api/2.0/mlflow-artifacts/artifacts"
    path = f"{base}/{experiment_id}/models/{logged.model_id}/artifacts/MLmodel"
    assert requests.put(path, data=b"flavors: {}\n", timeout=30).status_code == 200
    name = f"lm-{uuid.uuid4().hex[:8]}"
    form = Form(get(server, "/ui/promote", params={"logged_model": logged.model_id}).text)
    made = post(server, "/ui/promote", {**form.values, "bump": "patch", "new_name": name})
    assert made.status_code == 303, made.text

    url = f"/ui/logged-models/{logged.model_id}"
    candidate = get(server, f"/ui/runs/{run_id}").text
    assert f'href="{url}"' in section(candidate, "logged-models")
    version = get(server, f"/ui/models/{name}/versions/1").text
    assert f'href="{url}"' in section(version, "lineage")
    page = get(server, url)
    assert page.status_code == 200, page.text
    html = page.text
    assert SCRIPT not in html
    assert "&lt;b&gt;lm" in section(html, "logged-model-name")
    assert "<b>lm" not in html
    assert f'href="/ui/runs/{run_id}">trainer</a>' in section(html, "source-run")
    assert dict(cells for _, cells in rows(html, "params")[1:]) == {"depth": "4"}
    metrics = {cells[0]: cells[1] for _, cells in rows(html, "metrics")[1:]}
    assert metrics == {"acc": "0.9"}
    assert "note" in text_of(section(html, "tags"))
    versions = section(html, "registered-versions")
    assert f'href="/ui/models/{name}/versions/1">v1</a>' in versions
    files = section(html, "files")
    assert "MLmodel" in files
    link = f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/models/{logged.model_id}"
    assert f'href="{link}/artifacts/MLmodel"' in files
    assert requests.get(server.url + link + "/artifacts/MLmodel", timeout=30).content == (
        b"flavors: {}\n"
    )
    assert get(server, "/ui/logged-models/m-" + "0" * 32).status_code == 404


def test_version_shows_its_candidate_and_model_its_key_metric(
    server: Server, client: Any, candidate: Any
) -> None:
    from mlflow.entities import Metric, Param

    run_id, _ = candidate
    client.log_batch(
        run_id,
        metrics=[Metric("loss", 0.125, 1_700_000_000_000, 7), Metric("acc", 0.5, 1, 0)],
        params=[Param("lr", "0.01"), Param("optimizer", SCRIPT)],
    )
    name = f"key-{uuid.uuid4().hex[:8]}"
    assert promote(server, run_id, new_name=name).status_code == 303
    version = get(server, f"/ui/models/{name}/versions/1").text
    metrics = {cells[0]: cells[1:] for _, cells in rows(version, "source-metrics")[1:]}
    assert metrics == {"acc": ["0.5", "0"], "loss": ["0.125", "7"]}
    params = dict(cells for _, cells in rows(version, "source-params")[1:])
    assert params == {"lr": "0.01", "optimizer": SCRIPT}
    chain = text_of(element(version, "lineage-chain"))
    assert chain.index("experiment") < chain.index("good-run") < chain.index(f"{name} v1")

    page = get(server, f"/ui/models/{name}").text
    form = Form(page)
    assert f"/ui/models/{name}/key-metric" in form.actions
    assert form.options["metric"] == ["", "acc", "loss"]
    assert 'class="key-metric"' not in element(page, "versions")  # none chosen yet
    saved = post(server, f"/ui/models/{name}/key-metric", {"metric": "loss"})
    assert saved.status_code == 303
    assert client.get_registered_model(name).tags == {"modelyard.key_metric": "loss"}
    page = get(server, f"/ui/models/{name}").text
    head, body = rows(page, "versions")[0][1], rows(page, "versions")[1][1]
    assert body[head.index("loss")] == "0.125"
    assert "modelyard.key_metric" not in page  # shown as the key metric, not as a tag
    assert Form(page).values["metric"] == "loss"
    cleared = post(server, f"/ui/models/{name}/key-metric", {"metric": ""})
    assert cleared.status_code == 303
    assert client.get_registered_model(name).tags == {}
    assert post(server, f"/ui/models/{name}/key-metric", {"metric": ""}).status_code == 303
    assert post(server, "/ui/models/nothing-here/key-metric", {"metric": "x"}).status_code == 404


def test_links_of_the_mlflow_ui_form(server: Server, client: Any, experiment_id: str) -> None:
    run_id = client.create_run(experiment_id).info.run_id
    cases = {
        f"/experiments/{experiment_id}": f"/ui/experiments/{experiment_id}",
        f"/experiments/{experiment_id}/runs/{run_id}": f"/ui/runs/{run_id}",
        f"/experiments/{experiment_id}/runs/{run_id}/artifacts": f"/ui/runs/{run_id}",
        f"/experiments/{experiment_id}/models/m-abc": "/ui/logged-models/m-abc",
        "/models/churn%20model": "/ui/models/churn%20model",
        "/models/churn/versions/3": "/ui/models/churn/versions/3",
        "/models": "/ui/models",
        "/": "/",
    }
    for fragment, page in cases.items():
        for prefix in ("", "/projects/default"):
            answer = get(server, f"{prefix}/ui/link", params={"to": fragment})
            assert answer.status_code == 303, fragment
            assert answer.headers["location"] == prefix + page, fragment
    unknown = get(server, "/ui/link", params={"to": f"/nowhere/{SCRIPT}"})
    assert unknown.status_code == 404
    assert "No page answers the link #/nowhere/&lt;script&gt;" in unknown.text


def test_home_without_sign_in_gives_no_token_advice(server: Server) -> None:
    home = get(server, "/").text
    assert "MLFLOW_TRACKING_TOKEN" not in home
    assert "tokens create" not in home
    assert 'id="auth-off"' in home
    assert f"export MLFLOW_TRACKING_URI={server.url}" in element(home, "snippet")
    assert '<script src="/static/links.js" defer></script>' in home
