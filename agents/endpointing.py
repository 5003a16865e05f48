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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agents.spec import TurnTaking

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


EndpointEvent = SpeechStart | BargeIn | SpeechEnd | SpeechDropped


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    threshold: float = 0.5
    end_silence_s: float = 0.5
    barge_in_s: float = 0.25
    pre_roll_s: float = 0.2
    tail_s: float = 0.2
    min_speech_s: float = 0.1
    max_utterance_s: float = 20.0

    @classmethod
    def from_turn_taking(cls, tt: TurnTaking) -> EndpointConfig:
        return cls(
            threshold=tt.vad_threshold,
            end_silence_s=tt.end_of_utterance_silence_ms / 1000.0,
            barge_in_s=tt.barge_in_min_speech_ms / 1000.0,
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

    @property
    def now(self) -> float:
        return self.samples / SAMPLE_RATE

    @property
    def in_speech(self) -> bool:
        return self._utt is not None

    def reset(self) -> None:
        """Forget any utterance in progress (stream time keeps counting)."""
        self._utt = None
        self._pre = []

    def feed(self, prob: float, chunk: F32) -> list[EndpointEvent]:
        cfg = self.config
        start = self.now
        dur = len(chunk) / SAMPLE_RATE
        self.samples += len(chunk)
        end = self.now
        events: list[EndpointEvent] = []
        if self._utt is None:
            if prob < cfg.threshold:
                self._pre.append(chunk)
                keep = max(1, int(np.ceil(cfg.pre_roll_s / max(dur, 1e-9))))
                del self._pre[:-keep]
                return events
            self._utt = [*self._pre, chunk]
            self._pre = []
            self._started_at = start
            self._voiced_s = dur
            self._silence_s = 0.0
            self._last_voiced_end = end
            self._barged = False
            events.append(SpeechStart(start))
        else:
            self._utt.append(chunk)
            if prob >= cfg.neg_threshold:
                self._voiced_s += dur
                self._silence_s = 0.0
                self._last_voiced_end = end
            else:
                self._silence_s += dur
        if not self._barged and self._voiced_s >= cfg.barge_in_s:
            self._barged = True
            events.append(BargeIn(end, self._started_at))
        too_long = end - self._started_at >= cfg.max_utterance_s
        if self._silence_s >= cfg.end_silence_s or too_long:
            events.append(self._finish())
        return events

    def _finish(self) -> SpeechEnd | SpeechDropped:
        cfg = self.config
        assert self._utt is not None
        pcm = np.concatenate(self._utt)
        self._utt = None
        if self._voiced_s < cfg.min_speech_s:
            return SpeechDropped(self._started_at, self._voiced_s)
        # Trim trailing silence beyond tail_s (keep the pre-roll at the front).
        total_end = self.now
        cut = len(pcm) - int(max(0.0, total_end - self._last_voiced_end - cfg.tail_s) * SAMPLE_RATE)
        return SpeechEnd(self._started_at, self._last_voiced_end, pcm[:cut])

    def flush(self) -> list[EndpointEvent]:
        """End of stream: close the utterance in progress, if any."""
        if self._utt is None:
            return []
        return [self._finish()]
