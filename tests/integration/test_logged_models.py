"""MLflow 3 LoggedModels through the real mlflow client: log_model end to end, loading by
models:/ and runs:/ URIs, search (filters, order, datasets, paging), tags, params, finalize,
delete, artifacts under <exp>/models/<id>/artifacts, and bad input."""

from __future__ import annotations

import uuid

import mlflow
import numpy as np
import pytest
import requests
from mlflow.entities import LoggedModelStatus
from mlflow.exceptions import MlflowException

from tests.conftest import api


def _fitted():  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression

    x = np.array([[0.0, 0.1], [0.2, 0.0], [0.9, 1.0], [1.0, 0.8], [0.1, 0.3], [0.8, 0.9]])
    y = np.array([0, 0, 1, 1, 0, 1])
    return LogisticRegression().fit(x, y), x


def _error(response: requests.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_code"] == code
    return str(body["message"])


def _models(server_url: str, experiment_id: str, **extra: object) -> list[dict[str, object]]:
    response = api(
        server_url,
        "POST",
        "logged-models/search",
        json={"experiment_ids": [experiment_id], **extra},
    )
    assert response.status_code == 200, response.text
    return list(response.json().get("models", []))


def test_log_model_and_load_it_back(client, experiment_id: str) -> None:
    model, x = _fitted()
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_param("x", "1")
        mlflow.log_metric("acc", 0.9)
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
    run_id = run.info.run_id
    assert info.model_uri.startswith("models:/m-")
    assert info.model_id
    assert info.model_uri == f"models:/{info.model_id}"

    expected = model.predict(x)
    by_model = mlflow.pyfunc.load_model(info.model_uri)
    assert list(by_model.predict(x)) == list(expected)
    by_run = mlflow.sklearn.load_model(f"runs:/{run_id}/model")
    assert list(by_run.predict(x)) == list(expected)

    logged = client.get_logged_model(info.model_id)
    assert logged.status == LoggedModelStatus.READY
    assert logged.name == "model"
    assert logged.source_run_id == run_id
    assert logged.experiment_id == experiment_id
    assert logged.artifact_location == (
        f"mlflow-artifacts:/{experiment_id}/models/{info.model_id}/artifacts"
    )
    assert logged.params["x"] == "1"
    assert [(m.key, m.value, m.run_id, m.model_id) for m in logged.metrics or []] == [
        ("acc", 0.9, run_id, info.model_id)
    ]
    outputs = client.get_run(run_id).outputs
    assert [o.model_id for o in outputs.model_outputs] == [info.model_id]

    listed = mlflow.artifacts.list_artifacts(artifact_uri=info.model_uri)
    assert "MLmodel" in {f.path for f in listed}
    assert "MLmodel" in {f.path for f in client.list_logged_model_artifacts(info.model_id)}
    assert "model/MLmodel" in {f.path for f in client.list_artifacts(run_id, "model")}

    found = client.search_logged_models(
        [experiment_id],
        filter_string="name = 'model' AND metrics.acc > 0.5 AND params.x = '1'",
    )
    assert [m.model_id for m in found] == [info.model_id]
    assert found[0].metrics
    assert found[0].metrics[0].key == "acc"
    assert not client.search_logged_models([experiment_id], filter_string="metrics.acc > 0.95")


def test_search_filters_order_and_pages(client, experiment_id: str, server) -> None:
    run_id = client.create_run(experiment_id).info.run_id
    ids = []
    for i in range(5):
        created = client.create_logged_model(
            experiment_id,
            name=f"cand{i}",
            source_run_id=run_id,
            params={"i": str(i)},
            tags={"team": "a" if i % 2 else "b"},
            model_type="classifier",
        )
        ids.append(created.model_id)
        if i < 4:  # the last model has no score: it sorts last either way
            dataset = "eval" if i < 2 else "train"
            client.log_metric(
                run_id,
                "score",
                float(i),
                model_id=created.model_id,
                dataset_name=dataset,
                dataset_digest="d1",
            )
    other = client.create_logged_model(client.create_experiment(f"o-{uuid.uuid4().hex[:8]}"))

    def names(**kwargs: object) -> list[str]:
        return [m.name for m in client.search_logged_models([experiment_id], **kwargs)]

    assert names(filter_string="tags.team = 'a'", order_by=[{"field_name": "name"}]) == [
        "cand1",
        "cand3",
    ]
    assert names(filter_string="params.i = '3'") == ["cand3"]
    assert names(
        filter_string="params.i != '3' AND name LIKE 'cand%'",
        order_by=[{"field_name": "name", "ascending": False}],
    ) == ["cand4", "cand2", "cand1", "cand0"]
    assert (
        len(names(filter_string="model_type = 'classifier' AND status = 'LOGGED_MODEL_PENDING'"))
        == 5
    )
    assert len(names(filter_string=f"source_run_id = '{run_id}' AND creation_timestamp > 0")) == 5
    assert names(filter_string="metrics.score >= 2", order_by=[{"field_name": "name"}]) == [
        "cand2",
        "cand3",
    ]
    assert names(
        filter_string="metrics.score >= 0",
        datasets=[{"dataset_name": "eval"}],
        order_by=[{"field_name": "name"}],
    ) == ["cand0", "cand1"]
    assert sorted(names(datasets=[{"dataset_name": "train", "dataset_digest": "d1"}])) == [
        "cand2",
        "cand3",
    ]
    assert names(order_by=[{"field_name": "metrics.score", "ascending": False}]) == [
        "cand3",
        "cand2",
        "cand1",
        "cand0",
        "cand4",
    ]
    assert names(order_by=[{"field_name": "metrics.score", "ascending": True}]) == [
        "cand0",
        "cand1",
        "cand2",
        "cand3",
        "cand4",
    ]
    assert names(
        order_by=[{"field_name": "metrics.score", "ascending": False, "dataset_name": "eval"}]
    )[:2] == ["cand1", "cand0"]
    # default order: newest first, then by id
    default = client.search_logged_models([experiment_id])
    keys = [(-m.creation_timestamp, m.model_id) for m in default]
    assert len(keys) == 5
    assert keys == sorted(keys)

    seen: list[str] = []
    token = None
    order = [{"field_name": "metrics.score", "ascending": False}]
    while True:
        page = client.search_logged_models(
            [experiment_id], max_results=2, order_by=order, page_token=token
        )
        seen += [m.name for m in page]
        assert len(page) <= 2
        token = page.token
        if not token:
            break
    assert seen == ["cand3", "cand2", "cand1", "cand0", "cand4"]

    first = client.search_logged_models([experiment_id], max_results=2, order_by=order)
    assert first.token
    with pytest.raises(MlflowException) as err:
        client.search_logged_models(
            [experiment_id],
            max_results=2,
            filter_string="name LIKE 'c%'",
            order_by=order,
            page_token=first.token,
        )
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as err:
        client.search_logged_models(
            [experiment_id, other.experiment_id],
            max_results=2,
            order_by=order,
            page_token=first.token,
        )
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    both = client.search_logged_models([experiment_id, other.experiment_id])
    assert {m.model_id for m in both} == {*ids, other.model_id}
    assert ids[0] in {m["info"]["model_id"] for m in _models(server.url, experiment_id)}


def test_tags_params_finalize_and_delete(client, experiment_id: str, server) -> None:
    model = client.create_logged_model(experiment_id, name="tagged", tags={"keep": "1"})
    assert model.status == LoggedModelStatus.PENDING
    assert model.model_type in ("", None)
    assert model.model_id.startswith("m-")
    assert len(model.model_id) == 34

    client.set_logged_model_tags(model.model_id, {"a": "1", "b/c": "2"})
    client.set_logged_model_tags(model.model_id, {"a": "3"})
    client.delete_logged_model_tag(model.model_id, "b/c")
    assert client.get_logged_model(model.model_id).tags == {"keep": "1", "a": "3"}
    with pytest.raises(MlflowException) as err:
        client.delete_logged_model_tag(model.model_id, "missing")
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    client.log_model_params(model.model_id, {"lr": "0.1", "depth": "3"})
    client.log_model_params(model.model_id, {"lr": "0.1"})
    with pytest.raises(MlflowException) as err:
        client.log_model_params(model.model_id, {"lr": "0.2"})
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    assert client.get_logged_model(model.model_id).params == {"lr": "0.1", "depth": "3"}
    assert [
        m.name
        for m in client.search_logged_models(
            [experiment_id], filter_string="tags.a = '3' AND params.depth = '3'"
        )
    ] == ["tagged"]

    failed = client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
    assert failed.status == LoggedModelStatus.FAILED
    assert failed.last_updated_timestamp >= model.creation_timestamp
    assert (
        client.search_logged_models(
            [experiment_id], filter_string="status = 'LOGGED_MODEL_UPLOAD_FAILED'"
        )[0].model_id
        == model.model_id
    )

    ajax = requests.get(
        f"{server.url}/ajax-api/2.0/mlflow/logged-models/{model.model_id}", timeout=30
    )
    assert ajax.status_code == 200
    assert ajax.json()["model"]["info"]["name"] == "tagged"

    client.delete_logged_model(model.model_id)
    with pytest.raises(MlflowException) as err:
        client.get_logged_model(model.model_id)
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert f"Logged model with ID '{model.model_id}' not found." in err.value.message
    assert not client.search_logged_models([experiment_id])
    kept = api(server.url, "GET", f"logged-models/{model.model_id}?allow_deleted=true")
    assert kept.status_code == 200
    tags = {"tags": [{"key": "x", "value": "1"}]}
    _error(
        api(server.url, "PATCH", f"logged-models/{model.model_id}/tags", json=tags),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    for call in (
        lambda: client.finalize_logged_model(model.model_id, LoggedModelStatus.READY),
        lambda: client.delete_logged_model(model.model_id),
    ):
        with pytest.raises(MlflowException) as err:
            call()
        assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_bad_input_is_refused_and_stores_nothing(client, experiment_id: str, server) -> None:
    url = server.url
    _error(
        api(url, "POST", "logged-models", json={"experiment_id": "987654"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    _error(api(url, "POST", "logged-models", json={}), 400, "INVALID_PARAMETER_VALUE")
    for name in ("a/b", "x.y", "it's"):
        message = _error(
            api(url, "POST", "logged-models", json={"experiment_id": experiment_id, "name": name}),
            400,
            "INVALID_PARAMETER_VALUE",
        )
        assert "Invalid model name" in message
    _error(
        api(
            url,
            "POST",
            "logged-models",
            json={"experiment_id": experiment_id, "source_run_id": "0" * 32},
        ),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    _error(
        api(
            url,
            "POST",
            "logged-models",
            json={"experiment_id": experiment_id, "params": [{"key": "../x", "value": "1"}]},
        ),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert _models(url, experiment_id) == []

    gone = client.create_experiment(f"gone-{uuid.uuid4().hex[:8]}")
    client.delete_experiment(gone)
    _error(
        api(url, "POST", "logged-models", json={"experiment_id": gone}),
        400,
        "INVALID_PARAMETER_VALUE",
    )

    model = client.create_logged_model(experiment_id, name="ok")
    path = f"logged-models/{model.model_id}"
    for status in ("LOGGED_MODEL_PENDING", "BOGUS", 7, None):
        _error(
            api(url, "PATCH", path, json={"model_id": model.model_id, "status": status}),
            400,
            "INVALID_PARAMETER_VALUE",
        )
    assert client.get_logged_model(model.model_id).status == LoggedModelStatus.PENDING
    ready = api(url, "PATCH", path, json={"model_id": model.model_id, "status": 2})
    assert ready.json()["model"]["info"]["status"] == "LOGGED_MODEL_READY"

    _error(api(url, "GET", "logged-models/m-0123"), 404, "RESOURCE_DOES_NOT_EXIST")
    _error(
        api(url, "PATCH", "logged-models/m-0123/tags", json={"tags": []}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )

    search = "logged-models/search"
    for body in (
        {},
        {"experiment_ids": [experiment_id], "filter": "foo.bar = 1"},
        {"experiment_ids": [experiment_id], "filter": "metrics.acc LIKE 'x'"},
        {"experiment_ids": [experiment_id], "filter": "datasets.name = 'x'"},
        {"experiment_ids": [experiment_id], "filter": "nope = 'x'"},
        {"experiment_ids": [experiment_id], "filter": "name = "},
        {"experiment_ids": [experiment_id], "order_by": [{"field_name": "params.x"}]},
        {"experiment_ids": [experiment_id], "order_by": [{"field_name": "nope"}]},
        {"experiment_ids": [experiment_id], "order_by": ["name"]},
        {"experiment_ids": [experiment_id], "datasets": [{"dataset_digest": "d"}]},
        {"experiment_ids": [experiment_id], "max_results": -1},
        {"experiment_ids": [experiment_id], "page_token": "not a token"},
        {"experiment_ids": ["abc"]},
    ):
        _error(api(url, "POST", search, json=body), 400, "INVALID_PARAMETER_VALUE")
    message = _error(
        api(
            url,
            "POST",
            search,
            json={"experiment_ids": [experiment_id], "order_by": [{"field_name": "params.x"}]},
        ),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert "Only metrics are supported" in message
    _error(
        api(url, "POST", search, json={"experiment_ids": ["987654"]}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    assert [m["info"]["name"] for m in _models(url, experiment_id)] == ["ok"]


def test_model_artifact_paths_are_checked(client, experiment_id: str, server) -> None:
    model = client.create_logged_model(experiment_id, name="files")
    base = f"{server.url}/api/2.0/mlflow-artifacts/artifacts"
    good = f"{base}/{experiment_id}/models/{model.model_id}/artifacts/sub/a.txt"
    assert requests.put(good, data=b"hello", timeout=30).status_code == 200
    assert requests.get(good, timeout=30).content == b"hello"
    listing = requests.get(
        base, params={"path": f"{experiment_id}/models/{model.model_id}/artifacts"}, timeout=30
    ).json()
    assert listing == {"files": [{"path": "sub", "is_dir": True}]}
    assert [f.path for f in client.list_logged_model_artifacts(model.model_id, "sub")] == [
        "sub/a.txt"
    ]

    other = client.create_experiment(f"other-{uuid.uuid4().hex[:8]}")
    wrong_experiment = f"{base}/{other}/models/{model.model_id}/artifacts/b.txt"
    _error(requests.put(wrong_experiment, data=b"x", timeout=30), 404, "RESOURCE_DOES_NOT_EXIST")
    unknown = f"{base}/{experiment_id}/models/m-{'0' * 32}/artifacts/b.txt"
    _error(requests.put(unknown, data=b"x", timeout=30), 404, "RESOURCE_DOES_NOT_EXIST")
    _error(requests.get(unknown, timeout=30), 404, "RESOURCE_DOES_NOT_EXIST")
    escape = f"{base}/{experiment_id}/models/{model.model_id}/artifacts/%2E%2E/%2E%2E/x"
    assert requests.put(escape, data=b"x", timeout=30).status_code == 400
    root = f"{base}/{experiment_id}/models/{model.model_id}/artifacts"
    assert requests.put(root, data=b"x", timeout=30).status_code == 400

    assert requests.delete(good, timeout=30).status_code == 200
    assert requests.get(good, timeout=30).status_code == 404
    client.delete_logged_model(model.model_id)
    _error(requests.put(good, data=b"x", timeout=30), 404, "RESOURCE_DOES_NOT_EXIST")
