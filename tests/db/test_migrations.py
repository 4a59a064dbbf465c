"""The migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

import unicodedata

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from modelyard.db.engine import Database
from modelyard.db.migrate import (
    HEAD_REVISION,
    SchemaOutdated,
    current_revision,
    ensure_schema,
    upgrade,
)
from modelyard.db.schema import metadata
from modelyard.errors import ModelyardError


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migrated_schema_matches_declared_tables(make_backend, kind: str) -> None:
    db = Database(make_backend(kind).url)
    ensure_schema(db)
    assert current_revision(db) == HEAD_REVISION
    with db.engine.connect() as conn:
        dialect = conn.dialect.name

        def only_this_dialect(obj, _name, type_, reflected, _other) -> bool:  # type: ignore[no-untyped-def]
            # indexes declared for one dialect only (Index.ddl_if) exist only there
            condition = getattr(obj, "_ddl_if", None)
            if type_ == "index" and not reflected and condition is not None:
                return condition.dialect in (None, dialect)
            return True

        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": only_this_dialect}
        )
        assert compare_metadata(context, metadata) == []
        default = conn.execute(text("SELECT name FROM experiments WHERE id = 0")).scalar()
    assert default == "Default"
    db.dispose()


def test_outdated_schema_is_refused_with_the_command(make_backend) -> None:
    db = Database(make_backend("sqlite").url)
    ensure_schema(db)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    with pytest.raises(SchemaOutdated) as err:
        ensure_schema(db)
    assert "modelyard db upgrade" in err.value.message
    db.dispose()


def _before_name_keys(make_backend, kind: str) -> Database:  # type: ignore[no-untyped-def]
    db = Database(make_backend(kind).url)
    upgrade(db, "0005")
    return db


def _insert(db: Database, *statements: str) -> None:
    with db.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


NFD_CAFE = unicodedata.normalize("NFD", "Café")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_upgrade_gives_existing_names_their_keys(make_backend, kind: str) -> None:
    db = _before_name_keys(make_backend, kind)
    _insert(
        db,
        "INSERT INTO projects (name, created_at) VALUES ('Churn', 1)",
        "INSERT INTO experiments (project_id, name, lifecycle_stage, creation_time, "
        f"last_update_time) VALUES (1, '{NFD_CAFE}', 'active', 1, 1)",
        "INSERT INTO registered_models (project_id, name, description, creation_time, "
        "last_updated_time, next_version) VALUES (1, '\uff26\uff37-Model', '', 1, 1, 2)",
        "INSERT INTO registered_model_aliases (model_pk, alias, version) VALUES (1, 'Champion', 1)",
        "INSERT INTO alias_events (model_pk, alias, from_version, to_version, actor, at) "
        "VALUES (1, 'Champion', NULL, 1, 'someone', 1)",
        "INSERT INTO packages (project_id, name, version, kind, status, created_at) "
        "VALUES (1, 'Weights', '1', 'generic', 'open', 1), "
        "(1, 'model-1', '1', 'model_version', 'published', 1), "
        "(1, 'Model-7', '1', 'generic', 'open', 1)",
    )
    upgrade(db)
    assert current_revision(db) == HEAD_REVISION
    with db.engine.connect() as conn:
        keys = {
            table: sorted(conn.execute(text(f"SELECT {key} FROM {table}")).scalars())
            for table, key in (
                ("projects", "name_key"),
                ("experiments", "name_key"),
                ("registered_models", "name_key"),
                ("registered_model_aliases", "alias_key"),
                ("alias_events", "alias_key"),
                ("packages", "name_key"),
            )
        }
        if kind == "sqlite":
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert keys == {
        "projects": ["churn", "default"],
        "experiments": sorted(["Default", unicodedata.normalize("NFC", "Café")]),
        "registered_models": ["fw-model"],
        "registered_model_aliases": ["champion"],
        "alias_events": ["champion"],
        "packages": ["model-1", "model-7.generic", "weights"],
    }
    # the packages API's names are a namespace of their own now
    _insert(
        db,
        "INSERT INTO packages (project_id, name, name_key, version, kind, status, created_at) "
        "VALUES (1, 'model-1', 'model-1', '1', 'generic', 'open', 1)",
    )
    db.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_upgrade_stops_clearly_when_existing_names_collide(make_backend, kind: str) -> None:
    db = _before_name_keys(make_backend, kind)
    _insert(
        db,
        "INSERT INTO registered_models (project_id, name, description, creation_time, "
        "last_updated_time, next_version) VALUES (1, 'Churn', '', 1, 1, 1), "
        "(1, 'churn', '', 1, 1, 1)",
    )
    with pytest.raises(ModelyardError) as err:
        upgrade(db)
    message = err.value.message
    assert "'Churn'" in message
    assert "'churn'" in message
    assert "modelyard db upgrade" in message
    assert current_revision(db) == "0005"
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM registered_models")).scalar() == 2
    db.dispose()
