"""One phone call: the Twilio stream, the agent, and the audio going back.

The session owns every task it starts (reader, paced sender, speech) and
cancels and awaits them all when the call ends, whatever the reason.

Hooks for the conversation layer (:mod:`gateway.conversation`, which keeps the
turn-taking logic): :meth:`CallSession.say` (one sentence, with an optional
mark before its first frame and phrase-cache use), :meth:`interrupt` (cancel
synthesis, drop queued audio here and at Twilio with ``clear``; no audio of
the interrupted turn is queued afterwards), :meth:`wait_heard`, :meth:`hangup`
(Twilio REST when configured, optionally once a mark has been heard) and
:meth:`transfer` (REST redirect to ``<Dial>``); inbound events (DTMF included)
reach it through ``on_event``, and ``on_start``/``on_end`` replace the plain
greeting and clean up.

Each sentence goes through the agent's TTS chain (:class:`tts.fallback.Speaker`,
one ``turn_id`` per turn); a mid-sentence restart takes back the failed
attempt's queued frames and sends ``clear`` when only that attempt is
buffered at Twilio (:mod:`gateway.sentence_audio`); a sentence no provider can
speak becomes the agent's apology, or the call ends as ``tts_failed``.

What the caller heard comes from mark echoes (:class:`gateway.playout.Ledger`,
``self.ledger``, shared with the conversation); pacing is :class:`gateway.playout.Pacer` inside
:class:`gateway.outbound.Outbound`. Every task is started through
``Edge.spawn`` so leaks show in ``edge.live_tasks``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from agents.spec import AgentSpec
from audio.formats import FRAME_SECONDS
from gateway.ops import logs
from gateway.outbound import Outbound
from gateway.phrase_cache import PhraseCache, fingerprint
from gateway.playout import Ledger, SentenceState
from gateway.recording import open_call_recorder
from gateway.sentence_audio import SentenceAudio, plan_restart
from gateway.services import Services
from gateway.twilio.events import Dtmf, Mark, Media, Start, Stop
from gateway.twilio.protocol import RemoteProtocolError, State, TwilioProtocol
from gateway.twilio.rest import TwilioRestError
from tts.base import TTSError
from tts.fallback import Speaker, SpeechAudio, SpeechRestart

log = logging.getLogger("voicegw.call")


@dataclass(frozen=True, slots=True)
class _Sentence:
    name: str
    text: str
    start_mark: str | None = None
    phrase: bool = False
    first: bool = False
    turn: int = 0  # CallSession.turn when queued; interrupt() makes older turns stale
    turn_id: str = ""  # one TTS context per turn (Cartesia)
    queued_at: float = field(default_factory=time.monotonic)


def _disconnect_outcome(code: object) -> str:
    """1012 (Service Restart) is how the server closes every stream when it shuts down (Ctrl-C, drain timeout):
    those calls were cut by us, not hung up by the caller."""
    return "shutdown" if code == 1012 else "caller_hangup"


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
        self.edge = services.twilio_edge()
        self.speaker = Speaker(services.engines, agent.tts, services.metrics, services.extras.get("breakers"))
        self.outbound = Outbound(
            self._write_media, self._write_mark, lead_s=services.settings.playout_lead_s,
            on_underrun=self.metrics.underruns.inc, on_frame=self.metrics.frame_lateness.observe,
        )
        self._ids = itertools.count(1)
        self._speech: asyncio.Queue[_Sentence] = asyncio.Queue()
        self._speaking: asyncio.Task[None] | None = None
        self.turn = 0  # bumped by interrupt(): audio of an older turn is never queued again
        self.ledger = Ledger()  # shared with the conversation layer
        self._apologized: set[str] = set()  # turn ids that already got the apology
        self._marks_changed = asyncio.Event()
        self._hangup = asyncio.Event()  # end the stream (hangup()/transfer() done)
        self._closed = asyncio.Event()  # the stream has ended (stop, disconnect, or we ended it)
        self._ending: asyncio.Task[None] | None = None
        self.dtmf: list[str] = []
        self.transfer_to: str | None = None
        self.phrase_cache: PhraseCache | None = services.extras.get("phrase_cache")
        self._version = fingerprint(agent)
        self.marks_sent: list[str] = []
        self.marks_echoed: list[str] = []
        self.started_at = time.monotonic()
        self.ended = asyncio.Event()
        self.outcome = "completed"
        self.on_event: list[Callable[[object], Awaitable[None] | None]] = []  # hooks for later layers
        self.on_start: list[Callable[[], Awaitable[None]]] = []  # replaces the plain greeting when set
        self.on_end: list[Callable[[], Awaitable[None]]] = []
        # Per-call observations for the summary line (later layers append turns and mouth-to-ear latencies).
        self.turns = 0
        self.providers: list[str] = []  # one entry per sentence spoken, the provider that spoke it
        self.fallbacks = 0
        self.first_audio_s: list[float] = []  # sentence queued → its first audio from TTS
        self.mouth_to_ear_s: list[float] = []
        # Stream clock (Twilio media timestamps) ↔ monotonic: t=0 is when `start` arrived. Fixed for the call,
        # so agent audio stays contiguous in the recording; the error is the one-way delay of `start`.
        self.stream_t0 = time.monotonic()
        self.recorder = open_call_recorder(services.settings.recordings_dir, agent, start.call_sid)

    # ---- wire writes ---------------------------------------------------
    async def _flush(self) -> None:
        for text in self.protocol.data_to_send():
            await self.ws.send_text(text)

    async def _write_media(self, frame: bytes) -> None:
        if self.protocol.state is not State.STREAMING:
            return  # after `stop`: nothing more may be sent
        if self.recorder is not None:
            # The sender has advanced its horizon past this frame: it starts playing one frame earlier.
            plays_at = self.outbound.horizon - FRAME_SECONDS - self.stream_t0
            self._record(self.recorder.add_agent, plays_at, frame)
        self.protocol.send_media(frame)
        self.metrics.frames_sent.inc()
        await self._flush()

    async def _write_mark(self, name: str) -> None:
        if self.protocol.state is not State.STREAMING:
            return
        self.protocol.send_mark(name)
        self.marks_sent.append(name)
        self.ledger.mark_sent(name)
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
    def say(self, text: str, kind: str = "sentence", *, start_mark: str | None = None, phrase: bool = False,
            first: bool | None = None, turn: int | None = None) -> str:
        """Queue one sentence; returns the mark name sent after its last frame.

        ``start_mark`` is sent just before the sentence's first frame (its echo = playout started);
        ``phrase`` marks fixed text whose audio may come from / go to the phrase cache;
        ``first`` (default: the call's first sentence) asks the engines for top priority;
        ``turn`` tags the ledger entries (the conversation's turn; default: the call's).
        Sentences of one ``kind`` in one interrupt epoch share a TTS ``turn_id`` (one Cartesia context).
        """
        n = next(self._ids)
        name = f"{kind}-{n}"
        tag = self.turn if turn is None else turn
        if start_mark:
            self.ledger.queue(start_mark, "", tag)
        self.ledger.queue(name, text, tag)
        self._speech.put_nowait(_Sentence(name, text, start_mark, phrase, n == 1 if first is None else first,
                                          self.turn, f"{self.start.call_sid}-{kind}-{self.turn}"))
        return name

    async def _speak_loop(self) -> None:
        while True:
            sentence = await self._speech.get()
            if sentence.turn != self.turn:
                continue  # interrupted before synthesis started
            task = self.edge.spawn(self._speak_one(sentence), name=f"speak-{sentence.name}")
            self._speaking = task
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the loop itself is being cancelled (call ending)
                # only this sentence was cancelled (interrupt): go on with the next one
            finally:
                self._speaking = None

    def _put_frames(self, frames: list[bytes], sentence: _Sentence, started: list[bool]) -> None:
        if sentence.turn != self.turn:
            return  # never queue stale audio of an interrupted turn
        if frames and not started:
            started.append(True)
            if sentence.start_mark:
                self.outbound.put_mark(sentence.start_mark)
        self.outbound.put_frames(frames)

    def _end_sentence(self, sentence: _Sentence, started: list[bool]) -> None:
        if sentence.turn != self.turn:
            return
        if not started and sentence.start_mark:
            self.outbound.put_mark(sentence.start_mark)  # no audio (TTS failed): still settle the turn's marks
        self.outbound.put_mark(sentence.name)

    async def _stream(self, sentence: _Sentence, parts: AsyncIterator[SpeechAudio | SpeechRestart],
                      started: list[bool]) -> SentenceAudio:
        """Queue one sentence's audio as it comes; a restart takes back the failed attempt (raises TTSError)."""
        audio = SentenceAudio(self.agent.tts.gain_db)
        async for part in parts:
            if isinstance(part, SpeechRestart):
                await self._drop_attempt(sentence, audio.restart(), started)
                self.fallbacks += 1
                continue
            if not audio.provider and not audio.restarts:  # the sentence's first audio
                self.first_audio_s.append(time.monotonic() - sentence.queued_at)
                if part.provider != self.agent.tts.provider:  # the primary failed before any audio
                    self.fallbacks += 1
            self._put_frames(audio.feed(part.chunk, part.provider), sentence, started)
        self._put_frames(audio.flush(), sentence, started)
        return audio

    async def _drop_attempt(self, sentence: _Sentence, frames: int, started: list[bool]) -> None:
        """Its provider died mid-sentence: take back its queued frames, ``clear`` what Twilio holds if safe."""
        if sentence.turn != self.turn:
            return
        written = frames - self.outbound.retract(frames)
        plan = plan_restart(written_frames=written, buffered_s=self.outbound.buffered_at_twilio(),
                            earlier_unplayed=bool(self.ledger.unplayed_sent(exclude=sentence.start_mark)))
        log.info("call %s: %s restarts: %d frames dropped here, %d written (%s)%s", self.start.call_sid,
                 sentence.name, frames - written, written, plan.reason, "; clear sent" if plan.clear else "")
        if plan.clear and self.protocol.state is State.STREAMING:
            if sentence.start_mark and self.ledger.resend(sentence.start_mark):
                started.clear()  # sent again just before the replacement's first frame
            self.outbound.twilio_cleared()
            self.protocol.send_clear()
            await self._flush()

    async def _speak_one(self, sentence: _Sentence) -> None:
        sent: list[bool] = []
        cache = self.phrase_cache if sentence.phrase else None
        cached = cache.get(self.agent, self._version, sentence.text) if cache is not None else None
        if cache is not None:
            self.metrics.phrase_cache.labels("hit" if cached is not None else "miss").inc()
        if cached is not None:
            self._put_frames(list(cached), sentence, sent)
            self._end_sentence(sentence, sent)
            return
        try:
            audio = await self._stream(sentence, self.speaker.speak(
                sentence.text, language=self.agent.language, priority=0 if sentence.first else 1,
                request_id=sentence.name, turn_id=sentence.turn_id), sent)
        except TTSError as exc:
            log.error("call %s: cannot speak %r: %s", self.start.call_sid, sentence.text[:40], exc.reason)
            await self._apologize(sentence, sent)
            self._end_sentence(sentence, sent)  # the conversation waits for every sentence's mark
            return
        self._end_sentence(sentence, sent)
        if audio.provider:
            if cache is not None and not audio.restarts and audio.provider == self.agent.tts.chain()[0]:
                cache.put(self.agent, self._version, sentence.text, audio.frames)
            self.providers.append(audio.provider)
            if audio.audio_s > 0:
                rtf = (time.monotonic() - sentence.queued_at) / audio.audio_s
                self.metrics.tts_rtf.labels(audio.provider).observe(rtf)

    async def _apologize(self, sentence: _Sentence, started: list[bool]) -> None:
        """Every provider failed: say the agent's apology instead (once per turn), or end the call."""
        if sentence.turn != self.turn or sentence.turn_id in self._apologized:
            return
        self._apologized.add(sentence.turn_id)
        apology = self.agent.turn_taking.apology
        try:
            await self._stream(sentence, self.speaker.apologize(
                apology, language=self.agent.language, request_id=f"{sentence.name}-apology"), started)
        except TTSError as exc:
            log.error("call %s: cannot even apologize (%s): ending the call", self.start.call_sid, exc.reason)
            self.hangup("tts_failed")
            return
        self.ledger.replace_text(sentence.name, apology)
        self.providers.append("apology")

    async def interrupt(self) -> list[str]:
        """Barge-in: cancel synthesis, drop queued sentences and audio here and at Twilio (``clear``).

        Returns the names of marks dropped before they were sent (never to be echoed); the
        ledger marks every sentence still pending as cleared.
        """
        self.turn += 1
        dropped: list[str] = []
        while not self._speech.empty():
            dropped.append(self._speech.get_nowait().name)
        if self._speaking is not None:
            self._speaking.cancel()  # the engine stream closes as the cancellation unwinds
        dropped += self.outbound.clear()
        self.ledger.cleared()
        self._marks_changed.set()
        if self.protocol.state is State.STREAMING:
            self.protocol.send_clear()
            await self._flush()
        return dropped

    async def wait_heard(self, mark: str, timeout_s: float = 30.0) -> bool:
        """Wait until ``mark``'s sentence has played (True) or was cleared / the wait timed out (False)."""
        deadline = time.monotonic() + timeout_s
        while (state := self.ledger.state(mark)) is SentenceState.QUEUED and not self._closed.is_set():
            self._marks_changed.clear()
            try:
                await asyncio.wait_for(self._marks_changed.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return False
        return state is SentenceState.HEARD

    def hangup(self, outcome: str = "agent_hangup", after_mark: str | None = None) -> None:
        """End the call (optionally once ``after_mark`` has been heard, e.g. the goodbye).

        With Twilio REST configured the call is completed through the API (an already-ended
        call, 20404, is fine); otherwise, or if the API fails, closing the stream ends it
        (nothing follows ``<Connect>`` in our TwiML).
        """
        if self._ending is None:
            self.outcome = outcome
            self._ending = self.edge.spawn(self._hang_up(after_mark), name="hangup")

    def transfer(self, number: str, say_first: str | None = None) -> None:
        """Hand the caller to ``number``: REST redirect to ``<Dial>`` (Twilio then ends our stream)."""
        if self._ending is None:
            self.outcome, self.transfer_to = "transferred", number
            self._ending = self.edge.spawn(self._transfer(number, say_first), name="transfer")

    async def _hang_up(self, after_mark: str | None) -> None:
        if after_mark is not None:
            await self.wait_heard(after_mark)
        if self.edge.rest is not None:
            try:
                if await self.edge.rest.hangup(self.start.call_sid):  # False: already ended (20404)
                    await self._await_stop()
            except TwilioRestError as exc:
                log.error("call %s: REST hang-up failed (%s); closing the stream instead", self.start.call_sid,
                          exc.reason)
        self._hangup.set()

    async def _transfer(self, number: str, say_first: str | None) -> None:
        if self.edge.rest is None:
            log.error("call %s: transfer to %s needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN; hanging up",
                      self.start.call_sid, number)
            self.outcome = "transfer_failed"
        else:
            try:
                await self.edge.rest.transfer(self.start.call_sid, number, say_first)
                await self._await_stop()
            except TwilioRestError as exc:
                log.error("call %s: transfer to %s failed: %s", self.start.call_sid, number, exc.reason)
                self.outcome = "transfer_failed"
        self._hangup.set()

    async def _await_stop(self, timeout_s: float = 5.0) -> None:
        """After a REST update Twilio sends `stop` and closes; don't wait forever for it."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), timeout_s)

    # ---- receiving -----------------------------------------------------
    async def _read_loop(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                self.protocol.receive_eof()
                if self._ending is None:
                    self.outcome = _disconnect_outcome(message.get("code"))
                return
            try:
                if message.get("bytes") is not None:
                    self.protocol.receive_bytes(message["bytes"])
                else:
                    self.protocol.receive_text(message.get("text") or "")
            except RemoteProtocolError as exc:
                self.metrics.protocol_errors.labels(exc.kind).inc()
                if exc.fatal:
                    log.error("call %s: ending after malformed message: %s", self.start.call_sid, exc)
                    self.outcome = "protocol_error"
                    return
                log.warning("call %s: ignoring malformed message: %s", self.start.call_sid, exc)
                continue
            for event in self.protocol.events_received():
                if isinstance(event, Stop):
                    if self._ending is None:
                        self.outcome = "completed"
                    return
                if isinstance(event, Mark):
                    self.marks_echoed.append(event.name)
                    if not self.ledger.echoed(event.name).known:
                        log.warning("call %s: echo of a mark we never sent: %r", self.start.call_sid, event.name)
                    self._marks_changed.set()
                elif isinstance(event, Dtmf):
                    self.dtmf.append(event.digit)
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
        self.edge.sessions[self.start.call_sid] = self
        log.info("call %s started: agent %s, stream %s", self.start.call_sid, agent_id, self.start.stream_sid)
        tasks: list[asyncio.Task[Any]] = [
            self.edge.spawn(self.outbound.run(), name="outbound"),
            self.edge.spawn(self._speak_loop(), name="speak"),
        ]
        reader = self.edge.spawn(self._read_loop(), name="read")
        hangup = self.edge.spawn(self._hangup.wait(), name="hangup-wait")
        tasks += [reader, hangup]
        try:
            if self.on_start:
                for start in self.on_start:
                    await start()
            else:
                self.say(self.agent.greeting, kind="greeting", phrase=True)
            await asyncio.wait([reader, hangup], return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                reader.result()
        except WebSocketDisconnect as exc:
            self.outcome = _disconnect_outcome(exc.code)
        finally:
            self.protocol.receive_eof()
            self._closed.set()
            self._marks_changed.set()  # wakes wait_heard()
            for stop in self.on_end:
                with contextlib.suppress(Exception):
                    await stop()
            if self._ending is not None:
                tasks.append(self._ending)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.edge.sessions.pop(self.start.call_sid, None)
            duration = time.monotonic() - self.started_at
            self.metrics.active_calls.labels(agent_id).dec()
            self.metrics.calls_total.labels(agent_id, self.outcome).inc()
            self.metrics.call_duration.labels(agent_id).observe(duration)
            log.info(
                "call %s ended: %s after %.1fs, %d frames sent, %d/%d marks echoed; heard %d, cleared %d, "
                "pending %d", self.start.call_sid, self.outcome, duration, self.outbound.frames_sent,
                len(self.marks_echoed), len(self.marks_sent), len(self.ledger.heard()),
                len(self.ledger.cleared_marks()), len(self.ledger.queued()),
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
