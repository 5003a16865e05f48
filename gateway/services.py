"""Process-wide services shared by every call: settings, metrics, agents, engines, listening models."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agents.store import AgentStore
from agents.stt import WhisperTranscriber
from agents.vad import SileroModel
from gateway.ops.drain import Drain
from gateway.ops.metrics import Metrics
from gateway.phrase_cache import PhraseCache
from gateway.phrases import Phrases
from gateway.settings import Settings
from gateway.tasks import TaskGroup
from gateway.twilio.edge import Edge
from tts.base import TTSEngine
from tts.breaker import BreakerRegistry

if TYPE_CHECKING:
    from gateway.call import CallSession

log = logging.getLogger("voicegw")


@dataclass
class Listening:
    """The shared models that hear callers (one each per process)."""

    vad: SileroModel | None  # None: it failed to load (``vad_error`` says why)
    stt: WhisperTranscriber | None
    vad_error: str | None = None


@dataclass
class Services:
    settings: Settings
    store: AgentStore
    metrics: Metrics = field(default_factory=Metrics)
    engines: dict[str, TTSEngine] = field(default_factory=dict)
    #: One breaker registry per process: one call's provider failures spare the next call the wait.
    breakers: BreakerRegistry | None = None
    #: Fixed phrases' audio, shared by every call.
    phrase_cache: PhraseCache | None = None
    #: Pre-rendering and single-flight over the phrase cache (readiness waits for the startup set).
    phrases: Phrases | None = None
    prerendering: asyncio.Task[None] | None = None
    #: VAD and recognizer; None for a gateway built without listening (some tests).
    listening: Listening | None = None
    #: ChatTTS loads in its own thread after startup; readiness waits for it.
    chattts_loading: asyncio.Task[None] | None = None
    #: The process freezes its startup heap once startup settled (``voicegw serve``); not ready until then.
    settling: bool = False
    #: Graceful-drain state; build_services sizes it from the settings.
    drain: Drain = field(default_factory=lambda: Drain(600.0))
    active_calls: int = 0
    #: Every call's tasks (a leak shows in ``call_tasks.live``) and the running calls by call id.
    call_tasks: TaskGroup = field(default_factory=TaskGroup)
    calls: dict[str, CallSession] = field(default_factory=dict)
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
        for loading in (self.prerendering, self.chattts_loading):
            if loading is not None and not loading.done():
                loading.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await loading
        for engine in self.engines.values():
            try:
                await engine.aclose()
            except Exception:  # closing must not stop other engines from closing
                log.exception("error closing engine %s", engine.name)
        await self.store.aclose()
        if self.edge is not None:
            await self.edge.aclose()
