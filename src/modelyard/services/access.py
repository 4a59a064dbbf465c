"""Projects, users, memberships, tokens and sessions; who may do what where.

Every change here is written to the audit log in the same transaction. Token and session
secrets are handed out once and stored only as their sha256.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update

from modelyard.auth import lookup, secrets
from modelyard.auth.roles import SCOPES, WRITE_SCOPE, Principal, Role
from modelyard.db.engine import Database
from modelyard.db.schema import (
    DEFAULT_PROJECT_ID,
    memberships,
    projects,
    sessions,
    tokens,
    users,
)
from modelyard.errors import (
    AlreadyExists,
    Conflict,
    InvalidParameter,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from modelyard.services import audit, canonical, experiments
from modelyard.services.entities import now_ms

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SESSION_PREFIX = "mys_"
SESSION_TTL_MS = 12 * 3600 * 1000


def check_name(value: Any, kind: str) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise InvalidParameter(
            f"Invalid {kind} name {value!r}: 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return value


# --------------------------------------------------------------------------------- projects


@dataclass(frozen=True, slots=True)
class Project:
    id: int
    name: str
    created_at: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "created_at": self.created_at}


def _project(row: Any) -> Project:
    return Project(id=row.id, name=row.name, created_at=row.created_at)


_LIVE = projects.c.deleted_at.is_(None)


def project_key(name: str) -> str:
    """What makes two project names the same: their case is not (``services.canonical``)."""
    return canonical.folded_key(name, "project name")


def _by_name(name: str) -> Any:
    return projects.c.name_key == project_key(name)


def project_id_by_name(conn: Connection, name: str) -> int | None:
    return conn.execute(select(projects.c.id).where(_by_name(name), _LIVE)).scalar()


def find_project(db: Database, name: str) -> Project:
    with db.read() as conn:
        row = conn.execute(select(projects).where(_by_name(name), _LIVE)).first()
    if row is None:
        raise NotFound(f"Project '{name}' does not exist.")
    return _project(row)


def list_projects(db: Database, principal: Principal) -> list[tuple[Project, Role]]:
    """The projects the principal can read, with its role in each."""
    with db.read() as conn:
        rows = conn.execute(select(projects).where(_LIVE).order_by(projects.c.name)).all()
        out = []
        for row in rows:
            role = role_in(conn, principal, row.id)
            if role is not None:
                out.append((_project(row), role))
    return out


def create_project(
    db: Database, name: str, *, owner: int | None, actor: str, address: str = ""
) -> Project:
    check_name(name, "project")
    now = now_ms()
    with db.write() as conn:
        _check_free(conn, name)
        project_id = conn.execute(
            insert(projects)
            .values(name=name, name_key=project_key(name), created_at=now)
            .returning(projects.c.id)
        ).scalar_one()
        experiments.create_default(conn, project_id, now)
        if owner is not None:
            conn.execute(
                insert(memberships).values(
                    project_id=project_id, user_id=owner, role=Role.OWNER.label, created_at=now
                )
            )
        audit.record(conn, project_id, actor, "project.create", name, {}, address)
    return Project(id=project_id, name=name, created_at=now)


def _check_free(conn: Connection, name: str, renamed: int | None = None) -> None:
    row = conn.execute(select(projects.c.id, projects.c.name).where(_by_name(name))).first()
    if row is None or row.id == renamed:
        return
    if row.name == name:
        raise AlreadyExists(f"Project '{name}' already exists.")
    raise AlreadyExists(
        f"Project '{name}' already exists as '{row.name}': project names differ by more than "
        "their case."
    )


def rename_project(
    db: Database, project_id: int, new_name: str, *, actor: str, address: str = ""
) -> Project:
    check_name(new_name, "project")
    with db.write() as conn:
        row = conn.execute(select(projects).where(projects.c.id == project_id, _LIVE)).first()
        if row is None:
            raise NotFound(f"Project {project_id} does not exist.")
        _check_free(conn, new_name, project_id)
        conn.execute(
            update(projects)
            .where(projects.c.id == project_id)
            .values(name=new_name, name_key=project_key(new_name))
        )
        audit.record(
            conn, project_id, actor, "project.rename", new_name, {"from": row.name}, address
        )
    return Project(id=project_id, name=new_name, created_at=row.created_at)


def delete_project(db: Database, project_id: int, *, actor: str, address: str = "") -> None:
    """Mark a project deleted: it answers 404 from now on, its tokens stop working, and
    ``modelyard gc`` purges its data and releases its blobs. Its name is free again."""
    if project_id == DEFAULT_PROJECT_ID:
        raise Conflict("The default project cannot be deleted.")
    now = now_ms()
    with db.write() as conn:
        row = conn.execute(select(projects).where(projects.c.id == project_id, _LIVE)).first()
        if row is None:
            raise NotFound(f"Project {project_id} does not exist.")
        gone = f"{row.name}~deleted~{project_id}"
        conn.execute(
            update(projects)
            .where(projects.c.id == project_id)
            .values(deleted_at=now, name=gone, name_key=project_key(gone))
        )
        conn.execute(
            update(tokens)
            .where(tokens.c.project_id == project_id, tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        audit.record(conn, project_id, actor, "project.delete", row.name, {}, address)


# ------------------------------------------------------------------------------------ users


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    is_admin: bool
    disabled: bool
    has_password: bool
    created_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "is_admin": self.is_admin,
            "disabled": self.disabled,
            "has_password": self.has_password,
            "created_at": self.created_at,
        }


def _user(row: Any) -> User:
    return User(
        id=row.id,
        name=row.name,
        is_admin=bool(row.is_admin),
        disabled=bool(row.disabled),
        has_password=row.password_hash is not None,
        created_at=row.created_at,
    )


def create_user(
    db: Database,
    name: str,
    *,
    admin: bool = False,
    password: str | None = None,
    actor: str,
    address: str = "",
) -> User:
    check_name(name, "user")
    now = now_ms()
    hashed = secrets.hash_password(check_password(password)) if password is not None else None
    with db.write() as conn:
        if conn.execute(select(users.c.id).where(users.c.name == name)).first():
            raise AlreadyExists(f"User '{name}' already exists.")
        user_id = conn.execute(
            insert(users)
            .values(name=name, is_admin=admin, password_hash=hashed, disabled=False, created_at=now)
            .returning(users.c.id)
        ).scalar_one()
        audit.record(conn, None, actor, "user.create", name, {"admin": admin}, address)
    return User(user_id, name, admin, False, hashed is not None, now)


def check_password(password: str) -> str:
    if len(password) < 12:
        raise InvalidParameter("A password needs at least 12 characters.")
    return password


def find_user(conn: Connection, name: str) -> Any:
    row = conn.execute(select(users).where(users.c.name == name)).first()
    if row is None:
        raise NotFound(f"User '{name}' does not exist.")
    return row


def get_user(db: Database, name: str) -> User:
    with db.read() as conn:
        return _user(find_user(conn, name))


def list_users(db: Database) -> list[User]:
    with db.read() as conn:
        return [_user(row) for row in conn.execute(select(users).order_by(users.c.name))]


def update_user(
    db: Database,
    name: str,
    *,
    admin: bool | None = None,
    disabled: bool | None = None,
    password: str | None = None,
    actor: str,
    address: str = "",
) -> User:
    values: dict[str, Any] = {}
    if admin is not None:
        values["is_admin"] = admin
    if disabled is not None:
        values["disabled"] = disabled
    if password is not None:
        values["password_hash"] = secrets.hash_password(check_password(password))
    with db.write() as conn:
        row = find_user(conn, name)
        if values:
            conn.execute(update(users).where(users.c.id == row.id).values(**values))
        if disabled:
            conn.execute(sessions.delete().where(sessions.c.user_id == row.id))
        details = {k: v for k, v in values.items() if k != "password_hash"}
        if password is not None:
            details["password"] = "changed"  # noqa: S105 - an audit note
        audit.record(conn, None, actor, "user.update", name, details, address)
        return _user(conn.execute(select(users).where(users.c.id == row.id)).one())


# ------------------------------------------------------------------------------ memberships


def _member_role(conn: Connection, project_id: int, user_id: int) -> str | None:
    """The user's role label in the project (None: not a member)."""
    label: str | None = conn.execute(
        select(memberships.c.role).where(
            memberships.c.project_id == project_id, memberships.c.user_id == user_id
        )
    ).scalar()
    return label


def role_in(
    conn: Connection, principal: Principal, project_id: int, *, live: bool = False
) -> Role | None:
    """The principal's role in a project (None: it may not even see it). Cached per request.
    ``live``: the caller already knows the project exists and is not deleted."""
    if project_id in principal.roles:
        return principal.roles[project_id]
    label = None
    if principal.user_id is not None and not principal.is_admin:
        label = _member_role(conn, project_id, principal.user_id)
    role = lookup.role_for(principal, project_id, label)
    if role is not None and not live:
        found = conn.execute(select(projects.c.id).where(projects.c.id == project_id, _LIVE))
        if found.first() is None:
            role = None
    principal.roles[project_id] = role
    return role


def list_members(db: Database, project_id: int) -> list[dict[str, Any]]:
    with db.read() as conn:
        rows = conn.execute(
            select(users.c.name, memberships.c.role, memberships.c.created_at)
            .join(users, users.c.id == memberships.c.user_id)
            .where(memberships.c.project_id == project_id)
            .order_by(users.c.name)
        ).all()
    return [{"user": r.name, "role": r.role, "since": r.created_at} for r in rows]


def set_member(
    db: Database,
    project_id: int,
    user_name: str,
    role: Role,
    *,
    by: Role,
    actor: str,
    address: str = "",
) -> None:
    """Give a user a role in a project. Only an owner may appoint or demote owners."""
    with db.write() as conn:
        user = find_user(conn, user_name)
        current = _member_role(conn, project_id, user.id)
        if by < Role.OWNER and (role == Role.OWNER or current == Role.OWNER.label):
            raise PermissionDenied("Only an owner can appoint or change an owner.")
        if current is None:
            conn.execute(
                insert(memberships).values(
                    project_id=project_id, user_id=user.id, role=role.label, created_at=now_ms()
                )
            )
        else:
            if current == Role.OWNER.label and role != Role.OWNER:
                _keep_an_owner(conn, project_id, user.id)
            conn.execute(
                update(memberships)
                .where(memberships.c.project_id == project_id, memberships.c.user_id == user.id)
                .values(role=role.label)
            )
        audit.record(
            conn,
            project_id,
            actor,
            "member.set",
            user_name,
            {"role": role.label, "from": current},
            address,
        )


def remove_member(
    db: Database, project_id: int, user_name: str, *, by: Role, actor: str, address: str = ""
) -> None:
    with db.write() as conn:
        user = find_user(conn, user_name)
        current = _member_role(conn, project_id, user.id)
        if current is None:
            raise NotFound(f"User '{user_name}' is not a member of this project.")
        if current == Role.OWNER.label:
            if by < Role.OWNER:
                raise PermissionDenied("Only an owner can remove an owner.")
            _keep_an_owner(conn, project_id, user.id)
        conn.execute(
            memberships.delete().where(
                memberships.c.project_id == project_id, memberships.c.user_id == user.id
            )
        )
        audit.record(
            conn, project_id, actor, "member.remove", user_name, {"role": current}, address
        )


def _keep_an_owner(conn: Connection, project_id: int, leaving: int) -> None:
    others = conn.execute(
        select(func.count()).where(
            memberships.c.project_id == project_id,
            memberships.c.role == Role.OWNER.label,
            memberships.c.user_id != leaving,
        )
    ).scalar_one()
    if project_id != DEFAULT_PROJECT_ID and not others:
        raise Conflict("A project keeps at least one owner; appoint another owner first.")


# ----------------------------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True)
class Token:
    id: int
    name: str
    prefix: str
    user: str | None
    project_id: int | None
    role: str | None
    scope: str
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    last_used_at: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "user": self.user,
            "project_id": self.project_id,
            "role": self.role,
            "scope": self.scope,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "last_used_at": self.last_used_at,
            "active": self.revoked_at is None
            and (self.expires_at is None or self.expires_at > now_ms()),
        }


_TOKEN_COLUMNS = (
    tokens.c.id,
    tokens.c.name,
    tokens.c.prefix,
    users.c.name.label("user"),
    tokens.c.project_id,
    tokens.c.role,
    tokens.c.scope,
    tokens.c.created_at,
    tokens.c.expires_at,
    tokens.c.revoked_at,
    tokens.c.last_used_at,
)


def create_token(
    db: Database,
    *,
    name: str,
    scope: str = WRITE_SCOPE,
    user_name: str | None = None,
    project_id: int | None = None,
    role: Role | None = None,
    expires_at: int | None = None,
    actor: str,
    address: str = "",
) -> tuple[Token, str]:
    """A personal token (``user_name``) or a project token (``project_id`` and ``role``).
    Returns the token and its secret, which is not stored and cannot be shown again."""
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        raise InvalidParameter("A token needs a name of 1 to 100 characters.")
    if scope not in SCOPES:
        raise InvalidParameter(f"Invalid scope {scope!r}: one of {', '.join(SCOPES)}.")
    if (user_name is None) == (project_id is None):
        raise InvalidParameter("A token belongs to a user or to a project.")
    if project_id is not None and role is None:
        role = Role.DEVELOPER if scope == WRITE_SCOPE else Role.REPORTER
    if role == Role.OWNER:
        raise InvalidParameter("A project token can be at most a maintainer.")
    now = now_ms()
    if expires_at is not None and expires_at <= now:
        raise InvalidParameter("A token's expiry must lie in the future.")
    secret = secrets.new_secret()
    with db.write() as conn:
        user_id = None if user_name is None else find_user(conn, user_name).id
        token_id = conn.execute(
            insert(tokens)
            .values(
                secret_hash=secrets.digest(secret),
                prefix=secret[:10],
                name=name,
                user_id=user_id,
                project_id=project_id,
                role=None if role is None else role.label,
                scope=scope,
                created_at=now,
                expires_at=expires_at,
            )
            .returning(tokens.c.id)
        ).scalar_one()
        audit.record(
            conn,
            project_id,
            actor,
            "token.create",
            f"token {token_id} ({name})",
            {
                "user": user_name,
                "scope": scope,
                "role": None if role is None else role.label,
                "expires_at": expires_at,
            },
            address,
        )
        token = _token(conn, token_id)
    return token, secret


def _token(conn: Connection, token_id: int) -> Token:
    row = conn.execute(
        select(*_TOKEN_COLUMNS)
        .select_from(tokens.outerjoin(users, users.c.id == tokens.c.user_id))
        .where(tokens.c.id == token_id)
    ).first()
    if row is None:
        raise NotFound(f"Token {token_id} does not exist.")
    return Token(**row._mapping)


def get_token(db: Database, token_id: int) -> Token:
    with db.read() as conn:
        return _token(conn, token_id)


def list_tokens(
    db: Database, *, user_name: str | None = None, project_id: int | None = None
) -> list[Token]:
    query = select(*_TOKEN_COLUMNS).select_from(
        tokens.outerjoin(users, users.c.id == tokens.c.user_id)
    )
    if user_name is not None:
        query = query.where(users.c.name == user_name)
    if project_id is not None:
        query = query.where(tokens.c.project_id == project_id)
    with db.read() as conn:
        return [Token(**row._mapping) for row in conn.execute(query.order_by(tokens.c.id))]


def revoke_token(db: Database, token_id: int, *, actor: str, address: str = "") -> Token:
    with db.write() as conn:
        token = _token(conn, token_id)
        if token.revoked_at is None:
            conn.execute(update(tokens).where(tokens.c.id == token_id).values(revoked_at=now_ms()))
            audit.record(
                conn,
                token.project_id,
                actor,
                "token.revoke",
                f"token {token_id} ({token.name})",
                {"user": token.user},
                address,
            )
        return _token(conn, token_id)


# --------------------------------------------------------------------------- authentication


def touch_token(db: Database, token_id: int) -> None:
    """Record that a token was just used (the gate calls this at most once a minute)."""
    with db.write() as conn:
        conn.execute(update(tokens).where(tokens.c.id == token_id).values(last_used_at=now_ms()))


def check_login(db: Database, name: str, password: str) -> int:
    """The user id for a name and a password (or one of the user's personal tokens)."""
    with db.read() as conn:
        row = conn.execute(select(users).where(users.c.name == name)).first()
    if row is not None and not row.disabled:
        if secrets.verify_password(password, row.password_hash):
            return int(row.id)
        if password.startswith(secrets.TOKEN_PREFIX):
            try:
                principal = lookup.authenticate_token(db, password)
            except Unauthenticated:
                pass
            else:
                if principal.user_id == row.id and not principal.read_only:
                    return int(row.id)
    raise Unauthenticated("Wrong user name or password.")


# --------------------------------------------------------------------------------- sessions


def create_session(db: Database, user_id: int, address: str = "") -> tuple[str, str]:
    """A new browser session: (cookie secret, CSRF token)."""
    secret = secrets.new_secret(SESSION_PREFIX)
    csrf = secrets.new_secret("")
    now = now_ms()
    with db.write() as conn:
        conn.execute(
            sessions.delete().where(
                and_(sessions.c.user_id == user_id, sessions.c.expires_at < now)
            )
        )
        conn.execute(
            insert(sessions).values(
                secret_hash=secrets.digest(secret),
                user_id=user_id,
                csrf_token=csrf,
                created_at=now,
                expires_at=now + SESSION_TTL_MS,
            )
        )
        name = conn.execute(select(users.c.name).where(users.c.id == user_id)).scalar_one()
        audit.record(conn, None, name, "session.login", name, {}, address)
    return secret, csrf


def end_session(db: Database, secret: str) -> None:
    with db.write() as conn:
        conn.execute(sessions.delete().where(sessions.c.secret_hash == secrets.digest(secret)))
