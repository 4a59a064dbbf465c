"""Registry: logged models, registered models, versions (number and semver), aliases and their
history.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _owned_key_values(name: str, owner: str, owner_type: sa.String | sa.Integer) -> None:
    op.create_table(
        name,
        sa.Column("owner", owner_type, sa.ForeignKey(owner), nullable=False),
        sa.Column("key", sa.String(250), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("owner", "key", name=f"pk_{name}"),
        sqlite_with_rowid=False,
    )


def upgrade() -> None:
    op.create_table(
        "logged_models",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id"), nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("model_type", sa.String(500), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("source_run_id", sa.String(64), nullable=True),
        sa.Column("artifact_location", sa.Text, nullable=False),
        sa.Column("lifecycle_stage", sa.String(32), nullable=False),
        sa.Column("creation_time", sa.BigInteger, nullable=False),
        sa.Column("last_updated_time", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "ix_logged_models_experiment_created", "logged_models", ["experiment_id", "creation_time"]
    )
    op.create_index("ix_logged_models_source_run", "logged_models", ["source_run_id"])
    _owned_key_values("logged_model_tags", "logged_models.id", sa.String(64))
    _owned_key_values("logged_model_params", "logged_models.id", sa.String(64))
    op.create_table(
        "registered_models",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("creation_time", sa.BigInteger, nullable=False),
        sa.Column("last_updated_time", sa.BigInteger, nullable=False),
        sa.Column("next_version", sa.Integer, nullable=False),
        sa.Column("highest_semver", sa.String(128), nullable=True),
        sa.UniqueConstraint("project_id", "name", name="uq_registered_models_name"),
    )
    _owned_key_values("registered_model_tags", "registered_models.id", sa.Integer())
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_pk", sa.Integer, sa.ForeignKey("registered_models.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("semver", sa.String(128), nullable=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("model_id", sa.String(64), nullable=True),
        sa.Column("run_link", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("current_stage", sa.String(32), nullable=False),
        sa.Column("package_id", sa.Integer, sa.ForeignKey("packages.id"), nullable=True),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("creation_time", sa.BigInteger, nullable=False),
        sa.Column("last_updated_time", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("model_pk", "version", name="uq_model_versions_number"),
        sa.UniqueConstraint("model_pk", "semver", name="uq_model_versions_semver"),
    )
    op.create_index("ix_model_versions_updated", "model_versions", ["last_updated_time"])
    _owned_key_values("model_version_tags", "model_versions.id", sa.Integer())
    op.create_table(
        "registered_model_aliases",
        sa.Column("model_pk", sa.Integer, sa.ForeignKey("registered_models.id"), nullable=False),
        sa.Column("alias", sa.String(256), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("model_pk", "alias", name="pk_registered_model_aliases"),
    )
    op.create_table(
        "alias_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_pk", sa.Integer, sa.ForeignKey("registered_models.id"), nullable=False),
        sa.Column("alias", sa.String(256), nullable=False),
        sa.Column("from_version", sa.Integer, nullable=True),
        sa.Column("to_version", sa.Integer, nullable=True),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_alias_events_model_alias_at", "alias_events", ["model_pk", "alias", "at"])
    op.create_index("ix_metrics_model_id", "metrics", ["model_id"])


def downgrade() -> None:
    op.drop_index("ix_metrics_model_id", "metrics")
    for name in (
        "alias_events",
        "registered_model_aliases",
        "model_version_tags",
        "model_versions",
        "registered_model_tags",
        "registered_models",
        "logged_model_params",
        "logged_model_tags",
        "logged_models",
    ):
        op.drop_table(name)
