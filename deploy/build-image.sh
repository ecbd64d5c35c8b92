#!/usr/bin/env bash
# Builds a static respawn binary and the `respawn:dev` image (FROM scratch).
# PROFILE=release for the fully optimised binary (default: image, faster to build).
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
profile="${PROFILE:-image}"
RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"' \
  cargo build --profile "$profile" --locked --target "$target" -p respawn
cp "target/$target/$profile/respawn" deploy/image/respawn
docker build -q -t "${IMAGE:-respawn:dev}" deploy/image
