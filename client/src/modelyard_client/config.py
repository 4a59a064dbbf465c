"""Where the server is and who you are, read the way the MLflow client reads it.

``--url``/``MODELYARD_URL`` beats ``MLFLOW_TRACKING_URI``; ``--token``/``MODELYARD_TOKEN``
beats ``MLFLOW_TRACKING_TOKEN``, which beats ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` (or
credentials written into the URL). A ``/projects/<name>`` path names the project.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from modelyard_client.errors import ClientError

DEFAULT_URL = "http://127.0.0.1:5000"
PROJECT_MARK = "/projects/"


@dataclass(frozen=True)
class Target:
    """A server (without credentials), the project on it and how to authenticate."""

    server: str
    project: str | None
    authorization: str | None
    origin: str  # where the URL came from, for error messages
    tls_verify: bool | str = True  # True, False or a CA bundle path

    @property
    def base(self) -> str:
        """The URL every request goes under: the server, then the project's prefix."""
        if self.project is None:
            return self.server
        return f"{self.server}{PROJECT_MARK}{quote(self.project, safe='')}"

    def without_project(self) -> Target:
        """The same server and credentials, for instance-wide routes (projects, users, me)."""
        return Target(self.server, None, self.authorization, self.origin, self.tls_verify)

    def with_project(self, project: str | None) -> Target:
        if project is None:
            return self
        return Target(self.server, project, self.authorization, self.origin, self.tls_verify)


def _basic(user: str, password: str) -> str:
    raw = f"{user}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _split(url: str, origin: str) -> tuple[str, str | None, str | None]:
    """(server, project, basic credentials) from a tracking URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientError(
            f"{origin}={url[:200]!r} is not a server address: use http(s)://host:port, "
            "optionally followed by /projects/<name>."
        )
    credentials = None
    if parts.username is not None:
        credentials = _basic(unquote(parts.username), unquote(parts.password or ""))
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    path = parts.path.rstrip("/")
    project = None
    if PROJECT_MARK in path + "/":
        path, _, rest = (path + "/").partition(PROJECT_MARK)
        project = unquote(rest.strip("/")) or None
        path = path.rstrip("/")
    return f"{parts.scheme}://{netloc}{path}", project, credentials


def _tls_verify() -> bool | str:
    if (_env("MLFLOW_TRACKING_INSECURE_TLS") or "").lower() in ("1", "true", "yes"):
        return False
    return _env("MLFLOW_TRACKING_SERVER_CERT_PATH") or True


def resolve(url: str | None = None, token: str | None = None) -> Target:
    """The target from explicit options (``--url``/``--token``), then the environment."""
    origin = "--url" if url else "MODELYARD_URL"
    raw = url or _env("MODELYARD_URL")
    if raw is None:
        origin, raw = "MLFLOW_TRACKING_URI", _env("MLFLOW_TRACKING_URI")
    if raw is None:
        origin, raw = "the default server address", DEFAULT_URL
    server, project, in_url = _split(raw, origin)
    authorization = _authorization(token, in_url)
    return Target(server, project, authorization, origin, _tls_verify())


def _authorization(token: str | None, in_url: str | None) -> str | None:
    secret = token or _env("MODELYARD_TOKEN") or _env("MLFLOW_TRACKING_TOKEN")
    if secret:
        return f"Bearer {secret}"
    user, password = _env("MLFLOW_TRACKING_USERNAME"), _env("MLFLOW_TRACKING_PASSWORD")
    if user or password:
        return _basic(user or "", password or "")
    return in_url
