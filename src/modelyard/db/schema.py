"""The tables. Every top-level row belongs to a project."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

DEFAULT_PROJECT_ID = 1
DEFAULT_PROJECT_NAME = "default"
# A name's key (``services.canonical``): what makes two names the same name. Unique indexes
# are on keys, so names that differ only in case, width or Unicode form, or in an invisible
# character, cannot name two things.
KEY_LENGTH = 2000

projects = Table(
    "projects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("name_key", String(255), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    # Set when the project is deleted: it answers 404 at once, and gc purges its data.
    Column("deleted_at", BigInteger, nullable=True),
    # The experiment MLflow's id "0" stands for in this project (its "Default" experiment).
    Column("default_experiment_id", Integer, nullable=True),
    UniqueConstraint("name_key", name="uq_projects_name_key"),
)

experiments = Table(
    "experiments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("name", String(500), nullable=False),
    Column("name_key", String(KEY_LENGTH), nullable=False),
    Column("artifact_location", Text, nullable=True),
    Column("lifecycle_stage", String(32), nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_update_time", BigInteger, nullable=False),
    UniqueConstraint("project_id", "name_key", name="uq_experiments_project_name_key"),
    Index("ix_experiments_project_created", "project_id", "creation_time"),
)

experiment_tags = Table(
    "experiment_tags",
    metadata,
    Column("experiment_id", Integer, ForeignKey("experiments.id"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("experiment_id", "key", name="pk_experiment_tags"),
    sqlite_with_rowid=False,
)

# Candidates. ``pk`` is the internal key every child row points at; ``id`` is the public run id.
runs = Table(
    "runs",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("experiment_id", Integer, ForeignKey("experiments.id"), nullable=False),
    Column("name", String(250), nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("status", String(16), nullable=False),
    Column("start_time", BigInteger, nullable=False),
    Column("end_time", BigInteger, nullable=True),
    Column("artifact_uri", Text, nullable=True),
    Column("lifecycle_stage", String(32), nullable=False),
    Column("deleted_time", BigInteger, nullable=True),
    Index("ix_runs_experiment_start", "experiment_id", "start_time"),
)


def _key_value_table(name: str) -> Table:
    """params and run_tags: one value per (run, key). The run's experiment is repeated so that
    searches read only the searched experiments' entries. SQLite indexes (experiment, key,
    value); PostgreSQL (experiment, key), since values may exceed its index row size."""
    return Table(
        name,
        metadata,
        Column("run_pk", Integer, ForeignKey("runs.pk"), nullable=False),
        Column("experiment_id", Integer, nullable=False),
        Column("key", String(250), nullable=False),
        Column("value", Text, nullable=False),
        PrimaryKeyConstraint("run_pk", "key", name=f"pk_{name}"),
        Index(f"ix_{name}_key_value", "experiment_id", "key", "value").ddl_if(dialect="sqlite"),
        Index(f"ix_{name}_key", "experiment_id", "key").ddl_if(dialect="postgresql"),
        sqlite_with_rowid=False,
    )


params = _key_value_table("params")
run_tags = _key_value_table("run_tags")

# Every logged point, clustered by (run, key, step): a history read is one range scan. NaN is
# stored as is_nan with value 0 so that the key deduplicates it.
metrics = Table(
    "metrics",
    metadata,
    Column("run_pk", Integer, ForeignKey("runs.pk"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    Column("is_nan", Boolean, nullable=False),
    Column("model_id", String(64), nullable=True),
    Column("dataset_name", String(500), nullable=True),
    Column("dataset_digest", String(64), nullable=True),
    PrimaryKeyConstraint(
        "run_pk", "key", "step", "timestamp", "value", "is_nan", name="pk_metrics"
    ),
    sqlite_with_rowid=False,
)

# A summary of each metric history for the charts: per run and key, for each level L (a block
# holds the steps s with s >> L == bucket), the number of finite points logged into the block
# and its lowest and highest finite point (ties: the earliest by step, then timestamp).
# Kept up to date in the transaction that writes the points (services/metric_blocks.py).
metric_blocks = Table(
    "metric_blocks",
    metadata,
    Column("run_pk", Integer, ForeignKey("runs.pk"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("level", SmallInteger, nullable=False),
    Column("bucket", BigInteger, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("min_value", Float, nullable=False),
    Column("min_step", BigInteger, nullable=False),
    Column("min_ts", BigInteger, nullable=False),
    Column("max_value", Float, nullable=False),
    Column("max_step", BigInteger, nullable=False),
    Column("max_ts", BigInteger, nullable=False),
    PrimaryKeyConstraint("run_pk", "key", "level", "bucket", name="pk_metric_blocks"),
    sqlite_with_rowid=False,
)

# The latest value of each metric of each run (highest step, then timestamp, then value).
latest_metrics = Table(
    "latest_metrics",
    metadata,
    Column("run_pk", Integer, ForeignKey("runs.pk"), nullable=False),
    Column("experiment_id", Integer, nullable=False),
    Column("key", String(250), nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    Column("is_nan", Boolean, nullable=False),
    PrimaryKeyConstraint("run_pk", "key", name="pk_latest_metrics"),
    Index("ix_latest_metrics_key_value", "experiment_id", "key", "value", "is_nan"),
    sqlite_with_rowid=False,
)

datasets = Table(
    "datasets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("experiment_id", Integer, ForeignKey("experiments.id"), nullable=False),
    Column("name", String(500), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("source_type", String(36), nullable=False),
    Column("source", Text, nullable=False),
    Column("schema", Text, nullable=True),
    Column("profile", Text, nullable=True),
    UniqueConstraint("experiment_id", "name", "digest", name="uq_datasets_identity"),
)

run_inputs = Table(
    "run_inputs",
    metadata,
    Column("run_pk", Integer, ForeignKey("runs.pk"), nullable=False),
    Column("dataset_id", Integer, ForeignKey("datasets.id"), nullable=False),
    Column("context", String(250), nullable=True),
    Column("tags_json", Text, nullable=False),
    PrimaryKeyConstraint("run_pk", "dataset_id", name="pk_run_inputs"),
    Index("ix_run_inputs_dataset", "dataset_id"),
)

run_model_links = Table(
    "run_model_links",
    metadata,
    Column("run_pk", Integer, ForeignKey("runs.pk"), nullable=False),
    Column("model_id", String(64), nullable=False),
    Column("direction", String(8), nullable=False),
    Column("step", BigInteger, nullable=False),
    PrimaryKeyConstraint("run_pk", "model_id", "direction", name="pk_run_model_links"),
)

# Package store. A blob is stored bytes, keyed by their sha256 and shared by every file with the
# same content; ``refs`` counts the package files pointing at it and is changed in the same
# transaction as they are, so that garbage collection can only remove an unreferenced blob.
blobs = Table(
    "blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("location", String(200), nullable=False),
    Column("refs", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_blobs_refs", "refs"),
)

# A named, versioned set of files. A candidate's artifacts form one package (run_pk set).
# ``kind`` is the package's namespace: the names the server gives the packages of candidates,
# logged models and model versions are reserved, and the packages API writes only ``generic``
# packages, so it cannot squat them.
packages = Table(
    "packages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("name_key", String(255), nullable=False),
    Column("version", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("run_pk", Integer, ForeignKey("runs.pk"), nullable=True, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("published_at", BigInteger, nullable=True),
    UniqueConstraint(
        "project_id", "kind", "name_key", "version", name="uq_packages_kind_name_version"
    ),
)

package_files = Table(
    "package_files",
    metadata,
    Column("package_id", Integer, ForeignKey("packages.id"), nullable=False),
    Column("path", String(1024), nullable=False),
    Column("sha256", String(64), ForeignKey("blobs.sha256"), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("media_type", String(255), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("package_id", "path", name="pk_package_files"),
    Index("ix_package_files_sha256", "sha256"),
    sqlite_with_rowid=False,
)

# Multipart uploads that clients send straight to object storage through presigned URLs.
uploads = Table(
    "uploads",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("package_id", Integer, ForeignKey("packages.id"), nullable=False),
    Column("path", String(1024), nullable=False),
    Column("location", String(200), nullable=False),
    Column("storage_upload_id", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# MLflow 3 LoggedModels: a model object logged from a candidate; its files are a package.
logged_models = Table(
    "logged_models",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("experiment_id", Integer, ForeignKey("experiments.id"), nullable=False),
    Column("name", String(500), nullable=False),
    Column("model_type", String(500), nullable=False),
    Column("status", String(32), nullable=False),
    Column("source_run_id", String(64), nullable=True),
    Column("artifact_location", Text, nullable=False),
    Column("lifecycle_stage", String(32), nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_updated_time", BigInteger, nullable=False),
    Index("ix_logged_models_experiment_created", "experiment_id", "creation_time"),
    Index("ix_logged_models_source_run", "source_run_id"),
)


def _owned_key_values(name: str, owner: str, owner_type: String | Integer) -> Table:
    """Tags or params of one owner row (``owner`` is the referenced ``table.column``)."""
    return Table(
        name,
        metadata,
        Column("owner", owner_type, ForeignKey(owner), nullable=False),
        Column("key", String(250), nullable=False),
        Column("value", Text, nullable=False),
        PrimaryKeyConstraint("owner", "key", name=f"pk_{name}"),
        sqlite_with_rowid=False,
    )


logged_model_tags = _owned_key_values("logged_model_tags", "logged_models.id", String(64))
logged_model_params = _owned_key_values("logged_model_params", "logged_models.id", String(64))

# Registered models ("models") and their versions. ``next_version`` is the per-model counter
# from which version numbers are taken (UPDATE … RETURNING in the creating transaction), so a
# number is never handed out twice, not even after its version was deleted.
registered_models = Table(
    "registered_models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("name", String(256), nullable=False),
    Column("name_key", String(KEY_LENGTH), nullable=False),
    Column("description", Text, nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_updated_time", BigInteger, nullable=False),
    Column("next_version", Integer, nullable=False),
    Column("highest_semver", String(128), nullable=True),
    UniqueConstraint("project_id", "name_key", name="uq_registered_models_name_key"),
)
registered_model_tags = _owned_key_values(
    "registered_model_tags", "registered_models.id", Integer()
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_pk", Integer, ForeignKey("registered_models.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("semver", String(128), nullable=True),
    Column("source", Text, nullable=False),
    Column("run_id", String(64), nullable=True),
    Column("model_id", String(64), nullable=True),
    Column("run_link", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("status", String(32), nullable=False),
    Column("current_stage", String(32), nullable=False),
    Column("package_id", Integer, ForeignKey("packages.id"), nullable=True),
    Column("deleted", Boolean, nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_updated_time", BigInteger, nullable=False),
    UniqueConstraint("model_pk", "version", name="uq_model_versions_number"),
    UniqueConstraint("model_pk", "semver", name="uq_model_versions_semver"),
    Index("ix_model_versions_updated", "last_updated_time"),
    Index("ix_model_versions_model_updated", "model_pk", "last_updated_time", "version"),
)
model_version_tags = _owned_key_values("model_version_tags", "model_versions.id", Integer())

registered_model_aliases = Table(
    "registered_model_aliases",
    metadata,
    Column("model_pk", Integer, ForeignKey("registered_models.id"), nullable=False),
    Column("alias", String(256), nullable=False),
    Column("alias_key", String(KEY_LENGTH), nullable=False),
    Column("version", Integer, nullable=False),
    PrimaryKeyConstraint("model_pk", "alias", name="pk_registered_model_aliases"),
    UniqueConstraint("model_pk", "alias_key", name="uq_registered_model_aliases_key"),
)

# Every alias move: who, when, from which version to which (None = created / deleted).
alias_events = Table(
    "alias_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_pk", Integer, ForeignKey("registered_models.id"), nullable=False),
    Column("alias", String(256), nullable=False),
    Column("alias_key", String(KEY_LENGTH), nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True),
    Column("actor", String(256), nullable=False),
    Column("at", BigInteger, nullable=False),
    Index("ix_alias_events_model_alias_key_at", "model_pk", "alias_key", "at"),
)

# Only the points linked to a logged model: the others are never looked up by model, and
# indexing them too would cost more than the points' own insert.
Index(
    "ix_metrics_model_id",
    metrics.c.model_id,
    sqlite_where=metrics.c.model_id.is_not(None),
    postgresql_where=metrics.c.model_id.is_not(None),
)

# Access: users, their roles in projects, tokens, browser sessions and the audit log. Secrets
# (tokens, session cookies) are stored only as their sha256; passwords as scrypt hashes.
users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("is_admin", Boolean, nullable=False),
    Column("password_hash", Text, nullable=True),
    Column("disabled", Boolean, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

memberships = Table(
    "memberships",
    metadata,
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("project_id", "user_id", name="pk_memberships"),
    Index("ix_memberships_user", "user_id"),
)

# A personal token (user_id set, project_id empty) acts with its user's roles; a project token
# (project_id set, user_id empty) has a role of its own in that one project. A read-scoped
# token never does more than read and download.
tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("name", String(100), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=True),
    Column("role", String(16), nullable=True),
    Column("scope", String(8), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=True),
    Column("revoked_at", BigInteger, nullable=True),
    Column("last_used_at", BigInteger, nullable=True),
    Index("ix_tokens_user", "user_id"),
    Index("ix_tokens_project", "project_id"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("secret_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_sessions_user", "user_id"),
)

# Sign-in attempts per (user name, client address) in the current window, shared by every
# server process on the database (web/login.py, services/throttle.py).
login_attempts = Table(
    "login_attempts",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("address", String(64), primary_key=True),
    Column("attempts", Integer, nullable=False),
    Column("window_start", BigInteger, nullable=False),
    Index("ix_login_attempts_window", "window_start"),
)

# Who changed the registry or access, when, what and from where. Kept when a project is purged.
audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, nullable=True),
    Column("at", BigInteger, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", Text, nullable=False),
    Column("details", Text, nullable=False),
    Column("address", String(64), nullable=False),
    Index("ix_audit_events_project_at", "project_id", "at"),
)

# Webhooks of a project and their outbox. An event row is written in the transaction of the
# change that raises it, and becomes a delivery row per subscribed webhook (see webhook_events);
# both carry the exact body that is signed and sent, so a crash between the change and the send
# loses nothing. The secret is
# kept as given (it signs every delivery) and is never returned by any read.
webhooks = Table(
    "webhooks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("webhook_id", String(36), nullable=False, unique=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("name", String(63), nullable=False),
    Column("description", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("secret", Text, nullable=False),
    # the subscribed event names, comma separated with a comma at each end: ",a.b,c.d,"
    Column("events", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    # the first failed attempt since the last success; a long streak disables the webhook
    Column("failing_since", BigInteger, nullable=True),
    # why the server disabled the webhook by itself (empty otherwise): the page's banner
    Column("disabled_reason", Text, nullable=False),
    Index("ix_webhooks_project", "project_id", "created_at"),
)

# Events written in the transaction of the change that raised them, one row per change whatever
# the number of webhooks listening (``webhook_pks``: theirs, comma-separated, at that moment);
# the delivery worker turns each into one delivery per webhook, in id order, and removes it.
webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, nullable=False),
    Column("event", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("webhook_pks", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", String(36), nullable=False, unique=True),
    Column("webhook_pk", Integer, ForeignKey("webhooks.id"), nullable=False),
    Column("event", String(64), nullable=False),
    Column("body", Text, nullable=False),
    # pending (queued or retrying), delivered, failed (given up); a test send is final at once
    Column("state", String(16), nullable=False),
    Column("test", Boolean, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("next_attempt_at", BigInteger, nullable=True),
    Column("last_attempt_at", BigInteger, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=False),
    Column("response_excerpt", Text, nullable=False),
    Column("duration_ms", Integer, nullable=True),
    Column("delivered_at", BigInteger, nullable=True),
    Index("ix_webhook_deliveries_queue", "state", "webhook_pk", "id"),
    Index("ix_webhook_deliveries_webhook", "webhook_pk", "id"),
)
