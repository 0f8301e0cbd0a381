#!/usr/bin/env bash
# One command: install (if needed) and run the whole test suite. Needs ../shared beside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export OMP_NUM_THREADS=1 RAY_USAGE_STATS_ENABLED=0 PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
export TALKSET_WEIGHTS=${TALKSET_WEIGHTS:-$(cd .. && pwd)/shared/weights}
# A private Prefect home so tests use their own ephemeral API database.
export PREFECT_HOME=${PREFECT_HOME:-$(mktemp -d -t talkset-prefect-XXXX)}
exec .venv/bin/python -m pytest -p no:cacheprovider --durations=15 "$@"
