"""``models pull``, ``models verify`` and ``models upload``: a version's files between the
server and a folder, every byte checked against its sha256."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from modelyard_client import output
from modelyard_client.errors import ClientError
from modelyard_client.http import seg
from modelyard_client.session import connection_options, http, json_option, project_option

DEFAULT_PROJECT = "default"


def register(models: click.Group) -> None:
    models.add_command(pull)
    models.add_command(verify)
    models.add_command(upload)


@click.command()
@click.argument("name")
@click.argument("ref")
@click.argument("dest", required=False, type=click.Path(path_type=Path))
@click.option(
    "--tar",
    "tar_file",
    type=click.Path(path_type=Path),
    help="Write the version's archive (a tar with SHA256SUMS) to this file instead.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Files in flight at once.",
)
@project_option
@json_option
@connection_options
def pull(
    name: str,
    ref: str,
    dest: Path | None,
    tar_file: Path | None,
    workers: int,
    project: str | None,
    as_json: bool,
) -> None:
    """Download version REF of NAME into the new folder DEST, checking every file's sha256.

    REF is a number, a semver (1.4.2), a range (^1.4) or an alias (production). DEST appears
    complete or not at all, with a modelyard.lock.json describing it; an interrupted pull
    resumes where it stopped when run again."""
    from modelyard_client.commands.models import describe
    from modelyard_client.files import entries

    if (dest is None) == (tar_file is None):
        raise click.UsageError("Give DEST (a new folder) or --tar FILE.")
    if dest is not None and (dest.exists() or dest.is_symlink()):
        raise ClientError(f"{dest} already exists: pull writes a new folder; choose another DEST")
    client = http(project)
    version = client.call("GET", f"/models/{seg(name)}/versions/{seg(ref)}")
    resolved = describe(version, ref)
    if output.is_terminal():
        output.note(resolved)
    files = entries(version.get("files", []))
    if tar_file is not None:
        _pull_tar(client, version, files, tar_file, as_json)
        return
    assert dest is not None
    target = dest.absolute()
    from modelyard_client.pull import Pull

    project_name = client.target.project or DEFAULT_PROJECT
    report = Pull(client, version, ref, files, target, project_name, workers).run()
    summary = {
        "resolved": resolved,
        "dest": str(target),
        "model": version["name"],
        "version": version["version"],
        "semver": version.get("semver"),
        "files": report.files,
        "bytes": report.total_bytes,
        "reused_files": report.reused_files,
        "resumed_files": report.resumed_files,
        "lock": report.lock,
    }
    if as_json:
        output.emit_json(summary)
        return
    reused = f", {report.reused_files} kept from an earlier attempt" if report.reused_files else ""
    click.echo(
        f"pulled {resolved}: {report.files} files ({output.size(report.total_bytes)}) into "
        f"{dest}{reused}; every sha256 checked"
    )


def _pull_tar(
    client: Any, version: dict[str, Any], files: list[Any], tar_file: Path, as_json: bool
) -> None:
    from modelyard_client.archive import download_archive

    size = download_archive(client, version, files, tar_file)
    if as_json:
        output.emit_json(
            {
                "tar": str(tar_file),
                "bytes": size,
                "files": len(files),
                "model": version["name"],
                "version": version["version"],
            }
        )
        return
    click.echo(f"wrote {tar_file} ({output.size(size)}, {len(files)} files, every sha256 checked)")


@click.command()
@click.argument("dest", type=click.Path(path_type=Path, file_okay=False))
@json_option
def verify(dest: Path, as_json: bool) -> None:
    """Re-check a pulled folder against its modelyard.lock.json: every file present, of its
    size and sha256, and nothing else."""
    from modelyard_client.files import check_folder

    if not dest.is_dir():
        raise ClientError(f"{dest} is not a folder")
    result = check_folder(dest)
    if as_json:
        output.emit_json(
            {
                "dest": str(dest),
                "clean": result.clean,
                "changed": result.changed,
                "missing": result.missing,
                "unexpected": result.unexpected,
            }
        )
    else:
        for label, items in (
            ("changed", result.changed),
            ("missing", result.missing),
            ("unexpected", result.unexpected),
        ):
            for item in items:
                click.echo(f"{label}: {item}")
    if not result.clean:
        raise ClientError(
            f"{dest} does not match its lock file: {len(result.changed)} changed, "
            f"{len(result.missing)} missing, {len(result.unexpected)} unexpected"
        )
    if not as_json:
        click.echo(f"{dest}: every file matches modelyard.lock.json")


@click.command()
@click.argument("name")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--semver", "semantic_version", help="The version's semver (default: a bump).")
@click.option(
    "--bump", type=click.Choice(["major", "minor", "patch"]), default="patch", show_default=True
)
@click.option("--description", default="")
@click.option(
    "--workers",
    type=click.IntRange(1, 32),
    default=4,
    show_default=True,
    help="Files in flight at once.",
)
@project_option
@json_option
@connection_options
def upload(
    name: str,
    folder: Path,
    semantic_version: str | None,
    bump: str,
    description: str,
    workers: int,
    project: str | None,
    as_json: bool,
) -> None:
    """Make a new version of NAME from the files in FOLDER (a model trained without MLflow).

    Every file goes up with its sha256; the version is created only once all have arrived.
    Run again after an interruption, the upload skips the files already on the server."""
    from modelyard_client.commands.models import describe
    from modelyard_client.upload import Upload

    client = http(project)
    result = Upload(client, name, folder, workers).run(
        semantic_version=semantic_version, bump=bump, description=description
    )
    if as_json:
        output.emit_json(result)
        return
    version = result["version"]
    click.echo(
        f"uploaded: {describe(version)}, {result['files']} files "
        f"({output.size(result['bytes'])}), {result['skipped']} already on the server"
    )
