"""POST /v1/audio/speech and GET /v1/voices over real uvicorn, through the real fallback chain.

ChatTTS is a test provider (its engine is another issue), Cartesia is the real
SDK against the loopback fake, Piper is real.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import time
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from starlette.applications import Starlette

from agents.store import MemoryStore
from gateway.ops.metrics import Metrics
from gateway.serve import serve_in_loop
from gateway.services import Services
from gateway.settings import Settings
from gateway.speech_api import speech_routes
from tests.fake_cartesia import API_KEY, FakeCartesia
from tests.fake_engines import Fault, ScriptedEngine
from tts.cartesia import CartesiaEngine
from tts.piper import PiperEngine
from tts.presets import load_voice_map
from tts.render import API_PRIORITY, OUTPUT_RATE, split_sentences
from tts.settings import ChatTTSVoice

KEY = "gw-secret"
SEED = {"text": "Hello world", "voice": "female_1", "speed": 1.0, "temperature": 0.3, "top_p": 0.7, "top_k": 20,
        "response_format": "wav", "use_refine": False}


class Api:
    def __init__(self, url: str, services: Services, fake: FakeCartesia) -> None:
        self.url = url
        self.services = services
        self.fake = fake
        self.client = httpx.AsyncClient(base_url=url, timeout=60, headers={"authorization": f"Bearer {KEY}"})

    def engine(self, name: str) -> ScriptedEngine:
        e = self.services.engines[name]
        assert isinstance(e, ScriptedEngine)
        return e


@pytest.fixture
async def api(cartesia_server: FakeCartesia, piper: PiperEngine) -> AsyncIterator[Api]:
    cartesia_server.reset()
    settings = Settings(api_key=KEY)
    cartesia = CartesiaEngine(API_KEY, base_url=cartesia_server.base_url, timeout_s=3.0)
    services = Services(settings=settings, store=MemoryStore({}), metrics=Metrics(),
                        engines={"chattts": ScriptedEngine("chattts"), "cartesia": cartesia, "piper": piper})
    app = Starlette(routes=speech_routes(services))
    try:
        async with serve_in_loop(app, settings, lifespan="off") as url:
            a = Api(url, services, cartesia_server)
            try:
                yield a
            finally:
                await a.client.aclose()
    finally:
        await cartesia.aclose()


def wav(data: bytes) -> tuple[int, np.ndarray[Any, np.dtype[np.int16]]]:
    with wave.open(io.BytesIO(data)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        return w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


async def test_seed_request_wav_from_primary(api: Api) -> None:
    resp = await api.client.post("/v1/audio/speech", json=SEED)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "audio/wav"
    assert resp.headers["x-tts-provider"] == "chattts"
    assert float(resp.headers["x-processing-time"]) >= 0 and float(resp.headers["x-rtf"]) >= 0
    rate, samples = wav(resp.content)
    assert rate == OUTPUT_RATE
    assert abs(len(samples) / rate - float(resp.headers["x-audio-duration"])) < 0.01
    assert len(samples) / rate == pytest.approx(0.4, abs=0.02)  # 4 chunks of 100 ms from the test provider
    req = api.engine("chattts").requests[0]
    assert req.text == "Hello world"
    assert isinstance(req.settings, ChatTTSVoice)
    assert req.settings.voice == "female_1" and req.settings.top_k == 20 and req.settings.temperature == 0.3


async def test_openai_input_and_formats(api: Api) -> None:
    for fmt, ctype in (("pcm", "audio/l16"), ("mulaw", "audio/basic"), ("mp3", "audio/mpeg")):
        resp = await api.client.post("/v1/audio/speech", json={"model": "tts-1", "input": "Hi there.",
                                                                "voice": "male_2", "response_format": fmt})
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].lower().startswith(ctype)
        if fmt == "pcm":
            assert len(resp.content) == pytest.approx(2 * OUTPUT_RATE * 0.4, rel=0.02)
        elif fmt == "mulaw":
            assert resp.headers["x-sample-rate"] == "8000"
            assert len(resp.content) == pytest.approx(8000 * 0.4, rel=0.05)
        else:
            assert resp.content[:3] == b"ID3" or resp.content[0] == 0xFF  # an MPEG frame sync / tag


async def test_fallback_to_cartesia_with_voice_map(api: Api) -> None:
    api.engine("chattts").default = Fault(raise_before_audio="CUDA out of memory")
    resp = await api.client.post("/v1/audio/speech", json={**SEED, "voice": "neutral_2", "speed": 1.8})
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-tts-provider"] == "cartesia"
    assert "CUDA out of memory" in resp.headers["x-tts-fallback"]
    _, body = api.fake.recorded.http[0]
    assert body["voice"] == {"id": load_voice_map()["neutral_2"].cartesia}
    assert body["generation_config"] == {"speed": 1.5}  # clipped to Cartesia's range


async def test_all_down_but_piper(api: Api) -> None:
    api.engine("chattts").default = Fault(die_after=1)
    api.fake.behaviour.http_status = 500
    resp = await api.client.post("/v1/audio/speech", json={**SEED, "text": "First sentence. Second one!"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-tts-provider"] == "piper"
    rate, samples = wav(resp.content)
    assert len(samples) / rate > 1.0  # two real Piper sentences, restarts discarded
    assert "server error (500)" in resp.headers["x-tts-fallback"]


async def test_every_provider_down_is_503(api: Api, piper: PiperEngine) -> None:
    api.engine("chattts").default = Fault(raise_before_audio="down")
    api.fake.behaviour.http_status = 401
    api.services.engines["piper"] = ScriptedEngine("piper", default=Fault(raise_before_audio="gone"))
    resp = await api.client.post("/v1/audio/speech", json=SEED)
    assert resp.status_code == 503
    msg = resp.json()["error"]["message"]
    assert "down" in msg and "authentication failed (401)" in msg and "gone" in msg


@pytest.mark.parametrize(("patch", "field", "words"), [
    ({"voice": "robot_9"}, "voice", 'unknown voice "robot_9"'),
    ({"speed": 5.0}, "speed", "speed"),
    ({"speed": 0.1}, "speed", "speed"),
    ({"top_k": 0}, "top_k", "top_k"),
    ({"temperature": 3}, "temperature", "temperature"),
    ({"text": "   "}, "text", "must not be empty"),
    ({"text": "x" * 4001}, "text", "too long"),
    ({"response_format": "flac"}, "response_format", "supported: wav, mp3, pcm, mulaw"),
])
async def test_invalid_input_names_the_field(api: Api, patch: dict[str, Any], field: str, words: str) -> None:
    resp = await api.client.post("/v1/audio/speech", json={**SEED, **patch})
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["field"] == field and words in err["message"]
    assert api.engine("chattts").calls == []  # nothing synthesized


async def test_input_missing_and_bad_json(api: Api) -> None:
    resp = await api.client.post("/v1/audio/speech", json={"voice": "female_1"})
    assert resp.status_code == 400 and resp.json()["error"]["field"] == "text"
    assert "required" in resp.json()["error"]["message"]
    resp = await api.client.post("/v1/audio/speech", content=b"{nope", headers={"content-type": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"]["field"] == "body"
    resp = await api.client.post("/v1/audio/speech", json=["a"])
    assert resp.status_code == 400


async def test_bearer_required_when_key_set(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url) as anon:
        assert (await anon.post("/v1/audio/speech", json=SEED)).status_code == 401
        assert (await anon.get("/v1/voices")).status_code == 401
        bad = await anon.post("/v1/audio/speech", json=SEED, headers={"authorization": "Bearer wrong"})
        assert bad.status_code == 401
        assert bad.headers["www-authenticate"].startswith("Bearer")
        assert bad.json()["error"]["type"] == "authentication_error" and "bearer" in bad.json()["error"]["message"]
        lower = await anon.post("/v1/audio/speech", json=SEED, headers={"authorization": f"bearer {KEY}"})
        assert lower.status_code == 200, lower.text


async def test_every_error_reported_with_its_field(api: Api) -> None:
    body = b'{"voice": null, "speed": NaN, "top_k": "20", "temperature": true, "temprature": 0.5}'
    resp = await api.client.post("/v1/audio/speech", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 400
    err = resp.json()["error"]
    fields = {e["field"]: e["message"] for e in err["errors"]}
    assert set(fields) == {"text", "voice", "speed", "top_k", "temperature", "temprature"}, fields
    assert "required" in fields["text"]
    assert fields["voice"].startswith("unknown voice null;") and "None" not in fields["voice"]
    assert "not NaN" in fields["speed"] and "less than" not in fields["speed"]
    assert fields["top_k"] == 'must be an integer, not a string ("20")'
    assert fields["temperature"] == "must be a number, not a boolean (true)"
    assert fields["temprature"] == "unknown field; did you mean temperature?"
    assert err["field"] in fields and all(f"{f}: {m}" in err["message"] for f, m in fields.items())
    assert api.engine("chattts").calls == []


async def test_numbers_too_large_for_a_float_are_a_400_not_a_500(api: Api) -> None:
    """An integer beyond a float's range (the fuzz bench found it: a 500 from the range check's NaN test)."""
    huge = "1" + "0" * 400
    for field in ("top_k", "speed", "temperature", "top_p"):
        body = f'{{"text": "Hello.", "{field}": {huge}}}'.encode()
        resp = await api.client.post("/v1/audio/speech", content=body, headers={"content-type": "application/json"})
        assert resp.status_code == 400, (field, resp.status_code, resp.text)
        assert resp.json()["error"]["field"] == field
    assert api.engine("chattts").calls == []


async def test_openai_aliases_and_integers_accepted(api: Api) -> None:
    resp = await api.client.post("/v1/audio/speech", json={"model": "tts-1", "input": "Hi.", "speed": 1,
                                                            "temperature": 1})
    assert resp.status_code == 200, resp.text
    both = await api.client.post("/v1/audio/speech", json={"text": "Hi.", "input": "Ho."})
    assert both.status_code == 400 and both.json()["error"]["field"] == "text"


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_json_body_needs_json_content_type(api: Api, ctype: str | None) -> None:
    headers = {"content-type": ctype} if ctype else {}
    resp = await api.client.post("/v1/audio/speech", content=json.dumps(SEED).encode(), headers=headers)
    assert resp.status_code == 415, resp.text
    assert resp.json()["error"]["field"] == "body" and "application/json" in resp.json()["error"]["message"]
    ok = await api.client.post("/v1/audio/speech", content=json.dumps(SEED).encode(),
                               headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


async def test_wrong_method_is_json_405_with_allow(api: Api) -> None:
    resp = await api.client.get("/v1/audio/speech")
    assert resp.status_code == 405 and resp.headers["allow"] == "POST"
    assert "GET" in resp.json()["error"]["message"]
    resp = await api.client.delete("/v1/voices")
    assert resp.status_code == 405 and resp.headers["allow"] == "GET"


@pytest.mark.parametrize("text", ["...", " ?! ", "—", "…"])
async def test_punctuation_only_is_400_not_503(api: Api, text: str) -> None:
    resp = await api.client.post("/v1/audio/speech", json={**SEED, "text": text})
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["field"] == "text" and "nothing to say" in err["message"]
    assert api.engine("chattts").calls == []


async def test_one_log_line_per_request_with_rtf(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    resp = await api.client.post("/v1/audio/speech", json={**SEED, "text": "One. Two."})
    assert resp.status_code == 200
    lines = [r for r in caplog.records if r.name == "voicegw.tts.api" and "rtf=" in r.getMessage()]
    assert len(lines) == 1
    msg = lines[0].getMessage()
    assert "provider=chattts" in msg and "processing_s=" in msg and "audio_s=0.800" in msg
    sentences = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tts sentence")]
    assert len(sentences) == 2 and all("processing_ms=" in m and "rtf=" in m and "audio_ms=400" in m
                                       for m in sentences)


async def test_preset_that_cannot_be_honoured_says_so(api: Api) -> None:
    api.engine("chattts").default = Fault(raise_before_audio="down")
    api.fake.behaviour.http_status = 500
    female = await api.client.post("/v1/audio/speech", json={**SEED, "voice": "female_2"})
    assert female.status_code == 200 and female.headers["x-tts-provider"] == "piper"
    assert "no female voice" in female.headers["x-tts-voice-caveat"]
    male = await api.client.post("/v1/audio/speech", json={**SEED, "voice": "male_1"})
    assert male.status_code == 200 and "x-tts-voice-caveat" not in male.headers


async def test_voices(api: Api) -> None:
    resp = await api.client.get("/v1/voices")
    assert resp.status_code == 200
    body = resp.json()
    ids = [v["id"] for v in body["voices"]]
    assert ids[0] == "female_1" and len(ids) == 8
    assert body["voices"][0]["providers"]["piper"] == "joe"
    caveats = {v["id"]: v["caveats"] for v in body["voices"]}
    assert "piper" in caveats["female_1"] and "piper" in caveats["neutral_2"] and "piper" not in caveats["male_3"]
    assert body["providers"] == {"chattts": True, "cartesia": True, "piper": True}
    assert "mp3" in body["formats"]


def test_voice_map_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "voices.json"
    bad.write_text(json.dumps({"female_1": {"cartesia": "x"}}))
    with pytest.raises(ValueError, match="female_1: needs 'cartesia' and 'piper'"):
        load_voice_map(bad)


def test_split_sentences() -> None:
    assert split_sentences(" Hello there.  How are you?Fine! ") == ["Hello there.", "How are you?Fine!"]
    assert split_sentences("One: two; three") == ["One:", "two;", "three"]
    assert split_sentences("   ") == []


class LoopWatch:
    """Ticks on the event loop every few ms and records the loop thread's CPU time between two ticks.

    CPU time, not wall time: on a loaded machine the whole process may be descheduled for longer than a frame,
    which says nothing about our code; CPU spent by the loop thread between two ticks is work that held the
    loop (another call's 20 ms frame could not leave meanwhile). Worker threads' CPU does not count.
    """

    def __init__(self) -> None:
        self.worst_s = 0.0
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.thread_time()
        while True:
            await asyncio.sleep(0.002)
            now = time.thread_time()
            self.worst_s = max(self.worst_s, now - last)
            self.ticks += 1
            last = now

    def __enter__(self) -> LoopWatch:
        # A full collection over the test process's heap (torch, models: millions of objects) can take longer
        # than a frame by itself; freezing what exists now leaves the collector only this request's objects.
        gc.collect()
        gc.freeze()
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        gc.unfreeze()


@pytest.mark.parametrize("fmt", ["mp3", "wav", "mulaw"])
async def test_the_loop_never_blocks_for_a_frame_while_a_long_request_is_served(api: Api, fmt: str) -> None:
    """240 s of audio (MP3: ~3 s of encoder CPU, which used to run on the loop every call shares)."""
    engine = api.engine("chattts")
    engine.chunks, engine.chunk_delay = 200, 0.0  # 20 s of audio per sentence
    text = " ".join(f"Sentence number {i} is here." for i in range(12))
    pieces: list[bytes] = []
    with LoopWatch() as watch:  # the client shares the loop: it keeps the body's pieces, joined only afterwards
        async with api.client.stream("POST", "/v1/audio/speech", json={"text": text, "response_format": fmt}) as resp:
            assert resp.status_code == 200, (await resp.aread()).decode()
            async for piece in resp.aiter_raw():
                pieces.append(piece)
    assert float(resp.headers["x-audio-duration"]) == pytest.approx(240.0, rel=0.01)
    body = b"".join(pieces)
    assert len(body) == int(resp.headers["content-length"]) >= 240 * 8000  # mulaw: 1 byte per 8 kHz sample
    if fmt == "wav":
        rate, samples = wav(body)
        assert len(samples) / rate == pytest.approx(240.0, rel=0.01)
    assert watch.ticks > 10
    assert watch.worst_s < 0.020, f"the loop thread ran {watch.worst_s * 1000:.0f} ms without yielding"


async def test_requests_beyond_the_concurrency_cap_get_429_and_api_sentences_queue_behind_calls(api: Api) -> None:
    engine = api.engine("chattts")
    engine.chunks, engine.chunk_delay = 4, 0.3
    first = [asyncio.create_task(api.client.post("/v1/audio/speech", json={"text": f"Request {i}."}))
             for i in range(2)]  # Settings().api_max_concurrent == 2
    await _until(lambda: len(engine.calls) == 2)
    refused = await api.client.post("/v1/audio/speech", json={"text": "One too many."})
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert "VOICEGW_API_MAX_CONCURRENT" in refused.text
    assert all(r.status_code == 200 for r in await asyncio.gather(*first))
    again = await api.client.post("/v1/audio/speech", json={"text": "Now there is room."})
    assert again.status_code == 200
    assert {r.priority for r in engine.requests} == {API_PRIORITY}  # behind every call's sentences
    assert api.services.metrics.registry.get_sample_value("voicegw_api_refused_total", {"reason": "busy"}) == 1


async def _until(check: Callable[[], bool]) -> None:
    for _ in range(3000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met")
