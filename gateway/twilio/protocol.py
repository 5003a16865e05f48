"""Sans-I/O Twilio Media Streams protocol (bidirectional ``<Connect><Stream>``).

Rules of this file: no asyncio, no sockets, no clock. Feed text frames with
:meth:`TwilioProtocol.receive_text` (binary frames with :meth:`receive_bytes`,
a closed socket with :meth:`receive_eof`), collect parsed events with
:meth:`events_received`, queue outbound messages with ``send_*`` and collect
the text frames to write with :meth:`data_to_send`. Both getters drain.

Lifecycle (a transition table, enforced in one place)::

    AWAITING_CONNECTED --connected--> AWAITING_START --start--> STREAMING --stop--> STOPPED

Anything malformed (bad JSON, unknown event, missing or mistyped field, wrong
``streamSid``, bad base64, binary frame, oversized frame, event out of order)
raises :class:`RemoteProtocolError` with a ``kind`` (for metrics) and a human
reason; the protocol state is unchanged. ``fatal`` on the error tells the I/O
shell what to do: before ``start`` the call cannot go on (close the socket);
while streaming the message is ignored, until the per-call error budget is
spent (then the call ends cleanly). Outbound messages have exactly the shape
Twilio requires (text, no extra fields: error 31951 otherwise); sending in a
state that does not allow it is our bug: :class:`LocalProtocolError`.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
from typing import Any, TypeGuard

from gateway.twilio.events import Connected, Dtmf, Event, Mark, Media, Start, Stop


class State(enum.Enum):
    AWAITING_CONNECTED = "awaiting_connected"
    AWAITING_START = "awaiting_start"
    STREAMING = "streaming"
    STOPPED = "stopped"


class RemoteProtocolError(Exception):
    """Twilio (or whoever is on the socket) sent something we cannot accept."""

    def __init__(self, kind: str, reason: str, fatal: bool = False) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind  # short, for metric labels
        self.reason = reason
        self.fatal = fatal  # True: end the call (no `start` yet, or too many errors)


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
MAX_MESSAGE_CHARS = 64 * 1024  # Twilio's frames are ~300 bytes; `start` with parameters a few KB
MAX_ERRORS = 50  # malformed messages tolerated per call while streaming

# Twilio's inbound media message exactly as Twilio writes it (its documented example: this member order, no
# spaces, numbers as ASCII digit strings). Text that matches is valid JSON with exactly these members and
# values the general path accepts (a subset of them: base64 without padding errors, a plain track name, a
# stream sid with no escapes), so it is read without json.loads; anything else takes the general path.
_TWILIO_MEDIA = re.compile(
    r'\{"event":"media","sequenceNumber":"([0-9]{1,18})","media":\{"track":"([a-z_]{1,32})","chunk":"([0-9]{1,18})",'
    r'"timestamp":"([0-9]{1,18})","payload":"([A-Za-z0-9+/]*={0,2})"\},"streamSid":"([^"\\\x00-\x1f]{1,128})"\}'
)


def _str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise RemoteProtocolError("missing_field", f"{where}.{key} must be a string")
    return value


def _opt_str(obj: dict[str, Any], key: str, where: str, default: str) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise RemoteProtocolError("bad_field", f"{where}.{key} must be a string")
    return value


def _obj(obj: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = obj.get(key)
    if not isinstance(value, dict):
        raise RemoteProtocolError("missing_field", f"{where}.{key} must be an object")
    return value


def _int_str(obj: dict[str, Any], key: str, where: str) -> int:
    raw = _str(obj, key, where)
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise RemoteProtocolError("bad_field", f"{where}.{key}={raw[:20]!r} is not a decimal number")
    return int(raw)


def _strict_base64(text: str) -> bytes | None:
    """The per-frame decoder: None when not strict base64. Strict mode runs no regex pass (b64decode's
    validate=True does) and accepts a subset of what the general path accepts (alphabet, padding, nothing
    after it), with the same decoder: the same bytes."""
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        return None


def _decimal(value: object) -> TypeGuard[str]:
    """What :func:`_int_str` accepts, as a test."""
    return type(value) is str and value.isascii() and value.isdigit() and len(value) <= 18


class TwilioProtocol:
    def __init__(self, max_message_chars: int = MAX_MESSAGE_CHARS, max_errors: int = MAX_ERRORS) -> None:
        self.state = State.AWAITING_CONNECTED  # lifecycle state
        self.stream_sid: str | None = None  # set by `start`
        self.call_sid: str | None = None
        self.max_message_chars = max_message_chars
        self.max_errors = max_errors
        self.errors = 0  # malformed messages received so far
        self.last_sequence = 0  # last inbound sequenceNumber (0: none yet)
        self.sequence_gaps = 0  # messages whose sequenceNumber did not follow the previous one
        self._events: list[Event] = []  # parsed, not yet collected
        self._out: list[str] = []  # text frames to write
        self._media_prefix = ""  # set by `start`

    # ---- inbound -------------------------------------------------------
    def _error(self, exc: RemoteProtocolError) -> RemoteProtocolError:
        self.errors += 1
        exc.fatal = self.state in (State.AWAITING_CONNECTED, State.AWAITING_START) or self.errors > self.max_errors
        return exc

    def receive_bytes(self, data: bytes) -> None:
        raise self._error(RemoteProtocolError("binary_frame", f"binary frame of {len(data)} bytes (Twilio sends text)"))

    def receive_eof(self) -> None:
        """The socket closed (with or without `stop`): nothing more will arrive or may be sent."""
        self.state = State.STOPPED

    def receive_text(self, text: str) -> None:
        try:
            self._receive(text)
        except RemoteProtocolError as exc:
            raise self._error(exc) from None

    def _receive(self, text: str) -> None:
        if len(text) > self.max_message_chars:
            raise RemoteProtocolError("too_large", f"{len(text)} characters (limit {self.max_message_chars})")
        if self._twilio_media(text):
            return
        try:
            msg = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise RemoteProtocolError("bad_json", f"not JSON: {str(exc)[:80]}") from None
        if not isinstance(msg, dict):
            raise RemoteProtocolError("bad_json", "message is not a JSON object")
        if self._fast_media(msg):
            return
        name = msg.get("event")
        if not isinstance(name, str) or name not in INBOUND_EVENTS:
            raise RemoteProtocolError("unknown_event", f"unknown event {str(name)[:40]!r}")
        nxt = TRANSITIONS.get((self.state, name))
        if nxt is None:
            raise RemoteProtocolError("out_of_order", f"{name!r} not allowed in state {self.state.value}")
        if name not in ("connected", "start"):
            sid = msg.get("streamSid")
            if sid != self.stream_sid:
                raise RemoteProtocolError("wrong_stream_sid", f"streamSid {str(sid)[:40]!r} != {self.stream_sid!r}")
        seq = _int_str(msg, "sequenceNumber", name) if "sequenceNumber" in msg else None
        event = self._parse(name, msg)
        if seq is not None:
            self._sequence(seq)
        if isinstance(event, Start):
            self.stream_sid = event.stream_sid
            self.call_sid = event.call_sid
            # Every outbound media message is this prefix + base64 + '"}}' (what json.dumps would write).
            sid_json = json.dumps(event.stream_sid)
            self._media_prefix = '{"event":"media","streamSid":' + sid_json + ',"media":{"payload":"'
        self.state = nxt
        self._events.append(event)

    def _sequence(self, n: int) -> None:
        """A message's ``sequenceNumber``: a jump is counted (not fatal), and it is the new last one."""
        if self.last_sequence and n != self.last_sequence + 1:
            self.sequence_gaps += 1
        self.last_sequence = n

    def _twilio_media(self, text: str) -> bool:
        """The per-frame path for Twilio's own layout (:data:`_TWILIO_MEDIA`): the event :meth:`_fast_media`
        would make from ``json.loads(text)``, without parsing JSON; False: not that layout (or not now)."""
        m = _TWILIO_MEDIA.fullmatch(text)
        if m is None or self.state is not State.STREAMING:
            return False
        seq, track, chunk, stamp, payload, sid = m.groups()
        if sid != self.stream_sid or (data := _strict_base64(payload)) is None:
            return False
        self._sequence(int(seq))
        self._events.append(Media(payload=data, chunk=int(chunk), timestamp_ms=int(stamp), track=track))
        return True

    def _fast_media(self, msg: dict[str, Any]) -> bool:
        """The per-frame path: a well-formed ``media`` while streaming, parsed with no helper calls.

        Accepts exactly what the general path accepts for such a message and makes the same event;
        anything else (or anything odd) returns False and goes the general way, errors included.
        """
        if msg.get("event") != "media" or self.state is not State.STREAMING or msg.get("streamSid") != self.stream_sid:
            return False
        media = msg.get("media")
        if type(media) is not dict:
            return False
        payload, chunk, stamp = media.get("payload"), media.get("chunk"), media.get("timestamp")
        track = media.get("track", "inbound")
        has_seq = "sequenceNumber" in msg
        seq = msg.get("sequenceNumber")
        if not (type(payload) is str and type(track) is str and _decimal(chunk) and _decimal(stamp)
                and (not has_seq or _decimal(seq))):
            return False
        if (data := _strict_base64(payload)) is None:
            return False
        if has_seq:
            self._sequence(int(str(seq)))
        self._events.append(Media(payload=data, chunk=int(chunk), timestamp_ms=int(stamp), track=track))
        return True

    def _parse(self, name: str, msg: dict[str, Any]) -> Event:
        if name == "connected":
            return Connected(protocol=_opt_str(msg, "protocol", "connected", ""),
                             version=_opt_str(msg, "version", "connected", ""))
        if name == "start":
            return self._parse_start(msg)
        if name == "media":
            media = _obj(msg, "media", "media")
            try:
                payload = base64.b64decode(_str(media, "payload", "media"), validate=True)
            except (binascii.Error, ValueError):
                raise RemoteProtocolError("bad_base64", "media.payload is not valid base64") from None
            return Media(
                payload=payload,
                chunk=_int_str(media, "chunk", "media"),
                timestamp_ms=_int_str(media, "timestamp", "media"),
                track=_opt_str(media, "track", "media", "inbound"),
            )
        if name == "dtmf":
            dtmf = _obj(msg, "dtmf", "dtmf")
            digit = _str(dtmf, "digit", "dtmf")
            _opt_str(dtmf, "track", "dtmf", "inbound_track")
            if digit not in DTMF_DIGITS:
                raise RemoteProtocolError("bad_field", f"dtmf.digit {digit[:10]!r} is not a DTMF digit")
            return Dtmf(digit=digit)
        if name == "mark":
            return Mark(name=_str(_obj(msg, "mark", "mark"), "name", "mark"))
        stop = msg.get("stop", {})
        if not isinstance(stop, dict):
            raise RemoteProtocolError("bad_field", "stop must be an object")
        return Stop(call_sid=_opt_str(stop, "callSid", "stop", ""))

    def _parse_start(self, msg: dict[str, Any]) -> Start:
        start = _obj(msg, "start", "start")
        sid = _str(start, "streamSid", "start")
        call_sid = _str(start, "callSid", "start")
        if not sid or not call_sid:
            raise RemoteProtocolError("missing_field", "start.streamSid and start.callSid must not be empty")
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
            raise RemoteProtocolError("bad_media_format", f"unsupported media format {str(fmt)[:80]}")
        tracks = start.get("tracks", ["inbound"])
        if not isinstance(tracks, list) or not all(isinstance(t, str) for t in tracks):
            raise RemoteProtocolError("bad_field", "start.tracks must be a list of strings")
        return Start(
            stream_sid=sid,
            call_sid=call_sid,
            account_sid=_opt_str(start, "accountSid", "start", ""),
            tracks=tuple(tracks),
            custom_parameters=dict(params),
        )

    def events_received(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    # ---- outbound ------------------------------------------------------
    def _require_streaming(self) -> str:
        if self.state is not State.STREAMING or self.stream_sid is None:
            raise LocalProtocolError(f"cannot send in state {self.state.value}")
        return self.stream_sid

    def _queue(self, msg: dict[str, Any]) -> None:
        self._out.append(json.dumps(msg, separators=(",", ":")))

    def send_media(self, payload: bytes) -> None:
        if not payload:
            raise LocalProtocolError("empty media payload")
        self.send_media_b64(base64.b64encode(payload).decode("ascii"))

    def send_media_b64(self, payload_b64: str) -> None:
        """``send_media`` for audio already base64-encoded (pre-rendered phrases: encoded once, sent many times).

        The message is built from a prefix fixed at ``start`` (the per-frame path does no dict or JSON work);
        it is exactly what ``json.dumps`` of the message would give.
        """
        self._require_streaming()
        if not payload_b64:
            raise LocalProtocolError("empty media payload")
        self._out.append(self._media_prefix + payload_b64 + '"}}')

    def send_mark(self, name: str) -> None:
        sid = self._require_streaming()
        if not name:
            raise LocalProtocolError("mark name must not be empty")
        self._queue({"event": "mark", "streamSid": sid, "mark": {"name": name}})

    def send_clear(self) -> None:
        sid = self._require_streaming()
        self._queue({"event": "clear", "streamSid": sid})

    def data_to_send(self) -> list[str]:
        out, self._out = self._out, []
        return out
