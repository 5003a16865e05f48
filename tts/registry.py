"""The engine registry: the one table that lists every speech engine.

Adding an engine touches :data:`ENGINES` only: one :class:`EngineSpec` row
names the engine, its settings model (the agent's ``tts.<name>`` section, a
:class:`~tts.settings.EngineSettings` subclass in :mod:`tts.settings` or the
engine's own module), the languages it can speak, how it is built and started
at gateway startup, and how its voice references are checked. From the table
follow: the ``provider``/``fallback``/``last_resort`` names an agent may use,
the agent spec's ``tts`` model (:data:`TTSConfig`, one section per engine), the
engines the gateway builds (:func:`build_engines`), and voice checks
(:func:`voice_problems`) run by ``voicegw agents validate``/``push``, at
startup and by ``/readyz``.

Builders import their engine module lazily, so importing this table costs
nothing (no torch, no SDK) and an engine whose extra is not installed only
fails when some agent uses it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from pydantic import AfterValidator, Field, create_model

from tts.base import TTSEngine
from tts.breaker import BreakerRegistry
from tts.metrics import TTSMetrics
from tts.settings import (
    CartesiaVoice,
    ChatTTSRemoteVoice,
    ChatTTSVoice,
    EngineSettings,
    PiperVoice,
    Range,
    StrictModel,
)

log = logging.getLogger("voicegw.tts")


class EngineEnv(Protocol):
    """The gateway settings builders read (``gateway.settings.Settings`` satisfies it)."""

    @property
    def cartesia_api_key(self) -> str | None: ...
    @property
    def cartesia_base_url(self) -> str | None: ...
    @property
    def chattts_model_dir(self) -> Path | None: ...
    @property
    def chattts_device(self) -> str: ...
    @property
    def chattts_compile(self) -> bool: ...
    @property
    def chattts_sha256_file(self) -> Path | None: ...
    @property
    def chattts_api_url(self) -> str | None: ...
    @property
    def chattts_api_key(self) -> str | None: ...
    @property
    def role(self) -> str: ...


@dataclass(frozen=True, slots=True)
class BuildContext:
    """What a builder gets at startup."""

    env: EngineEnv
    metrics: TTSMetrics
    #: Some agent lists this engine (provider, fallback or last resort).
    used: bool
    #: The process's breakers (an engine with its own health checks may trip them).
    breakers: BreakerRegistry
    #: Run a coroutine in the background for the life of the process (e.g. loading weights).
    spawn: Callable[[Coroutine[Any, Any, None], str], None]
    #: The agents that use this engine (for messages).
    users: tuple[str, ...] = ()
    #: Those agents' settings for this engine (e.g. the speech server URLs to health-check).
    sections: tuple[EngineSettings, ...] = ()


Builder = Callable[[BuildContext], Awaitable[TTSEngine | None]]
#: ``check(settings, language)``: ``(key inside the section, why it cannot work)`` or None. May read disk.
VoiceCheck = Callable[[EngineSettings, str], tuple[str, str] | None]


@dataclass(frozen=True, slots=True)
class EngineSpec:
    name: str
    settings: type[EngineSettings]
    build: Builder
    #: Languages the engine can speak (ISO 639-1 prefixes); None: any (the provider checks).
    languages: frozenset[str] | None = None
    #: Built even when no agent uses it (the embedded default; the speech API's fallbacks).
    always: bool = False
    check: VoiceCheck | None = None


# ---- builders (lazy imports: the table costs nothing to import) -------------------------------------
async def _build_chattts(ctx: BuildContext) -> TTSEngine | None:
    """In process (a GPU worker), or a speech server over HTTP when CHATTTS_API_URL is set."""
    env = ctx.env
    if not ctx.used:
        return None
    if env.chattts_api_url:
        return await _remote_engine(ctx, "chattts", [env.chattts_api_url])
    if env.role == "telephony":  # a telephony pod never loads torch
        log.error("agents use chattts but VOICEGW_ROLE=telephony and CHATTTS_API_URL is not set: they fall back")
        return None
    import dataclasses
    import json

    try:
        from tts.chattts import ChatTTSConfig, ChatTTSEngine
    except ImportError as exc:  # the [chattts] extra is not installed
        _chattts_unavailable(ctx, f"not installed ({exc}): pip install 'voicegw[chattts]'")
        return None
    override = None
    if env.chattts_sha256_file is not None:
        try:
            override = json.loads(env.chattts_sha256_file.read_text())
        except (OSError, ValueError) as exc:
            log.error("CHATTTS_SHA256_FILE %s is unreadable (%s): ChatTTS disabled", env.chattts_sha256_file, exc)
            return None
    config = ChatTTSConfig(model_dir=env.chattts_model_dir, device=env.chattts_device, compile=env.chattts_compile)
    config = dataclasses.replace(config, sha256_override=override, allow_download=env.chattts_model_dir is None)
    engine = ChatTTSEngine(config, ctx.metrics)

    async def load() -> None:  # calls fall back until it is ready (readiness waits)
        await engine.start()
        if engine.load_error:
            _chattts_unavailable(ctx, engine.load_error)
        else:
            log.info("ChatTTS loaded and warmed up")

    ctx.spawn(load(), "chattts-load")
    return engine


def _chattts_unavailable(ctx: BuildContext, reason: str) -> None:
    """One line, at the level the situation deserves: ERROR when the operator asked for ChatTTS (CHATTTS_MODEL_DIR,
    the speech role), INFO when it is merely optional (the embedded defaults on a host without weights, a GPU or
    the ``chattts`` extra: every agent that lists it falls back to its next provider, as the demo needs none)."""
    if ctx.env.chattts_model_dir is not None or ctx.env.role == "speech":
        log.error("ChatTTS unavailable, agents fall back: %s", reason)
    else:
        log.info("ChatTTS not loaded (optional: agent(s) %s use their next provider): %s",
                 ", ".join(ctx.users) or "none", reason)


async def _build_chattts_remote(ctx: BuildContext) -> TTSEngine | None:
    """``provider: chattts_remote``: ChatTTS on speech servers named per agent (``tts.chattts_remote.url``)
    or by ``CHATTTS_API_URL``. One engine, one connection pool; every URL known at startup is health-checked."""
    urls = [u for u in (getattr(s, "url", None) for s in ctx.sections) if u]
    if ctx.env.chattts_api_url:
        urls.insert(0, ctx.env.chattts_api_url.rstrip("/"))
    urls = list(dict.fromkeys(urls))
    if not urls:
        log.error("agents %s use chattts_remote but neither tts.chattts_remote.url nor CHATTTS_API_URL is set: "
                  "they fall back", ", ".join(ctx.users) or "none")
        return None
    return await _remote_engine(ctx, "chattts_remote", urls)


async def _remote_engine(ctx: BuildContext, name: str, urls: list[str]) -> TTSEngine:
    """The engine ``name`` speaking to the ChatTTS speech servers ``urls`` over HTTP (``provider: chattts`` with
    CHATTTS_API_URL, ``provider: chattts_remote``): one health probe of each (a few seconds at most), then every few
    seconds in the background; each server's state is logged."""
    from tts.chattts_remote import RemoteChatTTSEngine, RemoteConfig

    engine = RemoteChatTTSEngine(RemoteConfig(url=urls[0], api_key=ctx.env.chattts_api_key), name=name,
                                 breakers=ctx.breakers, extra_urls=urls[1:])
    await engine.start()
    for url, state in engine.health().items():
        if state == "ok":
            log.info("%s: speech server %s healthy", name, url)
        else:
            log.error("%s: speech server %s: %s; its agents fall back until it is healthy", name, url, state)
    return engine


async def _build_cartesia(ctx: BuildContext) -> TTSEngine | None:
    if not ctx.env.cartesia_api_key:
        if ctx.used:
            log.warning("some agents list cartesia but CARTESIA_API_KEY is not set: those agents skip it")
        return None
    from tts.cartesia import CartesiaEngine

    engine = CartesiaEngine.from_settings(ctx.env.cartesia_api_key, ctx.env.cartesia_base_url)
    if ctx.used:
        await engine.start()  # opens the shared WebSocket now rather than on the first sentence
    return engine


async def _build_piper(ctx: BuildContext) -> TTSEngine | None:
    from tts.piper import PiperEngine

    engine = PiperEngine()
    await engine.start()
    return engine


def _check_piper(settings: EngineSettings, language: str) -> tuple[str, str] | None:
    from tts.piper import check_voice

    assert isinstance(settings, PiperVoice)
    problem = check_voice(settings.voice, language)
    return ("voice", problem) if problem else None


def _check_chattts(settings: EngineSettings, language: str) -> tuple[str, str] | None:
    assert isinstance(settings, ChatTTSVoice)
    if settings.speaker:
        try:
            from tts.chattts_voices import speaker_dim

            speaker_dim(settings.speaker.strip())
        except ImportError:
            return None  # the [chattts] extra is not installed: checked when the engine loads
        except ValueError as exc:
            return ("speaker", str(exc))
    return None


# ---- the table ---------------------------------------------------------------------------------------
ENGINES: tuple[EngineSpec, ...] = (
    EngineSpec("chattts", ChatTTSVoice, _build_chattts, languages=frozenset({"en", "zh"}), check=_check_chattts),
    EngineSpec("chattts_remote", ChatTTSRemoteVoice, _build_chattts_remote,
               languages=frozenset({"en", "zh"})),
    EngineSpec("cartesia", CartesiaVoice, _build_cartesia, always=True),
    EngineSpec("piper", PiperVoice, _build_piper, always=True, check=_check_piper),
)
BY_NAME: Mapping[str, EngineSpec] = {spec.name: spec for spec in ENGINES}
NAMES: tuple[str, ...] = tuple(BY_NAME)


def _known_provider(v: str) -> str:
    if v not in BY_NAME:
        raise ValueError(f"{v!r} is not one of {', '.join(repr(n) for n in NAMES)}")
    return v


ProviderName = Annotated[str, AfterValidator(_known_provider), Field(json_schema_extra={"enum": list(NAMES)})]


class TTSConfigBase(StrictModel):
    """The agent's ``tts`` section; :data:`TTSConfig` adds one settings section per registered engine."""

    provider: ProviderName = "chattts"
    fallback: list[ProviderName] = Field(
        default_factory=lambda: ["cartesia", "piper"],
        description="Providers tried in order after `provider` (duplicates and the primary are skipped).",
    )
    last_resort: ProviderName | None = Field(
        default="piper",
        description="Speaks the apology when the whole chain failed (breakers ignored); null: none.",
    )
    first_audio_budget_ms: Annotated[int, Range(50, 5000).validator(), Range(50, 5000).schema()] = 400
    sticky_fallback: bool = Field(
        default=False, description="Stay on the fallback voice for the rest of the call once used."
    )
    gain_db: Annotated[float, Range(-20.0, 12.0).validator(), Range(-20.0, 12.0).schema()] = 0.0

    def chain(self) -> list[str]:
        """Provider order for this agent, primary first, without duplicates."""
        return list(dict.fromkeys([self.provider, *self.fallback]))

    def engines_used(self) -> list[str]:
        """The chain plus the last resort."""
        return list(dict.fromkeys([*self.chain(), *([self.last_resort] if self.last_resort else [])]))

    def section(self, name: str) -> EngineSettings:
        """The settings of engine ``name`` (its ``tts.<name>`` section, defaults when not written)."""
        settings = getattr(self, name, None)
        if not isinstance(settings, EngineSettings):
            raise KeyError(f"no engine named {name!r}")
        return settings

    if TYPE_CHECKING:  # the per-engine sections are added from the table below
        def __getattr__(self, name: str) -> Any: ...


def _tts_config() -> type[TTSConfigBase]:
    sections: dict[str, Any] = {
        spec.name: (spec.settings, Field(default_factory=spec.settings)) for spec in ENGINES
    }
    return create_model("TTSConfig", __base__=TTSConfigBase, __module__=__name__, **sections)


if TYPE_CHECKING:
    TTSConfig = TTSConfigBase
else:
    TTSConfig = _tts_config()


def voice_problems(config: TTSConfigBase, language: str) -> list[tuple[str, str]]:
    """``(key path, message)`` for every voice reference of the engines this config uses that cannot work."""
    out: list[tuple[str, str]] = []
    for name in config.engines_used():
        spec = BY_NAME[name]
        if spec.languages is not None and language.split("-")[0] not in spec.languages:
            out.append((f"tts.{name}", f"{name} cannot speak language {language!r} "
                                       f"(it speaks {', '.join(sorted(spec.languages))})"))
        if spec.check is not None:
            problem = spec.check(config.section(name), language)
            if problem is not None:
                out.append((f"tts.{name}.{problem[0]}", problem[1]))
    return out


async def build_engines(
    env: EngineEnv, metrics: TTSMetrics, used: set[str], breakers: BreakerRegistry | None = None,
    spawn: Callable[[Coroutine[Any, Any, None], str], None] | None = None,
    users: Mapping[str, tuple[str, ...]] | None = None,
    sections: Mapping[str, tuple[EngineSettings, ...]] | None = None,
) -> dict[str, TTSEngine]:
    """Every engine some agent uses, plus those marked ``always``, built and started as the table says."""

    def background(coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        _background.add(task)
        task.add_done_callback(_background.discard)

    engines: dict[str, TTSEngine] = {}
    for spec in ENGINES:
        is_used = spec.name in used
        if not (is_used or spec.always):
            continue
        context = BuildContext(env, metrics, is_used, breakers if breakers is not None else BreakerRegistry(),
                               spawn or background, (users or {}).get(spec.name, ()),
                               (sections or {}).get(spec.name, ()))
        engine = await spec.build(context)
        if engine is not None:
            engines[spec.name] = engine
    return engines


_background: set[asyncio.Task[None]] = set()
