"""``modelyard export mlflow``: a project's history into an MLflow server, through MLflow's REST
API on both sides."""

from __future__ import annotations

import os
import re
from pathlib import Path

import click

from modelyard_client import output
from modelyard_client.config import Target, _basic, _split, _tls_verify
from modelyard_client.errors import ClientError
from modelyard_client.session import json_option

_OPTIONS = "modelyard_client.options"


@click.group("export")
def export() -> None:
    """Take a project's history to another tracker."""


def _env(name: str) -> str | None:
    return os.environ.get(name, "").strip() or None


def source_target(url: str | None, token: str | None) -> Target:
    """The modelyard server and project to read: --url/MODELYARD_URL and --token/
    MODELYARD_TOKEN only, since MLflow's variables belong to the target here."""
    given = click.get_current_context().meta.get(_OPTIONS, {})
    origin = "--url" if url or given.get("url") else "MODELYARD_URL"
    raw = url or given.get("url") or _env("MODELYARD_URL")
    if not raw:
        raise ClientError(
            "name the modelyard server to export from with --url or MODELYARD_URL (with "
            "/projects/<name> for a project); MLflow's variables name the target here."
        )
    server, project, in_url = _split(raw, origin)
    secret = token or given.get("token") or _env("MODELYARD_TOKEN")
    authorization = f"Bearer {secret}" if secret else in_url
    return Target(server, project, authorization, origin, _tls_verify())


def mlflow_target(url: str, token: str | None, user: str | None, password: str | None) -> Target:
    """The MLflow server to write, with MLflow's credentials."""
    server, project, in_url = _split(url, "--to")
    if project is not None:  # an MLflow server behind a path that happens to say so
        server = f"{server}/projects/{project}"
    authorization = in_url
    if token:
        authorization = f"Bearer {token}"
    elif user or password:
        authorization = _basic(user or "", password or "")
    return Target(server, None, authorization, "--to", _tls_verify())


def _default_mapping(target: Target) -> Path:
    where = re.sub(r"[^A-Za-z0-9.-]+", "_", target.server.split("://", 1)[-1]).strip("_")
    return Path(f"modelyard-export-{where}.json")


@export.command("mlflow")
@click.option(
    "--to",
    "to_url",
    required=True,
    metavar="URL",
    help="The MLflow server to write, e.g. http://mlflow:5000 (started with --serve-artifacts).",
)
@click.option(
    "--to-token",
    envvar="MLFLOW_TRACKING_TOKEN",
    default=None,
    help="The MLflow server's token [env MLFLOW_TRACKING_TOKEN].",
)
@click.option(
    "--to-username",
    envvar="MLFLOW_TRACKING_USERNAME",
    default=None,
    help="MLflow basic auth user [env MLFLOW_TRACKING_USERNAME].",
)
@click.option(
    "--to-password",
    envvar="MLFLOW_TRACKING_PASSWORD",
    default=None,
    help="MLflow basic auth password [env MLFLOW_TRACKING_PASSWORD].",
)
@click.option(
    "--mapping",
    "mapping_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The mapping file (old id -> new id); an export run again with it skips what is done "
    "[default: modelyard-export-<target host>.json here].",
)
@click.option("--skip-deleted", is_flag=True, help="Leave deleted experiments and runs behind.")
@click.option(
    "--url",
    default=None,
    help="The modelyard server to read, with /projects/<name> [env MODELYARD_URL].",
)
@click.option("--token", default=None, help="Its access token [env MODELYARD_TOKEN].")
@json_option
def mlflow(
    to_url: str,
    to_token: str | None,
    to_username: str | None,
    to_password: str | None,
    mapping_file: Path | None,
    skip_deleted: bool,
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Copy the project's experiments, runs (params, tags, every metric point, datasets,
    files), logged models and registered models (versions, stages, aliases) into the MLflow
    server at --to.

    MLflow gives experiments, runs and logged models new ids: the mapping file records old id
    -> new id (and old -> new version numbers). Run again with the same mapping file, the
    export skips what is already there and finishes what was interrupted."""
    from modelyard_client.export import Export, Mapping, summary
    from modelyard_client.http import Http
    from modelyard_client.mlflow_http import Rest

    source_at = source_target(url, token)
    target_at = mlflow_target(to_url, to_token, to_username, to_password)
    path = mapping_file or _default_mapping(target_at)
    mapping = Mapping.open(path, source_at.base, target_at.server)
    source = Rest(Http(source_at), f"the modelyard server {source_at.base}")
    target = Rest(Http(target_at), f"the MLflow server {target_at.server}")
    for side in (source, target):  # both answer before anything is written
        side.post("/experiments/search", {"max_results": 1})
    output.note(
        f"MLflow gives experiments, runs and logged models new ids: old id -> new id goes to {path}"
    )
    tally = Export(source, target, mapping, skip_deleted).run()
    if as_json:
        output.emit_json({"mapping": str(path), "target": target_at.server, **tally.as_json()})
        return
    click.echo(f"{summary(tally)} into {target_at.server}")
    click.echo(f"ids: {path} maps every old id to the new one (MLflow could not keep them)")
