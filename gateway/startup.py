"""Build the process-wide services from settings: agents, store, TTS engines.

Engines are loaded only when some agent's provider chain uses them, so a
gateway whose agents do not use ChatTTS never pays for loading it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from agents.loader import load_agents_strict
from agents.store import MemoryStore, RedisStore
from gateway.ops.drain import Drain
from gateway.ops.metrics import Metrics
from gateway.phrase_cache import PhraseCache
from gateway.services import Services
from gateway.settings import Settings
from gateway.twilio.edge import Edge
from tts.breaker import BreakerRegistry
from tts.registry import build_engines

log = logging.getLogger("voicegw")


async def _engines(services: Services, used: set[str]) -> None:
    """The engine registry (:data:`tts.registry.ENGINES`) says which engines to build and how to start them."""

    def spawn(coro: Coroutine[Any, Any, None], name: str) -> None:  # cancelled by Services.aclose
        services.extras[name] = asyncio.create_task(coro, name=name)

    breakers = services.extras["breakers"]
    assert isinstance(breakers, BreakerRegistry)
    services.engines.update(await build_engines(services.settings, services.metrics, used, breakers, spawn))


async def _speech_services(settings: Settings, metrics: Metrics | None) -> Services:
    """VOICEGW_ROLE=speech: ChatTTS always (and Piper, Cartesia when keyed, for the seed API's fallback).

    No agents, no Redis, no listening models, no Twilio edge: a speech pod serves telephony pods.
    """
    services = Services(settings=settings, store=MemoryStore({}), metrics=metrics or Metrics(),
                        drain=Drain(settings.drain_timeout_s, settings.drain_redirect_url))
    services.extras["breakers"] = BreakerRegistry()
    await _engines(services, {"chattts"})
    log.info("speech role: serving /v1/audio/speech for telephony pods (no Twilio routes)")
    return services


async def build_services(settings: Settings, metrics: Metrics | None = None, *, calls: bool = True) -> Services:
    """``calls=False`` (``voicegw say``): speech only, no Twilio edge and no listening (VAD, speech-to-text)."""
    if settings.role == "speech":
        return await _speech_services(settings, metrics)
    agents = load_agents_strict(settings.agents_dir)
    store: MemoryStore
    if settings.redis_url:
        redis_store = RedisStore(settings.redis_url, agents)
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
    services.extras["breakers"] = BreakerRegistry()
    await _engines(services, used)
    if calls:
        _listening(services)
    log.info("agents: %s; providers in use: %s", ", ".join(sorted(agents)) or "none", ", ".join(sorted(used)))
    if calls and not settings.signatures_enforced:
        log.warning(
            "TWILIO_AUTH_TOKEN is not set: Twilio signatures are NOT checked. Fine for local development only."
        )
    return services


def _listening(services: Services) -> None:
    """The process-wide VAD and recognizer (one model each, shared by every call) and the phrase cache."""
    from agents.stt import STTConfig, shared_transcriber
    from agents.vad import VadError, shared_model

    services.extras["phrase_cache"] = PhraseCache()
    try:
        services.extras["vad"] = shared_model()
    except VadError as exc:
        services.extras["vad"] = None
        services.extras["vad_error"] = str(exc)
        log.error("no voice activity detection, callers cannot speak to agents: %s", exc)
    settings = services.settings
    compute = "int8" if settings.stt_device == "cpu" else "default"
    # starts loading in its own thread now; the first utterance waits only for what is left of the load
    services.extras["stt"] = shared_transcriber(
        STTConfig(model=settings.stt_model, device=settings.stt_device, compute_type=compute)
    )
