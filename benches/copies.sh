#!/usr/bin/env bash
# How many times, and where, figway calls memcpy/memmove per proxied
# request: a preloaded counter (benches/copies.c) tallies each call by its
# return address and size while wrk drives figway, and addr2line names the
# call sites (figway's own inlined frames, innermost first).
#
#   benches/copies.sh          # about 30 seconds
#
# Why this exists beside instructions.sh and cpu_profile.sh: on a VM with
# AVX-512, perf puts glibc's memmove first among figway's user-space
# symbols, and neither tool says which moves it is made of. Each call
# costs its call and dispatch (~20 cycles) whatever it copies, so the
# count matters as much as the bytes: a value of a few hundred bytes
# moved through every level of the request path (a future's output, a
# request held by value) shows here once per level.
#
# Knobs (environment): FIGWAY_BIN (default: cargo build --release),
# ACCESS_LOG (true), SECONDS_EACH (5), CONNECTIONS (16), BASE_PORT (19600),
# MIN_PER_REQUEST (call sites shown from this many calls a request, 0.05),
# SKIP_INSTALL=1.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SECONDS_EACH="${SECONDS_EACH:-5}"
CONNECTIONS="${CONNECTIONS:-16}"
BASE_PORT="${BASE_PORT:-19600}"
ACCESS_LOG="${ACCESS_LOG:-true}"
MIN_PER_REQUEST="${MIN_PER_REQUEST:-0.05}"

# die, log, need_tools, render, cleanup_pids: shared with the other bench scripts.
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$HERE/lib.sh"

need_tools nginx wrk curl cc addr2line python3

if [[ -z "${FIGWAY_BIN:-}" ]]; then
  log "building figway (release)"
  (cd "$ROOT" && cargo build --release --quiet --bin figway) || die "cargo build failed"
  FIGWAY_BIN="$ROOT/target/release/figway"
fi
FIGWAY_BIN="$(readlink -f "$FIGWAY_BIN")"

WORK="$(mktemp -d /tmp/figway-copies.XXXXXX)"
PIDS=()
trap cleanup_pids EXIT

cc -O2 -shared -fPIC -o "$WORK/copies.so" "$HERE/copies.c" -ldl || die "cannot build the counter"

UP=$BASE_PORT PROXY=$((BASE_PORT + 1)) ADMIN=$((BASE_PORT + 2))
render_proxy_rows "$HERE/compare/figway.toml"

taskset -c 0 nginx -p "$WORK/" -c "$WORK/upstream.conf" >/dev/null 2>&1 &
PIDS+=($!)

FIGWAY_COPIES_DIR="$WORK" LD_PRELOAD="$WORK/copies.so" taskset -c 1 \
  "$FIGWAY_BIN" run --config "$WORK/figway-$ACCESS_LOG.toml" >"$WORK/figway.stdout" 2>"$WORK/figway.stderr" &
pid=$!
PIDS+=("$pid")
wait_proxy "$pid" figway
taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$PROXY/" >/dev/null
kill -USR1 "$pid"
n="$(taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_EACH}s" "http://127.0.0.1:$PROXY/" | awk '/requests in/ {print $1}')"
kill -USR2 "$pid"
for _ in 1 2 3 4 5 6 7 8 9 10; do
  [[ -s "$WORK/maps.txt" ]] && break
  sleep 0.2
done
[[ -s "$WORK/calls.txt" && -n "$n" && "$n" -gt 0 ]] || die "no counts (is figway linked dynamically to libc?)"

log "memcpy/memmove calls over $n requests (wrk -t1 -c$CONNECTIONS, ${SECONDS_EACH}s on /, access log $ACCESS_LOG)"
python3 - "$WORK" "$FIGWAY_BIN" "$n" "$MIN_PER_REQUEST" <<'PY'
import subprocess, sys
work, binary, requests, floor = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
# The binary's load address: its mapping at file offset 0.
base = None
for line in open(f"{work}/maps.txt"):
    fields = line.split()
    if len(fields) >= 6 and fields[5] == binary and int(fields[2], 16) == 0:
        base = int(fields[0].split("-")[0], 16)
        break
sites = [tuple(int(x, 16) if i == 0 else int(x) for i, x in enumerate(l.split()))
         for l in open(f"{work}/calls.txt")]
calls = sum(c for _, _, c in sites)
print(f"{calls / requests:.1f} calls a request, {sum(s * c for _, s, c in sites) / requests:,.0f} bytes")
print()
print("calls/req  bytes  call site (figway's frames, innermost first)")
for ra, size, c in sorted(sites, key=lambda s: (-s[2], -s[1])):
    if c / requests < floor:
        continue
    where = "outside figway"
    if base is not None and ra >= base:
        out = subprocess.run(["addr2line", "-f", "-i", "-C", "-e", binary, hex(ra - base - 1)],
                             capture_output=True, text=True).stdout.splitlines()
        frames = [(out[i], out[i + 1].rsplit("/", 1)[-1]) for i in range(0, len(out) - 1, 2)]
        # figway's own frames (the std and crate helpers inlined into them
        # say little), innermost first; else whatever is innermost.
        own = [f for f in frames if f[0].startswith(("figway::", "<figway::"))] or frames[:1]
        where = " < ".join(f"{name[:60]} ({line})" for name, line in own[:3]) or "?"
    print(f"{c / requests:9.2f}  {size:5d}  {where}")
PY
