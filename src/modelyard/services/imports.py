"""Imported history: experiments, candidates with their own run ids, every metric point and
logged models, written as another tracker stored them (times, status, lifecycle kept).

Each call is idempotent: the same content again changes nothing and says ``unchanged``; a
changed field is brought in line (``updated``); an id that is taken by something else is a
conflict, never an overwrite. Names and keys arrive checked by the API's declarations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from math import isnan
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import Connection, Row, bindparam, insert, select, text, update

from modelyard.db.dialect import driver_rows, insert_for
from modelyard.db.engine import Database
from modelyard.db.schema import (
    experiment_tags,
    experiments,
    logged_model_params,
    logged_model_tags,
    logged_models,
    metrics,
    params,
    run_inputs,
    run_model_links,
    run_tags,
    runs,
)
from modelyard.errors import AlreadyExists, Conflict, ModelyardError, NotFound
from modelyard.services import experiments as experiment_service
from modelyard.services import metric_blocks, run_data
from modelyard.services import runs as run_service
from modelyard.services.entities import DatasetInput, Metric, now_ms

IMPORTED, UPDATED, UNCHANGED = "imported", "updated", "unchanged"
MAX_KEPT_ID = 2**31 - 1  # an experiment id kept as it was must fit every database's integer


@dataclass(frozen=True, slots=True)
class ExperimentIn:
    source_id: int
    name: str
    lifecycle_stage: str
    creation_time: int
    last_update_time: int
    tags: dict[str, str]


@dataclass(frozen=True, slots=True)
class RunIn:
    run_id: str
    experiment_id: int
    name: str
    user_id: str
    status: str
    start_time: int
    end_time: int | None
    lifecycle_stage: str
    params: dict[str, str]
    tags: dict[str, str]
    inputs: Sequence[DatasetInput]
    model_inputs: Sequence[str]
    model_outputs: Sequence[tuple[str, int]]


@dataclass(frozen=True, slots=True)
class Series:
    """One metric's points in parallel columns (NaN and infinities as floats)."""

    key: str
    steps: Sequence[int]
    timestamps: Sequence[int]
    values: Sequence[float]


@dataclass(frozen=True, slots=True)
class RunWithPoints:
    run: RunIn
    series: Sequence[Series] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class RunResult:
    run_id: str
    outcome: str | None  # None: refused, see ``error``
    added: int = 0
    error: ModelyardError | None = None


@dataclass(frozen=True, slots=True)
class LoggedModelIn:
    model_id: str
    experiment_id: int
    name: str
    model_type: str
    status: str
    source_run_id: str | None
    creation_time: int
    last_updated_time: int
    params: dict[str, str]
    tags: dict[str, str]


def _outcome(created: bool, changed: bool) -> str:
    return IMPORTED if created else UPDATED if changed else UNCHANGED


def _set_values(
    conn: Connection, table: Any, where: Any, row: Row[Any], wanted: dict[str, Any]
) -> bool:
    """Update the columns of ``row`` that differ from ``wanted``; whether any did."""
    changes = {k: v for k, v in wanted.items() if getattr(row, k) != v}
    if changes:
        conn.execute(update(table).where(where).values(**changes))
    return bool(changes)


def _upsert_pairs(
    conn: Connection,
    table: Any,
    owner: dict[str, Any],
    current: dict[str, str],
    wanted: dict[str, str],
) -> bool:
    """Make the (key → value) rows of one owner hold at least ``wanted``; other keys stay."""
    changed = {k: v for k, v in wanted.items() if current.get(k) != v}
    if not changed:
        return False
    upsert = insert_for(conn.dialect.name, table)
    keys = [*owner, "key"]
    conn.execute(
        upsert.on_conflict_do_update(index_elements=keys, set_={"value": upsert.excluded.value}),
        [{**owner, "key": k, "value": v} for k, v in changed.items()],
    )
    return True


# ---------------------------------------------------------------- experiments


def import_experiment(db: Database, project_id: int, item: ExperimentIn) -> tuple[int, str]:
    """The experiment of this name in the project (created with the source's id when that id
    is free) and what happened to it."""
    name = experiment_service._checked_name(item.name)
    name_key = experiment_service.key(name)
    with db.write() as conn:
        row = conn.execute(
            select(experiments).where(
                experiments.c.project_id == project_id, experiments.c.name_key == name_key
            )
        ).first()
        created = row is None
        if row is None:
            experiment_id = _insert_experiment(conn, project_id, item, name, name_key)
            changed = True
        else:
            experiment_id = row.id
            changed = _set_values(
                conn,
                experiments,
                experiments.c.id == row.id,
                row,
                {
                    "lifecycle_stage": item.lifecycle_stage,
                    "creation_time": item.creation_time,
                    "last_update_time": item.last_update_time,
                },
            )
        current = dict(
            conn.execute(
                select(experiment_tags.c.key, experiment_tags.c.value).where(
                    experiment_tags.c.experiment_id == experiment_id
                )
            ).all()
        )
        tagged = _upsert_pairs(
            conn, experiment_tags, {"experiment_id": experiment_id}, current, item.tags
        )
    return int(experiment_id), _outcome(created, changed or tagged)


def _insert_experiment(
    conn: Connection, project_id: int, item: ExperimentIn, name: str, name_key: str
) -> int:
    values: dict[str, Any] = {
        "project_id": project_id,
        "name": name,
        "name_key": name_key,
        "lifecycle_stage": item.lifecycle_stage,
        "creation_time": item.creation_time,
        "last_update_time": item.last_update_time,
    }
    keep = 0 < item.source_id <= MAX_KEPT_ID and (
        conn.execute(select(experiments.c.id).where(experiments.c.id == item.source_id)).first()
        is None
    )
    if keep:
        values["id"] = item.source_id
    new_id = int(
        conn.execute(insert(experiments).values(**values).returning(experiments.c.id)).scalar_one()
    )
    if keep and conn.dialect.name == "postgresql":  # the sequence must not hand this id out
        conn.execute(
            text(
                "SELECT setval(pg_get_serial_sequence('experiments', 'id'), "
                "GREATEST((SELECT MAX(id) FROM experiments), 1))"
            )
        )
    conn.execute(
        update(experiments)
        .where(experiments.c.id == new_id)
        .values(artifact_location=f"mlflow-artifacts:/{new_id}")
    )
    return new_id


# ---------------------------------------------------------------- candidates


def import_run(db: Database, project_id: int, item: RunIn) -> str:
    """Create or bring in line the candidate ``item.run_id`` of the experiment."""
    with db.write() as conn:
        return _import_run(conn, project_id, item)[0]


def import_runs(db: Database, project_id: int, items: Sequence[RunWithPoints]) -> list[RunResult]:
    """Several candidates with their metric points, in one transaction; each is imported as
    ``import_run`` and ``import_series`` would, or refused alone (its error in its result,
    nothing of it written)."""
    results: list[RunResult] = []
    with db.write() as conn:
        for item in items:
            try:
                with conn.begin_nested():
                    outcome, run = _import_run(conn, project_id, item.run)
                    added = sum(_add_series(conn, run, one) for one in item.series)
            except ModelyardError as exc:
                results.append(RunResult(item.run.run_id, None, error=exc))
            else:
                results.append(RunResult(item.run.run_id, outcome, added))
    return results


# The statements of a run's import, built once: many runs a call make them hot.
_RUN = select(runs).where(runs.c.id == bindparam("run_id"))
_INSERT_RUN = insert(runs)
_INSERT_PARAMS = insert(params)
_INSERT_TAGS = insert(run_tags)
_PARAMS = select(params.c.key, params.c.value).where(params.c.run_pk == bindparam("pk"))
_TAGS = select(run_tags.c.key, run_tags.c.value).where(run_tags.c.run_pk == bindparam("pk"))


def _import_run(conn: Connection, project_id: int, item: RunIn) -> tuple[str, Row[Any]]:
    experiment = experiment_service.load_row(conn, project_id, item.experiment_id)
    row = conn.execute(_RUN, {"run_id": item.run_id}).first()
    if row is not None and (row.project_id != project_id or row.experiment_id != experiment.id):
        raise AlreadyExists(
            f"Run id {item.run_id} is taken by another candidate (in another experiment or "
            "project) on this server; nothing was changed."
        )
    wanted = {
        "name": item.name,
        "user_id": item.user_id,
        "status": item.status,
        "start_time": item.start_time,
        "end_time": item.end_time,
        "lifecycle_stage": item.lifecycle_stage,
    }
    deleted = item.lifecycle_stage == experiment_service.DELETED
    created = row is None
    if row is None:
        conn.execute(
            _INSERT_RUN,
            {
                "id": item.run_id,
                "project_id": project_id,
                "experiment_id": experiment.id,
                "artifact_uri": experiment_service.run_artifact_uri(
                    experiment.artifact_location, experiment.id, item.run_id
                ),
                "deleted_time": now_ms() if deleted else None,
                **wanted,
            },
        )
        row = conn.execute(_RUN, {"run_id": item.run_id}).one()
        changed = True
    else:
        if deleted and row.lifecycle_stage != experiment_service.DELETED:
            wanted["deleted_time"] = now_ms()
        elif not deleted:
            wanted["deleted_time"] = None
        changed = _set_values(conn, runs, runs.c.pk == row.pk, row, wanted)
    changed = _run_params(conn, row, item.params, created) or changed
    changed = _run_tags(conn, row, item.tags, created) or changed
    changed = _run_inputs(conn, row, item) or changed
    return _outcome(created, changed), row


def _run_params(conn: Connection, run: Row[Any], values: dict[str, str], new: bool) -> bool:
    current = (
        {} if new or not values else dict(conn.execute(_PARAMS, {"pk": run.pk}).tuples().all())
    )
    for key, value in values.items():
        if key in current and current[key] != value:
            raise Conflict(
                f"The candidate {run.id} has the param {key!r} with another value "
                f"({current[key][:100]!r}); params never change, so nothing was imported."
            )
    fresh = [
        {"run_pk": run.pk, "experiment_id": run.experiment_id, "key": k, "value": v}
        for k, v in values.items()
        if k not in current
    ]
    if fresh:
        conn.execute(_INSERT_PARAMS, fresh)
    return bool(fresh)


def _run_tags(conn: Connection, run: Row[Any], values: dict[str, str], new: bool) -> bool:
    current = {} if new or not values else dict(conn.execute(_TAGS, {"pk": run.pk}).tuples().all())
    owner = {"run_pk": run.pk, "experiment_id": run.experiment_id}
    changed = {k: v for k, v in values.items() if current.get(k) != v}
    if not changed:
        return False
    if new:  # nothing to replace
        conn.execute(_INSERT_TAGS, [{**owner, "key": k, "value": v} for k, v in changed.items()])
        return True
    upsert = insert_for(conn.dialect.name, run_tags)
    conn.execute(
        upsert.on_conflict_do_update(
            index_elements=["run_pk", "key"], set_={"value": upsert.excluded.value}
        ),
        [{**owner, "key": k, "value": v} for k, v in changed.items()],
    )
    return True


def _run_inputs(conn: Connection, run: Row[Any], item: RunIn) -> bool:
    added = 0
    for entry in item.inputs:
        dataset_id = run_data._dataset_id(conn, run.experiment_id, entry.dataset)
        added += conn.execute(
            insert_for(conn.dialect.name, run_inputs).on_conflict_do_nothing(),
            {
                "run_pk": run.pk,
                "dataset_id": dataset_id,
                "context": entry.tags.get(run_data.CONTEXT_TAG),
                "tags_json": orjson.dumps(entry.tags).decode(),
            },
        ).rowcount
    links = [(m, 0, "input") for m in item.model_inputs] + [
        (m, step, "output") for m, step in item.model_outputs
    ]
    for model_id, step, direction in links:
        added += conn.execute(
            insert_for(conn.dialect.name, run_model_links).on_conflict_do_nothing(),
            {"run_pk": run.pk, "model_id": model_id, "direction": direction, "step": step},
        ).rowcount
    return added > 0


# ---------------------------------------------------------------- metric points


def import_points(
    db: Database, project_id: int, run_id: str, points: Sequence[Metric], *, link_only: bool = False
) -> int:
    """Add the points the candidate does not have yet (identical points are stored once);
    how many were new. The candidate may be deleted: its history comes along all the same.

    With ``link_only``, the points name a logged model's metrics: the candidate's points at the
    same key, step and time are linked to that model (when not linked yet), nothing is added;
    how many were linked."""
    with db.write() as conn:
        run = run_service.load_row(conn, project_id, run_id)
        if link_only:
            return _link_points(conn, run, points)
        plain: dict[str, list[Metric]] = {}
        linked: list[Metric] = []
        for p in points:
            if p.model_id or p.dataset_name or p.dataset_digest:
                linked.append(p)
            else:
                plain.setdefault(p.key, []).append(p)
        added = 0
        for key, some in plain.items():
            series = Series(
                key,
                [p.step for p in some],
                [p.timestamp for p in some],
                [p.value for p in some],
            )
            added += _add_series(conn, run, series)
        if linked:
            added += _insert_linked(conn, run, linked)
        return added


def import_series(db: Database, project_id: int, run_id: str, series: Sequence[Series]) -> int:
    """``import_points`` for points in columns (none linked to a model or dataset)."""
    with db.write() as conn:
        run = run_service.load_row(conn, project_id, run_id)
        return sum(_add_series(conn, run, one) for one in series)


def _link_points(conn: Connection, run: Row[Any], points: Sequence[Metric]) -> int:
    linked = 0
    for p in points:
        if p.model_id:
            linked += conn.execute(
                update(metrics)
                .where(
                    metrics.c.run_pk == run.pk,
                    metrics.c.key == p.key,
                    metrics.c.step == p.step,
                    metrics.c.timestamp == p.timestamp,
                    metrics.c.model_id.is_(None),
                )
                .values(model_id=p.model_id)
            ).rowcount
    return linked


_STORED = (
    'SELECT step, "timestamp", "value", is_nan FROM metrics '
    'WHERE run_pk = ? AND "key" = ? AND step >= ? AND step <= ?'
)
_SQLITE_ROWS = 500  # rows an INSERT (6 values each: below SQLite's 32,766 variables)
_POINT = itemgetter(2, 3, 4, 5)  # a row's (step, timestamp, value, is_nan)
_ORDER = itemgetter(2, 3, 4)  # what makes a point the latest: step, timestamp, value
_ORDER3 = itemgetter(0, 1, 2)  # the same of a point (step, timestamp, value, is_nan)


def _new_rows(conn: Connection, run_pk: int, key: str, rows: list[Any]) -> list[Any]:
    """The rows (run_pk, key, step, timestamp, value, is_nan, ...) the history does not hold
    yet: a repeated or resumed import sends points that are stored already, and the chart
    summaries must count each point once."""
    steps = [r[2] for r in rows]
    stored = driver_rows(conn, _STORED, (run_pk, key, min(steps), max(steps)))
    if not stored:
        return rows
    have = {(step, ts, value, bool(nan)) for step, ts, value, nan in stored}
    return [r for r in rows if _POINT(r) not in have]


def _add_series(conn: Connection, run: Row[Any], series: Series) -> int:
    """Store one key's points that are new, merge them into the chart summaries and move the
    latest value; how many were new. Column by column, in C loops where it can be (map, zip,
    slices): no object per point but the summaries' own."""
    steps, stamps, values = list(series.steps), list(series.timestamps), list(series.values)
    if not steps:
        return 0
    nans: list[bool] = [False] * len(steps)
    if any(map(isnan, values)):  # NaN is stored as 0 with is_nan
        nans = list(map(isnan, values))
        values = [0.0 if nan else v for v, nan in zip(values, nans, strict=True)]
    columns: list[list[Any]] = [steps, stamps, values, nans]
    latest = max(zip(*columns, strict=True), key=_ORDER3)
    stored = driver_rows(conn, _STORED, (run.pk, series.key, min(steps), max(steps)))
    if stored:  # a repeated or resumed import: only what the history does not hold
        have = {(step, ts, value, bool(nan)) for step, ts, value, nan in stored}
        fresh = [p for p in zip(*columns, strict=True) if p not in have]
        columns = [list(c) for c in zip(*fresh, strict=True)] if fresh else [[], [], [], []]
    added = _insert_columns(conn, run.pk, series.key, columns) if columns[0] else 0
    conn.exec_driver_sql(
        run_data._latest_sql(conn.dialect.paramstyle),
        [(run.pk, run.experiment_id, series.key, *latest)],
    )
    if any(columns[3]):
        points = [(s, t, v) for s, t, v, nan in zip(*columns, strict=True) if not nan]
    else:
        points = list(zip(*columns[:3], strict=True))
    metric_blocks.add_history(conn, run.pk, series.key, points)
    return added


def _insert_columns(conn: Connection, run_pk: int, key: str, columns: list[list[Any]]) -> int:
    """Insert points given as columns (steps, timestamps, values, is_nan); how many were new.
    Straight to the driver: PostgreSQL takes the columns as arrays, SQLite rows of a
    statement interleaved by slice assignment."""
    count = len(columns[0])
    names = run_data._POINT_COLUMNS
    if conn.dialect.name == "postgresql":
        return run_data.insert_point_arrays(
            conn, names, [[run_pk] * count, [key] * count, *columns]
        )
    added = 0
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        for start in range(0, count, _SQLITE_ROWS):
            rows = min(_SQLITE_ROWS, count - start)
            flat: list[Any] = [run_pk, key] * (3 * rows)
            for i, column in enumerate(columns, start=2):
                flat[i::6] = column[start : start + rows]
            cursor.execute(run_data._points_sql("qmark", names, rows), flat)
            added += max(cursor.rowcount, 0)
    finally:
        cursor.close()
    return added


def _insert_linked(conn: Connection, run: Row[Any], points: Sequence[Metric]) -> int:
    """Points with a model or dataset: stored, or linked when stored already unlinked."""
    by_key: dict[str, list[Any]] = {}
    for p in points:
        nan = p.value != p.value
        row = (run.pk, p.key, p.step, p.timestamp, 0.0 if nan else p.value, nan)
        by_key.setdefault(p.key, []).append((*row, p.model_id, p.dataset_name, p.dataset_digest))
    style, columns = conn.dialect.paramstyle, run_data._LINKED_COLUMNS
    added = 0
    for key, given in by_key.items():
        once: dict[tuple[Any, ...], Any] = {}
        for row in given:  # one statement may not update the same stored point twice
            once.setdefault(row[:6], row)
        rows = list(once.values())
        fresh = _new_rows(conn, run.pk, key, rows)
        for start in range(0, len(rows), run_data._ROWS_PER_INSERT):
            chunk = rows[start : start + run_data._ROWS_PER_INSERT]
            sql = run_data._points_sql(style, columns, len(chunk))
            added += max(conn.exec_driver_sql(sql, tuple(chain.from_iterable(chunk))).rowcount, 0)
        latest = max(rows, key=_ORDER)
        conn.exec_driver_sql(
            run_data._latest_sql(style), [(run.pk, run.experiment_id, *latest[1:6])]
        )
        metric_blocks.add_history(
            conn, run.pk, key, [(r[2], r[3], r[4]) for r in fresh if not r[5]]
        )
    return added


# ---------------------------------------------------------------- logged models


def import_logged_model(db: Database, project_id: int, item: LoggedModelIn) -> str:
    """Create or bring in line the logged model ``item.model_id`` of the experiment."""
    with db.write() as conn:
        experiment = experiment_service.load_row(conn, project_id, item.experiment_id)
        if item.source_run_id is not None:
            run_service.load_row(conn, project_id, item.source_run_id)
        row = conn.execute(select(logged_models).where(logged_models.c.id == item.model_id)).first()
        if row is not None and (row.project_id != project_id or row.experiment_id != experiment.id):
            raise AlreadyExists(
                f"Logged model id {item.model_id} is taken by another model (in another "
                "experiment or project) on this server; nothing was changed."
            )
        wanted = {
            "name": item.name,
            "model_type": item.model_type,
            "status": item.status,
            "source_run_id": item.source_run_id,
            "lifecycle_stage": experiment_service.ACTIVE,
            "creation_time": item.creation_time,
            "last_updated_time": item.last_updated_time,
        }
        created = row is None
        if row is None:
            conn.execute(
                insert(logged_models).values(
                    id=item.model_id,
                    project_id=project_id,
                    experiment_id=experiment.id,
                    artifact_location=experiment_service.logged_model_location(
                        experiment.artifact_location, experiment.id, item.model_id
                    ),
                    **wanted,
                )
            )
            changed = True
        else:
            changed = _set_values(conn, logged_models, logged_models.c.id == row.id, row, wanted)
        owner = {"owner": item.model_id}
        for table, values in ((logged_model_params, item.params), (logged_model_tags, item.tags)):
            current = dict(
                conn.execute(
                    select(table.c.key, table.c.value).where(table.c.owner == item.model_id)
                ).all()
            )
            changed = _upsert_pairs(conn, table, owner, current, values) or changed
    return _outcome(created, changed)


def require_run(db: Database, project_id: int, run_id: str) -> None:
    with db.read() as conn:
        if (
            conn.execute(
                select(runs.c.pk).where(runs.c.id == run_id, runs.c.project_id == project_id)
            ).first()
            is None
        ):
            raise NotFound(f"Run with id={run_id} not found")
