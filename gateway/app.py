"""The Starlette application: Twilio webhooks, the media WebSocket, health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest, start_http_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from gateway.auth import bearer_ok, open_api_refusal
from gateway.call import CallSession
from gateway.console.routes import console_routes
from gateway.conversation import make_conversation
from gateway.errors import ALL_METHODS, json_error, unauthorized
from gateway.http_limits import BodyError, read_form
from gateway.ops import logs
from gateway.services import Services
from gateway.settings import Settings
from gateway.speech_api import speech_routes
from gateway.startup import build_services
from gateway.twilio import twiml
from gateway.twilio.edge import Edge
from gateway.twilio.events import Start
from gateway.twilio.link import Closed, TwilioLink, receive_events
from gateway.twilio.protocol import RemoteProtocolError, TwilioProtocol
from gateway.twilio.security import TOKEN_PARAMETER, SignatureError, TokenError, public_endpoint
from tts.registry import voice_problems

log = logging.getLogger("voicegw.app")

UNKNOWN_NUMBER = "Sorry, this number is not in service. Goodbye."
BUSY = "Sorry, all of our lines are busy right now. Please call again later. Goodbye."
START_TIMEOUT_S = 10.0  # upgrade → `start`; Twilio sends it at once


def _services(request: Request | WebSocket) -> Services:
    services: Services = request.app.state.services
    return services


def _reject(services: Services, reason: str, detail: str, where: str) -> None:
    services.metrics.webhook_rejected.labels(reason).inc()
    log.warning("%s rejected (%s): %s", where, reason, detail)


async def _signed_form(request: Request, path: str) -> tuple[dict[str, str], Response | None]:
    """The webhook's form fields, or a 403 when signatures are on and this one is not Twilio's.

    Checked before anything else is looked up or allocated. The URL is the configured
    PUBLIC_URL + route (+ query): behind a proxy the Host header is not what Twilio signed.
    """
    services = _services(request)
    try:
        form = await read_form(request)
    except BodyError as exc:
        _reject(services, "bad_body", exc.message, f"POST {path}")
        return {}, PlainTextResponse(exc.message, status_code=exc.status)
    verifier = services.twilio_edge().verifier
    if verifier is not None:
        base = services.settings.public_url or str(request.base_url)
        url = public_endpoint(base, path, request.url.query)
        try:
            verifier.check_webhook(url, form, request.headers.get("x-twilio-signature"))
        except SignatureError as exc:
            _reject(services, "bad_signature", exc.reason, f"POST {path}")
            return {}, PlainTextResponse("invalid Twilio signature", status_code=403)
    return {k: str(v) for k, v in form.items()}, None


def _xml(body: str) -> Response:
    return Response(body, media_type="application/xml")


async def twilio_voice(request: Request) -> Response:
    services = _services(request)
    form, refused = await _signed_form(request, "/twilio/voice")
    if refused is not None:
        return refused
    edge = services.twilio_edge()
    call_sid = form.get("CallSid", "")
    if not call_sid or "|" in call_sid:
        _reject(services, "bad_request", f"CallSid {call_sid!r}", "POST /twilio/voice")
        return PlainTextResponse("missing or invalid CallSid", status_code=400)
    cap = services.settings.max_calls
    if cap and services.active_calls >= cap:
        services.metrics.bounded.labels("gateway_full").inc()
        _reject(services, "busy", f"gateway at VOICEGW_MAX_CALLS={cap}", call_sid)
        return _xml(twiml.say_and_hangup(BUSY))
    refusal = services.drain.refusal()
    if refusal is not None:
        services.metrics.webhook_rejected.labels("draining").inc()
        log.info("call %s refused: draining", call_sid)
        return _xml(twiml.redirect(refusal.redirect_url) if refusal.redirect_url else
                    twiml.say_and_hangup(refusal.message))
    to = form.get("To", "")
    agent_id = request.query_params.get("agent")
    agent = services.store.get(agent_id) if agent_id else services.store.by_number(to)
    if agent is None:
        log.info("call %s to %s: no agent (agent=%s)", call_sid, to, agent_id)
        return _xml(twiml.say_and_hangup(UNKNOWN_NUMBER))
    if not await edge.limiter.acquire(agent.id, call_sid, agent.limits.max_concurrent_calls):
        _reject(services, "busy", f"agent {agent.id} at {agent.limits.max_concurrent_calls} calls", call_sid)
        return _xml(twiml.say_and_hangup(BUSY))
    try:
        base = services.settings.public_url or str(request.base_url)
        url = twiml.stream_url(services.settings.public_url, str(request.base_url))
        token = edge.issue_token(call_sid, agent.id)
        body = twiml.connect_stream(url, {TOKEN_PARAMETER: token, "agent": agent.id},
                                    status_callback=public_endpoint(base, "/twilio/status"))
    except BaseException:  # no TwiML, no stream: the slot must not wait for its expiry
        await edge.limiter.release(agent.id, call_sid)
        raise
    return _xml(body)


#: The ``StreamEvent`` values of Twilio's Media Streams ``statusCallback``.
STREAM_EVENTS = ("stream-started", "stream-stopped", "stream-error")


async def twilio_status(request: Request) -> Response:
    """Media Streams ``statusCallback``: one log line per event; a request that is not one is a 400."""
    form, refused = await _signed_form(request, "/twilio/status")
    if refused is not None:
        return refused
    missing = [name for name in ("CallSid", "StreamSid", "StreamEvent") if not form.get(name)]
    if missing:
        _reject(_services(request), "bad_request", f"missing {', '.join(missing)}", "POST /twilio/status")
        return PlainTextResponse(f"not a stream status callback: missing {', '.join(missing)}", status_code=400)
    call_sid, stream_sid, event = form["CallSid"], form["StreamSid"], form["StreamEvent"]
    if event == "stream-error":
        log.warning("call %s stream %s: stream-error: %s", call_sid, stream_sid,
                    form.get("StreamError") or "(Twilio gave no StreamError)")
    elif event in STREAM_EVENTS:
        log.info("call %s stream %s: %s", call_sid, stream_sid, event)
    else:
        log.warning("call %s stream %s: unknown stream event %r", call_sid, stream_sid, event[:64])
    return Response(status_code=204)


async def _await_start(ws: WebSocket, protocol: TwilioProtocol) -> Start | None:
    """Read until `start` (at most a few messages); None if the peer misbehaves."""
    for _ in range(4):
        try:
            events = await receive_events(ws, protocol)
        except RemoteProtocolError as exc:
            _services(ws).metrics.protocol_errors.labels(exc.kind).inc()
            log.warning("media stream: %s", exc)
            return None
        if isinstance(events, Closed):
            return None
        for event in events:
            if isinstance(event, Start):
                return event
    return None


async def _admit(ws: WebSocket, edge: Edge, start: Start) -> str | None:
    """The agent id of a stream whose one-time token is genuine, for this call, unexpired and unused.

    A refused stream's slot is left to expire (``VOICEGW_SLOT_TTL_S``): nothing refreshes it. A forged or
    replayed token names a call this stream does not own, so it must not release that call's slot.
    """
    services = _services(ws)
    try:
        claims = edge.tokens.verify(start.custom_parameters.get(TOKEN_PARAMETER), time.time(), start.call_sid)
    except TokenError as exc:
        _reject(services, "bad_stream_token", exc.reason, f"stream {start.stream_sid}")
        return None
    if not await edge.used_tokens.claim(claims.token_id, edge.tokens.ttl_s):
        _reject(services, "replayed_stream_token", f"token for call {claims.call_sid} already used",
                f"stream {start.stream_sid}")
        return None
    return claims.agent_id


async def twilio_media(ws: WebSocket) -> None:
    services = _services(ws)
    edge = services.twilio_edge()
    signature = ws.headers.get("x-twilio-signature")
    if edge.verifier is not None and signature:
        try:
            edge.verifier.check_upgrade(twiml.stream_url(services.settings.public_url, str(ws.base_url)), signature)
        except SignatureError as exc:
            _reject(services, "bad_signature", exc.reason, "media upgrade")
            await ws.close(1008)  # before accept(): an HTTP 403 handshake rejection
            return
    if edge.pending_streams >= services.settings.max_pending_streams:
        services.metrics.bounded.labels("pending_streams").inc()
        _reject(services, "busy", f"{edge.pending_streams} streams already waiting to authenticate", "media upgrade")
        await ws.close(1013)  # before accept(): refused at the handshake
        return
    edge.pending_streams += 1
    try:
        await ws.accept()
        protocol = TwilioProtocol(max_message_chars=services.settings.max_ws_message_bytes)
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                start = await _await_start(ws, protocol)
        except TimeoutError:
            start = None
        agent_id = await _admit(ws, edge, start) if start is not None else None
    finally:
        edge.pending_streams -= 1
    cap = services.settings.max_calls
    if cap and start is not None and services.active_calls >= cap:
        services.metrics.bounded.labels("gateway_full").inc()
        _reject(services, "busy", f"gateway at VOICEGW_MAX_CALLS={cap}", start.call_sid)
        if agent_id:
            await edge.limiter.release(agent_id, start.call_sid)
        await ws.close(1013)
        return
    agent = services.store.get(agent_id) if agent_id else None
    if start is None or agent is None:
        if agent_id and start is not None:  # a genuine, first-use token: this stream owns the call's slot
            log.warning("stream %s: agent %r is gone", start.stream_sid, agent_id)
            await edge.limiter.release(agent_id, start.call_sid)
        await ws.close(1008)
        return
    if not await edge.limiter.acquire(agent.id, start.call_sid, agent.limits.max_concurrent_calls):
        _reject(services, "busy", f"agent {agent.id} slot expired and was taken", start.call_sid)
        await ws.close(1008)
        return
    slot = (agent.id, start.call_sid)
    edge.live_slots.add(slot)  # from here the heartbeat keeps the slot; every exit below releases it
    services.active_calls += 1
    try:
        logs.bind(call=start.call_sid, stream=start.stream_sid, agent=agent.id)  # inherited by the call's tasks
        link = TwilioLink(ws, protocol, start.call_sid, edge.rest, services.metrics)
        session = CallSession(link, services, agent)
        listening = services.listening
        session.listener = make_conversation(session, agent, listening.stt if listening else None,
                                             listening.vad if listening else None, services.metrics)
        if session.listener is not None:
            session.listener.log_transcripts = services.settings.log_transcripts
        await session.run()
    finally:
        services.active_calls -= 1
        edge.live_slots.discard(slot)
        await edge.limiter.release(agent.id, start.call_sid)
        edge.calls_finished += 1  # last: the slot is free once this counts the call
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
    rejected: dict[str, str] = getattr(services.store, "rejected", {})
    degraded += [f"agent {agent_id} from redis refused, last good version served if any: {why}"
                 for agent_id, why in sorted(rejected.items())]
    if not any(engines.values()):
        not_ready.append("no TTS engine loaded")
    chattts = services.engines.get("chattts")
    if services.settings.role == "speech" and (chattts is None or not chattts.ready):
        # A speech pod exists for ChatTTS: without it, it must not take traffic (telephony pods fall back).
        why = getattr(chattts, "load_error", None) if chattts is not None else "not configured"
        if why:
            not_ready.append(f"engine chattts unavailable: {why}")
    listening = _listening_status(services)
    if services.phrases is not None and not services.phrases.ready:
        not_ready.append("pre-rendering fixed phrases")
    if listening["vad"] not in ("ready", "off"):
        not_ready.append(f"listening unavailable: VAD {listening['vad']}")
    if listening["stt"] not in ("ready", "off"):
        not_ready.append(f"listening unavailable: speech-to-text {listening['stt']}")
    if services.settling:
        not_ready.append("settling startup (freezing its heap)")
    if services.draining:
        not_ready.append("draining")
    store_ok = bool(services.store.healthy)
    services.metrics.redis_up.set(1 if store_ok else 0)
    # An agent pushed with a voice that cannot speak fails each of its calls. Degraded rather than not
    # ready: every pod shares the store, so unready would take the agents that work out of service too.
    voices = {a.id: [f"{key}: {msg}" for key, msg in voice_problems(a.tts, a.language)]
              for a in services.store.snapshot.agents.values()}
    degraded += [f"agent {agent}: cannot speak: {p}" for agent, problems in voices.items() for p in problems]
    body = {
        "ready": not not_ready,
        "not_ready": not_ready,
        "degraded": degraded
        + ([] if store_ok else [f"{services.store.kind} settings store unreachable; serving last snapshot"]),
        "engines": engines,
        "store": {"kind": services.store.kind, "healthy": store_ok},
        "listening": listening,
        **services.drain.status(time.monotonic()),
        "active_calls": services.active_calls,
        "agents_version": services.store.version,  # the live version (a push goes live once pre-rendered)
        "signatures_enforced": services.settings.signatures_enforced,
    }
    return JSONResponse(body, status_code=503 if not_ready else 200)


async def health(request: Request) -> Response:
    """The speech engine's health in the ChatTTS server API's shape (what remote ChatTTS clients probe).

    See :mod:`tts.chattts_remote`.

    200 ``{"status": "ok", "model_loaded": true}`` while ChatTTS can synthesize, else 503 with the reason.
    A draining pod stays healthy (its in-flight and pooled requests are still served) but answers with
    ``Connection: close``, so clients' keep-alive connections move to pods that stay.
    """
    services = _services(request)
    engine = services.engines.get("chattts")
    loaded = engine is not None and engine.ready
    error = getattr(engine, "load_error", None) if engine is not None else "chattts is not configured on this pod"
    body = {"status": "ok" if loaded else ("unavailable" if error else "loading"), "model_loaded": loaded,
            "role": services.settings.role, "draining": services.draining}
    if not loaded and error:
        body["error"] = error
    headers = {"connection": "close"} if services.draining else None
    return JSONResponse(body, status_code=200 if loaded else 503, headers=headers)


def _listening_status(services: Services) -> dict[str, str]:
    """Can the gateway hear callers? ``ready``, ``loading`` or ``failed: <reason>`` for the VAD and the
    recognizer (``off`` for a gateway built without listening, as some tests do)."""
    listening = services.listening
    if listening is None:
        return {"vad": "off", "stt": "off"}
    vad = "ready" if listening.vad is not None else f"failed: {listening.vad_error or 'not loaded'}"
    stt = listening.stt
    if stt is None:
        stt_state = "failed: not loaded"
    elif stt.load_error:
        stt_state = f"failed: {stt.load_error}"
    else:
        stt_state = "ready" if stt.ready else "loading"
    return {"vad": vad, "stt": stt_state}


def _authorized(request: Request, key: str | None) -> bool:
    return bearer_ok(request.headers.get("authorization"), key)


async def metrics(request: Request) -> Response:
    services = _services(request)
    if services.settings.metrics_port:
        return json_error(404, f"metrics are served on port {services.settings.metrics_port}")
    settings = services.settings
    refusal = open_api_refusal(settings.host, settings.api_key, settings.allow_open_api)
    if refusal is not None:
        return json_error(403, refusal, type="permission_error")
    if not _authorized(request, settings.api_key):
        return unauthorized()
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def admin_drain(request: Request) -> Response:
    """Start the drain (what SIGTERM does); used by the Kubernetes preStop hook (``voicegw drain``).

    Needs the API key when one is set; without one, only loopback clients may drain.
    """
    services = _services(request)
    key = services.settings.api_key
    client = request.client.host if request.client else ""
    if not _authorized(request, key) or (not key and client not in ("127.0.0.1", "::1")):
        return unauthorized()
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
        logs.add_secrets(*settings.secrets)  # never written to a log line, whoever logs them
        app.state.services = services if services is not None else await build_services(settings)
        # The speech API shares engines, metrics and breakers with calls, so it is built from the services.
        app.state.speech = {r.path: r.endpoint for r in speech_routes(app.state.services)}  # type: ignore[attr-defined]
        if (refusal := open_api_refusal(settings.host, settings.api_key, settings.allow_open_api)) is not None:
            log.warning("%s", refusal)
        elif not settings.api_key:
            log.warning("VOICEGW_API_KEY is not set: /v1/* and /metrics are open to anyone who reaches %s:%d%s",
                        settings.host, settings.port, "" if settings.allow_open_api else " (loopback only)")
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

    twilio: list[BaseRoute] = [
        Route("/twilio/voice", twilio_voice, methods=["POST"]),
        Route("/twilio/status", twilio_status, methods=["POST"]),
        WebSocketRoute("/twilio/media", twilio_media),
    ]
    routes: list[BaseRoute] = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/health", health),
        Route("/metrics", metrics),
        Route("/admin/drain", admin_drain, methods=["POST"]),
        # every method reaches the speech handlers: they answer a wrong one with a JSON 405 and Allow
        Route("/v1/audio/speech", _speech_endpoint("/v1/audio/speech"), methods=ALL_METHODS),
        Route("/v1/voices", _speech_endpoint("/v1/voices"), methods=ALL_METHODS),
        *console_routes(),
    ]
    # VOICEGW_ROLE=speech: a GPU speech server for telephony pods, no Twilio routes (docs/scaling.md).
    return Starlette(routes=routes if settings.role == "speech" else twilio + routes, lifespan=lifespan)
