"""The ``modelyard`` command line. Every command takes the same storage options."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from modelyard.db.migrate import HEAD_REVISION, current_revision, upgrade
from modelyard.errors import ModelyardError
from modelyard.settings import Settings


def storage_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--data-dir and --database-url, shared by every command that touches the data."""

    @click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="Folder for the SQLite database and blobs [env MODELYARD_DATA_DIR; "
        "default ./modelyard-data].",
    )
    @click.option(
        "--database-url",
        default=None,
        help="SQLAlchemy URL, e.g. postgresql+psycopg://host/db [env MODELYARD_DATABASE_URL; "
        "default: SQLite in the data dir].",
    )
    @click.option(
        "--busy-timeout",
        type=float,
        default=None,
        help="Seconds a write waits for a busy SQLite database before a retryable 503 "
        "[env MODELYARD_BUSY_TIMEOUT; 15].",
    )
    @click.option(
        "--blob-store-url",
        default=None,
        help="Where artifact bytes live: a folder or s3://bucket/prefix "
        "[env MODELYARD_BLOB_STORE_URL; default: <data dir>/blobs].",
    )
    @click.option(
        "--s3-endpoint-url",
        default=None,
        help="S3-compatible endpoint, e.g. http://127.0.0.1:8333 [env MODELYARD_S3_ENDPOINT_URL].",
    )
    @click.option(
        "--s3-region", default=None, help="S3 region [env MODELYARD_S3_REGION; us-east-1]."
    )
    @click.option(
        "--s3-access-key-id",
        default=None,
        help="S3 access key id [env MODELYARD_S3_ACCESS_KEY_ID; default: AWS_* settings].",
    )
    @click.option(
        "--s3-secret-access-key",
        default=None,
        help="S3 secret key [env MODELYARD_S3_SECRET_ACCESS_KEY; default: AWS_* settings].",
    )
    @click.option(
        "--s3-presigned/--no-s3-presigned",
        default=None,
        help="Let clients move large files straight to and from the bucket with presigned "
        "URLs [env MODELYARD_S3_PRESIGNED; on].",
    )
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return command(*args, **kwargs)

    return wrapper


@click.group()
@click.version_option(package_name="modelyard")
def main() -> None:
    """modelyard: experiment tracking and model registry for the MLflow client."""


@main.command()
@click.option("--host", default=None, help="Address to listen on [env MODELYARD_HOST; 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [env MODELYARD_PORT; 5000].")
@click.option(
    "--workers", type=int, default=None, help="Server processes [env MODELYARD_WORKERS; 1]."
)
@click.option("--log-level", default=None, help="Log level [env MODELYARD_LOG_LEVEL; warning].")
@storage_options
def server(**options: Any) -> None:
    """Start the server (creating the database on first start)."""
    from modelyard.server import serve

    settings = Settings.load(**options)
    click.echo(
        f"modelyard listening on http://{settings.host}:{settings.port} "
        f"(database: {_describe(settings)})",
        err=True,
    )
    try:
        serve(settings)
    except ModelyardError as exc:
        raise click.ClickException(exc.message) from None


def _describe(settings: Settings) -> str:
    url = settings.effective_database_url
    if "@" in url:
        scheme, _, rest = url.partition("://")
        url = f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


@main.group()
def db() -> None:
    """Manage the database schema."""


@db.command("upgrade")
@storage_options
def db_upgrade(**options: Any) -> None:
    """Create the schema or bring it up to date."""
    settings = Settings.load(**options)
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = settings.database()
    before = current_revision(database)
    upgrade(database)
    click.echo(f"schema upgraded: {before or 'empty'} -> {HEAD_REVISION}")


@db.command("current")
@storage_options
def db_current(**options: Any) -> None:
    """Print the schema revision of the database."""
    settings = Settings.load(**options)
    revision = current_revision(settings.database())
    click.echo(f"{revision or 'empty'} (this modelyard needs {HEAD_REVISION})")
