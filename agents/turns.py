"""Turn-taking policy: what happened on the call in, what the conversation must do out.

Rules of this file: pure and sans-I/O. No asyncio, no clock, no audio: every
call to :meth:`TurnPolicy.feed` passes ``now`` (seconds, any monotonic origin)
and a :class:`Playback` snapshot of the agent's side; it returns the
:data:`TurnAction` values the runner (:mod:`gateway.conversation`) carries out,
in order. The policy keeps the turn-taking state (silence clock, reprompted,
barged turn, ending) and nothing else; the runner owns tasks, audio, the
recognizer and the agent logic, and reports back what it did
(:class:`TurnStarted`, :class:`Interrupted`, :class:`ReplyFinished`).

The rules:

- **Barge-in**: enough caller speech (:class:`CallerBargeIn`, from the
  endpointer) while the agent speaks → :class:`Interrupt` ``"speech"``, unless
  the call is ending. A digit interrupts the same way when ``dtmf_interrupts``.
- **Backchannel**: a transcript that arrives while the agent speaks, in a turn
  the caller did not barge into, is not answered (:class:`Ignore`).
- **Answering**: a transcript or a digit → :class:`Respond` with the agent
  logic's event (a new turn); nothing is answered once the call is ending.
- **Idle**: the silence clock restarts on caller speech, on a digit, while a
  transcript is pending, and when the agent's reply has been heard (not while
  it plays; an idle turn's own audio does not hold the clock). After
  ``reprompt_after_s`` of silence → reprompt once (``SilenceTimeout(final=False)``);
  after ``hangup_after_s`` → goodbye (``SilenceTimeout(final=True)``).
- **Maximum duration**: at ``max_call_s`` → goodbye; ``goodbye_timeout_s``
  later → :class:`EndCall` ``max_duration`` whatever is still playing.
- **Goodbye then hang-up**: a reply that ends with a hang-up or transfer makes
  the call *ending*; :class:`EndCall` follows once nothing the agent queued is
  unheard, or ``goodbye_timeout_s`` after the reply, whichever comes first.
- **Pending turns** (:func:`coalesce`, applied by the runner to its queue of
  turns not started yet): a digit pressed while an earlier digit's turn is
  still waiting joins that turn, so a flood of keys is one pending turn, not
  hundreds, and no key is lost (the logic sees them all in :class:`Dtmf`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.logic import Dtmf, Hangup, LogicEvent, SilenceTimeout, Transfer, Utterance
from agents.spec import AgentSpec

GOODBYE_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class TurnConfig:
    reprompt_after_s: float = 8.0
    hangup_after_s: float = 20.0
    max_call_s: float = 1800.0
    dtmf_interrupts: bool = True
    goodbye_timeout_s: float = GOODBYE_TIMEOUT_S

    def __post_init__(self) -> None:
        for name in ("reprompt_after_s", "hangup_after_s", "max_call_s", "goodbye_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @classmethod
    def from_agent(cls, agent: AgentSpec) -> TurnConfig:
        tt = agent.turn_taking
        return cls(reprompt_after_s=tt.reprompt_after_s, hangup_after_s=tt.hangup_after_s,
                   max_call_s=float(agent.limits.max_call_seconds), dtmf_interrupts=tt.dtmf_interrupts)


@dataclass(frozen=True, slots=True)
class Playback:
    """The agent's side when an event is fed."""

    replying: bool = False  # the logic's reply is still being generated
    unheard: int = 0  # sentences queued or sent that the caller has not heard yet

    @property
    def speaking(self) -> bool:
        return self.replying or self.unheard > 0


QUIET = Playback()


# ---- events in -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CallerSpeechStarted:
    pass


@dataclass(frozen=True, slots=True)
class CallerBargeIn:
    pass


@dataclass(frozen=True, slots=True)
class CallerSpeechEnded:
    """An utterance ended and went to the recognizer (its transcript is pending)."""

    stopped_at: float  # when the caller stopped speaking, on the ``now`` clock


@dataclass(frozen=True, slots=True)
class CallerSpeechDropped:
    """What started as speech was too short (noise): nothing goes to the recognizer."""


@dataclass(frozen=True, slots=True)
class Transcribed:
    """The recognizer's answer to a :class:`CallerSpeechEnded` (``text`` empty: nothing said or it failed)."""

    text: str
    stopped_at: float


@dataclass(frozen=True, slots=True)
class DigitPressed:
    digit: str


@dataclass(frozen=True, slots=True)
class PlayoutProgress:
    """A mark came back from the carrier (``heard``: it was a mark of audio that played)."""

    heard: bool


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed (the runner feeds one every ~100 ms)."""


@dataclass(frozen=True, slots=True)
class TurnStarted:
    """The runner started turn ``turn`` for ``event`` (after any :class:`Respond`)."""

    turn: int
    event: LogicEvent


@dataclass(frozen=True, slots=True)
class Interrupted:
    """The runner cancelled the current reply and dropped its unheard audio."""


@dataclass(frozen=True, slots=True)
class ReplyFinished:
    """The logic's reply to turn ``turn`` is fully queued; ``action`` ends the call after it."""

    turn: int
    action: Hangup | Transfer | None = None


TurnEvent = (
    CallerSpeechStarted | CallerBargeIn | CallerSpeechEnded | CallerSpeechDropped | Transcribed | DigitPressed
    | PlayoutProgress | Tick | TurnStarted | Interrupted | ReplyFinished
)


# ---- actions out -----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Interrupt:
    """Stop the agent now: cancel the reply, drop its unheard audio, cut the logic's history to what was heard."""

    why: str  # "speech" or "dtmf"


@dataclass(frozen=True, slots=True)
class Respond:
    """Start a new turn: give ``event`` to the agent logic (``origin``: when the caller stopped, for latency)."""

    event: LogicEvent
    origin: float | None = None


@dataclass(frozen=True, slots=True)
class Ignore:
    """A transcript not answered, and why (for the log)."""

    text: str
    why: str


@dataclass(frozen=True, slots=True)
class EndCall:
    """Hang up or transfer now; ``outcome`` names why the call ended."""

    outcome: str  # "agent_hangup", "transferred" or "max_duration"
    transfer_to: str | None = None


TurnAction = Interrupt | Respond | Ignore | EndCall

#: Keys one coalesced digit turn carries (the oldest go beyond it).
MAX_COALESCED_DIGITS = 32


def coalesce(waiting: Respond, new: Respond) -> Respond | None:
    """``new`` joined to the turn ``waiting`` to start, or None when both must be answered in turn.

    Digits join: one turn answers them, the latest deciding (a menu choice; with ``dtmf_interrupts`` it would
    have cut the earlier one's answer anyway); its origin is the latest press."""
    if isinstance(waiting.event, Dtmf) and isinstance(new.event, Dtmf):
        earlier = (waiting.event.digits + new.event.earlier)[-(MAX_COALESCED_DIGITS - 1):]
        return Respond(Dtmf(new.event.digit, earlier), new.origin)
    return None


@dataclass
class _Goodbye:
    action: Hangup | Transfer
    deadline: float


@dataclass
class TurnPolicy:
    """The turn-taking state of one call. Create at call start with ``now``; feed events; carry out actions."""

    config: TurnConfig
    started_at: float
    turn: int = 0
    last_activity: float = 0.0
    caller_speaking: bool = False
    pending_transcripts: int = 0
    reprompted: bool = False
    final_sent: bool = False  # the goodbye (idle or max duration) was asked for
    ending: bool = False  # a reply asked to end the call: nothing more is answered
    ended: bool = False  # EndCall was returned
    barged_turn: int = 0  # the last turn the caller interrupted
    idle_turns: set[int] = field(default_factory=set)  # turns that answer silence (reprompts)
    _goodbye: _Goodbye | None = None

    def __post_init__(self) -> None:
        self.last_activity = self.started_at

    def feed(self, event: TurnEvent, now: float, playback: Playback = QUIET) -> list[TurnAction]:
        if self.ended:
            return []
        handler = _HANDLERS[type(event)]
        return handler(self, event, now, playback)

    # ---- the rules, one method per event --------------------------------------------------------------------
    def _activity(self, now: float) -> None:
        self.last_activity = now
        self.reprompted = False

    def _speech_started(self, event: TurnEvent, now: float, playback: Playback) -> list[TurnAction]:
        self.caller_speaking = True
        self._activity(now)
        return []

    def _barge_in(self, event: TurnEvent, now: float, playback: Playback) -> list[TurnAction]:
        return [Interrupt("speech")] if playback.speaking and not self.ending else []

    def _speech_ended(self, event: TurnEvent, now: float, playback: Playback) -> list[TurnAction]:
        self.caller_speaking = False
        self.pending_transcripts += 1
        self._activity(now)
        return []

    def _speech_dropped(self, event: TurnEvent, now: float, playback: Playback) -> list[TurnAction]:
        self.caller_speaking = False
        return []

    def _transcribed(self, event: TurnEvent, now: float, playback: Playback) -> list[TurnAction]:
        assert isinstance(event, Transcribed)
        self.pending_transcripts = max(0, self.pending_transcripts - 1)
        text = event.text.strip()
        if not text:
            return []
        if playback.speaking and self.barged_turn != self.turn:
            return [Ignore(text, "said over the agent without barging in (backchannel)")]
        if self.ending:
            return [Ignore(text, "the call is ending")]
        return [Respond(Utterance(text), event.stopped_at)]

    def _digit(self, event: TurnEvent, now: float, playback: Playback) -> list[TurnAction]:
        assert isinstance(event, DigitPressed)
        self._activity(now)
        actions: list[TurnAction] = []
        if self.config.dtmf_interrupts and playback.speaking and not self.ending:
            actions.append(Interrupt("dtmf"))
        if not self.ending:
            actions.append(Respond(Dtmf(event.digit), now))
        return actions

    def _playout(self, event: TurnEvent, now: float, playback: Playback) -> list[TurnAction]:
        assert isinstance(event, PlayoutProgress)
        if event.heard and playback.unheard == 0 and self.turn not in self.idle_turns:
            self._activity(now)  # the agent finished speaking: the silence clock starts now
        return self._goodbye_done(now, playback)

    def _tick(self, event: TurnEvent, now: float, playback: Playback) -> list[TurnAction]:
        cfg = self.config
        elapsed = now - self.started_at
        if elapsed >= cfg.max_call_s and not self.final_sent:
            self.final_sent = True
            return [Respond(SilenceTimeout(final=True))]
        if elapsed >= cfg.max_call_s + cfg.goodbye_timeout_s:
            self.ended = True
            return [EndCall("max_duration")]
        ending = self._goodbye_done(now, playback)
        if ending:
            return ending
        if self.caller_speaking or self.pending_transcripts > 0:
            self.last_activity = now
            return []
        if self.ending or self.final_sent or (playback.speaking and self.turn not in self.idle_turns):
            return []  # the silence clock restarts when the agent's reply has been heard (PlayoutProgress)
        quiet = now - self.last_activity
        if quiet >= cfg.hangup_after_s:
            self.final_sent = True
            return [Respond(SilenceTimeout(final=True))]
        if quiet >= cfg.reprompt_after_s and not self.reprompted:
            self.reprompted = True
            return [Respond(SilenceTimeout(final=False))]
        return []

    def _turn_started(self, event: TurnEvent, now: float, playback: Playback) -> list[TurnAction]:
        assert isinstance(event, TurnStarted)
        self.turn = event.turn
        if isinstance(event.event, SilenceTimeout) and not event.event.final:
            self.idle_turns.add(event.turn)
        return []

    def _interrupted(self, event: TurnEvent, now: float, playback: Playback) -> list[TurnAction]:
        self.barged_turn = self.turn
        return []

    def _reply_finished(self, event: TurnEvent, now: float, playback: Playback) -> list[TurnAction]:
        assert isinstance(event, ReplyFinished)
        if event.action is None:
            return []
        self.ending = True
        self._goodbye = _Goodbye(event.action, now + self.config.goodbye_timeout_s)
        return self._goodbye_done(now, playback)

    def _goodbye_done(self, now: float, playback: Playback) -> list[TurnAction]:
        """The goodbye turn has been heard in full (or waited for long enough): end the call."""
        goodbye = self._goodbye
        if goodbye is None or (playback.unheard > 0 and now < goodbye.deadline):
            return []
        self.ended = True
        if isinstance(goodbye.action, Transfer):
            return [EndCall("transferred", goodbye.action.number)]
        return [EndCall("agent_hangup")]


_HANDLERS = {
    CallerSpeechStarted: TurnPolicy._speech_started,
    CallerBargeIn: TurnPolicy._barge_in,
    CallerSpeechEnded: TurnPolicy._speech_ended,
    CallerSpeechDropped: TurnPolicy._speech_dropped,
    Transcribed: TurnPolicy._transcribed,
    DigitPressed: TurnPolicy._digit,
    PlayoutProgress: TurnPolicy._playout,
    Tick: TurnPolicy._tick,
    TurnStarted: TurnPolicy._turn_started,
    Interrupted: TurnPolicy._interrupted,
    ReplyFinished: TurnPolicy._reply_finished,
}
