"""A loopback stand-in for Twilio's REST API (the Calls resource), for the real ``twilio`` SDK.

Speaks the real wire format: ``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json``
with form fields (``Status``, ``Twiml``, ``Url``), HTTP Basic auth (account sid :
auth token), JSON call resources back, and Twilio's JSON error bodies
(``{"code": 20404, "message": …, "more_info": …, "status": 404}``).

Calls are "in progress" until hung up; a second hang-up answers 404/20404 as
Twilio does. ``hooks`` let a test react to a request (e.g. the emulator ends
its stream when the call is redirected or completed, as Twilio would).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.loopback_server import serve_fake


@dataclass(frozen=True)
class RestRequest:
    call_sid: str
    form: dict[str, str]
    at: float  # monotonic


@dataclass
class FakeTwilioRest:
    account_sid: str
    auth_token: str
    requests: list[RestRequest] = field(default_factory=list)
    ended: set[str] = field(default_factory=set)
    fail_with: tuple[int, int] | None = None  # (HTTP status, Twilio code) to answer every request with
    hooks: list[Callable[[RestRequest], Any]] = field(default_factory=list)
    url: str = ""

    def _error(self, status: int, code: int, message: str) -> JSONResponse:
        return JSONResponse({"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                             "status": status}, status_code=status)

    def _authorized(self, request: Request) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return request.headers.get("authorization", "") == f"Basic {expected}"

    async def update_call(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return self._error(401, 20003, "Authenticate")
        if request.path_params["account"] != self.account_sid:
            return self._error(404, 20404, "The requested resource was not found")
        call_sid = request.path_params["call"]
        form = {k: str(v) for k, v in (await request.form()).items()}
        req = RestRequest(call_sid, form, time.monotonic())
        self.requests.append(req)
        if self.fail_with is not None:
            http_status, code = self.fail_with
            return self._error(http_status, code, "Injected failure")
        if call_sid in self.ended:
            return self._error(404, 20404, f"The requested resource /Calls/{call_sid}.json was not found")
        if "Twiml" in form and "Url" in form:
            return self._error(400, 21205, "Twiml and Url are mutually exclusive")
        call_status = "in-progress"
        if form.get("Status") in ("completed", "canceled"):
            self.ended.add(call_sid)
            call_status = "completed"
        for hook in self.hooks:
            result = hook(req)
            if asyncio.iscoroutine(result):
                await result
        return JSONResponse({
            "sid": call_sid, "account_sid": self.account_sid, "status": call_status, "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{call_sid}.json",
        })

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/2010-04-01/Accounts/{account}/Calls/{call}.json", self.update_call, methods=["POST"]),
        ])


@asynccontextmanager
async def fake_twilio_rest(account_sid: str = "AC" + "0" * 32, auth_token: str = "fake-token") -> AsyncIterator[
        FakeTwilioRest]:
    fake = FakeTwilioRest(account_sid, auth_token)
    async with serve_fake(fake.app()) as url:
        fake.url = url
        yield fake
