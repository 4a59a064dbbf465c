"""Compiles experiment filters and order_by clauses to SQL over ``experiments``."""

from __future__ import annotations

from sqlalchemy import ColumnElement, exists

from modelyard.db.schema import experiment_tags, experiments
from modelyard.errors import InvalidParameter
from modelyard.services.search.grammar import BoolOp, Comparison, Ident, Node, OrderKey
from modelyard.services.search.sql import SortKey, combine, numeric_condition, string_condition

_NUMERIC = {
    "creation_time": experiments.c.creation_time,
    "last_update_time": experiments.c.last_update_time,
}
_SORTABLE = {"name": experiments.c.name, "experiment_id": experiments.c.id, **_NUMERIC}


def condition(node: Node) -> ColumnElement[bool]:
    if isinstance(node, BoolOp):
        return combine(node.op, [condition(item) for item in node.items])
    return _comparison(node)


def _comparison(comp: Comparison) -> ColumnElement[bool]:
    entity, key = comp.ident.entity, comp.ident.key
    if entity == "tag":
        present = exists().where(
            experiment_tags.c.experiment_id == experiments.c.id, experiment_tags.c.key == key
        )
        if comp.op == "IS NULL":
            return ~present
        if comp.op == "IS NOT NULL":
            return present
        test = string_condition(experiment_tags.c.value, comp, "tag")
        return exists().where(
            experiment_tags.c.experiment_id == experiments.c.id,
            experiment_tags.c.key == key,
            test,
        )
    if entity != "attribute":
        raise InvalidParameter(
            f"Invalid entity type '{entity}' for experiments. Valid values are ['attribute', 'tag']"
        )
    if key == "name":
        return string_condition(experiments.c.name, comp, "attribute 'name'")
    if key == "experiment_id":
        if comp.op in {"IN", "NOT IN"}:
            values = comp.value if isinstance(comp.value, tuple) else ()
            ids = [_experiment_id(v) for v in values]
            column = experiments.c.id
            return column.in_(ids) if comp.op == "IN" else column.not_in(ids)
        fixed = Comparison(comp.ident, comp.op, float(_experiment_id(comp.value)))
        return numeric_condition(experiments.c.id, fixed, "attribute 'experiment_id'")
    if key in _NUMERIC:
        return numeric_condition(_NUMERIC[key], comp, f"attribute '{key}'")
    raise InvalidParameter(
        f"Invalid attribute key '{key}' specified. Valid keys are "
        "['name', 'experiment_id', 'creation_time', 'last_update_time']"
    )


def _experiment_id(value: object) -> int:
    try:
        return int(str(value).removesuffix(".0"))
    except ValueError:
        raise InvalidParameter(f"Invalid experiment ID: '{value}'") from None


def sort_keys(order: list[OrderKey]) -> list[SortKey]:
    keys: list[SortKey] = []
    for item in order:
        if item.ident.entity != "attribute" or item.ident.key not in _SORTABLE:
            raise InvalidParameter(
                f"Invalid order_by key '{item.ident.key}'. Valid keys are {sorted(_SORTABLE)}"
            )
        keys.append(SortKey(_SORTABLE[item.ident.key], item.descending, nullable=False))
    if not order:
        keys.append(SortKey(experiments.c.creation_time, descending=True, nullable=False))
    if not any(o.ident == Ident("attribute", "experiment_id") for o in order):
        keys.append(SortKey(experiments.c.id, descending=False, nullable=False))
    return keys
