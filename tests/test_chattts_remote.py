"""The remote ChatTTS engine against a stand-in for a plain ChatTTS server (whole-file answers, the seed's JSON).

Real HTTP on loopback (uvicorn in a thread, the engine's real httpx pool). Bad answers each end in a
fallback the Speaker logs, never in silence. Streaming from voicegw itself is in tests/test_speech_stream.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest

from audio.formats import Encoding
from tests.fake_chattts_server import SEED_FIELDS, FakeChatTTSServer, samples_for
from tests.fake_engines import ScriptedEngine
from tests.helpers import free_port, wait_until
from tts.base import SynthesisRequest, TTSError
from tts.breaker import BreakerRegistry, State
from tts.chattts_remote import RemoteChatTTSEngine, RemoteConfig
from tts.fallback import Speaker, SpeechAudio, SpeechRestart
from tts.registry import TTSConfig
from tts.render import to_float
from tts.settings import ChatTTSVoice


@pytest.fixture(scope="module")
def server() -> Iterator[FakeChatTTSServer]:
    fake = FakeChatTTSServer().start()
    yield fake
    fake.stop()


@pytest.fixture
async def engine(server: FakeChatTTSServer) -> AsyncIterator[RemoteChatTTSEngine]:
    server.reset()
    eng = RemoteChatTTSEngine(RemoteConfig(url=server.url, health_interval_s=0.2), name="chattts",
                              breakers=BreakerRegistry())
    await eng.start()
    yield eng
    await eng.aclose()


async def collect(engine: RemoteChatTTSEngine, text: str, settings: ChatTTSVoice | None = None) -> np.ndarray:
    chunks = [c async for c in engine.synthesize(SynthesisRequest(text, settings=settings))]
    assert chunks
    return np.concatenate([np.asarray(c.data) for c in chunks])


async def test_whole_wav_answer_is_decoded_exactly_and_the_request_is_the_seeds(
        engine: RemoteChatTTSEngine, server: FakeChatTTSServer) -> None:
    assert engine.ready and engine.load_error is None
    voice = ChatTTSVoice(voice="male_1", speed=1.5, top_k=40)
    audio = await collect(engine, "Hello world.", voice)
    assert audio.dtype == np.int16 and np.array_equal(audio, samples_for("Hello world."))
    (body,) = server.recorded.bodies
    assert tuple(body) == SEED_FIELDS
    assert body == {"text": "Hello world.", "voice": "male_1", "speed": 1.5, "temperature": 0.3, "top_p": 0.7,
                    "top_k": 40, "response_format": "wav", "use_refine": False}
    assert server.recorded.headers[0]["x-audio-stream"] == "pcm_s16le"  # asked; a plain server ignores it
    assert engine.stats.files == 1 and engine.stats.streamed == 0 and engine.stats.bytes_received > 24000


async def test_text_is_normalized_before_it_leaves(engine: RemoteChatTTSEngine, server: FakeChatTTSServer) -> None:
    await collect(engine, "It costs $5 at 3 pm!")
    text = server.recorded.bodies[0]["text"]
    assert "$" not in text and "5" not in text and "five" in text  # a plain server would delete digits


async def test_float_wav_and_mp3_answers(engine: RemoteChatTTSEngine, server: FakeChatTTSServer) -> None:
    server.behaviour.float_wav = True
    f = await collect(engine, "Float.")
    assert f.dtype == np.float32 and np.allclose(f * 32768, samples_for("Float."), atol=1)
    server.behaviour.float_wav = False
    mp3_engine = RemoteChatTTSEngine(RemoteConfig(url=server.url, response_format="mp3"))
    await mp3_engine.start()
    try:
        chunks = [c async for c in mp3_engine.synthesize(SynthesisRequest("Compressed."))]
    finally:
        await mp3_engine.aclose()
    assert server.recorded.bodies[-1]["response_format"] == "mp3"
    x = np.concatenate([to_float(c) for c in chunks])
    assert chunks[0].format.encoding is Encoding.PCM_F32 and abs(len(x) / chunks[0].format.sample_rate - 0.5) < 0.1
    assert np.sqrt(np.mean(x**2)) > 0.1  # a tone, not silence


async def test_connections_are_pooled(engine: RemoteChatTTSEngine, server: FakeChatTTSServer) -> None:
    for i in range(5):
        await collect(engine, f"Sentence {i}.")
    assert engine._client is not None
    pool = engine._client._transport._pool  # type: ignore[attr-defined]
    assert len(pool.connections) == 1  # five sentences (and the health probes) over one keep-alive connection


@pytest.mark.parametrize(("fault", "reason"), [
    ({"status": 500}, "server error (500): CUDA out of memory"),
    ({"content_type": "text/html"}, "unexpected content type 'text/html'"),
    ({"truncate": True}, "truncated WAV"),
])
async def test_bad_answers_are_errors_with_reasons(engine: RemoteChatTTSEngine, server: FakeChatTTSServer,
                                                   fault: dict[str, object], reason: str) -> None:
    server.behaviour.__dict__.update(fault)
    with pytest.raises(TTSError) as err:
        await collect(engine, "Hello.")
    assert reason in err.value.reason


async def test_generation_timeout_ends_a_slow_drip() -> None:
    fake = FakeChatTTSServer().start()
    try:
        fake.behaviour.drip_s = 0.05
        eng = RemoteChatTTSEngine(RemoteConfig(url=fake.url, generation_timeout_s=0.3))
        await eng.start()
        with pytest.raises(TTSError, match=r"timeout \(generation over 0.3 s\)"):
            await collect(eng, "Hello.")
        await eng.aclose()
        await wait_until(lambda: fake.recorded.disconnects == 1, 30)  # the request was closed, not left running
    finally:
        fake.stop()


@pytest.mark.parametrize(("fault", "reason"), [
    ({"status": 500}, "server error (500)"),
    ({"content_type": "application/json"}, "unexpected content type"),
    ({"truncate": True}, "truncated WAV"),
    ({"drip_s": 0.2}, "no audio within 300 ms"),
])
async def test_every_bad_answer_ends_in_a_logged_fallback(
        engine: RemoteChatTTSEngine, server: FakeChatTTSServer, caplog: pytest.LogCaptureFixture,
        fault: dict[str, object], reason: str) -> None:
    server.behaviour.__dict__.update(fault)
    backup = ScriptedEngine("piper")
    speaker = Speaker({"chattts": engine, "piper": backup},
                      TTSConfig(provider="chattts", fallback=["piper"], first_audio_budget_ms=300))
    with caplog.at_level(logging.INFO, "voicegw.tts"):
        parts = [p async for p in speaker.speak("Hello there.", request_id="s1")]
    assert all(isinstance(p, SpeechAudio) and p.provider == "piper" for p in parts)
    heard = b"".join(p.chunk.data for p in parts if isinstance(p, SpeechAudio) and isinstance(p.chunk.data, bytes))
    assert heard == backup.audio("Hello there.")
    report = speaker.reports[-1]
    assert report.provider == "piper" and any(reason in f for f in report.fallbacks), report.fallbacks
    assert any(r.levelno == logging.WARNING and r.getMessage().startswith("tts chattts:") for r in caplog.records)
    if fault.get("drip_s"):
        await wait_until(lambda: server.recorded.disconnects == 1, 30)  # the hedge loser's request was closed


async def test_health_feeds_readiness_and_breakers(engine: RemoteChatTTSEngine, server: FakeChatTTSServer) -> None:
    breakers = engine.breakers
    assert breakers is not None and engine.ready
    server.behaviour.model_loaded = False
    await wait_until(lambda: not engine.ready, 30)
    assert engine.load_error is not None and "model not loaded" in engine.load_error
    assert breakers.get("chattts").state(engine.clock()) is State.OPEN
    with pytest.raises(TTSError, match="speech server unhealthy"):
        await collect(engine, "Hello.")
    server.behaviour.model_loaded = True
    await wait_until(lambda: engine.ready, 30)
    assert breakers.get("chattts").state(engine.clock()) is State.CLOSED  # no cool-down to wait out


async def test_unreachable_server_is_reported_and_a_refused_connect_marks_it_down_at_once() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    eng = RemoteChatTTSEngine(RemoteConfig(url=url, health_interval_s=60))
    await eng.start()
    try:
        assert not eng.ready and eng.load_error is not None and url in eng.load_error
        eng._health[url].error = None  # as if it had been healthy a moment ago
        assert eng.ready
        with pytest.raises(TTSError, match="speech server unreachable"):
            await collect(eng, "Hello.")
        assert not eng.ready  # without waiting for the next probe
    finally:
        await eng.aclose()


async def test_cancelling_a_sentence_closes_its_request(engine: RemoteChatTTSEngine, server: FakeChatTTSServer) -> None:
    server.behaviour.drip_s = 0.05
    task = asyncio.create_task(collect(engine, "Barge in on me."))
    await wait_until(lambda: len(server.recorded.bodies) == 1, 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: server.recorded.disconnects == 1, 30)
    assert engine.stats.cancelled == 1


async def test_speaker_restarts_nothing_when_the_remote_speaks(engine: RemoteChatTTSEngine) -> None:
    speaker = Speaker({"chattts": engine}, TTSConfig(provider="chattts", fallback=[]))
    parts = [p async for p in speaker.speak("All good.")]
    assert parts and not any(isinstance(p, SpeechRestart) for p in parts)
    assert speaker.reports[-1].provider == "chattts" and speaker.reports[-1].fallbacks == ()


async def test_chattts_remote_provider_speaks_to_the_url_an_agent_names(
    server: FakeChatTTSServer, caplog: pytest.LogCaptureFixture
) -> None:
    """``provider: chattts_remote`` with ``tts.chattts_remote.url``: no CHATTTS_API_URL needed, the URL is
    health-checked at startup and each sentence goes to its agent's server."""
    from gateway.ops.metrics import Metrics
    from gateway.settings import Settings
    from tts.registry import build_engines
    from tts.settings import ChatTTSRemoteVoice

    server.reset()
    config = TTSConfig.model_validate({"provider": "chattts_remote", "fallback": ["piper"],
                                       "chattts_remote": {"url": server.url + "/", "voice": "male_2"}})
    settings = config.section("chattts_remote")
    assert isinstance(settings, ChatTTSRemoteVoice) and settings.url == server.url  # trailing slash dropped
    engines = await build_engines(Settings(), Metrics(), {"chattts_remote"},
                                  sections={"chattts_remote": (settings,)})
    try:
        remote = engines["chattts_remote"]
        assert isinstance(remote, RemoteChatTTSEngine) and remote.ready
        assert remote.health() == {server.url: "ok"}
        chunks = [c async for c in remote.synthesize(SynthesisRequest("Hello there.", settings=settings))]
        assert chunks and server.recorded.bodies[-1]["voice"] == "male_2"
        assert set(server.recorded.bodies[-1]) == set(SEED_FIELDS)  # the URL is ours, not a protocol field
    finally:
        for e in engines.values():
            await e.aclose()
    # named by nobody: not built, and the log says why
    with caplog.at_level(logging.ERROR, logger="voicegw"):
        none = await build_engines(Settings(), Metrics(), {"chattts_remote"},
                                   users={"chattts_remote": ("support",)},
                                   sections={"chattts_remote": (ChatTTSRemoteVoice(),)})
    try:
        assert "chattts_remote" not in none
        assert "neither tts.chattts_remote.url nor CHATTTS_API_URL is set" in caplog.text
    finally:
        for e in none.values():
            await e.aclose()


def test_a_remote_url_must_be_http() -> None:
    from pydantic import ValidationError

    from tts.settings import ChatTTSRemoteVoice

    with pytest.raises(ValidationError, match="is not an http"):
        ChatTTSRemoteVoice(url="ftp://chattts.internal")
    assert ChatTTSRemoteVoice(url="https://tts.example.com:8443/api").url == "https://tts.example.com:8443/api"
