"""Evaluate a parsed filter against one object in Python, for searches over small sets
(registered models, model versions) where loading the set beats compiling SQL.

SQL semantics: a comparison with a missing value is false, except ``!=`` on a tag, which a
missing tag satisfies (MLflow's client relies on it to hide prompts).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from modelyard.errors import InvalidParameter
from modelyard.services.search.grammar import BoolOp, Comparison, Ident, Node

Lookup = Callable[[Ident], str | float | None]


@lru_cache(maxsize=256)
def _like(pattern: str, insensitive: bool) -> re.Pattern[str]:
    out = []
    escaped = False
    for char in pattern:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        else:
            out.append(re.escape(char))
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if insensitive else 0))


def _compare(actual: str | float, op: str, expected: object) -> bool:
    if op in ("IN", "NOT IN"):
        assert isinstance(expected, tuple)
        return (str(actual) in expected) == (op == "IN")
    if op in ("LIKE", "ILIKE"):
        return bool(_like(str(expected), op == "ILIKE").fullmatch(str(actual)))
    if isinstance(actual, float | int) and not isinstance(expected, float | int):
        raise InvalidParameter(f"Expected a number, got {expected!r}.")
    if isinstance(expected, float | int) and isinstance(actual, str):
        raise InvalidParameter(f"Expected a quoted string, got {expected!r}.")
    left, right = actual, expected
    if op == "=":
        return left == right
    if op == "!=":
        return left != right
    ordered = {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}  # type: ignore[operator]
    return ordered[op]


def matches(node: Node | None, lookup: Lookup) -> bool:
    if node is None:
        return True
    if isinstance(node, BoolOp):
        results = (matches(item, lookup) for item in node.items)
        return all(results) if node.op == "AND" else any(results)
    assert isinstance(node, Comparison)
    actual = lookup(node.ident)
    if node.op == "IS NULL":
        return actual is None
    if node.op == "IS NOT NULL":
        return actual is not None
    if actual is None:
        return node.op == "!=" and node.ident.entity == "tag"
    return _compare(actual, node.op, node.value)
