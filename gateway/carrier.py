"""The seam between a carrier (Twilio, a browser console...) and the call core.

Rules of this file: value types and protocols only; no I/O, no carrier names.
A carrier adapter turns its wire into :data:`CallEvent` values and carries out
the call core's requests (:class:`CarrierLink`); the call core
(:class:`gateway.call.CallSession`) and the conversation
(:class:`gateway.conversation.Conversation`) see nothing else of the carrier.

Audio on the seam is 8 kHz mono: caller audio arrives as an
:class:`audio.formats.AudioChunk` (mu-law or PCM); agent audio leaves as 20 ms
frames of 8 kHz mu-law (:data:`audio.formats.TWILIO_FORMAT`, 160 bytes), each
in order, paced by the call core at real time plus a small lead. A *mark* is a
name sent between frames; the carrier reports it back (:class:`MarkHeard`) once
every frame sent before it has played to the caller, and forgets the marks it
drops on :meth:`CarrierLink.clear`. See ``docs/architecture.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from audio.formats import AudioChunk

CALL_SAMPLE_RATE = 8000
DIGITS = frozenset("0123456789*#ABCD")


# ---- events: carrier → call core --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CallerAudio:
    """What the caller said, in order; ``at_s`` is where it starts on the stream clock (for the recording)."""

    chunk: AudioChunk
    at_s: float

    def __post_init__(self) -> None:
        if self.chunk.format.sample_rate != CALL_SAMPLE_RATE:
            raise ValueError(f"caller audio must be {CALL_SAMPLE_RATE} Hz, got {self.chunk.format.sample_rate} Hz "
                             "(resample in the carrier adapter)")
        if self.at_s < 0:
            raise ValueError(f"at_s must not be negative, got {self.at_s}")


@dataclass(frozen=True, slots=True)
class Digit:
    """A keypress (DTMF)."""

    digit: str

    def __post_init__(self) -> None:
        if self.digit not in DIGITS:
            raise ValueError(f"digit must be one of {''.join(sorted(DIGITS))}, got {self.digit!r}")


@dataclass(frozen=True, slots=True)
class MarkHeard:
    """Playout progress: everything sent before mark ``name`` has played to the caller."""

    name: str


@dataclass(frozen=True, slots=True)
class HungUp:
    """The carrier side ended; always the last event.

    ``outcome``: ``completed`` (the carrier ended the stream), ``caller_hangup`` (the connection
    dropped), ``shutdown`` (this server is shutting down and closed it) or ``protocol_error`` (the carrier
    sent something we cannot accept).
    """

    outcome: str


CallEvent = CallerAudio | Digit | MarkHeard | HungUp


class CarrierError(Exception):
    """The carrier could not do what was asked (hang up, transfer); ``reason`` is for the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---- the adapter: call core → carrier ---------------------------------------------------------------------------
class CarrierLink(Protocol):
    """One call's connection to its carrier. One adapter per carrier (Twilio: :mod:`gateway.twilio.link`)."""

    @property
    def call_id(self) -> str:
        """The carrier's id of the call (Twilio: the CallSid): logs, recording name, per-call tasks."""
        ...

    @property
    def open(self) -> bool:
        """Audio, marks and clears may still be sent (False once the carrier stopped the stream)."""
        ...

    async def receive(self) -> CallEvent:
        """The next event; a :class:`HungUp` is the last one (do not call again after it)."""
        ...

    async def send_audio(self, frames: Sequence[bytes]) -> None:
        """20 ms frames of 8 kHz mu-law (160 bytes each), in order, to be played after everything sent before
        them (the session paces them: usually five at a time, ``VOICEGW_PLAYOUT_FRAMES_PER_WRITE``)."""
        ...

    async def send_mark(self, name: str) -> None:
        """A mark after the frames sent so far; reported back as :class:`MarkHeard` once they played."""
        ...

    async def clear(self) -> None:
        """Drop the audio (and its marks) sent but not yet played; the caller hears silence at once."""
        ...

    async def hang_up(self) -> bool:
        """Ask the carrier to end the call. True: it will end the stream itself (a :class:`HungUp` follows);
        False: nothing to ask, the call core ends the call by closing the link. Raises :class:`CarrierError`."""
        ...

    async def transfer(self, number: str, say_first: str | None = None) -> None:
        """Hand the caller to ``number`` (the carrier then ends the stream). Raises :class:`CarrierError`."""
        ...

    async def aclose(self) -> None:
        """The call is over: send nothing more. Idempotent. (Whoever accepted the connection closes it.)"""
        ...


@runtime_checkable
class HotAudioLink(Protocol):
    """A carrier link that can hand caller audio to the call core as it arrives (Twilio's, under the direct
    WebSocket protocol): the call core sets ``on_audio``; the link calls it synchronously for each chunk, in
    order, as long as nothing else is queued for :meth:`CarrierLink.receive`. True: taken; False: the chunk
    comes through :meth:`CarrierLink.receive` after all (and so does everything after it, in order)."""

    on_audio: Callable[[CallerAudio], bool] | None


class CallListener(Protocol):
    """What drives a call's agent side (:class:`gateway.conversation.Conversation`)."""

    async def start(self) -> None:
        """The call is up: greet (the call's own plain greeting is used when a call has no listener)."""
        ...

    async def on_call_event(self, event: CallEvent) -> None:
        """Every event, after the call core has recorded it (marks already in the playout ledger)."""
        ...

    def take_audio_now(self, audio: CallerAudio) -> bool:
        """Caller audio on the hot path (see :class:`HotAudioLink`): True when it was handled here and now,
        synchronously; False: it comes through :meth:`on_call_event` as usual."""
        ...

    async def aclose(self) -> None:
        """The call ended: stop every task."""
        ...
