"""Silero VAD at native 8 kHz on onnxruntime (no torch)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from agents.vad import CHUNK, SileroModel, VadError, model_path, shared_model
from audio.codec import ulaw2lin
from tests.helpers import ROOT
from tests.speech_fixtures import mulaw


def probs(pcm: np.ndarray, step: int) -> list[float]:
    stream = shared_model().stream()
    out: list[float] = []
    for i in range(0, len(pcm), step):
        out += [p for p, _ in stream.feed(pcm[i : i + step])]
    return out


def test_speech_is_detected_and_silence_is_not() -> None:
    pcm = ulaw2lin(mulaw("human"))  # 0.6 s silence, ~2.5 s speech, 1 s silence
    p = np.array(probs(pcm, 160))
    assert len(p) == len(pcm) // CHUNK
    t = np.arange(len(p)) * CHUNK / 8000
    assert p[t < 0.5].max() < 0.2
    assert np.mean(p[(t > 0.8) & (t < 2.8)] > 0.5) > 0.8
    assert p[t > 3.4].max() < 0.35


def test_noise_only_is_not_speech() -> None:
    rng = np.random.default_rng(1)
    noise = (rng.normal(0, 0.01, 8000 * 3) * 32767).astype(np.int16)  # -40 dBFS white noise
    hum = (0.1 * np.sin(2 * np.pi * 50 * np.arange(8000 * 2) / 8000) * 32767).astype(np.int16)
    assert max(probs(noise, 160)) < 0.5
    assert max(probs(hum, 160)) < 0.5


def test_chunking_of_the_input_does_not_change_the_result() -> None:
    pcm = ulaw2lin(mulaw("hours"))
    a, b = probs(pcm, 160), probs(pcm, 1013)
    assert len(a) == len(b)
    assert np.allclose(a, b, atol=1e-5)


def test_streams_share_one_model_but_not_state() -> None:
    model = shared_model()
    assert shared_model() is model
    speech = ulaw2lin(mulaw("hours"))[: 8000 * 2]
    s1, s2 = model.stream(), model.stream()
    p1 = [p for p, _ in s1.feed(speech)]
    p2 = [p for p, _ in s2.feed(np.zeros(len(speech), dtype=np.int16))]
    assert max(p1) > 0.8 and max(p2) < 0.1


def test_model_located_without_importing_torch() -> None:
    code = ("import sys; from agents.vad import model_path, SileroModel; m = SileroModel(); "
            "print(m.path.name, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, check=True).stdout
    assert out.split() == ["silero_vad.onnx", "False"]
    assert model_path().is_file()


def test_bad_model_file_is_a_clear_error(tmp_path: object) -> None:
    from pathlib import Path

    bad = Path(str(tmp_path)) / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(VadError, match="cannot load Silero VAD model"):
        SileroModel(bad)
