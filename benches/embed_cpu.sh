#!/usr/bin/env bash
# CPU time per request of figway as a library (examples/embed.rs: figway's
# service behind an application's tower auth layer, on the application's
# hyper server) next to the figway binary, same config, one upstream
# (nginx), in alternating rounds. The deterministic companion is
# `ROWS="figway-nolog embed-nolog" benches/instructions.sh`.
#
#   benches/embed_cpu.sh        # about 2 minutes
#
# Each row: the proxy pinned to CPU 0, wrk (-t1 -c16, every request with
# `authorization: Bearer bench`, which the embed example requires and the
# binary forwards alike) and the upstream on CPU 1; the proxy's user+system
# CPU time (from /proc/PID/stat, all threads) over a 10 s window after a 2 s
# warm-up, divided by the requests wrk completed.
#
# Knobs (environment): FIGWAY_BIN, EMBED_BIN (default: cargo build
# --release), ROUNDS (3), SECONDS_EACH (10), ACCESS_LOG (false),
# BASE_PORT (19400), SKIP_INSTALL=1.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
ROUNDS="${ROUNDS:-3}"
SECONDS_EACH="${SECONDS_EACH:-10}"
ACCESS_LOG="${ACCESS_LOG:-false}"
BASE_PORT="${BASE_PORT:-19400}"
TOKEN=bench

# die, log, need_tools, render, cleanup_pids, pid_cpu_ticks: shared with the other
# bench scripts.
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$HERE/lib.sh"

need_tools nginx wrk curl taskset

if [[ -z "${FIGWAY_BIN:-}" ]]; then
  log "building figway and examples/embed (release)"
  (cd "$ROOT" && cargo build --release --quiet --bin figway --example embed) || die "cargo build failed"
  FIGWAY_BIN="$ROOT/target/release/figway"
fi
EMBED_BIN="${EMBED_BIN:-$(dirname "$FIGWAY_BIN")/examples/embed}"

WORK="$(mktemp -d /tmp/figway-embed-cpu.XXXXXX)"
PIDS=()
trap cleanup_pids EXIT

UP=$BASE_PORT PROXY=$((BASE_PORT + 1)) ADMIN=$((BASE_PORT + 2))
mkdir -p "$WORK/www" "$WORK/upstream-tmp"
common=(WORK="$WORK" NOFILE=4096 WORKER_CONNECTIONS=4096 UPSTREAM_PORT="$UP")
render "$HERE/compare/upstream-nginx.conf" "$WORK/upstream.conf" "${common[@]}" PORT="$UP"
render "$HERE/compare/figway.toml" "$WORK/figway.toml" "${common[@]}" PORT="$PROXY" \
  ADMIN_PORT="$ADMIN" ACCESS_LOG="$ACCESS_LOG"

taskset -c 1 nginx -p "$WORK/" -c "$WORK/upstream.conf" >/dev/null 2>&1 &
PIDS+=($!)

measure() { # row cmd... -> µs of CPU per request
  local row="$1"; shift
  taskset -c 0 "$@" >"$WORK/$row.stdout" 2>"$WORK/$row.stderr" &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null --max-time 1 -H "authorization: Bearer $TOKEN" \
      "http://127.0.0.1:$PROXY/" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { tail "$WORK/$row.stderr" >&2; die "$row exited"; }
    sleep 0.1
  done
  taskset -c 1 wrk -t1 -c16 -d2s -H "authorization: Bearer $TOKEN" "http://127.0.0.1:$PROXY/" >/dev/null
  local before after n
  before="$(pid_cpu_ticks "$pid")"
  n="$(taskset -c 1 wrk -t1 -c16 -d"${SECONDS_EACH}s" -H "authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$PROXY/" | awk '/requests in/ {print $1}')"
  after="$(pid_cpu_ticks "$pid")"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  [[ -n "$n" && "$n" -gt 0 ]] || die "$row: no requests counted"
  awk -v t="$((after - before))" -v hz="$(getconf CLK_TCK)" -v n="$n" \
    'BEGIN { printf "%.2f %d\n", t / hz * 1e6 / n, n }'
}

log "$ROUNDS rounds, ${SECONDS_EACH}s of wrk -t1 -c16 per row, access_log = $ACCESS_LOG"
for round in $(seq 1 "$ROUNDS"); do
  read -r fig fn < <(measure figway "$FIGWAY_BIN" run --config "$WORK/figway.toml")
  read -r emb en < <(EMBED_TOKEN="$TOKEN" measure embed "$EMBED_BIN" "$WORK/figway.toml")
  awk -v r="$round" -v f="$fig" -v fn="$fn" -v e="$emb" -v en="$en" \
    'BEGIN { printf "round %d  figway %6.2f µs/req (%d req)  embed %6.2f µs/req (%d req)  embed/figway %.3f\n", r, f, fn, e, en, e / f }'
done
