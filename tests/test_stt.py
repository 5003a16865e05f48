"""Whisper tiny.en (bundled, offline) on the committed 8 kHz mu-law fixtures. Slow: loads a real model."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from agents.stt import (
    STTConfig,
    STTError,
    WhisperTranscriber,
    collapse_repeats,
    shared_transcriber,
    to_16k_float,
)
from audio.codec import ulaw2lin
from audio.formats import TWILIO_FORMAT, AudioChunk, AudioFormat, Encoding
from bench.wer import wer
from gateway.settings import Settings, SettingsError
from tests.speech_fixtures import conversation_fixtures, conversation_mulaw, mulaw, transcripts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def transcriber() -> Iterator[WhisperTranscriber]:
    yield shared_transcriber(STTConfig(cpu_threads=2))


async def test_piper_and_espeak_fixtures_are_understood(transcriber: WhisperTranscriber) -> None:
    refs = transcripts()
    errors = words = 0
    for name in ("human", "account", "hours_espeak"):
        got = await transcriber.transcribe(AudioChunk(mulaw(name), TWILIO_FORMAT))
        e, n = wer(refs[name], got.text)
        errors, words = errors + e, words + n
        assert got.processing_s > 0 and got.audio_s > 2
        if name == "human":  # the offline-speech round-trip check: transcribed exactly
            assert e == 0, got.text
    assert errors / words <= 0.2


async def test_silence_gives_no_words(transcriber: WhisperTranscriber) -> None:
    silence = AudioChunk(np.zeros(16000, dtype=np.int16), AudioFormat(Encoding.PCM_S16, 8000))
    assert (await transcriber.transcribe(silence)).text == ""


def test_shared_per_process_and_resampling() -> None:
    assert shared_transcriber(STTConfig(cpu_threads=2)) is shared_transcriber(STTConfig(cpu_threads=2))
    x = to_16k_float(AudioChunk(np.zeros(800, dtype=np.float32), AudioFormat(Encoding.PCM_F32, 8000)))
    assert x.dtype == np.float32 and len(x) == 1600


def test_every_encoding_resamples_alike() -> None:
    """mu-law is decoded as audioop does and scaled like int16 PCM: the same audio in any encoding gives the same
    16 kHz samples."""
    mu = bytes(range(256)) * 4
    s16 = ulaw2lin(mu)
    f32 = s16.astype(np.float32) / np.float32(32768)
    got = [to_16k_float(AudioChunk(data, AudioFormat(enc, 8000)))
           for data, enc in ((mu, Encoding.MULAW), (s16, Encoding.PCM_S16), (f32, Encoding.PCM_F32))]
    assert got[0].dtype == np.float32 and len(got[0]) == 2 * len(mu)
    assert all(np.array_equal(got[0], other) for other in got[1:])
    assert np.array_equal(to_16k_float(AudioChunk(mu, AudioFormat(Encoding.MULAW, 16000))), f32)  # no resampling


def test_env_config() -> None:
    s = Settings.from_env({"VOICEGW_STT_MODEL": "/models/small.en", "VOICEGW_STT_DEVICE": "CUDA"})
    assert s.stt_model == "/models/small.en" and s.stt_device == "cuda"
    assert Settings.from_env({}).stt_model is None and Settings.from_env({}).stt_device == "cpu"
    with pytest.raises(SettingsError, match="VOICEGW_STT_DEVICE='tpu'"):
        Settings.from_env({"VOICEGW_STT_DEVICE": "tpu"})


async def test_missing_model_is_a_clear_error(tmp_path: object) -> None:
    t = WhisperTranscriber(STTConfig(model=f"{tmp_path}/nope"))
    try:
        with pytest.raises(STTError, match="cannot load Whisper model"):
            await t.transcribe(AudioChunk(mulaw("hours"), TWILIO_FORMAT))
        assert t.load_error is not None and "nope" in t.load_error
    finally:
        await t.aclose()


async def test_short_window_greedy_path_on_realistic_noisy_fixtures(transcriber: WhisperTranscriber) -> None:
    """Line noise + hum at 25–30 dB, mid-sentence pauses: the short window keeps the words and is fast."""
    assert transcriber.config.fast_window_s == 10
    errors = words = 0
    for name, meta in conversation_fixtures().items():
        got = await transcriber.transcribe(AudioChunk(conversation_mulaw(name), TWILIO_FORMAT))
        if name == "cough":
            assert got.text == "", got.text  # a cough and the line are no words
            continue
        e, n = wer(str(meta["text"]), got.text)
        errors, words = errors + e, words + n
    assert errors / words <= 0.2


async def test_full_window_path_still_used_for_long_speech() -> None:
    t = WhisperTranscriber(STTConfig(cpu_threads=2, fast_max_s=1.0))  # every fixture is "long" here
    try:
        got = await t.transcribe(AudioChunk(mulaw("human"), TWILIO_FORMAT))
        assert wer(transcripts()["human"], got.text)[0] == 0, got.text
    finally:
        await t.aclose()


def test_collapse_repeats() -> None:
    assert collapse_repeats("Where is your office? Where is you're office?") == "Where is your office?"
    assert collapse_repeats("No. No, I said the second option.") == "No. No, I said the second option."
    assert collapse_repeats("Yes. Yes.") == "Yes."
    assert collapse_repeats("") == ""


def test_cancel_loading_stops_before_the_warm_up_and_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """`voicegw serve` shutting down: the background load stops (no warm-up decode, no "loaded" line after exit)."""
    caplog.set_level("INFO")
    t = WhisperTranscriber(STTConfig(cpu_threads=1))  # not the shared one: its load starts here, in its thread
    t.cancel_loading()  # right away: the model takes far longer than this to construct
    t._loading.result(timeout=120)
    assert not t.ready and t.load_error == "loading cancelled: the process is shutting down"
    assert not [r for r in caplog.records if r.name in ("voicegw.stt", "faster_whisper")], caplog.records
