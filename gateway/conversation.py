"""The conversation loop of one call: listen → think → speak, with barge-in and idle handling.

The asyncio runner around the pure parts: caller audio (neutral
:class:`gateway.carrier.CallerAudio` events, whatever the carrier) goes
through the shared Silero VAD and the :class:`~agents.endpointing.Endpointer`;
finished utterances go to the shared recognizer (in its thread); the
turn-taking rules (barge-in, backchannel, idle reprompt and hang-up, maximum
duration, goodbye then hang-up) are :class:`agents.turns.TurnPolicy`, which this
loop feeds and obeys; the agent logic's reply streams through the
:class:`~agents.chunker.SentenceChunker` into the call one sentence at a time,
each followed by a mark; the call's playout ledger
(:class:`gateway.playout.Ledger`, shared, tagged with this loop's turn numbers)
turns mark echoes into what the caller heard.

On barge-in the reply is cancelled (LLM stream closed, queued sentences and
synthesis dropped, the carrier's buffer cleared) and the logic's history is cut
to the sentences whose marks were echoed. Mouth-to-ear: each turn starts with a
mark sent just before its first frame; its echo minus the moment the caller
stopped speaking is observed in ``voicegw_mouth_to_ear_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from agents.chunker import SentenceChunker
from agents.endpointing import BargeIn, EndpointConfig, Endpointer, SpeechEnd, SpeechStart
from agents.factory import make_logic
from agents.logic import AgentLogic, CallEnding, CallStarted, Hangup, LogicEvent, Phrase, Transfer
from agents.spec import AgentSpec
from agents.stt import STTError, Transcriber
from agents.turns import (
    CallerBargeIn,
    CallerSpeechDropped,
    CallerSpeechEnded,
    CallerSpeechStarted,
    DigitPressed,
    Ignore,
    Interrupt,
    Interrupted,
    Playback,
    PlayoutProgress,
    ReplyFinished,
    Respond,
    Tick,
    Transcribed,
    TurnAction,
    TurnConfig,
    TurnEvent,
    TurnPolicy,
    TurnStarted,
)
from agents.vad import SileroModel
from audio.codec import to_float
from audio.formats import AudioChunk, AudioFormat, Encoding
from gateway.carrier import CallerAudio, CallEvent, Digit, MarkHeard
from gateway.notes import AgentTurn, BargedIn, CallerSaid, CallNote, TurnHeard
from gateway.ops import logs
from gateway.ops.metrics import Metrics
from gateway.playout import Ledger, SentenceState
from gateway.tasks import TaskGroup

log = logging.getLogger("voicegw.conversation")

TICK_S = 0.1
PCM_8K = AudioFormat(Encoding.PCM_F32, 8000)


class CallPort(Protocol):
    """What the conversation needs from the call (implemented by :class:`gateway.call.CallSession`)."""

    turns: int  # for the call's summary line
    mouth_to_ear_s: list[float]
    ledger: Ledger  # the call's playout ledger: the call records each mark echo before the conversation hears it

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


#: What started an agent turn, for watchers (the console's turn table).
_CAUSES = {"CallStarted": "greeting", "Utterance": "speech", "Dtmf": "dtmf", "SilenceTimeout": "silence"}


class Conversation:
    """One call's agent side; a :class:`gateway.carrier.CallListener`."""

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
        self.listening = transcriber is not None and vad is not None
        # the event loop's shared batcher: one Silero inference per tick for every call (at most a tick late)
        self.vad = vad.batcher().stream() if vad is not None else None
        self.endpointer = Endpointer(EndpointConfig.from_turn_taking(agent.turn_taking))
        self.policy = TurnPolicy(TurnConfig.from_agent(agent), clock())
        self.ledger = call.ledger
        self.turn = 0
        self.turns: list[TurnRecord] = []
        self.transcripts: list[str] = []
        self._events: asyncio.Queue[Respond] = asyncio.Queue()  # turns to take, in order
        self._reply: asyncio.Task[None] | None = None
        self._tasks = TaskGroup()
        self._lock = asyncio.Lock()
        self._turn_origin: dict[int, float] = {}  # turn → wall time the caller stopped speaking
        self._start_marks: dict[str, int] = {}
        self.notes: list[Callable[[CallNote], None]] = []  # what the conversation tells a watcher (the console)

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._tasks.spawn(self._brain(), "conversation-brain")
        self._tasks.spawn(self._ticker(), "conversation-ticker")
        await self._events.put(Respond(CallStarted()))

    async def aclose(self) -> None:
        if self.vad is not None:
            self.vad.close()
        await self._tasks.aclose()
        with contextlib.suppress(Exception):
            async for _ in self.logic.respond(CallEnding()):
                pass
        await self.logic.aclose()

    # ---- the policy --------------------------------------------------------------------------------------------
    def _playback(self, replying: bool | None = None) -> Playback:
        if replying is None:
            replying = self._reply is not None and not self._reply.done()
        return Playback(replying=replying, unheard=self.ledger.outstanding())

    @property
    def agent_speaking(self) -> bool:
        return self._playback().speaking

    async def _feed(self, event: TurnEvent, playback: Playback | None = None) -> None:
        """Give the turn-taking policy one event and carry out what it decides, in order."""
        for action in self.policy.feed(event, self.clock(), playback or self._playback()):
            await self._do(action)

    async def _do(self, action: TurnAction) -> None:
        if isinstance(action, Interrupt):
            await self._interrupt(action.why)
        elif isinstance(action, Respond):
            await self._events.put(action)
        elif isinstance(action, Ignore):
            log.info("ignoring %s: %s", logs.transcript(action.text, self.log_transcripts), action.why)
        elif action.transfer_to is not None:
            self.call.transfer(action.transfer_to)
        else:
            if action.outcome == "max_duration":
                log.info("maximum call duration (%ss) reached", self.agent.limits.max_call_seconds)
            self.call.hangup(action.outcome)

    # ---- inbound events (from the call, whatever the carrier) --------------------------------------------------
    async def on_call_event(self, event: CallEvent) -> None:
        if isinstance(event, CallerAudio):
            await self._on_audio(event.chunk)
        elif isinstance(event, MarkHeard):
            await self._on_mark(event.name)
        elif isinstance(event, Digit):
            await self._feed(DigitPressed(event.digit))

    async def _on_audio(self, chunk: AudioChunk) -> None:
        if not self.listening or self.vad is None:
            return
        for prob, pcm in await self.vad.infer(to_float(chunk)):
            for ev in self.endpointer.feed(prob, pcm):
                if isinstance(ev, SpeechStart):
                    await self._feed(CallerSpeechStarted())
                elif isinstance(ev, BargeIn):
                    await self._feed(CallerBargeIn())
                elif isinstance(ev, SpeechEnd):
                    lag = self.endpointer.now - ev.ended_at  # the caller stopped this long ago
                    endpointed_at = self.clock()
                    stopped_at = endpointed_at - lag
                    await self._feed(CallerSpeechEnded(stopped_at))
                    self._tasks.spawn(self._transcribe(ev, stopped_at, endpointed_at), "stt")
                else:
                    await self._feed(CallerSpeechDropped())

    async def _on_mark(self, name: str) -> None:
        heard = self.ledger.state(name) is SentenceState.HEARD
        turn = self._start_marks.pop(name, None) if heard else None
        if turn is not None and turn in self._turn_origin:
            now = self.clock()
            latency = now - self._turn_origin.pop(turn)
            self._note(TurnHeard(turn, now))
            self.call.mouth_to_ear_s.append(latency)
            if self.metrics is not None:
                self.metrics.mouth_to_ear.labels(self.agent.id).observe(latency)
        await self._feed(PlayoutProgress(heard))

    def _note(self, note: CallNote) -> None:
        for watch in self.notes:
            watch(note)

    async def _transcribe(self, end: SpeechEnd, stopped_at: float, endpointed_at: float) -> None:
        """Recognize one utterance; the policy always hears back (empty text when recognition failed)."""
        assert self.transcriber is not None
        text = ""
        try:
            result = await self.transcriber.transcribe(AudioChunk(end.pcm, PCM_8K))
        except STTError as exc:
            log.error("speech recognition failed: %s", exc)
        except Exception:  # a recognizer bug must not hold the silence clock for the rest of the call
            log.exception("speech recognition failed")
        else:
            if self.metrics is not None:
                self.metrics.stt_seconds.observe(result.processing_s)
            text = result.text.strip()
            log.info("caller said %s (%.2fs audio, %.2fs stt)", logs.transcript(text, self.log_transcripts),
                     result.audio_s, result.processing_s)
            if text:
                self.transcripts.append(text)
                self._note(CallerSaid(text, stopped_at, endpointed_at, self.clock()))
        await self._feed(Transcribed(text, stopped_at))

    # ---- thinking and speaking ---------------------------------------------------------------------------------
    async def _brain(self) -> None:
        while True:
            respond = await self._events.get()
            if self.policy.ending:
                continue
            async with self._lock:
                if self._reply is not None and not self._reply.done():
                    await self._interrupt_locked("new event")
                self.turn += 1
                self.call.turns += 1
                self.ledger.forget_before(self.turn - 1)
                if respond.origin is not None:
                    self._turn_origin = {self.turn: respond.origin}
                await self._feed(TurnStarted(self.turn, respond.event))
                self._note(AgentTurn(self.turn, _CAUSES.get(type(respond.event).__name__, "event"), respond.origin))
                self._reply = self._tasks.spawn(self._speak_turn(respond.event, self.turn), f"turn-{self.turn}")
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
        await self._feed(ReplyFinished(turn, action), self._playback(replying=False))

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
        heard = self.ledger.heard_text(self.turn)
        self.logic.truncate_to_heard(heard)
        await self._feed(Interrupted())
        if self.turns:
            self.turns[-1].interrupted, self.turns[-1].heard = True, heard
        if self.metrics is not None and why == "speech":
            self.metrics.barge_ins.labels(self.agent.id).inc()
        self._note(BargedIn(self.turn, why))
        log.info("barge-in (%s) during turn %d; caller heard %r", why, self.turn, heard[:80])

    # ---- time --------------------------------------------------------------------------------------------------
    async def _ticker(self) -> None:
        while not self.policy.ended:
            await asyncio.sleep(TICK_S)
            await self._feed(Tick())


def make_conversation(call: CallPort, agent: AgentSpec, transcriber: Transcriber | None, vad: SileroModel | None,
                      metrics: Metrics | None = None) -> Conversation | None:
    """The conversation for ``agent`` on ``call`` (None when its logic cannot be built: the call then just greets).

    Without a recognizer or a VAD the agent still greets, answers digits and keeps time."""
    try:
        logic = make_logic(agent)
    except Exception as exc:
        log.error("agent %s: cannot build its logic: %s", agent.id, exc)
        return None
    return Conversation(call, agent, logic, transcriber, vad, metrics)
