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

Listening is :class:`gateway.listener.Listener` (issue 13): the utterance is
decoded speculatively at ``speculative_silence_ms`` and the turn ends on the
words (questions after ``question_silence_ms``, other complete ones after
``end_of_utterance_silence_ms``, mid-clause ones
only at ``max_silence_ms``), so recognition is done when the turn ends.

- Speculative reply: when the words look complete and the agent is quiet, the
  reply starts at once (logic and synthesis) with its audio held in the call's
  queue; confirmed → released; the caller goes on → cancelled without a trace
  (nothing was sent, the logic rolled back to its checkpoint, the turn not
  counted). Only for logics that are :class:`agents.logic.Rewindable`.
- Barge-in: at the caller's speech onset over the agent, the agent is held at
  once (:meth:`CallPort.hold`: what the carrier had not played is taken back and
  cleared there). Words that are not a backchannel, or
  ``barge_in_min_speech_ms`` of speech, confirm it: the reply is cancelled (LLM
  stream closed, queued sentences and synthesis dropped) and the logic's
  history is cut to the sentences whose marks were echoed. A cough, a door, an
  "mm-hm" → the agent resumes from exactly where the caller stopped hearing it.
- Latency: each answered turn gets a :class:`gateway.ops.logs.TurnLatency`
  (endpoint wait, recognition, logic first output, first audio, first heard)
  in the call summary and ``voicegw_turn_stage_seconds``; mouth-to-ear (the
  turn's start mark echoed, minus the moment the caller stopped speaking) is
  also observed in ``voicegw_mouth_to_ear_seconds``. The bookkeeping is pure:
  :class:`gateway.turn_latency.LatencyBook`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from agents import smart_turn
from agents.chunker import SentenceChunker
from agents.factory import make_logic
from agents.logic import (
    AgentLogic,
    CallEnding,
    CallStarted,
    Hangup,
    LogicEvent,
    Phrase,
    Rewindable,
    Transfer,
    Utterance,
)
from agents.spec import AgentSpec
from agents.stt import Transcriber, Transcript
from agents.turn_end import is_backchannel
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
    coalesce,
)
from agents.vad import SileroModel
from audio.codec import to_float
from audio.formats import AudioChunk, AudioFormat, Encoding
from gateway.carrier import CallerAudio, CallEvent, Digit, MarkHeard
from gateway.listener import EnoughSpeech, Likely, Listener, ListenEvent, NoWords, Onset, Resumed, TurnEnd
from gateway.notes import AgentTurn, BargedIn, CallerSaid, CallNote, TurnHeard
from gateway.ops import logs
from gateway.ops.logs import TURN_STAGES, TurnLatency
from gateway.ops.metrics import Metrics
from gateway.playout import Ledger, SentenceState
from gateway.tasks import TaskGroup, cancel_and_wait
from gateway.ticks import shared_ticker
from gateway.turn_latency import FirstHeard, LatencyBook

log = logging.getLogger("voicegw.conversation")

PCM_8K = AudioFormat(Encoding.PCM_F32, 8000)


class CallPort(Protocol):
    """What the conversation needs from the call (implemented by :class:`gateway.call.CallSession`)."""

    turns: int  # for the call's summary line
    mouth_to_ear_s: list[float]
    turn_latency: list[TurnLatency]  # one record per answered caller turn, for the summary
    first_frame_at: dict[str, float]  # start mark → when its turn's first frame was queued (monotonic)
    ledger: Ledger  # the call's playout ledger: the call records each mark echo before the conversation hears it

    def say(self, text: str, kind: str = "sentence", *, start_mark: str | None = None, phrase: bool = False,
            first: bool | None = None, turn: int | None = None) -> str: ...

    async def interrupt(self) -> list[str]: ...

    async def hold(self) -> None: ...

    def hold_new(self) -> None: ...

    def release(self) -> None: ...

    def discard(self) -> None: ...

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


@dataclass
class _Speculation:
    """A reply started before the caller's turn was confirmed; its audio is held."""

    event: Utterance
    checkpoint: object
    turn: int = 0  # set when the brain starts it
    logic_first_at: float | None = None


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
        self.tt = agent.turn_taking
        self.listener: Listener | None = None
        # VAD through the event loop's shared batcher: one Silero inference per tick for every call
        if transcriber is not None and vad is not None:
            model = smart_turn.load() if self.tt.turn_model == "smart_turn" else None
            self.listener = Listener(self.tt, vad.batcher().stream(), transcriber, self._on_listen, clock, model,
                                     self._recognised)
        self.listening = self.listener is not None
        self.policy = TurnPolicy(TurnConfig.from_agent(agent), clock())
        self.ledger = call.ledger
        self.turn = 0
        self.turns: list[TurnRecord] = []
        self.transcripts: list[str] = []
        self._pending: deque[Respond] = deque()  # turns to take, in order (digits coalesced: see _queue)
        self._queued = asyncio.Event()  # set when a turn is queued
        self._reply: asyncio.Task[None] | None = None
        self._tasks = TaskGroup()
        self._lock = asyncio.Lock()
        self.latency = LatencyBook()  # each answered turn's latency, until its first frame is heard
        self._held = False  # the agent is held at the caller's speech onset (barge-in not confirmed yet)
        self._spec: _Speculation | None = None
        self._turn_ended: TurnEnd | None = None  # the caller turn the next Respond answers
        self._abandoned: list[LogicEvent] = []  # speculative events abandoned before the brain took them
        self.notes: list[Callable[[CallNote], None]] = []  # what the conversation tells a watcher (the console)
        self._untick: Callable[[], None] | None = None  # stops this conversation's clock (the shared ticker)
        self._ticking: asyncio.Task[None] | None = None  # carrying out what the last tick decided

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._tasks.spawn(self._brain(), "conversation-brain")
        self._untick = shared_ticker().add(self._tick)
        self._queue(Respond(CallStarted()))

    async def aclose(self) -> None:
        self._stop_ticking()
        if self.listener is not None:
            await self.listener.aclose()
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
        await self._do_all(self.policy.feed(event, self.clock(), playback or self._playback()))

    async def _do(self, action: TurnAction) -> None:
        if isinstance(action, Interrupt):
            await self._interrupt(action.why)
        elif isinstance(action, Respond):
            spec = self._spec
            if spec is not None and action.event == spec.event:
                await self._confirm_speculation(spec)
                return
            if spec is not None:
                await self._abandon_speculation("the words changed")
            self._queue(action)
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

    def take_audio_now(self, audio: CallerAudio) -> bool:
        """The per-frame hot path: an idle line's audio goes to the listener without a task switch."""
        listener = self.listener
        if listener is None:
            return True  # nothing listens: nothing to do with it
        if not listener.ready_now:
            return False
        listener.feed_nowait(to_float(audio.chunk))
        return True

    async def _on_audio(self, chunk: AudioChunk) -> None:
        if self.listener is not None:
            await self.listener.feed(to_float(chunk))

    def _recognised(self, result: Transcript) -> None:
        if self.metrics is not None:
            self.metrics.stt_seconds.observe(result.processing_s)

    async def _on_listen(self, ev: ListenEvent) -> None:
        if isinstance(ev, Onset):
            await self._feed(CallerSpeechStarted())
            if self.agent_speaking and self._spec is None and not self.policy.ending and not self._held:
                self._held = True
                await self.call.hold()  # the agent stops at once; a false alarm resumes it
        elif isinstance(ev, EnoughSpeech):
            await self._feed(CallerBargeIn())  # enough speech over the agent: a barge-in, words or not
        elif isinstance(ev, NoWords):
            if ev.dropped:
                await self._feed(CallerSpeechDropped())
            self._resume_after_noise()
        elif isinstance(ev, Likely):
            if self._held:
                if not is_backchannel(ev.words):
                    await self._feed(CallerBargeIn())  # words over the agent confirm the barge-in
            elif (self.tt.speculative_reply and self._spec is None and not self.agent_speaking
                  and not self.policy.ending and isinstance(self.logic, Rewindable)):
                await self._speculate(ev)
        elif isinstance(ev, Resumed):
            if self._spec is not None:
                await self._abandon_speculation("the caller went on")
        else:
            await self._turn_end(ev)

    def _resume_after_noise(self) -> None:
        if self._held:
            self._held = False
            self.call.release()
            log.info("caller noise over the agent: resumed where the caller stopped hearing it")

    async def _turn_end(self, ev: TurnEnd) -> None:
        text = ev.words
        lag = self.listener.ingest_lag_s if self.listener is not None else 0.0
        log.info("caller said %s (turn end: %s, %.0f ms after speech, %.2fs stt, listening %.0f ms behind)",
                 logs.transcript(text, self.log_transcripts), ev.why,
                 (ev.decided_at - ev.stopped_at) * 1000, ev.recognition_s, lag * 1000)
        if text:
            self.transcripts.append(text)
            self._note(CallerSaid(text, ev.stopped_at, ev.decided_at, ev.decided_at))
        if self._held:
            if text and not is_backchannel(text):
                await self._feed(CallerBargeIn())
            self._resume_after_noise()
        spec = self._spec
        await self._feed(CallerSpeechEnded(ev.stopped_at))
        self._turn_ended = ev
        playback = None
        if spec is not None:  # the policy judges the words as if the held reply did not exist
            unheard = self.ledger.outstanding() - self.ledger.outstanding(spec.turn)
            playback = Playback(replying=False, unheard=unheard)
        await self._feed(Transcribed(text, ev.stopped_at), playback)
        if self._spec is not None and self._spec is spec:  # not answered (noise, ending): never release it
            await self._abandon_speculation("the turn was not answered")

    async def _on_mark(self, name: str) -> None:
        heard = self.ledger.state(name) is SentenceState.HEARD
        if heard:
            # first frame queued (monotonic, like the default clock): known for start marks only
            first = self.latency.heard(name, self.clock(), self.call.first_frame_at.pop(name, None))
            if first is not None:
                self._first_heard(first)
        await self._feed(PlayoutProgress(heard))

    def _note(self, note: CallNote) -> None:
        for watch in self.notes:
            watch(note)

    def _first_heard(self, first: FirstHeard) -> None:
        self._note(TurnHeard(first.turn, first.at))
        self.call.mouth_to_ear_s.append(first.mouth_to_ear_s)
        if self.metrics is not None:
            self.metrics.mouth_to_ear.labels(self.agent.id).observe(first.mouth_to_ear_s)
        record = first.latency
        if record is None:
            return
        self.call.turn_latency.append(record)
        self._note(record)
        if self.metrics is not None:
            for stage in TURN_STAGES:
                value = record.stage_ms(stage)
                if value is not None:
                    self.metrics.turn_stage.labels(self.agent.id, stage).observe(max(0.0, value) / 1000.0)

    # ---- speculative replies -----------------------------------------------------------------------------------
    async def _speculate(self, ev: Likely) -> None:
        assert isinstance(self.logic, Rewindable)
        spec = _Speculation(Utterance(ev.words), self.logic.checkpoint())
        self._spec = spec
        self.call.hold_new()
        log.info("speculative reply to %s (audio held until the turn is confirmed)",
                 logs.transcript(ev.words, self.log_transcripts))
        self._queue(Respond(spec.event, ev.stopped_at))

    async def _confirm_speculation(self, spec: _Speculation) -> None:
        self._spec = None
        self.call.release()
        ended = self._turn_ended
        if ended is not None and spec.turn:
            self.latency.confirmed(spec.turn, ended, spec.logic_first_at, self.clock())
        log.info("turn confirmed: speculative reply %d released", spec.turn)

    async def _abandon_speculation(self, why: str) -> None:
        spec, self._spec = self._spec, None
        if spec is None:
            return
        if not spec.turn:
            self._abandoned = [*self._abandoned[-3:], spec.event]  # still queued: the brain skips it
        async with self._lock:
            reply = self._reply
            if reply is not None and not reply.done():
                await cancel_and_wait(reply)
            self.call.discard()  # nothing of it was sent: the caller never knows
            self.call.release()
            assert isinstance(self.logic, Rewindable)
            self.logic.rollback(spec.checkpoint)
            if self.turns and self.turns[-1].turn == spec.turn:
                self.turns.pop()
                self.call.turns -= 1
            for mark in self.latency.forget(spec.turn):
                self.call.first_frame_at.pop(mark, None)
        log.info("speculative reply %d abandoned: %s", spec.turn, why)

    # ---- thinking and speaking ---------------------------------------------------------------------------------
    def _queue(self, respond: Respond) -> None:
        """Queue a turn for the brain; a digit joins a digit turn still waiting (:func:`agents.turns.coalesce`)."""
        joined = coalesce(self._pending[-1], respond) if self._pending else None
        if joined is not None:
            self._pending[-1] = joined
        else:
            self._pending.append(respond)
        self._queued.set()

    async def _brain(self) -> None:
        while True:
            while not self._pending:
                self._queued.clear()
                await self._queued.wait()
            respond = self._pending.popleft()
            if self.policy.ending or any(respond.event is e for e in self._abandoned):
                continue
            async with self._lock:
                if self._reply is not None and not self._reply.done():
                    await self._interrupt_locked("new event")
                self.turn += 1
                self.call.turns += 1
                self.ledger.forget_before(self.turn - 1)
                spec = self._spec if self._spec is not None and respond.event is self._spec.event else None
                if spec is not None:
                    spec.turn = self.turn  # held: its timing is recorded when the turn is confirmed
                self.latency.turn_started(self.turn, respond.origin, self._turn_ended, held=spec is not None)
                await self._feed(TurnStarted(self.turn, respond.event))
                self._note(AgentTurn(self.turn, _CAUSES.get(type(respond.event).__name__, "event"), respond.origin))
                reply = self._reply = self._tasks.spawn(self._speak_turn(respond.event, self.turn),
                                                        f"turn-{self.turn}")
            # Wait for this reply to be generated before taking the next turn (interrupts bypass the queue). Its
            # cancellation (an interrupt) or failure ends the wait; the brain's own (the call ending) ends the
            # brain, however many turns are still queued.
            await asyncio.wait([reply])

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
                self.latency.start_mark(start_mark, turn)
                start_mark = None
            record.sentences.append(sentence)

        async for out in self.logic.respond(event):
            self._logic_output(turn)
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

    def _logic_output(self, turn: int) -> None:
        self.latency.logic_output(turn, self.clock())
        spec = self._spec
        if spec is not None and spec.turn == turn and spec.logic_first_at is None:
            spec.logic_first_at = self.clock()

    async def _interrupt(self, why: str) -> None:
        async with self._lock:
            await self._interrupt_locked(why)

    async def _interrupt_locked(self, why: str) -> None:
        if not self.agent_speaking:
            return
        reply = self._reply
        if reply is not None and not reply.done():
            await cancel_and_wait(reply)  # closes the logic's stream: the partial reply is kept, truncated below
        self._held = False
        await self.call.interrupt()  # marks every pending sentence cleared in the shared ledger (and un-holds)
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
    def _tick(self) -> None:
        """The conversation's clock (every :data:`gateway.ticks.TICK_S`, from the loop's shared ticker): what
        the policy decides is carried out in a task, and no tick is judged until the last one's is done."""
        if self.policy.ended:
            self._stop_ticking()
            return
        if self._ticking is not None and not self._ticking.done():
            return
        actions = self.policy.feed(Tick(), self.clock(), self._playback())
        if actions:
            self._ticking = self._tasks.spawn(self._do_all(actions), "conversation-tick")

    async def _do_all(self, actions: list[TurnAction]) -> None:
        for action in actions:
            await self._do(action)

    def _stop_ticking(self) -> None:
        if self._untick is not None:
            self._untick()
            self._untick = None


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
