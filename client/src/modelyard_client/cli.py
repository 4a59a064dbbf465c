"""The ``modelyard`` command. Client commands (HTTP only) are imported when asked for; the
server's commands (``server``, ``db``, ``gc``, ``fsck``, ``admin``) come from the
``modelyard.commands`` entry-point group, looked up only when one of them is asked for, so
that starting the client stays fast.

Every error ends as one line on standard error and exit status 1."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from modelyard_client import __version__
from modelyard_client.errors import ClientError
from modelyard_client.session import connection_options

ENTRY_POINTS = "modelyard.commands"

#: command name -> (module, attribute) of the client's own commands
CLIENT_COMMANDS: dict[str, tuple[str, str]] = {
    "whoami": ("modelyard_client.commands.access", "whoami"),
    "ci": ("modelyard_client.commands.ci", "ci"),
    "export": ("modelyard_client.commands.export", "export"),
    "models": ("modelyard_client.commands.models", "models"),
    "projects": ("modelyard_client.commands.projects", "projects"),
    "tokens": ("modelyard_client.commands.tokens", "tokens"),
    "users": ("modelyard_client.commands.access", "users"),
    "import": ("modelyard_client.commands.mlflow_import", "import_"),
}

#: commands the server distribution provides, with their one-line help
SERVER_COMMANDS: dict[str, str] = {
    "server": "Start the server (server side).",
    "db": "Manage the database schema (server side).",
    "gc": "Free the bytes nothing refers to (server side).",
    "fsck": "Re-hash the stored bytes and report problems (server side).",
    "admin": "Users, tokens and projects straight in the server's storage: the first "
    "admin (server side).",
}


def _entry_point(name: str) -> Any:
    from importlib.metadata import entry_points

    for found in entry_points(group=ENTRY_POINTS, name=name):
        return found
    return None


def _missing(name: str) -> click.Command:
    @click.command(
        name,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
        help=SERVER_COMMANDS[name],
    )
    def missing() -> None:
        raise ClientError(
            f"`modelyard {name}` is a server command and the server is not installed here: "
            "pip install modelyard (this install is the client alone)."
        )

    return missing


class Commands(click.Group):
    """The root group: every subcommand is loaded on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:  # noqa: ARG002
        return sorted({*CLIENT_COMMANDS, *SERVER_COMMANDS})

    def get_command(
        self,
        ctx: click.Context,  # noqa: ARG002
        cmd_name: str,
    ) -> click.Command | None:
        if cmd_name in CLIENT_COMMANDS:
            module, attribute = CLIENT_COMMANDS[cmd_name]
            command: click.Command = getattr(importlib.import_module(module), attribute)
            return command
        found = _entry_point(cmd_name)
        if found is not None:
            loaded: click.Command = found.load()
            return loaded
        if cmd_name in SERVER_COMMANDS:
            return _missing(cmd_name)
        return None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Help from the table, without importing every command."""
        rows = [(name, _short_help(name)) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


_HELP = {
    "whoami": "The server, project, user and role the settings point at.",
    "ci": "For CI jobs: a merge request's candidates against production, as Markdown.",
    "export": "Copy a project's history to an MLflow server (export mlflow --to URL).",
    "import": "Bring an MLflow history into a project (import mlflow --from URL | --store).",
    "models": "Models and versions: list, promote, resolve, alias, pull, verify, upload.",
    "projects": "Projects and their members.",
    "tokens": "Personal and project access tokens.",
    "users": "People who sign in (admins).",
}


def _short_help(name: str) -> str:
    return _HELP.get(name) or SERVER_COMMANDS.get(name, "")


@click.group(cls=Commands)
@click.version_option(__version__, prog_name="modelyard")
@connection_options
def cli() -> None:
    """modelyard: models, versions and deployments from the command line.

    The server and credentials come from MLFLOW_TRACKING_URI (with /projects/<name> for a
    project), MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD, as for the MLflow
    client; --url/--token (MODELYARD_URL, MODELYARD_TOKEN) override them."""


def _fail(message: str) -> None:
    click.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(1)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command; turn every failure into one line and exit status 1."""
    try:
        result = cli.main(args=argv, prog_name="modelyard", standalone_mode=False)
    except ClientError as exc:
        _fail(exc.message)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "modelyard"
        _fail(f"{exc.format_message()} (see `{command} --help`)")
    except click.ClickException as exc:
        _fail(exc.format_message())
    except (click.Abort, KeyboardInterrupt):
        _fail("interrupted")
    except BrokenPipeError:
        sys.exit(1)
    except Exception as exc:
        if os.environ.get("MODELYARD_DEBUG"):
            raise
        _fail(f"unexpected {type(exc).__name__}: {exc} (MODELYARD_DEBUG=1 shows where)")
    sys.exit(result if isinstance(result, int) else 0)
