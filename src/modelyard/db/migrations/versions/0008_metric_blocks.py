"""Metric blocks: per run, key and level, the count and the lowest and highest finite point of
each block of aligned steps, so charts of long histories read summaries instead of every point.
The blocks of the points already stored are computed here.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from modelyard.services import metric_blocks

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_blocks",
        sa.Column("run_pk", sa.Integer, sa.ForeignKey("runs.pk"), nullable=False),
        sa.Column("key", sa.String(250), nullable=False),
        sa.Column("level", sa.SmallInteger, nullable=False),
        sa.Column("bucket", sa.BigInteger, nullable=False),
        sa.Column("points", sa.BigInteger, nullable=False),
        sa.Column("min_value", sa.Float, nullable=False),
        sa.Column("min_step", sa.BigInteger, nullable=False),
        sa.Column("min_ts", sa.BigInteger, nullable=False),
        sa.Column("max_value", sa.Float, nullable=False),
        sa.Column("max_step", sa.BigInteger, nullable=False),
        sa.Column("max_ts", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("run_pk", "key", "level", "bucket", name="pk_metric_blocks"),
        sqlite_with_rowid=False,
    )
    metric_blocks.fill(op.get_bind())


def downgrade() -> None:
    op.drop_table("metric_blocks")
