"""``voicegw call --say``: a real subprocess places an emulated call against an in-process gateway, speaks a
question in the caller's Piper voice and prints what the agent answered (Whisper transcript of the heard audio)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.wer import normalize
from gateway.tools.call_demo import stt_available
from tests.helpers import ROOT

pytestmark = pytest.mark.slow


def run_call(agents_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "call", "--agent", "demo", *args],
        cwd=ROOT, env={"PATH": "/usr/bin:/bin", "VOICEGW_AGENTS_DIR": str(agents_dir), "HF_HUB_OFFLINE": "1",
                       "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120,
    )


def test_say_prints_caller_and_agent_turns(agents_dir: Path) -> None:
    assert stt_available()  # the dev environment has faster-whisper: the agent lines are transcripts
    proc = run_call(agents_dir, "--say", "What are your opening hours?")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    turns = [line for line in lines if line.startswith(("caller: ", "agent: "))]
    assert [t.split(":")[0] for t in turns] == ["agent", "caller", "agent"], proc.stdout
    assert turns[1] == "caller: What are your opening hours?"
    greeting, reply = set(normalize(turns[0])), set(normalize(turns[2]))
    assert "hours" in greeting, turns[0]  # the demo greeting: "Ask me about our opening hours, ..."
    assert reply & {"nine", "five", "monday"}, turns[2]  # the hours rule, not the fallback
    assert lines[-1].startswith("heard ") and "marks echoed" in lines[-1]  # the summary line, unchanged


def test_bad_dtmf_is_a_clear_error(agents_dir: Path) -> None:
    proc = run_call(agents_dir, "--dtmf", "1a")
    assert proc.returncode == 2
    assert "DTMF digits must be 0-9, * or #" in proc.stderr
