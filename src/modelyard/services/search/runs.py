"""Compiles run filters and order_by clauses to SQL over ``runs`` and its satellite tables."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, case, exists, select

from modelyard.db.schema import datasets, latest_metrics, params, run_inputs, run_tags, runs
from modelyard.errors import InvalidParameter
from modelyard.services.search.grammar import BoolOp, Comparison, Ident, Node, OrderKey
from modelyard.services.search.sql import (
    NUMERIC_OPS,
    SortKey,
    combine,
    numeric_condition,
    string_condition,
)

STRING_ATTRIBUTES: dict[str, Any] = {
    "run_id": runs.c.id,
    "run_name": runs.c.name,
    "run name": runs.c.name,
    "status": runs.c.status,
    "user_id": runs.c.user_id,
    "artifact_uri": runs.c.artifact_uri,
    "lifecycle_stage": runs.c.lifecycle_stage,
}
NUMERIC_ATTRIBUTES: dict[str, Any] = {
    "start_time": runs.c.start_time,
    "end_time": runs.c.end_time,
    "created": runs.c.start_time,
}
DATASET_FIELDS: dict[str, Any] = {
    "name": datasets.c.name,
    "digest": datasets.c.digest,
    "context": run_inputs.c.context,
}


def condition(node: Node) -> ColumnElement[bool]:
    """The SQL condition for a parsed run filter."""
    if isinstance(node, BoolOp):
        return combine(node.op, [condition(item) for item in node.items])
    return _comparison(node)


def _comparison(comp: Comparison) -> ColumnElement[bool]:
    entity, key = comp.ident.entity, comp.ident.key
    if entity == "metric":
        return _metric(comp)
    if entity in {"parameter", "tag"}:
        return _key_value(params if entity == "parameter" else run_tags, comp, entity)
    if entity == "dataset":
        return _dataset(comp)
    if key in STRING_ATTRIBUTES:
        return string_condition(STRING_ATTRIBUTES[key], comp, f"attribute '{key}'")
    if key in NUMERIC_ATTRIBUTES:
        return numeric_condition(NUMERIC_ATTRIBUTES[key], comp, f"attribute '{key}'")
    raise _unknown_attribute(key)


def _unknown_attribute(key: str) -> InvalidParameter:
    valid = sorted({*STRING_ATTRIBUTES, *NUMERIC_ATTRIBUTES})
    return InvalidParameter(f"Invalid attribute key '{key}' specified. Valid keys are {valid}")


def _metric(comp: Comparison) -> ColumnElement[bool]:
    lm = latest_metrics
    if comp.op not in NUMERIC_OPS:
        raise InvalidParameter(
            f"Invalid comparator '{comp.op}' for metric '{comp.ident.key}'. "
            f"Valid comparators: {', '.join(NUMERIC_OPS)}"
        )
    test = numeric_condition(lm.c.value, comp, "metric")
    return exists().where(
        lm.c.run_id == runs.c.id, lm.c.key == comp.ident.key, lm.c.is_nan.is_(False), test
    )


def _key_value(table: Any, comp: Comparison, entity: str) -> ColumnElement[bool]:
    what = "param" if entity == "parameter" else "tag"
    present = exists().where(table.c.run_id == runs.c.id, table.c.key == comp.ident.key)
    if comp.op == "IS NULL":
        return ~present
    if comp.op == "IS NOT NULL":
        return present
    if comp.op in {"IN", "NOT IN"}:
        raise InvalidParameter(
            f"Invalid comparator '{comp.op}' for {what}. Valid comparators: =, !=, LIKE, ILIKE, "
            "IS NULL, IS NOT NULL"
        )
    test = string_condition(table.c.value, comp, what)
    return exists().where(table.c.run_id == runs.c.id, table.c.key == comp.ident.key, test)


def _dataset(comp: Comparison) -> ColumnElement[bool]:
    column = DATASET_FIELDS.get(comp.ident.key)
    if column is None:
        raise InvalidParameter(
            f"Invalid dataset key '{comp.ident.key}'. Valid keys are {sorted(DATASET_FIELDS)}"
        )
    test = string_condition(column, comp, f"dataset {comp.ident.key}")
    joined = run_inputs.join(datasets, datasets.c.id == run_inputs.c.dataset_id)
    return exists(select(1).select_from(joined).where(run_inputs.c.run_id == runs.c.id, test))


def sort_keys(order: list[OrderKey]) -> list[SortKey]:
    """ORDER BY keys: the requested ones, then start_time DESC, then run id (unique)."""
    keys = [SortKey(_sort_expr(o.ident), o.descending) for o in order]
    if not any(o.ident == Ident("attribute", "start_time") for o in order):
        keys.append(SortKey(runs.c.start_time, descending=True))
    keys.append(SortKey(runs.c.id, descending=False, nullable=False))
    return keys


def _sort_expr(ident: Ident) -> Any:
    key = ident.key
    if ident.entity == "metric":
        lm = latest_metrics
        value = case((lm.c.is_nan.is_(True), None), else_=lm.c.value)
        return select(value).where(lm.c.run_id == runs.c.id, lm.c.key == key).scalar_subquery()
    if ident.entity in {"parameter", "tag"}:
        table = params if ident.entity == "parameter" else run_tags
        return (
            select(table.c.value)
            .where(table.c.run_id == runs.c.id, table.c.key == key)
            .scalar_subquery()
        )
    if ident.entity == "attribute":
        if key in STRING_ATTRIBUTES:
            return STRING_ATTRIBUTES[key]
        if key in NUMERIC_ATTRIBUTES:
            return NUMERIC_ATTRIBUTES[key]
        raise _unknown_attribute(key)
    raise InvalidParameter(f"Invalid order_by entity '{ident.entity}' for runs.")
