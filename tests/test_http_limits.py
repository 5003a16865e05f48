"""Bodies read before authentication are bounded and refused with a 4xx, never a 500 (real uvicorn)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from starlette.datastructures import FormData
from twilio.request_validator import RequestValidator

from gateway.http_limits import SPEECH_MAX_BODY, WEBHOOK_MAX_BODY
from tests.helpers import ACCOUNT, PUBLIC, TOKEN, counter, env_for, gateway_with_services

FORM = {"CallSid": "CA1", "AccountSid": ACCOUNT, "From": "+14155550100", "To": "+15005550006"}


async def _chunks(total: int, size: int = 8192) -> AsyncIterator[bytes]:
    for _ in range(total // size):
        yield b"a" * size


async def test_webhooks_take_only_small_urlencoded_forms(agents_dir: Path) -> None:
    async with gateway_with_services(env_for(agents_dir)) as (url, services), httpx.AsyncClient(base_url=url) as c:
        for path in ("/twilio/voice", "/twilio/status"):
            multipart = await c.post(path, files={"upload": ("x.bin", b"\0" * 1000)}, data=FORM)
            assert multipart.status_code == 415
            as_json = await c.post(path, json=FORM)
            assert as_json.status_code == 415
            big = await c.post(path, content=b"a=" + b"b" * WEBHOOK_MAX_BODY,
                               headers={"content-type": "application/x-www-form-urlencoded"})
            assert big.status_code == 413
            chunked = await c.post(path, content=_chunks(10 * WEBHOOK_MAX_BODY),
                                   headers={"content-type": "application/x-www-form-urlencoded"})
            assert chunked.status_code == 413  # no Content-Length: counted as it streams
            not_utf8 = await c.post(path, content=b"CallSid=%ff%fe",
                                    headers={"content-type": "application/x-www-form-urlencoded"})
            assert not_utf8.status_code == 400
            raw_bytes = await c.post(path, content=b"CallSid=\xff",
                                     headers={"content-type": "application/x-www-form-urlencoded"})
            assert raw_bytes.status_code == 400
            many = await c.post(path, content=b"&".join(b"f%d=1" % i for i in range(1000)),
                                headers={"content-type": "application/x-www-form-urlencoded"})
            assert many.status_code == 400
        # a genuine signed form with a charset parameter and a repeated field still gets through
        form: list[tuple[str, Any]] = [*FORM.items(), ("Extra", "1"), ("Extra", "2")]
        signature = RequestValidator(TOKEN).compute_signature(f"{PUBLIC}/twilio/voice", FormData(form))
        ok = await c.post("/twilio/voice", content=str(httpx.QueryParams(form)).encode(), headers={
            "content-type": "application/x-www-form-urlencoded; charset=utf-8", "X-Twilio-Signature": signature})
        assert ok.status_code == 200 and "<Stream" in ok.text, ok.text
        assert counter(services, "voicegw_webhook_rejected_total", reason="bad_body") == 14


async def test_speech_body_is_capped_and_deep_nesting_is_a_400(agents_dir: Path) -> None:
    env = env_for(agents_dir, VOICEGW_API_KEY="sekret")
    auth = {"Authorization": "Bearer sekret", "content-type": "application/json"}
    async with gateway_with_services(env) as (url, _), httpx.AsyncClient(base_url=url, timeout=60) as c:
        big = await c.post("/v1/audio/speech", content=b'{"text": "' + b"a" * SPEECH_MAX_BODY + b'"}', headers=auth)
        assert big.status_code == 413 and "body" in big.text
        chunked = await c.post("/v1/audio/speech", content=_chunks(4 * SPEECH_MAX_BODY), headers=auth)
        assert chunked.status_code == 413
        deep = await c.post("/v1/audio/speech", content=b"[" * 30000 + b"]" * 30000, headers=auth)
        assert deep.status_code == 400 and "JSON" in deep.text
        deep_field = await c.post("/v1/audio/speech", headers=auth,
                                  content=b'{"text": ' + b"[" * 20000 + b"]" * 20000 + b"}")
        assert deep_field.status_code == 400


async def test_non_ascii_authorization_is_a_401_everywhere(agents_dir: Path) -> None:
    env = env_for(agents_dir, VOICEGW_API_KEY="sekret")
    async with gateway_with_services(env) as (url, _), httpx.AsyncClient(base_url=url, timeout=60) as c:
        for header in (b"Bearer s\xe9kret", b"Bearer \xff\xfe\x80", "Bearer sékret".encode(), b"\xc3\xa9"):
            h = {b"Authorization": header}
            assert (await c.get("/metrics", headers=h)).status_code == 401
            assert (await c.post("/admin/drain", headers=h)).status_code == 401
            assert (await c.get("/v1/voices", headers=h)).status_code == 401
            assert (await c.post("/v1/audio/speech", json={"text": "hi"}, headers=h)).status_code == 401
