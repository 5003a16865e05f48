#!/usr/bin/env sh
# voicegw developer entry point. Two commands on a fresh machine (Python 3.11+ and apt assumed):
#   ./dev.sh serve   set up a virtualenv and run the gateway on embedded defaults (Piper voice, offline STT, in-process store)
#   ./dev.sh test    set up everything the tests need (redis-server, ChatTTS, STT) and run lint, types and tests
# Both are idempotent: running them again reuses what is already installed.
set -eu
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
VENV="${VOICEGW_VENV:-.venv}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
STARTED=$(date +%s)

step() {  # a progress line on stderr, with the seconds since ./dev.sh started
    echo "voicegw [$(( $(date +%s) - STARTED )) s] $*" >&2
}

pip_install() {  # pip install "$@", showing each download as it starts (a first run takes minutes); log on failure
    log="$VENV/pip-install.log"
    { rc=0; "$VENV/bin/python" -m pip install --progress-bar off "$@" 2>&1 || rc=$?; echo "$rc" >"$log.rc"; } |
        tee "$log" | awk '
            /^ *Downloading / { sub(/^ *Downloading /, ""); print "    downloading " $0; fflush() }
            /^Installing collected packages: / { n = split(substr($0, 32), p, ", "); print "    installing " n " package(s)"; fflush() }
        ' >&2
    rc=$(cat "$log.rc")
    if [ "$rc" != 0 ]; then
        cat "$log" >&2
        step "pip install failed (exit $rc); the output above is also in $log"
        return "$rc"
    fi
}

need_sys() {  # need_sys <command> <apt package>
    command -v "$1" >/dev/null 2>&1 && return 0
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "$2" >/dev/null
    else
        echo "please install $2 (needed for $1)" >&2; exit 1
    fi
}

venv() {
    [ -x "$VENV/bin/python" ] || { step "creating the virtualenv $VENV"; "$PY" -m venv "$VENV"; }
    "$VENV/bin/python" -m pip install -q --upgrade "pip>=24" >/dev/null
}

setup_base() {
    venv
    # The gateway plus listening (VAD + speech-to-text, no torch) so the demo agent can converse offline.
    step "installing voicegw and offline speech into $VENV (first run: a few minutes; later runs: seconds)"
    pip_install -e ".[stt]"
    "$VENV/bin/python" -m pip install -q --no-deps "silero-vad==6.2.3"
    # pipecat-ai only for the Smart Turn v3.2 ONNX file (turn_model: smart_turn); never imported.
    "$VENV/bin/python" -m pip install -q --no-deps "pipecat-ai==1.14.0"
    step "installed"
}

setup_full() {
    venv
    need_sys redis-server redis-server
    # The console test drives Debian's chromium headless through Playwright (which never downloads a browser).
    need_sys chromium chromium
    step "installing voicegw with ChatTTS, speech and the test tools into $VENV (first run: many minutes)"
    # torch first, pinned: 2.13.0 is the CPU build (a bare "torch" would pull several GB of CUDA wheels).
    command -v nvidia-smi >/dev/null 2>&1 || pip_install "torch==2.13.0"
    pip_install -e ".[stt,chattts,dev]"
    # silero-vad only for its ONNX file: its Python deps would pull torch again.
    "$VENV/bin/python" -m pip install -q --no-deps "silero-vad==6.2.3"
    "$VENV/bin/python" -m pip install -q --no-deps "pipecat-ai==1.14.0"
    # PyPI's torchaudio is a CUDA build; on CPU hosts drop its native libs so it runs in pure-Python mode
    # (ChatTTS only uses MelSpectrogram). See "CPU hosts only (torchaudio fix)" in docs/chattts.md.
    if ! command -v nvidia-smi >/dev/null 2>&1; then
        "$VENV/bin/python" - <<'PYEOF'
import importlib.util, pathlib
spec = importlib.util.find_spec("torchaudio")
if spec and spec.origin:
    for so in (pathlib.Path(spec.origin).parent / "lib").glob("*.so"):
        so.unlink()
PYEOF
    fi
}

case "${1:-}" in
    serve)
        setup_base
        shift
        step "starting the gateway (Ctrl-C stops it)"
        exec "$VENV/bin/voicegw" serve "$@"
        ;;
    test)
        setup_full
        shift
        export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
        # The serve command's own environment (fewer packages than the test one) must hold a conversation.
        VENV=.venv-serve setup_base
        .venv-serve/bin/python scripts/check_serve_env.py .venv-serve/bin/voicegw
        "$VENV/bin/ruff" check audio tts agents gateway tests bench scripts
        "$VENV/bin/lint-imports"
        "$VENV/bin/mypy"
        # Two workers, a test file each: most tests wait on real-time audio and servers, so the two overlap
        # (17 min → 10 min of pytest on a 2-core VM). `./dev.sh test -n0 tests/test_x.py` runs one file alone.
        exec "$VENV/bin/python" -m pytest -q -n 2 --dist loadfile --durations=25 "$@"
        ;;
    setup)
        setup_full
        ;;
    *)
        echo "usage: ./dev.sh serve|test|setup" >&2
        exit 2
        ;;
esac
