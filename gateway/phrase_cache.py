"""Fixed phrases (greeting, rule answers, fallback, reprompt, goodbye, apology) synthesized once.

Rules of this file: pure, in-memory, no clock. Entries are the final 160-byte
mu-law frames (after resampling and the agent's gain), keyed by agent id, a
fingerprint of what shapes the agent's audio (its whole ``tts`` section: providers,
voice settings, gain; and its language) and the sentence text: a push that only
changes texts keeps every unchanged phrase's audio, a voice change renders all anew.
Two versions per agent are kept (the one live and the one being pre-rendered
for a push, or the one calls that started before the push still use): ``put``
of a third drops the oldest one's entries (``get`` never evicts). Only audio from the agent's primary provider
with no mid-sentence restart is stored, so a fallback voice never sticks. A
byte budget with least-recently-used eviction bounds memory. Pre-rendering and
single-flight live in :mod:`gateway.phrases`.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict

from agents.spec import AgentSpec


def fingerprint(agent: AgentSpec) -> str:
    """The version the cache keys an agent's audio by: its voice (``tts`` and language), not its texts."""
    blob = json.dumps({"tts": agent.tts.model_dump(mode="json"), "language": agent.language}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


VERSIONS_KEPT = 2


class PhraseCache:
    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str, str], tuple[bytes, ...]] = OrderedDict()
        self._versions: dict[str, list[str]] = {}  # agent id → versions cached, newest last
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def _check_version(self, agent_id: str, version: str) -> None:
        versions = self._versions.setdefault(agent_id, [])
        if version in versions:
            return
        versions.append(version)
        while len(versions) > VERSIONS_KEPT:
            old = versions.pop(0)
            for key in [k for k in self._items if k[0] == agent_id and k[1] == old]:
                self.bytes -= sum(len(f) for f in self._items.pop(key))

    def peek(self, agent: AgentSpec, version: str, text: str) -> bool:
        """Is it cached? (No hit/miss counted, no recency change.)"""
        return (agent.id, version, text) in self._items

    def get(self, agent: AgentSpec, version: str, text: str) -> tuple[bytes, ...] | None:
        key = (agent.id, version, text)
        frames = self._items.get(key)
        if frames is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return frames

    def put(self, agent: AgentSpec, version: str, text: str, frames: list[bytes]) -> None:
        self._check_version(agent.id, version)
        size = sum(len(f) for f in frames)
        if not frames or size > self.max_bytes:
            return
        key = (agent.id, version, text)
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= sum(len(f) for f in old)
        self._items[key] = tuple(frames)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self.bytes -= sum(len(f) for f in evicted)

    def __len__(self) -> int:
        return len(self._items)
