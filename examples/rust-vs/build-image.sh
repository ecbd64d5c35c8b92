#!/bin/sh
# Builds the respawn-example/rust-vs image FROM scratch: compiles main.rs into
# a static binary with rustc alone (no cargo, no crates, no base image), puts
# it with the Dockerfile in a temporary build context and runs docker build.
#
#   examples/rust-vs/build-image.sh [TAG]    (default respawn-example/rust-vs:latest)
#
# Needs rustc with the x86_64-unknown-linux-gnu target and its static glibc
# (libc6-dev), and a Docker engine. Nothing is pulled.
set -eu

TAG=${1:-respawn-example/rust-vs:latest}
HERE=$(cd "$(dirname "$0")" && pwd)
CTX=$(mktemp -d "${TMPDIR:-/tmp}/rust-vs-image.XXXXXX")
trap 'rm -rf "$CTX"' EXIT INT TERM

echo "compiling $HERE/main.rs (static) ..."
rustc -O -C target-feature=+crt-static -C strip=symbols \
    --target x86_64-unknown-linux-gnu --edition 2021 \
    -o "$CTX/rust-vs" "$HERE/main.rs"
cp "$HERE/Dockerfile" "$CTX/Dockerfile"

echo "building image $TAG ..."
docker build --pull=false -t "$TAG" "$CTX"
echo "built $TAG"
