"""``voicegw say --agent ID "text" --out file.wav``: hear an agent's voice from the shell.

Uses the same services as ``voicegw serve`` (agents, engines, breakers) and the
agent's own provider chain and fallback policy; prints which provider spoke
each sentence and any fallback.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from gateway.settings import Settings
from gateway.startup import build_services
from tts.base import TTSError
from tts.fallback import Speaker
from tts.presets import agent_caveat
from tts.render import encode, render


async def say(settings: Settings, agent_id: str, text: str, out: Path) -> int:
    services = await build_services(settings, calls=False)  # speech only: no Twilio edge, no listening
    try:
        agent = services.store.get(agent_id)
        if agent is None:
            known = ", ".join(sorted(services.store.snapshot.agents)) or "none"
            print(f"voicegw: unknown agent {agent_id!r} (known: {known})", file=sys.stderr)
            return 2
        speaker = Speaker(services.engines, agent.tts, services.metrics, services.breakers)
        try:
            rendered = await render(speaker, text, language=agent.language, request_id="say")
        except TTSError as exc:
            print(f"voicegw: no provider could speak: {exc.reason}", file=sys.stderr)
            return 1
        if not rendered.providers:
            print("voicegw: nothing to say", file=sys.stderr)
            return 2
        await asyncio.to_thread(out.write_bytes, encode(rendered.pcm, "wav"))
        print(f"wrote {out}: {rendered.duration_s:.2f} s, providers {', '.join(rendered.providers)}, "
              f"processing {rendered.processing_s:.2f} s (RTF {rendered.rtf:.2f})"
              + (f"; fallbacks: {'; '.join(rendered.fallbacks)}" if rendered.fallbacks else ""))
        for provider in dict.fromkeys(rendered.providers):
            if (why := agent_caveat(agent.tts, provider)) is not None:
                print(f"voicegw: note: {why}")
        return 0
    finally:
        await services.aclose()
