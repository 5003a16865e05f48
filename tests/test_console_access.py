"""Who may use the console: the key (bearer or Basic password) when one is set, else loopback only."""

from __future__ import annotations

import base64

from gateway.console.access import Access, check


def basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"operator:{password}".encode()).decode()


def test_with_a_key_only_the_key_opens_it_from_anywhere() -> None:
    assert check(basic("k"), "203.0.113.9", "k") is Access.ALLOWED
    assert check("Bearer k", "203.0.113.9", "k") is Access.ALLOWED
    assert check(None, "127.0.0.1", "k") is Access.NEEDS_KEY  # loopback is no excuse once a key is set
    assert check(basic("wrong"), "127.0.0.1", "k") is Access.NEEDS_KEY


def test_without_a_key_loopback_only() -> None:
    for host in ("127.0.0.1", "::1"):
        assert check(None, host, None) is Access.ALLOWED
    assert check(None, "192.168.1.20", None) is Access.LOOPBACK_ONLY
    assert check("Bearer anything", "192.168.1.20", None) is Access.LOOPBACK_ONLY
    assert check(None, None, None) is Access.LOOPBACK_ONLY
