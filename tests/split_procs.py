"""Real gateway processes for the split deployment tests and bench/remote_tts.py: speech and telephony pods.

``voicegw serve`` (``python -m gateway serve``) in a role, or ``bench.speech_proc`` (a speech pod whose
sentences have a fixed length), each on a free loopback port, waited for on ``/readyz``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from gateway.serve import free_port
from tests.chattts_fixture import Checkpoint

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    url: str

    def maps(self) -> str:
        """The process's memory map: which shared libraries it loaded."""
        return Path(f"/proc/{self.proc.pid}/maps").read_text()

    def kill(self) -> None:
        """SIGKILL, without waiting (callers run in an event loop; ``spawn`` reaps the process at its end)."""
        if self.proc.poll() is None:
            self.proc.kill()


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICEGW_", "CHATTTS_", "TWILIO_", "CARTESIA_"))}
    env.update({"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                "VOICEGW_LOG_LEVEL": "WARNING"})
    env.update(extra)
    return env


@contextmanager
def spawn(cmd: list[str], env: dict[str, str], port: int, ready_within_s: float = 240.0) -> Iterator[Proc]:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    p = Proc(proc, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + ready_within_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{' '.join(cmd[:4])} exited with {proc.returncode} during startup")
            try:
                if httpx.get(f"{p.url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(cmd[:4])} not ready within {ready_within_s:g} s")
            time.sleep(0.2)
        yield p
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)


def sha_file(ckpt: Checkpoint, folder: Path) -> Path:
    path = folder / "chattts-sha.json"
    path.write_text(json.dumps(ckpt.sha256))
    return path


@contextmanager
def speech_pod(ckpt: Checkpoint, folder: Path, fixed_tokens: int | None = None) -> Iterator[Proc]:
    """A speech pod on the tiny checkpoint: ``voicegw serve`` with VOICEGW_ROLE=speech, or bench.speech_proc
    when every sentence must have ``fixed_tokens`` audio tokens."""
    port = free_port()
    sha = sha_file(ckpt, folder)
    if fixed_tokens is None:
        cmd = [sys.executable, "-m", "gateway", "serve"]
        env = base_env(VOICEGW_ROLE="speech", VOICEGW_PORT=str(port), CHATTTS_MODEL_DIR=str(ckpt.path),
                       CHATTTS_SHA256_FILE=str(sha), CHATTTS_DEVICE="cpu")
    else:
        cmd = [sys.executable, "-m", "bench.speech_proc", "--port", str(port), "--model-dir", str(ckpt.path),
               "--sha-file", str(sha), "--fixed-tokens", str(fixed_tokens)]
        env = base_env()
    with spawn(cmd, env, port) as p:
        yield p


@contextmanager
def telephony_pod(agents_dir: Path, chattts_url: str, **extra: str) -> Iterator[Proc]:
    port = free_port()
    env = base_env(VOICEGW_ROLE="telephony", VOICEGW_PORT=str(port), VOICEGW_AGENTS_DIR=str(agents_dir),
                   CHATTTS_API_URL=chattts_url, **extra)
    with spawn([sys.executable, "-m", "gateway", "serve"], env, port) as p:
        yield p
