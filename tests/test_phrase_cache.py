"""Phrase cache: per agent version, primary-voice audio only (enforced by the call), LRU byte budget."""

from __future__ import annotations

from agents.spec import AgentSpec
from gateway.phrase_cache import PhraseCache, fingerprint


def agent(greeting: str = "Hello.", gain: float = 0.0) -> AgentSpec:
    return AgentSpec.model_validate({"id": "a", "name": "A", "greeting": greeting,
                                     "logic": {"kind": "scripted"}, "tts": {"gain_db": gain}})


def test_hit_after_put_and_yaml_change_invalidates() -> None:
    cache = PhraseCache()
    a = agent()
    v = fingerprint(a)
    assert cache.get(a, v, "Hello.") is None
    cache.put(a, v, "Hello.", [b"\x01" * 160, b"\x02" * 160])
    assert cache.get(a, v, "Hello.") == (b"\x01" * 160, b"\x02" * 160)
    assert (cache.hits, cache.misses, cache.bytes) == (1, 1, 320)
    louder = agent(gain=3.0)  # same text, different voice settings: different audio
    assert fingerprint(louder) != v
    assert cache.get(louder, fingerprint(louder), "Hello.") is None
    # Two versions are kept (calls that started before a push still use the old one) ...
    assert cache.get(a, v, "Hello.") is not None and len(cache) == 1
    cache.put(louder, fingerprint(louder), "Hello.", [b"\x03" * 160])
    assert cache.get(a, v, "Hello.") is not None and cache.get(louder, fingerprint(louder), "Hello.") is not None
    # ... a third version drops the oldest one's entries
    quieter = agent(gain=-3.0)
    cache.put(quieter, fingerprint(quieter), "Hello.", [b"\x04" * 160])
    assert cache.get(a, v, "Hello.") is None
    assert len(cache) == 2 and cache.bytes == 320
    assert fingerprint(agent()) == v  # stable for the same YAML


def test_byte_budget_evicts_least_recently_used() -> None:
    cache = PhraseCache(max_bytes=1000)
    a = agent()
    v = fingerprint(a)
    for name in ("one", "two", "three"):
        cache.put(a, v, name, [b"x" * 160] * 2)  # 320 bytes each
    cache.get(a, v, "one")  # refresh
    cache.put(a, v, "four", [b"x" * 160] * 2)
    assert cache.get(a, v, "two") is None and cache.get(a, v, "one") is not None
    assert cache.bytes <= 1000
    cache.put(a, v, "huge", [b"x" * 160] * 10)  # larger than the budget: not stored
    assert cache.get(a, v, "huge") is None
