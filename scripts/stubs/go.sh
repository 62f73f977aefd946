#!/usr/bin/env bash
# dest: clients/go/tokendv1
# Go: protoc-gen-go + protoc-gen-go-grpc (pinned, built from the Go module proxy into
# .tools/go/bin on first use), into "$1". The `module=` option strips the go_package
# import path down to the module-relative tokendv1/ directory.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$1
# The versions are part of the output (each file's header names them): keep in step
# with clients/go/go.mod.
protoc_gen_go=v1.36.12
protoc_gen_go_grpc=v1.6.2
bin=$root/.tools/go/bin

# install_plugin NAME PACKAGE VERSION: (re)build NAME unless the pinned version is there.
install_plugin() {
  local name=$1 package=$2 version=$3
  local have
  # protoc-gen-go prints "v1.36.12", protoc-gen-go-grpc "1.6.2": compare without the v.
  have=$("$bin/$name" --version 2>/dev/null | awk '{print $2}') || true
  if [ "${have#v}" != "${version#v}" ]; then
    echo "gen-stubs: installing $name $version into .tools/go/bin" >&2
    GOBIN=$bin GOFLAGS=-mod=mod go install "$package@$version"
  fi
}
install_plugin protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$protoc_gen_go"
install_plugin protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$protoc_gen_go_grpc"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
well_known=$("$root/.venv/bin/python" -c \
  'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
"$root/.venv/bin/python" -m grpc_tools.protoc -I "$root/protos" -I "$well_known" \
  --plugin=protoc-gen-go="$bin/protoc-gen-go" \
  --plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc" \
  --go_out="$tmp" --go_opt=module=github.com/tokend/tokend/clients/go \
  --go-grpc_out="$tmp" --go-grpc_opt=module=github.com/tokend/tokend/clients/go \
  "$root/protos/tokend/v1/tokend.proto"
mkdir -p "$out"
cp -r "$tmp"/tokendv1/. "$out"/
