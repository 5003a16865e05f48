"""Agent settings in Redis: versioned push, pub/sub reload, outage tolerance, hot reload end to end."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx

from agents.loader import load_agents_strict
from agents.store import MemoryStore, RedisStore, version_of
from gateway.twilio.emulator import TwilioEmulator
from tests.helpers import AGENTS_DIR, ROOT, RedisServer, run_gateway, wait_until


def test_memory_store_lookup() -> None:
    agents = load_agents_strict(AGENTS_DIR)
    store = MemoryStore(agents)
    assert store.get("demo") is agents["demo"]
    assert store.by_number("+15005550007") is agents["support"]
    assert store.by_number("+10000000000") is None and store.get("nope") is None
    assert store.version == version_of(agents)


async def test_push_reaches_other_instances_via_pubsub(redis_server: RedisServer) -> None:
    agents = load_agents_strict(AGENTS_DIR)
    a = RedisStore(redis_server.url, agents)
    b = RedisStore(redis_server.url, {})
    await a.publish(agents)
    await a.start()
    await b.start()
    try:
        assert b.get("demo") == agents["demo"] and b.healthy
        changed = dict(agents)
        changed["demo"] = agents["demo"].model_copy(update={"greeting": "Changed greeting."})
        version = await a.publish(changed)
        await wait_until(lambda: b.version == version)
        demo = b.get("demo")
        assert demo is not None and demo.greeting == "Changed greeting."
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_pushed_version_goes_live_only_after_before_swap_hooks(redis_server: RedisServer) -> None:
    """Pre-rendering: the gateway keeps serving the old version until the new one's hooks finish."""
    agents = load_agents_strict(AGENTS_DIR)
    a = RedisStore(redis_server.url, agents)
    b = RedisStore(redis_server.url, {})
    await a.publish(agents)
    await a.start()
    await b.start()
    release = asyncio.Event()
    seen: list[str] = []

    async def prepare(new: object) -> None:
        assert isinstance(new, dict)
        seen.append(new["demo"].greeting)
        await release.wait()

    async def broken(new: object) -> None:
        raise RuntimeError("hook bug")

    b.before_swap += [prepare, broken]
    try:
        changed = dict(agents)
        changed["demo"] = agents["demo"].model_copy(update={"greeting": "Changed greeting."})
        version = await a.publish(changed)
        await wait_until(lambda: seen == ["Changed greeting."])
        demo = b.get("demo")
        assert demo is not None and demo.greeting == agents["demo"].greeting and b.version != version
        release.set()
        await wait_until(lambda: b.version == version)  # a failing hook does not block the swap
        demo = b.get("demo")
        assert demo is not None and demo.greeting == "Changed greeting."
    finally:
        await a.aclose()
        await b.aclose()


async def test_redis_outage_serves_last_known_and_recovers(redis_server: RedisServer) -> None:
    agents = load_agents_strict(AGENTS_DIR)
    store = RedisStore(redis_server.url, agents, retry_s=0.1)
    await store.publish(agents)
    await store.start()
    try:
        await wait_until(lambda: store.healthy)
        redis_server.stop()
        await wait_until(lambda: not store.healthy)
        assert store.get("demo") == agents["demo"]  # calls keep being served
        assert store.last_error
        redis_server.start()
        # a fresh redis has no data: the store keeps its snapshot and turns healthy again
        await wait_until(lambda: store.healthy, within_s=15)
        assert store.get("demo") == agents["demo"]
    finally:
        await store.aclose()


async def test_edited_yaml_pushed_from_shell_takes_effect_on_next_call(
    redis_server: RedisServer, agents_dir: Path
) -> None:
    env = {"VOICEGW_AGENTS_DIR": str(agents_dir), "REDIS_URL": redis_server.url}
    async with run_gateway(env) as url:
        emu = TwilioEmulator(url)
        first = await emu.call(agent="demo", hold_s=0.1)
        async with httpx.AsyncClient(timeout=10) as client:
            before = (await client.get(f"{url}/readyz")).json()["agents_version"]
        demo = agents_dir / "demo.yaml"
        text = demo.read_text()
        start = text.index("greeting:")
        end = text.index("\n", start)
        demo.write_text(text[:start] + 'greeting: "Hi."' + text[end:])
        proc = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "gateway", "agents", "push", str(agents_dir)],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "REDIS_URL": redis_server.url},
        )
        assert proc.returncode == 0, proc.stderr
        assert "pushed 2 agent(s)" in proc.stdout
        async with httpx.AsyncClient(timeout=10) as client:
            async def swapped() -> bool:  # live once the new greeting is pre-rendered
                return bool((await client.get(f"{url}/readyz")).json()["agents_version"] != before)

            await wait_until(swapped, 30)
        second = await emu.call(agent="demo", hold_s=0.1)
    assert first.seconds > 3.0
    assert 0.1 < second.seconds < 1.5  # the new, one-word greeting, without a restart


def test_push_refuses_invalid_yaml(tmp_path: Path, redis_server: RedisServer) -> None:
    (tmp_path / "x.yaml").write_text("id: x\nname: X\ngreeting: hi\nlogic: {kind: scripted}\ntts: {provider: nope}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "agents", "push", str(tmp_path)], cwd=ROOT, capture_output=True,
        text=True, timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "REDIS_URL": redis_server.url},
    )
    assert proc.returncode == 1
    assert ("x.yaml:5: tts.provider: 'nope' is not one of 'chattts', 'chattts_remote', 'cartesia', 'piper'"
            in proc.stdout)
