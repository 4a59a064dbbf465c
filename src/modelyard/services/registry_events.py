"""The registry's webhook events, in MLflow's payload shapes. Each is queued in the caller's
write transaction (``outbox.emit``), so every way of changing the registry (MLflow's API, the
native API, the UI, the CLI) raises the same events, exactly when the change commits."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection

from modelyard.services import outbox

if TYPE_CHECKING:
    from modelyard.services.registry import ModelVersion

SEMVER_TAG = "modelyard.semver"


def model_created(
    conn: Connection, project_id: int, name: str, tags: dict[str, str], description: str
) -> None:
    data = {"name": name, "tags": tags, "description": description}
    outbox.emit(conn, project_id, "registered_model.created", data)


def version_created(conn: Connection, project_id: int, version: ModelVersion) -> None:
    """The version's tags include its semver, as MLflow's client sees them."""
    tags = dict(version.tags)
    if version.semver:
        tags[SEMVER_TAG] = version.semver
    data = {
        "name": version.name,
        "version": str(version.version),
        "source": version.source,
        "run_id": version.run_id or None,
        "tags": tags,
        "description": version.description or None,
    }
    outbox.emit(conn, project_id, "model_version.created", data)


def tag_set(
    conn: Connection, project_id: int, name: str, number: int, key: str, value: str
) -> None:
    data = {"name": name, "version": str(number), "key": key, "value": value}
    outbox.emit(conn, project_id, "model_version_tag.set", data)


def tag_deleted(conn: Connection, project_id: int, name: str, number: int, key: str) -> None:
    data = {"name": name, "version": str(number), "key": key}
    outbox.emit(conn, project_id, "model_version_tag.deleted", data)


def alias_set(conn: Connection, project_id: int, name: str, alias: str, number: int) -> None:
    """MLflow raises ``model_version_alias.created`` for every set, a move included."""
    data = {"name": name, "alias": alias, "version": str(number)}
    outbox.emit(conn, project_id, "model_version_alias.created", data)


def alias_deleted(conn: Connection, project_id: int, name: str, alias: str) -> None:
    outbox.emit(conn, project_id, "model_version_alias.deleted", {"name": name, "alias": alias})
