"""The ``voicegw`` command line as a user meets it: real subprocesses, real exit codes and messages."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import build_parser
from tests.helpers import ROOT, free_port


def voicegw(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
                                            "OMP_NUM_THREADS": "1", **env})


def test_version() -> None:
    proc = voicegw("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("voicegw ") and proc.stdout.split()[1][0].isdigit()


@pytest.mark.parametrize("args", [(), ("agents",), ("chattts",)])
def test_a_command_group_alone_shows_its_commands_not_internal_names(args: tuple[str, ...]) -> None:
    proc = voicegw(*args)
    assert proc.returncode == 2
    assert "COMMAND" in proc.stderr and "commands:" in proc.stderr
    assert "_cmd" not in proc.stderr and "required: command" not in proc.stderr


def _parsers(parser: argparse.ArgumentParser, name: str = "voicegw") -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                found += _parsers(child, f"{name} {sub}")
    return found


def test_every_argument_has_help() -> None:
    missing = [f"{name} {action.dest}" for name, parser in _parsers(build_parser()) for action in parser._actions
               if not isinstance(action, argparse._SubParsersAction) and not action.help]
    assert missing == []
    validate = voicegw("agents", "validate", "--help").stdout
    assert "default $VOICEGW_AGENTS_DIR, else config/agents" in " ".join(validate.split())


def test_call_to_a_closed_port_is_one_line_not_a_traceback() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    proc = voicegw("call", "--agent", "demo", "--url", url)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"voicegw: cannot reach {url}: ") and "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1


def test_out_into_a_missing_folder_is_refused_before_the_call(tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "heard.wav"
    # --url to a closed port: had the call been attempted first, the error would be about the port
    proc = voicegw("call", "--agent", "demo", "--url", f"http://127.0.0.1:{free_port()}", "--out", str(out))
    assert proc.returncode == 2
    assert proc.stderr == f"voicegw: --out {out}: folder {out.parent} does not exist\n"
    proc = voicegw("say", "--agent", "demo", "--out", str(tmp_path), "hi")
    assert proc.returncode == 2 and proc.stderr == f"voicegw: --out {tmp_path}: is a directory\n"


@pytest.mark.slow
def test_call_to_an_unknown_agent_says_why(agents_dir: Path) -> None:
    proc = voicegw("call", "--agent", "nosuch", VOICEGW_AGENTS_DIR=str(agents_dir))
    assert proc.returncode == 1
    assert "heard 0.00 s" not in proc.stdout
    assert ("voicegw: call not connected: no agent 'nosuch' (agents: demo, support); the gateway answered "
            "'Sorry, this number is not in service. Goodbye.' and hung up") in proc.stderr


def test_call_in_process_with_invalid_agents_lists_the_problems(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("id: bad\nname: B\ngreeting: hi\nlogic: {kind: nope}\n")
    proc = voicegw("call", "--agent", "bad", VOICEGW_AGENTS_DIR=str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("bad.yaml:4: logic: 'nope' is not one of")


def test_agents_push_never_prints_the_redis_password(agents_dir: Path) -> None:
    url = f"redis://:s3cret-pass@127.0.0.1:{free_port()}/0"
    done = voicegw("agents", "push", "--redis-url", url, VOICEGW_AGENTS_DIR=str(agents_dir))
    assert done.returncode == 1
    assert "s3cret-pass" not in done.stdout + done.stderr and "redis://:***@127.0.0.1" in done.stderr
