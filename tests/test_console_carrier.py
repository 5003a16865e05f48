"""The browser carrier over the wire: a Python client that behaves like the console page (no browser).

It drives the real gateway under uvicorn: the same call core, conversation and demo agent as a phone call.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from audio.codec import ulaw2lin
from gateway.console.voice import patch_tts
from tests.helpers import gateway_with_services, wait_until
from tests.speech_fixtures import mulaw

pytestmark = pytest.mark.slow
KEY = "carrier-k3y"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"operator:{KEY}".encode()).decode()}
SILENCE = b"\x00\x00" * 160


@dataclass
class Page:
    """The page's side of the wire: sends 20 ms frames in real time, 'plays' agent audio as it arrives."""

    ws: ClientConnection
    echo_marks: bool = True
    messages: list[dict[str, Any]] = field(default_factory=list)
    audio_bytes: int = 0
    mic: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    async def receive(self) -> None:
        async for message in self.ws:
            if isinstance(message, bytes):
                assert len(message) == 160  # 20 ms of 8 kHz mu-law, as the call core frames it
                self.audio_bytes += len(message)
                continue
            msg = json.loads(message)
            self.messages.append(msg)
            if msg["type"] == "mark" and self.echo_marks:
                await self.ws.send(json.dumps({"type": "mark", "name": msg["name"], "played_ms": 0}))

    async def talk(self) -> None:
        while True:
            frame = SILENCE if self.mic.empty() else self.mic.get_nowait()
            await self.ws.send(frame)
            await asyncio.sleep(0.02)

    def say(self, fixture: str) -> None:
        pcm = ulaw2lin(mulaw(fixture)).astype("<i2").tobytes()
        for i in range(0, len(pcm) - 319, 320):
            self.mic.put_nowait(pcm[i:i + 320])


@contextlib.asynccontextmanager
async def console_call(url: str, agent: str = "demo", echo_marks: bool = True) -> AsyncIterator[Page]:
    async with websockets.connect(url.replace("http", "ws", 1) + "/console/call", additional_headers=AUTH) as ws:
        await ws.send(json.dumps({"type": "start", "agent": agent}))
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready" and ready["agent"]["id"] == agent
        assert ready["audio"] == {"in": {"encoding": "pcm_s16le", "rate": 8000, "frame_ms": 20},
                                  "out": {"encoding": "mulaw", "rate": 8000, "frame_ms": 20}}
        page = Page(ws, echo_marks)
        tasks = [asyncio.create_task(page.receive()), asyncio.create_task(page.talk())]
        try:
            yield page
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                    await task


def patient(agents_dir: Path) -> Path:
    """The demo agent with a generous first-audio budget: on a loaded CI machine Piper may pause for
    seconds, which would count as a stall and turn sentences into the apology."""
    path = agents_dir / "demo.yaml"
    path.write_text(patch_tts(path.read_text(), {"provider": "piper", "fallback": [], "first_audio_budget_ms": 5000,
                                                 "piper": {"voice": "joe"}}))
    return agents_dir


async def test_the_demo_agent_answers_a_console_caller(agents_dir: Path) -> None:
    env = {"VOICEGW_AGENTS_DIR": str(patient(agents_dir)), "VOICEGW_API_KEY": KEY}
    async with gateway_with_services(env) as (url, services), console_call(url) as page:
        await wait_until(lambda: page.of("spoken"), within_s=120)
        greeting = page.of("sentence")[0]
        assert "thanks for calling" in greeting["text"] and page.of("spoken")[0]["provider"] == "piper"
        await wait_until(lambda: {"type": "mark", "name": greeting["mark"]} in page.of("mark"), within_s=120)
        page.say("hours")  # once the whole greeting went out (it plays as it arrives here)
        await wait_until(lambda: page.of("caller"), within_s=120)
        assert "open" in page.of("caller")[0]["text"].lower()
        await wait_until(lambda: any("nine to five" in s["text"] for s in page.of("sentence")), within_s=120)

        def answered() -> dict[str, Any] | None:  # the latest figures of the turn that answered the question
            return next((t for t in reversed(page.of("turn"))
                         if t["cause"] == "speech" and t["first_heard_ms"] and t["providers"]), None)

        await wait_until(answered, within_s=120)
        turn = answered()
        assert turn is not None and turn["providers"] == ["piper"]
        # the conversation's breakdown (ms after the caller stopped speaking), as the summary line has it
        assert turn["why"] and turn["endpoint_wait_ms"] > 0 and turn["recognition_ms"] > 0
        assert turn["logic_first_ms"] is not None and 0 < turn["first_audio_ms"] <= turn["first_heard_ms"]
        await page.ws.send(json.dumps({"type": "dtmf", "digit": "0"}))
        await wait_until(lambda: any("Transferring" in s["text"] for s in page.of("sentence")), within_s=120)
        assert page.of("dtmf") == [{"type": "dtmf", "digit": "0"}]
        assert page.audio_bytes > 8000 * 3  # seconds of agent audio
        await page.ws.send(json.dumps({"type": "hangup"}))
        await wait_until(lambda: page.of("end"), within_s=60)
        assert page.of("end")[-1]["outcome"] == "completed"
    await wait_until(lambda: services.active_calls == 0)


async def test_speaking_over_the_agent_clears_the_page(agents_dir: Path) -> None:
    env = {"VOICEGW_AGENTS_DIR": str(agents_dir), "VOICEGW_API_KEY": KEY}
    # marks never echoed: the greeting is still "playing" when the caller speaks
    async with gateway_with_services(env) as (url, _), console_call(url, echo_marks=False) as page:
        await wait_until(lambda: page.audio_bytes > 8000, within_s=120)
        page.say("interrupt")
        await wait_until(lambda: page.of("barge_in"), within_s=120)
        assert page.of("clear")
        assert page.of("barge_in")[0]["cause"] == "speech"


async def test_refusals(agents_dir: Path) -> None:
    env = {"VOICEGW_AGENTS_DIR": str(agents_dir), "VOICEGW_API_KEY": KEY}
    async with gateway_with_services(env) as (url, _):
        ws_url = url.replace("http", "ws", 1) + "/console/call"
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(ws_url):
                pass
        assert refused.value.response.status_code == 403
        async with websockets.connect(ws_url, additional_headers=AUTH) as ws:
            await ws.send(json.dumps({"type": "start", "agent": "nosuch"}))
            assert json.loads(await ws.recv()) == {"type": "error", "message": "no agent 'nosuch'"}
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404
        async with websockets.connect(ws_url, additional_headers=AUTH) as ws:
            await ws.send(b"\x00\x00")  # audio before start
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_a_page_that_keeps_sending_garbage_ends_its_call(agents_dir: Path) -> None:
    env = {"VOICEGW_AGENTS_DIR": str(agents_dir), "VOICEGW_API_KEY": KEY}
    async with gateway_with_services(env) as (url, services), console_call(url) as page:
        for _ in range(50):
            await page.ws.send('{"type": "dtmf", "digit": "x"}')
        await wait_until(lambda: page.of("end"), within_s=60)
        assert page.of("end")[-1]["outcome"] == "protocol_error"
        assert page.of("dtmf") == []
    assert services.metrics.registry.get_sample_value("voicegw_protocol_errors_total", {"kind": "bad_dtmf"}) == 50


async def test_console_calls_count_against_the_gateways_call_cap(agents_dir: Path) -> None:
    env = {"VOICEGW_AGENTS_DIR": str(agents_dir), "VOICEGW_API_KEY": KEY, "VOICEGW_MAX_CALLS": "1"}
    async with gateway_with_services(env) as (url, services), console_call(url):
        await wait_until(lambda: services.active_calls == 1)
        async with websockets.connect(url.replace("http", "ws", 1) + "/console/call", additional_headers=AUTH) as ws:
            await ws.send(json.dumps({"type": "start", "agent": "demo"}))
            refused = json.loads(await ws.recv())
            assert refused == {"type": "error", "message": "the gateway is full (VOICEGW_MAX_CALLS=1)"}
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
