"""The load bench's lean Twilio legs: framing checked against the websockets library's own sans-I/O server,
and one short call through the real gateway."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from bench import ws_client as ws
from bench.callers import Script, Ticker, one_call
from bench.load import caller_audio
from tests.helpers import run_gateway, wait_until


def _server_accepting(request: bytes) -> ServerProtocol:
    server = ServerProtocol()
    server.receive_data(request)
    [req] = server.events_received()
    assert isinstance(req, Request)
    server.send_response(server.accept(req))
    return server


def _open_pair() -> tuple[ServerProtocol, ws.ClientConnection]:
    request, accept = ws.handshake_request("127.0.0.1:1", "/twilio/stream?t=1")
    server = _server_accepting(request)
    client = ws.ClientConnection(accept)
    client.receive_data(b"".join(server.data_to_send()))
    assert client.state is ws.State.OPEN
    return server, client


def _feed(client: ws.ClientConnection, data: bytes, piece: int) -> list[ws.Event]:
    events: list[ws.Event] = []
    for i in range(0, len(data), piece):
        client.receive_data(data[i : i + piece])
        events += client.events_received()
    return events


@pytest.mark.parametrize("size", [0, 5, 125, 126, 400, 65535, 65536, 70000])
def test_client_frames_are_what_a_real_server_reads(size: int) -> None:
    server, _ = _open_pair()
    text = "x" * size
    server.receive_data(ws.text_frame(text) + ws.text_frame('{"event":"media"}'))
    assert server.events_received() == [Frame(Opcode.TEXT, text.encode()), Frame(Opcode.TEXT, b'{"event":"media"}')]
    server.receive_data(ws.close_frame(1000))
    assert server.events_received() == [Frame(Opcode.CLOSE, b"\x03\xe8")]


@pytest.mark.parametrize("piece", [1, 3, 7, 1000, 10**6])
def test_server_frames_parse_across_reads_and_fragments(piece: int) -> None:
    server, client = _open_pair()
    server.send_text(b'{"event":"media","payload":"' + b"A" * 300 + b'"}}')
    server.send_text(b'{"event":"mark",', fin=False)
    server.send_continuation(b'"mark":{"name":"greeting-1"}}', fin=True)
    server.send_binary(b"\x00" * 70000)
    server.send_ping(b"hi")
    server.send_close(1000, "bye")
    events = _feed(client, b"".join(server.data_to_send()), piece)
    assert events == [
        ws.Message(b'{"event":"media","payload":"' + b"A" * 300 + b'"}}', True),
        ws.Message(b'{"event":"mark","mark":{"name":"greeting-1"}}', True),
        ws.Message(b"\x00" * 70000, False),
        ws.Ping(b"hi"),
        ws.Close(1000, "bye"),
    ]
    assert client.state is ws.State.CLOSED


def test_handshake_and_framing_errors_are_refused() -> None:
    request, _ = ws.handshake_request("h:1", "/s")
    server = _server_accepting(request)
    response = b"".join(server.data_to_send())
    wrong = ws.ClientConnection(ws.accept_for("c29tZSBvdGhlciBrZXkhIQ=="))
    with pytest.raises(ws.ProtocolError, match="Accept"):
        wrong.receive_data(response)
    assert wrong.state is ws.State.CLOSED
    _, client = _open_pair()
    with pytest.raises(ws.ProtocolError, match="masked"):
        client.receive_data(ws.text_frame("a server never masks"))
    _, client = _open_pair()
    with pytest.raises(ws.ProtocolError, match="continuation"):
        client.receive_data(b"\x80\x01a")


def _value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


async def _ready(client: httpx.AsyncClient, url: str) -> bool:
    return (await client.get(f"{url}/readyz")).status_code == 200


async def test_a_short_call_hears_its_greeting_and_echoes_its_mark(agents_dir: Path) -> None:
    (agents_dir / "support.yaml").unlink()  # ChatTTS agent: without weights it would show as degraded
    idle, _ = caller_audio("noise", seed=1)
    loop = asyncio.get_running_loop()
    ticker = Ticker(loop.time)
    async with run_gateway({"VOICEGW_AGENTS_DIR": str(agents_dir)}) as url, httpx.AsyncClient() as client:
        await wait_until(lambda: _ready(client, url))  # fixed phrases pre-rendered
        pacing = asyncio.create_task(ticker.run())
        try:
            out = await one_call(client, url, "+15005550006", Script(idle, [], call_s=9.0), talk=False,
                                 stagger=0.0, rng=random.Random(1), ticker=ticker)
        finally:
            pacing.cancel()

        async def completed() -> bool:
            text = (await client.get(f"{url}/metrics")).text
            return _value(text, "voicegw_calls_total", agent="demo", outcome="completed") == 1

        await wait_until(completed)
        metrics = (await client.get(f"{url}/metrics")).text
    assert out.error == ""
    assert out.greeting and out.marks >= 1  # playout reached greeting-1 and the mark went back
    assert out.ttfa_s < 9.0 and out.heard_s > 2.0
    # Every outbound frame was counted (media messages sized without a JSON parse) ...
    assert out.heard_s == pytest.approx(_value(metrics, "voicegw_frames_sent_total") * 0.02)
    # ... and the gateway read every one of ours as Twilio's (no protocol error, no unknown mark).
    assert _value(metrics, "voicegw_protocol_errors_total") == 0
    assert _value(metrics, "voicegw_bounded_total", what="unknown_mark") == 0
    assert len(ticker.lags) > 300  # about 9 s of 20 ms ticks with the leg on them


class _Leg:
    def __init__(self) -> None:
        self.ticks: list[float] = []

    def tick(self, now: float, lag: float) -> bool:
        self.ticks.append(now)
        return len(self.ticks) < 5


async def test_the_ticker_keeps_each_leg_in_the_phase_it_joined_at() -> None:
    t = [100.0]
    ticker = Ticker(lambda: t[0])
    legs = [_Leg() for _ in range(4)]
    for leg, at in zip(legs, (100.000, 100.0051, 100.013, 100.0201), strict=True):
        t[0] = at
        ticker.add(leg)
    assert [len(slot) for slot in ticker.slots] == [2, 0, 1, 0, 0, 0, 1, 0, 0, 0]  # 0, 5.1, 13 and 20.1 ms
    # Run on the loop's clock: every leg is ticked once per period, legs of other phases on other ticks.
    loop = asyncio.get_running_loop()
    ticker = Ticker(loop.time)
    late = [_Leg(), _Leg()]
    ticker.slots[0].append(late[0])
    ticker.slots[5].append(late[1])
    run = asyncio.create_task(ticker.run())
    await wait_until(lambda: all(len(leg.ticks) == 5 for leg in late))
    run.cancel()
    assert not set(late[0].ticks) & set(late[1].ticks)
    assert all(s == [] for s in ticker.slots)  # a leg that is done leaves its slot
