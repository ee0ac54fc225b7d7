# Helpers shared by the bench scripts (compare.sh, tls.sh, instructions.sh,
# embed_cpu.sh), sourced by each after its own settings:
#
#   . "$ROOT/benches/lib.sh"
#
# Only functions: sourcing it runs nothing and sets no variable. The
# functions read the caller's variables where said (WORK, PIDS or BG_PIDS,
# KEEP, HERE, UP, PROXY, ADMIN, AUTH). Not a script of its own.
# shellcheck shell=bash

die() { echo "${0##*/}: error: $*" >&2; exit 1; }
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

children_of() { ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' ' || true; }

port_free() { [[ -z "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]]; }

# The short scripts' tools (instructions.sh, embed_cpu.sh; each tool's
# Debian package has its name): those not in PATH installed quietly with
# apt-get, or an error with SKIP_INSTALL=1. compare.sh and tls.sh install
# their own way (as root only, keeping services from starting).
need_tools() { # tool...
  local need=() t
  for t in "$@"; do command -v "$t" >/dev/null || need+=("$t"); done
  (( ${#need[@]} )) || return 0
  [[ "${SKIP_INSTALL:-0}" == 1 ]] && die "missing: ${need[*]}"
  log "installing ${need[*]}"
  if ! { apt-get update -qq >/dev/null &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; }; then
    die "apt-get install ${need[*]} failed"
  fi
}

# ---------------------------------------------------------------- cleanup
# Two kinds, for `trap ... EXIT`:

# The short scripts' (instructions.sh, embed_cpu.sh): a plain kill of each
# pid in PIDS (the processes themselves, not their children), then WORK
# removed.
cleanup_pids() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}

# The long scripts' (compare.sh, tls.sh): every pid in BG_PIDS and its
# children (nginx's workers) get TERM, then KILL if still there after 5 s;
# WORK is removed unless KEEP=1; exits with the status the script had.
cleanup_tree() {
  local rc=$?
  trap - EXIT INT TERM
  local all=() p c
  for p in "${BG_PIDS[@]}"; do
    all+=("$p")
    for c in $(children_of "$p"); do all+=("$c"); done
  done
  if (( ${#all[@]} )); then
    kill -TERM "${all[@]}" 2>/dev/null || true
    for _ in $(seq 1 50); do
      local alive=0
      for p in "${all[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
      (( alive )) || break
      sleep 0.1
    done
    kill -KILL "${all[@]}" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  if [[ "${KEEP:-0}" == 1 ]]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}

# ---------------------------------------------------------------- templates
# Copies a template (benches/compare/*.conf, *.toml, ...) with every @KEY@
# replaced by VALUE; dies if a @KEY@ is left unfilled.
render() { # template output KEY=VALUE...
  local tpl="$1" out="$2"; shift 2
  local args=() kv
  for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
  sed "${args[@]}" "$tpl" > "$out"
  if grep -q '@[A-Z_]*@' "$out"; then die "unfilled placeholder in $out: $(grep -o '@[A-Z_]*@' "$out" | head -n1)"; fi
}

# The rows instructions.sh and cpu_profile.sh share, rendered into WORK:
# upstream.conf (the upstream nginx on UP), nginx.conf (nginx as the proxy
# on PROXY), figway-true.toml / figway-false.toml (figway on PROXY, admin
# on ADMIN, access log on / off, from FIGWAY_TEMPLATE with any extra
# KEY=VALUE given) and figway-full.toml (compare.sh's full config with its
# 10,000 more routes).
render_proxy_rows() { # figway-template [KEY=VALUE...]
  local tpl="$1" log_on r; shift
  mkdir -p "$WORK/www" "$WORK/nginx-tmp" "$WORK/upstream-tmp"
  local common=(WORK="$WORK" NOFILE=4096 WORKER_CONNECTIONS=4096 UPSTREAM_PORT="$UP")
  render "$HERE/compare/upstream-nginx.conf" "$WORK/upstream.conf" "${common[@]}" PORT="$UP"
  render "$HERE/compare/nginx.conf" "$WORK/nginx.conf" "${common[@]}" PORT="$PROXY"
  for log_on in true false; do
    render "$tpl" "$WORK/figway-$log_on.toml" "${common[@]}" PORT="$PROXY" \
      ADMIN_PORT="$ADMIN" ACCESS_LOG="$log_on" "$@"
  done
  render "$HERE/compare/figway-full.toml" "$WORK/figway-full.toml" "${common[@]}" PORT="$PROXY" \
    ADMIN_PORT="$ADMIN"
  for ((r = 0; r < 10000; r++)); do
    printf '\n[[routes]]\nprefix = "/r%d"\nto = "app"\n' "$r"
  done >> "$WORK/figway-full.toml"
}

# Waits until GET / on PROXY answers (with the caller's AUTH header, if
# any), or dies if process PID exits first (showing ROW's stderr).
wait_proxy() { # pid row
  local _try
  for _try in $(seq 1 200); do
    curl -fsS -o /dev/null --max-time 1 "${AUTH[@]}" "http://127.0.0.1:$PROXY/" 2>/dev/null && return 0
    kill -0 "$1" 2>/dev/null || { tail "$WORK/$2.stderr" >&2; die "$2 exited"; }
    sleep 0.1
  done
  die "$2 did not answer on port $PROXY"
}

# ---------------------------------------------------------------- CPU time
# utime + stime in clock ticks (getconf CLK_TCK a second), from
# /proc/PID/stat. Two kinds, as the scripts measure different things:

# One process, all its threads (a proxy that is a single process):
# "utime stime". Fails, as `cat` does, if the process is gone.
pid_cpu_split() { # pid
  local stat
  stat="$(cat "/proc/$1/stat")" || return 1
  stat="${stat##*) }" # past "pid (comm) ": comm may hold spaces
  # shellcheck disable=SC2086
  set -- $stat
  echo "${12} ${13}"
}

# The same, summed: utime + stime.
pid_cpu_ticks() { # pid
  local u s
  read -r u s <<<"$(pid_cpu_split "$1")" || return 1
  [[ -n "$s" ]] || return 1
  echo $(( u + s ))
}

# A process and its children summed (nginx's master and workers), as
# "utime stime"; those gone by the time they are read count nothing.
tree_cpu_split() { # pid
  local user=0 sys=0 p u s
  for p in "$1" $(children_of "$1"); do
    read -r u s <<<"$(pid_cpu_split "$p" 2>/dev/null)" || continue
    [[ -n "$s" ]] || continue
    user=$(( user + u )) sys=$(( sys + s ))
  done
  echo "$user $sys"
}

# The same, summed: utime + stime.
tree_cpu_ticks() { # pid
  local u s
  read -r u s <<<"$(tree_cpu_split "$1")"
  echo $(( u + s ))
}

# Share of all CPU time (every core) in use over the next 2 s, in percent:
# other work on the machine skews every figure, so the reports say it.
busy_pct() {
  local a b
  a="$(awk '/^cpu / {print $2+$3+$4+$7+$8, $5+$6}' /proc/stat)"
  sleep 2
  b="$(awk '/^cpu / {print $2+$3+$4+$7+$8, $5+$6}' /proc/stat)"
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); busy = y[1] - x[1]; idle = y[2] - x[2];
    printf "%.0f", (busy + idle) ? 100 * busy / (busy + idle) : 0 }'
}

# ---------------------------------------------------------------- wrk
# wrk --latency output -> "rps p50_ms p99_ms requests errors non2xx"
parse_wrk() {
  awk '
    function ms(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
      if (v ~ /m$/)  { sub(/m$/, "", v); return v * 60000 }
      if (v ~ /s$/)  { sub(/s$/, "", v); return v * 1000 }
      return v + 0
    }
    /^ +50%/ { p50 = ms($2) }
    /^ +99%/ { p99 = ms($2) }
    / requests in / { reqs = $1 }
    /Socket errors:/ { gsub(/,/, ""); errs = $4 + $6 + $8 + $10 }
    /Non-2xx or 3xx responses:/ { non2xx = $NF }
    /^Requests\/sec:/ { rps = $2 }
    END {
      if (rps == "" || reqs == "") exit 1
      printf "%s %.3f %.3f %d %d %d\n", rps, p50, p99, reqs, errs + 0, non2xx + 0
    }'
}
