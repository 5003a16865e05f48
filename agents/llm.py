"""LLM agents: any OpenAI-compatible chat-completions endpoint, streamed.

One :class:`LLMLogic` per call keeps that call's history. A caller utterance
becomes a ``user`` message; the reply streams back as text deltas (server-sent
events, ``stream: true``) that the conversation chunks into sentences while
the model is still writing. Two tools are offered: ``hangup`` and, when the
agent lists ``transfer_numbers``, ``transfer(number)`` restricted to those
numbers (a model cannot dial anything else).

If the caller interrupts, iteration stops early; the partial reply is kept in
the history and :meth:`LLMLogic.truncate_to_heard` then cuts it to what the
caller actually heard (from the mark ledger), so the model does not believe it
said things nobody heard. Endpoint failures are logged and answered with the
agent's apology phrase; the call goes on.

Why httpx rather than the ``openai`` SDK: the streaming wire format is small,
httpx is already a dependency, and any compatible server (vLLM, Ollama,
llama.cpp) works without the SDK's provider assumptions.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import httpx

from agents.logic import (
    CallStarted,
    Dtmf,
    Hangup,
    LogicEvent,
    Output,
    Phrase,
    SilenceTimeout,
    Transfer,
    Utterance,
)
from agents.spec import AgentSpec
from agents.spec import LLMLogic as LLMSpec

log = logging.getLogger("voicegw.llm")

MAX_HISTORY = 40  # messages kept after the system prompt


class LLMError(Exception):
    pass


def tools_for(spec: LLMSpec) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = [{
        "type": "function",
        "function": {
            "name": "hangup",
            "description": "End the call after your goodbye (the caller said goodbye or the conversation is over).",
            "parameters": {"type": "object", "properties": {}},
        },
    }]
    if spec.transfer_numbers:
        tools.append({
            "type": "function",
            "function": {
                "name": "transfer",
                "description": "Transfer the caller to a person at one of the allowed numbers.",
                "parameters": {
                    "type": "object",
                    "properties": {"number": {"type": "string", "enum": list(spec.transfer_numbers)}},
                    "required": ["number"],
                },
            },
        })
    return tools


class LLMLogic:
    def __init__(self, agent: AgentSpec, env: Mapping[str, str] | None = None,
                 timeout: httpx.Timeout | None = None) -> None:
        if not isinstance(agent.logic, LLMSpec):
            raise TypeError(f"agent {agent.id} is not an LLM agent")
        self.agent = agent
        self.spec: LLMSpec = agent.logic
        env = os.environ if env is None else env
        self.api_key = env.get(self.spec.api_key_env) if self.spec.api_key_env else None
        if self.spec.api_key_env and not self.api_key:
            log.warning("agent %s: env var %s (API key) is not set", agent.id, self.spec.api_key_env)
        self.messages: list[dict[str, Any]] = [{"role": "system", "content": self.spec.system_prompt}]
        self._client = httpx.AsyncClient(timeout=timeout or httpx.Timeout(20.0, connect=5.0))
        self.url = self.spec.base_url.rstrip("/") + "/chat/completions"

    # ---- history -----------------------------------------------------------------------------------------------
    def _add(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        excess = len(self.messages) - 1 - MAX_HISTORY
        if excess > 0:
            rest = self.messages[1 + excess :]
            while rest and rest[0]["role"] in ("tool", "assistant"):
                rest.pop(0)  # never start with an orphan tool result or a reply to a dropped question
            self.messages[1:] = rest

    def checkpoint(self) -> object:
        return copy.deepcopy(self.messages)

    def rollback(self, state: object) -> None:
        assert isinstance(state, list)
        self.messages = copy.deepcopy(state)

    def truncate_to_heard(self, heard: str) -> None:
        for i in range(len(self.messages) - 1, 0, -1):
            msg = self.messages[i]
            if msg["role"] != "assistant":
                continue
            if msg.get("tool_calls"):
                msg["content"] = heard or None
            elif heard:
                msg["content"] = heard
            else:
                del self.messages[i]
            return

    # ---- events ------------------------------------------------------------------------------------------------
    async def respond(self, event: LogicEvent) -> AsyncIterator[Output]:
        if isinstance(event, CallStarted):
            self._add({"role": "assistant", "content": self.agent.greeting})
            yield Phrase(self.agent.greeting)
        elif isinstance(event, SilenceTimeout):
            text = self.spec.goodbye if event.final else self.agent.turn_taking.reprompt
            self._add({"role": "assistant", "content": text})
            yield Phrase(text)
            if event.final:
                yield Hangup()
        elif isinstance(event, Utterance | Dtmf):
            content = event.text if isinstance(event, Utterance) else _keys(event)
            if isinstance(event, Utterance) and not content.strip():
                return
            self._add({"role": "user", "content": content})
            completion = self._complete()
            try:
                async for out in completion:
                    yield out
            finally:
                await completion.aclose()  # abandoned (barge-in): record the partial reply now, not at GC

    async def _complete(self) -> AsyncGenerator[Output, None]:
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        done = False
        stream = self._stream()
        try:
            try:
                async for delta in stream:
                    content = delta.get("content")
                    if content:
                        text.append(content)
                        yield content
                    for tc in delta.get("tool_calls") or []:
                        slot = calls.setdefault(int(tc.get("index", 0)), {"id": "", "name": "", "arguments": ""})
                        slot["id"] = tc.get("id") or slot["id"]
                        fn = tc.get("function") or {}
                        slot["name"] += fn.get("name") or ""
                        slot["arguments"] += fn.get("arguments") or ""
            except (httpx.HTTPError, LLMError, ValueError) as exc:
                log.error("agent %s: LLM request failed: %s", self.agent.id, exc)
                done = True
                if text:
                    self._add({"role": "assistant", "content": "".join(text)})
                yield Phrase(self.agent.turn_taking.apology)
                return
            done = True
            actions = self._record("".join(text), calls)
            if actions and not text and isinstance(actions[0], Hangup):
                yield Phrase(self.spec.goodbye)
            for action in actions:
                yield action
        finally:
            await stream.aclose()  # closes the HTTP response at once
            if not done and text:  # abandoned mid-stream (barge-in): keep what was generated
                self._add({"role": "assistant", "content": "".join(text)})

    def _record(self, text: str, calls: dict[int, dict[str, str]]) -> list[Output]:
        """Append the reply (and tool results) to the history; the actions to take."""
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            message["tool_calls"] = [
                {"id": c["id"] or f"call_{i}", "type": "function",
                 "function": {"name": c["name"], "arguments": c["arguments"] or "{}"}}
                for i, c in sorted(calls.items())
            ]
        self._add(message)
        actions: list[Output] = []
        for i, c in sorted(calls.items()):
            result = "ok"
            if c["name"] == "hangup":
                actions.append(Hangup())
            elif c["name"] == "transfer":
                try:
                    number = json.loads(c["arguments"] or "{}").get("number", "")
                except ValueError:
                    number = ""
                if number in self.spec.transfer_numbers:
                    actions.append(Transfer(number))
                else:
                    result = f"error: {number!r} is not an allowed transfer number"
                    log.warning("agent %s: model asked to transfer to %r (not allowed)", self.agent.id, number)
            else:
                result = f"error: unknown tool {c['name']!r}"
            self._add({"role": "tool", "tool_call_id": c["id"] or f"call_{i}", "content": result})
        return actions

    async def _stream(self) -> AsyncGenerator[dict[str, Any], None]:
        body = {
            "model": self.spec.model, "messages": self.messages, "temperature": self.spec.temperature,
            "max_tokens": self.spec.max_tokens, "stream": True, "tools": tools_for(self.spec),
        }
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        async with self._client.stream("POST", self.url, json=body, headers=headers) as resp:
            if resp.status_code != 200:
                detail = (await resp.aread())[:200].decode("utf-8", "replace")
                raise LLMError(f"{self.url} answered {resp.status_code}: {detail}")
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                chunk = json.loads(data)
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta")
                    if isinstance(delta, dict):
                        yield delta

    async def aclose(self) -> None:
        await self._client.aclose()


def _keys(event: Dtmf) -> str:
    if not event.earlier:
        return f"[The caller pressed the key {event.digit}]"
    return f"[The caller pressed the keys {' '.join(event.digits)}]"
