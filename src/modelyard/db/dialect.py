"""Dialect-specific statements (upserts) behind one function, and the driver-level helpers of
the hot paths."""

from __future__ import annotations

import functools
from collections.abc import Iterable
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


_QUOTED = str.maketrans({"\\": "\\\\", '"': '\\"'})


def pg_array(values: Iterable[Any], element: str) -> str:
    """A PostgreSQL array literal of ``values``, for a parameter cast to ``element[]``
    (``int``, ``bigint``, ``smallint``, ``float8``, ``bool`` or ``text``; None is NULL in text).

    For columns of thousands of values: the driver's own list adapter spends about 1.3 us of
    Python per element, these joins about a sixth of that, and PostgreSQL reads the literal
    in C. Numbers are written with ``repr``, which gives back the same double when read (so
    does PostgreSQL's reader); ``inf`` and ``-inf`` are read as infinities."""
    if element == "bool":
        body = ",".join(["t" if v else "f" for v in values])
    elif element == "text":  # (a column of text repeats a few values: each is quoted once)
        values = list(values)
        quoted = {v: "NULL" if v is None else '"' + v.translate(_QUOTED) + '"' for v in set(values)}
        body = ",".join(map(quoted.__getitem__, values))
    else:
        body = ",".join(map(repr, values))
    return "{" + body + "}"
