"""The whole path through the UI in a real browser (Debian's chromium driven by Playwright):
sign in, find a candidate by filter, open it, compare three, promote one to 1.0.0, set the
production alias, download a file. Screenshots of each step are kept in test-artifacts/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, run_cli, screenshot
from tests.ui.scripts import watch_origin

PASSWORD = "correct horse battery staple"


@pytest.fixture
def team(
    make_backend: Any, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """A server with authentication, a user with a password, and a project with candidates."""
    server = Server(make_backend("sqlite"), env={"MODELYARD_AUTH": "1"})
    made = subprocess.run(
        [
            sys.executable, "-m", "modelyard", "admin", "users", "create", "alice", "--admin",
            "--password-stdin", "--data-dir", str(server.backend.data_dir),
        ],
        input=PASSWORD + "\n", capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert (
        run_cli(server, "admin", "projects", "create", "vision", "--owner", "alice").returncode == 0
    )
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    runs = _log_candidates(f"{server.url}/projects/vision", tmp_path_factory.mktemp("f"))
    yield server, runs
    server.stop()


def _log_candidates(uri: str, folder: Path) -> dict[str, str]:
    """Five candidates with params, a loss history and files (a model folder with MLmodel)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri, uri)
    experiment = client.create_experiment("cnn")
    (folder / "model").mkdir()
    (folder / "model" / "MLmodel").write_text("flavors:\n  python_function: {}\n")
    (folder / "model" / "weights.txt").write_text("the weights of the best model\n")
    runs: dict[str, str] = {}
    for index, (optimizer, lr) in enumerate(
        [("adam", 0.1), ("adam", 0.01), ("sgd", 0.1), ("sgd", 0.01), ("adam", 0.001)]
    ):
        run = client.create_run(experiment, run_name=f"cnn-{index}").info.run_id
        client.log_param(run, "optimizer", optimizer)
        client.log_param(run, "lr", str(lr))
        for step in range(5):
            client.log_metric(run, "loss", (index + 1) / 10 + 0.5 / (step + 1), step=step)
        client.log_artifacts(run, str(folder / "model"), "model")
        client.set_terminated(run)
        runs[f"cnn-{index}"] = run
    logged = client.create_logged_model(experiment, name="cnn-net", source_run_id=runs["cnn-0"])
    runs["logged"] = logged.model_id
    runs["experiment"] = experiment
    return runs


def test_sign_in_find_compare_promote_alias_download(
    team: Any, browser: Any, tmp_path: Path
) -> None:
    server, runs = team
    context = browser.new_context(accept_downloads=True)
    elsewhere = watch_origin(context, server.url)
    page = context.new_page()
    base = f"{server.url}/projects/vision"

    # signing in: the experiments page sends the browser to the login form and back
    page.goto(f"{base}/ui/experiments")
    assert "/login" in page.url
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/ui/experiments")
    assert page.locator("#experiments").inner_text().count("cnn") == 1
    screenshot(page, "ui-01-experiments")

    # find a candidate by filter
    page.click("text=cnn")
    page.fill("input[name=filter]", "metrics.loss < 0.35 AND params.optimizer = 'adam'")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    table = page.locator("table.candidates")
    assert "cnn-0" in table.inner_text()
    assert "cnn-1" in table.inner_text()
    assert "cnn-2" not in table.inner_text()
    screenshot(page, "ui-02-filtered")

    # open it
    page.click("text=cnn-0")
    page.wait_for_url(f"**/ui/runs/{runs['cnn-0']}")
    assert "optimizer" in page.content()
    assert page.locator("svg").count() >= 1
    screenshot(page, "ui-03-candidate")

    # compare three
    page.go_back()
    page.fill("input[name=filter]", "")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    for name in ("cnn-0", "cnn-1", "cnn-2"):
        page.check(f"input[name=run][value='{runs[name]}']")
    page.click("text=Compare selected")
    page.wait_for_url("**/ui/compare?**")
    compared = page.content()
    for name in ("cnn-0", "cnn-1", "cnn-2"):
        assert name in compared
    assert "cnn-3" not in compared
    assert page.locator("svg").count() >= 1
    screenshot(page, "ui-04-compare")

    # promote one to 1.0.0
    page.goto(f"{base}/ui/promote?run={runs['cnn-0']}")
    page.fill("input[name=new_name]", "cnn-classifier")
    assert page.input_value("input[name=semver]") == "1.0.0"
    page.click("#promote-form button[type=submit]")
    page.wait_for_url("**/ui/models/cnn-classifier/versions/**")
    assert "1.0.0" in page.content()
    screenshot(page, "ui-05-version")

    # set the production alias
    page.goto(f"{base}/ui/models/cnn-classifier")
    page.fill("input[name=alias]", "production")
    page.select_option("select[name=version]", "1")
    page.click("#alias-form button[type=submit]")
    page.wait_for_url(f"{base}/ui/models/cnn-classifier?saved=alias*")
    assert "production" in page.locator("#alias-history").inner_text()
    screenshot(page, "ui-06-model")

    # download a file of the version
    page.goto(f"{base}/ui/models/cnn-classifier/versions/production")
    with page.expect_download() as download:
        page.click("a[download] >> text=weights.txt")
    saved = tmp_path / "weights.txt"
    download.value.save_as(saved)
    assert saved.read_text() == "the weights of the best model\n"

    # signed in, the home page says how to get a token
    page.goto(f"{base}/")
    assert "MLFLOW_TRACKING_TOKEN" in page.locator("#snippet").inner_text()

    # a logged model's page, reached from its candidate
    page.goto(f"{base}/ui/runs/{runs['cnn-0']}")
    page.click("#logged-models >> text=cnn-net")
    page.wait_for_url(f"{base}/ui/logged-models/{runs['logged']}")
    assert page.locator("#source-run").inner_text() == "cnn-0"
    screenshot(page, "ui-07-logged-model")

    # links of the MLflow UI's form, under the project's prefix
    links = {
        f"/#/experiments/{runs['experiment']}": f"{base}/ui/experiments/{runs['experiment']}",
        f"/#/experiments/{runs['experiment']}/runs/{runs['cnn-2']}": (
            f"{base}/ui/runs/{runs['cnn-2']}"
        ),
        "/#/models/cnn-classifier": f"{base}/ui/models/cnn-classifier",
        "/#/models/cnn-classifier/versions/1": f"{base}/ui/models/cnn-classifier/versions/1",
    }
    for link, landing in links.items():
        page.goto(f"{base}{link}")
        page.wait_for_url(landing)
    assert page.locator("h1").inner_text().startswith("cnn-classifier")
    page.goto(f"{base}/#/no/such/page")
    page.wait_for_url("**/ui/link?to=**")
    assert "No page answers the link #/no/such/page" in page.locator("[role=alert]").inner_text()
    screenshot(page, "ui-08-unknown-link")
    assert elsewhere == []  # no page of the walk asked any other host for anything
    context.close()
