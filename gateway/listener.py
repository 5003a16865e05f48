"""Listening for one call: VAD → endpointer → speculative recognition → end of turn.

The asyncio shell around the pure parts (:class:`agents.endpointing.Endpointer`,
:func:`agents.turn_end.decide`). Caller audio goes in with :meth:`Listener.feed`;
what it means comes out, in order, through the ``emit`` callback:

- :class:`Onset`: the caller started speaking (the agent pauses at once if it
  was speaking; see :mod:`gateway.conversation`).
- :class:`EnoughSpeech`: ``barge_in_min_speech_ms`` of voiced speech: a barge-in
  confirmed by speech alone.
- :class:`NoWords`: what started as speech was too short, or recognised as no
  words (a cough, a door, line noise): an agent paused for it resumes.
- :class:`Likely`: at ``speculative_silence_ms`` the utterance so far was
  decoded (short-window greedy path, one worker thread shared by the process)
  and its words look complete: the runner may prepare the reply, audio held.
- :class:`Resumed`: the caller went on after a :class:`Likely`: discard it.
- :class:`TurnEnd`: the turn is over (a question held for ``question_silence_ms``,
  other complete words for ``end_of_utterance_silence_ms``, the audio model
  unsure for longer, or
  ``max_silence_ms``), with the words — the speculative decode is reused, so
  recognition is already done when the turn ends — and its timing.

Time: stream time (samples fed) drives every decision; wall times (``clock``)
are only recorded for latency. Caller audio arrives in real time, so the wall
time of stream time 0 is estimated as the earliest ``arrival - samples
received``: the moment the caller stopped is that origin plus the stream time
of their last voiced chunk, so audio that queued up on a busy event loop
(:attr:`Listener.ingest_lag_s`) counts in the endpoint wait instead of hiding.
Audio whose VAD verdict has not come back yet (a partial 32 ms chunk, a batch
tick) already counts as silence when it is below the end margin
(:meth:`agents.endpointing.Endpointer.silence_through`): pauses are seen a
frame after they happen.

The hot path: with a batched VAD that reports verdicts by callback (:class:`PushVadSource`), audio of an
idle line is taken synchronously (:meth:`Listener.feed_nowait`, while :attr:`Listener.ready_now`) and its
verdicts are judged in the batcher's tick; only when a verdict brings an endpointer event is a task started
to handle it. Audio goes through ``await`` :meth:`Listener.feed` (as before) while the caller is speaking or
such a task runs, so events are handled in exactly the order and with the state they would have otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from agents.endpointing import (
    BargeIn,
    EndpointConfig,
    Endpointer,
    EndpointEvent,
    SpeechDropped,
    SpeechEnd,
    SpeechPause,
    SpeechResume,
    SpeechStart,
)
from agents.smart_turn import SmartTurn
from agents.spec import TurnTaking
from agents.stt import STTError, Transcriber, Transcript
from agents.turn_end import Decision, TurnEndConfig, TurnEndView, decide, ends_mid_clause
from audio.formats import AudioChunk, AudioFormat, Encoding

log = logging.getLogger("voicegw.listener")

PCM_8K = AudioFormat(Encoding.PCM_F32, 8000)
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Onset:
    pass


@dataclass(frozen=True, slots=True)
class EnoughSpeech:
    pass


@dataclass(frozen=True, slots=True)
class NoWords:
    dropped: bool  # True: the endpointer dropped it (too short); False: recognised as no words


@dataclass(frozen=True, slots=True)
class Likely:
    words: str
    stopped_at: float  # wall clock when the caller stopped speaking


@dataclass(frozen=True, slots=True)
class Resumed:
    pass


@dataclass(frozen=True, slots=True)
class TurnEnd:
    words: str  # "" = nothing recognisable (or recognition failed)
    stopped_at: float  # wall clock when the caller stopped speaking
    decided_at: float  # wall clock when the turn was declared over
    recognition_s: float  # recogniser compute time for these words
    why: str  # the turn-end rule that fired ("complete", "max_silence", ...)


ListenEvent = Onset | EnoughSpeech | NoWords | Likely | Resumed | TurnEnd


class VadSource(Protocol):
    """A call's VAD: :class:`agents.vad.VadStream` (inline) or :class:`agents.vad.BatchedVadStream` (batched)."""

    async def infer(self, samples: F32) -> list[tuple[float, F32]]: ...


@runtime_checkable
class PushVadSource(Protocol):
    """A VAD that buffers without waiting and reports each chunk's verdict through ``on_result``, in order
    (:class:`agents.vad.BatchedVadStream`); the listener takes ``on_result`` over."""

    on_result: Callable[[float, F32, float], None]  # probability, chunk, the chunk's level (dBFS)

    def feed(self, samples: F32) -> None: ...

    async def wait_answered(self) -> None: ...


class Listener:
    def __init__(self, tt: TurnTaking, vad: VadSource, transcriber: Transcriber,
                 emit: Callable[[ListenEvent], Awaitable[None]], clock: Callable[[], float],
                 smart_turn: SmartTurn | None = None,
                 on_recognised: Callable[[Transcript], None] | None = None) -> None:
        self.vad = vad
        self.transcriber = transcriber
        self.emit = emit
        self.clock = clock
        self.smart_turn = smart_turn
        self.on_recognised = on_recognised
        self.endpointer = Endpointer(EndpointConfig.speculative(tt))
        self.turn_end = TurnEndConfig.from_turn_taking(tt)
        self._gen = 0  # bumped whenever what the caller said so far changes: stale decodes are dropped
        self._words: str | None = None  # words of the current pause (None: not decoded yet)
        self._score: float | None = None
        self._recognition_s = 0.0
        self._stopped_at = 0.0
        self._likely = False  # a Likely went out for the current pause
        self._why = "max_silence"  # the rule that ended the current utterance (set just before end_now)
        self._received = 0  # samples received
        self._origin = float("inf")  # wall time of stream time 0 (earliest arrival minus audio before it)
        self._tasks: set[asyncio.Task[None]] = set()
        self._decoding: asyncio.Task[None] | None = None  # the current pause's speculative decode
        self._unjudged: list[F32] = []  # audio fed to the VAD whose verdict has not come back yet
        # The hot path (see the module doc): verdicts come by callback and wait here until judged.
        self._push: PushVadSource | None = vad if isinstance(vad, PushVadSource) else None
        if self._push is not None:
            self._push.on_result = self._verdict
        self._verdicts: deque[tuple[float, F32, float | None]] = deque()
        self._feeding = False  # an awaited feed() is in progress: it judges the verdicts
        self._owner: asyncio.Task[None] | None = None  # a task judging verdicts (an event came on the hot path)

    @property
    def caller_speaking(self) -> bool:
        return self.endpointer.in_speech

    @property
    def ingest_lag_s(self) -> float:
        """How far listening is behind the caller's audio (queueing before and inside the VAD)."""
        return max(0.0, self.clock() - (self._origin + self.endpointer.now))

    def _wall(self, stream_s: float) -> float:
        return self._origin + stream_s

    @property
    def ready_now(self) -> bool:
        """:meth:`feed_nowait` may take the next audio: a push VAD, the caller not speaking, nothing in hand."""
        return (self._push is not None and not self.endpointer.in_speech and not self._feeding
                and self._owner is None and not self._verdicts)

    def feed_nowait(self, pcm: F32) -> None:
        """:meth:`feed` without waiting, only while :attr:`ready_now`: the verdicts are judged as they come."""
        assert self._push is not None
        self._take(pcm)
        self._push.feed(pcm)

    async def feed(self, pcm: F32) -> None:
        if self._push is not None:
            while self._owner is not None:  # an event from the hot path is being handled: it goes first
                await asyncio.wait([self._owner])
            self._feeding = True
            try:
                await self._feed(pcm)
            finally:
                self._feeding = False
        else:
            await self._feed(pcm)

    async def _feed(self, pcm: F32) -> None:
        self._take(pcm)
        if self.endpointer.in_speech:  # quiet audio need not wait for the VAD (Endpointer.silence_through)
            pending = self._pending()  # unchanged until the VAD answers below
            for ev in self.endpointer.pause_through(pending):
                await self._on(ev)
            if self._words is not None and self.endpointer.in_speech:
                await self._evaluate(pending)
        push = self._push
        if push is None:
            for prob, chunk in await self.vad.infer(pcm):  # waits for the verdicts (inline: none to wait for)
                await self._judge(prob, chunk, None)
            return
        push.feed(pcm)
        await push.wait_answered()  # batched: at most one VAD tick (none when no chunk is complete)
        while self._verdicts:
            await self._judge(*self._verdicts.popleft())

    def _take(self, pcm: F32) -> None:
        self._received += len(pcm)
        self._origin = min(self._origin, self.clock() - self._received / 8000)
        unjudged = self._unjudged
        unjudged.append(pcm)
        if len(unjudged) > 50:  # a VAD that stopped answering (closed) must not grow this: 1 s is plenty
            del unjudged[:-50]

    async def _judge(self, prob: float, chunk: F32, level: float | None) -> None:
        await self._handle(self._endpoint(prob, chunk, level))

    def _endpoint(self, prob: float, chunk: F32, level: float | None) -> list[EndpointEvent]:
        """The synchronous half of judging a verdict: the endpointer's events for this chunk."""
        self._judged(len(chunk))
        return self.endpointer.feed(prob, chunk, level)

    def _to_handle(self, events: list[EndpointEvent]) -> bool:
        """:meth:`_handle` would do something: events, or a pause with words to decide on."""
        return bool(events) or (self._words is not None and self.endpointer.in_speech)

    async def _handle(self, events: list[EndpointEvent]) -> None:
        for ev in events:
            await self._on(ev)
        if self._words is not None and self.endpointer.in_speech:
            await self._evaluate()

    def _verdict(self, prob: float, chunk: F32, level: float) -> None:
        """A chunk's verdict, from the VAD batcher's tick (synchronous: it must not block)."""
        if not (self._feeding or self._owner is not None or self._verdicts):  # the hot path, nothing queued
            self._judge_now(prob, chunk, level)
            return
        self._verdicts.append((prob, chunk, level))
        if self._feeding or self._owner is not None:  # whoever is judging takes it, in order
            return
        while self._verdicts:  # judged here, in order, unless there is something to handle
            if self._judge_now(*self._verdicts.popleft()):
                return

    def _judge_now(self, prob: float, chunk: F32, level: float | None) -> bool:
        """Judge a verdict synchronously; True when it brought something to handle (a task now owns judging)."""
        events = self._endpoint(prob, chunk, level)
        if not self._to_handle(events):
            return False
        self._owner = self._spawn(self._own(events))
        return True

    async def _own(self, events: list[EndpointEvent]) -> None:
        """Handle what a hot-path verdict brought, then every verdict that came meanwhile."""
        try:
            await self._handle(events)
            while self._verdicts:
                await self._judge(*self._verdicts.popleft())
        finally:
            self._owner = None

    def _pending(self) -> F32:
        if len(self._unjudged) == 1:
            return self._unjudged[0]
        return np.concatenate(self._unjudged) if self._unjudged else np.zeros(0, dtype=np.float32)

    def _judged(self, samples: int) -> None:
        """The VAD's verdict on the oldest ``samples`` of :attr:`_unjudged` came back."""
        while samples > 0 and self._unjudged:
            head = self._unjudged[0]
            if len(head) <= samples:
                samples -= len(head)
                self._unjudged.pop(0)
            else:
                self._unjudged[0] = head[samples:]
                samples = 0

    async def settle(self) -> None:
        """Wait until no recognition is in flight (tests: a recogniser infinitely fast in stream time)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        close = getattr(self.vad, "close", None)
        if close is not None:
            close()  # a batched stream frees its row
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ---- endpointer events -------------------------------------------------------------------------------------
    async def _on(self, ev: object) -> None:
        if isinstance(ev, SpeechStart):
            self._new_words()
            await self.emit(Onset())
        elif isinstance(ev, BargeIn):
            await self.emit(EnoughSpeech())
        elif isinstance(ev, SpeechPause):
            self._new_words()
            self._stopped_at = self._wall(ev.ended_at)
            self._decoding = self._spawn(self._decode(ev.pcm, self._gen))
        elif isinstance(ev, SpeechResume):
            self._new_words()
            if self._likely:
                self._likely = False
                await self.emit(Resumed())
        elif isinstance(ev, SpeechEnd):
            await self._ended(ev)
        elif isinstance(ev, SpeechDropped):
            self._new_words()
            await self.emit(NoWords(dropped=True))

    def _new_words(self) -> None:
        self._gen += 1
        self._words = None
        self._score = None
        decoding, self._decoding = self._decoding, None
        if decoding is not None and decoding is not asyncio.current_task():
            # stale: a decode still queued behind another never runs (run_in_executor passes the cancel on),
            # so the recogniser's one thread is free for the pause that matters
            decoding.cancel()

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _recognise(self, pcm: F32) -> tuple[str, float]:
        try:
            result = await self.transcriber.transcribe(AudioChunk(pcm, PCM_8K))
        except STTError as exc:
            log.error("speech recognition failed: %s", exc)
            return "", 0.0
        except Exception:  # a recogniser bug must not stop listening (the turn still ends, with no words)
            log.exception("speech recognition failed")
            return "", 0.0
        if self.on_recognised is not None:
            self.on_recognised(result)
        return result.text.strip(), result.processing_s

    async def _decode(self, pcm: F32, gen: int) -> None:
        words, took = await self._recognise(pcm)
        score = None
        if self.smart_turn is not None and words and not ends_mid_clause(words) and gen == self._gen:
            try:
                score = await self.smart_turn.score(pcm)
            except Exception as exc:  # the optional model must never break listening
                log.error("smart turn failed: %s", exc)
        if gen != self._gen:
            return  # the caller went on meanwhile: stale
        self._words, self._score, self._recognition_s = words, score, took
        if not words:
            await self.emit(NoWords(dropped=False))
        await self._evaluate()

    async def _evaluate(self, pending: F32 | None = None) -> None:
        """Decide on the pause so far; ``pending``: the audio awaiting the VAD's verdict, if the caller has it."""
        if not self.endpointer.in_speech:
            return
        silence = self.endpointer.silence_through(self._pending() if pending is None else pending)
        verdict, why = decide(self.turn_end, TurnEndView(silence, self._words, self._score))
        if verdict is Decision.LIKELY and not self._likely and self._words:
            self._likely = True
            await self.emit(Likely(self._words, self._stopped_at))
        elif verdict is Decision.END:
            self._why = why
            for ev in self.endpointer.end_now():
                await self._on(ev)

    async def _ended(self, end: SpeechEnd) -> None:
        why, self._why = self._why, "max_silence"
        words, took = self._words, self._recognition_s
        # the same instant the speculation used (the caller has been silent since): Likely and TurnEnd agree
        stopped_at = self._stopped_at if words is not None else self._wall(end.ended_at)
        self._likely = False
        self._new_words()
        if words is not None:
            await self.emit(TurnEnd(words, stopped_at, self.clock(), took, why))
            return
        # No words yet (maximum silence while the recogniser is busy): never hold the audio path for it.
        self._spawn(self._late_words(end.pcm, stopped_at, why))

    async def _late_words(self, pcm: F32, stopped_at: float, why: str) -> None:
        words, took = await self._recognise(pcm)
        await self.emit(TurnEnd(words, stopped_at, self.clock(), took, why))
