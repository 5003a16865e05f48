"""Look-ahead peak limiter: loud TTS is turned down smoothly, never hard-clipped.

Rules of this file: pure and synchronous (numpy only, no clock). State is the
carried history of the last few milliseconds, so the output does not depend on
how the input was chunked (bit-exact). One :class:`Limiter` per utterance;
:meth:`Limiter.flush` emits the delayed tail and resets.

Choice: a brick-wall *look-ahead* limiter with hold, rather than a soft-knee
compressor. A soft knee changes quiet audio too and still needs a hard clip
behind it for the peaks it lets through; the look-ahead limiter leaves audio
below the ceiling bit-exact and *guarantees* ``|y| <= ceiling``, at the price
of a fixed delay of ``attack`` (5 ms). Per sample ``n``::

    t[n] = min(1, ceiling / |x[n]|)      gain sample n needs
    h[n] = min(t[n-W+1 .. n])            W = attack + hold samples
    g[n] = mean(h[n-A+1 .. n])           A = attack samples: a linear ramp
    y[n] = x[n-(A-1)] * g[n]             output delayed by A-1 samples

The A-1 zeros the delay line starts with are dropped, so the output stays
time-aligned with the input and exactly as many samples leave as enter.

Every ``h`` averaged into ``g[n]`` saw sample ``n-(A-1)`` because ``W >= A``,
so ``g[n] <= t[n-(A-1)]``. The gain ramps down over the attack before a peak,
stays down for the hold (20 ms: longer than a half period of any voice
fundamental, so a sustained loud vowel is scaled, not modulated) and ramps
back up over ``A`` samples. Gains are rounded down to multiples of 2^-24 and
summed in float64, so the running sums are exact and chunking cannot change a
bit. Written here because neither soxr nor numpy has one, and plugin hosts
(pedalboard and the like) are large binary dependencies for 60 lines of numpy.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

_QUANT = float(2**24)


def running_min(a: F64, width: int) -> F64:
    """``out[i] = min(a[i : i + width])`` for every full window (van Herk/Gil-Werman, O(n))."""
    n = len(a)
    if n < width:
        return np.empty(0, dtype=np.float64)
    pad = (-n) % width
    blocks = np.concatenate([a, np.full(pad, np.inf)]).reshape(-1, width)
    fwd = np.minimum.accumulate(blocks, axis=1).ravel()
    bwd = np.minimum.accumulate(blocks[:, ::-1], axis=1)[:, ::-1].ravel()
    out: F64 = np.minimum(bwd[: n - width + 1], fwd[width - 1 : n])
    return out


class Limiter:
    """Streaming look-ahead peak limiter for mono float32 audio."""

    def __init__(self, sample_rate: int, ceiling_db: float = -1.0, attack_s: float = 0.005, hold_s: float = 0.020):
        if not (np.isfinite(ceiling_db) and ceiling_db <= 0.0):
            raise ValueError(f"ceiling_db must be finite and <= 0, got {ceiling_db}")
        if sample_rate <= 0 or attack_s <= 0 or hold_s < 0:
            raise ValueError("sample_rate and attack_s must be positive, hold_s non-negative")
        self.ceiling = float(10.0 ** (ceiling_db / 20.0))
        self.attack = max(1, round(attack_s * sample_rate))  # A: ramp length in samples
        self.window = self.attack + round(hold_s * sample_rate)  # W: how far back a peak still counts
        self.delay = self.attack - 1  # output lags input by this many samples
        self.reset()

    def reset(self) -> None:
        self._x: F32 = np.zeros(self.delay, dtype=np.float32)  # delay line
        self._t: F64 = np.ones(self.window - 1, dtype=np.float64)  # last W-1 needed gains
        self._h: F64 = np.ones(self.attack - 1, dtype=np.float64)  # last A-1 held gains
        self._preroll = self.delay  # leading delay-line zeros not yet dropped

    def _needed_gain(self, x: F32) -> F64:
        ax = np.abs(x.astype(np.float64))
        t = np.ones(len(x), dtype=np.float64)
        loud = ax > self.ceiling
        t[loud] = np.floor(self.ceiling / ax[loud] * _QUANT) / _QUANT
        return t

    def feed(self, x: F32) -> F32:
        """Limit one chunk. Output is time-aligned with the input (the first ``delay`` samples
        of a stream are withheld, not padded), so it lags by at most ``delay`` samples and
        after :meth:`flush` exactly as many samples came out as went in."""
        if x.dtype != np.float32 or x.ndim != 1:
            raise TypeError(f"expected 1-D float32 samples, got {x.dtype} with {x.ndim} dims")
        n = len(x)
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        t = np.concatenate([self._t, self._needed_gain(x)])
        xd = np.concatenate([self._x, x])
        if t.min() == 1.0 and (self._h.size == 0 or self._h.min() == 1.0):  # nothing loud in reach: a pure delay
            y: F32 = xd[:n].copy()
            h = np.concatenate([self._h, np.ones(n)])
        else:
            h = np.concatenate([self._h, running_min(t, self.window)])
            sums = np.cumsum(np.concatenate([[0.0], h]))  # exact: 2^-24 multiples, float64
            g = (sums[self.attack :] - sums[:-self.attack]) / self.attack
            y = (xd[:n] * g).astype(np.float32)
        self._x, self._t, self._h = xd[n:], t[n:], h[n:]
        if self._preroll:
            drop = min(self._preroll, n)
            self._preroll -= drop
            y = y[drop:]
        return y

    def flush(self) -> F32:
        """Emit the samples still held back and start over."""
        y = self.feed(np.zeros(self.delay, dtype=np.float32))
        self.reset()
        return y
