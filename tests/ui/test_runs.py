"""The candidate page (params, metrics and their charts, tags, parent and children, lineage,
files), file previews and downloads (never anything a browser would run), and the comparison
of candidates, on SQLite and PostgreSQL with authentication off."""

from __future__ import annotations

import re
import struct
import uuid
import zlib
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote

import pytest
import requests

from tests.conftest import Server, run_cli
from tests.ui.scripts import assert_only_safe_scripts

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
EVIL_FILE = "<script>x.txt"


def png() -> bytes:
    """A real PNG of one pixel."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


FILES: dict[str, tuple[bytes, str]] = {
    "config.json": (b'{"b": 1, "a": [1, 2], "s": "<script>"}', "application/json"),
    "notes.txt": (b"hello <b>world</b>\n", "text/plain"),
    "evil.html": (b"<html><script>alert(1)</script></html>", "text/html"),
    "x.svg": (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "image/svg+xml"),
    "plots/curve.png": (png(), "image/png"),
    "model/MLmodel": (b"flavors:\n  python_function: {}\n", "application/octet-stream"),
    EVIL_FILE: (b"named badly", "text/plain"),
    "blob.bin": (b"\x00\x01\x02", "application/octet-stream"),
}


@dataclass
class Logged:
    server: Server
    experiment_id: str
    parent: str
    child: str
    compared: list[str]

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(f"{self.server.url}{path}", timeout=30, **kwargs)


def _upload(
    server: Server, experiment_id: str, run_id: str, path: str, body: bytes, media: str
) -> None:
    url = (
        f"{server.url}/api/2.0/mlflow-artifacts/artifacts/"
        f"{experiment_id}/{run_id}/artifacts/{quote(path)}"
    )
    response = requests.put(url, data=body, headers={"content-type": media}, timeout=30)
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def logged(server: Server) -> Logged:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server.url)
    experiment_id = str(client.create_experiment(f"ui-runs-{uuid.uuid4().hex[:10]}"))
    parent = client.create_run(
        experiment_id,
        run_name=SCRIPT,
        tags={
            "note": SCRIPT,
            "mlflow.source.git.commit": "0123abcd",
            "mlflow.source.name": "train.py",
            "ci.job_url": "https://ci.example.com/jobs/42",
            "ci.merge_request": "javascript:alert(1)",
        },
    ).info.run_id
    client.log_batch(
        parent,
        metrics=[
            Metric("loss", 1.0 / (step + 1), 1_700_000_000_000 + step, step) for step in range(20)
        ]
        + [Metric("accuracy", 0.75, 1_700_000_000_000, 0)],
        params=[Param("alpha", "0.5"), Param("optimizer", SCRIPT)],
    )
    child = client.create_run(
        experiment_id, run_name="child-run", tags={"mlflow.parentRunId": parent}
    ).info.run_id
    for path, (body, media) in FILES.items():
        _upload(server, experiment_id, parent, path, body, media)

    compared = []
    for n in range(3):
        run_id = client.create_run(experiment_id, run_name=f"cmp-{n}").info.run_id
        client.log_batch(
            run_id,
            metrics=[
                Metric("loss", (n + 1) / (step + 1), 1_700_000_000_000 + step, step)
                for step in range(10)
            ]
            + [Metric("constant", 1.0, 1_700_000_000_000, 0)],
            params=[
                Param("alpha", str(0.1 * (n + 1))),
                Param("shared", "same"),
                Param("kind", ["a", "b", "c"][n]),
            ],
        )
        compared.append(run_id)
    return Logged(server, experiment_id, parent, child, compared)


class Rows(HTMLParser):
    """The rows of one table (by id): each row's class and cell texts."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id = table_id
        self.depth = 0
        self.rows: list[tuple[str, list[str]]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and (self.depth or a.get("id") == self.table_id):
            self.depth += 1
        if not self.depth:
            return
        if tag == "tr":
            self.rows.append((a.get("class") or "", []))
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if not self.depth:
            return
        if tag == "table":
            self.depth -= 1
        elif tag in ("td", "th") and self.cell is not None:
            self.rows[-1][1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def rows(page: str, table_id: str) -> list[tuple[str, list[str]]]:
    parser = Rows(table_id)
    parser.feed(page)
    return parser.rows


VOID = frozenset(("br", "img", "input", "meta", "link", "hr", "wbr"))


class _Element(HTMLParser):
    def __init__(self, element_id: str) -> None:
        super().__init__(convert_charrefs=False)
        self.element_id = element_id
        self.depth = 0
        self.start: tuple[int, int] | None = None
        self.end: tuple[int, int] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.end is not None or tag in VOID:
            return
        if self.start is None and dict(attrs).get("id") == self.element_id:
            self.start = self.getpos()
        if self.start is not None:
            self.depth += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        if self.start is None or self.end is not None or tag in VOID:
            return
        self.depth -= 1
        if self.depth == 0:
            self.end = self.getpos()


def section(page: str, element_id: str) -> str:
    """The HTML of the element with this id."""
    parser = _Element(element_id)
    parser.feed(page)
    assert parser.start is not None, element_id
    assert parser.end is not None, element_id
    lines = page.splitlines(keepends=True)

    def offset(pos: tuple[int, int]) -> int:
        return sum(len(line) for line in lines[: pos[0] - 1]) + pos[1]

    return page[offset(parser.start) : offset(parser.end)]


def test_candidate_page(logged: Logged) -> None:
    response = logged.get(f"/ui/runs/{logged.parent}")
    assert response.status_code == 200, response.text
    page = response.text
    assert SCRIPT not in page
    (data,) = assert_only_safe_scripts(page)
    assert f'<h1 id="run-name">{ESCAPED}</h1>' in page
    params = dict(cells for _, cells in rows(page, "params")[1:])
    assert params == {"alpha": "0.5", "optimizer": SCRIPT}
    metrics = {cells[0]: cells[1] for _, cells in rows(page, "metrics")[1:]}
    assert metrics == {"accuracy": "0.75", "loss": "0.05"}
    charts = section(page, "metric-charts")
    assert charts.count("<svg") == 1  # loss has a history, accuracy a single value
    assert "<figcaption>loss</figcaption>" in charts
    assert "<polyline" in charts
    # the same history for the interactive chart, the name as data (escaped by JSON's rules)
    assert isinstance(data, dict)
    (loss,) = data["charts"]
    assert (loss["key"], loss["by"]) == ("loss", "step")
    (series,) = loss["series"]
    assert series["label"] == SCRIPT
    assert series["steps"] == list(range(20))
    assert series["values"] == [1.0 / (step + 1) for step in range(20)]
    assert series["times"] == [1_700_000_000_000 + step for step in range(20)]
    assert "<script>" not in section(page, "metric-charts")
    tags = dict(cells for _, cells in rows(page, "tags")[1:])
    assert tags["note"] == SCRIPT
    assert "mlflow.runName" not in tags
    assert '<details id="system-tags">' in page
    assert "<td>mlflow.source.git.commit</td>" in section(page, "system-tags")
    lineage = section(page, "lineage")
    assert "0123abcd" in lineage
    assert "train.py" in lineage
    assert '<a href="https://ci.example.com/jobs/42"' in lineage
    assert 'href="javascript:' not in page
    assert "javascript:alert(1)" in lineage  # shown as text
    children = section(page, "children")
    assert f'href="/ui/runs/{logged.child}">child-run</a>' in children
    assert f'href="/ui/promote?run={logged.parent}"' in page  # auth off: the owner
    tree = section(page, "artifacts")
    for name in ("config.json", "notes.txt", "evil.html", "x.svg", "curve.png", "MLmodel"):
        assert f">{name}</a>" in tree, name
    assert "&lt;script&gt;x.txt</a>" in tree
    assert f'href="/ui/runs/{logged.parent}/raw/%3Cscript%3Ex.txt"' in tree
    assert "<summary>plots/</summary>" in tree
    assert "<summary>model/</summary>" in tree
    assert "3 B" in tree  # blob.bin's size

    child_page = logged.get(f"/ui/runs/{logged.child}").text
    assert f'id="parent"><a href="/ui/runs/{logged.parent}">{ESCAPED}</a>' in child_page
    assert "No artifacts." in child_page


def test_previews(logged: Logged) -> None:
    base = f"/ui/runs/{logged.parent}"
    page = logged.get(f"{base}/files/config.json").text
    assert '<pre id="preview-text">{\n  &#34;b&#34;: 1,\n  &#34;a&#34;: [\n' in page
    assert "&lt;script&gt;" in page
    assert_only_safe_scripts(page)
    page = logged.get(f"{base}/files/notes.txt").text
    assert "hello &lt;b&gt;world&lt;/b&gt;" in page
    page = logged.get(f"{base}/files/model/MLmodel").text
    assert "python_function" in section(page, "preview-text")
    page = logged.get(f"{base}/files/{quote(EVIL_FILE)}").text
    assert '<h1 id="file-name">&lt;script&gt;x.txt</h1>' in page
    assert "named badly" in page
    assert_only_safe_scripts(page)
    page = logged.get(f"{base}/files/plots/curve.png").text
    assert f'<img id="preview-image" src="{base}/raw/plots/curve.png"' in page
    raw = logged.get(f"{base}/raw/plots/curve.png")
    assert raw.headers["content-type"] == "image/png"
    assert raw.headers["content-disposition"].startswith("inline")
    assert raw.headers["x-content-type-options"] == "nosniff"
    assert raw.content == FILES["plots/curve.png"][0]
    page = logged.get(f"{base}/files/blob.bin").text
    assert 'id="no-preview"' in page


@pytest.mark.parametrize("name", ["evil.html", "x.svg"])
def test_active_files_are_only_downloaded(logged: Logged, name: str) -> None:
    base = f"/ui/runs/{logged.parent}"
    page = logged.get(f"{base}/files/{name}").text
    assert 'id="no-preview"' in page
    assert "preview-text" not in page
    assert "<img" not in page
    assert "html&gt;" not in page
    assert "onload" not in page
    raw = logged.get(f"{base}/raw/{name}")
    assert raw.status_code == 200
    assert raw.headers["content-type"] == "application/octet-stream"
    assert raw.headers["content-disposition"].startswith("attachment")
    assert raw.headers["x-content-type-options"] == "nosniff"
    assert raw.content == FILES[name][0]


def test_bad_and_missing_files(logged: Logged) -> None:
    base = f"/ui/runs/{logged.parent}"
    for path in ("%2e%2e/%2e%2e/etc/passwd", "a/%2E%2E/b", "a//b", "%252e%252e/x"):
        for route in ("files", "raw"):
            response = logged.get(f"{base}/{route}/{path}")
            assert response.status_code == 400, (route, path, response.text)
    assert logged.get(f"{base}/files/nope.txt").status_code == 404
    assert logged.get(f"{base}/raw/nope.txt").status_code == 404
    assert logged.get(f"/ui/runs/{uuid.uuid4().hex}/files/config.json").status_code == 404


def test_unknown_run(logged: Logged) -> None:
    response = logged.get(f"/ui/runs/{uuid.uuid4().hex}")
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]
    bad = logged.get("/ui/runs/%3Cscript%3E")
    assert bad.status_code == 400
    assert "<script>" not in bad.text


def test_compare(logged: Logged) -> None:
    query = "&".join(f"runs={r}" for r in logged.compared)
    response = logged.get(f"/ui/compare?{query}")
    assert response.status_code == 200, response.text
    page = response.text
    table = rows(page, "compare")
    body = {
        cells[0]: (cls, cells[1:])
        for cls, cells in table
        if cls in ("param", "metric", "param same", "metric same")
    }
    assert body["param shared"] == ("param same", ["same"] * 3)
    assert body["metric constant"] == ("metric same", ["1"] * 3)
    assert body["param kind"] == ("param", ["a", "b", "c"])
    assert body["metric loss"][0] == "metric"
    assert page.count('action="/ui/promote"') == 3
    assert section(page, "history-charts").count("<svg") == 1  # loss; constant has one value
    assert section(page, "parallel").count("<svg") == 1
    scatter = section(page, "scatter")
    assert "<svg" in scatter
    assert scatter.count("<circle") == 3
    # numeric params and metrics are axes; "kind" and "shared" are not numbers
    assert '<option value="params.alpha" selected>' in page
    assert 'value="params.kind"' not in page
    assert 'value="params.shared"' not in page

    only = logged.get(f"/ui/compare?{query}&diff=1").text
    kept = [cells[0] for cls, cells in rows(only, "compare") if cls.startswith(("param", "metric"))]
    assert "param shared" not in kept
    assert "metric constant" not in kept
    assert "param kind" in kept
    assert "metric loss" in kept
    assert "Show all rows" in only

    chosen = logged.get(f"/ui/compare?{query}&x=metrics.loss&y=params.alpha").text
    assert '<option value="metrics.loss" selected>' in section(chosen, "scatter-form")
    assert "<figcaption>params.alpha against metrics.loss</figcaption>" in chosen


def test_compare_bounds(logged: Logged) -> None:
    one = logged.get(f"/ui/compare?runs={logged.compared[0]}")
    assert one.status_code == 400
    assert "Choose between 2 and 50 candidates" in one.text
    many = "&".join(f"runs={uuid.uuid4().hex}" for _ in range(51))
    assert logged.get(f"/ui/compare?{many}").status_code == 400
    missing = logged.get(f"/ui/compare?runs={logged.compared[0]}&runs={uuid.uuid4().hex}")
    assert missing.status_code == 404


def test_compare_escapes(logged: Logged) -> None:
    page = logged.get(f"/ui/compare?runs={logged.parent}&runs={logged.compared[0]}").text
    assert_only_safe_scripts(page)
    assert ESCAPED in page
    assert re.search(r"<th>param optimizer</th>\s*<td>" + re.escape(ESCAPED), page)


def test_in_a_project(server: Server) -> None:
    """Links carry the project's prefix; another project's candidates and files are not found."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    name = f"runs-{uuid.uuid4().hex[:8]}"
    made = run_cli(server, "admin", "projects", "create", name)
    assert made.returncode == 0, made.stderr
    client = MlflowClient(f"{server.url}/projects/{name}")
    experiment_id = str(client.create_experiment("secret"))
    ids = []
    for n in range(2):
        run_id = client.create_run(experiment_id, run_name=f"p-{n}").info.run_id
        client.log_batch(run_id, metrics=[Metric("loss", 1.0 / (s + 1), 0, s) for s in range(3)])
        ids.append(run_id)
    url = f"{server.url}/projects/{name}/api/2.0/mlflow-artifacts/artifacts/"
    put = requests.put(f"{url}{experiment_id}/{ids[0]}/artifacts/a.txt", data=b"hi", timeout=30)
    assert put.status_code == 200
    base = f"/projects/{name}/ui"
    page = requests.get(f"{server.url}{base}/runs/{ids[0]}", timeout=30).text
    assert f'href="{base}/runs/{ids[0]}/files/a.txt"' in page
    assert f'href="{base}/runs/{ids[0]}/raw/a.txt"' in page
    assert f'href="{base}/experiments/{experiment_id}">secret</a>' in page
    assert f'href="{base}/promote?run={ids[0]}"' in page
    raw = requests.get(f"{server.url}{base}/runs/{ids[0]}/raw/a.txt", timeout=30)
    assert raw.content == b"hi"
    compared = requests.get(f"{server.url}{base}/compare?runs={ids[0]}&runs={ids[1]}", timeout=30)
    assert compared.status_code == 200
    assert f'action="{base}/promote"' in compared.text
    for path in (f"/ui/runs/{ids[0]}", f"/ui/runs/{ids[0]}/raw/a.txt"):
        answer = requests.get(f"{server.url}{path}", timeout=30)
        assert answer.status_code == 404
        assert "secret" not in answer.text
    assert (
        requests.get(f"{server.url}/ui/compare?runs={ids[0]}&runs={ids[1]}", timeout=30).status_code
        == 404
    )


def test_long_history_is_sampled(logged: Logged) -> None:
    """2,500 points for a chart of 1,000 columns: the lowest and highest of each column, so
    a one-step spike and dip survive; the SVG is thinned further."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(logged.server.url)
    run_id = client.create_run(logged.experiment_id, run_name="long").info.run_id
    values = {s: float(s % 7) for s in range(2500)}
    values[1234], values[2001] = 1000.0, -5.0
    points = [Metric("long", v, 1_700_000_000_000 + s, s) for s, v in values.items()]
    for start in range(0, len(points), 1000):
        client.log_batch(run_id, metrics=points[start : start + 1000])
    page = logged.get(f"/ui/runs/{run_id}").text
    chart = section(page, "metric-charts")
    line = re.search(r'<polyline points="([^"]+)"', chart)
    assert line is not None
    assert len(line.group(1).split()) == 400
    (data,) = assert_only_safe_scripts(page)
    assert isinstance(data, dict)
    (series,) = data["charts"][0]["series"]
    assert series["sampled"] is True
    assert 1000 < len(series["steps"]) <= 2000
    assert series["steps"] == sorted(series["steps"])
    assert (series["steps"][0], series["steps"][-1]) == (0, 2499)
    kept = dict(zip(series["steps"], series["values"], strict=True))
    assert kept[1234] == 1000.0
    assert kept[2001] == -5.0
    assert all(values[step] == value for step, value in kept.items())
    # a closer look at a range: every point of it
    closer = logged.get(
        "/ui/charts/data", params={"runs": run_id, "key": "long", "start": 1200, "end": 1300}
    ).json()
    (near,) = closer["series"]
    assert near["steps"] == list(range(1200, 1301))
    assert near["sampled"] is False
