#!/usr/bin/env bash
# Installs everything tradewire's run and test commands need, on a fresh Debian machine
# (root, Python 3.11, Java 17, Go, Node 20). Idempotent: a second run only checks.
#   scripts/provision.sh          runtime: venv + dashboard build
#   scripts/provision.sh --test   also the test tools: Debian packages, grpcurl, ghz, QuestDB
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WITH_TEST=0
[ "${1:-}" = "--test" ] && WITH_TEST=1

say() { printf '\033[1m[provision]\033[0m %s\n' "$*"; }

# -- Python ---------------------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  python3 -m venv .venv
fi
deps=$(cat pyproject.toml setup.py | sha256sum | cut -c1-16)
stamp=.venv/.installed-$deps-$WITH_TEST
# A test install (1) includes everything the run install (0) needs.
if [ ! -f "$stamp" ] && [ ! -f ".venv/.installed-$deps-1" ]; then
  say "installing Python dependencies"
  extras="dev"
  [ $WITH_TEST = 1 ] && extras="dev,test"
  { .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -e ".[$extras]"; } > .venv/pip.log 2>&1 \
    || { cat .venv/pip.log; exit 1; }
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# -- dashboard ------------------------------------------------------------------------------
if [ ! -d web/node_modules ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  say "installing dashboard dependencies"
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ ! -f web/dist/index.html ] || [ -n "$(find web/src web/index.html gen/ts -newer web/dist/index.html -print -quit 2>/dev/null)" ]; then
  say "building the dashboard"
  (cd web && npm run build --silent)
fi

[ $WITH_TEST = 1 ] || exit 0

# -- Debian packages --------------------------------------------------------------------------
missing=()
for pair in redis-server:redis-server chromium:chromium chromedriver:chromium-driver wrk:wrk h2load:nghttp2-client; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# -- Go clients (external proof: grpcurl, ghz) ------------------------------------------------
export GOBIN=$ROOT/.cache/go/bin
mkdir -p "$GOBIN"
[ -x "$GOBIN/grpcurl" ] || { say "installing grpcurl"; go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4; }
[ -x "$GOBIN/ghz" ] || { say "installing ghz"; go install github.com/bojand/ghz/cmd/ghz@v0.93.0; }

# -- QuestDB server jar ----------------------------------------------------------------------
scripts/questdb.sh fetch >/dev/null
say "ready"
