"""The Twilio edge's process-wide parts, built once from settings (I/O shell).

Holds the signature verifier, the stream-token issuer, the used-token set,
the per-agent slot limiter (with its heartbeat task) and the Twilio REST
client. The logic lives in :mod:`gateway.twilio.security`, :mod:`gateway.twilio.replay`,
:mod:`gateway.ops.slots` and :mod:`gateway.twilio.rest`; this file only chooses
memory or Redis and owns the lifetimes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass, field

from gateway.ops.slots import MemoryLimiter, RedisLimiter, SlotLimiter
from gateway.settings import Settings
from gateway.twilio.replay import MemoryUsedTokens, RedisUsedTokens, UsedTokens
from gateway.twilio.rest import TwilioRest
from gateway.twilio.security import StreamTokens, WebhookVerifier, derive_secret

log = logging.getLogger("voicegw.edge")

STREAM_TOKEN_TTL_S = 120.0  # webhook → stream start; Twilio opens the stream within a second or two


@dataclass
class Edge:
    settings: Settings
    tokens: StreamTokens
    used_tokens: UsedTokens
    limiter: SlotLimiter
    verifier: WebhookVerifier | None = None  # None: signatures off (no TWILIO_AUTH_TOKEN)
    rest: TwilioRest | None = None  # None: no account sid / auth token, REST hang-up and transfer unavailable
    #: (agent, call sid) of the streams admitted here and not yet finished: the only slots the heartbeat refreshes.
    live_slots: set[tuple[str, str]] = field(default_factory=set)
    heartbeats: int = 0  # heartbeat rounds done (tests wait on it)
    pending_streams: int = 0  # media sockets accepted and not yet authenticated (VOICEGW_MAX_PENDING_STREAMS)
    calls_finished: int = 0
    _heartbeat: asyncio.Task[None] | None = None

    @classmethod
    def build(cls, settings: Settings) -> Edge:
        """Create inside the running event loop (the REST client's HTTP session binds to it)."""
        token = settings.twilio_auth_token
        secret = derive_secret(token, settings.stream_token_secret, secrets.token_bytes(32))
        if not token and not settings.stream_token_secret:
            log.warning("stream tokens use a random per-process key: set VOICEGW_STREAM_TOKEN_SECRET (or "
                        "TWILIO_AUTH_TOKEN) when several gateway instances share a number")
        used: UsedTokens
        limiter: SlotLimiter
        if settings.redis_url:
            used = RedisUsedTokens.from_url(settings.redis_url)
            limiter = RedisLimiter.from_url(settings.redis_url, ttl_s=settings.slot_ttl_s)
        else:
            used, limiter = MemoryUsedTokens(), MemoryLimiter(ttl_s=settings.slot_ttl_s)
        rest = None
        if token and settings.twilio_account_sid:
            rest = TwilioRest(settings.twilio_account_sid, token, base_url=settings.twilio_api_base_url)
        edge = cls(settings, StreamTokens(secret, STREAM_TOKEN_TTL_S), used, limiter,
                   WebhookVerifier(token) if token else None, rest)
        edge._heartbeat = asyncio.create_task(edge._beat(), name="slot-heartbeat")
        return edge

    async def _beat(self) -> None:
        """Keep the slots of running calls alive; a slot taken by a webhook whose stream never came (or was
        refused) is not in :attr:`live_slots`, so it expires ``slot_ttl_s`` after the webhook."""
        while True:
            await asyncio.sleep(self.settings.slot_ttl_s / 3)
            await self.limiter.heartbeat(set(self.live_slots))
            self.heartbeats += 1

    def issue_token(self, call_sid: str, agent_id: str) -> str:
        return self.tokens.issue(call_sid, agent_id, time.time(), secrets.token_hex(8))

    async def aclose(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        for closer in (self.used_tokens.aclose, self.limiter.aclose, self.rest.aclose if self.rest else None):
            if closer is not None:
                try:
                    await closer()
                except Exception as exc:  # closing one must not stop the others
                    log.warning("closing edge resource: %s", exc)
