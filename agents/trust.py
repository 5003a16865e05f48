"""What an agent spec read from Redis may reference, and the optional signature of pushed specs.

Rules of this file: pure, no I/O, no clock. Whoever can write Redis can write an agent spec, and a spec
names things the gateway then acts on with its own privileges: ``api_key_env`` (an environment variable
whose value is sent as a bearer token), the LLM ``base_url`` (where that token and the caller's words go)
and transfer numbers (where calls are bridged, at the operator's expense). A :class:`SpecPolicy` allows
only what the operator's own configuration names: the lists in the gateway settings plus whatever the local
YAML agents (the source of truth) reference. Signing (HMAC-SHA256 with a key only the gateways and the
pushing CLI hold) goes further: an unsigned or altered entry is refused whatever it references.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from agents.spec import AgentSpec, LLMLogic


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def references(spec: AgentSpec) -> tuple[set[str], set[str], set[str]]:
    """(key env vars, LLM hosts, transfer numbers) that ``spec`` makes the gateway use."""
    envs: set[str] = set()
    hosts: set[str] = set()
    numbers: set[str] = set()
    logic = spec.logic
    if isinstance(logic, LLMLogic):
        if logic.api_key_env:
            envs.add(logic.api_key_env)
        hosts.add(_host(logic.base_url))
        numbers.update(logic.transfer_numbers)
    else:
        numbers.update(r.transfer_to for r in logic.rules if r.transfer_to)
    return envs, hosts, numbers


@dataclass(frozen=True, slots=True)
class SpecPolicy:
    key_envs: frozenset[str]
    llm_hosts: frozenset[str]
    transfer_numbers: frozenset[str]

    @classmethod
    def of(cls, local: Mapping[str, AgentSpec], key_envs: Iterable[str] = (), llm_hosts: Iterable[str] = (),
           transfer_numbers: Iterable[str] = ()) -> SpecPolicy:
        """The configured lists plus everything the local (YAML) agents reference."""
        envs, hosts, numbers = set(key_envs), {h.lower() for h in llm_hosts}, set(transfer_numbers)
        for spec in local.values():
            e, h, n = references(spec)
            envs |= e
            hosts |= h
            numbers |= n
        return cls(frozenset(envs), frozenset(hosts), frozenset(numbers))

    def problems(self, spec: AgentSpec) -> list[str]:
        """Why ``spec`` may not be served (empty: it may)."""
        envs, hosts, numbers = references(spec)
        out = [f"api_key_env {e!r} is not in VOICEGW_AGENT_KEY_ENVS" for e in sorted(envs - self.key_envs)]
        out += [f"LLM host {h!r} is not in VOICEGW_LLM_HOSTS" for h in sorted(hosts - self.llm_hosts)]
        extra = sorted(numbers - self.transfer_numbers)
        out += [f"transfer number {n} is not in VOICEGW_TRANSFER_NUMBERS" for n in extra]
        return out


def sign(key: bytes, agent_id: str, spec_json: str | bytes) -> str:
    """The HMAC-SHA256 (hex) of one pushed entry: its id and its JSON exactly as stored."""
    blob = spec_json.encode() if isinstance(spec_json, str) else spec_json
    return hmac.new(key, agent_id.encode() + b"\n" + blob, hashlib.sha256).hexdigest()


def signature_ok(key: bytes, agent_id: str, spec_json: str | bytes, signature: str | bytes | None) -> bool:
    if signature is None:
        return False
    given = signature.decode("ascii", "replace") if isinstance(signature, bytes) else signature
    return hmac.compare_digest(sign(key, agent_id, spec_json), given)
