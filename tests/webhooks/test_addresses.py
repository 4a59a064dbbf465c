"""Which addresses a webhook may reach: refused spellings and ranges, checked again after DNS."""

from __future__ import annotations

import ipaddress

import pytest

from modelyard.errors import InvalidParameter
from modelyard.webhooks.addresses import (
    Refused,
    Target,
    check_url,
    is_public,
    parse_url,
    resolve,
)

NOT_PUBLIC = [
    "127.0.0.1",
    "127.255.255.254",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.170.2",
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "240.0.0.1",
    "198.51.100.7",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",
    "ff02::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",
    "::10.0.0.1",
    "2002:7f00:1::",
    "2002:a9fe:a9fe::1",
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_private_loopback_metadata_and_wrapped_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


REFUSED_URLS = [
    "http://127.0.0.1:8080/hook",
    "http://10.0.0.5/hook",
    "http://172.16.3.4/hook",
    "http://192.168.1.10/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8080/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[fd00:ec2::254]/",
    "http://0x7f000001/hook",
    "http://2130706433/hook",
    "http://0177.0.0.1/hook",
    "http://127.1/hook",
    "http://0/hook",
    "http://localhost:8080/hook",
    "http://LOCALHOST./hook",
    "http://api.localhost/hook",
    "ftp://example.com/hook",
    "file:///etc/passwd",
    "gopher://example.com/",
    "http://user:password@example.com/hook",
    "http:///hook",
    "http://example.com:99999/hook",
    "http://exa mple.com/hook",
    "",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_urls_refused_when_saved(url: str) -> None:
    with pytest.raises(InvalidParameter):
        check_url(url, allow_private=False)


@pytest.mark.parametrize(
    "url",
    ["http://0x7f000001/hook", "http://127.1/", "http://0177.0.0.1/", "ftp://127.0.0.1/"],
)
def test_odd_spellings_and_other_schemes_stay_refused_with_private_allowed(url: str) -> None:
    with pytest.raises(InvalidParameter):
        check_url(url, allow_private=True)


def test_private_addresses_pass_when_allowed() -> None:
    assert check_url("http://127.0.0.1:9/x", allow_private=True).host == "127.0.0.1"
    assert check_url("http://localhost:9/x", allow_private=True).host == "localhost"


def test_public_urls_are_parsed_with_their_query() -> None:
    target = check_url("https://hooks.example.com/deploy?x=1", allow_private=False)
    assert (target.scheme, target.host, target.port, target.path) == (
        "https",
        "hooks.example.com",
        443,
        "/deploy?x=1",
    )
    assert target.host_header == "hooks.example.com"
    assert parse_url("http://[2606:4700::1]:8080").host_header == "[2606:4700::1]:8080"


def test_a_name_that_resolves_to_loopback_is_refused_when_connecting() -> None:
    target = parse_url("http://localhost:9/hook")
    with pytest.raises(Refused, match="not a public address"):
        resolve(target, allow_private=False)
    assert {sockaddr[0] for _, sockaddr in resolve(target, allow_private=True)} & {
        "127.0.0.1",
        "::1",
    }


def test_numeric_spellings_are_refused_when_connecting_too() -> None:
    """The resolver reads 2130706433 as 127.0.0.1: the check after DNS sees that too (were
    such a host ever to get past the URL check)."""
    for host in ("2130706433", "0x7f000001", "127.1", "0177.0.0.1"):
        with pytest.raises(Refused, match=r"127\.0\.0\.1"):
            resolve(Target("http", host, 9, "/"), allow_private=False)
