"""The real twilio SDK (async client) against a loopback Calls API: hang-up, 20404, transfer, failures."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from gateway.twilio.rest import TwilioRest, TwilioRestError
from tests.fake_twilio_rest import fake_twilio_rest


async def test_hangup_then_already_ended() -> None:
    async with fake_twilio_rest() as fake:
        rest = TwilioRest(fake.account_sid, fake.auth_token, base_url=fake.url)
        try:
            assert await rest.hangup("CA1") is True
            assert await rest.hangup("CA1") is False  # 404 / 20404: tolerated
        finally:
            await rest.aclose()
    assert [(r.call_sid, r.form) for r in fake.requests] == [("CA1", {"Status": "completed"})] * 2


async def test_transfer_sends_dial_twiml() -> None:
    async with fake_twilio_rest() as fake:
        rest = TwilioRest(fake.account_sid, fake.auth_token, base_url=fake.url)
        try:
            await rest.transfer("CA2", "+15551234567", say_first="Transferring you now.")
        finally:
            await rest.aclose()
    (req,) = fake.requests
    root = ET.fromstring(req.form["Twiml"])
    assert root.findtext("Dial") == "+15551234567"
    assert root.findtext("Say") == "Transferring you now."


async def test_wrong_credentials_and_server_errors_raise() -> None:
    async with fake_twilio_rest() as fake:
        rest = TwilioRest(fake.account_sid, "wrong", base_url=fake.url)
        try:
            with pytest.raises(TwilioRestError) as err:
                await rest.hangup("CA1")
            assert err.value.code == 20003
        finally:
            await rest.aclose()
        fake.fail_with = (500, 20500)
        rest = TwilioRest(fake.account_sid, fake.auth_token, base_url=fake.url)
        try:
            with pytest.raises(TwilioRestError, match="500"):
                await rest.transfer("CA1", "+1555")
        finally:
            await rest.aclose()


async def test_unreachable_api_raises() -> None:
    from tests.helpers import free_port

    rest = TwilioRest("AC" + "0" * 32, "t", base_url=f"http://127.0.0.1:{free_port()}", timeout_s=2)
    try:
        with pytest.raises(TwilioRestError, match="hang-up failed"):
            await rest.hangup("CA1")
    finally:
        await rest.aclose()
