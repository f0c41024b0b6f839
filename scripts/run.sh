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
  (umask 077 && .venv/bin/tradewire keys create --db tradewire-data/auth.db --owner demo \
     --scopes read,trade:paper --name "local demo" > "$KEY_FILE")
fi
cat <<MSG

  tradewire is starting
    dashboard   http://localhost:8080/
    HTTP/JSON   http://localhost:8080/v1/health      (OpenAPI: /openapi.json, docs: /docs)
    gRPC        localhost:50051                      (reflection and grpc.health.v1 on)
    API key     $(cat "$KEY_FILE")   (also in $KEY_FILE)

MSG
exec .venv/bin/tradewire serve --config config/local.toml
