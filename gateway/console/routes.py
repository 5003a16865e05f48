"""The console's HTTP side: the page, its static files, the agent list and the voice panel's endpoints.

I/O shell around :mod:`gateway.console.access` and :mod:`gateway.console.voice`. Every route here, the
call WebSocket included (:mod:`gateway.console.carrier`), is for operators: the API key (bearer, or
HTTP Basic password so a browser can ask for it), or loopback only when no key is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from agents.loader import parse_agent
from agents.store import RedisStore
from gateway.console.carrier import console_call
from gateway.console.guard import ConsoleServices, denied, services_of
from gateway.console.voice import Saved, apply_tts, voice_schema
from gateway.phrase_cache import fingerprint

log = logging.getLogger("voicegw.console")

STATIC = resources.files("gateway.console").joinpath("static")
FILES = {
    "console.js": "text/javascript; charset=utf-8",
    "call-worklet.js": "text/javascript; charset=utf-8",
    "resampler.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}


def _headers(request: Request) -> dict[str, str]:
    host = request.headers.get("host", "")
    csp = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
           f"media-src 'self' blob:; connect-src 'self' ws://{host} wss://{host}; "
           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache",
            "Referrer-Policy": "no-referrer"}


async def page(request: Request) -> Response:
    if (refused := denied(request)) is not None:
        return refused
    html = STATIC.joinpath("index.html").read_bytes()
    return Response(html, media_type="text/html; charset=utf-8", headers=_headers(request))


async def static(request: Request) -> Response:
    if (refused := denied(request)) is not None:
        return refused
    name = request.path_params["name"]
    if name not in FILES:
        return PlainTextResponse("not found", status_code=404)
    return Response(STATIC.joinpath(name).read_bytes(), media_type=FILES[name], headers=_headers(request))


async def schema(request: Request) -> Response:
    if (refused := denied(request)) is not None:
        return refused
    return JSONResponse(voice_schema())


async def agents(request: Request) -> Response:
    if (refused := denied(request)) is not None:
        return refused
    store = services_of(request).store
    listed = [{"id": a.id, "name": a.name, "version": fingerprint(a)}
              for a in sorted(store.snapshot.agents.values(), key=lambda a: a.id)]
    return JSONResponse({"store": {"kind": store.kind, "version": store.version, "healthy": bool(store.healthy)},
                         "agents": listed})


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", **extra}}, status_code=status)


def agent_file(directory: Path, agent_id: str) -> Path | None:
    """The YAML file in ``directory`` that defines ``agent_id`` (parsed, not guessed from its name)."""
    if not directory.is_dir():
        return None
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        spec, _ = parse_agent(text, path.name)
        if spec is not None and spec.id == agent_id:
            return path
    return None


async def agent(request: Request) -> Response:
    if (refused := denied(request)) is not None:
        return refused
    services = services_of(request)
    spec = services.store.get(request.path_params["agent_id"])
    if spec is None:
        return _error(404, f"no agent {request.path_params['agent_id']!r}")
    path = await asyncio.to_thread(agent_file, services.settings.agents_dir, spec.id)
    return JSONResponse({
        "id": spec.id, "name": spec.name, "version": fingerprint(spec), "greeting": spec.greeting,
        "tts": spec.tts.model_dump(mode="json"), "file": path.name if path else None,
        "writable": _writable(services, path) is None,
    })


def _writable(services: ConsoleServices, path: Path | None) -> str | None:
    """None when a save may write ``path``; else why not."""
    if not services.settings.console_write_agents:
        return ("the YAML on disk is unchanged: start the gateway with VOICEGW_CONSOLE_WRITE_AGENTS=1 "
                "(and a writable agents directory) to write it back")
    if path is None:
        return "the YAML on disk is unchanged: no file in the agents directory defines this agent"
    if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        return f"the YAML on disk is unchanged: {path} is not writable"
    return None


def _write(path: Path, text: str) -> None:
    """Replace ``path`` atomically (a temporary file in the same directory, then a rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


async def save_tts(request: Request) -> Response:
    """Validate a new ``tts`` section for one agent and push the changed agent to the store as a new version."""
    if (refused := denied(request)) is not None:
        return refused
    services = services_of(request)
    current = services.store.get(request.path_params["agent_id"])
    if current is None:
        return _error(404, f"no agent {request.path_params['agent_id']!r}")
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "body: not valid JSON")
    if not isinstance(body, dict) or "tts" not in body:
        return _error(400, "body: expected a JSON object with a `tts` mapping")
    path = await asyncio.to_thread(agent_file, services.settings.agents_dir, current.id)
    text = await asyncio.to_thread(path.read_text, encoding="utf-8") if path is not None else None
    file_name = path.name if path is not None else f"{current.id}.yaml"
    result = apply_tts(current, body["tts"], file_name, text)
    if not isinstance(result, Saved):
        return _error(422, "; ".join(str(p) for p in result),
                      problems=[{"path": p.path, "message": p.message} for p in result])
    updated = {**services.store.snapshot.agents, current.id: result.agent}
    store = services.store
    try:
        if isinstance(store, RedisStore):
            await store.publish(updated)
        else:
            store.replace(updated)
    except Exception as exc:  # Redis down: nothing changed anywhere
        log.error("console: could not push agent %s: %r", current.id, exc)
        return _error(503, f"could not push the new version to the {store.kind} store: {exc}")
    reason = _writable(services, path) if result.from_file else result.note
    written = False
    if reason is None and path is not None:
        try:
            await asyncio.to_thread(_write, path, result.yaml)
            written = True
        except OSError as exc:
            reason = f"could not write {path}: {exc}"
    log.info("console: agent %s voice saved as version %s (store %s)%s", current.id, fingerprint(result.agent),
             store.version, f"; written to {path}" if written else "")
    return JSONResponse({
        "id": current.id, "version": fingerprint(result.agent), "store_version": store.version,
        "yaml": result.yaml, "file_name": file_name, "written": written,
        "file": str(path) if written else None, "not_written": reason,
        "tts": json.loads(result.agent.tts.model_dump_json()),
    })


def console_routes() -> list[BaseRoute]:
    return [
        Route("/console", page, methods=["GET"]),
        Route("/console/static/{name}", static, methods=["GET"]),
        Route("/console/api/voice-schema", schema, methods=["GET"]),
        Route("/console/api/agents", agents, methods=["GET"]),
        Route("/console/api/agents/{agent_id}", agent, methods=["GET"]),
        Route("/console/api/agents/{agent_id}/tts", save_tts, methods=["POST"]),
        WebSocketRoute("/console/call", console_call),
    ]
