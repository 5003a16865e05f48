"""Process-wide services shared by every call: settings, metrics, agents, engines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from agents.store import MemoryStore
from gateway.ops.drain import Drain
from gateway.ops.metrics import Metrics
from gateway.settings import Settings
from gateway.twilio.edge import Edge
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
    #: Graceful-drain state; build_services sizes it from the settings.
    drain: Drain = field(default_factory=lambda: Drain(600.0))
    active_calls: int = 0
    #: Signatures, stream tokens, concurrency slots, Twilio REST (built in the event loop; see gateway.twilio.edge).
    edge: Edge | None = None

    def twilio_edge(self) -> Edge:
        if self.edge is None:
            self.edge = Edge.build(self.settings)
        return self.edge

    @property
    def draining(self) -> bool:
        return self.drain.draining

    async def aclose(self) -> None:
        for extra in self.extras.values():
            if isinstance(extra, asyncio.Task) and not extra.done():
                extra.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await extra
        for engine in self.engines.values():
            try:
                await engine.aclose()
            except Exception:  # closing must not stop other engines from closing
                log.exception("error closing engine %s", engine.name)
        await self.store.aclose()
        if self.edge is not None:
            await self.edge.aclose()
