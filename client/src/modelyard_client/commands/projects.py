"""``modelyard projects …``: projects, their members and audit log."""

from __future__ import annotations

import click

from modelyard_client import output
from modelyard_client.commands.access import root_http
from modelyard_client.http import seg
from modelyard_client.session import connection_options, json_option

ROLES = click.Choice(["guest", "reporter", "developer", "maintainer", "owner"])


@click.group()
@connection_options
def projects() -> None:
    """Projects: list, create, rename, delete, members, audit log."""


@projects.command("list")
@json_option
@connection_options
def projects_list(as_json: bool) -> None:
    """The projects you can see, with your role and their tracking URI."""
    found = root_http().call("GET", "/projects")["projects"]
    if as_json:
        output.emit_json({"projects": found})
        return
    rows = [
        [p["name"], p.get("role"), p.get("tracking_uri"), output.when(p.get("created_at"))]
        for p in found
    ]
    output.table(["PROJECT", "ROLE", "TRACKING URI", "CREATED"], rows)


@projects.command("create")
@click.argument("name")
@click.option("--owner", default=None, help="Also make this user an owner of the project.")
@json_option
@connection_options
def projects_create(name: str, owner: str | None, as_json: bool) -> None:
    """Create a project (you become its owner); its tracking URI is <server>/projects/NAME."""
    client = root_http()
    project = client.call("POST", "/projects", payload={"name": name})["project"]
    if owner is not None:
        client.call("PUT", f"/projects/{seg(name)}/members/{seg(owner)}", payload={"role": "owner"})
    if as_json:
        output.emit_json({"project": project})
        return
    click.echo(f"created project {project['name']} (tracking URI: {project['tracking_uri']})")


@projects.command("rename")
@click.argument("old")
@click.argument("new")
@connection_options
def projects_rename(old: str, new: str) -> None:
    """Rename a project (its tracking URI changes with it)."""
    root_http().call("PATCH", f"/projects/{seg(old)}", payload={"name": new})
    click.echo(f"renamed {old} to {new}")


@projects.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@connection_options
def projects_delete(name: str, yes: bool) -> None:
    """Delete a project: it is gone at once; `modelyard gc` on the server purges its data."""
    if not yes:
        click.confirm(f"Delete project {name} and everything in it?", abort=True, err=True)
    root_http().call("DELETE", f"/projects/{seg(name)}")
    click.echo(f"deleted project {name}")


@projects.command("members")
@click.argument("name")
@json_option
@connection_options
def projects_members(name: str, as_json: bool) -> None:
    """A project's members and their roles."""
    found = root_http().call("GET", f"/projects/{seg(name)}/members")["members"]
    if as_json:
        output.emit_json({"members": found})
        return
    rows = [[m["user"], m["role"], output.when(m.get("since"))] for m in found]
    output.table(["USER", "ROLE", "SINCE"], rows)


@projects.command("add-member")
@click.argument("project")
@click.argument("user")
@click.argument("role", type=ROLES)
@connection_options
def projects_add_member(project: str, user: str, role: str) -> None:
    """Give USER the ROLE in PROJECT (or change their role)."""
    root_http().call("PUT", f"/projects/{seg(project)}/members/{seg(user)}", payload={"role": role})
    click.echo(f"{user} is {role} in {project}")


@projects.command("remove-member")
@click.argument("project")
@click.argument("user")
@connection_options
def projects_remove_member(project: str, user: str) -> None:
    """Take USER out of PROJECT."""
    root_http().call("DELETE", f"/projects/{seg(project)}/members/{seg(user)}")
    click.echo(f"{user} removed from {project}")


@projects.command("audit")
@click.argument("name")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--action", default=None, help="Only actions starting with this, e.g. alias.")
@json_option
@connection_options
def projects_audit(name: str, limit: int, action: str | None, as_json: bool) -> None:
    """The project's audit log, newest first: who changed what, when, from where."""
    found = root_http().call(
        "GET", f"/projects/{seg(name)}/audit", query={"limit": limit, "action": action}
    )
    if as_json:
        output.emit_json(found)
        return
    rows = [
        [
            output.when(e["at"]),
            e.get("actor"),
            e.get("action"),
            e.get("target"),
            e.get("address") or "local",
        ]
        for e in found["events"]
    ]
    output.table(["WHEN (UTC)", "BY", "ACTION", "TARGET", "FROM"], rows)
