"""One typed settings object, read once: CLI flags > ``MODELYARD_*`` environment > defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelyard.db.engine import Database


def _meta(help_text: str) -> dict[str, str]:
    return {"help": help_text}


@dataclass(frozen=True)
class Settings:
    """Everything the server and the CLI need to know. Each field is documented in docs."""

    host: str = field(default="127.0.0.1", metadata=_meta("Address to listen on."))
    port: int = field(default=5000, metadata=_meta("TCP port to listen on."))
    data_dir: Path = field(
        default=Path("modelyard-data"),
        metadata=_meta("Folder holding the SQLite database and the local blob store."),
    )
    database_url: str = field(
        default="",
        metadata=_meta(
            "SQLAlchemy URL of the metadata database, e.g. postgresql+psycopg://host/db. "
            "Empty means the SQLite file modelyard.db inside the data dir."
        ),
    )
    blob_store_url: str = field(
        default="",
        metadata=_meta(
            "Where artifact bytes live: a local folder (a path or file:///path) or S3-compatible "
            "object storage (s3://bucket/prefix). Empty means the folder blobs inside the data dir."
        ),
    )
    s3_endpoint_url: str = field(
        default="",
        metadata=_meta(
            "Endpoint of the S3-compatible store, e.g. http://127.0.0.1:8333. Empty means AWS."
        ),
    )
    s3_region: str = field(default="us-east-1", metadata=_meta("Region of the S3 bucket."))
    s3_access_key_id: str = field(
        default="",
        metadata=_meta("S3 access key id. Empty means the usual AWS_* variables and files."),
    )
    s3_secret_access_key: str = field(
        default="",
        metadata=_meta("S3 secret key. Empty means the usual AWS_* variables and files."),
    )
    s3_presigned: bool = field(
        default=True,
        metadata=_meta(
            "With S3, let clients move large files straight to and from the bucket through "
            "presigned URLs (multipart uploads and ranged downloads), so the server never "
            "carries those bytes."
        ),
    )
    auth: bool = field(
        default=False,
        metadata=_meta(
            "Require a token or a signed-in session on every request except /health and the "
            "login page. Without it the server only starts on a loopback address."
        ),
    )
    insecure_no_auth: bool = field(
        default=False,
        metadata=_meta(
            "Allow serving a non-loopback address without authentication: anyone who can "
            "reach the port can read and change everything."
        ),
    )
    allowed_hosts: str = field(
        default="",
        metadata=_meta(
            "Comma-separated host names the server answers to besides localhost, the bind "
            "address and (when bound to 0.0.0.0) this machine's names; '*' allows any. Other "
            "Host headers get 400, which defeats DNS rebinding."
        ),
    )
    workers: int = field(default=1, metadata=_meta("Number of server processes."))
    log_level: str = field(default="warning", metadata=_meta("Server log level."))
    webhook_allow_private: bool = field(
        default=False,
        metadata=_meta(
            "Let webhooks reach loopback, private, link-local and cloud-metadata addresses. "
            "Off, a delivery connects only to public addresses, checked after DNS."
        ),
    )
    webhook_retry_hours: float = field(
        default=24.0,
        metadata=_meta(
            "How long a webhook delivery is retried (exponential backoff with jitter) before it "
            "is given up."
        ),
    )
    webhook_disable_after_hours: float = field(
        default=72.0,
        metadata=_meta(
            "A webhook whose deliveries have all failed for this long is disabled, with an "
            "audit entry."
        ),
    )
    webhook_retention_days: float = field(
        default=30.0,
        metadata=_meta(
            "Delivered and given-up webhook deliveries older than this many days are removed "
            "(0: kept forever)."
        ),
    )
    webhook_senders: int = field(
        default=4,
        metadata=_meta(
            "Deliveries each server process sends at once (to different webhooks; each "
            "webhook's deliveries go out in order, one at a time)."
        ),
    )
    busy_timeout: float = field(
        default=15.0,
        metadata=_meta(
            "Seconds a write waits for a busy SQLite database before answering a retryable 503."
        ),
    )
    header_timeout: float = field(
        default=20.0,
        metadata=_meta(
            "Seconds a connection has to send a request's headers, counted from the request's "
            "first byte (or from the connection's opening); then it gets 408 and is closed. "
            "0 means no limit."
        ),
    )
    body_timeout: float = field(
        default=60.0,
        metadata=_meta(
            "Seconds a request body may stall (no byte arriving while the server waits for "
            "one) before the request gets 408 and nothing of it is kept. 0 means no limit."
        ),
    )
    max_upload_mib: int = field(
        default=50 * 1024,
        metadata=_meta(
            "Largest request body in MiB (an artifact or package file sent through the "
            "server); larger ones get 413 and nothing of them is kept. 0 means no limit."
        ),
    )
    project_quota_mib: int = field(
        default=0,
        metadata=_meta(
            "Storage quota of every project in MiB: the files of its candidates, logged "
            "models and packages together (a model version's files are its source's and "
            "count once). An upload that would go over it gets 413. 0 means no quota."
        ),
    )

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'modelyard.db').resolve()}"

    def database(self) -> Database:
        """A handle on the configured metadata database."""
        from modelyard.db.engine import Database

        return Database(self.effective_database_url, busy_timeout=self.busy_timeout)

    @property
    def effective_blob_store_url(self) -> str:
        if self.blob_store_url:
            return self.blob_store_url
        return str((self.data_dir / "blobs").resolve())

    @property
    def host_names(self) -> list[str]:
        return [h for h in self.allowed_hosts.split(",") if h.strip()]

    def check_exposure(self) -> None:
        """Refuse to serve a non-loopback address without authentication unless told to."""
        from modelyard.auth.gate import is_loopback
        from modelyard.errors import ModelyardError

        if self.auth or self.insecure_no_auth or is_loopback(self.host):
            return
        raise ModelyardError(
            f"Refusing to listen on {self.host} without authentication: anyone who can reach "
            "it could read and change everything. Start with --auth (MODELYARD_AUTH=1) and "
            "create a user with `modelyard admin users create NAME --admin`, or pass "
            "--insecure-no-auth if you really mean it."
        )

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Build settings from the environment, then apply non-None overrides (CLI flags)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            env = os.environ.get(f"MODELYARD_{f.name.upper()}")
            if env is not None and env != "":
                values[f.name] = env
            if overrides.get(f.name) is not None:
                values[f.name] = overrides[f.name]
        return cls(**{k: _coerce(cls, k, v) for k, v in values.items()})


def _coerce(cls: type[Settings], name: str, value: Any) -> Any:
    default = next(f.default for f in fields(cls) if f.name == name)
    if isinstance(default, bool):
        return str(value).lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    if isinstance(default, Path):
        return Path(value)
    return value
