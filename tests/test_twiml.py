"""TwiML builders: the documents Twilio receives, parsed back as XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from gateway.twilio import twiml


def parse(doc: str) -> ET.Element:
    root = ET.fromstring(doc)
    assert root.tag == "Response"
    return root


@pytest.mark.parametrize(
    ("public_url", "request_base", "expected"),
    [
        ("https://gw.example.com", "http://10.0.0.5:8080/", "wss://gw.example.com/twilio/media"),
        ("https://gw.example.com/voice/", "http://x/", "wss://gw.example.com/voice/twilio/media"),
        (None, "http://127.0.0.1:8080/", "ws://127.0.0.1:8080/twilio/media"),
    ],
)
def test_stream_url_follows_public_url_else_the_request(public_url: str | None, request_base: str,
                                                        expected: str) -> None:
    assert twiml.stream_url(public_url, request_base) == expected


def test_connect_stream_carries_parameters_and_status_callback() -> None:
    doc = twiml.connect_stream("wss://gw/twilio/media", {"agent": "demo", "token": "t0k"},
                               status_callback="https://gw/twilio/status")
    stream = parse(doc).find("./Connect/Stream")
    assert stream is not None
    assert stream.get("url") == "wss://gw/twilio/media"
    assert stream.get("statusCallback") == "https://gw/twilio/status"
    assert {p.get("name"): p.get("value") for p in stream.findall("Parameter")} == {"agent": "demo", "token": "t0k"}
    bare = parse(twiml.connect_stream("wss://gw/twilio/media", {})).find("./Connect/Stream")
    assert bare is not None and bare.get("statusCallback") is None


def test_parameter_twilio_would_reject_is_refused_here() -> None:
    twiml.connect_stream("wss://gw/m", {"k": "v" * 498})  # 499 characters: accepted
    with pytest.raises(ValueError, match="too long"):
        twiml.connect_stream("wss://gw/m", {"k": "v" * 499})


def test_say_and_hangup_redirect_and_dial() -> None:
    root = parse(twiml.say_and_hangup("Goodbye & thanks <3"))
    assert [e.tag for e in root] == ["Say", "Hangup"] and root[0].text == "Goodbye & thanks <3"
    root = parse(twiml.redirect("https://other.example.com/twilio/voice?x=1&y=2"))
    assert [(e.tag, e.text) for e in root] == [("Redirect", "https://other.example.com/twilio/voice?x=1&y=2")]
    root = parse(twiml.dial("+15551234567", say_first="Transferring you now."))
    assert [(e.tag, e.text) for e in root] == [("Say", "Transferring you now."), ("Dial", "+15551234567")]
    assert [e.tag for e in parse(twiml.dial("+15551234567"))] == ["Dial"]
