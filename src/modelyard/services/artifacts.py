"""MLflow artifact paths mapped onto packages.

The server gives experiment ``E`` the artifact location ``mlflow-artifacts:/E``, so a candidate's
artifacts live under ``E/<run id>/artifacts/…``: that prefix names the candidate's package,
the rest is the file path inside it. A logged model's files live under
``E/models/<model id>/artifacts/…``, in a package of its own (kind ``logged_model``, named by
the model id, version "0"). A model version's files (read-only) live under
``registry/<model key>/<version number>/…``, its published package. Nothing outside a package
can be addressed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, select

from modelyard.db.engine import Database
from modelyard.db.schema import logged_models, runs
from modelyard.db.schema import packages as packages_table
from modelyard.errors import Conflict, InvalidParameter, NotFound
from modelyard.services import packages
from modelyard.services.packages import Package
from modelyard.services.paths import join, safe_path

# A logged model's files are the package named by its id, at this version.
LOGGED_MODEL_VERSION = "0"


@dataclass(frozen=True, slots=True)
class Target:
    """Where an MLflow artifact path points: a package (None while the candidate or logged
    model has no files yet) and the path inside it ("" = its root). ``run_id`` is empty and
    ``model_id`` set for a logged model's files."""

    package: Package | None
    path: str
    run_id: str
    artifact_uri: str
    model_id: str | None = None


def _split(path: str) -> tuple[str, str, str] | None:
    parts = path.split("/", 3)
    if len(parts) >= 3 and parts[2] == "artifacts" and parts[0].isdigit():
        return parts[0], parts[1], parts[3] if len(parts) == 4 else ""
    return None


def _split_model(path: str) -> tuple[str, str, str] | None:
    """``<exp>/models/<model id>/artifacts[/<rest>]`` → (exp, model id, rest)."""
    parts = path.split("/", 4)
    if len(parts) >= 4 and parts[0].isdigit() and parts[1] == "models" and parts[3] == "artifacts":
        return parts[0], parts[2], parts[4] if len(parts) == 5 else ""
    return None


def _package(row: Row[Any]) -> Package | None:
    """The package in a row's columns after the first three (None when the outer join found
    none)."""
    columns: tuple[Any, ...] = tuple(row)[3:]
    return None if columns[0] is None else Package(*columns)


_MODEL_AND_PACKAGE = (
    select(
        logged_models.c.experiment_id,
        logged_models.c.artifact_location,
        logged_models.c.lifecycle_stage,
        packages_table,
    )
    .outerjoin(
        packages_table,
        and_(
            packages_table.c.project_id == logged_models.c.project_id,
            packages_table.c.name == logged_models.c.id,
            packages_table.c.version == LOGGED_MODEL_VERSION,
            packages_table.c.kind == packages.LOGGED_MODEL,
        ),
    )
    .where(
        logged_models.c.id == bindparam("model_id"),
        logged_models.c.project_id == bindparam("project_id"),
    )
)


def _model(
    conn: Connection, project_id: int, experiment: str, model_id: str, *, writing: bool
) -> tuple[str, Package | None]:
    """The logged model's artifact location and package (None before its first file). Its
    files stay readable after the model is deleted; writing needs an active model."""
    row = conn.execute(_MODEL_AND_PACKAGE, {"model_id": model_id, "project_id": project_id}).first()
    if (
        row is None
        or str(row.experiment_id) != experiment
        or (writing and row.lifecycle_stage != "active")
    ):
        raise NotFound(
            f"Logged model '{model_id[:64]}' of experiment '{experiment[:20]}' not found."
        )
    package = _package(row)
    return row.artifact_location, package


def _model_target(
    db: Database, project_id: int, experiment: str, model_id: str, inner: str
) -> Target:
    with db.read() as conn:
        uri, package = _model(conn, project_id, experiment, model_id, writing=False)
    return Target(package, inner, "", uri, model_id)


def _model_target_for_write(
    db: Database, project_id: int, experiment: str, model_id: str, inner: str
) -> Target:
    with db.read() as conn:
        uri, package = _model(conn, project_id, experiment, model_id, writing=True)
    if package is None:
        with db.write() as conn:  # the model's first file: create its package
            uri, package = _model(conn, project_id, experiment, model_id, writing=True)
            package = package or packages.ensure(
                conn,
                project_id,
                model_id,
                LOGGED_MODEL_VERSION,
                kind=packages.LOGGED_MODEL,
            )
    return Target(package, inner, "", uri, model_id)


_RUN_AND_PACKAGE = (
    select(runs.c.pk, runs.c.experiment_id, runs.c.artifact_uri, packages_table)
    .outerjoin(packages_table, packages_table.c.run_pk == runs.c.pk)
    .where(runs.c.id == bindparam("run_id"), runs.c.project_id == bindparam("project_id"))
)


def _run(
    conn: Connection, project_id: int, experiment: str | None, run_id: str
) -> tuple[int, str, Package | None]:
    """The candidate's key, artifact URI and package (None before its first file)."""
    row = conn.execute(_RUN_AND_PACKAGE, {"run_id": run_id, "project_id": project_id}).first()
    if row is None or (experiment is not None and str(row.experiment_id) != experiment):
        if experiment is None:
            raise NotFound(f"Run with id={run_id[:64]} not found")
        raise NotFound(f"Run '{run_id[:64]}' of experiment '{experiment[:20]}' not found.")
    package = _package(row)
    return row.pk, row.artifact_uri or "", package


REGISTRY_ROOT = "registry"


def version_location(model_pk: int, number: int) -> str:
    """The artifact URI of a model version's (immutable) files."""
    return f"mlflow-artifacts:/{REGISTRY_ROOT}/{model_pk}/{number}"


def _version_target(db: Database, project_id: int, path: str) -> Target | None:
    parts = path.split("/", 3)
    if len(parts) < 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    with db.read() as conn:
        package = packages.find(
            conn, project_id, f"model-{parts[1]}", parts[2], packages.MODEL_VERSION
        )
    if package is None:
        raise NotFound(f"No such model version files: '{path[:200]}'")
    return Target(package, parts[3] if len(parts) == 4 else "", "", "")


def locate(db: Database, project_id: int, raw_path: str, allow_root: bool = True) -> Target | None:
    """The target of a path to read; None when the path lies above any package."""
    path = safe_path(raw_path, allow_root=allow_root)
    if path.startswith(REGISTRY_ROOT + "/"):
        return _version_target(db, project_id, path)
    model = _split_model(path)
    if model is not None:
        return _model_target(db, project_id, *model)
    split = _split(path)
    if split is None:
        return None
    experiment, run_id, inner = split
    with db.read() as conn:
        _run_pk, uri, package = _run(conn, project_id, experiment, run_id)
    return Target(package, inner, run_id, uri)


def locate_for_write(db: Database, project_id: int, raw_path: str) -> Target:
    """The target of a path to write, creating the candidate's package on first use."""
    path = safe_path(raw_path)
    if path.startswith(REGISTRY_ROOT + "/"):
        raise Conflict("A model version's files are immutable.")
    model = _split_model(path)
    if model is not None:
        if not model[2]:
            raise InvalidParameter("Cannot write to the artifact root folder itself.")
        return _model_target_for_write(db, project_id, *model)
    split = _split(path)
    if split is None:
        raise InvalidParameter(
            f"Cannot write '{path[:300]}': artifacts are written under "
            "<experiment id>/<run id>/artifacts/ or <experiment id>/models/<model id>/artifacts/."
        )
    experiment, run_id, inner = split
    if not inner:
        raise InvalidParameter("Cannot write to the artifact root folder itself.")
    with db.read() as conn:
        run_pk, uri, package = _run(conn, project_id, experiment, run_id)
    if package is not None:
        return Target(package, inner, run_id, uri)
    with db.write() as conn:  # the candidate's first file: create its package
        run_pk, uri, package = _run(conn, project_id, experiment, run_id)
        package = package or packages.ensure(
            conn,
            project_id,
            run_id,
            packages.CANDIDATE_VERSION,
            kind=packages.CANDIDATE,
            run_pk=run_pk,
        )
    return Target(package, inner, run_id, uri)


def run_target(db: Database, project_id: int, run_id: str, raw_path: str) -> Target:
    """A path inside a candidate's artifacts, by run id (for ``artifacts/list``)."""
    inner = safe_path(raw_path, allow_root=True)
    with db.read() as conn:
        _run_pk, uri, package = _run(conn, project_id, None, run_id)
    return Target(package, inner, run_id, uri)


def run_target_for_write(db: Database, project_id: int, run_id: str, raw_path: str) -> Target:
    """A file to write inside a candidate's artifacts, by run id (the web UI's upload)."""
    inner = safe_path(raw_path)
    with db.read() as conn:
        experiment = conn.execute(
            select(runs.c.experiment_id).where(runs.c.id == run_id, runs.c.project_id == project_id)
        ).scalar()
    if experiment is None:
        raise NotFound(f"Run with id={run_id[:64]} not found")
    return locate_for_write(db, project_id, f"{experiment}/{run_id}/artifacts/{inner}")


def model_target(db: Database, project_id: int, model_id: str, raw_path: str) -> Target:
    """A path inside a logged model's files, by model id; a deleted model is not found."""
    inner = safe_path(raw_path, allow_root=True)
    with db.read() as conn:
        row = conn.execute(
            _MODEL_AND_PACKAGE, {"model_id": model_id, "project_id": project_id}
        ).first()
    if row is None or row.lifecycle_stage != "active":
        raise NotFound(f"Logged model with ID '{model_id[:100]}' not found.")
    package = _package(row)
    return Target(package, inner, "", row.artifact_location, model_id)


__all__ = [
    "LOGGED_MODEL_VERSION",
    "Target",
    "join",
    "locate",
    "locate_for_write",
    "model_target",
    "run_target",
    "run_target_for_write",
    "version_location",
]
