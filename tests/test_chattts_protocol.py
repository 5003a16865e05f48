"""The ChatTTS server protocol's pure parts: the seed's request, answers classified, WAV parsed, PCM cut."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from tests.fake_chattts_server import float_wav_file, samples_for, wav_file
from tts.chattts_protocol import (
    SEED_FIELDS,
    STREAM_HEADER,
    AnswerError,
    PCMStream,
    classify,
    error_detail,
    parse_health,
    parse_wav,
    read_hints,
    request_body,
    request_headers,
)
from tts.settings import ChatTTSVoice


def test_request_body_is_exactly_the_seed_fields_in_order() -> None:
    voice = ChatTTSVoice(voice="male_2", speed=1.25, temperature=0.5, top_p=0.8, top_k=30, use_refine=True)
    body = request_body("Hello.", voice, "wav")
    assert tuple(body) == SEED_FIELDS
    assert body == {"text": "Hello.", "voice": "male_2", "speed": 1.25, "temperature": 0.5, "top_p": 0.8,
                    "top_k": 30, "response_format": "wav", "use_refine": True}
    assert request_body("x", None)["voice"] == "female_1"  # provider defaults without settings


def test_request_headers_and_hints_round_trip() -> None:
    headers = request_headers(stream=True, request_id="call-1-t2", priority=0, deadline_ms=399.6, seed=7,
                              api_key="k")
    assert headers[STREAM_HEADER] == "pcm_s16le" and headers["authorization"] == "Bearer k"
    hints = read_hints(headers)
    assert (hints.stream, hints.priority, hints.deadline_ms, hints.seed) == (True, 0, 400.0, 7)
    plain = read_hints({})
    assert (plain.stream, plain.priority, plain.deadline_ms, plain.seed) == (False, 1, None, None)
    odd = read_hints({"x-priority": "urgent", "x-deadline-ms": "-5", STREAM_HEADER: "opus"})
    assert (odd.stream, odd.priority, odd.deadline_ms) == (False, 1, None)  # malformed hints are ignored
    assert "x-audio-stream" not in request_headers(stream=False)


@pytest.mark.parametrize(("status", "headers", "head", "kind", "rate"), [
    (200, {"content-type": "audio/L16;rate=24000;channels=1", STREAM_HEADER: "pcm_s16le"}, b"", "stream", 24000),
    (200, {"content-type": "audio/l16; rate=16000"}, b"", "stream", 16000),
    (200, {"content-type": "audio/wav"}, b"", "wav", 24000),
    (200, {"content-type": "audio/x-wav"}, b"", "wav", 24000),
    (200, {"content-type": "audio/mpeg"}, b"", "mp3", 24000),
    (200, {"content-type": "application/octet-stream"}, b"RIFF\0\0\0\0WAVE", "wav", 24000),
])
def test_classify_accepts_audio(status: int, headers: dict[str, str], head: bytes, kind: str, rate: int) -> None:
    answer = classify(status, headers, head)
    assert answer.kind == kind and (kind != "stream" or answer.sample_rate == rate)


@pytest.mark.parametrize(("status", "headers", "message"), [
    (500, {"content-type": "audio/wav"}, "server error (500)"),
    (400, {"content-type": "application/json"}, "refused (400)"),
    (200, {"content-type": "text/html; charset=utf-8"}, "unexpected content type 'text/html'"),
    (200, {"content-type": "application/json"}, "unexpected content type 'application/json'"),
    (200, {}, "unexpected content type 'none'"),
    (200, {"content-type": "application/octet-stream"}, "unexpected content type"),
    (200, {"content-type": "audio/L16"}, "sample rate"),
    (200, {"content-type": "audio/L16;rate=24000;channels=2"}, "2 channels"),
    (200, {"content-type": "audio/wav", STREAM_HEADER: "pcm_s16le"}, "expected audio/L16"),
])
def test_classify_refuses_what_is_not_usable_audio(status: int, headers: dict[str, str], message: str) -> None:
    with pytest.raises(AnswerError, match=message.replace("(", r"\(").replace(")", r"\)")):
        classify(status, headers)


def test_error_detail_reads_seed_and_voicegw_errors() -> None:
    assert error_detail(b'{"detail": "CUDA out of memory"}') == "CUDA out of memory"
    assert error_detail(b'{"error": {"message": "voice: unknown"}}') == "voice: unknown"
    assert error_detail(b"<html>\nBad gateway") == "<html>"
    assert error_detail(b"") == ""


def test_parse_wav_16_bit_is_exact_and_float_is_close() -> None:
    pcm = samples_for("Hello.")
    decoded = parse_wav(wav_file(pcm))
    assert decoded.sample_rate == 24000 and decoded.samples.dtype == np.int16
    assert np.array_equal(decoded.samples, pcm)
    f = parse_wav(float_wav_file(pcm.astype(np.float32) / np.float32(32768)))
    assert f.samples.dtype == np.float32 and np.allclose(f.samples * 32768, pcm, atol=1)


def test_parse_wav_stereo_becomes_mono_and_extra_chunks_are_skipped() -> None:
    left = samples_for("a", 0.1)
    stereo = np.stack([left, left], axis=1).reshape(-1)
    data = wav_file(stereo)
    data = data.replace(b"WAVE", b"WAVE", 1)
    # a 2-channel header: rewrite channels/byte rate/align in the fmt chunk
    fmt_at = data.index(b"fmt ") + 8
    raw = bytearray(data)
    struct.pack_into("<HHIIHH", raw, fmt_at, 1, 2, 24000, 24000 * 4, 4, 16)
    listed = bytes(raw[:12]) + b"LIST" + (4).to_bytes(4, "little") + b"INFO" + bytes(raw[12:])
    decoded = parse_wav(listed)
    assert np.array_equal(decoded.samples, left)


@pytest.mark.parametrize(("mangle", "message"), [
    (lambda d: d[: len(d) // 2], "truncated WAV"),
    (lambda d: d[:30], "truncated WAV"),
    (lambda d: d[:12], "no fmt chunk"),
    (lambda d: b"<html>" + d, "not a WAV"),
    (lambda d: d[:-1], "truncated WAV"),
])
def test_parse_wav_refuses_truncated_and_foreign_files(mangle: object, message: str) -> None:
    data = wav_file(samples_for("Hello."))
    assert callable(mangle)
    with pytest.raises(AnswerError, match=message):
        parse_wav(mangle(data))


def test_parse_wav_with_unknown_sizes_reads_to_the_end() -> None:
    pcm = samples_for("x", 0.05)
    data = bytearray(wav_file(pcm))
    struct.pack_into("<I", data, data.index(b"data") + 4, 0xFFFFFFFF)
    assert np.array_equal(parse_wav(bytes(data)).samples, pcm)


def test_parse_wav_refuses_unsupported_encodings() -> None:
    data = bytearray(wav_file(samples_for("x", 0.05)))
    struct.pack_into("<H", data, data.index(b"fmt ") + 8, 6)  # A-law
    with pytest.raises(AnswerError, match="unsupported WAV encoding"):
        parse_wav(bytes(data))


@pytest.mark.parametrize("cut", [1, 3, 17, 509])
def test_pcm_stream_equals_one_shot_whatever_the_chunking(cut: int) -> None:
    pcm = samples_for("stream", 0.1)
    raw = pcm.astype("<i2").tobytes()
    stream = PCMStream()
    out = np.concatenate([stream.feed(raw[i:i + cut]) for i in range(0, len(raw), cut)])
    stream.finish()
    assert np.array_equal(out, pcm) and stream.bytes_received == len(raw)


def test_pcm_stream_ending_inside_a_sample_is_an_error() -> None:
    stream = PCMStream()
    stream.feed(b"\x01\x02\x03")
    with pytest.raises(AnswerError, match="inside a sample"):
        stream.finish()


@pytest.mark.parametrize(("status", "body", "error"), [
    (200, b'{"status": "healthy", "model_loaded": true}', None),
    (200, b'{"status": "ok", "model_loaded": true, "role": "speech"}', None),
    (200, b"ok", None),
    (200, b'{"status": "loading", "model_loaded": false}', "model not loaded"),
    (200, b'{"status": "degraded"}', "status 'degraded'"),
    (503, b'{"status": "unavailable", "error": "sha mismatch"}', "health 503: sha mismatch"),
    (404, b"", "health 404"),
])
def test_parse_health(status: int, body: bytes, error: str | None) -> None:
    assert parse_health(status, body) == error
