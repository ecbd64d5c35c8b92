#!/usr/bin/env bash
# Cold start of a virtual server, decomposed: POST .../start of a stopped VS
# -> first 200 of an invoke sent right after the start answered.
#
# Starts one `respawn dev` per binary given (BIN, and BIN_B for a before/after
# comparison: both run at once, the cold starts alternate between them), each
# with the std-only Rust sample VS (examples/rust-vs) as a process VS, then
# RUNS times per binary: stop the VS until it has no instance, POST start,
# and invoke GET /hello through the edge at once (one curl with the cold-start
# wait; retried up to 5 times should it answer non-200). Each run is split
# with the timestamps of respawn's own info log and of the VS's log:
#
#   start_ms   POST start answered
#   agent_ms   the agent got the StartVsInstance command ("starting virtual server instance")
#   spawn_ms   the agent spawned the VS process ("instance process spawned", a debug
#              line of respawn_runtime; NaN with a binary that does not log it)
#   listen_ms  the VS printed "listening" (its first line: the program's own start ends)
#   ready_ms   the agent saw it listening ("instance state ... Running")
#   total_ms   the first 200 of the invoke arrived
#   own_ms     listen_ms - spawn_ms (or - agent_ms without spawn_ms): the program's own
#              start, from its spawn to its first line (ms resolution: the agent
#              stamps each line it reads in whole milliseconds)
#   beyond_ms  total_ms - own_ms: the time that is not the program's own start
#
# Times are milliseconds from the moment POST start was sent, read from the
# wall clock of this machine (curl, respawn and the VS share it). A benchmark,
# not a test: it needs curl, jq and python3, and builds nothing unless asked.
#
#   BIN=target/debug/respawn VS_BIN=target/debug/rust-vs deploy/bench/coldstart.sh
#   BIN=/tmp/respawn-before BIN_B=target/release/respawn RUNS=10 deploy/bench/coldstart.sh
#
# Knobs: BIN (default target/release/respawn), BIN_B (optional), VS_BIN (default
# target/release/rust-vs), RUNS=10, HTTP_PORT=18180 (BIN_B: +1), QUIC_PORT=17700 (+1),
# LOG=info,respawn_runtime=debug (respawn's --log filter; keep those two lines in it).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${BIN:-$ROOT/target/release/respawn}
BIN_B=${BIN_B:-}
VS_BIN=${VS_BIN:-$ROOT/target/release/rust-vs}
RUNS=${RUNS:-10}
HTTP_PORT=${HTTP_PORT:-18180}
QUIC_PORT=${QUIC_PORT:-17700}
VS=vs-cold
TR=tr-dev
WORK=$(mktemp -d /tmp/respawn-bench-cold.XXXXXX)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
for b in "$BIN" ${BIN_B:+"$BIN_B"} "$VS_BIN"; do [[ -x $b ]] || die "no executable at $b"; done
for t in curl jq python3; do command -v "$t" >/dev/null || die "$t is needed"; done
cp "$VS_BIN" "$WORK/rust-vs"

PIDS=()
cleanup() {
    local rc=$? p k kids
    set +e
    for p in "${PIDS[@]}"; do
        kids=$(pgrep -P "$p"; for k in $(pgrep -P "$p"); do pgrep -P "$k"; done)
        kill -TERM "$p" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
        for k in $kids; do kill -KILL "$k" 2>/dev/null; done
    done
    wait 2>/dev/null
    rm -rf "$WORK"/data-*
    log "logs and results kept in $WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_us() { local t=${EPOCHREALTIME/./}; echo "$t"; }
mapfile -t unset_env < <(env | sed -n 's/^\(RESPAWN_[A-Za-z0-9_]*\)=.*/-u\n\1/p')

# node NAME: load NAME's credentials (admin, edge_headers go to it).
node() {
    # shellcheck disable=SC1090
    source "$WORK/data-$1/credentials.env"
    CUR_BIN=$(cat "$WORK/bin-$1")
}
admin() { # admin METHOD PATH [curl args...]
    curl -sS --fail-with-body -X "$1" "$RESPAWN_EDGE/admin/title_regions/$TR$2" \
        -H "Authorization: Bearer $RESPAWN_ADMIN_TOKEN" -H 'Content-Type: application/json' "${@:3}"
}
instances() { admin GET "/virtual_servers/$VS" | jq '.instances | length'; }

start_node() { # start_node NAME BIN HTTP QUIC
    local name=$1 dir=$WORK/data-$1
    mkdir -p "$dir"
    echo "$2" >"$WORK/bin-$name"
    (cd "$WORK" && exec env "${unset_env[@]}" "$2" dev --data-dir "$dir" --log "${LOG:-info,respawn_runtime=debug}" \
        --http-addr "127.0.0.1:$3" --quic-addr "127.0.0.1:$4") >"$WORK/respawn-$name.log" 2>&1 &
    PIDS+=("$!")
    for _ in $(seq 600); do
        [[ -s $dir/credentials.env ]] && break
        kill -0 "$!" 2>/dev/null || { tail -20 "$WORK/respawn-$name.log" >&2; die "respawn $name exited"; }
        sleep 0.1
    done
    [[ -s $dir/credentials.env ]] || die "respawn $name wrote no credentials"
    node "$name"
    admin PUT "/virtual_servers/$VS" -o /dev/null -d "$(jq -cn --arg cmd "$WORK/rust-vs" \
        '{source: {process: {command: $cmd}}, listen_port: 8080, max_instances: 1, cpu_millicores: 2000}')"
    log "respawn $name ($2) up at $RESPAWN_EDGE"
}

# The first log line of $1 matching $2 after the line count $3, as µs since the epoch.
stamp() {
    { tail -n +"$(($3 + 1))" "$1" | grep -m1 -a -- "$2" || true; } | python3 -c '
import sys, re, datetime
line = sys.stdin.read()
m = re.search(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z?", line)
if not m: print(""); sys.exit()
t = m.group(1)
if "." in t:
    head, frac = t.split("."); t = head + "." + (frac + "000000")[:6]
else:
    t += ".000000"
d = datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc)
print(int(d.timestamp() * 1_000_000))'
}
# The VS's "listening" line: its JSON-line log kept by the agent has the time
# (in ms) the agent read it; the agent reads the pipe as lines come.
vs_listen_stamp() { # DATA_DIR
    local f
    f=$(find "$1" -path '*vs-cold*' -name '*.log' -newer "$WORK/mark" 2>/dev/null | head -1)
    [[ -n $f ]] || { echo ""; return; }
    { grep -a -m1 'listening on' "$f" || true; } | python3 -c '
import sys, json, datetime
line = sys.stdin.read().strip()
if not line: print(""); sys.exit()
j = json.loads(line)
print(int(j["ts_ms"]) * 1000)'
}

start_node a "$BIN" "$HTTP_PORT" "$QUIC_PORT"
NODES=(a)
if [[ -n $BIN_B ]]; then
    start_node b "$BIN_B" "$((HTTP_PORT + 1))" "$((QUIC_PORT + 1))"
    NODES+=(b)
fi

OUT=$WORK/cold.tsv
echo -e "node\trun\tstart_ms\tagent_ms\tspawn_ms\tlisten_ms\town_ms\tready_ms\ttotal_ms\tbeyond_ms\tload1" >"$OUT"
for ((i = 1; i <= RUNS; i++)); do
    for n in "${NODES[@]}"; do
        node "$n"
        admin POST "/virtual_servers/$VS/stop" -o /dev/null
        for _ in $(seq 600); do [[ $(instances) == 0 ]] && break; sleep 0.05; done
        [[ $(instances) == 0 ]] || die "$n: VS still has instances after stop"
        sleep 0.3
        H=(-H "TitleId: $RESPAWN_TITLE_ID" -H "TitleRegionId: $RESPAWN_TITLE_REGION_ID"
            -H "SecretId: $RESPAWN_SECRET_ID" -H "ServerTicket: $("$CUR_BIN" ctl ticket)")
        lines=$(wc -l <"$WORK/respawn-$n.log")
        touch "$WORK/mark"
        sleep 0.01
        l=$(cut -d' ' -f1 /proc/loadavg)
        t0=$(now_us)
        admin POST "/virtual_servers/$VS/start" -o /dev/null
        t1=$(now_us)
        code=000
        for _ in 1 2 3 4 5; do
            code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 15 "${H[@]}" \
                "$RESPAWN_EDGE/virtualserver/invoke/$VS/hello" || true)
            [[ $code == 200 ]] && break
        done
        t2=$(now_us)
        [[ $code == 200 ]] || die "$n run $i: the invoke answered $code"
        sleep 0.2
        ta=$(stamp "$WORK/respawn-$n.log" 'starting virtual server instance' "$lines")
        ts=$(stamp "$WORK/respawn-$n.log" 'instance process spawned' "$lines")
        tr=$(stamp "$WORK/respawn-$n.log" 'instance state.*Running' "$lines")
        tl=$(vs_listen_stamp "$WORK/data-$n")
        ms() { [[ -n $1 ]] && awk -v a="$1" -v b="$t0" 'BEGIN { printf "%.1f", (a - b) / 1000 }' || echo NaN; }
        A=$(ms "$ta") S=$(ms "$ts") L=$(ms "$tl") R=$(ms "$tr") T=$(ms "$t2")
        O=$(awk -v a="$A" -v s="$S" -v l="$L" 'BEGIN { if (s == "NaN") s = a;
            if (s == "NaN" || l == "NaN") print "NaN"; else printf "%.1f", l - s }')
        B=$(awk -v t="$T" -v o="$O" 'BEGIN { if (o == "NaN") print "NaN"; else printf "%.1f", t - o }')
        echo -e "$n\t$i\t$(ms "$t1")\t$A\t$S\t$L\t$O\t$R\t$T\t$B\t$l" >>"$OUT"
        log "$n run $i: start answered $(ms "$t1") ms, agent $A, spawned $S, VS listening $L (own start $O), Running seen $R, first 200 $T ms (beyond the program's own start: $B ms)"
    done
done

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "NaN";
    else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
{
    echo
    echo "Cold start — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
    for n in "${NODES[@]}"; do
        echo "node $n: $(cat "$WORK/bin-$n"), medians of $RUNS (ms after POST start was sent):"
        for c in 3:start 4:agent 5:spawn 6:listen 7:own 8:ready 9:total 10:beyond; do
            printf '  %-7s %s\n' "${c#*:}" "$(awk -F'\t' -v n="$n" -v c="${c%%:*}" 'NR > 1 && $1 == n && $c != "NaN" { print $c }' "$OUT" | median)"
        done
    done
    echo "all runs: $OUT"
} | tee "$WORK/summary.txt"
