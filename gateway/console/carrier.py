"""The browser carrier: ``/console/call`` (placeholder until the call core's carrier seam lands)."""

from __future__ import annotations

from starlette.websockets import WebSocket

from gateway.console.guard import denied


async def console_call(ws: WebSocket) -> None:
    if denied(ws) is not None:
        await ws.close(1008)
        return
    await ws.accept()
    await ws.send_json({"type": "error", "message": "console calls are not available in this build yet"})
    await ws.close(1011)
