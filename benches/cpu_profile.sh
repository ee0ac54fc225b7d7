#!/usr/bin/env bash
# Where a proxy's CPU time goes, kernel included: each row pinned to CPU 1
# with wrk and the upstream on CPU 0 (as compare.sh pins them), sampled by
# `perf record -e cpu-clock` on CPU 1 while wrk drives it, and the samples
# summed by kernel / user space and by symbol, in µs per request.
#
#   benches/cpu_profile.sh          # about 1 minute for the default rows
#
# Why this exists beside instructions.sh: callgrind counts user-space
# instructions only, and on this VM the kernel is two thirds of a small
# request's CPU time (compare.sh's "user + sys" column). There are no
# hardware counters here (`perf stat -e instructions` is refused), but the
# software clock samples, so perf can still say which kernel paths a row's
# system calls spend their time in. Samples are time, not instructions:
# they move with the host like compare.sh's figures do, so read a row
# against a row of the same run.
#
# Knobs (environment): FIGWAY_BIN (default: cargo build --release), ROWS
# (default "nginx figway-nolog figway"; also figway-full), SECONDS_EACH
# (8), CONNECTIONS (64), FREQ (samples a second, 10000), BASE_PORT
# (19400), TOP (symbols listed per row, 25), KEEP_PERF=DIR (keep each
# row's perf.data), SKIP_INSTALL=1, RATE (requests/s: drive each row with
# hey at this fixed rate, 50 connections, instead of wrk's closed loop:
# compare.sh's fixed-rate regime, where a proxy is mostly idle and every
# few requests pay a wake-up; CPU 1's idle time shows as `swapper`),
# CALL_GRAPH (perf's --call-graph: fp by default; figway has no frame
# pointers, so `dwarf` when the question is who calls a symbol, then
#   perf report -i DIR/figway.perf --no-children -S SYMBOL -G
# on the kept data).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
ROWS="${ROWS:-nginx figway-nolog figway}"
SECONDS_EACH="${SECONDS_EACH:-8}"
CONNECTIONS="${CONNECTIONS:-64}"
BASE_PORT="${BASE_PORT:-19400}"
TOP="${TOP:-25}"
CALL_GRAPH="${CALL_GRAPH:-fp}"

# die, log, need_tools, render, cleanup_pids: shared with the other bench scripts.
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$HERE/lib.sh"

need_tools nginx wrk curl
RATE="${RATE:-}"
if [[ -n "$RATE" ]]; then
  if ! [[ "$RATE" =~ ^[0-9]+$ ]] || (( RATE < 50 )); then
    die "RATE must be a whole number of requests/s, at least 50"
  fi
  need_tools hey
fi
# perf's Debian package is not named after it.
if ! command -v perf >/dev/null; then
  [[ "${SKIP_INSTALL:-0}" == 1 ]] && die "missing: perf (Debian package linux-perf)"
  log "installing linux-perf"
  { apt-get update -qq >/dev/null &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null; } ||
    die "apt-get install linux-perf failed"
fi
FREQ="${FREQ:-10000}"

if [[ -z "${FIGWAY_BIN:-}" ]]; then
  log "building figway (release)"
  (cd "$ROOT" && cargo build --release --quiet --bin figway) || die "cargo build failed"
  FIGWAY_BIN="$ROOT/target/release/figway"
fi

WORK="$(mktemp -d /tmp/figway-cpu-profile.XXXXXX)"
PIDS=()
AUTH=()
trap cleanup_pids EXIT

UP=$BASE_PORT PROXY=$((BASE_PORT + 1)) ADMIN=$((BASE_PORT + 2))
render_proxy_rows "$HERE/compare/figway.toml"

taskset -c 0 nginx -p "$WORK/" -c "$WORK/upstream.conf" >/dev/null 2>&1 &
PIDS+=($!)

# The access log goes to a file, as compare.sh's does: its writes are part
# of the row's cost.
start() { # row
  case "$1" in
    nginx) taskset -c 1 nginx -p "$WORK/" -c "$WORK/nginx.conf" ;;
    figway) taskset -c 1 "$FIGWAY_BIN" run --config "$WORK/figway-true.toml" ;;
    figway-nolog) taskset -c 1 "$FIGWAY_BIN" run --config "$WORK/figway-false.toml" ;;
    figway-full) taskset -c 1 "$FIGWAY_BIN" run --config "$WORK/figway-full.toml" ;;
    *) die "unknown row $1" ;;
  esac
}

load() { # seconds -> requests completed (wrk's closed loop, or hey at RATE)
  if [[ -z "$RATE" ]]; then
    taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d"$1s" "http://127.0.0.1:$PROXY/" | awk '/requests in/ {print $1}'
  else
    taskset -c 0 hey -z "$1s" -c 50 -q $(( RATE / 50 )) "http://127.0.0.1:$PROXY/" \
      | awk '/^Status code distribution:/ {s = 1; next} s && /^ +\[[0-9]+\]/ {n += $2} END {print n + 0}'
  fi
}

log "perf cpu-clock at ${FREQ} Hz on CPU 1, ${SECONDS_EACH}s of $([[ -z "$RATE" ]] && echo "wrk -t1 -c$CONNECTIONS" || echo "hey -c 50 at $RATE req/s") on / per row"
for row in $ROWS; do
  start "$row" >"$WORK/$row.stdout" 2>"$WORK/$row.stderr" &
  pid=$!
  PIDS+=("$pid")
  wait_proxy "$pid" "$row"
  load 2 >/dev/null
  perf record -q -e cpu-clock -F "$FREQ" -C 1 --call-graph "$CALL_GRAPH" -o "$WORK/$row.perf" -- sleep "$SECONDS_EACH" 2>/dev/null &
  rec=$!
  n="$(load "$SECONDS_EACH")"
  wait "$rec" || true
  # nginx runs a master and a worker: stop the whole group.
  pkill -P "$pid" 2>/dev/null || true
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  sleep 0.5
  [[ -n "$n" && "$n" -gt 0 ]] || die "$row: no requests counted"
  # perf's sample counts (-n) times the sampling period, over the requests
  # wrk counted: µs of CPU 1 per request, by process and object, then by
  # symbol.
  per_request() { # perf report sort keys -> "µs/request  what", largest first
    perf report -i "$WORK/$row.perf" --stdio --no-children -n --sort "$1" -g none 2>/dev/null \
      | awk -v n="$n" -v f="$FREQ" -v top="$2" '
        /^#/ || NF < 3 {next}
        { samples = $2; $1 = ""; $2 = ""; sub(/^ +/, "")
          if (++k <= top) printf "  %7.3f  %s\n", samples * 1000000 / f / n, $0 }'
  }
  echo
  echo "== $row: $n requests; µs of CPU 1 a request, by process and object"
  per_request comm,dso 6
  echo "   by symbol (top $TOP)"
  per_request comm,dso,sym "$TOP"
  if [[ -n "${KEEP_PERF:-}" ]]; then
    mkdir -p "$KEEP_PERF" && cp "$WORK/$row.perf" "$KEEP_PERF/"
  fi
done
