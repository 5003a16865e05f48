"""Look-ahead peak limiter: never above the ceiling, smooth, transparent below it, chunk-invariant."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audio.limiter import Limiter, running_min

F32 = npt.NDArray[np.float32]
RATE = 8000


def run(lim: Limiter, x: F32, chunk: int) -> F32:
    parts = [lim.feed(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    return np.concatenate([*parts, lim.flush()])


def sine(freq: float, amp: float, seconds: float, rate: int = RATE) -> F32:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def distortion_db(y: F32, freq: float) -> float:
    """Energy outside the fundamental relative to it (``y`` must hold whole periods)."""
    spec = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    k = round(freq * len(y) / RATE)
    return float(10 * np.log10((spec.sum() - spec[k]) / spec[k]))


def test_quiet_audio_passes_bit_exact_and_time_aligned() -> None:
    x = sine(440, 0.8, 0.5)
    y = run(Limiter(RATE), x, 37)
    assert len(y) == len(x)
    assert np.array_equal(y, x)


def test_loud_sine_is_scaled_not_clipped() -> None:
    lim = Limiter(RATE)
    x = sine(1000, 2.0, 1.0)  # 6 dB over full scale
    y = run(lim, x, 160)
    assert np.max(np.abs(y)) <= lim.ceiling * (1 + 1e-6)
    steady = slice(800, -800)
    scaled = x[steady] * (lim.ceiling / 2.0)
    # after the attack the gain is constant: a clean, quieter sine
    assert np.max(np.abs(y[steady] - scaled)) < 1e-4
    assert distortion_db(y[steady], 1000) < -60
    assert distortion_db(np.clip(x[steady], -lim.ceiling, lim.ceiling), 1000) > -30  # what a hard clip does


def test_gain_ramps_before_the_peak_over_the_attack() -> None:
    lim = Limiter(RATE)
    x = np.full(400, 0.1, dtype=np.float32)
    x[200:] = 4.0  # a step 32 dB up, far over the ceiling
    y = run(lim, x, 400)
    gain = y / x
    assert np.max(np.abs(y)) <= lim.ceiling * (1 + 1e-6)
    # the look-ahead turns the gain down before the step arrives, in equal small steps
    assert gain[200 - lim.attack + 1] < 1.0 and gain[200 - lim.attack] == 1.0
    assert np.max(np.abs(np.diff(gain[: 200]))) <= 1.0 / lim.attack + 1e-6


def test_gain_recovers_after_hold_and_release() -> None:
    lim = Limiter(RATE)
    x = sine(500, 0.5, 0.5)
    x[800:880] *= 6.0  # a 10 ms burst
    y = run(lim, x, 160)
    back = 880 + lim.window  # hold plus release after the burst ends
    assert np.array_equal(y[back:], x[back:])
    assert not np.array_equal(y[880 : 880 + lim.window - lim.attack], x[880 : 880 + lim.window - lim.attack])


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    scale=st.floats(0.1, 20.0),
    chunks=st.lists(st.integers(1, 700), min_size=1, max_size=12),
)
def test_never_above_ceiling_and_chunking_changes_nothing(seed: int, scale: float, chunks: list[int]) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(3000) * scale * rng.uniform(0, 1, 3000) ** 3).astype(np.float32)
    lim = Limiter(RATE)
    whole = run(lim, x, len(x))
    assert len(whole) == len(x)
    assert np.max(np.abs(whole)) <= lim.ceiling * (1 + 1e-6)
    parts, i = [], 0
    for size in chunks * (len(x) // sum(chunks) + 1):
        parts.append(lim.feed(x[i : i + size]))
        i += size
        if i >= len(x):
            break
    assert np.array_equal(np.concatenate([*parts, lim.flush()]), whole)


def test_flush_emits_held_back_tail_even_for_short_input() -> None:
    lim = Limiter(RATE)
    x = np.linspace(-0.5, 0.5, 10).astype(np.float32)  # shorter than the look-ahead
    assert len(lim.feed(x)) == 0
    assert np.array_equal(lim.flush(), x)
    assert len(lim.flush()) == 0  # nothing left, fresh state


def test_running_min_matches_naive() -> None:
    a = np.random.default_rng(1).standard_normal(1000)
    for w in (1, 2, 7, 240, 1000):
        naive = np.array([a[i : i + w].min() for i in range(len(a) - w + 1)])
        assert np.array_equal(running_min(a, w), naive)
    assert len(running_min(a[:3], 5)) == 0


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Limiter(RATE, ceiling_db=1.0)
    with pytest.raises(ValueError):
        Limiter(RATE, ceiling_db=float("nan"))
    with pytest.raises(ValueError):
        Limiter(0)
    with pytest.raises(TypeError):
        Limiter(RATE).feed(np.zeros(10, dtype=np.float64))
