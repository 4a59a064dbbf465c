"""Tracking core: projects, experiments, candidates, params, tags, metrics, datasets.

Revision ID: 0001
Revises:
"""

import time

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _point_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("run_pk", sa.Integer, sa.ForeignKey("runs.pk"), nullable=False),
        sa.Column("key", sa.String(250), nullable=False),
        sa.Column("step", sa.BigInteger, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("is_nan", sa.Boolean, nullable=False),
    ]


def upgrade() -> None:
    projects = op.create_table(
        "projects",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    experiments = op.create_table(
        "experiments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("artifact_location", sa.Text, nullable=True),
        sa.Column("lifecycle_stage", sa.String(32), nullable=False),
        sa.Column("creation_time", sa.BigInteger, nullable=False),
        sa.Column("last_update_time", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("project_id", "name", name="uq_experiments_project_name"),
    )
    op.create_index(
        "ix_experiments_project_created", "experiments", ["project_id", "creation_time"]
    )
    op.create_table(
        "experiment_tags",
        sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id"), nullable=False),
        sa.Column("key", sa.String(250), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("experiment_id", "key", name="pk_experiment_tags"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "runs",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id"), nullable=False),
        sa.Column("name", sa.String(250), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("start_time", sa.BigInteger, nullable=False),
        sa.Column("end_time", sa.BigInteger, nullable=True),
        sa.Column("artifact_uri", sa.Text, nullable=True),
        sa.Column("lifecycle_stage", sa.String(32), nullable=False),
        sa.Column("deleted_time", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_runs_experiment_start", "runs", ["experiment_id", "start_time"])
    sqlite = op.get_bind().dialect.name == "sqlite"
    for name in ("params", "run_tags"):
        op.create_table(
            name,
            sa.Column("run_pk", sa.Integer, sa.ForeignKey("runs.pk"), nullable=False),
            sa.Column("experiment_id", sa.Integer, nullable=False),
            sa.Column("key", sa.String(250), nullable=False),
            sa.Column("value", sa.Text, nullable=False),
            sa.PrimaryKeyConstraint("run_pk", "key", name=f"pk_{name}"),
            sqlite_with_rowid=False,
        )
        if sqlite:
            op.create_index(f"ix_{name}_key_value", name, ["experiment_id", "key", "value"])
        else:
            op.create_index(f"ix_{name}_key", name, ["experiment_id", "key"])
    op.create_table(
        "metrics",
        *_point_columns(),
        sa.Column("model_id", sa.String(64), nullable=True),
        sa.Column("dataset_name", sa.String(500), nullable=True),
        sa.Column("dataset_digest", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint(
            "run_pk", "key", "step", "timestamp", "value", "is_nan", name="pk_metrics"
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "latest_metrics",
        *_point_columns(),
        sa.Column("experiment_id", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("run_pk", "key", name="pk_latest_metrics"),
        sqlite_with_rowid=False,
    )
    op.create_index(
        "ix_latest_metrics_key_value",
        "latest_metrics",
        ["experiment_id", "key", "value", "is_nan"],
    )
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id"), nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("source_type", sa.String(36), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("schema", sa.Text, nullable=True),
        sa.Column("profile", sa.Text, nullable=True),
        sa.UniqueConstraint("experiment_id", "name", "digest", name="uq_datasets_identity"),
    )
    op.create_table(
        "run_inputs",
        sa.Column("run_pk", sa.Integer, sa.ForeignKey("runs.pk"), nullable=False),
        sa.Column("dataset_id", sa.Integer, sa.ForeignKey("datasets.id"), nullable=False),
        sa.Column("context", sa.String(250), nullable=True),
        sa.Column("tags_json", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("run_pk", "dataset_id", name="pk_run_inputs"),
    )
    op.create_index("ix_run_inputs_dataset", "run_inputs", ["dataset_id"])
    op.create_table(
        "run_model_links",
        sa.Column("run_pk", sa.Integer, sa.ForeignKey("runs.pk"), nullable=False),
        sa.Column("model_id", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("step", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("run_pk", "model_id", "direction", name="pk_run_model_links"),
    )

    now = int(time.time() * 1000)
    op.bulk_insert(projects, [{"id": 1, "name": "default", "created_at": now}])
    op.bulk_insert(
        experiments,
        [
            {
                "id": 0,
                "project_id": 1,
                "name": "Default",
                "artifact_location": "mlflow-artifacts:/0",
                "lifecycle_stage": "active",
                "creation_time": now,
                "last_update_time": now,
            }
        ],
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SELECT setval('projects_id_seq', 1)")
        op.execute("SELECT setval('experiments_id_seq', 1, false)")


def downgrade() -> None:
    for table in (
        "run_model_links",
        "run_inputs",
        "datasets",
        "latest_metrics",
        "metrics",
        "run_tags",
        "params",
        "runs",
        "experiment_tags",
        "experiments",
        "projects",
    ):
        op.drop_table(table)
