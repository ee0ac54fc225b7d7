#!/usr/bin/env bash
# figway side by side with nginx and HAProxy, on one machine, over loopback.
#
#   benches/compare.sh            # full run: about 8 minutes with the defaults
#   QUICK=1 benches/compare.sh    # smoke run: about 1.5 minutes
#
# See docs/benchmarks.md for what is measured and how, and `benches/compare.sh
# --help` for the knobs. Needs root only to install missing Debian packages.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: benches/compare.sh [--help]

Benchmarks figway against nginx and HAProxy as reverse proxies in front of one
fast upstream (an nginx serving 100 bytes on / and 64 KiB on /big), plus a
"direct" row (load generator straight to the upstream). Every proxy runs one
worker pinned to one core; the upstream and the load generator share the other.
Prints a plain table and the same figures as markdown.

Environment (defaults in brackets):
  FIGWAY_BIN      figway binary to test [build target/release/figway with cargo]
  FIGWAY_PGO_BIN  the figway-pgo row's binary [target/pgo/release/figway, from scripts/pgo.sh]
  DURATION        seconds per wrk run [5]
  ROUNDS          interleaved rounds over all proxies and paths [5]
  CONNS           wrk connections [64]
  WARMUP          seconds of warm-up per proxy before the first round [2]
  PROXIES         rows for the wrk runs, in order [direct nginx figway figway-full figway-nolog haproxy]
  PATHS           paths to load with wrk [/ /big]
  RATE_PROXIES    rows for the fixed-rate test [direct nginx figway figway-full haproxy]
  RATE_ROUNDS     interleaved rounds of the fixed-rate test [3]
  RATE_DURATION   seconds per fixed-rate run [5]
  RATE_WORKERS    hey workers (-c) [50]
  RATE_QPS        requests/s per hey worker (-q) [100]  (50 x 100 = 5,000 req/s)
  MEM_PROXIES     rows for the idle-connection memory test [nginx haproxy figway]
  IDLE_CONNS      idle client connections held open [10000]
  SETTLE          seconds to wait after closing them before the last RSS reading [10]
  PROXY_CPU       core for the proxies [1]
  LOAD_CPU        core for the upstream and the load generators [0]
  BASE_PORT       first of the loopback ports used (BASE_PORT..BASE_PORT+5, +100..+105) [18000]
  RESULTS_DIR     also keep the raw results (TSV) and the report here [not kept]
  KEEP            1 = keep the temporary directory (configs, logs) [0]
  NICE            run everything at this nice value, e.g. -10 to stay ahead of
                  a compile on the same machine (negative needs root) [unchanged]
  QUICK           1 = smoke run: DURATION=2 ROUNDS=1 WARMUP=1 RATE_DURATION=3
                  IDLE_CONNS=1000 SETTLE=2 (explicit settings still win)
  SKIP_INSTALL    1 = never call apt-get; fail if a tool is missing [0]
Set PROXIES, RATE_PROXIES or MEM_PROXIES to the empty string to skip that part.

Rows: direct (no proxy), nginx, haproxy, figway-nolog (one route, access log
off), figway (one route, default config: access log on, written to a file),
figway-full (access log on, 10,001 routes, health checks, outlier detection,
sticky split with fallback on /), figway-pgo (the figway row's config on
the profile-guided build of scripts/pgo.sh; in no default list, as that
build takes about 10 minutes: PROXIES="nginx figway figway-pgo"),
nginx-log (the nginx row with its access log on, combined format, to a
file on disk, batched as figway batches its own: buffer=64k flush=10ms;
figway's log on against nginx's, in no default list:
PROXIES="nginx nginx-log figway"). Two floors, in no default list:
baseline (examples/baseline_proxy.rs: a minimal proxy on hyper and tokio,
figway's crates without its features) and codec-floor
(examples/codec_floor.rs: the same with HTTP/1.1 parsed and written by
hand); built with cargo when the rows are asked for, e.g.
  PROXIES="nginx baseline codec-floor figway" benches/compare.sh
EOF
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) echo "compare.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HERE="$ROOT/benches/compare"
# die, log, render, cleanup_tree, tree_cpu_ticks, parse_wrk, ...: shared
# with the other bench scripts.
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$ROOT/benches/lib.sh"

# The command line as given (the settings that were set in the environment),
# for the report.
KNOBS="FIGWAY_BIN DURATION ROUNDS CONNS WARMUP PROXIES PATHS RATE_PROXIES RATE_ROUNDS RATE_DURATION RATE_WORKERS RATE_QPS
MEM_PROXIES IDLE_CONNS SETTLE PROXY_CPU LOAD_CPU BASE_PORT RESULTS_DIR KEEP QUICK SKIP_INSTALL NICE"
COMMAND=""
for k in $KNOBS; do
  [[ -n "${!k+x}" ]] || continue
  if [[ "${!k}" =~ ^[A-Za-z0-9_./:+-]+$ ]]; then COMMAND+="$k=${!k} "; else COMMAND+="$k='${!k}' "; fi
done
COMMAND+="benches/compare.sh"

if [[ "${QUICK:-0}" == 1 ]]; then
  : "${DURATION:=2}" "${ROUNDS:=1}" "${WARMUP:=1}" "${RATE_ROUNDS:=1}" "${RATE_DURATION:=3}" "${IDLE_CONNS:=1000}" "${SETTLE:=2}"
fi
# DURATION and ROUNDS: five short rounds rather than three long ones: on
# this kind of VM the kernel's share of a run settles into one of two
# levels for the whole run (sys 11 or 15 µs a request, for every proxy
# alike), so more runs, not longer ones, are what steady a median.
DURATION="${DURATION:-5}"
ROUNDS="${ROUNDS:-5}"
CONNS="${CONNS:-64}"
WARMUP="${WARMUP:-2}"
# figway next to nginx, and the full config next to figway: within a
# round, rows next to each other run back to back (below), and the
# targets' paired ratios read best so.
PROXIES="${PROXIES-direct nginx figway figway-full figway-nolog haproxy}"
PATHS="${PATHS:-/ /big}"
RATE_PROXIES="${RATE_PROXIES-direct nginx figway figway-full haproxy}"
RATE_ROUNDS="${RATE_ROUNDS:-3}"
RATE_DURATION="${RATE_DURATION:-5}"
RATE_WORKERS="${RATE_WORKERS:-50}"
RATE_QPS="${RATE_QPS:-100}"
MEM_PROXIES="${MEM_PROXIES-nginx haproxy figway}"
IDLE_CONNS="${IDLE_CONNS:-10000}"
SETTLE="${SETTLE:-10}"
PROXY_CPU="${PROXY_CPU:-1}"
LOAD_CPU="${LOAD_CPU:-0}"
BASE_PORT="${BASE_PORT:-18000}"
KEEP="${KEEP:-0}"

for v in DURATION ROUNDS CONNS WARMUP RATE_ROUNDS RATE_DURATION RATE_WORKERS RATE_QPS IDLE_CONNS SETTLE PROXY_CPU LOAD_CPU BASE_PORT; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
(( DURATION >= 1 && ROUNDS >= 1 && CONNS >= 1 && RATE_ROUNDS >= 1 && RATE_DURATION >= 1 )) \
  || die "DURATION, ROUNDS, CONNS, RATE_ROUNDS and RATE_DURATION must be at least 1"
KNOWN_ROWS=" direct nginx nginx-log haproxy figway-nolog figway figway-full figway-pgo baseline codec-floor "
for p in $PROXIES $RATE_PROXIES $MEM_PROXIES; do
  [[ "$KNOWN_ROWS" == *" $p "* ]] || die "unknown row '$p' (known:$KNOWN_ROWS)"
done
for p in $MEM_PROXIES; do
  [[ "$p" != direct ]] || die "MEM_PROXIES: 'direct' has no proxy to measure"
done

# ---------------------------------------------------------------- tools
need_install=()
for t in nginx haproxy wrk hey; do
  command -v "$t" >/dev/null 2>&1 || need_install+=("$t")
done
if (( ${#need_install[@]} )); then
  [[ "${SKIP_INSTALL:-0}" != 1 ]] || die "missing: ${need_install[*]} (SKIP_INSTALL=1 forbids installing)"
  [[ "$(id -u)" == 0 ]] || die "missing: ${need_install[*]}; run as root to install them, or: apt-get install -y nginx haproxy wrk hey"
  command -v apt-get >/dev/null || die "missing: ${need_install[*]} and no apt-get to install them with"
  log "installing ${need_install[*]} from Debian (services are not started)"
  # Keep the packages' postinst from starting system-wide nginx/haproxy.
  made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  install_rc=0
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx haproxy wrk hey; } >&2 || install_rc=$?
  if (( made_policy )); then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
  (( install_rc == 0 )) || die "apt-get install nginx haproxy wrk hey failed (exit $install_rc)"
fi
for t in nginx haproxy wrk hey taskset python3 curl ss; do
  command -v "$t" >/dev/null 2>&1 || die "'$t' not found in PATH"
done

NCPU="$(nproc --all)"
(( PROXY_CPU < NCPU && LOAD_CPU < NCPU )) || die "PROXY_CPU=$PROXY_CPU / LOAD_CPU=$LOAD_CPU: this machine has $NCPU cores (0..$((NCPU - 1)))"
if [[ -n "${NICE:-}" ]]; then
  [[ "$NICE" =~ ^-?[0-9]+$ ]] || die "NICE must be a whole number, got '$NICE'"
  renice -n "$NICE" -p $$ >/dev/null || die "cannot renice to $NICE (negative values need root)"
fi
[[ "$PROXY_CPU" != "$LOAD_CPU" ]] || log "warning: PROXY_CPU and LOAD_CPU are the same core; figures will not compare with published ones"

# Open files: as many as we may (the idle-connection test needs IDLE_CONNS for
# the holder and for the proxy, plus upstream connections).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE="$(ulimit -n)"
if [[ -n "${MEM_PROXIES// /}" ]] && (( NOFILE < IDLE_CONNS + 512 )); then
  die "open-file limit is $NOFILE (hard $(ulimit -Hn)); IDLE_CONNS=$IDLE_CONNS needs at least $((IDLE_CONNS + 512)); lower IDLE_CONNS"
fi
WORKER_CONNECTIONS=$(( IDLE_CONNS * 2 > 20000 ? IDLE_CONNS * 2 : 20000 ))
(( WORKER_CONNECTIONS <= NOFILE )) || WORKER_CONNECTIONS=$NOFILE
HAPROXY_MAXCONN=$(( IDLE_CONNS * 2 > 20000 ? IDLE_CONNS * 2 : 20000 ))
NOTES=""
# HAProxy wants 2 fds per connection (client + server side) and refuses to
# start when the limit is lower, unless told otherwise. Idle keep-alive clients
# do not hold a server-side fd with http-reuse, so the test still fits.
if (( NOFILE < 2 * HAPROXY_MAXCONN + 100 )); then
  STRICT_LIMITS="no strict-limits"
  [[ " $PROXIES $RATE_PROXIES $MEM_PROXIES " != *" haproxy "* ]] || NOTES+="open-file limit ${NOFILE} (cannot be raised here): haproxy runs with 'no strict-limits' and maxconn ${HAPROXY_MAXCONN}. "
else
  STRICT_LIMITS="# strict-limits (default)"
fi

# ---------------------------------------------------------------- figway binary
if [[ -n "${FIGWAY_BIN:-}" ]]; then
  [[ -x "$FIGWAY_BIN" ]] || die "FIGWAY_BIN=$FIGWAY_BIN is not an executable file"
else
  command -v cargo >/dev/null || die "cargo not found; install Rust or set FIGWAY_BIN"
  log "building figway (cargo build --release)"
  cargo build --release --quiet >&2 || die "cargo build --release failed"
  FIGWAY_BIN="$ROOT/target/release/figway"
fi
FIGWAY_BIN="$(cd "$(dirname "$FIGWAY_BIN")" && pwd)/$(basename "$FIGWAY_BIN")"
FIGWAY_VERSION="$("$FIGWAY_BIN" --version 2>/dev/null | head -n1 || echo unknown)"
# The floors (examples), beside the binary unless given.
declare -A FLOOR_BIN=(
  [baseline]="${BASELINE_BIN:-$(dirname "$FIGWAY_BIN")/examples/baseline_proxy}"
  [codec-floor]="${CODEC_FLOOR_BIN:-$(dirname "$FIGWAY_BIN")/examples/codec_floor}"
)
for row in baseline codec-floor; do
  [[ " $PROXIES $RATE_PROXIES $MEM_PROXIES " == *" $row "* ]] || continue
  [[ -x "${FLOOR_BIN[$row]}" ]] && continue
  example="$(basename "${FLOOR_BIN[$row]}")"
  command -v cargo >/dev/null || die "${FLOOR_BIN[$row]} is missing and cargo is not found to build it"
  log "building examples/$example.rs (cargo build --release)"
  cargo build --release --quiet --example "$example" >&2 || die "cargo build --release --example $example failed"
  FLOOR_BIN[$row]="$ROOT/target/release/examples/$example"
done

# The profile-guided build (scripts/pgo.sh), for the figway-pgo row only:
# not built here, as it takes about 10 minutes.
if [[ " $PROXIES $RATE_PROXIES $MEM_PROXIES " == *" figway-pgo "* ]]; then
  FIGWAY_PGO_BIN="${FIGWAY_PGO_BIN:-$ROOT/target/pgo/release/figway}"
  [[ -x "$FIGWAY_PGO_BIN" ]] || die "row figway-pgo: $FIGWAY_PGO_BIN is missing; build it with scripts/pgo.sh (about 10 minutes) or set FIGWAY_PGO_BIN"
  FIGWAY_PGO_BIN="$(cd "$(dirname "$FIGWAY_PGO_BIN")" && pwd)/$(basename "$FIGWAY_PGO_BIN")"
fi

# ---------------------------------------------------------------- processes and cleanup
WORK="$(mktemp -d /tmp/figway-compare.XXXXXX)"
chmod 755 "$WORK"
declare -A PID=()   # row -> main pid
declare -A PORT=()  # row -> port
BG_PIDS=()          # everything we started, in start order

trap cleanup_tree EXIT
trap 'log "interrupted"; exit 130' INT TERM

start() { # row cpu logfile cmd...
  local row="$1" cpu="$2" out="$3"; shift 3
  taskset -c "$cpu" "$@" >>"$out" 2>>"$WORK/$row.stderr" </dev/null &
  PID[$row]=$!
  BG_PIDS+=("$!")
}

wait_ready() { # row port
  local row="$1" port="$2" i
  for i in $(seq 1 100); do
    if ! kill -0 "${PID[$row]}" 2>/dev/null; then
      echo "----- $row stderr -----" >&2; tail -n 30 "$WORK/$row.stderr" >&2 || true
      die "$row exited during start-up (port $port)"
    fi
    curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "----- $row stderr -----" >&2; tail -n 30 "$WORK/$row.stderr" >&2 || true
  die "$row did not answer 200 on http://127.0.0.1:$port/ within 10 s"
}

verify() { # row port: / and /big come back 200 with the upstream's bodies
  local row="$1" port="$2" got
  got="$(curl -sS -o /dev/null -w '%{http_code} %{size_download}' --max-time 5 -H 'x-user-id: 12345' "http://127.0.0.1:$port/")" || die "$row: GET / failed"
  [[ "$got" == "200 $SMALL_SIZE" ]] || die "$row: GET / gave '$got', want '200 $SMALL_SIZE'"
  got="$(curl -sS -o /dev/null -w '%{http_code} %{size_download}' --max-time 5 -H 'x-user-id: 12345' "http://127.0.0.1:$port/big")" || die "$row: GET /big failed"
  [[ "$got" == "200 65536" ]] || die "$row: GET /big gave '$got', want '200 65536'"
}

pids_of() { # row -> main pid and its children (nginx master + worker)
  local p="${PID[$1]}"
  echo "$p"
  children_of "$p"
}

cpu_ticks() { # row -> "utime stime" (clock ticks) over the row's processes
  tree_cpu_split "${PID[$1]}"
}

rss_kib() { # sum of VmRSS (KiB) over the row's processes
  local total=0 p v
  for p in $(pids_of "$1"); do
    v="$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null)" || continue
    total=$(( total + ${v:-0} ))
  done
  echo "$total"
}

alive() { # row
  kill -0 "${PID[$1]}" 2>/dev/null || { tail -n 30 "$WORK/$1.stderr" >&2 || true; die "$1 died during the benchmark"; }
}

CLK_TCK="$(getconf CLK_TCK)"
US_PER_TICK=$(( 1000000 / CLK_TCK ))

# ---------------------------------------------------------------- configs
i=0
for row in upstream nginx haproxy figway-nolog figway figway-full baseline codec-floor figway-pgo nginx-log; do
  PORT[$row]=$(( BASE_PORT + i ))
  i=$(( i + 1 ))
done
PORT[direct]=${PORT[upstream]}
for row in upstream nginx haproxy figway-nolog figway figway-full baseline codec-floor figway-pgo nginx-log; do
  port_free "${PORT[$row]}" || die "port ${PORT[$row]} (for $row) is in use; set BASE_PORT"
done
for row in figway-nolog figway figway-full figway-pgo; do
  port_free $(( PORT[$row] + 100 )) || die "port $(( PORT[$row] + 100 )) (figway admin) is in use; set BASE_PORT"
done

mkdir -p "$WORK/www" "$WORK/upstream-tmp" "$WORK/nginx-tmp" "$WORK/results"
head -c 65536 /dev/urandom > "$WORK/www/big"
common=(WORK="$WORK" NOFILE="$NOFILE" WORKER_CONNECTIONS="$WORKER_CONNECTIONS" UPSTREAM_PORT="${PORT[upstream]}")
render "$HERE/upstream-nginx.conf" "$WORK/upstream.conf" "${common[@]}" PORT="${PORT[upstream]}"
render "$HERE/nginx.conf" "$WORK/nginx.conf" "${common[@]}" PORT="${PORT[nginx]}"
# nginx-log: the same nginx on its own port, pid file and error log, its
# access log on and batched as figway's is (64 KiB or 10 ms).
sed -e "s|access_log off;|access_log $WORK/nginx-log.access.log combined buffer=64k flush=10ms;|" \
  -e "s|$WORK/nginx.pid|$WORK/nginx-log.pid|" -e "s|/nginx-error.log|/nginx-log-error.log|" \
  -e "s|listen 127.0.0.1:${PORT[nginx]} |listen 127.0.0.1:${PORT[nginx-log]} |" \
  "$WORK/nginx.conf" > "$WORK/nginx-log.conf"
grep -q "listen 127.0.0.1:${PORT[nginx-log]} " "$WORK/nginx-log.conf" || die "nginx-log: could not set its port in $WORK/nginx-log.conf"
render "$HERE/haproxy.cfg" "$WORK/haproxy.cfg" "${common[@]}" PORT="${PORT[haproxy]}" \
  MAXCONN="$HAPROXY_MAXCONN" STRICT_LIMITS="$STRICT_LIMITS"
render "$HERE/figway.toml" "$WORK/figway-nolog.toml" "${common[@]}" PORT="${PORT[figway-nolog]}" \
  ADMIN_PORT=$(( PORT[figway-nolog] + 100 )) ACCESS_LOG=false
render "$HERE/figway.toml" "$WORK/figway.toml" "${common[@]}" PORT="${PORT[figway]}" \
  ADMIN_PORT=$(( PORT[figway] + 100 )) ACCESS_LOG=true
render "$HERE/figway.toml" "$WORK/figway-pgo.toml" "${common[@]}" PORT="${PORT[figway-pgo]}" \
  ADMIN_PORT=$(( PORT[figway-pgo] + 100 )) ACCESS_LOG=true
render "$HERE/figway-full.toml" "$WORK/figway-full.toml" "${common[@]}" PORT="${PORT[figway-full]}" \
  ADMIN_PORT=$(( PORT[figway-full] + 100 ))
for ((r = 0; r < 10000; r++)); do
  printf '\n[[routes]]\nprefix = "/r%d"\nto = "app"\n' "$r"
done >> "$WORK/figway-full.toml"

nginx -t -q -p "$WORK/" -e "$WORK/upstream-error.log" -c "$WORK/upstream.conf" 2>"$WORK/check.err" \
  || { cat "$WORK/check.err" >&2; die "upstream nginx config is invalid"; }
nginx -t -q -p "$WORK/" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" 2>"$WORK/check.err" \
  || { cat "$WORK/check.err" >&2; die "nginx config is invalid"; }
nginx -t -q -p "$WORK/" -e "$WORK/nginx-log-error.log" -c "$WORK/nginx-log.conf" 2>"$WORK/check.err" \
  || { cat "$WORK/check.err" >&2; die "nginx-log config is invalid"; }
haproxy -c -q -f "$WORK/haproxy.cfg" >"$WORK/check.err" 2>&1 \
  || { cat "$WORK/check.err" >&2; die "haproxy config is invalid"; }
for row in figway-nolog figway figway-full figway-pgo; do
  "$FIGWAY_BIN" check "$WORK/$row.toml" >"$WORK/check.out" 2>&1 \
    || { tail -n 30 "$WORK/check.out" >&2; die "figway check $WORK/$row.toml failed"; }
done

# ---------------------------------------------------------------- start
log "work dir $WORK; figway $FIGWAY_VERSION ($FIGWAY_BIN)"
start upstream "$LOAD_CPU" /dev/null nginx -p "$WORK/" -e "$WORK/upstream-error.log" -c "$WORK/upstream.conf"
wait_ready upstream "${PORT[upstream]}"
SMALL_SIZE="$(curl -sS -o /dev/null -w '%{size_download}' "http://127.0.0.1:${PORT[upstream]}/")"

started=" "
for row in $PROXIES $RATE_PROXIES $MEM_PROXIES; do
  [[ "$row" != direct && "$started" != *" $row "* ]] || continue
  started+="$row "
  case "$row" in
    nginx) start nginx "$PROXY_CPU" /dev/null nginx -p "$WORK/" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" ;;
    nginx-log) start nginx-log "$PROXY_CPU" /dev/null nginx -p "$WORK/" -e "$WORK/nginx-log-error.log" -c "$WORK/nginx-log.conf" ;;
    haproxy) start haproxy "$PROXY_CPU" /dev/null haproxy -db -f "$WORK/haproxy.cfg" ;;
    figway-nolog) start "$row" "$PROXY_CPU" /dev/null "$FIGWAY_BIN" run --config "$WORK/$row.toml" ;;
    baseline|codec-floor) start "$row" "$PROXY_CPU" /dev/null "${FLOOR_BIN[$row]}" "127.0.0.1:${PORT[$row]}" "127.0.0.1:${PORT[upstream]}" ;;
    figway|figway-full|figway-pgo)
      # The access log (stdout) goes to a file on disk, truncated between runs.
      : > "$WORK/$row.access.log"
      bin="$FIGWAY_BIN"
      [[ "$row" != figway-pgo ]] || bin="$FIGWAY_PGO_BIN"
      start "$row" "$PROXY_CPU" "$WORK/$row.access.log" "$bin" run --config "$WORK/$row.toml" ;;
  esac
  wait_ready "$row" "${PORT[$row]}"
done
for row in direct ${started}; do
  verify "$row" "${PORT[$row]}"
done
for row in figway figway-full figway-pgo nginx-log; do
  if [[ "$started" == *" $row "* ]]; then
    sleep 0.2
    [[ -s "$WORK/$row.access.log" ]] || die "$row: the access log is on but nothing reached $WORK/$row.access.log"
  fi
done
truncate_logs() { local f; for f in "$WORK"/*.access.log; do [[ -e "$f" ]] && : > "$f"; done; return 0; }

# Other work on the machine skews every figure: say so in the report.
BUSY_BEFORE="$(busy_pct)"
if (( BUSY_BEFORE > 10 )); then
  log "warning: the machine is ${BUSY_BEFORE}% busy before the benchmark starts; figures will be noisy"
fi

# ---------------------------------------------------------------- meta
cpu_model="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "kernel=$(uname -r)"
  echo "cpu=${cpu_model:-unknown}"
  echo "ncpu=$NCPU"
  echo "command=$COMMAND"
  echo "figway_bin=$FIGWAY_BIN"
  echo "figway_version=$FIGWAY_VERSION"
  [[ "$started" != *" figway-pgo "* ]] || echo "figway_pgo_bin=$FIGWAY_PGO_BIN"
  echo "nginx_version=$(nginx -v 2>&1 | sed 's|.*nginx/||')"
  echo "haproxy_version=$(haproxy -v | head -n1 | awk '{print $3}')"
  echo "wrk_version=$(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}')"
  echo "proxies=$PROXIES"
  echo "rounds=$ROUNDS"
  echo "duration=$DURATION"
  echo "conns=$CONNS"
  echo "rate_rounds=$RATE_ROUNDS"
  echo "rate_duration=$RATE_DURATION"
  echo "rate_workers=$RATE_WORKERS"
  echo "rate_qps=$RATE_QPS"
  echo "idle_conns=$IDLE_CONNS"
  echo "settle=$SETTLE"
  echo "proxy_cpu=$PROXY_CPU"
  echo "load_cpu=$LOAD_CPU"
} > "$WORK/results/meta.env"

# ---------------------------------------------------------------- wrk rounds
WRK=(wrk -t1 -c"$CONNS" --latency --timeout 5s -H 'x-user-id: 12345')

# CPU µs per request from two cpu_ticks readings: "total user system" (the
# user/system split shows where two proxies differ: in their own code or
# in the kernel's work for their system calls).
cpu_per_req() { # "u0 s0" "u1 s1" requests
  local u0 s0 u1 s1
  read -r u0 s0 <<<"$1"
  read -r u1 s1 <<<"$2"
  awk -v u=$(( (u1 - u0) * US_PER_TICK )) -v s=$(( (s1 - s0) * US_PER_TICK )) -v n="$3" \
    'BEGIN { printf "%.2f %.2f %.2f", (u + s) / n, u / n, s / n }'
}

run_wrk() { # row path duration -> "rps p50 p99 requests errors non2xx cpu user sys" (µs/req)
  local row="$1" path="$2" dur="$3" t0 t1 out parsed
  [[ "$row" == direct ]] || alive "$row"
  [[ "$row" == direct ]] || t0="$(cpu_ticks "$row")"
  out="$(timeout $(( dur + 30 )) taskset -c "$LOAD_CPU" "${WRK[@]}" -d"${dur}s" "http://127.0.0.1:${PORT[$row]}$path" 2>&1)" \
    || { echo "$out" >&2; die "wrk against $row$path failed"; }
  [[ "$row" == direct ]] || t1="$(cpu_ticks "$row")"
  parsed="$(parse_wrk <<<"$out")" || { echo "$out" >&2; die "cannot read wrk's output for $row$path"; }
  local reqs cpu="- - -"
  reqs="$(awk '{print $4}' <<<"$parsed")"
  if [[ "$row" != direct ]] && (( reqs > 0 )); then
    cpu="$(cpu_per_req "$t0" "$t1" "$reqs")"
  fi
  truncate_logs
  echo "$parsed $cpu"
}

if [[ -n "${PROXIES// /}" ]]; then
  total_runs=$(( ROUNDS * $(wc -w <<<"$PROXIES") * $(wc -w <<<"$PATHS") ))
  log "throughput: $ROUNDS rounds x $(wc -w <<<"$PROXIES") rows x $(wc -w <<<"$PATHS") paths x ${DURATION}s = $total_runs runs (~$(( total_runs * (DURATION + 1) / 60 + 1 )) min)"
  if (( WARMUP > 0 )); then
    for row in $PROXIES; do
      for path in $PATHS; do run_wrk "$row" "$path" "$WARMUP" >/dev/null; done
    done
  fi
  printf 'round\tproxy\tpath\trps\tp50_ms\tp99_ms\trequests\terrors\tnon2xx\tcpu_us_per_req\tuser_us_per_req\tsys_us_per_req\n' > "$WORK/results/runs.tsv"
  n=0
  # Path by path within a round, so that rows next to each other in
  # PROXIES run back to back on each path: the kernel's level (see
  # DURATION above) is a state of the machine that lasts tens of seconds,
  # and a round's paired ratio then compares two proxies in the same state
  # far more often than with every row's paths run in a block.
  for ((round = 1; round <= ROUNDS; round++)); do
    for path in $PATHS; do
      for row in $PROXIES; do
        n=$(( n + 1 ))
        res="$(run_wrk "$row" "$path" "$DURATION")"
        read -r rps p50 p99 reqs errs non2xx cpu user sys <<<"$res"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$row" "$path" "$rps" "$p50" "$p99" "$reqs" "$errs" "$non2xx" "$cpu" "$user" "$sys" \
          >> "$WORK/results/runs.tsv"
        log "[$n/$total_runs] round $round $row $path: $rps req/s, p50 ${p50} ms, p99 ${p99} ms, CPU ${cpu} us/req (user ${user}, sys ${sys})$( (( errs + non2xx == 0 )) || echo ", errors $errs, non-2xx $non2xx")"
      done
    done
  done
fi

# ---------------------------------------------------------------- fixed rate
# Interleaved rounds like the wrk runs: one hey run's p99 at ~5 ms moves by
# a millisecond between runs of the same proxy, so a single run per proxy
# cannot tell two proxies apart.
printf 'round\tproxy\tpath\tactual_rps\tp50_ms\tp99_ms\trequests\tnon200\tcpu_us_per_req\n' > "$WORK/results/rate.tsv"
rate_run() { # round row
  local round="$1" row="$2" t0 t1 out parsed rps p50 p99 reqs bad cpu
  [[ "$row" == direct ]] || alive "$row"
  [[ "$row" == direct ]] || t0="$(cpu_ticks "$row")"
  out="$(timeout $(( RATE_DURATION + 30 )) taskset -c "$LOAD_CPU" hey -z "${RATE_DURATION}s" -c "$RATE_WORKERS" -q "$RATE_QPS" -t 5 \
    -H 'x-user-id: 12345' "http://127.0.0.1:${PORT[$row]}/" 2>&1)" || { echo "$out" >&2; die "hey against $row failed"; }
  [[ "$row" == direct ]] || t1="$(cpu_ticks "$row")"
  truncate_logs
  # -> "rps p50_ms p99_ms responses non200": requests that got no response
  # (hey's "Error distribution") count as non-200
  parsed="$(awk '
    /Requests\/sec:/ { rps = $2 }
    /^ +50% in/ { p50 = $3 * 1000 }
    /^ +99% in/ { p99 = $3 * 1000 }
    /^Status code distribution:/ { sec = "status"; next }
    /^Error distribution:/ { sec = "error"; next }
    /^ +\[[0-9]+\]/ {
      v = $1; gsub(/[][]/, "", v)
      if (sec == "status") { total += $2; if (v != "200") bad += $2 }
      else if (sec == "error") { bad += v }
    }
    END { if (rps == "") exit 1; printf "%s %.3f %.3f %d %d\n", rps, p50, p99, total, bad + 0 }' <<<"$out")" \
    || { echo "$out" >&2; die "cannot read hey's output for $row"; }
  read -r rps p50 p99 reqs bad <<<"$parsed"
  cpu="-"
  if [[ "$row" != direct ]] && (( reqs > 0 )); then
    read -r cpu _ <<<"$(cpu_per_req "$t0" "$t1" "$reqs")"
  fi
  printf '%s\t%s\t/\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$row" "$rps" "$p50" "$p99" "$reqs" "$bad" "$cpu" >> "$WORK/results/rate.tsv"
  log "fixed rate round $round $row: $rps req/s, p50 ${p50} ms, p99 ${p99} ms, CPU ${cpu} us/req, non-200 $bad"
}
if [[ -n "${RATE_PROXIES// /}" ]]; then
  log "fixed rate: $RATE_ROUNDS rounds x $(wc -w <<<"$RATE_PROXIES") rows x ${RATE_DURATION}s"
  for ((round = 1; round <= RATE_ROUNDS; round++)); do
    for row in $RATE_PROXIES; do rate_run "$round" "$row"; done
  done
fi

# ---------------------------------------------------------------- idle connections
printf 'proxy\theld\tfailed\trss_before_kib\trss_held_kib\trss_after_kib\tkib_per_conn\tclosed_by_peer\n' > "$WORK/results/mem.tsv"
for row in $MEM_PROXIES; do
  alive "$row"
  truncate_logs
  sleep 1
  before="$(rss_kib "$row")"
  rm -f "$WORK/ready" "$WORK/close" "$WORK/done"
  taskset -c "$LOAD_CPU" timeout $(( 120 + 60 )) python3 "$HERE/idle_holder.py" --port "${PORT[$row]}" -n "$IDLE_CONNS" \
    --ready-file "$WORK/ready" --close-file "$WORK/close" --done-file "$WORK/done" \
    --open-timeout 60 --hold-timeout 120 >"$WORK/holder.out" 2>&1 &
  holder=$!
  BG_PIDS+=("$holder")
  for _ in $(seq 1 700); do
    [[ -e "$WORK/ready" ]] && break
    kill -0 "$holder" 2>/dev/null || { cat "$WORK/holder.out" >&2; die "idle_holder.py exited early against $row"; }
    sleep 0.1
  done
  [[ -e "$WORK/ready" ]] || die "idle_holder.py did not open $IDLE_CONNS connections to $row within 70 s"
  read -r ok failed < "$WORK/ready"
  sleep 2
  held="$(rss_kib "$row")"
  touch "$WORK/close"
  for _ in $(seq 1 300); do [[ -e "$WORK/done" ]] && break; sleep 0.1; done
  [[ -e "$WORK/done" ]] || die "idle_holder.py did not close its connections to $row within 30 s"
  read -r closed_by_peer < "$WORK/done"
  wait "$holder" 2>/dev/null || true
  sleep "$SETTLE"
  after="$(rss_kib "$row")"
  per="$(awk -v a="$held" -v b="$before" -v n="$ok" 'BEGIN { if (n > 0) printf "%.2f", (a - b) / n; else print "0" }')"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$row" "$ok" "$failed" "$before" "$held" "$after" "$per" "$closed_by_peer" >> "$WORK/results/mem.tsv"
  log "memory $row: $ok idle conns ($failed failed, $closed_by_peer closed by the proxy), RSS ${before} -> ${held} KiB ($per KiB/conn), ${after} KiB ${SETTLE}s after close"
done

# ---------------------------------------------------------------- report
BUSY_AFTER="$(busy_pct)"
NOTES+="machine busy (other processes, all cores) ${BUSY_BEFORE}% just before the runs and ${BUSY_AFTER}% just after. "
echo "notes=$NOTES" >> "$WORK/results/meta.env"
python3 "$HERE/report.py" "$WORK/results" | tee "$WORK/results/report.txt"
if [[ -n "${RESULTS_DIR:-}" ]]; then
  mkdir -p "$RESULTS_DIR"
  cp "$WORK"/results/* "$RESULTS_DIR"/
  log "raw results in $RESULTS_DIR"
fi
