"""What a call tells whoever watches it (the browser console, logs): agent sentences, recognition, barge-ins.

Rules of this file: value types only, no I/O, no carrier names. The call core
(:class:`gateway.call.CallSession`) and the conversation
(:class:`gateway.conversation.Conversation`) hand these to their ``notes``
callbacks as things happen; a watcher must not block (queue and return).
Times are ``time.monotonic()`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.ops.logs import TurnLatency


@dataclass(frozen=True, slots=True)
class SentenceQueued:
    """An agent sentence was queued; ``mark`` is sent after its last frame."""

    mark: str
    text: str
    kind: str
    turn: int


@dataclass(frozen=True, slots=True)
class SentenceSpoken:
    """The sentence's audio is all queued: who spoke it, and how long its first audio took."""

    mark: str
    provider: str  # "apology" when every provider failed and the apology was said instead
    fallback: bool  # not the first provider of the agent's chain
    first_audio_s: float | None  # queued → first audio from the engine (None: from the phrase cache)


@dataclass(frozen=True, slots=True)
class CallerSaid:
    """The recognizer's transcript of one caller utterance."""

    text: str
    stopped_at: float  # when the caller stopped speaking
    endpointed_at: float  # when the end of the utterance was decided
    recognized_at: float  # when the transcript was ready


@dataclass(frozen=True, slots=True)
class AgentTurn:
    """The agent starts answering (turn ``turn``); ``cause``: greeting, speech, dtmf, reprompt, goodbye…"""

    turn: int
    cause: str
    origin: float | None  # the caller's end of speech (or key press) this turn answers


@dataclass(frozen=True, slots=True)
class TurnHeard:
    """The first frame of turn ``turn`` played to the caller."""

    turn: int
    at: float


@dataclass(frozen=True, slots=True)
class BargedIn:
    """The caller interrupted the agent (``cause``: speech or dtmf); its unheard sentences were cleared."""

    turn: int
    cause: str


# One answered caller turn's latency breakdown (endpoint wait, recognition, logic, first audio, first heard),
# sent when its first frame is heard: :class:`gateway.ops.logs.TurnLatency` (also in the call summary).
CallNote = SentenceQueued | SentenceSpoken | CallerSaid | AgentTurn | TurnHeard | BargedIn | TurnLatency
