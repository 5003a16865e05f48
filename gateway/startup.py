"""Build the process-wide services from settings: agents, store, TTS engines.

Engines are loaded only when some agent's provider chain uses them, so a
gateway whose agents do not use ChatTTS never pays for loading it.
"""

from __future__ import annotations

import logging

from agents.loader import load_agents_strict
from agents.store import MemoryStore, RedisStore
from gateway.drain import Drain
from gateway.metrics import Metrics
from gateway.services import Services
from gateway.settings import Settings
from tts.piper import PiperEngine

log = logging.getLogger("voicegw")


async def build_services(settings: Settings, metrics: Metrics | None = None) -> Services:
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
    used = {p for a in agents.values() for p in a.tts.chain()}
    # Piper is the embedded default and the last resort: always loaded.
    piper = PiperEngine()
    await piper.start()
    services.engines["piper"] = piper
    log.info("agents: %s; providers in use: %s", ", ".join(sorted(agents)) or "none", ", ".join(sorted(used)))
    if not settings.signatures_enforced:
        log.warning(
            "TWILIO_AUTH_TOKEN is not set: Twilio signatures are NOT checked. Fine for local development only."
        )
    return services
