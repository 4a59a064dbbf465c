"""``modelyard import mlflow``: an MLflow history into a project of a modelyard server."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from modelyard_client import output
from modelyard_client.errors import ClientError


@click.group("import")
def import_() -> None:
    """Bring a history from another tracker."""


def _target(url: str | None, token: str | None) -> Any:
    """The modelyard server and project to import into: --url or MODELYARD_URL only, since
    MLFLOW_TRACKING_URI may well name the source."""
    from modelyard_client.config import resolve

    given = click.get_current_context().meta.get("modelyard_client.options", {})
    url, token = url or given.get("url"), token or given.get("token")
    raw = url or os.environ.get("MODELYARD_URL", "").strip()
    if not raw:
        raise ClientError(
            "name the modelyard server to import into with --url or MODELYARD_URL (with "
            "/projects/<name> for a project); MLFLOW_TRACKING_URI is not read here."
        )
    return resolve(raw, token or os.environ.get("MODELYARD_TOKEN", "").strip() or None)


@import_.command("mlflow")
@click.option(
    "--from", "from_url", metavar="URL", help="A live MLflow server, e.g. http://mlflow:5000."
)
@click.option(
    "--store",
    metavar="PATH|URL",
    help="MLflow's storage read directly: a file store folder (./mlruns) or its database "
    "(sqlite:///mlflow.db, postgresql://…, mysql://…).",
)
@click.option(
    "--artifact-root",
    metavar="FOLDER",
    help="With a database --store: the folder its mlflow-artifacts: locations are stored in "
    "(the server's --artifacts-destination).",
)
@click.option("--skip-deleted", is_flag=True, help="Leave deleted experiments and runs behind.")
@click.option(
    "--verify",
    is_flag=True,
    help="Afterwards, compare source and target: counts per entity, metric points per run, "
    "file sizes and checksums.",
)
@click.option(
    "--url", default=None, help="The modelyard server, with /projects/<name> [env MODELYARD_URL]."
)
@click.option("--token", default=None, help="A maintainer's token [env MODELYARD_TOKEN].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def mlflow(
    from_url: str | None,
    store: str | None,
    artifact_root: str | None,
    skip_deleted: bool,
    verify: bool,
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Import experiments, runs (same run ids), metric histories, datasets, artifacts, logged
    models, registered models (same version numbers) and aliases from MLflow.

    Safe to repeat: a second run brings only what is new or changed, and an interrupted one
    continues where it stopped. Ids taken by something else on the target are reported as
    failures, never overwritten."""
    from modelyard_client.http import Http
    from modelyard_client.importer import Importer

    if bool(from_url) == bool(store):
        raise ClientError("give one source: --from URL (a server) or --store PATH|URL.")
    source = _source(from_url, store, artifact_root)
    target = Http(_target(url, token), timeout=300.0)
    report = Importer(source, target, skip_deleted=skip_deleted).run()
    checks: list[str] | None = None
    if verify:
        from modelyard_client.verify import verify as compare

        output.note("verifying …")
        checks = compare(source, target, report, skip_deleted=skip_deleted)
    if as_json:
        data = report.as_json()
        if checks is not None:
            data["verify"] = {"ok": not checks, "differences": checks}
        output.emit_json(data)
    else:
        _print(report, checks)
    if report.failures or checks:
        sys.exit(1)


def _source(from_url: str | None, store: str | None, artifact_root: str | None) -> Any:
    if from_url:
        from modelyard_client.http import Http
        from modelyard_client.mlflow_rest import MlflowRest, source_target

        return MlflowRest(Http(source_target(from_url), timeout=300.0))
    from modelyard_client.stores import open_store

    return open_store(store or "", artifact_root)


def _print(report: Any, checks: list[str] | None) -> None:
    rows = [
        (entity, t.imported, t.updated, t.unchanged, t.failed)
        for entity, t in report.tallies.items()
    ]
    output.table(("entity", "imported", "updated", "unchanged", "failed"), rows)
    click.echo(f"bytes sent: {output.size(report.bytes_sent)}")
    for failure in report.failures[:50]:
        output.note(f"failed: {failure}")
    if len(report.failures) > 50:
        output.note(f"… and {len(report.failures) - 50} more failures (see --json)")
    if checks is not None:
        if checks:
            for difference in checks[:50]:
                output.note(f"differs: {difference}")
            click.echo(f"verify: {len(checks)} differences")
        else:
            click.echo("verify: source and target agree")
