#!/usr/bin/env bash
# figway's TLS next to nginx's, same certificate, same upstream, one machine.
#
#   benches/tls.sh            # full run: about 8 minutes with the defaults
#   QUICK=1 benches/tls.sh    # smoke run: about 1 minute
#
# The conventions are benches/compare.sh's (one worker per proxy pinned to one
# core, CPU time from /proc, interleaved rounds); see docs/benchmarks.md,
# section "TLS", and `benches/tls.sh --help`. Needs root only to install
# missing Debian packages.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: benches/tls.sh [--help]

Benchmarks figway's TLS termination against nginx's, both with the same
certificate (made at run time with openssl) in front of the same upstream as
benches/compare.sh (an nginx serving 100 bytes on / and 64 KiB on /big, with
keep-alive). Each proxy runs one worker pinned to one core; the upstream and
the load generators share the other. Measured, interleaved over the rounds:

  keepalive      wrk -t1 -cCONNS over https (and over plain http on /, to
                 show what TLS adds): req/s, p50, p99, CPU us per request
  close-plain    wrk with 'Connection: close' over plain http: a new TCP
                 connection per request, the baseline for the rows below
  close-resumed  wrk with 'Connection: close' over https: a new TLS connection
                 per request; wrk keeps the session of each of its connections
                 and offers it again, so these are TLS 1.3 resumptions (the
                 script checks and reports how many)
  close-full     openssl s_time -new (STIME_CLIENTS in parallel): a full
                 handshake per connection, one GET / (Connection: close) on each
                 (once per certificate in CERTS)

Environment (defaults in brackets):
  FIGWAY_BIN      figway binary to test [build target/release/figway with cargo]
  DURATION        seconds per run [10]
  ROUNDS          interleaved rounds [3]
  CONNS           wrk connections [64]
  WARMUP          seconds of keep-alive warm-up per endpoint and path [2]
  CERTS           certificates: ecdsa (P-256) and/or rsa (2048) [ecdsa rsa]
  KA_PATHS        paths for the keep-alive TLS runs [/ /big]
  STIME_CLIENTS   openssl s_time processes in parallel for full handshakes [4]
  PROXY_CPU       core for the proxies [1]
  LOAD_CPU        core for the upstream and the load generators [0]
  BASE_PORT       first of the loopback ports used (BASE_PORT..+7, +105..+107) [18400]
  RESULTS_DIR     also keep the raw results (TSV) and the report here [not kept]
  KEEP            1 = keep the temporary directory (configs, certs, logs) [0]
  NICE            run everything at this nice value, e.g. -10 (negative needs root) [unchanged]
  QUICK           1 = smoke run: DURATION=2 ROUNDS=1 WARMUP=1 (explicit settings still win)
  SKIP_INSTALL    1 = never call apt-get; fail if a tool is missing [0]

The keep-alive TLS runs use the first certificate of CERTS (after the
handshake the certificate no longer matters). figway runs with the access log
off, as nginx does.
EOF
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) echo "tls.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HERE="$ROOT/benches/tls"
# die, log, render, cleanup_tree, tree_cpu_ticks, parse_wrk, ...: shared
# with the other bench scripts.
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$ROOT/benches/lib.sh"
# The upstream is compare.sh's, so that figures of the two scripts share it.
UPSTREAM_TPL="$ROOT/benches/compare/upstream-nginx.conf"

# The command line as given, for the report.
KNOBS="FIGWAY_BIN DURATION ROUNDS CONNS WARMUP CERTS KA_PATHS STIME_CLIENTS PROXY_CPU LOAD_CPU BASE_PORT
RESULTS_DIR KEEP QUICK SKIP_INSTALL NICE"
COMMAND=""
for k in $KNOBS; do
  [[ -n "${!k+x}" ]] || continue
  if [[ "${!k}" =~ ^[A-Za-z0-9_./:+-]+$ ]]; then COMMAND+="$k=${!k} "; else COMMAND+="$k='${!k}' "; fi
done
COMMAND+="benches/tls.sh"

if [[ "${QUICK:-0}" == 1 ]]; then
  : "${DURATION:=2}" "${ROUNDS:=1}" "${WARMUP:=1}"
fi
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-3}"
CONNS="${CONNS:-64}"
WARMUP="${WARMUP:-2}"
CERTS="${CERTS:-ecdsa rsa}"
KA_PATHS="${KA_PATHS:-/ /big}"
STIME_CLIENTS="${STIME_CLIENTS:-4}"
PROXY_CPU="${PROXY_CPU:-1}"
LOAD_CPU="${LOAD_CPU:-0}"
BASE_PORT="${BASE_PORT:-18400}"
KEEP="${KEEP:-0}"

for v in DURATION ROUNDS CONNS WARMUP STIME_CLIENTS PROXY_CPU LOAD_CPU BASE_PORT; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
(( DURATION >= 1 && ROUNDS >= 1 && CONNS >= 1 && STIME_CLIENTS >= 1 )) || die "DURATION, ROUNDS, CONNS and STIME_CLIENTS must be at least 1"
[[ -n "${CERTS// /}" ]] || die "CERTS is empty"
for c in $CERTS; do
  [[ "$c" == ecdsa || "$c" == rsa ]] || die "unknown certificate '$c' in CERTS (known: ecdsa rsa)"
done
read -r KA_CERT _ <<<"$CERTS"

# ---------------------------------------------------------------- tools
need_install=()
for t in nginx wrk openssl; do
  command -v "$t" >/dev/null 2>&1 || need_install+=("$t")
done
if (( ${#need_install[@]} )); then
  [[ "${SKIP_INSTALL:-0}" != 1 ]] || die "missing: ${need_install[*]} (SKIP_INSTALL=1 forbids installing)"
  [[ "$(id -u)" == 0 ]] || die "missing: ${need_install[*]}; run as root to install them, or: apt-get install -y ${need_install[*]}"
  command -v apt-get >/dev/null || die "missing: ${need_install[*]} and no apt-get to install them with"
  log "installing ${need_install[*]} from Debian (services are not started)"
  # Keep the package's postinst from starting a system-wide nginx.
  made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  install_rc=0
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_install[@]}"; } >&2 || install_rc=$?
  if (( made_policy )); then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
  (( install_rc == 0 )) || die "apt-get install ${need_install[*]} failed (exit $install_rc)"
fi
for t in nginx wrk openssl taskset python3 curl ss timeout; do
  command -v "$t" >/dev/null 2>&1 || die "'$t' not found in PATH"
done

NCPU="$(nproc --all)"
(( PROXY_CPU < NCPU && LOAD_CPU < NCPU )) || die "PROXY_CPU=$PROXY_CPU / LOAD_CPU=$LOAD_CPU: this machine has $NCPU cores (0..$((NCPU - 1)))"
if [[ -n "${NICE:-}" ]]; then
  [[ "$NICE" =~ ^-?[0-9]+$ ]] || die "NICE must be a whole number, got '$NICE'"
  renice -n "$NICE" -p $$ >/dev/null || die "cannot renice to $NICE (negative values need root)"
fi
[[ "$PROXY_CPU" != "$LOAD_CPU" ]] || log "warning: PROXY_CPU and LOAD_CPU are the same core; figures will not compare with published ones"

# A new connection per request leaves sockets in TIME_WAIT; more descriptors
# than the default 1024 keep the proxies' accept loops from running short.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE="$(ulimit -n)"
WORKER_CONNECTIONS=$(( NOFILE < 20000 ? NOFILE : 20000 ))

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

# ---------------------------------------------------------------- processes and cleanup
WORK="$(mktemp -d /tmp/figway-tls.XXXXXX)"
chmod 755 "$WORK"
declare -A PID=()   # process -> main pid (nginx, upstream, figway-<cert>)
declare -A PORT=()  # endpoint -> port (nginx-ecdsa, figway-plain, ...)
BG_PIDS=()          # everything we started, in start order

trap cleanup_tree EXIT
trap 'log "interrupted"; exit 130' INT TERM

start() { # name cpu cmd...
  local name="$1" cpu="$2"; shift 2
  taskset -c "$cpu" "$@" >/dev/null 2>>"$WORK/$name.stderr" </dev/null &
  PID[$name]=$!
  BG_PIDS+=("$!")
}

# Endpoints are "<proxy>-<cert>", cert one of ecdsa, rsa, plain; the process
# behind one is "nginx" (one nginx serves every port) or the figway instance.
proc_of() { [[ "$1" == nginx-* ]] && echo nginx || echo "$1"; }
url_of() { # endpoint path
  local scheme=https
  [[ "$1" == *-plain ]] && scheme=http
  echo "$scheme://127.0.0.1:${PORT[$1]}$2"
}

wait_ready() { # process endpoint
  local name="$1" ep="$2" i
  for i in $(seq 1 100); do
    if ! kill -0 "${PID[$name]}" 2>/dev/null; then
      echo "----- $name stderr -----" >&2; tail -n 30 "$WORK/$name.stderr" >&2 || true
      die "$name exited during start-up"
    fi
    curl -kfsS -o /dev/null --max-time 1 "$(url_of "$ep" /)" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "----- $name stderr -----" >&2; tail -n 30 "$WORK/$name.stderr" >&2 || true
  die "$name did not answer 200 on $(url_of "$ep" /) within 10 s"
}

verify() { # endpoint: / and /big come back 200 with the upstream's bodies
  local ep="$1" got
  got="$(curl -ksS -o /dev/null -w '%{http_code} %{size_download}' --max-time 5 "$(url_of "$ep" /)")" || die "$ep: GET / failed"
  [[ "$got" == "200 $SMALL_SIZE" ]] || die "$ep: GET / gave '$got', want '200 $SMALL_SIZE'"
  got="$(curl -ksS -o /dev/null -w '%{http_code} %{size_download}' --max-time 5 "$(url_of "$ep" /big)")" || die "$ep: GET /big failed"
  [[ "$got" == "200 65536" ]] || die "$ep: GET /big gave '$got', want '200 65536'"
}

cpu_ticks() { # process -> utime+stime (clock ticks) summed over it and its children
  tree_cpu_ticks "${PID[$1]}"
}

alive() { # process
  kill -0 "${PID[$1]}" 2>/dev/null || { tail -n 30 "$WORK/$1.stderr" >&2 || true; die "$1 died during the benchmark"; }
}

# The request openssl s_time sends: it formats "GET <page> HTTP/1.0\r\n\r\n",
# and figway forwards an HTTP/1.0 request as HTTP/1.0, which the upstream
# then closes: a new upstream connection per request that nginx (always
# HTTP/1.1 upstream) does not make. So the page carries an HTTP/1.1 request
# like wrk's, and s_time's own " HTTP/1.0" lands in a harmless header.
STIME_PAGE=$'/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Pad:'

CLK_TCK="$(getconf CLK_TCK)"
US_PER_TICK=$(( 1000000 / CLK_TCK ))

# ---------------------------------------------------------------- certificates
# One self-signed certificate per key type, made now, read by both proxies.
mkdir -p "$WORK/www" "$WORK/upstream-tmp" "$WORK/nginx-tmp" "$WORK/results"
make_cert() { # name openssl-newkey-args...
  local name="$1"; shift
  openssl req -x509 -nodes -days 2 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    "$@" -keyout "$WORK/$name.key" -out "$WORK/$name.crt" >"$WORK/openssl.out" 2>&1 \
    || { cat "$WORK/openssl.out" >&2; die "openssl could not make the $name certificate"; }
}
make_cert ecdsa -newkey ec -pkeyopt ec_paramgen_curve:P-256
make_cert rsa -newkey rsa:2048

# ---------------------------------------------------------------- configs
PORT[upstream]=$BASE_PORT
PORT[nginx-ecdsa]=$(( BASE_PORT + 1 ))
PORT[nginx-rsa]=$(( BASE_PORT + 2 ))
PORT[nginx-plain]=$(( BASE_PORT + 3 ))
PORT[nginx-probe]=$(( BASE_PORT + 4 ))
PORT[figway-ecdsa]=$(( BASE_PORT + 5 ))
PORT[figway-rsa]=$(( BASE_PORT + 6 ))
PORT[figway-plain]=$(( BASE_PORT + 7 ))
for ep in "${!PORT[@]}"; do
  port_free "${PORT[$ep]}" || die "port ${PORT[$ep]} (for $ep) is in use; set BASE_PORT"
done
FIGWAYS="figway-plain"
for c in $CERTS; do FIGWAYS+=" figway-$c"; done
for f in $FIGWAYS; do
  port_free $(( PORT[$f] + 100 )) || die "port $(( PORT[$f] + 100 )) (figway admin) is in use; set BASE_PORT"
done

head -c 65536 /dev/urandom > "$WORK/www/big"
common=(WORK="$WORK" NOFILE="$NOFILE" WORKER_CONNECTIONS="$WORKER_CONNECTIONS" UPSTREAM_PORT="${PORT[upstream]}")
render "$UPSTREAM_TPL" "$WORK/upstream.conf" "${common[@]}" PORT="${PORT[upstream]}"
render "$HERE/nginx.conf" "$WORK/nginx.conf" "${common[@]}" PORT_ECDSA="${PORT[nginx-ecdsa]}" \
  PORT_RSA="${PORT[nginx-rsa]}" PORT_PLAIN="${PORT[nginx-plain]}" PORT_PROBE="${PORT[nginx-probe]}"
for f in $FIGWAYS; do
  cert="${f#figway-}"
  if [[ "$cert" == plain ]]; then
    tls="# no tls: the plain-HTTP baseline"
  else
    tls="tls = { cert = \"$WORK/$cert.crt\", key = \"$WORK/$cert.key\" }"
  fi
  render "$HERE/figway.toml" "$WORK/$f.toml" "${common[@]}" PORT="${PORT[$f]}" \
    ADMIN_PORT=$(( PORT[$f] + 100 )) TLS="$tls"
done

nginx -t -q -p "$WORK/" -e "$WORK/upstream-error.log" -c "$WORK/upstream.conf" 2>"$WORK/check.err" \
  || { cat "$WORK/check.err" >&2; die "upstream nginx config is invalid"; }
nginx -t -q -p "$WORK/" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" 2>"$WORK/check.err" \
  || { cat "$WORK/check.err" >&2; die "nginx config is invalid"; }
for f in $FIGWAYS; do
  "$FIGWAY_BIN" check "$WORK/$f.toml" >"$WORK/check.out" 2>&1 \
    || { tail -n 30 "$WORK/check.out" >&2; die "figway check $WORK/$f.toml failed"; }
done

# ---------------------------------------------------------------- start
log "work dir $WORK; figway $FIGWAY_VERSION ($FIGWAY_BIN)"
start upstream "$LOAD_CPU" nginx -p "$WORK/" -e "$WORK/upstream-error.log" -c "$WORK/upstream.conf"
PORT[upstream-plain]=${PORT[upstream]}
wait_ready upstream upstream-plain
SMALL_SIZE="$(curl -sS -o /dev/null -w '%{size_download}' "http://127.0.0.1:${PORT[upstream]}/")"

start nginx "$PROXY_CPU" nginx -p "$WORK/" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf"
wait_ready nginx nginx-plain
for f in $FIGWAYS; do
  start "$f" "$PROXY_CPU" "$FIGWAY_BIN" run --config "$WORK/$f.toml"
  wait_ready "$f" "$f"
done
ENDPOINTS="nginx-plain figway-plain"
for c in $CERTS; do ENDPOINTS+=" nginx-$c figway-$c"; done
for ep in $ENDPOINTS nginx-probe; do
  verify "$ep"
done

# ---------------------------------------------------------------- what the handshakes are
# What each TLS endpoint negotiates with OpenSSL's client defaults (wrk and
# s_time use the same library): protocol, cipher, key exchange, signature.
negotiated() { # endpoint -> "TLSv1.3 TLS_AES_256_GCM_SHA384 X25519 ECDSA"
  local out
  out="$(printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:${PORT[$1]}" -ign_eof 2>&1)" || true
  awk '
    /^New, / { sub(/,$/, "", $2); proto = $2; cipher = $NF }
    /^(Server|Peer) Temp Key:/ { kx = $4; sub(/,$/, "", kx) }
    /^Peer signature type:/ { sig = $4 }
    END { printf "%s %s %s %s\n", proto, cipher, kx, sig }' <<<"$out"
}
# Whether the endpoint gives out a session that a later connection resumes.
resumes() { # endpoint -> yes/no
  local sess="$WORK/session.pem" out
  rm -f "$sess"
  # -ign_eof with a request: the client stays until the server has answered,
  # so it has read the TLS 1.3 tickets, which come after the handshake.
  printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:${PORT[$1]}" -ign_eof -sess_out "$sess" >/dev/null 2>&1 || true
  [[ -s "$sess" ]] || { echo no; return; }
  out="$(printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:${PORT[$1]}" -ign_eof -sess_in "$sess" 2>&1)" || true
  grep -q '^Reused, ' <<<"$out" && echo yes || echo no
}
TLS_INFO=""
for c in $CERTS; do
  for p in nginx figway; do
    TLS_INFO+="$p-$c: $(negotiated "$p-$c"), resumes: $(resumes "$p-$c"); "
  done
done
log "negotiated: $TLS_INFO"

# What wrk with 'Connection: close' and s_time -new really do, read from
# nginx's $ssl_session_reused on the probe port ('r' = resumed, '.' = full).
probe_count() { # -> "resumed total"
  awk '{ n++; if ($NF == "r") r++ } END { printf "%d %d\n", r, n }' "$WORK/probe.log" 2>/dev/null || echo "0 0"
}
: > "$WORK/probe.log"
taskset -c "$LOAD_CPU" timeout 20 wrk -t1 -c4 -d1s -H 'Connection: close' "$(url_of nginx-probe /)" >/dev/null 2>&1 || die "wrk against the probe port failed"
sleep 0.3
read -r wrk_resumed wrk_total <<<"$(probe_count)"
: > "$WORK/probe.log"
taskset -c "$LOAD_CPU" timeout 20 openssl s_time -connect "127.0.0.1:${PORT[nginx-probe]}" -new -time 1 -www "$STIME_PAGE" >/dev/null 2>&1 \
  || die "openssl s_time against the probe port failed"
sleep 0.3
read -r stime_resumed stime_total <<<"$(probe_count)"
(( wrk_total > 0 && stime_total > 0 )) || die "the probe port logged no connections"
PROBE="wrk -H 'Connection: close': ${wrk_resumed} of ${wrk_total} connections resumed; openssl s_time -new: ${stime_resumed} of ${stime_total} resumed"
log "$PROBE"

# Other work on the machine skews every figure: say so in the report.
BUSY_BEFORE="$(busy_pct)"
(( BUSY_BEFORE <= 10 )) || log "warning: the machine is ${BUSY_BEFORE}% busy before the benchmark starts; figures will be noisy"

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
  echo "nginx_version=$(nginx -V 2>&1 | sed -n 's|^nginx version: nginx/||p')"
  echo "openssl_version=$(openssl version | awk '{print $2}')"
  echo "wrk_version=$(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}')"
  echo "rounds=$ROUNDS"
  echo "duration=$DURATION"
  echo "conns=$CONNS"
  echo "stime_clients=$STIME_CLIENTS"
  echo "ka_cert=$KA_CERT"
  echo "proxy_cpu=$PROXY_CPU"
  echo "load_cpu=$LOAD_CPU"
  echo "tls_info=$TLS_INFO"
  echo "probe=$PROBE"
} > "$WORK/results/meta.env"

# ---------------------------------------------------------------- runs
WRK=(wrk -t1 -c"$CONNS" --latency --timeout 5s)

per() { # ticks count -> CPU us per count
  awk -v d=$(( $1 * US_PER_TICK )) -v n="$2" 'BEGIN { if (n > 0) printf "%.2f", d / n; else print "-" }'
}

run_wrk() { # endpoint path duration [wrk args] -> "rps p50 p99 requests errors non2xx cpu_us"
  local ep="$1" path="$2" dur="$3" proc t0 t1 out parsed; shift 3
  proc="$(proc_of "$ep")"
  alive "$proc"
  t0="$(cpu_ticks "$proc")"
  out="$(timeout $(( dur + 30 )) taskset -c "$LOAD_CPU" "${WRK[@]}" "$@" -d"${dur}s" "$(url_of "$ep" "$path")" 2>&1)" \
    || { echo "$out" >&2; die "wrk against $ep$path failed"; }
  t1="$(cpu_ticks "$proc")"
  parsed="$(parse_wrk <<<"$out")" || { echo "$out" >&2; die "cannot read wrk's output for $ep$path"; }
  echo "$parsed $(per $(( t1 - t0 )) "$(awk '{print $4}' <<<"$parsed")")"
}

# STIME_CLIENTS openssl s_time -new in parallel: each connection a full
# handshake and one GET / (HTTP/1.1 with Connection: close, see STIME_PAGE).
run_stime() { # endpoint duration -> "conn_per_s - - connections errors 0 cpu_us"
  local ep="$1" dur="$2" proc t0 t1 s0 s1 i pids=() conns=0 bad=0 out n bytes
  proc="$(proc_of "$ep")"
  alive "$proc"
  t0="$(cpu_ticks "$proc")"
  s0="$(date +%s.%N)"
  for ((i = 0; i < STIME_CLIENTS; i++)); do
    timeout $(( dur + 30 )) taskset -c "$LOAD_CPU" openssl s_time -connect "127.0.0.1:${PORT[$ep]}" -new -time "$dur" -www "$STIME_PAGE" \
      >"$WORK/stime.$i" 2>&1 &
    pids+=("$!")
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { tail -n 5 "$WORK/stime.$i" >&2; bad=$(( bad + 1 )); }
  done
  s1="$(date +%s.%N)"
  t1="$(cpu_ticks "$proc")"
  for ((i = 0; i < STIME_CLIENTS; i++)); do
    out="$(grep -E '^[0-9]+ connections in [0-9.]+ real seconds' "$WORK/stime.$i" || true)"
    n="$(awk '{print $1}' <<<"$out")"
    bytes="$(awk '{print $(NF-4)}' <<<"$out")"
    # Each connection must have read the upstream's body and a head.
    if [[ -z "$n" ]] || (( n == 0 || bytes <= SMALL_SIZE )); then
      tail -n 5 "$WORK/stime.$i" >&2
      die "openssl s_time against $ep: no usable result (connections '${n}', bytes per connection '${bytes}')"
    fi
    conns=$(( conns + n ))
  done
  echo "$(awk -v n="$conns" -v a="$s0" -v b="$s1" 'BEGIN { printf "%.1f", n / (b - a) }') - - $conns $bad 0 $(per $(( t1 - t0 )) "$conns")"
}

# The runs of one round, in order: for each test, nginx then figway, so that
# the two rows of a comparison run next to each other in time.
PLAN=()
for path in $KA_PATHS; do PLAN+=("keepalive $KA_CERT $path"); done
PLAN+=("keepalive plain /" "close-plain plain /" "close-resumed $KA_CERT /")
for c in $CERTS; do PLAN+=("close-full $c /"); done

printf 'round\ttest\tproxy\tcert\tpath\tclient\trate\tp50_ms\tp99_ms\tcount\terrors\tnon2xx\tcpu_us\n' > "$WORK/results/runs.tsv"
total_runs=$(( ROUNDS * ${#PLAN[@]} * 2 ))
log "$ROUNDS rounds x ${#PLAN[@]} tests x 2 proxies x ${DURATION}s = $total_runs runs (~$(( total_runs * (DURATION + 1) / 60 + 1 )) min)"
if (( WARMUP > 0 )); then
  # Only the keep-alive endpoints: the new-connection runs have no warm
  # state to build beyond what these leave (code paged in, upstream pool).
  for p in nginx figway; do
    for path in $KA_PATHS; do run_wrk "$p-$KA_CERT" "$path" "$WARMUP" >/dev/null; done
    run_wrk "$p-plain" / "$WARMUP" >/dev/null
  done
fi
n=0
for ((round = 1; round <= ROUNDS; round++)); do
  for step in "${PLAN[@]}"; do
    read -r test cert path <<<"$step"
    for p in nginx figway; do
      n=$(( n + 1 ))
      ep="$p-$cert"
      case "$test" in
        keepalive) client="wrk -c$CONNS"; res="$(run_wrk "$ep" "$path" "$DURATION")" ;;
        close-plain|close-resumed) client="wrk -c$CONNS, Connection: close"; res="$(run_wrk "$ep" "$path" "$DURATION" -H 'Connection: close')" ;;
        close-full) client="openssl s_time -new x$STIME_CLIENTS"; res="$(run_stime "$ep" "$DURATION")" ;;
      esac
      read -r rate p50 p99 count errs non2xx cpu <<<"$res"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$test" "$p" "$cert" "$path" "$client" \
        "$rate" "$p50" "$p99" "$count" "$errs" "$non2xx" "$cpu" >> "$WORK/results/runs.tsv"
      log "[$n/$total_runs] round $round $test $ep $path: $rate/s, CPU $cpu us each$( [[ "$p50" == - ]] || echo ", p50 $p50 ms, p99 $p99 ms")$( (( errs + non2xx == 0 )) || echo ", errors $errs, non-2xx $non2xx")"
    done
  done
done

# ---------------------------------------------------------------- report
BUSY_AFTER="$(busy_pct)"
echo "notes=machine busy (other processes, all cores) ${BUSY_BEFORE}% just before the runs and ${BUSY_AFTER}% just after." >> "$WORK/results/meta.env"
python3 "$HERE/report.py" "$WORK/results" | tee "$WORK/results/report.txt"
if [[ -n "${RESULTS_DIR:-}" ]]; then
  mkdir -p "$RESULTS_DIR"
  cp "$WORK"/results/* "$RESULTS_DIR"/
  log "raw results in $RESULTS_DIR"
fi
