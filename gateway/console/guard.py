"""Who may use the console (the operator key, or loopback without one): one check for every console route."""

from __future__ import annotations

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response

from gateway.console import access
from gateway.services import Services


def services_of(conn: HTTPConnection) -> Services:
    services: Services = conn.app.state.services
    return services


def denied(conn: HTTPConnection) -> Response | None:
    """None when the operator may use the console; else the response that says why not."""
    services = services_of(conn)
    verdict = access.check(conn.headers.get("authorization"), conn.client.host if conn.client else None,
                           services.settings.api_key)
    if verdict is access.Access.ALLOWED:
        return None
    if verdict is access.Access.NEEDS_KEY:
        return JSONResponse({"error": {"message": "the console needs the operator key (VOICEGW_API_KEY)",
                                       "type": "invalid_request_error"}},
                            status_code=401, headers={"WWW-Authenticate": access.CHALLENGE})
    return JSONResponse({"error": {"message": "without VOICEGW_API_KEY the console is served on loopback only",
                                   "type": "invalid_request_error"}}, status_code=403)
