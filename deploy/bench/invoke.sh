#!/usr/bin/env bash
# Virtual-server invoke benchmark: what Respawn's edge adds to a call.
#
# Three ways to reach one instance of a VS backend, measured side by side
# with wrk. The backend is either the std-only Rust sample VS (BACKEND=rust,
# the default: examples/rust-vs, GET /hello) or nginx itself (BACKEND=nginx:
# GET /ping answered `200 ok`), run *by Respawn* as a process VS through a
# wrapper script that writes an nginx configuration listening on
# $PGOS_VS_Listen_Port and runs it in the foreground (cpu_millicores 64000,
# max_instances 1) — issue 14's configuration:
#
#   direct  wrk -> VS instance                             (Invoker: backend sent by wrk)
#   nginx   wrk -> nginx keep-alive reverse proxy -> VS     (nginx sets Invoker: backend)
#   edge    wrk -> respawn edge /virtualserver/invoke/vs-bench/hello -> VS
#   edgeB   (BENCH_BIN_B only) the same through the second respawn binary
#           (TitleId, TitleRegionId, SecretId, ServerTicket headers; HMAC checked per call)
#
# Every round runs each target at high concurrency (wrk -t2 -c32) and at
# concurrency 1 (wrk -t1 -c1, for the latency a call sees), the order of the
# targets rotating between rounds. Medians over rounds are printed with the
# ratios edge/direct, nginx/direct, edge/nginx and the latency each proxy adds
# (target minus direct). Then cold start: the VS is stopped and started again,
# timing POST .../start -> first 200 of an invoke, and separately
# POST .../start -> RUNNING in the admin API.
#
# This is a benchmark tool, not part of CI: it installs wrk, nginx and jq with
# apt-get if they are missing. Run it from anywhere in the repository:
#
#   deploy/bench/invoke.sh
#
# Knobs (environment): ROUNDS=3 DURATION=10s THREADS=2 CONNS=32 COLD_RUNS=5
#   BACKEND=rust|nginx       the VS behind the three targets (see above); with
#                            nginx the defaults become issue 14's: DURATION=5s
#                            THREADS=1 NGINX_WORKERS=1 (one proxy worker)
#   NGINX_WORKERS=$(nproc)   nginx worker processes of the proxy (see below)
#   BENCH_BIN=path           use this respawn binary, skip `cargo build`
#   BENCH_BIN_B=path         a second respawn binary measured in the same run
#                            as a fourth target `edgeB` (its own `respawn dev`
#                            on HTTP_PORT+1 / QUIC_PORT+1 with its own, identical
#                            VS instance): before/after ratios of one change
#   CONFIG_B=file            a configuration file for the second respawn
#                            (`--config`); with it BENCH_BIN_B defaults to the
#                            first binary (one setting against its default)
#   HTTP_PORT=18080 QUIC_PORT=17600 NGINX_PORT=18090
#   PERF=1                   also `perf record -g` the respawn process during an
#                            extra edge run and a direct run (profiles in the results dir)
#   QUIET_WAIT=900           seconds to wait, before each run, for cargo/rustc/test
#                            processes of other users to finish (then run anyway, noted)
#   KEEP=1                   keep the respawn data dir (results are always kept)
#   NODELAY_SHIM=1           experiment: run respawn with an LD_PRELOAD shim (built
#                            here with cc) that sets TCP_NODELAY on every socket it
#                            accepts, i.e. what `listener.tap_io(|s| s.set_nodelay(true))`
#                            at the edge's axum::serve would do
#
# Besides req/s and latency, each run records the CPU time (utime + stime from
# /proc) that respawn, nginx and the VS instance used, per request.
#
# nginx worker_processes: defaults to $(nproc), the number of worker threads of
# Respawn's tokio runtime (multi-thread runtime, default = number of CPUs), so
# that both proxies may use every core. nginx's access log is off, as is the
# VS's access log at the edge (`access_log` defaults to false in the spec).
# nginx's keepalive_requests is raised (client and upstream side) so that it
# does not close connections every 1000 requests, which the edge never does.
#
# The VS instance writes one stdout line per request, which the agent inside
# `respawn dev` copies to its log file: that CPU shows up in respawn's figures
# for all three targets (see the "direct" row).
set -euo pipefail

BACKEND=${BACKEND:-rust}
case $BACKEND in
    rust) def_duration=10s def_threads=2 def_workers=$(nproc) VS_PATH=/hello ;;
    nginx) def_duration=5s def_threads=1 def_workers=1 VS_PATH=/ping ;;
    *) echo "BACKEND must be rust or nginx" >&2; exit 2 ;;
esac
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-$def_duration}
THREADS=${THREADS:-$def_threads}
CONNS=${CONNS:-32}
COLD_RUNS=${COLD_RUNS:-5}
HTTP_PORT=${HTTP_PORT:-18080}
QUIC_PORT=${QUIC_PORT:-17600}
NGINX_PORT=${NGINX_PORT:-18090}
NGINX_WORKERS=${NGINX_WORKERS:-$def_workers}
QUIET_WAIT=${QUIET_WAIT:-900}
PERF=${PERF:-0}
KEEP=${KEEP:-0}
NODELAY_SHIM=${NODELAY_SHIM:-0}
VS=vs-bench
TR=tr-dev

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=$(mktemp -d /tmp/respawn-bench-invoke.XXXXXX)
RES=$WORK/results
mkdir -p "$RES"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ------------------------------------------------------------------ tools
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
if [[ $PERF == 1 ]] && ! command -v perf >/dev/null; then need+=(linux-perf); fi
if ((${#need[@]})); then
    log "installing ${need[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# ------------------------------------------------------------------ cleanup
RESPAWN_PIDS=()
NGINX_PID=""
descendants() { # all descendants of $1, deepest last
    local c
    for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        echo "$c"
        descendants "$c"
    done
}
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [[ -n $NGINX_PID ]] && kill -0 "$NGINX_PID" 2>/dev/null; then
        kill -QUIT "$NGINX_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$NGINX_PID" 2>/dev/null
    fi
    local rp
    for rp in "${RESPAWN_PIDS[@]}"; do
        kill -0 "$rp" 2>/dev/null || continue
        # The VS and DS processes run in their own process groups: remember
        # them before the graceful stop, kill what is left by pid afterwards.
        local kids
        kids=$(descendants "$rp")
        kill -TERM "$rp" 2>/dev/null
        for _ in $(seq 150); do kill -0 "$rp" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$rp" 2>/dev/null
        for k in $kids; do kill -KILL "$k" 2>/dev/null; done
    done
    wait 2>/dev/null
    if [[ $KEEP != 1 ]]; then rm -rf "$WORK"/data-* "$WORK/nginx" "$WORK/rust-vs" "$WORK/nodelay.so"; fi
    log "results and logs kept in $WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ helpers
# Waits until no cargo / rustc / test binaries of anybody run on the machine.
wait_quiet() {
    local t0=$SECONDS busy
    while busy=$(pgrep -f 'cargo |rustc|/deps/' || true); [[ -n $busy ]]; do
        if ((SECONDS - t0 > QUIET_WAIT)); then
            log "WARNING: still busy after ${QUIET_WAIT}s (pids: $(echo $busy)); measuring anyway"
            echo "busy" >>"$RES/noisy-runs"
            return
        fi
        sleep 5
    done
}
load1() { cut -d' ' -f1 /proc/loadavg; }
now_us() { local t=${EPOCHREALTIME/./}; echo "$t"; }

# wrk latency "123.45us" / "1.20ms" / "2.00s" -> microseconds
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") f = 1; else if (u == "ms") f = 1000; else if (u == "s") f = 1000000;
        else if (u == "m") f = 60000000; else f = -1
        if (f < 0) print "NaN"; else printf "%.1f\n", n * f }'
}

CLK_TCK=$(getconf CLK_TCK)
# CPU time (utime + stime, all threads) of the given pids, in clock ticks.
cpu_ticks() {
    local p sum=0 f
    local -a fields
    for p in "$@"; do
        f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        f=${f##*) } # fields after the command name
        read -ra fields <<<"$f"
        sum=$((sum + fields[11] + fields[12]))
    done
    echo "$sum"
}

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "NaN";
    else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

admin() { # admin METHOD PATH [curl args...]
    curl -sS --fail-with-body -X "$1" "$RESPAWN_EDGE/admin/title_regions/$TR$2" \
        -H "Authorization: Bearer $RESPAWN_ADMIN_TOKEN" -H 'Content-Type: application/json' "${@:3}"
}
ticket() { "$BIN" ctl ticket; }
edge_headers() { # prints -H args for wrk/curl, with a fresh ticket
    printf '%s\n' -H "TitleId: $RESPAWN_TITLE_ID" -H "TitleRegionId: $RESPAWN_TITLE_REGION_ID" \
        -H "SecretId: $RESPAWN_SECRET_ID" -H "ServerTicket: $(ticket)"
}

# ------------------------------------------------------------------ build
if [[ -n ${BENCH_BIN:-} ]]; then
    BIN=$BENCH_BIN
else
    log "cargo build --release -p respawn"
    (cd "$ROOT" && cargo build --release -p respawn -q)
    BIN=$ROOT/target/release/respawn
fi
[[ -x $BIN ]] || die "no respawn binary at $BIN"
BIN_A=$BIN
CONFIG_B=${CONFIG_B:-}
BIN_B=${BENCH_BIN_B:-}
[[ -z $CONFIG_B || -n $BIN_B ]] || BIN_B=$BIN_A
[[ -z $BIN_B || -x $BIN_B ]] || die "no respawn binary at BENCH_BIN_B=$BIN_B"
if [[ $BACKEND == rust ]]; then
    VSBIN=$WORK/rust-vs
    log "cargo build --release -p rust-vs"
    (cd "$ROOT" && cargo build --release -p rust-vs -q)
    cp "$ROOT/target/release/rust-vs" "$VSBIN"
    VS_EXE=$VSBIN
else
    # The wrapper Respawn runs as the process VS: an nginx answering
    # `200 ok` on $PGOS_VS_Listen_Port, in the foreground, one worker.
    VSBIN=$WORK/nginx-vs.sh
    VS_EXE=$NGINX
    cat >"$VSBIN" <<'SH'
#!/bin/sh
set -eu
d=$(mktemp -d /tmp/respawn-bench-nginx-vs.XXXXXX)
mkdir -p "$d/tmp"
cat >"$d/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    keepalive_timeout 600s;
    keepalive_requests 100000000;
    server {
        listen 0.0.0.0:$PGOS_VS_Listen_Port;
        location / { return 200 "ok"; }
    }
}
EOF
exec NGINX_BIN -p "$d" -e stderr -c "$d/nginx.conf"
SH
    sed -i "s|NGINX_BIN|$NGINX|" "$VSBIN"
    chmod +x "$VSBIN"
fi

# ------------------------------------------------------------------ respawn dev
# respawn reads RESPAWN_* variables as configuration: start it without any.
mapfile -t unset_env < <(env | sed -n 's/^\(RESPAWN_[A-Za-z0-9_]*\)=.*/-u\n\1/p')
preload=()
if [[ $NODELAY_SHIM == 1 ]]; then
    cat >"$WORK/nodelay.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
/* Sets TCP_NODELAY on every accepted socket (benchmark experiment only). */
static int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);
int accept4(int fd, struct sockaddr *a, socklen_t *l, int flags) {
    if (!real_accept4) real_accept4 = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
    int c = real_accept4(fd, a, l, flags);
    if (c >= 0) { int one = 1; setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); }
    return c;
}
C
    cc -O2 -shared -fPIC -o "$WORK/nodelay.so" "$WORK/nodelay.c" -ldl
    preload=("LD_PRELOAD=$WORK/nodelay.so")
    log "NODELAY_SHIM=1: respawn runs with TCP_NODELAY on accepted sockets"
fi

# Waits until VS has a RUNNING instance; prints its address.
wait_running() {
    local deadline=$((SECONDS + ${1:-60})) v
    while ((SECONDS < deadline)); do
        v=$(admin GET "/virtual_servers/$VS" | jq -r \
            '[.instances[] | select(.status == "RUNNING") | .address][0] // empty')
        if [[ -n $v ]]; then echo "$v"; return 0; fi
        sleep 0.02
    done
    return 1
}

# start_node NAME BIN HTTP_PORT QUIC_PORT [ARGS...]: a `respawn dev` with the VS
# running; sets PID_<NAME> and ADDR_<NAME>, leaves credentials in
# $WORK/data-<name>/credentials.env (see use_node).
start_node() {
    local name=$1 bin=$2 dir=$WORK/data-$1 pid addr
    log "starting respawn dev $name ($bin, data dir $dir)"
    mkdir -p "$dir"
    (cd "$WORK" && exec env "${unset_env[@]}" "${preload[@]}" "$bin" "${@:5}" dev --data-dir "$dir" --log warn \
        --http-addr "127.0.0.1:$3" --quic-addr "127.0.0.1:$4") \
        >"$WORK/respawn-$name.log" 2>&1 &
    pid=$!
    RESPAWN_PIDS+=("$pid")
    for _ in $(seq 300); do
        [[ -s $dir/credentials.env ]] && break
        kill -0 "$pid" 2>/dev/null || { tail -20 "$WORK/respawn-$name.log" >&2; die "respawn dev $name exited"; }
        sleep 0.1
    done
    [[ -s $dir/credentials.env ]] || die "respawn dev $name wrote no credentials"
    use_node "$name"
    log "creating VS $VS ($VSBIN) on $name"
    admin PUT "/virtual_servers/$VS" -o /dev/null -d "$(jq -cn --arg cmd "$VSBIN" --arg b "$BACKEND" \
        '{source: {process: {command: $cmd}}, listen_port: 8080, max_instances: 1,
          cpu_millicores: (if $b == "nginx" then 64000 else 2000 end)}')"
    addr=$(wait_running 60) || die "VS $VS never became RUNNING on $name: $(admin GET "/virtual_servers/$VS")"
    log "VS instance of $name at $addr"
    printf -v "PID_$name" '%s' "$pid"
    printf -v "ADDR_$name" '%s' "$addr"
}
# use_node NAME: the following admin/ticket/edge_headers calls go to NAME.
use_node() {
    # shellcheck disable=SC1090
    source "$WORK/data-$1/credentials.env"
    if [[ $1 == B ]]; then BIN=$BIN_B; else BIN=$BIN_A; fi
}

RESPAWN_PIDS=()
start_node A "$BIN_A" "$HTTP_PORT" "$QUIC_PORT"
if [[ -n $BIN_B ]]; then
    cfg_b=()
    [[ -z $CONFIG_B ]] || cfg_b=(--config "$CONFIG_B")
    start_node B "$BIN_B" "$((HTTP_PORT + 1))" "$((QUIC_PORT + 1))" "${cfg_b[@]}"
    EDGE_B=$RESPAWN_EDGE
    mapfile -t HDR_B < <(edge_headers) # tickets last ±300 s: refreshed per run below
fi
use_node A
RESPAWN_PID=$PID_A
ADDR=$ADDR_A
curl -sS --fail -H 'Invoker: backend' "http://$ADDR$VS_PATH" >"$RES/direct-hello.json"
mapfile -t H < <(edge_headers)
curl -sS --fail "${H[@]}" "$RESPAWN_EDGE/virtualserver/invoke/$VS$VS_PATH" >"$RES/edge-hello.json"

# ------------------------------------------------------------------ nginx
NGX=$WORK/nginx
mkdir -p "$NGX/tmp"
cat >"$NGX/nginx.conf" <<EOF
# worker_processes = Respawn's tokio worker threads (= nproc by default).
worker_processes $NGINX_WORKERS;
daemon off;
pid $NGX/nginx.pid;
error_log $NGX/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $NGX/tmp/body;
    proxy_temp_path $NGX/tmp/proxy;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;
    keepalive_timeout 600s;
    keepalive_requests 100000000;
    upstream vs {
        server $ADDR;
        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 600s;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://vs;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Invoker backend;
        }
    }
}
EOF
"$NGINX" -p "$NGX" -e "$NGX/error.log" -c "$NGX/nginx.conf" &
NGINX_PID=$!
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$NGINX_PORT$VS_PATH" && break
    sleep 0.05
done
curl -sS --fail "http://127.0.0.1:$NGINX_PORT$VS_PATH" >"$RES/nginx-hello.json" \
    || die "nginx does not answer: $(cat "$NGX/error.log")"

mapfile -t NGINX_PIDS < <(echo "$NGINX_PID"; ps -o pid= --ppid "$NGINX_PID" | tr -d ' ')
# vs_pids NODE: the VS instance's processes under that respawn.
vs_pids() {
    local p
    for p in $(descendants "$1"); do
        [[ $(readlink "/proc/$p/exe" 2>/dev/null) == "$VS_EXE" ]] && echo "$p"
    done
}
mapfile -t VS_PIDS_A < <(vs_pids "$PID_A")
((${#VS_PIDS_A[@]})) || log "WARNING: VS instance process not found; its CPU is not counted"
VS_PIDS_B=()
[[ -z $BIN_B ]] || mapfile -t VS_PIDS_B < <(vs_pids "$PID_B")

# ------------------------------------------------------------------ wrk runs
TARGETS=(direct nginx edge)
[[ -z $BIN_B ]] || TARGETS+=(edgeB)
url_of() {
    case $1 in
        direct) echo "http://$ADDR$VS_PATH" ;;
        nginx) echo "http://127.0.0.1:$NGINX_PORT$VS_PATH" ;;
        edge) echo "$RESPAWN_EDGE/virtualserver/invoke/$VS$VS_PATH" ;;
        edgeB) echo "$EDGE_B/virtualserver/invoke/$VS$VS_PATH" ;;
    esac
}
# The respawn process and VS processes serving a target.
respawn_of() { if [[ $1 == edgeB ]]; then echo "$PID_B"; else echo "$PID_A"; fi; }
vs_of() { if [[ $1 == edgeB ]]; then echo "${VS_PIDS_B[@]}"; else echo "${VS_PIDS_A[@]}"; fi; }
# run_wrk TARGET THREADS CONNS DURATION OUTFILE
run_wrk() {
    local hdr=()
    case $1 in
        direct) hdr=(-H 'Invoker: backend') ;;
        edge) mapfile -t hdr < <(edge_headers) ;;
        edgeB) use_node B; mapfile -t hdr < <(edge_headers); use_node A ;;
    esac
    wrk -t"$2" -c"$3" -d"$4" --latency "${hdr[@]}" "$(url_of "$1")" >"$5" 2>&1
}
# parse OUTFILE -> "rps p50_us p99_us non2xx socket_errors"
parse() {
    local f=$1 rps p50 p99 bad err
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$f")
    p50=$(to_us "$(awk '$1 == "50%" { print $2 }' "$f")")
    p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$f")")
    bad=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$f")
    err=$(awk '/Socket errors:/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }' "$f")
    echo "${rps:-NaN} ${p50:-NaN} ${p99:-NaN} ${bad:-0} ${err:-0}"
}

rss_kb() { ps -o rss= -p "$RESPAWN_PID" | tr -d ' '; }
RSS_BEFORE=$(rss_kb)
log "warm-up (3 s per target)"
for t in "${TARGETS[@]}"; do run_wrk "$t" "$THREADS" "$CONNS" 3s "$RES/warmup-$t.txt"; done

TSV=$RES/runs.tsv
echo -e "load\ttarget\tround\trps\tp50_us\tp99_us\tnon2xx\tsock_err\tload1\tcpu_respawn_us_req\tcpu_nginx_us_req\tcpu_vs_us_req" >"$TSV"
for ((r = 1; r <= ROUNDS; r++)); do
    for mode in high low; do
        if [[ $mode == high ]]; then th=$THREADS c=$CONNS; else th=1 c=1; fi
        for ((k = 0; k < ${#TARGETS[@]}; k++)); do
            t=${TARGETS[$(((k + r - 1) % ${#TARGETS[@]}))]} # rotate the order per round
            wait_quiet
            l=$(load1)
            out=$RES/wrk-$mode-$t-r$r.txt
            rp=$(respawn_of "$t")
            # shellcheck disable=SC2046
            c0=("$(cpu_ticks "$rp")" "$(cpu_ticks "${NGINX_PIDS[@]}")" "$(cpu_ticks $(vs_of "$t"))")
            run_wrk "$t" "$th" "$c" "$DURATION" "$out"
            # shellcheck disable=SC2046
            c1=("$(cpu_ticks "$rp")" "$(cpu_ticks "${NGINX_PIDS[@]}")" "$(cpu_ticks $(vs_of "$t"))")
            read -r rps p50 p99 bad err < <(parse "$out")
            n=$(awk '/requests in/ { print $1 }' "$out")
            cpu=$(awk -v n="${n:-0}" -v hz="$CLK_TCK" -v a="$((c1[0] - c0[0]))" -v b="$((c1[1] - c0[1]))" \
                -v v="$((c1[2] - c0[2]))" 'BEGIN { if (n == 0) n = 1; f = 1e6 / hz / n;
                printf "%.1f\t%.1f\t%.1f", a * f, b * f, v * f }')
            echo -e "$mode\t$t\t$r\t$rps\t$p50\t$p99\t$bad\t$err\t$l\t$cpu" >>"$TSV"
            log "round $r $mode -t$th -c$c $t: $rps req/s p50 ${p50}us p99 ${p99}us non2xx=$bad errors=$err load=$l cpu us/req (respawn nginx vs): $(echo $cpu)"
            [[ $bad == 0 ]] || log "WARNING: $t answered $bad non-2xx responses (see $out)"
        done
    done
done

RSS_AFTER=$(rss_kb)
EDGE_CALLS=$(awk '/requests in/ { n += $1 } END { print n }' "$RES"/wrk-*-edge-r*.txt "$RES"/warmup-edge.txt)

# ------------------------------------------------------------------ profile (optional)
if [[ $PERF == 1 ]]; then
    for t in edge direct; do
        wait_quiet
        log "perf record -g on respawn (pid $RESPAWN_PID) during a $DURATION $t run"
        perf record -e cpu-clock -F 999 -g -p "$RESPAWN_PID" -o "$RES/perf-$t.data" -- sleep 12 \
            >"$RES/perf-$t.log" 2>&1 &
        pp=$!
        sleep 1
        run_wrk "$t" "$THREADS" "$CONNS" "$DURATION" "$RES/wrk-perf-$t.txt"
        wait "$pp" || true
        perf report -i "$RES/perf-$t.data" --no-children --sort comm,dso,symbol --stdio \
            2>/dev/null | grep -v '^$' | head -400 >"$RES/perf-$t-report.txt" || true
        perf report -i "$RES/perf-$t.data" --no-children --sort symbol --stdio -g none \
            2>/dev/null | grep -E '^ +[0-9]' | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//' \
            | cut -c1-150 | head -60 >"$RES/perf-$t-top.txt" || true
    done
fi

# ------------------------------------------------------------------ cold start
cold_stop() {
    admin POST "/virtual_servers/$VS/stop" -o /dev/null
    local deadline=$((SECONDS + 60))
    while ((SECONDS < deadline)); do
        [[ $(admin GET "/virtual_servers/$VS" | jq '.instances | length') == 0 ]] && return 0
        sleep 0.05
    done
    die "VS $VS still has instances 60 s after stop"
}
COLD=$RES/cold.tsv
echo -e "kind\trun\tstart_post_ms\ttotal_ms\tload1" >"$COLD"
# Baseline: one warm invoke with curl (process start-up included), to read the
# cold-start figures against.
for i in 1 2 3 4 5; do
    mapfile -t H < <(edge_headers)
    t0=$(now_us)
    curl -sS -o /dev/null --fail "${H[@]}" "$RESPAWN_EDGE/virtualserver/invoke/$VS$VS_PATH"
    t1=$(now_us)
    echo -e "warm_invoke\t$i\t0\t$(((t1 - t0) / 1000)).$(((t1 - t0) % 1000 / 100))\t$(load1)" >>"$COLD"
done
for ((i = 1; i <= COLD_RUNS; i++)); do
    # POST start -> first 200 of an invoke sent right after the start answered.
    cold_stop
    wait_quiet
    mapfile -t H < <(edge_headers)
    l=$(load1)
    t0=$(now_us)
    admin POST "/virtual_servers/$VS/start" -o /dev/null
    t1=$(now_us)
    code=000
    for _ in 1 2 3 4 5; do
        code=$(curl -sS -o "$RES/cold-invoke-$i.json" -w '%{http_code}' --max-time 15 "${H[@]}" \
            "$RESPAWN_EDGE/virtualserver/invoke/$VS$VS_PATH" || true)
        [[ $code == 200 ]] && break
    done
    t2=$(now_us)
    [[ $code == 200 ]] || die "cold invoke $i answered $code: $(cat "$RES/cold-invoke-$i.json")"
    echo -e "invoke\t$i\t$(((t1 - t0) / 1000))\t$(((t2 - t0) / 1000))\t$l" >>"$COLD"
    log "cold start $i: POST start answered after $(((t1 - t0) / 1000)) ms, first 200 after $(((t2 - t0) / 1000)) ms"

    # POST start -> RUNNING in the admin API (polled every 20 ms; no invoke).
    cold_stop
    wait_quiet
    l=$(load1)
    t0=$(now_us)
    admin POST "/virtual_servers/$VS/start" -o /dev/null
    t1=$(now_us)
    wait_running 30 >/dev/null || die "VS $VS did not come back"
    t2=$(now_us)
    echo -e "running\t$i\t$(((t1 - t0) / 1000))\t$(((t2 - t0) / 1000))\t$l" >>"$COLD"
    log "cold start $i: RUNNING in the admin API after $(((t2 - t0) / 1000)) ms"
done

# ------------------------------------------------------------------ report
med() { # med LOAD TARGET COLUMN
    awk -F'\t' -v l="$1" -v t="$2" -v c="$3" 'NR > 1 && $1 == l && $2 == t { print $c }' "$TSV" | median
}
{
    echo
    echo "Virtual server invoke benchmark — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1); load at start of runs: $(awk -F'\t' 'NR > 1 { print $9 }' "$TSV" | sort -g | sed -n '1p;$p' | paste -sd- )"
    echo "backend: $BACKEND ($VS_PATH); rounds: $ROUNDS, $DURATION each; nginx proxy worker_processes $NGINX_WORKERS; respawn $BIN_A${BIN_B:+ (edgeB: $BIN_B${CONFIG_B:+ --config $CONFIG_B})}"
    [[ $NODELAY_SHIM == 1 ]] && echo "EXPERIMENT: respawn ran with TCP_NODELAY forced on accepted sockets (NODELAY_SHIM=1)"
    [[ -s $RES/noisy-runs ]] && echo "WARNING: $(wc -l <"$RES/noisy-runs") run(s) started while cargo/rustc was busy"
    for mode in high low; do
        if [[ $mode == high ]]; then desc="wrk -t$THREADS -c$CONNS -d$DURATION"; else desc="wrk -t1 -c1 -d$DURATION"; fi
        echo
        echo "== $desc (medians of $ROUNDS rounds) =="
        printf '%-8s %12s %10s %10s %14s %14s   %s\n' target req/s p50_us p99_us added_p50_us added_p99_us \
            'CPU us/req: respawn nginx vs' 
        d50=$(med $mode direct 5)
        d99=$(med $mode direct 6)
        for t in "${TARGETS[@]}"; do
            rps=$(med $mode "$t" 4)
            p50=$(med $mode "$t" 5)
            p99=$(med $mode "$t" 6)
            awk -v t="$t" -v r="$rps" -v a="$p50" -v b="$p99" -v da="$d50" -v db="$d99" \
                -v x="$(med $mode "$t" 10)" -v y="$(med $mode "$t" 11)" -v z="$(med $mode "$t" 12)" \
                'BEGIN { printf "%-8s %12.0f %10.1f %10.1f %+14.1f %+14.1f   %7.1f %6.1f %6.1f\n", t, r, a, b, a - da, b - db, x, y, z }'
        done
        pairs=(edge:direct nginx:direct edge:nginx)
        [[ -z $BIN_B ]] || pairs+=(edgeB:nginx edgeB:edge)
        for pair in "${pairs[@]}"; do
            x=${pair%:*} y=${pair#*:}
            awk -v n="$x/$y" -v ra="$(med $mode "$x" 4)" -v rb="$(med $mode "$y" 4)" \
                -v la="$(med $mode "$x" 5)" -v lb="$(med $mode "$y" 5)" \
                -v qa="$(med $mode "$x" 6)" -v qb="$(med $mode "$y" 6)" \
                'BEGIN { printf "ratio %-13s req/s x%.2f   p50 x%.2f   p99 x%.2f\n", n, ra / rb, la / lb, qa / qb }'
        done
    done
    echo
    echo "respawn RSS: $((RSS_BEFORE / 1024)) MiB before the wrk runs, $((RSS_AFTER / 1024)) MiB after $EDGE_CALLS edge calls"
    echo
    echo "== cold start (median of $COLD_RUNS) =="
    cm() { awk -F'\t' -v k="$1" -v c="$2" 'NR > 1 && $1 == k { print $c }' "$COLD" | median; }
    echo "POST start -> first 200 of an invoke: $(cm invoke 4) ms   (all: $(awk -F'\t' '$1 == "invoke" { print $4 }' "$COLD" | paste -sd' '))"
    echo "POST start -> RUNNING in admin API:   $(cm running 4) ms   (all: $(awk -F'\t' '$1 == "running" { print $4 }' "$COLD" | paste -sd' '))"
    echo "POST start itself (answer):           $(cm invoke 3) ms"
    echo "warm invoke with curl (baseline):     $(cm warm_invoke 4) ms"
    if [[ $PERF == 1 ]]; then
        echo
        echo "== perf: respawn process, top symbols (self) =="
        for t in edge direct; do
            echo "-- during the $t run ($(awk '/^Requests\/sec:/ { print $2 }' "$RES/wrk-perf-$t.txt") req/s):"
            head -25 "$RES/perf-$t-top.txt" 2>/dev/null || true
        done
    fi
    echo
    echo "raw runs: $TSV; wrk outputs and cold-start figures: $RES"
} | tee "$RES/summary.txt"
