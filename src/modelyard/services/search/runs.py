"""Compiles run filters and order_by clauses to SQL over ``runs`` and its satellite tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, case, or_, select

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


def condition(node: Node, experiment_ids: list[int]) -> ColumnElement[bool]:
    """The SQL condition for a parsed run filter over runs of these experiments."""
    if isinstance(node, BoolOp):
        return combine(node.op, [condition(item, experiment_ids) for item in node.items])
    return _comparison(node, experiment_ids)


def _comparison(comp: Comparison, ids: list[int]) -> ColumnElement[bool]:
    entity, key = comp.ident.entity, comp.ident.key
    if entity == "metric":
        return _metric(comp, ids)
    if entity in {"parameter", "tag"}:
        return _key_value(params if entity == "parameter" else run_tags, comp, entity, ids)
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


def _metric(comp: Comparison, ids: list[int]) -> ColumnElement[bool]:
    _check_metric_op(comp)
    lm = latest_metrics
    test = numeric_condition(lm.c.value, comp, "metric")
    return _owner_in(lm, comp.ident.key, ids, lm.c.is_nan == False, test)  # noqa: E712


def _owner_in(
    table: Any, key: str, ids: list[int], *tests: ColumnElement[bool]
) -> ColumnElement[bool]:
    """``runs.pk IN (rows of table with this key passing tests)``: a semi-join that the
    database answers from the (experiment_id, key, value) index, as a set or a hash."""
    rows = select(table.c.run_pk).where(table.c.experiment_id.in_(ids), table.c.key == key, *tests)
    return runs.c.pk.in_(rows)


def _check_metric_op(comp: Comparison) -> None:
    if comp.op not in NUMERIC_OPS:
        raise InvalidParameter(
            f"Invalid comparator '{comp.op}' for metric '{comp.ident.key}'. "
            f"Valid comparators: {', '.join(NUMERIC_OPS)}"
        )


def _check_key_value_op(comp: Comparison) -> None:
    if comp.op in {"IN", "NOT IN"}:
        what = "param" if comp.ident.entity == "parameter" else "tag"
        raise InvalidParameter(
            f"Invalid comparator '{comp.op}' for {what}. Valid comparators: =, !=, LIKE, ILIKE, "
            "IS NULL, IS NOT NULL"
        )


def _key_value(table: Any, comp: Comparison, entity: str, ids: list[int]) -> ColumnElement[bool]:
    if comp.op == "IS NULL":
        return ~_owner_in(table, comp.ident.key, ids)
    if comp.op == "IS NOT NULL":
        return _owner_in(table, comp.ident.key, ids)
    _check_key_value_op(comp)
    test = string_condition(table.c.value, comp, "param" if entity == "parameter" else "tag")
    return _owner_in(table, comp.ident.key, ids, test)


def _dataset(comp: Comparison) -> ColumnElement[bool]:
    column = DATASET_FIELDS.get(comp.ident.key)
    if column is None:
        raise InvalidParameter(
            f"Invalid dataset key '{comp.ident.key}'. Valid keys are {sorted(DATASET_FIELDS)}"
        )
    test = string_condition(column, comp, f"dataset {comp.ident.key}")
    joined = run_inputs.join(datasets, datasets.c.id == run_inputs.c.dataset_id)
    return runs.c.pk.in_(select(run_inputs.c.run_pk).select_from(joined).where(test))


@dataclass
class RunQuery:
    """The FROM clause, WHERE conditions and sort keys of one run search."""

    source: FromClause
    conditions: list[ColumnElement[bool]]
    keys: list[SortKey]


def plan(node: Node | None, order: list[OrderKey], experiment_ids: list[int]) -> RunQuery:
    """Compile a filter and ordering.

    Comparisons on metrics, params, tags and datasets become semi-joins (``pk IN (...)``)
    answered from their (key, value) indexes. Sort keys on metrics, params and tags are outer
    joins on the (run, key) primary key, read once per row.
    """
    source: FromClause = runs
    conditions = [] if node is None else [condition(node, experiment_ids)]
    keys: list[SortKey] = []
    for i, wanted in enumerate(order):
        entity = wanted.ident.entity
        if entity in _KEYED:
            alias = _KEYED[entity].alias(f"s{i}")
            source = source.outerjoin(alias, _owned(alias, wanted.ident.key, experiment_ids))
            plain = alias.c.value
            if entity == "metric":
                expr = case((alias.c.is_nan.is_(True), None), else_=plain)
                present = alias.c.is_nan == False  # noqa: E712 (null-rejecting on purpose)
                absent = or_(alias.c.is_nan.is_(None), alias.c.is_nan.is_(True))
            else:
                expr, present, absent = plain, plain.is_not(None), plain.is_(None)
            keys.append(SortKey(expr, wanted.descending, True, present, absent, plain))
        else:
            column = _attribute_column(wanted.ident)
            keys.append(
                SortKey(
                    column,
                    wanted.descending,
                    column.nullable,
                    column.is_not(None),
                    column.is_(None),
                    column,
                )
            )
    if not any(o.ident == Ident("attribute", "start_time") for o in order):
        keys.append(SortKey(runs.c.start_time, descending=True, nullable=False))
    keys.append(SortKey(runs.c.id, descending=False, nullable=False))
    return RunQuery(source, conditions, keys)


_KEYED: dict[str, Any] = {"metric": latest_metrics, "parameter": params, "tag": run_tags}


def _owned(alias: Any, key: str, ids: list[int]) -> ColumnElement[bool]:
    return and_(alias.c.run_pk == runs.c.pk, alias.c.experiment_id.in_(ids), alias.c.key == key)


def _attribute_column(ident: Ident) -> Any:
    if ident.entity != "attribute":
        raise InvalidParameter(f"Invalid order_by entity '{ident.entity}' for runs.")
    if ident.key in STRING_ATTRIBUTES:
        return STRING_ATTRIBUTES[ident.key]
    if ident.key in NUMERIC_ATTRIBUTES:
        return NUMERIC_ATTRIBUTES[ident.key]
    raise _unknown_attribute(ident.key)
