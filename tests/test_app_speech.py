"""The seed-compatible speech API is mounted on the real app and shares its engines."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import httpx
import pytest

from tests.helpers import run_gateway


async def test_speech_endpoint_served_by_gateway(agents_dir: Path) -> None:
    env = {"VOICEGW_AGENTS_DIR": str(agents_dir), "VOICEGW_API_KEY": "sekret"}
    async with run_gateway(env) as url, httpx.AsyncClient(base_url=url, timeout=60) as client:
        body = {"text": "Hello world", "voice": "female_1", "speed": 1.0, "temperature": 0.3, "top_p": 0.7,
                "top_k": 20, "response_format": "wav", "use_refine": False}
        denied = await client.post("/v1/audio/speech", json=body)
        assert denied.status_code == 401
        auth = {"Authorization": "Bearer sekret"}
        ok = await client.post("/v1/audio/speech", json=body, headers=auth)
        assert ok.status_code == 200, ok.text
        assert ok.headers["X-TTS-Provider"] == "piper"  # no ChatTTS or Cartesia configured here
        with wave.open(io.BytesIO(ok.content)) as w:
            assert w.getnframes() / w.getframerate() > 0.3
        bad = await client.post("/v1/audio/speech", json={**body, "speed": 9}, headers=auth)
        assert bad.status_code in (400, 422) and "speed" in bad.text
        voices = await client.get("/v1/voices", headers=auth)
        assert voices.status_code == 200 and "female_1" in voices.text
        wrong = await client.get("/v1/audio/speech", headers=auth)
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST" and wrong.json()["error"]["message"]
        # every 401 has the API's JSON error shape and the Bearer challenge, /metrics included
        for resp in (denied, await client.get("/metrics"), await client.post("/admin/drain")):
            assert resp.status_code == 401
            assert resp.headers["www-authenticate"].startswith("Bearer")
            assert resp.json()["error"]["type"] == "authentication_error"
        assert (await client.get("/metrics", headers={"Authorization": "bearer sekret"})).status_code == 200


async def test_an_open_bind_without_a_key_refuses_the_api_and_says_so(
    agents_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {"VOICEGW_AGENTS_DIR": str(agents_dir), "VOICEGW_HOST": "0.0.0.0"}
    async with run_gateway(env) as url, httpx.AsyncClient(base_url=url, timeout=60) as client:
        assert "VOICEGW_API_KEY is not set and the gateway listens on 0.0.0.0" in caplog.text
        for method, path in (("POST", "/v1/audio/speech"), ("GET", "/v1/voices"), ("GET", "/metrics")):
            resp = await client.request(method, path, json={"text": "hi"})
            assert resp.status_code == 403 and "VOICEGW_ALLOW_OPEN_API" in resp.text, (path, resp.text)
        assert (await client.get("/healthz")).status_code == 200
    async with run_gateway({**env, "VOICEGW_ALLOW_OPEN_API": "1"}) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/v1/voices")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
