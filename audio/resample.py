"""Engine audio → Twilio mu-law 8 kHz, one stateful converter per utterance.

Rules of this file: pure and synchronous (CPU only; no ``async``, no clock).
One :class:`ToTwilio` per utterance, fed chunks of one declared format;
:meth:`ToTwilio.flush` must be called at the end of the utterance, or the last
~50 ms (resampler and limiter tails) are lost. Output is mu-law ``bytes`` of
any length: re-frame with :class:`audio.framing.Framer`.

The chain (see docs/audio.md)::

    float32 / int16 at the engine rate            (ChatTTS 24 kHz f32, Piper 22.05 kHz s16)
      → float32, non-finite samples → 0 (counted)
      → soxr.ResampleStream(rate → 8000, quality HQ)   stateful: no seam clicks; -116 dB aliasing
      → gain (AgentSpec.tts.gain_db)
      → look-ahead peak limiter at -1 dBFS            audio.limiter: no harsh clipping
      → clip to int16 → G.711 mu-law                  audio.codec, bit-exact with audioop

Mu-law 8 kHz (Cartesia ``pcm_mulaw``) is passed through untouched when the gain
is 0 dB, otherwise decoded and sent through gain and limiter.

soxr quality HQ: flat to 3.6 kHz, aliasing more than 116 dB down, about 80 ms
of input before its first output; VHQ doubles that start latency for accuracy
the 13-bit mu-law output cannot show, and LQ already droops 8 dB at 3.4 kHz.
The chain's output does not depend on how the input is chunked (bit-exact).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import soxr

from audio.codec import float_to_int16, lin2ulaw, ulaw_to_float
from audio.formats import TWILIO_FORMAT, AudioChunk, AudioFormat, Encoding
from audio.limiter import Limiter

F32 = npt.NDArray[np.float32]

TWILIO_RATE = TWILIO_FORMAT.sample_rate
SOXR_QUALITY = "HQ"


class ToTwilio:
    """Convert chunks of one format to 8 kHz mu-law bytes."""

    def __init__(self, source: AudioFormat, gain_db: float = 0.0, *, ceiling_db: float = -1.0) -> None:
        if not math.isfinite(gain_db):
            raise ValueError(f"gain_db must be finite, got {gain_db}")
        if source.encoding is Encoding.MULAW and source.sample_rate != TWILIO_RATE:
            raise ValueError(f"cannot resample mu-law at {source.sample_rate} Hz")
        self.source = source
        self.gain = float(10.0 ** (gain_db / 20.0))
        #: samples that were NaN or infinite and were replaced (NaN → 0, ±inf → ±1)
        self.nonfinite_samples = 0
        self._passthrough = source == TWILIO_FORMAT and gain_db == 0.0
        self._stream = (
            None
            if source.sample_rate == TWILIO_RATE
            else soxr.ResampleStream(source.sample_rate, TWILIO_RATE, 1, dtype="float32", quality=SOXR_QUALITY)
        )
        self._limiter = Limiter(TWILIO_RATE, ceiling_db)

    @property
    def delay_s(self) -> float:
        """Fixed latency added in front of the audio (the limiter's look-ahead)."""
        return 0.0 if self._passthrough else self._limiter.delay / TWILIO_RATE

    def _to_float(self, chunk: AudioChunk) -> F32:
        if chunk.format != self.source:
            raise ValueError(f"chunk format {chunk.format} does not match converter format {self.source}")
        data = chunk.data
        if isinstance(data, bytes):  # mu-law 8 kHz with gain
            return ulaw_to_float(data)
        if data.dtype == np.int16:
            return data.astype(np.float32) / np.float32(32768.0)
        x: F32 = np.ascontiguousarray(data, dtype=np.float32)
        if not np.isfinite(x).all():
            self.nonfinite_samples += int(np.count_nonzero(~np.isfinite(x)))
            x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
        return x

    def _encode(self, x8k: F32) -> bytes:
        if self.gain != 1.0:
            x8k = x8k * np.float32(self.gain)
        y = self._limiter.feed(x8k)
        return lin2ulaw(float_to_int16(y)) if len(y) else b""

    def feed(self, chunk: AudioChunk) -> bytes:
        """Convert one chunk; may return less (or more) than its duration: soxr emits in bursts."""
        if self._passthrough:
            if chunk.format != self.source:
                raise ValueError(f"chunk format {chunk.format} does not match converter format {self.source}")
            assert isinstance(chunk.data, bytes)
            return chunk.data
        x = self._to_float(chunk)
        if self._stream is not None:
            x = self._stream.resample_chunk(x, last=False)
        return self._encode(x)

    def flush(self) -> bytes:
        """End of utterance: emit the resampler's and limiter's tails; the converter starts over."""
        if self._passthrough:
            return b""
        out = b""
        if self._stream is not None:
            out = self._encode(self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
            self._stream.clear()
        tail = self._limiter.flush()
        return out + (lin2ulaw(float_to_int16(tail)) if len(tail) else b"")
