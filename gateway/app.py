"""The Starlette application: Twilio webhooks, the media WebSocket, health."""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest, start_http_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from agents.conversation import attach_conversation
from gateway import logs, twiml
from gateway.call import CallSession
from gateway.services import Services
from gateway.settings import Settings
from gateway.startup import build_services
from gateway.twilio_events import Start
from gateway.twilio_protocol import RemoteProtocolError, TwilioProtocol
from tts.speech_api import speech_routes

log = logging.getLogger("voicegw.app")

UNKNOWN_NUMBER = "Sorry, this number is not in service. Goodbye."


def _services(request: Request | WebSocket) -> Services:
    services: Services = request.app.state.services
    return services


async def twilio_voice(request: Request) -> Response:
    services = _services(request)
    form = await request.form()
    call_sid = str(form.get("CallSid", ""))
    refusal = services.drain.refusal()
    if refusal is not None:
        services.metrics.webhook_rejected.labels("draining").inc()
        log.info("call %s refused: draining", call_sid)
        body = twiml.redirect(refusal.redirect_url) if refusal.redirect_url else twiml.say_and_hangup(refusal.message)
        return Response(body, media_type="application/xml")
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
    logs.bind(call=start.call_sid, stream=start.stream_sid, agent=agent.id)  # inherited by the call's tasks
    session = CallSession(ws, services, protocol, start, agent)
    attach_conversation(session, services)
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
    """Ready = every loaded engine ready (warmed) and not draining. The body says what is not ready.

    A Redis outage does not make the pod unready: calls are served from the last agent snapshot, and
    taking every pod out of the load balancer at once would turn a degraded store into an outage.
    It is reported under ``store`` and ``degraded`` (and as ``voicegw_redis_up``) for alerting.
    """
    services = _services(request)
    engines = {name: bool(e.ready) for name, e in services.engines.items()}
    # An engine that failed to load for good (missing weights) is degraded, not "not ready": its agents
    # fall back, and an unready pod would never come back. One still loading keeps the pod unready.
    failed = {name: getattr(e, "load_error", None) for name, e in services.engines.items() if not e.ready}
    not_ready = [f"engine {name} not ready" for name, err in failed.items() if not err]
    degraded = [f"engine {name} unavailable: {err}" for name, err in failed.items() if err]
    if not any(engines.values()):
        not_ready.append("no TTS engine loaded")
    if services.draining:
        not_ready.append("draining")
    store_ok = bool(services.store.healthy)
    services.metrics.redis_up.set(1 if store_ok else 0)
    body = {
        "ready": not not_ready,
        "not_ready": not_ready,
        "degraded": degraded
        + ([] if store_ok else [f"{services.store.kind} settings store unreachable; serving last snapshot"]),
        "engines": engines,
        "store": {"kind": services.store.kind, "healthy": store_ok},
        **services.drain.status(time.monotonic()),
        "active_calls": services.active_calls,
        "signatures_enforced": services.settings.signatures_enforced,
    }
    return JSONResponse(body, status_code=503 if not_ready else 200)


def _authorized(request: Request, key: str | None) -> bool:
    return not key or secrets.compare_digest(request.headers.get("authorization", ""), f"Bearer {key}")


async def metrics(request: Request) -> Response:
    services = _services(request)
    if services.settings.metrics_port:
        return JSONResponse({"error": f"metrics are served on port {services.settings.metrics_port}"}, 404)
    if not _authorized(request, services.settings.api_key):
        return JSONResponse({"error": "missing or invalid bearer token"}, status_code=401)
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def admin_drain(request: Request) -> Response:
    """Start the drain (what SIGTERM does); used by the Kubernetes preStop hook (``voicegw drain``).

    Needs the API key when one is set; without one, only loopback clients may drain.
    """
    services = _services(request)
    key = services.settings.api_key
    client = request.client.host if request.client else ""
    if not _authorized(request, key) or (not key and client not in ("127.0.0.1", "::1")):
        return JSONResponse({"error": "missing or invalid bearer token"}, status_code=401)
    if services.drain.begin(time.monotonic()):
        log.warning("drain requested over HTTP: refusing new calls, %d active", services.active_calls)
    return JSONResponse({**services.drain.status(time.monotonic()), "active_calls": services.active_calls})


def _speech_endpoint(path: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        handler = request.app.state.speech[path]
        response: Response = await handler(request)
        return response

    return endpoint


def create_app(settings: Settings, services: Services | None = None) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = services is None
        app.state.services = services if services is not None else await build_services(settings)
        # The speech API shares engines, metrics and breakers with calls, so it is built from the services.
        app.state.speech = {r.path: r.endpoint for r in speech_routes(app.state.services)}  # type: ignore[attr-defined]
        metrics_server = None
        if settings.metrics_port:
            metrics_server, _ = start_http_server(
                settings.metrics_port, addr=settings.host, registry=app.state.services.metrics.registry
            )
            log.info("metrics on http://%s:%d/metrics", settings.host, settings.metrics_port)
        try:
            yield
        finally:
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()
            if owned:
                await app.state.services.aclose()

    routes = [
        Route("/twilio/voice", twilio_voice, methods=["POST"]),
        Route("/twilio/status", twilio_status, methods=["POST"]),
        WebSocketRoute("/twilio/media", twilio_media),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/admin/drain", admin_drain, methods=["POST"]),
        Route("/v1/audio/speech", _speech_endpoint("/v1/audio/speech"), methods=["POST"]),
        Route("/v1/voices", _speech_endpoint("/v1/voices"), methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
