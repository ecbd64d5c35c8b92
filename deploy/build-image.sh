#!/usr/bin/env bash
# Builds a static respawn binary and the `respawn:dev` image (FROM scratch).
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"' \
  cargo build --release --locked --target "$target" -p respawn
cp "target/$target/release/respawn" deploy/image/respawn
docker build -q -t "${IMAGE:-respawn:dev}" deploy/image
