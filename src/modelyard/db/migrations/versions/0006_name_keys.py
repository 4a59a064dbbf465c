"""Names: a canonical key next to every model, alias, experiment, project and package name,
unique in its scope; packages are unique per kind, so the packages API cannot squat the names
of the server's own packages.

Existing names keep their spelling; their keys are computed here. When two existing names of
one scope have the same key (``Churn`` and ``churn``), the upgrade stops and names them: rename
one with the modelyard that made the database, then upgrade again. A package of the packages
API whose name is one the server now keeps for its own packages (``model-<n>``, a run id, a
logged model id) is renamed ``<name>.generic``, so it stays reachable.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Callable, Iterable

import sqlalchemy as sa
from alembic import op

from modelyard.errors import ModelyardError
from modelyard.services.canonical import folded_key, normalized_key
from modelyard.services.packages import GENERIC, kind_of

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

KEY = 2000

# table, id column, scope columns, name column, key column, key function, what it is
_NAMES: list[tuple[str, str, tuple[str, ...], str, str, Callable[[str], str], str]] = [
    ("projects", "id", (), "name", "name_key", folded_key, "projects"),
    ("experiments", "id", ("project_id",), "name", "name_key", normalized_key, "experiments"),
    ("registered_models", "id", ("project_id",), "name", "name_key", folded_key, "models"),
    (
        "registered_model_aliases",
        "model_pk, alias",
        ("model_pk",),
        "alias",
        "alias_key",
        folded_key,
        "aliases",
    ),
    ("alias_events", "id", (), "alias", "alias_key", folded_key, ""),
    (
        "packages",
        "id",
        ("project_id", "kind", "version"),
        "name",
        "name_key",
        folded_key,
        "packages",
    ),
]


class NamesCollide(ModelyardError):
    """Existing names that the new rules make the same name."""


def _fill(
    table: str,
    ids: str,
    scope: tuple[str, ...],
    name: str,
    key: str,
    key_of: Callable[[str], str],
    what: str,
) -> None:
    conn = op.get_bind()
    id_columns = [c.strip() for c in ids.split(",")]
    columns = ", ".join([*id_columns, *scope, name])
    seen: dict[tuple[object, ...], str] = {}
    updates = []
    for row in conn.execute(sa.text(f"SELECT {columns} FROM {table}")).all():
        identity = tuple(row[: len(id_columns)])
        where = tuple(row[len(id_columns) : -1])
        value = row[-1]
        computed = key_of(value)
        if what:
            other = seen.setdefault((*where, computed), value)
            if other != value:
                _collide(what, other, value, where)
        updates.append({"k": computed, **{f"i{n}": v for n, v in enumerate(identity)}})
    match = " AND ".join(f"{c} = :i{n}" for n, c in enumerate(id_columns))
    statement = sa.text(f"UPDATE {table} SET {key} = :k WHERE {match}")
    for start in range(0, len(updates), 1000):
        conn.execute(statement, updates[start : start + 1000])


def _collide(what: str, first: str, second: str, where: Iterable[object]) -> None:
    scope = f" (in {tuple(where)})" if where else ""
    raise NamesCollide(
        f"Cannot upgrade: the {what} {first!r} and {second!r}{scope} would now be the same "
        "name (names that differ only in case, width, Unicode form or invisible characters "
        "are one name). Rename one of them with the modelyard that made this database, then "
        "run `modelyard db upgrade` again."
    )


def _rename_reserved_packages() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, name FROM packages WHERE kind = 'generic'")).all()
    for package_id, name in rows:
        if kind_of(name) != GENERIC:
            renamed = f"{name}.generic"
            conn.execute(
                sa.text("UPDATE packages SET name = :name, name_key = :key WHERE id = :id"),
                {"name": renamed, "key": folded_key(renamed), "id": package_id},
            )


def upgrade() -> None:
    for table, _ids, _scope, _name, key, _of, _what in _NAMES:
        length = 255 if table in ("projects", "packages") else KEY
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column(key, sa.String(length), nullable=True))
    for entry in _NAMES:
        _fill(*entry)
    _rename_reserved_packages()
    with op.batch_alter_table("projects") as batch:
        batch.alter_column("name_key", existing_type=sa.String(255), nullable=False)
        batch.create_unique_constraint("uq_projects_name_key", ["name_key"])
    with op.batch_alter_table("experiments") as batch:
        batch.alter_column("name_key", existing_type=sa.String(KEY), nullable=False)
        batch.drop_constraint("uq_experiments_project_name", type_="unique")
        batch.create_unique_constraint(
            "uq_experiments_project_name_key", ["project_id", "name_key"]
        )
    with op.batch_alter_table("registered_models") as batch:
        batch.alter_column("name_key", existing_type=sa.String(KEY), nullable=False)
        batch.drop_constraint("uq_registered_models_name", type_="unique")
        batch.create_unique_constraint("uq_registered_models_name_key", ["project_id", "name_key"])
    with op.batch_alter_table("registered_model_aliases") as batch:
        batch.alter_column("alias_key", existing_type=sa.String(KEY), nullable=False)
        batch.create_unique_constraint("uq_registered_model_aliases_key", ["model_pk", "alias_key"])
    op.drop_index("ix_alias_events_model_alias_at", table_name="alias_events")
    with op.batch_alter_table("alias_events") as batch:
        batch.alter_column("alias_key", existing_type=sa.String(KEY), nullable=False)
    op.create_index(
        "ix_alias_events_model_alias_key_at", "alias_events", ["model_pk", "alias_key", "at"]
    )
    with op.batch_alter_table("packages") as batch:
        batch.alter_column("name_key", existing_type=sa.String(255), nullable=False)
        batch.drop_constraint("uq_packages_identity", type_="unique")
        batch.create_unique_constraint(
            "uq_packages_kind_name_version", ["project_id", "kind", "name_key", "version"]
        )


def downgrade() -> None:
    with op.batch_alter_table("packages") as batch:
        batch.drop_constraint("uq_packages_kind_name_version", type_="unique")
        batch.create_unique_constraint("uq_packages_identity", ["project_id", "name", "version"])
        batch.drop_column("name_key")
    op.drop_index("ix_alias_events_model_alias_key_at", table_name="alias_events")
    with op.batch_alter_table("alias_events") as batch:
        batch.drop_column("alias_key")
    op.create_index("ix_alias_events_model_alias_at", "alias_events", ["model_pk", "alias", "at"])
    with op.batch_alter_table("registered_model_aliases") as batch:
        batch.drop_constraint("uq_registered_model_aliases_key", type_="unique")
        batch.drop_column("alias_key")
    with op.batch_alter_table("registered_models") as batch:
        batch.drop_constraint("uq_registered_models_name_key", type_="unique")
        batch.create_unique_constraint("uq_registered_models_name", ["project_id", "name"])
        batch.drop_column("name_key")
    with op.batch_alter_table("experiments") as batch:
        batch.drop_constraint("uq_experiments_project_name_key", type_="unique")
        batch.create_unique_constraint("uq_experiments_project_name", ["project_id", "name"])
        batch.drop_column("name_key")
    with op.batch_alter_table("projects") as batch:
        batch.drop_constraint("uq_projects_name_key", type_="unique")
        batch.drop_column("name_key")
