"""Fixed phrases are never synthesized twice: pre-rendered before an agent version goes live, and
identical in-flight syntheses coalesced (I/O shell around :class:`gateway.phrase_cache.PhraseCache`).

* :func:`fixed_phrases` lists the sentences a call will ask the cache for, keyed exactly as the
  conversation says them: the greeting whole, every other fixed text (scripted answers, fallback,
  goodbye, reprompt) sentence by sentence through :class:`agents.chunker.SentenceChunker`, and the
  apology whole.
* :meth:`Phrases.prerender` renders every fixed phrase of some agents with each agent's primary
  provider (the same :class:`tts.fallback.Speaker` and :class:`gateway.sentence_audio.SentenceAudio`
  path as a call, so the frames are byte-for-byte what a call would have produced) and stores them.
  Startup awaits it before readiness; a push awaits it before the new version replaces the old one.
* Single-flight: :meth:`Phrases.join` returns the in-flight rendering of the same (agent, version,
  text) if there is one; :meth:`Phrases.lead` registers the caller as the one who renders it.
  Followers get the leader's frames when it finishes, or ``None`` (it failed, fell back to another
  voice, or was cancelled) and then synthesize for themselves. A call does not wait on a pre-render
  (lowest priority, whole phrase first): before readiness it may synthesize the same phrase itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from agents.chunker import SentenceChunker
from agents.spec import AgentSpec, LLMLogic, ScriptedLogic
from gateway.phrase_cache import PhraseCache, fingerprint
from gateway.sentence_audio import SentenceAudio
from tts.base import TTSEngine, TTSError
from tts.breaker import BreakerRegistry
from tts.fallback import Speaker, SpeechRestart

log = logging.getLogger("voicegw.phrases")

PRERENDER_GIVE_UP_S = 60.0
Frames = tuple[bytes, ...]
Key = tuple[str, str, str]  # agent id, version, text


def _sentences(text: str) -> list[str]:
    chunker = SentenceChunker()
    return chunker.feed(text) + chunker.flush()


def fixed_phrases(agent: AgentSpec) -> list[str]:
    """Every fixed sentence of ``agent``, in the order worth rendering (greeting first), without repeats."""
    out = [agent.greeting]
    texts: list[str] = []
    if isinstance(agent.logic, ScriptedLogic):
        texts += [rule.say for rule in agent.logic.rules]
        texts += [agent.logic.fallback, agent.logic.goodbye]
    elif isinstance(agent.logic, LLMLogic):
        texts.append(agent.logic.goodbye)
    texts.append(agent.turn_taking.reprompt)
    for text in texts:
        out += _sentences(text)
    out.append(agent.turn_taking.apology)
    return list(dict.fromkeys(s for s in out if s.strip()))


@dataclass
class Lead:
    """The one rendering of a phrase that others wait for; :meth:`done` exactly once (``finally``)."""

    key: Key
    future: asyncio.Future[Frames | None]
    owner: Phrases
    prerender: bool = False  # a pre-render (lowest priority, whole phrase before any audio): calls do not wait on it

    def done(self, frames: Iterable[bytes] | None) -> None:
        self.owner._finish(self, tuple(frames) if frames is not None else None)


@dataclass
class PrerenderReport:
    rendered: int = 0
    cached: int = 0  # already in the cache
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # agents whose primary voice is not ready
    seconds: float = 0.0


class Phrases:
    """The process's fixed-phrase audio: the cache, the in-flight renderings and the pre-render step."""

    def __init__(self, cache: PhraseCache, engines: Mapping[str, TTSEngine]) -> None:
        self.cache = cache
        self.engines = engines
        # Its own breakers: a slow pre-render (a busy voice at startup) must not open the circuit calls use.
        self.breakers = BreakerRegistry()
        self._flights: dict[Key, Lead] = {}
        self.coalesced = 0  # requests served by another request's synthesis
        self.ready = False  # the startup set is rendered (readiness waits for it)

    # ---- single-flight ---------------------------------------------------
    def join(self, agent: AgentSpec, version: str, text: str, *, prerenders: bool = True
             ) -> asyncio.Future[Frames | None] | None:
        """The rendering of this phrase already in flight (await it), or None.

        ``prerenders=False`` (a call): a pre-render in flight is not joined — it runs at the voice's lowest
        priority and hands its audio over only when complete, so a caller would wait longer than for its own.
        """
        lead = self._flights.get((agent.id, version, text))
        if lead is None or (lead.prerender and not prerenders):
            return None
        self.coalesced += 1
        return asyncio.shield(lead.future)

    def lead(self, agent: AgentSpec, version: str, text: str, *, prerender: bool = False) -> Lead | None:
        """Register as the one rendering this phrase (others join); None when someone already is."""
        key = (agent.id, version, text)
        if key in self._flights:
            return None
        lead = Lead(key, asyncio.get_running_loop().create_future(), self, prerender)
        self._flights[key] = lead
        return lead

    def _finish(self, lead: Lead, frames: Frames | None) -> None:
        if self._flights.get(lead.key) is lead:
            del self._flights[lead.key]
        if not lead.future.done():
            lead.future.set_result(frames)

    @property
    def in_flight(self) -> int:
        return len(self._flights)

    # ---- rendering -------------------------------------------------------
    async def render(self, agent: AgentSpec, version: str, text: str, *, prerender: bool = False) -> Frames | None:
        """This phrase's frames: cached, joined, or synthesized now with the primary voice (then cached)."""
        cached = self.cache.get(agent, version, text)
        if cached is not None:
            return cached
        flight = self.join(agent, version, text)
        if flight is not None:
            return await flight
        lead = self.lead(agent, version, text, prerender=prerender)
        frames: list[bytes] | None = None
        try:
            frames = await self._synthesize(agent, text)
            if frames is not None:
                self.cache.put(agent, version, text, frames)
        finally:
            if lead is not None:
                lead.done(frames)
        return tuple(frames) if frames is not None else None

    async def _synthesize(self, agent: AgentSpec, text: str) -> list[bytes] | None:
        primary = agent.tts.chain()[0]
        speaker = Speaker(self.engines, agent.tts, None, self.breakers)
        speaker.give_up_s = PRERENDER_GIVE_UP_S  # no caller is waiting: a busy voice may take its time
        audio = SentenceAudio(agent.tts.gain_db)
        try:
            async for part in speaker.speak(text, language=agent.language, priority=2,
                                            request_id=f"prerender-{agent.id}"):
                if isinstance(part, SpeechRestart) or part.provider != primary:
                    return None  # only the primary voice is cached (a fallback voice must not stick)
                audio.feed(part.chunk, part.provider)
        except TTSError as exc:
            log.warning("agent %s: cannot pre-render %r: %s", agent.id, text[:40], exc.reason)
            return None
        audio.flush()
        return audio.frames if audio.provider == primary and audio.frames else None

    async def prerender(self, agents: Iterable[AgentSpec], concurrency: int = 1) -> PrerenderReport:
        """Render every fixed phrase of ``agents`` that is not cached yet (each agent at its own version).

        Agents whose primary voice is not loaded are skipped (their phrases are cached by the first call
        that speaks them with it). One phrase at a time by default: the voice keeps serving calls first
        (pre-render requests have the lowest priority) and a queue of pre-render requests would only
        time out in it.
        """
        t0 = time.monotonic()
        report = PrerenderReport()
        jobs = []
        for agent in agents:
            engine = self.engines.get(agent.tts.chain()[0])
            if engine is None or not engine.ready:
                report.skipped.append(agent.id)
                continue
            jobs += [(agent, fingerprint(agent), text) for text in fixed_phrases(agent)]
        gate = asyncio.Semaphore(concurrency)

        async def one(agent: AgentSpec, version: str, text: str) -> None:
            if self.cache.peek(agent, version, text):
                report.cached += 1
                return
            async with gate:
                frames = await self.render(agent, version, text, prerender=True)
            if frames is None:
                report.failed.append(f"{agent.id}: {text[:40]}")
            else:
                report.rendered += 1

        await asyncio.gather(*(one(*job) for job in jobs))
        report.seconds = time.monotonic() - t0
        log.info("fixed phrases: %d rendered, %d already cached, %d failed in %.1f s%s", report.rendered,
                 report.cached, len(report.failed), report.seconds,
                 f"; skipped (primary voice not ready): {', '.join(report.skipped)}" if report.skipped else "")
        return report
