"""The direct WebSocket lane (gateway/direct_ws.py) under a real uvicorn, with a real WebSocket client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from gateway.direct_ws import DirectWriter, _Handoff, direct_attach, text_frame
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

        def deliver(self, item: dict[str, Any]) -> None:
            seen.append(f"{self.name}:{item['text']}")

    handoff = _Handoff(budget_s=0.0)  # one message per callback
    a, b = Inbox("a"), Inbox("b")
    for i in range(2):
        handoff.put(a, {"type": "websocket.receive", "text": str(i)})  # type: ignore[arg-type]
        handoff.put(b, {"type": "websocket.receive", "text": str(i)})  # type: ignore[arg-type]
    asyncio.get_running_loop().call_soon(seen.append, "sender")
    await wait_until(lambda: len(seen) == 5)
    assert seen == ["a:0", "sender", "b:0", "a:1", "b:1"]
    assert not handoff.scheduled
