"""One phone call: the Twilio stream, the agent, and the audio going back.

The session owns every task it starts (reader, paced sender, speech) and
cancels and awaits them all when the call ends, whatever the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable

from starlette.websockets import WebSocket, WebSocketDisconnect

from agents.spec import AgentSpec
from gateway import logs
from gateway.audio import FRAME_SECONDS
from gateway.framing import Framer
from gateway.outbound import Outbound
from gateway.recording import StereoRecorder, recording_path
from gateway.resample import ToTwilio
from gateway.services import Services
from gateway.twilio_events import Dtmf, Mark, Media, Start, Stop
from gateway.twilio_protocol import RemoteProtocolError, TwilioProtocol
from tts.base import TTSError
from tts.fallback import Speaker, SpeechAudio, SpeechRestart

log = logging.getLogger("voicegw.call")


class CallSession:
    def __init__(
        self, ws: WebSocket, services: Services, protocol: TwilioProtocol, start: Start, agent: AgentSpec
    ) -> None:
        self.ws = ws
        self.services = services
        self.protocol = protocol
        self.start = start
        self.agent = agent
        self.metrics = services.metrics
        self.speaker = Speaker(services.engines, agent.tts, services.metrics, services.extras.get("breakers"))
        self.outbound = Outbound(
            self._write_media, self._write_mark, lead_s=services.settings.playout_lead_s,
            on_underrun=self.metrics.underruns.inc, on_frame=self.metrics.frame_lateness.observe,
        )
        self._ids = itertools.count(1)
        self._speech: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.marks_sent: list[str] = []
        self.marks_echoed: list[str] = []
        self.started_at = time.monotonic()
        self.ended = asyncio.Event()
        self.outcome = "completed"
        self.on_event: list[Callable[[object], Awaitable[None] | None]] = []  # hooks for later layers
        # Per-call observations for the summary line (later layers append turns and mouth-to-ear latencies).
        self.turns = 0
        self.providers: list[str] = []  # one entry per sentence spoken, the provider that spoke it
        self.fallbacks = 0
        self.first_audio_s: list[float] = []  # sentence queued → its first audio from TTS
        self.mouth_to_ear_s: list[float] = []
        # Stream clock (Twilio media timestamps) ↔ monotonic: t=0 is when `start` arrived. Fixed for the call,
        # so agent audio stays contiguous in the recording; the error is the one-way delay of `start`.
        self.stream_t0 = time.monotonic()
        self.recorder = self._open_recorder()

    def _open_recorder(self) -> StereoRecorder | None:
        directory = self.services.settings.recordings_dir
        if not self.agent.record or directory is None:
            return None
        try:
            path = recording_path(directory, self.agent.id, self.start.call_sid)
            return StereoRecorder.open(path, max_seconds=float(self.agent.limits.max_call_seconds) + 60.0)
        except (OSError, ValueError) as exc:  # a recording problem never stops the call
            log.error("call %s: not recording: %s", self.start.call_sid, exc)
            return None

    # ---- wire writes ---------------------------------------------------
    async def _flush(self) -> None:
        for text in self.protocol.data_to_send():
            await self.ws.send_text(text)

    async def _write_media(self, frame: bytes) -> None:
        if self.recorder is not None:
            # The sender has advanced its horizon past this frame: it starts playing one frame earlier.
            plays_at = self.outbound.horizon - FRAME_SECONDS - self.stream_t0
            self._record(self.recorder.add_agent, plays_at, frame)
        self.protocol.send_media(frame)
        self.metrics.frames_sent.inc()
        await self._flush()

    async def _write_mark(self, name: str) -> None:
        self.protocol.send_mark(name)
        self.marks_sent.append(name)
        await self._flush()

    def _record(self, add: Callable[[float, bytes], None], at_s: float, mulaw: bytes) -> None:
        assert self.recorder is not None
        try:
            add(at_s, mulaw)
        except OSError as exc:  # disk full, volume gone: stop recording, keep the call
            log.error("call %s: recording stopped: %s", self.start.call_sid, exc)
            self.recorder.closed = True
            self.recorder = None

    # ---- speaking ------------------------------------------------------
    def say(self, text: str, kind: str = "sentence") -> str:
        """Queue one sentence; returns the mark name sent after its last frame."""
        name = f"{kind}-{next(self._ids)}"
        self._speech.put_nowait((name, text))
        return name

    async def _speak_loop(self) -> None:
        while True:
            name, text = await self._speech.get()
            await self._speak_one(name, text)

    async def _speak_one(self, name: str, text: str) -> None:
        framer = Framer()
        converter: ToTwilio | None = None
        queued = time.monotonic()
        started = queued
        audio_s = 0.0
        provider = ""
        try:
            async for part in self.speaker.speak(
                text, language=self.agent.language, priority=0 if name.endswith("-1") else 1, request_id=name
            ):
                if isinstance(part, SpeechRestart):
                    converter, framer = None, Framer()
                    self.fallbacks += 1
                    started, audio_s = time.monotonic(), 0.0
                    continue
                assert isinstance(part, SpeechAudio)
                if not provider:  # the sentence's first audio
                    self.first_audio_s.append(time.monotonic() - queued)
                    if part.provider != self.agent.tts.provider:  # the primary failed before any audio
                        self.fallbacks += 1
                provider = part.provider
                audio_s += part.chunk.duration
                if converter is None or converter.source != part.chunk.format:
                    converter = ToTwilio(part.chunk.format, gain_db=self.agent.tts.gain_db)
                self.outbound.put_frames(framer.feed(converter.feed(part.chunk)))
        except TTSError as exc:
            log.error("call %s: cannot speak %r: %s", self.start.call_sid, text[:40], exc.reason)
            return
        if converter is not None:
            self.outbound.put_frames(framer.feed(converter.flush()))
        self.outbound.put_frames(framer.flush())
        self.outbound.put_mark(name)
        if provider:
            self.providers.append(provider)
            if audio_s > 0:
                self.metrics.tts_rtf.labels(provider).observe((time.monotonic() - started) / audio_s)

    # ---- receiving -----------------------------------------------------
    async def _read_loop(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                self.outcome = "caller_hangup"
                return
            try:
                if message.get("bytes") is not None:
                    self.protocol.receive_bytes(message["bytes"])
                else:
                    self.protocol.receive_text(message.get("text") or "")
            except RemoteProtocolError as exc:
                self.metrics.protocol_errors.labels(exc.kind).inc()
                log.warning("call %s: ignoring malformed message: %s", self.start.call_sid, exc)
                continue
            for event in self.protocol.events_received():
                if isinstance(event, Stop):
                    self.outcome = "completed"
                    return
                if isinstance(event, Mark):
                    self.marks_echoed.append(event.name)
                elif isinstance(event, Dtmf):
                    log.info("call %s: dtmf %s", self.start.call_sid, event.digit)
                elif isinstance(event, Media):
                    self._on_media(event)
                for hook in self.on_event:
                    result = hook(event)
                    if result is not None:
                        await result

    def _on_media(self, event: Media) -> None:
        if self.recorder is not None:
            self._record(self.recorder.add_caller, event.timestamp_ms / 1000.0, event.payload)

    # ---- lifecycle -----------------------------------------------------
    async def run(self) -> None:
        agent_id = self.agent.id
        self.metrics.active_calls.labels(agent_id).inc()
        log.info("call %s started: agent %s, stream %s", self.start.call_sid, agent_id, self.start.stream_sid)
        tasks = [
            asyncio.create_task(self.outbound.run(), name="outbound"),
            asyncio.create_task(self._speak_loop(), name="speak"),
        ]
        try:
            self.say(self.agent.greeting, kind="greeting")
            await self._read_loop()
        except WebSocketDisconnect:
            self.outcome = "caller_hangup"
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            duration = time.monotonic() - self.started_at
            self.metrics.active_calls.labels(agent_id).dec()
            self.metrics.calls_total.labels(agent_id, self.outcome).inc()
            self.metrics.call_duration.labels(agent_id).observe(duration)
            log.info(
                "call %s ended: %s after %.1fs, %d frames sent, %d/%d marks echoed",
                self.start.call_sid, self.outcome, duration, self.outbound.frames_sent,
                len(self.marks_echoed), len(self.marks_sent),
            )
            if self.recorder is not None:
                with contextlib.suppress(OSError):
                    self.recorder.close()
            self.summary(duration).log(log)
            self.ended.set()

    def summary(self, duration: float) -> logs.CallSummary:
        return logs.CallSummary.build(
            call_sid=self.start.call_sid, agent_id=self.agent.id, outcome=self.outcome, duration_s=duration,
            turns=self.turns, providers=self.providers, fallbacks=self.fallbacks,
            first_audio_s=self.first_audio_s, mouth_to_ear_s=self.mouth_to_ear_s,
            underruns=self.outbound.underruns, frames_sent=self.outbound.frames_sent,
        )
