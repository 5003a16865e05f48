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
