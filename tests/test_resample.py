"""ToTwilio: engine audio → 8 kHz mu-law. Streaming = one-shot, no seam clicks, no aliasing, tail kept."""

from __future__ import annotations

import warnings

import numpy as np
import numpy.typing as npt
import pytest
import soxr

from audio.codec import float_to_int16, lin2ulaw, ulaw2lin
from audio.formats import TWILIO_FORMAT, AudioChunk, AudioFormat, Encoding
from audio.resample import ToTwilio

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

F32 = npt.NDArray[np.float32]
CHATTTS = AudioFormat(Encoding.PCM_F32, 24000)
PIPER = AudioFormat(Encoding.PCM_S16, 22050)


def tone(freq: float, amp: float, seconds: float, rate: int) -> F32:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chunk_of(x: F32, fmt: AudioFormat) -> AudioChunk:
    if fmt.encoding is Encoding.PCM_S16:
        return AudioChunk(float_to_int16(x), fmt)
    return AudioChunk(x, fmt)


def convert(x: F32, fmt: AudioFormat, chunk: int, gain_db: float = 0.0) -> bytes:
    conv = ToTwilio(fmt, gain_db)
    out = [conv.feed(chunk_of(x[i : i + chunk], fmt)) for i in range(0, len(x), chunk)]
    return b"".join(out) + conv.flush()


def decoded(mulaw: bytes) -> npt.NDArray[np.float64]:
    return ulaw2lin(mulaw).astype(np.float64) / 32768.0


def rms(x: npt.NDArray[np.floating]) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


def speechlike(seconds: float, rate: int, seed: int = 0) -> F32:
    """Voiced harmonics with vibrato, noise bursts and energy up to 11 kHz; peaks above full scale."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 140 + 25 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 30) if k * 165 < rate / 2)
    envelope = np.clip(np.sin(2 * np.pi * 2.1 * t), 0, None) ** 0.5
    noise = rng.standard_normal(len(t)) * (np.sin(2 * np.pi * 0.7 * t) > 0.6)
    return (0.7 * voiced * envelope + 0.15 * noise).astype(np.float32)


def chirp(f0: float, f1: float, seconds: float, rate: int, amp: float = 0.5) -> F32:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds)))).astype(np.float32)


# ---- streaming equals one-shot, nothing lost ----------------------------------------------------
@pytest.mark.parametrize("fmt", [CHATTTS, PIPER], ids=["chattts-24k-f32", "piper-22k-s16"])
@pytest.mark.parametrize("chunk", [17, 509, 4801])
def test_streamed_output_equals_one_shot(fmt: AudioFormat, chunk: int) -> None:
    x = speechlike(1.3, fmt.sample_rate)
    assert np.max(np.abs(x)) > 1.0  # the limiter is engaged too
    one_shot = convert(x, fmt, len(x))
    assert convert(x, fmt, chunk) == one_shot
    assert abs(len(one_shot) - len(x) * 8000 / fmt.sample_rate) <= 1  # the tail is not lost


def test_the_tail_is_only_complete_after_flush() -> None:
    x = np.zeros(24000, dtype=np.float32)
    x[-240:] = tone(1000, 0.5, 0.01, 24000)  # a 10 ms beep at the very end
    conv = ToTwilio(CHATTTS)
    fed = conv.feed(AudioChunk(x, CHATTTS))
    tail = conv.flush()
    out = decoded(fed + tail)
    assert len(out) == 8000
    assert rms(out[-80:]) == pytest.approx(rms(x[-240:]), rel=0.06)
    assert rms(decoded(fed)[-80:]) < 0.5 * rms(x[-240:])  # without flush most of the beep is missing


def test_silence_stays_silence() -> None:
    for fmt in (CHATTTS, PIPER):
        out = convert(np.zeros(fmt.sample_rate // 2, dtype=np.float32), fmt, 441)
        assert out == b"\xff" * 4000


def test_converter_starts_over_after_flush() -> None:
    x = speechlike(0.4, 24000)
    conv = ToTwilio(CHATTTS)
    first = conv.feed(AudioChunk(x, CHATTTS)) + conv.flush()
    second = conv.feed(AudioChunk(x, CHATTTS)) + conv.flush()
    assert first == second


# ---- frequency response ---------------------------------------------------------------------------
@pytest.mark.parametrize("freq", [5000, 6000, 7000])
def test_tones_above_4khz_are_60db_down(freq: int) -> None:
    x = tone(freq, 0.5, 1.0, 24000)
    out = decoded(convert(x, CHATTTS, 480))[800:-800]  # steady state: the tone's on/off edges are broadband
    assert 20 * np.log10(max(rms(out), 1e-9) / rms(x)) <= -60
    # the measurement can fail: audioop.ratecv (no anti-alias filter) folds the tone in at full level
    pcm = float_to_int16(x).tobytes()
    baseline = decoded(audioop.lin2ulaw(audioop.ratecv(pcm, 2, 1, 24000, 8000, None)[0], 2))[800:-800]
    assert 20 * np.log10(rms(baseline) / rms(x)) > -1


@pytest.mark.parametrize("fmt", [CHATTTS, PIPER], ids=["chattts-24k-f32", "piper-22k-s16"])
def test_1khz_passes_within_half_a_db(fmt: AudioFormat) -> None:
    x = tone(1000, 0.5, 1.0, fmt.sample_rate)
    out = decoded(convert(x, fmt, 509))
    assert abs(20 * np.log10(rms(out[400:-400]) / rms(x))) < 0.5


# ---- no clicks at chunk seams -------------------------------------------------------------------
def seam_clicks(out: npt.NDArray[np.float64], reference: npt.NDArray[np.float64], limit: float) -> int:
    """Samples (edges excluded) where the output departs from the ideal sweep by more than ``limit``."""
    err = np.abs(out - reference)[80:-80]
    return int(np.count_nonzero(err > limit))


@pytest.mark.parametrize("chunk", [17, 480, 509, 4801])
def test_no_discontinuity_at_chunk_seams_on_a_swept_sine(chunk: int) -> None:
    x = chirp(200, 3000, 2.0, 24000)
    ideal = chirp(200, 3000, 2.0, 8000).astype(np.float64)
    out = decoded(convert(x, CHATTTS, chunk))
    assert len(out) == len(ideal)
    # mu-law's own error at amplitude 0.5 is below 0.016; a click is an order of magnitude larger
    assert seam_clicks(out, ideal, 0.03) == 0


def test_the_seam_detector_catches_a_per_chunk_resampler() -> None:
    """Vocode and Bolna resample each chunk on its own; the detector must flag that at the seams."""
    x = chirp(200, 3000, 2.0, 24000)
    ideal = chirp(200, 3000, 2.0, 8000).astype(np.float64)
    stateless = np.concatenate([soxr.resample(x[i : i + 480], 24000, 8000) for i in range(0, len(x), 480)])
    out = decoded(lin2ulaw(float_to_int16(stateless)))
    assert len(out) == len(ideal)
    clicks = np.flatnonzero(np.abs(out - ideal) > 0.03)
    seam_of_click = np.round(clicks / 160).astype(int)
    assert np.all(np.abs(clicks - seam_of_click * 160) <= 8)  # every click sits at a seam...
    assert len(set(seam_of_click.tolist())) >= 0.9 * len(ideal) / 160  # ...and nearly every seam clicks
    assert seam_clicks(out, ideal, 0.03) > 0


# ---- gain, limiter, odd inputs --------------------------------------------------------------------
def test_gain_db_scales_the_output() -> None:
    x = tone(1000, 0.5, 1.0, 24000)
    out = decoded(convert(x, CHATTTS, 480, gain_db=-6.0))
    assert 20 * np.log10(rms(out[400:-400]) / rms(x)) == pytest.approx(-6.0, abs=0.2)


def test_loud_tts_is_limited_not_clipped() -> None:
    x = tone(1000, 0.5, 1.0, 24000)
    out = decoded(convert(x, CHATTTS, 480, gain_db=12.0))  # 2.0 peak before the limiter
    assert np.max(np.abs(out)) <= 0.8913 * 1.035  # -1 dBFS ceiling plus mu-law rounding
    assert harmonics_db(out[400:-400]) < -40
    # what a plain clip to int16 would have sent instead
    clipped = decoded(lin2ulaw(float_to_int16(tone(1000, 2.0, 1.0, 8000))))
    assert harmonics_db(clipped[400:-400]) > -20


def harmonics_db(steady: npt.NDArray[np.float64]) -> float:
    """2nd and 3rd harmonic of a 1 kHz tone at 8 kHz relative to the fundamental."""
    spec = np.abs(np.fft.rfft(steady)) ** 2
    k = round(1000 * len(steady) / 8000)
    harmonics = spec[2 * k - 2 : 2 * k + 3].sum() + spec[3 * k - 2 : 3 * k + 3].sum()
    return float(10 * np.log10(harmonics / spec[k - 2 : k + 3].sum()))


def test_mulaw_passes_through_untouched_and_gain_applies_when_set() -> None:
    data = lin2ulaw(float_to_int16(tone(1000, 0.5, 0.2, 8000)))
    conv = ToTwilio(TWILIO_FORMAT)
    assert conv.feed(AudioChunk(data, TWILIO_FORMAT)) + conv.flush() == data
    assert conv.delay_s == 0.0
    quieter = ToTwilio(TWILIO_FORMAT, gain_db=-6.0)
    out = quieter.feed(AudioChunk(data, TWILIO_FORMAT)) + quieter.flush()
    assert len(out) == len(data)
    assert 20 * np.log10(rms(decoded(out)) / rms(decoded(data))) == pytest.approx(-6.0, abs=0.2)


def test_non_finite_samples_are_replaced_and_counted_without_poisoning_the_rest() -> None:
    x = speechlike(1.0, 24000)
    bad = x.copy()
    bad[1000:1010] = np.nan
    bad[2000] = np.inf
    conv = ToTwilio(CHATTTS)
    out = conv.feed(AudioChunk(bad, CHATTTS)) + conv.flush()
    assert conv.nonfinite_samples == 11
    clean = convert(x, CHATTTS, len(x))
    assert len(out) == len(clean)
    assert out[1000:] == clean[1000:]  # a few ms after the bad samples the output is unaffected


def test_wrong_input_is_refused_with_a_clear_error() -> None:
    conv = ToTwilio(CHATTTS)
    with pytest.raises(ValueError, match="does not match"):
        conv.feed(AudioChunk(np.zeros(10, dtype=np.int16), PIPER))
    with pytest.raises(ValueError, match="mu-law at 16000"):
        ToTwilio(AudioFormat(Encoding.MULAW, 16000))
    with pytest.raises(ValueError, match="gain_db"):
        ToTwilio(CHATTTS, gain_db=float("inf"))
    with pytest.raises(ValueError, match="does not match"):
        ToTwilio(TWILIO_FORMAT).feed(AudioChunk(np.zeros(10, dtype=np.float32), CHATTTS))
