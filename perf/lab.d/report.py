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


def add_ratios(data):
    """data["ratios"]["vs_haproxy"|"vs_direct"][subject][metric] = subject / base."""
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
            f"iperf3 {v.get('iperf3')}, wrk {v.get('wrk')}. Loads: iperf3 {p['iperf_seconds']} s, "
            f"wrk -t2 -c64 {p['wrk_seconds']} s, {p['idle_conns']} idle connections"
            f"{' (' + p['idle_conns_note'] + ')' if p.get('idle_conns_note') else ''}. "
            f"Load average at start {la[0]:.2f}.")


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
    parts = [f"## ringfwd perf lab — {data['date']}", "", summary_line(data), "", table(data), ""]
    if BASE_DIRECT in data["subjects"] and len(data["subjects"]) > 1:
        parts += ["Against direct (no proxy):", "", direct_table(data), ""]
    parts += ["CPU detail (machine = the whole machine from /proc/stat: client, proxy, backend "
              "and anything else running):", "", cpu_table(data), ""]
    parts += ["Memory detail (deltas while the idle connections are held):", "",
              memory_table(data), ""]
    parts += [NOTES, ""]
    warn = {k: s["warning"] for k, s in data["subjects"].items() if s.get("warning")}
    if warn:
        parts += ["**Warnings:**", ""] + [f"- {k}: {w}" for k, w in warn.items()] + [""]
    failed = {k: s.get("error") for k, s in data["subjects"].items() if not s.get("ok")}
    if failed or data.get("error"):
        parts.append("**Failures:**")
        parts.append("")
        for k, e in failed.items():
            parts.append(f"- {k}: {e}")
        if data.get("error"):
            parts.append(f"- lab: {data['error']}")
        parts.append("")
    return "\n".join(parts)


def readme_block(data):
    return "\n".join([summary_line(data), "", table(data), "",
                      "Ratios in brackets: against HAProxy (plain), same run. "
                      "Details: `perf/README.md`, raw numbers: `perf/results/`."])


def replace_readme(path, block):
    with open(path) as f:
        text = f.read()
    pat = re.compile(r"(<!-- perf-table -->)(.*?)(<!-- /perf-table -->)", re.S)
    if not pat.search(text):
        raise ValueError(f"{path}: no <!-- perf-table --> ... <!-- /perf-table --> block")
    text = pat.sub(lambda m: m.group(1) + "\n" + block + "\n" + m.group(3), text, count=1)
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


def write_all(data, out, readme=None, write_json=True):
    os.makedirs(out, exist_ok=True)
    date = data["date"]
    paths = []
    if write_json:
        p = os.path.join(out, f"{date}.json")
        with open(p, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
        paths.append(p)
    md = markdown(data)
    for name in (f"{date}.md", "latest.md"):
        p = os.path.join(out, name)
        with open(p, "w") as f:
            f.write(md)
        paths.append(p)
    p = os.path.join(out, f"{date}.png")
    if chart(data, p):
        paths.append(p)
    if readme:
        replace_readme(readme, readme_block(data))
        paths.append(readme)
    return paths
