"""Schema management: create a new database, upgrade an old one, refuse an outdated one."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, inspect, text

from modelyard.db.engine import Database
from modelyard.errors import ModelyardError

HEAD_REVISION = "0011"
_MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaOutdated(ModelyardError):
    """The database was made by an older modelyard; ``modelyard db upgrade`` brings it up."""


def current_revision(db: Database) -> str | None:
    """The database's Alembic revision, or None for an empty database."""
    with db.engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(db: Database, revision: str = "head") -> None:
    """Apply every pending migration."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with db.engine.connect() as conn:
        if db.is_sqlite:
            # SQLite changes a table by copying it; foreign keys are checked once at the end
            # instead of during the copy (SQLite's documented procedure). The pragma only
            # works outside a transaction: it goes to the driver's connection directly.
            _pragma(conn, "foreign_keys=OFF")
        try:
            with conn.begin():
                config.attributes["connection"] = conn
                command.upgrade(config, revision)
                if db.is_sqlite:
                    _check_foreign_keys(conn)
        finally:
            if db.is_sqlite:
                _pragma(conn, "foreign_keys=ON")


def _pragma(conn: Connection, setting: str) -> None:
    driver = conn.connection.dbapi_connection
    assert driver is not None
    driver.execute(f"PRAGMA {setting}")


def _check_foreign_keys(conn: Connection) -> None:
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise ModelyardError(
            f"The upgrade would leave {len(broken)} rows pointing at missing rows (first: "
            f"{tuple(broken[0])}); nothing was changed."
        )


def ensure_schema(db: Database) -> None:
    """Create the schema of a new database; refuse to run on an outdated one."""
    revision = current_revision(db)
    if revision is None:
        upgrade(db)
        return
    if revision != HEAD_REVISION:
        raise SchemaOutdated(
            f"The database schema is at revision {revision}, this modelyard needs "
            f"{HEAD_REVISION}. Run `modelyard db upgrade` (with the same --data-dir or "
            "--database-url) to upgrade it."
        )
