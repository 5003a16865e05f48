"""Process-wide services shared by every call: settings, metrics, agents, engines."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from agents.store import MemoryStore
from gateway.metrics import Metrics
from gateway.settings import Settings
from tts.base import TTSEngine

log = logging.getLogger("voicegw")


@dataclass
class Services:
    settings: Settings
    store: MemoryStore
    metrics: Metrics = field(default_factory=Metrics)
    engines: dict[str, TTSEngine] = field(default_factory=dict)
    #: Extra process-wide objects added by later layers (STT model, breakers, limiter...).
    extras: dict[str, Any] = field(default_factory=dict)
    draining: bool = False
    active_calls: int = 0

    async def aclose(self) -> None:
        for engine in self.engines.values():
            try:
                await engine.aclose()
            except Exception:  # closing must not stop other engines from closing
                log.exception("error closing engine %s", engine.name)
        await self.store.aclose()
