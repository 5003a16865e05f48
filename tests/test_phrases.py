"""Fixed phrases: the list a call asks for, pre-rendered once, identical in-flight syntheses coalesced."""

from __future__ import annotations

import asyncio

from agents.spec import AgentSpec
from gateway.phrase_cache import PhraseCache, fingerprint
from gateway.phrases import Phrases, fixed_phrases
from gateway.sentence_audio import SentenceAudio
from tests.fake_engines import Fault, ScriptedEngine


def scripted_agent(**tts: object) -> AgentSpec:
    return AgentSpec.model_validate({
        "id": "front", "name": "Front desk", "greeting": "Hello, and thanks for calling. How can I help?",
        "logic": {"kind": "scripted", "fallback": "Sorry, I didn't catch that. Could you say it again?",
                  "goodbye": "Thanks for calling. Goodbye!",
                  "rules": [{"when": ["hours"], "say": "We are open from nine to five. Monday to Friday."},
                            {"dtmf": "0", "say": "Transferring you now.", "action": "hangup"}]},
        "tts": {"provider": "piper", "fallback": [], **tts},
        "turn_taking": {"reprompt": "Are you still there?", "apology": "Sorry, I'm having trouble. Call back."},
    })


def test_fixed_phrases_are_keyed_as_the_conversation_says_them() -> None:
    phrases = fixed_phrases(scripted_agent())
    assert phrases[0] == "Hello, and thanks for calling. How can I help?"  # the greeting whole, first
    assert "We are open from nine to five." in phrases and "Monday to Friday." in phrases  # per sentence
    for text in ("Transferring you now.", "Thanks for calling.", "Goodbye!", "Are you still there?",
                 "Sorry, I'm having trouble. Call back."):  # the apology whole, the rest sentence by sentence
        assert text in phrases, text
    assert len(phrases) == len(set(phrases))


def test_llm_agents_have_greeting_goodbye_reprompt_and_apology() -> None:
    agent = AgentSpec.model_validate({"id": "llm", "name": "L", "greeting": "Hi there.",
                                      "logic": {"kind": "llm", "base_url": "http://x", "model": "m",
                                                "goodbye": "Bye now."}})
    assert fixed_phrases(agent) == ["Hi there.", "Bye now.", "Are you still there?",
                                    agent.turn_taking.apology]


async def test_prerender_synthesizes_each_phrase_once_with_the_calls_own_framing() -> None:
    engine = ScriptedEngine("piper", chunks=3, chunk_delay=0.0)
    agent = scripted_agent(gain_db=-2.0)
    phrases = Phrases(PhraseCache(), {"piper": engine})
    report = await phrases.prerender([agent])
    expected = fixed_phrases(agent)
    assert report.rendered == len(expected) and not report.failed
    assert sorted(engine.calls) == sorted(expected)
    # the frames are what a call's SentenceAudio makes of the same chunks (gain included)
    audio = SentenceAudio(agent.tts.gain_db)
    reference = ScriptedEngine("piper", chunks=3, chunk_delay=0.0)
    async for chunk in reference.synthesize(engine.requests[0]):
        audio.feed(chunk, "piper")
    audio.flush()
    assert phrases.cache.get(agent, fingerprint(agent), engine.requests[0].text) == tuple(audio.frames)
    again = await phrases.prerender([agent])  # a second push of the same version renders nothing
    assert (again.rendered, again.cached) == (0, len(expected))
    assert len(engine.calls) == len(expected)


async def test_identical_requests_in_flight_are_synthesized_once() -> None:
    engine = ScriptedEngine("piper", chunks=4, chunk_delay=0.01)
    agent = scripted_agent()
    phrases = Phrases(PhraseCache(), {"piper": engine})
    results = await asyncio.gather(*(phrases.render(agent, "v1", "Please hold.") for _ in range(50)))
    assert engine.calls == ["Please hold."]
    assert phrases.coalesced == 49 and phrases.in_flight == 0
    assert all(r is not None and r == results[0] for r in results)


async def test_followers_of_a_failed_leader_get_none_and_the_next_request_tries_again() -> None:
    engine = ScriptedEngine("piper", chunks=2, chunk_delay=0.01, faults={0: Fault(die_after=1)})
    agent = scripted_agent()
    phrases = Phrases(PhraseCache(), {"piper": engine})
    first = await asyncio.gather(*(phrases.render(agent, "v1", "Please hold.") for _ in range(3)))
    assert first == [None, None, None] and len(engine.calls) == 1
    assert await phrases.render(agent, "v1", "Please hold.") is not None  # not cached as a failure
    assert len(engine.calls) == 2


async def test_a_cancelled_leader_releases_its_followers() -> None:
    engine = ScriptedEngine("piper", chunks=2, chunk_delay=0.01, faults={0: Fault(stall_after=1)})
    agent = scripted_agent()
    phrases = Phrases(PhraseCache(), {"piper": engine})
    leader = asyncio.create_task(phrases.render(agent, "v1", "Please hold."))
    await asyncio.sleep(0)  # the leader registers its flight before its first await
    assert phrases.in_flight == 1
    follower = asyncio.create_task(phrases.render(agent, "v1", "Please hold."))
    await asyncio.sleep(0)
    assert phrases.coalesced == 1
    leader.cancel()
    # at once, not when the stalled engine is given up (60 s): the cancel meets the first chunk arriving
    done, _ = await asyncio.wait({leader, follower}, timeout=20)
    assert done == {leader, follower} and leader.cancelled()
    assert follower.result() is None
    assert phrases.in_flight == 0


async def test_agents_whose_primary_voice_is_not_loaded_are_skipped() -> None:
    engine = ScriptedEngine("piper", chunks=1, chunk_delay=0.0)
    loading = ScriptedEngine("chattts", is_ready=False)
    agent = scripted_agent()
    other = AgentSpec.model_validate({"id": "gpu", "name": "G", "greeting": "Hi.", "logic": {"kind": "scripted"},
                                      "tts": {"provider": "chattts", "fallback": ["piper"]}})
    phrases = Phrases(PhraseCache(), {"piper": engine, "chattts": loading})
    report = await phrases.prerender([agent, other])
    assert report.skipped == ["gpu"] and report.rendered == len(fixed_phrases(agent))
    assert "Hi." not in engine.calls  # never synthesized with a voice that would not be cached


async def test_a_call_does_not_wait_on_a_pre_render_but_a_pre_render_joins_a_call() -> None:
    engine = ScriptedEngine("piper", chunks=2, chunk_delay=0.02)
    agent = scripted_agent()
    phrases = Phrases(PhraseCache(), {"piper": engine})
    pre = asyncio.create_task(phrases.render(agent, "v1", "Please hold.", prerender=True))
    await asyncio.sleep(0)
    assert phrases.join(agent, "v1", "Please hold.", prerenders=False) is None  # a caller synthesizes itself
    assert phrases.lead(agent, "v1", "Please hold.") is None  # ... without leading: the pre-render leads
    assert await pre is not None
    lead = phrases.lead(agent, "v1", "Another.")  # a call leads
    assert lead is not None
    joined = phrases.join(agent, "v1", "Another.")  # what a pre-render does
    assert joined is not None
    lead.done([b"\\x01" * 160])
    assert await joined == (b"\\x01" * 160,)
