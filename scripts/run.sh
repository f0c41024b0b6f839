#!/usr/bin/env bash
# tradewire's main job with embedded defaults: the gateway on every protocol (gRPC :50051,
# Connect / gRPC-Web / HTTP-JSON / dashboard :8080), paper trading, on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/provision.sh
mkdir -p tradewire-data
KEY_FILE=tradewire-data/demo-api-key
if [ ! -s "$KEY_FILE" ]; then
  # A local demo key (read + paper trading), created once; kept only in this ignored folder.
  (umask 077 && .venv/bin/tradewire keys create --config config/local.toml --owner demo \
     --scopes read,trade:paper --name "local demo" > "$KEY_FILE")
fi
# The local Solana devnet (RPC, Jupiter and Jito wire formats): the paper executor quotes
# from its Jupiter-compatible API. It stops with this script.
.venv/bin/tradewire devnet --host 127.0.0.1 --port 8899 > tradewire-data/devnet.log 2>&1 &
DEVNET_PID=$!
trap 'kill $DEVNET_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -sf http://127.0.0.1:8899/health >/dev/null 2>&1 && break
  kill -0 $DEVNET_PID 2>/dev/null || { cat tradewire-data/devnet.log; exit 1; }
  sleep 0.1
done

cat <<MSG

  tradewire is starting
    dashboard   http://localhost:8080/
    HTTP/JSON   http://localhost:8080/v1/health      (OpenAPI: /openapi.json, docs: /docs)
    gRPC        localhost:50051                      (reflection and grpc.health.v1 on)
    devnet      http://127.0.0.1:8899                (Solana JSON-RPC, Jupiter /swap/v1, Jito)
    API key     $(cat "$KEY_FILE")   (also in $KEY_FILE)

MSG
.venv/bin/tradewire serve --config config/local.toml
