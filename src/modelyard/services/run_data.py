"""What a candidate logs: metrics, params, tags, batches, dataset inputs and model outputs."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Row, delete, insert, select

from modelyard.db.dialect import insert_for, pg_array
from modelyard.db.engine import Database
from modelyard.db.schema import (
    datasets,
    params,
    run_inputs,
    run_model_links,
    run_tags,
)
from modelyard.errors import InvalidParameter, NotFound
from modelyard.services import metric_blocks, validation
from modelyard.services import runs as run_service
from modelyard.services.entities import Dataset, DatasetInput, Metric

CONTEXT_TAG = "mlflow.data.context"


@dataclass(slots=True)
class Batch:
    metrics: list[Metric]
    params: dict[str, str]
    tags: dict[str, str]


def check_batch(
    raw_metrics: list[Metric], raw_params: list[tuple[str, str]], raw_tags: list[tuple[str, str]]
) -> Batch:
    """Apply MLflow's batch limits and per-entity rules; nothing is written on failure."""
    limits = (
        (len(raw_metrics), validation.MAX_BATCH_METRICS, "metrics"),
        (len(raw_params), validation.MAX_BATCH_PARAMS, "params"),
        (len(raw_tags), validation.MAX_BATCH_TAGS, "tags"),
        (
            len(raw_metrics) + len(raw_params) + len(raw_tags),
            validation.MAX_BATCH_ENTITIES,
            "total entities",
        ),
    )
    for count, limit, what in limits:
        if count > limit:
            raise InvalidParameter(
                f"A batch logging request can contain at most {limit} {what}. "
                f"Got {count} {what}. Please split up {what} across multiple requests and try "
                "again."
            )
    for metric_key in {metric.key for metric in raw_metrics}:
        validation.key(metric_key, "Metric")
    checked_params: dict[str, str] = {}
    for key, value in raw_params:
        validation.key(key, "Param")
        if key in checked_params:
            raise InvalidParameter(
                f"Duplicate parameter keys have been submitted: ['{key}']. Please ensure the "
                "request contains only one param value per param key."
            )
        checked_params[key] = validation.truncate(value, validation.MAX_PARAM_VALUE_LENGTH)
    checked_tags = {validation.key(k, "Tag"): run_service.tag_value(v) for k, v in raw_tags}
    return Batch(raw_metrics, checked_params, checked_tags)


def log_batch(db: Database, project_id: int, run_id: str | None, batch: Batch) -> None:
    checked = validation.run_id(run_id)
    with db.write() as conn:
        run = run_service.load_active(conn, project_id, checked)
        if batch.params:
            _insert_params(conn, run, batch.params)
        if batch.metrics:
            _insert_metrics(conn, run, batch.metrics)
        for key, value in batch.tags.items():
            run_service.set_tag(conn, run, key, value)


def _insert_params(conn: Connection, run: Row[Any], values: dict[str, str]) -> None:
    existing = dict(
        conn.execute(
            select(params.c.key, params.c.value).where(
                params.c.run_pk == run.pk, params.c.key.in_(list(values))
            )
        ).all()
    )
    changed = {k: (existing[k], v) for k, v in values.items() if k in existing and existing[k] != v}
    if changed:
        detail = ", ".join(
            f"Param(key={k}, old_value={old}, new_value={new})" for k, (old, new) in changed.items()
        )
        raise InvalidParameter(
            "Changing param values is not allowed. Params were already logged for run "
            f"ID='{run.id}' with different values: {detail}."
        )
    fresh = [
        {"run_pk": run.pk, "experiment_id": run.experiment_id, "key": k, "value": v}
        for k, v in values.items()
        if k not in existing
    ]
    if fresh:
        conn.execute(insert(params), fresh)


_ROWS_PER_INSERT = 100


def _insert_metrics(conn: Connection, run: Row[Any], points: list[Metric]) -> None:
    """Append history points (identical points are stored once) and move latest values.

    A point that arrives again with a model id links the stored point to that model, unless
    it is linked already: this is how MLflow's ``log_model`` attaches a candidate's metrics to
    the model it logs (a point belongs to at most one model)."""
    values: list[Any] = []
    latest: dict[str, tuple[Any, ...]] = {}
    pk, experiment_id = run.pk, run.experiment_id
    linked = any(p.model_id or p.dataset_name or p.dataset_digest for p in points)
    seen: set[tuple[Any, ...]] = set()
    for p in points:
        nan = p.value != p.value
        value = 0.0 if nan else p.value
        if linked:
            # one statement may not update the same row twice (PostgreSQL)
            identity = (p.key, p.step, p.timestamp, value, nan)
            if identity in seen:
                continue
            seen.add(identity)
        values += (pk, p.key, p.step, p.timestamp, value, nan)
        if linked:
            values += (p.model_id, p.dataset_name, p.dataset_digest)
        best = latest.get(p.key)
        if best is None or (p.step, p.timestamp, value) > best[3:6]:
            latest[p.key] = (pk, experiment_id, p.key, p.step, p.timestamp, value, nan)
    style, columns = conn.dialect.paramstyle, _LINKED_COLUMNS if linked else _POINT_COLUMNS
    if conn.dialect.name == "postgresql":
        # one statement whatever the batch's size: a column of values per array parameter
        n = len(columns)
        insert_point_arrays(conn, columns, [values[i::n] for i in range(n)])
    else:
        width = _ROWS_PER_INSERT * len(columns)
        for start in range(0, len(values), width):
            chunk = tuple(values[start : start + width])
            conn.exec_driver_sql(_points_sql(style, columns, len(chunk) // len(columns)), chunk)
    conn.exec_driver_sql(_latest_sql(style), list(latest.values()))
    metric_blocks.add_metrics(conn, pk, points)


# The hot statements of metric logging are written once per database and go straight to the
# driver: on this path SQLAlchemy's per-row parameter processing would cost more than the
# database work, and one INSERT of many rows beats executemany of one-row INSERTs (2x here).
_POINT_COLUMNS = ("run_pk", '"key"', "step", '"timestamp"', '"value"', "is_nan")
_LINKED_COLUMNS = (*_POINT_COLUMNS, "model_id", "dataset_name", "dataset_digest")


def _marks(paramstyle: str, n: int) -> str:
    return ", ".join(["?" if paramstyle == "qmark" else "%s"] * n)


@functools.cache
def _points_sql(paramstyle: str, columns: tuple[str, ...], rows: int) -> str:
    row = f"({_marks(paramstyle, len(columns))})"
    head = f"INSERT INTO metrics ({', '.join(columns)}) VALUES {', '.join([row] * rows)} "
    return head + _on_conflict(columns)


# PostgreSQL: the points as one array per column, turned back into rows by unnest. A short
# statement whatever the batch's size: the driver parses it once and caches it (a VALUES list
# of 600 placeholders is parsed again on every call, which cost more than the insert itself).
# Each array goes as one literal (db.dialect.pg_array), which PostgreSQL reads in C.
_ARRAY_TYPES = {
    "run_pk": "int",
    '"key"': "text",
    "step": "bigint",
    '"timestamp"': "bigint",
    '"value"': "float8",
    "is_nan": "bool",
    "model_id": "text",
    "dataset_name": "text",
    "dataset_digest": "text",
}


@functools.cache
def _unnest_points_sql(columns: tuple[str, ...]) -> str:
    arrays = ", ".join(f"%s::{_ARRAY_TYPES[c]}[]" for c in columns)
    return (
        f"INSERT INTO metrics ({', '.join(columns)}) SELECT * FROM unnest({arrays}) "
        + _on_conflict(columns)
    )


def insert_point_arrays(conn: Connection, columns: tuple[str, ...], arrays: list[Any]) -> int:
    """PostgreSQL: insert points given as one sequence per column; how many were new."""
    literals = tuple(pg_array(a, _ARRAY_TYPES[c]) for c, a in zip(columns, arrays, strict=True))
    return max(conn.exec_driver_sql(_unnest_points_sql(columns), literals).rowcount, 0)


def _on_conflict(columns: tuple[str, ...]) -> str:
    if columns != _LINKED_COLUMNS:
        return "ON CONFLICT DO NOTHING"
    return (
        'ON CONFLICT (run_pk, "key", step, "timestamp", "value", is_nan) DO UPDATE SET '
        "model_id = excluded.model_id, "
        "dataset_name = COALESCE(metrics.dataset_name, excluded.dataset_name), "
        "dataset_digest = COALESCE(metrics.dataset_digest, excluded.dataset_digest) "
        "WHERE metrics.model_id IS NULL AND excluded.model_id IS NOT NULL"
    )


@functools.cache
def _latest_sql(paramstyle: str) -> str:
    return (
        'INSERT INTO latest_metrics (run_pk, experiment_id, "key", step, "timestamp", "value", '
        f"is_nan) VALUES ({_marks(paramstyle, 7)}) "
        'ON CONFLICT (run_pk, "key") DO UPDATE SET '
        'step = excluded.step, "timestamp" = excluded."timestamp", "value" = excluded."value", '
        "is_nan = excluded.is_nan "
        'WHERE (excluded.step, excluded."timestamp", excluded."value") > '
        '(latest_metrics.step, latest_metrics."timestamp", latest_metrics."value")'
    )


def delete_tag(db: Database, project_id: int, run_id: str | None, key: str | None) -> None:
    checked = validation.run_id(run_id)
    if not key:
        raise InvalidParameter("Missing value for required parameter 'key'.")
    with db.write() as conn:
        run = run_service.load_active(conn, project_id, checked)
        gone = conn.execute(
            delete(run_tags).where(run_tags.c.run_pk == run.pk, run_tags.c.key == key)
        ).rowcount
        if not gone:
            raise NotFound(f"No tag with name: {key} in run with id {checked}")


def log_inputs(
    db: Database,
    project_id: int,
    run_id: str | None,
    dataset_inputs: list[DatasetInput],
    model_ids: list[str],
) -> None:
    checked = validation.run_id(run_id)
    for item in dataset_inputs:
        _check_dataset(item.dataset)
        for key, value in item.tags.items():
            validation.key(key, "Input tag")
            validation.bounded(key, validation.MAX_INPUT_TAG_KEY_LENGTH, "Input tag key")
            validation.bounded(value, validation.MAX_INPUT_TAG_VALUE_LENGTH, "Input tag value")
    with db.write() as conn:
        run = run_service.load_active(conn, project_id, checked)
        for item in dataset_inputs:
            dataset_id = _dataset_id(conn, run.experiment_id, item.dataset)
            conn.execute(
                insert_for(conn.dialect.name, run_inputs).on_conflict_do_nothing(),
                {
                    "run_pk": run.pk,
                    "dataset_id": dataset_id,
                    "context": item.tags.get(CONTEXT_TAG),
                    "tags_json": orjson.dumps(item.tags).decode(),
                },
            )
        _link_models(conn, run.pk, [(m, 0) for m in model_ids], "input")


def log_outputs(
    db: Database, project_id: int, run_id: str | None, models: list[tuple[str, int]]
) -> None:
    checked = validation.run_id(run_id)
    with db.write() as conn:
        run = run_service.load_active(conn, project_id, checked)
        _link_models(conn, run.pk, models, "output")


def _link_models(
    conn: Connection, run_pk: int, models: list[tuple[str, int]], direction: str
) -> None:
    for model_id, step in models:
        if not model_id:
            raise InvalidParameter("Missing value for required parameter 'model_id'.")
        conn.execute(
            insert_for(conn.dialect.name, run_model_links).on_conflict_do_nothing(),
            {"run_pk": run_pk, "model_id": model_id, "direction": direction, "step": step},
        )


def _check_dataset(dataset: Dataset) -> None:
    for value, limit, what in (
        (dataset.name, validation.MAX_DATASET_NAME_LENGTH, "Dataset name"),
        (dataset.digest, validation.MAX_DATASET_DIGEST_LENGTH, "Dataset digest"),
        (dataset.source, validation.MAX_DATASET_SOURCE_LENGTH, "Dataset source"),
        (dataset.schema or "", validation.MAX_DATASET_SCHEMA_LENGTH, "Dataset schema"),
        (dataset.profile or "", validation.MAX_DATASET_PROFILE_LENGTH, "Dataset profile"),
    ):
        validation.bounded(value, limit, what)
    for value, what in (
        (dataset.name, "name"),
        (dataset.digest, "digest"),
        (dataset.source_type, "source_type"),
        (dataset.source, "source"),
    ):
        if not value:
            raise InvalidParameter(f"Missing value for required parameter 'dataset.{what}'.")


def _dataset_id(conn: Connection, experiment_id: int, dataset: Dataset) -> int:
    where = (
        datasets.c.experiment_id == experiment_id,
        datasets.c.name == dataset.name,
        datasets.c.digest == dataset.digest,
    )
    found = conn.execute(select(datasets.c.id).where(*where)).scalar()
    if found is not None:
        return int(found)
    return int(
        conn.execute(
            insert(datasets)
            .values(
                experiment_id=experiment_id,
                name=dataset.name,
                digest=dataset.digest,
                source_type=dataset.source_type,
                source=dataset.source,
                schema=dataset.schema,
                profile=dataset.profile,
            )
            .returning(datasets.c.id)
        ).scalar_one()
    )
