#!/usr/bin/env bash
# QuestDB (the audit store, DESIGN.md §5) for development and tests.
#
#   scripts/questdb.sh fetch            download the server jar from Maven Central (idempotent)
#   scripts/questdb.sh start  [ROOT]    start a server on loopback, wait until /exec answers
#   scripts/questdb.sh stop   [ROOT]    SIGTERM, then SIGKILL after QDB_STOP_TIMEOUT seconds
#   scripts/questdb.sh status [ROOT]    exit 0 running and answering, 1 running but not
#                                       answering, 3 not running
#   scripts/questdb.sh jar              print the jar path
#
# ROOT (the server's data directory) defaults to $TRADEWIRE_QUESTDB_ROOT, then
# $REPO/.cache/questdb/data. The pid file (questdb.pid) and log (questdb.log) live in ROOT.
#
# Environment:
#   QUESTDB_VERSION               server version (pinned default below)
#   TRADEWIRE_QUESTDB_CACHE       jar cache folder (default $REPO/.cache/questdb)
#   QDB_HTTP_BIND_TO              HTTP (/exec, ILP over HTTP)    default 127.0.0.1:9000
#   QDB_PG_NET_BIND_TO            PostgreSQL wire                default 127.0.0.1:8812
#   QDB_LINE_TCP_NET_BIND_TO      ILP over TCP                   default 127.0.0.1:9009
#   QDB_HTTP_MIN_NET_BIND_TO      health + /metrics (min HTTP)   default 127.0.0.1:9003
#   any other QDB_<SERVER_CONF_KEY> is passed through to the server unchanged.
#   QDB_START_TIMEOUT / QDB_STOP_TIMEOUT   seconds (default 90 / 30)
#   QDB_LOG_LEVELS                levels written to questdb.log (default ERROR,CRITICAL,ADVISORY;
#                                 INFO logs every WAL commit: ~a quarter of the server's CPU
#                                 under a steady audit load, bench/PROFILE.md)
#   JAVA                          java binary (default: java on PATH; needs 17+)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QUESTDB_VERSION="${QUESTDB_VERSION:-9.3.2}"
CACHE="${TRADEWIRE_QUESTDB_CACHE:-$REPO/.cache/questdb}"
JAR="$CACHE/questdb-$QUESTDB_VERSION.jar"
JAVA="${JAVA:-java}"

export QDB_HTTP_BIND_TO="${QDB_HTTP_BIND_TO:-127.0.0.1:9000}"
export QDB_PG_NET_BIND_TO="${QDB_PG_NET_BIND_TO:-127.0.0.1:8812}"
export QDB_LINE_TCP_NET_BIND_TO="${QDB_LINE_TCP_NET_BIND_TO:-127.0.0.1:9009}"
export QDB_HTTP_MIN_NET_BIND_TO="${QDB_HTTP_MIN_NET_BIND_TO:-127.0.0.1:9003}"
export QDB_TELEMETRY_ENABLED=false
export QDB_LINE_UDP_ENABLED="${QDB_LINE_UDP_ENABLED:-false}"
# A write to a missing table is refused, not made up from the row (wrong shape, no DEDUP):
# the audit sink then creates the table as it should be and writes again.
export QDB_LINE_AUTO_CREATE_NEW_TABLES="${QDB_LINE_AUTO_CREATE_NEW_TABLES:-false}"

log() { printf 'questdb.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

root_dir() {
    local root="${1:-${TRADEWIRE_QUESTDB_ROOT:-$CACHE/data}}"
    mkdir -p "$root"
    (cd "$root" && pwd)
}

# The pid recorded in ROOT, if that process is alive and is a QuestDB server on this ROOT.
live_pid() {
    local root="$1" pid
    [[ -f "$root/questdb.pid" ]] || return 1
    pid="$(<"$root/questdb.pid")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # guard against a recycled pid: the command line must be ours
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "io.questdb.ServerMain -d $root" || return 1
    printf '%s\n' "$pid"
}

answers() {
    curl -fsS --max-time 2 "http://$QDB_HTTP_BIND_TO/exec?query=select%201" >/dev/null 2>&1
}

cmd_fetch() {
    if [[ -s "$JAR" ]]; then
        log "present: $JAR"
        printf '%s\n' "$JAR"
        return 0
    fi
    command -v mvn >/dev/null || die "mvn (Maven) is not installed"
    mkdir -p "$CACHE"
    local tmp
    tmp="$(mktemp -d "$CACHE/.fetch.XXXXXX")"
    FETCH_TMP="$tmp"
    trap 'rm -rf "$FETCH_TMP"' EXIT
    log "fetching org.questdb:questdb:$QUESTDB_VERSION from Maven Central"
    # -C: fail on a checksum mismatch instead of warning
    mvn -q -B -C -Dstyle.color=never dependency:copy \
        -Dartifact="org.questdb:questdb:$QUESTDB_VERSION:jar" \
        -DoutputDirectory="$tmp" \
        -Dtransitive=false >&2 || die "mvn dependency:copy failed for org.questdb:questdb:$QUESTDB_VERSION"
    [[ -s "$tmp/questdb-$QUESTDB_VERSION.jar" ]] || die "maven produced no jar"
    unzip -l "$tmp/questdb-$QUESTDB_VERSION.jar" 'io/questdb/ServerMain.class' >/dev/null \
        || die "downloaded jar has no io/questdb/ServerMain.class"
    mv -f "$tmp/questdb-$QUESTDB_VERSION.jar" "$JAR"   # atomic within the cache folder
    log "fetched: $JAR"
    printf '%s\n' "$JAR"
}

# QuestDB reads ROOT/conf/log.conf at start (it writes an INFO one when there is none).
write_log_conf() {
    mkdir -p "$1/conf"
    cat >"$1/conf/log.conf" <<EOF
writers=stdout
w.stdout.class=io.questdb.log.LogConsoleWriter
w.stdout.level=${QDB_LOG_LEVELS:-ERROR,CRITICAL,ADVISORY}
EOF
}

cmd_start() {
    local root pid deadline timeout="${QDB_START_TIMEOUT:-90}"
    root="$(root_dir "${1:-}")"
    [[ -s "$JAR" ]] || die "no jar at $JAR (run: $0 fetch)"
    command -v "$JAVA" >/dev/null || die "java not found ($JAVA)"
    local jv
    jv="$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)"
    [[ -n "$jv" && "$jv" -ge 17 ]] || die "java 17+ required (found: ${jv:-unknown})"

    if pid="$(live_pid "$root")"; then
        if answers; then
            log "already running: pid $pid, http $QDB_HTTP_BIND_TO, root $root"
            return 0
        fi
        die "pid $pid is running on $root but http://$QDB_HTTP_BIND_TO does not answer"
    fi
    if answers; then
        die "something else already answers on http://$QDB_HTTP_BIND_TO"
    fi

    local logf="$root/questdb.log"
    write_log_conf "$root"
    log "starting QuestDB $QUESTDB_VERSION: root $root, http $QDB_HTTP_BIND_TO, pg $QDB_PG_NET_BIND_TO, ilp $QDB_LINE_TCP_NET_BIND_TO, min $QDB_HTTP_MIN_NET_BIND_TO"
    # setsid: the server gets its own session, so a caller's Ctrl-C or process-group
    # kill does not take it down half-way; `stop` is the way to end it.
    setsid "$JAVA" \
        --add-exports java.base/jdk.internal.math=io.questdb \
        -Xmx512m \
        -p "$JAR" -m io.questdb/io.questdb.ServerMain -d "$root" \
        >>"$logf" 2>&1 </dev/null &
    pid=$!
    printf '%s\n' "$pid" >"$root/questdb.pid"

    deadline=$((SECONDS + timeout))
    until answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$root/questdb.pid"
            log "server exited during start-up; last log lines ($logf):"
            tail -n 30 "$logf" >&2 || true
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "server did not answer http://$QDB_HTTP_BIND_TO/exec within ${timeout}s; last log lines:"
            tail -n 30 "$logf" >&2 || true
            cmd_stop "$root" || true
            exit 1
        fi
        sleep 0.2
    done
    log "ready: pid $pid, http://$QDB_HTTP_BIND_TO"
}

cmd_stop() {
    local root pid deadline timeout="${QDB_STOP_TIMEOUT:-30}"
    root="$(root_dir "${1:-}")"
    if ! pid="$(live_pid "$root")"; then
        rm -f "$root/questdb.pid"
        log "not running (root $root)"
        return 0
    fi
    log "stopping pid $pid (SIGTERM, ${timeout}s grace)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + timeout))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            log "pid $pid still alive after ${timeout}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    # wait for the kernel to reap it (it is not our child: poll)
    deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    rm -f "$root/questdb.pid"
    log "stopped"
}

cmd_status() {
    local root pid
    root="$(root_dir "${1:-}")"
    if ! pid="$(live_pid "$root")"; then
        echo "stopped (root $root)"
        return 3
    fi
    if answers; then
        echo "running pid $pid http://$QDB_HTTP_BIND_TO root $root"
        return 0
    fi
    echo "running pid $pid but http://$QDB_HTTP_BIND_TO does not answer (root $root)"
    return 1
}

case "${1:-}" in
    fetch) cmd_fetch ;;
    start) shift; cmd_start "${1:-}" ;;
    stop) shift; cmd_stop "${1:-}" ;;
    status) shift; cmd_status "${1:-}" ;;
    jar) printf '%s\n' "$JAR" ;;
    *)
        echo "usage: $0 {fetch|start [ROOT]|stop [ROOT]|status [ROOT]|jar}" >&2
        exit 2
        ;;
esac
