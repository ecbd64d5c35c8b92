#!/usr/bin/env bash
# Creates the cluster CA and the certificates of the compose cluster
# (node-1..3, agents host-1 and host-2) under deploy/compose/pki.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
respawn="${RESPAWN:-respawn}"
pki="$here/pki"
[ -f "$pki/ca/ca.pem" ] || "$respawn" ctl pki init --dir "$pki"
for n in 1 2 3; do [ -f "$pki/node-$n/cert.pem" ] || "$respawn" ctl pki issue --dir "$pki" --node "$n"; done
for h in host-1 host-2; do [ -f "$pki/agent-$h/cert.pem" ] || "$respawn" ctl pki issue --dir "$pki" --agent "$h"; done
