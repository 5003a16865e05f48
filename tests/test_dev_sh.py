"""``./dev.sh serve`` as a first-time user sees it: progress while installing, then the gateway starts.

The virtualenv is a stand-in (``VOICEGW_VENV``): its ``python`` answers ``-m pip install`` with what pip prints
on a first install, and its ``voicegw`` echoes its arguments. The shell logic under test is dev.sh's own.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.helpers import ROOT

PIP_FIRST_RUN = """\
Obtaining file:///src/voicegw
Collecting numpy<3,>=1.26 (from voicegw==0.1.0)
  Downloading numpy-2.3.4-cp311-cp311-manylinux_2_27_x86_64.whl (16.9 MB)
Collecting faster-whisper==1.2.1 (from voicegw==0.1.0)
  Downloading faster_whisper-1.2.1-py3-none-any.whl (1.1 MB)
Installing collected packages: numpy, faster-whisper, voicegw
Successfully installed faster-whisper-1.2.1 numpy-2.3.4 voicegw-0.1.0
"""


def fake_venv(tmp_path: Path, pip_rc: int = 0) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (tmp_path / "pip-output.txt").write_text(PIP_FIRST_RUN)
    python = venv / "bin" / "python"
    python.write_text(f"""#!/bin/sh
if [ "$1 $2 $3" = "-m pip install" ]; then
    case " $* " in *" -q "*) exit 0 ;; esac
    cat {tmp_path / "pip-output.txt"}
    exit {pip_rc}
fi
exit 3
""")
    voicegw = venv / "bin" / "voicegw"
    voicegw.write_text('#!/bin/sh\necho "voicegw $*"\n')
    python.chmod(0o755)
    voicegw.chmod(0o755)
    return venv


def dev_sh(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "VOICEGW_VENV": str(venv)}
    return subprocess.run(["sh", str(ROOT / "dev.sh"), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def test_serve_shows_progress_then_starts_the_gateway(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path)
    proc = dev_sh(venv, "serve", "--port", "9")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "voicegw serve --port 9\n"
    lines = [line.split("] ", 1)[-1] for line in proc.stderr.splitlines()]
    assert lines[0].startswith(f"installing voicegw and offline speech into {venv} (first run: a few minutes")
    assert "    downloading numpy-2.3.4-cp311-cp311-manylinux_2_27_x86_64.whl (16.9 MB)" in lines
    assert "    downloading faster_whisper-1.2.1-py3-none-any.whl (1.1 MB)" in lines
    assert "    installing 3 package(s)" in lines
    assert lines[-2:] == ["installed", "starting the gateway (Ctrl-C stops it)"]
    assert all(line.startswith("voicegw [") for line in proc.stderr.splitlines() if not line.startswith("    "))


def test_a_failed_install_stops_with_pips_output(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path, pip_rc=1)
    proc = dev_sh(venv, "serve")
    assert proc.returncode == 1
    assert proc.stdout == ""  # the gateway was not started
    assert "Successfully installed" in proc.stderr  # the whole pip log, not only the progress lines
    assert proc.stderr.rstrip().endswith(f"pip install failed (exit 1); the output above is also in "
                                         f"{venv}/pip-install.log")
