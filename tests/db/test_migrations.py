"""The migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from modelyard.db.engine import Database
from modelyard.db.migrate import HEAD_REVISION, SchemaOutdated, current_revision, ensure_schema
from modelyard.db.schema import metadata


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
