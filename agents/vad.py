"""Silero VAD v6 at native 8 kHz on onnxruntime + numpy (no torch).

Why a wrapper of our own: the ``silero-vad`` package's Python API imports
torch (~750 MB); its ONNX file runs fine on onnxruntime alone. We take only the
model file, located with :func:`importlib.util.find_spec` (which does not
import the package), and reproduce the package's 8 kHz streaming contract:
256-sample chunks, each prefixed with the last 32 samples of the previous one,
recurrent state of shape ``(2, 1, 128)`` carried between chunks.

One :class:`SileroModel` (one ONNX session) per process is shared by every
call; each call owns a :class:`VadStream` with its own state and context. A
chunk costs ~0.15 ms, so streams run inline on the event loop.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 8000
CHUNK = 256  # samples per inference at 8 kHz (32 ms)
CONTEXT = 32  # samples of the previous chunk prepended to each inference

F32 = npt.NDArray[np.float32]


class VadError(Exception):
    """The VAD model is missing or cannot be loaded."""


def model_path() -> Path:
    """Path of ``silero_vad/data/silero_vad.onnx`` (the 8 k + 16 k model) without importing silero_vad."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise VadError("the silero-vad package is not installed (pip install --no-deps silero-vad==6.2.3)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise VadError(f"Silero VAD model not found at {path}")
    return path


class SileroModel:
    """One ONNX session, shareable by any number of streams (``run`` is thread-safe in onnxruntime)."""

    def __init__(self, path: Path | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        self.path = path or model_path()
        try:
            self.session: Any = ort.InferenceSession(
                str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise VadError(f"cannot load Silero VAD model {self.path}: {exc}") from exc
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)

    def infer(self, window: F32, state: F32) -> tuple[float, F32]:
        """One chunk: ``window`` is CONTEXT + CHUNK float32 samples in [-1, 1]."""
        out, new_state = self.session.run(None, {"input": window[None, :], "state": state, "sr": self._sr})
        return float(out[0, 0]), np.asarray(new_state, dtype=np.float32)

    def stream(self) -> VadStream:
        return VadStream(self)


_shared: SileroModel | None = None
_shared_lock = threading.Lock()


def shared_model() -> SileroModel:
    """The process-wide model (loaded on first use, ~20 ms)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SileroModel()
        return _shared


class VadStream:
    """Per-call streaming state: feed 8 kHz PCM of any length, get one probability per 32 ms chunk."""

    def __init__(self, model: SileroModel) -> None:
        self.model = model
        self.reset()

    def reset(self) -> None:
        self._state: F32 = np.zeros((2, 1, 128), dtype=np.float32)
        self._context: F32 = np.zeros(CONTEXT, dtype=np.float32)
        self._pending: F32 = np.zeros(0, dtype=np.float32)

    def feed(self, pcm: npt.NDArray[np.int16] | F32) -> list[tuple[float, F32]]:
        """Returns ``(speech probability, the 256 samples it describes)`` for each complete chunk."""
        samples = pcm.astype(np.float32) / 32768.0 if pcm.dtype == np.int16 else pcm.astype(np.float32)
        buf = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        out: list[tuple[float, F32]] = []
        n = len(buf) // CHUNK
        for i in range(n):
            chunk = buf[i * CHUNK : (i + 1) * CHUNK]
            window = np.concatenate([self._context, chunk])
            prob, self._state = self.model.infer(window, self._state)
            self._context = chunk[-CONTEXT:].copy()
            out.append((prob, chunk))
        self._pending = buf[n * CHUNK :].copy()
        return out
