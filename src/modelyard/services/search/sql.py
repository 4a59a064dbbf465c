"""Shared SQL building blocks for searches: comparisons, sort keys and keyset page tokens."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, Row, Select, and_, case, false, func, literal, or_

from modelyard.errors import InvalidParameter
from modelyard.services.search.grammar import Comparison, Value

STRING_OPS = ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN")
NUMERIC_OPS = ("=", "!=", "<", "<=", ">", ">=")
# In LIKE patterns a backslash makes the next % or _ literal, on every database.
LIKE_ESCAPE = "\\"


def string_condition(column: Any, comp: Comparison, what: str) -> ColumnElement[bool]:
    """``column <op> value`` for string-valued fields."""
    if comp.op not in STRING_OPS:
        raise InvalidParameter(
            f"Invalid comparator '{comp.op}' for {what}. Valid comparators: {', '.join(STRING_OPS)}"
        )
    if comp.op in {"IN", "NOT IN"}:
        values = comp.value
        assert isinstance(values, tuple)
        matched: ColumnElement[bool] = column.in_(values)
        return matched if comp.op == "IN" else ~matched
    value = _string_value(comp.value, what)
    if comp.op == "=":
        return column == value  # type: ignore[no-any-return]
    if comp.op == "!=":
        return column != value  # type: ignore[no-any-return]
    if comp.op == "LIKE":
        return column.like(value, escape=LIKE_ESCAPE)  # type: ignore[no-any-return]
    return func.lower(column).like(func.lower(literal(value)), escape=LIKE_ESCAPE)


def numeric_condition(column: Any, comp: Comparison, what: str) -> ColumnElement[bool]:
    """``column <op> number`` for numeric fields."""
    if comp.op not in NUMERIC_OPS:
        raise InvalidParameter(
            f"Invalid comparator '{comp.op}' for {what}. "
            f"Valid comparators: {', '.join(NUMERIC_OPS)}"
        )
    if not isinstance(comp.value, float):
        raise InvalidParameter(
            f"Expected a numeric value for {what} '{comp.ident.key}'. Found {comp.value!r}"
        )
    return compare(column, comp.op, comp.value)


def compare(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    ops = {
        "=": column.__eq__,
        "!=": column.__ne__,
        "<": column.__lt__,
        "<=": column.__le__,
        ">": column.__gt__,
        ">=": column.__ge__,
    }
    return ops[op](value)  # type: ignore[no-any-return]


def _string_value(value: Value, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidParameter(
            f"Expected a quoted string value for {what}. Found {value!r}; quote it like 'value'."
        )
    return value


def combine(op: str, items: Sequence[ColumnElement[bool]]) -> ColumnElement[bool]:
    return and_(*items) if op == "AND" else or_(*items)


@dataclass(frozen=True)
class SortKey:
    """One ORDER BY column; NULLs always sort last, whichever the direction.

    For a nullable key, ``present`` is a null-rejecting condition that the row has a value (so
    an outer join becomes an inner one), ``absent`` its complement, and ``plain`` an
    expression equal to ``expr`` on present rows that an index can order by.
    """

    expr: Any
    descending: bool
    nullable: bool = True
    present: Any = None
    absent: Any = None
    plain: Any = None


def order_clauses(keys: Sequence[SortKey]) -> list[Any]:
    clauses: list[Any] = []
    for key in keys:
        if key.nullable:
            clauses.append(_null_flag(key.expr))
        clauses.append(key.expr.desc() if key.descending else key.expr.asc())
    return clauses


def fetch_page(
    conn: Connection,
    base: Select[Any],
    keys: Sequence[SortKey],
    after: list[Any] | None,
    limit: int,
) -> list[Row[Any]]:
    """Up to ``limit`` rows of ``base`` in key order, strictly after the ``after`` values.

    When the first key is nullable, the rows that have a value and the rows that have none are
    read by two queries: the first can then walk an index in order and stop after ``limit``
    rows instead of sorting every match.
    """
    first, rest = keys[0], list(keys[1:])
    if not first.nullable or first.present is None:
        query = base if after is None else base.where(_after(keys, after))
        if after is not None and not first.nullable:
            # implied by the keyset condition, but a plain range: an index on the first key
            # starts at the page instead of walking every row before it (flat paging)
            query = query.where(_within(first, first.expr, after[0]))
        return list(conn.execute(query.order_by(*order_clauses(keys)).limit(limit)).all())
    rows: list[Row[Any]] = []
    if after is None or after[0] is not None:
        head = [replace(first, expr=first.plain, nullable=False), *rest]
        query = base.where(first.present)
        if after is not None:
            query = query.where(_within(first, first.plain, after[0]), _after(head, after))
        rows = list(conn.execute(query.order_by(*order_clauses(head)).limit(limit)).all())
    if len(rows) < limit:
        query = base.where(first.absent)
        if after is not None and after[0] is None:
            query = query.where(_after(rest, after[1:]))
        tail = query.order_by(*order_clauses(rest)).limit(limit - len(rows))
        rows += conn.execute(tail).all()
    return rows


def _within(key: SortKey, expr: Any, value: Any) -> ColumnElement[bool]:
    """``expr`` at or beyond ``value`` in the key's direction."""
    return expr <= value if key.descending else expr >= value  # type: ignore[no-any-return]


def select_columns(keys: Sequence[SortKey]) -> list[Any]:
    return [key.expr.label(f"_sort{i}") for i, key in enumerate(keys)]


def _null_flag(expr: Any) -> Any:
    return case((expr.is_(None), 1), else_=0)


def _after(keys: Sequence[SortKey], values: Sequence[Any]) -> ColumnElement[bool]:
    """Rows strictly after the row whose sort values are ``values`` (keyset paging)."""
    branches: list[ColumnElement[bool]] = []
    equal_so_far: list[ColumnElement[bool]] = []
    for key, value in zip(keys, values, strict=True):
        branches.append(and_(*equal_so_far, _strictly_after(key, value)))
        equal_so_far.append(key.expr.is_(None) if value is None else key.expr == value)
    return or_(*branches) if branches else false()


def _strictly_after(key: SortKey, value: Any) -> ColumnElement[bool]:
    if value is None:
        return false()
    beyond = key.expr < value if key.descending else key.expr > value
    return or_(beyond, key.expr.is_(None)) if key.nullable else beyond


def encode_token(values: Sequence[Any], fingerprint: str) -> str:
    raw = orjson.dumps({"after": list(values), "q": fingerprint})
    return base64.urlsafe_b64encode(raw).decode()


def decode_token(token: str | None, fingerprint: str, width: int) -> list[Any] | None:
    """The sort values stored in a page token; it must belong to the same query."""
    if not token:
        return None
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise InvalidParameter("Invalid page token, could not base64-decode") from None
    if not isinstance(data, dict) or not isinstance(data.get("after"), list):
        raise InvalidParameter("Invalid page token: unexpected content.")
    if data.get("q") != fingerprint or len(data["after"]) != width:
        raise InvalidParameter(
            "Invalid page token: it belongs to a search with a different filter or order."
        )
    return list(data["after"])


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(orjson.dumps(parts, default=str)).hexdigest()[:16]
