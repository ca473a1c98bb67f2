"""The perf lab's udp, sni and terminate suites (perf/lab --suite ...).

Each suite starts its subjects once, runs every load round-robin over them (like the tcp
suite's load phase), and records for each subject and load the figures and the CPU the
subject's processes used (utime+stime from /proc, the same helpers as the tcp suite).
See perf/README.md for what is measured and why.

`H` is the lab module itself (perf/lab), set by it before use: Lab, LabError, log, render,
group_cpu_seconds, system_cpu, parse_wrk, listening, port_free, LIMITS, CLK_TCK, HOST.
"""
import json
import os
import shutil
import signal
import subprocess
import time

H = None  # set by perf/lab

LABD = os.path.dirname(os.path.abspath(__file__))
SUITES = ["tcp", "udp", "sni", "terminate"]
NEW_SUITES = ["udp", "sni", "terminate"]

P_HTTPS = 17101     # nginx https backend (sni suite)
P_HTTP = 17102      # nginx plain http backend with /big (terminate suite)
P_SINK = 17103      # udpload sink (udp suite), UDP
UDP_BASE = 17110    # udp suite subjects: UDP_BASE + i
SNI_BASE = 17120    # sni suite subjects
TERM_BASE = 17140   # terminate suite subjects
NAME_A = "a.example.test"
NAME_B = "b.example.test"
BODY = "x" * 63 + "\n"

# suite -> [(subject, kind, listen port)] in run and table order
SUBJECTS = {
    "udp": [("direct", "direct", P_SINK), ("ringfwd", "ringfwd", UDP_BASE + 1),
            ("nginx", "nginx", UDP_BASE + 2), ("socat", "socat", UDP_BASE + 3)],
    "sni": [("direct", "direct", P_HTTPS), ("ringfwd-sni", "ringfwd", SNI_BASE + 1),
            ("ringfwd-tcp", "ringfwd", SNI_BASE + 2), ("haproxy-sni", "haproxy", SNI_BASE + 3)],
    "terminate": [("direct-http", "direct", P_HTTP),
                  ("ringfwd-ecdsa", "ringfwd", TERM_BASE + 1),
                  ("haproxy-ecdsa", "haproxy", TERM_BASE + 2),
                  ("ringfwd-rsa", "ringfwd", TERM_BASE + 3),
                  ("haproxy-rsa", "haproxy", TERM_BASE + 4)],
}

# The comparisons each suite exists for: (subject, base, metric key, goal or None, what).
GOALS = {
    "udp": [("ringfwd", "nginx", "recv_pps_64", 2.0, "≥ 2× nginx"),
            ("ringfwd", "nginx", "recv_pps_1400", 2.0, "≥ 2× nginx"),
            ("ringfwd", "nginx", "gbit_1400", 2.0, "≥ 2× nginx"),
            ("ringfwd", "socat", "recv_pps_64", None, ""),
            ("ringfwd", "direct", "recv_pps_64", None, ""),
            ("ringfwd", "direct", "gbit_1400", None, "")],
    "sni": [("ringfwd-sni", "haproxy-sni", "conn_s", 1.2, "≥ 1.2× HAProxy"),
            ("ringfwd-sni", "ringfwd-tcp", "bulk_gbit", 0.9, "within 10 % of plain TCP route"),
            ("ringfwd-sni", "haproxy-sni", "bulk_gbit", None, ""),
            ("ringfwd-sni", "haproxy-sni", "us_per_conn", None, "proxy CPU per connection"),
            ("haproxy-sni", "direct", "conn_s", None, "ceiling of any conn/s ratio"),
            ("ringfwd-sni", "direct", "conn_s", None, "")],
    "terminate": [("ringfwd-ecdsa", "haproxy-ecdsa", "conn_s", 1.0, "≥ HAProxy"),
                  ("ringfwd-ecdsa", "haproxy-ecdsa", "req_s", 1.0, "≥ HAProxy"),
                  ("ringfwd-ecdsa", "haproxy-ecdsa", "bulk_gbit", 1.0, "≥ HAProxy"),
                  ("ringfwd-rsa", "haproxy-rsa", "conn_s", 1.0, "≥ HAProxy"),
                  ("ringfwd-rsa", "haproxy-rsa", "req_s", 1.0, "≥ HAProxy"),
                  ("ringfwd-rsa", "haproxy-rsa", "bulk_gbit", 1.0, "≥ HAProxy"),
                  ("ringfwd-ecdsa", "haproxy-ecdsa", "resumed_s", None, "resumed sessions"),
                  ("ringfwd-rsa", "haproxy-rsa", "resumed_s", None, "resumed sessions"),
                  ("ringfwd-ecdsa", "haproxy-ecdsa", "us_per_conn", None,
                   "proxy CPU per handshake"),
                  ("ringfwd-rsa", "haproxy-rsa", "us_per_conn", None,
                   "proxy CPU per handshake")],
}


def log(msg):
    H.log(msg)


# ---------------------------------------------------------------------------------------------
# helpers

def udp_bound(port):
    """True if a UDP socket is bound to 127.0.0.1:port or 0.0.0.0:port (/proc/net/udp)."""
    want = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    try:
        with open("/proc/net/udp") as f:
            next(f)
            return any(line.split()[1] in want for line in f)
    except OSError:
        return False


def udp_port_free(port):
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((H.HOST, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class SuiteSubject:
    """A proxy (or no proxy: kind direct) of one suite: its processes and generated config."""

    def __init__(self, lab, suite, name, kind, port, args):
        self.lab, self.suite, self.name, self.kind, self.port = lab, suite, name, kind, port
        self.args = args
        self.procs = []
        self.config_text = None
        self.exit_codes = []
        self.dir = os.path.join(lab.tmp, f"{suite}-{name}")
        os.makedirs(self.dir, exist_ok=True)

    def cpu(self):
        return sum(H.group_cpu_seconds(p.pid) for p in self.procs) if self.procs else None

    def alive(self):
        for p in self.procs:
            if p.poll() is not None:
                raise H.LabError(f"{self.name}: process exited with code {p.returncode}: "
                                 f"{self.lab.errtext(p).strip()[-600:]}")

    def spawn(self, tag, argv):
        p = self.lab.spawn(f"{self.suite}-{self.name}{tag}", argv)
        self.procs.append(p)
        return p

    def write(self, fname, text):
        path = os.path.join(self.dir, fname)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_ringfwd(self, routes, dataplane="auto"):
        exe = self.args.ringfwd
        if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
            raise H.LabError(f"ringfwd binary not found or not executable: {exe}")
        cfg = {"role": "edge", "dataplane": dataplane, "workers": 0,
               "state_dir": os.path.join(self.dir, "state"),
               "limits": {"max_connections": 100000}, "routes": routes}
        self.config_text = json.dumps(cfg, indent=2)
        path = self.write("ringfwd.json", self.config_text + "\n")
        p = self.spawn("", [exe, "--config", path, "--bus", "none"])
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise H.LabError(f"ringfwd failed to start, exit code {p.returncode}: "
                                 f"{self.lab.errtext(p).strip()[-800:]}")
            if "ready:" in self.lab.errtext(p, limit=100000):
                return
            time.sleep(0.02)
        raise H.LabError(f"ringfwd did not log 'ready:' within 10 s: "
                         f"{self.lab.errtext(p).strip()[-800:]}")

    def start_haproxy(self, template, **kw):
        self.config_text = H.render(template, prefix=self.dir, maxconn=H.LIMITS["maxconn"], **kw)
        path = self.write("haproxy.cfg", self.config_text)
        rc, out, err = self.lab.run(["haproxy", "-c", "-q", "-f", path], 20, "haproxy -c")
        if rc != 0:
            raise H.LabError(f"haproxy config check failed: {(out + err).strip()[-800:]}")
        self.spawn("", ["haproxy", "-db", "-f", path])

    def start_nginx(self, template, **kw):
        self.config_text = H.render(template, prefix=self.dir, nofile=H.LIMITS["nofile"],
                                    worker_connections=H.LIMITS["worker_connections"], **kw)
        path = self.write("nginx.conf", self.config_text)
        self.spawn("", ["nginx", "-c", path, "-p", self.dir + "/",
                        "-e", os.path.join(self.dir, "error.log")])

    def wait_ready(self, tcp=(), udp=()):
        deadline = time.monotonic() + 10.0
        while not (all(H.listening(q) for q in tcp) and all(udp_bound(q) for q in udp)):
            self.alive()
            if time.monotonic() > deadline:
                raise H.LabError(f"{self.name} not listening on tcp {list(tcp)} / udp "
                                 f"{list(udp)} after 10 s: "
                                 + " ".join(self.lab.errtext(p).strip()[-300:] for p in self.procs))
            time.sleep(0.02)
        self.alive()

    def stop(self):
        for p in list(self.procs):
            self.exit_codes.append(self.lab.stop(p))
        self.procs = []


def cpu_fields(r, subj, d_cpu, seconds, units=None):
    """Adds the proxy's CPU figures to result r."""
    if d_cpu is None:
        return r
    r["proxy_cpu_seconds"] = round(d_cpu, 3)
    r["proxy_cpu_pct"] = 100.0 * d_cpu / seconds if seconds else None
    if units:
        for key, (n, scale) in units.items():
            r[key] = scale * d_cpu / n if n else None
    return r


# ---------------------------------------------------------------------------------------------
# loads

def measure_udp(lab, subj, exe, size, seconds, flows, batch):
    """udpload send -> subject -> udpload sink (fresh); sent/received packets, proxy CPU."""
    sink = lab.spawn(f"udp-sink-{subj.name}-{size}", [exe, "sink", "--host", H.HOST,
                                                       "--port", str(P_SINK),
                                                       "--max-seconds", str(seconds + 60)])
    try:
        deadline = time.monotonic() + 5.0
        while not udp_bound(P_SINK):
            if sink.poll() is not None or time.monotonic() > deadline:
                raise H.LabError(f"udp sink did not start: {lab.errtext(sink)[-300:]}")
            time.sleep(0.01)
        subj.alive()
        cpu0, sys0 = subj.cpu(), H.system_cpu()
        rc, out, err = lab.run([exe, "send", "--host", H.HOST, "--port", str(subj.port),
                                "--size", str(size), "--seconds", str(seconds),
                                "--flows", str(flows), "--batch", str(batch)],
                               seconds + 20, "udpload send")
        time.sleep(0.3)  # what the proxy still holds in its queues reaches the sink
        cpu1, sys1 = subj.cpu(), H.system_cpu()
        os.killpg(sink.pid, signal.SIGTERM)
        try:
            sink.wait(5)
        except subprocess.TimeoutExpired:
            pass
        with open(os.path.join(lab.tmp, f"{sink.lab_name}.out")) as f:
            sink_text = f.read()
    finally:
        lab.stop(sink, timeout=2.0)
    try:
        snd = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise H.LabError(f"udpload send: no result (rc {rc}): {(out + err).strip()[-400:]}")
    if snd.get("error"):
        raise H.LabError(f"udp {size} B: {snd['error']}")
    try:
        rcv = json.loads(sink_text.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise H.LabError(f"udp sink: no result: {sink_text[-300:]}")
    secs = snd["seconds"]
    r = {
        "payload_bytes": size, "flows": flows, "batch": batch, "seconds": secs,
        "sent_packets": snd["packets"], "send_errors": snd["send_errors"],
        "recv_packets": rcv["packets"], "recv_bytes": rcv["bytes"],
        "sent_pps": snd["packets"] / secs,
        "recv_pps": rcv["packets"] / secs,
        "loss_pct": 100.0 * (1 - rcv["packets"] / snd["packets"]) if snd["packets"] else None,
        "recv_gbit_s": 8 * rcv["bytes"] / secs / 1e9,
        "machine_cpu_pct": 100.0 * (sys1[0] - sys0[0]) / max(1, sys1[1] - sys0[1]),
    }
    if rcv["packets"] <= 0:
        raise H.LabError(f"udp {size} B: nothing reached the sink "
                         f"({snd['packets']} sent, {snd['send_errors']} send errors)")
    d = None if cpu0 is None else cpu1 - cpu0
    return cpu_fields(r, subj, d, secs, {"proxy_cpu_ns_per_pkt": (rcv["packets"], 1e9)})


def wrk_argv(hosts, seconds, url, close, noresume=None, conns=32):
    """wrk in a private mount namespace whose /etc/hosts maps the test names to 127.0.0.1:
    wrk takes the TLS SNI from the URL's host and resolves it with getaddrinfo, and has no
    --resolve. The bind mount lives only in wrk's namespace. noresume: the path of the
    LD_PRELOAD shim (noresume.c) that makes every TLS connection a full handshake."""
    argv = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "2s"]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(url)
    if noresume:
        argv = ["env", f"LD_PRELOAD={noresume}"] + argv
    if hosts is None:
        return argv
    return ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"',
            hosts] + argv


def measure_wrk(lab, subj, hosts, url, seconds, close, noresume=None):
    subj.alive()
    cpu0, sys0 = subj.cpu(), H.system_cpu()
    rc, out, err = lab.run(wrk_argv(hosts, seconds, url, close, noresume), seconds + 20, "wrk")
    cpu1, sys1 = subj.cpu(), H.system_cpu()
    r = H.parse_wrk(out)
    r["connection_close"] = close
    r["tls_resumption"] = None if not url.startswith("https") else not noresume
    r["seconds"] = seconds
    r["url"] = url
    r["machine_cpu_pct"] = 100.0 * (sys1[0] - sys0[0]) / max(1, sys1[1] - sys0[1])
    what = "wrk (Connection: close)" if close else "wrk (keep-alive)"
    if rc != 0 or r["requests"] <= 0 or r["req_s"] <= 0:
        raise H.LabError(f"{what} {url}: carried no traffic (rc {rc}): "
                         f"{(out + err).strip()[-400:]}")
    errs = r["socket_errors"]
    bad = r["non_2xx"] + sum(errs.values()) if close else \
        r["non_2xx"] + errs.get("connect", 0) + errs.get("timeout", 0)
    if bad > 0.01 * r["requests"]:
        raise H.LabError(f"{what} {url}: {bad} errors for {r['requests']} requests: "
                         f"{out.strip()[-400:]}")
    d = None if cpu0 is None else cpu1 - cpu0
    return cpu_fields(r, subj, d, seconds, {"proxy_cpu_us_per_req": (r["requests"], 1e6)})


def measure_bulk(lab, subj, url, resolve, repeats, max_bytes, max_seconds):
    """curl downloads of /big (a max_bytes file, at most max_seconds each): the median run."""
    runs = []
    for _ in range(repeats):
        subj.alive()
        argv = ["curl", "-sk", "-o", "/dev/null", "--max-time", str(max_seconds),
                "-w", "%{size_download} %{time_total} %{time_appconnect} %{http_code}"]
        if resolve:
            argv += ["--resolve", resolve]
        argv.append(url)
        cpu0 = subj.cpu()
        rc, out, err = lab.run(argv, max_seconds + 15, "curl")
        cpu1 = subj.cpu()
        try:
            size, total, tls, code = out.split()
            size, total = int(size), float(total)
        except ValueError:
            raise H.LabError(f"curl {url}: rc {rc}: {(out + err).strip()[-300:]}")
        if rc not in (0, 28) or size <= 0 or code not in ("200", "206"):
            raise H.LabError(f"curl {url}: rc {rc}, HTTP {code}, {size} bytes: {err.strip()[-300:]}")
        r = {"bytes": size, "seconds": total, "gbit_s": 8 * size / total / 1e9,
             "mbyte_s": size / total / 1e6, "timed_out": rc == 28}
        d = None if cpu0 is None else cpu1 - cpu0
        runs.append(cpu_fields(r, subj, d, total, {"proxy_cpu_s_per_gb": (size, 1e9)}))
    runs.sort(key=lambda r: r["gbit_s"])
    chosen = dict(runs[(len(runs) - 1) // 2])
    if len(runs) > 1:
        chosen["repeats"] = [round(r["gbit_s"], 3) for r in runs]
    if all(r.get("proxy_cpu_seconds") is not None for r in runs):
        # the CPU of every download, not only the median one (background CPU accounting)
        chosen["own_cpu_seconds"] = round(sum(r["proxy_cpu_seconds"] for r in runs), 3)
    return chosen


def tls_info(lab, port):
    """Protocol, cipher and key exchange the subject negotiates with OpenSSL's client."""
    try:
        p = subprocess.run(["openssl", "s_client", "-connect", f"{H.HOST}:{port}",
                            "-servername", NAME_A, "-brief"], input=b"", capture_output=True,
                           timeout=10)
        text = (p.stdout + p.stderr).decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": str(e)}
    info = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        k = k.strip().lower()
        if k in ("protocol version", "ciphersuite", "peer signature type",
                 "server temp key", "peer certificate"):
            info[k.replace(" ", "_")] = v.strip()
    return info


# ---------------------------------------------------------------------------------------------
# suites

def make_certs(lab, tmp):
    """Self-signed certificates for a.example.test/b.example.test: ECDSA P-256 and RSA-2048;
    PEM cert + key (ringfwd, nginx) and cert+key in one file (HAProxy)."""
    d = os.path.join(tmp, "certs")
    os.makedirs(d, exist_ok=True)
    out = {}
    for alg, newkey in (("ecdsa", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                        ("rsa", ["-newkey", "rsa:2048"])):
        cert, key = os.path.join(d, f"{alg}.pem"), os.path.join(d, f"{alg}.key")
        rc, o, e = lab.run(["openssl", "req", "-x509", *newkey, "-nodes", "-keyout", key,
                            "-out", cert, "-days", "30", "-subj", f"/CN={NAME_A}",
                            "-addext", f"subjectAltName=DNS:{NAME_A},DNS:{NAME_B}"],
                           60, "openssl req")
        if rc != 0:
            raise H.LabError(f"openssl req ({alg}): {(o + e).strip()[-300:]}")
        combined = os.path.join(d, f"{alg}.combined.pem")
        with open(combined, "w") as f:
            f.write(open(cert).read() + open(key).read())
        os.chmod(key, 0o644)  # nginx workers and ringfwd read it as whoever they run as
        out[alg] = {"cert": cert, "key": key, "combined": combined}
    return out


def start_tls_backend(lab, tmp, certs, big_bytes):
    d = os.path.join(tmp, "backend-tls")
    os.makedirs(os.path.join(d, "www"), exist_ok=True)
    with open(os.path.join(d, "www", "big"), "wb") as f:
        f.truncate(big_bytes)  # sparse: zeros from the page cache, no disk
    # nginx's workers (not root) read /big: the temp dir is 0700 (mkdtemp); let them through
    os.chmod(tmp, 0o711)
    os.chmod(d, 0o711)
    os.chmod(os.path.join(d, "www"), 0o755)
    os.chmod(os.path.join(d, "www", "big"), 0o644)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(H.render("nginx-tls-backend.conf.in", prefix=d, https_port=P_HTTPS,
                         http_port=P_HTTP, big_mib=big_bytes >> 20,
                         cert=certs["ecdsa"]["cert"], key=certs["ecdsa"]["key"],
                         body=BODY[:-1] + "\\n", nofile=H.LIMITS["nofile"],
                         worker_connections=H.LIMITS["worker_connections"]))
    p = lab.spawn("backend-tls", ["nginx", "-c", conf, "-p", d + "/",
                                  "-e", os.path.join(d, "error.log")])
    H.wait_listening(lab, p, [P_HTTPS, P_HTTP], 10.0, "nginx TLS backend")
    return p


def build_noresume(lab, tmp):
    so = os.path.join(tmp, "noresume.so")
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise H.LabError("no C compiler (cc/gcc) to build perf/lab.d/noresume.c")
    rc, o, e = lab.run([cc, "-shared", "-fPIC", "-O2", "-o", so,
                        os.path.join(LABD, "noresume.c"), "-ldl"], 60, "cc noresume")
    if rc != 0:
        raise H.LabError(f"building noresume.so failed: {(o + e).strip()[-600:]}")
    return so


def build_udpload(lab, tmp):
    exe = os.path.join(tmp, "udpload")
    cxx = shutil.which("c++") or shutil.which("g++")
    if not cxx:
        raise H.LabError("no C++ compiler (c++/g++) to build perf/lab.d/udpload.cpp")
    rc, o, e = lab.run([cxx, "-O2", "-std=c++17", "-o", exe,
                        os.path.join(LABD, "udpload.cpp")], 120, "c++ udpload")
    if rc != 0:
        raise H.LabError(f"building udpload failed: {(o + e).strip()[-600:]}")
    return exe


def start_subject(suite, subj, ctx):
    """Starts one subject of a suite (kind direct: nothing to start)."""
    k, port = subj.kind, subj.port
    if k == "direct":
        return
    if suite == "udp":
        if k == "ringfwd":
            subj.start_ringfwd([{"id": "lab-udp", "protocol": "udp", "listen": H.HOST,
                                 "listen_port": port,
                                 "target": {"host": H.HOST, "port": P_SINK}}])
        elif k == "nginx":
            subj.start_nginx("nginx-udp.conf.in", listen=f"{H.HOST}:{port}",
                             target=f"{H.HOST}:{P_SINK}")
        elif k == "socat":
            argv = ["socat", "-T", "30", f"UDP4-LISTEN:{port},bind={H.HOST},fork,reuseaddr",
                    f"UDP4:{H.HOST}:{P_SINK}"]
            subj.config_text = " ".join(argv) + "\n"
            subj.spawn("", argv)
        subj.wait_ready(udp=[port])
        return
    if suite == "sni":
        if subj.name == "ringfwd-sni":
            subj.start_ringfwd([
                {"id": "lab-sni-a", "protocol": "tcp", "listen": H.HOST, "listen_port": port,
                 "tls": {"mode": "passthrough", "domains": [NAME_A]},
                 "target": {"host": H.HOST, "port": P_HTTPS}},
                # b goes to the plain http port: misrouted TLS traffic fails loudly
                {"id": "lab-sni-b", "protocol": "tcp", "listen": H.HOST, "listen_port": port,
                 "tls": {"mode": "passthrough", "domains": [NAME_B]},
                 "target": {"host": H.HOST, "port": P_HTTP}}])
        elif subj.name == "ringfwd-tcp":
            subj.start_ringfwd([{"id": "lab-tcp", "protocol": "tcp", "listen": H.HOST,
                                 "listen_port": port,
                                 "target": {"host": H.HOST, "port": P_HTTPS}}])
        elif k == "haproxy":
            subj.start_haproxy("haproxy-sni.cfg.in", listen=f"{H.HOST}:{port}",
                               name_a=NAME_A, name_b=NAME_B,
                               target_a=f"{H.HOST}:{P_HTTPS}", target_b=f"{H.HOST}:{P_HTTP}")
        subj.wait_ready(tcp=[port])
        return
    if suite == "terminate":
        alg = subj.name.split("-")[1]
        c = ctx["certs"][alg]
        if k == "ringfwd":
            subj.start_ringfwd([{"id": f"lab-term-{alg}", "protocol": "tcp", "listen": H.HOST,
                                 "listen_port": port,
                                 "tls": {"mode": "terminate", "domains": [NAME_A, NAME_B],
                                         "cert": c["cert"], "key": c["key"]},
                                 "target": {"host": H.HOST, "port": P_HTTP}}])
        elif k == "haproxy":
            subj.start_haproxy("haproxy-tls.cfg.in", listen=f"{H.HOST}:{port}",
                               crt=c["combined"], target=f"{H.HOST}:{P_HTTP}", alg=alg)
        subj.wait_ready(tcp=[port])
        return
    raise H.LabError(f"unknown suite {suite}")


def loads_of(suite, p):
    """[(load key, description, callable(lab, subj, ctx) -> result)] of a suite."""
    if suite == "udp":
        out = []
        for size in p["udp_sizes"]:
            out.append((f"udp_{size}", f"udpload {size} B, {p['udp_seconds']} s",
                        lambda lab, s, ctx, size=size: measure_udp(
                            lab, s, ctx["udpload"], size, p["udp_seconds"], p["udp_flows"],
                            p["udp_batch"])))
        return out

    def url(s, path="/"):
        scheme = "http" if s.name == "direct-http" else "https"
        host = H.HOST if scheme == "http" else NAME_A
        return f"{scheme}://{host}:{s.port}{path}"

    def resolve(s):
        return None if s.name == "direct-http" else f"{NAME_A}:{s.port}:{H.HOST}"

    wrk_close = ("wrk_close", f"wrk -c32 Connection: close, full handshakes, "
                              f"{p['tls_seconds']} s",
                 lambda lab, s, ctx: measure_wrk(lab, s, ctx["hosts"], url(s), p["tls_seconds"],
                                                 True, ctx["noresume"]))
    wrk_resume = ("wrk_resume", f"wrk -c32 Connection: close, resumed sessions, "
                                f"{p['tls_seconds']} s",
                  lambda lab, s, ctx: measure_wrk(lab, s, ctx["hosts"], url(s),
                                                  p["tls_seconds"], True))
    wrk_ka = ("wrk_keepalive", f"wrk -c32 keep-alive, {p['tls_seconds']} s",
              lambda lab, s, ctx: measure_wrk(lab, s, ctx["hosts"], url(s), p["tls_seconds"],
                                              False))
    bulk = ("bulk", f"curl /big x{p['bulk_repeats']} (≤ {p['bulk_bytes'] >> 20} MiB, "
                    f"≤ {p['bulk_max_seconds']} s)",
            lambda lab, s, ctx: measure_bulk(lab, s, url(s, "/big"), resolve(s),
                                             p["bulk_repeats"], p["bulk_bytes"],
                                             p["bulk_max_seconds"]))
    if suite == "sni":
        return [wrk_close, bulk]
    return [wrk_close, wrk_resume, wrk_ka, bulk]


def suite_params(quick, seconds, repeat):
    return {
        "repeat": repeat,
        "udp_seconds": seconds or (1 if quick else 5),
        "udp_sizes": [64, 1400],
        "udp_flows": 4,
        "udp_batch": 32,
        "tls_seconds": seconds or (1 if quick else 5),
        "wrk": "-t2 -c32 --timeout 2s",
        "bulk_repeats": 1 if quick else 3,
        "bulk_bytes": (256 if quick else 1024) << 20,
        "bulk_max_seconds": 3 if quick else 10,
    }


def budget(suites, p):
    """Upper bound of the seconds the suites may take (the lab's backstop alarm)."""
    t = 0
    for s in suites:
        n = len(SUBJECTS[s])
        if s == "udp":
            t += 30 + p["repeat"] * n * len(p["udp_sizes"]) * (p["udp_seconds"] + 25)
        else:
            per = 3 * (p["tls_seconds"] + 20) + p["bulk_repeats"] * (p["bulk_max_seconds"] + 15)
            t += 60 + p["repeat"] * n * per
    return t


def check_ports(suites):
    busy = []
    need_tcp, need_udp = set(), set()
    for s in suites:
        for name, kind, port in SUBJECTS[s]:
            (need_udp if s == "udp" else need_tcp).add(port)
    if "sni" in suites or "terminate" in suites:
        need_tcp |= {P_HTTPS, P_HTTP}
    busy += [f"tcp {q}" for q in sorted(need_tcp) if not H.port_free(q)]
    busy += [f"udp {q}" for q in sorted(need_udp) if not udp_port_free(q)]
    if busy:
        raise H.LabError(f"ports in use on {H.HOST}: {busy} (the lab uses 17000-17199)")


def run_suites(lab, suites, args, p, data, failed):
    """Runs the udp/sni/terminate suites named in `suites` into data["suites"]."""
    if not suites:
        return
    check_ports(suites)
    ctx = {}
    tmp = lab.tmp
    backend = None
    if "udp" in suites:
        ctx["udpload"] = build_udpload(lab, tmp)
    if "sni" in suites or "terminate" in suites:
        ctx["certs"] = make_certs(lab, tmp)
        ctx["noresume"] = build_noresume(lab, tmp)
        backend = start_tls_backend(lab, tmp, ctx["certs"], p["bulk_bytes"])
        hosts = os.path.join(tmp, "hosts")
        with open(hosts, "w") as f:
            f.write(f"127.0.0.1 localhost\n127.0.0.1 {NAME_A} {NAME_B}\n")
        ctx["hosts"] = hosts
        rc, o, e = lab.run(["unshare", "-m", "sh", "-c",
                            'mount --bind "$0" /etc/hosts && exec getent hosts "$1"',
                            hosts, NAME_A], 20, "unshare")
        if rc != 0 or "127.0.0.1" not in o:
            raise H.LabError(f"wrk needs {NAME_A} to resolve to 127.0.0.1 in a private mount "
                             f"namespace (unshare -m + bind-mounted /etc/hosts; needs "
                             f"CAP_SYS_ADMIN): rc {rc}: {(o + e).strip()[-300:]}")
    data.setdefault("suites", {})
    for suite in suites:
        sd = {"params": p, "subjects": {}}
        data["suites"][suite] = sd
        log(f"suite {suite}: subjects {', '.join(n for n, _, _ in SUBJECTS[suite])}")
        live = []

        def fail(name, e):
            sd["subjects"][name]["ok"] = False
            sd["subjects"][name]["error"] = str(e)
            failed.append(f"{suite}/{name}")
            log(f"{suite}/{name}: FAILED: {e}")

        try:
            for name, kind, port in SUBJECTS[suite]:
                sd["subjects"][name] = {"kind": kind, "port": port, "ok": True, "metrics": {}}
                subj = SuiteSubject(lab, suite, name, kind, port, args)
                live.append(subj)
                try:
                    start_subject(suite, subj, ctx)
                    sd["subjects"][name]["config"] = subj.config_text
                    if suite != "udp" and name != "direct-http":
                        sd["subjects"][name]["tls"] = tls_info(lab, port)
                except H.LabError as e:
                    fail(name, e)
            ok = [s for s in live if sd["subjects"][s.name]["ok"]]
            cpu_start = {s.name: s.cpu() for s in ok}
            own = {s.name: 0.0 for s in ok}
            runs = {s.name: {} for s in ok}
            for rnd in range(p["repeat"]):
                for key, what, fn in loads_of(suite, p):
                    k = rnd % max(1, len(ok))
                    for subj in ok[k:] + ok[:k]:
                        if not sd["subjects"][subj.name]["ok"]:
                            continue
                        log(f"{suite}/{subj.name}: {what}")
                        try:
                            res = fn(lab, subj, ctx)
                            runs[subj.name].setdefault(key, []).append(res)
                            own[subj.name] += (res.get("own_cpu_seconds")
                                               or res.get("proxy_cpu_seconds") or 0.0)
                        except H.LabError as e:
                            fail(subj.name, e)
                        if backend is not None and backend.poll() is not None:
                            raise H.LabError(f"nginx TLS backend died: "
                                             f"{lab.errtext(backend)[-300:]}")
            for subj in ok:
                r = sd["subjects"][subj.name]
                for key, lst in runs[subj.name].items():
                    prim = {"bulk": "gbit_s"}.get(key, "recv_pps" if suite == "udp" else "req_s")
                    lst = sorted(lst, key=lambda x: x[prim])
                    r["metrics"][key] = dict(lst[(len(lst) - 1) // 2])
                    if len(lst) > 1:
                        r["metrics"][key]["round_values"] = [x[prim] for x in lst]
                if subj.procs and r["ok"]:
                    bg = subj.cpu() - cpu_start[subj.name] - own[subj.name]
                    r["background_cpu_seconds"] = round(bg, 3)
                    if bg > 1.0 * p["repeat"]:
                        r["warning"] = f"used {bg:.2f} CPU s while idle (others' loads)"
                        log(f"{suite}/{subj.name}: warning: {r['warning']}")
                    try:
                        subj.alive()
                    except H.LabError as e:
                        fail(subj.name, e)
        except H.Interrupted as e:
            for s in live:
                if sd["subjects"][s.name]["ok"]:
                    fail(s.name, f"interrupted ({e})")
            raise
        finally:
            for subj in live:
                if subj.procs:
                    subj.stop()
                    r = sd["subjects"][subj.name]
                    r["exit_codes"] = subj.exit_codes
                    if subj.kind == "ringfwd" and subj.exit_codes != [0] and r.get("ok"):
                        r["warning"] = f"exit code {subj.exit_codes} on SIGTERM (expected 0)"
                        log(f"{suite}/{subj.name}: warning: {r['warning']}")
    if backend is not None:
        lab.stop(backend)
