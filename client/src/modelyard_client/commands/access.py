"""``modelyard whoami`` and ``modelyard users …`` (instance administrators)."""

from __future__ import annotations

import sys
from typing import Any

import click

from modelyard_client import output
from modelyard_client.http import Http, seg
from modelyard_client.session import connection_options, json_option, target

DEFAULT_PROJECT = "default"


def root_http() -> Http:
    """Requests to the server itself (instance routes), whatever project the URL names."""
    return Http(target().without_project())


@click.command()
@json_option
@connection_options
def whoami(as_json: bool) -> None:
    """The server, project, user and role the settings point at."""
    where = target()
    client = root_http()
    me = client.call("GET", "/me")
    project = where.project or DEFAULT_PROJECT
    role = client.call("GET", f"/projects/{seg(project)}").get("role")
    user = me.get("user") or {}
    token = me.get("token") or {}
    found = {
        "server": where.server,
        "project": project,
        "user": user.get("name"),
        "admin": bool(user.get("is_admin")),
        "anonymous": bool(me.get("anonymous")),
        "role": role,
        "token": token or None,
    }
    if as_json:
        output.emit_json(found)
        return
    who = found["user"] or (f"project token {token.get('name')}" if token else "anonymous")
    output.fields(
        [
            ("server", where.server),
            ("project", project),
            ("user", f"{who} (admin)" if found["admin"] else who),
            ("role", role),
            ("token", _token_line(token) if token else None),
        ]
    )


def _token_line(token: dict[str, Any]) -> str:
    return (
        f"{token.get('name')} (id {token.get('id')}, {token.get('scope')}, expires "
        f"{output.when(token.get('expires_at'))})"
    )


def read_password() -> str:
    if sys.stdin.isatty():
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True))
    return sys.stdin.readline().rstrip("\n")


@click.group()
@connection_options
def users() -> None:
    """People who sign in: create, list, update (instance administrators only)."""


def _user_rows(found: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [u["name"], u.get("is_admin"), u.get("disabled"), output.when(u.get("created_at"))]
        for u in found
    ]


@users.command("list")
@json_option
@connection_options
def users_list(as_json: bool) -> None:
    """Every user."""
    found = root_http().call("GET", "/users")["users"]
    if as_json:
        output.emit_json({"users": found})
        return
    output.table(["USER", "ADMIN", "DISABLED", "CREATED"], _user_rows(found))


@users.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="An instance administrator.")
@click.option(
    "--password-stdin", is_flag=True, help="Set a password for the browser sign-in, from stdin."
)
@json_option
@connection_options
def users_create(name: str, admin: bool, password_stdin: bool, as_json: bool) -> None:
    """Create a user; they sign in with the password and make their own tokens, and a
    project's owner adds them as a member."""
    payload: dict[str, Any] = {"name": name, "admin": admin}
    if password_stdin:
        payload["password"] = read_password()
    user = root_http().call("POST", "/users", payload=payload)["user"]
    if as_json:
        output.emit_json({"user": user})
        return
    click.echo(f"created user {user['name']}{' (admin)' if user.get('is_admin') else ''}")


@users.command("update")
@click.argument("name")
@click.option("--admin/--no-admin", default=None, help="Grant or take the admin role.")
@click.option(
    "--disable/--enable", default=None, help="A disabled user's tokens and sessions fail."
)
@click.option("--password-stdin", is_flag=True, help="Set a new password from stdin.")
@json_option
@connection_options
def users_update(
    name: str, admin: bool | None, disable: bool | None, password_stdin: bool, as_json: bool
) -> None:
    """Change a user's admin flag, disable or enable them, or set their password."""
    payload: dict[str, Any] = {"admin": admin, "disabled": disable}
    if password_stdin:
        payload["password"] = read_password()
    body = {k: v for k, v in payload.items() if v is not None}
    if not body:
        raise click.UsageError(
            "Nothing to change: give --admin/--no-admin, --disable/--enable or --password-stdin."
        )
    user = root_http().call("PATCH", f"/users/{seg(name)}", payload=body)["user"]
    if as_json:
        output.emit_json({"user": user})
        return
    click.echo(f"{user['name']}: admin={user.get('is_admin')} disabled={user.get('disabled')}")
