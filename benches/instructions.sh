#!/usr/bin/env bash
# User-space instructions and system calls per proxied request: nginx, the
# floor proxy (examples/baseline_proxy.rs) and figway, each under valgrind's
# callgrind while wrk drives it.
#
#   benches/instructions.sh          # about 3 minutes
#
# Why this exists beside compare.sh: on a shared VM the CPU time per request
# moves ±15% between rounds, more than most single changes to the request
# path are worth. Instructions retired in user space do not move (two runs
# agree within 0.5%), and the kernel's share is the same for every row when
# their system calls per request are the same (this script shows both), so
# an A/B of one change reads here in minutes. It is not a speed figure:
# instructions differ in cost (cache misses, branch mispredictions) and
# compare.sh stays the judge of CPU time and latency.
#
# Knobs (environment): FIGWAY_BIN (default: cargo build --release),
# ROWS (default "nginx baseline figway-nolog figway"), SECONDS_EACH (8),
# BASE_PORT (19300), SKIP_INSTALL=1, KEEP_CALLGRIND=DIR (keep the profiles),
# FIGWAY_TOML (the figway rows' config template, default
# compare/figway.toml; compare/figway-legacy.toml routes to a legacy
# upstream, with INVENTORY=true|false for the legacy inventory on or off),
# REQUEST_PATH (/; /big for the upstream's 64 KiB answer), CALLGRIND_ARGS
# (more valgrind options: "--cache-sim=yes" adds simulated cache misses to
# the kept profiles, read with `callgrind_annotate --show=Ir,D1mr,D1mw,DLmr`),
# RATE (requests/s: drive each row with hey at this fixed rate, 4
# connections, instead of wrk's closed loop; see below).
#
# RATE=200: the idle regime. Under wrk a proxy is never idle and one
# wake-up serves many requests; at a fixed low rate (compare.sh's 5,000
# req/s is the same regime natively, RATE=200 is it under callgrind's
# slowdown) every request pays a wake-up of its own (epoll_wait, the
# runtime's park and unpark, timers), which wrk's figure hides.
#   RATE=200 ROWS="nginx figway" benches/instructions.sh
#
# Row `figway-full` runs compare.sh's full-feature config (access log on,
# 10,001 routes, health checks, outlier detection, a sticky split with
# fallback): against `figway`, what those features cost a request.
#   ROWS="figway figway-full" benches/instructions.sh
#
# Rows `figway-split` and `figway-ramp` (access log off) serve a 50/50
# split of one route, the second with a ramp in progress at 50% (SPEC §11):
# their difference is a ramp's cost per request.
#   ROWS="figway-split figway-ramp" benches/instructions.sh
#
# Row `codec-floor` runs examples/codec_floor.rs: baseline_proxy's minimal
# proxy with HTTP/1.1 parsed and written by hand instead of by hyper, one
# task per client connection doing the whole exchange. Against `baseline`
# it is what a codec of figway's own could save (docs/benchmarks.md):
#   ROWS="nginx baseline codec-floor" benches/instructions.sh
#
# Rows `embed` and `embed-nolog` run examples/embed.rs (figway as a library
# behind an application's tower auth layer) on the same config as the
# figway rows. It answers 401 without `authorization: Bearer TOKEN`, so
# with an embed row every row's requests carry that header (BEARER, default
# "bench"): the same bytes through every row, so the difference is the
# embedding's own cost. docs/benchmarks.md, "Embedding":
#   ROWS="figway-nolog embed-nolog figway embed" benches/instructions.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
ROWS="${ROWS:-nginx baseline figway-nolog figway}"
SECONDS_EACH="${SECONDS_EACH:-8}"
REQUEST_PATH="${REQUEST_PATH:-/}"
[[ "$REQUEST_PATH" == /* ]] || { echo "instructions.sh: REQUEST_PATH must begin with /" >&2; exit 2; }
BASE_PORT="${BASE_PORT:-19300}"

# die, log, need_tools, render, cleanup_pids: shared with the other bench scripts.
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$HERE/lib.sh"

need_tools nginx wrk valgrind strace curl
RATE="${RATE:-}"
if [[ -n "$RATE" ]]; then
  if ! [[ "$RATE" =~ ^[0-9]+$ ]] || (( RATE < 4 )); then
    die "RATE must be a whole number of requests/s, at least 4"
  fi
  need_tools hey
fi

if [[ -z "${FIGWAY_BIN:-}" ]]; then
  log "building figway and examples baseline_proxy, codec_floor, embed (release)"
  (cd "$ROOT" && cargo build --release --quiet --bin figway --example baseline_proxy --example codec_floor --example embed) || die "cargo build failed"
  FIGWAY_BIN="$ROOT/target/release/figway"
fi
BASELINE_BIN="${BASELINE_BIN:-$(dirname "$FIGWAY_BIN")/examples/baseline_proxy}"
EMBED_BIN="${EMBED_BIN:-$(dirname "$FIGWAY_BIN")/examples/embed}"
CODEC_FLOOR_BIN="${CODEC_FLOOR_BIN:-$(dirname "$FIGWAY_BIN")/examples/codec_floor}"
# Every row sends the same header when any row is the embed example.
AUTH=()
if [[ " $ROWS " == *" embed"* ]]; then
  BEARER="${BEARER:-bench}"
fi
if [[ -n "${BEARER:-}" ]]; then
  AUTH=(-H "authorization: Bearer $BEARER")
fi

WORK="$(mktemp -d /tmp/figway-instructions.XXXXXX)"
PIDS=()
trap cleanup_pids EXIT

UP=$BASE_PORT PROXY=$((BASE_PORT + 1)) ADMIN=$((BASE_PORT + 2))
render_proxy_rows "${FIGWAY_TOML:-$HERE/compare/figway.toml}" INVENTORY="${INVENTORY:-true}"
# One process, so callgrind sees the worker.
sed -i 's/master_process on;/master_process off;/' "$WORK/nginx.conf"
common=(WORK="$WORK" NOFILE=4096 WORKER_CONNECTIONS=4096 UPSTREAM_PORT="$UP")

for shape in split ramp; do
  render "$HERE/compare/figway-$shape.toml" "$WORK/figway-$shape.toml" "${common[@]}" PORT="$PROXY" \
    ADMIN_PORT="$ADMIN" RAMP_START="$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)"
done
# Rows `policies` and `route-limit` (SPEC §12), access log off: the
# figway-nolog config with header edits and a per-client rate limit, and
# with a route-wide limit only; both limits too high to refuse, so every
# request pays for the check and is proxied as in figway-nolog.
#   ROWS="figway-nolog policies route-limit" benches/instructions.sh
{ cat "$WORK/figway-false.toml"; cat <<'POLICIES'
[routes.headers]
request_remove = ["x-debug"]
request_set = { "x-source" = "figway" }
response_remove = ["x-powered-by"]
response_set = { "strict-transport-security" = "max-age=31536000" }
[routes.rate_limit]
rate = 1000000000
key = "client_ip"
POLICIES
} >"$WORK/figway-policies.toml"
{ cat "$WORK/figway-false.toml"; printf '[routes.rate_limit]\nrate = 1000000000\nkey = "route"\n'; } \
  >"$WORK/figway-route-limit.toml"

taskset -c 0 nginx -p "$WORK/" -c "$WORK/upstream.conf" >/dev/null 2>&1 &
PIDS+=($!)


load() { # seconds -> requests completed (wrk's closed loop, or hey at RATE)
  if [[ -z "$RATE" ]]; then
    wrk -t1 -c16 -d"$1s" "${AUTH[@]}" "http://127.0.0.1:$PROXY$REQUEST_PATH" | awk '/requests in/ {print $1}'
  else
    hey -z "$1s" -c 4 -q $(( RATE / 4 )) "${AUTH[@]}" "http://127.0.0.1:$PROXY$REQUEST_PATH" \
      | awk '/^Status code distribution:/ {s = 1; next} s && /^ +\[[0-9]+\]/ {n += $2} END {print n + 0}'
  fi
}

measure() { # row cmd...: prints one line of figures
  local row="$1"; shift
  local out="$WORK/$row.callgrind" pid n ir calls
  # Instructions: under callgrind, counters zeroed after a warm-up (pools,
  # caches, lazily built state), dumped after a window of wrk.
  # shellcheck disable=SC2086 # CALLGRIND_ARGS is a list of options
  valgrind --tool=callgrind --callgrind-out-file="$out" ${CALLGRIND_ARGS:-} "$@" >"$WORK/$row.stdout" 2>"$WORK/$row.stderr" &
  pid=$!
  PIDS+=("$pid")
  wait_proxy "$pid" "$row"
  load 2 >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  n="$(load "$SECONDS_EACH")"
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  [[ -n "$n" && "$n" -gt 0 ]] || die "$row: no requests counted"
  ir="$(cat "$out".* 2>/dev/null | awk '/^summary:/ {s += $2} END {print s + 0}')"
  # KEEP_CALLGRIND=DIR keeps the profiles (DIR/ROW.callgrind.*), for
  # `callgrind_annotate` when a figure moves and the question is where.
  if [[ -n "${KEEP_CALLGRIND:-}" ]]; then
    mkdir -p "$KEEP_CALLGRIND" && cp "$out".* "$KEEP_CALLGRIND/"
  fi
  # System calls: natively, under strace -c (which slows every call, so the
  # window counts fewer requests; the ratio is what matters).
  "$@" >"$WORK/$row.stdout" 2>"$WORK/$row.stderr" &
  pid=$!
  PIDS+=("$pid")
  wait_proxy "$pid" "$row"
  load 1 >/dev/null
  strace -c -f -p "$pid" -o "$WORK/$row.strace" 2>/dev/null &
  local tracer=$!
  sleep 0.5
  local m
  m="$(load 3)"
  sleep 0.2
  kill -INT "$tracer"; wait "$tracer" 2>/dev/null || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
  calls="$(awk '$NF == "total" {print $4}' "$WORK/$row.strace")"
  # ... and the system calls by name beside them.
  if [[ -n "${KEEP_CALLGRIND:-}" ]]; then
    cp "$WORK/$row.strace" "$KEEP_CALLGRIND/"
  fi
  awk -v ir="$ir" -v n="$n" -v c="${calls:-0}" -v m="${m:-1}" -v row="$row" \
    'BEGIN { printf "%-14s %9.0f instructions/request (%d requests)  %5.2f syscalls/request\n", row, ir / n, n, c / m }'
}

log "callgrind, ${SECONDS_EACH}s of $([[ -z "$RATE" ]] && echo "wrk -t1 -c16" || echo "hey -c 4 at $RATE req/s") on $REQUEST_PATH per row, then strace -c for 3s"
for row in $ROWS; do
  case "$row" in
    nginx) measure nginx nginx -p "$WORK/" -c "$WORK/nginx.conf" ;;
    baseline) measure baseline "$BASELINE_BIN" "127.0.0.1:$PROXY" "127.0.0.1:$UP" ;;
    codec-floor) measure codec-floor "$CODEC_FLOOR_BIN" "127.0.0.1:$PROXY" "127.0.0.1:$UP" ;;
    figway) measure figway "$FIGWAY_BIN" run --config "$WORK/figway-true.toml" ;;
    figway-nolog) measure figway-nolog "$FIGWAY_BIN" run --config "$WORK/figway-false.toml" ;;
    figway-full) measure figway-full "$FIGWAY_BIN" run --config "$WORK/figway-full.toml" ;;
    figway-split) measure figway-split "$FIGWAY_BIN" run --config "$WORK/figway-split.toml" ;;
    figway-ramp) measure figway-ramp "$FIGWAY_BIN" run --config "$WORK/figway-ramp.toml" ;;
    policies) measure policies "$FIGWAY_BIN" run --config "$WORK/figway-policies.toml" ;;
    route-limit) measure route-limit "$FIGWAY_BIN" run --config "$WORK/figway-route-limit.toml" ;;
    embed) EMBED_TOKEN="$BEARER" measure embed "$EMBED_BIN" "$WORK/figway-true.toml" ;;
    embed-nolog) EMBED_TOKEN="$BEARER" measure embed-nolog "$EMBED_BIN" "$WORK/figway-false.toml" ;;
    *) die "unknown row $row" ;;
  esac
done
