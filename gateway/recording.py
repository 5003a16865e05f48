"""Call recording: an aligned stereo WAV (caller left, agent right), written while the call runs.

Rules of this file: no asyncio, no clocks. Positions arrive as seconds on the
*stream clock* (Twilio's ``media.timestamp`` origin: the start of the stream);
the caller side is placed by its ``timestamp``, the agent side by the time the
frame starts playing at Twilio, which the call layer knows from its pacing
horizon. The only I/O is explicit writes to the one file this object owns.

Why not :mod:`wave`: the stdlib writer patches the header only as an
undocumented side effect of ``writeframes`` and buffers in ways we do not
control. Here the layout is fixed (44-byte PCM header, 16-bit stereo 8 kHz)
and the RIFF/data sizes are patched and flushed after every commit, so the
file on disk is a valid, playable WAV at any moment — after an abrupt end,
a crash or ``kill -9`` it holds everything committed so far.

Memory is bounded: audio is assembled in a fixed window of
``window_s + commit_s`` seconds (about 80 KB per call at the defaults).
Anything that arrives for a position already committed (more than
``window_s`` behind the newest audio) is dropped and counted in
``late_samples``; positions beyond ``max_seconds`` are ignored; a jump ahead
is written as silence in bounded chunks. Overlapping writes on one channel
overwrite (after a ``clear`` the newer audio is what the caller heard).
"""

from __future__ import annotations

import logging
import re
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from agents.spec import AgentSpec
from audio.codec import ulaw2lin

RATE = 8000
CHANNELS = 2
SAMPLE_BYTES = 2
HEADER_BYTES = 44
CALLER, AGENT = 0, 1
_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def wav_header(data_bytes: int) -> bytes:
    """The canonical 44-byte header of a 16-bit stereo 8 kHz PCM WAV holding ``data_bytes``."""
    block = CHANNELS * SAMPLE_BYTES
    return (
        b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, CHANNELS, RATE, RATE * block, block, 8 * SAMPLE_BYTES)
        + b"data" + struct.pack("<I", data_bytes)
    )


def recording_path(directory: Path, agent_id: str, call_sid: str) -> Path:
    """``<dir>/<agent>/<call_sid>.wav``; ids that are not plain tokens are refused (no path tricks)."""
    for what, value in (("agent id", agent_id), ("call sid", call_sid)):
        if not _SAFE.match(value):
            raise ValueError(f"{what} {value!r} is not usable in a file name")
    return directory / agent_id / f"{call_sid}.wav"


class StereoRecorder:
    def __init__(
        self,
        file: BinaryIO,
        *,
        window_s: float = 2.0,
        commit_s: float = 0.5,
        max_seconds: float = 4 * 3600.0,
        max_jump_s: float = 30.0,
    ) -> None:
        if window_s <= 0 or commit_s <= 0:
            raise ValueError("window_s and commit_s must be positive")
        self._file = file
        self._window = int(window_s * RATE)
        self._commit = int(commit_s * RATE)
        self._max = int(max_seconds * RATE)
        #: Audio placed further than this past the newest sample is dropped (``jumped_samples``): a forged or
        #: broken timestamp would otherwise make the recorder write that much silence at once, synchronously.
        self._max_jump = int(max_jump_s * RATE)
        self.jumped_samples = 0
        self._buf: npt.NDArray[np.int16] = np.zeros((self._window + self._commit, CHANNELS), np.int16)
        self.committed = 0  # samples (per channel) already on disk; buffer row 0 is this position
        self.end = 0  # one past the newest sample written on either channel
        self.late_samples = 0
        self.closed = False
        file.write(wav_header(0))
        file.flush()

    @classmethod
    def open(cls, path: Path, **kw: float) -> StereoRecorder:
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(path.open("wb"), **kw)

    # ---- input -----------------------------------------------------------
    def add_caller(self, at_s: float, mulaw: bytes) -> None:
        self._add(CALLER, at_s, mulaw)

    def add_agent(self, at_s: float, mulaw: bytes) -> None:
        self._add(AGENT, at_s, mulaw)

    def _add(self, channel: int, at_s: float, mulaw: bytes) -> None:
        if self.closed or not mulaw:
            return
        samples = ulaw2lin(mulaw)
        start = round(at_s * RATE)
        for i in range(0, len(samples), self._window):  # pieces never longer than the window
            self._place(channel, start + i, samples[i : i + self._window])

    def _place(self, channel: int, start: int, samples: npt.NDArray[np.int16]) -> None:
        if start > self.end + self._max_jump:
            self.jumped_samples += len(samples)
            return
        stop = min(start + len(samples), self._max)
        if start < self.committed:  # arrived too late for the part already on disk
            cut = min(self.committed - start, len(samples))
            self.late_samples += cut
            samples, start = samples[cut:], start + cut
        if start >= stop:
            return
        samples = samples[: stop - start]
        if stop > self.committed + len(self._buf):
            self._advance(stop - self._window)
        offset = start - self.committed
        self._buf[offset : offset + len(samples), channel] = samples
        self.end = max(self.end, stop)

    # ---- output ----------------------------------------------------------
    def _advance(self, target: int) -> None:
        """Commit until ``committed >= target`` (in whole commit chunks, silence for gaps)."""
        while self.committed < target:
            n = min(max(self._commit, target - self.committed), len(self._buf))
            self._write(self._buf[:n])
            self._buf[: len(self._buf) - n] = self._buf[n:]
            self._buf[len(self._buf) - n :] = 0
            self.committed += n
        self._patch()

    def _write(self, rows: npt.NDArray[np.int16]) -> None:
        self._file.write(rows.astype("<i2", copy=False).tobytes())

    def _patch(self) -> None:
        data = self.committed * CHANNELS * SAMPLE_BYTES
        pos = self._file.tell()
        self._file.seek(4)
        self._file.write(struct.pack("<I", 36 + data))
        self._file.seek(40)
        self._file.write(struct.pack("<I", data))
        self._file.seek(pos)
        self._file.flush()

    @property
    def seconds(self) -> float:
        return self.end / RATE

    def close(self) -> None:
        """Write everything still buffered, patch the header, close the file. Idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.end > self.committed:
                n = self.end - self.committed
                self._write(self._buf[:n])
                self.committed = self.end
            self._patch()
        finally:
            self._file.close()


def open_call_recorder(directory: Path | None, agent: AgentSpec, call_sid: str) -> StereoRecorder | None:
    """The recorder for one call when the agent records and a directory is set; a problem never stops the call."""
    if not agent.record or directory is None:
        return None
    try:
        path = recording_path(directory, agent.id, call_sid)
        return StereoRecorder.open(path, max_seconds=float(agent.limits.max_call_seconds) + 60.0)
    except (OSError, ValueError) as exc:
        logging.getLogger("voicegw.call").error("call %s: not recording: %s", call_sid, exc)
        return None
