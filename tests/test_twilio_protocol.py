"""The sans-I/O Twilio protocol: golden real-shape messages, the transition table, errors, and a fuzzer."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.twilio.events import Connected, Dtmf, Mark, Media, Start, Stop
from gateway.twilio.protocol import (
    _TWILIO_MEDIA,
    TRANSITIONS,
    LocalProtocolError,
    RemoteProtocolError,
    State,
    TwilioProtocol,
)

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
CALL = "CA0123456789abcdef0123456789abcdef"
ACCOUNT = "AC0123456789abcdef0123456789abcdef"
PAYLOAD = base64.b64encode(bytes(range(96, 256))).decode()  # 160 bytes, like every inbound frame

# The message shapes of a real call, as Twilio sends them (notes §1; twilio/media-streams recordings),
# key order and string-typed numbers included.
GOLDEN_INBOUND: list[tuple[str, object]] = [
    ('{"event":"connected","protocol":"Call","version":"1.0.0"}', Connected("Call", "1.0.0")),
    (
        '{"event":"start","sequenceNumber":"1","start":{"accountSid":"' + ACCOUNT + '","streamSid":"' + SID
        + '","callSid":"' + CALL + '","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw",'
        '"sampleRate":8000,"channels":1},"customParameters":{"call_token":"abc.def"}},"streamSid":"' + SID + '"}',
        Start(SID, CALL, ACCOUNT, ("inbound",), {"call_token": "abc.def"}),
    ),
    (
        '{"event":"media","sequenceNumber":"2","media":{"track":"inbound","chunk":"1","timestamp":"5",'
        '"payload":"' + PAYLOAD + '"},"streamSid":"' + SID + '"}',
        Media(bytes(range(96, 256)), 1, 5, "inbound"),
    ),
    (
        '{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"2","timestamp":"25",'
        '"payload":"' + PAYLOAD + '"},"streamSid":"' + SID + '"}',
        Media(bytes(range(96, 256)), 2, 25, "inbound"),
    ),
    (
        '{"event":"dtmf","streamSid":"' + SID + '","sequenceNumber":"4","dtmf":{"track":"inbound_track","digit":"1"}}',
        Dtmf("1"),
    ),
    ('{"event":"mark","sequenceNumber":"5","streamSid":"' + SID + '","mark":{"name":"greeting-1"}}',
     Mark("greeting-1")),
    (
        '{"event":"stop","sequenceNumber":"6","stop":{"accountSid":"' + ACCOUNT + '","callSid":"' + CALL
        + '"},"streamSid":"' + SID + '"}',
        Stop(CALL),
    ),
]


def streaming(protocol: type[TwilioProtocol] = TwilioProtocol) -> TwilioProtocol:
    p = protocol()
    for text, _ in GOLDEN_INBOUND[:2]:
        p.receive_text(text)
    p.events_received()
    return p


def test_golden_inbound_sequence_whole() -> None:
    p = TwilioProtocol()
    states = []
    for text, _ in GOLDEN_INBOUND:
        p.receive_text(text)
        states.append(p.state)
    assert p.events_received() == [event for _, event in GOLDEN_INBOUND]
    assert p.events_received() == []  # drained
    assert states == [State.AWAITING_START] + [State.STREAMING] * 5 + [State.STOPPED]
    assert (p.stream_sid, p.call_sid, p.errors, p.sequence_gaps, p.last_sequence) == (SID, CALL, 0, 0, 6)


def test_golden_outbound_exact_shapes() -> None:
    p = streaming()
    p.send_media(b"\xff" * 160)
    p.send_mark("sentence-2")
    p.send_clear()
    out = [json.loads(t) for t in p.data_to_send()]
    assert out == [
        {"event": "media", "streamSid": SID, "media": {"payload": base64.b64encode(b"\xff" * 160).decode()}},
        {"event": "mark", "streamSid": SID, "mark": {"name": "sentence-2"}},
        {"event": "clear", "streamSid": SID},
    ]
    assert len(out[0]["media"]["payload"]) == 216  # 20 ms of mu-law in base64
    assert p.data_to_send() == []


def test_outbound_refused_outside_streaming() -> None:
    p = TwilioProtocol()
    with pytest.raises(LocalProtocolError):
        p.send_media(b"\xff" * 160)
    p = streaming()
    with pytest.raises(LocalProtocolError):
        p.send_media(b"")
    with pytest.raises(LocalProtocolError):
        p.send_mark("")
    p.receive_eof()
    with pytest.raises(LocalProtocolError):
        p.send_clear()


def test_transition_table_is_complete_and_enforced() -> None:
    names = ["connected", "start", "media", "dtmf", "mark", "stop"]
    msgs = {json.loads(t)["event"]: t for t, _ in GOLDEN_INBOUND}
    for state in State:
        for name in names:
            p = TwilioProtocol()
            # Drive to `state` with the golden prefix.
            prefix = {State.AWAITING_CONNECTED: [], State.AWAITING_START: ["connected"],
                      State.STREAMING: ["connected", "start"], State.STOPPED: ["connected", "start", "stop"]}[state]
            for n in prefix:
                p.receive_text(msgs[n])
            p.events_received()
            if (state, name) in TRANSITIONS:
                p.receive_text(msgs[name])
                assert p.state is TRANSITIONS[(state, name)]
            else:
                with pytest.raises(RemoteProtocolError) as err:
                    p.receive_text(msgs[name])
                assert err.value.kind in ("out_of_order", "wrong_stream_sid")
                assert p.state is state and p.events_received() == []


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_json"),
        ("[" * 100_000, "too_large"),
        ("[" * 30_000, "bad_json"),  # deep nesting: RecursionError inside json, mapped to bad_json
        ('{"event":"hello","streamSid":"' + SID + '"}', "unknown_event"),
        ('{"streamSid":"' + SID + '"}', "unknown_event"),
        ('{"event":"media","streamSid":"MZother","media":{"chunk":"1","timestamp":"0","payload":""}}',
         "wrong_stream_sid"),
        ('{"event":"media","streamSid":"' + SID + '","media":{"chunk":"1","timestamp":"0","payload":"@@"}}',
         "bad_base64"),
        ('{"event":"media","streamSid":"' + SID + '","media":{"chunk":"x","timestamp":"0","payload":""}}',
         "bad_field"),
        ('{"event":"media","streamSid":"' + SID + '","media":{"chunk":"\u0661","timestamp":"0","payload":""}}',
         "bad_field"),  # a non-ASCII digit
        ('{"event":"media","streamSid":"' + SID + '","media":{"chunk":1,"timestamp":"0","payload":""}}',
         "missing_field"),
        ('{"event":"media","streamSid":"' + SID + '"}', "missing_field"),
        ('{"event":"dtmf","streamSid":"' + SID + '","dtmf":{"digit":"x"}}', "bad_field"),
        ('{"event":"mark","streamSid":"' + SID + '","mark":{"name":5}}', "missing_field"),
        ('{"event":"stop","streamSid":"' + SID + '","stop":[]}', "bad_field"),
        ('{"event":"mark","sequenceNumber":"-1","streamSid":"' + SID + '","mark":{"name":"a"}}', "bad_field"),
    ],
)
def test_malformed_messages_while_streaming_are_ignorable(text: str, kind: str) -> None:
    p = streaming()
    with pytest.raises(RemoteProtocolError) as err:
        p.receive_text(text)
    assert err.value.kind == kind and err.value.reason and not err.value.fatal
    assert p.state is State.STREAMING and p.events_received() == []
    p.receive_text(GOLDEN_INBOUND[5][0])  # the stream goes on
    assert p.events_received() == [Mark("greeting-1")]


def test_errors_before_start_are_fatal_and_the_budget_ends_a_noisy_call() -> None:
    p = TwilioProtocol()
    with pytest.raises(RemoteProtocolError) as err:
        p.receive_bytes(b"\x00" * 10)
    assert err.value.kind == "binary_frame" and err.value.fatal
    p = streaming()
    p.max_errors = 3
    fatal = []
    for _ in range(5):
        try:
            p.receive_text("garbage")
        except RemoteProtocolError as exc:
            fatal.append(exc.fatal)
    assert fatal == [False, False, False, True, True]


def test_bad_start_is_rejected() -> None:
    for start in (
        {"streamSid": SID},  # no callSid
        {"streamSid": SID, "callSid": CALL, "mediaFormat": {"encoding": "audio/l16", "sampleRate": 16000}},
        {"streamSid": SID, "callSid": CALL, "customParameters": {"a": 1}},
        {"streamSid": "", "callSid": CALL},
    ):
        p = TwilioProtocol()
        with pytest.raises(RemoteProtocolError) as err:
            p.receive_text(json.dumps({"event": "start", "start": start, "streamSid": start["streamSid"]}))
        assert err.value.fatal and p.state is State.AWAITING_CONNECTED and p.stream_sid is None


def test_sequence_gaps_are_counted_not_fatal() -> None:
    p = streaming()
    p.receive_text('{"event":"mark","sequenceNumber":"9","streamSid":"' + SID + '","mark":{"name":"a"}}')
    assert p.sequence_gaps == 1 and p.errors == 0


# ---- fuzzing: 10,000+ random and mutated messages (seeded loops) and shrinking hypothesis runs --------------

def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    return st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                          max_size=4), max_leaves=12)


FIELDS = ["event", "streamSid", "sequenceNumber", "start", "media", "mark", "dtmf", "stop", "payload", "chunk",
          "timestamp", "name", "digit", "callSid", "customParameters", "mediaFormat", "tracks"]


def _mutate(obj: Any, choose: Callable[[list[str]], str], value: Callable[[], Any]) -> Any:
    """Replace, drop or add one field somewhere in a valid message (``choose`` picks, ``value`` makes a value:
    hypothesis's draws or a seeded ``random.Random``)."""
    if isinstance(obj, dict) and obj:
        key = choose(sorted(obj))
        action = choose(["drop", "replace", "recurse", "add"])
        out = dict(obj)
        if action == "drop":
            del out[key]
        elif action == "replace":
            out[key] = value()
        elif action == "recurse":
            out[key] = _mutate(obj[key], choose, value)
        else:
            out[choose(FIELDS)] = value()
        return out
    return value()


def _check(p: TwilioProtocol, text: str) -> None:
    before = (p.state, p.stream_sid)
    try:
        p.receive_text(text)
    except RemoteProtocolError as exc:
        assert exc.kind and exc.reason
        assert (p.state, p.stream_sid) == before  # a rejected message changes nothing
        return
    events = p.events_received()
    assert len(events) == 1
    assert (before[0], json.loads(text)["event"]) in TRANSITIONS


@settings(max_examples=800, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_mutated_golden_messages(data: st.DataObject) -> None:
    p = TwilioProtocol()
    prefix = data.draw(st.integers(0, 2))
    for text, _ in GOLDEN_INBOUND[:prefix]:
        p.receive_text(text)
    p.events_received()
    base = json.loads(data.draw(st.sampled_from([t for t, _ in GOLDEN_INBOUND])))
    mutated = _mutate(base, lambda options: data.draw(st.sampled_from(options)), lambda: data.draw(_json_values()))
    text = json.dumps(mutated)
    if data.draw(st.booleans()):  # byte-level damage too: truncation or a flipped character
        i = data.draw(st.integers(0, max(0, len(text) - 1)))
        text = text[:i] + data.draw(st.text(max_size=2)) + text[i + 1:]
    _check(p, text)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=_json_values() | st.text(max_size=200), prefix=st.integers(0, 3))
def test_fuzz_random_messages(value: Any, prefix: int) -> None:
    p = TwilioProtocol()
    for text, _ in GOLDEN_INBOUND[:prefix]:
        p.receive_text(text)
    p.events_received()
    _check(p, value if isinstance(value, str) else json.dumps(value))


# Hypothesis finds and shrinks a failure well but spends ~15 ms per example here; these seeded loops put
# 12,000 more messages of the same kinds through the protocol in about a second (a failure names its seed and i).
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789\"\\{}[]:,. \u00e9\u2028\x00\ud7ff"


def _random_text(rng: random.Random, max_size: int) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, max_size)))


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, -(2**63), 10**30, rng.randint(-1000, 1000)])
    if kind == 3:
        return rng.choice([0.0, -0.5, 1e308, rng.uniform(-1e6, 1e6)])
    if kind == 4:
        return _random_text(rng, 20)
    if kind == 5:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {_random_text(rng, 8): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


@pytest.mark.parametrize("seed", range(4))
def test_fuzz_seeded_mutations_of_golden_messages(seed: int) -> None:
    rng = random.Random(seed)
    golden = [t for t, _ in GOLDEN_INBOUND]
    for i in range(2000):
        p = TwilioProtocol()
        for text, _ in GOLDEN_INBOUND[:rng.randint(0, 2)]:
            p.receive_text(text)
        p.events_received()
        text = json.dumps(_mutate(json.loads(rng.choice(golden)), rng.choice, lambda: _random_json(rng)))
        if rng.random() < 0.5:  # byte-level damage too: truncation or a flipped character
            j = rng.randint(0, max(0, len(text) - 1))
            text = text[:j] + _random_text(rng, 2) + text[j + 1:]
        try:
            _check(p, text)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}, message {i}: {text!r}") from exc


@pytest.mark.parametrize("seed", range(2))
def test_fuzz_seeded_random_messages(seed: int) -> None:
    rng = random.Random(1000 + seed)
    for i in range(2000):
        p = TwilioProtocol()
        for text, _ in GOLDEN_INBOUND[:rng.randint(0, 3)]:
            p.receive_text(text)
        p.events_received()
        value = _random_text(rng, 200) if rng.random() < 0.3 else json.dumps(_random_json(rng))
        try:
            _check(p, value)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}, message {i}: {value!r}") from exc


@pytest.mark.parametrize("sid", [SID, 'MZ"quoted\\back', "MZ\u00e9\u2028unicode"])
def test_prebuilt_media_message_is_exactly_what_json_dumps_writes(sid: str) -> None:
    p = TwilioProtocol()
    p.receive_text(json.dumps({"event": "start", "streamSid": sid,
                               "start": {"streamSid": sid, "callSid": CALL, "accountSid": ACCOUNT}}))
    p.send_media(bytes(range(160)))
    p.send_media_b64(PAYLOAD)
    expected = [json.dumps({"event": "media", "streamSid": sid, "media": {"payload": b64}}, separators=(",", ":"))
                for b64 in (base64.b64encode(bytes(range(160))).decode(), PAYLOAD)]
    assert p.data_to_send() == expected
    with pytest.raises(LocalProtocolError):
        p.send_media_b64("")


class _JsonOnly(TwilioProtocol):
    """The same protocol with Twilio's exact media layout read through json.loads like any other message."""

    def _twilio_media(self, text: str) -> bool:
        return False


def _outcome(p: TwilioProtocol, text: str) -> tuple[object, ...]:
    try:
        p.receive_text(text)
    except RemoteProtocolError as exc:
        return ("error", exc.kind, exc.fatal, p.state, p.last_sequence, p.sequence_gaps)
    return ("ok", tuple(p.events_received()), p.state, p.last_sequence, p.sequence_gaps)


def _twilio_media_variants(rng: random.Random) -> str:
    """Messages around Twilio's exact layout: the real one (half of them), and near misses a reader of that
    layout could get wrong."""
    real = rng.random() < 0.5
    good_payload = base64.b64encode(rng.randbytes(rng.choice([160, 159, 158, 0]))).decode()
    seq = str(rng.randrange(1, 10**6)) if real else rng.choice(["03", "0", "1234567890123456789", "٣", "", "-3"])
    track = "inbound" if real else rng.choice(["outbound", "inbound_track", "Inbound", "", "in\\u0062ound", "x" * 40])
    chunk = str(rng.randrange(1, 10**6)) if real else rng.choice(["02", "١", "", "99999999999999999999"])
    stamp = str(rng.randrange(0, 10**8)) if real else rng.choice(["0", "2.5", "", "۲"])
    payload = good_payload if real else rng.choice(["", "QQ==", "QQ=", "QQ===", "Q", "QUJD\\n", "QUJD\n", "QU JD",
                                                    "QUJD====", "Q=JD", PAYLOAD[:-1], "é" + PAYLOAD])
    sid = SID if real else rng.choice([SID + "x", "MZ\\u0031", "MZ\x01", "MZ\"", ""])
    text = (f'{{"event":"media","sequenceNumber":"{seq}","media":{{"track":"{track}","chunk":"{chunk}",'
            f'"timestamp":"{stamp}","payload":"{payload}"}},"streamSid":"{sid}"}}')
    edit = rng.randrange(8)
    if edit == 1:
        text = text.replace('"event":"media"', '"event": "media"')
    elif edit == 2:
        text = text + " "
    elif edit == 3:
        text = text.replace('"streamSid"', '"streamSid":"x","streamSid"')  # a duplicate member: json keeps the last
    return text


@pytest.mark.parametrize("seed", range(4))
def test_twilio_media_layout_is_read_exactly_as_json_would_read_it(seed: int) -> None:
    """The per-frame reader of Twilio's own layout accepts, refuses and counts exactly what the general
    path does, on the real message and on near misses (digits, escapes, base64, sid, spacing, duplicates)."""
    rng = random.Random(seed)
    fast, slow = streaming(), streaming(_JsonOnly)
    taken = 0
    for _ in range(2000):
        text = _twilio_media_variants(rng)
        taken += bool(_TWILIO_MEDIA.fullmatch(text))
        assert _outcome(fast, text) == _outcome(slow, text), text
        if fast.state is not State.STREAMING:  # too many errors ended the stream (both did): start again
            fast, slow = streaming(), streaming(_JsonOnly)
    assert taken > 500  # Twilio's layout was read the fast way, not only the general one
