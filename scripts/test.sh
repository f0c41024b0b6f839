#!/usr/bin/env bash
# The whole test suite, provisioning what it needs first. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/provision.sh --test
export PATH=$PWD/.cache/go/bin:$PWD/.venv/bin:$PATH
export TRADEWIRE_REQUIRE_TOOLS=1  # a missing external tool fails the test instead of skipping it
exec .venv/bin/python -m pytest "$@"
