"""``voicegw say``: a real subprocess, real Piper, real Cartesia SDK against the fake."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from tests.fake_cartesia import API_KEY, FakeCartesia, audio_for
from tests.helpers import AGENTS_DIR, ROOT

pytestmark = pytest.mark.slow


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("CARTESIA_", "VOICEGW_", "REDIS_"))}
    full.update(PYTHONPATH=str(ROOT), VOICEGW_AGENTS_DIR=str(AGENTS_DIR))
    full.update(env)
    return subprocess.run([sys.executable, "-m", "gateway.cli", "say", *args], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=120)


def seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        frames: int = w.getnframes()
        rate: int = w.getframerate()
    return frames / rate


def test_say_with_piper_agent(tmp_path: Path) -> None:
    out = tmp_path / "demo.wav"
    proc = run(["--agent", "demo", "Hello there. This is a preview.", "--out", str(out)])
    assert proc.returncode == 0, proc.stderr
    assert "providers piper, piper" in proc.stdout
    assert seconds(out) > 1.0
    # a voice preview places no call: nothing about Twilio signatures or stream tokens
    assert "TWILIO" not in proc.stderr and "stream token" not in proc.stderr, proc.stderr


def test_say_falls_back_to_cartesia(tmp_path: Path, cartesia_server: FakeCartesia, agents_dir: Path) -> None:
    # A generous first-audio budget: this checks the chain order, not hedging (a cold subprocess on a loaded
    # machine can take longer than the shipped 400 ms to open Cartesia's socket, and Piper would win the hedge).
    support = agents_dir / "support.yaml"
    support.write_text(support.read_text().replace("first_audio_budget_ms: 400", "first_audio_budget_ms: 5000"))
    out = tmp_path / "support.wav"
    proc = run(["--agent", "support", "Thanks for calling.", "--out", str(out)],
               CARTESIA_API_KEY=API_KEY, CARTESIA_BASE_URL=cartesia_server.base_url,
               VOICEGW_AGENTS_DIR=str(agents_dir))
    assert proc.returncode == 0, proc.stderr
    assert "providers cartesia" in proc.stdout  # no ChatTTS engine loaded in this process: skipped
    assert seconds(out) == pytest.approx(len(audio_for("Thanks for calling.")) / 8000, abs=0.01)


def test_say_unknown_agent(tmp_path: Path) -> None:
    proc = run(["--agent", "nope", "x", "--out", str(tmp_path / "x.wav")])
    assert proc.returncode == 2 and "unknown agent 'nope'" in proc.stderr


def test_say_reports_a_preset_the_offline_voice_cannot_honour(tmp_path: Path, agents_dir: Path) -> None:
    out = tmp_path / "support.wav"
    proc = run(["--agent", "support", "Thanks for calling.", "--out", str(out)], VOICEGW_AGENTS_DIR=str(agents_dir))
    assert proc.returncode == 0, proc.stderr
    assert "providers piper" in proc.stdout  # no ChatTTS weights, no Cartesia key here
    assert "note: piper has no female voice here: female_2 is spoken by joe (male)" in proc.stdout
    demo = run(["--agent", "demo", "Hello.", "--out", str(tmp_path / "demo.wav")])
    assert demo.returncode == 0 and "note:" not in demo.stdout  # piper is what demo asks for
