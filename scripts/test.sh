#!/usr/bin/env bash
# The whole test suite, provisioning what it needs first. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/provision.sh --test
export PATH=$PWD/.cache/go/bin:$PWD/.venv/bin:$PATH
export REQUIRE_TEST_TOOLS=1  # a missing external tool fails its test instead of skipping it (not TRADEWIRE_*: that prefix is configuration)
exec .venv/bin/python -m pytest "$@"
