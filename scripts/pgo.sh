#!/usr/bin/env bash
# A profile-guided (PGO) release build of figway, for deployments that want
# the last few percent of CPU a request:
#
#   scripts/pgo.sh        # about 10 minutes on 2 cores
#
# leaves target/pgo/release/figway (and the profile it was built with,
# target/pgo/figway.profdata). `cargo build --release` stays the plain
# build; this is the same code compiled a second time with what a run
# taught the compiler: which branches are taken, which calls are hot,
# which code is cold and can be laid out out of the way (figway's request
# path is hyper's, tokio's and http's generic code, and on the benchmark
# VM it missed the first-level instruction cache 1.8 times as often as nginx;
# docs/benchmarks.md, "A profile-guided build").
#
# Steps: an instrumented build (target/pgo-gen), a training run against a
# local upstream nginx (the configs and upstream of benches/compare.sh:
# one route with the access log on and off, the full-feature config, and
# benches/tls.sh's TLS listener; small answers, 64 KiB answers, POSTs with
# a body, HTTP/2 over TLS, Prometheus scrapes),
# the profiles merged with llvm-profdata, the final build using them.
# Paths the training does not reach (WebSockets, HTTP/2 upstreams, shadow
# traffic, reloads) are built as the compiler's cold code: correct, and
# laid out for size rather than speed.
#
# Needs llvm-profdata of rustc's LLVM major version: rustup's llvm-tools
# component or Debian's llvm-N package (when missing, the first is added
# with rustup, else the second installed with apt-get; SKIP_INSTALL=1
# forbids both), and nginx, wrk, curl and openssl for the run.
# Knobs: SECONDS_EACH (seconds of load per config and path, default 5),
# BASE_PORT (loopback ports BASE_PORT..+2, default 19500), PROFDATA
# (an llvm-profdata to use).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# lib.sh's render_proxy_rows reads the templates under HERE/compare.
HERE="$ROOT/benches"
SECONDS_EACH="${SECONDS_EACH:-5}"
BASE_PORT="${BASE_PORT:-19500}"

# die, log, need_tools, render_proxy_rows, wait_proxy, cleanup_pids.
# shellcheck source=../benches/lib.sh source-path=SCRIPTDIR
. "$HERE/lib.sh"

need_tools nginx wrk curl openssl

# ---------------------------------------------------------------- llvm-profdata
# Its profile format must be the one rustc's LLVM writes: same major version.
major="$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"
host="$(rustc -vV | sed -n 's/^host: //p')"
[[ -n "$major" && -n "$host" ]] || die "cannot read rustc's LLVM version from rustc -vV"
find_profdata() {
  local c
  for c in "${PROFDATA:-}" \
    "$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata" \
    "/usr/lib/llvm-$major/bin/llvm-profdata" \
    "$(command -v "llvm-profdata-$major" || true)"; do
    [[ -n "$c" && -x "$c" ]] && { echo "$c"; return 0; }
  done
  return 1
}
if ! PROFDATA="$(find_profdata)" && [[ "${SKIP_INSTALL:-0}" != 1 ]] && command -v rustup >/dev/null; then
  log "adding rustup's llvm-tools component (llvm-profdata)"
  rustup component add llvm-tools >/dev/null 2>&1 || log "rustup could not add llvm-tools; trying Debian's llvm-$major"
fi
if ! PROFDATA="$(find_profdata)"; then
  [[ "${SKIP_INSTALL:-0}" != 1 ]] || die "no llvm-profdata for LLVM $major (rustup component add llvm-tools, or apt-get install llvm-$major)"
  log "installing llvm-$major (llvm-profdata)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "llvm-$major"; } >/dev/null ||
    die "apt-get install llvm-$major failed; rustup component add llvm-tools gives the same tool"
  PROFDATA="$(find_profdata)" || die "llvm-$major installed but no llvm-profdata found"
fi

# ---------------------------------------------------------------- instrumented build
UP=$BASE_PORT PROXY=$((BASE_PORT + 1)) ADMIN=$((BASE_PORT + 2))
for port in "$UP" "$PROXY" "$ADMIN"; do
  port_free "$port" || die "port $port is in use; set BASE_PORT"
done
WORK="$(mktemp -d /tmp/figway-pgo.XXXXXX)"
PIDS=()
trap cleanup_pids EXIT
mkdir -p "$WORK/profiles"

# The directory given at build time is a default only (LLVM_PROFILE_FILE
# below puts the profiles in WORK); a fixed one keeps the rebuild incremental.
log "instrumented build (target/pgo-gen)"
(cd "$ROOT" && RUSTFLAGS="-Cprofile-generate=$ROOT/target/pgo-gen/profiles" CARGO_TARGET_DIR="$ROOT/target/pgo-gen" \
  cargo build --release --locked --quiet --bin figway) || die "instrumented build failed"
GEN_BIN="$ROOT/target/pgo-gen/release/figway"

# ---------------------------------------------------------------- training run
render_proxy_rows "$HERE/compare/figway.toml"
head -c 65536 /dev/urandom >"$WORK/www/big"
cat >"$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = string.rep("x", 2048)
wrk.headers["content-type"] = "application/octet-stream"
LUA
nginx -p "$WORK/" -c "$WORK/upstream.conf" >/dev/null 2>&1 &
PIDS+=($!)

# TLS (benches/tls.sh's config, an ECDSA certificate made now): HTTP/1.1
# and HTTP/2 over TLS.
openssl req -x509 -nodes -days 2 -subj "/CN=localhost" -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
  -keyout "$WORK/tls.key" -out "$WORK/tls.crt" >"$WORK/openssl.out" 2>&1 ||
  { cat "$WORK/openssl.out" >&2; die "openssl could not make a certificate"; }
render "$HERE/tls/figway.toml" "$WORK/figway-tls.toml" WORK="$WORK" UPSTREAM_PORT="$UP" PORT="$PROXY" \
  ADMIN_PORT="$ADMIN" TLS="tls = { cert = \"$WORK/tls.crt\", key = \"$WORK/tls.key\" }"
h2_urls=()
for _ in $(seq 1 500); do h2_urls+=("https://127.0.0.1:$PROXY/"); done

train() { # config scheme
  local pid scheme="$2"
  # Each process writes its own profile (%p), merged below.
  LLVM_PROFILE_FILE="$WORK/profiles/figway-%p.profraw" \
    "$GEN_BIN" run --config "$1" >/dev/null 2>"$WORK/train.stderr" &
  pid=$!
  PIDS+=("$pid")
  if [[ "$scheme" == https ]]; then
    local up=0
    for _ in $(seq 1 100); do
      curl -ksf -o /dev/null "https://127.0.0.1:$PROXY/" && { up=1; break; }
      kill -0 "$pid" || die "instrumented figway exited (stderr: $WORK/train.stderr)"
      sleep 0.1
    done
    (( up )) || die "instrumented figway did not answer on https://127.0.0.1:$PROXY/"
    curl -ksf --http2 "${h2_urls[@]}" >/dev/null || die "HTTP/2 over TLS failed"
  else
    wait_proxy "$pid" train
  fi
  wrk -t1 -c64 -d"${SECONDS_EACH}s" -H 'x-user-id: 12345' "$scheme://127.0.0.1:$PROXY/" >/dev/null
  wrk -t1 -c16 -d"${SECONDS_EACH}s" "$scheme://127.0.0.1:$PROXY/big" >/dev/null
  wrk -t1 -c16 -d"$(( (SECONDS_EACH + 1) / 2 ))s" -s "$WORK/post.lua" "$scheme://127.0.0.1:$PROXY/" >/dev/null
  for _ in $(seq 1 20); do curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN/metrics"; done
  # A clean exit (SIGTERM drains, then main returns) writes the profile.
  kill -TERM "$pid"
  wait "$pid" || die "instrumented figway exited with $? on $1 (stderr: $WORK/train.stderr)"
}
for config in figway-true figway-false figway-full figway-tls; do
  log "training on $config.toml"
  scheme=http
  [[ "$config" != figway-tls ]] || scheme=https
  train "$WORK/$config.toml" "$scheme"
done

# ---------------------------------------------------------------- final build
mkdir -p "$ROOT/target/pgo"
"$PROFDATA" merge -o "$ROOT/target/pgo/figway.profdata" "$WORK"/profiles/*.profraw ||
  die "llvm-profdata merge failed"
log "profile-guided build (target/pgo)"
(cd "$ROOT" && RUSTFLAGS="-Cprofile-use=$ROOT/target/pgo/figway.profdata" \
  CARGO_TARGET_DIR="$ROOT/target/pgo" cargo build --release --locked --quiet --bin figway) || die "profile-guided build failed"
log "built $ROOT/target/pgo/release/figway"
