#!/usr/bin/env bash
# dest: clients/java/src/generated/java
# Java: protoc's java_out (messages) + grpc-java's protoc-gen-grpc-java (TokenService
# stubs), into "$1". grpc_tools' protoc has only the Python generators, so both tools are
# the native binaries published on Maven Central, fetched once into .tools/java/ at pinned
# versions and checked against pinned SHA-256s:
# - protoc 4.36.2: the same version as the protobuf-java runtime in pom.xml.
# - protoc-gen-grpc-java 1.83.1: the newest whose linux-x86_64 binary Maven Central serves
#   here (1.84.0, 1.85.0, 1.85.1 are not); its output runs on the grpc-java 1.85 runtime.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$1
tools=$root/.tools/java
[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || {
  echo "java.sh: pinned code generators exist for Linux x86_64 only, not $(uname -s)-$(uname -m)" >&2
  exit 2
}

# fetch GROUP:ARTIFACT:VERSION SHA256: puts ARTIFACT-VERSION-linux-x86_64.exe in .tools/java.
fetch() {
  local coords=$1 sha256=$2 name staging
  IFS=: read -r _ artifact version <<<"$coords"
  name=$artifact-$version-linux-x86_64.exe
  [ -x "$tools/$name" ] && return
  command -v mvn >/dev/null || { echo "java.sh: Maven (mvn) is needed to fetch $name" >&2; exit 2; }
  staging=$(mktemp -d)
  # Run outside any project so that no pom.xml in the working directory is read.
  (cd "$staging" && mvn -B -q -ntp org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
    -Dartifact="$coords:exe:linux-x86_64" -DoutputDirectory="$staging")
  echo "$sha256  $staging/$name" | sha256sum --check --quiet
  chmod +x "$staging/$name"
  mkdir -p "$tools"
  mv "$staging/$name" "$tools/$name"  # last: a half-fetched binary is never used
  rm -rf "$staging"
}
fetch com.google.protobuf:protoc:4.36.2 f6ee22d65361338459208da8bff801c9ca689741cba9187b34990dd45198f864
fetch io.grpc:protoc-gen-grpc-java:1.83.1 db4044e78391d5a23439143c8147f07ba5877675587b4d48f3b68fbee3893589

# The well-known types (struct, duration, timestamp) bundled with grpcio-tools.
wkt=$("$root/.venv/bin/python" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
mkdir -p "$out"
"$tools/protoc-4.36.2-linux-x86_64.exe" -I "$root/protos" -I "$wkt" \
  --java_out="$out" --grpc-java_out="$out" \
  --plugin=protoc-gen-grpc-java="$tools/protoc-gen-grpc-java-1.83.1-linux-x86_64.exe" \
  "$root/protos/tokend/v1/tokend.proto"
