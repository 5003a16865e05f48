"""Silero VAD v6 at native 8 kHz on onnxruntime + numpy (no torch).

Why a wrapper of our own: the ``silero-vad`` package's Python API imports
torch (~750 MB); its ONNX file runs fine on onnxruntime alone. We take only the
model file, located with :func:`importlib.util.find_spec` (which does not
import the package), and reproduce the package's 8 kHz streaming contract:
256-sample chunks, each prefixed with the last 32 samples of the previous one,
recurrent state of shape ``(2, 1, 128)`` carried between chunks.

One :class:`SileroModel` (one ONNX session) per process is shared by every
call. Two ways to run it:

* :class:`VadStream`: per-call, synchronous, one inference per chunk
  (~0.15 ms each); for tools and tests, and the reference the batcher is
  tested against.
* :class:`VadBatcher` (calls use this): every call's :class:`BatchedVadStream`
  only buffers samples; once per tick the batcher runs **one** inference over
  every stream with a complete chunk (the graph takes a batch dimension: state
  ``(2, batch, 128)``, input ``(batch, 288)``; ~42 µs per chunk at batch ≥ 32
  instead of ~143 µs alone) and hands each stream its probability through its
  callback. Each stream's recurrent state and context live in one row of the
  batcher's slabs, so the results are bit-for-bit those of a :class:`VadStream`
  fed the same audio (``tests/test_vad.py``). A chunk waits at most one tick.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from audio.codec import ulaw2lin

SAMPLE_RATE = 8000
CHUNK = 256  # samples per inference at 8 kHz (32 ms)
CONTEXT = 32  # samples of the previous chunk prepended to each inference

F32 = npt.NDArray[np.float32]
log = logging.getLogger("voicegw.vad")
WINDOW = CONTEXT + CHUNK
STATE = 128  # width of each of the two recurrent state vectors
TICK_S = 0.02  # default batcher period: one Twilio frame

# mu-law byte → float32 sample in [-1, 1): the same values as ulaw2lin(x) / 32768 (int16 fits float32 exactly).
ULAW_F32: F32 = (ulaw2lin(bytes(range(256))).astype(np.float64) / 32768.0).astype(np.float32)


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


VadCallback = Callable[[float, F32], None]


class BatchedVadStream:
    """One call's view of a :class:`VadBatcher`: buffers samples; results arrive through ``on_result``.

    ``on_result(probability, chunk)`` is called from :meth:`VadBatcher.run_pending` (synchronously, in
    order, once per 256-sample chunk); it must not block. :meth:`close` frees the stream's slab row.
    """

    __slots__ = ("_batcher", "_pending", "closed", "on_result", "slot")

    def __init__(self, batcher: VadBatcher, slot: int, on_result: VadCallback) -> None:
        self._batcher = batcher
        self.slot = slot
        self.on_result = on_result
        self._pending: F32 = np.zeros(0, dtype=np.float32)
        self.closed = False

    @property
    def pending_samples(self) -> int:
        return len(self._pending)

    def feed_mulaw(self, payload: bytes) -> None:
        """Twilio's 8 kHz mu-law as it arrives (any length)."""
        self.feed(ULAW_F32[np.frombuffer(payload, dtype=np.uint8)])

    def feed(self, samples: F32) -> None:
        """8 kHz float32 samples in [-1, 1] (any length); a complete chunk is inferred at the next tick."""
        if self.closed:
            return
        if samples.dtype != np.float32:
            raise TypeError(f"expected float32 samples, got {samples.dtype}")
        self._pending = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        if len(self._pending) >= CHUNK:
            self._batcher._ready(self)

    def _take_chunk(self) -> F32:
        chunk, self._pending = self._pending[:CHUNK], self._pending[CHUNK:]
        return chunk

    def reset(self) -> None:
        """Forget state, context and buffered samples (as a new stream)."""
        self._pending = np.zeros(0, dtype=np.float32)
        self._batcher._clear_slot(self.slot)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._pending = np.zeros(0, dtype=np.float32)
            self._batcher._release(self)


class VadBatcher:
    """One Silero inference per tick for every stream that has a complete chunk.

    Rules of this class: :meth:`run_pending` is synchronous and does all the work (tests drive it
    directly); :meth:`run` is the event-loop shell that calls it every ``tick_s`` while anything is
    pending. Rows of the slabs are recycled as streams close; the slabs double when full.
    """

    def __init__(self, model: SileroModel, capacity: int = 64, tick_s: float = TICK_S) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.model = model
        self.tick_s = tick_s
        self._state: F32 = np.zeros((2, capacity, STATE), dtype=np.float32)
        self._windows: F32 = np.zeros((capacity, WINDOW), dtype=np.float32)
        self._free: list[int] = list(range(capacity - 1, -1, -1))
        self._ready_streams: dict[int, BatchedVadStream] = {}  # slot → stream with ≥ one complete chunk
        self._wakeup: asyncio.Event | None = None
        self.runs = 0  # inferences run
        self.chunks = 0  # chunks inferred (sum of batch sizes)
        self.streams = 0  # open streams
        self.busy_s = 0.0  # time spent inside inference (perf_counter)

    @property
    def capacity(self) -> int:
        return int(self._windows.shape[0])

    def stream(self, on_result: VadCallback) -> BatchedVadStream:
        if not self._free:
            self._grow()
        slot = self._free.pop()
        self._clear_slot(slot)
        self.streams += 1
        return BatchedVadStream(self, slot, on_result)

    def _grow(self) -> None:
        old = self.capacity
        state = np.zeros((2, 2 * old, STATE), dtype=np.float32)
        state[:, :old] = self._state
        windows = np.zeros((2 * old, WINDOW), dtype=np.float32)
        windows[:old] = self._windows
        self._state, self._windows = state, windows
        self._free.extend(range(2 * old - 1, old - 1, -1))

    def _clear_slot(self, slot: int) -> None:
        self._state[:, slot] = 0.0
        self._windows[slot] = 0.0

    def _release(self, stream: BatchedVadStream) -> None:
        self._ready_streams.pop(stream.slot, None)
        self._free.append(stream.slot)
        self.streams -= 1

    def _ready(self, stream: BatchedVadStream) -> None:
        self._ready_streams[stream.slot] = stream
        if self._wakeup is not None:
            self._wakeup.set()

    @property
    def pending(self) -> int:
        """Streams with at least one complete chunk waiting."""
        return len(self._ready_streams)

    def run_pending(self) -> int:
        """Infer every complete chunk now (one batched run per chunk depth); returns the chunks inferred."""
        done = 0
        while self._ready_streams:
            streams = list(self._ready_streams.values())
            slots = np.fromiter(self._ready_streams.keys(), dtype=np.intp, count=len(streams))
            chunks = [s._take_chunk() for s in streams]
            for stream in streams:
                if stream.pending_samples < CHUNK:
                    del self._ready_streams[stream.slot]
            windows = self._windows
            windows[slots, CONTEXT:] = np.stack(chunks)
            batch = windows[slots]
            t0 = time.perf_counter()
            out, new_state = self.model.session.run(
                None, {"input": batch, "state": self._state[:, slots], "sr": self.model._sr})
            self.busy_s += time.perf_counter() - t0
            self._state[:, slots] = new_state
            windows[slots, :CONTEXT] = batch[:, -CONTEXT:]
            self.runs += 1
            self.chunks += len(streams)
            done += len(streams)
            probs = out[:, 0].tolist()
            for stream, prob, chunk in zip(streams, probs, chunks, strict=True):
                if stream.closed:
                    continue
                try:
                    stream.on_result(prob, chunk)
                except Exception:  # one call's bug must not deafen every other call
                    log.exception("VAD result handler failed; that stream is closed")
                    stream.close()
        return done

    async def run(self) -> None:
        """Run forever: whenever a chunk is waiting, wait one tick (others join the batch), then infer."""
        self._wakeup = asyncio.Event()
        try:
            while True:
                if not self._ready_streams:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                await asyncio.sleep(self.tick_s)
                try:
                    self.run_pending()
                except Exception:  # keep serving the other calls; the failure is in the log
                    log.exception("batched VAD inference failed")
        finally:
            self._wakeup = None
