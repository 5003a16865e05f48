"""Smart Turn v3.2: an audio end-of-turn model (BSD-2-Clause), optional.

The 8.7 MB ONNX file ships inside the ``pipecat-ai`` wheel
(``pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx``). Install it
with ``pip install --no-deps pipecat-ai==1.14.0`` (``./dev.sh`` does); the
file is located with :func:`importlib.util.find_spec` and pipecat itself is
never imported (its ``__init__`` needs loguru and more). When the wheel is
absent :func:`load` returns None and turn-taking goes on without it.

Input: Whisper log-mel of the last 8 s at 16 kHz, zero-padded on the left,
the waveform normalised to zero mean and unit variance first (Pipecat's own
preprocessing; faster-whisper's feature extractor reproduces it within 4e-6).
Output: P(the turn is complete). ~80 ms per call on one core, so it runs in a
worker thread, and only when the words alone look complete (see
:mod:`agents.turn_end`; the turn-taking notes show it calls most mid-sentence
cuts of synthetic speech complete, so it never ends a turn alone).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

log = logging.getLogger("voicegw.smart_turn")

PIN = "pipecat-ai==1.14.0"
WINDOW_S = 8
RATE = 16000


def model_path() -> Path | None:
    spec = importlib.util.find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
    return path if path.is_file() else None


def features(pcm8k: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """8 kHz float audio of the utterance → the model's ``input_features`` [1, 80, 800]."""
    from faster_whisper.feature_extractor import FeatureExtractor

    x = np.asarray(soxr.resample(pcm8k.astype(np.float32), 8000, RATE, quality="HQ"), dtype=np.float32)
    n = WINDOW_S * RATE
    x = x[-n:] if len(x) > n else np.pad(x, (n - len(x), 0))
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    mel = FeatureExtractor(chunk_length=WINDOW_S)(x.astype(np.float32), padding=0)
    return np.asarray(mel[None, :, : WINDOW_S * 100], dtype=np.float32)


class SmartTurn:
    """One ONNX session per process, run in its own thread."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        self.path = path
        self.session: Any = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="smart-turn")

    def score_sync(self, pcm8k: npt.NDArray[np.float32]) -> float:
        out = self.session.run(None, {"input_features": features(pcm8k)})
        return float(np.asarray(out[0]).reshape(-1)[0])

    async def score(self, pcm8k: npt.NDArray[np.float32]) -> float:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.score_sync, pcm8k)


_shared: SmartTurn | None = None
_tried = False
_lock = threading.Lock()


def load() -> SmartTurn | None:
    """The process-wide model, or None (with one log line) when the wheel or onnxruntime is missing."""
    global _shared, _tried
    with _lock:
        if not _tried:
            _tried = True
            path = model_path()
            if path is None:
                log.warning("turn_model smart_turn requested but %s is not installed: using words and silence only",
                            PIN)
            else:
                try:
                    _shared = SmartTurn(path)
                except Exception as exc:  # a broken wheel must not stop calls
                    log.error("cannot load Smart Turn from %s: %s", path, exc)
        return _shared
