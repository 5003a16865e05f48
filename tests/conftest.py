"""Shared fixtures: a real redis-server, a real uvicorn gateway on a free port."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent
AGENTS_DIR = ROOT / "config" / "agents"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        self.proc = _spawn_redis(self.port)


def _spawn_redis(port: int) -> subprocess.Popen[bytes]:
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


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a free port (never the machine's shared one)."""
    port = free_port()
    server = RedisServer(port, _spawn_redis(port))
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


@asynccontextmanager
async def run_gateway(env: dict[str, str], **uvicorn_kw: object) -> AsyncIterator[str]:
    """Run the real app under real uvicorn in this event loop; yields its base URL."""
    from gateway.app import create_app
    from gateway.settings import Settings

    settings = Settings.from_env(env)
    port = free_port()
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                            ws_max_size=settings.max_ws_message_bytes, **uvicorn_kw)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 60
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("gateway exited during startup")
        if time.monotonic() > deadline:
            raise RuntimeError("gateway did not start")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
