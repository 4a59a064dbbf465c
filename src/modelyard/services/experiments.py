"""Experiments: create, read, search, rename, delete and restore, tags; the datasets their
candidates used."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from modelyard.db.engine import Database
from modelyard.db.schema import (
    DEFAULT_PROJECT_ID,
    datasets,
    experiment_tags,
    experiments,
    projects,
    run_inputs,
    runs,
)
from modelyard.errors import AlreadyExists, InvalidParameter, NotFound
from modelyard.services import canonical, validation
from modelyard.services.entities import Experiment, Page, now_ms
from modelyard.services.search import experiments as compile_experiments
from modelyard.services.search import sql
from modelyard.services.search.grammar import parse_filter, parse_order_by

ACTIVE = "active"
DELETED = "deleted"
VIEW_TYPES = {"ACTIVE_ONLY": (ACTIVE,), "DELETED_ONLY": (DELETED,), "ALL": (ACTIVE, DELETED)}
MAX_SEARCH_RESULTS = 50_000


def lifecycle_stages(view_type: str | None) -> tuple[str, ...]:
    stages = VIEW_TYPES.get(view_type or "ACTIVE_ONLY")
    if stages is None:
        raise InvalidParameter(
            f"Invalid view type '{view_type}'. Valid values are {sorted(VIEW_TYPES)}"
        )
    return stages


def create(
    db: Database,
    project_id: int,
    name: str | None,
    artifact_location: str | None = None,
    tags: dict[str, str] | None = None,
) -> int:
    name = _checked_name(name)
    if artifact_location:
        raise InvalidParameter(
            "modelyard chooses every artifact location itself (mlflow-artifacts:/<experiment "
            f"id>); create the experiment without artifact_location (got {artifact_location!r})."
        )
    checked_tags = {k: _tag_value(k, v) for k, v in (tags or {}).items()}
    now = now_ms()
    with db.write() as conn:
        existing = conn.execute(_BY_NAME, {"key": key(name), "project_id": project_id}).first()
        if existing is not None:
            raise _duplicate(name, existing.name)
        try:
            new_id = conn.execute(
                insert(experiments)
                .values(
                    project_id=project_id,
                    name=name,
                    name_key=key(name),
                    lifecycle_stage=ACTIVE,
                    creation_time=now,
                    last_update_time=now,
                )
                .returning(experiments.c.id)
            ).scalar_one()
        except IntegrityError:
            raise _duplicate(name) from None
        conn.execute(
            update(experiments)
            .where(experiments.c.id == new_id)
            .values(artifact_location=f"mlflow-artifacts:/{new_id}")
        )
        if checked_tags:
            conn.execute(
                insert(experiment_tags),
                [{"experiment_id": new_id, "key": k, "value": v} for k, v in checked_tags.items()],
            )
    return int(new_id)


def key(name: str) -> str:
    """What makes two experiment names the same (``services.canonical``)."""
    return canonical.normalized_key(name, "experiment name")


def _checked_name(name: str | None) -> str:
    return canonical.check_visible(validation.experiment_name(name), "experiment name")


def _duplicate(name: str, existing: str | None = None) -> AlreadyExists:
    if existing is None or existing == name:
        return AlreadyExists(f"Experiment(name={name}) already exists.")
    return AlreadyExists(
        f"Experiment(name={name}) already exists as {existing!r}: names that differ only in "
        "Unicode form or in invisible characters are the same name."
    )


def _tag_value(key: str, value: str | None) -> str:
    validation.key(key, "Tag")
    return validation.bounded(
        value or "", validation.MAX_EXPERIMENT_TAG_VALUE_LENGTH, f"Experiment tag '{key}' value"
    )


def _from_row(row: Row[Any], tags: dict[str, str]) -> Experiment:
    return Experiment(
        experiment_id=row.id,
        name=row.name,
        artifact_location=row.artifact_location or "",
        lifecycle_stage=row.lifecycle_stage,
        creation_time=row.creation_time,
        last_update_time=row.last_update_time,
        tags=tags,
    )


_IN_PROJECT = experiments.c.project_id == bindparam("project_id")
_BY_ID = select(experiments).where(experiments.c.id == bindparam("id"), _IN_PROJECT)
_BY_NAME = select(experiments).where(experiments.c.name_key == bindparam("key"), _IN_PROJECT)
_TAGS_OF = select(experiment_tags).where(
    experiment_tags.c.experiment_id.in_(bindparam("ids", expanding=True))
)


def _tags_of(conn: Connection, ids: list[int]) -> dict[int, dict[str, str]]:
    found: dict[int, dict[str, str]] = {i: {} for i in ids}
    if ids:
        for row in conn.execute(_TAGS_OF, {"ids": ids}):
            found[row.experiment_id][row.key] = row.value
    return found


def resolve_default(conn: Connection, project_id: int, ids: list[int]) -> list[int]:
    """MLflow's id 0 (the client's experiment when none is set) is each project's own
    "Default" experiment; other ids are themselves."""
    if project_id == DEFAULT_PROJECT_ID or 0 not in ids:
        return ids
    default = conn.execute(
        select(projects.c.default_experiment_id).where(projects.c.id == project_id)
    ).scalar()
    return [default if i == 0 and default is not None else i for i in ids]


def create_default(conn: Connection, project_id: int, now: int) -> int:
    """A new project's "Default" experiment."""
    new_id = conn.execute(
        insert(experiments)
        .values(
            project_id=project_id,
            name="Default",
            name_key=key("Default"),
            lifecycle_stage=ACTIVE,
            creation_time=now,
            last_update_time=now,
        )
        .returning(experiments.c.id)
    ).scalar_one()
    conn.execute(
        update(experiments)
        .where(experiments.c.id == new_id)
        .values(artifact_location=f"mlflow-artifacts:/{new_id}")
    )
    conn.execute(
        update(projects).where(projects.c.id == project_id).values(default_experiment_id=new_id)
    )
    return int(new_id)


def load_row(conn: Connection, project_id: int, experiment_id: int) -> Row[Any]:
    """The experiment row, or RESOURCE_DOES_NOT_EXIST."""
    (experiment_id,) = resolve_default(conn, project_id, [experiment_id])
    row = conn.execute(_BY_ID, {"id": experiment_id, "project_id": project_id}).first()
    if row is None:
        raise NotFound(f"No Experiment with id={experiment_id} exists")
    return row


def get(db: Database, project_id: int, experiment_id: str | None) -> Experiment:
    number = validation.experiment_id(experiment_id)
    with db.read() as conn:
        row = load_row(conn, project_id, number)
        return _from_row(row, _tags_of(conn, [row.id])[row.id])


def get_by_name(db: Database, project_id: int, name: str | None) -> Experiment:
    if not name:
        raise InvalidParameter("Missing value for required parameter 'experiment_name'.")
    with db.read() as conn:
        row = conn.execute(_BY_NAME, {"key": key(name), "project_id": project_id}).first()
        if row is None:
            raise NotFound(f"Could not find experiment with name '{name}'")
        return _from_row(row, _tags_of(conn, [row.id])[row.id])


def search(
    db: Database,
    project_id: int,
    *,
    view_type: str | None,
    max_results: int,
    filter_string: str | None,
    order_by: list[str],
    page_token: str | None,
) -> Page[Experiment]:
    if max_results <= 0 or max_results > MAX_SEARCH_RESULTS:
        raise InvalidParameter(
            f"Invalid value {max_results} for parameter 'max_results' supplied. It must be "
            f"a positive integer no greater than {MAX_SEARCH_RESULTS}."
        )
    stages = lifecycle_stages(view_type)
    node = parse_filter(filter_string)
    keys = compile_experiments.sort_keys(parse_order_by(order_by))
    print_ = sql.fingerprint("experiments", project_id, stages, filter_string, order_by)
    after = sql.decode_token(page_token, print_, len(keys))
    query = select(experiments, *sql.select_columns(keys)).where(
        experiments.c.project_id == project_id, experiments.c.lifecycle_stage.in_(stages)
    )
    if node is not None:
        query = query.where(compile_experiments.condition(node))
    with db.read() as conn:
        rows = sql.fetch_page(conn, query, keys, after, max_results + 1)
        page, more = rows[:max_results], len(rows) > max_results
        tags = _tags_of(conn, [r.id for r in page])
    token = None
    if more:
        last = page[-1]
        token = sql.encode_token([getattr(last, f"_sort{i}") for i in range(len(keys))], print_)
    return Page([_from_row(r, tags[r.id]) for r in page], token)


def rename(db: Database, project_id: int, experiment_id: str | None, new_name: str | None) -> None:
    number = validation.experiment_id(experiment_id)
    name = _checked_name(new_name)
    with db.write() as conn:
        row = load_row(conn, project_id, number)
        if row.lifecycle_stage != ACTIVE:
            raise InvalidParameter("Cannot rename a non-active experiment.")
        clash = conn.execute(_BY_NAME, {"key": key(name), "project_id": project_id}).first()
        if clash is not None and clash.id != row.id:
            raise _duplicate(name, clash.name)
        conn.execute(
            update(experiments)
            .where(experiments.c.id == row.id)
            .values(name=name, name_key=key(name), last_update_time=now_ms())
        )


def set_lifecycle(db: Database, project_id: int, experiment_id: str | None, stage: str) -> None:
    """Delete (stage=deleted) or restore (stage=active) an experiment and its candidates."""
    number = validation.experiment_id(experiment_id)
    now = now_ms()
    with db.write() as conn:
        row = load_row(conn, project_id, number)
        if stage == ACTIVE and row.lifecycle_stage == ACTIVE:
            raise InvalidParameter(
                f"Cannot restore an active experiment. Experiment {number} is active."
            )
        conn.execute(
            update(experiments)
            .where(experiments.c.id == number)
            .values(lifecycle_stage=stage, last_update_time=now)
        )
        previous = DELETED if stage == ACTIVE else ACTIVE
        conn.execute(
            update(runs)
            .where(and_(runs.c.experiment_id == number, runs.c.lifecycle_stage == previous))
            .values(lifecycle_stage=stage, deleted_time=now if stage == DELETED else None)
        )


def set_tag(
    db: Database, project_id: int, experiment_id: str | None, key: str, value: str | None
) -> None:
    number = validation.experiment_id(experiment_id)
    checked = _tag_value(key, value)
    with db.write() as conn:
        row = load_row(conn, project_id, number)
        if row.lifecycle_stage != ACTIVE:
            raise InvalidParameter(
                f"The experiment {number} must be in the 'active' state. "
                f"Current state is {row.lifecycle_stage}."
            )
        conn.execute(
            delete(experiment_tags).where(
                experiment_tags.c.experiment_id == number, experiment_tags.c.key == key
            )
        )
        conn.execute(insert(experiment_tags).values(experiment_id=number, key=key, value=checked))


def delete_tag(db: Database, project_id: int, experiment_id: str | None, key: str) -> None:
    number = validation.experiment_id(experiment_id)
    with db.write() as conn:
        row = load_row(conn, project_id, number)
        if row.lifecycle_stage != ACTIVE:
            raise InvalidParameter(
                f"The experiment {number} must be in the 'active' state. "
                f"Current state is {row.lifecycle_stage}."
            )
        gone = conn.execute(
            delete(experiment_tags).where(
                experiment_tags.c.experiment_id == number, experiment_tags.c.key == key
            )
        ).rowcount
        if not gone:
            raise NotFound(f"No tag with name: {key} in experiment with id {number}")


def activity(db: Database, experiment_ids: list[int]) -> dict[int, tuple[int, int | None]]:
    """For each experiment: how many active candidates it has and when one last started or
    ended (None: never)."""
    if not experiment_ids:
        return {}
    last = func.max(func.coalesce(runs.c.end_time, runs.c.start_time))
    query = (
        select(runs.c.experiment_id, func.count(), last)
        .where(runs.c.experiment_id.in_(experiment_ids), runs.c.lifecycle_stage == ACTIVE)
        .group_by(runs.c.experiment_id)
    )
    with db.read() as conn:
        found = {row[0]: (int(row[1]), row[2]) for row in conn.execute(query)}
    return {i: found.get(i, (0, None)) for i in experiment_ids}


MAX_DATASET_EXPERIMENTS = 20
MAX_DATASET_SUMMARIES = 1000


@dataclass(frozen=True, slots=True)
class DatasetSummary:
    """A dataset some candidate of the experiment used, with the context it was used in."""

    experiment_id: int
    name: str
    digest: str
    context: str | None


def dataset_summaries(
    db: Database, project_id: int, experiment_ids: list[str]
) -> list[DatasetSummary]:
    """The distinct (dataset, context) pairs the experiments' candidates logged as inputs."""
    if not experiment_ids:
        raise InvalidParameter("SearchDatasets request must specify at least one experiment_id.")
    if len(experiment_ids) > MAX_DATASET_EXPERIMENTS:
        raise InvalidParameter(
            f"SearchDatasets request cannot specify more than {MAX_DATASET_EXPERIMENTS} "
            f"experiment_ids. Received {len(experiment_ids)} experiment_ids."
        )
    numbers = [validation.experiment_id(e, "experiment_ids") for e in experiment_ids]
    query = (
        select(datasets.c.experiment_id, datasets.c.name, datasets.c.digest, run_inputs.c.context)
        .distinct()
        .join(run_inputs, run_inputs.c.dataset_id == datasets.c.id)
        .join(experiments, experiments.c.id == datasets.c.experiment_id)
        .where(
            experiments.c.project_id == project_id,
            datasets.c.experiment_id.in_(bindparam("ids", expanding=True)),
        )
        .order_by(
            datasets.c.experiment_id, datasets.c.name, datasets.c.digest, run_inputs.c.context
        )
        .limit(MAX_DATASET_SUMMARIES)
    )
    with db.read() as conn:
        ids = resolve_default(conn, project_id, numbers)
        return [DatasetSummary(*row) for row in conn.execute(query, {"ids": ids})]


def _artifact_root(artifact_location: str | None, experiment_id: object) -> str:
    return (artifact_location or f"mlflow-artifacts:/{experiment_id}").rstrip("/")


def run_artifact_uri(artifact_location: str | None, experiment_id: object, run_id: str) -> str:
    """Where a run of the experiment keeps its files."""
    return f"{_artifact_root(artifact_location, experiment_id)}/{run_id}/artifacts"


def logged_model_location(
    artifact_location: str | None, experiment_id: object, model_id: str
) -> str:
    """Where a logged model of the experiment keeps its files."""
    return f"{_artifact_root(artifact_location, experiment_id)}/models/{model_id}/artifacts"
