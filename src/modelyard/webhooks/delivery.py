"""One delivery attempt: MLflow's signature headers and a POST that reaches only checked
addresses, follows no redirect, and ends within the timeout whatever the receiver does.

The request is written and the answer read on a plain socket (TLS with the URL's host name
for SNI and certificate checks): the status line and a short excerpt of the body are all that
is kept, and no proxy, redirect or connection reuse can take the request elsewhere.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import socket
import ssl
import time
from dataclasses import dataclass

from modelyard import __version__
from modelyard.errors import InvalidParameter
from modelyard.webhooks.addresses import Refused, Target, parse_url, resolve

TIMEOUT = 10.0
EXCERPT_CHARS = 500
_MAX_HEAD = 16 * 1024
SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
USER_AGENT = f"modelyard-webhooks/{__version__}"


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: the receiver's status (None when no answer came), an excerpt
    of its body, or why nothing was delivered."""

    status: int | None
    excerpt: str = ""
    error: str = ""
    duration_ms: int = 0

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """``v1,`` and the base64 HMAC-SHA256 of ``delivery_id.timestamp.body`` (MLflow's form)."""
    content = delivery_id.encode() + b"." + timestamp.encode() + b"." + body
    digest = hmac.new(secret.encode(), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(delivery_id: str, body: bytes, secret: str, now: float) -> dict[str, str]:
    """The headers of one attempt: a fresh timestamp (receivers refuse stale ones), the same
    delivery id on every attempt, and the signature when the webhook has a secret."""
    timestamp = str(int(now))
    out = {
        "Content-Type": "application/json",
        DELIVERY_ID_HEADER: delivery_id,
        TIMESTAMP_HEADER: timestamp,
    }
    if secret:
        out[SIGNATURE_HEADER] = signature(secret, delivery_id, timestamp, body)
    return out


def post(
    url: str,
    body: bytes,
    extra_headers: dict[str, str],
    *,
    allow_private: bool,
    timeout: float = TIMEOUT,
) -> Outcome:
    """POST ``body`` to ``url``; never raises for what the network or the receiver does."""
    started = time.monotonic()
    deadline = started + timeout
    try:
        target = _parsed(url)
        sock = _connect(target, allow_private, deadline)
        try:
            _send(sock, target, body, extra_headers, deadline)
            status, excerpt = _read_answer(sock, deadline)
        finally:
            sock.close()
    except Refused as exc:
        return Outcome(None, error=f"refused: {exc}", duration_ms=_since(started))
    except InvalidParameter as exc:
        return Outcome(None, error=f"refused: {exc.message}", duration_ms=_since(started))
    except (OSError, ValueError) as exc:
        return Outcome(None, error=_describe(exc), duration_ms=_since(started))
    return Outcome(status, excerpt, duration_ms=_since(started))


@functools.lru_cache(maxsize=1024)
def _parsed(url: str) -> Target:
    """``parse_url``, remembered per URL: it depends on the text alone (resolving and checking
    the addresses happens at every attempt). A URL it refuses is not remembered."""
    return parse_url(url)


def _since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"timed out after {TIMEOUT:g} s"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return f"TLS error: {exc}"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return f"connection failed: {text}"[:300]


def _connect(target: Target, allow_private: bool, deadline: float) -> socket.socket:
    """A connection to one of the checked addresses (tried in order)."""
    failure: OSError | None = None
    for family, sockaddr in resolve(target, allow_private=allow_private):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(_remaining(deadline))
            sock.connect(sockaddr)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            sock.close()
            failure = exc
            continue
        if target.scheme != "https":
            return sock
        context = ssl.create_default_context()
        try:
            return context.wrap_socket(sock, server_hostname=target.host)
        except OSError:
            sock.close()
            raise
    assert failure is not None
    raise failure


def _send(
    sock: socket.socket, target: Target, body: bytes, extra: dict[str, str], deadline: float
) -> None:
    lines = [
        f"POST {target.path} HTTP/1.1",
        f"Host: {target.host_header}",
        f"User-Agent: {USER_AGENT}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in extra.items()),
    ]
    sock.settimeout(_remaining(deadline))
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


def _read_answer(sock: socket.socket, deadline: float) -> tuple[int, str]:
    """The status and an excerpt of the body; reads no more than it keeps."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > _MAX_HEAD:
            raise ValueError("the receiver's answer has an oversized header")
        data += _recv(sock, deadline)
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, _, header_text = head.partition(b"\r\n")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ValueError(f"the receiver did not answer HTTP: {status_line[:80]!r}")
    fields = _header_fields(header_text)
    chunked = "chunked" in fields.get("transfer-encoding", "")
    length = fields.get("content-length", "")
    wanted = min(int(length), EXCERPT_CHARS) if length.isdigit() else EXCERPT_CHARS + 16
    while len(rest) < wanted and not (chunked and rest.endswith(b"0\r\n\r\n")):
        try:
            rest += _recv(sock, deadline)
        except (OSError, ValueError):
            break
    if chunked:
        size, _, rest = rest.partition(b"\r\n")
        if _is_hex(size):
            rest = rest[: int(size.split(b";")[0], 16)]
    return int(parts[1]), _excerpt(rest)


def _header_fields(text: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep:
            fields[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return fields


def _recv(sock: socket.socket, deadline: float) -> bytes:
    sock.settimeout(_remaining(deadline))
    chunk = sock.recv(4096)
    if not chunk:
        raise ValueError("the receiver closed the connection")
    return chunk


def _is_hex(text: bytes) -> bool:
    head = text.split(b";")[0].strip()
    return bool(head) and all(c in b"0123456789abcdefABCDEF" for c in head)


def _excerpt(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")[:EXCERPT_CHARS]
    return "".join(c if c.isprintable() or c in "\n\t" else " " for c in text)
