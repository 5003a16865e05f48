"""Who may open a call: Twilio request signatures and per-call one-time stream tokens.

Rules of this file: pure. No asyncio, no clock (``now`` is passed in), no
network. Used-token bookkeeping (memory or Redis) lives in :mod:`gateway.twilio.replay`.

Security model (see docs/twilio.md):

* ``POST /twilio/voice`` and ``/twilio/status`` carry ``X-Twilio-Signature``:
  HMAC-SHA1 of the URL Twilio called plus the sorted form fields, keyed with the
  auth token. We check it with the ``twilio`` package's ``RequestValidator``
  against the **configured public URL** (never a URL rebuilt from ``Host``: the
  gateway sits behind proxies), keeping the query string.
* The media WebSocket upgrade is signed too when Twilio sends the header (the
  docs disagree on whether it always does), over the ``wss://`` URL from the
  TwiML with no parameters, with or without a trailing ``/``.
* Independent of Twilio's behaviour: the TwiML carries a one-time stream token
  (``<Parameter name="call_token">``) that binds call sid, agent id and an
  expiry with HMAC-SHA256. The stream must present it in
  ``start.customParameters``; the call sid must match ``start.callSid``; the
  agent is taken from the token, never from an unsigned parameter.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from twilio.request_validator import RequestValidator

TOKEN_PARAMETER = "call_token"
_TOKEN_CONTEXT = b"voicegw stream token v1"


class SignatureError(Exception):
    """A request's signature is missing or wrong; ``reason`` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TokenError(Exception):
    """A stream token is missing, forged, expired, for another call, or used; ``reason`` names which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def public_endpoint(public_url: str, path: str, query: str = "") -> str:
    """The URL Twilio called: configured base + route path (+ ``?query``)."""
    url = public_url.rstrip("/") + "/" + path.lstrip("/")
    return f"{url}?{query}" if query else url


class WebhookVerifier:
    """Checks ``X-Twilio-Signature`` on webhooks and (when present) on the media upgrade."""

    def __init__(self, auth_token: str) -> None:
        self._validator = RequestValidator(auth_token)

    def check_webhook(self, url: str, params: Mapping[str, object], signature: str | None) -> None:
        """Raise :class:`SignatureError` unless ``signature`` signs ``url`` + ``params`` (every field received)."""
        if not signature:
            raise SignatureError("missing X-Twilio-Signature")
        if not self._validator.validate(url, params, signature):
            raise SignatureError(f"X-Twilio-Signature does not match {url}")

    def check_upgrade(self, stream_url: str, signature: str) -> None:
        """The WebSocket upgrade: GET with no parameters over the TwiML's ``wss://`` URL, with or without ``/``."""
        if not any(self._validator.validate(u, {}, signature) for u in (stream_url, stream_url + "/")):
            raise SignatureError(f"X-Twilio-Signature does not match the stream URL {stream_url}")

    def sign(self, url: str, params: Mapping[str, object]) -> str:
        """What Twilio would send (used by the emulator and tests)."""
        return str(self._validator.compute_signature(url, params))


def derive_secret(auth_token: str | None, configured: str | None, fallback: bytes) -> bytes:
    """The stream-token key: a configured secret, else derived from the auth token, else ``fallback`` (random).

    Several gateway instances behind one number need the same key (the webhook and
    the stream may reach different instances): the auth token or a configured
    secret gives that; a random per-process key only suits a single instance.
    """
    if configured:
        return hashlib.sha256(_TOKEN_CONTEXT + b"|" + configured.encode()).digest()
    if auth_token:
        return hmac.new(auth_token.encode(), _TOKEN_CONTEXT, hashlib.sha256).digest()
    return fallback


@dataclass(frozen=True, slots=True)
class TokenClaims:
    call_sid: str
    agent_id: str
    expires_at: float  # unix seconds
    nonce: str

    @property
    def token_id(self) -> str:
        """What the used-token set remembers (the nonce is unique per issued token)."""
        return self.nonce


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StreamTokens:
    """Issue and verify ``payload.mac`` tokens; ``payload`` = ``call_sid|agent_id|expiry|nonce``.

    Written here (not a JWT library) because it is 30 lines with the stdlib and the
    format must stay under Twilio's 500-character ``<Parameter>`` limit.
    """

    def __init__(self, secret: bytes, ttl_s: float = 120.0) -> None:
        if len(secret) < 16:
            raise ValueError("stream token secret must be at least 16 bytes")
        self._secret = secret
        self.ttl_s = ttl_s

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()

    def issue(self, call_sid: str, agent_id: str, now: float, nonce: str) -> str:
        """``now`` is unix time (instances compare expiries); ``nonce`` must be unique (e.g. ``secrets.token_hex``)."""
        for name, value in (("call_sid", call_sid), ("agent_id", agent_id), ("nonce", nonce)):
            if "|" in value or not value:
                raise ValueError(f"{name} must be non-empty and must not contain '|'")
        payload = f"{call_sid}|{agent_id}|{int(now + self.ttl_s)}|{nonce}".encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def verify(self, token: str | None, now: float, call_sid: str) -> TokenClaims:
        """Claims of a genuine, unexpired token issued for ``call_sid``; :class:`TokenError` otherwise.

        One-time use is the caller's job (:mod:`gateway.twilio.replay`) with :attr:`TokenClaims.token_id`.
        """
        if not token:
            raise TokenError("no stream token in start.customParameters")
        try:
            head, _, tail = token.partition(".")
            payload, mac = _unb64(head), _unb64(tail)
        except (ValueError, UnicodeEncodeError):
            raise TokenError("stream token is not base64url") from None
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise TokenError("stream token signature is wrong (forged or from another deployment)")
        try:
            sid, agent_id, expiry, nonce = payload.decode().split("|")
            expires_at = float(int(expiry))
        except ValueError:
            raise TokenError("stream token payload is malformed") from None
        if now > expires_at:
            raise TokenError(f"stream token expired {now - expires_at:.0f} s ago")
        if sid != call_sid:
            raise TokenError(f"stream token is for call {sid}, stream is for {call_sid}")
        return TokenClaims(call_sid=sid, agent_id=agent_id, expires_at=expires_at, nonce=nonce)
