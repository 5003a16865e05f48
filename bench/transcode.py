"""Outbound transcode cost and alias rejection: our chain vs audioop.ratecv + lin2ulaw.

60 s of ChatTTS-like float32 audio at 24 kHz (voiced harmonics with vibrato,
fricative noise up to 12 kHz, peaks above full scale) is converted to 160-byte
mu-law frames in 20 ms, 500 ms and 2 s chunks:

- ours: ``audio.resample.ToTwilio`` (soxr HQ stream, limiter, mu-law table)
  + ``audio.framing.Framer``, flushed at the end;
- baseline: float → int16, ``audioop.ratecv`` (state carried, so no seam
  clicks: its best case) + ``audioop.lin2ulaw`` + the same Framer.

Time is the best of 5 runs (the machine is shared), in µs per 20 ms of audio.
Alias rejection: 5, 6 and 7 kHz tones at -6 dBFS in, steady-state RMS out
relative to in, worst of the three. Measured before the codec (where our
output is still above mu-law's smallest step) and end to end (decoded
mu-law; ours is then digital silence, bounded by the quantizer).

Run: ``.venv/bin/python bench/transcode.py``. The last line is the summary
(taken from the 20 ms-chunk row, the streaming worst case).
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from audio.codec import float_to_int16, ulaw2lin  # noqa: E402
from audio.formats import AudioChunk, AudioFormat, Encoding  # noqa: E402
from audio.framing import Framer  # noqa: E402
from audio.limiter import Limiter  # noqa: E402
from audio.resample import SOXR_QUALITY, ToTwilio  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

F32 = npt.NDArray[np.float32]
RATE = 24000
SOURCE = AudioFormat(Encoding.PCM_F32, RATE)
SECONDS = 60
FRAMES = SECONDS * 50  # 20 ms frames of audio
CHUNKS = {"20 ms": 480, "500 ms": 12000, "2 s": 48000}
REPEATS = 5
ALIAS_TONES = (5000, 6000, 7000)


def chattts_like(seconds: int) -> F32:
    rng = np.random.default_rng(0)
    t = np.arange(seconds * RATE) / RATE
    f0 = 150 + 30 * np.sin(2 * np.pi * 0.9 * t) + 6 * np.sin(2 * np.pi * 5.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voiced = sum(np.sin(k * phase) * (0.8**k) for k in range(1, 40))
    syllables = np.clip(np.sin(2 * np.pi * 2.3 * t), 0, None) ** 0.6
    hiss = np.diff(rng.standard_normal(len(t) + 1)) * (np.sin(2 * np.pi * 0.8 * t) > 0.7)  # tilted up to 12 kHz
    return (0.6 * voiced * syllables + 0.2 * hiss).astype(np.float32)


def ours(x: F32, chunk: int) -> bytes:
    conv, framer = ToTwilio(SOURCE), Framer()
    frames: list[bytes] = []
    for i in range(0, len(x), chunk):
        frames += framer.feed(conv.feed(AudioChunk(x[i : i + chunk], SOURCE)))
    frames += framer.feed(conv.flush()) + framer.flush()
    return b"".join(frames)


def baseline(x: F32, chunk: int) -> bytes:
    framer, state = Framer(), None
    frames: list[bytes] = []
    for i in range(0, len(x), chunk):
        pcm = float_to_int16(x[i : i + chunk]).tobytes()
        down, state = audioop.ratecv(pcm, 2, 1, RATE, 8000, state)
        frames += framer.feed(audioop.lin2ulaw(down, 2))
    frames += framer.flush()
    return b"".join(frames)


def best_us_per_frame(fn: Callable[[F32, int], bytes], x: F32, chunk: int) -> tuple[float, int]:
    best, size = float("inf"), 0
    for _ in range(REPEATS):
        start = time.perf_counter()
        size = len(fn(x, chunk))
        best = min(best, time.perf_counter() - start)
    return best / FRAMES * 1e6, size


def rms(a: npt.NDArray[np.floating]) -> float:
    return float(np.sqrt(np.mean(np.asarray(a, dtype=np.float64) ** 2)))


def tone(freq: int) -> F32:
    t = np.arange(2 * RATE) / RATE
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def rejection_db(x: F32, y: npt.NDArray[np.floating]) -> float:
    """Input RMS over steady-state output RMS; ``inf`` when the output is exactly silent."""
    out = rms(y[1600:-1600])
    return float("inf") if out == 0.0 else round(float(20 * np.log10(rms(x) / out)), 1) + 0.0  # no "-0.0"


def ours_before_codec(x: F32) -> F32:
    """ToTwilio's float stages (soxr stream at the same quality, then the limiter), stopped before mu-law."""
    stream, limiter = soxr.ResampleStream(RATE, 8000, 1, dtype="float32", quality=SOXR_QUALITY), Limiter(8000)
    y = limiter.feed(stream.resample_chunk(x, last=True))
    return np.concatenate([y, limiter.flush()])


def baseline_before_codec(x: F32) -> npt.NDArray[np.float64]:
    down, _ = audioop.ratecv(float_to_int16(x).tobytes(), 2, 1, RATE, 8000, None)
    return np.frombuffer(down, dtype=np.int16) / 32768.0


def decoded(mulaw: bytes) -> npt.NDArray[np.float64]:
    return ulaw2lin(mulaw) / 32768.0


def main() -> None:
    x = chattts_like(SECONDS)
    print(f"transcode: {SECONDS} s of 24 kHz float32 (ChatTTS-like) → 8 kHz mu-law 160-byte frames, "
          f"best of {REPEATS}; µs per 20 ms of audio")
    print(f"{'chunk':>8} | {'ours us/frame':>13} | {'audioop us/frame':>16} | {'ours x realtime':>15} | frames out")
    rows: dict[str, tuple[float, float]] = {}
    for label, chunk in CHUNKS.items():
        us_ours, n_ours = best_us_per_frame(ours, x, chunk)
        us_base, n_base = best_us_per_frame(baseline, x, chunk)
        rows[label] = (us_ours, us_base)
        print(f"{label:>8} | {us_ours:13.1f} | {us_base:16.1f} | {20000 / us_ours:15.0f} | "
              f"{n_ours // 160} / {n_base // 160}")

    print()
    print(f"{'tone':>8} | {'ours pre-codec dB':>17} | {'audioop pre-codec dB':>20} | "
          f"{'ours end-to-end dB':>18} | {'audioop end-to-end dB':>21}")
    worst_ours = worst_base = float("inf")
    for freq in ALIAS_TONES:
        x_t = tone(freq)
        pre_ours, pre_base = rejection_db(x_t, ours_before_codec(x_t)), rejection_db(x_t, baseline_before_codec(x_t))
        e2e_ours, e2e_base = rejection_db(x_t, decoded(ours(x_t, 480))), rejection_db(x_t, decoded(baseline(x_t, 480)))
        worst_ours, worst_base = min(worst_ours, pre_ours), min(worst_base, pre_base)
        e2e_ours_s = "silent" if e2e_ours == float("inf") else f"{e2e_ours:.1f}"
        print(f"{freq:>6} Hz | {pre_ours:17.1f} | {pre_base:20.1f} | {e2e_ours_s:>18} | {e2e_base:21.1f}")
    floor = 20 * np.log10(rms(tone(5000)) / (8 / 32768))
    print(f"('silent': every decoded sample is 0, i.e. more than {floor:.0f} dB down, the mu-law quantizer's limit)")
    print()
    us_ours, us_base = rows["20 ms"]
    print(f"transcode: us_per_frame={us_ours:.1f} baseline_us_per_frame={us_base:.1f} "
          f"alias_rejection_db={worst_ours:.1f} baseline_alias_rejection_db={worst_base:.1f}")


if __name__ == "__main__":
    main()
