"""Engine audio → Twilio mu-law 8 kHz, one stateful converter per utterance.

Rules of this file: pure and synchronous (CPU only; no ``async``). One
:class:`ToTwilio` per utterance: its soxr stream keeps filter state across
chunks (no seam clicks) and :meth:`ToTwilio.flush` must be called at the end
of the utterance to emit the resampler's tail.
"""

from __future__ import annotations

import numpy as np
import soxr

from gateway.audio import AudioChunk, AudioFormat, Encoding
from gateway.codec import float_to_int16, lin2ulaw


class ToTwilio:
    """Convert chunks of one format to 8 kHz mu-law bytes."""

    def __init__(self, source: AudioFormat, gain_db: float = 0.0) -> None:
        self.source = source
        self.gain = float(10.0 ** (gain_db / 20.0))
        self._passthrough = source.encoding is Encoding.MULAW and source.sample_rate == 8000
        if source.encoding is Encoding.MULAW and not self._passthrough:
            raise ValueError(f"cannot resample mu-law at {source.sample_rate} Hz")
        self._stream = (
            None if self._passthrough else soxr.ResampleStream(source.sample_rate, 8000, 1, dtype="float32")
        )

    def _to_float(self, chunk: AudioChunk) -> np.ndarray:
        if chunk.format != self.source:
            raise ValueError(f"chunk format {chunk.format} does not match converter format {self.source}")
        data = chunk.data
        assert isinstance(data, np.ndarray)
        if self.source.encoding is Encoding.PCM_S16:
            return data.astype(np.float32) / 32768.0
        return data

    def _encode(self, out: np.ndarray) -> bytes:
        if self.gain != 1.0:
            out = out * np.float32(self.gain)
        return lin2ulaw(float_to_int16(out.astype(np.float32, copy=False)))

    def feed(self, chunk: AudioChunk) -> bytes:
        if self._passthrough:
            if chunk.format != self.source:
                raise ValueError(f"chunk format {chunk.format} does not match converter format {self.source}")
            assert isinstance(chunk.data, bytes)
            return chunk.data
        assert self._stream is not None
        out = self._stream.resample_chunk(self._to_float(chunk), last=False)
        return self._encode(out) if len(out) else b""

    def flush(self) -> bytes:
        if self._stream is None:
            return b""
        out = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        return self._encode(out) if len(out) else b""
