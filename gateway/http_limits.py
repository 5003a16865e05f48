"""Bounded request bodies, read before anything authenticates them (I/O shell).

A webhook's signature covers its body, so the body must be read before the
signature can be checked; the speech API's body is read after the bearer check
but is still untrusted. Both are read here with a hard cap (``Content-Length``
refused up front, the stream counted as it arrives), so an unauthenticated peer
can make the gateway hold at most ``limit`` bytes, and never spool to disk:
webhooks accept only ``application/x-www-form-urlencoded`` (what Twilio sends),
parsed here without python-multipart. Every failure is a :class:`BodyError`
carrying a 4xx status.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.datastructures import FormData, UploadFile
from starlette.requests import ClientDisconnect, Request

#: Twilio's webhook forms are ~1–2 KB (a few dozen fields); 32 KiB leaves room for long custom parameters.
WEBHOOK_MAX_BODY = 32 * 1024
#: The speech API's JSON: 4,000 characters of text (≤ 16 KB of UTF-8) and a few small fields.
SPEECH_MAX_BODY = 64 * 1024
#: Fields in one webhook form (Twilio sends about 20).
WEBHOOK_MAX_FIELDS = 200
FORM_TYPE = "application/x-www-form-urlencoded"


class BodyError(Exception):
    """The body is refused; ``status`` is the 4xx to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes (413 beyond; 400 for a malformed ``Content-Length``)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise BodyError(400, "malformed Content-Length")
        if int(declared) > limit:
            raise BodyError(413, f"body too large ({int(declared)} bytes, at most {limit})")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyError(413, f"body too large (more than {limit} bytes)")
            chunks.append(chunk)
    except ClientDisconnect:
        raise BodyError(400, "client disconnected mid-body") from None
    return b"".join(chunks)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_form(request: Request, limit: int = WEBHOOK_MAX_BODY) -> FormData:
    """A urlencoded form (415 for any other content type), fields in arrival order, duplicates kept."""
    if media_type(request) != FORM_TYPE:
        raise BodyError(415, f"expected {FORM_TYPE}")
    body = await read_body(request, limit)
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict",
                          max_num_fields=WEBHOOK_MAX_FIELDS)
    except UnicodeDecodeError:
        raise BodyError(400, "form is not percent-encoded UTF-8") from None
    except ValueError:
        raise BodyError(400, f"form has more than {WEBHOOK_MAX_FIELDS} fields") from None
    fields: list[tuple[str, str | UploadFile]] = list(pairs)
    return FormData(fields)
