"""Dialect-specific statements (upserts) behind one function."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert


def insert_for(dialect: str, table: Table) -> Any:
    """An INSERT that supports ``on_conflict_do_nothing`` / ``on_conflict_do_update``."""
    if dialect == "postgresql":
        return pg_insert(table)
    return sqlite_insert(table)


@functools.cache
def driver_sql(sql: str, paramstyle: str) -> str:
    """``sql`` written with ``?`` placeholders, in the driver's own parameter style."""
    return sql if paramstyle == "qmark" else sql.replace("?", "%s")


def driver_rows(conn: Connection, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Run a read on the driver's cursor and return plain tuples.

    For reads of tens of thousands of rows, where SQLAlchemy's result processing costs twice
    the query itself. ``sql`` uses ``?`` placeholders and must contain no other ``?`` or ``%``.
    """
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(driver_sql(sql, conn.dialect.paramstyle), params)
        return list(cursor.fetchall())
    finally:
        cursor.close()
