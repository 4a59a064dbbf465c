"""Sign-in attempts in the database, so every server process sharing it applies one limit.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_attempts",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("address", sa.String(64), primary_key=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("window_start", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_login_attempts_window", "login_attempts", ["window_start"])


def downgrade() -> None:
    op.drop_table("login_attempts")
