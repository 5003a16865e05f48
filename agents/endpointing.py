"""Endpointing: VAD probabilities in, utterances and barge-in signals out.

Rules of this file: pure and sans-I/O. Time is *stream time*, counted from the
samples fed (``samples / 8000``), so the same audio always gives the same
events whatever the wall clock does. Feed one ``(probability, samples)`` pair
per VAD chunk; :meth:`Endpointer.feed` returns the events that chunk caused.

The rule (hysteresis, as measured in the offline-speech notes): speech starts
when p >= ``threshold``; once started, chunks with p >= ``threshold - 0.15``
count as voiced; the utterance ends after ``end_silence_s`` of unvoiced
chunks. ``pre_roll_s`` of audio before the start is kept so the recognizer
hears the onset. :class:`BargeIn` fires once per utterance when its voiced
time reaches ``barge_in_s``; utterances with less voiced time than
``min_speech_s`` are dropped as noise (:class:`SpeechDropped`), and an
utterance longer than ``max_utterance_s`` is cut (Whisper hears 30 s at most).

Speculation (issue 13): after ``pause_s`` of silence inside an utterance a
:class:`SpeechPause` carries the audio so far, once per gap, so the runner can
decode it and decide the end of turn before ``end_silence_s`` (which is then
the *maximum* silence); :meth:`Endpointer.end_now` closes the utterance on the
runner's decision, and :class:`SpeechResume` says the caller went on (discard
the speculation).

Adaptive noise floor: the RMS level of chunks the VAD calls non-speech is
tracked, and a chunk only starts an utterance when it is also
``noise_margin_db`` above that floor; inside an utterance, a chunk needs a
margin too to count as voiced (the end margin, below). So steady hum or line noise that nudges the VAD
probability neither starts an utterance nor prolongs one.

Where speech ends: Silero's probability decays for 100-270 ms after the last
word (measured on the conversation fixtures), and breath or a room tail a few
dB above the line keeps a plain margin voiced as long. So inside an utterance
a chunk counts as voiced only when it is also ``end_margin_db`` above the
floor, whatever the VAD says. The caller's silence then starts within about a
chunk of the words' acoustic end (median 32 ms on the fixtures), and every
turn decision counts from there; words still count on a line as loud as the
speech (0 dB SNR), because the floor is learnt from what the VAD calls noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agents.spec import TurnTaking
from audio.level import power_db

SAMPLE_RATE = 8000
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class SpeechStart:
    at: float  # stream seconds at the start of the first voiced chunk


@dataclass(frozen=True, slots=True)
class BargeIn:
    at: float  # stream seconds when enough speech was heard to interrupt
    started_at: float


@dataclass(frozen=True, slots=True)
class SpeechEnd:
    started_at: float
    ended_at: float  # end of the last voiced chunk (the caller stopped here)
    pcm: F32  # 8 kHz float32 in [-1, 1]: pre-roll + speech + a little trailing silence


@dataclass(frozen=True, slots=True)
class SpeechDropped:
    started_at: float
    voiced_s: float


@dataclass(frozen=True, slots=True)
class SpeechPause:
    """``pause_s`` of silence inside an utterance: a chance to decode speculatively."""

    started_at: float
    ended_at: float  # end of the last voiced chunk
    at: float  # stream seconds now
    voiced_s: float
    pcm: F32  # the utterance so far, as SpeechEnd would carry it


@dataclass(frozen=True, slots=True)
class SpeechResume:
    """Voiced again after a :class:`SpeechPause`: any speculation on that pause is stale."""

    at: float


EndpointEvent = SpeechStart | BargeIn | SpeechEnd | SpeechDropped | SpeechPause | SpeechResume


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    threshold: float = 0.5
    end_silence_s: float = 0.5
    barge_in_s: float = 0.25
    pre_roll_s: float = 0.2
    tail_s: float = 0.2
    min_speech_s: float = 0.1
    max_utterance_s: float = 20.0
    pause_s: float | None = None  # emit SpeechPause at this silence (None: never)
    noise_margin_db: float | None = 3.0  # speech must be this far above the noise floor (None: no floor)
    noise_floor_db: float = -60.0  # initial floor (dBFS)
    end_margin_db: float = 8.0  # inside an utterance: voiced needs this far above the floor

    @classmethod
    def from_turn_taking(cls, tt: TurnTaking) -> EndpointConfig:
        """Silence-only endpointing: the utterance ends at ``end_of_utterance_silence_ms``."""
        return cls(
            threshold=tt.vad_threshold,
            end_silence_s=tt.end_of_utterance_silence_ms / 1000.0,
            barge_in_s=tt.barge_in_min_speech_ms / 1000.0,
            noise_margin_db=tt.noise_margin_db or None,  # 0 = the VAD alone
        )

    @classmethod
    def speculative(cls, tt: TurnTaking) -> EndpointConfig:
        """Speculative turn-taking: pause events at ``speculative_silence_ms``; the endpointer itself only
        ends an utterance at ``max_silence_ms`` (the runner ends it earlier with :meth:`Endpointer.end_now`)."""
        return cls(
            threshold=tt.vad_threshold,
            end_silence_s=tt.max_silence_ms / 1000.0,
            barge_in_s=tt.barge_in_min_speech_ms / 1000.0,
            pause_s=tt.speculative_silence_ms / 1000.0,
            noise_margin_db=tt.noise_margin_db or None,  # 0 = the VAD alone
        )

    @property
    def neg_threshold(self) -> float:
        return max(0.01, self.threshold - 0.15)


class Endpointer:
    def __init__(self, config: EndpointConfig | None = None) -> None:
        self.config = config or EndpointConfig()
        self.samples = 0  # samples fed so far (stream time * 8000)
        self._pre: list[F32] = []  # recent chunks while idle (pre-roll)
        self._utt: list[F32] | None = None  # chunks of the current utterance
        self._started_at = 0.0
        self._voiced_s = 0.0
        self._silence_s = 0.0
        self._last_voiced_end = 0.0
        self._barged = False
        self._paused = False  # a SpeechPause went out for the current gap
        self.noise_db = self.config.noise_floor_db  # adaptive noise floor (dBFS)

    @property
    def now(self) -> float:
        return self.samples / SAMPLE_RATE

    @property
    def in_speech(self) -> bool:
        return self._utt is not None

    @property
    def silence_s(self) -> float:
        """Stream seconds since the last voiced chunk of the utterance in progress (0 when idle)."""
        return self.now - self._last_voiced_end if self._utt is not None else 0.0

    @property
    def voiced_s(self) -> float:
        return self._voiced_s if self._utt is not None else 0.0

    def silence_through(self, pending: F32) -> float:
        """:attr:`silence_s` as it will be once ``pending`` is fed, when all of it is quiet.

        ``pending``: caller audio after the last chunk fed, not yet judged by the VAD. Audio below the end
        margin is unvoiced whatever the VAD says (see :meth:`feed`), so its silence is known as soon as it
        arrives: the runner can see the caller's pause a frame after it happens, not a VAD chunk and a batch
        tick later. Audio loud enough to be speech needs the VAD's verdict: then plain :attr:`silence_s`.
        """
        cfg = self.config
        if self._utt is None or cfg.noise_margin_db is None or not len(pending):
            return self.silence_s
        if power_db(pending) >= self.noise_db + self._margin_db():
            return self.silence_s
        return self.silence_s + len(pending) / SAMPLE_RATE

    def pause_through(self, pending: F32) -> list[EndpointEvent]:
        """The :class:`SpeechPause` that quiet ``pending`` audio (see :meth:`silence_through`) brings forward.

        Emitted at most once per gap, as :meth:`feed` would; if the VAD then judges that audio voiced,
        :meth:`feed` says :class:`SpeechResume` and the speculation is dropped as usual."""
        if self._utt is None:
            return []
        return self._pause(self.silence_through(pending), self.now + len(pending) / SAMPLE_RATE)

    def _pause(self, silence_s: float, at: float) -> list[EndpointEvent]:
        """The :class:`SpeechPause` for this much silence in the utterance, once per gap (else nothing)."""
        cfg = self.config
        assert self._utt is not None
        if (cfg.pause_s is None or self._paused or not cfg.pause_s <= silence_s < cfg.end_silence_s
                or self._voiced_s < cfg.min_speech_s):
            return []
        self._paused = True
        return [SpeechPause(self._started_at, self._last_voiced_end, at, self._voiced_s,
                            self._trimmed(np.concatenate(self._utt)))]

    def reset(self) -> None:
        """Forget any utterance in progress (stream time keeps counting)."""
        self._utt = None
        self._pre = []

    def _margin_db(self) -> float:
        """How far over the floor audio must be to count: the start margin, or the end margin inside an utterance."""
        cfg = self.config
        assert cfg.noise_margin_db is not None
        return cfg.noise_margin_db if self._utt is None else max(cfg.noise_margin_db, cfg.end_margin_db)

    def _loud_enough(self, prob: float, chunk: F32, level: float | None) -> bool:
        """Update the noise floor; is this chunk above it by the margin (the end margin inside an utterance)?"""
        cfg = self.config
        if cfg.noise_margin_db is None:
            return True
        if level is None:
            level = power_db(chunk)
        if prob < cfg.neg_threshold:  # the VAD calls it non-speech: it is what the line sounds like
            rate = 0.1 if level < self.noise_db else 0.05  # about the line's mean level; drops followed faster
            self.noise_db += rate * (level - self.noise_db)
            self.noise_db = min(self.noise_db, -20.0)  # never so high that normal speech is gated out
        return level >= self.noise_db + self._margin_db()

    def feed(self, prob: float, chunk: F32, level_db: float | None = None) -> list[EndpointEvent]:
        """The VAD's verdict on the next chunk; ``level_db``: the chunk's level when already measured
        (:mod:`audio.level`, e.g. by the VAD batcher), else it is measured here."""
        cfg = self.config
        start = self.now
        dur = len(chunk) / SAMPLE_RATE
        self.samples += len(chunk)
        end = self.now
        events: list[EndpointEvent] = []
        if not self._loud_enough(prob, chunk, level_db):
            prob = 0.0  # at the line's own level (or breath, a room tail): not speech, however sure the VAD is
        if self._utt is None:
            if prob < cfg.threshold:
                self._pre.append(chunk)
                keep = max(1, math.ceil(cfg.pre_roll_s / max(dur, 1e-9)))  # (math: np.ceil cost a µs a chunk)
                del self._pre[:-keep]
                return events
            self._utt = [*self._pre, chunk]
            self._pre = []
            self._started_at = start
            self._voiced_s = dur
            self._silence_s = 0.0
            self._last_voiced_end = end
            self._barged = False
            self._paused = False
            events.append(SpeechStart(start))
        else:
            self._utt.append(chunk)
            if prob >= cfg.neg_threshold:
                self._voiced_s += dur
                self._silence_s = 0.0
                self._last_voiced_end = end
                if self._paused:
                    self._paused = False
                    events.append(SpeechResume(start))
            else:
                self._silence_s += dur
                events += self._pause(self._silence_s, end)
        if not self._barged and self._voiced_s >= cfg.barge_in_s:
            self._barged = True
            events.append(BargeIn(end, self._started_at))
        too_long = end - self._started_at >= cfg.max_utterance_s
        if self._silence_s >= cfg.end_silence_s or too_long:
            events.append(self._finish())
        return events

    def _trimmed(self, pcm: F32) -> F32:
        """Trim trailing silence beyond tail_s (keep the pre-roll at the front)."""
        cut = len(pcm) - round(max(0.0, self.now - self._last_voiced_end - self.config.tail_s) * SAMPLE_RATE)
        return pcm[:cut]

    def _finish(self) -> SpeechEnd | SpeechDropped:
        cfg = self.config
        assert self._utt is not None
        pcm = np.concatenate(self._utt)
        self._utt = None
        if self._voiced_s < cfg.min_speech_s:
            return SpeechDropped(self._started_at, self._voiced_s)
        return SpeechEnd(self._started_at, self._last_voiced_end, self._trimmed(pcm))

    def end_now(self) -> list[EndpointEvent]:
        """The runner decided the turn is over (words look complete): close the utterance in progress."""
        return self.flush()

    def flush(self) -> list[EndpointEvent]:
        """End of stream: close the utterance in progress, if any."""
        if self._utt is None:
            return []
        return [self._finish()]
