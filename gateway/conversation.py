"""The conversation loop of one call: listen → think → speak, with barge-in and idle handling.

I/O shell around the pure parts: caller audio goes through the shared Silero
VAD and the :class:`~agents.endpointing.Endpointer`; finished utterances go to
the shared recognizer (in its thread); the agent logic's reply streams through
the :class:`~agents.chunker.SentenceChunker` into the call one sentence at a
time, each followed by a mark; the call's playout ledger
(:class:`gateway.playout.Ledger`, shared, tagged with this loop's turn numbers)
turns mark echoes into what the caller heard.

Turn-taking rules:
- Barge-in: caller speech of at least ``barge_in_min_speech_ms`` while the
  agent is replying or its audio is still playing → the reply is cancelled
  (LLM stream closed, queued sentences and synthesis dropped, ``clear`` sent)
  and the logic's history is cut to the sentences whose marks were echoed.
  DTMF interrupts the same way when ``dtmf_interrupts`` is set.
- A short utterance during playback that never reached the barge-in threshold
  is a backchannel ("mm-hm"): it is not answered.
- Idle: ``reprompt_after_s`` of silence (no caller speech, agent not speaking)
  → reprompt once; ``hangup_after_s`` → goodbye and hang-up. The maximum call
  duration ends the call the same way. A hang-up or transfer waits until every
  mark of the goodbye turn has echoed, so the goodbye is heard in full.
- Mouth-to-ear: each turn starts with a mark sent just before its first frame;
  its echo minus the moment the caller stopped speaking is observed in
  ``voicegw_mouth_to_ear_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from agents.chunker import SentenceChunker
from agents.endpointing import BargeIn, EndpointConfig, Endpointer, SpeechEnd, SpeechStart
from agents.factory import make_logic
from agents.logic import (
    AgentLogic,
    CallEnding,
    CallStarted,
    Dtmf,
    Hangup,
    LogicEvent,
    Phrase,
    SilenceTimeout,
    Transfer,
    Utterance,
)
from agents.spec import AgentSpec
from agents.stt import STTError, Transcriber
from agents.vad import SileroModel
from audio.formats import AudioChunk, AudioFormat, Encoding
from audio.inbound import FromTwilio
from gateway.ops import logs
from gateway.ops.metrics import Metrics
from gateway.playout import Ledger, SentenceState
from gateway.twilio.events import Dtmf as DtmfEvent
from gateway.twilio.events import Mark, Media

log = logging.getLogger("voicegw.conversation")

TICK_S = 0.1
GOODBYE_PLAYOUT_TIMEOUT_S = 30.0
PCM_8K = AudioFormat(Encoding.PCM_F32, 8000)


class CallPort(Protocol):
    """What the conversation needs from the call (implemented by :class:`gateway.call.CallSession`)."""

    turns: int  # for the call's summary line
    mouth_to_ear_s: list[float]
    ledger: Ledger  # the call's playout ledger: updated by the call from mark echoes, before on_event hooks run

    def say(self, text: str, kind: str = "sentence", *, start_mark: str | None = None, phrase: bool = False,
            first: bool | None = None, turn: int | None = None) -> str: ...

    async def interrupt(self) -> list[str]: ...

    def hangup(self, outcome: str = "agent_hangup") -> None: ...

    def transfer(self, number: str) -> None: ...


@dataclass
class TurnRecord:
    """What happened in one agent turn (kept for logs and tests)."""

    turn: int
    cause: str
    sentences: list[str] = field(default_factory=list)
    interrupted: bool = False
    heard: str = ""


class Conversation:
    #: Log what the caller says (VOICEGW_LOG_TRANSCRIPTS); off: only its length.
    log_transcripts = False

    def __init__(self, call: CallPort, agent: AgentSpec, logic: AgentLogic, transcriber: Transcriber | None,
                 vad: SileroModel | None, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.call = call
        self.agent = agent
        self.logic = logic
        self.transcriber = transcriber
        self.metrics = metrics
        self.clock = clock
        self.tt = agent.turn_taking
        self.listening = transcriber is not None and vad is not None
        self.decoder = FromTwilio(8000)
        self.vad = vad.stream() if vad is not None else None
        self.endpointer = Endpointer(EndpointConfig.from_turn_taking(self.tt))
        self.ledger = call.ledger
        self.turn = 0
        self.turns: list[TurnRecord] = []
        self.transcripts: list[str] = []
        self._events: asyncio.Queue[tuple[LogicEvent, float | None]] = asyncio.Queue()  # (event, caller stop)
        self._reply: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lock = asyncio.Lock()
        self._started_at = clock()
        self._last_activity = clock()
        self._caller_speaking = False
        self._pending_stt = 0
        self._reprompted = False
        self._ending = False
        self._barged_turn = 0
        self._idle_turns: set[int] = set()
        self._turn_origin: dict[int, float] = {}  # turn → wall time the caller stopped speaking
        self._start_marks: dict[str, int] = {}
        self._marks_changed = asyncio.Event()

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def start(self) -> None:
        self._spawn(self._brain(), "conversation-brain")
        self._spawn(self._ticker(), "conversation-ticker")
        await self._events.put((CallStarted(), None))

    async def aclose(self) -> None:
        self._ending = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            async for _ in self.logic.respond(CallEnding()):
                pass
        await self.logic.aclose()

    # ---- state -------------------------------------------------------------------------------------------------
    @property
    def agent_speaking(self) -> bool:
        return (self._reply is not None and not self._reply.done()) or self.ledger.outstanding() > 0

    def _activity(self) -> None:
        self._last_activity = self.clock()
        self._reprompted = False

    # ---- inbound events (called from the call's read loop) -----------------------------------------------------
    async def on_event(self, event: object) -> None:
        if isinstance(event, Media):
            await self._on_media(event.payload)
        elif isinstance(event, Mark):
            self._on_mark(event.name)
        elif isinstance(event, DtmfEvent):
            self._activity()
            if self.tt.dtmf_interrupts and self.agent_speaking:
                await self._interrupt("dtmf")
            await self._events.put((Dtmf(event.digit), self.clock()))

    async def _on_media(self, payload: bytes) -> None:
        if not self.listening or self.vad is None:
            return
        for prob, chunk in self.vad.feed(self.decoder.feed(payload)):
            for ev in self.endpointer.feed(prob, chunk):
                if isinstance(ev, SpeechStart):
                    self._caller_speaking = True
                    self._activity()
                elif isinstance(ev, BargeIn):
                    if self.agent_speaking and not self._ending:
                        await self._interrupt("speech")
                elif isinstance(ev, SpeechEnd):
                    self._caller_speaking = False
                    self._activity()
                    lag = self.endpointer.now - ev.ended_at  # the caller stopped this long ago
                    self._pending_stt += 1
                    self._spawn(self._transcribe(ev, self.clock() - lag), "stt")
                else:
                    self._caller_speaking = False

    def _on_mark(self, name: str) -> None:
        heard = self.ledger.state(name) is SentenceState.HEARD  # the call has already recorded the echo
        self._marks_changed.set()
        turn = self._start_marks.pop(name, None) if heard else None
        if turn is not None and turn in self._turn_origin:
            latency = self.clock() - self._turn_origin.pop(turn)
            self.call.mouth_to_ear_s.append(latency)
            if self.metrics is not None:
                self.metrics.mouth_to_ear.labels(self.agent.id).observe(latency)
        if heard and self.ledger.outstanding() == 0 and self.turn not in self._idle_turns:
            self._activity()  # the agent finished speaking: the silence clock starts now

    async def _transcribe(self, end: SpeechEnd, stopped_at: float) -> None:
        assert self.transcriber is not None
        try:
            result = await self.transcriber.transcribe(AudioChunk(end.pcm, PCM_8K))
        except STTError as exc:
            log.error("speech recognition failed: %s", exc)
            return
        finally:
            self._pending_stt -= 1
        if self.metrics is not None:
            self.metrics.stt_seconds.observe(result.processing_s)
        text = result.text.strip()
        log.info("caller said %s (%.2fs audio, %.2fs stt)", logs.transcript(text, self.log_transcripts),
                 result.audio_s, result.processing_s)
        if not text:
            return
        self.transcripts.append(text)
        if self.agent_speaking and self._barged_turn != self.turn:
            log.info("ignoring %s: said over the agent without barging in (backchannel)",
                     logs.transcript(text, self.log_transcripts))
            return
        await self._events.put((Utterance(text), stopped_at))

    # ---- thinking and speaking ---------------------------------------------------------------------------------
    async def _brain(self) -> None:
        while True:
            event, origin = await self._events.get()
            if self._ending:
                continue
            async with self._lock:
                if self._reply is not None and not self._reply.done():
                    await self._interrupt_locked("new event")
                self.turn += 1
                self.call.turns += 1
                self.ledger.forget_before(self.turn - 1)
                if origin is not None:
                    self._turn_origin = {self.turn: origin}
                if isinstance(event, SilenceTimeout) and not event.final:
                    self._idle_turns.add(self.turn)
                self._reply = self._spawn(self._speak_turn(event, self.turn), f"turn-{self.turn}")
            # wait for this reply to be generated before taking the next event (interrupts bypass the queue)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._reply)

    async def _speak_turn(self, event: LogicEvent, turn: int) -> None:
        record = TurnRecord(turn, type(event).__name__)
        self.turns.append(record)
        chunker = SentenceChunker()
        # The greeting is one sentence named ``greeting-1`` (the call's contract; cached after the first call);
        # replies get a start mark for mouth-to-ear and are chunked so synthesis starts at once.
        greeting = isinstance(event, CallStarted)
        start_mark: str | None = None if greeting else f"turn{turn}-start"
        action: Hangup | Transfer | None = None

        first = True

        def say(sentence: str, phrase: bool) -> None:
            nonlocal start_mark, first
            self.call.say(sentence, kind="greeting" if greeting else f"t{turn}", start_mark=start_mark,
                          phrase=phrase, first=first, turn=turn)
            first = False
            if start_mark is not None:
                self._start_marks[start_mark] = turn
                start_mark = None
            record.sentences.append(sentence)

        async for out in self.logic.respond(event):
            if isinstance(out, str):
                for s in chunker.feed(out):
                    say(s, False)
            elif isinstance(out, Phrase):
                for s in chunker.flush():
                    say(s, False)
                if greeting:
                    say(out.text, True)
                    continue
                phrase_chunker = SentenceChunker()
                for s in phrase_chunker.feed(out.text) + phrase_chunker.flush():
                    say(s, True)
            else:
                action = out
        for s in chunker.flush():
            say(s, False)
        if action is not None:
            self._ending = True
            await self._wait_heard(turn)
            if isinstance(action, Transfer):
                self.call.transfer(action.number)
            else:
                self.call.hangup()

    async def _wait_heard(self, turn: int) -> None:
        deadline = self.clock() + GOODBYE_PLAYOUT_TIMEOUT_S
        while self.ledger.outstanding(turn) and (left := deadline - self.clock()) > 0:
            self._marks_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._marks_changed.wait(), left)

    async def _interrupt(self, why: str) -> None:
        async with self._lock:
            await self._interrupt_locked(why)

    async def _interrupt_locked(self, why: str) -> None:
        if not self.agent_speaking:
            return
        reply = self._reply
        if reply is not None and not reply.done():
            reply.cancel()  # closes the logic's stream: the partial reply is kept, then truncated below
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reply
        await self.call.interrupt()  # marks every pending sentence cleared in the shared ledger
        self._marks_changed.set()
        heard = self.ledger.heard_text(self.turn)
        self.logic.truncate_to_heard(heard)
        self._barged_turn = self.turn
        if self.turns:
            self.turns[-1].interrupted, self.turns[-1].heard = True, heard
        if self.metrics is not None and why == "speech":
            self.metrics.barge_ins.labels(self.agent.id).inc()
        log.info("barge-in (%s) during turn %d; caller heard %r", why, self.turn, heard[:80])

    # ---- timers ------------------------------------------------------------------------------------------------
    async def _ticker(self) -> None:
        max_s = float(self.agent.limits.max_call_seconds)
        final_sent = False
        while True:
            await asyncio.sleep(TICK_S)
            now = self.clock()
            if now - self._started_at >= max_s and not final_sent:
                log.info("maximum call duration (%ss) reached", max_s)
                final_sent = True
                await self._events.put((SilenceTimeout(final=True), None))
                continue
            if now - self._started_at >= max_s + GOODBYE_PLAYOUT_TIMEOUT_S:
                self.call.hangup("max_duration")
                return
            if self._caller_speaking or self._pending_stt > 0:
                self._last_activity = now
                continue
            if self._ending or final_sent or (self.agent_speaking and self.turn not in self._idle_turns):
                continue  # the silence clock restarts when the agent's reply has been heard (see _on_mark)
            quiet = now - self._last_activity
            if quiet >= self.tt.hangup_after_s:
                final_sent = True
                await self._events.put((SilenceTimeout(final=True), None))
            elif quiet >= self.tt.reprompt_after_s and not self._reprompted:
                self._reprompted = True
                await self._events.put((SilenceTimeout(final=False), None))


def attach_conversation(session: Any, services: Any) -> Conversation | None:
    """Wire a conversation into a :class:`gateway.call.CallSession` using the process-wide models in
    ``services.extras`` (``vad``, ``stt``). Without them the agent still greets and answers DTMF."""
    agent: AgentSpec = session.agent
    try:
        logic = make_logic(agent)
    except Exception as exc:
        log.error("agent %s: cannot build its logic: %s", agent.id, exc)
        return None
    conv = Conversation(session, agent, logic, services.extras.get("stt"), services.extras.get("vad"),
                        services.metrics)
    conv.log_transcripts = services.settings.log_transcripts
    session.on_event.append(conv.on_event)
    session.on_start.append(conv.start)
    session.on_end.append(conv.aclose)
    return conv
