"""``modelyard models …``: the registry from the command line, on the same storage options as
the server (the default project unless --project names another)."""

from __future__ import annotations

import datetime as dt
import getpass
from collections.abc import Callable
from typing import Any

import click

from modelyard.errors import ModelyardError
from modelyard.services import aliases, promotion, registry
from modelyard.services.registry import ModelVersion


def _describe(version: ModelVersion) -> str:
    aliases = f"  @{' @'.join(version.aliases)}" if version.aliases else ""
    return f"{version.name}  version {version.version}  semver {version.semver or '-'}{aliases}"


def _run(action: Any) -> Any:
    try:
        return action()
    except ModelyardError as exc:
        raise click.ClickException(exc.message) from None


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

_project_option = click.option(
    "--project", default="default", show_default=True, help="The project of the model."
)


def actor() -> str:
    """How the audit log names someone using the command line."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _audit(database: Any, pid: int, action: str, target: str, details: dict[str, Any]) -> None:
    from modelyard.services import audit

    with database.write() as conn:
        audit.record(conn, pid, actor(), action, target, details)


def _project_of(database: Any, options: dict[str, Any]) -> int:
    from modelyard.services.access import find_project

    name = options.get("project") or "default"
    project_id: int = _run(lambda: find_project(database, name).id)
    return project_id


def register(
    main: click.Group,
    storage_options: Decorator,
    open_storage: Callable[[dict[str, Any]], tuple[Any, Any, Any]],
) -> None:
    """Add the ``models`` group to the ``modelyard`` command."""

    @main.group()
    def models() -> None:
        """Models and their versions: promote, resolve semver ranges, move aliases."""

    @models.command("list")
    @_project_option
    @storage_options
    def list_models(**options: Any) -> None:
        """Every model with its latest version and aliases."""
        _settings, database, _store = open_storage(options)
        pid = _project_of(database, options)
        for model in registry.all_models(database, pid):
            latest = max(model.latest_versions, key=lambda v: v.version, default=None)
            aliases = " ".join(f"@{a}={v}" for a, v in model.aliases)
            shown = f"v{latest.version} ({latest.semver})" if latest else "no versions"
            click.echo(f"{model.name}  {shown}  {aliases}".rstrip())

    @models.command("versions")
    @click.argument("name")
    @_project_option
    @storage_options
    def versions(name: str, **options: Any) -> None:
        """The versions of a model, newest first."""
        _settings, database, _store = open_storage(options)
        pid = _project_of(database, options)

        def show() -> None:
            registry.get_model(database, pid, name)
            found = [v for v in registry.all_versions(database, pid) if v.name == name]
            for version in sorted(found, key=lambda v: v.version, reverse=True):
                click.echo(_describe(version))

        _run(show)

    @models.command("resolve")
    @click.argument("name")
    @click.argument("ref")
    @_project_option
    @storage_options
    def resolve(name: str, ref: str, **options: Any) -> None:
        """The version REF names: a number, a semver (1.4.0), a range (^1.4, ~2.0) or an
        alias."""
        _settings, database, _store = open_storage(options)
        pid = _project_of(database, options)
        _run(lambda: click.echo(_describe(promotion.resolve_version(database, pid, name, ref))))

    @models.command("promote")
    @click.argument("name")
    @click.option("--candidate", help="Run id of the candidate to promote.")
    @click.option(
        "--path", default="model", show_default=True, help="Folder of the candidate's artifacts."
    )
    @click.option("--logged-model", help="Id (m-…) of the logged model to promote instead.")
    @click.option("--semver", "semantic_version", help="The version's semver (default: a bump).")
    @click.option(
        "--bump", type=click.Choice(["major", "minor", "patch"]), default="patch", show_default=True
    )
    @click.option("--description", default="")
    @_project_option
    @storage_options
    def promote(
        name: str,
        candidate: str | None,
        path: str,
        logged_model: str | None,
        semantic_version: str | None,
        bump: str,
        description: str,
        **options: Any,
    ) -> None:
        """Promote a candidate (or logged model) into a new version of NAME."""
        _settings, database, _store = open_storage(options)
        pid = _project_of(database, options)
        version = _run(
            lambda: promotion.promote(
                database,
                pid,
                name,
                candidate=candidate,
                path=path,
                logged_model=logged_model,
                semantic_version=semantic_version,
                bump=bump,
                description=description,
            )
        )
        _audit(
            database,
            pid,
            "version.promote",
            f"name={name} version={version.version}",
            {"semver": version.semver, "candidate": candidate, "logged_model": logged_model},
        )
        click.echo(_describe(version))

    _aliases(models, storage_options, open_storage)


def _aliases(
    models: click.Group,
    storage_options: Decorator,
    open_storage: Callable[[dict[str, Any]], tuple[Any, Any, Any]],
) -> None:
    @models.command("alias")
    @click.argument("name")
    @click.argument("alias")
    @click.argument("ref")
    @_project_option
    @storage_options
    def alias(name: str, alias: str, ref: str, **options: Any) -> None:
        """Point ALIAS of NAME at the version REF names (the move is recorded)."""
        _settings, database, _store = open_storage(options)
        pid = _project_of(database, options)

        def move() -> None:
            version = promotion.resolve_version(database, pid, name, ref)
            aliases.set_alias(database, pid, name, alias, str(version.version), actor())
            _audit(
                database,
                pid,
                "alias.set",
                f"name={name} alias={alias}",
                {"version": version.version},
            )
            click.echo(f"@{alias} -> {_describe(version)}")

        _run(move)

    @models.command("history")
    @click.argument("name")
    @click.argument("alias")
    @_project_option
    @storage_options
    def history(name: str, alias: str, **options: Any) -> None:
        """Every move of ALIAS: when, who, from which version to which."""
        _settings, database, _store = open_storage(options)
        pid = _project_of(database, options)

        def show() -> None:
            for event in aliases.alias_history(database, pid, name, alias):
                when = dt.datetime.fromtimestamp(event["at"] / 1000, tz=dt.UTC).isoformat(
                    timespec="seconds"
                )
                before = event["from_version"] or "-"
                after = event["to_version"] or "-"
                click.echo(f"{when}  {event['actor']}  {before} -> {after}")

        _run(show)
