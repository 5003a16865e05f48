"""The console in a real browser: Debian's chromium, headless, driven by Playwright (see tests/browser.py).

Every wait is on the page's own state (DOM attributes the page sets as things happen), with generous
limits: CI is a loaded 2-core machine.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from gateway.console.voice import patch_tts
from tests.browser import chromium, collect_errors
from tests.helpers import gateway_with_services
from tts.registry import TTSConfig

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page

pytestmark = pytest.mark.slow

KEY = "browser-k3y"
WAIT_MS = 120_000


async def test_the_page_loads_offline_and_the_voice_panel_follows_the_schema(agents_dir: Path) -> None:
    env = {"VOICEGW_AGENTS_DIR": str(agents_dir), "VOICEGW_API_KEY": KEY}
    async with gateway_with_services(env) as (url, services), chromium(password=KEY) as browser:
        page = await browser.new_page()
        errors = collect_errors(page)
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        await page.goto(f"{url}/console")
        await page.wait_for_selector("body[data-ready='1']", timeout=WAIT_MS)
        assert requested and all(u.startswith(url) for u in requested), requested  # offline: nothing from elsewhere
        # narrow window: one column, nothing wider than the screen
        await page.set_viewport_size({"width": 360, "height": 740})
        assert await page.evaluate("document.documentElement.scrollWidth") <= 360
        await page.set_viewport_size({"width": 1280, "height": 900})
        # ranges and defaults come from the agent schema, not from the page
        schema = TTSConfig.model_json_schema()["$defs"]
        for provider, model in (("chattts", "ChatTTSVoice"), ("piper", "PiperVoice"), ("cartesia", "CartesiaVoice")):
            spec = schema[model]["properties"]["speed"]
            slider = page.locator(f"input[name='{provider}.speed']")
            assert await slider.get_attribute("min") == str(spec["minimum"]).removesuffix(".0")
            assert await slider.get_attribute("max") == str(spec["maximum"]).removesuffix(".0")
        presets = await page.locator("select[name='chattts.voice'] option").all_inner_texts()
        assert presets == schema["ChatTTSVoice"]["properties"]["voice"]["enum"]
        assert await page.locator("fieldset[data-provider='piper']").is_visible()  # the demo's chain: Piper
        assert not await page.locator("fieldset[data-provider='chattts']").is_visible()
        # keyboard: Tab reaches the agent picker, the Call button and the keypad
        focused = set()
        for _ in range(12):
            await page.keyboard.press("Tab")
            focused.add(await page.evaluate("document.activeElement.id || document.activeElement.textContent"))
        assert {"agent", "call-btn", "1"} <= focused
        # Play sample: synthesized through /v1/audio/speech with the panel's voice
        await page.fill("#sample-text", "Hello from the console.")
        await page.click("#sample-btn")
        await page.wait_for_selector("#sample-info[data-provider='piper']", timeout=WAIT_MS)
        assert "RTF" in await page.inner_text("#sample-info")
        # Save: a new version of the agent in the store, the changed YAML offered for download
        version = await page.get_attribute("#agent-info", "data-version")
        await page.eval_on_selector("input[name='piper.speed']", "el => { el.value = '1.5'; }")
        await page.click("#save-btn")
        await page.wait_for_selector("#saved", timeout=WAIT_MS)
        assert await page.get_attribute("#agent-info", "data-version") != version
        agent = services.store.get("demo")
        assert agent is not None and agent.tts.piper.speed == 1.5
        async with page.expect_download() as download_info:
            await page.click("#save-info a")
        download = await download_info.value
        assert download.suggested_filename == "demo.yaml"
        assert "speed: 1.5" in await asyncio.to_thread(Path(await download.path()).read_text)
        # a bad value is refused with the loader's words, next to the field
        await page.eval_on_selector("input[name='piper.voice']", "el => { el.value = ''; }")
        await page.eval_on_selector("select[name='provider']", "el => { el.value = 'piper'; }")
        await page.evaluate("""() => { const f = document.querySelector("[name='first_audio_budget_ms']");
            f.type = 'number'; f.value = '9'; }""")
        await page.click("#save-btn")
        problem = page.locator(".field[data-path='first_audio_budget_ms'] .problem")
        await problem.wait_for(timeout=WAIT_MS)
        assert "not within 50–5000" in await problem.inner_text()
        assert [e for e in errors if "status of 422" not in e] == []  # the refused save is the only error


def fake_mic(path: Path, fixture: str) -> Path:
    """A speech fixture (8 kHz mu-law) as the 16-bit WAV chromium's fake microphone plays."""
    import wave

    from audio.codec import ulaw2lin
    from tests.speech_fixtures import mulaw

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(ulaw2lin(mulaw(fixture)).astype("<i2").tobytes())
    return path


async def _call(page: Page) -> None:
    await page.click("#call-btn")
    await page.wait_for_selector("body[data-call-state='in-call']", timeout=WAIT_MS)


async def _hang_up(page: Page) -> None:
    await page.click("#hangup-btn")
    await page.wait_for_selector("body[data-call-state='ended']", timeout=WAIT_MS)


async def _heard(page: Page, text: str) -> Locator:
    line = page.locator("#transcript li[data-role='agent'][data-state='heard']", has_text=text).first
    await line.wait_for(timeout=WAIT_MS)
    return line


def patient(agents_dir: Path) -> Path:
    """The demo agent with a generous first-audio budget: on a loaded CI machine Piper may pause for
    seconds, which would count as a stall and turn sentences into the apology."""
    path = agents_dir / "demo.yaml"
    path.write_text(patch_tts(path.read_text(), {"provider": "piper", "fallback": [], "first_audio_budget_ms": 5000,
                                                 "piper": {"voice": "joe"}}))
    return agents_dir


async def test_a_console_call_in_a_real_browser(agents_dir: Path, tmp_path: Path) -> None:
    """Greeting heard, the caller's question transcribed and answered, a keypad press, a recording, and a
    speed saved in the panel heard on the next call."""
    mic = fake_mic(tmp_path / "hours.wav", "hours")  # "What time are you open on Saturday?"
    env = {"VOICEGW_AGENTS_DIR": str(patient(agents_dir)), "VOICEGW_API_KEY": KEY}
    async with gateway_with_services(env) as (url, services), chromium(mic, password=KEY) as browser:
        page = await browser.new_page()
        errors = collect_errors(page)
        await page.goto(f"{url}/console")
        await page.wait_for_selector("body[data-ready='1']", timeout=WAIT_MS)
        await page.select_option("#agent", "demo")
        await page.uncheck("#mic")  # muted: the greeting plays without the question cutting into it
        await _call(page)
        greeting = await _heard(page, "thanks for calling")
        first_greeting_ms = int(await greeting.get_attribute("data-played-ms") or 0)
        assert first_greeting_ms > 1000  # its first sentence, in Piper at speed 1
        assert float(await page.get_attribute("#out-level", "data-peak") or 0) > 0.05  # sound reached the output
        assert await greeting.get_attribute("data-provider") == "piper"
        # the caller speaks: opening the microphone plays the fixture once
        await page.check("#mic")
        caller = page.locator("#transcript li[data-role='caller']").first
        await caller.wait_for(timeout=WAIT_MS)
        assert "open" in (await caller.inner_text()).lower()
        await _heard(page, "nine to five")
        # a keypad press reaches the agent (from the keyboard: the digit keys press the keypad during a call)
        await page.keyboard.press("0")
        await page.locator("#transcript li[data-digit='0']").wait_for(timeout=WAIT_MS)
        await _heard(page, "Transferring you now")
        assert await page.locator("#turns tbody tr").count() >= 3  # greeting, question, keypad
        await _hang_up(page)
        assert await page.get_attribute("#call-end", "data-outcome") == "completed"
        async with page.expect_download() as download_info:
            await page.click("#recording")
        recording = await (await download_info.value).path()
        caller_rms, agent_rms = await asyncio.to_thread(_stereo_rms, Path(recording))
        assert caller_rms > 0.005 and agent_rms > 0.01  # both sides are in the recording

        # a faster voice saved in the panel is heard on the next call
        await page.eval_on_selector("input[name='piper.speed']", "el => { el.value = '1.6'; }")
        await page.click("#save-btn")
        await page.wait_for_selector("#saved", timeout=WAIT_MS)
        await page.uncheck("#mic")
        await _call(page)
        greeting = await _heard(page, "thanks for calling")
        second_greeting_ms = int(await greeting.get_attribute("data-played-ms") or 0)
        print(f"greeting played: {first_greeting_ms} ms at speed 1.0, {second_greeting_ms} ms at speed 1.6")
        assert 0 < second_greeting_ms < first_greeting_ms * 0.8, (first_greeting_ms, second_greeting_ms)
        await _hang_up(page)
        assert [e for e in errors if "status of 422" not in e] == []
    assert services.active_calls == 0


def _stereo_rms(path: Path) -> tuple[float, float]:
    import wave

    import numpy as np

    with wave.open(str(path)) as w:
        assert w.getnchannels() == 2
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2) / 32768.0
    return float(np.sqrt(np.mean(pcm[:, 0] ** 2))), float(np.sqrt(np.mean(pcm[:, 1] ** 2)))


async def test_the_pages_codec_and_resampler(agents_dir: Path) -> None:
    """The page's mu-law matches the gateway's bit for bit; its resampler keeps the band and rejects aliases."""
    import numpy as np

    from audio.codec import lin2ulaw, ulaw2lin

    async with gateway_with_services({"VOICEGW_AGENTS_DIR": str(agents_dir)}) as (url, _), chromium() as browser:
        page = await browser.new_page()
        await page.goto(f"{url}/console")
        await page.wait_for_selector("body[data-ready='1']", timeout=WAIT_MS)
        decoded = await page.evaluate("""async () => {
            const m = await import('/console/static/resampler.js');
            const all = Uint8Array.from({length: 256}, (_, i) => i);
            return Array.from(m.mulawDecode(all), x => Math.round(x * 32768));
        }""")
        assert decoded == ulaw2lin(bytes(range(256))).tolist()
        ramp = np.linspace(-1, 1, 4001)
        encoded = await page.evaluate("""async (xs) => {
            const m = await import('/console/static/resampler.js');
            return Array.from(m.mulawEncode(Float32Array.from(xs)));
        }""", ramp.tolist())
        ours = np.frombuffer(lin2ulaw(np.clip(np.round(ramp * 32768), -32768, 32767).astype(np.int16)),
                             dtype=np.uint8)
        # the same code or its neighbour (rounding at segment edges), and the same decoded value within 1 step
        assert np.max(np.abs(np.array(encoded, dtype=int) - ours.astype(int))) <= 1
        levels = await page.evaluate("""async () => {
            const m = await import('/console/static/resampler.js');
            const rms = (xs) => Math.sqrt(xs.reduce((a, x) => a + x * x, 0) / xs.length);
            const through = (f, from, to) => {  // one second of a tone, fed in tenths
                const r = new m.Resampler(from, to);
                const out = [];
                for (let i = 0; i < 10; i++) {
                    const part = Float32Array.from({length: from / 10},
                        (_, j) => 0.5 * Math.sin(2 * Math.PI * f * (i * from / 10 + j) / from));
                    r.push(part);
                    out.push(...r.pull());
                }
                return rms(out.slice(out.length / 2));
            };
            return {pass: through(1000, 44100, 8000), edge: through(3400, 48000, 8000),
                    alias: through(6000, 44100, 8000), up: through(1000, 8000, 44100)};
        }""")
        full = 0.5 / np.sqrt(2)
        assert abs(levels["pass"] / full - 1) < 0.02 and abs(levels["up"] / full - 1) < 0.02
        assert levels["edge"] / full > 0.7  # the telephone band survives
        assert 20 * np.log10(levels["alias"] / full) < -40  # 6 kHz cannot fold back into an 8 kHz stream
