"""Sans-I/O Twilio Media Streams protocol (bidirectional ``<Connect><Stream>``).

Rules of this file: no asyncio, no sockets, no clock. Feed text frames with
:meth:`TwilioProtocol.receive_text`, collect parsed events with
:meth:`events_received`, queue outbound messages with ``send_*`` and collect
the text frames to write with :meth:`data_to_send`. Both getters drain.

Lifecycle (a transition table, enforced in one place)::

    AWAITING_CONNECTED --connected--> AWAITING_START --start--> STREAMING --stop--> STOPPED

Anything malformed raises :class:`RemoteProtocolError` with a ``kind`` (for
metrics) and a human reason; the protocol state is unchanged, so the caller
may ignore the message or end the call.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from typing import Any

from gateway.twilio_events import Connected, Dtmf, Event, Mark, Media, Start, Stop


class State(enum.Enum):
    AWAITING_CONNECTED = "awaiting_connected"
    AWAITING_START = "awaiting_start"
    STREAMING = "streaming"
    STOPPED = "stopped"


class RemoteProtocolError(Exception):
    """Twilio (or whoever is on the socket) sent something we cannot accept."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


class LocalProtocolError(Exception):
    """We tried to send something the protocol does not allow (our bug)."""


# (state, event name) -> next state. Missing pairs are protocol errors.
TRANSITIONS: dict[tuple[State, str], State] = {
    (State.AWAITING_CONNECTED, "connected"): State.AWAITING_START,
    # Some proxies drop `connected`; `start` first is tolerated.
    (State.AWAITING_CONNECTED, "start"): State.STREAMING,
    (State.AWAITING_START, "start"): State.STREAMING,
    (State.STREAMING, "media"): State.STREAMING,
    (State.STREAMING, "dtmf"): State.STREAMING,
    (State.STREAMING, "mark"): State.STREAMING,
    (State.STREAMING, "stop"): State.STOPPED,
}

INBOUND_EVENTS = frozenset({"connected", "start", "media", "dtmf", "mark", "stop"})
DTMF_DIGITS = frozenset("0123456789*#ABCD")


def _str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise RemoteProtocolError("missing_field", f"{where}.{key} must be a string")
    return value


def _obj(obj: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = obj.get(key)
    if not isinstance(value, dict):
        raise RemoteProtocolError("missing_field", f"{where}.{key} must be an object")
    return value


def _int_str(obj: dict[str, Any], key: str, where: str) -> int:
    raw = _str(obj, key, where)
    if not raw.isdigit():
        raise RemoteProtocolError("bad_field", f"{where}.{key}={raw!r} is not a decimal number")
    return int(raw)


class TwilioProtocol:
    def __init__(self) -> None:
        self.state = State.AWAITING_CONNECTED  # lifecycle state
        self.stream_sid: str | None = None  # set by `start`
        self.call_sid: str | None = None
        self._events: list[Event] = []  # parsed, not yet collected
        self._out: list[str] = []  # text frames to write

    # ---- inbound -------------------------------------------------------
    def receive_bytes(self, data: bytes) -> None:
        raise RemoteProtocolError("binary_frame", f"binary frame of {len(data)} bytes (Twilio sends text)")

    def receive_text(self, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError as exc:
            raise RemoteProtocolError("bad_json", f"not JSON: {exc}") from None
        if not isinstance(msg, dict):
            raise RemoteProtocolError("bad_json", "message is not a JSON object")
        name = msg.get("event")
        if not isinstance(name, str) or name not in INBOUND_EVENTS:
            raise RemoteProtocolError("unknown_event", f"unknown event {name!r}")
        nxt = TRANSITIONS.get((self.state, name))
        if nxt is None:
            raise RemoteProtocolError("out_of_order", f"{name!r} not allowed in state {self.state.value}")
        if name not in ("connected", "start"):
            sid = msg.get("streamSid")
            if sid != self.stream_sid:
                raise RemoteProtocolError("wrong_stream_sid", f"streamSid {sid!r} != {self.stream_sid!r}")
        event = self._parse(name, msg)
        if isinstance(event, Start):
            self.stream_sid = event.stream_sid
            self.call_sid = event.call_sid
        self.state = nxt
        self._events.append(event)

    def _parse(self, name: str, msg: dict[str, Any]) -> Event:
        if name == "connected":
            return Connected(protocol=str(msg.get("protocol", "")), version=str(msg.get("version", "")))
        if name == "start":
            start = _obj(msg, "start", "start")
            sid = _str(start, "streamSid", "start")
            top = msg.get("streamSid")
            if top is not None and top != sid:
                raise RemoteProtocolError("wrong_stream_sid", "start.streamSid differs from streamSid")
            params = start.get("customParameters", {})
            if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
                raise RemoteProtocolError("bad_field", "start.customParameters must map names to strings")
            fmt = start.get("mediaFormat", {})
            if not isinstance(fmt, dict):
                raise RemoteProtocolError("bad_field", "start.mediaFormat must be an object")
            encoding = fmt.get("encoding", "audio/x-mulaw")
            rate = fmt.get("sampleRate", 8000)
            if encoding != "audio/x-mulaw" or rate != 8000 or fmt.get("channels", 1) != 1:
                raise RemoteProtocolError("bad_media_format", f"unsupported media format {fmt!r}")
            tracks = start.get("tracks", ["inbound"])
            if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
                raise RemoteProtocolError("bad_field", "start.tracks must be a list of strings")
            return Start(
                stream_sid=sid,
                call_sid=_str(start, "callSid", "start"),
                account_sid=str(start.get("accountSid", "")),
                tracks=tuple(tracks),
                custom_parameters=dict(params),
            )
        if name == "media":
            media = _obj(msg, "media", "media")
            try:
                payload = base64.b64decode(_str(media, "payload", "media"), validate=True)
            except binascii.Error:
                raise RemoteProtocolError("bad_base64", "media.payload is not valid base64") from None
            return Media(
                payload=payload,
                chunk=_int_str(media, "chunk", "media"),
                timestamp_ms=_int_str(media, "timestamp", "media"),
                track=str(media.get("track", "inbound")),
            )
        if name == "dtmf":
            digit = _str(_obj(msg, "dtmf", "dtmf"), "digit", "dtmf")
            if digit not in DTMF_DIGITS:
                raise RemoteProtocolError("bad_field", f"dtmf.digit {digit!r} is not a DTMF digit")
            return Dtmf(digit=digit)
        if name == "mark":
            return Mark(name=_str(_obj(msg, "mark", "mark"), "name", "mark"))
        stop = msg.get("stop", {})
        return Stop(call_sid=str(stop.get("callSid", "")) if isinstance(stop, dict) else "")

    def events_received(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    # ---- outbound ------------------------------------------------------
    def _require_streaming(self) -> str:
        if self.state is not State.STREAMING or self.stream_sid is None:
            raise LocalProtocolError(f"cannot send in state {self.state.value}")
        return self.stream_sid

    def send_media(self, payload: bytes) -> None:
        sid = self._require_streaming()
        b64 = base64.b64encode(payload).decode("ascii")
        self._out.append(json.dumps({"event": "media", "streamSid": sid, "media": {"payload": b64}}))

    def send_mark(self, name: str) -> None:
        sid = self._require_streaming()
        self._out.append(json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": name}}))

    def send_clear(self) -> None:
        sid = self._require_streaming()
        self._out.append(json.dumps({"event": "clear", "streamSid": sid}))

    def data_to_send(self) -> list[str]:
        out, self._out = self._out, []
        return out
