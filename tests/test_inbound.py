"""FromTwilio: caller mu-law 8 kHz → float32 at 8 or 16 kHz, stateful, steady output, no images."""

from __future__ import annotations

import warnings

import numpy as np
import numpy.typing as npt
import pytest

from audio.codec import float_to_int16, lin2ulaw
from audio.inbound import HALF_TAPS, FromTwilio

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

F32 = npt.NDArray[np.float32]


def mulaw_tone(freq: float, amp: float, seconds: float) -> bytes:
    t = np.arange(int(seconds * 8000)) / 8000
    return lin2ulaw(float_to_int16((amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)))


def run(conv: FromTwilio, data: bytes, chunk: int) -> F32:
    parts = [conv.feed(data[i : i + chunk]) for i in range(0, len(data), chunk)]
    return np.concatenate([*parts, conv.flush()])


def level_db(spec: npt.NDArray[np.float64], freq: float, n: int, rate: int) -> float:
    k = round(freq * n / rate)
    return float(10 * np.log10(spec[k - 3 : k + 4].sum() + 1e-30))


def test_8k_is_the_g711_decoder_scaled() -> None:
    data = bytes(range(256)) * 3
    out = run(FromTwilio(8000), data, 160)
    assert out.dtype == np.float32
    expected = np.frombuffer(audioop.ulaw2lin(data, 2), dtype=np.int16) / 32768.0
    assert np.array_equal(out, expected.astype(np.float32))


def test_16k_returns_exactly_two_samples_per_byte_every_frame() -> None:
    conv = FromTwilio(16000)
    data = mulaw_tone(440, 0.5, 0.5)
    for i in range(0, len(data), 160):
        assert len(conv.feed(data[i : i + 160])) == 320  # no bursts: the VAD sees each frame at once
    assert len(conv.flush()) == 2 * HALF_TAPS
    assert conv.delay_s == pytest.approx(0.002)


@pytest.mark.parametrize("chunk", [17, 160, 509])
def test_streamed_equals_one_shot(chunk: int) -> None:
    data = mulaw_tone(440, 0.5, 0.7) + bytes(np.random.default_rng(2).integers(0, 256, 999, dtype=np.uint8))
    one_shot = run(FromTwilio(16000), data, len(data))
    assert len(one_shot) == 2 * (len(data) + HALF_TAPS)
    np.testing.assert_allclose(run(FromTwilio(16000), data, chunk), one_shot, rtol=0, atol=1e-6)


@pytest.mark.parametrize("freq", [300, 1000, 3000, 3300])
def test_16k_passes_the_phone_band_and_rejects_images(freq: int) -> None:
    amp, n = 0.5, 16000
    out = run(FromTwilio(16000), mulaw_tone(freq, amp, 1.5), 160)[2 * HALF_TAPS :][4000 : 4000 + n]
    t = (np.arange(len(out)) + 4000) / 16000
    ideal = amp * np.sin(2 * np.pi * freq * t)
    assert abs(20 * np.log10(np.std(out) / np.std(ideal))) < 0.1  # level, after removing the 2 ms delay
    spec = np.abs(np.fft.rfft(out * np.hanning(n))) ** 2
    image = 8000 - freq  # where zero-stuffing would mirror the tone
    assert level_db(spec, freq, n, 16000) - level_db(spec, image, n, 16000) >= 60


def test_silence_decodes_to_exact_zeros() -> None:
    for rate in (8000, 16000):
        out = run(FromTwilio(rate), b"\xff" * 480, 160)
        assert not out.any()


def test_state_carries_across_frames_and_resets_after_flush() -> None:
    data = mulaw_tone(1000, 0.5, 0.1)
    conv = FromTwilio(16000)
    first = run(conv, data, 160)
    second = run(conv, data, 160)
    assert np.array_equal(first, second)
    # a fresh converter per frame (history lost) differs: the state is what makes seams clean
    fresh = np.concatenate([FromTwilio(16000).feed(data[i : i + 160]) for i in range(0, len(data), 160)])
    assert not np.allclose(fresh, first[: len(fresh)], atol=1e-3)


def test_bad_input_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="8000 or 16000"):
        FromTwilio(44100)
    with pytest.raises(TypeError, match="bytes"):
        FromTwilio(16000).feed("\xff" * 160)  # type: ignore[arg-type]
    assert len(FromTwilio(16000).feed(bytearray(b"\xff" * 10))) == 20
