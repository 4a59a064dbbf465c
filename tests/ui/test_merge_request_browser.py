"""A merge request's candidates in a real browser (Debian's chromium driven by Playwright), by
links only: from the project's navigation to the merge requests, the best value of a chosen
metric, the merge request's candidates, and the compare view (one click, and a selection), in
the default project and under a project's /projects/<name> prefix. Screenshots are kept in
test-artifacts/."""

from __future__ import annotations

import random
import re
import uuid
from typing import Any

import pytest

from tests.api.test_merge_requests import GITLAB, ci_tags
from tests.conftest import Server, run_cli, screenshot


def _log(uri: str, mr: str) -> dict[str, str]:
    """Three candidates of one merge request, logged by the stock client, and one of another."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri, uri)
    experiment = client.create_experiment(f"ci-{uuid.uuid4().hex[:8]}")
    runs = {}
    for index, acc in enumerate((0.71, 0.93, 0.82)):
        name = f"mr{mr}-{index}"
        run = client.create_run(experiment, run_name=name, tags=ci_tags(mr, GITLAB, f"9{index}"))
        client.log_batch(run.info.run_id, metrics=[Metric("acc", acc, 0, 0)])
        client.set_terminated(run.info.run_id)
        runs[name] = run.info.run_id
    client.create_run(experiment, run_name="elsewhere", tags=ci_tags(f"{mr}0", GITLAB, "1"))
    return runs


def _row(page: Any, mr: str) -> Any:
    """The list's row of merge request ``mr``."""
    return page.locator("#merge-requests tbody tr").filter(
        has=page.locator("a.mr", has_text=re.compile(f"^!{mr}$"))
    )


@pytest.mark.parametrize("in_project", [False, True], ids=["default-project", "project-prefix"])
def test_from_a_merge_request_to_its_candidates_to_compare(
    server: Server, browser: Any, in_project: bool
) -> None:
    prefix = ""
    if in_project:
        name = f"ci-{uuid.uuid4().hex[:8]}"
        assert run_cli(server, "admin", "projects", "create", name).returncode == 0
        prefix = f"/projects/{name}"
    base = server.url + prefix
    mr = str(random.randrange(10_000, 99_999))
    runs = _log(base, mr)
    shot = f"mr-{server.backend.name}-{'project' if in_project else 'default'}"
    page = browser.new_page()
    try:
        page.goto(f"{base}/ui/experiments")
        page.click("#nav-merge-requests")
        page.wait_for_url(f"{base}/ui/merge-requests")

        # the best acc of each merge request
        page.select_option("#metric", "acc")
        page.select_option("#direction", "max")
        with page.expect_navigation():
            page.click("#metric-form button[type=submit]")
        row = _row(page, mr)
        assert row.count() == 1
        assert "0.93" in row.inner_text()
        assert "3" in row.locator("a.candidates").inner_text()
        screenshot(page, f"{shot}-1-list")

        # its candidates, the best first
        row.locator("a.mr").click()
        page.wait_for_url(f"{base}/ui/merge-requests/candidates?**")
        assert page.locator("#mr-title").inner_text() == f"Merge request !{mr}"
        names = page.locator("#mr-candidates a.candidate").all_inner_texts()
        assert names == [f"mr{mr}-1", f"mr{mr}-2", f"mr{mr}-0"]
        assert "elsewhere" not in page.content()
        screenshot(page, f"{shot}-2-candidates")

        # one click: all of them compared
        page.click("#compare-all")
        page.wait_for_url(f"{base}/ui/compare?**")
        header = page.locator("#compare thead").inner_text()
        assert all(name in header for name in runs)
        assert page.locator("svg").count() >= 1
        screenshot(page, f"{shot}-3-compare")

        # or two of them, ticked
        page.go_back()
        page.wait_for_url(f"{base}/ui/merge-requests/candidates?**")
        for index in (0, 2):
            page.check(f"input[name=run][value='{runs[f'mr{mr}-{index}']}']")
        page.click("#selection button[value=compare]")
        page.wait_for_url(f"{base}/ui/compare?**")
        header = page.locator("#compare thead").inner_text()
        assert f"mr{mr}-0" in header
        assert f"mr{mr}-2" in header
        assert f"mr{mr}-1" not in header

        # and straight from the list
        page.goto(f"{base}/ui/merge-requests?metric=acc&direction=min")
        row = _row(page, mr)
        assert "0.71" in row.inner_text()
        row.locator("a.compare").click()
        page.wait_for_url(f"{base}/ui/compare?**")
        labels = page.locator("#compare thead a").all_inner_texts()
        assert labels == [f"mr{mr}-0", f"mr{mr}-2", f"mr{mr}-1"]  # the lowest acc first
    finally:
        page.close()
