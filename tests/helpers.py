"""Helpers shared by the tests (and a few benchmarks): waiting, the real gateway in-loop, a real redis-server.

Fixtures live in ``conftest.py``; plain functions live here so test modules import them from one place
(never from ``conftest``, which pytest imports under its own name).
"""

from __future__ import annotations

import asyncio
import inspect
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.call import CallSession
from gateway.serve import free_port, serve_in_loop
from gateway.services import Services
from gateway.settings import Settings
from gateway.startup import build_services

__all__ = [
    "AGENTS_DIR", "GREETING", "REPLY", "ROOT", "RedisServer", "free_port", "run_gateway", "scripted_agent_yaml",
    "spawn_redis", "wait_until",
]

ROOT = Path(__file__).resolve().parent.parent
AGENTS_DIR = ROOT / "config" / "agents"


async def wait_until(
    check: Callable[..., object | Awaitable[object]], within_s: float = 40.0, interval_s: float = 0.02
) -> None:
    """Poll ``check`` (sync or async) until it is truthy; AssertionError after ``within_s`` (generous by default).

    ``check`` may be a lambda binding a loop variable as a default argument (``lambda n=i: ...``).
    """
    deadline = time.monotonic() + within_s
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within_s:g} s")
        await asyncio.sleep(interval_s)


@asynccontextmanager
async def run_gateway(env: dict[str, str], **uvicorn_kw: Any) -> AsyncIterator[str]:
    """Run the real app under real uvicorn in this event loop; yields its base URL."""
    from gateway.app import create_app
    from gateway.settings import Settings

    settings = Settings.from_env(env)
    async with serve_in_loop(create_app(settings), settings, **uvicorn_kw) as url:
        yield url


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def start(self) -> None:
        self.proc = spawn_redis(self.port)


def spawn_redis(port: int) -> subprocess.Popen[bytes]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed (./dev.sh test installs it)")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("redis-server did not start")


# ---- a gateway with a handle on its services (sessions, metrics, edge), and signed-call settings ----
TOKEN = "test-auth-token"
PUBLIC = "https://gw.example.com"
ACCOUNT = "AC" + "1" * 32


@asynccontextmanager
async def gateway_with_services(env: dict[str, str]) -> AsyncIterator[tuple[str, Services]]:
    """The real app under real uvicorn, with a handle on its services (sessions, metrics, edge)."""
    settings = Settings.from_env(env)
    services = await build_services(settings)
    try:
        async with serve_in_loop(create_app(settings, services), settings) as url:
            yield url, services
    finally:
        await services.aclose()


#: What :func:`scripted_agent_yaml`'s agent greets with, and the three sentences it answers DTMF 1 with.
GREETING = "Hello there."
REPLY = ["First we check.", "Then we answer.", "Finally we close."]


def scripted_agent_yaml(agent_id: str, name: str, tts: str, turn_taking: str = "") -> str:
    """A scripted agent on +15005550006: greets with ``GREETING``, answers DTMF 1 with the ``REPLY`` sentences.

    ``tts`` is the inside of the agent's ``tts`` flow mapping; ``turn_taking`` adds entries to a turn-taking
    mapping that never reprompts or hangs up on its own within a test.
    """
    extra = f", {turn_taking}" if turn_taking else ""
    return f"""
id: {agent_id}
name: {name}
phone_numbers: ["+15005550006"]
greeting: "{GREETING}"
logic:
  kind: scripted
  rules:
    - dtmf: "1"
      say: "{' '.join(REPLY)}"
  fallback: "Sorry."
  goodbye: "Bye."
tts: {{{tts}}}
turn_taking: {{reprompt_after_s: 60, hangup_after_s: 120{extra}}}
"""


def env_for(agents_dir: Path, **extra: str) -> dict[str, str]:
    return {"VOICEGW_AGENTS_DIR": str(agents_dir), "TWILIO_AUTH_TOKEN": TOKEN, "PUBLIC_URL": PUBLIC, **extra}


async def session_of(services: Services, call_sid: str) -> CallSession:
    """The call's session once its agent side has started: its greeting is queued (``greeting-1`` in the ledger).

    The session is registered before the conversation's first turn queues the greeting: asserting on the ledger,
    or waiting for ``greeting-1`` to be heard, right after it appears would race that turn."""

    def started() -> bool:
        s = services.calls.get(call_sid)
        return s is not None and s.ledger.state("greeting-1") is not None

    await wait_until(started)
    return services.calls[call_sid]


def counter(services: Services, name: str, **labels: str) -> float:
    value = services.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


async def transcribe(audio: bytes) -> str:
    """What Whisper (the shared offline tiny.en) hears in 8 kHz mu-law, normalized for WER checks."""
    from agents.stt import STTConfig, shared_transcriber
    from audio.formats import TWILIO_FORMAT, AudioChunk
    from bench.wer import normalize

    result = await shared_transcriber(STTConfig()).transcribe(AudioChunk(bytes(audio), TWILIO_FORMAT))
    return " ".join(normalize(result.text))  # "9-5" → "nine five"
