"""TwiML responses, built with the official ``twilio`` helper library.

Rules of this file: pure functions from values to TwiML strings; no I/O, no clock, no settings.
Callers pass the URLs and the text in. A ``<Parameter>`` Twilio would reject (name + value of 500
characters or more) raises :class:`ValueError` here rather than failing the call at Twilio.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from twilio.twiml.voice_response import VoiceResponse


def stream_url(public_url: str | None, request_base: str) -> str:
    """The media WebSocket URL: ``wss://<PUBLIC_URL host>/twilio/media`` (``ws`` for plain-http dev)."""
    base = urlsplit(public_url or request_base)
    scheme = "wss" if base.scheme in ("https", "wss") else "ws"
    path = base.path.rstrip("/") + "/twilio/media"
    return urlunsplit((scheme, base.netloc, path, "", ""))


def connect_stream(url: str, parameters: dict[str, str], status_callback: str | None = None) -> str:
    response = VoiceResponse()
    connect = response.connect()
    stream = connect.stream(url=url, status_callback=status_callback) if status_callback else connect.stream(url=url)
    for name, value in parameters.items():
        if len(name) + len(value) >= 500:
            raise ValueError(f"<Parameter> {name} is too long for Twilio (name+value must be < 500 chars)")
        stream.parameter(name=name, value=value)
    return str(response)


def say_and_hangup(text: str) -> str:
    response = VoiceResponse()
    response.say(text)
    response.hangup()
    return str(response)


def redirect(url: str) -> str:
    response = VoiceResponse()
    response.redirect(url)
    return str(response)


def dial(number: str, say_first: str | None = None) -> str:
    response = VoiceResponse()
    if say_first:
        response.say(say_first)
    response.dial(number)
    return str(response)
