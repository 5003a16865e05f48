"""Who may use the console (the operator key, or loopback without one): one check for every console route.

The console reaches the process-wide services through :class:`ConsoleServices`, the slice of
:class:`gateway.services.Services` it uses, so nothing here (or in the browser carrier) imports the
Twilio edge that the services also hold.
"""

from __future__ import annotations

from typing import Protocol

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response

from agents.store import AgentStore
from agents.stt import WhisperTranscriber
from agents.vad import SileroModel
from gateway.call import CallServices
from gateway.console import access


class ListeningModels(Protocol):
    vad: SileroModel | None
    stt: WhisperTranscriber | None


class ConsoleServices(CallServices, Protocol):
    """What the console uses of the process-wide services (implemented by :class:`gateway.services.Services`)."""

    store: AgentStore
    listening: ListeningModels | None
    active_calls: int

    @property
    def draining(self) -> bool: ...


def services_of(conn: HTTPConnection) -> ConsoleServices:
    services: ConsoleServices = conn.app.state.services
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
