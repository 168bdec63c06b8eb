"""The address and prefix rules of a user's URL (gpu_worker/common/fetch.py), written as the
attacks: private addresses in IPv6 forms, and URLs that only look like they are under an
allowed prefix."""

import socket

import pytest

from gpu_worker.common.fetch import FetchError, _under, public_address


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:169.254.169.254",  # IPv4-mapped metadata server
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
    ],
)
def test_private_ipv4_in_an_ipv6_form_is_refused(address, monkeypatch):
    answer = [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, 443, 0, 0))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: answer)
    with pytest.raises(FetchError, match="resolves to a non-public address"):
        public_address("rebound.example", 443)


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "::ffff:8.8.8.8", "2606:4700::1111"])
def test_public_addresses_in_ipv6_forms_are_fetched(address, monkeypatch):
    answer = [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, 443, 0, 0))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: answer)
    assert public_address("public.example", 443) == address


PREFIX = "http://127.0.0.1:8000/v1/objects/"


@pytest.mark.parametrize(
    ("url", "under"),
    [
        ("http://127.0.0.1:8000/v1/objects/images/a.png?sig=1", True),
        ("http://127.0.0.1:8000/v1/objects", True),
        ("http://127.0.0.1:80/v1/objects/a.png", False),
        ("http://127.0.0.1:8000/v1/objects-secret/a", False),  # a string prefix would match
        ("http://127.0.0.1:8000@evil.example/v1/objects/a", False),
        ("http://127.0.0.1:8000.evil.example/v1/objects/a", False),
        ("https://127.0.0.1:8000/v1/objects/a", False),
        ("http://127.0.0.1:8000/v1/objects/../admin", False),
        ("http://127.0.0.1:8000/v1/objects/%2e%2e/admin", False),
    ],
)
def test_allowed_prefixes_match_parsed_urls(url, under):
    assert _under(url, [PREFIX]) is under
