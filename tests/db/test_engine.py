"""The database handle turns what a request can cause into domain errors, never a 500."""

from __future__ import annotations

import pytest
from sqlalchemy import insert

from modelyard.db.engine import Database
from modelyard.db.migrate import ensure_schema
from modelyard.db.schema import projects, users
from modelyard.errors import Conflict, InvalidParameter


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_unique_violation_no_service_foresaw_is_a_conflict(make_backend, kind: str) -> None:
    db = Database(make_backend(kind).url)
    ensure_schema(db)
    with pytest.raises(Conflict) as err, db.write() as conn:
        conn.execute(insert(projects).values(name="Default", name_key="default", created_at=1))
    assert "nothing was changed" in err.value.message
    with db.read() as conn:
        assert conn.execute(projects.select()).all()[0].name == "default"
    db.dispose()


def test_a_value_too_long_for_its_column_is_invalid(make_backend) -> None:  # type: ignore[no-untyped-def]
    db = Database(make_backend("postgresql").url)
    ensure_schema(db)
    with pytest.raises(InvalidParameter), db.write() as conn:
        conn.execute(
            insert(users).values(name="x" * 65, is_admin=False, disabled=False, created_at=1)
        )
    db.dispose()
