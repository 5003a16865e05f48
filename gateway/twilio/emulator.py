"""A Twilio emulator: places a call against a gateway exactly as Twilio would.

Used by tests, benchmarks and ``voicegw call``. It POSTs the (optionally
signed) incoming-call webhook, parses the TwiML, opens the media stream (the
upgrade signed too), sends ``connected``/``start`` (the full schema, with the
``<Parameter>`` values as ``customParameters``) and 20 ms inbound ``media``
frames with Twilio's ``sequenceNumber``/``chunk``/``timestamp``, plays the
received audio out in real time (or ``speed`` times faster), echoes each
``mark`` when playout reaches it, honours ``clear`` (drops its buffer and
echoes every pending mark at once), sends ``dtmf`` and ``stop``, posts signed
``statusCallback`` requests, and validates every message the gateway sends
(text frames, exact fields, ``streamSid``, base64). It reports underruns,
frame lateness and time to first audio. :meth:`TwilioEmulator.rest_update`
is what Twilio does on a REST call update (hang-up, redirect): tests wire the
fake REST API to it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from audio.formats import FRAME_BYTES, FRAME_SECONDS, MULAW_SILENCE
from gateway.tasks import TaskGroup


class EmulatorError(Exception):
    """The gateway did something Twilio would reject (or the call could not be placed)."""


@dataclass
class CallResult:
    twiml: str
    audio: bytearray = field(default_factory=bytearray)  # mu-law 8 kHz, every media payload received
    heard: bytearray = field(default_factory=bytearray)  # what played: `audio` less what each `clear` dropped
    marks_echoed: list[str] = field(default_factory=list)
    mark_times: dict[str, float] = field(default_factory=dict)  # when playout reached each mark (s since `start`)
    clear_times: list[float] = field(default_factory=list)  # seconds since `start` of each `clear`
    marks_cleared: list[str] = field(default_factory=list)
    clears: int = 0
    time_to_first_audio: float | None = None  # seconds from `start` to first outbound media
    underruns: int = 0
    errors: list[str] = field(default_factory=list)
    close_code: int | None = None
    handshake_status: int | None = None  # HTTP status when the gateway refused the WebSocket upgrade
    media_times: list[float] = field(default_factory=list)  # seconds since `start` of each `media` received
    frame_lateness: list[float] = field(default_factory=list)  # per media: how late after the buffer ran dry
    odd_frames: int = 0  # media payloads that are not exactly 160 bytes (Twilio accepts them; we never send them)
    status_events: list[str] = field(default_factory=list)  # statusCallback events posted
    status_codes: list[int] = field(default_factory=list)  # ...and the gateway's answers
    rest_updates: list[dict[str, str]] = field(default_factory=list)  # REST updates Twilio applied to this call
    sent_marks_echoed_after_clear: int = 0
    caller_hung_up: bool = False  # the emulated caller sent `stop` (script done, max_s); False: the gateway ended it

    @property
    def seconds(self) -> float:
        return len(self.audio) / 8000


def sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def parse_status_callback(twiml: str) -> str | None:
    stream = ET.fromstring(twiml).find("./Connect/Stream")
    return stream.get("statusCallback") if stream is not None else None


def parse_stream(twiml: str) -> tuple[str, dict[str, str]] | None:
    """The `<Connect><Stream>` URL and parameters, or None if the TwiML has none."""
    root = ET.fromstring(twiml)
    stream = root.find("./Connect/Stream")
    if stream is None:
        return None
    params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return stream.get("url", ""), params


class Playout:
    """Real-time playout of received audio, with pending marks (the Twilio buffer)."""

    def __init__(self, clock: Callable[[], float], speed: float = 1.0) -> None:
        self.clock = clock
        self.speed = speed  # playout rate (1.0 = real time)
        self.play_end = 0.0  # when the buffered audio finishes playing
        self.pending: list[tuple[float, str]] = []  # (play time at which the mark is reached, name)
        self.underruns = 0
        self.started = False

    def add_audio(self, seconds: float) -> float:
        """Buffer ``seconds`` of audio; returns how late it arrived (0 if the buffer had not run dry)."""
        now = self.clock()
        late = 0.0
        if self.play_end < now:
            if self.started:
                late = now - self.play_end
                if late > 0.02:
                    self.underruns += 1
            self.play_end = now
        self.started = True
        self.play_end += seconds / self.speed
        return late

    def add_mark(self, name: str) -> None:
        """A mark ends a sentence: silence after it (between sentences or turns) is not an underrun."""
        self.pending.append((max(self.play_end, self.clock()), name))
        self.started = False

    def due(self) -> list[tuple[float, str]]:
        """The marks playout has reached, each with the moment it reached it (Twilio echoes a mark then)."""
        now = self.clock()
        due = [(at, name) for at, name in self.pending if at <= now]
        self.pending = [(at, name) for at, name in self.pending if at > now]
        return due

    def due_marks(self) -> list[str]:
        return [name for _, name in self.due()]

    def next_due(self) -> float | None:
        """When the next pending mark will be reached (None: no mark pending)."""
        return min((at for at, _ in self.pending), default=None)

    def unplayed_seconds(self) -> float:
        """Audio time still buffered (what a ``clear`` now would drop)."""
        return max(0.0, self.play_end - self.clock()) * self.speed

    def clear(self) -> list[str]:
        names = [name for _, name in self.pending]
        self.pending = []
        self.play_end = self.clock()
        self.started = False
        return names

    def idle(self) -> bool:
        return not self.pending and self.play_end <= self.clock()


class TwilioEmulator:
    def __init__(
        self,
        base_url: str,
        auth_token: str | None = None,
        public_url: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        speed: float = 1.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth_token = auth_token
        self.public_url = (public_url or base_url).rstrip("/")  # the URL Twilio signs
        self.clock = clock
        self.speed = speed  # test clock mode: inbound frames and playout run this many times faster
        self.account_sid = sid("AC")
        self.live: dict[str, CallControl] = {}  # call sid -> call in progress

    def _signature(self, url: str, params: dict[str, str]) -> dict[str, str]:
        if not self.auth_token:
            return {}
        return {"X-Twilio-Signature": RequestValidator(self.auth_token).compute_signature(url, params)}

    def _local(self, url: str) -> str:
        """Twilio calls the public URL; locally the same path is reached on base_url."""
        path = url.split("/", 3)[3] if url.count("/") >= 3 else ""
        return f"{self.base_url}/{path}"

    async def post_status(self, url: str, params: dict[str, str]) -> int:
        """POST a statusCallback; 0 when the gateway cannot be reached (Twilio just logs a failed delivery)."""
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                resp = await client.post(self._local(url), data=params, headers=self._signature(url, params))
        except httpx.HTTPError:
            return 0
        return resp.status_code

    async def rest_update(self, call_sid: str, form: dict[str, str]) -> None:
        """What Twilio does when the call is updated over REST: hang up or run new TwiML — the stream stops."""
        control = self.live.get(call_sid)
        if control is None:
            return
        control.result.rest_updates.append(dict(form))
        await control.stop()

    async def fetch_twiml(self, to: str = "+15005550006", from_: str = "+14155550100",
                          agent: str | None = None, call_sid: str | None = None) -> tuple[str, str]:
        call_sid = call_sid or sid("CA")
        params = {
            "CallSid": call_sid, "AccountSid": self.account_sid, "From": from_, "To": to,
            "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01",
        }
        query = f"?agent={agent}" if agent else ""
        headers = self._signature(f"{self.public_url}/twilio/voice{query}", params)
        async with httpx.AsyncClient(timeout=10) as client:
            resp = await client.post(f"{self.base_url}/twilio/voice{query}", data=params, headers=headers)
        if resp.status_code != 200:
            raise EmulatorError(f"webhook answered {resp.status_code}: {resp.text[:200]}")
        return resp.text, call_sid

    def _ws_url(self, url: str) -> str:
        """Twilio connects to the TwiML URL; locally we reach the same path on base_url."""
        path = url.split("/", 3)[3] if url.count("/") >= 3 else ""
        scheme = "wss" if self.base_url.startswith("https") else "ws"
        return f"{scheme}://{self.base_url.split('://', 1)[1]}/{path}"

    async def call(
        self,
        agent: str | None = None,
        to: str = "+15005550006",
        inbound: bytes = b"",
        hold_s: float = 1.0,
        max_s: float = 30.0,
        until_marks: int = 1,
        script: Callable[[CallControl], Any] | None = None,
    ) -> CallResult:
        """Place one call; returns what the caller heard.

        The call streams ``inbound`` mu-law (then silence) and ends ``hold_s``
        after ``until_marks`` marks were echoed and everything received has played
        (a reply is several sentences, each with its mark), when the gateway
        closes, or at ``max_s``.
        """
        twiml, call_sid = await self.fetch_twiml(to=to, agent=agent)
        return await self.open_stream(twiml, call_sid, inbound=inbound, hold_s=hold_s, max_s=max_s,
                                      until_marks=until_marks, script=script)

    async def open_stream(
        self, twiml: str, call_sid: str, *, inbound: bytes = b"", hold_s: float = 1.0, max_s: float = 30.0,
        until_marks: int = 1, script: Callable[[CallControl], Any] | None = None,
        params: dict[str, str] | None = None, signature: str | None = None,
    ) -> CallResult:
        """Run the `<Connect><Stream>` of ``twiml`` (tests may override the parameters or the upgrade signature)."""
        result = CallResult(twiml=twiml)
        stream = parse_stream(twiml)
        if stream is None:
            return result
        url, twiml_params = stream
        headers = self._signature(url, {}) if signature is None else {"X-Twilio-Signature": signature}
        if signature == "":
            headers = {}
        status_url = parse_status_callback(twiml)
        try:
            # no permessage-deflate, as Twilio (the gateway's direct lane reads uncompressed frames itself)
            async with connect(self._ws_url(url), additional_headers=headers, max_size=2**20,
                               compression=None) as ws:
                control = CallControl(ws, self, result, call_sid, twiml_params if params is None else params)
                self.live[call_sid] = control
                try:
                    if status_url:
                        await control.status(status_url, "stream-started")
                    await control.run(inbound, hold_s, max_s, until_marks, script)
                finally:
                    self.live.pop(call_sid, None)
            if status_url:
                await control.status(status_url, "stream-stopped")
        except InvalidStatus as exc:
            result.handshake_status = exc.response.status_code
        return result


class CallControl:
    """One live emulated call; scripts use it to send DTMF, speech or stop."""

    def __init__(self, ws: ClientConnection, emu: TwilioEmulator, result: CallResult, call_sid: str,
                 params: dict[str, str]) -> None:
        self.ws = ws
        self.emu = emu
        self.result = result
        self.call_sid = call_sid
        self.params = params
        self.stream_sid = sid("MZ")
        self.seq = 0
        self.playout = Playout(emu.clock, emu.speed)
        self.inbound = bytearray()
        self.stopped = False
        self.t0 = emu.clock()

    async def send(self, msg: dict[str, Any]) -> None:
        self.seq += 1
        if msg["event"] != "connected":
            msg = {"event": msg["event"], "sequenceNumber": str(self.seq), **{k: v for k, v in msg.items()
                                                                            if k != "event"}}
        try:
            await self.ws.send(json.dumps(msg, separators=(",", ":")))  # no spaces, as Twilio writes them
        except ConnectionClosed:  # the gateway (or a script) closed the socket: the call is over
            self.stopped = True

    async def status(self, url: str, event: str) -> None:
        params = {"AccountSid": self.emu.account_sid, "CallSid": self.call_sid, "StreamSid": self.stream_sid,
                  "StreamName": self.stream_sid, "StreamEvent": event,
                  "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.result.status_events.append(event)
        self.result.status_codes.append(await self.emu.post_status(url, params))

    async def send_raw(self, data: str | bytes) -> None:
        """Send anything (tests: malformed messages)."""
        await self.ws.send(data)

    def speak(self, mulaw: bytes) -> None:
        self.inbound.extend(mulaw)

    async def dtmf(self, digit: str) -> None:
        await self.send({"event": "dtmf", "streamSid": self.stream_sid,
                         "dtmf": {"track": "inbound_track", "digit": digit}})

    async def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.result.caller_hung_up = True
            await self.send({"event": "stop", "streamSid": self.stream_sid,
                             "stop": {"accountSid": self.emu.account_sid, "callSid": self.call_sid}})

    def _validate(self, raw: str | bytes) -> dict[str, Any] | None:
        if isinstance(raw, bytes):
            self.result.errors.append("31950: binary frame")
            return None
        try:
            msg = json.loads(raw)
        except ValueError:
            self.result.errors.append("31951: invalid JSON")
            return None
        event = msg.get("event")
        allowed = {"media": {"event", "streamSid", "media"}, "mark": {"event", "streamSid", "mark"},
                   "clear": {"event", "streamSid"}}
        if event not in allowed:
            self.result.errors.append(f"31924: unexpected event {event!r}")
            return None
        if set(msg) != allowed[event]:
            self.result.errors.append(f"31951: fields {sorted(msg)} for {event}")
            return None
        if msg["streamSid"] != self.stream_sid:
            self.result.errors.append("31951: wrong streamSid")
            return None
        if event == "media":
            media = msg["media"]
            if not isinstance(media, dict) or set(media) != {"payload"}:
                self.result.errors.append("31951: media must only carry payload")
                return None
            try:
                base64.b64decode(media["payload"], validate=True)
            except Exception:
                self.result.errors.append("31951: payload is not base64")
                return None
        if event == "mark" and (not isinstance(msg["mark"], dict) or set(msg["mark"]) != {"name"}):
            self.result.errors.append("31951: mark must only carry name")
            return None
        checked: dict[str, Any] = msg
        return checked

    async def _receiver(self) -> None:
        async for raw in self.ws:
            msg = self._validate(raw)
            if msg is None:
                continue
            if msg["event"] == "media":
                payload = base64.b64decode(msg["media"]["payload"])
                now = self.emu.clock() - self.t0
                if self.result.time_to_first_audio is None:
                    self.result.time_to_first_audio = now
                self.result.media_times.append(now)
                self.result.odd_frames += len(payload) != FRAME_BYTES
                self.result.audio.extend(payload)
                self.result.heard.extend(payload)
                self.result.frame_lateness.append(self.playout.add_audio(len(payload) / 8000))
            elif msg["event"] == "mark":
                self.playout.add_mark(msg["mark"]["name"])
                await self._echo_due()  # a mark after audio that has already played is echoed at once
            elif msg["event"] == "clear":
                self.result.clears += 1
                self.result.clear_times.append(self.emu.clock() - self.t0)
                dropped = min(len(self.result.heard), round(self.playout.unplayed_seconds() * 8000))
                del self.result.heard[len(self.result.heard) - dropped:]
                for name in self.playout.clear():
                    self.result.marks_cleared.append(name)
                    await self._echo(name)

    async def _echo_due(self) -> None:
        for at, name in self.playout.due():
            self.result.marks_echoed.append(name)
            self.result.mark_times[name] = at - self.t0
            await self._echo(name)

    async def _echo(self, name: str) -> None:
        await self.send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    async def run(self, inbound: bytes, hold_s: float, max_s: float, until_marks: int,
                  script: Callable[[CallControl], Any] | None) -> None:
        await self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self.send({
            "event": "start", "streamSid": self.stream_sid,
            "start": {
                "accountSid": self.emu.account_sid, "streamSid": self.stream_sid, "callSid": self.call_sid,
                "tracks": ["inbound"], "customParameters": self.params,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        })
        self.inbound.extend(inbound)
        tasks = TaskGroup()
        receiver = tasks.spawn(self._receiver(), "emulator-receiver")
        script_task = tasks.spawn(script(self), "emulator-script") if script else None
        chunk = 0
        done_at: float | None = None
        try:
            while not receiver.done():
                now = self.emu.clock()
                await self._echo_due()
                if (done_at is None and len(self.result.marks_echoed) >= until_marks and script_task is None
                        and self.playout.idle()):
                    done_at = now + hold_s
                if script_task is not None and script_task.done():
                    script_task.result()
                    script_task = None
                    done_at = now + hold_s
                if (done_at is not None and now >= done_at) or now - self.t0 >= max_s or self.stopped:
                    break
                chunk += 1
                frame = bytes(self.inbound[:FRAME_BYTES]).ljust(FRAME_BYTES, bytes([MULAW_SILENCE]))
                del self.inbound[:FRAME_BYTES]
                await self.send({"event": "media", "media": {  # Twilio's member order (streamSid last)
                    "track": "inbound", "chunk": str(chunk), "timestamp": str(chunk * 20 - 20),
                    "payload": base64.b64encode(frame).decode()}, "streamSid": self.stream_sid})
                next_at = self.t0 + chunk * FRAME_SECONDS / self.emu.speed
                while (mark_at := self.playout.next_due()) is not None and mark_at < next_at:
                    await asyncio.sleep(max(0.0, mark_at - self.emu.clock()))  # echo each mark when it is reached
                    await self._echo_due()
                await asyncio.sleep(max(0.0, next_at - self.emu.clock()))
            if not receiver.done():
                await self.stop()
        finally:
            if script_task is not None:
                script_task.cancel()
            self.result.underruns = self.playout.underruns
            await self.ws.close()
            with contextlib.suppress(TimeoutError, Exception):  # closing; nothing left to report
                await asyncio.wait_for(asyncio.shield(receiver), 2)
            await tasks.aclose()  # the script and a receiver that did not finish in time
            self.result.close_code = self.ws.close_code
