"""The model registry: models, versions (MLflow's number and a semver), aliases, stages.

Version numbers come from a per-model counter (``registered_models.next_version``) advanced
inside the transaction that inserts the version, so concurrent creations get distinct numbers on
SQLite (one writer) and PostgreSQL (the counter row is locked by the UPDATE). A deleted
version keeps its row (``deleted``), so neither its number nor its semver is used again.
Version writes (create, update, stage, tags, delete) are in ``model_versions``; aliases in
``aliases``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from modelyard.db.dialect import driver_rows
from modelyard.db.engine import Database
from modelyard.db.schema import (
    alias_events,
    logged_models,
    model_version_tags,
    model_versions,
    registered_model_aliases,
    registered_model_tags,
    registered_models,
    runs,
)
from modelyard.errors import AlreadyExists, InvalidParameter, NotFound
from modelyard.services import artifacts, canonical, limits, packages, registry_events, semver
from modelyard.services.entities import now_ms

SEMVER_TAG = "modelyard.semver"
STAGES = {"none": "None", "staging": "Staging", "production": "Production", "archived": "Archived"}
MAX_TAG_VALUE = 100_000
_ALIAS = re.compile(r"^[\w\-]{1,255}$")
_RUNS_SOURCE = re.compile(r"^runs:/([^/]+)(?:/(.*))?$")


@dataclass
class ModelVersion:
    name: str
    version: int
    semver: str | None
    creation_time: int
    last_updated_time: int
    current_stage: str
    description: str
    source: str
    run_id: str
    run_link: str
    status: str
    model_id: str
    deleted: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)


@dataclass
class RegisteredModel:
    name: str
    creation_time: int
    last_updated_time: int
    description: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[tuple[str, int]] = field(default_factory=list)
    latest_versions: list[ModelVersion] = field(default_factory=list)


# ---------------------------------------------------------------- validation


def model_name(name: str | None) -> str:
    if not name:
        raise InvalidParameter("Missing value for required parameter 'name'.")
    if "/" in name or ":" in name or len(name) > 256 or name != name.strip():
        raise InvalidParameter(
            f"Invalid model name {name[:300]!r}: it must not contain '/' or ':', start or end "
            "with spaces, or be longer than 256 characters."
        )
    return name


def new_model_name(name: str | None) -> str:
    """A name for a model being created or renamed: visible characters only."""
    return canonical.check_visible(model_name(name), "model name")


def model_key(name: str) -> str:
    """What makes two model names the same (``services.canonical``)."""
    return canonical.folded_key(name, "model name")


def alias_key(alias: str) -> str:
    return canonical.folded_key(alias, "alias name")


def alias_name(alias: str | None) -> str:
    if not alias or not _ALIAS.match(alias):
        raise InvalidParameter(
            f"Invalid alias name {str(alias)[:300]!r}: use letters, digits, '_' and '-' "
            "(at most 255 characters)."
        )
    canonical.check_visible(alias, "alias name")
    key = alias_key(alias)
    if key == "latest":
        raise InvalidParameter("Alias name 'latest' is reserved.")
    if re.fullmatch(r"v\d+", key) or semver.from_alias(key)[0] != "none":
        raise InvalidParameter(
            f"Version alias name '{alias}' is reserved: v<number> aliases name versions "
            "(v3 is version 3, v1_4_0 is semver 1.4.0)."
        )
    return alias


def model_description(value: str | None) -> str:
    """A model's description, which is also its model card."""
    return limits.text(value, limits.MODEL_DESCRIPTION, "The model's description (its card)")


def version_description(value: str | None) -> str:
    return limits.text(value, limits.VERSION_DESCRIPTION, "The version's description")


def stage_name(stage: str | None) -> str:
    canonical = STAGES.get((stage or "").lower())
    if canonical is None:
        raise InvalidParameter(
            f"Invalid Model Version stage: {stage}. Value must be one of "
            f"{', '.join(STAGES.values())}."
        )
    return canonical


def version_number(value: str | int | None) -> int:
    text = str(value or "").strip()
    if not text.isdigit() or int(text) < 1 or len(text) > 9:
        raise InvalidParameter(
            f"Invalid model version number {str(value)[:50]!r}: expected 1, 2, …"
        )
    return int(text)


def tag(key: str | None, value: str | None) -> tuple[str, str]:
    if not key or len(key) > 250:
        raise InvalidParameter("Tag keys must be 1 to 250 characters.")
    value = value or ""
    if len(value) > MAX_TAG_VALUE:
        raise InvalidParameter(f"Tag value exceeds the maximum length of {MAX_TAG_VALUE}.")
    return key, value


# ---------------------------------------------------------------- loading


def _missing_model(name: str) -> NotFound:
    return NotFound(f"Registered Model with name={name} not found")


_MODEL_BY_NAME = select(registered_models).where(
    registered_models.c.project_id == bindparam("project_id"),
    registered_models.c.name_key == bindparam("key"),
)


_MODEL_BY_NAME_LOCKED = _MODEL_BY_NAME.with_for_update()  # (SQLite ignores the lock)


def find_model_row(
    conn: Connection, project_id: int, name: str, lock: bool = False
) -> Row[Any] | None:
    """The model whose name is ``name`` or the same name spelled otherwise; with ``lock``, its
    row stays locked until the transaction ends (PostgreSQL)."""
    query = _MODEL_BY_NAME_LOCKED if lock else _MODEL_BY_NAME
    return conn.execute(query, {"project_id": project_id, "key": model_key(name)}).first()


def _model_row(conn: Connection, project_id: int, name: str, lock: bool = False) -> Row[Any]:
    row = find_model_row(conn, project_id, name, lock)
    if row is None:
        raise _missing_model(name)
    return row


def _version_row(conn: Connection, model_pk: int, name: str, number: int) -> Row[Any]:
    row = conn.execute(
        select(model_versions).where(
            model_versions.c.model_pk == model_pk,
            model_versions.c.version == number,
            model_versions.c.deleted.is_(False),
        )
    ).first()
    if row is None:
        raise NotFound(f"Model Version (name={name}, version={number}) not found")
    return row


_VERSION_COLUMNS = (
    "id, model_pk, version, semver, creation_time, last_updated_time, current_stage, "
    "description, source, run_id, run_link, status, model_id"
)
# Versions selected by a WHERE clause over model_versions: ``?`` placeholders, no ``%``.
BY_ID = "id = ?"
BY_MODEL = "model_pk = ?"
BY_NUMBER = "model_pk = ? AND version = ?"
BY_PROJECT = "model_pk IN (SELECT id FROM registered_models WHERE project_id = ?)"
LATEST_OF_MODEL = (
    "model_pk = ? AND version IN (SELECT MAX(version) FROM model_versions "
    "WHERE model_pk = ? AND deleted = ? GROUP BY current_stage)"
)


def _versions(
    conn: Connection,
    where: str,
    params: tuple[Any, ...],
    names: dict[int, str],
    tail: str = "",
    tail_params: tuple[Any, ...] = (),
) -> list[ModelVersion]:
    """Live versions matching ``where`` with their tags and aliases, read at the driver level
    (three queries, plain tuples: the registry's hot path). ``tail`` (ORDER BY, LIMIT, OFFSET
    with ``tail_params``) chooses a page of them, in that order; tags are read for it only."""
    if tail:
        chosen = f"SELECT id FROM model_versions WHERE {where} AND deleted = ? {tail}"
        chosen_params: tuple[Any, ...] = (*params, False, *tail_params)
    else:  # the tags of deleted versions too: fewer conditions, nothing shown of them
        chosen, chosen_params = f"SELECT id FROM model_versions WHERE {where}", params
    rows = driver_rows(
        conn,
        f"SELECT {_VERSION_COLUMNS} FROM model_versions WHERE {where} AND deleted = ? {tail}",
        (*params, False, *tail_params),
    )
    if not rows:
        return []
    tags: dict[int, dict[str, str]] = {}
    for owner, key, value in driver_rows(
        conn,
        f"SELECT owner, key, value FROM model_version_tags WHERE owner IN ({chosen})",
        chosen_params,
    ):
        tags.setdefault(owner, {})[key] = value
    aliases: dict[tuple[int, int], list[str]] = {}
    models = sorted({row[1] for row in rows})
    marks = ", ".join("?" * len(models))
    for model_pk, alias, number in driver_rows(
        conn,
        "SELECT model_pk, alias, version FROM registered_model_aliases "
        f"WHERE model_pk IN ({marks})",
        tuple(models),
    ):
        aliases.setdefault((model_pk, number), []).append(alias)
    return [
        ModelVersion(
            name=names[model_pk],
            version=number,
            semver=semantic,
            creation_time=created,
            last_updated_time=updated,
            current_stage=stage,
            description=description,
            source=source,
            run_id=run_id or "",
            run_link=run_link,
            status=status,
            model_id=model_id or "",
            tags=tags.get(pk, {}),
            aliases=sorted(aliases.get((model_pk, number), ())),
        )
        for (
            pk,
            model_pk,
            number,
            semantic,
            created,
            updated,
            stage,
            description,
            source,
            run_id,
            run_link,
            status,
            model_id,
        ) in rows
    ]


def _latest_per_stage(versions: list[ModelVersion], stages: list[str] | None) -> list[ModelVersion]:
    latest: dict[str, ModelVersion] = {}
    for version in versions:
        current = latest.get(version.current_stage)
        if current is None or version.version > current.version:
            latest[version.current_stage] = version
    wanted = stages or list(STAGES.values())
    return sorted((v for s, v in latest.items() if s in wanted), key=lambda v: v.version)


def _models(conn: Connection, rows: list[Row[Any]]) -> list[RegisteredModel]:
    if not rows:
        return []
    pks = [r.id for r in rows]
    names = {r.id: r.name for r in rows}
    marks = ", ".join("?" * len(pks))
    tags: dict[int, dict[str, str]] = {}
    for owner, key, value in driver_rows(
        conn,
        f"SELECT owner, key, value FROM registered_model_tags WHERE owner IN ({marks})",
        tuple(pks),
    ):
        tags.setdefault(owner, {})[key] = value
    aliases: dict[int, list[tuple[str, int]]] = {}
    for model_pk, alias, number in driver_rows(
        conn,
        "SELECT model_pk, alias, version FROM registered_model_aliases "
        f"WHERE model_pk IN ({marks})",
        tuple(pks),
    ):
        aliases.setdefault(model_pk, []).append((alias, number))
    versions: dict[int, list[ModelVersion]] = {}
    by_name = {v: k for k, v in names.items()}
    latest = (
        f"(model_pk, version) IN (SELECT model_pk, MAX(version) FROM model_versions "
        f"WHERE model_pk IN ({marks}) AND deleted = ? GROUP BY model_pk, current_stage)"
    )
    for version in _versions(conn, latest, (*pks, False), names):
        versions.setdefault(by_name[version.name], []).append(version)
    return [
        RegisteredModel(
            name=r.name,
            creation_time=r.creation_time,
            last_updated_time=r.last_updated_time,
            description=r.description,
            tags=tags.get(r.id, {}),
            aliases=sorted(aliases.get(r.id, [])),
            latest_versions=_latest_per_stage(versions.get(r.id, []), None),
        )
        for r in rows
    ]


def _touch(conn: Connection, model_pk: int, now: int) -> None:
    conn.execute(
        update(registered_models)
        .where(registered_models.c.id == model_pk)
        .values(last_updated_time=now)
    )


# ---------------------------------------------------------------- models


def create_model(
    db: Database, project_id: int, name: str | None, tags: list[tuple[str, str]], description: str
) -> RegisteredModel:
    name = new_model_name(name)
    checked = [tag(k, v) for k, v in tags]
    description = model_description(description)
    now = now_ms()
    with db.write() as conn:
        try:
            with conn.begin_nested():
                pk = conn.execute(
                    insert(registered_models)
                    .values(
                        project_id=project_id,
                        name=name,
                        name_key=model_key(name),
                        description=description or "",
                        creation_time=now,
                        last_updated_time=now,
                        next_version=1,
                    )
                    .returning(registered_models.c.id)
                ).scalar_one()
        except IntegrityError:
            raise _model_exists(conn, project_id, name) from None
        if checked:
            conn.execute(
                insert(registered_model_tags),
                [{"owner": pk, "key": k, "value": v} for k, v in dict(checked).items()],
            )
        registry_events.model_created(conn, project_id, name, dict(checked), description or "")
        return _models(conn, [_model_row(conn, project_id, name)])[0]


def _model_exists(conn: Connection, project_id: int, name: str) -> AlreadyExists:
    existing = find_model_row(conn, project_id, name)
    if existing is None or existing.name == name:
        return AlreadyExists(f"Registered Model (name={name}) already exists.")
    return AlreadyExists(
        f"Registered Model (name={name}) already exists as {existing.name!r}: names that "
        "differ only in case, width, Unicode form or invisible characters are the same name."
    )


def get_model(db: Database, project_id: int, name: str | None) -> RegisteredModel:
    name = model_name(name)
    with db.read() as conn:
        return _models(conn, [_model_row(conn, project_id, name)])[0]


def rename_model(
    db: Database, project_id: int, name: str | None, new_name: str | None
) -> RegisteredModel:
    name, new_name = model_name(name), new_model_name(new_name)
    with db.write() as conn:
        row = _model_row(conn, project_id, name)
        try:
            with conn.begin_nested():
                conn.execute(
                    update(registered_models)
                    .where(registered_models.c.id == row.id)
                    .values(name=new_name, name_key=model_key(new_name), last_updated_time=now_ms())
                )
        except IntegrityError:
            raise _model_exists(conn, project_id, new_name) from None
        return _models(conn, [_model_row(conn, project_id, new_name)])[0]


def update_model(
    db: Database, project_id: int, name: str | None, description: str
) -> RegisteredModel:
    name = model_name(name)
    description = model_description(description)
    with db.write() as conn:
        row = _model_row(conn, project_id, name)
        conn.execute(
            update(registered_models)
            .where(registered_models.c.id == row.id)
            .values(description=description, last_updated_time=now_ms())
        )
        return _models(conn, [_model_row(conn, project_id, name)])[0]


def delete_model(db: Database, project_id: int, name: str | None) -> None:
    name = model_name(name)
    with db.write() as conn:
        row = _model_row(conn, project_id, name)
        version_ids = conn.execute(
            select(model_versions.c.id, model_versions.c.package_id).where(
                model_versions.c.model_pk == row.id
            )
        ).all()
        for version_id, package_id in version_ids:
            conn.execute(delete(model_version_tags).where(model_version_tags.c.owner == version_id))
            if package_id is not None:
                conn.execute(
                    update(model_versions)
                    .where(model_versions.c.id == version_id)
                    .values(package_id=None)
                )
                packages.purge_package(conn, package_id)
        for table, column in (
            (model_versions, model_versions.c.model_pk),
            (registered_model_aliases, registered_model_aliases.c.model_pk),
            (alias_events, alias_events.c.model_pk),
            (registered_model_tags, registered_model_tags.c.owner),
        ):
            conn.execute(delete(table).where(column == row.id))
        conn.execute(delete(registered_models).where(registered_models.c.id == row.id))


def set_model_tag(
    db: Database, project_id: int, name: str | None, key: str | None, value: str | None
) -> None:
    name = model_name(name)
    key, value = tag(key, value)
    with db.write() as conn:
        row = _model_row(conn, project_id, name)
        conn.execute(
            delete(registered_model_tags).where(
                registered_model_tags.c.owner == row.id, registered_model_tags.c.key == key
            )
        )
        conn.execute(insert(registered_model_tags).values(owner=row.id, key=key, value=value))
        _touch(conn, row.id, now_ms())


def delete_model_tag(db: Database, project_id: int, name: str | None, key: str | None) -> None:
    name = model_name(name)
    with db.write() as conn:
        row = _model_row(conn, project_id, name)
        deleted = conn.execute(
            delete(registered_model_tags).where(
                registered_model_tags.c.owner == row.id, registered_model_tags.c.key == (key or "")
            )
        ).rowcount
        if not deleted:
            raise NotFound(f"No tag with name: {key} in registered model {name}.")


def all_models(db: Database, project_id: int) -> list[RegisteredModel]:
    with db.read() as conn:
        rows = conn.execute(
            select(registered_models).where(registered_models.c.project_id == project_id)
        ).all()
        return _models(conn, list(rows))


def latest_versions(
    db: Database, project_id: int, name: str | None, stages: list[str]
) -> list[ModelVersion]:
    name = model_name(name)
    wanted = [stage_name(s) for s in stages]
    with db.read() as conn:
        row = _model_row(conn, project_id, name)
        versions = _versions(conn, LATEST_OF_MODEL, (row.id, row.id, False), {row.id: row.name})
    return _latest_per_stage(versions, wanted)


# ---------------------------------------------------------------- versions


def get_version(
    db: Database, project_id: int, name: str | None, version: str | int | None
) -> ModelVersion:
    name = model_name(name)
    number = version_number(version)
    with db.read() as conn:
        row = _model_row(conn, project_id, name)
        found = _versions(conn, BY_NUMBER, (row.id, number), {row.id: row.name})
    if not found:
        raise NotFound(f"Model Version (name={name}, version={number}) not found")
    return found[0]


def versions_of(db: Database, project_id: int, name: str) -> list[ModelVersion]:
    """The live versions of one model (none when there is no such model)."""
    with db.read() as conn:
        row = find_model_row(conn, project_id, name)
        if row is None:
            return []
        return _versions(conn, BY_MODEL, (row.id,), {row.id: row.name})


#: the version columns a page of one model's versions can be ordered by
VERSION_SORT_COLUMNS = {
    "version_number": "version",
    "creation_timestamp": "creation_time",
    "last_updated_timestamp": "last_updated_time",
}


def page_of_versions(
    db: Database,
    project_id: int,
    name: str,
    order: list[tuple[str, bool]],
    limit: int,
    offset: int,
) -> list[ModelVersion]:
    """Up to ``limit`` live versions of one model from ``offset`` on, ordered in the database
    by ``order`` (keys of ``VERSION_SORT_COLUMNS``, descending or not; the version number,
    unique, ends every order)."""
    terms = [f"{VERSION_SORT_COLUMNS[key]} {'DESC' if desc else 'ASC'}" for key, desc in order]
    tail = f"ORDER BY {', '.join([*terms, 'version DESC'])} LIMIT ? OFFSET ?"
    with db.read() as conn:
        row = find_model_row(conn, project_id, name)
        if row is None:
            return []
        return _versions(conn, BY_MODEL, (row.id,), {row.id: row.name}, tail, (limit, offset))


def all_versions(db: Database, project_id: int) -> list[ModelVersion]:
    with db.read() as conn:
        rows = conn.execute(
            select(registered_models.c.id, registered_models.c.name).where(
                registered_models.c.project_id == project_id
            )
        ).all()
        names: dict[int, str] = dict(rows)
        if not names:
            return []
        return _versions(conn, BY_PROJECT, (project_id,), names)


def download_uri(db: Database, project_id: int, name: str | None, version: str | None) -> str:
    """Where the client downloads the version's files from: its published package, whose
    files cannot change; a version registered without files answers its source's location."""
    name = model_name(name)
    number = version_number(version)
    with db.read() as conn:
        model = _model_row(conn, project_id, name)
        row = _version_row(conn, model.id, name, number)
        if row.package_id is not None:
            return artifacts.version_location(model.id, number)
        if row.model_id:
            location = conn.execute(
                select(logged_models.c.artifact_location).where(logged_models.c.id == row.model_id)
            ).scalar()
            if location:
                return str(location)
        if match := _RUNS_SOURCE.match(row.source):
            uri = conn.execute(
                select(runs.c.artifact_uri).where(runs.c.id == match.group(1))
            ).scalar()
            return "/".join(p for p in (uri or "", match.group(2) or "") if p)
    return str(row.source)
