"""Walking skeleton, end to end: webhook → TwiML → real WebSocket → greeting audio heard."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import numpy as np

from audio.codec import ulaw2lin
from gateway.twilio.emulator import TwilioEmulator, parse_stream
from tests.helpers import ROOT, run_gateway


def speech_like(mulaw: bytes) -> tuple[float, float]:
    """(seconds, share of 20 ms frames above -40 dBFS)."""
    pcm = ulaw2lin(mulaw).astype(np.float64) / 32768
    frames = pcm[: len(pcm) // 160 * 160].reshape(-1, 160)
    rms = np.sqrt((frames**2).mean(axis=1))
    return len(pcm) / 8000, float((rms > 0.01).mean())


async def test_call_hears_greeting(agents_dir: Path) -> None:
    async with run_gateway({"VOICEGW_AGENTS_DIR": str(agents_dir)}) as url:
        emu = TwilioEmulator(url)
        result = await emu.call(agent="demo", hold_s=0.2)
    stream = parse_stream(result.twiml)
    assert stream is not None
    ws_url, params = stream
    assert ws_url.endswith("/twilio/media") and params["agent"] == "demo"
    assert result.errors == []
    seconds, voiced = speech_like(bytes(result.audio))
    # The demo greeting is ~20 words: several seconds of mostly voiced audio, not silence or a click.
    assert 3.0 < seconds < 15.0
    assert voiced > 0.5
    assert len(result.audio) % 160 == 0
    assert result.marks_echoed == ["greeting-1"]
    assert result.time_to_first_audio is not None


async def test_to_number_routes_to_agent_and_unknown_number_hangs_up(agents_dir: Path) -> None:
    async with run_gateway({"VOICEGW_AGENTS_DIR": str(agents_dir)}) as url:
        emu = TwilioEmulator(url)
        twiml, _ = await emu.fetch_twiml(to="+15005550006")
        assert parse_stream(twiml) is not None and 'value="demo"' in twiml
        twiml, _ = await emu.fetch_twiml(to="+19999999999")
        assert parse_stream(twiml) is None
        assert "<Hangup" in twiml and "not in service" in twiml


def test_cli_call_writes_wav(tmp_path: Path, agents_dir: Path) -> None:
    out = tmp_path / "heard.wav"
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "call", "--agent", "demo", "--out", str(out)],
        cwd=ROOT, env={"PATH": "/usr/bin:/bin", "VOICEGW_AGENTS_DIR": str(agents_dir), "HF_HUB_OFFLINE": "1",
                       "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "heard" in proc.stdout and "time to first audio" in proc.stdout
    with wave.open(str(out)) as w:
        assert w.getframerate() == 8000 and w.getnchannels() == 1
        assert w.getnframes() > 8000 * 3
