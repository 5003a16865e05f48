"""voicegw as a speech server: ``POST /v1/audio/speech`` streamed as raw PCM, read by the remote engine.

The speech app runs under real uvicorn in the speech role with the real in-process ChatTTS engine on the
tiny random checkpoint (tests/chattts_fixture.py, loaded through Chat.load); the client is the real remote
engine over loopback HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import numpy as np
import pytest

from agents.store import MemoryStore
from audio.formats import AudioFormat, Encoding
from gateway.app import create_app
from gateway.ops.drain import Drain
from gateway.ops.metrics import Metrics
from gateway.serve import serve_in_loop
from gateway.services import Services
from gateway.settings import Settings
from tests.chattts_fixture import Checkpoint, build_checkpoint
from tests.helpers import wait_until
from tts.base import SynthesisRequest, TTSError
from tts.breaker import BreakerRegistry
from tts.chattts import ChatTTSConfig, ChatTTSEngine
from tts.chattts_remote import RemoteChatTTSEngine, RemoteConfig
from tts.chattts_worker import SAMPLES_PER_TOKEN, Tuning
from tts.settings import ChatTTSVoice

pytestmark = pytest.mark.slow

TOKENS = 48


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Checkpoint:
    return build_checkpoint(tmp_path_factory.mktemp("chattts-speech"))


@asynccontextmanager
async def speech_pod(ckpt: Checkpoint, tokens: int = TOKENS) -> AsyncIterator[tuple[str, ChatTTSEngine]]:
    settings = Settings.from_env({"VOICEGW_ROLE": "speech"})
    services = Services(settings=settings, store=MemoryStore({}), metrics=Metrics(), drain=Drain(5.0))
    services.breakers = BreakerRegistry()
    engine = ChatTTSEngine(ChatTTSConfig(model_dir=ckpt.path, device="cpu", sha256_override=ckpt.sha256,
                                         tuning=Tuning(fixed_tokens=tokens)), services.metrics)
    await engine.start()
    assert engine.ready, engine.load_error
    services.engines["chattts"] = engine
    try:
        async with serve_in_loop(create_app(settings, services), settings) as url:
            yield url, engine
    finally:
        await services.aclose()


@asynccontextmanager
async def remote(url: str) -> AsyncIterator[RemoteChatTTSEngine]:
    eng = RemoteChatTTSEngine(RemoteConfig(url=url, health_interval_s=600), name="chattts")
    await eng.start()
    try:
        yield eng
    finally:
        await eng.aclose()


async def test_a_sentence_streams_as_pcm_with_its_format_in_the_headers(ckpt: Checkpoint) -> None:
    async with speech_pod(ckpt) as (url, _), remote(url) as eng:
        assert eng.ready
        chunks = [c async for c in eng.synthesize(SynthesisRequest("Hello world.", settings=ChatTTSVoice(seed=3)))]
        assert eng.stats.streamed == 1 and eng.stats.files == 0
        assert len(chunks) >= 2  # ChatTTS's chunks arrive as they are synthesized, not as one file
        assert all(c.format == AudioFormat(Encoding.PCM_S16, 24000) for c in chunks)
        samples = sum(c.num_samples for c in chunks)
        assert abs(samples - TOKENS * SAMPLES_PER_TOKEN) <= SAMPLES_PER_TOKEN
        async with httpx.AsyncClient(base_url=url) as client:
            body = {"text": "Hello world.", "voice": "female_1", "speed": 1.0, "temperature": 0.3, "top_p": 0.7,
                    "top_k": 20, "response_format": "wav", "use_refine": False}
            streamed = await client.post("/v1/audio/speech", json=body,
                                         headers={"x-audio-stream": "pcm_s16le", "x-chattts-seed": "3"})
            assert streamed.status_code == 200
            assert streamed.headers["content-type"] == "audio/L16;rate=24000;channels=1"
            assert streamed.headers["x-sample-rate"] == "24000" and streamed.headers["x-audio-stream"] == "pcm_s16le"
            assert streamed.headers["transfer-encoding"] == "chunked"
            same = np.concatenate([np.asarray(c.data) for c in chunks])
            assert np.array_equal(np.frombuffer(streamed.content, "<i2"), same)  # seed 3 both times
            whole = await client.post("/v1/audio/speech", json=body)  # no header: the seed's whole WAV
            assert whole.status_code == 200 and whole.headers["content-type"] == "audio/wav"


async def test_cancelling_a_sentence_frees_its_batch_row(ckpt: Checkpoint) -> None:
    long_tokens = 3000  # ~64 s of audio: far longer than this test waits
    async with speech_pod(ckpt, long_tokens) as (url, engine), remote(url) as eng:
        first = asyncio.Event()

        async def speak() -> None:
            async for _ in eng.synthesize(SynthesisRequest("Barge in on this long sentence.")):
                first.set()

        task = asyncio.create_task(speak())
        await asyncio.wait_for(first.wait(), 120)
        task.cancel()  # barge-in: the client closes its request
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_until(lambda: engine.stats.gpt_steps > 0, 120)  # the batch ended (steps are counted at its end)
        assert engine.stats.gpt_steps < long_tokens  # its only row was stopped, not generated to the end
        assert eng.stats.cancelled == 1
        after = [c async for c in eng.synthesize(SynthesisRequest("Next."))]  # the engine is free for the next
        assert after


async def test_stream_refusals_are_json_before_any_audio(ckpt: Checkpoint) -> None:
    async with speech_pod(ckpt) as (url, engine), remote(url) as eng:
        await engine.aclose()  # ChatTTS gone (the inference thread stopped)
        with pytest.raises(TTSError, match=r"server error \(503\): chattts is not available"):
            _ = [c async for c in eng.synthesize(SynthesisRequest("Hello."))]
