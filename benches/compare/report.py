#!/usr/bin/env python3
"""Summarise the raw results of benches/compare.sh.

Reads RESULTS/{meta.env,runs.tsv,rate.tsv,mem.tsv} and prints a plain-text
table, then the same figures as markdown (to paste into docs/benchmarks.md).
Throughput and fixed-rate rows: median over the rounds, with min-max when
there was more than one round.
"""
import os
import statistics
import sys

DASH = "\u2013"  # en dash for ranges


def read_tsv(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = [l.rstrip("\n").split("\t") for l in f if l.strip()]
    if not lines:
        return []
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
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def spread(values, digits):
    """'median (min-max)' or just the value for a single round."""
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
    return f"{v / ref:.2f}\u00d7"


def table(headers, rows, markdown):
    if markdown:
        out = ["| " + " | ".join(headers) + " |",
               "|" + "|".join("---" if i < 2 else "---:" for i in range(len(headers))) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(out)


def paired_ratios(runs, proxy, path, field="cpu_us_per_req", ref="nginx"):
    """`field` of `proxy` over `ref`'s in the same round, one ratio a round.

    Rounds interleave the rows, so a disturbance of the VM (another tenant,
    writeback) tends to hit every row of a round: one round's ratio moves
    less than the ratio of two medians taken over different rounds.
    """
    vals = {(r["proxy"], r.get("round", "1")): num(r.get(field)) for r in runs if r["path"] == path}
    return [v / vals[(ref, rnd)] for (p, rnd), v in vals.items()
            if p == proxy and v is not None and vals.get((ref, rnd))]


def paired(runs, proxy, path, field="cpu_us_per_req"):
    """`field` over nginx's in the same round, as 'median (min-max)'."""
    ratios = paired_ratios(runs, proxy, path, field)
    if not ratios:
        return "-"
    med = statistics.median(ratios)
    if len(ratios) == 1:
        return f"{med:.2f}\u00d7"
    return f"{med:.2f}\u00d7 ({min(ratios):.2f}{DASH}{max(ratios):.2f})"


def throughput_rows(runs, order):
    rows = []
    by = {}
    for r in runs:
        by.setdefault((r["proxy"], r["path"]), []).append(r)
    paths = []
    for r in runs:
        if r["path"] not in paths:
            paths.append(r["path"])
    medians = {}
    cells = {}
    for key, rs in by.items():
        c = {}
        for field, digits in (("rps", 0), ("p50_ms", 2), ("p99_ms", 2), ("cpu_us_per_req", 1),
                              ("user_us_per_req", 1), ("sys_us_per_req", 1)):
            c[field], medians[key + (field,)] = spread([num(x.get(field)) for x in rs], digits)
        errs = sum(int(x["errors"]) + int(x["non2xx"]) for x in rs)
        c["flag"] = f" [{errs} errors/non-2xx]" if errs else ""
        cells[key] = c
    for path in paths:
        for proxy in order:
            key = (proxy, path)
            if key not in cells:
                continue
            c = cells[key]
            nginx_cpu = medians.get(("nginx", path, "cpu_us_per_req"))
            nginx_user = medians.get(("nginx", path, "user_us_per_req"))
            nginx_p99 = medians.get(("nginx", path, "p99_ms"))
            user, sys_ = medians.get(key + ("user_us_per_req",)), medians.get(key + ("sys_us_per_req",))
            proxied = proxy != "direct"
            rows.append([
                proxy + c["flag"], path, c["rps"], c["p50_ms"], c["p99_ms"], c["cpu_us_per_req"],
                f"{fmt(user, 1)} + {fmt(sys_, 1)}" if proxied and user is not None else "-",
                ratio(medians.get(key + ("cpu_us_per_req",)), nginx_cpu) if proxied else "-",
                paired(runs, proxy, path) if proxied else "-",
                ratio(user, nginx_user) if proxied else "-",
                ratio(medians.get(key + ("p99_ms",)), nginx_p99),
            ])
    return rows


def rate_rows(rate, order):
    by = {}
    for r in rate:
        by.setdefault(r["proxy"], []).append(r)
    nginx_p99 = None
    if "nginx" in by:
        nginx_p99 = statistics.median(num(x["p99_ms"]) for x in by["nginx"])
    rows = []
    for proxy in order:
        if proxy not in by:
            continue
        rs = by[proxy]
        bad = sum(int(x["non200"]) for x in rs)
        p99, p99_med = spread([num(x["p99_ms"]) for x in rs], 2)
        rows.append([
            proxy + (f" [{bad} non-200]" if bad else ""), rs[0]["path"],
            spread([num(x["actual_rps"]) for x in rs], 0)[0],
            spread([num(x["p50_ms"]) for x in rs], 2)[0], p99,
            spread([num(x["cpu_us_per_req"]) for x in rs], 1)[0] if proxy != "direct" else "-",
            ratio(p99_med, nginx_p99),
            paired(rate, proxy, rs[0]["path"], "p99_ms") if proxy != "direct" else "-",
        ])
    return rows


def mem_rows(mem, order):
    rows = []
    by = {r["proxy"]: r for r in mem}
    for proxy in order:
        if proxy not in by:
            continue
        r = by[proxy]
        mib = lambda k: f"{int(r[k]) / 1024:.1f}"
        after = int(r["rss_after_kib"]) - int(r["rss_before_kib"])
        note = ""
        if int(r["failed"]):
            note += f" [{r['failed']} failed]"
        if int(r["closed_by_peer"]):
            note += f" [{r['closed_by_peer']} closed by proxy while held]"
        rows.append([
            proxy + note, r["held"], mib("rss_before_kib"), mib("rss_held_kib"),
            f"{float(r['kib_per_conn']):.2f}", mib("rss_after_kib"), f"{after / 1024:+.1f}",
        ])
    return rows


def median_of(rows, proxy, path, field):
    vals = [num(r.get(field)) for r in rows if r["proxy"] == proxy and r["path"] == path]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def target_rows(runs, rate, mem):
    """The request-path issue's targets, each judged on this run's medians
    (and, where rounds pair, on the median of the per-round ratios)."""
    rows = []

    def check(name, value, limit, higher_is_better=False, shown=None, pair=None):
        if value is None:
            return
        ok = value >= limit if higher_is_better else value <= limit
        text = shown if shown is not None else f"{value:.2f}\u00d7"
        if pair:
            p = statistics.median(pair)
            text += f" (paired {p:.2f}\u00d7)"
        rows.append([name, text, "met" if ok else "NOT met"])

    def vs(proxy, ref, path, field, rows_=runs):
        a, b = median_of(rows_, proxy, path, field), median_of(rows_, ref, path, field)
        return a / b if a is not None and b else None

    for path, limit in (("/", 1.0), ("/big", 0.9)):
        check(f"CPU \u00b5s/req on {path}, log on \u2264 {limit}\u00d7 nginx",
              vs("figway", "nginx", path, "cpu_us_per_req"), limit,
              pair=paired_ratios(runs, "figway", path))
    # The profile-guided build (scripts/pgo.sh), when the run has its row.
    for path, limit in (("/", 1.0), ("/big", 0.9)):
        check(f"PGO build: CPU \u00b5s/req on {path}, log on \u2264 {limit}\u00d7 nginx",
              vs("figway-pgo", "nginx", path, "cpu_us_per_req"), limit,
              pair=paired_ratios(runs, "figway-pgo", path))
    # Not a target: figway's log on against nginx's (row nginx-log), when
    # the run has that row.
    check("for reference: CPU \u00b5s/req on /, both logging, \u2264 1.0\u00d7 nginx-log",
          vs("figway", "nginx-log", "/", "cpu_us_per_req"), 1.0,
          pair=paired_ratios(runs, "figway", "/", ref="nginx-log"))
    check("full config within 10% of one route (CPU on /)",
          vs("figway-full", "figway", "/", "cpu_us_per_req"), 1.10,
          pair=paired_ratios(runs, "figway-full", "/", ref="figway"))
    check("p99 on / at 64 connections \u2264 1.2\u00d7 nginx",
          vs("figway", "nginx", "/", "p99_ms"), 1.2)
    check("p99 at a fixed rate \u2264 nginx",
          vs("figway", "nginx", "/", "p99_ms", rate), 1.0,
          pair=paired_ratios(rate, "figway", "/", "p99_ms"))
    by = {r["proxy"]: r for r in mem}
    if "figway" in by:
        r = by["figway"]
        kib = num(r["kib_per_conn"])
        check("memory per idle client connection \u2264 12 KiB", kib, 12.0, shown=f"{kib:.2f} KiB")
        after = (int(r["rss_after_kib"]) - int(r["rss_before_kib"])) / 1024
        check("RSS after the idle connections close \u2264 before + 20 MiB", after, 20.0,
              shown=f"{after:+.1f} MiB")
    check("req/s on / \u2265 0.95\u00d7 nginx", vs("figway", "nginx", "/", "rps"), 0.95,
          higher_is_better=True, pair=paired_ratios(runs, "figway", "/", "rps"))
    check("PGO build: p99 at a fixed rate \u2264 nginx",
          vs("figway-pgo", "nginx", "/", "p99_ms", rate), 1.0,
          pair=paired_ratios(rate, "figway-pgo", "/", "p99_ms"))
    return rows


def main():
    d = sys.argv[1]
    meta = read_meta(os.path.join(d, "meta.env"))
    runs = read_tsv(os.path.join(d, "runs.tsv"))
    rate = read_tsv(os.path.join(d, "rate.tsv"))
    mem = read_tsv(os.path.join(d, "mem.tsv"))
    order = meta.get("proxies", "").split()
    for r in runs + rate + mem:
        if r["proxy"] not in order:
            order.append(r["proxy"])

    # "user + sys": medians of each (they need not add up to the median of
    # the total); user space is the proxy's own code, system the kernel's
    # work for its system calls.
    th = ["proxy", "path", "req/s", "p50 ms", "p99 ms", "CPU \u00b5s/req", "user + sys \u00b5s",
          "CPU vs nginx", "CPU vs nginx, paired by round", "user vs nginx", "p99 vs nginx"]
    rh = ["proxy", "path", "req/s", "p50 ms", "p99 ms", "CPU \u00b5s/req", "p99 vs nginx",
          "p99 vs nginx, paired by round"]
    mh = ["proxy", "idle conns", "RSS before MiB", "RSS held MiB", "KiB/conn", "RSS after close MiB", "after \u2212 before MiB"]
    tr, rr, mr = throughput_rows(runs, order), rate_rows(rate, order), mem_rows(mem, order)
    gh = ["target (request-path issue)", "this run", "met?"]
    gr = target_rows(runs, rate, mem)

    rounds = meta.get("rounds", "?")
    spread_note = f"median over {rounds} rounds (min{DASH}max)" if rounds != "1" else "one round"
    wrk_note = f"wrk -t1 -c{meta.get('conns')} -d{meta.get('duration')}s --latency, {spread_note}"
    rate_rounds = meta.get("rate_rounds", "1")
    rate_spread = f"median over {rate_rounds} rounds (min{DASH}max)" if rate_rounds != "1" else "one round"
    rate_note = (f"hey -z {meta.get('rate_duration')}s -c {meta.get('rate_workers')} -q {meta.get('rate_qps')} "
                 f"(target {int(meta.get('rate_workers', 0)) * int(meta.get('rate_qps', 0)):,} req/s), {rate_spread}")
    mem_note = (f"{meta.get('idle_conns')} idle keep-alive client connections, each after one GET /; "
                f"'after' = {meta.get('settle')} s after closing them all")

    for markdown in (False, True):
        if markdown:
            print("\n----- markdown (paste into docs/benchmarks.md) -----\n")
            print(f"- date: {meta.get('date')}")
            print(f"- machine: {meta.get('cpu')}, {meta.get('ncpu')} cores, kernel {meta.get('kernel')}")
            print(f"- figway: {meta.get('figway_version')} ({meta.get('figway_bin')})")
            if meta.get("figway_pgo_bin"):
                print(f"- figway-pgo: {meta.get('figway_pgo_bin')} (scripts/pgo.sh)")
            print(f"- nginx {meta.get('nginx_version')}, HAProxy {meta.get('haproxy_version')}, {meta.get('wrk_version')}")
            print(f"- command: `{meta.get('command')}`")
            print(f"- pinning: proxies on CPU {meta.get('proxy_cpu')}, upstream + load generator on CPU {meta.get('load_cpu')}")
            if meta.get("notes"):
                print(f"- notes: {meta.get('notes')}")
            print()
        else:
            print()
            print(f"figway side-by-side benchmark  {meta.get('date')}")
            print(f"{meta.get('cpu')}, {meta.get('ncpu')} cores, kernel {meta.get('kernel')}")
            print(f"command: {meta.get('command')}")
            if meta.get("notes"):
                print(f"notes: {meta.get('notes')}")
            print()
        for title, headers, rows in ((f"Throughput and latency: {wrk_note}", th, tr),
                                     (f"Fixed rate: {rate_note}", rh, rr),
                                     (f"Memory: {mem_note}", mh, mr),
                                     ("Against the targets (medians; paired = median of the per-round ratios)",
                                      gh, gr)):
            if not rows:
                continue
            print(f"**{title}**\n" if markdown else f"{title}\n")
            print(table(headers, rows, markdown))
            print()


if __name__ == "__main__":
    main()
