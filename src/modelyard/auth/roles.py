"""Roles in a project, what each may do, and who is asking (the principal)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from modelyard.errors import InvalidParameter


class Role(IntEnum):
    """A member's role in a project; each includes what the roles below it may do."""

    GUEST = 10  # read
    REPORTER = 20  # read + download files
    DEVELOPER = 30  # write: log, upload, promote
    MAINTAINER = 40  # models, aliases, deletes, members, tokens, audit log
    OWNER = 50  # rename and delete the project, appoint owners

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str | None, name: str = "role") -> Role:
        try:
            return cls[str(value or "").upper()]
        except KeyError:
            choices = ", ".join(role.label for role in cls)
            raise InvalidParameter(f"Invalid {name} {value!r}: one of {choices}.") from None


class Capability(IntEnum):
    """What a route needs. Project capabilities map to the least role that has them; the
    others are checked against the principal alone."""

    PUBLIC = 0  # anyone, signed in or not (health, the login page)
    USER = 1  # any signed-in person (their own tokens, their projects)
    ADMIN = 2  # instance admins (users)
    CALLER = 3  # any authenticated caller, project tokens included (who am I)
    READ = Role.GUEST
    DOWNLOAD = Role.REPORTER
    WRITE = Role.DEVELOPER
    MAINTAIN = Role.MAINTAINER
    OWN = Role.OWNER


READ_SCOPE = "read"
WRITE_SCOPE = "write"
SCOPES = (READ_SCOPE, WRITE_SCOPE)


@dataclass(slots=True, eq=False)
class Principal:
    """Who a request comes from. ``user_id`` is empty for a project token and for the
    anonymous caller of a server that runs without authentication."""

    name: str
    user_id: int | None = None
    is_admin: bool = False
    token_id: int | None = None
    token_project_id: int | None = None
    token_role: Role | None = None
    read_only: bool = False
    via_session: bool = False
    csrf_token: str | None = None
    anonymous: bool = False
    #: roles already looked up, by project id (None = not a member)
    roles: dict[int, Role | None] = field(default_factory=dict)

    @property
    def actor(self) -> str:
        """How the audit log names this principal."""
        if self.anonymous:
            return "anonymous"
        if self.user_id is None:
            return f"token:{self.name}"
        return self.name if self.token_id is None else f"{self.name} (token {self.token_id})"

    def cap(self, role: Role | None) -> Role | None:
        """The role limited by the token: a read-scoped token reads and downloads only."""
        if role is None:
            return None
        if self.read_only and role > Role.REPORTER:
            return Role.REPORTER
        return role


#: the caller of a server without authentication: may do everything
NOBODY = Principal(name="anonymous", is_admin=True, anonymous=True)
