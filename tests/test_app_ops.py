"""Operations endpoints over real uvicorn: /readyz, /metrics (key or own port), /admin/drain refusals, call logs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.ops import logs
from gateway.settings import Settings
from gateway.twilio.emulator import TwilioEmulator, parse_stream
from tests.helpers import RedisServer, free_port, run_gateway, wait_until


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


async def test_readyz_reports_parts_and_signature_mode(agents_dir: Path) -> None:
    (agents_dir / "support.yaml").unlink()  # ChatTTS agent: without weights it would show as degraded
    async with run_gateway({"VOICEGW_AGENTS_DIR": str(agents_dir)}) as url, httpx.AsyncClient() as client:
        await wait_until(lambda: _ready(client, url))  # the recognizer loads in the background
        resp = await client.get(f"{url}/readyz")
        assert resp.status_code == 200
        body = resp.json()
        assert body["listening"] == {"vad": "ready", "stt": "ready"}
        assert body["ready"] is True and body["not_ready"] == [] and body["degraded"] == []
        assert body["engines"] == {"piper": True}
        assert body["store"] == {"kind": "embedded", "healthy": True}
        assert body["draining"] is False and body["active_calls"] == 0
        assert body["signatures_enforced"] is False
        assert (await client.get(f"{url}/healthz")).text == "ok"
    env = {"VOICEGW_AGENTS_DIR": str(agents_dir), "TWILIO_AUTH_TOKEN": "secret-token"}
    async with run_gateway(env) as url, httpx.AsyncClient() as client:
        assert (await client.get(f"{url}/readyz")).json()["signatures_enforced"] is True


async def _ready(client: httpx.AsyncClient, url: str) -> bool:
    return (await client.get(f"{url}/readyz")).status_code == 200


async def test_readyz_says_when_the_gateway_cannot_hear_callers(agents_dir: Path, tmp_path: Path) -> None:
    """A recognizer that cannot load makes the pod unready with the reason (every caller would go unheard)."""
    env = {"VOICEGW_AGENTS_DIR": str(agents_dir), "VOICEGW_STT_MODEL": str(tmp_path / "no-such-model")}

    async def failed(client: httpx.AsyncClient, url: str) -> bool:
        return "failed" in (await client.get(f"{url}/readyz")).json()["listening"]["stt"]

    async with run_gateway(env) as url, httpx.AsyncClient() as client:
        await wait_until(lambda: failed(client, url))
        resp = await client.get(f"{url}/readyz")
        assert resp.status_code == 503
        body = resp.json()
        assert body["listening"]["vad"] == "ready"
        assert "no-such-model" in body["listening"]["stt"]
        assert any(r.startswith("listening unavailable: speech-to-text failed") for r in body["not_ready"])


async def test_redis_outage_degrades_but_keeps_serving(agents_dir: Path, redis_server: RedisServer) -> None:
    env = {"VOICEGW_AGENTS_DIR": str(agents_dir), "REDIS_URL": redis_server.url}
    async with run_gateway(env) as url, httpx.AsyncClient() as client:
        await wait_until(lambda: _ready(client, url))  # recognizer loaded, fixed phrases pre-rendered
        body = (await client.get(f"{url}/readyz")).json()
        assert body["store"] == {"kind": "redis", "healthy": True}
        assert value((await client.get(f"{url}/metrics")).text, "voicegw_redis_up") == 1.0
        redis_server.stop()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            resp = await client.get(f"{url}/readyz")
            if not resp.json()["store"]["healthy"]:
                break
            await asyncio.sleep(0.2)
        assert resp.status_code == 200 and resp.json()["ready"] is True
        assert any("unreachable" in d for d in resp.json()["degraded"])
        assert value((await client.get(f"{url}/metrics")).text, "voicegw_redis_up") == 0.0
        # Calls still work from the last snapshot.
        result = await TwilioEmulator(url).call(agent="demo", hold_s=0.1, max_s=30)
        assert result.marks_echoed == ["greeting-1"] and result.errors == []


async def test_metrics_need_the_key_and_count_a_call(agents_dir: Path) -> None:
    env = {"VOICEGW_AGENTS_DIR": str(agents_dir), "VOICEGW_API_KEY": "k3y"}
    async with run_gateway(env) as url, httpx.AsyncClient() as client:
        assert (await client.get(f"{url}/metrics")).status_code == 401
        assert (await client.get(f"{url}/metrics", headers={"authorization": "Bearer nope"})).status_code == 401
        await wait_until(lambda: _ready(client, url))  # fixed phrases pre-rendered
        result = await TwilioEmulator(url).call(agent="demo", hold_s=0.1, max_s=30)
        assert result.marks_echoed == ["greeting-1"]
        resp = await client.get(f"{url}/metrics", headers={"authorization": "Bearer k3y"})
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
        text = resp.text
    frames = len(result.audio) // 160
    assert value(text, "voicegw_frames_sent_total") == frames
    writes = value(text, "voicegw_frame_lateness_seconds_count")  # one per write: the first fills the lead
    per = Settings().playout_frames_per_write  # the default (5)
    first = 5 + per  # the first write fills the 100 ms lead and one group beyond it
    assert per > 1 and (frames - first) / per + 1 <= writes <= (frames - first) / per + 2  # then a group at a time
    # (a late wake-up sends a bigger group, so fewer writes; never more than one write per group)
    assert value(text, "voicegw_calls_total", agent="demo", outcome="completed") == 1
    assert value(text, "voicegw_active_calls", agent="demo") == 0
    assert value(text, "voicegw_call_duration_seconds_count", agent="demo") == 1
    # the greeting was pre-rendered at startup: the call synthesized nothing
    assert value(text, "voicegw_phrase_cache_total", result="hit") == 1
    assert value(text, "voicegw_phrase_cache_total", result="miss") == 0
    assert value(text, "voicegw_tts_rtf_count", provider="piper") == 0


async def test_metrics_on_their_own_port(agents_dir: Path) -> None:
    port = free_port()
    env = {"VOICEGW_AGENTS_DIR": str(agents_dir), "VOICEGW_METRICS_PORT": str(port), "VOICEGW_API_KEY": "k"}
    async with run_gateway(env) as url, httpx.AsyncClient() as client:
        assert (await client.get(f"{url}/metrics", headers={"authorization": "Bearer k"})).status_code == 404
        resp = await client.get(f"http://127.0.0.1:{port}/metrics")
        assert resp.status_code == 200 and "voicegw_frames_sent_total" in resp.text
    # The metrics server stops with the app.
    async with httpx.AsyncClient() as client:
        try:
            await client.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
            raise AssertionError("metrics port still open after shutdown")
        except httpx.ConnectError:
            pass


async def test_admin_drain_refuses_new_calls_politely(agents_dir: Path) -> None:
    env = {"VOICEGW_AGENTS_DIR": str(agents_dir), "VOICEGW_API_KEY": "k"}
    async with run_gateway(env) as url, httpx.AsyncClient() as client:
        assert (await client.post(f"{url}/admin/drain")).status_code == 401
        await wait_until(lambda: _ready(client, url))  # recognizer loaded, fixed phrases pre-rendered
        resp = await client.post(f"{url}/admin/drain", headers={"authorization": "Bearer k"})
        assert resp.status_code == 200 and resp.json()["draining"] is True
        ready = await client.get(f"{url}/readyz")
        assert ready.status_code == 503 and ready.json()["not_ready"] == ["draining"]
        assert 0 < ready.json()["drain_remaining_s"] <= 600
        twiml, _ = await TwilioEmulator(url).fetch_twiml(agent="demo")
        assert parse_stream(twiml) is None and "call back" in twiml and "<Hangup" in twiml
        metrics = (await client.get(f"{url}/metrics", headers={"authorization": "Bearer k"})).text
        assert value(metrics, "voicegw_webhook_rejected_total", reason="draining") == 1


async def test_drain_redirects_when_configured(agents_dir: Path) -> None:
    env = {"VOICEGW_AGENTS_DIR": str(agents_dir),
           "VOICEGW_DRAIN_REDIRECT_URL": "https://standby.example.com/twilio/voice"}
    async with run_gateway(env) as url, httpx.AsyncClient() as client:
        # No API key: loopback clients may drain.
        assert (await client.post(f"{url}/admin/drain")).status_code == 200
        twiml, _ = await TwilioEmulator(url).fetch_twiml(agent="demo")
        assert "<Redirect>https://standby.example.com/twilio/voice</Redirect>" in twiml


async def test_every_call_log_line_carries_its_context_and_ends_with_a_summary(agents_dir: Path) -> None:
    out = io.StringIO()
    handler = logs.configure("INFO", json_lines=True, stream=out)
    try:
        async with run_gateway({"VOICEGW_AGENTS_DIR": str(agents_dir)}) as url:
            emu = TwilioEmulator(url)
            results = await asyncio.gather(*(emu.call(agent="demo", hold_s=0.1, max_s=30) for _ in range(2)))
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(logging.WARNING)
    assert all(r.marks_echoed == ["greeting-1"] for r in results)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    summaries = [r for r in records if str(r["msg"]).startswith("call summary:")]
    assert len(summaries) == 2
    sids = {s["call_sid"] for s in summaries}
    assert len(sids) == 2 and all(str(sid).startswith("CA") for sid in sids)
    for s in summaries:
        summary = s["summary"]
        assert summary["call_sid"] == s["call_sid"] and s["agent_id"] == "demo"
        assert str(s["stream_sid"]).startswith("MZ")
        assert summary["sentences"] == {"piper": 1} and summary["fallbacks"] == 0
        assert summary["frames_sent"] > 100 and summary["first_audio_p50_ms"] >= 0  # pre-rendered: ~0
        assert summary["outcome"] == "completed"
    for sid in sids:  # the per-call lines (start, end, summary) all carry the same context
        mine = [r for r in records if r.get("call_sid") == sid]
        assert len(mine) >= 3
        assert len({r["stream_sid"] for r in mine}) == 1


async def test_readyz_names_an_agent_whose_voice_cannot_speak(agents_dir: Path) -> None:
    from tests.helpers import gateway_with_services

    (agents_dir / "support.yaml").unlink()
    async with gateway_with_services({"VOICEGW_AGENTS_DIR": str(agents_dir)}) as (url, services), \
            httpx.AsyncClient() as client:
        assert not [d for d in (await client.get(f"{url}/readyz")).json()["degraded"] if "cannot speak" in d]
        demo = services.store.get("demo")
        assert demo is not None
        # what a push that skipped `voicegw agents validate` (an older CLI, a script) would deliver
        data = demo.model_dump()
        data["tts"]["piper"]["voice"] = "amy"
        services.store.replace({"demo": type(demo).model_validate(data)})
        body = (await client.get(f"{url}/readyz")).json()
        assert any(d.startswith("agent demo: cannot speak: tts.piper.voice: unknown Piper voice 'amy'")
                   for d in body["degraded"]), body
