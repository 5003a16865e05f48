"""Speaker: per-sentence fallback with hedging, restart, breakers and stickiness.

Faults are injected into test-only providers (tests/fake_engines.py); the
acceptance scenarios at the end use the real Piper engine and the real Cartesia
SDK against the loopback fake Cartesia server.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from audio.formats import Encoding
from gateway.ops.metrics import Metrics
from tests.fake_cartesia import API_KEY, FakeCartesia, audio_for
from tests.fake_engines import Fault, ScriptedEngine
from tests.helpers import wait_until
from tts.base import TTSEngine, TTSError
from tts.breaker import BreakerPolicy, BreakerRegistry
from tts.cartesia import CartesiaEngine
from tts.fallback import SentenceReport, Speaker, SpeechAudio, SpeechRestart
from tts.piper import PiperEngine
from tts.registry import TTSConfig
from tts.settings import CartesiaVoice, ChatTTSVoice, PiperVoice

SLACK = 2.0  # generous: a loaded 2-core machine


def config(budget_ms: int = 300, sticky: bool = False) -> TTSConfig:
    return TTSConfig(provider="chattts", fallback=["cartesia", "piper"], first_audio_budget_ms=budget_ms,
                     sticky_fallback=sticky)


def engines(**kw: ScriptedEngine) -> dict[str, TTSEngine]:
    out: dict[str, TTSEngine] = {n: ScriptedEngine(n) for n in ("chattts", "cartesia", "piper")}
    out.update(kw)
    return out


async def hear(speaker: Speaker, text: str) -> tuple[str, bytes, list[SpeechRestart]]:
    """What a caller hears for one sentence: restarts discard the sentence's audio so far."""
    heard = bytearray()
    provider = ""
    restarts: list[SpeechRestart] = []
    async for part in speaker.speak(text, request_id=f"s-{text[:8]}"):
        if isinstance(part, SpeechRestart):
            heard.clear()
            restarts.append(part)
            continue
        assert isinstance(part, SpeechAudio)
        data = part.chunk.data
        heard += data if isinstance(data, bytes) else data.tobytes()
        provider = part.provider
    return provider, bytes(heard), restarts


def eng(es: dict[str, TTSEngine], name: str) -> ScriptedEngine:
    e = es[name]
    assert isinstance(e, ScriptedEngine)
    return e


def last(speaker: Speaker) -> SentenceReport:
    return speaker.reports[-1]


async def test_primary_speaks_when_healthy() -> None:
    es = engines()
    metrics = Metrics()
    speaker = Speaker(es, config(), metrics)
    provider, audio, restarts = await hear(speaker, "Hello there.")
    assert provider == "chattts" and audio == eng(es, "chattts").audio("Hello there.") and not restarts
    assert eng(es, "cartesia").calls == [] and eng(es, "piper").calls == []
    assert last(speaker).fallbacks == () and last(speaker).gap_s == 0.0
    assert metrics.tts_sentences.labels("chattts")._value.get() == 1
    req = eng(es, "chattts").requests[0]
    assert req.deadline is not None and req.settings == config().chattts  # budget passed as the deadline


async def test_error_before_audio_falls_back_without_restart() -> None:
    es = engines(chattts=ScriptedEngine("chattts", default=Fault(raise_before_audio="CUDA out of memory")))
    metrics = Metrics()
    speaker = Speaker(es, config(), metrics)
    provider, audio, restarts = await hear(speaker, "Your balance is ten dollars.")
    assert provider == "cartesia" and audio == eng(es, "cartesia").audio("Your balance is ten dollars.")
    assert restarts == []
    assert last(speaker).fallbacks == ("chattts: CUDA out of memory",)
    assert metrics.fallbacks.labels("chattts", "error")._value.get() == 1


async def test_engine_bug_is_a_fallback_not_a_crash() -> None:
    es = engines(chattts=ScriptedEngine("chattts", default=Fault(crash=True)))
    provider, _, _ = await hear(Speaker(es, config()), "Hi.")
    assert provider == "cartesia"


async def test_stall_past_budget_hedges_and_cancels_the_loser() -> None:
    es = engines(chattts=ScriptedEngine("chattts", default=Fault(first_audio_delay=30.0)))
    metrics = Metrics()
    speaker = Speaker(es, config(budget_ms=200), metrics)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    provider, audio, restarts = await hear(speaker, "One moment please.")
    elapsed = loop.time() - t0
    assert provider == "cartesia" and audio == eng(es, "cartesia").audio("One moment please.") and not restarts
    assert elapsed < 0.2 + SLACK  # never waited for the stalled provider
    assert eng(es, "chattts").cancelled == ["One moment please."]
    report = last(speaker)
    assert 0.2 <= report.first_audio_s < 0.2 + SLACK
    assert report.gap_s == pytest.approx(report.first_audio_s)
    assert any("hedging" in r for r in report.fallbacks) and any("slow" in r for r in report.fallbacks)
    assert metrics.fallbacks.labels("chattts", "slow")._value.get() == 1
    assert eng(es, "piper").calls == []  # cartesia answered within its own budget


async def test_slow_primary_that_still_wins_keeps_the_sentence() -> None:
    # chattts misses the budget but beats the (slower) hedge: it speaks, the hedge is cancelled.
    es = engines(
        chattts=ScriptedEngine("chattts", default=Fault(first_audio_delay=0.35)),
        cartesia=ScriptedEngine("cartesia", default=Fault(first_audio_delay=5.0)),
        piper=ScriptedEngine("piper", default=Fault(first_audio_delay=5.0)),
    )
    speaker = Speaker(es, config(budget_ms=150))
    provider, audio, _ = await hear(speaker, "Slow but first.")
    assert provider == "chattts" and audio == eng(es, "chattts").audio("Slow but first.")
    assert eng(es, "cartesia").cancelled == ["Slow but first."]
    assert eng(es, "piper").cancelled == ["Slow but first."]  # the second hedge too


async def test_death_mid_sentence_restarts_whole_sentence_on_next_provider() -> None:
    es = engines(chattts=ScriptedEngine("chattts", default=Fault(die_after=2)))
    metrics = Metrics()
    speaker = Speaker(es, config(), metrics)
    parts = [p async for p in speaker.speak("The quick brown fox.")]
    kinds = [type(p).__name__ + ":" + (p.provider) for p in parts]
    assert kinds == ["SpeechAudio:chattts"] * 2 + ["SpeechRestart:chattts"] + ["SpeechAudio:cartesia"] * 4
    restart = parts[2]
    assert isinstance(restart, SpeechRestart) and restart.reason == "died mid-sentence"
    after = b"".join(p.chunk.data for p in parts[3:] if isinstance(p, SpeechAudio))  # type: ignore[misc]
    assert after == eng(es, "cartesia").audio("The quick brown fox.")  # from its start, nothing spliced
    assert last(speaker).restarts == 1 and last(speaker).provider == "cartesia"
    assert metrics.tts_fallback_gap.labels("cartesia")._sum.get() < SLACK


async def test_stall_mid_sentence_is_detected_and_restarted() -> None:
    es = engines(chattts=ScriptedEngine("chattts", default=Fault(stall_after=1)))
    speaker = Speaker(es, config(budget_ms=150))
    provider, audio, restarts = await hear(speaker, "Hang on.")
    assert provider == "cartesia" and audio == eng(es, "cartesia").audio("Hang on.")
    assert len(restarts) == 1 and "stalled" in restarts[0].reason
    assert eng(es, "chattts").cancelled == ["Hang on."]
    # Silence bounded: from when the 100 ms delivered ran out to the replacement's first audio.
    assert last(speaker).gap_s < 0.15 + SLACK


async def test_many_sentences_random_faults_order_no_loss_no_duplicate() -> None:
    rng = random.Random(7)
    kinds = [Fault(), Fault(raise_before_audio="500"), Fault(die_after=1), Fault(die_after=3),
             Fault(first_audio_delay=10.0), Fault(stall_after=2)]
    n = 24
    chattts = ScriptedEngine("chattts", faults={i: rng.choice(kinds) for i in range(n)})
    cartesia = ScriptedEngine("cartesia", faults={i: rng.choice(kinds[:4]) for i in range(n)})
    es = engines(chattts=chattts, cartesia=cartesia)
    speaker = Speaker(es, config(budget_ms=120), breakers=BreakerRegistry(BreakerPolicy(failure_threshold=100)))
    heard: list[tuple[str, bytes]] = []
    for i in range(n):
        text = f"Sentence number {i}."
        provider, audio, _ = await hear(speaker, text)
        heard.append((provider, audio))
    for i, (provider, audio) in enumerate(heard):
        text = f"Sentence number {i}."
        assert audio == eng(es, provider).audio(text), f"sentence {i} from {provider} is not whole"
    assert len(speaker.reports) == n
    assert {p for p, _ in heard} >= {"chattts", "cartesia"}
    for r in speaker.reports:
        assert r.gap_s < 0.12 + SLACK


async def test_all_down_raises_with_every_reason_and_piper_apologizes() -> None:
    from tts.piper import PiperEngine

    piper = PiperEngine()
    await piper.start()
    es = engines(
        chattts=ScriptedEngine("chattts", default=Fault(raise_before_audio="model not loaded")),
        cartesia=ScriptedEngine("cartesia", default=Fault(raise_before_audio="401 unauthorized")),
        piper=ScriptedEngine("piper", default=Fault(raise_before_audio="disk on fire")),
    )
    speaker = Speaker(es, config())
    with pytest.raises(TTSError) as err:
        await hear(speaker, "Nobody can say this.")
    assert err.value.provider == "all"
    for reason in ("model not loaded", "401 unauthorized", "disk on fire"):
        assert reason in err.value.reason
    # The call then apologises with the real Piper voice...
    es["piper"] = piper
    parts = [p async for p in speaker.apologize("Sorry, I'm having trouble speaking right now.")]
    assert parts and all(isinstance(p, SpeechAudio) and p.provider == "piper" for p in parts)
    await piper.aclose()
    # ...and if even that fails, the error is clean (the call session hangs up).
    es["piper"] = ScriptedEngine("piper", default=Fault(raise_before_audio="gone"))
    with pytest.raises(TTSError):
        [p async for p in speaker.apologize("Sorry.")]


async def test_apology_starts_with_the_configured_last_resort() -> None:
    es = engines()
    for last_resort, first in (("cartesia", "cartesia"), ("piper", "piper"), (None, "chattts")):
        cfg = TTSConfig.model_validate({**config().model_dump(), "last_resort": last_resort})
        parts = [p async for p in Speaker(es, cfg).apologize("Sorry.")]
        assert {p.provider for p in parts if isinstance(p, SpeechAudio)} == {first}


async def test_each_engine_gets_its_own_settings_typed() -> None:
    es = engines(chattts=ScriptedEngine("chattts", default=Fault(raise_before_audio="down")),
                 cartesia=ScriptedEngine("cartesia", default=Fault(raise_before_audio="down")))
    cfg = TTSConfig.model_validate({**config().model_dump(), "piper": {"voice": "joe", "speed": 1.5}})
    await hear(Speaker(es, cfg), "Typed.")
    got = {name: eng(es, name).requests[0].settings for name in ("chattts", "cartesia", "piper")}
    assert got == {name: cfg.section(name) for name in got}
    assert got["piper"] == PiperVoice(voice="joe", speed=1.5)
    assert isinstance(got["chattts"], ChatTTSVoice) and isinstance(got["cartesia"], CartesiaVoice)


async def test_no_ready_provider() -> None:
    speaker = Speaker({"piper": ScriptedEngine("piper", is_ready=False)}, config())
    with pytest.raises(TTSError, match="no TTS provider"):
        await hear(speaker, "x.")


async def test_missing_and_unready_engines_are_skipped() -> None:
    es: dict[str, TTSEngine] = {"piper": ScriptedEngine("piper"), "cartesia": ScriptedEngine("cartesia",
                                                                                            is_ready=False)}
    speaker = Speaker(es, config())
    assert speaker.order() == ["piper"]
    provider, _, _ = await hear(speaker, "Only piper.")
    assert provider == "piper" and last(speaker).fallbacks == ()


async def test_empty_text_says_nothing() -> None:
    es = engines()
    assert [p async for p in Speaker(es, config()).speak("   ")] == []
    assert eng(es, "chattts").calls == []


async def test_breaker_skips_failing_provider_then_probes_it_back() -> None:
    chattts = ScriptedEngine("chattts", faults={i: Fault(raise_before_audio="boom") for i in range(3)})
    es = engines(chattts=chattts)
    breakers = BreakerRegistry(BreakerPolicy(failure_threshold=3, cooldown_s=0.5, max_cooldown_s=1.0))
    metrics = Metrics()
    speaker = Speaker(es, config(), metrics, breakers)
    for i in range(3):
        assert (await hear(speaker, f"s{i}."))[0] == "cartesia"
    assert len(chattts.calls) == 3
    # Open: chattts is not even asked, and the reason says so.
    assert (await hear(speaker, "s3."))[0] == "cartesia"
    assert len(chattts.calls) == 3
    assert "chattts: circuit open" in last(speaker).fallbacks
    assert metrics.fallbacks.labels("chattts", "circuit_open")._value.get() == 1
    # Another call shares the registry: it skips chattts too.
    other = Speaker(es, config(), metrics, breakers)
    assert (await hear(other, "other call."))[0] == "cartesia" and len(chattts.calls) == 3
    await asyncio.sleep(0.6)
    # Cool-down over: one sentence probes chattts, which has recovered.
    assert (await hear(speaker, "s4."))[0] == "chattts"
    assert breakers.states(0.0)["chattts"] == "closed"


async def test_all_breakers_open_still_tries_the_chain() -> None:
    es = engines()
    breakers = BreakerRegistry(BreakerPolicy(failure_threshold=1, cooldown_s=60, max_cooldown_s=60))
    for name in ("chattts", "cartesia", "piper"):
        breakers.get(name).record_failure(0.0)
    provider, _, _ = await hear(Speaker(es, config(), breakers=breakers), "Still speaking.")
    assert provider == "chattts"


async def test_sticky_fallback_stays_on_the_fallback_voice() -> None:
    chattts = ScriptedEngine("chattts", faults={0: Fault(raise_before_audio="oom")})
    es = engines(chattts=chattts)
    sticky = Speaker(es, config(sticky=True))
    assert [(await hear(sticky, f"s{i}."))[0] for i in range(3)] == ["cartesia"] * 3
    assert len(chattts.calls) == 1  # healthy again, but the call keeps one voice
    # Another call (new Speaker) starts on the primary again.
    assert (await hear(Speaker(es, config(sticky=True)), "new call."))[0] == "chattts"
    # Without stickiness the primary is back for the next sentence.
    chattts2 = ScriptedEngine("chattts", faults={0: Fault(raise_before_audio="oom")})
    plain = Speaker(engines(chattts=chattts2), config())
    assert [(await hear(plain, f"s{i}."))[0] for i in range(3)] == ["cartesia", "chattts", "chattts"]


async def test_cancelling_speak_cancels_every_provider() -> None:
    es = engines(chattts=ScriptedEngine("chattts", chunks=50, chunk_delay=0.05),
                 cartesia=ScriptedEngine("cartesia", default=Fault(first_audio_delay=30.0)))
    speaker = Speaker(es, config(budget_ms=100))
    gen = speaker.speak("A long answer that the caller interrupts.")
    got = 0
    async for _ in gen:
        got += 1
        if got == 5:
            break
    await gen.aclose()  # type: ignore[attr-defined]
    assert eng(es, "chattts").cancelled == ["A long answer that the caller interrupts."]
    assert eng(es, "chattts").completed == []


async def test_barge_in_task_cancellation_cancels_hedges() -> None:
    es = engines(chattts=ScriptedEngine("chattts", default=Fault(first_audio_delay=30.0)),
                 cartesia=ScriptedEngine("cartesia", default=Fault(first_audio_delay=30.0)),
                 piper=ScriptedEngine("piper", default=Fault(first_audio_delay=30.0)))
    speaker = Speaker(es, config(budget_ms=100))

    async def consume() -> None:
        async for _ in speaker.speak("Never heard."):
            pass

    task = asyncio.create_task(consume())
    # chattts, then cartesia and piper (hedges) are all waiting: waited for, not assumed after a fixed sleep
    await wait_until(lambda: all(len(eng(es, n).calls) == 1 for n in ("chattts", "cartesia", "piper")))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for name in ("chattts", "cartesia", "piper"):
        assert eng(es, name).cancelled == ["Never heard."]


@pytest.mark.parametrize("steps", range(8))
async def test_a_cancel_is_never_lost_to_audio_arriving_at_the_same_moment(steps: int) -> None:
    """Cancel the consumer after ``steps`` loop iterations, so that one of them meets the first chunk arriving.

    3.11's ``asyncio.wait_for`` returned the arriving chunk and dropped the cancel: the sentence went on (a
    barge-in not honoured) until the stalled engine was given up."""
    es = engines(chattts=ScriptedEngine("chattts", chunks=2, chunk_delay=0.01, default=Fault(stall_after=1)))
    speaker = Speaker(es, config())

    async def consume() -> None:
        async for _ in speaker.speak("Cut short."):
            pass

    task = asyncio.create_task(consume())
    for _ in range(steps):
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=10 * SLACK)  # far more than a loop turn, far less than 60 s
    assert task in done and task.cancelled()
    assert eng(es, "cartesia").calls == [] and eng(es, "chattts").completed == []


# ---- acceptance: real Piper, real Cartesia SDK against the loopback fake -------------------------------


@pytest.fixture
async def real(cartesia_server: FakeCartesia, piper: PiperEngine) -> AsyncIterator[dict[str, TTSEngine]]:
    cartesia_server.reset()
    cartesia = CartesiaEngine(API_KEY, base_url=cartesia_server.base_url, timeout_s=3.0)
    yield {"chattts": ScriptedEngine("chattts"), "cartesia": cartesia, "piper": piper}
    await cartesia.aclose()


async def test_acceptance_chattts_dies_cartesia_replays_whole_sentence(real: dict[str, TTSEngine]) -> None:
    real["chattts"] = ScriptedEngine("chattts", default=Fault(die_after=2))
    speaker = Speaker(real, config(budget_ms=2000), Metrics())
    texts = ["Good morning.", "Your order has shipped.", "Anything else?"]
    for text in texts:
        provider, audio, restarts = await hear(speaker, text)
        assert provider == "cartesia" and len(restarts) == 1
        assert audio == audio_for(text)  # the whole sentence, once, from its start
    gaps = [r.gap_s for r in speaker.reports]
    assert all(g < 0.4 + SLACK for g in gaps)


async def test_acceptance_cartesia_disconnects_mid_context_piper_takes_over(
    real: dict[str, TTSEngine], cartesia_server: FakeCartesia
) -> None:
    real["chattts"] = ScriptedEngine("chattts", default=Fault(raise_before_audio="not loaded"))
    cartesia_server.behaviour.disconnect_after_chunks = 1
    speaker = Speaker(real, config(budget_ms=2000))
    parts = [p async for p in speaker.speak("We are sorry for the wait.", turn_id="t1")]
    restarts = [p for p in parts if isinstance(p, SpeechRestart)]
    assert len(restarts) == 1 and restarts[0].provider == "cartesia"
    assert "connection lost mid-sentence" in restarts[0].reason
    after = parts[parts.index(restarts[0]) + 1:]
    assert after and all(isinstance(p, SpeechAudio) and p.provider == "piper" for p in after)
    assert {p.chunk.format.encoding for p in after if isinstance(p, SpeechAudio)} == {Encoding.PCM_S16}
    assert last(speaker).provider == "piper"


@pytest.mark.parametrize("status", [401, 429, 500])
async def test_acceptance_cartesia_http_errors_fall_to_piper(
    real: dict[str, TTSEngine], cartesia_server: FakeCartesia, status: int
) -> None:
    real["chattts"] = ScriptedEngine("chattts", default=Fault(raise_before_audio="not loaded"))
    cartesia_server.behaviour.http_status = status
    cfg = config().model_copy(update={"cartesia": CartesiaVoice(transport="http")})
    speaker = Speaker(real, cfg)
    provider, audio, restarts = await hear(speaker, "Please try again later.")
    assert provider == "piper" and audio and not restarts
    assert any(f"({status})" in r for r in last(speaker).fallbacks)


async def test_acceptance_cartesia_timeout_is_hedged_by_piper(
    real: dict[str, TTSEngine], cartesia_server: FakeCartesia
) -> None:
    real["chattts"] = ScriptedEngine("chattts", default=Fault(first_audio_delay=30.0))
    cartesia_server.behaviour.first_chunk_delay = 10.0
    speaker = Speaker(real, config(budget_ms=200))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    provider, audio, _ = await hear(speaker, "Thanks for your patience.")
    assert provider == "piper" and audio
    assert loop.time() - t0 < 3.0 + SLACK  # hedged twice, never waited for the stalled providers
    for _ in range(100):
        if cartesia_server.recorded.cancels:
            break
        await asyncio.sleep(0.02)
    assert len(cartesia_server.recorded.cancels) == 1  # the losing Cartesia context was cancelled
