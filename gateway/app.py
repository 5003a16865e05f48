"""The Starlette application: Twilio webhooks, the media WebSocket, health."""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from gateway import twiml
from gateway.call import CallSession
from gateway.services import Services
from gateway.settings import Settings
from gateway.startup import build_services
from gateway.twilio_events import Start
from gateway.twilio_protocol import RemoteProtocolError, TwilioProtocol

log = logging.getLogger("voicegw.app")

UNKNOWN_NUMBER = "Sorry, this number is not in service. Goodbye."


def _services(request: Request | WebSocket) -> Services:
    services: Services = request.app.state.services
    return services


async def twilio_voice(request: Request) -> Response:
    services = _services(request)
    form = await request.form()
    call_sid = str(form.get("CallSid", ""))
    to = str(form.get("To", ""))
    agent_id = request.query_params.get("agent")
    agent = services.store.get(agent_id) if agent_id else services.store.by_number(to)
    if agent is None:
        log.info("call %s to %s: no agent (agent=%s)", call_sid, to, agent_id)
        return Response(twiml.say_and_hangup(UNKNOWN_NUMBER), media_type="application/xml")
    url = twiml.stream_url(services.settings.public_url, str(request.base_url))
    body = twiml.connect_stream(url, {"agent": agent.id, "call_sid": call_sid})
    return Response(body, media_type="application/xml")


async def twilio_status(request: Request) -> Response:
    form = await request.form()
    log.info("stream status %s: %s", form.get("CallSid"), form.get("StreamEvent"))
    return Response(status_code=204)


async def _await_start(ws: WebSocket, protocol: TwilioProtocol) -> Start | None:
    """Read until `start` (at most a few messages); None if the peer misbehaves."""
    for _ in range(4):
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return None
        try:
            if message.get("bytes") is not None:
                protocol.receive_bytes(message["bytes"])
            else:
                protocol.receive_text(message.get("text") or "")
        except RemoteProtocolError as exc:
            _services(ws).metrics.protocol_errors.labels(exc.kind).inc()
            log.warning("media stream: %s", exc)
            return None
        for event in protocol.events_received():
            if isinstance(event, Start):
                return event
    return None


async def twilio_media(ws: WebSocket) -> None:
    services = _services(ws)
    await ws.accept()
    protocol = TwilioProtocol()
    start = await _await_start(ws, protocol)
    if start is None:
        await ws.close(1008)
        return
    agent = services.store.get(start.custom_parameters.get("agent", ""))
    if agent is None:
        log.warning("stream %s: unknown agent %r", start.stream_sid, start.custom_parameters.get("agent"))
        await ws.close(1008)
        return
    session = CallSession(ws, services, protocol, start, agent)
    services.active_calls += 1
    try:
        await session.run()
    finally:
        services.active_calls -= 1
        with contextlib.suppress(Exception):
            await ws.close()


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    services = _services(request)
    parts = {
        "engines": {name: bool(e.ready) for name, e in services.engines.items()},
        "store": {"kind": services.store.kind, "healthy": services.store.healthy},
        "draining": services.draining,
        "signatures_enforced": services.settings.signatures_enforced,
    }
    ready = not services.draining and any(e.ready for e in services.engines.values())
    return JSONResponse({"ready": ready, **parts}, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    services = _services(request)
    key = services.settings.api_key
    if key and not secrets.compare_digest(request.headers.get("authorization", ""), f"Bearer {key}"):
        return JSONResponse({"error": "missing or invalid bearer token"}, status_code=401)
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def create_app(settings: Settings, services: Services | None = None) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = services is None
        app.state.services = services if services is not None else await build_services(settings)
        try:
            yield
        finally:
            if owned:
                await app.state.services.aclose()

    routes = [
        Route("/twilio/voice", twilio_voice, methods=["POST"]),
        Route("/twilio/status", twilio_status, methods=["POST"]),
        WebSocketRoute("/twilio/media", twilio_media),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
