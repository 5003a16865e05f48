"""The browser carrier's wire protocol: golden messages both ways, every malformed input refused."""

from __future__ import annotations

import json

import pytest

from gateway.console.protocol import (
    Audio,
    AudioFormat,
    ConsoleProtocol,
    ConsoleProtocolError,
    Digit,
    Hangup,
    Played,
    Start,
    State,
)

PCM16 = AudioFormat("pcm_s16le", 16000)


def started() -> ConsoleProtocol:
    p = ConsoleProtocol(PCM16)
    p.receive_text('{"type": "start", "agent": "demo", "sample_rate": 48000}')
    assert p.events_received() == [Start("demo", 48000)]
    return p


def test_a_call_in_golden_messages() -> None:
    p = started()
    assert p.state is State.STREAMING
    p.receive_bytes(b"\x01\x00" * 320)
    p.receive_text('{"type": "mark", "name": "greeting-1", "played_ms": 6380}')
    p.receive_text('{"type": "mark", "name": "sentence-2", "cleared": true}')
    p.receive_text('{"type": "dtmf", "digit": "#"}')
    p.receive_text('{"type": "hangup"}')
    assert p.events_received() == [Audio(b"\x01\x00" * 320), Played("greeting-1", 6380),
                                   Played("sentence-2", None, True), Digit("#"), Hangup()]
    assert p.state.value == "stopped"
    p.receive_text('{"type": "dtmf", "digit": "1"}')  # after hangup: ignored, not an error
    assert p.events_received() == []


def test_sending_text_and_audio_in_order() -> None:
    p = started()
    p.send_event("ready", call_id="c1", audio={"in": PCM16.as_json()})
    p.send_audio(b"\xff" * 160)
    p.send_mark("greeting-1")
    p.send_clear()
    out = p.data_to_send()
    assert out[1] == b"\xff" * 160 and p.data_to_send() == []
    assert [json.loads(m) for m in out if isinstance(m, str)] == [
        {"type": "ready", "call_id": "c1", "audio": {"in": {"encoding": "pcm_s16le", "rate": 16000, "frame_ms": 20}}},
        {"type": "mark", "name": "greeting-1"}, {"type": "clear"},
    ]
    p.receive_eof()
    p.send_audio(b"\xff")
    p.send_mark("late")
    p.send_event("end", outcome="caller_hangup")  # the end of the call is still told
    assert p.data_to_send() == ['{"type":"end","outcome":"caller_hangup"}']


@pytest.mark.parametrize(("message", "kind"), [
    ("not json", "bad_json"), ("[1]", "bad_message"), ('{"type": 3}', "bad_message"),
    ('{"type": "mark", "name": "x"}', "out_of_order"), ('{"type": "start"}', "bad_start"),
    ('{"type": "start", "agent": "../etc"}', "bad_start"),
])
def test_before_start_every_error_is_fatal(message: str, kind: str) -> None:
    p = ConsoleProtocol(PCM16)
    with pytest.raises(ConsoleProtocolError) as err:
        p.receive_text(message)
    assert err.value.kind == kind and err.value.fatal and p.state is State.AWAITING_START
    with pytest.raises(ConsoleProtocolError, match="audio before start"):
        p.receive_bytes(b"\x00\x00")


@pytest.mark.parametrize(("message", "kind"), [
    ('{"type": "mark"}', "bad_mark"), ('{"type": "mark", "name": ""}', "bad_mark"),
    ('{"type": "mark", "name": "' + "x" * 300 + '"}', "bad_mark"),
    ('{"type": "mark", "name": "a", "played_ms": -1}', "bad_mark"),
    ('{"type": "mark", "name": "a", "played_ms": true}', "bad_mark"),
    ('{"type": "dtmf", "digit": "12"}', "bad_dtmf"), ('{"type": "dtmf", "digit": "a"}', "bad_dtmf"),
    ('{"type": "start", "agent": "demo"}', "out_of_order"), ('{"type": "media"}', "unknown_type"),
])
def test_while_streaming_errors_are_not_fatal_and_change_nothing(message: str, kind: str) -> None:
    p = started()
    with pytest.raises(ConsoleProtocolError) as err:
        p.receive_text(message)
    assert err.value.kind == kind and not err.value.fatal
    assert p.state is State.STREAMING and p.events_received() == []


def test_audio_must_be_whole_samples_and_bounded() -> None:
    p = started()
    with pytest.raises(ConsoleProtocolError, match="whole number"):
        p.receive_bytes(b"\x00\x00\x00")
    small = ConsoleProtocol(PCM16, max_audio_bytes=640)
    small.receive_text('{"type": "start", "agent": "demo"}')
    with pytest.raises(ConsoleProtocolError) as err:
        small.receive_bytes(b"\x00" * 642)
    assert err.value.kind == "oversized"
    mulaw = ConsoleProtocol(AudioFormat("mulaw", 8000))
    mulaw.receive_text('{"type": "start", "agent": "demo"}')
    mulaw.receive_bytes(b"\xff" * 161)  # one byte per sample: any length
    assert len(mulaw.events_received()) == 2
