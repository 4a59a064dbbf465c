"""Imported registry: models and versions with the numbers they had, their descriptions, tags,
stages and times. A version's files are frozen from its source when that source is stored here
(a candidate's folder or a logged model, imported first); semvers continue in version order
unless the version's ``modelyard.semver`` tag names one.

Idempotent like ``services.imports``: the same content again is ``unchanged``; a number that
holds a different version (another source, or deleted here) is a conflict.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from modelyard.db.engine import Database
from modelyard.db.schema import (
    model_version_tags,
    model_versions,
    registered_model_tags,
    registered_models,
)
from modelyard.errors import Conflict, InvalidParameter, NotFound
from modelyard.services import logged_models as logged_model_service
from modelyard.services import model_versions as version_service
from modelyard.services import registry
from modelyard.services.imports import _outcome, _set_values, _upsert_pairs
from modelyard.services.registry import SEMVER_TAG


@dataclass(frozen=True, slots=True)
class ModelIn:
    name: str
    description: str
    creation_time: int
    last_updated_time: int
    tags: dict[str, str]


@dataclass(frozen=True, slots=True)
class VersionIn:
    name: str
    version: int
    source: str
    run_id: str | None
    model_id: str | None
    run_link: str
    description: str
    status: str
    stage: str
    creation_time: int
    last_updated_time: int
    tags: dict[str, str]


def import_model(db: Database, project_id: int, item: ModelIn) -> str:
    with db.write() as conn:
        row = registry.find_model_row(conn, project_id, item.name)
        created = row is None
        wanted = {
            "description": item.description,
            "creation_time": item.creation_time,
            "last_updated_time": item.last_updated_time,
        }
        if row is None:
            name = registry.new_model_name(item.name)
            model_pk = conn.execute(
                insert(registered_models)
                .values(
                    project_id=project_id,
                    name=name,
                    name_key=registry.model_key(name),
                    next_version=1,
                    **wanted,
                )
                .returning(registered_models.c.id)
            ).scalar_one()
            changed = True
        else:
            model_pk = row.id
            changed = _set_values(
                conn, registered_models, registered_models.c.id == row.id, row, wanted
            )
        current = dict(
            conn.execute(
                select(registered_model_tags.c.key, registered_model_tags.c.value).where(
                    registered_model_tags.c.owner == model_pk
                )
            ).all()
        )
        tagged = _upsert_pairs(conn, registered_model_tags, {"owner": model_pk}, current, item.tags)
    return _outcome(created, changed or tagged)


def import_version(db: Database, project_id: int, item: VersionIn) -> tuple[str, str | None]:
    """What happened to the version, and its semver."""
    tags = dict(item.tags)
    wanted_semver = tags.pop(SEMVER_TAG, None)
    with db.write() as conn:
        model = registry.find_model_row(conn, project_id, item.name)
        if model is None:
            raise NotFound(f"Registered Model with name={item.name} not found")
        row = conn.execute(
            select(model_versions).where(
                model_versions.c.model_pk == model.id, model_versions.c.version == item.version
            )
        ).first()
        fields = {
            "description": item.description,
            "status": item.status,
            "current_stage": item.stage,
            "run_link": item.run_link,
            "creation_time": item.creation_time,
            "last_updated_time": item.last_updated_time,
        }
        if row is not None:
            if row.deleted or row.source != item.source:
                why = "was deleted here" if row.deleted else f"has the source {row.source!r}"
                raise Conflict(
                    f"Version {item.version} of model {model.name!r} {why}: a version number "
                    "is never reused, so this version cannot be imported."
                )
            version_pk, chosen = row.id, row.semver
            changed = _set_values(conn, model_versions, model_versions.c.id == row.id, row, fields)
        else:
            version_pk, chosen = _insert_version(
                conn, project_id, model, item, fields, wanted_semver
            )
            changed = True
        current = dict(
            conn.execute(
                select(model_version_tags.c.key, model_version_tags.c.value).where(
                    model_version_tags.c.owner == version_pk
                )
            ).all()
        )
        tagged = _upsert_pairs(conn, model_version_tags, {"owner": version_pk}, current, tags)
    return _outcome(row is None, changed or tagged), chosen


def _insert_version(
    conn: Connection,
    project_id: int,
    model: Row[Any],
    item: VersionIn,
    fields: dict[str, object],
    wanted_semver: str | None,
) -> tuple[int, str]:
    model_pk: int = model.id
    try:
        origin = version_service._resolve_source(
            conn, project_id, item.source, item.run_id, item.model_id
        )
    except (InvalidParameter, NotFound):
        # kept as a link only: the files are not stored here (another store, a plain path)
        origin = version_service._Source(item.run_id, item.model_id, None, "")
    highest = conn.execute(
        select(registered_models.c.highest_semver).where(registered_models.c.id == model_pk)
    ).scalar()
    chosen = version_service._next_semver(conn, model_pk, highest, wanted_semver, "patch")
    now = item.creation_time
    package_id = version_service._promote_files(
        conn, project_id, model_pk, item.version, origin, now
    )
    version_pk = conn.execute(
        insert(model_versions)
        .values(
            model_pk=model_pk,
            version=item.version,
            semver=chosen,
            source=item.source,
            run_id=origin.run_id or item.run_id,
            model_id=origin.model_id or item.model_id,
            package_id=package_id,
            deleted=False,
            **fields,
        )
        .returning(model_versions.c.id)
    ).scalar_one()
    conn.execute(
        update(registered_models)
        .where(
            registered_models.c.id == model_pk,
            registered_models.c.next_version <= item.version,
        )
        .values(next_version=item.version + 1)
    )
    model_id = origin.model_id or item.model_id
    if model_id:
        # a logged model that was not imported (another store) stays a link
        with contextlib.suppress(NotFound):
            logged_model_service.record_version(
                conn, project_id, model_id, model.name, item.version
            )
    return int(version_pk), chosen
