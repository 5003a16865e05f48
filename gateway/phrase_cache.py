"""Fixed phrases (greeting, rule answers, fallback, reprompt, goodbye, apology) synthesized once.

Rules of this file: pure, in-memory, no clock. Entries are the final 160-byte
mu-law frames (after resampling and the agent's gain), keyed by agent id, a
fingerprint of the agent's whole spec (voice settings, gain, language and the
phrase texts: any YAML change gives a new fingerprint and drops the agent's old
entries) and the sentence text. Only audio from the agent's primary provider
with no mid-sentence restart is stored, so a fallback voice never sticks. A
byte budget with least-recently-used eviction bounds memory.
"""

from __future__ import annotations

from collections import OrderedDict

from agents.spec import AgentSpec
from agents.store import spec_version


def fingerprint(agent: AgentSpec) -> str:
    """The version the cache keys an agent's audio by (:func:`agents.store.spec_version`)."""
    return spec_version(agent)


class PhraseCache:
    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str], tuple[bytes, ...]] = OrderedDict()
        self._versions: dict[str, str] = {}  # agent id → fingerprint currently cached
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def _check_version(self, agent_id: str, version: str) -> None:
        if self._versions.get(agent_id) == version:
            return
        for key in [k for k in self._items if k[0] == agent_id]:
            self.bytes -= sum(len(f) for f in self._items.pop(key))
        self._versions[agent_id] = version

    def get(self, agent: AgentSpec, version: str, text: str) -> tuple[bytes, ...] | None:
        self._check_version(agent.id, version)
        frames = self._items.get((agent.id, text))
        if frames is None:
            self.misses += 1
            return None
        self._items.move_to_end((agent.id, text))
        self.hits += 1
        return frames

    def put(self, agent: AgentSpec, version: str, text: str, frames: list[bytes]) -> None:
        self._check_version(agent.id, version)
        size = sum(len(f) for f in frames)
        if not frames or size > self.max_bytes:
            return
        key = (agent.id, text)
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
