"""Structured logs: call context across tasks, JSON lines, the per-call summary."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from gateway.ops import logs


def capture(json_lines: bool) -> tuple[io.StringIO, logging.Handler]:
    out = io.StringIO()
    return out, logs.configure("DEBUG", json_lines=json_lines, stream=out)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(x) for x in out.getvalue().splitlines()]


async def test_context_follows_each_call_into_its_tasks_without_mixing() -> None:
    out, handler = capture(json_lines=True)
    log = logging.getLogger("voicegw.test")
    try:

        async def call(sid: str) -> None:
            logs.bind(call=sid, stream="MZ" + sid, agent="demo")

            async def worker() -> None:
                await asyncio.sleep(0.01)
                log.info("speaking in %s", sid)

            await asyncio.gather(asyncio.create_task(worker()), asyncio.create_task(worker()))

        await asyncio.gather(asyncio.create_task(call("CA1")), asyncio.create_task(call("CA2")))
        log.info("outside any call")
    finally:
        logging.getLogger().removeHandler(handler)
    records = lines(out)
    assert len(records) == 5
    for r in records[:4]:
        assert r["msg"] == f"speaking in {r['call_sid']}"
        assert r["stream_sid"] == f"MZ{r['call_sid']}" and r["agent_id"] == "demo"
    assert sorted(str(r["call_sid"]) for r in records[:4]) == ["CA1", "CA1", "CA2", "CA2"]
    assert "call_sid" not in records[4] and records[4]["level"] == "INFO"


def test_bound_restores_previous_context() -> None:
    logs.bind(call="CAouter")
    with logs.bound(call="CAinner", agent="x"):
        assert logs.call_sid.get() == "CAinner" and logs.agent_id.get() == "x"
    assert logs.call_sid.get() == "CAouter" and logs.agent_id.get() == ""
    logs.bind()


def test_json_lines_carry_extras_and_exceptions() -> None:
    out, handler = capture(json_lines=True)
    log = logging.getLogger("voicegw.test")
    try:
        with logs.bound(call="CA9"):
            log.warning("fallback", extra={"reason": "timeout", "provider": "chattts"})
            try:
                raise RuntimeError("boom")
            except RuntimeError:
                log.exception("engine died")
    finally:
        logging.getLogger().removeHandler(handler)
    first, second = lines(out)
    assert first["reason"] == "timeout" and first["provider"] == "chattts" and first["call_sid"] == "CA9"
    assert first["logger"] == "voicegw.test" and first["level"] == "WARNING" and isinstance(first["ts"], float)
    assert "RuntimeError: boom" in str(second["exc"])


def test_text_format_appends_context_only_when_bound() -> None:
    out, handler = capture(json_lines=False)
    log = logging.getLogger("voicegw.test")
    try:
        log.info("plain")
        with logs.bound(call="CA5", agent="demo"):
            log.info("in call")
    finally:
        logging.getLogger().removeHandler(handler)
    plain, in_call = out.getvalue().splitlines()
    assert plain.endswith("voicegw.test: plain")
    assert in_call.endswith("in call [call=CA5 agent=demo]")


def test_configure_replaces_its_own_handler_only() -> None:
    root = logging.getLogger()
    other = logging.NullHandler()
    root.addHandler(other)
    try:
        first = logs.configure("INFO", stream=io.StringIO())
        second = logs.configure("WARNING", json_lines=True, stream=io.StringIO())
        assert first not in root.handlers and second in root.handlers and other in root.handlers
        assert root.level == logging.WARNING
    finally:
        root.removeHandler(other)
        root.removeHandler(second)
        root.setLevel(logging.WARNING)


@given(st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=50), st.sampled_from([0, 50, 95, 99, 100]))
def test_percentile_matches_numpy(values: list[float], q: int) -> None:
    got = logs.percentile(values, q)
    assert got is not None
    assert abs(got - float(np.percentile(values, q))) < 1e-9


def test_summary_from_observations() -> None:
    s = logs.CallSummary.build(
        call_sid="CA1", agent_id="demo", outcome="caller_hangup", duration_s=12.345, turns=3,
        providers=["chattts", "chattts", "cartesia", "chattts"], fallbacks=1,
        first_audio_s=[0.1, 0.2, 0.3, 0.4], mouth_to_ear_s=[], underruns=2, frames_sent=600,
    )
    assert s.sentences == {"cartesia": 1, "chattts": 3}
    assert s.first_audio_p50_ms == 250.0 and s.first_audio_p95_ms == 385.0
    assert s.mouth_to_ear_p50_ms is None and s.duration_s == 12.35
    line = s.line()
    assert "sentences=cartesia:1,chattts:3" in line and "mouth_to_ear_ms_p50=-" in line
    assert "first_audio_ms_p95=385" in line and "underruns=2" in line and "outcome=caller_hangup" in line
    assert json.loads(json.dumps(s.as_dict()))["sentences"] == {"cartesia": 1, "chattts": 3}
    assert "turn_ms_p50=endpoint_wait:-,recognition:-" in line


def test_summary_carries_the_per_turn_latency_records() -> None:
    turns = [
        logs.TurnLatency(1, "complete", True, 380.0, 120.0, 240.0, 390.0, 450.0),
        logs.TurnLatency(2, "max_silence", False, 1500.0, 180.0, 1510.0, 1600.0, None),  # interrupted unheard
        logs.TurnLatency(3, "complete", True, 360.0, 140.0, 250.0, 370.0, 430.0),
    ]
    s = logs.CallSummary.build(call_sid="CA1", agent_id="demo", outcome="completed", duration_s=9, turns=4,
                               turn_latency=turns)
    assert s.stage_p50_ms("endpoint_wait") == 380.0 and s.stage_p50_ms("first_heard") == 440.0
    assert "turn_ms_p50=endpoint_wait:380,recognition:140,logic_first:250,first_audio:390,first_heard:440" in s.line()
    record = json.loads(json.dumps(s.as_dict()))["turn_latency"]
    assert record[1] == {"turn": 2, "why": "max_silence", "speculative": False, "endpoint_wait_ms": 1500.0,
                         "recognition_ms": 180.0, "logic_first_ms": 1510.0, "first_audio_ms": 1600.0,
                         "first_heard_ms": None}


def test_summary_logs_one_line_with_fields_in_json() -> None:
    out, handler = capture(json_lines=True)
    try:
        with logs.bound(call="CA7", agent="demo"):
            logs.CallSummary.build(call_sid="CA7", agent_id="demo", outcome="completed", duration_s=1,
                                   turns=0).log(logging.getLogger("voicegw.call"))
    finally:
        logging.getLogger().removeHandler(handler)
    (record,) = lines(out)
    assert str(record["msg"]).startswith("call summary: outcome=completed")
    assert record["summary"] == logs.CallSummary.build(
        call_sid="CA7", agent_id="demo", outcome="completed", duration_s=1, turns=0).as_dict()
    assert record["call_sid"] == "CA7"


def test_credentials_and_registered_secrets_never_reach_a_line() -> None:
    logs.add_secrets("tw-auth-token-123", "short")
    for json_lines in (False, True):
        out, _ = capture(json_lines)
        log = logging.getLogger("voicegw.test")
        log.info("redis reachable at %s", "redis://:hunter2pw@redis:6379/0")
        log.info("user form rediss://default:hunter3pw@r:6380 and a token-only url https://tok3n@example.com/x")
        log.warning("twilio said tw-auth-token-123 is wrong")
        try:
            raise ConnectionError("cannot reach redis://:hunter4pw@10.0.0.1:6379")
        except ConnectionError:
            log.exception("store down")
        text = out.getvalue()
        for secret in ("hunter2pw", "hunter3pw", "tok3n", "tw-auth-token-123", "hunter4pw"):
            assert secret not in text, (json_lines, secret, text)
        assert "redis://:***@redis:6379/0" in text and "rediss://default:***@r:6380" in text


def test_control_characters_in_untrusted_fields_stay_on_one_line() -> None:
    out, _ = capture(json_lines=False)
    forged = "MZ1\r\n2026-01-01 00:00:00 ERROR voicegw: admin logged in\x1b[2J\u2028x"
    logging.getLogger("voicegw.test").warning("stream %s: bad token", forged)
    text = out.getvalue()
    assert text.count("\n") == 1 and "\x1b" not in text and "\u2028" not in text
    assert "MZ1\\r\\n2026-01-01" in text and "\\x1b[2J" in text
    out, _ = capture(json_lines=True)
    logging.getLogger("voicegw.test").warning("stream %s: bad token", forged)
    assert out.getvalue().count("\n") == 1 and lines(out)[0]["msg"] == f"stream {forged}: bad token"


def test_transcripts_are_opt_in() -> None:
    assert logs.transcript("my card is 4111", enabled=True) == "'my card is 4111'"
    hidden = logs.transcript("my card is 4111", enabled=False)
    assert "4111" not in hidden and "15 characters" in hidden and "VOICEGW_LOG_TRANSCRIPTS" in hidden


def test_mask_url_keeps_what_is_not_a_credential() -> None:
    assert logs.mask_url("redis://redis:6379/0") == "redis://redis:6379/0"
    assert logs.mask_url("unix:///run/redis.sock") == "unix:///run/redis.sock"
    assert logs.mask_url("mail a@b.com at http://x") == "mail a@b.com at http://x"
    assert logs.mask_url("redis://user:p%40ss@h:1") == "redis://user:***@h:1"
