"""``modelyard tokens …``: your personal tokens, or a project's tokens with ``--project``.
A new token's secret is printed alone on standard output, once, so a script can capture it."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import click

from modelyard_client import output
from modelyard_client.commands.access import root_http
from modelyard_client.http import seg
from modelyard_client.session import connection_options, json_option

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DAYS = 36_500


def expiry(value: str) -> dict[str, int]:
    """The API's expiry fields from ``never``, a duration (``30d``, ``12h``) or a date."""
    text = value.strip().lower()
    if text in ("never", "none"):
        return {"expires_in_days": MAX_DAYS}
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        pass
    else:
        moment = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        return {"expires_at": int(moment.timestamp() * 1000)}
    unit = _UNITS.get(text[-1:], 0)
    number = text[:-1] if unit else text
    try:
        seconds = float(number) * (unit or 86400)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a lifetime like 30d, 12h, a date like 2027-06-30, or never"
        ) from None
    if seconds <= 0:
        raise click.BadParameter("a lifetime must be positive")
    return {"expires_at": int((time.time() + seconds) * 1000)}


def _base(project: str | None) -> str:
    return "/tokens" if project is None else f"/projects/{seg(project)}/tokens"


@click.group()
@connection_options
def tokens() -> None:
    """Access tokens: your personal ones, or a project's with --project."""


@tokens.command("create")
@click.option("--project", default=None, help="A project token for this project.")
@click.option(
    "--role",
    type=click.Choice(["guest", "reporter", "developer", "maintainer"]),
    default=None,
    help="A project token's role [developer for write, reporter for read].",
)
@click.option("--scope", type=click.Choice(["read", "write"]), default="write", show_default=True)
@click.option("--name", "token_name", default="cli token", show_default=True)
@click.option(
    "--expires",
    default="365d",
    show_default=True,
    help="Lifetime (30d, 12h, 90s), a date (2027-06-30) or 'never'.",
)
@json_option
@connection_options
def tokens_create(
    project: str | None,
    role: str | None,
    scope: str,
    token_name: str,
    expires: str,
    as_json: bool,
) -> None:
    """Create a token and print its secret (alone, once: the server keeps only a hash)."""
    if role is not None and project is None:
        raise click.UsageError("--role is for project tokens; a personal token has your roles.")
    payload: dict[str, Any] = {"name": token_name, "scope": scope, **expiry(expires)}
    if role is not None:
        payload["role"] = role
    made = root_http().call("POST", _base(project), payload=payload)
    if as_json:
        output.emit_json(made)
        return
    token = made["token"]
    expires = output.when(token.get("expires_at"))
    output.note(f"created token {token['id']} ({token['name']}), expires {expires}")
    click.echo(made["secret"])


@tokens.command("list")
@click.option("--project", default=None, help="A project's tokens instead of yours.")
@json_option
@connection_options
def tokens_list(project: str | None, as_json: bool) -> None:
    """Tokens (never their secrets): id, name, owner, scope, expiry, state."""
    found = root_http().call("GET", _base(project))["tokens"]
    if as_json:
        output.emit_json({"tokens": found})
        return
    rows = []
    for t in found:
        state = "active" if t.get("active") else ("revoked" if t.get("revoked_at") else "expired")
        owner = t.get("user") or f"project ({t.get('role')})"
        rows.append(
            [
                t["id"],
                t.get("name"),
                owner,
                t.get("scope"),
                f"{t.get('prefix')}…",
                output.when(t.get("expires_at")),
                output.when(t.get("last_used_at")),
                state,
            ]
        )
    headers = ["ID", "NAME", "OWNER", "SCOPE", "PREFIX", "EXPIRES", "LAST USED", "STATE"]
    output.table(headers, rows)


@tokens.command("revoke")
@click.argument("token_id", type=int)
@click.option("--project", default=None, help="The project the token belongs to.")
@connection_options
def tokens_revoke(token_id: int, project: str | None) -> None:
    """Revoke a token: it stops working at once."""
    root_http().call("DELETE", f"{_base(project)}/{token_id}")
    click.echo(f"revoked token {token_id}")
