#!/usr/bin/env bash
# buf, offline: assembles build/proto-deps from installed wheels, then runs buf.
#   scripts/buf.sh generate [-o DIR]   regenerate gen/ (into DIR/gen when -o is given)
#   scripts/buf.sh lint
#   scripts/buf.sh breaking [REF]      compare proto/ with REF (default: main)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# the project's virtualenv (its python has the protos, it holds buf) when it exists
[ -x .venv/bin/python ] && export PATH=$ROOT/.venv/bin:$PATH
PY=${PYTHON:-python}

prepare_deps() {  # $1: folder to fill with google/api and buf/validate protos
  local deps=$1
  mkdir -p "$deps/google/api" "$deps/buf/validate"
  local api
  api=$("$PY" -c 'import google.api.annotations_pb2 as m, os; print(os.path.dirname(m.__file__))')
  cp "$api/annotations.proto" "$api/http.proto" "$deps/google/api/"
  "$PY" "$ROOT/scripts/codegen/validate_proto.py" "$deps/buf/validate/validate.proto"
}

ensure_protoc_gen_es() {
  [ -x web/node_modules/.bin/protoc-gen-es ] || (cd web && npm ci --no-audit --no-fund >/dev/null)
}

cmd=${1:-}
shift || true
case "$cmd" in
  generate)
    out=.
    if [ "${1:-}" = "-o" ]; then out=$2; mkdir -p "$out"; fi
    prepare_deps build/proto-deps
    ensure_protoc_gen_es
    buf generate -o "$out"
    buf generate --template buf.gen.validate.yaml -o "$out"
    # The descriptor set with source comments: the OpenAPI document is built from it.
    mkdir -p "$out/gen/descriptors"
    buf build proto --exclude-imports -o "$out/gen/descriptors/tradewire.binpb"
    ;;
  lint)
    prepare_deps build/proto-deps
    buf lint
    ;;
  breaking)
    ref=${1:-main}
    prepare_deps build/proto-deps
    if ! git cat-file -e "$ref:proto" 2>/dev/null; then
      echo "buf breaking: $ref has no proto/ yet; nothing to compare"; exit 0
    fi
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    git archive "$ref" proto buf.yaml | tar -x -C "$tmp"
    prepare_deps "$tmp/build/proto-deps"
    (cd "$tmp" && buf build -o "$tmp/against.binpb")
    buf build -o "$tmp/current.binpb"  # image against image: both carry the same deps
    buf breaking "$tmp/current.binpb" --against "$tmp/against.binpb"
    ;;
  *)
    sed -n '2,5p' "$0"; exit 2 ;;
esac
