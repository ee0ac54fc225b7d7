#!/usr/bin/env python3
"""Summarise the raw results of benches/tls.sh.

Reads RESULTS/{meta.env,runs.tsv} and prints two plain-text tables (keep-alive
TLS; a new connection per request), then the same as markdown, to paste into
docs/benchmarks.md. Each cell: median over the rounds, with min-max when there
was more than one round.
"""
import os
import statistics
import sys

DASH = "\u2013"  # en dash for ranges
TIMES = "\u00d7"

# How each new-connection test is described in the table, in table order.
CLOSE_TESTS = [
    ("close-plain", "plain HTTP, new TCP connection"),
    ("close-resumed", "TLS 1.3 resumption (ticket)"),
    ("close-full", "TLS 1.3 full handshake"),
]


def read_tsv(path):
    with open(path) as f:
        lines = [l.rstrip("\n").split("\t") for l in f if l.strip()]
    head, rows = lines[0], lines[1:]
    return [dict(zip(head, r)) for r in rows]


def read_meta(path):
    meta = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            meta[k] = v
    return meta


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def fmt(v, digits):
    if v is None:
        return "-"
    return f"{v:,.0f}" if digits == 0 else f"{v:.{digits}f}"


def spread(values, digits):
    """('median (min-max)', median); just the value for a single round."""
    vals = [v for v in values if v is not None]
    if not vals:
        return "-", None
    med = statistics.median(vals)
    if len(vals) == 1:
        return fmt(med, digits), med
    return f"{fmt(med, digits)} ({fmt(min(vals), digits)}{DASH}{fmt(max(vals), digits)})", med


def ratio(v, ref):
    if v is None or ref is None or ref == 0:
        return "-"
    return f"{v / ref:.2f}{TIMES}"


def table(headers, rows, markdown, left=3):
    if markdown:
        out = ["| " + " | ".join(headers) + " |",
               "|" + "|".join("---" if i < left else "---:" for i in range(len(headers))) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) if i < left else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(out)


def group(runs):
    by = {}
    for r in runs:
        by.setdefault((r["test"], r["cert"], r["path"], r["proxy"]), []).append(r)
    return by


def flag(rs):
    errs = sum(int(x["errors"]) + int(x["non2xx"]) for x in rs)
    return f" [{errs} errors/non-2xx]" if errs else ""


def keepalive_rows(by):
    rows = []
    keys = [k for k in by if k[0] == "keepalive"]
    # TLS rows first, path by path, then the plain row(s).
    keys.sort(key=lambda k: (k[1] == "plain", k[2] != "/", k[2], k[3] != "nginx"))
    for test, cert, path, proxy in keys:
        rs = by[(test, cert, path, proxy)]
        rps = spread([num(x["rate"]) for x in rs], 0)[0]
        p50 = spread([num(x["p50_ms"]) for x in rs], 2)[0]
        p99 = spread([num(x["p99_ms"]) for x in rs], 2)[0]
        cpu, cpu_med = spread([num(x["cpu_us"]) for x in rs], 1)
        ref = by.get((test, cert, path, "nginx"))
        ref_med = statistics.median(num(x["cpu_us"]) for x in ref) if ref else None
        plain = by.get((test, "plain", path, proxy))
        tls_adds = "-"
        if cert != "plain" and plain:
            tls_adds = f"{cpu_med - statistics.median(num(x['cpu_us']) for x in plain):+.1f}"
        rows.append([proxy + flag(rs), "plain HTTP" if cert == "plain" else f"TLS, {cert}", path,
                     rps, p50, p99, cpu, ratio(cpu_med, ref_med), tls_adds])
    return rows


def close_rows(by):
    rows = []
    for test, label in CLOSE_TESTS:
        keys = sorted((k for k in by if k[0] == test), key=lambda k: (k[1], k[3] != "nginx"))
        for key in keys:
            _, cert, path, proxy = key
            rs = by[key]
            rate = spread([num(x["rate"]) for x in rs], 0)[0]
            cpu, cpu_med = spread([num(x["cpu_us"]) for x in rs], 1)
            ref = by.get((test, cert, path, "nginx"))
            ref_med = statistics.median(num(x["cpu_us"]) for x in ref) if ref else None
            plain = by.get(("close-plain", "plain", path, proxy))
            over = "-"
            if test != "close-plain" and plain:
                over = f"{cpu_med - statistics.median(num(x['cpu_us']) for x in plain):+.1f}"
            rows.append([label, "-" if cert == "plain" else cert, proxy + flag(rs), rs[0]["client"],
                         rate, cpu, ratio(cpu_med, ref_med), over])
    return rows


def main():
    d = sys.argv[1]
    meta = read_meta(os.path.join(d, "meta.env"))
    by = group(read_tsv(os.path.join(d, "runs.tsv")))

    kh = ["proxy", "scheme", "path", "req/s", "p50 ms", "p99 ms", "CPU \u00b5s/req", "CPU vs nginx",
          "TLS adds \u00b5s/req"]
    ch = ["connection", "cert", "proxy", "client", "conn/s", "CPU \u00b5s/conn", "CPU vs nginx",
          "over plain \u00b5s/conn"]
    kr, cr = keepalive_rows(by), close_rows(by)
    rounds = meta.get("rounds", "?")
    spread_note = f"median over {rounds} rounds (min{DASH}max)" if rounds != "1" else "one round"
    ka_title = f"Keep-alive: wrk -t1 -c{meta.get('conns')} -d{meta.get('duration')}s --latency, {spread_note}"
    close_title = (f"A new connection per request, {meta.get('duration')} s per run, {spread_note}; "
                   f"CPU \u00b5s/conn = the proxy's CPU time / connections (one request each)")

    for markdown in (False, True):
        if markdown:
            print("\n----- markdown (paste into docs/benchmarks.md) -----\n")
            print(f"- date: {meta.get('date')}")
            print(f"- machine: {meta.get('cpu')}, {meta.get('ncpu')} cores, kernel {meta.get('kernel')}")
            print(f"- figway: {meta.get('figway_version')} ({meta.get('figway_bin')})")
            print(f"- nginx {meta.get('nginx_version')}, OpenSSL {meta.get('openssl_version')}, "
                  f"{meta.get('wrk_version')}")
            print(f"- command: `{meta.get('command')}`")
            print(f"- pinning: proxies on CPU {meta.get('proxy_cpu')}, upstream + load generators on CPU "
                  f"{meta.get('load_cpu')}")
            print(f"- negotiated (OpenSSL client defaults): {meta.get('tls_info')}")
            print(f"- resumption probe (nginx $ssl_session_reused): {meta.get('probe')}")
            if meta.get("notes"):
                print(f"- notes: {meta.get('notes')}")
            print()
        else:
            print()
            print(f"figway TLS benchmark  {meta.get('date')}")
            print(f"{meta.get('cpu')}, {meta.get('ncpu')} cores, kernel {meta.get('kernel')}")
            print(f"command: {meta.get('command')}")
            print(f"negotiated: {meta.get('tls_info')}")
            print(f"probe: {meta.get('probe')}")
            if meta.get("notes"):
                print(f"notes: {meta.get('notes')}")
            print()
        for title, headers, rows, left in ((ka_title, kh, kr, 3), (close_title, ch, cr, 4)):
            if not rows:
                continue
            print(f"**{title}**\n" if markdown else f"{title}\n")
            print(table(headers, rows, markdown, left))
            print()


if __name__ == "__main__":
    main()
