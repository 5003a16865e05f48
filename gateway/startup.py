"""Build the process-wide services from settings: agents, store, TTS engines.

Engines are loaded only when some agent's provider chain uses them, so a
gateway whose agents do not use ChatTTS never pays for loading it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Coroutine, Mapping
from typing import Any

from agents.loader import load_agents_strict
from agents.spec import AgentSpec
from agents.store import AgentStore, MemoryStore, RedisStore
from agents.trust import SpecPolicy
from gateway.ops.drain import Drain
from gateway.ops.metrics import Metrics
from gateway.phrase_cache import PhraseCache
from gateway.phrases import Phrases
from gateway.services import Listening, Services
from gateway.settings import Settings
from gateway.twilio.edge import Edge
from tts.breaker import BreakerRegistry
from tts.registry import build_engines

log = logging.getLogger("voicegw")


async def _engines(services: Services, agents: Mapping[str, AgentSpec], used: set[str]) -> None:
    """The engine registry (:data:`tts.registry.ENGINES`) says which engines to build and how to start them."""

    def spawn(coro: Coroutine[Any, Any, None], name: str) -> None:
        # ChatTTS is the one engine that loads in the background; readiness and pre-rendering wait for it
        task = asyncio.create_task(coro, name=name)
        if name == "chattts-load":
            services.chattts_loading = task
        else:
            _background.add(task)
            task.add_done_callback(_background.discard)

    assert services.breakers is not None
    users = {name: tuple(sorted(a.id for a in agents.values() if name in a.tts.engines_used())) for name in used}
    sections = {name: tuple(a.tts.section(name) for a in agents.values() if name in a.tts.engines_used())
                for name in used}
    services.engines.update(
        await build_engines(services.settings, services.metrics, used, services.breakers, spawn, users, sections))


_background: set[asyncio.Task[None]] = set()


async def _speech_services(settings: Settings, metrics: Metrics | None) -> Services:
    """VOICEGW_ROLE=speech: ChatTTS always (and Piper, Cartesia when keyed, for the speech API's fallback).

    No agents, no Redis, no listening models, no Twilio edge: a speech pod serves telephony pods.
    """
    services = Services(settings=settings, store=MemoryStore({}), metrics=metrics or Metrics(),
                        drain=Drain(settings.drain_timeout_s, settings.drain_redirect_url))
    services.breakers = BreakerRegistry()
    await _engines(services, {}, {"chattts"})
    log.info("speech role: serving /v1/audio/speech for telephony pods (no Twilio routes)")
    return services


async def build_services(settings: Settings, metrics: Metrics | None = None, *, calls: bool = True) -> Services:
    """``calls=False`` (``voicegw say``): speech only, no Twilio edge and no listening (VAD, speech-to-text)."""
    if settings.role == "speech":
        return await _speech_services(settings, metrics)
    agents = load_agents_strict(settings.agents_dir)
    store: AgentStore
    if settings.redis_url:
        policy = SpecPolicy.of(agents, settings.agent_key_envs, settings.llm_hosts, settings.transfer_numbers)
        redis_store = RedisStore(settings.redis_url, agents, policy=policy, signing_key=settings.agent_signing_key)
        try:
            await redis_store.publish(agents)  # YAML is the source of truth
        except Exception as exc:
            log.warning("could not push agents to redis (%s); serving local YAML until it is back", exc)
        await redis_store.start()
        store = redis_store
    else:
        store = MemoryStore(agents)
    services = Services(settings=settings, store=store, metrics=metrics or Metrics(),
                        drain=Drain(settings.drain_timeout_s, settings.drain_redirect_url))
    services.metrics.redis_up.set(1 if store.healthy else 0)
    if calls:
        services.edge = Edge.build(settings)
    used = {p for a in agents.values() for p in a.tts.engines_used()}
    # One breaker registry per process: one call's provider failures spare the next call the wait.
    services.breakers = BreakerRegistry()
    await _engines(services, agents, used)
    if calls:
        _listening(services)
        _prerender(services)
    log.info("agents: %s; providers in use: %s", ", ".join(sorted(agents)) or "none", ", ".join(sorted(used)))
    if calls and not settings.signatures_enforced:
        log.warning(
            "TWILIO_AUTH_TOKEN is not set: Twilio signatures are NOT checked. Fine for local development only."
        )
    return services


def _prerender(services: Services) -> None:
    """Render every agent's fixed phrases before calls hear them: the startup set in a task readiness waits
    for, and each pushed version before it goes live (``RedisStore.before_swap``)."""
    assert services.phrase_cache is not None
    phrases = services.phrases = Phrases(services.phrase_cache, services.engines)

    async def startup() -> None:
        if services.chattts_loading is not None:  # ChatTTS agents render with ChatTTS, once it is loaded
            with contextlib.suppress(Exception):
                await asyncio.shield(services.chattts_loading)
        await phrases.prerender(services.store.snapshot.agents.values())
        phrases.ready = True

    services.prerendering = asyncio.create_task(startup(), name="prerender")
    if isinstance(services.store, RedisStore):
        async def before_swap(agents: Mapping[str, AgentSpec]) -> None:
            await phrases.prerender(agents.values())

        services.store.before_swap.append(before_swap)


def _listening(services: Services) -> None:
    """The process-wide VAD and recognizer (one model each, shared by every call) and the phrase cache."""
    from agents.stt import STTConfig, shared_transcriber
    from agents.vad import VadError, shared_model

    services.phrase_cache = PhraseCache()
    listening = Listening(vad=None, stt=None)
    try:
        listening.vad = shared_model()
    except VadError as exc:
        listening.vad_error = str(exc)
        log.error("no voice activity detection, callers cannot speak to agents: %s", exc)
    settings = services.settings
    compute = "int8" if settings.stt_device == "cpu" else "default"
    # starts loading in its own thread now; the first utterance waits only for what is left of the load
    listening.stt = shared_transcriber(
        STTConfig(model=settings.stt_model, device=settings.stt_device, compute_type=compute)
    )
    services.listening = listening


def startup_settled(services: Services) -> bool:
    """Every load startup began is over: the recognizer (loaded or failed for good), the fixed phrases' first
    rendering and ChatTTS's load. What is alive now lives as long as the process."""
    listening = services.listening
    stt = listening.stt if listening is not None else None
    if stt is not None and not stt.ready and stt.load_error is None:
        return False
    return all(task is None or task.done() for task in (services.prerendering, services.chattts_loading))


# The collector's thresholds once startup has settled (CPython's default is 700, 10, 10). A full collection walks
# every object the live calls hold (~330 per listening call): 38-56 ms with the loop held at 300 calls, every
# call's audio late at once (docs/scaling.md). It comes once per (third threshold) middle collections: 100
# instead of 10 makes it ten times rarer (at 300 calls every few minutes instead of every ~20 s). The young
# and middle ones stay as they were: they walk what survived since the last one (a few ms; the 15-37 ms once
# measured were a queue allocating per waiting message, since fixed in gateway/direct_ws.py); a higher young
# threshold was tried and made each middle collection as long as a full one. Cyclic
# garbage that reached the oldest generation waits longer; everything else is freed by reference counting.
GC_THRESHOLDS = (700, 10, 100)


def settle_collector() -> None:
    """Freeze what is alive now out of the collector (after one collection) and set :data:`GC_THRESHOLDS`."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def settle_startup(services: Services) -> bool:
    """One step of the startup heap freeze (call it until it returns True): not ready (``settling``) until
    startup has settled, then freeze once and ready. Objects of a loaded gateway (models, tokenizers, schemas,
    modules: tens of thousands that never die) were walked by every full collection: 68-171 ms with the event
    loop held (docs/scaling.md), longer than the playout lead, so every call speaking then underran. Frozen,
    a full collection walks only what calls create; the freeze's own collection comes before any call. Then
    the collector runs less often (:data:`GC_THRESHOLDS`)."""
    services.settling = True
    if not startup_settled(services):
        return False
    settle_collector()
    log.info("startup settled: %d objects frozen out of garbage collection; collector thresholds %s",
             gc.get_freeze_count(), "/".join(map(str, gc.get_threshold())))
    services.settling = False
    return True
