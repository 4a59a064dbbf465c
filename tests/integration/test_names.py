"""Names on a live ``--auth`` server (SQLite and PostgreSQL): the packages API cannot squat the
names of the server's own packages, and names a reader cannot tell apart are one name.

Each attack is reproduced as it was found: a developer squatting ``model-<key>/<number>``
through the packages API made the next promotion fail with a 500 forever; ``Churn`` and
``churn``, NFC and NFD ``café``, full-width and plain ``fw``, and a name with a trailing
zero-width space each made two models.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from typing import Any

import pytest
import requests

from tests.integration.auth_world import (
    ARTIFACTS,
    NATIVE,
    Yard,
    error_code,
    error_message,
    yard,
)

__all__ = ["yard"]  # the fixture, shared with the other authentication tests


class Team:
    """A project with a maintainer and a developer (the attacker), each with a token."""

    def __init__(self, yard: Yard) -> None:
        self.yard = yard
        self.project = f"team-{uuid.uuid4().hex[:8]}"
        yard.project(self.project)
        tag = uuid.uuid4().hex[:6]
        self.maintainer = yard.quick_user(f"maint-{tag}")
        self.developer = yard.quick_user(f"dev-{tag}")
        yard.member(self.project, f"maint-{tag}", "maintainer")
        yard.member(self.project, f"dev-{tag}", "developer")

    def call(self, method: str, endpoint: str, token: str, **kwargs: Any) -> requests.Response:
        return self.yard.mlflow(method, endpoint, token, self.project, **kwargs)

    def ok(self, endpoint: str, body: dict[str, Any], token: str | None = None) -> Any:
        response = self.call("POST", endpoint, token or self.maintainer, json=body)
        assert response.status_code == 200, (endpoint, response.text)
        return response.json()

    def put(self, path: str, data: bytes, token: str) -> requests.Response:
        return self.yard.request("PUT", path, token, project=self.project, data=data)

    def candidate(self, content: bytes = b"weights") -> tuple[str, str]:
        """An experiment and a run with a model folder."""
        exp = self.ok("experiments/create", {"name": uuid.uuid4().hex})["experiment_id"]
        run = self.ok("runs/create", {"experiment_id": exp})["run"]["info"]["run_id"]
        put = self.put(f"{ARTIFACTS}/{exp}/{run}/artifacts/model/w.bin", content, self.maintainer)
        assert put.status_code == 200, put.text
        return exp, run

    def model_key(self, name: str, version: str) -> int:
        uri = self.call(
            "GET",
            "model-versions/get-download-uri",
            self.maintainer,
            params={"name": name, "version": version},
        ).json()["artifact_uri"]
        found = re.fullmatch(r"mlflow-artifacts:/registry/(\d+)/\d+", uri)
        assert found, uri
        return int(found.group(1))

    def squat(self, name: str, version: str) -> None:
        """The developer tries to plant a file in a package of that name through the packages
        API, and is refused: the name is the server's."""
        response = self.put(
            f"{NATIVE}/packages/{name}/{version}/files/planted.bin", b"squatter", self.developer
        )
        assert response.status_code == 409, (name, response.text)
        assert error_code(response) == "RESOURCE_CONFLICT"
        assert "reserved" in error_message(response)


@pytest.fixture
def team(yard: Yard) -> Team:
    return Team(yard)


# ----------------------------------------------------------------------------- squatting


def test_a_squatted_version_package_does_not_stop_promotion(team: Team) -> None:
    _exp, run = team.candidate(b"the real weights")
    team.ok("registered-models/create", {"name": "victim"})
    source = {"name": "victim", "source": f"runs:/{run}/model", "run_id": run}
    team.ok("model-versions/create", source)
    key = team.model_key("victim", "1")
    team.squat(f"model-{key}", "2")
    team.squat(f"model-{key + 1}", "1")  # and the first version of the next model made
    team.squat(f"MODEL-{key}", "3")

    created = team.call("POST", "model-versions/create", team.maintainer, json=source)
    assert created.status_code == 200, created.text
    assert created.json()["model_version"]["version"] == "2"
    team.ok("registered-models/create", {"name": "next-victim"})
    following = {**source, "name": "next-victim"}
    assert team.call("POST", "model-versions/create", team.maintainer, json=following).ok
    assert team.model_key("next-victim", "1") == key + 1

    for name, number in (("victim", "2"), ("next-victim", "1")):
        version = team.model_key(name, number)
        listed = team.yard.request(
            "GET",
            f"{ARTIFACTS}",
            team.maintainer,
            project=team.project,
            params={"path": f"registry/{version}/{number}"},
        ).json()
        assert [f["path"] for f in listed["files"]] == ["w.bin"], listed
        served = team.yard.request(
            "GET",
            f"{ARTIFACTS}/registry/{version}/{number}/w.bin",
            team.maintainer,
            project=team.project,
        )
        assert served.content == b"the real weights"
    # the packages API reads the version's own package under that name
    package = team.yard.request(
        "GET", f"{NATIVE}/packages/model-{key}/2", team.developer, project=team.project
    ).json()
    assert package["kind"] == "model_version"
    assert [f["path"] for f in package["files"]] == ["w.bin"]
    published = team.yard.request(
        "POST", f"{NATIVE}/packages/model-{key}/2/publish", team.developer, project=team.project
    )
    assert published.status_code == 409


def test_squatted_candidate_and_logged_model_packages_change_nothing(team: Team) -> None:
    exp = team.ok("experiments/create", {"name": uuid.uuid4().hex})["experiment_id"]
    run = team.ok("runs/create", {"experiment_id": exp})["run"]["info"]["run_id"]
    logged = team.ok("logged-models", {"experiment_id": exp, "source_run_id": run})
    model_id = logged["model"]["info"]["model_id"]
    team.squat(run, "0")
    team.squat(model_id, "0")

    for path in (f"{exp}/{run}/artifacts/a.txt", f"{exp}/models/{model_id}/artifacts/MLmodel"):
        stored = team.put(f"{ARTIFACTS}/{path}", b"own bytes", team.maintainer)
        assert stored.status_code == 200, (path, stored.text)
    files = team.call("GET", "artifacts/list", team.maintainer, params={"run_id": run}).json()
    assert [f["path"] for f in files["files"]] == ["a.txt"]
    served = team.yard.request(
        "GET",
        f"{ARTIFACTS}/{exp}/models/{model_id}/artifacts/MLmodel",
        team.maintainer,
        project=team.project,
    )
    assert served.content == b"own bytes"
    # read through the packages API, the names mean the server's own packages
    for name, kind in ((run, "candidate"), (model_id, "logged_model")):
        package = team.yard.request(
            "GET", f"{NATIVE}/packages/{name}/0", team.developer, project=team.project
        ).json()
        assert package["kind"] == kind
        assert package["file_count"] == 1
        frozen = team.yard.request(
            "POST", f"{NATIVE}/packages/{name}/0/publish", team.developer, project=team.project
        )
        assert frozen.status_code == 409, frozen.text
    assert team.put(f"{ARTIFACTS}/{exp}/{run}/artifacts/b.txt", b"more", team.maintainer).ok


# ----------------------------------------------------------------------------- confusables


def wide(text: str) -> str:
    """``text`` in full-width letters and digits (``fw`` → U+FF46 U+FF57)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


NFC = unicodedata.normalize("NFC", "caf\u00e9")
NFD = unicodedata.normalize("NFD", NFC)
SAME_NAMES = [("Churn", "churn"), (NFC, NFD), (wide("fw"), "fw"), ("CHURN", "cHuRn")]
INVISIBLE = [
    "churn\u200b",  # zero-width space
    "ch\u200durn",  # zero-width joiner
    "churn\u00a0v2",  # no-break space
    "\u202echurn",  # right-to-left override
    "churn\ufe0f",  # variation selector
    "a\u3164b",  # Hangul filler
]


@pytest.mark.parametrize(("first", "second"), SAME_NAMES)
def test_names_a_reader_cannot_tell_apart_are_one_model(
    team: Team, first: str, second: str
) -> None:
    suffix = uuid.uuid4().hex[:6]
    team.ok("registered-models/create", {"name": first + suffix})
    again = team.call(
        "POST", "registered-models/create", team.maintainer, json={"name": second + suffix}
    )
    assert again.status_code == 400, again.text
    assert error_code(again) == "RESOURCE_ALREADY_EXISTS"
    assert repr(first + suffix) in error_message(again)
    # either spelling finds the one model, under the name it was created with
    for spelling in (first + suffix, second + suffix):
        found = team.call(
            "GET", "registered-models/get", team.maintainer, params={"name": spelling}
        )
        assert found.json()["registered_model"]["name"] == first + suffix


@pytest.mark.parametrize("name", INVISIBLE)
def test_names_with_invisible_characters_are_refused(team: Team, name: str) -> None:
    refused = team.call("POST", "registered-models/create", team.maintainer, json={"name": name})
    assert refused.status_code == 400, refused.text
    assert error_code(refused) == "INVALID_PARAMETER_VALUE"
    assert "U+" in error_message(refused)
    experiment = team.call("POST", "experiments/create", team.maintainer, json={"name": name})
    assert error_code(experiment) == "INVALID_PARAMETER_VALUE"


def test_the_mlflow_client_finds_its_model_by_the_name_it_gave(
    yard: Yard, team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", team.maintainer)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = MlflowClient(f"{yard.url}/projects/{team.project}")
    name = f"Churn-{wide('M')}odel-{uuid.uuid4().hex[:4]}"
    client.create_registered_model(name)
    assert client.get_registered_model(name).name == name
    with pytest.raises(MlflowException, match="already exists"):
        client.create_registered_model(unicodedata.normalize("NFKC", name).lower())
    _exp, run = team.candidate()
    version = client.create_model_version(name, f"runs:/{run}/model", run_id=run)
    client.set_registered_model_alias(name, "Champion", version.version)
    assert client.get_model_version_by_alias(name, "Champion").aliases == ["Champion"]
    assert client.get_model_version_by_alias(name, "champion").version == version.version
    client.set_registered_model_alias(name, "CHAMPION", version.version)
    assert client.get_registered_model(name).aliases == {"Champion": version.version}
    client.delete_registered_model_alias(name, "champion")
    assert client.get_registered_model(name).aliases == {}


def test_aliases_reserved_in_any_spelling(team: Team) -> None:
    _exp, run = team.candidate()
    team.ok("registered-models/create", {"name": "aliased"})
    team.ok("model-versions/create", {"name": "aliased", "source": f"runs:/{run}/model"})
    for alias in ("V1", wide("v1"), "LATEST", wide("latest")):
        response = team.call(
            "POST",
            "registered-models/alias",
            team.maintainer,
            json={"name": "aliased", "alias": alias, "version": "1"},
        )
        assert response.status_code == 400, (alias, response.text)
        assert "reserved" in error_message(response), alias


def test_experiments_keep_mlflows_case_but_not_unicode_forms(team: Team) -> None:
    suffix = uuid.uuid4().hex[:6]
    team.ok("experiments/create", {"name": f"Demo-{suffix}"})
    team.ok("experiments/create", {"name": f"demo-{suffix}"})  # MLflow: two experiments
    team.ok("experiments/create", {"name": f"{NFC}-{suffix}"})
    again = team.call(
        "POST", "experiments/create", team.maintainer, json={"name": f"{NFD}-{suffix}"}
    )
    assert error_code(again) == "RESOURCE_ALREADY_EXISTS"
    found = team.call(
        "GET",
        "experiments/get-by-name",
        team.maintainer,
        params={"experiment_name": f"{NFD}-{suffix}"},
    )
    assert found.json()["experiment"]["name"] == f"{NFC}-{suffix}"


def test_project_and_package_names_ignore_case(yard: Yard, team: Team) -> None:
    upper = f"Proj-{uuid.uuid4().hex[:6]}"
    yard.project(upper)
    clash = yard.request("POST", f"{NATIVE}/projects", yard.admin, json={"name": upper.lower()})
    assert clash.status_code == 409, clash.text
    assert error_code(clash) == "RESOURCE_ALREADY_EXISTS"
    assert upper in error_message(clash)
    # the tracking URI works in either case
    searched = yard.mlflow(
        "POST", "experiments/search", yard.admin, upper.lower(), json={"max_results": 5}
    )
    assert searched.status_code == 200, searched.text
    assert [e["name"] for e in searched.json()["experiments"]] == ["Default"]

    name = f"Weights-{uuid.uuid4().hex[:6]}"
    assert team.put(f"{NATIVE}/packages/{name}/1/files/a.bin", b"a", team.developer).ok
    assert team.put(f"{NATIVE}/packages/{name.upper()}/1/files/b.bin", b"b", team.developer).ok
    package = yard.request(
        "GET", f"{NATIVE}/packages/{name.lower()}/1", team.developer, project=team.project
    ).json()
    assert package["name"] == name
    assert [f["path"] for f in package["files"]] == ["a.bin", "b.bin"]
