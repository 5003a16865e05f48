"""Telephony and speech apart, as real processes on loopback: calls spoken by a speech pod over HTTP.

* a speech pod (``voicegw serve``, ``VOICEGW_ROLE=speech``, the tiny random ChatTTS checkpoint through the real
  ``Chat.load``) and a telephony pod (``VOICEGW_ROLE=telephony``, ``CHATTTS_API_URL``): a call is spoken by
  ChatTTS over the remote engine, and the telephony process never maps torch;
* the speech process killed (SIGKILL) mid-sentence: the backup speaks the whole sentence at once, no sentence
  lost or repeated (heard audio compared byte for byte), the gap within the hedge budget;
* a stand-in for a plain ChatTTS server (whole WAV files): calls are spoken by it, and each kind of bad answer
  ends in a logged fallback, never in a silent call.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.phrase_cache import PhraseCache
from gateway.services import Services
from gateway.twilio.emulator import CallControl, TwilioEmulator
from tests.chattts_fixture import Checkpoint, build_checkpoint
from tests.fake_chattts_server import FakeChatTTSServer
from tests.fake_engines import ScriptedEngine
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
    wait_until,
)
from tests.split_procs import speech_pod, telephony_pod
from tts.chattts_remote import RemoteChatTTSEngine

pytestmark = pytest.mark.slow

#: A first-audio budget ChatTTS meets on a loaded 2-core machine (no hedge unless something is wrong).
BUDGET_MS = 2000


def agent_yaml(budget_ms: int = BUDGET_MS) -> str:
    return scripted_agent_yaml("split", "Split test", "provider: chattts, fallback: [piper], "
                               f"first_audio_budget_ms: {budget_ms}, chattts: {{voice: male_1, seed: 7}}")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Checkpoint:
    return build_checkpoint(tmp_path_factory.mktemp("chattts-split"))


@pytest.fixture
def agents(tmp_path: Path) -> Path:
    folder = tmp_path / "agents"
    folder.mkdir()
    (folder / "split.yaml").write_text(agent_yaml())
    return folder


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def test_a_call_is_spoken_by_the_speech_pod_and_telephony_never_loads_torch(
        tmp_path: Path, ckpt: Checkpoint, agents: Path) -> None:
    with speech_pod(ckpt, tmp_path) as speech, telephony_pod(agents, speech.url) as phone:
        async with httpx.AsyncClient() as client:
            assert (await client.post(f"{speech.url}/twilio/voice")).status_code == 404  # no Twilio routes
            health = (await client.get(f"{speech.url}/health")).json()
            assert health["status"] == "ok" and health["model_loaded"] is True and health["role"] == "speech"
            ready = (await client.get(f"{phone.url}/readyz")).json()
            assert ready["engines"]["chattts"] is True, ready
            result = await TwilioEmulator(phone.url).call(agent="split", hold_s=0.2, max_s=60)
            assert result.errors == [] and result.seconds > 0.1  # random weights: the length varies
            phone_metrics = (await client.get(f"{phone.url}/metrics")).text
            speech_metrics = (await client.get(f"{speech.url}/metrics")).text
        # The greeting was pre-rendered at startup through the remote engine (the fixed-phrase cache), so the
        # call played ChatTTS audio made on the speech pod; nothing fell back.
        assert metric(phone_metrics, "voicegw_tts_sentences_total", provider="piper") == 0
        assert metric(phone_metrics, "voicegw_tts_fallbacks_total") == 0
        assert metric(speech_metrics, "voicegw_chattts_batch_size_count") >= 1  # synthesized on the speech pod
        assert "libtorch" not in phone.maps() and "libtorch" in speech.maps()


def test_a_telephony_process_never_imports_torch() -> None:
    """Everything a telephony pod imports to serve calls (the app, startup, the remote engine, the CLI)."""
    import subprocess

    from tests.split_procs import ROOT, base_env

    code = ("import sys, gateway.app, gateway.cli, gateway.startup, gateway.speech_api, tts.chattts_remote, "
            "tts.fallback, agents.stt, agents.vad\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ChatTTS', 'transformers'))\n"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=base_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@asynccontextmanager
async def telephony_in_loop(agents: Path, url: str, **engines: ScriptedEngine
                            ) -> AsyncIterator[tuple[TwilioEmulator, Services]]:
    env = env_for(agents, VOICEGW_ROLE="telephony", CHATTTS_API_URL=url)
    async with gateway_with_services(env) as (gw, services):
        for name, engine in engines.items():
            await services.engines[name].aclose()
            services.engines[name] = engine
        # Start the calls with a cold phrase cache: the fixed phrases pre-rendered at startup (through the
        # remote engine) would otherwise be played from memory, and these tests are about live synthesis.
        if services.prerendering is not None:
            await services.prerendering
        if services.phrases is not None:
            services.phrases.cache = services.phrase_cache = PhraseCache()
        yield TwilioEmulator(gw, auth_token=TOKEN, public_url=PUBLIC), services


async def test_speech_pod_killed_mid_sentence_backup_speaks_it_whole_within_the_budget(
        tmp_path: Path, ckpt: Checkpoint, agents: Path) -> None:
    backup = ScriptedEngine("piper")
    # 600 tokens: the greeting would stream for 13 s; the pod dies right after its first audio.
    with speech_pod(ckpt, tmp_path, fixed_tokens=600) as speech:
        async with telephony_in_loop(agents, speech.url, piper=backup) as (emu, services):
            remote = services.engines["chattts"]
            assert isinstance(remote, RemoteChatTTSEngine)
            # the first health probe may meet a pod still starting (ReadError); the watcher re-probes
            await wait_until(lambda: remote.ready, 60)
            received, prerendered = remote.stats.bytes_received, len(backup.calls)  # the startup pre-render's

            async def script(c: CallControl) -> None:
                await wait_until(lambda: remote.stats.bytes_received > received, 120)  # the greeting is streaming
                speech.kill()  # SIGKILL mid-sentence
                await wait_until(lambda: not remote.ready, 30)  # the broken stream triggered a health probe
                s = await session_of(services, c.call_sid)
                assert await s.wait_heard("greeting-1", timeout_s=60)
                await c.dtmf("1")
                await wait_until(lambda: "t2-4" in c.result.marks_echoed, 60)
                await wait_until(c.playout.idle, 30)

            result = await emu.call(agent="split", script=script, hold_s=0.2, max_s=120)
            gap_sum = counter(services, "voicegw_tts_fallback_gap_seconds_sum", provider="piper")
            gap_n = counter(services, "voicegw_tts_fallback_gap_seconds_count", provider="piper")
            restarts = counter(services, "voicegw_tts_fallbacks_total", from_provider="chattts", reason="error")
    assert result.errors == [] and result.odd_frames == 0
    heard = bytes(result.heard)
    tail = b"".join(backup.audio(t) for t in [GREETING, *REPLY])
    # Every sentence once, whole, in order, from the backup; before it only the start of the failed ChatTTS
    # attempt that had played by the time of the restart.
    assert heard.endswith(tail), "the backup's sentences are not heard whole and in order"
    fragment = heard[: len(heard) - len(tail)]
    # The restart came within the budget: less than that much of the failed attempt played (all of what was
    # written when it had already played out, else up to the `clear`).
    assert result.clears <= 1 and len(fragment) <= BUDGET_MS * 8
    assert all(backup.audio(t)[:64] not in fragment for t in [GREETING, *REPLY])
    assert list(dict.fromkeys(result.marks_echoed)) == ["greeting-1", "turn2-start", "t2-2", "t2-3", "t2-4"]
    # the greeting restarted once; later sentences skip the dead pod
    assert backup.calls[prerendered:] == [GREETING, *REPLY]
    assert restarts == 1 and gap_n >= 1 and gap_sum / gap_n < BUDGET_MS / 1000


@pytest.fixture(scope="module")
def plain() -> Iterator[FakeChatTTSServer]:
    fake = FakeChatTTSServer().start()
    yield fake
    fake.stop()


@pytest.mark.parametrize(("fault", "reason"), [
    ({}, None),
    ({"status": 500}, "server error (500)"),
    ({"content_type": "text/html"}, "unexpected content type"),
    ({"truncate": True}, "truncated WAV"),
    ({"drip_s": 0.2}, "no audio in"),
])
async def test_calls_through_a_plain_chattts_server_and_its_bad_answers(
        plain: FakeChatTTSServer, agents: Path, caplog: pytest.LogCaptureFixture, fault: dict[str, object],
        reason: str | None) -> None:
    plain.reset()
    plain.behaviour.__dict__.update(fault)
    backup = ScriptedEngine("piper")
    async with telephony_in_loop(agents, plain.url, piper=backup) as (emu, services):
        with caplog.at_level(logging.INFO, "voicegw.tts"):
            result = await emu.call(agent="split", hold_s=0.3, max_s=60)
        by_chattts = counter(services, "voicegw_tts_sentences_total", provider="chattts")
        by_piper = counter(services, "voicegw_tts_sentences_total", provider="piper")
    assert result.errors == [] and result.seconds > 0.3  # never a silent call
    assert plain.recorded.bodies and plain.recorded.bodies[0]["text"] == GREETING
    if reason is None:
        assert (by_chattts, by_piper) == (1, 0)
        return
    assert (by_chattts, by_piper) == (0, 1) and bytes(result.heard) == backup.audio(GREETING)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("tts chattts:") and reason in m for m in warnings), warnings


async def test_the_speech_servers_health_feeds_readiness(plain: FakeChatTTSServer, agents: Path) -> None:
    """A telephony pod stays ready without its speech server (calls fall back) and says why under `degraded`."""
    plain.reset()
    plain.behaviour.model_loaded = False
    async with telephony_in_loop(agents, plain.url) as (emu, services), httpx.AsyncClient(base_url=emu.base_url) as c:
        body = (await c.get("/readyz")).json()
        assert body["ready"] is True and body["engines"]["chattts"] is False, body
        assert any("chattts" in d and "model not loaded" in d for d in body["degraded"]), body["degraded"]
        plain.behaviour.model_loaded = True

        async def healthy() -> bool:
            return bool((await c.get("/readyz")).json()["engines"]["chattts"])

        await wait_until(healthy, 60, 0.2)  # the next probes (every second while failing) bring it back
        assert not any("chattts" in d for d in (await c.get("/readyz")).json()["degraded"])
