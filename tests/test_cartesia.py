"""CartesiaEngine: the real SDK against the loopback fake Cartesia server (HTTP bytes and WebSocket contexts)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from audio.formats import TWILIO_FORMAT
from gateway.settings import Settings
from tests.fake_cartesia import API_KEY, FakeCartesia, audio_for
from tts.base import SynthesisRequest, TTSError
from tts.cartesia import CartesiaEngine, status_reason, ws_url_for
from tts.settings import CartesiaVoice

VOICE = "0f1e2d3c-4b5a-4697-8889-aabbccddeeff"
WS = CartesiaVoice(voice_id=VOICE, model_id="sonic-3-2026-01-12")
HTTP = CartesiaVoice(voice_id=VOICE, model_id="sonic-3-2026-01-12", transport="http", speed=1.2)


@pytest.fixture
def fake(cartesia_server: FakeCartesia) -> FakeCartesia:
    cartesia_server.reset()
    return cartesia_server


@pytest.fixture
async def engine(fake: FakeCartesia) -> AsyncIterator[CartesiaEngine]:
    e = CartesiaEngine(API_KEY, base_url=fake.base_url, timeout_s=2.0, connect_timeout_s=2.0)
    yield e
    await e.aclose()


def req(text: str, settings: CartesiaVoice = WS, turn: str = "turn-1") -> SynthesisRequest:
    return SynthesisRequest(text=text, settings=settings, request_id=f"r-{text[:6]}", meta={"turn_id": turn})


async def collect(engine: CartesiaEngine, request: SynthesisRequest) -> bytes:
    out = bytearray()
    async for chunk in engine.synthesize(request):
        assert chunk.format == TWILIO_FORMAT
        assert isinstance(chunk.data, bytes)
        out += chunk.data
    return bytes(out)


def gen_messages(fake: FakeCartesia) -> list[dict[str, object]]:
    return [m for m in fake.recorded.ws_messages if "transcript" in m]


async def test_websocket_context_per_turn_one_socket(fake: FakeCartesia, engine: CartesiaEngine) -> None:
    assert await collect(engine, req("Hello there.")) == audio_for("Hello there.")
    assert await collect(engine, req("How can I help?")) == audio_for("How can I help?")
    assert await collect(engine, req("Next turn.", turn="turn-2")) == audio_for("Next turn.")
    assert fake.recorded.connections == 1
    m1, m2, m3 = gen_messages(fake)
    assert m1["context_id"] == m2["context_id"] != m3["context_id"]
    assert m1["transcript"] == "Hello there. "  # transcripts are concatenated verbatim: we add the space
    for m in (m1, m2, m3):
        assert m["continue"] is True and m["flush"] is True
        assert m["output_format"] == {"container": "raw", "encoding": "pcm_mulaw", "sample_rate": 8000}
        assert m["model_id"] == "sonic-3-2026-01-12" and m["voice"] == {"mode": "id", "id": VOICE}
    headers = fake.recorded.ws_headers[0]
    assert headers["authorization"] == f"Bearer {API_KEY}" and headers["cartesia-version"]


async def test_agent_language_reaches_cartesia(fake: FakeCartesia, engine: CartesiaEngine) -> None:
    for settings in (WS, HTTP):
        spanish = SynthesisRequest(text="Hola.", settings=settings, language="es-MX", meta={"turn_id": "t"})
        await collect(engine, spanish)
        pinned = settings.model_copy(update={"language": "fr"})  # tts.cartesia.language overrides for Cartesia
        await collect(engine, SynthesisRequest(text="Salut.", settings=pinned, language="es", meta={"turn_id": "u"}))
    ws = gen_messages(fake)
    assert [m["language"] for m in ws] == ["es", "fr"]
    assert [body["language"] for _, body in fake.recorded.http] == ["es", "fr"]


async def test_concurrent_turns_share_the_socket(fake: FakeCartesia, engine: CartesiaEngine) -> None:
    texts = [f"Caller {i} sentence." for i in range(6)]
    results = await asyncio.gather(*(collect(engine, req(t, turn=f"call-{i}")) for i, t in enumerate(texts)))
    assert results == [audio_for(t) for t in texts]
    assert fake.recorded.connections == 1


async def test_cancel_on_task_cancellation_then_fresh_context(fake: FakeCartesia, engine: CartesiaEngine) -> None:
    fake.behaviour.chunk_delay = 0.2
    gen = engine.synthesize(req("A long sentence the caller interrupts."))
    first = await gen.__anext__()
    assert first.data
    await gen.aclose()  # type: ignore[attr-defined]  # barge-in
    ctx = gen_messages(fake)[0]["context_id"]
    for _ in range(100):
        if ctx in fake.recorded.cancelled_mid_generation:
            break
        await asyncio.sleep(0.02)
    assert fake.recorded.cancels == [ctx]
    assert ctx in fake.recorded.cancelled_mid_generation  # the server stopped generating
    fake.behaviour.chunk_delay = 0.0
    assert await collect(engine, req("Sure.")) == audio_for("Sure.")
    assert gen_messages(fake)[1]["context_id"] != ctx  # the cancelled context is not reused


async def test_disconnect_mid_context_fails_fast_and_reconnects(fake: FakeCartesia, engine: CartesiaEngine) -> None:
    fake.behaviour.disconnect_after_chunks = 2
    loop = asyncio.get_running_loop()
    got = bytearray()
    t0 = loop.time()
    with pytest.raises(TTSError) as err:
        async for chunk in engine.synthesize(req("This will be cut off.")):
            assert isinstance(chunk.data, bytes)
            got += chunk.data
    assert loop.time() - t0 < engine.timeout_s  # not a timeout: the drop is noticed at once
    assert "connection lost mid-sentence" in err.value.reason and len(got) == 800
    fake.behaviour.disconnect_after_chunks = None
    assert await collect(engine, req("Back again.")) == audio_for("Back again.")
    assert fake.recorded.connections == 2


async def test_error_message_is_mapped(fake: FakeCartesia, engine: CartesiaEngine) -> None:
    fake.behaviour.ws_error = {"status_code": 429, "title": "Too Many Requests", "message": "slow down"}
    with pytest.raises(TTSError, match="rate limited"):
        await collect(engine, req("x."))
    fake.behaviour.ws_error = {"error_code": "model_sunsetted", "message": "sonic is gone"}
    with pytest.raises(TTSError, match="model_sunsetted"):
        await collect(engine, req("y."))


async def test_websocket_refused_401(fake: FakeCartesia) -> None:
    engine = CartesiaEngine("sk_wrong", base_url=fake.base_url)
    try:
        with pytest.raises(TTSError, match=r"websocket refused: authentication failed \(401\)"):
            await collect(engine, req("x."))
    finally:
        await engine.aclose()


async def test_http_bytes_path(fake: FakeCartesia, engine: CartesiaEngine) -> None:
    assert await collect(engine, req("Over HTTP.", HTTP)) == audio_for("Over HTTP.")
    headers, body = fake.recorded.http[0]
    assert headers["authorization"] == f"Bearer {API_KEY}" and headers["cartesia-version"]
    assert body["output_format"] == {"container": "raw", "encoding": "pcm_mulaw", "sample_rate": 8000}
    assert body["transcript"] == "Over HTTP." and body["model_id"] == "sonic-3-2026-01-12"
    assert body["voice"] == {"id": VOICE} and body["generation_config"] == {"speed": 1.2}
    assert fake.recorded.connections == 0  # no socket for the HTTP transport


@pytest.mark.parametrize(("status", "reason"), [
    (401, "authentication failed (401)"), (429, "rate limited (429)"), (500, "server error (500)"),
    (503, "server error (503)"),
])
async def test_http_errors_are_mapped_without_retries(
    fake: FakeCartesia, engine: CartesiaEngine, status: int, reason: str
) -> None:
    fake.behaviour.http_status = status
    with pytest.raises(TTSError) as err:
        await collect(engine, req("x.", HTTP))
    assert reason in err.value.reason and err.value.provider == "cartesia"
    assert len(fake.recorded.http) == 1  # no silent SDK retry


async def test_http_timeout_and_disconnect(fake: FakeCartesia) -> None:
    engine = CartesiaEngine(API_KEY, base_url=fake.base_url, timeout_s=0.3)
    try:
        fake.behaviour.first_chunk_delay = 2.0
        with pytest.raises(TTSError, match="timeout"):
            await collect(engine, req("slow.", HTTP))
        fake.behaviour.first_chunk_delay = 0.0
        fake.behaviour.disconnect_after_chunks = 1
        with pytest.raises(TTSError, match="connection lost mid-sentence"):
            await collect(engine, req("cut.", HTTP))
    finally:
        await engine.aclose()


async def test_unreachable_server() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    engine = CartesiaEngine(API_KEY, base_url=f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(TTSError, match="websocket connect failed"):
            await collect(engine, req("x."))
        with pytest.raises(TTSError, match="connection error"):
            await collect(engine, req("x.", HTTP))
    finally:
        await engine.aclose()


async def test_base_url_from_settings_and_not_configured(fake: FakeCartesia) -> None:
    settings = Settings.from_env({"CARTESIA_API_KEY": API_KEY, "CARTESIA_BASE_URL": fake.base_url})
    engine = CartesiaEngine.from_settings(settings.cartesia_api_key, settings.cartesia_base_url)
    try:
        await engine.start()  # pre-connects the shared socket
        assert engine.ready and fake.recorded.connections == 1
        assert await collect(engine, req("Configured.")) == audio_for("Configured.")
    finally:
        await engine.aclose()
    assert not engine.ready
    unset = CartesiaEngine(None)
    assert not unset.ready
    with pytest.raises(TTSError, match="not configured"):
        await collect(unset, req("x."))
    await unset.aclose()


def test_helpers() -> None:
    assert ws_url_for("http://127.0.0.1:9") == "ws://127.0.0.1:9"
    assert ws_url_for("https://api.example.com/v") == "wss://api.example.com/v"
    assert ws_url_for(None) is None
    assert status_reason(422, "bad voice") == "request rejected (422): bad voice"
