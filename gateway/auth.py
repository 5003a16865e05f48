"""The operator API key: ``Authorization: Bearer <VOICEGW_API_KEY>`` on /metrics, /admin/* and /v1/*.

Rules of this file: pure, no I/O. Twilio's own signatures and stream tokens live in
:mod:`gateway.twilio.security`; this key is ours.
"""

from __future__ import annotations

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
