"""Cut a mu-law byte stream into exact 20 ms (160-byte) Twilio frames.

Rules of this file: pure, stateful only in the carried remainder. ``feed``
returns only whole frames and keeps the rest for the next call; ``flush`` (end
of utterance) pads the final partial frame with mu-law silence (0xFF) and is
the only way the remainder leaves; ``reset`` (barge-in) drops it.
"""

from __future__ import annotations

from audio.formats import FRAME_BYTES, MULAW_SILENCE


class Framer:
    def __init__(self, frame_bytes: int = FRAME_BYTES) -> None:
        if frame_bytes <= 0:
            raise ValueError(f"frame_bytes must be positive, got {frame_bytes}")
        self.frame_bytes = frame_bytes
        self._rest = b""  # bytes carried over to the next feed (always < frame_bytes)

    def feed(self, data: bytes) -> list[bytes]:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"mu-law audio must be bytes, got {type(data).__name__}")
        buf = self._rest + bytes(data)
        n = len(buf) // self.frame_bytes * self.frame_bytes
        self._rest = buf[n:]
        return [buf[i : i + self.frame_bytes] for i in range(0, n, self.frame_bytes)]

    def flush(self) -> list[bytes]:
        if not self._rest:
            return []
        frame = self._rest + bytes([MULAW_SILENCE]) * (self.frame_bytes - len(self._rest))
        self._rest = b""
        return [frame]

    def reset(self) -> None:
        self._rest = b""

    @property
    def pending(self) -> int:
        return len(self._rest)
