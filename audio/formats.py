"""Audio value types: every buffer says what it is.

Rules of this file: pure data, no I/O, no clocks. Internal PCM is mono numpy
(int16 or float32); mu-law travels as ``bytes``. A chunk always carries its
:class:`AudioFormat`, so no stage has to guess a rate or an encoding.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


class Encoding(enum.Enum):
    """Sample encodings that cross module boundaries."""

    PCM_F32 = "pcm_f32le"  # float32 in [-1, 1] (ChatTTS)
    PCM_S16 = "pcm_s16le"  # int16 (Piper, the VAD/STT side)
    MULAW = "mulaw"  # G.711 mu-law bytes (Twilio, Cartesia pcm_mulaw)


@dataclass(frozen=True, slots=True)
class AudioFormat:
    encoding: Encoding
    sample_rate: int
    channels: int = 1

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if self.channels != 1:
            raise ValueError("only mono audio is supported")

    @property
    def bytes_per_sample(self) -> int:
        return {Encoding.PCM_F32: 4, Encoding.PCM_S16: 2, Encoding.MULAW: 1}[self.encoding]


#: What Twilio sends and expects: 8 kHz mono mu-law.
TWILIO_FORMAT = AudioFormat(Encoding.MULAW, 8000)
#: 20 ms of Twilio audio.
FRAME_BYTES = 160
FRAME_SECONDS = 0.020
MULAW_SILENCE = 0xFF

Samples = npt.NDArray[np.float32] | npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True, eq=False)
class AudioChunk:
    """A piece of mono audio together with its format.

    ``data`` is ``bytes`` for mu-law and a 1-D numpy array for PCM (float32
    for ``PCM_F32``, int16 for ``PCM_S16``).
    """

    data: bytes | Samples
    format: AudioFormat

    def __post_init__(self) -> None:
        enc = self.format.encoding
        if enc is Encoding.MULAW:
            if not isinstance(self.data, bytes):
                raise TypeError("mu-law audio must be bytes")
            return
        if not isinstance(self.data, np.ndarray) or self.data.ndim != 1:
            raise TypeError(f"{enc.value} audio must be a 1-D numpy array")
        want = np.float32 if enc is Encoding.PCM_F32 else np.int16
        if self.data.dtype != want:
            raise TypeError(f"{enc.value} audio must be {np.dtype(want).name}, got {self.data.dtype}")

    @property
    def num_samples(self) -> int:
        return len(self.data)

    @property
    def duration(self) -> float:
        return self.num_samples / self.format.sample_rate
