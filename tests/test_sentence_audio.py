"""SentenceAudio (framing attempt by attempt) and the restart plan (when a restart may send `clear`)."""

from __future__ import annotations

import numpy as np
import pytest

from audio.formats import FRAME_BYTES, TWILIO_FORMAT, AudioChunk, AudioFormat, Encoding
from gateway.sentence_audio import SentenceAudio, plan_restart


def test_frames_are_exact_and_restart_forgets_the_failed_attempt() -> None:
    audio = SentenceAudio()
    frames = audio.feed(AudioChunk(b"\x01" * 500, TWILIO_FORMAT), "chattts")
    assert [len(f) for f in frames] == [FRAME_BYTES] * 3 and audio.provider == "chattts"
    assert audio.restart() == 3 and audio.provider == "" and audio.frames == [] and audio.restarts == 1
    # The replacement has another format: a fresh converter and framer (the 20 leftover bytes are gone).
    pcm = AudioChunk(np.zeros(2205, dtype=np.int16), AudioFormat(Encoding.PCM_S16, 22050))
    out = audio.feed(pcm, "piper") + audio.flush()
    assert all(len(f) == FRAME_BYTES for f in out) and audio.frames == out
    assert abs(len(out) * 0.02 - 0.1) <= 0.02 and audio.audio_s == pytest.approx(0.1)


def test_nothing_written_means_no_clear() -> None:
    plan = plan_restart(written_frames=0, buffered_s=0.1, earlier_unplayed=True)
    assert not plan.clear and plan.unplayed_s == 0


def test_earlier_sentence_still_playing_means_no_clear() -> None:
    plan = plan_restart(written_frames=5, buffered_s=0.12, earlier_unplayed=True)
    assert not plan.clear and plan.unplayed_s == pytest.approx(0.1)


def test_only_the_failed_attempt_buffered_is_cleared() -> None:
    plan = plan_restart(written_frames=30, buffered_s=0.1, earlier_unplayed=False)
    assert plan.clear and plan.unplayed_s == pytest.approx(0.1)


def test_attempt_already_played_means_no_clear() -> None:
    assert not plan_restart(written_frames=30, buffered_s=0.005, earlier_unplayed=False).clear
    with pytest.raises(ValueError):
        plan_restart(written_frames=-1, buffered_s=0, earlier_unplayed=False)
