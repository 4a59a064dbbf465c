"""Compiles logged-model filters and order_by objects to SQL over ``logged_models``.

Params and tags are matched through their (model, key) primary keys; metrics are the points
of the ``metrics`` table that carry the model's id (through ``ix_metrics_model_id``). As in
MLflow, a metric comparison matches a model when any of its points on that key passes it,
while a metric sort key is the model's latest point (highest timestamp, then step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, false, or_, select

from modelyard.db.schema import logged_model_params, logged_model_tags, logged_models, metrics, runs
from modelyard.errors import InvalidParameter
from modelyard.services.search.grammar import BoolOp, Comparison, Node
from modelyard.services.search.sql import (
    NUMERIC_OPS,
    SortKey,
    combine,
    numeric_condition,
    string_condition,
)

STRING_ATTRIBUTES: dict[str, Any] = {
    "name": logged_models.c.name,
    "model_id": logged_models.c.id,
    "model_type": logged_models.c.model_type,
    "status": logged_models.c.status,
    "source_run_id": logged_models.c.source_run_id,
}
NUMERIC_ATTRIBUTES: dict[str, Any] = {
    "creation_time": logged_models.c.creation_time,
    "creation_timestamp": logged_models.c.creation_time,
    "creation_timestamp_ms": logged_models.c.creation_time,
    "last_updated_time": logged_models.c.last_updated_time,
    "last_updated_timestamp": logged_models.c.last_updated_time,
    "last_updated_timestamp_ms": logged_models.c.last_updated_time,
}
# Short spellings of the statuses, as MLflow's entities name them.
STATUS_NAMES = {
    "PENDING": "LOGGED_MODEL_PENDING",
    "READY": "LOGGED_MODEL_READY",
    "FAILED": "LOGGED_MODEL_UPLOAD_FAILED",
    "UPLOAD_FAILED": "LOGGED_MODEL_UPLOAD_FAILED",
}


@dataclass(frozen=True, slots=True)
class DatasetFilter:
    name: str
    digest: str | None = None


@dataclass(frozen=True, slots=True)
class OrderBy:
    """One ``order_by`` object: an attribute or ``metrics.<key>``, optionally restricted to
    the metric's points on one dataset."""

    field_name: str
    ascending: bool = True
    dataset_name: str | None = None
    dataset_digest: str | None = None


def condition(node: Node, datasets: list[DatasetFilter]) -> ColumnElement[bool]:
    """The SQL condition for a parsed filter over ``logged_models`` rows."""
    if isinstance(node, BoolOp):
        return combine(node.op, [condition(item, datasets) for item in node.items])
    return _comparison(node, datasets)


def _comparison(comp: Comparison, datasets: list[DatasetFilter]) -> ColumnElement[bool]:
    entity, key = comp.ident.entity, comp.ident.key
    if entity == "metric":
        return _metric(comp, datasets)
    if entity in {"parameter", "tag"}:
        return _key_value(logged_model_params if entity == "parameter" else logged_model_tags, comp)
    if entity != "attribute":
        raise InvalidParameter(
            f"Invalid entity type '{entity}' for logged models. Valid values are "
            "['attributes', 'metrics', 'params', 'tags']"
        )
    if key == "status":
        comp = _status_names(comp)
    if key in STRING_ATTRIBUTES:
        return string_condition(STRING_ATTRIBUTES[key], comp, f"attribute '{key}'")
    if key in NUMERIC_ATTRIBUTES:
        return numeric_condition(NUMERIC_ATTRIBUTES[key], comp, f"attribute '{key}'")
    raise _unknown_attribute(key)


def _unknown_attribute(key: str) -> InvalidParameter:
    valid = sorted({*STRING_ATTRIBUTES, *NUMERIC_ATTRIBUTES})
    return InvalidParameter(f"Invalid attribute key '{key}' specified. Valid keys are {valid}")


def _status_names(comp: Comparison) -> Comparison:
    """``status = 'READY'`` means LOGGED_MODEL_READY (equality and lists only)."""
    if comp.op in {"=", "!="} and isinstance(comp.value, str):
        return Comparison(comp.ident, comp.op, STATUS_NAMES.get(comp.value.upper(), comp.value))
    if comp.op in {"IN", "NOT IN"} and isinstance(comp.value, tuple):
        values = tuple(STATUS_NAMES.get(v.upper(), v) for v in comp.value)
        return Comparison(comp.ident, comp.op, values)
    return comp


def model_points(key: str, datasets: list[DatasetFilter]) -> list[ColumnElement[bool]]:
    """Conditions selecting the model's points of one metric (joined with ``runs``), limited
    to the given datasets when there are any."""
    out: list[ColumnElement[bool]] = [
        metrics.c.model_id == logged_models.c.id,
        runs.c.pk == metrics.c.run_pk,
        runs.c.project_id == logged_models.c.project_id,
        metrics.c.key == key,
    ]
    if datasets:
        out.append(on_datasets(datasets))
    return out


def on_datasets(datasets: list[DatasetFilter]) -> ColumnElement[bool]:
    branches = []
    for d in datasets:
        test = metrics.c.dataset_name == d.name
        if d.digest:
            test = and_(test, metrics.c.dataset_digest == d.digest)
        branches.append(test)
    return or_(*branches) if branches else false()


def any_point_on(datasets: list[DatasetFilter]) -> ColumnElement[bool]:
    """Models with at least one metric point on one of the datasets."""
    return exists().where(
        metrics.c.model_id == logged_models.c.id,
        runs.c.pk == metrics.c.run_pk,
        runs.c.project_id == logged_models.c.project_id,
        on_datasets(datasets),
    )


def _metric(comp: Comparison, datasets: list[DatasetFilter]) -> ColumnElement[bool]:
    if comp.op not in NUMERIC_OPS:
        raise InvalidParameter(
            f"Invalid comparator '{comp.op}' for metric '{comp.ident.key}'. "
            f"Valid comparators: {', '.join(NUMERIC_OPS)}"
        )
    test = numeric_condition(metrics.c.value, comp, "metric")
    return exists().where(
        *model_points(comp.ident.key, datasets),
        metrics.c.is_nan == False,  # noqa: E712
        test,
    )


def _key_value(table: Any, comp: Comparison) -> ColumnElement[bool]:
    owned = (table.c.owner == logged_models.c.id, table.c.key == comp.ident.key)
    if comp.op == "IS NULL":
        return ~exists().where(*owned)
    if comp.op == "IS NOT NULL":
        return exists().where(*owned)
    what = "param" if table is logged_model_params else "tag"
    return exists().where(*owned, string_condition(table.c.value, comp, what))


def sort_keys(order: list[OrderBy]) -> list[SortKey]:
    """Sort keys for the order_by objects, then ``creation_timestamp DESC, model_id ASC`` as
    tie-breakers unless those are already ordered on."""
    keys: list[SortKey] = []
    columns: set[str] = set()
    for item in order:
        name = item.field_name.strip()
        entity, dot, rest = name.partition(".")
        if dot and entity.lower() in {"metric", "metrics"}:
            keys.append(_metric_key(_unquote(rest), item))
            continue
        if dot and entity.lower() in {"attribute", "attributes"}:
            name = _unquote(rest)
        elif dot:
            raise InvalidParameter(
                f"Invalid order by field name: {item.field_name}. Only metrics are supported."
            )
        if item.dataset_name or item.dataset_digest:
            raise InvalidParameter(
                f"dataset_name and dataset_digest may only be set when ordering by a metric, "
                f"not by '{item.field_name}'."
            )
        column = STRING_ATTRIBUTES.get(name, NUMERIC_ATTRIBUTES.get(name))
        if column is None:
            raise InvalidParameter(f"Invalid order by field name: {item.field_name}")
        columns.add(column.name)
        keys.append(SortKey(column, descending=not item.ascending, nullable=bool(column.nullable)))
    if "creation_time" not in columns:
        keys.append(SortKey(logged_models.c.creation_time, descending=True, nullable=False))
    if "id" not in columns:
        keys.append(SortKey(logged_models.c.id, descending=False, nullable=False))
    return keys


def _unquote(key: str) -> str:
    key = key.strip()
    if len(key) >= 2 and key[0] == key[-1] and key[0] in '`"':
        return key[1:-1]
    return key


def _metric_key(key: str, item: OrderBy) -> SortKey:
    if not key:
        raise InvalidParameter(f"Invalid order by field name: {item.field_name}")
    if item.dataset_digest and not item.dataset_name:
        raise InvalidParameter(
            f"dataset_digest may only be set together with dataset_name (order by "
            f"'{item.field_name}')."
        )
    datasets = [DatasetFilter(item.dataset_name, item.dataset_digest)] if item.dataset_name else []
    latest = (
        select(case((metrics.c.is_nan == True, None), else_=metrics.c.value))  # noqa: E712
        .where(*model_points(key, datasets))
        .order_by(metrics.c.timestamp.desc(), metrics.c.step.desc(), runs.c.id.asc())
        .limit(1)
        .scalar_subquery()
    )
    return SortKey(latest, descending=not item.ascending, nullable=True)
