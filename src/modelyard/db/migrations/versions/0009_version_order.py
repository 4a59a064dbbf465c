"""A model's versions in their usual order (last updated first) straight from an index, so a
page of a model's versions reads that page and sorts nothing.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_model_versions_model_updated",
        "model_versions",
        ["model_pk", "last_updated_time", "version"],
    )


def downgrade() -> None:
    op.drop_index("ix_model_versions_model_updated", "model_versions")
