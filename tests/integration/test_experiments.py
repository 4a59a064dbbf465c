"""Experiments through the real mlflow client, on SQLite and PostgreSQL."""

from __future__ import annotations

import functools
import operator
import uuid

import mlflow
import pytest
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

from tests.conftest import api


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_set_experiment_creates_then_reuses(tracking_uri: str) -> None:
    name = unique("set")
    first = mlflow.set_experiment(name)
    again = mlflow.set_experiment(name)
    assert first.experiment_id == again.experiment_id
    assert first.name == name
    assert first.lifecycle_stage == "active"
    assert first.artifact_location == f"mlflow-artifacts:/{first.experiment_id}"


def test_create_get_by_id_and_name_with_tags(client) -> None:
    name = unique("tagged")
    exp_id = client.create_experiment(name, tags={"team": "vision", "owner": "ana"})
    by_id = client.get_experiment(exp_id)
    by_name = client.get_experiment_by_name(name)
    assert by_id.experiment_id == by_name.experiment_id == exp_id
    assert by_id.tags == {"team": "vision", "owner": "ana"}
    assert by_id.creation_time > 0
    assert by_id.last_update_time >= by_id.creation_time


def test_missing_experiment_by_name_is_none(client) -> None:
    assert client.get_experiment_by_name(unique("absent")) is None


def test_default_experiment_exists(client) -> None:
    default = client.get_experiment("0")
    assert default.name == "Default"


def test_duplicate_name_rejected_even_when_deleted(client) -> None:
    name = unique("dup")
    exp_id = client.create_experiment(name)
    with pytest.raises(MlflowException) as err:
        client.create_experiment(name)
    assert err.value.error_code == "RESOURCE_ALREADY_EXISTS"
    client.delete_experiment(exp_id)
    with pytest.raises(MlflowException) as err:
        client.create_experiment(name)
    assert err.value.error_code == "RESOURCE_ALREADY_EXISTS"


def test_rename(client) -> None:
    exp_id = client.create_experiment(unique("old"))
    new = unique("new")
    client.rename_experiment(exp_id, new)
    assert client.get_experiment(exp_id).name == new


def test_delete_and_restore_with_runs(client) -> None:
    exp_id = client.create_experiment(unique("life"))
    run = client.create_run(exp_id)
    client.delete_experiment(exp_id)
    exp = client.get_experiment(exp_id)
    assert exp.lifecycle_stage == "deleted"
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "deleted"
    with pytest.raises(MlflowException) as err:
        client.create_run(exp_id)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    client.restore_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "active"
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "active"


def test_experiment_tags_set_and_delete(client) -> None:
    exp_id = client.create_experiment(unique("tags"))
    client.set_experiment_tag(exp_id, "stage", "draft")
    client.set_experiment_tag(exp_id, "stage", "final")
    assert client.get_experiment(exp_id).tags["stage"] == "final"
    client.delete_experiment_tag(exp_id, "stage")
    assert "stage" not in client.get_experiment(exp_id).tags


def test_search_filter_order_and_paging(client) -> None:
    prefix = unique("srch")
    ids = [client.create_experiment(f"{prefix}-{i}", tags={"i": str(i)}) for i in range(7)]
    found = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'")
    assert [e.experiment_id for e in found] == list(reversed(ids))
    by_name = client.search_experiments(
        filter_string=f"name LIKE '{prefix}%'", order_by=["name DESC"]
    )
    assert [e.name for e in by_name] == [f"{prefix}-{i}" for i in reversed(range(7))]
    tagged = client.search_experiments(filter_string=f"name LIKE '{prefix}%' AND tags.i = '3'")
    assert [e.experiment_id for e in tagged] == [ids[3]]
    pages, token = [], None
    while True:
        page = client.search_experiments(
            filter_string=f"name ILIKE '{prefix.upper()}%'", max_results=3, page_token=token
        )
        pages.append([e.experiment_id for e in page])
        token = page.token
        if not token:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    assert functools.reduce(operator.iadd, pages, []) == list(reversed(ids))


def test_search_view_types(client) -> None:
    prefix = unique("view")
    keep = client.create_experiment(f"{prefix}-keep")
    gone = client.create_experiment(f"{prefix}-gone")
    client.delete_experiment(gone)
    flt = f"name LIKE '{prefix}%'"
    active = client.search_experiments(filter_string=flt)
    deleted = client.search_experiments(view_type=ViewType.DELETED_ONLY, filter_string=flt)
    every = client.search_experiments(view_type=ViewType.ALL, filter_string=flt)
    assert [e.experiment_id for e in active] == [keep]
    assert [e.experiment_id for e in deleted] == [gone]
    assert {e.experiment_id for e in every} == {keep, gone}


def test_search_requires_positive_max_results(server) -> None:
    response = api(server.url, "POST", "experiments/search", json={"max_results": 0})
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_get_unknown_and_invalid_ids(server) -> None:
    missing = api(server.url, "GET", "experiments/get", params={"experiment_id": "987654"})
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    bad = api(server.url, "GET", "experiments/get", params={"experiment_id": "abc"})
    assert bad.status_code == 400
    assert bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
