"""The interactive charts in a real browser (Debian's chromium driven by Playwright): the
tooltip, the legend, zoom with a closer look from the server, log scale and smoothing, and
the x axis choices; all under the server's CSP, with no error in the page."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Server, screenshot
from tests.ui.scripts import watch_origin

STEPS = 3000
BASE_TS = 1_700_000_000_000


def loss(run: int, step: int) -> float:
    return (run + 1) * math.exp(-step / 800) + 0.05 * math.sin(step / 30) + 0.2


@pytest.fixture(scope="module")
def charted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, list[str]]]:
    import numpy as np
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from tests.conftest import Backend

    folder = tmp_path_factory.mktemp("charts")
    server = Server(Backend("sqlite", f"sqlite:///{folder / 'modelyard.db'}", folder))
    client = MlflowClient(server.url)
    experiment = client.create_experiment("charts")
    runs = []
    for n in range(3):
        run = client.create_run(experiment, run_name=f"run-{n}").info.run_id
        points = [Metric("loss", loss(n, s), BASE_TS + 1000 * s, s) for s in range(STEPS)]
        points += [Metric("acc", 1 - loss(n, s) / 4, BASE_TS + 1000 * s, s) for s in range(50)]
        for start in range(0, len(points), 1000):
            client.log_batch(run, metrics=points[start : start + 1000])
        runs.append(run)
    for step in range(3):  # images across steps, as the MLflow client names them
        pixels = np.full((8, 8, 3), 80 * step, dtype=np.uint8)
        client.log_image(runs[0], pixels, key="samples/grid", step=step)
    yield server, [*runs, experiment]
    server.stop()


def open_charts(browser: Any, url: str) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    errors = watch_origin(context, url)  # a request to any other host fails the test
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    page.wait_for_selector("body[data-charts-ready]")
    return context, page, errors


def canvas(page: Any, figure: str) -> str:
    return str(page.eval_on_selector(f"{figure} canvas", "c => c.toDataURL()"))


def test_hover_legend_zoom_log_smoothing(charted: Any, browser: Any) -> None:
    server, (*runs, _) = charted
    url = f"{server.url}/ui/compare?" + "&".join(f"runs={r}" for r in runs)
    context, page, errors = open_charts(browser, url)
    loss_chart = "figure[data-chart]:has(figcaption:text-is('loss'))"
    figure = page.locator(loss_chart)
    assert figure.locator("svg").get_attribute("hidden") == ""  # the SVG gives way
    over = figure.locator(".u-over")
    box = over.bounding_box()
    assert box is not None

    # hover: each candidate's name, step, value and time
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    tip = figure.locator(".chart-tip")
    tip.wait_for(state="visible")
    rows = tip.locator(".tip-row")
    assert rows.count() == 3
    text = rows.first.inner_text()
    label = text.split(" step ")[0].strip()
    assert label in {"run-0", "run-1", "run-2"}
    step = int(text.split(" step ")[1].split(" ")[0])
    value = float(text.split(" · ")[1])
    assert 1000 < step < 2000
    assert value == pytest.approx(loss(int(label[-1]), step), rel=1e-5)
    assert "2023-11-1" in text  # the time of the point
    screenshot(page, "charts-01-hover")

    # a legend click hides a candidate (and the tooltip leaves it out)
    before = canvas(page, loss_chart)
    figure.locator(f"ul.chart-legend button[data-run='{runs[1]}']").click()
    assert figure.get_attribute("data-hidden") == runs[1]
    assert figure.locator(f"button[data-run='{runs[1]}']").get_attribute("aria-pressed") == "false"
    assert canvas(page, loss_chart) != before
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.5)
    assert tip.locator(".tip-row").count() == 2
    assert tip.locator(f".tip-row[data-run='{runs[1]}']").count() == 0
    screenshot(page, "charts-02-legend")
    figure.locator(f"ul.chart-legend button[data-run='{runs[1]}']").click()
    assert figure.get_attribute("data-hidden") == ""

    # drag to zoom on x: the range narrows and the server sends the range's points
    full = float(figure.get_attribute("data-x-max") or 0) - float(
        figure.get_attribute("data-x-min") or 0
    )
    page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + 50)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + 60, steps=5)
    page.mouse.up()
    low = float(figure.get_attribute("data-x-min") or 0)
    high = float(figure.get_attribute("data-x-max") or 0)
    assert high - low < full / 5
    assert low > STEPS * 0.6
    page.wait_for_selector(f"{loss_chart}[data-refined]")
    screenshot(page, "charts-03-zoom")
    over.dblclick()
    assert float(figure.get_attribute("data-x-min") or 1) == pytest.approx(0, abs=1)

    # log scale and smoothing change the drawing
    before = canvas(page, loss_chart)
    page.check("#chart-log")
    logged = canvas(page, loss_chart)
    assert logged != before
    screenshot(page, "charts-04-log")
    page.uncheck("#chart-log")
    page.eval_on_selector(
        "#chart-smoothing",
        "e => { e.value = '0.95'; e.dispatchEvent(new Event('input', {bubbles: true})); }",
    )
    smoothed = canvas(page, loss_chart)
    assert smoothed not in (before, logged)
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
    assert "smoothed" in tip.inner_text()
    screenshot(page, "charts-05-smoothing")

    # x axis by wall time and by relative time
    page.select_option("#chart-axis", "relative")
    assert float(figure.get_attribute("data-x-max") or 0) == pytest.approx(STEPS - 1, abs=2)
    page.select_option("#chart-axis", "wall")
    assert float(figure.get_attribute("data-x-min") or 0) >= BASE_TS / 1000 - 1
    assert errors == []
    context.close()


def test_links_of_the_mlflow_ui_form_open_their_pages(charted: Any, browser: Any) -> None:
    """The links the MLflow client prints, on a server without sign-in (no prefix)."""
    server, (first, *_, experiment) = charted
    page = browser.new_page()
    for link, landing in (
        (f"/#/experiments/{experiment}/runs/{first}", f"/ui/runs/{first}"),
        (f"/#/experiments/{experiment}", f"/ui/experiments/{experiment}"),
        ("/#/models", "/ui/models"),
    ):
        page.goto(server.url + link)
        page.wait_for_url(server.url + landing)
    assert page.locator("h1").inner_text() == "Models"
    page.goto(f"{server.url}/#/experiments/{experiment}/nonsense")
    page.wait_for_url("**/ui/link?to=**")
    assert "No page answers the link" in page.locator("[role=alert]").inner_text()
    page.close()


def test_experiment_chart_view(charted: Any, browser: Any) -> None:
    """One chart per chosen metric over the candidates of the table (its filter too)."""
    import requests

    from tests.ui.scripts import assert_only_safe_scripts

    server, (*runs, experiment) = charted
    url = f"{server.url}/ui/experiments/{experiment}"
    table = requests.get(url, timeout=30).text
    assert f'href="/ui/experiments/{experiment}/charts?' in table
    answer = requests.get(f"{url}/charts", params={"metrics": "loss,acc"}, timeout=30)
    assert answer.status_code == 200
    (data,) = assert_only_safe_scripts(answer.text)
    assert isinstance(data, dict)
    assert [c["key"] for c in data["charts"]] == ["loss", "acc"]
    loss_chart = data["charts"][0]
    assert {s["run"] for s in loss_chart["series"]} == set(runs)
    for series in loss_chart["series"]:  # 3,000 steps on 300 columns: each one's extremes
        assert series["sampled"] is True
        assert len(series["values"]) <= 600
        assert min(series["values"]) == min(loss(int(series["label"][-1]), s) for s in range(STEPS))
    assert answer.text.count("<svg") == 2
    one = requests.get(
        f"{url}/charts", params={"metrics": "loss", "filter": "attributes.run_name = 'run-1'"},
        timeout=30,
    ).text  # fmt: skip
    (data,) = assert_only_safe_scripts(one)
    assert isinstance(data, dict)
    assert [s["label"] for s in data["charts"][0]["series"]] == ["run-1"]
    context, page, errors = open_charts(browser, f"{url}/charts?metrics=loss,acc")
    assert page.get_attribute("body", "data-charts-ready") == "2"
    assert page.locator("#experiment-charts canvas").count() >= 2
    screenshot(page, "charts-06-experiment")
    assert errors == []
    context.close()


def test_images_across_steps(charted: Any, browser: Any) -> None:
    server, (first, *_) = charted
    context, page, errors = open_charts(browser, f"{server.url}/ui/runs/{first}")
    figure = page.locator("figure.image-key[data-key='samples/grid']")
    assert figure.get_attribute("data-step") == "2"
    assert "%2Bstep%2B2%2B" in (figure.locator("img").get_attribute("src") or "")
    assert "compressed.webp" in (figure.locator("img").get_attribute("src") or "")
    slider = figure.locator("input.step-slider")
    slider.fill("0")
    assert figure.get_attribute("data-step") == "0"
    source = figure.locator("img").get_attribute("src") or ""
    assert "%2Bstep%2B0%2B" in source
    assert figure.locator(".image-step").inner_text() == "step 0"
    shown = page.evaluate("s => fetch(s).then(r => r.ok && r.headers.get('content-type'))", source)
    assert shown == "image/webp"
    page.wait_for_function("() => document.querySelector('figure.image-key img').complete")
    assert page.eval_on_selector("figure.image-key img", "i => i.naturalWidth") > 0
    screenshot(page, "charts-07-images")
    assert errors == []
    context.close()
