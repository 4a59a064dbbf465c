"""MLflow 3 LoggedModels: a model object logged into an experiment, usually from a candidate.

A logged model has an id (``m-<32 hex>``), a name, a status (pending until the client has
uploaded its files, then ready or upload-failed), params, tags and metrics. Its metrics are
the points of the ``metrics`` table that carry its id; its files are a package of their own
(see ``services.artifacts``), under ``<experiment>/models/<id>/artifacts`` in MLflow's paths.
Deletion is soft: a deleted model is no longer found, listed or written to.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BindParameter, Connection, Row, bindparam, delete, insert, select, update

from modelyard.db.dialect import insert_for
from modelyard.db.engine import Database
from modelyard.db.schema import (
    DEFAULT_PROJECT_ID,
    logged_model_params,
    logged_model_tags,
    logged_models,
    metrics,
    runs,
)
from modelyard.errors import InvalidParameter, NotFound
from modelyard.services import experiments as experiment_service
from modelyard.services import runs as run_service
from modelyard.services import validation
from modelyard.services.entities import Metric, Page, now_ms
from modelyard.services.names import candidate_name
from modelyard.services.search import logged_models as compile_models
from modelyard.services.search import sql
from modelyard.services.search.grammar import BoolOp, Node, parse_filter
from modelyard.services.search.logged_models import DatasetFilter, OrderBy

PENDING = "LOGGED_MODEL_PENDING"
READY = "LOGGED_MODEL_READY"
FAILED = "LOGGED_MODEL_UPLOAD_FAILED"
UNSPECIFIED = "LOGGED_MODEL_STATUS_UNSPECIFIED"
# The protobuf enum numbers, which a client may send instead of the names.
STATUS_NUMBERS = {0: UNSPECIFIED, 1: PENDING, 2: READY, 3: FAILED}
FINAL_STATUSES = (READY, FAILED)
ACTIVE, DELETED = experiment_service.ACTIVE, experiment_service.DELETED

MAX_NAME_LENGTH = 500
MAX_MODEL_TYPE_LENGTH = 500
MAX_TAG_VALUE_LENGTH = 100_000
DEFAULT_SEARCH_RESULTS = 100
MAX_SEARCH_RESULTS = 50_000
_NAME_FORBIDDEN = ("/", ":", ".", "%", '"', "'")


@dataclass(slots=True)
class LoggedModel:
    model_id: str
    experiment_id: int
    name: str
    model_type: str
    status: str
    source_run_id: str | None
    artifact_location: str
    lifecycle_stage: str
    creation_time: int
    last_updated_time: int
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)


def _from_row(row: Any) -> LoggedModel:
    get = row.__getitem__ if isinstance(row, dict) else row._mapping.__getitem__
    return LoggedModel(
        model_id=get("id"),
        experiment_id=get("experiment_id"),
        name=get("name"),
        model_type=get("model_type"),
        status=get("status"),
        source_run_id=get("source_run_id"),
        artifact_location=get("artifact_location"),
        lifecycle_stage=get("lifecycle_stage"),
        creation_time=get("creation_time"),
        last_updated_time=get("last_updated_time"),
    )


def not_found(model_id: str) -> NotFound:
    return NotFound(f"Logged model with ID '{model_id[:100]}' not found.")


_BY_ID = select(logged_models).where(
    logged_models.c.id == bindparam("model_id"),
    logged_models.c.project_id == bindparam("project_id"),
)


def load_row(
    conn: Connection, project_id: int, model_id: str | None, *, allow_deleted: bool = False
) -> Row[Any]:
    """The model's row; deleted models count as missing unless ``allow_deleted``."""
    if not model_id:
        raise InvalidParameter("Missing value for required parameter 'model_id'.")
    row = conn.execute(_BY_ID, {"model_id": model_id, "project_id": project_id}).first()
    if row is None or (row.lifecycle_stage != ACTIVE and not allow_deleted):
        raise not_found(model_id)
    return row


def check_name(name: str | None) -> str:
    """MLflow's rule for model names; an absent name gets a generated one."""
    if name is None or name == "":
        return candidate_name()
    if any(c in name for c in _NAME_FORBIDDEN):
        raise InvalidParameter(
            f"Invalid model name ({name[:300]!r}) provided. Model name must be a non-empty "
            f"string and cannot contain the following characters: {_NAME_FORBIDDEN}"
        )
    return validation.bounded(name, MAX_NAME_LENGTH, "Model name")


def check_params(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for key, raw in pairs:
        validation.key(key, "Param")
        value = validation.truncate(raw, validation.MAX_PARAM_VALUE_LENGTH)
        if key in checked and checked[key] != value:
            raise InvalidParameter(
                f"Duplicate parameter keys have been submitted: ['{key}']. Please ensure the "
                "request contains only one param value per param key."
            )
        checked[key] = value
    return checked


def check_tags(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Tags keyed by their last value, as setting the same key twice would leave it."""
    return {
        validation.key(k, "Tag"): validation.bounded(v, MAX_TAG_VALUE_LENGTH, f"Tag '{k}' value")
        for k, v in pairs
    }


def status_of(value: object) -> str:
    """A status as the protobuf enum name, from its name or number."""
    if isinstance(value, bool):
        raise validation.invalid_value(value, "status")
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        number = int(value)
        if number in STATUS_NUMBERS:
            return STATUS_NUMBERS[number]
    elif isinstance(value, str):
        upper = value.upper()
        named = compile_models.STATUS_NAMES.get(upper, upper)
        if named in STATUS_NUMBERS.values():
            return named
    raise InvalidParameter(f"Unknown model status: {str(value)[:100]}")


def create(
    db: Database,
    project_id: int,
    *,
    experiment_id: str | None,
    name: str | None,
    model_type: str | None,
    source_run_id: str | None,
    params: Sequence[tuple[str, str]],
    tags: Sequence[tuple[str, str]],
) -> LoggedModel:
    number = validation.experiment_id(experiment_id)
    checked_name = check_name(name)
    kind = validation.bounded(model_type or "", MAX_MODEL_TYPE_LENGTH, "Model type")
    run_id = validation.run_id(source_run_id, "source_run_id") if source_run_id else None
    checked_params = check_params(params)
    checked_tags = check_tags(tags)
    model_id = f"m-{uuid.uuid4().hex}"
    now = now_ms()
    with db.write() as conn:
        experiment = experiment_service.load_row(conn, project_id, number)
        if experiment.lifecycle_stage != ACTIVE:
            raise InvalidParameter(
                f"The experiment {number} must be in the 'active' state. "
                f"Current state is {experiment.lifecycle_stage}."
            )
        if run_id is not None:
            run_service.load_row(conn, project_id, run_id)
        row = {
            "id": model_id,
            "project_id": project_id,
            "experiment_id": experiment.id,
            "name": checked_name,
            "model_type": kind,
            "status": PENDING,
            "source_run_id": run_id,
            "artifact_location": experiment_service.logged_model_location(
                experiment.artifact_location, experiment.id, model_id
            ),
            "lifecycle_stage": ACTIVE,
            "creation_time": now,
            "last_updated_time": now,
        }
        conn.execute(insert(logged_models), row)
        if checked_params:
            conn.execute(
                insert(logged_model_params),
                [{"owner": model_id, "key": k, "value": v} for k, v in checked_params.items()],
            )
        if checked_tags:
            conn.execute(
                insert(logged_model_tags),
                [{"owner": model_id, "key": k, "value": v} for k, v in checked_tags.items()],
            )
    model = _from_row(row)
    model.params, model.tags = checked_params, checked_tags
    return model


def get(
    db: Database, project_id: int, model_id: str | None, *, allow_deleted: bool = False
) -> LoggedModel:
    with db.read() as conn:
        row = load_row(conn, project_id, model_id, allow_deleted=allow_deleted)
        return hydrate(conn, project_id, [row])[0]


def finalize(db: Database, project_id: int, model_id: str | None, status: object) -> LoggedModel:
    if status is None or status == "":
        raise InvalidParameter("Missing value for required parameter 'status'.")
    checked = status_of(status)
    if checked not in FINAL_STATUSES:
        raise InvalidParameter(
            f"Invalid model status '{checked}': a model is finalized as "
            f"{' or '.join(FINAL_STATUSES)}."
        )
    with db.write() as conn:
        row = load_row(conn, project_id, model_id)
        _touch(conn, row.id, status=checked)
        fresh = load_row(conn, project_id, row.id)
        return hydrate(conn, project_id, [fresh])[0]


def delete_model(db: Database, project_id: int, model_id: str | None) -> None:
    with db.write() as conn:
        row = load_row(conn, project_id, model_id)
        _touch(conn, row.id, lifecycle_stage=DELETED)


def _touch(conn: Connection, model_id: str, **values: Any) -> None:
    conn.execute(
        update(logged_models)
        .where(logged_models.c.id == model_id)
        .values(last_updated_time=now_ms(), **values)
    )


def set_tags(
    db: Database, project_id: int, model_id: str | None, tags: Sequence[tuple[str, str]]
) -> None:
    checked = check_tags(tags)
    with db.write() as conn:
        row = load_row(conn, project_id, model_id)
        if not checked:
            return
        upsert = insert_for(conn.dialect.name, logged_model_tags)
        conn.execute(
            upsert.on_conflict_do_update(
                index_elements=["owner", "key"], set_={"value": upsert.excluded.value}
            ),
            [{"owner": row.id, "key": k, "value": v} for k, v in checked.items()],
        )
        _touch(conn, row.id)


MODEL_VERSIONS_TAG = "mlflow.modelVersions"


def record_version(
    conn: Connection, project_id: int, model_id: str, name: str, number: int
) -> None:
    """Add a model version registered from this logged model to its ``mlflow.modelVersions``
    tag, a JSON list of ``{"name", "version"}`` written as MLflow's server writes it. Runs in
    the transaction that creates the version; the model must exist in the project (deleted or
    not: a version may be registered from a deleted model's files)."""
    row = load_row(conn, project_id, model_id, allow_deleted=True)
    current = conn.execute(
        select(logged_model_tags.c.value).where(
            logged_model_tags.c.owner == row.id, logged_model_tags.c.key == MODEL_VERSIONS_TAG
        )
    ).scalar()
    entries = _registrations(current)
    entry = {"name": name, "version": number}
    if entry in entries:
        return
    upsert = insert_for(conn.dialect.name, logged_model_tags)
    conn.execute(
        upsert.on_conflict_do_update(
            index_elements=["owner", "key"], set_={"value": upsert.excluded.value}
        ),
        {"owner": row.id, "key": MODEL_VERSIONS_TAG, "value": json.dumps([*entries, entry])},
    )


def _registrations(value: str | None) -> list[Any]:
    """The tag's entries; a value that is not a JSON list (set by hand) is started afresh."""
    try:
        entries = json.loads(value) if value else []
    except ValueError:
        return []
    return entries if isinstance(entries, list) else []


def delete_tag(db: Database, project_id: int, model_id: str | None, key: str | None) -> None:
    if not key:
        raise InvalidParameter("Missing value for required parameter 'tag_key'.")
    with db.write() as conn:
        row = load_row(conn, project_id, model_id)
        gone = conn.execute(
            delete(logged_model_tags).where(
                logged_model_tags.c.owner == row.id, logged_model_tags.c.key == key
            )
        ).rowcount
        if not gone:
            raise NotFound(f"No tag with key '{key[:250]}' found for model with ID '{row.id}'.")
        _touch(conn, row.id)


def log_params(
    db: Database, project_id: int, model_id: str | None, params: Sequence[tuple[str, str]]
) -> None:
    """Add params; like a candidate's, a param's value never changes once logged."""
    if len(params) > validation.MAX_BATCH_PARAMS:
        raise InvalidParameter(
            f"A batch logging request can contain at most {validation.MAX_BATCH_PARAMS} params. "
            f"Got {len(params)} params. Please split up params across multiple requests and try "
            "again."
        )
    checked = check_params(params)
    with db.write() as conn:
        row = load_row(conn, project_id, model_id)
        if not checked:
            return
        existing = dict(
            conn.execute(
                select(logged_model_params.c.key, logged_model_params.c.value).where(
                    logged_model_params.c.owner == row.id,
                    logged_model_params.c.key.in_(list(checked)),
                )
            ).all()
        )
        changed = [k for k, v in checked.items() if k in existing and existing[k] != v]
        if changed:
            detail = ", ".join(
                f"Param(key={k}, old_value={existing[k]}, new_value={checked[k]})" for k in changed
            )
            raise InvalidParameter(
                "Changing param values is not allowed. Params were already logged for model "
                f"ID='{row.id}' with different values: {detail}."
            )
        fresh = [{"owner": row.id, "key": k, "value": v} for k, v in checked.items()]
        fresh = [item for item in fresh if item["key"] not in existing]
        if fresh:
            conn.execute(insert(logged_model_params), fresh)
            _touch(conn, row.id)


_PAGE: BindParameter[str] = bindparam("ids", expanding=True)
_TAGS_OF = select(logged_model_tags).where(logged_model_tags.c.owner.in_(_PAGE))
_PARAMS_OF = select(logged_model_params).where(logged_model_params.c.owner.in_(_PAGE))
_METRICS_OF = (
    select(metrics, runs.c.id.label("run_id"))
    .select_from(metrics.join(runs, runs.c.pk == metrics.c.run_pk))
    .where(metrics.c.model_id.in_(_PAGE), runs.c.project_id == bindparam("project_id"))
    .order_by(metrics.c.key, metrics.c.step, metrics.c.timestamp, runs.c.id)
)


def hydrate(conn: Connection, project_id: int, rows: Sequence[Row[Any]]) -> list[LoggedModel]:
    """Models with their tags, params and metric points, in three queries."""
    found = {row.id: _from_row(row) for row in rows}
    if not found:
        return []
    page = {"ids": list(found)}
    for r in conn.execute(_TAGS_OF, page):
        found[r.owner].tags[r.key] = r.value
    for r in conn.execute(_PARAMS_OF, page):
        found[r.owner].params[r.key] = r.value
    for r in conn.execute(_METRICS_OF, {**page, "project_id": project_id}):
        value = float("nan") if r.is_nan else r.value
        found[r.model_id].metrics.append(
            Metric(
                r.key,
                value,
                r.timestamp,
                r.step,
                run_id=r.run_id,
                model_id=r.model_id,
                dataset_name=r.dataset_name,
                dataset_digest=r.dataset_digest,
            )
        )
    return [found[row.id] for row in rows]


def search(
    db: Database,
    project_id: int,
    *,
    experiment_ids: list[str],
    filter_string: str | None,
    datasets: list[DatasetFilter],
    max_results: int | None,
    order_by: list[OrderBy],
    page_token: str | None,
) -> Page[LoggedModel]:
    """Active models of the experiments that pass the filter, a page at a time. Page tokens
    carry the last row's sort values and are bound to the whole request."""
    limit = max_results or DEFAULT_SEARCH_RESULTS
    if limit <= 0 or limit > MAX_SEARCH_RESULTS:
        raise InvalidParameter(
            f"Invalid value {limit} for parameter 'max_results' supplied. It must be "
            f"a positive integer no greater than {MAX_SEARCH_RESULTS}."
        )
    if not experiment_ids:
        raise InvalidParameter("Missing value for required parameter 'experiment_ids'.")
    ids = [validation.experiment_id(e, "experiment_ids") for e in experiment_ids]
    if 0 in ids and project_id != DEFAULT_PROJECT_ID:
        with db.read() as conn:
            ids = experiment_service.resolve_default(conn, project_id, ids)
    for d in datasets:
        if not d.name:
            raise InvalidParameter("`dataset_name` in the `datasets` clause must be specified.")
    node = parse_filter(filter_string)
    condition = None if node is None else compile_models.condition(node, datasets)
    keys = compile_models.sort_keys(order_by)
    print_ = sql.fingerprint(
        "logged_models",
        project_id,
        sorted(set(ids)),
        filter_string or "",
        [(o.field_name, o.ascending, o.dataset_name, o.dataset_digest) for o in order_by],
        sorted((d.name, d.digest or "") for d in datasets),
    )
    after = sql.decode_token(page_token, print_, len(keys))
    query = select(logged_models, *sql.select_columns(keys)).where(
        logged_models.c.project_id == project_id,
        logged_models.c.experiment_id.in_(ids),
        logged_models.c.lifecycle_stage == ACTIVE,
    )
    if condition is not None:
        query = query.where(condition)
    has_metric_filter = node is not None and _mentions_metrics(node)
    if datasets and not has_metric_filter:
        query = query.where(compile_models.any_point_on(datasets))
    with db.read() as conn:
        for number in sorted(set(ids)):
            experiment_service.load_row(conn, project_id, number)
        rows = sql.fetch_page(conn, query, keys, after, limit + 1)
        page, more = rows[:limit], len(rows) > limit
        found = hydrate(conn, project_id, page)
    token = None
    if more:
        token = sql.encode_token([getattr(page[-1], f"_sort{i}") for i in range(len(keys))], print_)
    return Page(found, token)


def _mentions_metrics(node: Node) -> bool:
    if isinstance(node, BoolOp):
        return any(_mentions_metrics(item) for item in node.items)
    return node.ident.entity == "metric"
