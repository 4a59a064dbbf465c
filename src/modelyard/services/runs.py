"""Candidates (runs): create, read, update, delete, restore and search."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, Row, bindparam, delete, insert, select, update

from modelyard.db.dialect import driver_rows
from modelyard.db.engine import Database
from modelyard.db.schema import (
    DEFAULT_PROJECT_ID,
    run_tags,
    runs,
)
from modelyard.errors import InvalidParameter, NotFound
from modelyard.services import experiments as experiment_service
from modelyard.services import limits, validation
from modelyard.services.entities import (
    Dataset,
    DatasetInput,
    Metric,
    Page,
    Run,
    RunInfo,
    now_ms,
)
from modelyard.services.names import candidate_name
from modelyard.services.search import runs as compile_runs
from modelyard.services.search import sql
from modelyard.services.search.grammar import parse_filter, parse_order_by

RUN_NAME_TAG = "mlflow.runName"
MAX_SEARCH_RESULTS = 50_000
ACTIVE, DELETED = experiment_service.ACTIVE, experiment_service.DELETED


# Statements built once: building SQLAlchemy expressions costs more than running them.
_RUN_BY_ID = select(runs).where(
    runs.c.id == bindparam("run_id"), runs.c.project_id == bindparam("project_id")
)
_INSERT_RUN = insert(runs).returning(runs.c.pk)
_INSERT_TAG = insert(run_tags)


def load_row(conn: Connection, project_id: int, run_id: str) -> Row[Any]:
    row = conn.execute(_RUN_BY_ID, {"run_id": run_id, "project_id": project_id}).first()
    if row is None:
        raise NotFound(f"Run with id={run_id} not found")
    return row


def load_active(conn: Connection, project_id: int, run_id: str) -> Row[Any]:
    """The run row, which must be active to be written to."""
    row = load_row(conn, project_id, run_id)
    if row.lifecycle_stage != ACTIVE:
        raise InvalidParameter(
            f"The run {run_id} must be in the 'active' state. "
            f"Current state is {row.lifecycle_stage}."
        )
    return row


def create(
    db: Database,
    project_id: int,
    *,
    experiment_id: str | None,
    user_id: str | None,
    run_name: str | None,
    start_time: int | None,
    tags: dict[str, str],
) -> Run:
    number = validation.experiment_id(experiment_id or "0")
    checked = {validation.key(k, "Tag"): tag_value(v) for k, v in tags.items()}
    tagged_name = checked.get(RUN_NAME_TAG)
    if run_name and tagged_name and run_name != tagged_name:
        raise InvalidParameter(
            f"Both 'run_name' argument and 'mlflow.runName' tag are specified, but with "
            f"different values (run_name='{run_name}', mlflow.runName='{tagged_name}')."
        )
    name = validation.bounded(
        run_name or tagged_name or candidate_name(), validation.MAX_RUN_NAME_LENGTH, "Run name"
    )
    checked[RUN_NAME_TAG] = name
    user_id = limits.text(user_id, limits.USER_ID, "The candidate's user_id")
    run_id = uuid.uuid4().hex
    with db.write() as conn:
        experiment = experiment_service.load_row(conn, project_id, number)
        if experiment.lifecycle_stage != ACTIVE:
            raise InvalidParameter(
                f"The experiment {number} must be in the 'active' state. "
                f"Current state is {experiment.lifecycle_stage}."
            )
        row = {
            "id": run_id,
            "project_id": project_id,
            "experiment_id": experiment.id,
            "name": name,
            "user_id": user_id or "",
            "status": "RUNNING",
            "start_time": now_ms() if start_time is None else start_time,
            "end_time": None,
            "artifact_uri": experiment_service.run_artifact_uri(
                experiment.artifact_location, experiment.id, run_id
            ),
            "lifecycle_stage": ACTIVE,
        }
        pk = conn.execute(_INSERT_RUN, row).scalar_one()
        conn.execute(
            _INSERT_TAG,
            [
                {"run_pk": pk, "experiment_id": experiment.id, "key": k, "value": v}
                for k, v in checked.items()
            ],
        )
    return Run(info=_info(row), tags=checked)


def tag_value(value: str | None) -> str:
    return validation.truncate(value or "", validation.MAX_RUN_TAG_VALUE_LENGTH)


def _info(row: Any) -> RunInfo:
    get = row.__getitem__ if isinstance(row, dict) else row._mapping.__getitem__
    return RunInfo(
        run_id=get("id"),
        experiment_id=get("experiment_id"),
        run_name=get("name"),
        user_id=get("user_id"),
        status=get("status"),
        start_time=get("start_time"),
        end_time=get("end_time"),
        artifact_uri=get("artifact_uri") or "",
        lifecycle_stage=get("lifecycle_stage"),
    )


def get(db: Database, project_id: int, run_id: str | None) -> Run:
    checked = validation.run_id(run_id)
    with db.read() as conn:
        row = load_row(conn, project_id, checked)
        return hydrate(conn, [row])[0]


# The page's children, read on the driver's cursor: for a page of 100 runs, SQLAlchemy's
# expanding IN and its row objects cost several times the queries themselves.
# Keys come in their order, so a run reads the same however the database chose to scan.
_CHILDREN = {
    "params": 'SELECT run_pk, "key", "value" FROM params WHERE run_pk IN ({marks}) '
    'ORDER BY run_pk, "key"',
    "tags": 'SELECT run_pk, "key", "value" FROM run_tags WHERE run_pk IN ({marks}) '
    'ORDER BY run_pk, "key"',
    "metrics": (
        'SELECT run_pk, "key", "value", "timestamp", step, is_nan FROM latest_metrics '
        'WHERE run_pk IN ({marks}) ORDER BY run_pk, "key"'
    ),
    "inputs": (
        "SELECT i.run_pk, i.tags_json, d.name, d.digest, d.source_type, d.source, d.schema, "
        "d.profile FROM run_inputs i JOIN datasets d ON d.id = i.dataset_id "
        "WHERE i.run_pk IN ({marks}) ORDER BY d.id"
    ),
    "links": "SELECT run_pk, model_id, direction, step FROM run_model_links "
    "WHERE run_pk IN ({marks})",
}


@functools.cache
def _children_sql(what: str, count: int) -> str:
    return _CHILDREN[what].format(marks=", ".join("?" * count))


def _children(conn: Connection, what: str, pks: tuple[int, ...]) -> list[tuple[Any, ...]]:
    """The rows of one child table for these runs. PostgreSQL gets the keys as one array
    (``= ANY``): its driver parses a statement of more than 50 parameters again on every call,
    which costs more than the query at a page of 1,000 runs."""
    if conn.dialect.name == "postgresql":
        return driver_rows(conn, _children_any_sql(what), (list(pks),))
    return driver_rows(conn, _children_sql(what, len(pks)), pks)


@functools.cache
def _children_any_sql(what: str) -> str:
    return _CHILDREN[what].format(marks="?").replace("IN (?)", "= ANY(?)")


def hydrate(conn: Connection, rows: Sequence[Row[Any]]) -> list[Run]:
    """Full runs (params, tags, latest metrics, inputs, outputs) in a fixed number of queries."""
    found = {row.pk: Run(info=_info(row)) for row in rows}
    pks = tuple(found)
    if not pks:
        return []
    for pk, key, value in _children(conn, "params", pks):
        found[pk].params[key] = value
    for pk, key, value in _children(conn, "tags", pks):
        found[pk].tags[key] = value
    nan = float("nan")
    for pk, key, value, timestamp, step, is_nan in _children(conn, "metrics", pks):
        found[pk].metrics.append(Metric(key, nan if is_nan else value, timestamp, step))
    for pk, tags_json, *fields in _children(conn, "inputs", pks):
        dataset = Dataset(*fields)
        found[pk].dataset_inputs.append(DatasetInput(dataset, orjson.loads(tags_json)))
    for pk, model_id, direction, step in _children(conn, "links", pks):
        if direction == "input":
            found[pk].model_inputs.append(model_id)
        else:
            found[pk].model_outputs.append((model_id, step))
    return [found[row.pk] for row in rows]


def update_info(
    db: Database,
    project_id: int,
    run_id: str | None,
    *,
    status: str | None,
    end_time: int | None,
    run_name: str | None,
) -> RunInfo:
    checked = validation.run_id(run_id)
    values: dict[str, Any] = {}
    if status:
        values["status"] = validation.run_status(status)
    if end_time is not None:
        values["end_time"] = end_time
    if run_name:
        validation.bounded(run_name, validation.MAX_RUN_NAME_LENGTH, "Run name")
    with db.write() as conn:
        row = load_active(conn, project_id, checked)
        if values:
            conn.execute(update(runs).where(runs.c.pk == row.pk).values(**values))
        if run_name:
            set_tag(conn, row, RUN_NAME_TAG, run_name)
            values["name"] = run_name
        merged = {**row._mapping, **values}
    return _info(merged)


def tag_of(conn: Connection, run: Row[Any], key: str) -> str | None:
    """The value of one tag of the run, if set."""
    return conn.execute(
        select(run_tags.c.value).where(run_tags.c.run_pk == run.pk, run_tags.c.key == key)
    ).scalar()


def set_tag(conn: Connection, run: Row[Any], key: str, value: str) -> None:
    """Set one tag; the run-name tag also renames the run, so the two never disagree."""
    if key == RUN_NAME_TAG:
        name = validation.bounded(value, validation.MAX_RUN_NAME_LENGTH, "Run name")
        conn.execute(update(runs).where(runs.c.pk == run.pk).values(name=name))
    conn.execute(delete(run_tags).where(run_tags.c.run_pk == run.pk, run_tags.c.key == key))
    conn.execute(
        _INSERT_TAG,
        {"run_pk": run.pk, "experiment_id": run.experiment_id, "key": key, "value": value},
    )


def set_lifecycle(db: Database, project_id: int, run_id: str | None, stage: str) -> None:
    checked = validation.run_id(run_id)
    with db.write() as conn:
        row = load_row(conn, project_id, checked)
        if stage == ACTIVE:
            experiment = experiment_service.load_row(conn, project_id, row.experiment_id)
            if experiment.lifecycle_stage != ACTIVE:
                raise InvalidParameter(
                    f"Cannot restore run {checked}: its experiment {row.experiment_id} is deleted."
                )
        conn.execute(
            update(runs)
            .where(runs.c.pk == row.pk)
            .values(lifecycle_stage=stage, deleted_time=now_ms() if stage == DELETED else None)
        )


def search(
    db: Database,
    project_id: int,
    *,
    experiment_ids: list[str],
    filter_string: str | None,
    run_view_type: str | None,
    max_results: int,
    order_by: list[str],
    page_token: str | None,
) -> Page[Run]:
    if max_results <= 0 or max_results > MAX_SEARCH_RESULTS:
        raise InvalidParameter(
            f"Invalid value {max_results} for parameter 'max_results' supplied. It must be "
            f"a positive integer no greater than {MAX_SEARCH_RESULTS}."
        )
    ids = [validation.experiment_id(e, "experiment_ids") for e in experiment_ids]
    if 0 in ids and project_id != DEFAULT_PROJECT_ID:
        with db.read() as conn:
            ids = experiment_service.resolve_default(conn, project_id, ids)
    stages = experiment_service.lifecycle_stages(run_view_type)
    node = parse_filter(filter_string)
    planned = compile_runs.plan(node, parse_order_by(order_by), ids)
    keys = planned.keys
    print_ = sql.fingerprint("runs", project_id, ids, stages, filter_string, order_by)
    after = sql.decode_token(page_token, print_, len(keys))
    query = (
        select(runs, *sql.select_columns(keys))
        .select_from(planned.source)
        .where(
            runs.c.project_id == project_id,
            runs.c.experiment_id.in_(ids),
            runs.c.lifecycle_stage.in_(stages),
            *planned.conditions,
        )
    )
    if not ids:
        return Page([], None)
    db.fresh_statistics()
    with db.read() as conn:
        rows = sql.fetch_page(conn, query, keys, after, max_results + 1)
        page, more = rows[:max_results], len(rows) > max_results
        found = hydrate(conn, page)
    token = None
    if more:
        token = sql.encode_token([getattr(page[-1], f"_sort{i}") for i in range(len(keys))], print_)
    return Page(found, token)
