"""Hold one conversation through the README's serve install (run by ``./dev.sh test``).

The test environment installs more than ``./dev.sh serve`` does, so a module only the tests
bring (scipy once) can hide from the suite. This runs ``voicegw call --say`` with the serve
install's own ``voicegw`` and fails unless the demo agent answered the caller's question.

    python scripts/check_serve_env.py .venv-serve/bin/voicegw
"""

from __future__ import annotations

import subprocess
import sys

QUESTION = "What are your opening hours?"
EXPECTED = "open"  # the demo agent's scripted answer: "We are open from 9 to 5, Monday to Friday."


def main(voicegw: str) -> int:
    cmd = [voicegw, "call", "--agent", "demo", "--say", QUESTION]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    out = proc.stdout + proc.stderr
    replies = [line for line in proc.stdout.splitlines() if line.strip().startswith("agent:")]
    answered = any(EXPECTED in line.lower() for line in replies[1:])  # replies[0] is the greeting
    if proc.returncode != 0 or not answered or "Traceback" in out:
        print(f"serve install cannot converse: {' '.join(cmd)} exited {proc.returncode}\n{out}", file=sys.stderr)
        return 1
    print(f"serve install converses: {replies[-1].strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
