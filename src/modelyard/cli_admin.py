"""``modelyard admin users|projects|tokens …``: access straight in the server's storage, with
the same storage options as the server. Whoever can run these on the server's storage is its
administrator, so this is where the first admin and token come from (everyone else uses the
client's ``modelyard users|projects|tokens`` over HTTP). A new token's secret is printed alone
on standard output (and only once), so a script can capture it."""

from __future__ import annotations

import datetime as dt
import getpass
import sys
from collections.abc import Callable
from typing import Any

import click

from modelyard.auth.roles import SCOPES, WRITE_SCOPE, Role
from modelyard.cli import StorageGroup, open_database, storage_options
from modelyard.db.engine import Database
from modelyard.errors import ModelyardError
from modelyard.services import access, audit
from modelyard.services.entities import now_ms

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
DEFAULT_EXPIRY = "365d"
_ROLES = click.Choice([role.label for role in Role])
_TOKEN_ROLES = click.Choice([role.label for role in Role if role < Role.OWNER])


def _actor() -> str:
    """How the audit log names someone using the command line."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _run(action: Callable[[], Any]) -> Any:
    try:
        return action()
    except ModelyardError as exc:
        raise click.ClickException(exc.message) from None


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _expiry(value: str) -> int | None:
    """Milliseconds since the epoch from ``never``, a duration (``30d``) or a date."""
    from modelyard.cli import _duration

    text = value.strip().lower()
    if text in ("never", "none", "0"):
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        return now_ms() + int(_duration(text) * 1000)
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


def _read_password() -> str:
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    return sys.stdin.readline().rstrip("\n")


@click.group(cls=StorageGroup)
def admin() -> None:
    """Users, tokens and projects straight in the server's storage (server side): the first
    admin and their token, or a way back in."""


def _register(
    main: click.Group,
    storage_options: Decorator,
    open_database: Callable[[dict[str, Any]], Database],
) -> None:
    """Add the ``users``, ``projects`` and ``tokens`` groups to ``admin``."""
    _users(main, storage_options, open_database)
    _members(_projects(main, storage_options, open_database), storage_options, open_database)
    _tokens(main, storage_options, open_database)


def _users(
    main: click.Group,
    storage_options: Decorator,
    open_database: Callable[[dict[str, Any]], Database],
) -> None:

    @main.group(cls=StorageGroup)
    def users() -> None:
        """People who sign in: create them (with their first token), list, update."""

    @users.command("create")
    @click.argument("name")
    @click.option("--admin", is_flag=True, help="An instance administrator.")
    @click.option(
        "--password-stdin",
        is_flag=True,
        help="Also set a password for the browser login, read from standard input.",
    )
    @click.option("--token-name", default="first token", show_default=True)
    @click.option(
        "--expires",
        default=DEFAULT_EXPIRY,
        show_default=True,
        help="Token lifetime (30d, 12h), a date (2027-06-30) or 'never'.",
    )
    @click.option("--no-token", is_flag=True, help="Create the user without a token.")
    @storage_options
    def users_create(
        name: str,
        admin: bool,
        password_stdin: bool,
        token_name: str,
        expires: str,
        no_token: bool,
        **options: Any,
    ) -> None:
        """Create a user and print a new personal token for them (alone, once)."""
        database = open_database(options)
        password = _read_password() if password_stdin else None
        expires_at = _expiry(expires)
        user = _run(
            lambda: access.create_user(
                database, name, admin=admin, password=password, actor=_actor()
            )
        )
        click.echo(f"created user {user.name}{' (admin)' if admin else ''}", err=True)
        if no_token:
            return
        _token, secret = _run(
            lambda: access.create_token(
                database, name=token_name, user_name=name, expires_at=expires_at, actor=_actor()
            )
        )
        click.echo(secret)

    @users.command("list")
    @storage_options
    def users_list(**options: Any) -> None:
        """Every user."""
        database = open_database(options)
        for user in access.list_users(database):
            flags = [f for f, on in (("admin", user.is_admin), ("disabled", user.disabled)) if on]
            click.echo(f"{user.name}\t{','.join(flags) or '-'}\tcreated {_when(user.created_at)}")

    @users.command("update")
    @click.argument("name")
    @click.option("--admin/--no-admin", default=None, help="Grant or take the admin role.")
    @click.option(
        "--disable/--enable", default=None, help="A disabled user's tokens and sessions fail."
    )
    @click.option("--password-stdin", is_flag=True, help="Set a new password from stdin.")
    @storage_options
    def users_update(
        name: str,
        admin: bool | None,
        disable: bool | None,
        password_stdin: bool,
        **options: Any,
    ) -> None:
        """Change a user's admin flag, disable or enable them, or set their password."""
        database = open_database(options)
        password = _read_password() if password_stdin else None
        user = _run(
            lambda: access.update_user(
                database, name, admin=admin, disabled=disable, password=password, actor=_actor()
            )
        )
        click.echo(f"{user.name}: admin={user.is_admin} disabled={user.disabled}")


def _project_id(database: Database, name: str) -> int:
    return int(_run(lambda: access.find_project(database, name)).id)


def _projects(
    main: click.Group,
    storage_options: Decorator,
    open_database: Callable[[dict[str, Any]], Database],
) -> click.Group:

    @main.group(cls=StorageGroup)
    def projects() -> None:
        """Projects: create, rename, delete, members, audit log."""

    @projects.command("create")
    @click.argument("name")
    @click.option("--owner", default=None, help="A user who becomes the project's owner.")
    @storage_options
    def projects_create(name: str, owner: str | None, **options: Any) -> None:
        """Create a project; its tracking URI is http://HOST:PORT/projects/NAME."""
        database = open_database(options)

        def create() -> access.Project:
            owner_id = None if owner is None else access.get_user(database, owner).id
            return access.create_project(database, name, owner=owner_id, actor=_actor())

        project = _run(create)
        click.echo(f"created project {project.name} (tracking URI: <server>/projects/{name})")

    @projects.command("list")
    @storage_options
    def projects_list(**options: Any) -> None:
        """Every project."""
        from modelyard.auth.roles import NOBODY, Principal

        database = open_database(options)
        everyone = Principal(name=NOBODY.name, is_admin=True, anonymous=True)
        for project, _role in access.list_projects(database, everyone):
            members = len(access.list_members(database, project.id))
            click.echo(f"{project.name}\t{members} members\tcreated {_when(project.created_at)}")

    @projects.command("rename")
    @click.argument("old")
    @click.argument("new")
    @storage_options
    def projects_rename(old: str, new: str, **options: Any) -> None:
        """Rename a project (its tracking URI changes with it)."""
        database = open_database(options)
        pid = _project_id(database, old)
        _run(lambda: access.rename_project(database, pid, new, actor=_actor()))
        click.echo(f"renamed {old} to {new}")

    @projects.command("delete")
    @click.argument("name")
    @click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
    @storage_options
    def projects_delete(name: str, yes: bool, **options: Any) -> None:
        """Delete a project: it is gone at once; `modelyard gc` then purges its data."""
        database = open_database(options)
        pid = _project_id(database, name)
        if not yes:
            click.confirm(f"Delete project {name} and everything in it?", abort=True, err=True)
        _run(lambda: access.delete_project(database, pid, actor=_actor()))
        click.echo(f"deleted project {name}; run `modelyard gc` to release its storage")

    return projects


def _members(
    projects: click.Group,
    storage_options: Decorator,
    open_database: Callable[[dict[str, Any]], Database],
) -> None:
    @projects.command("members")
    @click.argument("name")
    @storage_options
    def projects_members(name: str, **options: Any) -> None:
        """A project's members and their roles."""
        database = open_database(options)
        for member in access.list_members(database, _project_id(database, name)):
            click.echo(f"{member['user']}\t{member['role']}\tsince {_when(member['since'])}")

    @projects.command("add-member")
    @click.argument("project")
    @click.argument("user")
    @click.argument("role", type=_ROLES)
    @storage_options
    def projects_add_member(project: str, user: str, role: str, **options: Any) -> None:
        """Give USER the ROLE in PROJECT (or change their role)."""
        database = open_database(options)
        pid = _project_id(database, project)
        _run(
            lambda: access.set_member(
                database, pid, user, Role.parse(role), by=Role.OWNER, actor=_actor()
            )
        )
        click.echo(f"{user} is {role} in {project}")

    @projects.command("remove-member")
    @click.argument("project")
    @click.argument("user")
    @storage_options
    def projects_remove_member(project: str, user: str, **options: Any) -> None:
        """Take USER out of PROJECT."""
        database = open_database(options)
        pid = _project_id(database, project)
        _run(lambda: access.remove_member(database, pid, user, by=Role.OWNER, actor=_actor()))
        click.echo(f"{user} removed from {project}")

    @projects.command("audit")
    @click.argument("name")
    @click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
    @click.option("--action", default=None, help="Only actions starting with this, e.g. alias.")
    @storage_options
    def projects_audit(name: str, limit: int, action: str | None, **options: Any) -> None:
        """The project's audit log, newest first: who changed what, when, from where."""
        database = open_database(options)
        pid = _project_id(database, name)
        for event in audit.events(database, pid, limit=limit, action=action):
            details = " ".join(f"{k}={v}" for k, v in event["details"].items() if v is not None)
            click.echo(
                f"{_when(event['at'])}  {event['actor']}  {event['action']}  {event['target']}"
                f"  {details}  [{event['address'] or 'local'}]".rstrip()
            )


def _tokens(
    main: click.Group,
    storage_options: Decorator,
    open_database: Callable[[dict[str, Any]], Database],
) -> None:

    @main.group(cls=StorageGroup)
    def tokens() -> None:
        """Personal and project access tokens: create, list, revoke."""

    @tokens.command("create")
    @click.option("--user", default=None, help="A personal token acting as this user.")
    @click.option("--project", default=None, help="A project token for this project.")
    @click.option(
        "--role",
        type=_TOKEN_ROLES,
        default=None,
        help="A project token's role [developer for write, reporter for read].",
    )
    @click.option("--scope", type=click.Choice(SCOPES), default=WRITE_SCOPE, show_default=True)
    @click.option("--name", "token_name", default="cli token", show_default=True)
    @click.option(
        "--expires",
        default=DEFAULT_EXPIRY,
        show_default=True,
        help="Lifetime (30d, 12h, 90s), a date (2027-06-30) or 'never'.",
    )
    @storage_options
    def tokens_create(
        user: str | None,
        project: str | None,
        role: str | None,
        scope: str,
        token_name: str,
        expires: str,
        **options: Any,
    ) -> None:
        """Create a token and print its secret (alone, once: it is stored only as a hash)."""
        if (user is None) == (project is None):
            raise click.UsageError("Give exactly one of --user or --project.")
        if role is not None and project is None:
            raise click.UsageError(
                "--role is for project tokens; a personal token has its user's roles."
            )
        database = open_database(options)
        pid = None if project is None else _project_id(database, project)
        expires_at = _expiry(expires)
        token, secret = _run(
            lambda: access.create_token(
                database,
                name=token_name,
                scope=scope,
                user_name=user,
                project_id=pid,
                role=None if role is None else Role.parse(role),
                expires_at=expires_at,
                actor=_actor(),
            )
        )
        click.echo(
            f"created token {token.id} ({token.name}), expires {_when(expires_at)}", err=True
        )
        click.echo(secret)

    @tokens.command("list")
    @click.option("--user", default=None)
    @click.option("--project", default=None)
    @storage_options
    def tokens_list(user: str | None, project: str | None, **options: Any) -> None:
        """Tokens (never their secrets): id, name, owner, scope, expiry, state."""
        database = open_database(options)
        pid = None if project is None else _project_id(database, project)
        for token in access.list_tokens(database, user_name=user, project_id=pid):
            data = token.to_json()
            owner = token.user or f"project {token.project_id} ({token.role})"
            state = "active" if data["active"] else ("revoked" if token.revoked_at else "expired")
            click.echo(
                f"{token.id}\t{token.name}\t{owner}\t{token.scope}\t{token.prefix}…\t"
                f"expires {_when(token.expires_at)}\tlast used {_when(token.last_used_at)}\t"
                f"{state}"
            )

    @tokens.command("revoke")
    @click.argument("token_id", type=int)
    @storage_options
    def tokens_revoke(token_id: int, **options: Any) -> None:
        """Revoke a token: it stops working at once."""
        database = open_database(options)
        _run(lambda: access.revoke_token(database, token_id, actor=_actor()))
        click.echo(f"revoked token {token_id}")


_register(admin, storage_options, open_database)
