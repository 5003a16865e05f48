"""The direct WebSocket lane (gateway/direct_ws.py) under a real uvicorn, with a real WebSocket client."""

from __future__ import annotations

import asyncio
import gc
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from bench import ws_client
from gateway.direct_ws import DirectWebSocketProtocol, DirectWriter, _Handoff, _Inbox, direct_attach, text_frame
from gateway.serve import serve_in_loop
from gateway.settings import Settings
from tests.helpers import wait_until


class Sink:
    def __init__(self, fail_on: str | None = None) -> None:
        self.messages: list[str | bytes] = []
        self.closed: list[int | None] = []
        self.fail_on = fail_on
        self.ended = asyncio.Event()
        self.got = asyncio.Event()

    def on_message(self, data: str | bytes) -> None:
        if data == self.fail_on:
            raise RuntimeError("a bug in this call's handler")
        self.messages.append(data)
        self.got.set()

    def on_closed(self, code: int | None) -> None:
        self.closed.append(code)
        self.ended.set()


@asynccontextmanager
async def lane_server(**uvicorn_kw: Any) -> AsyncIterator[tuple[str, list[tuple[Sink, DirectWriter | None]]]]:
    """A route that reads its first message through ASGI, attaches a sink, writes back what the first said."""
    attached: list[tuple[Sink, DirectWriter | None]] = []

    async def route(ws: WebSocket) -> None:
        await ws.accept()
        first = await ws.receive_text()
        attach = direct_attach(ws.scope)
        sink = Sink(fail_on="boom")
        if attach is None:  # not served by the direct protocol
            attached.append((sink, None))
            await ws.close()
            return
        await asyncio.sleep(0.05)  # messages sent meanwhile queue up for the app, as before attach in a call
        writer = attach(sink)
        attached.append((sink, writer))
        assert writer.send_text(f"echo {first}")
        await sink.ended.wait()
        assert not writer.send_text("after the end")  # nothing is written to a closed connection

    app = Starlette(routes=[WebSocketRoute("/ws", route)])
    async with serve_in_loop(app, Settings(), lifespan="off", **uvicorn_kw) as url:
        yield url.replace("http://", "ws://") + "/ws", attached


async def test_messages_reach_the_sink_in_order_with_those_queued_before_attach_first() -> None:
    async with lane_server() as (url, attached):
        async with connect(url, compression=None) as client:
            await client.send("start")
            for i in range(200):  # the first ones arrive while the app sleeps: queued, then handed over in order
                await client.send(f"m{i}")
            await client.send(b"\x01\x02")
            assert await client.recv() == "echo start"
            await wait_until(lambda: attached and len(attached[0][0].messages) == 201)
            sink = attached[0][0]
            assert sink.messages == [f"m{i}" for i in range(200)] + [b"\x01\x02"]
            assert sink.closed == []
        await asyncio.wait_for(sink.ended.wait(), 10)
        assert sink.closed == [1000]  # the client's close, once


async def test_a_failing_sink_closes_only_its_own_connection_with_1011() -> None:
    async with lane_server() as (url, attached):
        async with connect(url, compression=None) as bad, connect(url, compression=None) as good:
            await bad.send("start")
            assert await bad.recv() == "echo start"
            await good.send("start")
            assert await good.recv() == "echo start"
            await bad.send("boom")
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(bad.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
            await good.send("still here")
            sinks = [s for s, _ in attached]
            await wait_until(lambda: any(s.messages == ["still here"] for s in sinks))
            failed = next(s for s in sinks if s.messages != ["still here"])
            assert failed.closed == [1011] and failed.messages == []


async def test_plain_uvicorn_offers_no_direct_lane() -> None:
    async with lane_server(ws="websockets-sansio") as (url, attached):
        async with connect(url, compression=None) as client:
            await client.send("start")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(client.recv(), 10)
        assert len(attached) == 1 and attached[0][1] is None


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_text_frames_are_what_websockets_writes(size: int) -> None:
    text = "é" * (size // 2) + "a" * (size % 2)
    assert text_frame(text) == Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


async def test_the_handoff_lets_what_is_already_scheduled_run_once_its_budget_is_spent() -> None:
    """Inbound work yields to callbacks already scheduled (the paced senders) after its budget, in order."""
    seen: list[str] = []

    class Inbox:
        def __init__(self, name: str) -> None:
            self.name = name
            self.waiting: list[str] = []

        def deliver_next(self) -> None:
            seen.append(f"{self.name}:{self.waiting.pop(0)}")

    handoff = _Handoff(budget_s=0.0)  # one message per callback
    a, b = Inbox("a"), Inbox("b")
    for i in range(2):
        for inbox in (a, b):
            inbox.waiting.append(str(i))
            handoff.put(inbox)  # type: ignore[arg-type]
    asyncio.get_running_loop().call_soon(seen.append, "sender")
    await wait_until(lambda: len(seen) == 5)
    assert seen == ["a:0", "sender", "b:0", "a:1", "b:1"]
    assert not handoff.scheduled


async def test_a_backlog_of_messages_adds_nothing_for_the_collector_to_walk() -> None:
    """Waiting messages cost the collector nothing: 10,000 of them queued add no tracked object (a queue of
    (inbox, text) tuples added one per message, all walked by every young collection while the core was
    busy)."""
    delivered: list[str | bytes] = []

    class Sink:
        def on_message(self, data: str | bytes) -> None:
            delivered.append(data)

        def on_closed(self, code: int | None) -> None:
            pass

    inbox = _Inbox()
    inbox.sink = Sink()
    inbox.handoff = handoff = _Handoff()
    texts = [f'{{"event":"media","n":{i}}}' for i in range(10_000)]  # (built first: str is never tracked)
    enabled = gc.isenabled()
    gc.disable()
    try:
        gc.collect()
        before = len(gc.get_objects(0))
        for text in texts:
            inbox.put_nowait(text)
        added = len(gc.get_objects(0)) - before
    finally:
        if enabled:
            gc.enable()
    assert added < 100, added
    await wait_until(lambda: not handoff.scheduled)
    assert delivered == texts  # every one, in order


class StandardFraming(DirectWebSocketProtocol):
    """The lane without its own frame reading: websockets parses every byte (the reference)."""

    data_received = WebSocketsSansIOProtocol.data_received


class CountingFraming(DirectWebSocketProtocol):
    frames_here = 0

    def _read_frames(self, data: bytes) -> None:
        CountingFraming.frames_here += 1
        super()._read_frames(data)


def _frame(opcode: Opcode, data: bytes, *, fin: bool = True) -> bytes:
    return Frame(opcode, data, fin=fin).serialize(mask=True, extensions=[])


def _raw(first: int, payload: bytes, *, masked: bool = True, length: int | None = None) -> bytes:
    """A frame written by hand (what websockets' serializer refuses to write): first byte as given."""
    n = len(payload) if length is None else length
    if n < 126:
        ext = bytes([n])
    else:
        ext = bytes([126]) + n.to_bytes(2, "big") if n < 65536 else bytes([127]) + n.to_bytes(8, "big")
    head = bytes([first, ext[0] | (0x80 if masked else 0)]) + ext[1:]
    return head + (b"\0\0\0\0" if masked else b"") + payload


_ENDINGS: dict[str, bytes] = {
    "close": _frame(Opcode.CLOSE, b"\x03\xe8bye"),
    "eof": b"",
    "bad-utf8": _frame(Opcode.TEXT, b"ok \xff\xfe"),
    "unmasked": _raw(0x81, b"unmasked", masked=False),
    "rsv1": _raw(0xC1, b"compressed?"),
    "stray-cont": _frame(Opcode.CONT, b"no start"),
    "too-big": _raw(0x81, b"", length=2**20 + 1),
    "text-inside-fragments": _frame(Opcode.TEXT, b"part", fin=False) + _frame(Opcode.TEXT, b"again"),
}


def _scenario(seed: int, ending: str) -> tuple[bytes, list[str | bytes]]:
    """The bytes a client sends and the messages in them (before the ending)."""
    rng = random.Random(seed)
    out: list[bytes] = []
    messages: list[str | bytes] = ["whole"]  # sent first by _play
    for i in range(rng.randrange(60, 140)):
        kind = rng.random()
        if kind < 0.70:  # a media-like message, 7-bit or 16-bit length
            size = rng.choice([0, 5, 125, 126, 300, 2000])
            text = (f"{i}:" + "é" * size)[:size or 1]
            out.append(_frame(Opcode.TEXT, text.encode()))
            messages.append(text)
        elif kind < 0.78:
            data = rng.randbytes(rng.randrange(0, 300))
            out.append(_frame(Opcode.BINARY, data))
            messages.append(data)
        elif kind < 0.86:
            out.append(_frame(Opcode.PING, rng.randbytes(rng.randrange(0, 20))))
        elif kind < 0.90:
            out.append(_frame(Opcode.PONG, b"unsolicited"))
        else:  # a fragmented message with a ping between its pieces
            out.append(_frame(Opcode.TEXT, f"frag{i}-a".encode(), fin=False) + _frame(Opcode.PING, b"mid")
                       + _frame(Opcode.CONT, b"-b", fin=False) + _frame(Opcode.CONT, b"-c"))
            messages.append(f"frag{i}-a-b-c")
    return b"".join(out) + _ENDINGS[ending], messages


async def _play(url: str, stream: bytes, seed: int) -> bytes:
    """Handshake and ``start``, then ``stream`` in random pieces; everything the server wrote, to its EOF."""
    host, port = url.removeprefix("ws://").split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    request, _ = ws_client.handshake_request(f"{host}:{port}", "/ws")
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    writer.write(_frame(Opcode.TEXT, b"start"))
    echo = text_frame("echo start")  # the server's frame: unmasked
    assert await reader.readexactly(len(echo)) == echo  # the sink is attached
    writer.write(_frame(Opcode.TEXT, b"whole"))  # a read that ends where a frame ends: the lane takes over
    await asyncio.sleep(0.05)
    rng = random.Random(seed)
    at = 0
    while at < len(stream):
        step = rng.choice([1, 2, 3, 7, 50, 300, 4000])
        writer.write(stream[at:at + step])
        at += step
        await writer.drain()
        await asyncio.sleep(0.001 if rng.random() < 0.3 else 0)  # separate reads, most of the time
    writer.write_eof()
    got = await asyncio.wait_for(reader.read(), 20)
    writer.close()
    return got


@pytest.mark.parametrize("ending", sorted(_ENDINGS))
async def test_frames_read_by_the_lane_equal_websockets_reading_them(ending: str) -> None:
    """The same bytes, split at random, through the lane's own frame reading and through websockets alone:
    the client gets back the same bytes (pongs, the close frame with its code) and the sink the same close
    code, whatever the ending — a clean close, EOF, or each kind of bad frame. The lane hands over every
    message sent before the ending; uvicorn alone drops the messages of the read that held a bad frame
    (it discards that read's parsed events), so its list is a prefix of that."""
    results = []
    CountingFraming.frames_here = 0
    for protocol in (StandardFraming, CountingFraming):
        async with lane_server(ws=protocol) as (url, attached):
            for seed in range(3):
                stream, sent = _scenario(seed, ending)
                written = await _play(url, stream, seed)
                sink = attached[-1][0]
                await asyncio.wait_for(sink.ended.wait(), 20)
                results.append((sent, sink.messages, sink.closed, written))
    assert CountingFraming.frames_here > 0  # the lane did read frames itself
    for (sent, messages, closed, written), (_, lane, lane_closed, lane_written) in zip(
            results[:3], results[3:], strict=True):
        assert lane == sent
        assert messages == sent[:len(messages)] and (len(messages) == len(sent) or ending not in ("close", "eof"))
        assert lane_closed == closed
        assert lane_written == written
