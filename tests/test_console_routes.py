"""The console's HTTP side over the real app: access, the page and its files, agents, voice save, sample."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
from starlette.testclient import TestClient

from agents.loader import load_agents_strict
from agents.store import MemoryStore, RedisStore
from gateway.app import create_app
from gateway.services import Services
from gateway.settings import Settings
from tests.helpers import RedisServer, gateway_with_services

KEY = "console-k3y"
BASIC = {"Authorization": "Basic " + base64.b64encode(f"operator:{KEY}".encode()).decode()}


def faster(tts: dict[str, object], speed: float) -> dict[str, object]:
    return {**tts, "piper": {"voice": "joe", "speed": speed}}


async def test_the_key_guards_the_page_its_files_and_its_api(agents_dir: Path) -> None:
    async with gateway_with_services({"VOICEGW_AGENTS_DIR": str(agents_dir), "VOICEGW_API_KEY": KEY}) as (url, _), \
            httpx.AsyncClient(base_url=url, timeout=60) as client:
        for path in ("/console", "/console/static/console.js", "/console/api/agents", "/console/api/voice-schema"):
            refused = await client.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"].startswith("Basic realm=")  # the browser asks for the key
        page = await client.get("/console", headers=BASIC)
        assert page.status_code == 200 and "<title>voicegw console</title>" in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp  # nothing from elsewhere: works offline
        assert "http" not in page.text.replace("http-equiv", "")  # no CDN, no fonts
        js = await client.get("/console/static/call-worklet.js", headers={"Authorization": f"Bearer {KEY}"})
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert "registerProcessor" in js.text
        assert (await client.get("/console/static/../app.py", headers=BASIC)).status_code == 404
        assert (await client.get("/console/static/nosuch.js", headers=BASIC)).status_code == 404


def test_without_a_key_only_loopback_clients_get_the_console(agents_dir: Path) -> None:
    settings = Settings.from_env({"VOICEGW_AGENTS_DIR": str(agents_dir)})
    services = Services(settings=settings, store=MemoryStore(load_agents_strict(agents_dir)))
    with TestClient(create_app(settings, services)) as remote:  # its client address is not loopback
        assert remote.get("/console").status_code == 403
        assert "loopback" in remote.get("/console/api/agents").json()["error"]["message"]
    with TestClient(create_app(settings, services), client=("127.0.0.1", 50000)) as local:
        assert local.get("/console").status_code == 200
        assert local.get("/console/api/agents").json()["agents"][0]["id"]


async def test_save_pushes_a_new_version_and_leaves_the_file_alone(agents_dir: Path) -> None:
    env = {"VOICEGW_AGENTS_DIR": str(agents_dir), "VOICEGW_API_KEY": KEY}
    before = (agents_dir / "demo.yaml").read_text()
    async with gateway_with_services(env) as (url, services), \
            httpx.AsyncClient(base_url=url, timeout=60, headers=BASIC) as client:
        demo = (await client.get("/console/api/agents/demo")).json()
        assert demo["file"] == "demo.yaml" and demo["tts"]["provider"] == "piper" and not demo["writable"]
        assert (await client.get("/console/api/agents/nosuch")).status_code == 404
        saved = await client.post("/console/api/agents/demo/tts", json={"tts": faster(demo["tts"], 1.5)})
        assert saved.status_code == 200, saved.text
        body = saved.json()
        assert body["version"] != demo["version"] and body["store_version"] == services.store.version
        agent = services.store.get("demo")
        assert agent is not None and agent.tts.piper.speed == 1.5  # the next call gets it
        assert not body["written"] and "VOICEGW_CONSOLE_WRITE_AGENTS=1" in body["not_written"]
        assert "speed: 1.5" in body["yaml"] and body["yaml"].startswith("# The demo agent")
        listed = (await client.get("/console/api/agents")).json()
        assert {"id": "demo", "name": "Demo front desk", "version": body["version"]} in listed["agents"]
        bad = await client.post("/console/api/agents/demo/tts", json={"tts": faster(demo["tts"], 5.0)})
        assert bad.status_code == 422
        assert bad.json()["error"]["problems"] == [{"path": "tts.piper.speed", "message": "5.0 is not within 0.5–2.0"}]
        assert (await client.post("/console/api/agents/demo/tts", content=b"{")).status_code == 400
        agent = services.store.get("demo")
        assert agent is not None and agent.tts.piper.speed == 1.5  # a refused save changes nothing
    assert (agents_dir / "demo.yaml").read_text() == before


async def test_save_writes_the_file_back_only_when_asked(agents_dir: Path) -> None:
    env = {"VOICEGW_AGENTS_DIR": str(agents_dir), "VOICEGW_CONSOLE_WRITE_AGENTS": "1"}
    async with gateway_with_services(env) as (url, _), httpx.AsyncClient(base_url=url, timeout=60) as client:
        demo = (await client.get("/console/api/agents/demo")).json()
        assert demo["writable"]
        body = (await client.post("/console/api/agents/demo/tts", json={"tts": faster(demo["tts"], 0.8)})).json()
        assert body["written"] and body["file"] == str(agents_dir / "demo.yaml")
    text = (agents_dir / "demo.yaml").read_text()
    assert text == body["yaml"] and "speed: 0.8" in text and text.startswith("# The demo agent")
    assert load_agents_strict(agents_dir)["demo"].tts.piper.speed == 0.8  # still a valid agents directory


async def test_a_save_reaches_every_gateway_through_redis(agents_dir: Path, redis_server: RedisServer) -> None:
    env = {"VOICEGW_AGENTS_DIR": str(agents_dir), "REDIS_URL": redis_server.url}
    other_pod = RedisStore(redis_server.url, load_agents_strict(agents_dir))
    async with gateway_with_services(env) as (url, _), httpx.AsyncClient(base_url=url, timeout=60) as client:
        await other_pod.start()
        try:
            demo = (await client.get("/console/api/agents/demo")).json()
            body = (await client.post("/console/api/agents/demo/tts", json={"tts": faster(demo["tts"], 1.25)})).json()
            from tests.helpers import wait_until

            await wait_until(lambda: other_pod.version == body["store_version"])
            agent = other_pod.get("demo")
            assert agent is not None and agent.tts.piper.speed == 1.25
        finally:
            await other_pod.aclose()


async def test_play_sample_speaks_the_panels_voice_through_the_speech_api(agents_dir: Path) -> None:
    env = {"VOICEGW_AGENTS_DIR": str(agents_dir), "VOICEGW_API_KEY": KEY}
    async with gateway_with_services(env) as (url, _), \
            httpx.AsyncClient(base_url=url, timeout=60, headers=BASIC) as client:
        demo = (await client.get("/console/api/agents/demo")).json()
        durations = []
        for speed in (1.0, 2.0):
            r = await client.post("/v1/audio/speech", json={"text": "Thanks for calling the demo line.",
                                                             "tts": faster(demo["tts"], speed)})
            assert r.status_code == 200, r.text
            assert r.headers["x-tts-provider"] == "piper"
            assert float(r.headers["x-rtf"]) > 0 and float(r.headers["x-processing-time"]) > 0
            durations.append(float(r.headers["x-audio-duration"]))
        assert durations[1] < durations[0] * 0.75  # twice the speed: clearly shorter
        bad = await client.post("/v1/audio/speech", json={"text": "hi", "tts": faster(demo["tts"], 9.0)})
        assert bad.status_code in (400, 422) and "speed" in bad.text
