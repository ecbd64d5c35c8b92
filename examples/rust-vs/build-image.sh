#!/bin/sh
# Builds the respawn-example/rust-vs image FROM scratch: compiles the rust-vs
# package into a static binary with cargo (no base image), puts it with the
# Dockerfile in a temporary build context and runs docker build.
#
#   examples/rust-vs/build-image.sh [TAG]    (default respawn-example/rust-vs:latest)
#
# Needs cargo with the x86_64-unknown-linux-gnu target and its static glibc
# (libc6-dev), and a Docker engine. No image is pulled.
set -eu

TAG=${1:-respawn-example/rust-vs:latest}
HERE=$(cd "$(dirname "$0")" && pwd)
CTX=$(mktemp -d "${TMPDIR:-/tmp}/rust-vs-image.XXXXXX")
trap 'rm -rf "$CTX"' EXIT INT TERM

echo "compiling the rust-vs package (static) ..."
# Its own target directory: the static flags must not rebuild the workspace's.
RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols" \
    cargo build --release --manifest-path "$HERE/Cargo.toml" \
    --target x86_64-unknown-linux-gnu --target-dir "$CTX/target" -p rust-vs
cp "$CTX/target/x86_64-unknown-linux-gnu/release/rust-vs" "$CTX/rust-vs"
rm -rf "$CTX/target"
cp "$HERE/Dockerfile" "$CTX/Dockerfile"

echo "building image $TAG ..."
docker build --pull=false -t "$TAG" "$CTX"
echo "built $TAG"
