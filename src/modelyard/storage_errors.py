"""Storage failures of the server's commands, each explained in one line that names the fix:
a database URL that cannot be parsed, a database that does not exist or does not answer, a
data folder that cannot be written."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import click

from modelyard.errors import ModelyardError

URL_HINT = (
    "use e.g. postgresql+psycopg://user@host:5432/modelyard or sqlite:////srv/modelyard/"
    "modelyard.db (--database-url, MODELYARD_DATABASE_URL)"
)
_MISSING_DB = re.compile(r'database "([^"]+)" does not exist')


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _database_failure(exc: BaseException) -> str:
    message = _first_line(exc)
    if missing := _MISSING_DB.search(message):
        name = missing.group(1)
        return (
            f"the database {name!r} does not exist: create it (createdb {name}) or fix "
            "--database-url"
        )
    if "unable to open database file" in message:
        return (
            "cannot open the SQLite database file: the data folder must exist and be writable "
            "by this user (--data-dir, MODELYARD_DATA_DIR)"
        )
    if "Connection refused" in message or "could not connect" in message.lower():
        return (
            f"cannot connect to the database ({message}): is it running, and is "
            "--database-url right?"
        )
    if "authentication failed" in message or "password" in message:
        return (
            f"the database refused the login ({message}): check the user and password in "
            "--database-url"
        )
    return f"the database failed: {message}"


@contextlib.contextmanager
def explained() -> Iterator[None]:
    """Turn storage failures into one-line command errors."""
    from sqlalchemy import exc as sa

    try:
        yield
    except ModelyardError as exc:
        raise click.ClickException(exc.message) from None
    except (sa.ArgumentError, sa.NoSuchModuleError) as exc:
        raise click.ClickException(
            f"invalid database URL ({_first_line(exc)}): {URL_HINT}"
        ) from None
    except (sa.OperationalError, sa.InterfaceError) as exc:
        raise click.ClickException(_database_failure(exc)) from None
    except PermissionError as exc:
        raise click.ClickException(
            f"cannot write {exc.filename or 'the data folder'} ({exc.strerror}): choose a "
            "--data-dir this user can write (MODELYARD_DATA_DIR)"
        ) from None
    except OSError as exc:
        if exc.filename is None:
            raise
        raise click.ClickException(f"cannot use {exc.filename}: {exc.strerror}") from None
