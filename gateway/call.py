"""One call: its carrier link, the agent side, and the audio going back.

Carrier-neutral: the carrier sits behind a :class:`gateway.carrier.CarrierLink`
(Twilio's is :class:`gateway.twilio.link.TwilioLink`), whose events this
session records (marks into the playout ledger, digits, the caller's audio into
the recording) and then hands to its :class:`gateway.carrier.CallListener`
(the :class:`gateway.conversation.Conversation`, which keeps the turn-taking).
The session owns every task it starts (reader, paced sender, speech) in one
:class:`gateway.tasks.TaskGroup` and cancels and awaits them all when the call
ends, whatever the reason.

What the conversation calls (:class:`gateway.conversation.CallPort`):
:meth:`CallSession.say` (one sentence, with an optional mark before its first
frame and phrase-cache use), :meth:`interrupt` (cancel synthesis, drop queued
audio here and at the carrier with ``clear``; no audio of the interrupted turn
is queued afterwards), :meth:`wait_heard`, :meth:`hangup` (through the carrier
when it can, optionally once a mark has been heard) and :meth:`transfer`.

Each sentence goes through the agent's TTS chain (:class:`tts.fallback.Speaker`,
one ``turn_id`` per turn); a mid-sentence restart takes back the failed
attempt's queued frames and clears the carrier's buffer when only that attempt
is buffered there (:mod:`gateway.sentence_audio`); a sentence no provider can
speak becomes the agent's apology, or the call ends as ``tts_failed``.

What the caller heard comes from mark echoes (:class:`gateway.playout.Ledger`,
``self.ledger``, shared with the conversation); pacing is :class:`gateway.playout.Pacer` inside
:class:`gateway.outbound.Outbound`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from agents.spec import AgentSpec
from audio.codec import to_ulaw
from audio.formats import FRAME_SECONDS
from gateway.carrier import (
    CallerAudio,
    CallEvent,
    CallListener,
    CarrierError,
    CarrierLink,
    Digit,
    HotAudioLink,
    HungUp,
    MarkHeard,
)
from gateway.notes import CallNote, SentenceQueued, SentenceSpoken
from gateway.ops import logs
from gateway.ops.metrics import Metrics
from gateway.outbound import Outbound
from gateway.phrase_cache import PhraseCache, fingerprint
from gateway.phrases import Phrases
from gateway.playout import Ledger, SentenceState
from gateway.recording import open_call_recorder
from gateway.sentence_audio import SentenceAudio, plan_restart
from gateway.settings import Settings
from gateway.tasks import TaskGroup
from tts.base import TTSEngine, TTSError
from tts.breaker import BreakerRegistry
from tts.fallback import Speaker, SpeechAudio, SpeechRestart

log = logging.getLogger("voicegw.call")

#: Per-call bounds on what the caller's side can make us keep (issue 15): digits per call (more are dropped,
#: counted in ``voicegw_bounded_total{what="dtmf"}``), unknown mark echoes logged (all are counted).
MAX_DTMF_KEPT = 256
LOGGED_UNKNOWN_MARKS = 5


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


class CallServices(Protocol):
    """What a call uses of the process-wide services (implemented by :class:`gateway.services.Services`)."""

    settings: Settings
    metrics: Metrics
    engines: dict[str, TTSEngine]
    breakers: BreakerRegistry | None
    phrase_cache: PhraseCache | None
    phrases: Phrases | None  # single-flight and pre-rendered fixed phrases (None: cache only)
    call_tasks: TaskGroup  # every call's tasks, so a leak shows in its ``live`` count
    calls: dict[str, CallSession]  # call id → session, while it runs


class CallSession:
    def __init__(self, link: CarrierLink, services: CallServices, agent: AgentSpec) -> None:
        self.link = link
        self.call_id = link.call_id
        self.services = services
        self.agent = agent
        self.metrics = services.metrics
        self.tasks = TaskGroup(parent=services.call_tasks)
        self.speaker = Speaker(services.engines, agent.tts, services.metrics, services.breakers)
        self.outbound = Outbound(
            self._write_media, self._write_mark, lead_s=services.settings.playout_lead_s,
            per_wake=services.settings.playout_frames_per_write,
            on_underrun=self.metrics.underruns.inc, on_write=self.metrics.frame_lateness.observe,
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
        self.phrase_cache = services.phrase_cache
        self._version = fingerprint(agent)
        self.marks_sent: list[str] = []
        self.marks_echoed: list[str] = []  # echoes of marks we sent (unknown ones are only counted)
        self.unknown_marks = 0
        self.max_dtmf = MAX_DTMF_KEPT
        self.started_at = time.monotonic()
        self.ended = asyncio.Event()
        self.outcome = "completed"
        self.listener: CallListener | None = None  # the agent side (a Conversation); None: plain greeting only
        self.observers: list[Callable[[CallEvent], None]] = []  # see every event before the listener
        self.notes: list[Callable[[CallNote], None]] = []  # what the call tells a watcher (the console page)
        # Per-call observations for the summary line (the conversation counts turns and mouth-to-ear latencies).
        self.turns = 0
        self.providers: list[str] = []  # one entry per sentence spoken, the provider that spoke it
        self.fallbacks = 0
        self.first_audio_s: list[float] = []  # sentence queued → its first audio from TTS
        self.first_frame_at: dict[str, float] = {}  # start mark → when its sentence's first frame was queued
        self.turn_latency: list[logs.TurnLatency] = []  # one per answered caller turn (the conversation fills it)
        self.mouth_to_ear_s: list[float] = []
        # Stream clock (the carrier's caller-audio times) ↔ monotonic: t=0 is when the call started. Fixed for
        # the call, so agent audio stays contiguous in the recording; the error is the carrier's start-up delay.
        self.stream_t0 = time.monotonic()
        self.recorder = open_call_recorder(services.settings.recordings_dir, agent, self.call_id)
        if isinstance(link, HotAudioLink):
            link.on_audio = self._audio_now

    # ---- wire writes ---------------------------------------------------
    async def _write_media(self, frames: list[bytes]) -> None:
        if not self.link.open:
            return  # the carrier stopped the stream: nothing more may be sent
        if self.recorder is not None:
            # The sender has advanced its horizon past these frames: the last starts playing one frame earlier.
            plays_at = self.outbound.horizon - len(frames) * FRAME_SECONDS - self.stream_t0
            for k, frame in enumerate(frames):
                self._record(self.recorder.add_agent, plays_at + k * FRAME_SECONDS, frame)
        await self.link.send_audio(frames)
        self.metrics.frames_sent.inc(len(frames))

    async def _write_mark(self, name: str) -> None:
        if not self.link.open:
            return
        self.marks_sent.append(name)
        self.ledger.mark_sent(name)
        await self.link.send_mark(name)

    def _record(self, add: Callable[[float, bytes], None], at_s: float, mulaw: bytes) -> None:
        assert self.recorder is not None
        try:
            jumped = self.recorder.jumped_samples
            add(at_s, mulaw)
            if self.recorder.jumped_samples != jumped:
                self.metrics.bounded.labels("recording_jump").inc()
        except OSError as exc:  # disk full, volume gone: stop recording, keep the call
            log.error("call %s: recording stopped: %s", self.call_id, exc)
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
                                          self.turn, f"{self.call_id}-{kind}-{self.turn}"))
        self.note(SentenceQueued(name, text, kind, tag))
        return name

    def note(self, note: CallNote) -> None:
        """Tell the watchers (``self.notes``); they queue and return."""
        for watch in self.notes:
            watch(note)

    async def _speak_loop(self) -> None:
        while True:
            sentence = await self._speech.get()
            if sentence.turn != self.turn:
                continue  # interrupted before synthesis started
            task = self.tasks.spawn(self._speak_one(sentence), name=f"speak-{sentence.name}")
            self._speaking = task
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the loop itself is being cancelled (call ending)
                # only this sentence was cancelled (interrupt): go on with the next one
            except Exception:  # a bug in one sentence's path must not silence the rest of the call
                log.exception("call %s: sentence %s failed", self.call_id, sentence.name)
                self._end_sentence(sentence, [])  # its marks still settle: the conversation waits for them
            finally:
                self._speaking = None

    def _put_frames(self, frames: list[bytes], sentence: _Sentence, started: list[bool]) -> None:
        if sentence.turn != self.turn:
            return  # never queue stale audio of an interrupted turn
        if frames and not started:
            started.append(True)
            if sentence.start_mark:
                self.first_frame_at[sentence.start_mark] = time.monotonic()
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
                audio.first_audio_s = time.monotonic() - sentence.queued_at
                self.first_audio_s.append(audio.first_audio_s)
                if part.provider != self.agent.tts.provider:  # the primary failed before any audio
                    self.fallbacks += 1
            self._put_frames(audio.feed(part.chunk, part.provider), sentence, started)
        self._put_frames(audio.flush(), sentence, started)
        return audio

    async def _drop_attempt(self, sentence: _Sentence, frames: int, started: list[bool]) -> None:
        """Its provider died mid-sentence: take back its queued frames, ``clear`` what the carrier holds if safe."""
        if sentence.turn != self.turn:
            return
        written = frames - self.outbound.retract(frames)
        plan = plan_restart(written_frames=written, buffered_s=self.outbound.buffered_at_twilio(),
                            earlier_unplayed=bool(self.ledger.unplayed_sent(exclude=sentence.start_mark)))
        log.info("call %s: %s restarts: %d frames dropped here, %d written (%s)%s", self.call_id,
                 sentence.name, frames - written, written, plan.reason, "; clear sent" if plan.clear else "")
        if plan.clear and self.link.open:
            if sentence.start_mark and self.ledger.resend(sentence.start_mark):
                started.clear()  # sent again just before the replacement's first frame
            self.outbound.twilio_cleared()
            await self.link.clear()

    async def _speak_one(self, sentence: _Sentence) -> None:
        sent: list[bool] = []
        cache = self.phrase_cache if sentence.phrase else None
        cached = cache.get(self.agent, self._version, sentence.text) if cache is not None else None
        phrases = self.services.phrases if cache is not None else None
        outcome = "hit"
        if cached is None and phrases is not None:
            # Another call is synthesizing this very phrase: use its audio. When that rendering fails, every
            # call that waited wakes at once: one of them leads the next attempt and the others wait for it.
            # (A pre-render in flight is not waited on: lowest priority, whole phrase first.)
            while cached is None and (flight := phrases.join(self.agent, self._version, sentence.text,
                                                             prerenders=False)) is not None:
                cached, outcome = await flight, "coalesced"
        if cache is not None:
            self.metrics.phrase_cache.labels(outcome if cached is not None else "miss").inc()
        if cached is not None:
            self._put_frames(list(cached), sentence, sent)
            self._end_sentence(sentence, sent)
            self.providers.append(self.agent.tts.chain()[0])  # the cache holds the primary voice only
            self.first_audio_s.append(time.monotonic() - sentence.queued_at)
            self.note(SentenceSpoken(sentence.name, self.agent.tts.chain()[0], False, None))  # cached: primary only
            return
        # single-flight: identical requests arriving meanwhile wait for this synthesis (None: they do their own)
        lead = phrases.lead(self.agent, self._version, sentence.text) if phrases is not None else None
        audio: SentenceAudio | None = None
        try:
            audio = await self._stream(sentence, self.speaker.speak(
                sentence.text, language=self.agent.language, priority=0 if sentence.first else 1,
                request_id=sentence.name, turn_id=sentence.turn_id), sent)
        except TTSError as exc:
            log.error("call %s: cannot speak %r: %s", self.call_id, sentence.text[:40], exc.reason)
            await self._apologize(sentence, sent)
            self._end_sentence(sentence, sent)  # the conversation waits for every sentence's mark
            return
        finally:
            cacheable = (audio is not None and audio.provider and not audio.restarts
                         and audio.provider == self.agent.tts.chain()[0])
            if lead is not None:
                lead.done(audio.frames if cacheable and audio is not None else None)
            if cache is not None and cacheable and audio is not None:
                cache.put(self.agent, self._version, sentence.text, audio.frames)
        self._end_sentence(sentence, sent)
        if audio.provider:
            self.providers.append(audio.provider)
            self.note(SentenceSpoken(sentence.name, audio.provider, audio.provider != self.agent.tts.chain()[0],
                                     audio.first_audio_s))
            if audio.audio_s > 0:
                rtf = (time.monotonic() - sentence.queued_at) / audio.audio_s
                self.metrics.tts_rtf.labels(audio.provider).observe(rtf)

    async def _apologize(self, sentence: _Sentence, started: list[bool]) -> None:
        """Every provider failed: say the agent's apology instead (once per turn), or end the call."""
        if sentence.turn != self.turn or sentence.turn_id in self._apologized:
            return
        self._apologized.add(sentence.turn_id)
        apology = self.agent.turn_taking.apology
        cache = self.phrase_cache
        cached = cache.get(self.agent, self._version, apology) if cache is not None else None
        try:
            if cached is not None:  # pre-rendered while the voice was working
                self._put_frames(list(cached), sentence, started)
            else:
                await self._stream(sentence, self.speaker.apologize(
                    apology, language=self.agent.language, request_id=f"{sentence.name}-apology"), started)
        except TTSError as exc:
            log.error("call %s: cannot even apologize (%s): ending the call", self.call_id, exc.reason)
            self.hangup("tts_failed")
            return
        self.ledger.replace_text(sentence.name, apology)
        self.providers.append("apology")
        self.note(SentenceSpoken(sentence.name, "apology", True, None))

    async def hold(self) -> None:
        """Caller speech started over the agent: stop the agent at once without losing anything. What the
        carrier has not played yet is taken back (and cleared there); :meth:`release` plays on from exactly
        where the caller stopped hearing, :meth:`interrupt` drops it all."""
        buffered = self.outbound.buffered_at_twilio() > 0
        for mark in self.outbound.hold():
            self.ledger.resend(mark)  # its echo provoked by the clear is not playout; it is sent again
        if buffered and self.link.open:
            await self.link.clear()

    def hold_new(self) -> None:
        """Queue audio without sending it (a speculative reply, before the caller's turn is confirmed)."""
        self.outbound.pause()

    def release(self) -> None:
        """Send held audio (the turn was confirmed, or the caller's sound was not a barge-in)."""
        self.outbound.resume()

    def discard(self) -> None:
        """Drop a held reply the caller never heard, without a word to the carrier (nothing of it was sent)."""
        self.turn += 1
        while not self._speech.empty():
            self._speech.get_nowait()
        if self._speaking is not None:
            self._speaking.cancel()
        self.outbound.clear()
        self.ledger.cleared()
        self._marks_changed.set()

    async def interrupt(self) -> list[str]:
        """Barge-in: cancel synthesis, drop queued sentences and audio here and at the carrier (``clear``).

        Returns the names of marks dropped before they were sent (never to be echoed); the
        ledger marks every sentence still pending as cleared.
        """
        self.turn += 1
        dropped: list[str] = []
        while not self._speech.empty():
            dropped.append(self._speech.get_nowait().name)
        if self._speaking is not None:
            self._speaking.cancel()  # the engine stream closes as the cancellation unwinds
        held = self.outbound.paused and self.outbound.buffered_at_twilio() == 0  # hold() already cleared it
        dropped += self.outbound.clear()
        self.ledger.cleared()
        self._marks_changed.set()
        if not held:
            await self.link.clear()
        return dropped

    async def wait_heard(self, mark: str, timeout_s: float = 30.0) -> bool:
        """Wait until ``mark``'s sentence has played (True) or was cleared / the wait timed out (False)."""
        deadline = time.monotonic() + timeout_s
        while (state := self.ledger.state(mark)) is SentenceState.QUEUED and not self._closed.is_set():
            self._marks_changed.clear()
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await self._marks_changed.wait()
            except TimeoutError:
                return False
        return state is SentenceState.HEARD

    def hangup(self, outcome: str = "agent_hangup", after_mark: str | None = None) -> None:
        """End the call (optionally once ``after_mark`` has been heard, e.g. the goodbye).

        The carrier is asked to end it (Twilio: REST, when configured); when it cannot, or fails,
        closing the link ends it (Twilio: nothing follows ``<Connect>`` in our TwiML).
        """
        if self._ending is None:
            self.outcome = outcome
            self._ending = self.tasks.spawn(self._hang_up(after_mark), name="hangup")

    def transfer(self, number: str, say_first: str | None = None) -> None:
        """Hand the caller to ``number`` through the carrier (which then ends our stream)."""
        if self._ending is None:
            self.outcome, self.transfer_to = "transferred", number
            self._ending = self.tasks.spawn(self._transfer(number, say_first), name="transfer")

    async def _hang_up(self, after_mark: str | None) -> None:
        if after_mark is not None:
            await self.wait_heard(after_mark)
        try:
            if await self.link.hang_up():  # the carrier ends the stream itself
                await self._await_hung_up()
        except CarrierError as exc:
            log.error("call %s: %s; closing the stream instead", self.call_id, exc.reason)
        self._hangup.set()

    async def _transfer(self, number: str, say_first: str | None) -> None:
        try:
            await self.link.transfer(number, say_first)
            await self._await_hung_up()
        except CarrierError as exc:
            log.error("call %s: transfer to %s failed: %s; hanging up", self.call_id, number, exc.reason)
            self.outcome = "transfer_failed"
        self._hangup.set()

    async def _await_hung_up(self, timeout_s: float = 5.0) -> None:
        """After a hang-up or transfer request the carrier ends the stream; don't wait forever for it."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._closed.wait()

    # ---- receiving -----------------------------------------------------
    def _audio_now(self, event: CallerAudio) -> bool:
        """The per-frame hot path (:class:`gateway.carrier.HotAudioLink`): caller audio handled as it arrives,
        as :meth:`_read_loop` would, when the listener can take it now; False: it goes through the read loop."""
        if self.listener is not None and not self.listener.take_audio_now(event):
            return False
        if self.recorder is not None:
            self._record(self.recorder.add_caller, event.at_s, to_ulaw(event.chunk))
        for observe in self.observers:
            observe(event)
        return True

    async def _read_loop(self) -> None:
        while True:
            event = await self.link.receive()
            if isinstance(event, HungUp):
                if self._ending is None or event.outcome == "protocol_error":
                    self.outcome = event.outcome
            elif isinstance(event, MarkHeard):
                if self.ledger.echoed(event.name).known:
                    self.marks_echoed.append(event.name)  # bounded by the marks we sent
                else:  # counted, never kept: a peer could send millions
                    self.unknown_marks += 1
                    self.metrics.bounded.labels("unknown_mark").inc()
                    if self.unknown_marks <= LOGGED_UNKNOWN_MARKS:
                        log.warning("call %s: echo of a mark we never sent: %r", self.call_id, event.name[:64])
                self._marks_changed.set()
            elif isinstance(event, Digit):
                if len(self.dtmf) >= self.max_dtmf:  # dropped: neither kept nor passed to the agent
                    self.metrics.bounded.labels("dtmf").inc()
                    continue
                self.dtmf.append(event.digit)
                log.info("call %s: dtmf %s", self.call_id, event.digit)
            elif isinstance(event, CallerAudio) and self.recorder is not None:  # recorded as mu-law, even PCM
                self._record(self.recorder.add_caller, event.at_s, to_ulaw(event.chunk))
            for observe in self.observers:
                observe(event)
            if isinstance(event, HungUp):
                return
            if self.listener is not None:
                await self.listener.on_call_event(event)

    # ---- lifecycle -----------------------------------------------------
    async def run(self) -> None:
        agent_id = self.agent.id
        self.metrics.active_calls.labels(agent_id).inc()
        self.services.calls[self.call_id] = self
        log.info("call %s started: agent %s", self.call_id, agent_id)
        self.tasks.spawn(self.outbound.run(), name="outbound")
        self.tasks.spawn(self._speak_loop(), name="speak")
        reader = self.tasks.spawn(self._read_loop(), name="read")
        hangup = self.tasks.spawn(self._hangup.wait(), name="hangup-wait")
        try:
            if self.listener is not None:
                await self.listener.start()
            else:
                self.say(self.agent.greeting, kind="greeting", phrase=True)
            await asyncio.wait([reader, hangup], return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                reader.result()
        finally:
            await self.link.aclose()
            self._closed.set()
            self._marks_changed.set()  # wakes wait_heard()
            if self.listener is not None:
                with contextlib.suppress(Exception):
                    await self.listener.aclose()
            await self.tasks.aclose()
            self.services.calls.pop(self.call_id, None)
            duration = time.monotonic() - self.started_at
            self.metrics.active_calls.labels(agent_id).dec()
            self.metrics.calls_total.labels(agent_id, self.outcome).inc()
            self.metrics.call_duration.labels(agent_id).observe(duration)
            log.info(
                "call %s ended: %s after %.1fs, %d frames sent, %d/%d marks echoed; heard %d, cleared %d, "
                "pending %d", self.call_id, self.outcome, duration, self.outbound.frames_sent,
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
            call_sid=self.call_id, agent_id=self.agent.id, outcome=self.outcome, duration_s=duration,
            turns=self.turns, providers=self.providers, fallbacks=self.fallbacks,
            first_audio_s=self.first_audio_s, mouth_to_ear_s=self.mouth_to_ear_s,
            underruns=self.outbound.underruns, frames_sent=self.outbound.frames_sent,
            turn_latency=self.turn_latency,
        )

