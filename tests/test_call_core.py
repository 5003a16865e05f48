"""The call core through its carrier seam, with no Twilio type anywhere: a loopback carrier drives the real
CallSession and Conversation (real Piper; the slow test adds the real VAD and Whisper)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import pytest

from agents.loader import parse_agent
from agents.spec import AgentSpec
from agents.store import MemoryStore
from agents.stt import STTConfig, shared_transcriber
from agents.vad import shared_model
from audio.codec import ulaw2lin
from audio.formats import AudioChunk, AudioFormat, Encoding
from gateway.call import CallSession
from gateway.carrier import CallerAudio, CallEvent, Digit, HungUp
from gateway.conversation import Conversation, make_conversation
from gateway.phrase_cache import PhraseCache
from gateway.phrases import Phrases
from gateway.services import Services
from gateway.settings import Settings
from tests.fake_engines import Fault, ScriptedEngine
from tests.helpers import wait_until
from tests.loopback_carrier import LoopbackLink
from tests.speech_fixtures import mulaw
from tts.piper import PiperEngine

MENU = """
id: menu
name: Menu
greeting: "Welcome."
logic:
  kind: scripted
  rules:
    - dtmf: "1"
      say: "You chose sales."
    - when: ["hours", "open"]
      say: "We are open from nine to five."
    - dtmf: "9"
      say: "Goodbye."
      action: hangup
    - dtmf: "0"
      say: "Transferring you now."
      action: transfer
      transfer_to: "+15005550100"
  fallback: "Sorry?"
  goodbye: "Bye."
tts: {provider: piper, fallback: []}
"""

PCM16_8K = AudioFormat(Encoding.PCM_S16, 8000)


def menu() -> AgentSpec:
    agent, problems = parse_agent(MENU, "menu.yaml")
    assert agent is not None, problems
    return agent


@asynccontextmanager
async def call(piper: PiperEngine, link: LoopbackLink, *, listening: bool = False,
               ) -> AsyncIterator[tuple[CallSession, Conversation, Services, list[CallEvent]]]:
    agent = menu()
    services = Services(settings=Settings(), store=MemoryStore({agent.id: agent}), engines={"piper": piper})
    session = CallSession(link, services, agent)
    stt = shared_transcriber(STTConfig()) if listening else None
    conversation = make_conversation(session, agent, stt, shared_model() if listening else None, services.metrics)
    assert conversation is not None
    session.listener = conversation
    seen: list[CallEvent] = []
    session.observers.append(seen.append)
    running = asyncio.create_task(session.run())
    try:
        yield session, conversation, services, seen
        await asyncio.wait_for(running, 30)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert link.closed.is_set() and services.calls == {} and services.call_tasks.live == 0


async def reply_heard(session: CallSession, turn: int) -> None:
    await wait_until(lambda: f"turn{turn}-start" in session.ledger.heard() and session.ledger.outstanding() == 0)


async def test_digits_are_answered_and_the_goodbye_is_heard_before_the_carrier_hangs_up(piper: PiperEngine) -> None:
    link = LoopbackLink()
    async with call(piper, link) as (session, conversation, services, seen):
        await wait_until(lambda: session.ledger.heard() == ["greeting-1"])
        assert link.marks() == ["greeting-1"] and len(link.sent) > 20  # ~1 s of greeting frames, then its mark
        link.push(Digit("1"))
        await reply_heard(session, 2)
        assert conversation.turns[1].sentences == ["You chose sales."]
        assert link.audio_after("turn2-start")
        link.push(Digit("9"))
    assert session.dtmf == ["1", "9"] and Digit("1") in seen
    assert conversation.turns[2].sentences == ["Goodbye."]
    assert session.outcome == "agent_hangup" and link.hang_ups == 1
    assert session.ledger.outstanding() == 0  # the goodbye played in full before the hang-up
    assert link.marks()[-1].startswith("t3-")


async def test_transfer_goes_through_the_carrier(piper: PiperEngine) -> None:
    link = LoopbackLink(transfers=True)
    async with call(piper, link) as (session, _, _, seen):
        await wait_until(lambda: session.ledger.heard() == ["greeting-1"])
        link.push(Digit("0"))
    assert session.outcome == "transferred" and link.transferred_to == "+15005550100"
    assert seen[-1] == HungUp("completed")


async def test_a_carrier_that_cannot_transfer_fails_the_transfer_cleanly(piper: PiperEngine) -> None:
    link = LoopbackLink()
    async with call(piper, link) as (session, _, _, _):
        await wait_until(lambda: session.ledger.heard() == ["greeting-1"])
        link.push(Digit("0"))
    assert session.outcome == "transfer_failed" and link.transferred_to is None


async def test_the_caller_hanging_up_ends_the_call(piper: PiperEngine) -> None:
    link = LoopbackLink()
    async with call(piper, link) as (session, _, _, _):
        await wait_until(lambda: session.ledger.heard() == ["greeting-1"])
        link.push(HungUp("caller_hangup"))
    assert session.outcome == "caller_hangup" and link.hang_ups == 0


@pytest.mark.slow
async def test_caller_speech_as_pcm_is_heard_and_answered(piper: PiperEngine) -> None:
    """Caller audio in another encoding than Twilio's (int16 PCM) reaches the VAD and the recognizer."""
    pcm = ulaw2lin(mulaw("hours"))
    link = LoopbackLink()
    async with call(piper, link, listening=True) as (session, conversation, _, _):
        await wait_until(lambda: session.ledger.heard() == ["greeting-1"])
        for i in range(0, len(pcm), 160):
            link.push(CallerAudio(AudioChunk(np.ascontiguousarray(pcm[i:i + 160]), PCM16_8K), i / 8000))
            if i % 1600 == 0:
                await asyncio.sleep(0)  # let the call read as a carrier would deliver
        await reply_heard(session, 2)
        link.push(HungUp("completed"))
    assert len(conversation.transcripts) == 1 and "open" in conversation.transcripts[0].lower()  # "What time..."
    assert conversation.turns[1].sentences == ["We are open from nine to five."]
    assert session.outcome == "completed" and len(session.mouth_to_ear_s) == 1


def test_caller_audio_must_be_8_khz() -> None:
    with pytest.raises(ValueError, match="caller audio must be 8000 Hz, got 16000 Hz"):
        CallerAudio(AudioChunk(np.zeros(320, dtype=np.int16), AudioFormat(Encoding.PCM_S16, 16000)), 0.0)


def test_digits_are_validated() -> None:
    with pytest.raises(ValueError, match="digit must be one of"):
        Digit("x")


async def test_calls_waiting_on_a_failed_phrase_rendering_retry_one_at_a_time() -> None:
    """Three calls want the same greeting; the first call's rendering fails after the other two joined it.
    One of them renders it again and the last one waits for that (none of them crashes)."""
    agent = menu()
    engine = ScriptedEngine("piper", faults={0: Fault(raise_before_audio="down", first_audio_delay=0.3)})
    cache = PhraseCache()
    phrases = Phrases(cache, {"piper": engine})
    services = Services(settings=Settings(), store=MemoryStore({agent.id: agent}), engines={"piper": engine},
                        phrase_cache=cache, phrases=phrases)
    links = [LoopbackLink(f"loop-{i}") for i in range(3)]
    sessions = [CallSession(link, services, agent) for link in links]
    runs = [asyncio.create_task(sessions[0].run())]
    try:
        await wait_until(lambda: phrases.in_flight == 1)  # the first call leads the rendering
        runs += [asyncio.create_task(s.run()) for s in sessions[1:]]
        await wait_until(lambda: phrases.coalesced >= 2)  # the others joined it
        for session in sessions:
            await wait_until(lambda s=session: s.ledger.heard() == ["greeting-1"])
    finally:
        for link in links:
            link.push(HungUp("completed"))
        await asyncio.gather(*runs)
    assert sessions[0].providers == ["apology"]  # its own rendering failed: the apology instead
    assert engine.calls.count("Welcome.") == 2  # the failed rendering and one retry for both waiting calls
    assert [s.providers for s in sessions[1:]] == [["piper"], ["piper"]]
    assert services.call_tasks.live == 0
