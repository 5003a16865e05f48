"""The Twilio edge end to end: real uvicorn, real WebSockets, the emulator, the real twilio SDK on a fake REST API."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator

from gateway.call import CallSession
from gateway.carrier import Digit
from gateway.conversation import Conversation
from gateway.twilio.emulator import CallControl, EmulatorError, TwilioEmulator, parse_stream
from gateway.twilio.link import TwilioLink
from tests.fake_twilio_rest import FakeTwilioRest, fake_twilio_rest
from tests.helpers import (
    ACCOUNT,
    PUBLIC,
    TOKEN,
    RedisServer,
    counter,
    env_for,
    gateway_with_services,
    session_of,
    wait_until,
)


async def test_signed_call_marks_drive_the_ledger_and_dtmf_reaches_the_agent(agents_dir: Path) -> None:
    async with gateway_with_services(env_for(agents_dir)) as (url, services):
        emu = TwilioEmulator(url, auth_token=TOKEN, public_url=PUBLIC)
        seen: list[object] = []

        async def script(c: CallControl) -> None:
            s = await session_of(services, c.call_sid)
            s.observers.append(seen.append)
            assert s.ledger.queued() == ["greeting-1"] and s.ledger.heard() == []
            assert await s.wait_heard("greeting-1", timeout_s=60)
            assert s.ledger.heard() == ["greeting-1"] and s.ledger.heard_text() == s.agent.greeting
            assert c.result.marks_echoed == ["greeting-1"]
            await c.dtmf("5")
            await wait_until(lambda: s.dtmf == ["5"])
            # served as `voicegw serve` serves it: the caller's audio reached the call on the direct lane's hot path
            assert isinstance(s.link, TwilioLink) and s.link.audio_taken_now > 0

        result = await emu.call(agent="demo", script=script, hold_s=0.1, max_s=60)
        assert result.errors == [] and result.odd_frames == 0 and result.handshake_status is None
        assert Digit("5") in seen
        assert result.status_events == ["stream-started", "stream-stopped"] and result.status_codes == [204, 204]
        assert result.seconds > 3.0 and result.time_to_first_audio is not None
        assert counter(services, "voicegw_webhook_rejected_total", reason="bad_signature") == 0


async def test_unsigned_and_forged_webhooks_get_403_before_any_work(agents_dir: Path) -> None:
    async with gateway_with_services(env_for(agents_dir)) as (url, services):
        form = {"CallSid": "CA1", "AccountSid": ACCOUNT, "From": "+1", "To": "+15005550006"}
        async with httpx.AsyncClient() as client:
            assert (await client.post(f"{url}/twilio/voice", data=form)).status_code == 403
            forged = RequestValidator("wrong-token").compute_signature(f"{PUBLIC}/twilio/voice", form)
            resp = await client.post(f"{url}/twilio/voice", data=form, headers={"X-Twilio-Signature": forged})
            assert resp.status_code == 403
            # Signed for the Host it reached rather than the public URL: rejected too.
            local = RequestValidator(TOKEN).compute_signature(f"{url}/twilio/voice", form)
            resp = await client.post(f"{url}/twilio/voice", data=form, headers={"X-Twilio-Signature": local})
            assert resp.status_code == 403
            assert (await client.post(f"{url}/twilio/status", data=form)).status_code == 403
        with pytest.raises(EmulatorError, match="403"):
            await TwilioEmulator(url, auth_token="wrong", public_url=PUBLIC).fetch_twiml(agent="demo")
        assert counter(services, "voicegw_webhook_rejected_total", reason="bad_signature") == 5
        assert await services.twilio_edge().limiter.active("demo") == 0  # no slot was taken


async def test_forged_upgrade_missing_forged_and_replayed_tokens_are_refused(agents_dir: Path) -> None:
    async with gateway_with_services(env_for(agents_dir)) as (url, services):
        edge = services.twilio_edge()
        emu = TwilioEmulator(url, auth_token=TOKEN, public_url=PUBLIC)
        twiml, call_sid = await emu.fetch_twiml(agent="demo")
        stream = parse_stream(twiml)
        assert stream is not None
        _, params = stream
        # A forged upgrade signature: HTTP 403 at the handshake.
        result = await emu.open_stream(twiml, call_sid, signature="Zm9yZ2Vk")
        assert result.handshake_status == 403
        # No token / a forged token / a token of another call: closed right after `start`, no call state.
        for bad in ({"agent": "demo"}, {**params, "call_token": params["call_token"][:-3] + "AAA"}):
            result = await emu.open_stream(twiml, call_sid, params=bad, max_s=10)
            assert result.close_code == 1008 and not result.audio
        result = await emu.open_stream(twiml, "CA" + "9" * 32, max_s=10)
        assert result.close_code == 1008 and not result.audio
        assert edge.calls_finished == 0
        # The genuine token works once (unsigned upgrade: allowed, the token is the proof)...
        result = await emu.open_stream(twiml, call_sid, signature="", hold_s=0.1, max_s=60)
        assert result.marks_echoed == ["greeting-1"] and edge.calls_finished == 1
        # ...and a replay of it is refused.
        result = await emu.open_stream(twiml, call_sid, max_s=10)
        assert result.close_code == 1008 and not result.audio
        assert edge.calls_finished == 1
        assert counter(services, "voicegw_webhook_rejected_total", reason="bad_stream_token") == 3
        assert counter(services, "voicegw_webhook_rejected_total", reason="replayed_stream_token") == 1
        assert services.call_tasks.live == 0


async def test_clear_mid_sentence_stops_audio_within_a_frame(agents_dir: Path) -> None:
    async with gateway_with_services(env_for(agents_dir)) as (url, services):
        # As in production once /readyz is ready: the greeting comes pre-rendered, its frames and its mark queued
        # at once (on a loaded machine the startup render can take longer than the call takes to arrive).
        assert services.prerendering is not None
        await asyncio.wait_for(services.prerendering, 120)
        emu = TwilioEmulator(url, auth_token=TOKEN, public_url=PUBLIC)
        state: dict[str, Any] = {}

        async def script(c: CallControl) -> None:
            s = await session_of(services, c.call_sid)
            await wait_until(lambda: len(c.result.media_times) >= 40, within_s=60)  # 0.8 s into the greeting
            state["gone"] = await s.interrupt()
            await asyncio.sleep(1.0)  # room for a wrongly sent frame to show up (the check below is by order)
            assert s.ledger.cleared_marks() == ["greeting-1"] and s.ledger.heard() == []
            state["said_at"] = emu.clock() - c.t0
            reply = s.say("We are open from nine to five.")  # the next turn plays normally
            assert await s.wait_heard(reply, timeout_s=60)
            state["ledger"] = (s.ledger.heard(), s.ledger.cleared_marks())

        result = await emu.call(agent="demo", script=script, hold_s=0.1, max_s=90)
        assert result.errors == [] and result.clears == 1
        assert state["gone"] == ["greeting-1"]
        clear_at = result.clear_times[0]
        # Socket order is send order: no media of the interrupted turn arrived after `clear` (at most one frame).
        # (Frames sent before `clear` but read after interrupt() returned arrive before it: not counted, rightly.)
        late_media = [t for t in result.media_times if clear_at < t < state["said_at"]]
        assert len(late_media) <= 1
        # Mid-sentence, the greeting's mark was still queued behind its audio: dropped here, never sent or echoed.
        assert "greeting-1" not in result.marks_echoed + result.marks_cleared
        assert state["ledger"] == (["sentence-2"], ["greeting-1"])


async def test_stop_and_abrupt_close_clean_up_every_task(agents_dir: Path) -> None:
    async with gateway_with_services(env_for(agents_dir)) as (url, services):
        edge = services.twilio_edge()
        emu = TwilioEmulator(url, auth_token=TOKEN, public_url=PUBLIC)
        baseline = len(asyncio.all_tasks())

        async def hang_up_abruptly(c: CallControl) -> None:
            await wait_until(lambda: len(c.result.media_times) > 10, within_s=60)
            await c.ws.close()  # no `stop`: a dropped connection

        async def stop_mid_greeting(c: CallControl) -> None:
            await wait_until(lambda: len(c.result.media_times) > 10, within_s=60)  # then the emulator sends `stop`

        # `stop` once after the whole greeting was heard (an idle call), twice while audio is still being sent.
        scripts = [None, hang_up_abruptly, stop_mid_greeting, hang_up_abruptly, stop_mid_greeting, hang_up_abruptly]
        for i, script in enumerate(scripts):
            await emu.call(agent="demo", script=script, hold_s=0.0, max_s=60)
            await wait_until(lambda n=i: edge.calls_finished == n + 1)
            assert services.call_tasks.live == 0 and services.calls == {} and services.active_calls == 0
            assert await edge.limiter.active("demo") == 0
        assert counter(services, "voicegw_calls_total", agent="demo", outcome="completed") == 3
        assert counter(services, "voicegw_calls_total", agent="demo", outcome="caller_hangup") == 3
        await wait_until(lambda: len(asyncio.all_tasks()) <= baseline, within_s=10)


async def test_malformed_messages_on_one_call_leave_a_concurrent_call_alone(agents_dir: Path) -> None:
    async with gateway_with_services(env_for(agents_dir)) as (url, services):
        emu = TwilioEmulator(url, auth_token=TOKEN, public_url=PUBLIC)

        async def noisy(c: CallControl) -> None:
            for junk in ("not json", b"\x00\x01", '{"event":"media","streamSid":"MZwrong","media":{}}',
                         '{"event":"surprise","streamSid":"' + c.stream_sid + '"}'):
                await c.send_raw(junk)
            await wait_until(lambda: "greeting-1" in c.result.marks_echoed, within_s=60)
            for _ in range(60):  # past the error budget: the gateway ends this call, cleanly
                await c.send_raw("garbage")
            await wait_until(lambda: c.ws.close_code is not None, within_s=30)

        noisy_call, quiet_call = await asyncio.gather(
            emu.call(agent="demo", script=noisy, hold_s=0.1, max_s=60),
            emu.call(agent="demo", hold_s=0.1, max_s=60),
        )
        assert quiet_call.errors == [] and quiet_call.marks_echoed == ["greeting-1"]
        assert noisy_call.marks_echoed == ["greeting-1"]  # the first errors were ignored: the greeting played
        assert noisy_call.seconds > 3.0 and quiet_call.seconds > 3.0  # (Piper's sampling varies the length a bit)
        await wait_until(lambda: services.twilio_edge().calls_finished == 2)
        # 4 assorted + 46 garbage are ignored; the 51st malformed message ends the call.
        assert counter(services, "voicegw_protocol_errors_total", kind="bad_json") >= 47
        assert counter(services, "voicegw_calls_total", agent="demo", outcome="protocol_error") == 1
        assert counter(services, "voicegw_calls_total", agent="demo", outcome="completed") == 1
        assert services.call_tasks.live == 0


async def test_busy_agent_gets_a_polite_refusal_and_slots_come_back(agents_dir: Path) -> None:
    demo = agents_dir / "demo.yaml"
    demo.write_text(demo.read_text().replace("max_concurrent_calls: 20", "max_concurrent_calls: 1"))
    async with gateway_with_services(env_for(agents_dir)) as (url, services):
        emu = TwilioEmulator(url, auth_token=TOKEN, public_url=PUBLIC)

        async def while_busy(c: CallControl) -> None:
            await wait_until(lambda: len(c.result.media_times) > 5, within_s=60)  # the call is live
            twiml, _ = await emu.fetch_twiml(agent="demo")
            assert parse_stream(twiml) is None and "busy" in twiml and "<Hangup" in twiml

        result = await emu.call(agent="demo", script=while_busy, hold_s=0.0, max_s=60)
        assert result.audio
        await wait_until(lambda: services.twilio_edge().calls_finished == 1)
        twiml, _ = await emu.fetch_twiml(agent="demo")
        assert parse_stream(twiml) is not None
        unknown, _ = await emu.fetch_twiml(to="+19999999999")
        assert "not in service" in unknown and "<Hangup" in unknown


async def test_busy_limit_holds_across_instances_with_redis(agents_dir: Path, redis_server: RedisServer) -> None:
    demo = agents_dir / "demo.yaml"
    demo.write_text(demo.read_text().replace("max_concurrent_calls: 20", "max_concurrent_calls: 1"))
    env = env_for(agents_dir, REDIS_URL=redis_server.url)
    async with gateway_with_services(env) as (url_a, services_a), gateway_with_services(env) as (url_b, _):
        emu_a = TwilioEmulator(url_a, auth_token=TOKEN, public_url=PUBLIC)
        emu_b = TwilioEmulator(url_b, auth_token=TOKEN, public_url=PUBLIC)

        async def while_busy(c: CallControl) -> None:
            await wait_until(lambda: len(c.result.media_times) > 5, within_s=60)  # the call is live on A
            twiml, _ = await emu_b.fetch_twiml(agent="demo")
            assert parse_stream(twiml) is None and "busy" in twiml

        result = await emu_a.call(agent="demo", script=while_busy, hold_s=0.0, max_s=60)
        assert result.audio
        await wait_until(lambda: services_a.twilio_edge().calls_finished == 1)  # A released the slot
        # Instance A issued a token; a replay against instance B is refused too (shared used-token set).
        twiml, call_sid = await emu_b.fetch_twiml(agent="demo")
        first = await emu_b.open_stream(twiml, call_sid, hold_s=0.0, max_s=60)
        assert first.marks_echoed == ["greeting-1"]
        replay = await emu_a.open_stream(twiml, call_sid, max_s=10)
        assert replay.close_code == 1008 and not replay.audio


async def test_hangup_after_goodbye_is_heard_via_rest_and_20404_is_fine(agents_dir: Path) -> None:
    async with fake_twilio_rest(ACCOUNT, TOKEN) as fake:
        env = env_for(agents_dir, TWILIO_ACCOUNT_SID=ACCOUNT, TWILIO_API_BASE_URL=fake.url)
        async with gateway_with_services(env) as (url, services):
            emu = TwilioEmulator(url, auth_token=TOKEN, public_url=PUBLIC)
            wire(fake, emu)
            goodbye: list[str] = []

            async def script(c: CallControl) -> None:
                s = await session_of(services, c.call_sid)
                name = s.say("Thanks for calling. Goodbye!")
                goodbye.append(name)
                s.hangup(after_mark=name)
                await wait_until(lambda: c.stopped, within_s=60)

            result = await emu.call(agent="demo", script=script, hold_s=0.0, max_s=90)
            await wait_until(lambda: services.twilio_edge().calls_finished == 1)
            (req,) = fake.requests
            assert req.form == {"Status": "completed"}
            heard_at = result.mark_times[goodbye[0]]
            assert req.call_sid in fake.ended and result.rest_updates == [{"Status": "completed"}]
            assert req.at >= heard_at  # the REST hang-up came after the goodbye's mark echoed (both monotonic)
            assert counter(services, "voicegw_calls_total", agent="demo", outcome="agent_hangup") == 1

            # The caller hung up first: Twilio answers 20404, the call still ends promptly.
            async def caller_gone(c: CallControl) -> None:
                s = await session_of(services, c.call_sid)
                fake.ended.add(c.call_sid)
                s.hangup()

            gone = await emu.call(agent="demo", script=caller_gone, hold_s=60.0, max_s=90)
            assert not gone.caller_hung_up  # the gateway ended the stream itself, not the caller after 60 s
            await wait_until(lambda: services.twilio_edge().calls_finished == 2)
            assert counter(services, "voicegw_calls_total", agent="demo", outcome="agent_hangup") == 2
            assert services.call_tasks.live == 0


async def test_transfer_redirects_to_dial(agents_dir: Path) -> None:
    async with fake_twilio_rest(ACCOUNT, TOKEN) as fake:
        env = env_for(agents_dir, TWILIO_ACCOUNT_SID=ACCOUNT, TWILIO_API_BASE_URL=fake.url)
        async with gateway_with_services(env) as (url, services):
            emu = TwilioEmulator(url, auth_token=TOKEN, public_url=PUBLIC)
            wire(fake, emu)

            async def script(c: CallControl) -> None:
                s = await session_of(services, c.call_sid)
                s.transfer("+15551234567", say_first="Transferring you now.")
                await wait_until(lambda: c.stopped, within_s=60)

            result = await emu.call(agent="demo", script=script, hold_s=0.0, max_s=60)
            await wait_until(lambda: services.twilio_edge().calls_finished == 1)
            (req,) = fake.requests
            assert re.search(r"<Dial>\+15551234567</Dial>", req.form["Twiml"])
            assert result.rest_updates and "Twiml" in result.rest_updates[0]
            assert counter(services, "voicegw_calls_total", agent="demo", outcome="transferred") == 1


def wire(fake: FakeTwilioRest, emu: TwilioEmulator) -> None:
    """Twilio applies a REST update to the live call: the stream stops."""
    fake.hooks.append(lambda req: emu.rest_update(req.call_sid, req.form))


async def _admitted(emu: TwilioEmulator) -> tuple[str, str] | None:
    twiml, call_sid = await emu.fetch_twiml(agent="demo")
    return (twiml, call_sid) if parse_stream(twiml) is not None else None


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_a_stream_that_never_comes_frees_its_slot_while_a_live_call_keeps_its_own(
    agents_dir: Path, store: str, request: pytest.FixtureRequest
) -> None:
    """Webhook, no stream, wait past the slot TTL: the next call is admitted; a live call outlives the TTL."""
    demo = agents_dir / "demo.yaml"
    demo.write_text(demo.read_text().replace("max_concurrent_calls: 20", "max_concurrent_calls: 1"))
    extra = {"VOICEGW_SLOT_TTL_S": "1"}
    if store == "redis":
        extra["REDIS_URL"] = request.getfixturevalue("redis_server").url
    async with gateway_with_services(env_for(agents_dir, **extra)) as (url, services):
        edge = services.twilio_edge()
        emu = TwilioEmulator(url, auth_token=TOKEN, public_url=PUBLIC)
        assert await _admitted(emu) is not None  # takes the only slot; its stream never opens
        assert await _admitted(emu) is None  # busy meanwhile
        admitted: list[tuple[str, str]] = []

        async def next_call_admitted() -> bool:
            got = await _admitted(emu)
            if got is not None:
                admitted.append(got)
            return got is not None

        beats = edge.heartbeats
        await wait_until(next_call_admitted, interval_s=0.2)
        assert edge.heartbeats > beats  # the heartbeat ran, and did not keep the orphan alive

        async def outlive_the_ttl(c: CallControl) -> None:
            start = edge.heartbeats
            await wait_until(lambda: edge.heartbeats >= start + 7, within_s=60)  # ≥ 7 × TTL/3 > 2 TTL
            assert await _admitted(emu) is None  # the live call's slot was refreshed all along
            await wait_until(lambda: c.result.audio, within_s=60)  # served: its greeting plays

        twiml, call_sid = admitted[0]
        result = await emu.open_stream(twiml, call_sid, script=outlive_the_ttl, hold_s=0.0, max_s=60)
        assert result.audio and result.close_code != 1008
        await wait_until(lambda: edge.calls_finished == 1)
        assert await _admitted(emu) is not None  # released at once at the end of the call


async def test_a_refused_stream_with_a_genuine_token_releases_its_slot_at_once(agents_dir: Path) -> None:
    demo = agents_dir / "demo.yaml"
    demo.write_text(demo.read_text().replace("max_concurrent_calls: 20", "max_concurrent_calls: 1"))
    async with gateway_with_services(env_for(agents_dir)) as (url, services):  # default TTL: 30 s
        emu = TwilioEmulator(url, auth_token=TOKEN, public_url=PUBLIC)
        got = await _admitted(emu)
        assert got is not None
        kept = dict(services.store.snapshot.agents)
        agents = {k: v for k, v in kept.items() if k != "demo"}
        services.store.replace(agents)  # the agent is removed between the webhook and the stream
        refused = await emu.open_stream(*got, max_s=10)
        assert refused.close_code == 1008 and not refused.audio
        services.store.replace(kept)
        assert await services.twilio_edge().limiter.active("demo") == 0
        assert await _admitted(emu) is not None

async def test_stream_status_callbacks_are_logged_by_event_and_junk_is_a_400(
    agents_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Twilio's stream statusCallback: each event logged with call, stream and event; junk refused, not logged
    as "stream status None: None"."""
    caplog.set_level("INFO", logger="voicegw.app")
    async with gateway_with_services({"VOICEGW_AGENTS_DIR": str(agents_dir)}) as (url, services):
        async with httpx.AsyncClient() as client:
            junk = await client.post(f"{url}/twilio/status", data={"hello": "world"})
            assert junk.status_code == 400
            assert junk.text == "not a stream status callback: missing CallSid, StreamSid, StreamEvent"
            base = {"AccountSid": ACCOUNT, "CallSid": "CA9", "StreamSid": "MZ9", "Timestamp": "2026-01-01T00:00:00Z"}
            error = {**base, "StreamEvent": "stream-error", "StreamError": "31920: handshake failed"}
            assert (await client.post(f"{url}/twilio/status", data=error)).status_code == 204
            odd = {**base, "StreamEvent": "stream-paused"}
            assert (await client.post(f"{url}/twilio/status", data=odd)).status_code == 204
        result = await TwilioEmulator(url).call(agent="demo", hold_s=0.1)
        assert result.status_codes == [204, 204]
        assert counter(services, "voicegw_webhook_rejected_total", reason="bad_request") == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "voicegw.app"]
    assert "POST /twilio/status rejected (bad_request): missing CallSid, StreamSid, StreamEvent" in lines
    assert "call CA9 stream MZ9: stream-error: 31920: handshake failed" in lines
    assert "call CA9 stream MZ9: unknown stream event 'stream-paused'" in lines
    assert sum(re.fullmatch(r"call CA\w+ stream MZ\w+: stream-(started|stopped)", m) is not None for m in lines) == 2
    assert not any("None" in m for m in lines)


N_FORGED = 2000


async def test_unknown_marks_and_digit_floods_are_bounded_and_counted(agents_dir: Path) -> None:
    from gateway.call import MAX_DTMF_KEPT

    async with gateway_with_services(env_for(agents_dir)) as (url, services):
        emu = TwilioEmulator(url, auth_token=TOKEN, public_url=PUBLIC)

        async def flood(c: CallControl) -> None:
            s = await session_of(services, c.call_sid)
            assert s.max_dtmf == MAX_DTMF_KEPT
            s.max_dtmf = 1  # the same bound, small enough that the agent replies to one digit only
            for i in range(N_FORGED):
                await c.send({"event": "mark", "streamSid": c.stream_sid, "mark": {"name": f"forged-{i}"}})
            for _ in range(4):
                await c.dtmf("5")
            await wait_until(lambda: counter(services, "voicegw_bounded_total", what="dtmf") == 3)
            await wait_until(lambda: counter(services, "voicegw_bounded_total", what="unknown_mark") == N_FORGED)
            assert s.unknown_marks == N_FORGED and all(not m.startswith("forged") for m in s.marks_echoed)
            assert s.dtmf == ["5"]

        result = await emu.call(agent="demo", script=flood, hold_s=0.0, max_s=120)
        assert result.errors == []


async def test_gateway_call_cap_and_pending_stream_cap(agents_dir: Path) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    env = env_for(agents_dir, VOICEGW_MAX_CALLS="1", VOICEGW_MAX_PENDING_STREAMS="2")
    async with gateway_with_services(env) as (url, services):
        emu = TwilioEmulator(url, auth_token=TOKEN, public_url=PUBLIC)

        async def while_live(c: CallControl) -> None:
            await wait_until(lambda: services.active_calls == 1)
            twiml, _ = await emu.fetch_twiml(agent="support")  # another agent, but the gateway is full
            assert parse_stream(twiml) is None and "busy" in twiml

        result = await emu.call(agent="demo", script=while_live, hold_s=0.0, max_s=60)
        assert result.errors == []
        assert counter(services, "voicegw_bounded_total", what="gateway_full") == 1
        ws_url = url.replace("http", "ws") + "/twilio/media"
        async with connect(ws_url) as a, connect(ws_url) as b:  # two sockets that never authenticate
            await wait_until(lambda: services.twilio_edge().pending_streams == 2)
            with pytest.raises(InvalidStatus):
                async with connect(ws_url):
                    pass
            assert counter(services, "voicegw_bounded_total", what="pending_streams") == 1
            await a.close()
            await b.close()
        await wait_until(lambda: services.twilio_edge().pending_streams == 0)
        await wait_until(lambda: services.twilio_edge().calls_finished == 1)
        assert parse_stream((await emu.fetch_twiml(agent="demo"))[0]) is not None


N_FLOOD = 400  # more digits than a call keeps (MAX_DTMF_KEPT): the per-call bound is reached too


async def test_digit_flood_then_hang_up_ends_the_call_at_once_and_spares_a_concurrent_call(
        agents_dir: Path) -> None:
    """Issue 15: hundreds of digits then a hang-up left the call's agent side running through its backlog and
    then waiting forever (its cancellation was swallowed): the call never ended and shutdown waited 30 s."""
    from gateway.call import MAX_DTMF_KEPT

    async with gateway_with_services(env_for(agents_dir)) as (url, services):
        emu = TwilioEmulator(url, auth_token=TOKEN, public_url=PUBLIC)
        flooded_ended = asyncio.Event()
        sessions: dict[str, CallSession] = {}

        async def flood(c: CallControl) -> None:
            s = sessions["flood"] = await session_of(services, c.call_sid)
            assert await s.wait_heard("greeting-1", timeout_s=60)
            for _ in range(N_FLOOD):
                await c.dtmf("5")
            await wait_until(lambda: counter(services, "voicegw_bounded_total", what="dtmf")
                             == N_FLOOD - MAX_DTMF_KEPT)
            await c.stop()  # hang up with the agent side still busy with the flood

        async def bystander(c: CallControl) -> None:
            s = sessions["other"] = await session_of(services, c.call_sid)
            assert await s.wait_heard("greeting-1", timeout_s=60)
            await flooded_ended.wait()
            assert services.calls == {c.call_sid: s}
            await c.dtmf("5")  # the agent still answers this call: the fallback, heard in full
            conversation = s.listener
            assert isinstance(conversation, Conversation)
            await wait_until(lambda: any(t.cause == "Dtmf" for t in conversation.turns))
            turn = next(t.turn for t in conversation.turns if t.cause == "Dtmf")
            await wait_until(lambda: s.ledger.heard(turn) and not s.ledger.queued(turn), within_s=60)
            assert s.ledger.heard_text(turn) == "Sorry, I didn't catch that. Could you say it again?"

        other = asyncio.create_task(emu.call(agent="demo", script=bystander, hold_s=0.0, max_s=180))
        flooded = await emu.call(agent="demo", script=flood, hold_s=0.0, max_s=120)
        s = sessions["flood"]
        # the call ends as soon as the caller is gone: well before the 30 s the old backlog made shutdown wait
        await asyncio.wait_for(s.ended.wait(), 10)
        flooded_ended.set()
        assert flooded.errors == [] and flooded.caller_hung_up and s.outcome == "completed"
        assert len(s.dtmf) == MAX_DTMF_KEPT
        result = await other
        assert result.errors == []
        await asyncio.wait_for(sessions["other"].ended.wait(), 10)
        await wait_until(lambda: services.call_tasks.live == 0 and services.active_calls == 0, within_s=10)
