"""Twilio REST calls the gateway makes: hang up a call, or redirect it to ``<Dial>`` (transfer).

Uses the official ``twilio`` client with its async HTTP client
(``AsyncTwilioHttpClient``, aiohttp). For tests and self-hosted fakes the API
base URL is overridable: the client's ``api`` domain carries a public
``base_url`` attribute (``https://api.twilio.com``) that every ``calls``
request is built from, so setting it points the real SDK at a loopback server
speaking the same wire format (``tests/fake_twilio_rest.py``).

"Call already ended" answers (HTTP 404 / error 20404, and 21220 "not in
progress") count as success for a hang-up: the caller may hang up first.
"""

from __future__ import annotations

import logging

from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from gateway.twilio import twiml

log = logging.getLogger("voicegw.twilio_rest")

ALREADY_ENDED = frozenset({20404, 21220})


class TwilioRestError(Exception):
    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class TwilioRest:
    """Create inside a running event loop (aiohttp); :meth:`aclose` when done."""

    def __init__(self, account_sid: str, auth_token: str, base_url: str | None = None,
                 timeout_s: float = 5.0) -> None:
        self._http = AsyncTwilioHttpClient(timeout=timeout_s)
        self._client = Client(account_sid, auth_token, http_client=self._http)
        if base_url:
            self._client.api.base_url = base_url.rstrip("/")
        self.requests = 0  # REST requests made (tests and the call summary read it)

    async def hangup(self, call_sid: str) -> bool:
        """End the call. True if this request ended it, False if it had already ended (20404/21220)."""
        self.requests += 1
        try:
            await self._client.calls(call_sid).update_async(status="completed")
        except TwilioRestException as exc:
            if exc.status == 404 or exc.code in ALREADY_ENDED:
                log.info("hang-up %s: call already ended (%s %s)", call_sid, exc.status, exc.code)
                return False
            raise TwilioRestError(f"hang-up failed: {exc.status} {exc.code} {exc.msg}", exc.code) from exc
        except Exception as exc:  # network, timeout: the caller decides (usually: close the stream instead)
            raise TwilioRestError(f"hang-up failed: {type(exc).__name__}: {exc}") from exc
        return True

    async def transfer(self, call_sid: str, number: str, say_first: str | None = None) -> None:
        """Replace the call's TwiML with ``<Dial>number</Dial>``: Twilio ends our stream and dials."""
        self.requests += 1
        try:
            await self._client.calls(call_sid).update_async(twiml=twiml.dial(number, say_first))
        except TwilioRestException as exc:
            raise TwilioRestError(f"transfer failed: {exc.status} {exc.code} {exc.msg}", exc.code) from exc
        except Exception as exc:
            raise TwilioRestError(f"transfer failed: {type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        await self._http.close()
