#!/usr/bin/env bash
# End-to-end test of the compose deployment on the local Docker engine:
# builds the FROM-scratch image (unless SKIP_BUILD=1), makes certificates,
# starts three servers and two agents, places a battle session through
# server2, stops the leader's container, and places another through a
# surviving node. Exits non-zero on any failure; always tears down.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
project="respawn-compose-test-$$"
cd "$root"
[ "${SKIP_BUILD:-0}" = 1 ] || deploy/build-image.sh
bin="target/x86_64-unknown-linux-gnu/${PROFILE:-image}/respawn"
[ -x "$bin" ] || bin="target/debug/respawn"
RESPAWN="$bin" "$here/gen-pki.sh" >/dev/null
compose() { docker-compose -p "$project" -f "$here/docker-compose.yml" "$@"; }
trap 'compose down -t 1 >/dev/null 2>&1 || true' EXIT
compose up -d >/dev/null 2>&1

export RESPAWN_TITLE_ID=title-compose RESPAWN_TITLE_REGION_ID=tr-compose \
       RESPAWN_SECRET_ID=sid-compose RESPAWN_SECRET_KEY=compose-secret-key-0123456789abcdef
dsm() { # PORT CALL BODY
  curl -s -m 20 -X POST "http://127.0.0.1:$1/dsm/$2" -H 'Content-Type: application/json' \
    -H "TitleId: $RESPAWN_TITLE_ID" -H "TitleRegionId: $RESPAWN_TITLE_REGION_ID" \
    -H "SecretId: $RESPAWN_SECRET_ID" -H "ServerTicket: $("$bin" ctl ticket)" -d "$3"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
place() { # PORT -> waits until FULFILLED (60 s)
  local bs pl st
  for _ in $(seq 1 60); do
    bs=$(dsm "$1" request_battle_session_id '{}' | json 'd["battle_session_id"]' 2>/dev/null) && break; sleep 1
  done
  pl=$(dsm "$1" start_battle_session_placement "{\"fleet_id\":\"fleet-compose\",\"battle_session_id\":\"$bs\",\"max_players\":2}" | json 'd["placement"]["placement_id"]')
  for _ in $(seq 1 300); do
    st=$(dsm "$1" describe_battle_session_placement "{\"placement_id\":\"$pl\"}" | json 'd["placement"]["status"]' 2>/dev/null || true)
    [ "$st" = FULFILLED ] && { echo "placement $pl FULFILLED via :$1"; return 0; }
    sleep 0.2
  done
  echo "placement $pl not FULFILLED via :$1 (last status: ${st:-none})" >&2; return 1
}
for _ in $(seq 1 60); do curl -sf -m 2 http://127.0.0.1:18082/readyz >/dev/null && break; sleep 1; done
place 18082
token=$(docker cp "${project}_server1_1:/data/admin-token" - | tar -xO)
leader=$("$bin" ctl cluster status --server http://127.0.0.1:18081 --token "$token" | json 'd["leader"]')
docker stop -t 1 "${project}_server${leader}_1" >/dev/null
echo "stopped the leader, server$leader"
survivor=$(( leader == 1 ? 2 : 1 ))
place "1808$survivor"
echo "compose test: 1 passed, 0 failed"
