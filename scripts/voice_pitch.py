"""Median pitch (F0) of a Piper voice: evidence for the voice kind listed in ``tts.piper.BUNDLED``.

    python scripts/voice_pitch.py [VOICE]     # VOICE: a bundled name (joe) or a path to a .onnx voice

Autocorrelation on voiced 40 ms frames (RMS > 0.02, normalised peak > 0.5, 60–400 Hz) of three call-centre
sentences. Adult male speech is typically 85–155 Hz, adult female 165–255 Hz.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tts.piper import voice_files  # noqa: E402

TEXT = "Hello, and thanks for calling. We are open from nine to five, Monday to Friday. How can I help you today?"


def main(voice: str = "joe") -> None:
    from piper import PiperVoice, SynthesisConfig

    model, config = voice_files(voice)
    v = PiperVoice.load(str(model), config_path=str(config))
    pcm = np.concatenate([c.audio_float_array for c in v.synthesize(TEXT, syn_config=SynthesisConfig())])
    rate = int(v.config.sample_rate)
    n = int(0.04 * rate)
    f0: list[float] = []
    for i in range(0, len(pcm) - n, n // 2):
        x = pcm[i:i + n] - pcm[i:i + n].mean()
        if float(np.sqrt((x**2).mean())) < 0.02:
            continue
        ac = np.correlate(x, x, "full")[n - 1:]
        lo, hi = rate // 400, rate // 60
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] / ac[0] > 0.5:
            f0.append(rate / lag)
    print(f"{voice}: {len(f0)} voiced frames, median F0 {np.median(f0):.0f} Hz "
          f"(p25 {np.percentile(f0, 25):.0f}, p75 {np.percentile(f0, 75):.0f})")


if __name__ == "__main__":
    main(*sys.argv[1:2])
