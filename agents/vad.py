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
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from audio.codec import ulaw_to_float
from audio.level import rows_power_db

SAMPLE_RATE = 8000
CHUNK = 256  # samples per inference at 8 kHz (32 ms)
CONTEXT = 32  # samples of the previous chunk prepended to each inference

F32 = npt.NDArray[np.float32]
log = logging.getLogger("voicegw.vad")
WINDOW = CONTEXT + CHUNK
STATE = 128  # width of each of the two recurrent state vectors
TICK_S = 0.02  # default batcher period: one Twilio frame
DELIVERY_BUDGET_S = 0.001  # answers handed to streams per loop callback before what came due gets its turn


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
        self._batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, VadBatcher] = (
            weakref.WeakKeyDictionary())

    def infer(self, window: F32, state: F32) -> tuple[float, F32]:
        """One chunk: ``window`` is CONTEXT + CHUNK float32 samples in [-1, 1]."""
        out, new_state = self.session.run(None, {"input": window[None, :], "state": state, "sr": self._sr})
        return float(out[0, 0]), np.asarray(new_state, dtype=np.float32)

    def stream(self) -> VadStream:
        return VadStream(self)

    def batcher(self) -> VadBatcher:
        """The batcher every call of the running event loop shares (pre-gate on); its task runs while
        streams are open."""
        loop = asyncio.get_running_loop()
        batcher = self._batchers.get(loop)
        if batcher is None:
            batcher = self._batchers[loop] = VadBatcher(self, gate=GateConfig(), auto_run=True)
        return batcher

    def batchers(self) -> list[VadBatcher]:
        return list(self._batchers.values())


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

    async def infer(self, pcm: npt.NDArray[np.int16] | F32) -> list[tuple[float, F32]]:
        """:meth:`feed` with the same signature as :meth:`BatchedVadStream.infer` (inline, no wait)."""
        return self.feed(pcm)


VadCallback = Callable[[float, F32, float], None]  # probability, chunk, its level (dBFS, audio.level)


@dataclass(frozen=True, slots=True)
class GateConfig:
    """The optional pre-gate: skip inference on an idle line's chunks (they are answered with probability 0).

    A chunk is skipped only when all hold: the stream's last ``quiet_chunks`` (0.25 s) inferred chunks
    all had probability below ``quiet_prob`` (far under any start threshold, which is at least 0.1),
    the chunk's level is under the stream's adaptive noise floor plus ``margin_db`` (the floor follows
    quieter chunks fast and louder ones slowly, like the Endpointer's; until the gate first closes it
    follows the line's clearly-not-speech chunks fast both ways, so a new line's level is learnt in its
    first quarter second instead of creeping up from ``initial_floor_db`` for seconds), and under ``max_level_db``
    whatever the floor. Speech rises well above an idle line's floor in its first chunk, so the chunks
    of an utterance are inferred. Skipped chunks leave the recurrent state where it was, so results
    are not bit-for-bit those of ungated inference: ``tests/test_vad.py`` checks on every speech
    fixture, after an idle lead-in at four noise levels, that the Endpointer sees the same events in
    the same order (no utterance missed or invented), starts within one chunk (32 ms) and ends within
    three (a barge-in may come up to two chunks early). On the benchmark's idle line it skips about 97 %
    of a 20 s call's chunks (85 % when the floor crept up slowly).
    """

    margin_db: float = 3.0
    max_level_db: float = -40.0
    quiet_prob: float = 0.05
    quiet_chunks: int = 8  # 16 (0.5 s) gave the same fixture results and twice the inference on new lines
    initial_floor_db: float = -70.0
    floor_rise: float = 0.02  # share of the gap closed per chunk when a chunk is louder than the floor
    floor_fall: float = 0.3  # ... and when it is quieter


class BatchedVadStream:
    """One call's view of a :class:`VadBatcher`: buffers samples; results come one of two ways.

    * ``await stream.infer(samples)``: feeds, then waits (at most one tick) until every complete chunk
      has been answered and returns ``[(probability, chunk), ...]`` like :meth:`VadStream.feed`
      (nothing to wait for when no chunk is complete: returns ``[]`` at once);
    * an ``on_result(probability, chunk)`` callback given to :meth:`VadBatcher.stream`, called from
      :meth:`VadBatcher.run_pending` (synchronously, in order, once per 256-sample chunk; it must not
      block), with :meth:`feed` (and :meth:`wait_answered` to wait for them).

    :meth:`close` frees the stream's slab row (and releases an ``infer`` or ``wait_answered`` waiting).
    """

    __slots__ = ("_batcher", "_count", "_parts", "_results", "_waiter", "closed", "floor_db", "on_result",
                 "quiet", "skipped", "slot")

    def __init__(self, batcher: VadBatcher, slot: int, on_result: VadCallback | None = None) -> None:
        self._batcher = batcher
        self.slot = slot
        self.on_result: VadCallback = on_result if on_result is not None else self._collect
        self._results: list[tuple[float, F32]] = []
        self._waiter: asyncio.Future[None] | None = None
        self._parts: list[F32] = []  # samples awaiting a complete chunk, joined only when one is taken
        self._count = 0  # samples in _parts
        self.closed = False
        gate = batcher.gate
        self.floor_db = gate.initial_floor_db if gate is not None else 0.0  # the pre-gate's noise floor
        self.quiet = 0  # consecutive inferred chunks that were clearly not speech
        self.skipped = 0  # chunks the pre-gate answered without inference

    @property
    def pending_samples(self) -> int:
        return self._count

    def feed_mulaw(self, payload: bytes) -> None:
        """Twilio's 8 kHz mu-law as it arrives (any length)."""
        self.feed(ulaw_to_float(payload))

    def feed(self, samples: F32) -> None:
        """8 kHz float32 samples in [-1, 1] (any length); a complete chunk is inferred at the next tick."""
        if self.closed:
            return
        if samples.dtype != np.float32:
            raise TypeError(f"expected float32 samples, got {samples.dtype}")
        self._parts.append(samples)  # no copy per frame: a 32 ms chunk is joined once, when it is taken
        self._count += len(samples)
        if self._count >= CHUNK:
            self._batcher._ready(self)

    async def infer(self, samples: F32) -> list[tuple[float, F32]]:
        """Feed, then wait for this stream's complete chunks to be answered (at most one tick)."""
        self.feed(samples)
        await self.wait_answered()
        out, self._results = self._results, []
        return out

    async def wait_answered(self) -> None:
        """Wait until every complete chunk fed so far has been answered (at most one tick), or the stream closed."""
        if self._count >= CHUNK and not self.closed:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _collect(self, prob: float, chunk: F32, level_db: float) -> None:
        self._results.append((prob, chunk))

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _take_chunk(self) -> F32:
        parts = self._parts
        buf = parts[0] if len(parts) == 1 else np.concatenate(parts)
        rest = buf[CHUNK:]
        self._parts = [rest] if len(rest) else []
        self._count -= CHUNK
        return buf[:CHUNK]

    def reset(self) -> None:
        """Forget state, context and buffered samples (as a new stream)."""
        self._parts, self._count = [], 0
        self._batcher._clear_slot(self.slot)
        if self._batcher.gate is not None:
            self.floor_db, self.quiet = self._batcher.gate.initial_floor_db, 0

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._parts, self._count = [], 0
            self._batcher._release(self)
            self._wake()


class VadBatcher:
    """One Silero inference per tick for every stream that has a complete chunk.

    Rules of this class: :meth:`run_pending` is synchronous and does all the work (tests drive it
    directly); :meth:`run` is the event-loop shell that does the same every ``tick_s`` while anything is
    pending, handing the answers over in slices with the loop free in between (:meth:`_run_sliced`).
    Rows of the slabs are recycled as streams close; the slabs double when full.
    """

    def __init__(self, model: SileroModel, capacity: int = 64, tick_s: float = TICK_S,
                 gate: GateConfig | None = None, auto_run: bool = False,
                 delivery_budget_s: float = DELIVERY_BUDGET_S) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.model = model
        self.tick_s = tick_s
        self.gate = gate
        self.auto_run = auto_run  # stream() starts run() in the running loop when needed; it ends with the last stream
        self.delivery_budget_s = delivery_budget_s  # run(): answers handed over per slice (then the loop's turn)
        self._task: asyncio.Task[None] | None = None
        self.skipped = 0  # chunks answered by the pre-gate without inference
        self._state: F32 = np.zeros((2, capacity, STATE), dtype=np.float32)
        self._windows: F32 = np.zeros((capacity, WINDOW), dtype=np.float32)
        self._free: list[int] = list(range(capacity - 1, -1, -1))
        self._ready_streams: dict[int, BatchedVadStream] = {}  # slot → stream with ≥ one complete chunk
        self._wakeup: asyncio.Event | None = None
        self.runs = 0  # inferences run
        self.chunks = 0  # chunks inferred (sum of batch sizes)
        self.streams = 0  # open streams
        self.busy_s = 0.0  # CPU time spent inside inference (this thread's)
        self._answers: deque[tuple[BatchedVadStream, float, F32, float]] = deque()  # answered, not yet handed over

    @property
    def capacity(self) -> int:
        return int(self._windows.shape[0])

    def stream(self, on_result: VadCallback | None = None) -> BatchedVadStream:
        if not self._free:
            self._grow()
        slot = self._free.pop()
        self._clear_slot(slot)
        self.streams += 1
        if self.auto_run and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self.run(), name="vad-batcher")
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
        if self.streams == 0 and self._wakeup is not None:
            self._wakeup.set()  # an auto-run task ends with the last stream

    def _ready(self, stream: BatchedVadStream) -> None:
        self._ready_streams[stream.slot] = stream
        if self._wakeup is not None:
            self._wakeup.set()

    @property
    def pending(self) -> int:
        """Streams with at least one complete chunk waiting."""
        return len(self._ready_streams)

    def run_pending(self) -> int:
        """Answer every complete chunk now (one batched run per chunk depth); returns the chunks answered."""
        done = 0
        while self._ready_streams:
            done += self._infer_depth()
            self._deliver()
        return done

    async def _run_sliced(self) -> None:
        """:meth:`run_pending` for the loop: the answers are handed over ``delivery_budget_s`` at a time, and
        between slices the loop serves what came due (the paced audio senders) instead of waiting for every
        call's verdict — at 400 calls a tick's callbacks held the loop 3-6 ms (docs/scaling.md)."""
        while self._ready_streams:
            self._infer_depth()
            while not self._deliver(self.delivery_budget_s):  # noqa: ASYNC110 - between slices a yield, not a wait
                await asyncio.sleep(0)

    def _infer_depth(self) -> int:
        """One complete chunk of every ready stream, answered (inference or gate) and queued for :meth:`_deliver`."""
        streams = list(self._ready_streams.values())
        chunks = [s._take_chunk() for s in streams]
        for stream in streams:
            if stream._count < CHUNK:
                del self._ready_streams[stream.slot]
        stacked = np.stack(chunks)
        probs: list[float] = [0.0] * len(streams)
        levels = rows_power_db(stacked)  # the gate's, and handed on: the Endpointer need not measure again
        infer = self._gate(streams, stacked, levels) if self.gate is not None else list(range(len(streams)))
        if infer:
            idx = np.fromiter((streams[i].slot for i in infer), dtype=np.intp, count=len(infer))
            windows = self._windows
            windows[idx, CONTEXT:] = stacked[infer] if len(infer) < len(streams) else stacked
            batch = windows[idx]
            t0 = time.thread_time()  # CPU time: onnxruntime runs on this thread (one intra-op thread)
            out, new_state = self.model.session.run(
                None, {"input": batch, "state": self._state[:, idx], "sr": self.model._sr})
            self.busy_s += time.thread_time() - t0
            self._state[:, idx] = new_state
            windows[idx, :CONTEXT] = batch[:, -CONTEXT:]
            self.runs += 1
            self.chunks += len(infer)
            for i, prob in zip(infer, out[:, 0].tolist(), strict=True):
                probs[i] = prob
            if self.gate is not None:
                quiet = self.gate.quiet_prob
                for i in infer:
                    s = streams[i]
                    s.quiet = s.quiet + 1 if probs[i] < quiet else 0
        self._answers.extend(zip(streams, probs, chunks, levels, strict=True))
        return len(streams)

    def _deliver(self, budget_s: float | None = None) -> bool:
        """Hand the queued answers to their streams, in order; with a budget, stop once it is spent (checked every
        16 streams). True when none is left."""
        answers = self._answers
        deadline = None if budget_s is None else time.perf_counter() + budget_s
        handed = 0
        while answers:
            stream, prob, chunk, level = answers.popleft()
            handed += 1
            if not stream.closed:
                try:
                    stream.on_result(prob, chunk, level)
                except Exception:  # one call's bug must not deafen every other call
                    log.exception("VAD result handler failed; that stream is closed")
                    stream.close()  # wakes its wait_answered()
                    continue
                if stream._count < CHUNK:
                    stream._wake()  # all it had is answered
            if deadline is not None and handed % 16 == 0 and time.perf_counter() > deadline:
                break
        return not answers

    def _gate(self, streams: list[BatchedVadStream], stacked: F32, levels: list[float]) -> list[int]:
        """The pre-gate: which of these chunks need inference (the others are answered 0 right here)."""
        gate = self.gate
        assert gate is not None
        infer: list[int] = []
        for i, (stream, level) in enumerate(zip(streams, levels, strict=True)):
            floor = stream.floor_db
            skip = (stream.quiet >= gate.quiet_chunks and level < floor + gate.margin_db
                    and level < gate.max_level_db)
            if skip or stream.quiet > 0:  # the line's own sound: track it
                # fast both ways until the gate first closes: the line's level is learnt in its first quiet chunks
                rate = gate.floor_fall if level < floor or not stream.skipped else gate.floor_rise
                stream.floor_db = floor + rate * (level - floor)
            if skip:
                stream.skipped += 1
                self._windows[stream.slot, :CONTEXT] = stacked[i, -CONTEXT:]  # context as if inferred
            else:
                infer.append(i)
        self.skipped += len(streams) - len(infer)
        return infer

    async def run(self) -> None:
        """Whenever a chunk is waiting, wait one tick (others join the batch), then infer. Runs forever,
        or (``auto_run``) until no stream is open.

        While chunks keep coming, ticks keep an absolute schedule (every ``tick_s``, late ones run at once):
        a call's listener waits for a tick on most frames, so a period stretched by the inference time and a
        busy loop (sleeping ``tick_s`` *after* each run) made every listener fall behind its caller — seconds
        behind at 100 calls on one core, which also delayed each hang-up by as much."""
        self._wakeup = asyncio.Event()
        loop = asyncio.get_running_loop()
        due: float | None = None  # when the next tick is due (None: idle, the next chunk starts a schedule)
        try:
            while True:
                if not self._ready_streams:
                    if self.auto_run and self.streams == 0:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    if due is not None and loop.time() > due + self.tick_s:
                        due = None  # idle for more than a tick: a new schedule
                    continue
                now = loop.time()
                if due is None:
                    due = now + self.tick_s
                await asyncio.sleep(max(0.0, due - now))
                due = max(due + self.tick_s, loop.time() - self.tick_s)  # late: catch up, never burst
                try:
                    await self._run_sliced()
                except Exception:  # keep serving the other calls; the failure is in the log
                    log.exception("batched VAD inference failed")
        finally:
            self._wakeup = None
