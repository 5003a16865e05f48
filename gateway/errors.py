"""JSON error responses shared by the HTTP API (/v1/*, /metrics, /admin/*).

Rules of this file: builds responses only, no I/O. Every error body has one
shape, OpenAI's: ``{"error": {"message", "type", "field"?, "errors"?}}``;
``errors`` lists every problem of a request, each with its ``field``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.responses import JSONResponse

#: Routes that answer a wrong method themselves (JSON 405 + Allow) register every method.
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
UNAUTHORIZED = "missing or invalid bearer token (VOICEGW_API_KEY)"


def json_error(
    status: int, message: str, field: str | None = None, *, headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"message": message, "type": "invalid_request_error" if status < 500 else "server_error"}
    if field:
        body["field"] = field
    body.update(extra)
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def unauthorized() -> JSONResponse:
    """401 with the challenge RFC 9110 §11.6.1 requires (``WWW-Authenticate: Bearer``)."""
    return json_error(401, UNAUTHORIZED, type="authentication_error",
                      headers={"WWW-Authenticate": 'Bearer realm="voicegw"'})


def method_not_allowed(method: str, allowed: Sequence[str]) -> JSONResponse:
    allow = ", ".join(allowed)
    return json_error(405, f"method {method} is not allowed here; use {allow}", headers={"Allow": allow})
