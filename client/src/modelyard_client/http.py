"""The HTTP layer: one kept-alive connection per thread, JSON calls to the native API, streamed
downloads, and every failure turned into one line that names the fix.

Built on the standard library's ``http.client`` so that starting the command costs nothing."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterable, Mapping
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode, urlsplit

from modelyard_client import __version__
from modelyard_client.config import Target
from modelyard_client.errors import ClientError, HttpError

API = "/api/v1"
USER_AGENT = f"modelyard-client/{__version__}"
TIMEOUT = 60.0
BLOCK = 1024 * 1024  # bytes sent per write when a body is a file
_RETRYABLE = (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)
Body = bytes | BinaryIO | Iterable[bytes] | None


def seg(value: str | int) -> str:
    """One path segment, escaped."""
    return quote(str(value), safe="")


def file_path(path: str) -> str:
    """A file's path inside a version, escaped segment by segment."""
    return quote(path, safe="/")


class Http:
    """Requests to one server (and project) with the target's credentials."""

    def __init__(self, target: Target, timeout: float = TIMEOUT) -> None:
        self.target = target
        self.timeout = timeout
        parts = urlsplit(target.base)
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        self.port = parts.port
        self.prefix = parts.path.rstrip("/")
        self._local = threading.local()

    # connections ------------------------------------------------------------------------------

    def _connect(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            context = ssl.create_default_context()
            verify = self.target.tls_verify
            if verify is False:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            elif isinstance(verify, str):
                context.load_verify_locations(verify)
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=context, blocksize=BLOCK
            )
        return http.client.HTTPConnection(
            self.host, self.port, timeout=self.timeout, blocksize=BLOCK
        )

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, True
        conn = self._connect()
        self._local.conn = conn
        return conn, False

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        self._drop()

    # requests ---------------------------------------------------------------------------------

    def url(self, path: str, query: Mapping[str, Any] | None = None) -> str:
        full = f"{self.prefix}{path}"
        if query:
            pairs = [(k, v) for k, v in query.items() if v is not None]
            full += "?" + urlencode(pairs, doseq=True)
        return full

    def send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Body = None,
        headers: Mapping[str, str] | None = None,
    ) -> http.client.HTTPResponse:
        """Send a request and return the response with its body unread. A kept-alive
        connection the server has closed is reopened once (for bodies that can be resent)."""
        sent = {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})}
        if self.target.authorization:
            sent["Authorization"] = self.target.authorization
        target = self.url(path, query)
        resendable = body is None or isinstance(body, bytes)
        for attempt in (1, 2):
            conn, reused = self._connection()
            try:
                conn.request(method, target, body=body, headers=sent)
                return conn.getresponse()
            except _RETRYABLE:
                self._drop()
                if attempt == 2 or not reused or not resendable:
                    raise ClientError(self._unreachable("the connection was closed")) from None
            except BaseException as exc:
                self._drop()
                raise self._network_error(exc) from None
        raise AssertionError("unreachable")

    def call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        payload: Any = None,
    ) -> Any:
        """A JSON call to the native API; the decoded answer (``{}`` for 204)."""
        body = None if payload is None else json.dumps(payload).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        response = self.send(method, API + path, query=query, body=body, headers=headers)
        raw = self.read(response)
        if response.status >= 400:
            raise self.failure(response, raw)
        if response.status == 204 or not raw:
            return {}
        return self._decode(response, raw)

    def read(self, response: http.client.HTTPResponse) -> bytes:
        try:
            return response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise self._network_error(exc) from None

    def _decode(self, response: http.client.HTTPResponse, raw: bytes) -> Any:
        try:
            return json.loads(raw)
        except ValueError:
            kind = response.getheader("content-type", "no content type")
            raise ClientError(
                f"{self.target.server} answered with {kind}, not JSON: is it a modelyard "
                f"server? Check {self.target.origin}."
            ) from None

    # errors -----------------------------------------------------------------------------------

    def failure(self, response: http.client.HTTPResponse, raw: bytes) -> HttpError:
        """The error an error status stands for, with the server's own message."""
        status = response.status
        code, message = "", ""
        try:
            found = json.loads(raw)
            error = found.get("error") if isinstance(found, dict) else None
            if isinstance(error, dict):
                code, message = str(error.get("code", "")), str(error.get("message", ""))
            elif isinstance(found, dict) and "message" in found:
                code, message = str(found.get("error_code", "")), str(found["message"])
        except ValueError:
            pass
        return HttpError(self._explain(status, message), status, code)

    def _explain(self, status: int, message: str) -> str:
        where = self.target.base
        if status == 401:
            return (
                f"not signed in at {where} ({message or 'HTTP 401'}): set MLFLOW_TRACKING_TOKEN "
                "or pass --token with a valid token."
            )
        if status == 403:
            return f"permission denied at {where}: {message or 'HTTP 403'}"
        if not message:
            return (
                f"{where} answered HTTP {status} without a modelyard error: is it a modelyard "
                f"server? Check {self.target.origin}."
            )
        if status >= 500:
            return f"the server failed (HTTP {status}): {message}"
        return message

    def _unreachable(self, why: str) -> str:
        return (
            f"cannot reach {self.target.server} ({why}): is the server running, and is "
            f"{self.target.origin} right?"
        )

    def _network_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, ClientError | KeyboardInterrupt | SystemExit):
            return exc
        if isinstance(exc, ConnectionRefusedError):
            return ClientError(self._unreachable("connection refused"))
        if isinstance(exc, socket.gaierror):
            return ClientError(self._unreachable(f"unknown host {self.host}"))
        if isinstance(exc, ssl.SSLError):
            reason = getattr(exc, "verify_message", None) or exc.reason or str(exc)
            return ClientError(
                f"TLS failure talking to {self.target.server}: {reason}. Set "
                "MLFLOW_TRACKING_SERVER_CERT_PATH to the server's CA bundle."
            )
        if isinstance(exc, TimeoutError):
            return ClientError(self._unreachable(f"no answer within {self.timeout:g} s"))
        if isinstance(exc, OSError | http.client.HTTPException):
            return ClientError(self._unreachable(str(exc) or type(exc).__name__))
        return exc
