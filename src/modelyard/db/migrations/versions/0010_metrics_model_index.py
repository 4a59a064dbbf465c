"""The index of metric points by logged model holds only the points linked to a model: the
others (nearly all) are never looked up by it, and keeping them in it cost more than the
points' own insert.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_LINKED = sa.text("model_id IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_metrics_model_id", "metrics")
    op.create_index(
        "ix_metrics_model_id",
        "metrics",
        ["model_id"],
        sqlite_where=_LINKED,
        postgresql_where=_LINKED,
    )


def downgrade() -> None:
    op.drop_index("ix_metrics_model_id", "metrics")
    op.create_index("ix_metrics_model_id", "metrics", ["model_id"])
