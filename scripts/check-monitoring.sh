#!/usr/bin/env bash
# Checks figway's monitoring assets against a real figway and a real
# Prometheus, all on loopback (run by .ci/run after `cargo test`):
#
#   1. builds figway and starts it with a small config: a monolith
#      (legacy = true) and new services, served by tiny python3 HTTP servers;
#      a split route, a shadow route with compare, a route with a fallback,
#      and an upstream whose targets are DNS names, asked of a tiny python3
#      DNS server (one name resolves, one answers SERVFAIL), a ramp under
#      way on the split route and a rate-limited route; then sends traffic
#      with curl;
#   2. `promtool check metrics` on GET /metrics (and the SPEC §8 names and
#      types are all there);
#   3. `promtool check rules config/alerts.yml`, `promtool test rules
#      config/alerts_test.yml` (the alerts' unit tests), `promtool check
#      config` on a copy of config/prometheus.yml pointed at figway's admin
#      port;
#   4. starts Prometheus scraping figway every second with the alert rules,
#      sends traffic for ~10 s (and a good and a rejected reload), then
#      evaluates every PromQL expression of config/grafana/figway.json through
#      /api/v1/query: all must parse and run, and the panels must return data;
#      the alert rules must be loaded and evaluate without errors.
#
# Needs cargo, curl, python3, prometheus and promtool (Debian: `apt-get
# install prometheus curl python3`). PROMETHEUS and PROMTOOL override the
# binaries; KEEP_WORKDIR=1 keeps the temp dir (configs, logs, TSDB).
set -euo pipefail
cd "$(dirname "$0")/.."

PROMETHEUS=${PROMETHEUS:-prometheus}
PROMTOOL=${PROMTOOL:-promtool}
TRAFFIC_SECONDS=${TRAFFIC_SECONDS:-10}
START=$SECONDS

log() { printf '%s\n' "--- $*"; }
fail() {
  printf 'check-monitoring: FAIL: %s\n' "$*" >&2
  exit 1
}

for tool in cargo curl python3 "$PROMETHEUS" "$PROMTOOL"; do
  command -v "$tool" >/dev/null || fail "$tool not found (Debian: apt-get install prometheus curl python3)"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/figway-monitoring.XXXXXX")
PIDS=()
cleanup() {
  local rc=$?
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  if ((rc != 0)); then
    for f in figway.err prometheus.log; do
      if [[ -s $WORK/$f ]]; then
        echo "--- last lines of $f" >&2
        tail -n 20 "$WORK/$f" >&2
      fi
    done
    echo "check-monitoring: FAILED (exit $rc)" >&2
  fi
  if [[ ${KEEP_WORKDIR:-} == 1 ]]; then
    echo "work dir kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until a command succeeds: wait_for WHAT SECONDS COMMAND...
wait_for() {
  local what=$1 timeout=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out after ${timeout}s waiting for $what"
    sleep 0.2
  done
}

# Free loopback ports, all distinct (held open until all are chosen).
read -r PROXY_PORT ADMIN_PORT PROM_PORT MONO_PORT NEW_PORT DEAD1_PORT DEAD2_PORT < <(
  python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(7)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
)
PROXY=http://127.0.0.1:$PROXY_PORT
ADMIN=http://127.0.0.1:$ADMIN_PORT
PROM=http://127.0.0.1:$PROM_PORT

# ------------------------------------------------------------------ build
log "cargo build (figway)"
cargo build --quiet --bin figway
FIGWAY=${CARGO_TARGET_DIR:-target}/debug/figway
[[ -x $FIGWAY ]] || fail "no binary at $FIGWAY"

# ---------------------------------------------------------------- backends
# One tiny HTTP/1.1 server per port. The answer is the same on every server
# (so shadow compares match) except /whoami (a mismatch); /boom answers 500,
# /slow takes 50 ms.
cat >"$WORK/backend.py" <<'PY'
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME, PORT = sys.argv[1], int(sys.argv[2])

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, body=True):
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        status = 500 if "/boom" in self.path else 200
        if "/slow" in self.path:
            time.sleep(0.05)
        payload = {"ok": status == 200, "path": self.path}
        if "/whoami" in self.path:
            payload["server"] = NAME
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_GET(self):
        self.answer()

    def do_HEAD(self):
        self.answer(body=False)

    do_POST = do_PUT = do_DELETE = do_GET

    def log_message(self, *args):
        pass

ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
PY
python3 "$WORK/backend.py" monolith "$MONO_PORT" 2>"$WORK/monolith.err" &
PIDS+=($!)
python3 "$WORK/backend.py" new "$NEW_PORT" 2>"$WORK/new.err" &
PIDS+=($!)
wait_for "the monolith backend" 10 curl -sf "http://127.0.0.1:$MONO_PORT/"
wait_for "the new-service backend" 10 curl -sf "http://127.0.0.1:$NEW_PORT/"

# A DNS server for the names of upstream "catalog" ([runtime] resolver):
# catalog.figway.test is 127.0.0.1 (an endpoint, lookups "ok"), any other
# name SERVFAIL (lookups "error", for the dashboard's DNS panel and the
# alert). UDP on a port it picks and writes to dns.port.
cat >"$WORK/dns.py" <<'PY'
import os, socket, struct, sys

ANSWERS = {"catalog.figway.test": "127.0.0.1"}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(s.getsockname()[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    q, peer = s.recvfrom(4096)
    try:
        ident, flags = struct.unpack(">HH", q[:4])
        i, labels = 12, []
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode().lower())
            i += 1 + q[i]
        qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
        question = q[12:i + 5]
    except (IndexError, struct.error, UnicodeDecodeError):
        continue
    ip = ANSWERS.get(".".join(labels))
    answer = b""
    if ip is None:
        rcode = 2  # SERVFAIL
    else:
        rcode = 0
        if qtype == 1:  # A; other types: NOERROR without records
            answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 5, 4) + socket.inet_aton(ip)
    # QR, opcode 0, AA, RD copied, RA, rcode
    out_flags = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080 | rcode
    header = struct.pack(">HHHHHH", ident, out_flags, 1, 1 if answer else 0, 0, 0)
    s.sendto(header + question + answer, peer)
PY
python3 "$WORK/dns.py" "$WORK/dns.port" 2>"$WORK/dns.err" &
PIDS+=($!)
wait_for "the DNS server" 10 test -s "$WORK/dns.port"
DNS_PORT=$(cat "$WORK/dns.port")

# ------------------------------------------------------------------ figway
# orders: split between the new service and the monolith; the new side has
#         a second target nobody listens on (connect errors, retries,
#         outlier ejections).
# users:  a new service that is down (health checks fail) with the monolith
#         as fallback.
# search: served by the monolith, shadowed to the new service with compare.
# catalog: a service found by DNS name (catalog.figway.test: one endpoint;
#          broken.figway.test: lookups fail, no endpoint).
# limited: the monolith behind a rate limit of one bucket (burst 2, 1/s)
#          that every round overflows (429 rate_limited).
# legacy: everything else (GET/HEAD) to the monolith; a DELETE elsewhere
#         matches no route (route="", upstream="").
# orders' ramp began a minute ago: step 0 (50%, the split's own share) holds
# for an hour; its gates have limits the traffic cannot pass, so the
# failure counters stay at 0 and the orders side keeps its traffic.
RAMP_START=$(date -u -d '1 minute ago' +%Y-%m-%dT%H:%M:%SZ)
RAMP_TOML="[routes.ramp]
to = \"orders\"
start = \"$RAMP_START\"
steps = [50, 100]
hold = \"1h\"
max_error_rate = 1.0
max_p99 = \"1h\""
LIMIT_TOML="[routes.rate_limit]
rate = 1
burst = 2
key = \"route\""
write_config() {
cat >"$WORK/figway.toml" <<EOF
[listen]
address = "127.0.0.1:$PROXY_PORT"
drain_timeout = "1s"

[admin]
address = "127.0.0.1:$ADMIN_PORT"

[log]
access_log = false

[runtime]
resolver = "127.0.0.1:$DNS_PORT"

[defaults]
connect_timeout = "500ms"
request_timeout = "5s"
retries = 1

[upstreams.monolith]
legacy = true
targets = ["http://127.0.0.1:$MONO_PORT"]

[upstreams.orders]
targets = ["http://127.0.0.1:$NEW_PORT", "http://127.0.0.1:$DEAD1_PORT"]
[upstreams.orders.outlier]
consecutive_failures = 2
eject_for = "1s"

[upstreams.users]
targets = ["http://127.0.0.1:$DEAD2_PORT"]
[upstreams.users.health]
path = "/health"
interval = "200ms"
timeout = "100ms"
unhealthy_after = 1

[upstreams.search]
targets = ["http://127.0.0.1:$NEW_PORT"]

[upstreams.catalog]
targets = ["http://catalog.figway.test:$NEW_PORT", "http://broken.figway.test:$NEW_PORT"]
resolve_interval = "1s"

[[routes]]
name = "orders"
prefix = "/api/orders"
split = [{ to = "orders", weight = 1 }, { to = "monolith", weight = 1 }]
$1

[[routes]]
name = "users"
prefix = "/api/users"
to = "users"
fallback = "monolith"

[[routes]]
name = "search"
prefix = "/api/search"
to = "monolith"
[routes.shadow]
to = "search"
compare = true
ignore_headers = ["date"]

[[routes]]
name = "catalog"
prefix = "/api/catalog"
to = "catalog"

[[routes]]
name = "limited"
prefix = "/api/limited"
to = "monolith"
$2

[[routes]]
name = "legacy"
prefix = "/"
methods = ["GET", "HEAD"]
to = "monolith"
EOF
}
write_config "$RAMP_TOML" "$LIMIT_TOML"
"$FIGWAY" check "$WORK/figway.toml" >"$WORK/check.out" 2>&1 ||
  { cat "$WORK/check.out" >&2; fail "figway check rejects the test's config"; }
cp "$WORK/figway.toml" "$WORK/figway.toml.good"

log "starting figway (proxy $PROXY, admin $ADMIN)"
"$FIGWAY" run --config "$WORK/figway.toml" >"$WORK/figway.out" 2>"$WORK/figway.err" &
PIDS+=($!)
wait_for "figway's /readyz" 30 curl -sf "$ADMIN/readyz"

# One round of traffic: 21 requests on one keep-alive connection, plus one
# that matches no route. Status codes go to $WORK/codes.
round() {
  local args=(-s --max-time 10 -w '%{http_code}\n')
  local paths=(
    /api/orders/1 /api/orders/2 /api/orders/3 /api/orders/4 /api/orders/boom /api/orders/slow
    /api/users/1 /api/users/2 /api/users/slow
    /api/search?q=figway /api/search?q=fig /api/search?q=strangler /api/search?q=proxy /api/search/whoami
    /api/catalog/1
    /api/limited/1 /api/limited/2 /api/limited/3 /api/limited/4
    / /about
  )
  for p in "${paths[@]}"; do args+=(-o /dev/null "$PROXY$p"); done
  args+=(--next -s --max-time 10 -w '%{http_code}\n' -X DELETE -o /dev/null "$PROXY/nowhere")
  curl "${args[@]}" >>"$WORK/codes" || true
}

log "traffic before Prometheus starts"
for _ in 1 2 3; do round; done

# ------------------------------------------------------------ /metrics
log "promtool check metrics (GET $ADMIN/metrics)"
curl -sf -D "$WORK/metrics.headers" -o "$WORK/metrics.txt" "$ADMIN/metrics" ||
  fail "GET /metrics failed"
ctype=$(tr -d '\r' <"$WORK/metrics.headers" | sed -n 's/^[Cc]ontent-[Tt]ype: *//p')
[[ $ctype == "text/plain; version=0.0.4"* ]] ||
  fail "GET /metrics content-type is '$ctype', want text/plain; version=0.0.4 (SPEC §7)"
set +e
"$PROMTOOL" check metrics <"$WORK/metrics.txt" >"$WORK/promtool-metrics.out" 2>&1
promtool_rc=$?
set -e
if ((promtool_rc != 0)); then
  cat "$WORK/promtool-metrics.out" >&2
  fail "promtool check metrics: exit $promtool_rc"
fi
metrics_lint="clean"
if [[ -s $WORK/promtool-metrics.out ]]; then
  metrics_lint="$(wc -l <"$WORK/promtool-metrics.out") line(s) of output"
  cat "$WORK/promtool-metrics.out"
fi

# Every SPEC §8 name with its type, and every figway_* name the dashboard
# and the alerts use, must be in the exposition's # TYPE lines.
python3 - "$WORK/metrics.txt" config/grafana/figway.json config/alerts.yml <<'PY'
import re, sys
text = open(sys.argv[1]).read()
types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
spec = {
    "figway_requests_total": "counter",
    "figway_request_duration_seconds": "histogram",
    "figway_upstream_info": "gauge",
    "figway_upstream_target_healthy": "gauge",
    "figway_upstream_in_flight": "gauge",
    "figway_upstream_errors_total": "counter",
    "figway_outlier_ejections_total": "counter",
    "figway_retries_total": "counter",
    "figway_fallbacks_total": "counter",
    "figway_shadow_requests_total": "counter",
    "figway_config_reloads_total": "counter",
    "figway_config_last_reload_success_timestamp_seconds": "gauge",
    "figway_connections_active": "gauge",
    "figway_dns_resolutions_total": "counter",
    "figway_upstream_endpoints": "gauge",
    "figway_ramp_percent": "gauge",
    "figway_ramp_failures_total": "counter",
    "figway_rate_limited_total": "counter",
}
bad = [f"{n}: want {t}, exposed {types.get(n, 'nothing')}" for n, t in spec.items() if types.get(n) != t]
extra = sorted(n for n in types if n.startswith("figway_") and n not in spec)
used = set()
for path in sys.argv[2:]:
    used |= set(re.findall(r"\bfigway_[a-z0-9_]+", open(path).read()))
unknown = []
for name in sorted(used):
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    if name not in types and not (base in types and types[base] == "histogram"):
        unknown.append(name)
for line in bad:
    print("  SPEC §8 metric:", line)
for name in extra:
    print("  not in SPEC §8:", name)
for name in unknown:
    print("  used by the dashboard or alerts, not exposed:", name)
if bad or unknown:
    sys.exit(1)
print(f"  SPEC §8: all {len(spec)} metrics exposed with their types; "
      f"{len(used)} metric names used by the dashboard and alerts all exist")
PY

# ------------------------------------------------------ rules and config
log "promtool check rules config/alerts.yml"
"$PROMTOOL" check rules config/alerts.yml
log "promtool test rules config/alerts_test.yml"
"$PROMTOOL" test rules config/alerts_test.yml

# A copy of config/prometheus.yml pointed at this figway, scraping (and
# evaluating rules) every second, with the alert rules next to it.
mkdir -p "$WORK/prometheus"
cp config/alerts.yml "$WORK/prometheus/alerts.yml"
sed -e "s/127\.0\.0\.1:9901/127.0.0.1:$ADMIN_PORT/" \
  -e "s/\(scrape_interval\|evaluation_interval\): *15s/\1: 1s/" \
  config/prometheus.yml >"$WORK/prometheus/prometheus.yml"
grep -q "127.0.0.1:$ADMIN_PORT" "$WORK/prometheus/prometheus.yml" ||
  fail "config/prometheus.yml: no target 127.0.0.1:9901 to point at the test's admin port"
if grep -q 'interval: *15s' "$WORK/prometheus/prometheus.yml"; then
  fail "config/prometheus.yml: could not set the intervals to 1s for the check"
fi
log "promtool check config (copy of config/prometheus.yml, target 127.0.0.1:$ADMIN_PORT)"
"$PROMTOOL" check config "$WORK/prometheus/prometheus.yml"

# ------------------------------------------------------------ Prometheus
log "starting Prometheus on $PROM"
"$PROMETHEUS" \
  --config.file="$WORK/prometheus/prometheus.yml" \
  --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" \
  --log.level=warn \
  >"$WORK/prometheus.log" 2>&1 &
PIDS+=($!)
wait_for "Prometheus /-/ready" 60 curl -sf "$PROM/-/ready"

target_up() {
  curl -sf "$PROM/api/v1/targets" | python3 -c '
import json, sys
targets = json.load(sys.stdin)["data"]["activeTargets"]
sys.exit(0 if any(t["labels"].get("job") == "figway" and t["health"] == "up" for t in targets) else 1)'
}
wait_for "the figway target to be up in Prometheus" 30 target_up
log "figway target is up; traffic for ${TRAFFIC_SECONDS}s (with a reload, a rejected reload, and a fixed one)"

reload_status() { curl -s -o /dev/null -w '%{http_code}' -X POST "$ADMIN/reload"; }
reloads=""
traffic_end=$((SECONDS + TRAFFIC_SECONDS))
half=$((SECONDS + TRAFFIC_SECONDS / 2))
reloaded=0
while ((SECONDS < traffic_end)); do
  round
  if ((reloaded == 0 && SECONDS >= half)); then
    reloaded=1
    reloads+="good $(reload_status); "
    # A route without a prefix: invalid, the old table keeps serving.
    printf '\n[[routes]]\nname = "broken"\nto = "monolith"\n' >>"$WORK/figway.toml"
    reloads+="broken $(reload_status); "
    cp "$WORK/figway.toml.good" "$WORK/figway.toml"
    reloads+="fixed $(reload_status)"
  fi
  sleep 0.2
done
[[ $reloads == "good 200; broken 422; fixed 200" ]] ||
  fail "POST /reload answers: $reloads (want good 200; broken 422; fixed 200)"
sleep 3 # two more scrapes and rule evaluations

# ------------------------------------------------ dashboard expressions
log "evaluating every expression of config/grafana/figway.json through $PROM/api/v1/query"
python3 - "$PROM" config/grafana/figway.json config/alerts.yml <<'PY'
import json, math, re, sys, urllib.parse, urllib.request

prom, dashboard_path, alerts_path = sys.argv[1:4]
dash = json.load(open(dashboard_path))
problems, warnings = [], []

def get(path, **params):
    url = f"{prom}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=20) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)

# Template variables: a datasource variable; the others multi-value with
# "All", and used only with =~ in the expressions.
variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
ds = variables.get("datasource")
if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
    problems.append("templating: no `datasource` variable of type datasource (query prometheus)")
if "route" not in variables:
    problems.append("templating: no `route` variable")
query_vars = [v for v in variables.values() if v.get("type") == "query"]
some_values = {}
for v in query_vars:
    if not (v.get("multi") and v.get("includeAll")):
        problems.append(f"variable ${v['name']}: must be multi-value with includeAll")
    q = v.get("query")
    q = q.get("query") if isinstance(q, dict) else q
    m = re.fullmatch(r"\s*label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*", q or "")
    if not m:
        problems.append(f"variable ${v['name']}: query {q!r} is not label_values(metric, label)")
        continue
    r = get(f"/api/v1/label/{m.group(2)}/values", **{"match[]": m.group(1)})
    values = r.get("data") or []
    print(f"  variable ${v['name']}: {q} -> {values}")
    # Two of the values, as Grafana writes a multi-value selection in a
    # regex (escaped, and the backslashes doubled inside a PromQL string).
    some_values[v["name"]] = "(" + "|".join(re.escape(x).replace("\\", "\\\\") for x in values[:2]) + ")"
    if r.get("status") != "success" or not values:
        problems.append(f"variable ${v['name']}: {q} returned no values")

# Every expr of the dashboard: panel targets (rows' nested panels too) and
# annotations; an expr anywhere else would escape the check, so it fails.
exprs = []
def walk_panels(panels):
    for p in panels:
        for t in p.get("targets", []):
            if "expr" in t:
                exprs.append((p.get("title", "untitled"), t))
        walk_panels(p.get("panels", []))
walk_panels(dash.get("panels", []))
for a in dash.get("annotations", {}).get("list", []):
    if "expr" in a:
        exprs.append(("annotation: " + a.get("name", ""), a))
everywhere = json.dumps(dash).count('"expr":')
if everywhere != len(exprs):
    problems.append(f"{everywhere} exprs in the file, {len(exprs)} found in panels and annotations")

ids = [p.get("id") for p in dash.get("panels", [])]
if len(ids) != len(set(ids)):
    problems.append("panel ids are not unique")
for p in dash.get("panels", []):
    for t in p.get("targets", []):
        if t.get("datasource") != {"type": "prometheus", "uid": "${datasource}"}:
            problems.append(f"{p.get('title')}: target {t.get('refId')} does not use ${{datasource}}")

# Grafana's built-in variables as a dashboard over the last 5 minutes would
# have them; the template variables as "All" (.*), or as given.
BUILTIN = {"__rate_interval_ms": "60000", "__rate_interval": "1m", "__interval_ms": "15000",
           "__interval": "15s", "__range_s": "300", "__range_ms": "300000", "__range": "5m"}
def substitute(expr, chosen=None):
    for var in sorted(BUILTIN, key=len, reverse=True):
        expr = re.sub(r"\$\{%s\}|\$%s\b" % (var, var), BUILTIN[var], expr)
    for name in variables:
        value = (chosen or {}).get(name, ".*")
        expr = re.sub(r"\$\{%s(:[a-z]+)?\}|\$%s\b" % (name, name), lambda _: value, expr)
    return expr

# Panels whose data depends on timing, not on figway exposing the right thing.
MAY_BE_EMPTY = {"annotation: Config reloaded", "annotation: Reload rejected",
                "annotation: Ramp gate failed"}

results = []
for where, target in exprs:
    expr = target["expr"]
    for name in variables:
        for m in re.finditer(r'(\w+)\s*(=~|!~|=|!=)\s*"[^"]*\$\{?%s\b' % name, expr):
            if m.group(2) != "=~":
                problems.append(f"{where}: ${name} used with {m.group(2)} (must be =~): {m.group(0)}")
    q = substitute(expr)
    if "$" in q:
        problems.append(f"{where}: unsubstituted variable in {q!r}")
        continue
    ref = target.get("refId", "-")
    subset = substitute(expr, some_values)
    r = get("/api/v1/query", query=subset)
    if r.get("status") != "success":
        problems.append(f"{where} [{ref}] with {some_values}: {r.get('errorType')}: {r.get('error')}")
    r = get("/api/v1/query", query=q)
    if r.get("status") != "success":
        problems.append(f"{where} [{ref}]: {r.get('errorType')}: {r.get('error')}\n      {q}")
        results.append((where, ref, "ERROR", ""))
        continue
    data = r["data"]
    if data["resultType"] == "vector":
        values = [float(s["value"][1]) for s in data["result"]]
    elif data["resultType"] == "scalar":
        values = [float(data["result"][1])]
    else:
        values = []
    finite = [v for v in values if not math.isnan(v)]
    shown = ", ".join(f"{v:.3g}" for v in finite[:4]) + (" ..." if len(finite) > 4 else "")
    if not values:
        state = "empty"
        (warnings if where in MAY_BE_EMPTY else problems).append(f"{where} [{ref}]: returned no data")
    elif not finite:
        state = "NaN"
        problems.append(f"{where} [{ref}]: only NaN")
    else:
        state = f"{len(values)} series"
    results.append((where, ref, state, shown))

width = max(len(w) for w, *_ in results)
for where, ref, state, shown in results:
    print(f"  {where:<{width}}  {ref}  {state:<10} {shown}")

# What the traffic must show, by construction of the config.
def vector(q):
    r = get("/api/v1/query", query=q)
    return {tuple(sorted(s["metric"].items())): float(s["value"][1]) for s in r["data"]["result"]}
share = list(vector(substitute(next(t["expr"] for w, t in exprs if w.startswith("Legacy share of traffic")))).values())
if not share or not 0 < share[0] < 1:
    problems.append(f"legacy share should be strictly between 0 and 1 (the orders split), got {share}")
pairs = {(dict(k).get("route", ""), dict(k).get("upstream", "")) for k in vector(
    "sum by (route, upstream) (rate(figway_requests_total[1m])) > 0")}
for want in [("orders", "orders"), ("orders", "monolith"), ("users", "monolith"),
             ("search", "monolith"), ("catalog", "catalog"), ("legacy", "monolith"), ("", "")]:
    if want not in pairs:
        problems.append(f"no traffic counted for route={want[0]!r} upstream={want[1]!r} (have {sorted(pairs)})")
checks = {
    "fallback users: users -> monolith":
        'sum(rate(figway_fallbacks_total{route="users", from="users", to="monolith"}[1m])) > 0',
    "retries on orders":
        'sum(rate(figway_retries_total{route="orders", upstream="orders"}[1m])) > 0',
    "upstream_connect errors on orders":
        'sum(rate(figway_upstream_errors_total{upstream="orders", kind="upstream_connect"}[1m])) > 0',
    "users target unhealthy": 'figway_upstream_target_healthy{upstream="users"} == 0',
    "monolith target healthy": 'figway_upstream_target_healthy{upstream="monolith"} == 1',
    "shadow matches and mismatches on search":
        'sum(rate(figway_shadow_requests_total{route="search", result=~"match|mismatch"}[1m])) by (result) > 0',
    "an outlier ejection on orders": 'figway_outlier_ejections_total{upstream="orders"} > 0',
    "a rejected reload counted": 'figway_config_reloads_total{result="error"} > 0',
    "catalog: one endpoint (catalog.figway.test), none from broken.figway.test":
        'figway_upstream_endpoints{upstream="catalog"} == 1',
    "catalog: lookups ok and failed":
        'sum by (result) (rate(figway_dns_resolutions_total{upstream="catalog", result=~"ok|error"}[1m])) > 0',
    "5xx on both sides of orders":
        'count(sum by (legacy) (rate(figway_requests_total{route="orders", code="500"}[1m]) '
        '* on (job, instance, upstream) group_left (legacy) figway_upstream_info)) == 2',
    "orders' ramp at its step 0, 50%":
        'figway_ramp_percent{route="orders", upstream="orders"} == 50',
    "orders' gate counters present at 0 from load, for both gates":
        'figway_ramp_failures_total{route="orders", gate=~"error_rate|p99"} == 0',
    "429 rate_limited on route limited, counted in both counters":
        'sum(rate(figway_rate_limited_total{route="limited"}[1m])) > 0 '
        'and sum(rate(figway_requests_total{route="limited", upstream="", code="429"}[1m])) > 0',
}
for what, q in checks.items():
    n = len(vector(q))
    want = 2 if what in ("shadow matches and mismatches on search", "catalog: lookups ok and failed",
                         "orders' gate counters present at 0 from load, for both gates") else 1
    if n < want:
        problems.append(f"expected from the traffic: {what} ({q})")

# The alert rules: all loaded, all evaluated without error.
names = re.findall(r"^\s*-\s*alert:\s*(\S+)", open(alerts_path).read(), re.M)
r = get("/api/v1/rules")
loaded = {}
for group in r["data"]["groups"]:
    for rule in group["rules"]:
        if rule["type"] == "alerting":
            loaded[rule["name"]] = rule
missing = sorted(set(names) - set(loaded))
if missing:
    problems.append(f"alert rules not loaded by Prometheus: {missing}")
for name, rule in sorted(loaded.items()):
    if rule.get("health") != "ok":
        problems.append(f"alert {name}: health {rule.get('health')}: {rule.get('lastError')}")
active = sorted(f"{n} ({rule['state']})" for n, rule in loaded.items() if rule["state"] != "inactive")
print(f"  alert rules: {len(loaded)} loaded of {len(names)} in {alerts_path}, "
      f"{sum(1 for r in loaded.values() if r.get('health') == 'ok')} evaluated ok")
print(f"  alerts pending/firing now: {', '.join(active) or 'none'}")

for w in warnings:
    print("  warning:", w)
if problems:
    print()
    for p in dict.fromkeys(problems):
        print("  FAIL:", p)
    sys.exit(1)
print(f"  {len(exprs)} expressions: all parsed and ran; "
      f"{sum(1 for *_, s, _ in results if s.endswith('series'))} returned data")
PY

# ---------------------------------------------------------------- summary
total=$(wc -l <"$WORK/codes")
codes=$(sort "$WORK/codes" | uniq -c | awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}')
echo
echo "check-monitoring: OK in $((SECONDS - START))s"
echo "  traffic:    $total requests through figway ($codes)"
echo "  /metrics:   promtool check metrics $metrics_lint; all SPEC §8 names and types present"
echo "  alerts.yml: promtool check rules ok; loaded and evaluated by Prometheus"
echo "  prometheus.yml: promtool check config ok; target up in Prometheus"
echo "  dashboard:  every expression of config/grafana/figway.json ran and returned data"
