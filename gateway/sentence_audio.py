"""One sentence's audio on its way to Twilio frames, and what to do when its provider dies mid-way.

Rules of this file: pure. No asyncio, no clock, no network: the call session
(:mod:`gateway.call`) feeds chunks in, queues the frames, and asks
:func:`plan_restart` what a :class:`tts.fallback.SpeechRestart` means for the
audio already on its way.

**SentenceAudio** converts (``ToTwilio``) and frames (``Framer``) the chunks of
the provider that currently owns the sentence and counts the frames it handed
out. :meth:`SentenceAudio.restart` throws the converter and framer away (the
next provider's audio may have another format) and returns how many frames the
failed attempt produced, so the session can take back those still queued.

**plan_restart.** Frames already written to Twilio cannot be recalled one by
one; ``clear`` drops Twilio's whole buffer and makes it echo every pending mark
at once. So ``clear`` is sent on a restart only when

1. some frames of the failed attempt were written (otherwise dropping the
   local queue was enough: the caller hears nothing of the failed attempt),
2. no mark sent before this sentence is still unechoed (mark echoes are
   Twilio's own word that every earlier sentence has played: a ``clear`` would
   otherwise cut an earlier sentence), and
3. part of the failed attempt is still unplayed by the pacer's estimate
   (otherwise there is nothing left to drop).

When (2) fails, at most the lead plus one frame (~120 ms by default) of the
failed attempt was written and it plays out before the replacement; re-sending
the earlier tail after a ``clear`` would rely on the pacer's estimate of what
Twilio has played, which ignores network delay, and could repeat or lose a
piece of an earlier sentence: a short fragment is the smaller harm.
"""

from __future__ import annotations

from dataclasses import dataclass

from audio.formats import FRAME_SECONDS, AudioChunk
from audio.framing import Framer
from audio.resample import ToTwilio


class SentenceAudio:
    """Chunks of the provider speaking a sentence → exact 160-byte mu-law frames, attempt by attempt."""

    def __init__(self, gain_db: float = 0.0) -> None:
        self.gain_db = gain_db
        self.provider = ""  # the provider whose audio is being framed ("" before the first audio)
        self.audio_s = 0.0  # audio of the current attempt, seconds
        self.frames: list[bytes] = []  # every frame of the current attempt, in order (phrase cache)
        self.restarts = 0
        self.first_audio_s: float | None = None  # the sentence queued → its first audio (set by the call)
        self._framer = Framer()
        self._converter: ToTwilio | None = None

    def feed(self, chunk: AudioChunk, provider: str) -> list[bytes]:
        self.provider = provider
        self.audio_s += chunk.duration
        if self._converter is None or self._converter.source != chunk.format:
            self._converter = ToTwilio(chunk.format, gain_db=self.gain_db)
        out = self._framer.feed(self._converter.feed(chunk))
        self.frames += out
        return out

    def flush(self) -> list[bytes]:
        """End of the sentence: the converter's and framer's tails (the last frame padded with silence)."""
        out = self._framer.feed(self._converter.flush()) if self._converter is not None else []
        out += self._framer.flush()
        self.frames += out
        return out

    def restart(self) -> int:
        """The owner failed: forget its audio; returns how many frames it had produced."""
        produced = len(self.frames)
        self.restarts += 1
        self.provider, self.audio_s, self.frames = "", 0.0, []
        self._framer, self._converter = Framer(), None
        return produced


@dataclass(frozen=True, slots=True)
class RestartPlan:
    clear: bool  # send `clear` to Twilio (drops the failed attempt's unplayed frames there)
    unplayed_s: float  # failed attempt's audio written but not yet played (pacer's estimate)
    reason: str


def plan_restart(*, written_frames: int, buffered_s: float, earlier_unplayed: bool,
                 frame_s: float = FRAME_SECONDS) -> RestartPlan:
    """What to do at Twilio about a failed attempt that wrote ``written_frames`` frames.

    ``buffered_s``: the pacer's estimate of audio still queued at Twilio; ``earlier_unplayed``: some mark
    sent before this sentence's audio has not been echoed yet.
    """
    if written_frames < 0 or buffered_s < 0:
        raise ValueError("written_frames and buffered_s must be >= 0")
    unplayed = min(written_frames * frame_s, buffered_s)
    if written_frames == 0:
        return RestartPlan(False, 0.0, "nothing written: dropped locally")
    if earlier_unplayed:
        return RestartPlan(False, unplayed, "an earlier sentence is still playing at Twilio")
    if unplayed < frame_s / 2:
        return RestartPlan(False, 0.0, "the failed attempt has already played")
    return RestartPlan(True, unplayed, "only the failed attempt is buffered at Twilio")
