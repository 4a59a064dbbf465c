"""Model versions: create (the number from a per-model counter, a semver, the files), update,
stage transitions, tags, delete.

Version numbers come from ``registered_models.next_version``, advanced inside the transaction
that inserts the version, so concurrent creations get distinct numbers on SQLite (one writer)
and PostgreSQL (the model's row is read FOR UPDATE, then advanced). A deleted version keeps
its row (``deleted``), so neither its number nor its semver is used again. Promotion: a
version's files are a published package whose files point at the same blobs as its source (the
candidate's or logged model's files); nothing is copied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from modelyard.db.engine import Database
from modelyard.db.schema import (
    logged_models,
    model_version_tags,
    model_versions,
    registered_model_aliases,
    registered_models,
    runs,
)
from modelyard.db.schema import packages as package_rows
from modelyard.errors import AlreadyExists, Conflict, InvalidParameter, NotFound
from modelyard.services import artifacts, limits, packages, registry_events, semver
from modelyard.services import logged_models as logged_model_service
from modelyard.services.aliases import record_alias_event
from modelyard.services.entities import now_ms
from modelyard.services.paths import safe_path
from modelyard.services.registry import (
    _RUNS_SOURCE,
    BY_ID,
    SEMVER_TAG,
    ModelVersion,
    _model_row,
    _touch,
    _version_row,
    _versions,
    model_name,
    stage_name,
    tag,
    version_description,
    version_number,
)

_ARTIFACTS_SOURCE = re.compile(r"^mlflow-artifacts:/+(\d+)/([^/]+)/artifacts(?:/(.*))?$")
_MODEL_SOURCE = re.compile(r"^models:/(m-[0-9a-f]{32})/?$")
_LOGGED_MODEL_ARTIFACTS = re.compile(
    r"^mlflow-artifacts:/+(\d+)/models/(m-[0-9a-f]{32})/artifacts/?$"
)


@dataclass(frozen=True)
class _Source:
    run_id: str | None
    model_id: str | None
    package_id: int | None
    folder: str


def _resolve_source(
    conn: Connection, project_id: int, source: str, run_id: str | None, model_id: str | None
) -> _Source:
    """Check a version's source against MLflow's rules and find the files it names."""
    if "%" in source or ".." in source or "\\" in source:
        safe_path(source.split(":", 1)[-1].lstrip("/") or "x")
    if match := _MODEL_SOURCE.match(source):
        found = match.group(1)
        if model_id and model_id != found:
            raise InvalidParameter(f"The source {source} does not match model_id {model_id}.")
        return _logged_model_source(conn, project_id, found)
    if match := _LOGGED_MODEL_ARTIFACTS.match(source):
        return _logged_model_source(conn, project_id, match.group(2))
    if match := _RUNS_SOURCE.match(source):
        found_run, folder = match.group(1), match.group(2) or ""
        if run_id and run_id != found_run:
            raise InvalidParameter(f"The source {source} does not match run_id {run_id}.")
        return _run_source(conn, project_id, found_run, folder)
    if match := _ARTIFACTS_SOURCE.match(source):
        found_run, folder = match.group(2), match.group(3) or ""
        if run_id and run_id != found_run:
            raise InvalidParameter(
                f"The source {source} lies outside the artifacts of run {run_id}."
            )
        return _run_source(conn, project_id, found_run, folder)
    raise InvalidParameter(
        f"Invalid model version source {source[:300]!r}: modelyard registers files it stores "
        "itself — use runs:/<run id>/<path>, models:/m-<id>, or the mlflow-artifacts: location "
        "of a candidate or logged model of this project (file paths, other servers and cloud "
        "URLs are not accepted)."
    )


_RUN_AND_PACKAGE = (
    select(runs.c.pk, package_rows.c.id)
    .outerjoin(package_rows, package_rows.c.run_pk == runs.c.pk)
    .where(runs.c.id == bindparam("run_id"), runs.c.project_id == bindparam("project_id"))
)
_LOGGED_MODEL = select(logged_models.c.source_run_id).where(
    logged_models.c.id == bindparam("model_id"),
    logged_models.c.project_id == bindparam("project_id"),
)
_SEMVER_TAKEN = select(model_versions.c.id).where(
    model_versions.c.model_pk == bindparam("model_pk"),
    model_versions.c.semver == bindparam("semver"),
)
_SET_HIGHEST = (
    update(registered_models)
    .where(registered_models.c.id == bindparam("model_pk"))
    .values(highest_semver=bindparam("highest"))
)
# The model's counter and highest semver, read from its row (locked on PostgreSQL until the
# version is in; SQLite's writes are serial), advanced by one UPDATE.
_ADVANCE = (
    update(registered_models)
    .where(registered_models.c.id == bindparam("model_pk"))
    .values(
        next_version=bindparam("next"),
        last_updated_time=bindparam("now"),
        highest_semver=bindparam("highest"),
    )
)
_INSERT_VERSION = insert(model_versions).returning(model_versions.c.id)
_INSERT_VERSION_TAG = insert(model_version_tags)


def _run_source(conn: Connection, project_id: int, run_id: str, folder: str) -> _Source:
    folder = safe_path(folder, allow_root=True)
    run = conn.execute(_RUN_AND_PACKAGE, {"run_id": run_id, "project_id": project_id}).first()
    if run is None:
        raise NotFound(f"Run with id={run_id[:64]} not found")
    return _Source(run_id, None, run[1], folder)


def _logged_model_source(conn: Connection, project_id: int, model_id: str) -> _Source:
    model = conn.execute(_LOGGED_MODEL, {"model_id": model_id, "project_id": project_id}).first()
    if model is None:
        raise NotFound(f"Logged model with ID '{model_id}' not found.")
    package = packages.find(
        conn, project_id, model_id, artifacts.LOGGED_MODEL_VERSION, packages.LOGGED_MODEL
    )
    return _Source(model.source_run_id, model_id, package.id if package else None, "")


def _choose_semver(
    conn: Connection, model_pk: int, highest: str | None, wanted: str | None, part: str
) -> tuple[str, str | None]:
    """The new version's semver: the one wanted (if free) or the highest bumped; and the
    model's highest semver after it (kept on its row: versions are never freed, so it never
    goes down)."""
    top = semver.parse(highest) if highest else None
    if wanted:
        chosen = semver.parse(wanted)
        if conn.execute(_SEMVER_TAKEN, {"model_pk": model_pk, "semver": str(chosen)}).first():
            raise AlreadyExists(f"Semantic version {chosen} already exists for this model.")
    else:
        chosen = semver.bump(top, part)
    if top is None or chosen.key() > top.key():
        return str(chosen), str(chosen)
    return str(chosen), highest


def _next_semver(
    conn: Connection, model_pk: int, highest: str | None, wanted: str | None, part: str
) -> str:
    """``_choose_semver``, with the model's highest semver stored."""
    chosen, new_highest = _choose_semver(conn, model_pk, highest, wanted, part)
    if new_highest != highest:
        conn.execute(_SET_HIGHEST, {"model_pk": model_pk, "highest": new_highest})
    return chosen


def create_version(
    db: Database,
    project_id: int,
    name: str | None,
    source: str | None,
    *,
    run_id: str | None = None,
    model_id: str | None = None,
    tags: list[tuple[str, str]] = (),  # type: ignore[assignment]
    run_link: str = "",
    description: str = "",
    semantic_version: str | None = None,
    bump: str = "patch",
    require_files: bool = False,
    from_package: int | None = None,
) -> ModelVersion:
    """A new version of ``name`` whose files are those at ``source`` (or, for an upload, all
    of the package ``from_package``)."""
    name = model_name(name)
    if not source:
        raise InvalidParameter("Missing value for required parameter 'source'.")
    limits.text(source, limits.VERSION_URI, "The version's source")
    run_link = limits.text(run_link, limits.VERSION_URI, "The version's run link")
    description = version_description(description)
    checked = dict(tag(k, v) for k, v in tags)
    wanted = checked.pop(SEMVER_TAG, None) or semantic_version
    now = now_ms()
    with db.write() as conn:
        model = _model_row(conn, project_id, name, lock=True)
        origin = (
            _resolve_source(conn, project_id, source, run_id, model_id)
            if from_package is None
            else _Source(None, None, from_package, "")
        )
        number = model.next_version
        chosen, highest = _choose_semver(conn, model.id, model.highest_semver, wanted, bump)
        conn.execute(
            _ADVANCE, {"model_pk": model.id, "next": number + 1, "now": now, "highest": highest}
        )
        package_id = _promote_files(conn, project_id, model.id, number, origin, now)
        if require_files and package_id is None:
            raise Conflict(f"There are no files at {source} to promote.")
        version_id = conn.execute(
            _INSERT_VERSION,
            {
                "model_pk": model.id,
                "version": number,
                "semver": chosen,
                "source": source,
                "run_id": origin.run_id or run_id,
                "model_id": origin.model_id or model_id,
                "run_link": run_link or "",
                "description": description or "",
                "status": "READY",
                "current_stage": "None",
                "package_id": package_id,
                "deleted": False,
                "creation_time": now,
                "last_updated_time": now,
            },
        ).scalar_one()
        if checked:
            conn.execute(
                _INSERT_VERSION_TAG,
                [{"owner": version_id, "key": k, "value": v} for k, v in checked.items()],
            )
        if origin.model_id or model_id:
            logged_model_service.record_version(
                conn, project_id, origin.model_id or model_id or "", model.name, number
            )
        created = ModelVersion(
            name=model.name,
            version=number,
            semver=chosen,
            creation_time=now,
            last_updated_time=now,
            current_stage="None",
            description=description or "",
            source=source,
            run_id=origin.run_id or run_id or "",
            run_link=run_link or "",
            status="READY",
            model_id=origin.model_id or model_id or "",
            tags=checked,
        )
        registry_events.version_created(conn, project_id, created)
        return created


def _promote_files(
    conn: Connection, project_id: int, model_pk: int, number: int, origin: _Source, now: int
) -> int | None:
    """A published package for the version whose files point at the source's blobs."""
    if origin.package_id is None:
        return None
    package_id = packages.create_published(
        conn, project_id, f"model-{model_pk}", str(number), packages.MODEL_VERSION, now
    )
    if not packages.link_files(conn, origin.package_id, origin.folder, package_id):
        packages.purge_package(conn, package_id)
        return None
    return package_id


def update_version(
    db: Database, project_id: int, name: str | None, version: str | None, description: str
) -> ModelVersion:
    name = model_name(name)
    number = version_number(version)
    description = version_description(description)
    with db.write() as conn:
        model = _model_row(conn, project_id, name)
        row = _version_row(conn, model.id, name, number)
        conn.execute(
            update(model_versions)
            .where(model_versions.c.id == row.id)
            .values(description=description, last_updated_time=now_ms())
        )
        return _versions(conn, BY_ID, (row.id,), {model.id: model.name})[0]


def delete_version(
    db: Database, project_id: int, name: str | None, version: str | None, actor: str
) -> None:
    """Soft: the number and semver stay taken; aliases on it are removed (and recorded)."""
    name = model_name(name)
    number = version_number(version)
    now = now_ms()
    with db.write() as conn:
        model = _model_row(conn, project_id, name)
        row = _version_row(conn, model.id, name, number)
        for (alias,) in conn.execute(
            select(registered_model_aliases.c.alias).where(
                registered_model_aliases.c.model_pk == model.id,
                registered_model_aliases.c.version == number,
            )
        ).all():
            record_alias_event(conn, model.id, alias, number, None, actor, now)
            registry_events.alias_deleted(conn, project_id, model.name, alias)
        conn.execute(
            delete(registered_model_aliases).where(
                registered_model_aliases.c.model_pk == model.id,
                registered_model_aliases.c.version == number,
            )
        )
        conn.execute(delete(model_version_tags).where(model_version_tags.c.owner == row.id))
        conn.execute(
            update(model_versions)
            .where(model_versions.c.id == row.id)
            .values(deleted=True, package_id=None, last_updated_time=now)
        )
        if row.package_id is not None:
            packages.purge_package(conn, row.package_id)
        _touch(conn, model.id, now)


def transition_stage(
    db: Database,
    project_id: int,
    name: str | None,
    version: str | None,
    stage: str | None,
    archive_existing: bool,
) -> ModelVersion:
    name = model_name(name)
    number = version_number(version)
    canonical = stage_name(stage)
    now = now_ms()
    with db.write() as conn:
        model = _model_row(conn, project_id, name)
        row = _version_row(conn, model.id, name, number)
        if archive_existing and canonical in ("Staging", "Production"):
            conn.execute(
                update(model_versions)
                .where(
                    model_versions.c.model_pk == model.id,
                    model_versions.c.current_stage == canonical,
                    model_versions.c.id != row.id,
                    model_versions.c.deleted.is_(False),
                )
                .values(current_stage="Archived", last_updated_time=now)
            )
        conn.execute(
            update(model_versions)
            .where(model_versions.c.id == row.id)
            .values(current_stage=canonical, last_updated_time=now)
        )
        return _versions(conn, BY_ID, (row.id,), {model.id: model.name})[0]


def set_version_tag(
    db: Database,
    project_id: int,
    name: str | None,
    version: str | None,
    key: str | None,
    value: str | None,
) -> None:
    name = model_name(name)
    number = version_number(version)
    key, value = tag(key, value)
    if key == SEMVER_TAG:
        raise InvalidParameter(
            f"The tag {SEMVER_TAG} is the version's semantic version; it cannot change."
        )
    with db.write() as conn:
        model = _model_row(conn, project_id, name)
        row = _version_row(conn, model.id, name, number)
        conn.execute(
            delete(model_version_tags).where(
                model_version_tags.c.owner == row.id, model_version_tags.c.key == key
            )
        )
        conn.execute(insert(model_version_tags).values(owner=row.id, key=key, value=value))
        registry_events.tag_set(conn, project_id, model.name, number, key, value)


def delete_version_tag(
    db: Database, project_id: int, name: str | None, version: str | None, key: str | None
) -> None:
    name = model_name(name)
    number = version_number(version)
    with db.write() as conn:
        model = _model_row(conn, project_id, name)
        row = _version_row(conn, model.id, name, number)
        deleted = conn.execute(
            delete(model_version_tags).where(
                model_version_tags.c.owner == row.id, model_version_tags.c.key == (key or "")
            )
        ).rowcount
        if not deleted:
            raise NotFound(f"No tag with name: {key} in model version {name} {number}.")
        registry_events.tag_deleted(conn, project_id, model.name, number, key or "")
