"""Aliases: movable names for versions, every move recorded; semver references (``v1_4_0``,
``v1_4``, ``v1``) answer where no alias of that name is set."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select

from modelyard.db.engine import Database
from modelyard.db.schema import alias_events, registered_model_aliases
from modelyard.errors import NotFound
from modelyard.services import registry_events, semver
from modelyard.services.entities import now_ms
from modelyard.services.registry import (
    BY_MODEL,
    BY_NUMBER,
    ModelVersion,
    _model_row,
    _touch,
    _version_row,
    _versions,
    alias_key,
    alias_name,
    model_name,
    version_number,
)

_SAME_ALIAS = (
    registered_model_aliases.c.model_pk == bindparam("model_pk"),
    registered_model_aliases.c.alias_key == bindparam("key"),
)
_ALIAS = select(registered_model_aliases).where(*_SAME_ALIAS)
_ALIAS_VERSION = select(registered_model_aliases.c.version).where(*_SAME_ALIAS)
_DELETE_ALIAS = delete(registered_model_aliases).where(*_SAME_ALIAS)


def set_alias(
    db: Database,
    project_id: int,
    name: str | None,
    alias: str | None,
    version: str | None,
    actor: str,
) -> None:
    name = model_name(name)
    alias = alias_name(alias)
    number = version_number(version)
    now = now_ms()
    with db.write() as conn:
        model = _model_row(conn, project_id, name)
        _version_row(conn, model.id, name, number)
        key = alias_key(alias)
        before = conn.execute(_ALIAS_VERSION, {"model_pk": model.id, "key": key}).scalar()
        registry_events.alias_set(conn, project_id, model.name, alias, number)
        if before == number:
            return
        conn.execute(_DELETE_ALIAS, {"model_pk": model.id, "key": key})
        conn.execute(
            insert(registered_model_aliases).values(
                model_pk=model.id, alias=alias, alias_key=key, version=number
            )
        )
        record_alias_event(conn, model.id, alias, before, number, actor, now)
        _touch(conn, model.id, now)


def delete_alias(
    db: Database, project_id: int, name: str | None, alias: str | None, actor: str
) -> None:
    name = model_name(name)
    now = now_ms()
    with db.write() as conn:
        model = _model_row(conn, project_id, name)
        key = {"model_pk": model.id, "key": alias_key(alias or "")}
        found = conn.execute(_ALIAS, key).first()
        if found is None:
            raise NotFound(f"Registered model alias {alias} not found.")
        conn.execute(_DELETE_ALIAS, key)
        record_alias_event(conn, model.id, found.alias, found.version, None, actor, now)
        registry_events.alias_deleted(conn, project_id, model.name, found.alias)
        _touch(conn, model.id, now)


def version_by_alias(
    db: Database, project_id: int, name: str | None, alias: str | None
) -> ModelVersion:
    """An alias set on the model, or a semver reference (``v1_4_0``, ``v1_4``, ``v1``)."""
    found = lookup(db, project_id, name, alias or "")
    if found is None:
        raise NotFound(f"Registered model alias {alias} not found.")
    return found


def lookup(db: Database, project_id: int, name: str | None, ref: str) -> ModelVersion | None:
    """The version an alias set on the model names, else the one a semver reference names
    (None when neither matches; a missing model is an error)."""
    name = model_name(name)
    with db.read() as conn:
        model = _model_row(conn, project_id, name)
        key = {"model_pk": model.id, "key": alias_key(ref)}
        number = conn.execute(_ALIAS_VERSION, key).scalar()
        if number is not None:
            return _versions(conn, BY_NUMBER, (model.id, number), {model.id: model.name})[0]
        versions = _versions(conn, BY_MODEL, (model.id,), {model.id: model.name})
    return resolve_semver(versions, ref)


def resolve_semver(versions: list[ModelVersion], reference: str) -> ModelVersion | None:
    """The version a semver alias (``v1_4_0``), range alias (``v1_4``) or spec names."""
    kind, exact, spec = semver.from_alias(reference)
    if kind == "none":
        if not reference or reference[0] not in "^~0123456789":
            return None
        spec = reference
    candidates = [(semver.parse(v.semver), v) for v in versions if v.semver]
    if kind == "exact":
        assert exact is not None
        return next((v for s, v in candidates if s.key() == exact.key()), None)
    assert spec is not None
    chosen = [(s, v) for s, v in candidates if semver.matches(s, spec)]
    return max(chosen, key=lambda pair: pair[0].key())[1] if chosen else None


def alias_history(
    db: Database, project_id: int, name: str | None, alias: str | None = None
) -> list[dict[str, Any]]:
    name = model_name(name)
    with db.read() as conn:
        model = _model_row(conn, project_id, name)
        query = (
            select(alias_events)
            .where(alias_events.c.model_pk == model.id)
            .order_by(alias_events.c.at, alias_events.c.id)
        )
        if alias:
            query = query.where(alias_events.c.alias_key == alias_key(alias))
        return [
            {
                "alias": r.alias,
                "from_version": r.from_version,
                "to_version": r.to_version,
                "actor": r.actor,
                "at": r.at,
            }
            for r in conn.execute(query)
        ]


def record_alias_event(
    conn: Connection,
    model_pk: int,
    alias: str,
    before: int | None,
    after: int | None,
    actor: str,
    at: int,
) -> None:
    conn.execute(
        insert(alias_events).values(
            model_pk=model_pk,
            alias=alias,
            alias_key=alias_key(alias),
            from_version=before,
            to_version=after,
            actor=actor,
            at=at,
        )
    )
