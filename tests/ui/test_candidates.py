"""The candidates page of an experiment and its CSV export, on SQLite and PostgreSQL: chosen
columns, the filter language (OR, parentheses, errors), sorting, keyset paging, escaping,
formula-safe CSV, and projects sealed from each other."""

from __future__ import annotations

import csv
import html
import io
import uuid
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.conftest import Server, run_cli

SCRIPT = "<script>alert(1)</script>"
COUNT = 130  # more than one page of 100


@dataclass
class Table:
    """The candidates table of a page: header texts, and per row its run id and cell texts."""

    headers: list[str] = field(default_factory=list)
    sort_links: dict[str, str] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)  # id of an <a> -> its href

    def column(self, header: str) -> list[str]:
        index = self.headers.index(header)
        return [row[index] for row in self.rows]

    @property
    def names(self) -> list[str]:
        return self.column("name")


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.table = Table()
        self.inside = False
        self.cell: list[str] | None = None
        self.row: list[str] | None = None
        self.href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and "candidates" in (a.get("class") or ""):
            self.inside = True
        if tag == "a" and a.get("id"):
            self.table.links[a["id"] or ""] = a.get("href") or ""
        if not self.inside:
            return
        if tag == "tr":
            self.row = []
        elif tag in {"td", "th"}:
            self.cell = []
        elif tag == "a":
            self.href = a.get("href")
        elif tag == "input" and a.get("name") == "run":
            self.table.ids.append(a.get("value") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.inside = False
        if not self.inside:
            return
        if tag in {"td", "th"} and self.cell is not None and self.row is not None:
            self.row.append(" ".join("".join(self.cell).split()))
            self.cell = None
        elif tag == "tr" and self.row is not None:
            if not self.table.headers:
                self.table.headers = [c.removesuffix(" ▲").removesuffix(" ▼") for c in self.row]
                self.table.headers = [h.split(" ", 1)[-1] for h in self.table.headers]
            elif len(self.row) > 1:
                self.table.rows.append(self.row[1:])
            self.row = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)
            if self.href is not None and self.row is not None and not self.table.headers:
                self.table.sort_links[data.strip()] = self.href
                self.href = None


def read_table(text: str) -> Table:
    reader = _Reader()
    reader.feed(text)
    reader.table.headers = reader.table.headers[1:]
    return reader.table


@dataclass
class Candidate:
    run_id: str
    name: str
    optimizer: str
    lr: str
    loss: float
    acc: float


@dataclass
class World:
    server: Server
    experiment_id: str
    candidates: list[Candidate]

    def page(self, **params: Any) -> requests.Response:
        return get(self.server, f"/ui/experiments/{self.experiment_id}", params)

    def by_name(self) -> dict[str, Candidate]:
        return {c.name: c for c in self.candidates}


def get(server: Server, path: str, params: Any = None, **kwargs: Any) -> requests.Response:
    return requests.get(f"{server.url}{path}", params=params, timeout=30, **kwargs)


def follow(server: Server, href: str) -> requests.Response:
    return requests.get(server.url + href, timeout=30)


@pytest.fixture(scope="module")
def world(server: Server) -> World:
    """One experiment per backend with COUNT candidates: params optimizer and lr, metrics loss
    (all different) and acc, tag team; logged with one log_batch per candidate."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server.url)
    experiment_id = client.create_experiment(f"candidates-{uuid.uuid4().hex[:8]}")
    made = []
    for i in range(COUNT):
        name = f"cand-{i:03d}"
        run_id = client.create_run(experiment_id, run_name=name, start_time=1_700_000_000_000 + i)
        optimizer, lr = ("adam", "sgd")[i % 2], ("0.1", "0.01", "0.5")[i % 3]
        loss = ((i * 37) % COUNT) / 100 + 0.001
        made.append(Candidate(run_id.info.run_id, name, optimizer, lr, loss, 1 - loss / 2))
        client.log_batch(
            run_id.info.run_id,
            metrics=[Metric("loss", loss, 0, 0), Metric("acc", 1 - loss / 2, 0, 0)],
            params=[Param("optimizer", optimizer), Param("lr", lr)],
            tags=[RunTag("team", "vision" if i < 10 else "speech")],
        )
    return World(server, experiment_id, made)


def test_table_shows_candidates_with_their_params_and_metrics(world: World) -> None:
    answer = world.page()
    assert answer.status_code == 200
    table = read_table(answer.text)
    assert table.headers[:4] == ["name", "status", "started", "user"]
    assert {"optimizer", "lr", "loss", "acc"} <= set(table.headers)
    assert len(table.rows) == 100
    # newest first by default
    assert table.names == [f"cand-{i:03d}" for i in range(COUNT - 1, COUNT - 101, -1)]
    known = world.by_name()
    for name, run_id, optimizer, lr, loss in zip(
        table.names,
        table.ids,
        table.column("optimizer"),
        table.column("lr"),
        table.column("loss"),
        strict=True,
    ):
        assert (run_id, optimizer, lr) == (
            known[name].run_id,
            known[name].optimizer,
            known[name].lr,
        )
        assert float(loss) == pytest.approx(known[name].loss)
    assert f'href="/ui/runs/{table.ids[0]}"' in answer.text


def test_chosen_columns(world: World) -> None:
    table = read_table(world.page(params="lr", metrics="acc", tags="team").text)
    assert table.headers == ["name", "status", "started", "user", "lr", "acc", "team"]
    assert set(table.column("team")) == {"speech"}  # the 100 newest
    table = read_table(world.page(tags="team", order="attributes.start_time ASC").text)
    assert table.column("team")[:10] == ["vision"] * 10


def test_filter_with_or_and_parentheses(world: World) -> None:
    text = "metrics.loss < 0.2 AND (params.optimizer = 'sgd' OR params.lr = '0.5')"
    table = read_table(world.page(filter=text).text)
    expected = {
        c.name for c in world.candidates if c.loss < 0.2 and (c.optimizer == "sgd" or c.lr == "0.5")
    }
    assert expected
    assert set(table.names) == expected
    table = read_table(world.page(filter="tags.team = 'vision' OR metrics.loss < 0.05").text)
    expected = {c.name for i, c in enumerate(world.candidates) if i < 10 or c.loss < 0.05}
    assert set(table.names) == expected


def test_sorting_by_a_metric(world: World) -> None:
    ascending = read_table(world.page(order="metrics.loss ASC").text)
    losses = [float(v) for v in ascending.column("loss")]
    assert losses == sorted(losses)
    assert ascending.names[0] == min(world.candidates, key=lambda c: c.loss).name
    # the loss header of an ascending view sorts descending, keeping the columns
    link = parse_qs(urlsplit(ascending.sort_links["loss"]).query)
    assert link["order"] == ["metrics.loss DESC"]
    descending = read_table(follow(world.server, ascending.sort_links["loss"]).text)
    assert [float(v) for v in descending.column("loss")] == pytest.approx(
        sorted((c.loss for c in world.candidates), reverse=True)[:100], abs=1e-6
    )
    by_name = read_table(world.page(order="attributes.run_name ASC").text)
    assert by_name.names == sorted(by_name.names)
    assert by_name.names[0] == "cand-000"


def test_paging_keeps_the_view_and_never_repeats(world: World) -> None:
    first = world.page(order="metrics.loss DESC", params="optimizer", metrics="loss")
    one = read_table(first.text)
    assert len(one.rows) == 100
    assert "first-page" not in one.links
    nxt = one.links["next-page"]
    query = parse_qs(urlsplit(nxt).query)
    assert query["order"] == ["metrics.loss DESC"]
    assert query["params"] == ["optimizer"]
    two = read_table(follow(world.server, nxt).text)
    assert two.headers == one.headers == ["name", "status", "started", "user", "optimizer", "loss"]
    assert len(two.rows) == COUNT - 100
    assert "next-page" not in two.links
    assert not set(one.ids) & set(two.ids)
    assert set(one.ids) | set(two.ids) == {c.run_id for c in world.candidates}
    losses = [float(v) for v in one.column("loss") + two.column("loss")]
    assert losses == sorted(losses, reverse=True)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("metrics.loss < ", "unexpected token 'end of input' at position 15"),
        ("(params.lr = '0.1' OR params.lr = '0.5'", "at position 39 (expected ')')"),
        ("metrics.loss ~ 1", "unexpected character '~' at position 13"),
        ("nonsense.x = 'y'", "invalid entity type 'nonsense'"),
    ],
)
def test_a_bad_filter_shows_its_error(world: World, text: str, shown: str) -> None:
    answer = world.page(filter=text)
    assert answer.status_code == 400
    assert 'id="filter-error"' in answer.text
    assert shown in html.unescape(answer.text)
    assert "Fix the filter to see candidates." in answer.text
    assert get(world.server, f"/ui/experiments/{world.experiment_id}/candidates.csv",
               {"filter": text}).status_code == 400  # fmt: skip


def test_bad_order_and_token_answer_400(world: World) -> None:
    assert world.page(order="metrics.loss SIDEWAYS").status_code == 400
    assert world.page(page_token="not-a-token").status_code == 400


def test_csv_export_matches_the_view(world: World) -> None:
    view = {
        "filter": "metrics.loss < 0.9 OR params.optimizer = 'adam'",
        "order": "metrics.loss ASC",
        "params": "optimizer,lr",
        "metrics": "loss",
        "tags": "team",
    }
    answer = get(world.server, f"/ui/experiments/{world.experiment_id}/candidates.csv", view)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"].startswith("attachment;")
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0] == [
        "run_id", "run_name", "experiment_id", "status", "start_time", "end_time", "user_id",
        "params.optimizer", "params.lr", "metrics.loss", "tags.team",
    ]  # fmt: skip
    matching = sorted(
        (c for c in world.candidates if c.loss < 0.9 or c.optimizer == "adam"),
        key=lambda c: c.loss,
    )
    assert len(matching) > 100  # more than the first page
    assert [r[0] for r in rows[1:]] == [c.run_id for c in matching]
    for row, c in zip(rows[1:], matching, strict=True):
        assert row[1:4] == [c.name, world.experiment_id, "RUNNING"]
        assert row[7:9] == [c.optimizer, c.lr]
        assert float(row[9]) == c.loss
    # the table's first page shows the same rows first
    table = read_table(world.page(**view).text)
    assert table.ids == [r[0] for r in rows[1:101]]
    # a limit, and the link on the page carries the view
    limited = get(world.server, f"/ui/experiments/{world.experiment_id}/candidates.csv",
                  {**view, "limit": "7"})  # fmt: skip
    assert list(csv.reader(io.StringIO(limited.text)))[1:] == rows[1:8]
    href = read_table(world.page(**view).text).links["csv"]
    assert parse_qs(urlsplit(href).query)["order"] == ["metrics.loss ASC"]


@pytest.fixture(scope="module")
def hostile(server: Server) -> tuple[str, str]:
    """A candidate whose name, tag and param hold a script, and cells that look like
    formulas."""
    from mlflow.entities import Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server.url)
    experiment_id = client.create_experiment(f"{SCRIPT}-{uuid.uuid4().hex[:6]}")
    run_id = client.create_run(experiment_id, run_name=SCRIPT).info.run_id
    client.log_batch(
        run_id,
        params=[Param("evil", SCRIPT), Param("formula", '=HYPERLINK("http://x")')],
        tags=[RunTag("note", SCRIPT), RunTag("at", "@SUM(A1)"), RunTag("minus", "-2+3")],
    )
    return experiment_id, run_id


def test_scripts_are_shown_escaped(server: Server, hostile: tuple[str, str]) -> None:
    experiment_id, _ = hostile
    answer = get(
        server,
        f"/ui/experiments/{experiment_id}",
        {"params": "evil", "tags": "note", "filter": f"params.evil = '{SCRIPT}'"},
    )
    assert answer.status_code == 200
    assert SCRIPT not in answer.text
    assert answer.text.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4  # title, name, 2 cells
    table = read_table(answer.text)
    assert table.names == [SCRIPT]
    assert table.column("evil") == [SCRIPT]
    assert table.column("note") == [SCRIPT]
    wrong = get(server, f"/ui/experiments/{experiment_id}", {"filter": f"{SCRIPT} = 1"})
    assert wrong.status_code == 400
    assert SCRIPT not in wrong.text
    assert "unexpected character '/' at position 17" in html.unescape(wrong.text)


def test_csv_cells_cannot_be_formulas(server: Server, hostile: tuple[str, str]) -> None:
    experiment_id, run_id = hostile
    answer = get(
        server,
        f"/ui/experiments/{experiment_id}/candidates.csv",
        {"params": "formula,evil", "tags": "at,minus"},
    )
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[1][0] == run_id
    assert rows[1][-4:] == ['\'=HYPERLINK("http://x")', SCRIPT, "'@SUM(A1)", "'-2+3"]


def test_several_experiments(world: World, hostile: tuple[str, str]) -> None:
    table = read_table(world.page(experiments=hostile[0], filter="tags.team = 'vision' OR "
                                  "params.evil IS NOT NULL").text)  # fmt: skip
    assert "experiment" in table.headers
    assert len(table.rows) == 11
    assert SCRIPT in table.names


def test_selection_goes_to_compare_and_promote(server: Server) -> None:
    def where(**params: Any) -> requests.Response:
        return get(server, "/ui/selection", params, allow_redirects=False)

    answer = where(do="compare", run=["a1", "b2"])
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/compare?runs=a1&runs=b2"
    assert where(do="promote", run="a1").headers["location"] == "/ui/promote?run=a1"
    assert where(do="promote", run=["a1", "b2"]).status_code == 400
    assert where(do="compare").status_code == 400


def test_another_projects_experiment_is_not_found(server: Server) -> None:
    from mlflow.tracking import MlflowClient

    name = f"other-{uuid.uuid4().hex[:8]}"
    made = run_cli(server, "admin", "projects", "create", name)
    assert made.returncode == 0, made.stderr
    theirs = MlflowClient(f"{server.url}/projects/{name}").create_experiment("secret")
    for path in (f"/ui/experiments/{theirs}", f"/ui/experiments/{theirs}/candidates.csv"):
        answer = get(server, path)
        assert answer.status_code == 404
        assert "secret" not in answer.text
    assert get(server, f"/projects/{name}/ui/experiments/{theirs}").status_code == 200
    assert get(server, "/ui/experiments/999999").status_code == 404


def test_sorting_by_a_key_with_a_space(server: Server) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server.url)
    experiment_id = client.create_experiment(f"spaced-{uuid.uuid4().hex[:6]}")
    for size in ("64", "8", "32"):
        run_id = client.create_run(experiment_id).info.run_id
        client.log_param(run_id, "batch size", size)
    table = read_table(get(server, f"/ui/experiments/{experiment_id}").text)
    assert "batch size" in table.headers
    link = table.sort_links["batch size"]
    assert parse_qs(urlsplit(link).query)["order"] == ["params.`batch size` ASC"]
    ordered = read_table(follow(server, link).text)
    assert ordered.column("batch size") == ["32", "64", "8"]  # params sort as strings
