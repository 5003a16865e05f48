"""ChatTTS engine end to end on a tiny random checkpoint, loaded through the production entry point.

The checkpoint is built once per session (tests/chattts_fixture.py); the engine resolves it as
CHATTTS_MODEL_DIR would be, checks its sha256 against the fixture's hashes (override hook), and
loads it with ``Chat.load(source="custom")`` on CPU, one torch thread.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from collections.abc import AsyncGenerator, Coroutine, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audio.formats import Encoding
from gateway.ops.metrics import Metrics
from tests.chattts_fixture import Checkpoint, build_checkpoint
from tests.helpers import wait_until
from tts.base import SynthesisRequest, TTSEngine, TTSError
from tts.chattts import CHATTTS_FORMAT, ChatTTSConfig, ChatTTSEngine, speed_prompt
from tts.chattts_voices import load_presets
from tts.chattts_worker import SAMPLES_PER_TOKEN, Tuning
from tts.settings import ChatTTSVoice

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*past_key_values.*:FutureWarning"),
]

TOKENS = 60  # every sentence is exactly this many audio tokens (Tuning.fixed_tokens)
SAMPLES = TOKENS * SAMPLES_PER_TOKEN - 256  # Vocos ISTFT (center): 2 frames/token, hop 256, minus half a hop


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Checkpoint:
    return build_checkpoint(tmp_path_factory.mktemp("chattts-tiny"))


def _start(config: ChatTTSConfig, metrics: Metrics | None = None) -> ChatTTSEngine:
    engine = ChatTTSEngine(config, metrics)
    asyncio.run(engine.start())
    return engine


@pytest.fixture(scope="session")
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture(scope="session")
def engine(ckpt: Checkpoint, metrics: Metrics) -> Iterator[ChatTTSEngine]:
    cfg = ChatTTSConfig(model_dir=ckpt.path, device="cpu", sha256_override=ckpt.sha256,
                        tuning=Tuning(fixed_tokens=TOKENS, sentence_metrics=True))
    eng = _start(cfg, metrics)
    yield eng
    asyncio.run(eng.aclose())


async def in_one_batch(engine: ChatTTSEngine, *coros: Coroutine[Any, Any, Any]) -> list[asyncio.Task[Any]]:
    """Start ``coros`` with the inference thread held until each has queued its sentence: they share a batch
    however slow this machine is (no race against ``batch_window_s``)."""
    worker = engine._worker
    assert worker is not None
    queued = len(worker.sched.queue)
    with worker.cond:  # an RLock: submissions from this (the loop's) thread re-enter it, the inference thread waits
        tasks = [asyncio.create_task(c) for c in coros]
        await wait_until(lambda: len(worker.sched.queue) == queued + len(coros))
    return tasks


async def _speak(engine: ChatTTSEngine, text: str, **settings: object) -> list[np.ndarray]:
    req = SynthesisRequest(text, settings=ChatTTSVoice(**settings))  # type: ignore[arg-type]
    out = []
    async for chunk in engine.synthesize(req):
        assert chunk.format == CHATTTS_FORMAT
        out.append(chunk.data)
    return out  # type: ignore[return-value]


def test_loads_through_production_entry_point(engine: ChatTTSEngine) -> None:
    assert isinstance(engine, TTSEngine)
    assert engine.ready and engine.load_error is None and engine.device == "cpu"


def test_stock_hashes_reject_the_random_checkpoint(ckpt: Checkpoint) -> None:
    eng = _start(ChatTTSConfig(model_dir=ckpt.path, device="cpu"))  # no override: the package's own map
    assert not eng.ready
    assert eng.load_error is not None and "asset/Decoder.safetensors is corrupt" in eng.load_error
    assert "asset/gpt/model.safetensors" in eng.load_error


async def test_missing_weights_are_named_and_synthesis_fails_cleanly(ckpt: Checkpoint, tmp_path: Path) -> None:
    broken = tmp_path / "model"
    shutil.copytree(ckpt.path, broken)
    (broken / "asset" / "Vocos.safetensors").unlink()
    eng = ChatTTSEngine(ChatTTSConfig(model_dir=broken, device="cpu", sha256_override=ckpt.sha256))
    await eng.start()
    assert not eng.ready
    assert eng.load_error == f"CHATTTS_MODEL_DIR={broken}: asset/Vocos.safetensors is missing"
    with pytest.raises(TTSError, match="Vocos.safetensors is missing"):
        async for _ in eng.synthesize(SynthesisRequest("hello")):
            pass
    await eng.aclose()


async def test_offline_without_weights_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    eng = ChatTTSEngine(ChatTTSConfig(model_dir=None, device="cpu"))
    await asyncio.wait_for(eng.start(), 30)
    assert not eng.ready and eng.load_error is not None and "CHATTTS_MODEL_DIR" in eng.load_error


async def test_output_is_24k_float_with_exact_length(engine: ChatTTSEngine) -> None:
    chunks = await _speak(engine, "Hello, thanks for calling.")
    assert CHATTTS_FORMAT.sample_rate == 24000 and CHATTTS_FORMAT.encoding is Encoding.PCM_F32
    assert all(c.dtype == np.float32 and c.ndim == 1 for c in chunks)
    assert sum(len(c) for c in chunks) == SAMPLES
    assert np.isfinite(np.concatenate(chunks)).all()


async def test_audio_streams_before_the_sentence_is_finished(engine: ChatTTSEngine) -> None:
    tuning = engine.config.tuning
    chunks = await _speak(engine, "Please hold the line.", seed=5)
    # first chunk after step+holdback tokens, then one chunk per step, then the flushed tail
    assert len(chunks[0]) == (2 * tuning.stream_step_tokens - tuning.stream_holdback_tokens) * SAMPLES_PER_TOKEN
    assert len(chunks) >= TOKENS // tuning.stream_step_tokens - 1


async def test_stream_chunks_concatenate_to_the_one_shot_audio(engine: ChatTTSEngine, ckpt: Checkpoint) -> None:
    one_shot = ChatTTSEngine(ChatTTSConfig(
        model_dir=ckpt.path, device="cpu", sha256_override=ckpt.sha256,
        tuning=Tuning(fixed_tokens=TOKENS, stream_step_tokens=10_000),  # decoded once, at the end
    ))
    await one_shot.start()
    try:
        streamed = await _speak(engine, "Hello world, thank you.", seed=11)
        whole = await _speak(one_shot, "Hello world, thank you.", seed=11)
    finally:
        await one_shot.aclose()
    assert len(whole) == 1 and len(streamed) > 3
    np.testing.assert_allclose(np.concatenate(streamed), whole[0], atol=1e-5)


async def test_fixed_seed_is_deterministic_and_seeds_differ(engine: ChatTTSEngine) -> None:
    a = np.concatenate(await _speak(engine, "Hello world.", seed=42))
    b = np.concatenate(await _speak(engine, "Hello world.", seed=42))
    c = np.concatenate(await _speak(engine, "Hello world.", seed=43))
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


async def test_n_coroutines_all_complete_in_shared_batches(engine: ChatTTSEngine, metrics: Metrics) -> None:
    before = list(engine.stats.batch_sizes)
    voices = ["female_1", "male_2", "neutral_1", "female_3", "male_1", "neutral_2"]
    results = await asyncio.gather(*await in_one_batch(engine, *(
        _speak(engine, f"Caller {i}: you owe ${i}.50, due 11/2{i}.", voice=v, speed=0.5 + 0.25 * i,
               temperature=0.1 + 0.1 * i, top_k=5 + i)
        for i, v in enumerate(voices)
    )))
    assert [sum(len(c) for c in r) for r in results] == [SAMPLES] * len(voices)
    new = engine.stats.batch_sizes[len(before):]
    assert new == [len(voices)]  # different voices and settings shared one batch
    assert metrics.registry.get_sample_value("voicegw_chattts_batch_size_count") is not None
    assert metrics.registry.get_sample_value("voicegw_tts_rtf_count", {"provider": "chattts"})


async def test_batch_neighbours_do_not_change_a_seeded_row(engine: ChatTTSEngine) -> None:
    alone = np.concatenate(await _speak(engine, "Hello world.", seed=7))
    together = await asyncio.gather(*await in_one_batch(
        engine, _speak(engine, "Hello world.", seed=7), _speak(engine, "Thank you.", seed=8, voice="male_1", speed=2.0)
    ))
    assert engine.stats.batch_sizes[-1] == 2
    np.testing.assert_allclose(np.concatenate(together[0]), alone, atol=1e-5)


async def test_cancelling_one_request_leaves_its_batch_neighbours_intact(engine: ChatTTSEngine) -> None:
    reference = np.concatenate(await _speak(engine, "Hello world.", seed=21))
    got_first = asyncio.Event()
    cancelled_chunks: list[np.ndarray] = []

    async def hang_up_after_first_chunk() -> None:
        async for chunk in engine.synthesize(SynthesisRequest("Thank you.", settings=ChatTTSVoice(seed=22))):
            cancelled_chunks.append(chunk.data)  # type: ignore[arg-type]
            got_first.set()
            await asyncio.sleep(3600)  # the caller hangs up while we wait

    victim, survivor = await in_one_batch(engine, hang_up_after_first_chunk(), _speak(engine, "Hello world.", seed=21))
    await asyncio.wait_for(got_first.wait(), 60)
    victim.cancel()
    with pytest.raises(asyncio.CancelledError):
        await victim
    np.testing.assert_allclose(np.concatenate(await asyncio.wait_for(survivor, 60)), reference, atol=1e-5)
    assert len(cancelled_chunks) == 1
    assert engine.stats.batch_sizes[-1] == 2  # they did share a batch


async def test_cancelling_every_row_stops_the_batch_early(ckpt: Checkpoint) -> None:
    long_tokens = 2000
    eng = ChatTTSEngine(ChatTTSConfig(model_dir=ckpt.path, device="cpu", sha256_override=ckpt.sha256,
                                      tuning=Tuning(fixed_tokens=long_tokens)))
    await eng.start()
    worker = eng._worker
    assert worker is not None
    # After a batch's first audio the inference thread waits until every row of it was cancelled (the callers
    # left): the steps it then takes are the cancellation's, however slowly this machine runs the event loop.
    emit, held = worker._emit, threading.Event()

    def emit_then_wait_for_the_callers(rows: list[Any], hiddens: list[Any], steps: int, final: bool) -> None:
        emit(rows, hiddens, steps, final)
        if any(r.emitted_samples for r in rows) and not held.is_set():
            held.set()
            deadline = time.monotonic() + 60
            while not all(r.job.cancelled for r in rows) and time.monotonic() < deadline:
                time.sleep(0.005)

    worker._emit = emit_then_wait_for_the_callers  # type: ignore[method-assign]
    try:
        async def first_chunk_then_leave(text: str) -> None:
            stream = eng.synthesize(SynthesisRequest(text))
            assert isinstance(stream, AsyncGenerator)
            async with aclosing(stream):
                async for _ in stream:
                    return  # closing the stream cancels the job

        await asyncio.wait_for(asyncio.gather(
            *await in_one_batch(eng, first_chunk_then_leave("one"), first_chunk_then_leave("two"))), 60)
        await wait_until(lambda: eng.stats.gpt_steps > 0)  # counted when the batch ends
        # the first audio came after 2 × 12 steps; the cancellation stopped the batch within a stream step of it,
        # far from the 2000 tokens each row was going to take
        first_audio_steps = 2 * worker.tuning.stream_step_tokens
        assert eng.stats.batch_sizes == [2] and held.is_set()
        assert first_audio_steps <= eng.stats.gpt_steps <= first_audio_steps + worker.tuning.stream_step_tokens + 1
    finally:
        await eng.aclose()


async def test_digits_and_symbols_never_reach_the_model(
    engine: ChatTTSEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """What the model is given (after ChatTTS's own normalizer) still has every amount, as words."""
    caplog.set_level(logging.DEBUG, logger="voicegw.tts.chattts")
    chunks = await _speak(engine, "$5.20 at 3:30 pm, +1 415 555 0100 & 50%!")
    assert sum(len(c) for c in chunks) == SAMPLES
    texts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("chattts batch texts")]
    assert texts == ["chattts batch texts: ['five dollars and twenty cents at three thirty p m, plus one, four one "
                     "five, five five five, zero one zero zero and fifty percent.']"]
    assert not [r for r in caplog.records if "invalid characters" in r.getMessage()]  # ChatTTS deleted nothing


async def test_bad_settings_fail_fast_with_tts_error(engine: ChatTTSEngine) -> None:
    with pytest.raises(TTSError, match="not a ChatTTS speaker string"):
        await _speak(engine, "hi", speaker="not a speaker")
    real_dim = ChatTTSVoice(speaker=load_presets()["male_1"])
    with pytest.raises(TTSError, match="768 values but the loaded model needs 64"):
        async for _ in engine.synthesize(SynthesisRequest("hi", settings=real_dim)):
            pass


async def test_a_passed_deadline_fails_fast(engine: ChatTTSEngine) -> None:
    # idle: admitted, then dropped when the batch forms; still finishing the last batch: refused at once
    with pytest.raises(TTSError, match="deadline passed while queued|queue too deep"):
        async for _ in engine.synthesize(SynthesisRequest("hi", deadline=time.monotonic() - 1)):
            pass


async def test_busy_engine_refuses_what_it_cannot_start_before_the_deadline(ckpt: Checkpoint) -> None:
    eng = ChatTTSEngine(ChatTTSConfig(model_dir=ckpt.path, device="cpu", sha256_override=ckpt.sha256,
                                      tuning=Tuning(fixed_tokens=600)))
    await eng.start()
    try:
        await _speak(eng, "measure one batch")
        stream = eng.synthesize(SynthesisRequest("a long sentence keeps the engine busy"))
        assert isinstance(stream, AsyncGenerator)
        async with aclosing(stream):
            await anext(stream)  # its batch is running (hundreds of tokens to go)
            with pytest.raises(TTSError, match="queue too deep"):
                async for _ in eng.synthesize(SynthesisRequest("hi", deadline=time.monotonic() + 0.01)):
                    pass
            async for _ in eng.synthesize(SynthesisRequest("hi", deadline=time.monotonic() + 120)):
                break  # a generous deadline is admitted and served after the running batch
    finally:
        await eng.aclose()


def test_speed_mapping() -> None:
    assert [speed_prompt(s) for s in (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)] == [
        "[speed_1]", "[speed_3]", "[speed_5]", "[speed_6]", "[speed_7]", "[speed_9]"]
    with pytest.raises(ValueError):
        speed_prompt(3.0)
