"""gateway.auth: the operator bearer key and when the API may be served without one (pure)."""

from __future__ import annotations

import pytest

from gateway.auth import bearer_ok, is_loopback, open_api_refusal


@pytest.mark.parametrize("header", ["Bearer s\xe9kret", "Bearer \udcff", "bearer  sekret2", "Basic sekret", "", None])
def test_anything_but_the_key_is_refused_never_raised(header: str | None) -> None:
    assert not bearer_ok(header, "sekret")


def test_the_key_in_any_case_of_scheme() -> None:
    assert bearer_ok("Bearer sekret", "sekret") and bearer_ok("BEARER  sekret ", "sekret")
    assert bearer_ok(None, None)  # no key configured


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_binds(host: str) -> None:
    assert is_loopback(host)
    assert open_api_refusal(host, None, False) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "gw.example.com", ""])
def test_an_open_bind_without_a_key_refuses_unless_allowed(host: str) -> None:
    assert not is_loopback(host)
    reason = open_api_refusal(host, None, False)
    assert reason is not None and "VOICEGW_API_KEY" in reason and "VOICEGW_ALLOW_OPEN_API" in reason
    assert open_api_refusal(host, "k", False) is None
    assert open_api_refusal(host, None, True) is None
