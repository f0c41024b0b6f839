#!/usr/bin/env bash
# Load benchmark of the gateway (bench/run.py): starts QuestDB, the echo baselines and the
# gateway on free loopback ports, measures, stops them, writes bench/results/bench.{json,md}.
#   scripts/bench.sh              full run (~30 min)
#   scripts/bench.sh --quick      a few seconds per measurement
#   scripts/bench.sh --soak 600   full run plus a 10-minute soak
# Needs: .venv (scripts/provision.sh), ghz (scripts/provision.sh --test), wrk, Java 17 for QuestDB.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "bench.sh: no .venv; run scripts/provision.sh --test first" >&2; exit 2; }
export PATH="$PWD/.venv/bin:$PWD/.cache/go/bin:$PATH"
for t in ghz wrk java; do
  command -v "$t" >/dev/null || { echo "bench.sh: $t is missing (scripts/provision.sh --test)" >&2; exit 2; }
done
exec .venv/bin/python -m bench.run "$@"
