"""Promotion (a candidate or logged model becomes a model version), resolving a version by
number, semver, range or alias, and the lineage of a version."""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import select

from modelyard.db.engine import Database
from modelyard.db.schema import (
    experiments,
    logged_models,
    run_tags,
    runs,
)
from modelyard.errors import AlreadyExists, Conflict, InvalidParameter, NotFound
from modelyard.services import aliases, packages, semver, uploads
from modelyard.services.aliases import alias_history
from modelyard.services.model_versions import create_version
from modelyard.services.paths import safe_path
from modelyard.services.registry import (
    ModelVersion,
    _model_row,
    _version_row,
    create_model,
    delete_model,
    get_version,
    model_name,
)


def promote(
    db: Database,
    project_id: int,
    name: str | None,
    *,
    candidate: str | None = None,
    path: str = "model",
    logged_model: str | None = None,
    semantic_version: str | None = None,
    bump: str = "patch",
    description: str = "",
) -> ModelVersion:
    """Promote a candidate's folder (or a logged model) into a new version of ``name``,
    creating the model on first use. The version's files are the source's blobs."""
    if bool(candidate) == bool(logged_model):
        raise InvalidParameter("Promote exactly one of a candidate or a logged model.")
    if semantic_version:
        semver.parse(semantic_version)
    if bump not in semver.BUMPS:
        raise InvalidParameter(f"Invalid bump {bump!r}: use one of {', '.join(semver.BUMPS)}.")
    if logged_model:
        _require_logged_model(db, project_id, logged_model)
    name = model_name(name)
    created = False
    with contextlib.suppress(AlreadyExists):
        create_model(db, project_id, name, [], "")
        created = True
    if candidate:
        source = f"runs:/{candidate}/{safe_path(path, allow_root=True)}".rstrip("/")
    else:
        source = f"models:/{logged_model}"
    try:
        return create_version(
            db,
            project_id,
            name,
            source,
            description=description,
            semantic_version=semantic_version,
            bump=bump,
            require_files=True,
            run_id=candidate,
            model_id=logged_model,
        )
    except Exception:
        if created:  # a failed first promotion leaves no empty model behind
            delete_model(db, project_id, name)
        raise


def _require_logged_model(db: Database, project_id: int, model_id: str) -> None:
    with db.read() as conn:
        found = conn.execute(
            select(logged_models.c.id).where(
                logged_models.c.id == model_id, logged_models.c.project_id == project_id
            )
        ).first()
    if found is None:
        raise NotFound(f"Logged model {model_id[:100]!r} does not exist in this project.")


UPLOADED_BY = "modelyard.uploaded_by"
UPLOAD_CLIENT = "modelyard.upload_client"


def promote_upload(
    db: Database,
    project_id: int,
    name: str | None,
    *,
    package: str,
    package_version: str,
    files: list[tuple[str, str]],
    uploaded_by: str,
    client: str,
    semantic_version: str | None = None,
    bump: str = "patch",
    description: str = "",
) -> ModelVersion:
    """Turn an uploaded staging package into a new version of ``name``, once it holds exactly
    the ``files`` (path, sha256) the uploader announced; the staging package is then removed.
    The version's lineage records who uploaded it and with which client."""
    if semantic_version:
        semver.parse(semantic_version)
    if bump not in semver.BUMPS:
        raise InvalidParameter(f"Invalid bump {bump!r}: use one of {', '.join(semver.BUMPS)}.")
    staged = uploads.staging(db, project_id, package, package_version)
    held = {(f.path, f.sha256) for f in packages.files(db, staged.id)}
    if not files or held != set(files):
        missing = len(set(files) - held)
        raise Conflict(
            f"The upload is incomplete: {missing} of {len(files)} announced files have not "
            f"arrived in package {package!r} (and {len(held - set(files))} others are there); "
            "send them, then create the version."
        )
    name = model_name(name)
    created = False
    with contextlib.suppress(AlreadyExists):
        create_model(db, project_id, name, [], "")
        created = True
    tags = [(UPLOADED_BY, uploaded_by[:500]), (UPLOAD_CLIENT, client[:500])]
    try:
        version = create_version(
            db,
            project_id,
            name,
            f"upload:{package}",
            tags=tags,
            description=description,
            semantic_version=semantic_version,
            bump=bump,
            require_files=True,
            from_package=staged.id,
        )
    except Exception:
        if created:
            delete_model(db, project_id, name)
        raise
    packages.delete_package(db, staged)
    return version


def resolve_version(db: Database, project_id: int, name: str | None, ref: str) -> ModelVersion:
    """A version by number (``3``), semver or range (``1.4.0``, ``^1.4``, ``~2.0``) or alias."""
    if ref.isdigit():
        return get_version(db, project_id, name, ref)
    found = aliases.lookup(db, project_id, name, ref)
    if found is None:
        raise NotFound(f"No version of {name} matches {ref!r}.")
    return found


def version_package(db: Database, project_id: int, name: str, number: int) -> int | None:
    with db.read() as conn:
        model = _model_row(conn, project_id, name)
        return _version_row(conn, model.id, name, number).package_id  # type: ignore[no-any-return]


LINEAGE_TAGS = ("mlflow.source.git.commit", "mlflow.source.git.branch", "mlflow.source.name")
CI_PREFIXES = ("ci.", "gitlab.", "github.")


def lineage(db: Database, project_id: int, version: ModelVersion) -> dict[str, Any]:
    """Where a version came from: candidate, experiment, logged model, commit and CI tags."""
    out: dict[str, Any] = {"source": version.source, "logged_model_id": version.model_id or None}
    if UPLOADED_BY in version.tags:
        out["upload"] = {"by": version.tags[UPLOADED_BY], "client": version.tags.get(UPLOAD_CLIENT)}
    if not version.run_id:
        return out
    with db.read() as conn:
        run = conn.execute(
            select(runs.c.pk, runs.c.id, runs.c.name, runs.c.experiment_id, experiments.c.name)
            .join(experiments, experiments.c.id == runs.c.experiment_id)
            .where(runs.c.id == version.run_id, runs.c.project_id == project_id)
        ).first()
        if run is None:
            return out
        tags = dict(
            conn.execute(
                select(run_tags.c.key, run_tags.c.value).where(run_tags.c.run_pk == run.pk)
            ).all()
        )
    out["candidate"] = {"run_id": run.id, "name": run.name}
    out["experiment"] = {"experiment_id": str(run.experiment_id), "name": run[4]}
    out["commit"] = tags.get("mlflow.source.git.commit")
    out["source_tags"] = {k: v for k, v in tags.items() if k in LINEAGE_TAGS}
    out["ci"] = {k: v for k, v in tags.items() if k.startswith(CI_PREFIXES)}
    return out


def alias_at(db: Database, project_id: int, name: str | None, alias: str, at_ms: int) -> int | None:
    """The version the alias pointed at, at time ``at_ms`` (None: it did not exist then)."""
    events = [e for e in alias_history(db, project_id, name, alias) if e["at"] <= at_ms]
    return events[-1]["to_version"] if events else None
