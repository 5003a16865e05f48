"""Who may use the console: the operator key, or loopback when no key is set.

Rules of this file: pure, no I/O. A browser cannot attach a bearer token to a page
load or a WebSocket handshake, so besides ``Authorization: Bearer <key>`` the console
accepts HTTP Basic with the key as the password (any user name): the browser asks for
it once (``WWW-Authenticate: Basic``) and then sends it with every request of the page,
its fetches and its WebSocket included. Without ``VOICEGW_API_KEY`` the console is
served to loopback clients only.
"""

from __future__ import annotations

import enum

from gateway.auth import operator_key_ok

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
CHALLENGE = 'Basic realm="voicegw console", charset="UTF-8"'


class Access(enum.Enum):
    ALLOWED = "allowed"
    #: A key is set and the request does not carry it: 401 with :data:`CHALLENGE`.
    NEEDS_KEY = "needs_key"
    #: No key is set and the client is not on loopback: 403.
    LOOPBACK_ONLY = "loopback_only"


def check(authorization: str | None, client_host: str | None, api_key: str | None) -> Access:
    if api_key:
        return Access.ALLOWED if operator_key_ok(authorization, api_key) else Access.NEEDS_KEY
    return Access.ALLOWED if (client_host or "") in LOOPBACK else Access.LOOPBACK_ONLY
