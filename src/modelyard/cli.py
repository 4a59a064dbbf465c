"""The server's commands of ``modelyard``: ``server``, ``db``, ``gc``, ``fsck`` (and ``admin``
in ``cli_admin``). The client distribution owns the ``modelyard`` command and finds these
through the ``modelyard.commands`` entry points. Every command takes the same storage options,
and every storage failure (a bad URL, a missing database, a folder that cannot be written)
ends as one line."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from modelyard.db.migrate import HEAD_REVISION, current_revision, upgrade
from modelyard.errors import ModelyardError
from modelyard.settings import Settings

T = TypeVar("T")


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


class StorageCommand(click.Command):
    """A command whose storage failures become one clear line."""

    def invoke(self, ctx: click.Context) -> Any:
        from modelyard.storage_errors import explained

        with explained():
            return super().invoke(ctx)


class StorageGroup(click.Group):
    command_class = StorageCommand


@click.command(cls=StorageCommand)
@click.option("--host", default=None, help="Address to listen on [env MODELYARD_HOST; 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [env MODELYARD_PORT; 5000].")
@click.option(
    "--workers", type=int, default=None, help="Server processes [env MODELYARD_WORKERS; 1]."
)
@click.option("--log-level", default=None, help="Log level [env MODELYARD_LOG_LEVEL; warning].")
@click.option(
    "--auth/--no-auth",
    default=None,
    help="Require a token or a signed-in session on every request [env MODELYARD_AUTH; off, "
    "which is allowed only on a loopback address].",
)
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    default=None,
    help="Serve a non-loopback address without authentication (anyone reaching the port can "
    "read and change everything) [env MODELYARD_INSECURE_NO_AUTH].",
)
@click.option(
    "--allowed-hosts",
    default=None,
    help="Comma-separated extra host names to answer to; '*' for any "
    "[env MODELYARD_ALLOWED_HOSTS].",
)
@click.option(
    "--webhook-allow-private",
    is_flag=True,
    default=None,
    help="Let webhooks reach loopback, private and metadata addresses "
    "[env MODELYARD_WEBHOOK_ALLOW_PRIVATE; off].",
)
@click.option(
    "--webhook-retry-hours",
    type=float,
    default=None,
    help="Hours a webhook delivery is retried before it is given up "
    "[env MODELYARD_WEBHOOK_RETRY_HOURS; 24].",
)
@click.option(
    "--webhook-disable-after-hours",
    type=float,
    default=None,
    help="Hours of failed deliveries after which a webhook is disabled "
    "[env MODELYARD_WEBHOOK_DISABLE_AFTER_HOURS; 72].",
)
@click.option(
    "--webhook-retention-days",
    type=float,
    default=None,
    help="Days delivered and given-up webhook deliveries are kept (0: forever) "
    "[env MODELYARD_WEBHOOK_RETENTION_DAYS; 30].",
)
@click.option(
    "--webhook-senders",
    type=int,
    default=None,
    help="Deliveries each server process sends at once [env MODELYARD_WEBHOOK_SENDERS; 4].",
)
@click.option(
    "--header-timeout",
    type=float,
    default=None,
    help="Seconds a client has to send a request's headers; then 408 "
    "[env MODELYARD_HEADER_TIMEOUT; 20; 0: no limit].",
)
@click.option(
    "--body-timeout",
    type=float,
    default=None,
    help="Seconds a request body may stall before 408 [env MODELYARD_BODY_TIMEOUT; 60; 0: no "
    "limit].",
)
@click.option(
    "--max-upload-mib",
    type=int,
    default=None,
    help="Largest request body in MiB; larger ones get 413 [env MODELYARD_MAX_UPLOAD_MIB; "
    "51200; 0: no limit].",
)
@click.option(
    "--project-quota-mib",
    type=int,
    default=None,
    help="Storage quota of every project in MiB; uploads over it get 413 "
    "[env MODELYARD_PROJECT_QUOTA_MIB; 0: none].",
)
@storage_options
def server(**options: Any) -> None:
    """Start the server (creating the database on first start)."""
    from modelyard.server import serve

    settings = Settings.load(**options)
    try:
        settings.check_exposure()
    except ModelyardError as exc:
        raise click.ClickException(exc.message) from None
    _preflight(settings)
    click.echo(
        f"modelyard listening on http://{settings.host}:{settings.port} "
        f"(database: {_describe(settings)}; authentication: {'on' if settings.auth else 'off'})",
        err=True,
    )
    try:
        serve(settings)
    except ModelyardError as exc:
        raise click.ClickException(exc.message) from None


def _preflight(settings: Settings) -> None:
    """Open the storage (creating the schema on first start) before saying the server is
    listening, so a storage problem is the only line printed."""
    from modelyard.db.migrate import ensure_schema

    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = settings.database()
    try:
        ensure_schema(database)
    finally:
        database.dispose()


def _describe(settings: Settings) -> str:
    url = settings.effective_database_url
    if "@" in url:
        scheme, _, rest = url.partition("://")
        url = f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


@click.group(cls=StorageGroup)
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
    try:
        upgrade(database)
    except ModelyardError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"schema upgraded: {before or 'empty'} -> {HEAD_REVISION}")


@db.command("current")
@storage_options
def db_current(**options: Any) -> None:
    """Print the schema revision of the database."""
    settings = Settings.load(**options)
    revision = current_revision(settings.database())
    click.echo(f"{revision or 'empty'} (this modelyard needs {HEAD_REVISION})")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: str) -> float:
    """Seconds from ``90``, ``30s``, ``10m``, ``2h`` or ``7d``."""
    text = value.strip().lower()
    unit = _UNITS.get(text[-1:], 0) if text else 0
    number = text[:-1] if unit else text
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a duration like 90, 30s, 10m, 2h or 7d"
        ) from None
    if seconds < 0:
        raise click.BadParameter("a duration cannot be negative")
    return seconds


def _open_storage(options: dict[str, Any]) -> tuple[Settings, Any, Any]:
    from modelyard.blobs import open_blob_store
    from modelyard.db.migrate import ensure_schema

    settings = Settings.load(**options)
    database = settings.database()
    try:
        ensure_schema(database)
    except ModelyardError as exc:
        raise click.ClickException(exc.message) from None
    return settings, database, open_blob_store(settings)


def _progress(items: Sequence[T], label: str, /) -> Iterable[T]:
    """Items as they are worked through, with a progress bar on standard error."""
    if not items:
        return items
    return _bar(items, label)


def _bar(items: Sequence[T], label: str) -> Iterator[T]:
    bar: Any = click.progressbar(items, label=label, file=sys.stderr)
    with bar:
        yield from bar


def _mib(size: int) -> str:
    return f"{size / 1048576:,.1f} MiB"


@click.command(cls=StorageCommand)
@click.option(
    "--older-than",
    default="7d",
    show_default=True,
    help="Purge candidates deleted longer ago than this (90, 30s, 10m, 2h, 7d).",
)
@click.option(
    "--orphan-grace",
    default="1h",
    show_default=True,
    help="Leave unreferenced bytes and open multipart uploads younger than this alone "
    "(uploads in flight).",
)
@click.option("--dry-run", is_flag=True, help="Report what would be removed; remove nothing.")
@storage_options
def gc(older_than: str, orphan_grace: str, dry_run: bool, **options: Any) -> None:
    """Remove blobs nothing refers to: deleted candidates past the grace period, aborted
    uploads, bytes left by crashes."""
    from modelyard.services import gc as collector

    _settings, database, store = _open_storage(options)
    report = collector.collect(
        database,
        store,
        older_than=_duration(older_than),
        orphan_grace=_duration(orphan_grace),
        dry_run=dry_run,
        progress=_progress,
    )
    verb = "would remove" if dry_run else "removed"
    click.echo(
        f"{verb}: {report.purged_projects} deleted projects, {report.purged_runs} deleted "
        f"candidates, {report.purged_logged_models} "
        f"deleted logged models, {report.expired_uploads} open "
        f"uploads, {report.deleted_blobs} unreferenced blobs ({_mib(report.freed_bytes)}), "
        f"{report.orphans} orphaned objects ({_mib(report.orphan_bytes)})"
    )


@click.command(cls=StorageCommand)
@storage_options
def fsck(**options: Any) -> None:
    """Re-hash every blob; report rows without bytes, bytes without rows and bad checksums.
    Exits with status 1 when anything is wrong."""
    from modelyard.services import gc as collector

    _settings, database, store = _open_storage(options)
    report = collector.check(database, store, progress=_progress)
    click.echo(f"checked {report.blobs_checked} blobs ({_mib(report.bytes_checked)})")
    problems = [
        ("rows without bytes", report.missing),
        ("wrong size or checksum", report.corrupt),
        ("bytes without rows (run `modelyard gc`)", report.unreferenced),
        ("reference counts that disagree with the files", report.wrong_refs),
        ("links or other things that do not belong in the store (remove them)", report.unsafe),
    ]
    for label, items in problems:
        if items:
            click.echo(f"{label}: {len(items)}")
            for item in items[:50]:
                click.echo(f"  {item}")
    if not report.clean:
        raise SystemExit(1)
    click.echo("clean")


def open_database(options: dict[str, Any]) -> Any:
    """The metadata database alone (the admin commands need no blob store)."""
    from modelyard.db.migrate import ensure_schema

    settings = Settings.load(**options)
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = settings.database()
    try:
        ensure_schema(database)
    except ModelyardError as exc:
        raise click.ClickException(exc.message) from None
    return database
