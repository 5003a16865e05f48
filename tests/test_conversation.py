"""The conversation loop end to end: emulated Twilio caller ↔ real gateway (uvicorn) ↔ VAD, Whisper, Piper.

The caller speaks the committed fixtures; what the agent said is checked by transcribing the audio the
caller heard. Slow: real models, real-time calls.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from agents.chunker import SentenceChunker
from agents.spec import TurnTaking
from bench.conversation import speech_bounds
from bench.wer import wer
from gateway.twilio.emulator import CallControl, CallResult, TwilioEmulator
from tests.fake_llm import FakeLLM, FakeReply, run_fake_llm
from tests.helpers import run_gateway, transcribe, wait_until
from tests.speech_fixtures import conversation_mulaw, mulaw, transcripts

pytestmark = pytest.mark.slow

# Words Whisper tiny.en hears in every Piper render (measured 10/10 each). It misheard "You chose sales",
# "A colleague" and "Goodbye!" in 1-4 renders of 10 (Piper's noise differs per render), which made these
# tests fail at random.
MENU = """
id: menu
name: Menu test
greeting: "Welcome. Press one for sales."
logic:
  kind: scripted
  rules:
    - dtmf: "1"
      say: "You reached sales. Someone will call you back."
    - when: ["hours", "open"]
      say: "We are open from nine to five."
  fallback: "Sorry, I did not get that."
  goodbye: "Thank you for calling. Have a nice day."
tts: {provider: piper, fallback: []}
turn_taking: {reprompt_after_s: 2, hangup_after_s: 5, reprompt: "Are you still there?"}
"""

LONG_REPLY = (
    "Your account is in good standing. Your last payment arrived on the third of May. "
    "Your next bill is due on the first of June. You can pay by card or by bank transfer. "
    "We also offer paperless billing, which many customers like. Is there anything else I can help with?"
)


def llm_agent(base_url: str) -> str:
    return f"""
id: llmtest
name: LLM test
greeting: "Hi, this is Acme."
logic: {{kind: llm, base_url: "{base_url}", model: fake-1, system_prompt: "Be brief."}}
tts: {{provider: piper, fallback: []}}
"""


async def turn_heard(c: CallControl, turn: int, within_s: float = 40.0, sentences: int | None = None) -> None:
    """Wait until turn ``turn`` has started playing and everything received has played.

    With ``sentences`` (the reply's sentence count, when the test knows it) the wait is on events: every
    sentence's mark echoed. Without, the turn counts as over after 0.3 s of idle playout, which a loaded
    machine can stretch between two sentences.
    """
    await wait_until(lambda: f"turn{turn}-start" in c.result.marks_echoed, within_s)
    if sentences is not None:
        await wait_until(lambda: sum(m.startswith(f"t{turn}-") for m in c.result.marks_echoed) >= sentences,
                         within_s)
        await wait_until(c.playout.idle, within_s)
        return
    for _ in range(6):  # idle for 0.3 s: not just a gap between two sentences
        await wait_until(c.playout.idle, within_s)
        await asyncio.sleep(0.05)


def sentence_count(text: str) -> int:
    """How many sentences (each with its mark) the agent speaks ``text`` as."""
    chunker = SentenceChunker()
    return len(chunker.feed(text) + chunker.flush())


async def greeting_heard(c: CallControl) -> None:
    await wait_until(lambda: "greeting-1" in c.result.marks_echoed)
    await wait_until(c.playout.idle)


async def get(url: str) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        return (await client.get(url)).text


async def assert_said(audio: bytes, expected: str, max_wer: float = 0.35) -> None:
    """The caller heard ``expected`` (checked by Whisper, with a tolerance for recognition errors)."""
    heard = await transcribe(audio)
    errors, words = wer(expected, heard)
    assert errors / words <= max_wer, (expected, heard)


def now(c: CallControl) -> float:
    return c.emu.clock() - c.t0


async def test_caller_asks_and_scripted_agent_answers(agents_dir: Path) -> None:
    heard: dict[str, object] = {}

    async def caller(c: CallControl) -> None:
        await greeting_heard(c)
        offset = len(c.result.audio)
        speech = mulaw("hours")
        c.speak(speech)
        heard["speech_end"] = now(c) + speech_bounds(speech)[1]  # (its trailing silence is not exactly 1 s)
        await turn_heard(c, 2, sentences=sentence_count("We are open from nine to five, Monday to Friday."))
        heard["reply"] = bytes(c.result.audio[offset:])

    async with run_gateway({"VOICEGW_AGENTS_DIR": str(agents_dir)}) as url:
        result = await TwilioEmulator(url).call(agent="demo", script=caller, hold_s=0.2, max_s=60)
        metrics = (await get(f"{url}/metrics"))
    assert result.errors == []
    await assert_said(heard["reply"], "We are open from nine to five, Monday to Friday.")  # type: ignore[arg-type]
    mouth_to_ear = result.mark_times["turn2-start"] - float(heard["speech_end"])  # type: ignore[arg-type]
    # Even a prepared reply waits for the caller's first pause: nothing can be heard sooner.
    assert TurnTaking().speculative_silence_ms / 1000 < mouth_to_ear < 5.0
    assert "voicegw_mouth_to_ear_seconds_count" in metrics
    assert 'voicegw_mouth_to_ear_seconds_count{agent="demo"} 1.0' in metrics


async def test_dtmf_menu(agents_dir: Path) -> None:
    (agents_dir / "menu.yaml").write_text(MENU)
    replies: list[bytes] = []

    async def caller(c: CallControl) -> None:
        await greeting_heard(c)
        offset = len(c.result.audio)
        await c.dtmf("1")
        await turn_heard(c, 2, sentences=2)  # "You reached sales." "Someone will call you back."
        replies.append(bytes(c.result.audio[offset:]))

    async with run_gateway({"VOICEGW_AGENTS_DIR": str(agents_dir)}) as url:
        result = await TwilioEmulator(url).call(agent="menu", script=caller, hold_s=0.2, max_s=60)
    assert result.errors == []
    await assert_said(replies[0], "You reached sales. Someone will call you back.")


async def test_silence_reprompt_then_goodbye_heard_in_full_then_hangup(agents_dir: Path) -> None:
    (agents_dir / "menu.yaml").write_text(MENU)
    async with run_gateway({"VOICEGW_AGENTS_DIR": str(agents_dir)}) as url:
        result = await TwilioEmulator(url).call(agent="menu", script=lambda c: asyncio.sleep(120), max_s=120)
    assert result.errors == []
    assert not result.caller_hung_up  # the gateway hung up; the caller did not run into max_s
    marks = result.marks_echoed
    assert "turn2-start" in marks and "turn3-start" in marks  # reprompt, then goodbye
    reprompt_at, goodbye_at = result.mark_times["turn2-start"], result.mark_times["turn3-start"]
    greeting_end = result.mark_times["greeting-1"]
    # Not before their timers (reprompt_after_s = 2, hangup_after_s = 5); how long after depends on how fast
    # Piper speaks on a loaded machine, so the upper bounds only say "in order, and well before max_s".
    assert 1.5 < reprompt_at - greeting_end < goodbye_at - greeting_end
    assert 3.5 < goodbye_at - greeting_end < 20.0
    goodbye_marks = [m for m in marks if m.startswith("t3-")]
    assert len(goodbye_marks) == 2 and marks[-1] == goodbye_marks[-1]  # every goodbye sentence played
    assert result.marks_cleared == []
    tail = await transcribe(bytes(result.audio[-8000 * 3 :]))
    assert "nice day" in tail, tail


async def test_llm_agent_streams_through_fake_server(agents_dir: Path) -> None:
    reply = "On Saturday we open at nine, and close at noon. Anything else?"
    fake = FakeLLM(rules=[("saturday", FakeReply(reply))])
    replies: list[bytes] = []

    async def caller(c: CallControl) -> None:
        await greeting_heard(c)
        offset = len(c.result.audio)
        c.speak(mulaw("hours"))
        await turn_heard(c, 2, sentences=sentence_count(reply))
        replies.append(bytes(c.result.audio[offset:]))

    async with run_fake_llm(fake) as llm_url:
        (agents_dir / "llmtest.yaml").write_text(llm_agent(llm_url))
        async with run_gateway({"VOICEGW_AGENTS_DIR": str(agents_dir)}) as url:
            result = await TwilioEmulator(url).call(agent="llmtest", script=caller, hold_s=0.2, max_s=60)
    assert result.errors == []
    messages = fake.requests[0]["messages"]
    assert [m["role"] for m in messages] == ["system", "assistant", "user"]
    assert messages[1]["content"] == "Hi, this is Acme."
    assert "saturday" in messages[2]["content"].lower()
    await assert_said(replies[0], "On Saturday we open at nine, and close at noon. Anything else?")


async def test_barge_in_stops_audio_and_truncates_history(agents_dir: Path) -> None:
    fake = FakeLLM(rules=[("account", FakeReply(LONG_REPLY)), ("bill", FakeReply("Sure. What about your bill?"))])
    times: dict[str, float] = {}

    async def caller(c: CallControl) -> None:
        await greeting_heard(c)
        c.speak(mulaw("account"))
        await wait_until(lambda: "turn2-start" in c.result.marks_echoed)
        await asyncio.sleep(2.5)  # well into the reply (several sentences long)
        times["audio_before"] = len(c.result.audio)
        c.speak(mulaw("interrupt"))
        times["speech_onset"] = now(c) + 0.6  # fixtures start with 0.6 s of silence
        await wait_until(lambda: c.result.clears > 0, 15)
        await turn_heard(c, 3, sentences=sentence_count("Sure. What about your bill?"))

    async with run_fake_llm(fake) as llm_url:
        (agents_dir / "llmtest.yaml").write_text(llm_agent(llm_url))
        async with run_gateway({"VOICEGW_AGENTS_DIR": str(agents_dir)}) as url:
            result = await TwilioEmulator(url).call(agent="llmtest", script=caller, hold_s=0.2, max_s=90)
    assert result.errors == []
    assert result.clears == 1
    stop_after = result.clear_times[0] - times["speech_onset"]
    assert 0.0 < stop_after < 2.0, stop_after  # held at speech onset: VAD decision + one round trip
    chunker = SentenceChunker()
    pieces = chunker.feed(LONG_REPLY) + chunker.flush()
    played = [m for m in result.marks_echoed if m.startswith("t2-") and m not in result.marks_cleared]
    assert 1 <= len(played) < len(pieces)  # cut mid-reply: later sentences were never played
    # the model's history holds exactly the sentences the caller heard (marks echoed before the clear)
    history = fake.requests[-1]["messages"]
    assert "bill" in history[-1]["content"].lower()
    interrupted = history[-2]
    assert interrupted == {"role": "assistant", "content": " ".join(pieces[: len(played)])}


async def test_greeting_is_pre_rendered_and_never_synthesized_by_a_call(agents_dir: Path) -> None:
    async with run_gateway({"VOICEGW_AGENTS_DIR": str(agents_dir)}) as url:
        async with httpx.AsyncClient(timeout=10) as client:
            async def ready() -> bool:
                return (await client.get(f"{url}/readyz")).status_code == 200

            await wait_until(ready, 120)  # readiness waits for the startup pre-render
        emu = TwilioEmulator(url)
        first: CallResult = await emu.call(agent="demo", hold_s=0.1)
        second = await emu.call(agent="demo", hold_s=0.1)
        metrics = (await get(f"{url}/metrics"))
    assert 'voicegw_phrase_cache_total{result="hit"} 2.0' in metrics
    assert 'voicegw_phrase_cache_total{result="miss"}' not in metrics
    assert 'voicegw_tts_sentences_total{provider="piper"}' not in metrics  # no call synthesized anything
    assert bytes(second.audio) == bytes(first.audio)  # the same greeting, not a different voice
    assert transcripts()  # fixtures present


LONG_GREETING = """
id: greeter
name: Greeter
greeting: >-
  Hello and welcome to the Acme help line. We can help with orders, refunds and appointments.
  Please tell me what you need.
logic:
  kind: scripted
  rules:
    - when: ["refund", "order"]
      say: "I can help with your refund."
tts: {provider: piper, fallback: []}
turn_taking: {reprompt_after_s: 30, hangup_after_s: 60}
"""


async def test_a_cough_over_the_greeting_pauses_it_and_it_resumes_exactly_where_it_stopped(agents_dir: Path) -> None:
    (agents_dir / "greeter.yaml").write_text(LONG_GREETING)

    async def coughs(c: CallControl) -> None:
        await wait_until(lambda: c.result.time_to_first_audio is not None)
        await asyncio.sleep(1.0)
        c.speak(conversation_mulaw("cough"))
        await greeting_heard(c)

    async def listens(c: CallControl) -> None:
        await greeting_heard(c)

    async with run_gateway({"VOICEGW_AGENTS_DIR": str(agents_dir)}) as url:
        quiet = await TwilioEmulator(url).call(agent="greeter", script=listens, hold_s=0.2, max_s=60)
        coughed = await TwilioEmulator(url).call(agent="greeter", script=coughs, hold_s=0.2, max_s=60)
    assert quiet.errors == [] and coughed.errors == []
    assert "greeting-1" in coughed.marks_echoed and not any(m.startswith("turn") for m in coughed.marks_echoed)
    # what the caller heard is the whole greeting, nothing lost or repeated (within a frame of the estimate)
    greeting = bytes(quiet.heard)
    assert abs(len(coughed.heard) - len(greeting)) <= 2 * 160
    if coughed.clears:  # the cough was taken for speech onset: the agent was held, then resumed
        assert coughed.clears == 1
    await assert_said(bytes(coughed.heard), "Hello and welcome to the Acme help line. We can help with orders, "
                      "refunds and appointments. Please tell me what you need.", max_wer=0.2)


async def test_a_caller_pausing_mid_sentence_is_answered_once_after_finishing(agents_dir: Path) -> None:
    (agents_dir / "greeter.yaml").write_text(LONG_GREETING)
    info: dict[str, float] = {}

    async def caller(c: CallControl) -> None:
        await greeting_heard(c)
        speech = conversation_mulaw("refund_pause")  # "I am calling about, um," 0.9 s "the refund for my order."
        c.speak(speech)
        info["speech_end"] = now(c) + len(speech) / 8000 - 1.2  # realistic fixtures end with 1.2 s of line noise
        await turn_heard(c, 2, sentences=sentence_count("I can help with your refund."))
        await asyncio.sleep(1.0)

    async with run_gateway({"VOICEGW_AGENTS_DIR": str(agents_dir)}) as url:
        result = await TwilioEmulator(url).call(agent="greeter", script=caller, hold_s=0.2, max_s=60)
        metrics = await get(f"{url}/metrics")
    assert result.errors == []
    starts = [m for m in result.marks_echoed if m.endswith("-start")]
    assert starts == ["turn2-start"]  # one answer, not the fallback into the pause and then another
    assert result.mark_times["turn2-start"] > info["speech_end"]
    for stage in ("endpoint_wait", "recognition", "logic_first", "first_audio", "first_heard"):
        assert f'voicegw_turn_stage_seconds_count{{agent="greeter",stage="{stage}"}} 1.0' in metrics
