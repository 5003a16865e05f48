"""Endpointing state machine: synthetic probabilities (exact) and real fixtures through Silero."""

from __future__ import annotations

import numpy as np

from agents.endpointing import (
    BargeIn,
    EndpointConfig,
    Endpointer,
    SpeechDropped,
    SpeechEnd,
    SpeechPause,
    SpeechResume,
    SpeechStart,
)
from agents.spec import TurnTaking
from agents.vad import CHUNK, shared_model
from audio.codec import ulaw2lin
from tests.speech_fixtures import conversation_fixtures, conversation_mulaw, mulaw, transcripts

DT = CHUNK / 8000  # 32 ms


def run(probs: list[float], cfg: EndpointConfig | None = None) -> list[tuple[int, object]]:
    ep = Endpointer(cfg)
    out: list[tuple[int, object]] = []
    for i, p in enumerate(probs):
        chunk = np.full(CHUNK, i, dtype=np.float32)  # sample value = chunk index, to check what is kept
        out += [(i, e) for e in ep.feed(p, chunk)]
    out += [(len(probs), e) for e in ep.flush()]
    return out


def test_utterance_with_pre_roll_barge_in_and_end() -> None:
    cfg = EndpointConfig(threshold=0.5, end_silence_s=0.5, barge_in_s=0.25, pre_roll_s=0.1, tail_s=0.064)
    probs = [0.0] * 10 + [0.9] * 20 + [0.4] * 3 + [0.9] * 5 + [0.0] * 30
    events = run(probs, cfg)
    kinds = [(i, type(e).__name__) for i, e in events]
    # starts on chunk 10; 0.25 s voiced = 8 chunks → barge-in on chunk 17; 0.4 >= 0.35 counts as voiced;
    # last voiced chunk 37; 0.5 s of silence = 16 chunks → end decided on chunk 53.
    assert kinds == [(10, "SpeechStart"), (17, "BargeIn"), (53, "SpeechEnd")]
    start = events[0][1]
    assert isinstance(start, SpeechStart) and abs(start.at - 10 * DT) < 1e-9
    end = events[2][1]
    assert isinstance(end, SpeechEnd)
    assert abs(end.started_at - 10 * DT) < 1e-9 and abs(end.ended_at - 38 * DT) < 1e-9
    kept = np.unique(end.pcm)
    # pre-roll: 0.1 s = 4 chunks before the start (6..9), then speech, then 64 ms = 2 chunks of tail
    assert kept[0] == 6 and kept[-1] == 39


def test_short_blip_is_dropped_and_never_barges_in() -> None:
    events = run([0.0] * 5 + [0.9] * 2 + [0.0] * 30)
    assert [type(e) for _, e in events] == [SpeechStart, SpeechDropped]


def test_pause_shorter_than_end_silence_does_not_split() -> None:
    probs = [0.9] * 20 + [0.0] * 12 + [0.9] * 20 + [0.0] * 20  # 384 ms pause < 500 ms
    ends = [e for _, e in run(probs) if isinstance(e, SpeechEnd)]
    assert len(ends) == 1


def test_max_utterance_cuts_a_monologue() -> None:
    cfg = EndpointConfig(max_utterance_s=2.0)
    ends = [e for _, e in run([0.9] * 200, cfg) if isinstance(e, SpeechEnd)]
    assert len(ends) >= 3 and all(e.ended_at - e.started_at <= 2.0 + DT for e in ends)


def test_per_agent_turn_taking_settings() -> None:
    cfg = EndpointConfig.from_turn_taking(TurnTaking(barge_in_min_speech_ms=100, end_of_utterance_silence_ms=900,
                                                      vad_threshold=0.7))
    assert cfg.barge_in_s == 0.1 and cfg.end_silence_s == 0.9 and cfg.threshold == 0.7
    assert abs(cfg.neg_threshold - 0.55) < 1e-9
    assert [type(e) for _, e in run([0.6] * 40, cfg)] == []  # below this agent's threshold


def test_every_fixture_is_one_utterance_through_silero() -> None:
    for name in transcripts():
        pcm = ulaw2lin(mulaw(name))
        stream, ep = shared_model().stream(), Endpointer()
        events: list[object] = []
        for i in range(0, len(pcm), 160):
            for p, chunk in stream.feed(pcm[i : i + 160]):
                events += ep.feed(p, chunk)
        events += ep.flush()
        ends = [e for e in events if isinstance(e, SpeechEnd)]
        assert len(ends) == 1, (name, events)
        assert any(isinstance(e, BargeIn) for e in events)
        # fixtures have 0.6 s of lead silence; the caller stops about 1 s before the file ends
        assert 0.5 < ends[0].started_at < 1.2, name
        assert len(pcm) / 8000 - 1.4 < ends[0].ended_at < len(pcm) / 8000 - 0.8, name


def test_pause_events_for_speculation_and_resume() -> None:
    cfg = EndpointConfig(end_silence_s=1.5, pause_s=0.2, pre_roll_s=0.064, tail_s=0.064)
    probs = [0.0] * 5 + [0.9] * 20 + [0.0] * 10 + [0.9] * 10 + [0.0] * 60
    events = run(probs, cfg)
    kinds = [(i, type(e).__name__) for i, e in events]
    # 0.2 s = 7 chunks of 32 ms: pause on the 7th silent chunk (24 + 7 = 31), resume at 35, pause again at 51
    assert kinds == [(5, "SpeechStart"), (12, "BargeIn"), (31, "SpeechPause"), (35, "SpeechResume"),
                     (51, "SpeechPause"), (91, "SpeechEnd")]
    pause = events[2][1]
    assert isinstance(pause, SpeechPause)
    assert abs(pause.ended_at - 25 * DT) < 1e-9 and abs(pause.at - 32 * DT) < 1e-9
    kept = np.unique(pause.pcm)
    assert kept[0] == 3 and kept[-1] == 26  # pre-roll 2 chunks, speech, 2 chunks of tail: what SpeechEnd carries
    assert abs(pause.voiced_s - 20 * DT) < 1e-9


def test_end_now_closes_the_utterance_on_the_runners_decision() -> None:
    ep = Endpointer(EndpointConfig(end_silence_s=1.5, pause_s=0.2))
    for _ in range(20):
        ep.feed(0.9, np.full(CHUNK, 0.1, dtype=np.float32))
    for _ in range(8):
        ep.feed(0.0, np.zeros(CHUNK, dtype=np.float32))
    assert ep.in_speech and abs(ep.silence_s - 8 * DT) < 1e-9 and abs(ep.voiced_s - 20 * DT) < 1e-9
    events = ep.end_now()
    assert [type(e) for e in events] == [SpeechEnd] and not ep.in_speech
    assert ep.end_now() == [] and ep.silence_s == 0.0


def test_noise_floor_gates_steady_noise_that_nudges_the_vad() -> None:
    rng = np.random.default_rng(1)
    noise = [rng.normal(0, 0.01, CHUNK).astype(np.float32) for _ in range(200)]  # -40 dBFS line noise
    speech = [rng.normal(0, 0.2, CHUNK).astype(np.float32) for _ in range(20)]  # -14 dBFS
    ep = Endpointer(EndpointConfig(end_silence_s=0.5))
    events: list[object] = []
    for chunk in noise[:100]:  # the VAD calls the line non-speech: the floor learns it
        events += ep.feed(0.1, chunk)
    assert -45 < ep.noise_db < -35
    for chunk in noise[100:150]:  # the same noise now nudges the VAD over its threshold (hum, a click train)
        events += ep.feed(0.7, chunk)
    assert events == []  # at the floor: neither starts nor continues speech
    for chunk in speech:
        events += ep.feed(0.9, chunk)
    for chunk in noise[150:]:  # trailing line noise the VAD half-believes must not prolong the turn
        events += ep.feed(0.4, chunk)
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert len(ends) == 1 and abs(ends[0].ended_at - ends[0].started_at - 20 * DT) < 1e-9
    # without the floor the same feed never ends the utterance (p 0.4 >= 0.35 counts as voiced)
    plain = Endpointer(EndpointConfig(end_silence_s=0.5, noise_margin_db=None))
    plain_events: list[object] = []
    for chunk in noise[:100]:
        plain_events += plain.feed(0.1, chunk)
    for chunk in noise[100:150] + speech:
        plain_events += plain.feed(0.7, chunk)
    for chunk in noise[150:]:
        plain_events += plain.feed(0.4, chunk)
    assert not any(isinstance(e, SpeechEnd) for e in plain_events)


def test_quiet_audio_not_yet_judged_counts_as_silence_at_once() -> None:
    """silence_through: audio below the end margin is unvoiced whatever the VAD will say, so it extends the
    pause before its verdict; audio loud enough to be speech does not (it waits for the VAD)."""
    rng = np.random.default_rng(2)
    noise = [rng.normal(0, 0.01, CHUNK).astype(np.float32) for _ in range(60)]  # -40 dBFS line
    ep = Endpointer(EndpointConfig(end_silence_s=1.0))
    frame = rng.normal(0, 0.01, 160).astype(np.float32)  # one 20 ms Twilio frame of the line
    for chunk in noise[:50]:
        ep.feed(0.1, chunk)
    assert ep.silence_through(frame) == 0.0  # idle: no utterance, no pause to extend
    for _ in range(10):
        ep.feed(0.9, rng.normal(0, 0.2, CHUNK).astype(np.float32))
    for chunk in noise[50:55]:  # five chunks of pause, judged
        ep.feed(0.1, chunk)
    assert abs(ep.silence_s - 5 * DT) < 1e-9
    assert abs(ep.silence_through(frame) - (5 * DT + 0.02)) < 1e-9
    two = np.concatenate([frame, frame])
    assert abs(ep.silence_through(two) - (5 * DT + 0.04)) < 1e-9
    loud = rng.normal(0, 0.2, 160).astype(np.float32)  # the caller goes on: the VAD decides
    assert ep.silence_through(loud) == ep.silence_s
    assert ep.silence_through(np.zeros(0, dtype=np.float32)) == ep.silence_s
    # the same, once judged: the quiet frame is silence (prob forced to 0 by the margin, even at p 0.9)
    ep.feed(0.9, np.concatenate([frame, noise[55][: CHUNK - 160]]))
    assert abs(ep.silence_s - 6 * DT) < 1e-9


def test_quiet_audio_brings_the_speculative_pause_forward_once() -> None:
    rng = np.random.default_rng(3)
    ep = Endpointer(EndpointConfig(end_silence_s=1.0, pause_s=0.15))
    line = [rng.normal(0, 0.01, CHUNK).astype(np.float32) for _ in range(60)]
    frame = rng.normal(0, 0.01, 160).astype(np.float32)
    for chunk in line[:50]:
        ep.feed(0.1, chunk)
    for _ in range(10):
        ep.feed(0.9, rng.normal(0, 0.2, CHUNK).astype(np.float32))
    for chunk in line[50:54]:  # 128 ms judged
        assert ep.feed(0.1, chunk) == []
    assert ep.pause_through(np.zeros(0, dtype=np.float32)) == []
    assert ep.pause_through(frame) == []  # 128 + 20 = 148 ms < 150 ms
    loud = rng.normal(0, 0.2, 320).astype(np.float32)
    assert ep.pause_through(loud) == []  # speech-level audio waits for the VAD's verdict
    two = np.concatenate([frame, frame])
    (pause,) = ep.pause_through(two)  # 128 + 40 = 168 ms of quiet: the pause, before the VAD judged it
    assert isinstance(pause, SpeechPause) and abs(pause.at - (ep.now + 0.04)) < 1e-9
    assert pause.ended_at == ep.now - 4 * DT
    assert ep.pause_through(two) == []  # once per gap
    assert not any(isinstance(e, SpeechPause) for e in ep.feed(0.1, line[54]))  # feed does not repeat it
    assert ep.feed(0.9, rng.normal(0, 0.2, CHUNK).astype(np.float32)) == [SpeechResume(ep.now - DT)]


def test_speculative_config_from_turn_taking() -> None:
    cfg = EndpointConfig.speculative(TurnTaking(speculative_silence_ms=250, max_silence_ms=2000, noise_margin_db=3))
    assert cfg.pause_s == 0.25 and cfg.end_silence_s == 2.0 and cfg.noise_margin_db == 3.0
    assert EndpointConfig.speculative(TurnTaking(noise_margin_db=0)).noise_margin_db is None  # 0: the VAD alone
    assert EndpointConfig.from_turn_taking(TurnTaking()).pause_s is None


def silero_events(pcm: np.ndarray, cfg: EndpointConfig) -> list[object]:
    """Feed 8 kHz PCM through Silero in 20 ms frames and the endpointer; every event, the flush's included."""
    stream, ep = shared_model().stream(), Endpointer(cfg)
    events: list[object] = []
    for i in range(0, len(pcm), 160):
        for p, chunk in stream.feed(pcm[i : i + 160]):
            events += ep.feed(p, chunk)
    return events + ep.flush()


def test_realistic_fixtures_pause_at_the_mid_sentence_gap_and_end_once() -> None:
    for name, meta in conversation_fixtures().items():
        pcm = ulaw2lin(conversation_mulaw(name))
        events = silero_events(pcm, EndpointConfig.speculative(TurnTaking()))
        ends = [e for e in events if isinstance(e, SpeechEnd)]
        if name == "cough":
            assert not any(isinstance(e, SpeechPause) for e in events), events
            continue
        assert len(ends) == 1, (name, events)  # line noise and hum neither split nor prolong the turn
        assert len(pcm) / 8000 - 1.6 < ends[0].ended_at < len(pcm) / 8000 - 1.0, (name, ends[0].ended_at)
        if meta["pause_s"]:
            assert any(isinstance(e, SpeechResume) for e in events), name


def acoustic_end(pcm: np.ndarray) -> float:
    """The bench's definition (bench/conversation.py): end of the last 10 ms window above -34 dBFS."""
    x = pcm[: len(pcm) // 80 * 80].astype(np.float64) / 32768.0
    level = 10 * np.log10(np.mean(np.square(x.reshape(-1, 80)), axis=1) + 1e-12)
    return float((np.nonzero(level > -34)[0][-1] + 1) * 0.01)


def last_pause_end(pcm: np.ndarray, cfg: EndpointConfig) -> tuple[float, list[object]]:
    events = silero_events(pcm, cfg)
    pauses = [e.ended_at for e in events if isinstance(e, SpeechPause)]
    return pauses[-1], events


def test_the_callers_silence_starts_where_the_words_end_not_where_silero_decays() -> None:
    """Silero's probability lags the end of speech by 116-270 ms on these fixtures (a breath or room tail a few dB
    over the line keeps it up): the end margin puts the end of the last voiced chunk within 60 ms of it."""
    lags = []
    for name in conversation_fixtures():
        if name == "cough":
            continue
        pcm = ulaw2lin(conversation_mulaw(name))
        ended, _ = last_pause_end(pcm, EndpointConfig.speculative(TurnTaking()))
        lags.append(ended - acoustic_end(pcm))
    assert all(-0.032 <= lag <= 0.140 for lag in lags), lags
    assert float(np.median(lags)) <= 0.05, lags


def test_a_caller_on_a_noisy_line_is_not_chopped_by_the_end_margin() -> None:
    """Line noise as loud as the speech (0 dB SNR): the floor is learnt from what the VAD calls noise, so the
    words still clear the end margin and the utterance ends once, after the last word."""
    rng = np.random.default_rng(7)
    for name in ("hours", "human", "account"):
        clean = ulaw2lin(mulaw(name)).astype(np.float64)
        speech_rms = np.sqrt(np.mean(clean[np.abs(clean) > 300] ** 2))
        noisy = clean + rng.normal(0, speech_rms, len(clean))  # 0 dB SNR
        pcm = np.clip(noisy, -32768, 32767).astype(np.int16)
        events = silero_events(pcm, EndpointConfig.speculative(TurnTaking()))
        starts = [e for e in events if isinstance(e, SpeechStart)]
        ends = [e for e in events if isinstance(e, SpeechEnd)]
        assert len(starts) == 1 and len(ends) == 1, (name, events)
        assert ends[0].ended_at > len(pcm) / 8000 - 1.4, (name, ends[0].ended_at)  # not cut before the last word
