"""The engine interface every TTS provider implements.

Rules of this file: types only. An engine turns one sentence of text plus the
agent's voice settings into a stream of :class:`~audio.formats.AudioChunk`
(each with its own format). Cancellation is task cancellation: when the
consumer stops iterating (or the task is cancelled) the engine must stop
spending compute on that sentence as soon as practical and must not affect
other requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, runtime_checkable

from audio.formats import AudioChunk
from tts.settings import EngineSettings

S = TypeVar("S", bound=EngineSettings)


class TTSError(Exception):
    """A provider could not synthesize a sentence. ``reason`` is short and loggable."""

    def __init__(self, provider: str, reason: str) -> None:
        super().__init__(f"{provider}: {reason}")
        self.provider = provider
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SynthesisRequest:
    """One sentence to speak.

    ``settings`` is the engine's own settings model (its section of the agent's
    ``tts`` config, e.g. ``ChatTTSVoice``), or None for the engine's defaults;
    engines read it with :meth:`settings_as`. ``language`` is the agent's
    language (ISO 639-1, optionally with a region): every engine that can
    speak more than one language uses it.
    ``priority`` 0 is most urgent (first sentence of a turn).
    ``deadline`` is an absolute ``time.monotonic()`` by which first audio is
    useful; engines with queues fail fast when they cannot meet it.
    """

    text: str
    settings: EngineSettings | None = None
    language: str = "en"
    priority: int = 1
    deadline: float | None = None
    request_id: str = ""
    meta: dict[str, str] = field(default_factory=dict)

    def settings_as(self, model: type[S]) -> S:
        """The settings as ``model`` (its defaults when None); another engine's settings are a bug: TypeError."""
        if self.settings is None:
            return model()
        if not isinstance(self.settings, model):
            raise TypeError(f"expected {model.__name__} settings, got {type(self.settings).__name__}")
        return self.settings


@runtime_checkable
class TTSEngine(Protocol):
    """A speech synthesizer."""

    name: str

    @property
    def ready(self) -> bool:
        """True when the engine is loaded and can take requests."""
        ...

    def synthesize(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        """Stream audio for one sentence. Raises :class:`TTSError` on failure."""
        ...

    async def aclose(self) -> None:
        """Release resources."""
        ...
