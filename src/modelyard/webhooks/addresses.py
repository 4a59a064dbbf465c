"""Where a webhook may send: http(s) URLs whose host is, after DNS, a public address.

The check happens twice. When a webhook is saved, its URL is parsed: only http and https, no
credentials, an IP literal only in its canonical spelling (``0x7f000001``, ``2130706433``,
``0177.0.0.1`` and ``127.1`` are refused, since resolvers read them as 127.0.0.1) and, unless
private addresses are allowed, not a private address or a ``localhost`` name. When a delivery
is sent, the host is resolved once, every address it resolves to is checked, and the socket
connects to one of those checked addresses: a name that resolves differently the second time
gains nothing, and nothing is sent anywhere the check did not see.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from modelyard.errors import InvalidParameter

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SCHEMES = ("http", "https")
MAX_URL_CHARS = 2048
#: cloud metadata services, refused by name too (they are link-local or unique-local anyway)
METADATA = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMERIC_LABEL = re.compile(r"^(0[xX][0-9a-fA-F]*|[0-9]+)$")


class Refused(Exception):
    """The destination is not allowed (a private address, or a URL that cannot be sent to)."""


@dataclass(frozen=True)
class Target:
    """A parsed webhook URL: what to connect to and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def embedded_ipv4(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 transition form carries (mapped, compatible, 6to4, NAT64);
    the address itself otherwise."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if int(ip) >> 32 == 0:  # IPv4-compatible ::a.b.c.d, and :: and ::1
        return ipaddress.IPv4Address(int(ip))
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def is_public(ip: IPAddress) -> bool:
    """Whether an address is reachable on the public Internet and nothing else: loopback,
    private, shared (100.64/10), link-local, multicast, reserved, unspecified, documentation
    and metadata addresses are not, in IPv4, IPv6 and IPv4 carried inside IPv6."""
    if isinstance(ip, ipaddress.IPv6Address) and (ip.scope_id or ip.teredo is not None):
        return False
    plain = embedded_ipv4(ip)
    if plain in METADATA or ip in METADATA:
        return False
    return bool(
        plain.is_global
        and not plain.is_multicast
        and not plain.is_reserved
        and not plain.is_loopback
        and not plain.is_link_local
        and not plain.is_unspecified
        and not plain.is_private
    )


def _numeric_host(host: str) -> bool:
    """Hosts a resolver reads as an address rather than a name (every label a number)."""
    if ":" in host:
        return True
    labels = host.rstrip(".").split(".")
    return all(_NUMERIC_LABEL.match(label) for label in labels)


def _parse(url: str) -> SplitResult:
    if not isinstance(url, str) or not url.strip():
        raise InvalidParameter("Webhook URL cannot be empty.")
    if len(url) > MAX_URL_CHARS:
        raise InvalidParameter(f"Webhook URL exceeds {MAX_URL_CHARS} characters.")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise InvalidParameter("Webhook URL must not contain spaces or control characters.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a bad port
    except ValueError as exc:
        raise InvalidParameter(f"Invalid webhook URL {url[:200]!r}: {exc}.") from None
    return parts


def parse_url(url: str) -> Target:
    """The target of a webhook URL, checked for what never depends on DNS."""
    parts = _parse(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise InvalidParameter(f"Invalid webhook URL scheme {parts.scheme!r}: use http or https.")
    if parts.username is not None or parts.password is not None:
        raise InvalidParameter(
            "Webhook URLs must not carry credentials; sign deliveries with the secret instead."
        )
    host = (parts.hostname or "").lower()
    if not host:
        raise InvalidParameter(f"Webhook URL must include a host: {url[:200]!r}.")
    if _numeric_host(host):
        try:
            host = str(ipaddress.ip_address(host))
        except ValueError:
            raise InvalidParameter(
                f"Webhook URL host {host!r} is not an IP address in its usual form."
            ) from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme, host, parts.port or (443 if scheme == "https" else 80), path)


def check_url(url: str, *, allow_private: bool) -> Target:
    """A webhook URL as it may be saved: see the module's notes."""
    target = parse_url(url)
    if allow_private:
        return target
    name = target.host.rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        raise InvalidParameter(
            f"Webhook URL host {target.host!r} is this machine; private addresses are not "
            "allowed (the server's operator can allow them with --webhook-allow-private)."
        )
    try:
        literal = ipaddress.ip_address(target.host)
    except ValueError:
        return target
    if not is_public(literal):
        raise InvalidParameter(
            f"Webhook URL address {target.host} is not a public address; private addresses are "
            "not allowed (the server's operator can allow them with --webhook-allow-private)."
        )
    return target


def resolve(target: Target, *, allow_private: bool) -> list[tuple[int, tuple[Any, ...]]]:
    """The addresses to connect to: every one the host resolves to, each checked."""
    try:
        infos = socket.getaddrinfo(
            target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (OSError, UnicodeError) as exc:
        raise Refused(f"cannot resolve {target.host}: {exc}") from None
    found: list[tuple[int, tuple[Any, ...]]] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = str(sockaddr[0])
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise Refused(f"{target.host} resolves to an invalid address {address!r}") from None
        if not allow_private and not is_public(ip):
            raise Refused(
                f"{target.host} resolves to {ip}, which is not a public address "
                "(private addresses are not allowed)"
            )
        found.append((family, tuple(sockaddr)))
    if not found:
        raise Refused(f"{target.host} resolves to no address")
    return found
