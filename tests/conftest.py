"""Shared fixtures: a private real redis-server, a writable copy of the shipped agents, the fake Cartesia
server, a loaded Piper engine. Plain helper functions live in ``helpers.py``."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from tests.helpers import AGENTS_DIR, RedisServer, free_port, spawn_redis

if TYPE_CHECKING:
    from tests.fake_cartesia import FakeCartesia
    from tts.piper import PiperEngine


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a free port (never the machine's shared one)."""
    port = free_port()
    server = RedisServer(port, spawn_redis(port))
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)


@pytest.fixture
def agents_dir() -> Iterator[Path]:
    """A writable copy of the shipped agent YAML files."""
    with tempfile.TemporaryDirectory() as tmp:
        dst = Path(tmp) / "agents"
        shutil.copytree(AGENTS_DIR, dst)
        yield dst


@pytest.fixture(scope="module")
def cartesia_server() -> Iterator[FakeCartesia]:
    """The loopback fake Cartesia API (HTTP and WebSocket), one per test module; ``reset()`` it per test."""
    from tests.fake_cartesia import FakeCartesia

    fake = FakeCartesia().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def piper() -> Iterator[PiperEngine]:
    """A loaded Piper engine, shared by a module's tests (and by every call they place)."""
    from tts.piper import PiperEngine

    engine = PiperEngine()
    asyncio.run(engine.start())
    assert engine.ready, engine.load_error
    yield engine
    asyncio.run(engine.aclose())
