"""Silero VAD at native 8 kHz on onnxruntime (no torch)."""

from __future__ import annotations

import functools
import subprocess
import sys

import numpy as np
import pytest

from agents.endpointing import EndpointConfig, Endpointer
from agents.vad import CHUNK, GateConfig, SileroModel, VadBatcher, VadError, model_path, shared_model
from audio.codec import ulaw2lin
from audio.level import power_db
from tests.helpers import ROOT
from tests.speech_fixtures import FIXTURES, mulaw


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


# ---- cross-call batching ------------------------------------------------------------------------------------------
def _reference(pcm: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """Per-call inference: a plain VadStream fed the whole signal."""
    return shared_model().stream().feed(pcm)


class _Collector:
    def __init__(self, out: list[tuple[float, np.ndarray]]) -> None:
        self.out = out

    def append_result(self, prob: float, chunk: np.ndarray, level: float) -> None:
        assert level == pytest.approx(power_db(chunk), abs=1e-9)  # the level handed on is this chunk's
        self.out.append((prob, chunk))


def _f32(name: str) -> np.ndarray:
    return ulaw2lin(mulaw(name)).astype(np.float32) / np.float32(32768.0)


def test_batched_results_are_bit_for_bit_those_of_per_call_inference() -> None:
    rng = np.random.default_rng(7)
    names = ["hours", "human", "address", "interrupt", "goodbye", "account"]
    signals = [_f32(n) for n in names]
    signals.append((rng.normal(0, 0.003, 8000 * 3)).astype(np.float32))  # idle line
    signals.append(np.zeros(8000 * 2, dtype=np.float32))  # digital silence
    batcher = VadBatcher(shared_model(), capacity=2)  # grows while streams open
    got: list[list[tuple[float, np.ndarray]]] = [[] for _ in signals]
    streams = [batcher.stream(out_list.append_result) for out_list in map(_Collector, got)]
    # Different arrival patterns per call: Twilio frames, odd sizes, and a burst of several chunks at once.
    steps = [160, 160, 1013, 160, 777, 160, 2048, 160]
    offsets = [0] * len(signals)
    while any(o < len(s) for o, s in zip(offsets, signals, strict=True)):
        for i, (stream, sig) in enumerate(zip(streams, signals, strict=True)):
            if offsets[i] < len(sig):
                stream.feed(sig[offsets[i] : offsets[i] + steps[i]])
                offsets[i] += steps[i]
        batcher.run_pending()
    assert batcher.capacity >= len(signals)
    assert batcher.runs < batcher.chunks  # chunks of several calls shared runs
    for sig, out in zip(signals, got, strict=True):
        ref = _reference(sig)
        assert len(out) == len(ref) == len(sig) // CHUNK
        assert [p for p, _ in out] == [p for p, _ in ref]  # exact float equality, not approx
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(out, ref, strict=True))


def test_streams_joining_and_leaving_keep_their_own_state() -> None:
    batcher = VadBatcher(shared_model(), capacity=4)
    speech, other = _f32("human"), _f32("hours")
    got_a: list[float] = []
    a = batcher.stream(lambda p, c, level: got_a.append(p))
    half = (len(speech) // 2) // CHUNK * CHUNK
    a.feed(speech[:half])
    batcher.run_pending()
    # b opens, runs, closes (its slot is then reused by c) while a is mid-utterance
    b = batcher.stream(lambda p, c, level: None)
    b.feed(other[: 20 * CHUNK])
    batcher.run_pending()
    b.close()
    got_c: list[float] = []
    c = batcher.stream(lambda p, c_, level: got_c.append(p))
    assert c.slot == b.slot
    c.feed(other)
    a.feed(speech[half:])
    batcher.run_pending()
    assert got_a == [p for p, _ in _reference(speech)]
    assert got_c == [p for p, _ in _reference(other)]  # the reused row started from a clean state
    assert batcher.streams == 2


def test_mulaw_feed_matches_the_decoder() -> None:
    payload = mulaw("hours")
    batcher = VadBatcher(shared_model())
    got: list[float] = []
    s = batcher.stream(lambda p, c, level: got.append(p))
    for i in range(0, len(payload), 160):
        s.feed_mulaw(payload[i : i + 160])
    batcher.run_pending()
    assert got == [p for p, _ in _reference(ulaw2lin(payload))]


def test_a_closed_stream_gets_nothing_and_a_failing_handler_spares_the_others() -> None:
    batcher = VadBatcher(shared_model())
    seen: list[float] = []

    def boom(p: float, c: np.ndarray, level: float) -> None:
        raise RuntimeError("handler bug")

    bad = batcher.stream(boom)
    good = batcher.stream(lambda p, c, level: seen.append(p))
    gone = batcher.stream(lambda p, c, level: seen.append(-1.0))
    sig = _f32("hours")[: 3 * CHUNK]
    for s in (bad, good, gone):
        s.feed(sig)
    gone.close()
    assert batcher.run_pending() == 1 + 3  # bad: its first chunk, then closed; good: all three
    assert bad.closed and len(seen) == 3 and -1.0 not in seen


def test_wrong_dtype_is_a_clear_error() -> None:
    s = VadBatcher(shared_model()).stream(lambda p, c, level: None)
    with pytest.raises(TypeError, match="float32"):
        s.feed(np.zeros(256, dtype=np.int16))


async def test_the_batcher_task_infers_within_a_tick() -> None:
    import asyncio

    batcher = VadBatcher(shared_model(), tick_s=0.01)
    task = asyncio.create_task(batcher.run())
    got: list[float] = []
    done = asyncio.Event()

    def on(p: float, c: np.ndarray, level: float) -> None:
        got.append(p)
        if len(got) == 2:
            done.set()

    streams = [batcher.stream(on) for _ in range(2)]
    for s in streams:
        s.feed(_f32("hours")[:CHUNK])
    await asyncio.wait_for(done.wait(), 10)
    assert batcher.runs == 1 and batcher.chunks == 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def _append_prob(out: list[float], p: float, c: np.ndarray, level: float) -> None:
    out.append(p)


@pytest.mark.parametrize("budget_s", [0.0, 60.0])
async def test_the_batcher_task_hands_answers_over_in_slices_with_the_loop_free_between(budget_s: float) -> None:
    """Every answer arrives, in order per stream and equal to run_pending's; with no budget left after each 16
    streams, other tasks run between the slices; with a large one, a tick's answers come in one go."""
    import asyncio

    n, depth = 64, 3
    sig = _f32("hours")[: depth * CHUNK]
    reference = VadBatcher(shared_model())
    expected: dict[int, list[float]] = {k: [] for k in range(n)}
    for k in range(n):
        reference.stream(functools.partial(_append_prob, expected[k])).feed(sig[: (1 + k % depth) * CHUNK])
    reference.run_pending()

    batcher = VadBatcher(shared_model(), tick_s=0.01, delivery_budget_s=budget_s)
    got: dict[int, list[float]] = {k: [] for k in range(n)}
    rounds = [0]  # how many times another task ran
    seen_at: list[int] = []  # rounds at each answer
    done = asyncio.Event()
    total = sum(len(v) for v in expected.values())

    def on(k: int, p: float, c: np.ndarray, level: float) -> None:
        got[k].append(p)
        seen_at.append(rounds[0])
        if len(seen_at) == total:
            done.set()

    async def other() -> None:
        while not done.is_set():
            rounds[0] += 1
            await asyncio.sleep(0)

    for k in range(n):
        batcher.stream(functools.partial(on, k)).feed(sig[: (1 + k % depth) * CHUNK])
    task = asyncio.create_task(batcher.run())
    spinner = asyncio.create_task(other())
    await asyncio.wait_for(done.wait(), 10)
    assert got == expected
    first_depth = seen_at[:n]  # the first chunk of every stream: one batch, handed over in 4 slices of 16 or at once
    assert len(set(first_depth)) == (4 if budget_s == 0.0 else 1)
    task.cancel()
    await spinner
    with pytest.raises(asyncio.CancelledError):
        await task


# ---- the pre-gate --------------------------------------------------------------------------------------------------
def _idle_line(seconds: float, seed: int, scale: float) -> np.ndarray:
    """White noise at about -55 dBFS and 60 Hz hum at about -46 dBFS, times ``scale`` (bench/load.py's line)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 8000)) / 8000
    return scale * (rng.normal(0, 0.0018, len(t)) + 0.005 * np.sin(2 * np.pi * 60 * t + 1.0))


def _endpoints(sig: np.ndarray, gate: GateConfig | None) -> tuple[list[tuple[str, float]], int]:
    batcher = VadBatcher(shared_model(), gate=gate)
    endpointer = Endpointer(EndpointConfig())
    events: list[tuple[str, float]] = []

    def on(prob: float, chunk: np.ndarray, level: float) -> None:
        for ev in endpointer.feed(prob, chunk, level):
            events.append((type(ev).__name__, float(getattr(ev, "at", getattr(ev, "ended_at", 0.0)))))

    stream = batcher.stream(on)
    for i in range(0, len(sig), 160):
        stream.feed(sig[i : i + 160])
        if i % 320 == 0:
            batcher.run_pending()
    batcher.run_pending()
    return events, batcher.skipped


@pytest.mark.parametrize("scale", [0.0, 0.5, 1.0, 2.0])
def test_the_pre_gate_never_delays_or_misses_speech_on_the_fixtures(scale: float) -> None:
    """Every speech fixture (clean and conversation sets) after 3 s of idle line at four noise levels
    (none, i.e. digital silence, to about -40 dBFS): the Endpointer sees the same events in the same
    order as with ungated inference (no utterance missed, none invented); each starts within one
    chunk (32 ms) and ends within three chunks of the ungated times (skipped chunks leave the
    recurrent state where it was, so probabilities near a threshold can move by a chunk), and a
    barge-in is never later than one chunk (it may come up to two chunks earlier: the state left
    from before a long gated stretch can judge a chunk of the utterance voiced a little sooner)."""
    paths = sorted((FIXTURES.parent / "speech").glob("*.ul")) + sorted((FIXTURES.parent / "conversation").glob("*.ul"))
    assert len(paths) >= 15
    skipped = starts = 0
    for path in paths:
        speech = ulaw2lin(path.read_bytes()).astype(np.float64) / 32768.0
        sig = _idle_line(len(speech) / 8000 + 4.0, 3, scale)
        sig[8000 * 3 : 8000 * 3 + len(speech)] += speech
        ungated, _ = _endpoints(sig.astype(np.float32), None)
        gated, n = _endpoints(sig.astype(np.float32), GateConfig())
        skipped += n
        assert [k for k, _ in gated] == [k for k, _ in ungated], path.name
        starts += sum(k == "SpeechStart" for k, _ in ungated)
        for (kind, t_gated), (_, t_ungated) in zip(gated, ungated, strict=True):
            slack = (1 if kind in ("SpeechStart", "BargeIn") else 3) * CHUNK / 8000 + 1e-9
            early = (2 if kind == "BargeIn" else 1) * slack
            assert -early <= t_gated - t_ungated <= slack, (path.name, kind, t_gated, t_ungated)
    assert starts >= len(paths) - 1  # every fixture but the cough is speech
    assert skipped > 0  # the gate did close during the idle lead-ins


def test_the_pre_gate_skips_most_of_an_idle_line_and_never_a_loud_one() -> None:
    """A new line's level is learnt from its first quiet chunks: at any idle level the gate closes after
    about 0.5 s (before, the floor crept up from -70 dBFS for seconds, inferring every chunk meanwhile)."""
    for scale in (0.5, 1.0, 2.0):
        _, skipped = _endpoints(_idle_line(20.0, 5, scale).astype(np.float32), GateConfig())
        assert skipped > (20 * 8000 // CHUNK) - 40, scale  # at most ~1.3 s of 20 inferred
    _, skipped = _endpoints(_idle_line(5.0, 5, 8.0).astype(np.float32), GateConfig())  # about -30 dBFS
    assert skipped == 0


async def test_the_loops_shared_batcher_runs_while_streams_are_open() -> None:
    import asyncio

    model = shared_model()
    batcher = model.batcher()
    assert model.batcher() is batcher and batcher.gate is not None
    got: list[float] = []
    done = asyncio.Event()

    def on(p: float, c: np.ndarray, level: float) -> None:
        got.append(p)
        done.set()

    stream = batcher.stream(on)
    task = batcher._task
    assert task is not None and not task.done()
    stream.feed(_f32("hours")[:CHUNK])
    await asyncio.wait_for(done.wait(), 10)
    stream.close()
    await asyncio.wait_for(task, 10)  # ends with the last stream
    assert got == [p for p, _ in _reference(_f32("hours")[:CHUNK])]


async def test_infer_awaits_the_batched_results_in_order() -> None:
    import asyncio

    batcher = shared_model().batcher()
    signals = [_f32("hours"), _f32("human")[: 8000 * 3]]
    streams = [batcher.stream() for _ in signals]

    async def one(stream: object, sig: np.ndarray) -> list[float]:
        assert hasattr(stream, "infer")
        got: list[float] = []
        for i in range(0, len(sig), 160):
            got += [p for p, _ in await stream.infer(sig[i : i + 160])]
        return got

    try:
        calls = (one(s, g) for s, g in zip(streams, signals, strict=True))
        results = await asyncio.wait_for(asyncio.gather(*calls), 60)
    finally:
        for s in streams:
            s.close()
    for got, sig in zip(results, signals, strict=True):
        # the loop's batcher has the pre-gate on: the reference is a gated batcher driven by hand
        reference = VadBatcher(shared_model(), gate=GateConfig())
        ref = reference.stream()
        expected: list[float] = []
        for i in range(0, len(sig), 160):
            ref.feed(sig[i : i + 160])
            reference.run_pending()
            expected += [p for p, _ in ref._results]
            ref._results = []
        assert got == expected and max(got) > 0.8
    assert batcher.runs < batcher.chunks  # the two calls shared inferences


async def test_per_call_stream_has_the_same_awaitable_interface() -> None:
    sig = _f32("hours")
    stream = shared_model().stream()
    got = [p for i in range(0, len(sig), 160) for p, _ in await stream.infer(sig[i : i + 160])]
    assert got == [p for p, _ in _reference(sig)]
