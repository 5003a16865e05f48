"""Build the process-wide services from settings: agents, store, TTS engines.

Engines are loaded only when some agent's provider chain uses them, so a
gateway whose agents do not use ChatTTS never pays for loading it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Mapping

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
from tts.cartesia import CartesiaEngine
from tts.piper import PiperEngine

log = logging.getLogger("voicegw")


def _chattts_unavailable(services: Services, reason: str) -> None:
    """One line, at the level the situation deserves: ERROR when the operator asked for ChatTTS (CHATTTS_MODEL_DIR,
    the speech role), INFO when it is merely optional (the embedded defaults on a host without weights, a GPU or
    the ``chattts`` extra: every agent that lists it falls back to its next provider, as the demo needs none)."""
    settings = services.settings
    users = sorted(a.id for a in services.store.snapshot.agents.values() if "chattts" in a.tts.chain())
    if settings.chattts_model_dir is not None or settings.role == "speech":
        log.error("ChatTTS unavailable, agents fall back: %s", reason)
    else:
        log.info("ChatTTS not loaded (optional: agent(s) %s use their next provider): %s",
                 ", ".join(users) or "none", reason)


async def _chattts(services: Services) -> None:
    """Start loading ChatTTS in its inference thread; calls fall back until it is ready (readiness waits)."""
    settings = services.settings
    try:
        from tts.chattts import ChatTTSConfig, ChatTTSEngine
    except ImportError as exc:  # the [chattts] extra is not installed
        _chattts_unavailable(services, f"not installed ({exc}): pip install 'voicegw[chattts]'")
        return
    override = None
    if settings.chattts_sha256_file is not None:
        try:
            override = json.loads(settings.chattts_sha256_file.read_text())
        except (OSError, ValueError) as exc:
            log.error("CHATTTS_SHA256_FILE %s is unreadable (%s): ChatTTS disabled", settings.chattts_sha256_file, exc)
            return
    config = ChatTTSConfig.from_settings(settings)
    config = dataclasses.replace(config, sha256_override=override, allow_download=settings.chattts_model_dir is None)
    engine = ChatTTSEngine(config, services.metrics)
    services.engines["chattts"] = engine

    async def load() -> None:
        await engine.start()
        if engine.load_error:
            _chattts_unavailable(services, engine.load_error)
        else:
            log.info("ChatTTS loaded and warmed up")

    services.chattts_loading = asyncio.create_task(load(), name="chattts-load")


async def _remote_chattts(services: Services) -> None:
    """CHATTTS_API_URL: the `chattts` provider is a speech server over HTTP; no model in this process."""
    from tts.chattts_remote import RemoteChatTTSEngine, RemoteConfig

    settings = services.settings
    assert settings.chattts_api_url is not None
    breakers = services.breakers
    engine = RemoteChatTTSEngine(RemoteConfig(url=settings.chattts_api_url, api_key=settings.chattts_api_key),
                                 name="chattts", breakers=breakers)
    await engine.start()  # one health probe (a few seconds at most), then every few seconds in the background
    services.engines["chattts"] = engine
    if engine.ready:
        log.info("ChatTTS served by %s", settings.chattts_api_url)
    else:
        log.error("ChatTTS speech server %s: %s; agents fall back until it is healthy", settings.chattts_api_url,
                  engine.load_error)


async def _speech_services(settings: Settings, metrics: Metrics | None) -> Services:
    """VOICEGW_ROLE=speech: ChatTTS always (and Piper, Cartesia when keyed, for the speech API's fallback).

    No agents, no Redis, no listening models, no Twilio edge: a speech pod serves telephony pods.
    """
    services = Services(settings=settings, store=MemoryStore({}), metrics=metrics or Metrics(),
                        drain=Drain(settings.drain_timeout_s, settings.drain_redirect_url))
    services.breakers = BreakerRegistry()
    piper = PiperEngine()
    await piper.start()
    services.engines["piper"] = piper
    if settings.cartesia_api_key:
        services.engines["cartesia"] = CartesiaEngine.from_settings(settings.cartesia_api_key,
                                                                    settings.cartesia_base_url)
    await _chattts(services)
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
    used = {p for a in agents.values() for p in a.tts.chain()}
    # Piper is the embedded default and the last resort: always loaded.
    piper = PiperEngine()
    await piper.start()
    services.engines["piper"] = piper
    # One breaker registry per process: one call's provider failures spare the next call the wait.
    services.breakers = BreakerRegistry()
    if settings.cartesia_api_key:  # also serves /v1/audio/speech fallbacks, so loaded whenever configured
        cartesia = CartesiaEngine.from_settings(settings.cartesia_api_key, settings.cartesia_base_url)
        if "cartesia" in used:
            await cartesia.start()  # opens the shared WebSocket now rather than on the first sentence
        services.engines["cartesia"] = cartesia
    elif "cartesia" in used:
        log.warning("some agents list cartesia but CARTESIA_API_KEY is not set: those agents skip it")
    if "chattts" in used:
        if settings.chattts_api_url:
            await _remote_chattts(services)
        elif settings.role == "telephony":  # a telephony pod never loads torch
            log.error("agents use chattts but VOICEGW_ROLE=telephony and CHATTTS_API_URL is not set: they fall back")
        else:
            await _chattts(services)
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
