"""The browser as a carrier: ``/console/call``, one console call as a :class:`gateway.carrier.CarrierLink`.

I/O shell around :class:`gateway.console.protocol.ConsoleProtocol`. The page's microphone frames become
:class:`gateway.carrier.CallerAudio` (16-bit PCM at the call rate, placed on the stream clock by sample
count), its mark reports :class:`gateway.carrier.MarkHeard` (marks a ``clear`` dropped are forgotten, as the
seam asks), keypad presses :class:`gateway.carrier.Digit`, its hang-up ``HungUp("completed")`` and a closed
socket ``HungUp("caller_hangup")``. Agent audio goes out as the call core's frames, untouched (binary
messages), marks and ``clear`` as JSON. A console call cannot be transferred: the page is told, and ends it.

Nothing here knows Twilio: the call core, the conversation and the agents are the ones phone calls use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Sequence

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from audio.formats import AudioChunk, AudioFormat, Encoding
from gateway.call import CallSession
from gateway.carrier import CALL_SAMPLE_RATE, CallerAudio, CallEvent, Digit, HungUp, MarkHeard
from gateway.console import protocol as wire
from gateway.console.guard import denied, services_of
from gateway.console.monitor import PageMonitor
from gateway.conversation import make_conversation
from gateway.ops.metrics import Metrics
from gateway.phrase_cache import fingerprint

log = logging.getLogger("voicegw.console")

START_TIMEOUT_S = 10.0
MAX_MALFORMED = 50  # malformed messages after `start` before the call ends as protocol_error (as for Twilio)
AUDIO_IN = wire.AudioFormat("pcm_s16le", CALL_SAMPLE_RATE)
AUDIO_OUT = wire.AudioFormat("mulaw", CALL_SAMPLE_RATE)
_PCM = AudioFormat(Encoding.PCM_S16, CALL_SAMPLE_RATE)


async def _read(ws: WebSocket, protocol: wire.ConsoleProtocol) -> list[wire.Event] | None:
    """One WebSocket message through the protocol: its events, or None once the socket closed."""
    try:
        message = await ws.receive()
    except WebSocketDisconnect:
        message = {"type": "websocket.disconnect"}
    if message["type"] == "websocket.disconnect":
        protocol.receive_eof()
        return None
    if message.get("bytes") is not None:
        protocol.receive_bytes(message["bytes"])
    else:
        protocol.receive_text(message.get("text") or "")
    return protocol.events_received()


class ConsoleLink:
    """One console call's WebSocket, after ``start`` (implements :class:`gateway.carrier.CarrierLink`)."""

    def __init__(self, ws: WebSocket, protocol: wire.ConsoleProtocol, call_id: str, metrics: Metrics) -> None:
        self.ws = ws
        self.protocol = protocol
        self._call_id = call_id
        self.metrics = metrics
        self._pending: deque[CallEvent] = deque()
        self._samples_in = 0  # caller audio received so far: the stream clock
        self._errors = 0  # malformed messages so far
        self._send_lock = asyncio.Lock()  # the call's writers and the page monitor share the socket

    @property
    def call_id(self) -> str:
        return self._call_id

    @property
    def open(self) -> bool:
        return self.protocol.state is wire.State.STREAMING

    def _event(self, event: wire.Event) -> CallEvent | None:
        if isinstance(event, wire.Audio):
            at_s = self._samples_in / CALL_SAMPLE_RATE
            self._samples_in += len(event.data) // 2
            samples = np.frombuffer(event.data, dtype="<i2").astype(np.int16)  # little-endian on the wire
            return CallerAudio(AudioChunk(samples, _PCM), at_s)
        if isinstance(event, wire.Played):
            return None if event.cleared else MarkHeard(event.name)
        if isinstance(event, wire.Digit):
            return Digit(event.digit)
        if isinstance(event, wire.Hangup):
            return HungUp("completed")
        return None  # a second `start` is refused by the protocol; nothing else reaches here

    async def receive(self) -> CallEvent:
        while not self._pending:
            try:
                events = await _read(self.ws, self.protocol)
            except wire.ConsoleProtocolError as exc:
                self.metrics.protocol_errors.labels(exc.kind).inc()
                self._errors += 1
                if self._errors >= MAX_MALFORMED:
                    log.error("console call %s: ending after %d malformed messages: %s", self._call_id,
                              self._errors, exc)
                    return HungUp("protocol_error")
                log.warning("console call %s: ignoring malformed message: %s", self._call_id, exc)
                continue
            if events is None:
                return HungUp("caller_hangup")
            for event in events:
                call_event = self._event(event)
                if call_event is not None:
                    self._pending.append(call_event)
        return self._pending.popleft()

    async def flush(self) -> None:
        async with self._send_lock:
            for data in self.protocol.data_to_send():
                if isinstance(data, bytes):
                    await self.ws.send_bytes(data)
                else:
                    await self.ws.send_text(data)

    async def send_audio(self, frames: Sequence[bytes]) -> None:
        if self.open:
            for frame in frames:
                self.protocol.send_audio(frame)
            await self.flush()

    async def send_mark(self, name: str) -> None:
        if self.open:
            self.protocol.send_mark(name)
            await self.flush()

    async def clear(self) -> None:
        if self.open:
            self.protocol.send_clear()
            await self.flush()

    async def hang_up(self) -> bool:
        return False  # the call core closes the link; the route then tells the page and closes the socket

    async def transfer(self, number: str, say_first: str | None = None) -> None:
        """The page shows the transfer and hangs up (``HungUp("completed")``): a browser has no one to dial."""
        self.protocol.send_event("transfer", to=number)
        await self.flush()

    async def aclose(self) -> None:
        self.protocol.receive_eof()


async def _await_start(ws: WebSocket, protocol: wire.ConsoleProtocol) -> wire.Start | None:
    while True:
        events = await _read(ws, protocol)
        if events is None:
            return None
        for event in events:
            if isinstance(event, wire.Start):
                return event


async def console_call(ws: WebSocket) -> None:
    """One console call: admit the operator, read ``start``, run the call core on a :class:`ConsoleLink`."""
    if denied(ws) is not None:
        await ws.close(1008)  # before accept(): the handshake is refused with a 403
        return
    services = services_of(ws)
    await ws.accept()
    protocol = wire.ConsoleProtocol(AUDIO_IN, max_audio_bytes=services.settings.max_ws_message_bytes)
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            start = await _await_start(ws, protocol)
    except wire.ConsoleProtocolError as exc:
        services.metrics.protocol_errors.labels(exc.kind).inc()
        await ws.close(1008, reason=exc.reason[:120])
        return
    except TimeoutError:
        await ws.close(1008, reason="no start message")
        return
    if start is None:
        return
    agent = services.store.get(start.agent)
    cap = services.settings.max_calls
    full = bool(cap) and services.active_calls >= cap
    if full:
        services.metrics.bounded.labels("gateway_full").inc()
    refusal = (f"no agent {start.agent!r}" if agent is None else
               "the gateway is draining: no new calls" if services.draining else
               f"the gateway is full (VOICEGW_MAX_CALLS={cap})" if full else None)
    if refusal is not None or agent is None:
        await ws.send_json({"type": "error", "message": refusal})
        await ws.close(4404 if agent is None else 1013, reason=str(refusal)[:120])
        return
    call_id = f"console-{uuid.uuid4().hex[:16]}"
    link = ConsoleLink(ws, protocol, call_id, services.metrics)
    protocol.send_event("ready", call_id=call_id,
                        agent={"id": agent.id, "name": agent.name, "version": fingerprint(agent)},
                        audio={"in": AUDIO_IN.as_json(), "out": AUDIO_OUT.as_json()})
    await link.flush()
    session = CallSession(link, services, agent)
    listening = services.listening
    session.listener = make_conversation(session, agent, listening.stt if listening else None,
                                         listening.vad if listening else None, services.metrics)
    monitor = PageMonitor(protocol, link.flush)
    monitor.attach(session)
    started = time.monotonic()
    services.active_calls += 1
    try:
        await session.run()
    finally:
        services.active_calls -= 1
        await monitor.aclose()
        protocol.send_event("end", outcome=session.outcome)
        with contextlib.suppress(Exception):
            await link.flush()
            await ws.close()
        log.info("console call %s (agent %s) ended: %s after %.1f s", call_id, agent.id, session.outcome,
                 time.monotonic() - started)
