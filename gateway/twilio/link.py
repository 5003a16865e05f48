"""Twilio's adapter to the call core: one Media Streams WebSocket as a :class:`gateway.carrier.CarrierLink`.

I/O shell around :class:`gateway.twilio.protocol.TwilioProtocol`. Inbound
``media``, ``dtmf``, ``mark`` and ``stop`` become the neutral events of
:mod:`gateway.carrier` (a closed socket becomes ``HungUp("caller_hangup")``, a
fatal protocol error ``HungUp("protocol_error")``, our own shutdown ``HungUp("shutdown")``; a non-fatal one is counted,
logged and skipped); outbound audio, marks and ``clear`` go out as Twilio
messages while the stream is open; hang-up and transfer use the REST API
(:class:`gateway.twilio.rest.TwilioRest`) when credentials are configured.
:func:`receive_events` is the one receive loop step (read a message, feed the
protocol, take its events), also used before the call exists to wait for ``start``.

Under :class:`gateway.direct_ws.DirectWebSocketProtocol` (how ``voicegw serve`` runs) the link attaches
to the WebSocket on its first :meth:`TwilioLink.receive`: each message is then parsed as it arrives, caller
audio is offered to the call core's ``on_audio`` hook at once (no task switch per frame: the per-frame
path of docs/scaling.md), everything else is queued for :meth:`TwilioLink.receive` in order (audio too,
whenever something is already queued or the hook declines it), and outbound messages are written straight
to the socket. Under any other ASGI server the link reads through ASGI ``receive`` as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.websockets import WebSocket, WebSocketDisconnect

from audio.formats import TWILIO_FORMAT, AudioChunk
from gateway.carrier import CallerAudio, CallEvent, CarrierError, Digit, HungUp, MarkHeard
from gateway.direct_ws import DirectWriter, direct_attach
from gateway.ops.metrics import Metrics
from gateway.twilio.events import Dtmf, Event, Mark, Media, Stop
from gateway.twilio.protocol import RemoteProtocolError, State, TwilioProtocol
from gateway.twilio.rest import TwilioRest, TwilioRestError

log = logging.getLogger("voicegw.call")


SERVICE_RESTART = 1012  # how the server closes every stream when it shuts down (Ctrl-C, drain timeout)


@dataclass(frozen=True, slots=True)
class Closed:
    """The WebSocket closed; ``code`` as received (None: unknown)."""

    code: int | None

    @property
    def outcome(self) -> str:
        """Calls cut by our own shutdown ended as ``shutdown``, not as hung up by the caller."""
        return "shutdown" if self.code == SERVICE_RESTART else "caller_hangup"


async def receive_events(ws: WebSocket, protocol: TwilioProtocol) -> list[Event] | Closed:
    """Read one WebSocket message and feed it to ``protocol``: its events, or :class:`Closed`.

    Raises :class:`RemoteProtocolError` for a malformed message (its ``fatal`` says whether to go on)."""
    try:
        message = await ws.receive()
    except WebSocketDisconnect as exc:
        message = {"type": "websocket.disconnect", "code": exc.code}
    if message["type"] == "websocket.disconnect":
        protocol.receive_eof()
        code = message.get("code")
        return Closed(code if isinstance(code, int) else None)
    if message.get("bytes") is not None:
        protocol.receive_bytes(message["bytes"])
    else:
        protocol.receive_text(message.get("text") or "")
    return protocol.events_received()


def to_call_event(event: Event) -> CallEvent | None:
    """The neutral event for a Twilio one (None: nothing the call core needs, e.g. a late ``connected``)."""
    if isinstance(event, Media):
        return CallerAudio(AudioChunk(event.payload, TWILIO_FORMAT), event.timestamp_ms / 1000.0)
    if isinstance(event, Mark):
        return MarkHeard(event.name)
    if isinstance(event, Dtmf):
        return Digit(event.digit)
    if isinstance(event, Stop):
        return HungUp("completed")
    return None


class TwilioLink:
    """One call's Media Stream, after ``start`` (implements :class:`gateway.carrier.CarrierLink`)."""

    def __init__(self, ws: WebSocket, protocol: TwilioProtocol, call_sid: str, rest: TwilioRest | None,
                 metrics: Metrics) -> None:
        self.ws = ws
        self.protocol = protocol
        self.call_sid = call_sid
        self.rest = rest  # None: no account sid / auth token, REST hang-up and transfer unavailable
        self.metrics = metrics
        self._pending: deque[CallEvent] = deque()
        self._gone = False  # a send found the socket closed: the read side reports the hang-up
        # Set by the call core: takes caller audio as it arrives (True) or declines it (False: via receive()).
        self.on_audio: Callable[[CallerAudio], bool] | None = None
        self._attach = direct_attach(ws.scope)  # None: not served by the direct protocol (plain ASGI)
        self._writer: DirectWriter | None = None
        self._ended = False  # the last event (HungUp) is queued: nothing after it
        self._wakeup: asyncio.Future[None] | None = None
        self.audio_taken_now = 0  # caller audio chunks the call core took on the hot path

    @property
    def call_id(self) -> str:
        return self.call_sid

    @property
    def open(self) -> bool:
        return self.protocol.state is State.STREAMING and not self._gone

    async def receive(self) -> CallEvent:
        if self._attach is not None:
            return await self._receive_direct()
        while not self._pending:
            try:
                events = await receive_events(self.ws, self.protocol)
            except RemoteProtocolError as exc:
                if (end := self._malformed(exc)) is not None:
                    return end
                continue
            if isinstance(events, Closed):
                return HungUp(events.outcome)
            for event in events:
                call_event = to_call_event(event)
                if call_event is not None:
                    self._pending.append(call_event)
                    if isinstance(call_event, HungUp):
                        break  # `stop` is the stream's last word
        return self._pending.popleft()

    def _malformed(self, exc: RemoteProtocolError) -> HungUp | None:
        """Count and log a malformed message: the call's end when it is fatal, else None (it is skipped)."""
        self.metrics.protocol_errors.labels(exc.kind).inc()
        if exc.fatal:
            log.error("call %s: ending after malformed message: %s", self.call_sid, exc)
            return HungUp("protocol_error")
        log.warning("call %s: ignoring malformed message: %s", self.call_sid, exc)
        return None

    async def _receive_direct(self) -> CallEvent:
        if self._writer is None:
            assert self._attach is not None
            self._writer = self._attach(self)  # messages already received arrive here at once, in order
        while not self._pending:
            self._wakeup = asyncio.get_running_loop().create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None
        return self._pending.popleft()

    def _queue(self, event: CallEvent) -> None:
        if self._ended:
            return
        self._pending.append(event)
        if isinstance(event, HungUp):
            self._ended = True  # `stop`, a close or a fatal error is the stream's last word
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    # ---- the direct sink (gateway.direct_ws.DirectSink): called as each message is parsed -------------------
    def on_message(self, data: str | bytes) -> None:
        if self._ended:
            return
        protocol = self.protocol
        try:
            if isinstance(data, str):
                protocol.receive_text(data)
            else:
                protocol.receive_bytes(data)
        except RemoteProtocolError as exc:
            if (end := self._malformed(exc)) is not None:
                self._queue(end)
                return
        for event in protocol.events_received():
            call_event = to_call_event(event)
            if call_event is None:
                continue
            if (type(call_event) is CallerAudio and not self._pending and self.on_audio is not None
                    and self.on_audio(call_event)):
                self.audio_taken_now += 1
                continue
            self._queue(call_event)

    def on_closed(self, code: int | None) -> None:
        self.protocol.receive_eof()
        self._queue(HungUp(Closed(code).outcome))

    async def _flush(self) -> None:
        if self._writer is not None:
            if not self._writer.send_texts(self.protocol.data_to_send()):
                self._gone = True  # closing: receive() returns the HungUp
            return
        try:
            for text in self.protocol.data_to_send():
                await self.ws.send_text(text)
        except WebSocketDisconnect:
            self._gone = True  # the caller went away mid-send; receive() returns the HungUp

    async def send_audio(self, frames: Sequence[bytes]) -> None:
        if self.open:  # after `stop` nothing more may be sent
            for frame in frames:
                self.protocol.send_media(frame)
            await self._flush()  # one write for all of them

    async def send_mark(self, name: str) -> None:
        if self.open:
            self.protocol.send_mark(name)
            await self._flush()

    async def clear(self) -> None:
        if self.open:
            self.protocol.send_clear()
            await self._flush()

    async def hang_up(self) -> bool:
        """Complete the call through the REST API (False without credentials or when it had already ended)."""
        if self.rest is None:
            return False
        try:
            return await self.rest.hangup(self.call_sid)
        except TwilioRestError as exc:
            raise CarrierError(f"REST hang-up failed ({exc.reason})") from exc

    async def transfer(self, number: str, say_first: str | None = None) -> None:
        if self.rest is None:
            raise CarrierError("transfer needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
        try:
            await self.rest.transfer(self.call_sid, number, say_first)
        except TwilioRestError as exc:
            raise CarrierError(exc.reason) from exc

    async def aclose(self) -> None:
        """Send nothing more; the WebSocket itself is closed by the route that accepted it."""
        self.protocol.receive_eof()
