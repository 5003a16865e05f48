"""The per-sentence fallback in a live call: real uvicorn, the Twilio emulator, real Piper / Whisper.

The outside providers are test-only engines (tests/fake_engines.py) put into the services the app is
built with (``build_services`` then ``services.engines[...]`` replaced, then ``create_app(settings,
services)``: the seam docs/tts-fallback.md documents). Their audio spells out provider, sentence and chunk,
so what the emulated caller heard (``CallResult.heard``: received audio less what each ``clear`` dropped)
is compared byte for byte with the expected sentences.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gateway.services import Services
from gateway.twilio.emulator import CallControl, CallResult, TwilioEmulator
from tests.fake_engines import Fault, ScriptedEngine
from tests.helpers import (
    GREETING,
    PUBLIC,
    REPLY,
    TOKEN,
    counter,
    env_for,
    gateway_with_services,
    scripted_agent_yaml,
    session_of,
    transcribe,
    wait_until,
)

log = logging.getLogger("test")

APOLOGY = "Sorry, we have a technical problem today."


def agent_yaml(chain: str, budget_ms: int = 300) -> str:
    return scripted_agent_yaml("fb", "Fallback test", f"{chain}, first_audio_budget_ms: {budget_ms}",
                               turn_taking=f'apology: "{APOLOGY}"')


@asynccontextmanager
async def fallback_gateway(tmp_path: Path, chain: str, **engines: ScriptedEngine
                           ) -> AsyncIterator[tuple[TwilioEmulator, Services]]:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "fb.yaml").write_text(agent_yaml(chain))
    async with gateway_with_services(env_for(agents)) as (url, services):
        for name, engine in engines.items():
            real = services.engines.get(name)
            if real is not None:
                await real.aclose()
            services.engines[name] = engine
        yield TwilioEmulator(url, auth_token=TOKEN, public_url=PUBLIC), services


def match_heard(heard: bytes, parts: list[tuple[bytes, bytes | None]]) -> list[int]:
    """Check ``heard`` is exactly ``parts`` in order: each ``(full, fragment_of)`` is the full sentence, optionally
    preceded by a (possibly empty) prefix of ``fragment_of`` (a failed attempt that could not be recalled).
    Returns the fragment lengths in bytes."""
    pos, fragments = 0, []
    for full, fragment_of in parts:
        n = 0
        if fragment_of is not None:
            while pos + n < len(heard) and n < len(fragment_of) and heard[pos + n] == fragment_of[n]:
                n += 1
            while n > 0 and heard[pos + n:pos + n + len(full)] != full:  # the longest prefix the sentence follows
                n -= 1
        assert heard[pos + n:pos + n + len(full)] == full, f"sentence at byte {pos + n} is not {full[:24]!r}"
        fragments.append(n)
        pos += n + len(full)
    assert pos == len(heard), f"{len(heard) - pos} unexpected bytes after the last sentence"
    return fragments


async def press_one_and_hear_reply(services: Services, c: CallControl) -> None:
    s = await session_of(services, c.call_sid)
    assert await s.wait_heard("greeting-1", timeout_s=60)
    await c.dtmf("1")
    await wait_until(lambda: "t2-4" in c.result.marks_echoed, 60)
    await wait_until(c.playout.idle, 30)


async def test_primary_dies_mid_sentence_every_sentence_heard_once_in_order(tmp_path: Path) -> None:
    """(a) The primary dies mid-way through the reply's 1st sentence (frames already written: `clear`, at most
    a fragment) and 2nd sentence (still queued here: taken back, nothing of it heard)."""
    primary = ScriptedEngine("cartesia", faults={1: Fault(die_after=2), 2: Fault(die_after=2)})
    backup = ScriptedEngine("piper")
    async with fallback_gateway(tmp_path, "provider: cartesia, fallback: [piper]",
                                cartesia=primary, piper=backup) as (emu, services):
        result = await emu.call(agent="fb", script=lambda c: press_one_and_hear_reply(services, c), hold_s=0.2,
                                max_s=90)
    assert result.errors == [] and result.odd_frames == 0
    fragments = match_heard(bytes(result.heard), [
        (primary.audio(GREETING), None),
        (backup.audio(REPLY[0]), primary.audio(REPLY[0])),
        (backup.audio(REPLY[1]), primary.audio(REPLY[1])),
        (primary.audio(REPLY[2]), None),
    ])
    log.info("fragments of failed attempts heard: %s bytes", fragments)
    # 2nd sentence: its failed attempt was still queued behind the 1st: nothing of it reached the caller.
    assert fragments[2] == 0
    # 1st sentence: at most what one pacer burst writes (lead + one frame) ever left; the clear dropped the rest.
    assert fragments[1] <= 6 * 160 and result.clears == 1
    # Marks: every sentence's once, in order. The reply's start mark went out just before the failed attempt's
    # first frame: if the clear found it pending (echoed by the clear), it was sent again before the replacement;
    # if its echo was already on its way, it may be echoed twice. Either way the ledger has it heard once.
    assert list(dict.fromkeys(result.marks_echoed)) == ["greeting-1", "turn2-start", "t2-2", "t2-3", "t2-4"]
    assert result.marks_cleared in ([], ["turn2-start"])
    assert [r.text for r in primary.requests] == [GREETING, *REPLY]
    turn_ids = {r.meta["turn_id"] for r in primary.requests[1:]}
    assert len(turn_ids) == 1 and primary.requests[0].meta["turn_id"] not in turn_ids  # one context per turn


async def test_primary_stalls_past_the_budget_hedge_bounds_the_gap(tmp_path: Path) -> None:
    """(b) The primary produces nothing for 30 s on the reply's first sentence: the backup is hedged in after
    the budget (300 ms) and speaks it; the caller waits about the budget, never the stall."""
    primary = ScriptedEngine("cartesia", faults={1: Fault(first_audio_delay=30.0)})
    backup = ScriptedEngine("piper")
    dtmf_at: list[float] = []

    async def script(c: CallControl) -> None:
        s = await session_of(services, c.call_sid)
        assert await s.wait_heard("greeting-1", timeout_s=60)
        dtmf_at.append(c.emu.clock() - c.t0)
        await c.dtmf("1")
        await wait_until(lambda: "t2-4" in c.result.marks_echoed, 60)
        await wait_until(c.playout.idle, 30)

    async with fallback_gateway(tmp_path, "provider: cartesia, fallback: [piper]",
                                cartesia=primary, piper=backup) as (emu, services):
        result = await emu.call(agent="fb", script=script, hold_s=0.2, max_s=90)
        assert counter(services, "voicegw_tts_fallbacks_total", from_provider="cartesia", reason="slow") == 1
    match_heard(bytes(result.heard), [
        (primary.audio(GREETING), None), (backup.audio(REPLY[0]), None),
        (primary.audio(REPLY[1]), None), (primary.audio(REPLY[2]), None),
    ])
    greeting_frames = len(primary.audio(GREETING)) // 160
    gap = result.media_times[greeting_frames] - dtmf_at[0]
    log.info("dtmf → first reply audio with a stalled primary: %.0f ms (budget 300 ms)", gap * 1000)
    assert 0.3 <= gap < 3.0  # the budget, plus time on a loaded machine; never the 30 s stall
    assert REPLY[0] in primary.cancelled and result.clears == 0


async def test_all_providers_down_but_piper_the_apology_is_heard(tmp_path: Path) -> None:
    """(c) The agent's only provider is down: the call plays `turn_taking.apology` through the real Piper."""
    down = ScriptedEngine("cartesia", default=Fault(raise_before_audio="server error (503)"))
    async with fallback_gateway(tmp_path, "provider: cartesia, fallback: []", cartesia=down) as (emu, services):
        state: dict[str, object] = {}

        async def script(c: CallControl) -> None:
            s = await session_of(services, c.call_sid)
            assert await s.wait_heard("greeting-1", timeout_s=60)
            await wait_until(c.playout.idle, 30)
            state["heard_text"], state["outcome"] = s.ledger.heard_text(), s.outcome

        result = await emu.call(agent="fb", script=script, hold_s=0.2, max_s=90)
    assert GREETING in down.calls  # asked by the call (and by the startup pre-render, which failed too)
    assert state == {"heard_text": APOLOGY, "outcome": "completed"}  # the call goes on
    words = await transcribe(bytes(result.heard))
    assert "sorry" in words and "problem" in words, words


async def test_everything_down_the_call_ends_cleanly_as_tts_failed(tmp_path: Path) -> None:
    """(d) Not even the apology can be spoken: the call is hung up (outcome `tts_failed`), nothing leaks."""
    fault = Fault(raise_before_audio="down")
    primary, piper = ScriptedEngine("cartesia", default=fault), ScriptedEngine("piper", default=fault)
    async with fallback_gateway(tmp_path, "provider: cartesia, fallback: []", cartesia=primary,
                                piper=piper) as (emu, services):
        result: CallResult = await emu.call(agent="fb", hold_s=0.2, max_s=60, until_marks=99)
        edge = services.twilio_edge()
        await wait_until(lambda: edge.calls_finished == 1)
        assert counter(services, "voicegw_calls_total", agent="fb", outcome="tts_failed") == 1
        assert services.call_tasks.live == 0 and services.calls == {} and services.active_calls == 0
    assert result.heard == b"" and not result.caller_hung_up  # ended by the gateway, not by max_s
    assert primary.calls == [GREETING, APOLOGY] and piper.calls == [APOLOGY]  # apology: Piper first


@pytest.fixture(autouse=True)
def _quiet_whisper() -> None:
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
