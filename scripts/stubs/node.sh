#!/usr/bin/env bash
# dest: clients/node/src/gen
# Node.js/TypeScript: protoc-gen-es (protobuf-es v2, pinned in clients/node/package.json
# and package-lock.json) into "$1". One file, tokend/v1/tokend_pb.ts, holds the messages,
# the Reason enum and the TokenService descriptor that @connectrpc/connect's createClient
# turns into a typed client. The plugin comes from `npm ci` (clients/node/scripts/ensure-deps).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$1
node_dir=$root/clients/node
"$node_dir/scripts/ensure-deps"
plugin=$node_dir/node_modules/.bin/protoc-gen-es

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
well_known=$("$root/.venv/bin/python" -c \
  'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
# target=ts: plain TypeScript that tsc compiles with the rest of the package.
# import_extension=js: Node's ESM resolver needs the extension on relative imports.
"$root/.venv/bin/python" -m grpc_tools.protoc -I "$root/protos" -I "$well_known" \
  --plugin=protoc-gen-es="$plugin" \
  --es_out="$tmp" --es_opt=target=ts,import_extension=js \
  "$root/protos/tokend/v1/tokend.proto"
mkdir -p "$out"
cp -r "$tmp"/. "$out"/
