"""The operator API key: ``Authorization: Bearer <VOICEGW_API_KEY>`` on /metrics, /admin/* and /v1/*.

The speech API and the console (pages a browser loads) also take the key as the password of HTTP
Basic (:func:`operator_key_ok`): a browser cannot attach a bearer token to a page load or a
WebSocket handshake, but it asks for Basic credentials once and then sends them with every request.

Rules of this file: pure, no I/O. Twilio's own signatures and stream tokens live in
:mod:`gateway.twilio.security`; this key is ours.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress

LOOPBACK_NAMES = ("localhost", "localhost.localdomain")


def bearer_ok(authorization: str | None, api_key: str | None) -> bool:
    """True when ``authorization`` carries ``api_key`` as a bearer token; always true when no key is set.

    The scheme is case-insensitive (RFC 9110 §11.1); the token is compared in constant time as UTF-8
    bytes, so a header with non-ASCII characters is simply refused, never an error.
    """
    if not api_key:
        return True
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode("utf-8", "surrogateescape"), api_key.encode("utf-8"))


def is_loopback(host: str) -> bool:
    """True for a bind address only this machine can reach (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name or a wildcard: reachable from elsewhere


def open_api_refusal(host: str, api_key: str | None, allow_open: bool) -> str | None:
    """Why ``/v1/*`` and ``/metrics`` are refused, or None when they may be served.

    Without ``VOICEGW_API_KEY`` they would be open to anyone who reaches the port: anonymous GPU time and paid
    Cartesia fallback. That is allowed on a loopback bind, or when the operator says so explicitly.
    """
    if api_key or allow_open or is_loopback(host):
        return None
    return (f"VOICEGW_API_KEY is not set and the gateway listens on {host}: /v1/* and /metrics are refused "
            "(set VOICEGW_API_KEY, or VOICEGW_ALLOW_OPEN_API=1 to serve them to anyone who reaches the port)")
def basic_password(authorization: str | None) -> str | None:
    """The password of an HTTP Basic ``Authorization`` header (RFC 7617), or None if it is not one."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _user, sep, password = decoded.partition(":")
    return password if sep else None


def operator_key_ok(authorization: str | None, api_key: str | None) -> bool:
    """The key as a bearer token or as the Basic password (any user name); always true when no key is set."""
    if not api_key or bearer_ok(authorization, api_key):
        return True
    password = basic_password(authorization)
    return password is not None and hmac.compare_digest(password.encode("utf-8"), api_key.encode("utf-8"))
