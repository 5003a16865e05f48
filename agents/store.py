"""Agent settings store: YAML is the source of truth, Redis the shared cache.

Two implementations of one interface, :class:`AgentStore`:

* :class:`MemoryStore` — in-process, used when ``REDIS_URL`` is unset.
* :class:`RedisStore` — every gateway reads agents through a local snapshot that
  is swapped atomically when Redis publishes a new version. If Redis becomes
  unreachable, calls keep being served from the last known snapshot; the store
  reports ``healthy = False`` and keeps retrying until Redis is back. Each entry read
  from Redis must pass the :class:`agents.trust.SpecPolicy` (and its signature, when a
  signing key is set); a refused entry keeps its last good version and is listed in
  ``rejected`` (reported by ``/readyz``).

Redis layout (a push is one MULTI/EXEC transaction, so readers never see half a version)::

    voicegw:agents:v:<version>   hash  agent id -> agent JSON   (old versions expire after a day)
    voicegw:agents:sig:<version> hash  agent id -> HMAC-SHA256 hex   (only with VOICEGW_AGENT_SIGNING_KEY)
    voicegw:agents:current       string  <version>
    channel voicegw:agents:changed  <version>
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from agents.spec import AgentSpec
from agents.trust import SpecPolicy, sign, signature_ok

log = logging.getLogger("voicegw.store")

KEY_PREFIX = "voicegw:agents"
CURRENT_KEY = f"{KEY_PREFIX}:current"
CHANNEL = f"{KEY_PREFIX}:changed"
OLD_VERSION_TTL_S = 86400


def _digest(value: object) -> str:
    blob = json.dumps(value, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def spec_version(agent: AgentSpec) -> str:
    """One agent's version: changes with any field of its spec (the phrase cache keys audio by it)."""
    return _digest(agent.model_dump(mode="json"))


def version_of(agents: Mapping[str, AgentSpec]) -> str:
    """A set of agents' version (what a push publishes)."""
    return _digest({k: agents[k].model_dump(mode="json") for k in sorted(agents)})


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An immutable set of agents with their version and phone-number index."""

    version: str
    agents: Mapping[str, AgentSpec]
    numbers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, agents: Mapping[str, AgentSpec], version: str | None = None) -> Snapshot:
        numbers = {n: a.id for a in agents.values() for n in a.phone_numbers}
        return cls(version or version_of(agents), MappingProxyType(dict(agents)), MappingProxyType(numbers))


class AgentStore(Protocol):
    """Where a gateway reads agents from: a snapshot that may be swapped while calls run."""

    kind: str  # "embedded" or "redis", for /readyz
    healthy: bool  # False: the shared store is unreachable and the last snapshot is served

    @property
    def snapshot(self) -> Snapshot: ...

    @property
    def version(self) -> str: ...

    def get(self, agent_id: str) -> AgentSpec | None: ...

    def by_number(self, number: str) -> AgentSpec | None: ...

    def replace(self, agents: Mapping[str, AgentSpec]) -> None:
        """Serve ``agents`` from now on, in this process only (:meth:`RedisStore.publish` reaches every gateway)."""
        ...

    async def aclose(self) -> None: ...


class MemoryStore:
    """In-process store (implements :class:`AgentStore`)."""

    kind = "embedded"

    def __init__(self, agents: Mapping[str, AgentSpec]) -> None:
        self.snapshot = Snapshot.of(agents)
        self.healthy = True

    def get(self, agent_id: str) -> AgentSpec | None:
        return self.snapshot.agents.get(agent_id)

    def by_number(self, number: str) -> AgentSpec | None:
        agent_id = self.snapshot.numbers.get(number)
        return self.snapshot.agents.get(agent_id) if agent_id else None

    @property
    def version(self) -> str:
        return self.snapshot.version

    def replace(self, agents: Mapping[str, AgentSpec]) -> None:
        self.snapshot = Snapshot.of(agents)

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def push(redis: Any, agents: Mapping[str, AgentSpec], signing_key: bytes | None = None) -> str:
    """Write ``agents`` as a new version and make it current atomically; returns the version.

    With ``signing_key`` (VOICEGW_AGENT_SIGNING_KEY) each entry's HMAC goes to ``…:sig:<version>``.
    """
    version = version_of(agents)
    key = f"{KEY_PREFIX}:v:{version}"
    sig_key = f"{KEY_PREFIX}:sig:{version}"
    blobs = {a.id: a.model_dump_json() for a in agents.values()}
    previous = await redis.get(CURRENT_KEY)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(key, sig_key)
        if agents:
            pipe.hset(key, mapping=blobs)
            if signing_key:
                pipe.hset(sig_key, mapping={i: sign(signing_key, i, b) for i, b in blobs.items()})
        pipe.set(CURRENT_KEY, version)
        pipe.persist(key)
        pipe.persist(sig_key)
        if previous and (previous.decode() if isinstance(previous, bytes) else previous) != version:
            old = previous.decode() if isinstance(previous, bytes) else previous
            pipe.expire(f"{KEY_PREFIX}:v:{old}", OLD_VERSION_TTL_S)
            pipe.expire(f"{KEY_PREFIX}:sig:{old}", OLD_VERSION_TTL_S)
        pipe.publish(CHANNEL, version)
        await pipe.execute()
    return version


class RedisStore(MemoryStore):
    """Agents read from Redis through a local snapshot, refreshed on pub/sub (implements :class:`AgentStore`)."""

    kind = "redis"

    def __init__(self, url: str, initial: Mapping[str, AgentSpec], retry_s: float = 1.0,
                 policy: SpecPolicy | None = None, signing_key: bytes | None = None) -> None:
        super().__init__(initial)
        #: What a spec read from Redis may reference (the gateway passes one built from its settings and the
        #: local YAML; None: no restriction, for tools and tests).
        self.policy = policy
        #: Set: entries without a valid signature are refused.
        self.signing_key = signing_key
        #: Agent id → why its entry in the current version was refused (its last good version is served).
        self.rejected: dict[str, str] = {}
        import redis.asyncio as aioredis

        self.url = url
        self.retry_s = retry_s
        self.healthy = False
        self.last_error: str | None = None
        self._redis = aioredis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        self._task: asyncio.Task[None] | None = None
        self.on_change: list[Any] = []  # callables(version) notified after a swap
        #: Awaited with the new agents before they replace the live snapshot (pre-rendering fixed phrases:
        #: a version goes live only once its audio is ready). A failing hook is logged; the swap still happens.
        self.before_swap: list[Callable[[Mapping[str, AgentSpec]], Awaitable[None]]] = []

    async def publish(self, agents: Mapping[str, AgentSpec]) -> str:
        version = await push(self._redis, agents, self.signing_key)
        await self._reload()
        return version

    async def _reload(self) -> None:
        current = await self._redis.get(CURRENT_KEY)
        if current is None:
            return
        version = current.decode() if isinstance(current, bytes) else str(current)
        if version == self.snapshot.version and not self.rejected:  # (refused entries may since be signed)
            return
        raw = await self._redis.hgetall(f"{KEY_PREFIX}:v:{version}")
        sigs = await self._redis.hgetall(f"{KEY_PREFIX}:sig:{version}") if self.signing_key else {}
        agents, rejected = self._admit(raw, sigs)
        for hook in self.before_swap:
            try:
                await hook(agents)
            except Exception:
                log.exception("preparing agents version %s failed; swapping to it anyway", version)
        self.snapshot = Snapshot.of(agents, version)
        self.rejected = rejected
        log.info("agents reloaded from redis: version %s (%d agents%s)", version, len(agents),
                 f", {len(rejected)} refused" if rejected else "")
        for cb in self.on_change:
            cb(version)

    def _admit(self, raw: Mapping[Any, Any], sigs: Mapping[Any, Any]) -> tuple[dict[str, AgentSpec], dict[str, str]]:
        """The entries that may be served; a refused one keeps its last good version (if any). One bad entry
        never stops the others from loading."""
        agents: dict[str, AgentSpec] = {}
        rejected: dict[str, str] = {}
        for k, blob in raw.items():
            agent_id = k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)
            key = k if isinstance(k, bytes) else agent_id.encode()
            try:
                if self.signing_key and not signature_ok(self.signing_key, agent_id, blob, sigs.get(key)):
                    raise ValueError("missing or invalid signature (VOICEGW_AGENT_SIGNING_KEY)")
                spec = AgentSpec.model_validate_json(blob)
                if spec.id != agent_id:
                    raise ValueError(f"entry {agent_id!r} holds agent {spec.id!r}")
                problems = self.policy.problems(spec) if self.policy is not None else []
                if problems:
                    raise ValueError("; ".join(problems))
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                reason = str(exc).splitlines()[0][:300]
                rejected[agent_id] = reason
                previous = self.snapshot.agents.get(agent_id)
                log.error("agent %r from redis refused (%s); %s", agent_id, reason,
                          "serving its last good version" if previous else "not served")
                if previous is not None:
                    agents[agent_id] = previous
                continue
            agents[agent_id] = spec
        return agents, rejected

    async def start(self) -> None:
        try:
            await self._reload()
            self._set_health(True, None)
        except Exception as exc:  # redis down at startup: serve the YAML we have
            self._set_health(False, repr(exc))
        self._task = asyncio.create_task(self._watch(), name="agent-store-watch")

    def _set_health(self, ok: bool, error: str | None) -> None:
        if ok and not self.healthy:
            log.info("redis reachable at %s", self.url)
        elif not ok and (self.healthy or self.last_error is None):
            log.warning("redis unreachable (%s); serving last known agent settings", error)
        self.healthy, self.last_error = ok, error

    async def _watch(self) -> None:
        while True:
            try:
                pubsub = self._redis.pubsub()
                async with pubsub:
                    await pubsub.subscribe(CHANNEL)
                    await self._reload()  # catch versions pushed while we were away
                    self._set_health(True, None)
                    while True:
                        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if msg is not None:
                            await self._reload()
                        else:
                            await self._redis.ping()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._set_health(False, repr(exc))
                await asyncio.sleep(self.retry_s)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self._redis.aclose()

