#!/usr/bin/env bash
# dest: clients/python/tokend_client/v1
# Python: grpcio-tools + mypy-protobuf, into "$1". The proto package tokend.v1 would
# import as `tokend.v1`, which is the server's package name; the stubs live in
# tokend_client.v1 instead, so the imports are rewritten.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$root/.venv/bin/python" -m grpc_tools.protoc -I "$root/protos" \
  --python_out="$tmp" --grpc_python_out="$tmp" --mypy_out=quiet:"$tmp" --mypy_grpc_out=quiet:"$tmp" \
  --plugin=protoc-gen-mypy="$root/.venv/bin/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$root/.venv/bin/protoc-gen-mypy_grpc" \
  "$root/protos/tokend/v1/tokend.proto"
sed -i 's/^from tokend\.v1 import/from tokend_client.v1 import/; s/^import tokend\.v1\./import tokend_client.v1./' \
  "$tmp"/tokend/v1/*
printf '"""Generated from protos/tokend/v1/tokend.proto by scripts/gen-stubs; do not edit."""\n' \
  > "$tmp/tokend/v1/__init__.py"
mkdir -p "$out"
cp -r "$tmp"/tokend/v1/. "$out"/
