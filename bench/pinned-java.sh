#!/usr/bin/env bash
# The java that scripts/questdb.sh runs during a benchmark: pinned to the load-generator
# core (BENCH_JAVA_CPU), so QuestDB never competes with the gateway for its core.
exec taskset -c "${BENCH_JAVA_CPU:-1}" "${BENCH_JAVA:-java}" "$@"
