"""Property test: the SQL search compiler agrees with a plain-Python oracle.

Random candidates and random filters (with AND, OR and parentheses) and orderings are run
through the real services on SQLite and PostgreSQL; every page of the result must match what
the oracle computes directly from the data.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelyard.db.engine import Database
from modelyard.db.migrate import ensure_schema
from modelyard.services import experiments, run_data, runs
from modelyard.services.entities import Metric

PROJECT = 1
STRINGS = ["a", "b", "A", "ab", "aB", "b_a", "bxa", "b%", "%"]
PATTERNS = ["a%", "%b", "A%", "_b", "%", "a_", "b\\_a", "b\\%", "ab"]
FLOATS = [-1.0, 0.0, 0.5, 1.0, 2.5, float("nan")]
NAMES = ["alpha", "Alpha", "beta", "gamma"]
STATUSES = ["RUNNING", "FINISHED", "FAILED"]


@dataclass
class FakeRun:
    name: str
    status: str
    start_time: int
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str = ""


def maybe(values: list[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.sampled_from(values))


@st.composite
def fake_runs(draw: st.DrawFn) -> list[FakeRun]:
    out = []
    for _ in range(draw(st.integers(1, 9))):
        run = FakeRun(
            name=draw(st.sampled_from(NAMES)),
            status=draw(st.sampled_from(STATUSES)),
            start_time=draw(st.integers(1, 4)),
        )
        for key in ("p", "q"):
            if (value := draw(maybe(STRINGS))) is not None:
                run.params[key] = value
        if (value := draw(maybe(STRINGS))) is not None:
            run.tags["t"] = value
        for key in ("m", "n"):
            if (number := draw(maybe(FLOATS))) is not None:
                run.metrics[key] = number
        out.append(run)
    return out


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@st.composite
def comparisons(draw: st.DrawFn) -> tuple[str, tuple[Any, ...]]:
    kind = draw(st.sampled_from(["metric", "param", "tag", "name", "status"]))
    if kind == "metric":
        key = draw(st.sampled_from(["m", "n"]))
        op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="]))
        value = draw(st.sampled_from([v for v in FLOATS if not math.isnan(v)]))
        return f"metrics.{key} {op} {value!r}", ("metric", key, op, value)
    if kind in {"param", "tag"}:
        key = draw(st.sampled_from(["p", "q"] if kind == "param" else ["t"]))
        prefix = "params" if kind == "param" else "tags"
        op = draw(st.sampled_from(["=", "!=", "LIKE", "ILIKE", "IS NULL", "IS NOT NULL"]))
        if op.startswith("IS"):
            return f"{prefix}.`{key}` {op}", (kind, key, op, None)
        value = draw(st.sampled_from(PATTERNS if "LIKE" in op else STRINGS))
        return f"{prefix}.{key} {op} {quote(value)}", (kind, key, op, value)
    if kind == "name":
        op = draw(st.sampled_from(["=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"]))
        if op.endswith("IN"):
            values = tuple(draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3)))
            return (
                f"attributes.run_name {op} ({', '.join(quote(v) for v in values)})",
                ("name", op, values),
            )
        value = draw(st.sampled_from(["alpha", "a%", "%A", "ALPHA", "_eta"]))
        return f"attributes.run_name {op} {quote(value)}", ("name", op, value)
    op = draw(st.sampled_from(["=", "!="]))
    value = draw(st.sampled_from(STATUSES))
    return f"status {op} {quote(value)}", ("status", op, value)


def filters(depth: int = 3) -> st.SearchStrategy[tuple[str, Any]]:
    def combine(children: st.SearchStrategy[tuple[str, Any]]) -> st.SearchStrategy[Any]:
        return st.tuples(
            st.sampled_from(["AND", "OR"]), st.lists(children, min_size=2, max_size=3)
        ).map(
            lambda t: (
                "(" + f" {t[0]} ".join(c[0] for c in t[1]) + ")",
                ("bool", t[0], [c[1] for c in t[1]]),
            )
        )

    return st.recursive(comparisons(), combine, max_leaves=6)


def like(value: str, pattern: str, *, fold: bool) -> bool:
    parts, escaped = [], False
    for char in pattern:
        if escaped:
            parts.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            parts.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
    regex = "".join(parts)
    flags = re.IGNORECASE if fold else 0
    return re.fullmatch(regex, value, flags | re.DOTALL) is not None


def string_test(value: str | None, op: str, target: Any) -> bool:
    if op == "IS NULL":
        return value is None
    if op == "IS NOT NULL":
        return value is not None
    if value is None:
        return False
    return {
        "=": lambda: value == target,
        "!=": lambda: value != target,
        "LIKE": lambda: like(value, target, fold=False),
        "ILIKE": lambda: like(value, target, fold=True),
        "IN": lambda: value in target,
        "NOT IN": lambda: value not in target,
    }[op]()


def oracle(node: Any, run: FakeRun) -> bool:
    kind = node[0]
    if kind == "bool":
        results = [oracle(child, run) for child in node[2]]
        return all(results) if node[1] == "AND" else any(results)
    if kind == "metric":
        _, key, op, target = node
        value = run.metrics.get(key)
        if value is None or math.isnan(value):
            return False
        return {
            "=": value == target,
            "!=": value != target,
            "<": value < target,
            "<=": value <= target,
            ">": value > target,
            ">=": value >= target,
        }[op]
    if kind in {"param", "tag"}:
        _, key, op, target = node
        source = run.params if kind == "param" else run.tags
        return string_test(source.get(key), op, target)
    if kind == "name":
        return string_test(run.name, node[1], node[2])
    return string_test(run.status, node[1], node[2])


ORDERS = [
    [],
    ["metrics.m ASC"],
    ["metrics.m DESC"],
    ["params.p DESC", "metrics.n"],
    ["attributes.run_name", "tags.t DESC"],
    ["attributes.start_time ASC"],
]


def sort_value(run: FakeRun, clause: str) -> Any:
    ident = clause.split(maxsplit=1)[0]
    entity, _, key = ident.partition(".")
    if entity == "metrics":
        value = run.metrics.get(key)
        return None if value is None or math.isnan(value) else value
    if entity == "params":
        return run.params.get(key)
    if entity == "tags":
        return run.tags.get(key)
    return run.name if key == "run_name" else run.start_time


def expected_order(matching: list[FakeRun], order: list[str]) -> list[str]:
    clauses = list(order)
    if not any(c.startswith("attributes.start_time") for c in clauses):
        clauses.append("attributes.start_time DESC")
    ordered = sorted(matching, key=lambda r: r.run_id)
    for clause in reversed(clauses):
        descending = clause.endswith("DESC")
        present = [r for r in ordered if sort_value(r, clause) is not None]
        absent = [r for r in ordered if sort_value(r, clause) is None]
        present.sort(key=lambda r: sort_value(r, clause), reverse=descending)
        ordered = present + absent
    return [r.run_id for r in ordered]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, make_backend) -> Database:
    backend = make_backend(request.param)
    db = Database(backend.url)
    ensure_schema(db)
    yield db
    db.dispose()


def store(db: Database, fakes: list[FakeRun]) -> str:
    exp = str(experiments.create(db, PROJECT, f"prop-{uuid.uuid4().hex}"))
    for fake in fakes:
        run = runs.create(
            db,
            PROJECT,
            experiment_id=exp,
            user_id="u",
            run_name=fake.name,
            start_time=fake.start_time,
            tags=fake.tags,
        )
        fake.run_id = run.info.run_id
        batch = run_data.check_batch(
            [Metric(k, v, 0, 0) for k, v in fake.metrics.items()], list(fake.params.items()), []
        )
        run_data.log_batch(db, PROJECT, fake.run_id, batch)
        runs.update_info(db, PROJECT, fake.run_id, status=fake.status, end_time=None, run_name=None)
    return exp


def search_all(db: Database, exp: str, flt: str, order: list[str], page_size: int) -> list[str]:
    found: list[str] = []
    token = None
    for _ in range(50):
        page = runs.search(
            db,
            PROJECT,
            experiment_ids=[exp],
            filter_string=flt,
            run_view_type=None,
            max_results=page_size,
            order_by=order,
            page_token=token,
        )
        found += [r.info.run_id for r in page.items]
        token = page.next_page_token
        if not token:
            return found
    raise AssertionError("paging did not terminate")


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    fakes=fake_runs(), flt=filters(), order=st.sampled_from(ORDERS), page_size=st.integers(1, 10)
)
def test_search_matches_oracle(
    database: Database, fakes: list[FakeRun], flt: tuple[str, Any], order: list[str], page_size: int
) -> None:
    exp = store(database, fakes)
    text, tree = flt
    matching = [f for f in fakes if oracle(tree, f)]
    assert search_all(database, exp, text, order, page_size) == expected_order(matching, order)
