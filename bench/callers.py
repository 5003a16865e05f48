"""Emulated Twilio legs for bench/load.py, hundreds per process on one core.

Rules of this file: on the wire each leg is what Twilio sends (webhook, WebSocket Upgrade, ``connected``,
``start``, 20 ms inbound ``media`` frames with ``sequenceNumber``/``chunk``/``timestamp``, mark echoes at
playout time, ``clear`` honoured, ``stop``), so the gateway does exactly the work a real call costs. What is
cheap here: one asyncio Protocol per connection (bench/ws_client.py framing, no WebSocket library), one
pacing ticker per process instead of one sleeping task per leg, pre-encoded inbound payloads, and outbound
media counted without a JSON parse. The clock is the event loop's. Each leg keeps the 20 ms phase at which
it joined, as independent Twilio legs do: the ticker runs every 2 ms and sends the frames of the legs in
that phase slot, so the gateway receives a steady stream, not every call's frame in one burst per 20 ms.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

import httpx

from bench import ws_client as ws
from gateway.twilio.emulator import Playout

PERIOD_S = 0.02  # one inbound frame per leg per period
SLOTS = 10  # phase slots per period: a leg is ticked in the slot of the phase it joined at
CLOSE_TIMEOUT_S = 10.0  # after a close frame, wait this long for the server to close the TCP connection
OPEN_TIMEOUT_S = 30.0
_ACCOUNT = "AC" + "0" * 32


@dataclass
class CallOutcome:
    error: str = ""
    greeting: bool = False
    marks: int = 0
    underruns: int = 0
    ttfa_s: float = math.nan
    heard_s: float = 0.0
    send_lag_max_s: float = 0.0
    talked: bool = False  # said the fixture sentence (--inbound speech)
    next_mark_s: float = math.nan  # first mark after the greeting's, seconds after the greeting was heard
    close_s: float = math.nan  # our close frame (or the gateway's) → the gateway closed the TCP connection
    close_aborted: bool = False  # the gateway had not closed it CLOSE_TIMEOUT_S later: we aborted it
    streamed_s: float = 0.0  # ``start`` sent → the stream's end (ours at call_s, or the agent's hang-up before)


@dataclass(frozen=True)
class Script:
    """What every leg of a process sends: idle-line frames to loop, speech frames said once (base64)."""

    idle: list[str]
    speech: list[str]
    call_s: float


class Leg(asyncio.Protocol):
    """One call's media stream: parses what the gateway sends at once; the ticker calls :meth:`tick`."""

    def __init__(self, host: str, path: str, call_sid: str, params: dict[str, str], script: Script, talk: bool,
                 offset: int, out: CallOutcome, clock: Callable[[], float]) -> None:
        loop = asyncio.get_running_loop()
        self.request, accept = ws.handshake_request(host, path)
        self.conn = ws.ClientConnection(accept)
        self.call_sid = call_sid
        self.params = params
        self.script = script
        self.talk = talk
        self.offset = offset  # where in the idle loop this leg starts
        self.out = out
        self.clock = clock
        self.playout = Playout(clock)
        self.sid = "MZ" + os.urandom(16).hex()
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = loop.create_future()  # the 101 arrived
        self.done: asyncio.Future[None] = loop.create_future()  # the TCP connection is gone
        self.t0 = math.nan  # when ``start`` was sent
        self.seq = 0
        self.chunk = 0
        self.said = 0  # speech frames sent
        self.greeting_at = math.nan  # when the greeting's mark was reached in playout
        self.closing = False  # a close frame was sent or received: no more frames from us
        self.closing_at = math.nan

    # ---- asyncio.Protocol --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's TCPTransport is not a subclass
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        try:
            self.conn.receive_data(data)
        except ws.ProtocolError as exc:
            self._fail(f"ProtocolError: {exc}")
            return
        if self.conn.state is ws.State.OPEN and not self.opened.done():
            self.opened.set_result(None)
        for event in self.conn.events_received():
            if isinstance(event, ws.Message):
                if event.text:
                    self._message(event.data)
            elif isinstance(event, ws.Ping):
                self._write(ws.pong_frame(event.data))
            else:  # Close: echo it (unless ours crossed it), then the server closes the TCP connection
                if not self.closing:
                    self._write(ws.close_frame(event.code if event.code != 1005 else 1000))
                self._closing()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing and not self.out.error:  # mid-call; after our close frame any ending is fine (as Twilio)
            self.out.error = f"connection lost without a close frame{f': {exc}' if exc else ''}"[:200]
        if self.closing and not math.isnan(self.closing_at) and not self.out.close_aborted:
            self.out.close_s = self.clock() - self.closing_at
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(self.out.error or "connection lost"))
        if not self.done.done():
            self.done.set_result(None)

    # ---- what the gateway sends --------------------------------------------------------------------
    def _message(self, raw: bytes) -> None:
        if raw.startswith(b'{"event":"media"'):
            at = raw.rfind(b'"payload":"') + 11
            n = len(raw) - at - 3  # ..."}}
            pad = raw.count(b"=", len(raw) - 5)
            if math.isnan(self.out.ttfa_s):
                self.out.ttfa_s = self.clock() - self.t0
            secs = (n * 3 // 4 - pad) / 8000
            self.out.heard_s += secs
            self.playout.add_audio(secs)
            return
        msg = json.loads(raw)
        if msg.get("event") == "mark":
            self.playout.add_mark(msg["mark"]["name"])
        elif msg.get("event") == "clear":
            for name in self.playout.clear():
                self._send(f'{{"event":"mark","streamSid":"{self.sid}","mark":{{"name":"{name}"}}}}')

    # ---- what the leg sends ------------------------------------------------------------------------
    def start(self) -> None:
        """``connected`` and ``start``; the leg's call clock starts now."""
        self._send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        self.seq += 1
        self._send(json.dumps({"event": "start", "sequenceNumber": str(self.seq), "streamSid": self.sid, "start": {
            "accountSid": _ACCOUNT, "streamSid": self.sid, "callSid": self.call_sid, "tracks": ["inbound"],
            "customParameters": self.params,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
        self.t0 = self.clock()

    def tick(self, now: float, lag: float) -> bool:
        """One 20 ms step: echo the marks playout reached, then one media frame (or ``stop`` at the end).

        ``lag``: how late this tick is. Returns False once the leg has left the ticker for good.
        """
        if self.closing:
            return False
        if lag > self.out.send_lag_max_s:
            self.out.send_lag_max_s = lag
        if self.playout.pending:
            for name in self.playout.due_marks():
                self.out.marks += 1
                if name == "greeting-1":
                    self.out.greeting = True
                    self.greeting_at = now
                elif not math.isnan(self.greeting_at) and math.isnan(self.out.next_mark_s):
                    self.out.next_mark_s = now - self.greeting_at
                self._send(f'{{"event":"mark","streamSid":"{self.sid}","mark":{{"name":"{name}"}}}}')
        if now - self.t0 >= self.script.call_s:
            self.seq += 1
            self._send(json.dumps({"event": "stop", "sequenceNumber": str(self.seq), "streamSid": self.sid,
                                   "stop": {"accountSid": _ACCOUNT, "callSid": self.call_sid}}))
            self._write(ws.close_frame(1000))
            self._closing()
            return False
        self.chunk += 1
        self.seq += 1
        chunk = self.chunk
        speech = self.script.speech
        if self.talk and self.said < len(speech) and now - self.greeting_at > 0.5:  # (False while nan)
            payload = speech[self.said]
            self.said += 1
        else:
            idle = self.script.idle
            payload = idle[(self.offset + chunk) % len(idle)]
        # Twilio's own layout: this member order (streamSid last), no spaces
        self._send(f'{{"event":"media","sequenceNumber":"{self.seq}","media":{{"track":"inbound","chunk":"{chunk}",'
                   f'"timestamp":"{chunk * 20 - 20}","payload":"{payload}"}},"streamSid":"{self.sid}"}}')
        return True

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _send(self, text: str) -> None:
        self._write(ws.text_frame(text))

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _closing(self) -> None:
        if not self.closing:
            self.closing = True
            self.closing_at = self.clock()
            if not math.isnan(self.t0):
                self.out.streamed_s = self.closing_at - self.t0
            asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, self._close_timeout)

    def _close_timeout(self) -> None:
        if not self.done.done():
            self.out.close_aborted = True
            self.abort()

    def _fail(self, error: str) -> None:
        self.out.error = error[:200]
        self.closing = True
        self.abort()


class Tickable(Protocol):
    def tick(self, now: float, lag: float) -> bool: ...


class Ticker:
    """Every 20 ms, one :meth:`Leg.tick` for every active leg, each in its own phase.

    A leg joins the phase slot (``period_s / slots`` wide) it arrived in and keeps it, as independent Twilio
    legs each keep their own 20 ms cadence: with calls arriving at random times the frames are spread over
    the period. (Ticking every leg at once sent the gateway all the calls' frames in one burst every 20 ms,
    a load no real carrier produces, which showed up as frame lateness at two thirds of a core.)
    The schedule is absolute: a late slot is followed by catch-up slots back to back, as a late Twilio
    media server would send. ``lags`` records how late each slot with legs ran.
    """

    def __init__(self, clock: Callable[[], float], period_s: float = PERIOD_S, slots: int = SLOTS) -> None:
        self.clock = clock
        self.period_s = period_s
        self.slot_s = period_s / slots
        self.slots: list[list[Tickable]] = [[] for _ in range(slots)]
        self.origin = clock()
        self.lags: list[float] = []

    def add(self, leg: Tickable) -> None:
        phase = (self.clock() - self.origin) % self.period_s
        self.slots[min(len(self.slots) - 1, int(phase / self.slot_s))].append(leg)

    async def run(self) -> None:
        clock = self.clock
        due = self.origin
        k = 0
        while True:
            now = clock()
            legs = self.slots[k]
            if legs:
                lag = max(0.0, now - due)
                self.lags.append(lag)
                self.slots[k] = [leg for leg in legs if leg.tick(now, lag)]
            due += self.slot_s
            k = (k + 1) % len(self.slots)
            await asyncio.sleep(max(0.0, due - clock()))


async def one_call(client: httpx.AsyncClient, url: str, to: str, script: Script, talk: bool, stagger: float,
                   rng: random.Random, ticker: Ticker) -> CallOutcome:
    """Webhook, TwiML, stream: one emulated Twilio call of ``script.call_s`` seconds."""
    await asyncio.sleep(rng.uniform(0, stagger))
    out = CallOutcome(talked=talk and bool(script.speech))
    call_sid = "CA" + os.urandom(16).hex()
    form = {"CallSid": call_sid, "AccountSid": _ACCOUNT, "From": "+14155550100", "To": to,
            "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01"}
    leg: Leg | None = None
    try:
        resp = await client.post(f"{url}/twilio/voice", data=form)
        stream = ET.fromstring(resp.text).find("./Connect/Stream")
        if resp.status_code != 200 or stream is None:
            return CallOutcome(error=f"webhook {resp.status_code}")
        params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
        path = "/" + (stream.get("url") or "").split("/", 3)[3]
        hostport = url.split("://", 1)[1].rstrip("/")
        host, _, port = hostport.rpartition(":")
        loop = asyncio.get_running_loop()
        leg = Leg(hostport, path, call_sid, params, script, talk, rng.randrange(len(script.idle)), out, loop.time)
        await asyncio.wait_for(loop.create_connection(lambda: leg, host, int(port)), OPEN_TIMEOUT_S)
        await asyncio.wait_for(asyncio.shield(leg.opened), OPEN_TIMEOUT_S)
        leg.start()
        ticker.add(leg)
        await leg.done
    except Exception as exc:
        out.error = out.error or f"{type(exc).__name__}: {exc}"[:200]
        if leg is not None:
            leg.abort()
    if leg is not None:
        out.underruns = leg.playout.underruns
    return out
