"""The package as pip builds it: no setuptools warnings, every module and data file of the four layers inside."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import ROOT

LAYERS = ("audio", "tts", "agents", "gateway")

pytestmark = pytest.mark.slow  # builds a wheel (a few seconds)


def tracked(*paths: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", "--", *paths], cwd=ROOT, capture_output=True, text=True, check=True)
    return [p for p in out.stdout.splitlines() if (ROOT / p).is_file()]


def test_wheel_builds_without_warnings_and_holds_every_package_file(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout (the list of files that must ship)")
    src = tmp_path / "src"
    files = tracked(*LAYERS)
    for name in [*files, "pyproject.toml", "README.md", "LICENSE"]:  # a clean tree: no caches, no build dirs
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    assert "absent from the `packages` configuration" not in output, output[-3000:]
    assert "Warning" not in output, [line for line in output.splitlines() if "Warning" in line]
    (wheel,) = (tmp_path / "dist").glob("voicegw-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(files) - names == set()  # every module, and data such as tts/data/*.json, console/static/*
    assert not [n for n in names if n.split("/")[0] in ("tests", "bench", "scripts", "deploy", "docs")]
