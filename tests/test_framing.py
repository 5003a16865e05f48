"""Framer: exact 160-byte frames, remainder carried, last frame padded with mu-law silence."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from audio.formats import FRAME_BYTES, AudioChunk, AudioFormat, Encoding
from audio.framing import Framer
from audio.resample import ToTwilio


def test_whole_frames_out_remainder_kept() -> None:
    f = Framer()
    assert f.feed(b"\x01" * 100) == []
    assert f.pending == 100
    frames = f.feed(b"\x02" * 300)
    assert frames == [b"\x01" * 100 + b"\x02" * 60, b"\x02" * 160]
    assert f.pending == 80
    assert f.flush() == [b"\x02" * 80 + b"\xff" * 80]
    assert f.pending == 0
    assert f.flush() == []


def test_reset_drops_the_remainder() -> None:
    f = Framer()
    f.feed(b"\x01" * 50)
    f.reset()
    assert f.pending == 0
    assert f.flush() == []
    assert f.feed(b"\x03" * 160) == [b"\x03" * 160]


@given(st.binary(max_size=2000), st.lists(st.integers(0, 700), max_size=20))
def test_any_split_gives_the_same_frames(data: bytes, cuts: list[int]) -> None:
    f = Framer()
    frames: list[bytes] = []
    pos = 0
    for size in cuts:
        frames += f.feed(data[pos : pos + size])
        pos += size
    frames += f.feed(data[pos:])
    frames += f.flush()
    assert all(len(fr) == FRAME_BYTES for fr in frames)
    padded = data + b"\xff" * (-len(data) % FRAME_BYTES)
    assert b"".join(frames) == padded


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Framer(0)
    with pytest.raises(TypeError, match="bytes"):
        Framer().feed("abc")  # type: ignore[arg-type]


def test_utterance_from_tts_to_frames_keeps_its_duration() -> None:
    fmt = AudioFormat(Encoding.PCM_F32, 24000)
    conv, framer = ToTwilio(fmt), Framer()
    x = np.random.default_rng(3).uniform(-0.3, 0.3, 24000 + 1234).astype(np.float32)
    frames: list[bytes] = []
    for i in range(0, len(x), 4801):
        frames += framer.feed(conv.feed(AudioChunk(x[i : i + 4801], fmt)))
    frames += framer.feed(conv.flush()) + framer.flush()
    # 1.0514 s of speech = 8411 mu-law bytes = 52 full frames + one padded with silence
    assert len(frames) == 53
    assert frames[-1].endswith(b"\xff" * (53 * 160 - 8411))
    assert not frames[-1].startswith(b"\xff" * 10)
