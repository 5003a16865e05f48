"""Stereo call recorder: alignment, validity at any moment, bounded memory, abrupt ends."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pytest

from audio.codec import lin2ulaw, ulaw2lin
from gateway.recording import HEADER_BYTES, StereoRecorder, recording_path, wav_header
from tests.helpers import ROOT


def tone(seconds: float, freq: float, amp: float = 8000.0) -> bytes:
    t = np.arange(int(seconds * 8000)) / 8000
    return lin2ulaw((amp * np.sin(2 * np.pi * freq * t)).astype(np.int16))


def read(path: Path) -> npt.NDArray[np.int16]:
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    return data


def header_consistent(path: Path) -> int:
    """Checks RIFF/data sizes against the file length; returns the frames it declares."""
    raw = path.read_bytes()
    data_size = int.from_bytes(raw[40:44], "little")
    assert int.from_bytes(raw[4:8], "little") == 36 + data_size
    assert len(raw) >= HEADER_BYTES + data_size
    return data_size // 4


def test_header_matches_stdlib_writer() -> None:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x01\x00" * 2 * 100)
    assert buf.getvalue()[:HEADER_BYTES] == wav_header(400)


def test_caller_left_agent_right_aligned_by_stream_clock(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    rec = StereoRecorder.open(path)
    caller = tone(1.0, 300)
    for i in range(50):  # 20 ms frames with Twilio timestamps
        rec.add_caller(i * 0.02, caller[i * 160 : (i + 1) * 160])
    agent = tone(0.4, 1000)
    for i in range(20):  # agent frames that play from 0.5 s
        rec.add_agent(0.5 + i * 0.02, agent[i * 160 : (i + 1) * 160])
    rec.close()
    data = read(path)
    assert len(data) == 8000  # up to the newest sample (1.0 s)
    assert np.array_equal(data[:, 0], ulaw2lin(caller))
    assert not data[:4000, 1].any() and not data[7200:, 1].any()
    assert np.array_equal(data[4000:7200, 1], ulaw2lin(agent))
    assert rec.late_samples == 0


def test_file_is_valid_while_the_call_runs_and_memory_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    rec = StereoRecorder.open(path, window_s=1.0, commit_s=0.25)
    buf_bytes = rec._buf.nbytes
    frame = tone(0.02, 440)
    for i in range(30 * 50):  # 30 s of both sides
        rec.add_caller(i * 0.02, frame)
        rec.add_agent(i * 0.02 + 0.1, frame)
        if i == 10 * 50:
            # Read with an independent reader while the recorder is still open.
            frames = header_consistent(path)
            assert frames == rec.committed and 8000 * 8.5 <= frames <= 8000 * 10
            assert len(read(path)) == frames
    assert rec._buf.nbytes == buf_bytes  # the window never grows
    assert rec.end - rec.committed <= 8000 * 1.25
    rec.close()
    assert header_consistent(path) == round(30.1 * 8000)


def test_late_audio_is_dropped_and_counted_gap_is_silence(tmp_path: Path) -> None:
    path = tmp_path / "late.wav"
    rec = StereoRecorder.open(path, window_s=0.5, commit_s=0.1)
    rec.add_agent(0.0, tone(0.1, 500))
    rec.add_agent(10.0, tone(0.1, 500))  # a jump: 9.9 s of silence written in bounded chunks
    rec.add_caller(1.0, tone(0.1, 300))  # long committed: dropped
    assert rec.late_samples == 800
    rec.close()
    data = read(path)
    assert len(data) == 80800
    assert data[:800, 1].any() and not data[800:80000].any() and data[80000:, 1].any()
    assert not data[:, 0].any()


def test_a_timestamp_jump_beyond_the_bound_is_dropped_not_written_as_silence(tmp_path: Path) -> None:
    path = tmp_path / "jump.wav"
    rec = StereoRecorder.open(path, max_jump_s=30.0)
    rec.add_caller(0.0, tone(0.1, 300))
    rec.add_caller(3600.0, tone(0.1, 300))  # a forged timestamp: would be an hour (115 MB) of silence at once
    rec.add_agent(20.0, tone(0.1, 500))  # within the bound: the gap is kept as silence
    assert rec.jumped_samples == 800
    rec.close()
    assert path.stat().st_size < HEADER_BYTES + 21 * 8000 * 4
    data = read(path)
    assert len(data) == 160800 and data[160000:, 1].any() and not data[800:160000].any()


def test_chunk_longer_than_window_and_overwrite_and_cap(tmp_path: Path) -> None:
    path = tmp_path / "big.wav"
    rec = StereoRecorder.open(path, window_s=0.25, commit_s=0.05, max_seconds=3.0)
    long = tone(2.0, 700)
    rec.add_agent(0.0, long)  # 2 s in one call, window is 0.25 s
    rec.add_agent(1.9, tone(0.1, 200))  # overwrites the tail still in the window
    rec.add_caller(2.9, tone(1.0, 300))  # only 0.1 s fits under max_seconds
    rec.close()
    data = read(path)
    assert len(data) == 3 * 8000
    assert np.array_equal(data[:15200, 1], ulaw2lin(long)[:15200])
    assert np.array_equal(data[15200:16000, 1], ulaw2lin(tone(0.1, 200)))
    assert data[23200:, 0].any() and not data[:23200, 0].any()


def test_close_is_idempotent_and_ignores_later_audio(tmp_path: Path) -> None:
    path = tmp_path / "c.wav"
    rec = StereoRecorder.open(path)
    rec.add_caller(0.0, tone(0.2, 300))
    rec.close()
    rec.close()
    rec.add_caller(0.2, tone(0.2, 300))
    assert len(read(path)) == 1600


def test_recording_path_refuses_unsafe_ids(tmp_path: Path) -> None:
    assert recording_path(tmp_path, "demo", "CA123") == tmp_path / "demo" / "CA123.wav"
    for agent, sid in (("demo", "../x"), ("../etc", "CA1"), ("demo", ""), ("demo", "a/b")):
        with pytest.raises(ValueError, match="file name"):
            recording_path(tmp_path, agent, sid)


_WRITER = """
import sys, time
from pathlib import Path
from gateway.recording import StereoRecorder
rec = StereoRecorder.open(Path(sys.argv[1]), window_s=0.5, commit_s=0.1)
frame = bytes([0x10, 0x90] * 80)
i = 0
while True:
    rec.add_caller(i * 0.02, frame)
    rec.add_agent(i * 0.02, frame)
    i += 1
    if i == 200:
        print("ready", flush=True)
    time.sleep(0.001)
"""


def test_recording_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "killed.wav"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    frames = header_consistent(path)
    data = read(path)
    assert frames >= 8000 * 3 and len(data) == frames  # ≥ 4 s written, minus the 0.5 s window
    assert data[:, 0].any() and data[:, 1].any()


# ---- end to end: a real call through the gateway -----------------------------------------------------
def _recording_agents(agents_dir: Path) -> None:
    demo = agents_dir / "demo.yaml"
    demo.write_text(demo.read_text() + "\nrecord: true\n")


def _first_loud(x: npt.NDArray[np.int16]) -> int:
    return int(np.argmax(np.abs(x.astype(np.int32)) > 500))


async def test_call_recording_is_aligned_stereo(tmp_path: Path, agents_dir: Path) -> None:
    from gateway.twilio.emulator import TwilioEmulator
    from tests.helpers import run_gateway, wait_until

    _recording_agents(agents_dir)
    rec_dir = tmp_path / "rec"
    caller = b"\xff" * 8000 + tone(0.5, 300)  # silence for 1 s, then a 0.5 s tone from the caller
    env = {"VOICEGW_AGENTS_DIR": str(agents_dir), "VOICEGW_RECORDINGS_DIR": str(rec_dir)}
    async with run_gateway(env) as url:
        await wait_until(lambda: _ready(url), 120)  # fixed phrases pre-rendered: the greeting starts at once
        result = await TwilioEmulator(url).call(agent="demo", inbound=caller, hold_s=0.2, max_s=30)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{url}/metrics")).text
    assert result.marks_echoed == ["greeting-1"]
    underruns = re.search(r"^voicegw_underruns_total (\S+)$", metrics, re.M)
    assert underruns is not None
    (path,) = list((rec_dir / "demo").glob("CA*.wav"))
    data = read(path)
    # Caller (left): the tone sits exactly where its media timestamps put it.
    left_tone = _first_loud(data[:, 0])
    assert left_tone == _first_loud(ulaw2lin(caller))
    assert np.array_equal(data[8000:12000, 0], ulaw2lin(tone(0.5, 300)))
    # Agent (right): exactly the audio the caller heard, contiguous, starting shortly after the stream began.
    heard = ulaw2lin(bytes(result.audio))
    offset = _first_loud(data[:, 1]) - _first_loud(heard)
    assert 0 < offset < 8000 * 3
    if float(underruns.group(1)) == 0:  # a stalled sender (loaded machine) leaves real gaps in what was played
        assert np.array_equal(data[offset : offset + len(heard), 1], heard)
        assert len(data) >= offset + len(heard)
    else:
        assert np.count_nonzero(data[:, 1]) >= 0.95 * np.count_nonzero(heard)


async def _ready(url: str) -> bool:
    import httpx

    async with httpx.AsyncClient(timeout=10) as client:
        return (await client.get(f"{url}/readyz")).status_code == 200


async def test_recording_is_playable_after_an_abrupt_hangup(tmp_path: Path, agents_dir: Path) -> None:
    from gateway.twilio.emulator import CallControl, TwilioEmulator
    from tests.helpers import run_gateway, wait_until

    _recording_agents(agents_dir)
    rec_dir = tmp_path / "rec"

    async def vanish(control: CallControl) -> None:
        await asyncio.sleep(1.0)
        await control.ws.close()  # no `stop`: the caller's network just goes away mid-greeting

    env = {"VOICEGW_AGENTS_DIR": str(agents_dir), "VOICEGW_RECORDINGS_DIR": str(rec_dir)}
    async with run_gateway(env) as url:
        await wait_until(lambda: _ready(url), 120)  # fixed phrases pre-rendered: the greeting starts at once
        result = await TwilioEmulator(url).call(agent="demo", max_s=30, script=vanish)
        for _ in range(100):  # the gateway notices the disconnect and closes the file
            if list((rec_dir / "demo").glob("CA*.wav")) and header_consistent(
                    next((rec_dir / "demo").glob("CA*.wav"))) > 0:
                break
            await asyncio.sleep(0.05)
    assert result.marks_echoed == []
    (path,) = list((rec_dir / "demo").glob("CA*.wav"))
    data = read(path)
    assert header_consistent(path) == len(data)
    assert 0.7 * 8000 < len(data) < 3 * 8000 and data[:, 1].any()
