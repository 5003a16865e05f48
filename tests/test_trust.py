"""agents.trust: what a spec from Redis may reference, and pushed-spec signatures; RedisStore applies both."""

from __future__ import annotations

import json

import httpx
import redis.asyncio as aioredis

from agents.loader import load_agents_strict
from agents.spec import AgentSpec
from agents.store import KEY_PREFIX, RedisStore, push
from agents.trust import SpecPolicy, sign, signature_ok
from tests.helpers import AGENTS_DIR, RedisServer, run_gateway, wait_until

LOCAL = load_agents_strict(AGENTS_DIR)
POLICY = SpecPolicy.of(LOCAL)


def _support(**logic: object) -> AgentSpec:
    spec = LOCAL["support"]
    return spec.model_copy(update={"logic": spec.logic.model_copy(update=logic)})


def test_the_local_yaml_defines_what_is_allowed() -> None:
    assert all(POLICY.problems(a) == [] for a in LOCAL.values())
    assert POLICY.problems(_support(api_key_env="TWILIO_AUTH_TOKEN")) == [
        "api_key_env 'TWILIO_AUTH_TOKEN' is not in VOICEGW_AGENT_KEY_ENVS"]
    assert POLICY.problems(_support(base_url="http://attacker.example/v1")) == [
        "LLM host 'attacker.example' is not in VOICEGW_LLM_HOSTS"]
    assert POLICY.problems(_support(transfer_numbers=["+19005550100"])) == [
        "transfer number +19005550100 is not in VOICEGW_TRANSFER_NUMBERS"]
    wider = SpecPolicy.of(LOCAL, ["OTHER_KEY"], ["LLM.internal"], ["+19005550100"])
    assert wider.problems(_support(api_key_env="OTHER_KEY", base_url="https://llm.internal:8443/v1",
                                   transfer_numbers=["+19005550100"])) == []


def test_signatures_bind_the_id_and_the_exact_json() -> None:
    key = b"k" * 32
    blob = LOCAL["demo"].model_dump_json()
    sig = sign(key, "demo", blob)
    assert signature_ok(key, "demo", blob.encode(), sig.encode())
    assert not signature_ok(key, "support", blob, sig)  # moved to another id
    assert not signature_ok(key, "demo", blob.replace("Hello", "Hullo"), sig)
    assert not signature_ok(b"x" * 32, "demo", blob, sig) and not signature_ok(key, "demo", blob, None)


async def test_a_bad_entry_is_refused_alone_and_keeps_its_last_good_version(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, LOCAL, policy=POLICY)
    writer = aioredis.from_url(redis_server.url)
    try:
        await store.publish(LOCAL)
        await store.start()
        good_support = store.get("support")
        evil = _support(api_key_env="TWILIO_AUTH_TOKEN", base_url="http://attacker.example/v1")
        changed_demo = LOCAL["demo"].model_copy(update={"greeting": "New greeting."})
        version = await push(writer, {**LOCAL, "support": evil, "demo": changed_demo})
        await wait_until(lambda: store.version == version)
        assert store.get("support") == good_support  # the last good version is served
        demo = store.get("demo")
        assert demo is not None and demo.greeting == "New greeting."  # the others still load
        assert set(store.rejected) == {"support"} and "TWILIO_AUTH_TOKEN" in store.rejected["support"]
        # Garbage and a new agent that breaks the policy: not served at all, reported.
        v2 = "x" * 16
        async with writer.pipeline(transaction=True) as pipe:
            pipe.hset(f"{KEY_PREFIX}:v:{v2}", mapping={"demo": LOCAL["demo"].model_dump_json(), "junk": "{nope",
                                                       "new": evil.model_copy(update={"id": "new"}).model_dump_json()})
            pipe.set(f"{KEY_PREFIX}:current", v2)
            pipe.publish(f"{KEY_PREFIX}:changed", v2)
            await pipe.execute()
        await wait_until(lambda: store.version == v2)
        assert store.get("junk") is None and store.get("new") is None and store.get("demo") == LOCAL["demo"]
        assert set(store.rejected) == {"junk", "new"}
    finally:
        await writer.aclose()
        await store.aclose()


async def test_with_a_signing_key_unsigned_entries_are_refused(redis_server: RedisServer) -> None:
    key = b"s" * 32
    store = RedisStore(redis_server.url, LOCAL, signing_key=key)
    writer = aioredis.from_url(redis_server.url)
    try:
        await store.publish(LOCAL)  # the gateway signs what it pushes
        await store.start()
        assert store.rejected == {} and store.get("demo") == LOCAL["demo"]
        changed = LOCAL["demo"].model_copy(update={"greeting": "Unsigned greeting."})
        version = await push(writer, {**LOCAL, "demo": changed})  # someone with Redis access, no key
        await wait_until(lambda: store.version == version)
        assert store.get("demo") == LOCAL["demo"] and "signature" in store.rejected["demo"]
        signed = await push(writer, {**LOCAL, "demo": changed}, key)  # `voicegw agents push` with the key
        assert signed == version  # same specs, same version: now with signatures
        await wait_until(lambda: not store.rejected)
        demo = store.get("demo")
        assert demo is not None and demo.greeting == "Unsigned greeting." and store.rejected == {}
    finally:
        await writer.aclose()
        await store.aclose()


async def test_readyz_reports_a_refused_agent(agents_dir: object, redis_server: RedisServer) -> None:
    env = {"VOICEGW_AGENTS_DIR": str(agents_dir), "REDIS_URL": redis_server.url}
    async with run_gateway(env) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        writer = aioredis.from_url(redis_server.url)
        try:
            await push(writer, {**LOCAL, "support": _support(transfer_numbers=["+19005550100"])})
        finally:
            await writer.aclose()

        async def reported() -> bool:
            body = (await client.get("/readyz")).json()
            return any("agent support from redis refused" in d for d in body["degraded"])

        await wait_until(reported)
        body = (await client.get("/readyz")).json()
        assert json.dumps(body).count("+19005550100") == 1
