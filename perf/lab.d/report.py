"""Reports of the perf lab: ratios, markdown tables, the chart and the README block."""
import json
import os
import re

BASE_HAPROXY = "haproxy"
BASE_DIRECT = "direct"

# key, column title, (measurement, field), format, higher is better
METRICS = [
    ("gbit_1", "1 stream Gbit/s", ("iperf_1", "gbit_s"), "{:.1f}", True),
    ("gbit_8", "8 streams Gbit/s", ("iperf_8", "gbit_s"), "{:.1f}", True),
    ("cpu_pct_1", "proxy CPU % (1 stream)", ("iperf_1", "proxy_cpu_pct"), "{:.0f}", False),
    ("cpu_s_per_gb_1", "CPU s/GB (1 stream)", ("iperf_1", "proxy_cpu_s_per_gb"), "{:.3f}", False),
    ("cpu_s_per_gb_8", "CPU s/GB (8 streams)", ("iperf_8", "proxy_cpu_s_per_gb"), "{:.3f}", False),
    ("req_s", "keep-alive req/s", ("wrk_keepalive", "req_s"), "{:,.0f}", True),
    ("p50_us", "p50 µs", ("wrk_keepalive", "p50_us"), "{:.0f}", False),
    ("p99_us", "p99 µs", ("wrk_keepalive", "p99_us"), "{:.0f}", False),
    ("conn_s", "new conn/s", ("wrk_close", "req_s"), "{:,.0f}", True),
    ("rss_per_conn", "proxy RSS B/conn", ("idle", "rss_bytes_per_conn"), "{:,.0f}", False),
    ("pss_per_conn", "proxy PSS B/conn", ("idle", "pss_bytes_per_conn"), "{:,.0f}", False),
    ("kernel_per_conn", "kernel B/conn", ("idle", "kernel_bytes_per_conn"), "{:,.0f}", False),
]
DIRECT_COLUMNS = ["gbit_1", "gbit_8", "req_s", "p50_us", "p99_us", "conn_s", "kernel_per_conn"]


def value(data, subject, key):
    s = data["subjects"].get(subject)
    if not s:
        return None
    for k, _, (meas, field), _, _ in METRICS:
        if k == key:
            v = s.get("metrics", {}).get(meas, {}).get(field)
            return float(v) if isinstance(v, (int, float)) else None
    raise KeyError(key)


# ---------------------------------------------------------------------------------------------
# udp, sni and terminate suites (perf/lab.d/suites.py): data["suites"][suite]

# suite -> [(key, column title, (load, field), format)]
SUITE_METRICS = {
    "udp": [
        ("sent_pps_64", "64 B sent pkt/s", ("udp_64", "sent_pps"), "{:,.0f}"),
        ("recv_pps_64", "64 B recv pkt/s", ("udp_64", "recv_pps"), "{:,.0f}"),
        ("loss_64", "64 B loss %", ("udp_64", "loss_pct"), "{:.1f}"),
        ("cpu_64", "64 B proxy CPU %", ("udp_64", "proxy_cpu_pct"), "{:.0f}"),
        ("sent_pps_1400", "1400 B sent pkt/s", ("udp_1400", "sent_pps"), "{:,.0f}"),
        ("recv_pps_1400", "1400 B recv pkt/s", ("udp_1400", "recv_pps"), "{:,.0f}"),
        ("loss_1400", "1400 B loss %", ("udp_1400", "loss_pct"), "{:.1f}"),
        ("gbit_1400", "1400 B recv Gbit/s", ("udp_1400", "recv_gbit_s"), "{:.2f}"),
        ("cpu_1400", "1400 B proxy CPU %", ("udp_1400", "proxy_cpu_pct"), "{:.0f}"),
        ("ns_per_pkt_64", "proxy CPU ns/pkt (64 B)", ("udp_64", "proxy_cpu_ns_per_pkt"),
         "{:,.0f}"),
    ],
    "sni": [
        ("conn_s", "new TLS conn/s (full handshakes)", ("wrk_close", "req_s"), "{:,.0f}"),
        ("p50_us", "p50 µs", ("wrk_close", "p50_us"), "{:,.0f}"),
        ("p99_us", "p99 µs", ("wrk_close", "p99_us"), "{:,.0f}"),
        ("us_per_conn", "proxy CPU µs/conn", ("wrk_close", "proxy_cpu_us_per_req"), "{:.1f}"),
        ("bulk_gbit", "bulk Gbit/s", ("bulk", "gbit_s"), "{:.2f}"),
        ("bulk_cpu", "bulk proxy CPU %", ("bulk", "proxy_cpu_pct"), "{:.0f}"),
        ("bulk_s_per_gb", "bulk CPU s/GB", ("bulk", "proxy_cpu_s_per_gb"), "{:.3f}"),
    ],
    "terminate": [
        ("conn_s", "full handshakes/s", ("wrk_close", "req_s"), "{:,.0f}"),
        ("us_per_conn", "proxy CPU µs/handshake", ("wrk_close", "proxy_cpu_us_per_req"),
         "{:.0f}"),
        ("resumed_s", "resumed conn/s", ("wrk_resume", "req_s"), "{:,.0f}"),
        ("us_per_resumed", "proxy CPU µs/resumed", ("wrk_resume", "proxy_cpu_us_per_req"),
         "{:.0f}"),
        ("req_s", "keep-alive req/s", ("wrk_keepalive", "req_s"), "{:,.0f}"),
        ("us_per_req", "proxy CPU µs/req", ("wrk_keepalive", "proxy_cpu_us_per_req"), "{:.1f}"),
        ("bulk_gbit", "bulk Gbit/s", ("bulk", "gbit_s"), "{:.2f}"),
        ("bulk_cpu", "bulk proxy CPU %", ("bulk", "proxy_cpu_pct"), "{:.0f}"),
        ("bulk_s_per_gb", "bulk CPU s/GB", ("bulk", "proxy_cpu_s_per_gb"), "{:.2f}"),
    ],
}
# The comparisons shown as "(N×)" in each suite's table: subject -> base
SUITE_BASE = {
    "udp": {"ringfwd": "nginx", "socat": "nginx", "direct": None},
    "sni": {"ringfwd-sni": "haproxy-sni", "ringfwd-tcp": "haproxy-sni", "direct": None},
    "terminate": {"ringfwd-ecdsa": "haproxy-ecdsa", "ringfwd-rsa": "haproxy-rsa"},
}
# the columns that get a "(N×)" ratio in the tables (all ratios are in the JSON)
SUITE_RATIO_KEYS = {
    "udp": ("recv_pps_64", "recv_pps_1400", "gbit_1400", "ns_per_pkt_64"),
    "sni": ("conn_s", "us_per_conn", "bulk_gbit", "bulk_s_per_gb"),
    "terminate": ("conn_s", "us_per_conn", "resumed_s", "us_per_resumed", "req_s",
                  "us_per_req", "bulk_gbit", "bulk_s_per_gb"),
}
SUITE_TITLES = {
    "udp": "UDP forwarding (udpload: 4 flows, sendmmsg batches of 32, as fast as the sender "
           "can; received = counted at the sink)",
    "sni": "TLS SNI passthrough (a.example.test and b.example.test on one port; nginx https "
           "backend, ECDSA P-256)",
    "terminate": "TLS terminate (wolfSSL in ringfwd, OpenSSL in HAProxy; same certificate; "
                 "plain nginx http backend)",
}
SUITE_RATIO_NOTE = {
    "udp": "ratios against nginx",
    "sni": "ratios against HAProxy (req.ssl_sni)",
    "terminate": "ratios against HAProxy with the same certificate",
}


def suite_value(sd, subject, key, suite):
    s = sd["subjects"].get(subject)
    if not s:
        return None
    for k, _, (meas, field), _ in SUITE_METRICS[suite]:
        if k == key:
            v = s.get("metrics", {}).get(meas, {}).get(field)
            return float(v) if isinstance(v, (int, float)) else None
    raise KeyError(key)


def add_suite_ratios(data):
    """data["suites"][suite]["ratios"][subject][metric] against SUITE_BASE, and
    data["suites"][suite]["goals"]: the comparisons each suite was built for."""
    import suites as _suites  # perf/lab.d/suites.py
    for suite, sd in data.get("suites", {}).items():
        table = {}
        for subj, base in SUITE_BASE.get(suite, {}).items():
            if base is None or subj not in sd["subjects"]:
                continue
            row = {}
            for key, *_ in SUITE_METRICS[suite]:
                a, b = suite_value(sd, subj, key, suite), suite_value(sd, base, key, suite)
                row[key] = round(a / b, 4) if a is not None and b not in (None, 0.0) else None
            table[subj] = {"base": base, "ratios": row}
        sd["ratios"] = table
        goals = []
        for subj, base, key, goal, what in _suites.GOALS.get(suite, []):
            a, b = suite_value(sd, subj, key, suite), suite_value(sd, base, key, suite)
            r = round(a / b, 4) if a is not None and b not in (None, 0.0) else None
            goals.append({"subject": subj, "base": base, "metric": key, "value": a,
                          "base_value": b, "ratio": r, "goal": goal, "goal_text": what,
                          "met": None if r is None or goal is None else r >= goal})
        sd["goals"] = goals


def suite_table(data, suite):
    sd = data["suites"][suite]
    cols = SUITE_METRICS[suite]
    lines = ["| subject | " + " | ".join(c[1] for c in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    ratios = sd.get("ratios", {})
    for subj, s in sd["subjects"].items():
        if not s.get("metrics"):
            err = (s.get("error") or "failed").replace("|", "/").replace("\n", " ")
            lines.append(f"| {subj} | FAILED: {err[:160]} |" + " |" * (len(cols) - 1))
            continue
        cells = []
        for key, _, _, fmt in cols:
            v = suite_value(sd, subj, key, suite)
            r = ratios.get(subj, {}).get("ratios", {}).get(key)
            show = key in SUITE_RATIO_KEYS.get(suite, ())
            cells.append(_fmt(fmt, v) + ("" if v is None or not show else _ratio(r)))
        name = subj if s.get("ok") else f"{subj} (FAILED: {(s.get('error') or '')[:80]})"
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals_table(data, suite):
    sd = data["suites"][suite]
    titles = {k: t for k, t, _, _ in SUITE_METRICS[suite]}
    lines = ["| comparison | metric | ratio | goal |", "|---|---|---:|---|"]
    for g in sd.get("goals", []):
        r = "—" if g["ratio"] is None else f"{g['ratio']:.2f}×"
        goal = g["goal_text"] or "(reference)"
        if g["met"] is not None:
            goal += " — met" if g["met"] else " — **not met**"
        lines.append(f"| {g['subject']} / {g['base']} | {titles[g['metric']]} | {r} | {goal} |")
    return "\n".join(lines)


def suite_summary(data, suite):
    sd = data["suites"][suite]
    p = sd["params"]
    if suite == "udp":
        load = (f"udpload {p['udp_seconds']} s per size, {p['udp_flows']} flows, "
                f"batch {p['udp_batch']}")
    else:
        load = (f"wrk {p['wrk']} {p['tls_seconds']} s; curl /big ×{p['bulk_repeats']} "
                f"(≤ {p['bulk_bytes'] >> 20} MiB, ≤ {p['bulk_max_seconds']} s)")
    if p.get("repeat", 1) > 1:
        load += f"; medians of {p['repeat']} rounds"
    spreads = []
    for s in sd["subjects"].values():
        for m in s.get("metrics", {}).values():
            v = m.get("round_values") or []
            mid = sorted(v)[(len(v) - 1) // 2] if v else 0
            if len(v) > 1 and mid:
                spreads.append((max(v) - min(v)) / mid)
    if spreads:
        spreads.sort()
        load += (f"; spread between rounds (max−min)/median: median "
                 f"{100 * spreads[(len(spreads) - 1) // 2]:.0f} %, max {100 * spreads[-1]:.0f} %")
    la = (data.get("machine") or {}).get("loadavg_start")
    if la:
        load += f"; load average at start {la[0]:.2f}"
    tls = []
    for subj, s in sd["subjects"].items():
        t = s.get("tls") or {}
        if t.get("ciphersuite"):
            tls.append(f"{subj}: {t.get('protocol_version')} {t.get('ciphersuite')}"
                       f"{', ' + t['server_temp_key'] if t.get('server_temp_key') else ''}")
    return f"Load: {load}." + (" Negotiated: " + "; ".join(tls) + "." if tls else "")


def suite_markdown(data, suite):
    return "\n".join([f"### {SUITE_TITLES[suite]}", "", suite_summary(data, suite), "",
                       suite_table(data, suite), "",
                       f"In brackets: {SUITE_RATIO_NOTE[suite]}, same run. Goals:", "",
                       goals_table(data, suite), ""])


def add_ratios(data):
    """data["ratios"]["vs_haproxy"|"vs_direct"][subject][metric] = subject / base."""
    add_suite_ratios(data)
    out = {}
    for name, base in (("vs_haproxy", BASE_HAPROXY), ("vs_direct", BASE_DIRECT)):
        table = {}
        for subj in data["subjects"]:
            row = {}
            for key, *_ in METRICS:
                a, b = value(data, subj, key), value(data, base, key)
                row[key] = round(a / b, 4) if a is not None and b not in (None, 0.0) else None
            table[subj] = row
        out[name] = table
    data["ratios"] = out
    # per-connection kernel memory above the direct baseline (the proxy's own sockets)
    d = value(data, BASE_DIRECT, "kernel_per_conn")
    for subj, s in data["subjects"].items():
        v = value(data, subj, "kernel_per_conn")
        if d is not None and v is not None and "idle" in s.get("metrics", {}):
            s["metrics"]["idle"]["kernel_bytes_per_conn_over_direct"] = v - d


def _fmt(fmt, v):
    return "—" if v is None else fmt.format(v)


def _ratio(r):
    return "" if r is None else f" ({r:.2f}×)"


def summary_line(data):
    m = data.get("machine", {})
    v = m.get("versions", {})
    p = data["params"]
    la = m.get("loadavg_start") or [0, 0, 0]
    return (f"{data['date']}, {data['mode']} run: {m.get('nproc')} × {m.get('cpu')}, "
            f"Linux {m.get('kernel')}; {v.get('ringfwd') or 'ringfwd ?'} "
            f"(repo HEAD {v.get('ringfwd_git') or '?'}), "
            f"HAProxy {v.get('haproxy')}, nginx {v.get('nginx')}, socat {v.get('socat')}, "
            f"iperf3 {v.get('iperf3')}, wrk {v.get('wrk')}. "
            + (f"TCP loads: iperf3 {p['iperf_seconds']} s, "
               f"wrk -t2 -c64 {p['wrk_seconds']} s, {p['idle_conns']} idle connections"
               f"{' (' + p['idle_conns_note'] + ')' if p.get('idle_conns_note') else ''}. "
               if data.get("subjects") else "")
            + f"Load average at start {la[0]:.2f}.")


def table(data):
    """Main table: rows = subjects, columns = metrics, ratio to HAProxy (plain) in brackets."""
    cols = [m for m in METRICS]
    lines = ["| subject | " + " | ".join(c[1] for c in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    ratios = data.get("ratios", {}).get("vs_haproxy", {})
    for subj, s in data["subjects"].items():
        if not s.get("ok") and not s.get("metrics"):
            err = (s.get("error") or "failed").replace("|", "/").replace("\n", " ")
            lines.append(f"| {subj} | FAILED: {err[:160]} |" + " |" * (len(cols) - 1))
            continue
        cells = []
        for key, _, _, fmt, _ in cols:
            v = value(data, subj, key)
            r = ratios.get(subj, {}).get(key) if subj != BASE_HAPROXY else None
            cells.append(_fmt(fmt, v) + ("" if v is None else _ratio(r)))
        name = subj if s.get("ok") else f"{subj} (FAILED: {(s.get('error') or '')[:80]})"
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def direct_table(data):
    byk = {m[0]: m for m in METRICS}
    cols = [byk[k] for k in DIRECT_COLUMNS]
    lines = ["| subject | " + " | ".join(c[1] for c in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    ratios = data.get("ratios", {}).get("vs_direct", {})
    for subj, s in data["subjects"].items():
        if subj == BASE_DIRECT or not s.get("metrics"):
            continue
        cells = [("—" if ratios.get(subj, {}).get(c[0]) is None
                  else f"{ratios[subj][c[0]]:.2f}×") for c in cols]
        lines.append(f"| {subj} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# CPU detail: (measurement, field, title, format)
CPU_COLUMNS = [
    ("iperf_1", "proxy_cpu_pct", "proxy CPU % 1 st.", "{:.0f}"),
    ("iperf_8", "proxy_cpu_pct", "proxy CPU % 8 st.", "{:.0f}"),
    ("iperf_1", "machine_cpu_pct", "machine CPU % 1 st.", "{:.0f}"),
    ("iperf_1", "machine_cpu_s_per_gb", "machine s/GB 1 st.", "{:.2f}"),
    ("iperf_8", "machine_cpu_s_per_gb", "machine s/GB 8 st.", "{:.2f}"),
    ("wrk_keepalive", "proxy_cpu_us_per_req", "proxy µs/req", "{:.1f}"),
    ("wrk_close", "proxy_cpu_us_per_req", "proxy µs/new conn", "{:.1f}"),
]


def cpu_table(data):
    lines = ["| subject | " + " | ".join(c[2] for c in CPU_COLUMNS) + " |",
             "|---|" + "---:|" * len(CPU_COLUMNS)]
    for subj, s in data["subjects"].items():
        if not s.get("metrics"):
            continue
        cells = []
        for meas, field, _, fmt in CPU_COLUMNS:
            v = s["metrics"].get(meas, {}).get(field)
            cells.append(_fmt(fmt, v if isinstance(v, (int, float)) else None))
        lines.append(f"| {subj} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def memory_table(data):
    cols = ["proxy RSS", "proxy PSS", "TCP mem (sockstat)", "slab (no tw)",
            "kernel stacks + page tables", "kernel total", "kernel over direct"]
    lines = [f"| subject (B/conn, {data['params']['idle_conns']} conns) | " + " | ".join(cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for subj, s in data["subjects"].items():
        m = s.get("metrics", {}).get("idle")
        if not m:
            continue
        n = m["connections"] or 1

        def per(key):
            v = m.get(key)
            return None if v is None else v / n
        slab = m.get("slab_no_tw_delta", m.get("slab_delta"))
        st = (m.get("kernel_stack_delta") or 0) + (m.get("page_tables_delta") or 0)
        vals = [m.get("rss_bytes_per_conn"), m.get("pss_bytes_per_conn"), per("tcp_mem_delta"),
                None if slab is None else slab / n, st / n, m.get("kernel_bytes_per_conn"),
                m.get("kernel_bytes_per_conn_over_direct")]
        lines.append(f"| {subj} | " + " | ".join(_fmt("{:,.0f}", v) for v in vals) + " |")
    return "\n".join(lines)


NOTES = """\
Ratios in brackets are against HAProxy (plain) from the same run. Throughput: iperf3
client→server through the subject. CPU: the proxy's processes only (all threads and
children), utime+stime from /proc; s/GB = CPU seconds per 10⁹ bytes carried.
Latency: wrk under load (64 connections), not an idle round trip. Memory: deltas while the
idle connections are held; kernel = slab (without TIME_WAIT buckets) + kernel stacks + page
tables, for client, proxy and backend sockets together (direct holds 2 sockets a connection,
a proxy 4). See perf/README.md."""


def markdown(data):
    parts = [f"## ringfwd perf lab — {data['date']}", "", summary_line(data), ""]
    if data["subjects"]:
        parts += ["### TCP forwarding", "", table(data), ""]
        if BASE_DIRECT in data["subjects"] and len(data["subjects"]) > 1:
            parts += ["Against direct (no proxy):", "", direct_table(data), ""]
        parts += ["CPU detail (machine = the whole machine from /proc/stat: client, proxy, "
                  "backend and anything else running):", "", cpu_table(data), ""]
        parts += ["Memory detail (deltas while the idle connections are held):", "",
                  memory_table(data), ""]
        parts += [NOTES, ""]
    for suite in data.get("suites", {}):
        parts += [suite_markdown(data, suite)]
    warn = {k: s["warning"] for k, s in data["subjects"].items() if s.get("warning")}
    for suite, sd in data.get("suites", {}).items():
        warn.update({f"{suite}/{k}": s["warning"] for k, s in sd["subjects"].items()
                     if s.get("warning")})
    if warn:
        parts += ["**Warnings:**", ""] + [f"- {k}: {w}" for k, w in warn.items()] + [""]
    failed = {k: s.get("error") for k, s in data["subjects"].items() if not s.get("ok")}
    for suite, sd in data.get("suites", {}).items():
        failed.update({f"{suite}/{k}": s.get("error") for k, s in sd["subjects"].items()
                       if not s.get("ok")})
    if failed or data.get("error"):
        parts.append("**Failures:**")
        parts.append("")
        for k, e in failed.items():
            parts.append(f"- {k}: {e}")
        if data.get("error"):
            parts.append(f"- lab: {data['error']}")
        parts.append("")
    return "\n".join(parts)


README_SUITES = ["tcp", "udp", "sni", "terminate"]
_SUB = re.compile(r"<!-- perf-suite:(\w+) -->\n?(.*?)<!-- /perf-suite:\1 -->", re.S)


def readme_parts(data):
    """suite -> README text of the suites this run measured."""
    out = {}
    if data["subjects"]:
        out["tcp"] = "\n".join([summary_line(data), "", table(data), "",
                                "Ratios in brackets: against HAProxy (plain), same run. "
                                "Details: `perf/README.md`, raw numbers: `perf/results/`."])
    for suite in data.get("suites", {}):
        out[suite] = "\n".join([f"**{SUITE_TITLES[suite]}** — {data['date']}, "
                                f"{data['mode']} run. {suite_summary(data, suite)}", "",
                                suite_table(data, suite), "",
                                f"In brackets: {SUITE_RATIO_NOTE[suite]}, same run.", "",
                                goals_table(data, suite)])
    return out


def readme_block(data, old=""):
    """The whole <!-- perf-table --> block: one sub-block a suite. Suites this run did not
    measure keep their previous sub-block from `old` (a run with --suite udp does not wipe
    the tcp table); a block written before suites existed counts as the tcp sub-block."""
    prev = {m.group(1): m.group(2).strip("\n") for m in _SUB.finditer(old)}
    if not prev and old.strip():
        prev["tcp"] = old.strip("\n")
    new = readme_parts(data)
    chunks = []
    for suite in README_SUITES:
        text = new.get(suite, prev.get(suite))
        if text:
            chunks.append(f"<!-- perf-suite:{suite} -->\n{text}\n<!-- /perf-suite:{suite} -->")
    return "\n\n".join(chunks)


def replace_readme(path, data):
    with open(path) as f:
        text = f.read()
    pat = re.compile(r"(<!-- perf-table -->)(.*?)(<!-- /perf-table -->)", re.S)
    m = pat.search(text)
    if not m:
        raise ValueError(f"{path}: no <!-- perf-table --> ... <!-- /perf-table --> block")
    block = readme_block(data, m.group(2))
    text = text[:m.start()] + m.group(1) + "\n" + block + "\n" + m.group(3) + text[m.end():]
    with open(path, "w") as f:
        f.write(text)


def chart(data, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        import sys
        print("matplotlib not available (apt-get install python3-matplotlib): no chart",
              file=sys.stderr)
        return False
    subjects = [s for s in data["subjects"] if data["subjects"][s].get("metrics")]
    if not subjects:
        return False
    colors = ["#7f7f7f" if s == "direct" else "#d62728" if s.startswith("ringfwd")
              else "#1f77b4" for s in subjects]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))

    def bars(ax, key, title, fmt):
        vals = [value(data, s, key) or 0.0 for s in subjects]
        b = ax.bar(subjects, vals, color=colors)
        ax.set_title(title)
        ax.bar_label(b, labels=[fmt.format(v) for v in vals], fontsize=8)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)

    ax = axes[0][0]
    x = range(len(subjects))
    w = 0.4
    v1 = [value(data, s, "gbit_1") or 0.0 for s in subjects]
    v8 = [value(data, s, "gbit_8") or 0.0 for s in subjects]
    b1 = ax.bar([i - w / 2 for i in x], v1, w, label="1 stream", color=colors)
    b8 = ax.bar([i + w / 2 for i in x], v8, w, label="8 streams", color=colors, alpha=0.55)
    ax.bar_label(b1, labels=[f"{v:.1f}" for v in v1], fontsize=7)
    ax.bar_label(b8, labels=[f"{v:.1f}" for v in v8], fontsize=7)
    ax.set_xticks(list(x))
    ax.set_xticklabels(subjects, rotation=30, fontsize=8)
    ax.set_title("iperf3 throughput, Gbit/s (solid 1 stream, light 8 streams)")
    bars(axes[0][1], "req_s", "keep-alive requests/s (wrk -c64)", "{:,.0f}")
    bars(axes[1][0], "conn_s", "new connections/s (wrk, Connection: close)", "{:,.0f}")
    ax = axes[1][1]
    pss = [value(data, s, "pss_per_conn") or 0.0 for s in subjects]
    ker = [value(data, s, "kernel_per_conn") or 0.0 for s in subjects]
    ax.bar(subjects, ker, color="#bcbd22", label="kernel (all sockets of the test)")
    b = ax.bar(subjects, pss, bottom=ker, color="#17becf", label="proxy PSS")
    ax.bar_label(b, labels=[f"{k + p:,.0f}" for k, p in zip(ker, pss)], fontsize=8)
    ax.set_title(f"memory per idle connection, bytes ({data['params']['idle_conns']} conns)")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.legend(fontsize=8)
    fig.suptitle(f"ringfwd perf lab {data['date']} ({data['mode']}), "
                 f"{data.get('machine', {}).get('nproc')} vCPU, Linux "
                 f"{data.get('machine', {}).get('kernel')}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def suites_chart(data, path):
    """One row of bar charts a suite: the headline figures of each subject."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = {"udp": [("recv_pps_64", "UDP 64 B: received packets/s"),
                      ("gbit_1400", "UDP 1400 B: received Gbit/s")],
              "sni": [("conn_s", "SNI passthrough: new TLS connections/s (full handshakes)"),
                      ("bulk_gbit", "SNI passthrough: bulk Gbit/s")],
              "terminate": [("conn_s", "TLS terminate: full handshakes/s"),
                            ("bulk_gbit", "TLS terminate: bulk Gbit/s")]}
    rows = [s for s in data["suites"] if s in panels]
    if not rows:
        return False
    fig, axes = plt.subplots(len(rows), 2, figsize=(13, 3.6 * len(rows)), squeeze=False)
    for i, suite in enumerate(rows):
        sd = data["suites"][suite]
        # plain http (no TLS) would dwarf the TLS subjects: it is in the tables only
        subjects = [s for s in sd["subjects"] if s != "direct-http"]
        colors = ["#7f7f7f" if s.startswith("direct") else "#d62728" if s.startswith("ringfwd")
                  else "#1f77b4" for s in subjects]
        for j, (key, title) in enumerate(panels[suite]):
            ax = axes[i][j]
            fmt = next(f for k, _, _, f in SUITE_METRICS[suite] if k == key)
            vals = [suite_value(sd, s, key, suite) or 0.0 for s in subjects]
            b = ax.bar(subjects, vals, color=colors)
            ax.bar_label(b, labels=[fmt.format(v) for v in vals], fontsize=8)
            ax.set_title(title, fontsize=10)
            ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    fig.suptitle(f"ringfwd perf lab {data['date']} ({data['mode']}): udp, sni, terminate",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_all(data, out, readme=None, write_json=True):
    os.makedirs(out, exist_ok=True)
    # A run that includes the tcp suite (the default run) writes <date>.* and latest.md as
    # before; a run of other suites only (--suite udp,sni) writes <date>-udp-sni.* and
    # latest-udp-sni.md, so it does not overwrite the day's tcp results.
    run = data.get("params", {}).get("suites") or ["tcp"]
    tag = "" if "tcp" in run else "-" + "-".join(run)
    stem = data["date"] + tag
    paths = []
    if write_json:
        p = os.path.join(out, f"{stem}.json")
        with open(p, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
        paths.append(p)
    md = markdown(data)
    for name in (f"{stem}.md", f"latest{tag}.md"):
        p = os.path.join(out, name)
        with open(p, "w") as f:
            f.write(md)
        paths.append(p)
    p = os.path.join(out, f"{stem}.png")
    if data["subjects"] and chart(data, p):
        paths.append(p)
    p = os.path.join(out, f"{stem}-suites.png")
    if data.get("suites") and suites_chart(data, p):
        paths.append(p)
    if readme:
        replace_readme(readme, data)
        paths.append(readme)
    return paths
