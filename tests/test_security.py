"""Webhook/upgrade signatures (twilio RequestValidator) and one-time stream tokens."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.twilio.security import (
    SignatureError,
    StreamTokens,
    TokenError,
    WebhookVerifier,
    derive_secret,
    public_endpoint,
)

SECRET = b"k" * 32


def test_doc_test_vector() -> None:
    # Twilio's documented example (webhooks-security page): token 12345.
    url = "https://example.com/myapp.php?foo=1&bar=2"
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675310", "Digits": "1234",
              "From": "+14158675310", "To": "+18005551212"}
    v = WebhookVerifier("12345")
    assert v.sign(url, params) == "L/OH5YylLD5NRKLltdqwSvS0BnU="
    v.check_webhook(url, params, "L/OH5YylLD5NRKLltdqwSvS0BnU=")


def test_webhook_rejections_name_the_reason() -> None:
    v = WebhookVerifier("secret")
    url = public_endpoint("https://gw.example.com/", "/twilio/voice", "agent=demo")
    assert url == "https://gw.example.com/twilio/voice?agent=demo"
    params = {"CallSid": "CA1", "To": "+1555"}
    good = v.sign(url, params)
    v.check_webhook(url, params, good)
    with pytest.raises(SignatureError, match="missing"):
        v.check_webhook(url, params, None)
    with pytest.raises(SignatureError, match="does not match"):
        v.check_webhook(url, {**params, "To": "+1666"}, good)  # tampered field
    with pytest.raises(SignatureError):
        v.check_webhook(url, {**params, "Extra": "x"}, good)  # a field added after signing
    with pytest.raises(SignatureError):
        v.check_webhook("https://gw.example.com/twilio/voice", params, good)  # query dropped
    with pytest.raises(SignatureError):
        WebhookVerifier("other").check_webhook(url, params, good)


def test_upgrade_signature_with_or_without_trailing_slash() -> None:
    v = WebhookVerifier("secret")
    url = "wss://gw.example.com/twilio/media"
    v.check_upgrade(url, v.sign(url, {}))
    v.check_upgrade(url, v.sign(url + "/", {}))
    with pytest.raises(SignatureError):
        v.check_upgrade(url, v.sign("wss://evil.example.com/twilio/media", {}))


def test_token_roundtrip_and_claims() -> None:
    tokens = StreamTokens(SECRET, ttl_s=60)
    tok = tokens.issue("CA1", "demo", now=1000.0, nonce="n1")
    assert len("call_token") + len(tok) < 500  # Twilio's <Parameter> limit
    claims = tokens.verify(tok, now=1059.0, call_sid="CA1")
    assert (claims.call_sid, claims.agent_id, claims.expires_at, claims.token_id) == ("CA1", "demo", 1060.0, "n1")


@pytest.mark.parametrize(
    ("mutate", "now", "sid", "reason"),
    [
        (lambda t: t, 1061.0, "CA1", "expired"),
        (lambda t: t, 1000.0, "CA2", "for call CA1"),
        (lambda t: "", 1000.0, "CA1", "no stream token"),
        (lambda t: t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1], 1000.0, "CA1", "signature is wrong"),
        (lambda t: "Q0Ey" + t[4:], 1000.0, "CA1", "signature is wrong"),  # payload altered
        (lambda t: "é." + t, 1000.0, "CA1", "not base64url"),
    ],
)
def test_token_rejections(mutate: object, now: float, sid: str, reason: str) -> None:
    tokens = StreamTokens(SECRET, ttl_s=60)
    tok = tokens.issue("CA1", "demo", now=1000.0, nonce="n1")
    with pytest.raises(TokenError, match=reason):
        tokens.verify(mutate(tok), now=now, call_sid=sid)  # type: ignore[operator]


def test_token_from_another_key_is_rejected() -> None:
    tok = StreamTokens(b"a" * 32).issue("CA1", "demo", 0.0, "n")
    with pytest.raises(TokenError, match="signature"):
        StreamTokens(b"b" * 32).verify(tok, 1.0, "CA1")


def test_issue_refuses_separator_and_short_secret() -> None:
    with pytest.raises(ValueError):
        StreamTokens(SECRET).issue("CA|1", "demo", 0.0, "n")
    with pytest.raises(ValueError):
        StreamTokens(b"short")


def test_derive_secret_precedence() -> None:
    fb = b"r" * 32
    a = derive_secret("tok", None, fb)
    assert a != fb and len(a) == 32 and derive_secret("tok", None, b"x" * 32) == a  # stable across instances
    assert derive_secret("tok", "configured", fb) == derive_secret(None, "configured", fb) != a
    assert derive_secret(None, None, fb) == fb


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300))
def test_verify_never_crashes_on_garbage(garbage: str) -> None:
    tokens = StreamTokens(SECRET)
    with pytest.raises(TokenError):
        tokens.verify(garbage, 0.0, "CA1")


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=200), st.integers(0, 199))
def test_any_bit_flip_in_a_token_is_rejected(noise: bytes, pos: int) -> None:
    tokens = StreamTokens(SECRET)
    tok = tokens.issue("CA1", "demo", 0.0, "nonce")
    i = pos % len(tok)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    c = alphabet[noise[0] % len(alphabet)]
    forged = tok[:i] + c + tok[i + 1:]
    if forged == tok:
        return
    try:
        claims = tokens.verify(forged, 1.0, "CA1")
    except TokenError:
        return
    # base64 padding bits can change a character without changing the bytes: then the claims are unchanged.
    assert (claims.call_sid, claims.agent_id, claims.nonce) == ("CA1", "demo", "nonce")


def test_bearer_ok() -> None:
    from gateway.auth import bearer_ok

    assert bearer_ok(None, None) and bearer_ok("anything", None)  # no key configured: open
    assert bearer_ok("Bearer k3y", "k3y")
    assert not bearer_ok(None, "k3y") and not bearer_ok("Bearer nope", "k3y") and not bearer_ok("k3y", "k3y")


def test_operator_key_ok_takes_bearer_or_basic_password() -> None:
    import base64

    from gateway.auth import basic_password, operator_key_ok

    def basic(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    assert operator_key_ok(None, None) and operator_key_ok(basic("a", "b"), None)
    assert operator_key_ok("Bearer k3y", "k3y") and operator_key_ok(basic("operator", "k3y"), "k3y")
    assert operator_key_ok("basic " + basic("", "k3y").split()[1], "k3y")  # scheme is case-insensitive
    assert not operator_key_ok(basic("k3y", "nope"), "k3y")  # the key is the password, not the user
    assert not operator_key_ok("Basic !!!notbase64", "k3y") and not operator_key_ok(None, "k3y")
    assert basic_password(basic("u", "p:with:colons")) == "p:with:colons"
    assert basic_password("Basic " + base64.b64encode(b"no-colon").decode()) is None
    assert basic_password("Basic " + base64.b64encode(b"u:\xff").decode()) is None  # not UTF-8
