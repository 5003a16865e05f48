"""Twilio Media Streams events, named after the wire.

Rules of this file: frozen value types only. Inbound events are what Twilio
sends (``connected``, ``start``, ``media``, ``dtmf``, ``mark``, ``stop``);
outbound messages are built by :mod:`gateway.twilio.protocol`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    custom_parameters: dict[str, str] = field(default_factory=dict)
    encoding: str = "audio/x-mulaw"
    sample_rate: int = 8000
    channels: int = 1


@dataclass(frozen=True, slots=True)
class Media:
    payload: bytes
    chunk: int
    timestamp_ms: int
    track: str = "inbound"


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class Mark:
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    call_sid: str = ""


Event = Connected | Start | Media | Dtmf | Mark | Stop
