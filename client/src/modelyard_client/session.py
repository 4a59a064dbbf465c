"""Options every client command takes (``--url``, ``--token``, ``--json``) and the HTTP client
they make. ``--url``/``--token`` may be given before or after the command's name."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from modelyard_client.config import Target, resolve

if TYPE_CHECKING:
    from modelyard_client.http import Http

F = TypeVar("F", bound=Callable[..., Any])
_KEY = "modelyard_client.options"


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and param.name is not None:
        ctx.meta.setdefault(_KEY, {})[param.name] = value
    return value


def connection_options(command: F) -> F:
    command = click.option(
        "--token",
        default=None,
        expose_value=False,
        callback=_remember,
        help="Access token [env MODELYARD_TOKEN; default MLFLOW_TRACKING_TOKEN].",
    )(command)
    return click.option(
        "--url",
        default=None,
        expose_value=False,
        callback=_remember,
        help="Server URL, with /projects/<name> for a project [env MODELYARD_URL; default "
        "MLFLOW_TRACKING_URI, then http://127.0.0.1:5000].",
    )(command)


def json_option(command: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(command)


def project_option(command: F) -> F:
    return click.option(
        "--project",
        default=None,
        help="The project (default: the one in the server URL, else the default project).",
    )(command)


def target(project: str | None = None) -> Target:
    options = click.get_current_context().meta.get(_KEY, {})
    return resolve(options.get("url"), options.get("token")).with_project(project)


def http(project: str | None = None) -> Http:
    """The HTTP client for the current command's server, credentials and project."""
    from modelyard_client.http import Http

    return Http(target(project))
