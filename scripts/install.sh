#!/usr/bin/env bash
# Install talkset into ./.venv (Python 3.11): pinned torch first, then the project with test extras,
# and ffmpeg. Idempotent: a second run only checks. Usage: bash scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2]==(3,11) else 1)' 2>/dev/null; then PY=$cand; break; fi
  done
fi
[ -n "$PY" ] || { echo "install.sh: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

# ffmpeg: Debian's package when we can install it, else the static binary of the imageio-ffmpeg wheel.
if ! command -v ffmpeg >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[install] apt-get install ffmpeg"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null) \
      || echo "[install] apt-get failed: falling back to imageio-ffmpeg's binary"
  else
    echo "[install] no ffmpeg on PATH: talkset will use imageio-ffmpeg's binary"
  fi
fi

# chromium: only the dataset-card test (tests/test_report.py) needs it, to render `talkset report`'s page.
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[install] apt-get install chromium (for tests/test_report.py)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "[install] apt-get failed: tests/test_report.py will fail until chromium is installed"
fi

stamp=.venv/.talkset-installed
want=$(cat pyproject.toml scripts/install.sh | sha1sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "[install] .venv up to date"
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
echo "[install] torch==2.14.1 torchvision==0.29.1 (pinned; ~100 s)"
.venv/bin/pip install -q "torch==2.14.1" "torchvision==0.29.1"
echo "[install] talkset and its pinned stack (~3 min)"
.venv/bin/pip install -q -e ".[test]" "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/pip check
echo "$want" > "$stamp"
echo "[install] done: .venv/bin/talkset"
