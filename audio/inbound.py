"""Caller audio: Twilio mu-law 8 kHz → float32 PCM for the VAD and the recognizer.

Rules of this file: pure and synchronous (numpy only, no clock). One
:class:`FromTwilio` per call (or per stream); state carries across frames so
frame seams are invisible. :meth:`FromTwilio.flush` emits the filter tail at
the end of the stream.

At 8 kHz this is the G.711 decoder scaled to [-1, 1). At 16 kHz (Whisper,
Silero) it is a 2x polyphase upsampler with a 63-tap Kaiser-windowed half-band
FIR, written here instead of using soxr because soxr's stream resampler emits
in bursts: at 8 → 16 kHz it returns nothing for the first 120 ms of 20 ms
frames and then ~100 ms at once (measured, python-soxr 1.1), which would add
up to a tenth of a second to every end-of-turn decision. This filter returns
exactly 320 samples for every 160-byte frame, delays by a fixed 2 ms, passes
0-3.4 kHz within 0.02 dB and puts the images of 0-3.3 kHz (4.7-8 kHz) more
than 80 dB down (response computed in tests/test_inbound.py).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from audio.codec import ulaw_to_float
from audio.formats import TWILIO_FORMAT

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

HALF_TAPS = 16  # K: the interpolating phase has 2K taps; delay is K input samples
_KAISER_BETA = 8.0


def _interpolator(k: int = HALF_TAPS, beta: float = _KAISER_BETA) -> F64:
    """The odd-offset taps of a (4K-1)-tap half-band lowpass, scaled for 2x upsampling."""
    offsets = np.arange(-(2 * k - 1), 2 * k, 2)  # -(2K-1), ..., -1, 1, ..., 2K-1
    window = np.kaiser(4 * k - 1, beta)[offsets + 2 * k - 1]
    taps = np.sinc(offsets / 2.0) * window
    out: F64 = taps / taps.sum()  # DC gain exactly 1
    return out


class FromTwilio:
    """Decode mu-law 8 kHz frames to float32 at ``out_rate`` (8000 or 16000)."""

    def __init__(self, out_rate: int = 16000) -> None:
        if out_rate not in (8000, 16000):
            raise ValueError(f"out_rate must be 8000 or 16000, got {out_rate}")
        self.out_rate = out_rate
        self._taps = _interpolator()
        self.reset()

    @property
    def delay_s(self) -> float:
        """Fixed latency of the output relative to the input."""
        return 0.0 if self.out_rate == TWILIO_FORMAT.sample_rate else HALF_TAPS / TWILIO_FORMAT.sample_rate

    def reset(self) -> None:
        self._history: F64 = np.zeros(2 * HALF_TAPS - 1, dtype=np.float64)

    def feed(self, mulaw: bytes | bytearray | memoryview) -> F32:
        """One payload of any length → ``len(mulaw) * out_rate / 8000`` samples, no bursts."""
        if not isinstance(mulaw, bytes | bytearray | memoryview):
            raise TypeError(f"mu-law audio must be bytes, got {type(mulaw).__name__}")
        x = ulaw_to_float(bytes(mulaw)).astype(np.float64)
        if self.out_rate == TWILIO_FORMAT.sample_rate:
            return x.astype(np.float32)
        return self._upsample(x)

    def _upsample(self, x: F64) -> F32:
        n = len(x)
        buf = np.concatenate([self._history, x])
        self._history = buf[n:]
        out = np.empty(2 * n, dtype=np.float32)
        if n:
            k = HALF_TAPS
            out[0::2] = buf[k - 1 : k - 1 + n]  # the original samples, K late
            out[1::2] = sliding_window_view(buf, 2 * k) @ self._taps  # halfway between each and the next
        return out

    def flush(self) -> F32:
        """End of stream: emit the ``delay_s`` still inside the filter and start over."""
        if self.out_rate == TWILIO_FORMAT.sample_rate:
            return np.zeros(0, dtype=np.float32)
        out = self._upsample(np.zeros(HALF_TAPS, dtype=np.float64))
        self.reset()
        return out
