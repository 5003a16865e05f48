"""PiperEngine: the real bundled joe voice on CPU, off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from audio.formats import AudioChunk, Encoding
from tts.base import SynthesisRequest, TTSError
from tts.piper import PiperEngine, PriorityTurns
from tts.settings import PiperVoice

pytestmark = pytest.mark.slow

LONG = ("Thank you for calling. Your appointment is confirmed for Tuesday at three in the afternoon. "
        "If you need to change it, please call us back at any time.")


async def chunks(engine: PiperEngine, text: str, speed: float = 1.0) -> list[AudioChunk]:
    request = SynthesisRequest(text=text, settings=PiperVoice(speed=speed))
    return [c async for c in engine.synthesize(request)]


def seconds(parts: list[AudioChunk]) -> float:
    return sum(c.duration for c in parts)


async def test_speaks_pcm16_at_the_voice_rate(piper: PiperEngine) -> None:
    parts = await chunks(piper, "Hello, how can I help you today?")
    assert parts
    for c in parts:
        assert c.format.encoding is Encoding.PCM_S16 and c.format.sample_rate == 22050
    audio = np.concatenate([np.asarray(c.data) for c in parts]).astype(np.float64)
    assert 0.8 < seconds(parts) < 5.0
    assert np.sqrt(np.mean(audio**2)) > 300  # speech, not silence


async def test_speed_maps_to_length_scale(piper: PiperEngine) -> None:
    normal = seconds(await chunks(piper, "Please hold the line.", 1.0))
    fast = seconds(await chunks(piper, "Please hold the line.", 2.0))
    assert fast < normal * 0.75


async def test_concurrent_requests_are_serialized_and_all_complete(piper: PiperEngine) -> None:
    results = await asyncio.gather(*(chunks(piper, f"Caller number {i}.") for i in range(3)))
    assert all(seconds(r) > 0.5 for r in results)


async def test_event_loop_keeps_running_during_synthesis(piper: PiperEngine) -> None:
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await chunks(piper, LONG)
    elapsed = loop.time() - t0
    stop.set()
    await task
    # The loop went on ticking while Piper worked in its thread (a blocking call would give ~1 tick).
    assert ticks >= max(3, int(elapsed / 0.01) // 10)


async def test_cancel_mid_stream_leaves_engine_usable(piper: PiperEngine) -> None:
    gen = piper.synthesize(SynthesisRequest(text=LONG + " " + LONG, settings=PiperVoice()))
    first = await gen.__anext__()
    assert first.num_samples > 0
    await asyncio.wait_for(gen.aclose(), 30)  # type: ignore[attr-defined]
    assert seconds(await chunks(piper, "Still here.")) > 0.3


async def test_missing_voice_is_reported() -> None:
    engine = PiperEngine(voice="/nonexistent/voice.onnx")
    await engine.start()
    assert not engine.ready and engine.load_error and "not found" in engine.load_error
    await engine.aclose()


async def test_bad_voice_in_request_raises_tts_error(piper: PiperEngine) -> None:
    with pytest.raises(TTSError, match="synthesis failed"):
        [c async for c in piper.synthesize(SynthesisRequest(text="x", settings=PiperVoice(voice="/nope.onnx")))]


async def test_a_call_sentence_goes_before_queued_api_sentences(piper: PiperEngine) -> None:
    """Piper's one thread serves waiting sentences by priority: a caller's (0/1) before the API's (2)."""
    first_audio: list[str] = []

    async def speak(name: str, priority: int) -> None:
        request = SynthesisRequest(text=LONG if name == "busy" else "Hello there.", priority=priority)
        async for _ in piper.synthesize(request):
            if name not in first_audio:
                first_audio.append(name)

    busy = asyncio.create_task(speak("busy", 1))
    await _wait(lambda: first_audio == ["busy"])  # the thread is taken
    api = [asyncio.create_task(speak(f"api-{i}", 2)) for i in range(3)]
    await _wait(lambda: piper._turns.waiting == 3)
    call = asyncio.create_task(speak("call", 0))  # arrives last
    await asyncio.gather(busy, call, *api)
    assert first_audio[:2] == ["busy", "call"] and sorted(first_audio[2:]) == ["api-0", "api-1", "api-2"]


async def test_priority_turns_pass_on_when_a_waiter_is_cancelled() -> None:
    turns = PriorityTurns()
    await turns.acquire(1)
    gone = asyncio.create_task(turns.acquire(0))
    later = asyncio.create_task(turns.acquire(2))
    await _wait(lambda: turns.waiting == 2)
    gone.cancel()
    turns.release()
    await asyncio.wait_for(later, 30)  # the cancelled waiter was skipped
    turns.release()
    await asyncio.wait_for(turns.acquire(5), 1)  # free again: taken at once


async def _wait(check: Callable[[], bool]) -> None:
    for _ in range(3000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met")
