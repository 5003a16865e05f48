"""A loopback OpenAI-compatible chat-completions server (streaming SSE) under real uvicorn.

It answers by keyword in the last user message, streams the reply token by
token in the real wire format (``data: {chat.completion.chunk}`` lines, tool
calls split across chunks, ``data: [DONE]``), and records every request body
so tests can check the history the gateway sent.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.loopback_server import serve_fake


@dataclass
class FakeReply:
    text: str = ""
    tool: str | None = None  # "hangup" | "transfer"
    args: dict[str, str] = field(default_factory=dict)
    token_delay_s: float = 0.005
    status: int = 200


@dataclass
class FakeLLM:
    rules: list[tuple[str, FakeReply]] = field(default_factory=list)
    default: FakeReply = field(default_factory=lambda: FakeReply("I'm not sure about that. Can you rephrase?"))
    requests: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)

    def reply_for(self, messages: list[dict[str, Any]]) -> FakeReply:
        last = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
        for keyword, reply in self.rules:
            if keyword in last.lower():
                return reply
        return self.default

    async def completions(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        self.auth.append(request.headers.get("authorization", ""))
        if not isinstance(body.get("messages"), list) or not body.get("model") or body.get("stream") is not True:
            return JSONResponse({"error": {"message": "bad request"}}, status_code=400)
        reply = self.reply_for(body["messages"])
        if reply.status != 200:
            return JSONResponse({"error": {"message": "fake failure"}}, status_code=reply.status)
        return StreamingResponse(self._sse(body["model"], reply), media_type="text/event-stream")

    async def _sse(self, model: str, reply: FakeReply) -> AsyncIterator[str]:
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            return "data: " + json.dumps({**base, "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"

        yield chunk({"role": "assistant", "content": ""})
        for token in re.findall(r"\S+\s*|\s+", reply.text):
            # split words in two sometimes, like real BPE tokens
            parts = [token[: len(token) // 2], token[len(token) // 2 :]] if len(token) > 6 else [token]
            for part in parts:
                await asyncio.sleep(reply.token_delay_s)
                yield chunk({"content": part})
        if reply.tool:
            args = json.dumps(reply.args)
            yield chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                         "function": {"name": reply.tool, "arguments": ""}}]})
            for part in (args[: len(args) // 2], args[len(args) // 2 :]):
                yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
            yield chunk({}, "tool_calls")
        else:
            yield chunk({}, "stop")
        yield "data: [DONE]\n\n"

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.completions, methods=["POST"])])


@asynccontextmanager
async def run_fake_llm(fake: FakeLLM) -> AsyncIterator[str]:
    """Serve ``fake`` on a free loopback port; yields the base URL (``http://127.0.0.1:PORT/v1``)."""
    async with serve_fake(fake.app()) as url:
        yield f"{url}/v1"
