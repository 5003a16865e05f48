"""Gateway settings, read once at startup from environment variables.

Rules of this file: an injected mapping in, a frozen :class:`Settings` out.
Empty values mean "unset". Every malformed value raises
:class:`SettingsError` naming the variable and what is allowed. The variables
are listed in :data:`ENV_VARS` and documented one by one in
``config/gateway.example.env`` (a test keeps the three in step).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit


class SettingsError(Exception):
    """A setting is malformed; the message names the variable."""


#: Every environment variable :meth:`Settings.from_env` reads, in the order of the example file.
ENV_VARS: tuple[str, ...] = (
    "VOICEGW_HOST", "VOICEGW_PORT", "PUBLIC_URL", "VOICEGW_AGENTS_DIR", "REDIS_URL",
    "TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID", "TWILIO_API_BASE_URL", "VOICEGW_REQUIRE_SIGNATURE",
    "VOICEGW_STREAM_TOKEN_SECRET", "CARTESIA_API_KEY", "CARTESIA_BASE_URL",
    "CHATTTS_MODEL_DIR", "CHATTTS_DEVICE", "CHATTTS_COMPILE", "VOICEGW_API_KEY",
    "VOICEGW_PLAYOUT_LEAD_MS", "VOICEGW_PLAYOUT_FRAMES_PER_WRITE", "VOICEGW_MAX_WS_MESSAGE_BYTES",
    "VOICEGW_DRAIN_TIMEOUT_S",
    "VOICEGW_DRAIN_REDIRECT_URL", "VOICEGW_METRICS_PORT", "VOICEGW_RECORDINGS_DIR", "VOICEGW_VOICES_FILE",
    "VOICEGW_LOG_LEVEL", "VOICEGW_LOG_JSON", "VOICEGW_STT_MODEL", "VOICEGW_STT_DEVICE", "CHATTTS_SHA256_FILE",
    # hardening (issue 15)
    "VOICEGW_SLOT_TTL_S", "VOICEGW_ALLOW_OPEN_API", "VOICEGW_API_MAX_CONCURRENT", "VOICEGW_LOG_TRANSCRIPTS",
    "VOICEGW_AGENT_KEY_ENVS", "VOICEGW_LLM_HOSTS", "VOICEGW_TRANSFER_NUMBERS", "VOICEGW_AGENT_SIGNING_KEY",
    "VOICEGW_MAX_CALLS", "VOICEGW_MAX_PENDING_STREAMS",
    "VOICEGW_CONSOLE_WRITE_AGENTS",
    "VOICEGW_ROLE", "CHATTTS_API_URL", "CHATTTS_API_KEY",
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _get(env: Mapping[str, str], key: str) -> str | None:
    value = env.get(key)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _number(env: Mapping[str, str], key: str, default: float, lo: float, hi: float, cast: type[float]) -> float:
    raw = _get(env, key)
    if raw is None:
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise SettingsError(f"{key}={raw!r} is not {'an integer' if cast is int else 'a number'}") from None
    if not lo <= value <= hi:
        bounds = f"{lo}–{hi}" if cast is int else f"{lo:g}–{hi:g}"
        raise SettingsError(f"{key}={value} is not within {bounds}")
    return value


def _int(env: Mapping[str, str], key: str, default: int, lo: int, hi: int) -> int:
    return int(_number(env, key, default, lo, hi, int))


def _float(env: Mapping[str, str], key: str, default: float, lo: float, hi: float) -> float:
    return _number(env, key, default, lo, hi, float)


def _bool(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = _get(env, key)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise SettingsError(f"{key}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def _list(env: Mapping[str, str], key: str) -> tuple[str, ...]:
    """A comma-separated list (spaces ignored)."""
    raw = _get(env, key)
    return tuple(item.strip() for item in raw.split(",") if item.strip()) if raw else ()


def _secret_bytes(env: Mapping[str, str], key: str) -> bytes | None:
    raw = _get(env, key)
    if raw is None:
        return None
    if len(raw) < 16:
        raise SettingsError(f"{key} is too short ({len(raw)} characters, at least 16)")
    return raw.encode()


def _url(env: Mapping[str, str], key: str, schemes: tuple[str, ...]) -> str | None:
    raw = _get(env, key)
    if raw is None:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not parts.netloc:
        raise SettingsError(f"{key}={raw!r} is not a URL with scheme {' or '.join(schemes)}")
    return raw.rstrip("/")


def _public_url(env: Mapping[str, str]) -> str | None:
    """PUBLIC_URL must be https: the TwiML's media stream URL is wss://<its host>/twilio/media, and Twilio's
    Media Streams connect only to wss:// (an http PUBLIC_URL would give a ws:// URL every call fails on)."""
    raw = _url(env, "PUBLIC_URL", ("https", "http"))
    if raw is not None and urlsplit(raw).scheme != "https":
        raise SettingsError(
            f"PUBLIC_URL={raw!r} must be an https:// URL: Twilio's Media Streams connect only to wss:// "
            "(the stream URL is wss://<PUBLIC_URL host>/twilio/media). Put TLS in front of the gateway "
            "(a load balancer, or a tunnel such as ngrok or cloudflared for development), or leave PUBLIC_URL "
            "unset to test locally with `voicegw call`."
        )
    if raw is not None and (urlsplit(raw).query or urlsplit(raw).fragment):
        raise SettingsError(f"PUBLIC_URL={raw!r} must be a base URL without ?query or #fragment")
    return raw


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    #: Public base URL Twilio uses to reach us (https://gw.example.com). Signatures are checked against it.
    public_url: str | None = None
    agents_dir: Path = Path("config/agents")
    redis_url: str | None = None
    twilio_auth_token: str | None = None
    twilio_account_sid: str | None = None
    #: Base URL of Twilio's REST API (tests point it at a loopback fake).
    twilio_api_base_url: str | None = None
    require_signature: bool = False
    #: Key for the per-call stream tokens; default: derived from TWILIO_AUTH_TOKEN, else random per process.
    stream_token_secret: str | None = None
    cartesia_api_key: str | None = None
    cartesia_base_url: str | None = None
    chattts_model_dir: Path | None = None
    chattts_device: Literal["auto", "cuda", "cpu"] = "auto"
    chattts_compile: bool = False
    #: JSON map of expected sha256 per ChatTTS asset, for self-built or fine-tuned checkpoints.
    chattts_sha256_file: Path | None = None
    #: Speech recognizer: a CTranslate2 Whisper model dir or local model name (None = bundled tiny.en), device.
    stt_model: str | None = None
    stt_device: Literal["cpu", "cuda", "auto"] = "cpu"
    api_key: str | None = None
    #: Lead of audio kept buffered at Twilio ahead of playout, seconds.
    playout_lead_s: float = 0.1
    #: Frames (20 ms each) written together once the lead allows: one wake-up and one write per group.
    playout_frames_per_write: int = 5
    max_ws_message_bytes: int = 65536
    drain_timeout_s: float = 600.0
    #: While draining, new calls are redirected here (TwiML <Redirect>) instead of hearing "please call back".
    drain_redirect_url: str | None = None
    #: Serve /metrics on this separate port (and not on the main one) when set.
    metrics_port: int | None = None
    recordings_dir: Path | None = None
    #: ChatTTS preset → Cartesia/Piper voice map for /v1/audio/speech (default: tts/data/voices.json).
    voices_file: Path | None = None
    log_level: str = "INFO"
    log_json: bool = False
    #: A call slot not refreshed for this long is free (stream never opened or refused, crashed instance).
    slot_ttl_s: float = 30.0
    #: Serve /v1/* and /metrics without VOICEGW_API_KEY on a non-loopback bind (refused unless set).
    allow_open_api: bool = False
    #: Speech API requests synthesized at once; more get a 429 (calls never wait behind API jobs).
    api_max_concurrent: int = 2
    #: Log what callers say (personal data) at INFO; off: only its length.
    log_transcripts: bool = False
    #: Beyond what the local YAML agents reference: env vars a spec from Redis may name as ``api_key_env``,
    #: LLM ``base_url`` hosts and transfer numbers it may use.
    agent_key_envs: tuple[str, ...] = ()
    llm_hosts: tuple[str, ...] = ()
    transfer_numbers: tuple[str, ...] = ()
    #: HMAC key for agent specs in Redis: pushes are signed, unsigned or altered entries are refused.
    agent_signing_key: bytes | None = None
    #: Calls this process runs at once, all agents together (0: no cap); more hear the busy message.
    max_calls: int = 0
    #: Media WebSockets accepted but not yet authenticated (no valid `start` yet); more are refused at once.
    max_pending_streams: int = 64
    #: The console's "Save" also rewrites the agent's YAML file in ``agents_dir`` (when that is writable).
    console_write_agents: bool = False
    #: ``all``: calls and speech in one process; ``telephony``: calls only, never loads torch (ChatTTS from
    #: CHATTTS_API_URL); ``speech``: the speech API, health, readiness and metrics only (no Twilio routes).
    role: Literal["all", "telephony", "speech"] = "all"
    #: A ChatTTS speech server (voicegw with VOICEGW_ROLE=speech, or a plain ChatTTS server): when set,
    #: the `chattts` provider is served by it and this process never loads the model.
    chattts_api_url: str | None = None
    #: Bearer token sent to CHATTTS_API_URL (the speech server's VOICEGW_API_KEY).
    chattts_api_key: str | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every configured secret, for the log scrubber (:func:`gateway.ops.logs.add_secrets`)."""
        redis_password = urlsplit(self.redis_url).password if self.redis_url else None
        values = (self.twilio_auth_token, self.stream_token_secret, self.cartesia_api_key, self.api_key,
                  self.chattts_api_key, redis_password,
                  self.agent_signing_key.decode() if self.agent_signing_key else None)
        return tuple(v for v in values if v)

    @property
    def signatures_enforced(self) -> bool:
        return self.twilio_auth_token is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        device = (_get(env, "CHATTTS_DEVICE") or "auto").lower()
        if device not in ("auto", "cuda", "cpu"):
            raise SettingsError(f"CHATTTS_DEVICE={device!r} is not one of auto, cuda, cpu")
        level = (_get(env, "VOICEGW_LOG_LEVEL") or "INFO").upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError(f"VOICEGW_LOG_LEVEL={level!r} is not one of DEBUG, INFO, WARNING, ERROR")
        stt_device = (_get(env, "VOICEGW_STT_DEVICE") or "cpu").lower()
        if stt_device not in ("auto", "cuda", "cpu"):
            raise SettingsError(f"VOICEGW_STT_DEVICE={stt_device!r} is not one of auto, cuda, cpu")
        role = (_get(env, "VOICEGW_ROLE") or "all").lower()
        if role not in ("all", "telephony", "speech"):
            raise SettingsError(f"VOICEGW_ROLE={role!r} is not one of all, telephony, speech")
        model_dir = _get(env, "CHATTTS_MODEL_DIR")
        rec_dir = _get(env, "VOICEGW_RECORDINGS_DIR")
        voices_file = _get(env, "VOICEGW_VOICES_FILE")
        settings = cls(
            host=_get(env, "VOICEGW_HOST") or "127.0.0.1",
            port=_int(env, "VOICEGW_PORT", 8080, 0, 65535),
            public_url=_public_url(env),
            agents_dir=Path(_get(env, "VOICEGW_AGENTS_DIR") or "config/agents"),
            redis_url=_url(env, "REDIS_URL", ("redis", "rediss", "unix")),
            twilio_auth_token=_get(env, "TWILIO_AUTH_TOKEN"),
            twilio_account_sid=_get(env, "TWILIO_ACCOUNT_SID"),
            twilio_api_base_url=_url(env, "TWILIO_API_BASE_URL", ("https", "http")),
            require_signature=_bool(env, "VOICEGW_REQUIRE_SIGNATURE", False),
            stream_token_secret=_get(env, "VOICEGW_STREAM_TOKEN_SECRET"),
            cartesia_api_key=_get(env, "CARTESIA_API_KEY"),
            cartesia_base_url=_url(env, "CARTESIA_BASE_URL", ("https", "http")),
            chattts_model_dir=Path(model_dir) if model_dir else None,
            chattts_device=device,  # type: ignore[arg-type]
            chattts_compile=_bool(env, "CHATTTS_COMPILE", False),
            chattts_sha256_file=Path(sha_file) if (sha_file := _get(env, "CHATTTS_SHA256_FILE")) else None,
            stt_model=_get(env, "VOICEGW_STT_MODEL"),
            stt_device=stt_device,  # type: ignore[arg-type]
            api_key=_get(env, "VOICEGW_API_KEY"),
            playout_lead_s=_float(env, "VOICEGW_PLAYOUT_LEAD_MS", 100.0, 20.0, 2000.0) / 1000.0,
            playout_frames_per_write=_int(env, "VOICEGW_PLAYOUT_FRAMES_PER_WRITE", 5, 1, 10),
            max_ws_message_bytes=_int(env, "VOICEGW_MAX_WS_MESSAGE_BYTES", 65536, 1024, 16 * 1024 * 1024),
            drain_timeout_s=_float(env, "VOICEGW_DRAIN_TIMEOUT_S", 600.0, 0.0, 86400.0),
            drain_redirect_url=_url(env, "VOICEGW_DRAIN_REDIRECT_URL", ("https", "http")),
            metrics_port=_int(env, "VOICEGW_METRICS_PORT", 0, 0, 65535) or None,
            recordings_dir=Path(rec_dir) if rec_dir else None,
            voices_file=Path(voices_file) if voices_file else None,
            log_level=level,
            log_json=_bool(env, "VOICEGW_LOG_JSON", False),
            slot_ttl_s=_float(env, "VOICEGW_SLOT_TTL_S", 30.0, 0.3, 3600.0),
            allow_open_api=_bool(env, "VOICEGW_ALLOW_OPEN_API", False),
            api_max_concurrent=_int(env, "VOICEGW_API_MAX_CONCURRENT", 2, 1, 64),
            log_transcripts=_bool(env, "VOICEGW_LOG_TRANSCRIPTS", False),
            agent_key_envs=_list(env, "VOICEGW_AGENT_KEY_ENVS"),
            llm_hosts=tuple(h.lower() for h in _list(env, "VOICEGW_LLM_HOSTS")),
            transfer_numbers=_list(env, "VOICEGW_TRANSFER_NUMBERS"),
            agent_signing_key=_secret_bytes(env, "VOICEGW_AGENT_SIGNING_KEY"),
            max_calls=_int(env, "VOICEGW_MAX_CALLS", 0, 0, 100000),
            max_pending_streams=_int(env, "VOICEGW_MAX_PENDING_STREAMS", 64, 1, 100000),
            console_write_agents=_bool(env, "VOICEGW_CONSOLE_WRITE_AGENTS", False),
            role=role,  # type: ignore[arg-type]
            chattts_api_url=_url(env, "CHATTTS_API_URL", ("http", "https")),
            chattts_api_key=_get(env, "CHATTTS_API_KEY"),
        )
        if settings.require_signature and settings.twilio_auth_token is None:
            raise SettingsError(f"VOICEGW_REQUIRE_SIGNATURE={_get(env, 'VOICEGW_REQUIRE_SIGNATURE')} "
                                "but TWILIO_AUTH_TOKEN is not set")
        if settings.role == "speech" and settings.chattts_api_url:
            raise SettingsError("CHATTTS_API_URL is set but VOICEGW_ROLE=speech: a speech pod synthesizes itself")
        return settings
