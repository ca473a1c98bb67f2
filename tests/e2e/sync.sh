#!/usr/bin/env bash
# End-to-end test of edge <-> gateway route sync, gateway health and the hop header, in the
# WireGuard topology of tools/lib/topo.sh (client -> edge -> wireguard-go -> gateway -> LAN).
# The edge has a "sync" section and its API on a private dbus-daemon in the edge namespace;
# the gateway's file says only who it is and where the edge is: its routes come over sync.
#   1  AddRoute on the edge reaches the gateway and carries traffic within 1 s; RemoveRoute
#      stops the gateway's listener within 1 s
#   2  ListGateways / ListRoutes / GetStats show the gateway's health
#   3  a wrong token and an unknown gateway id are refused; they apply nothing
#   4  edge restart: the gateway keeps serving, reconnects, is not sent its unchanged set again
#   5  gateway restart while the edge is down: it serves its stored set
#   6  a fake edge (correct handshake) sending invalid sets and bad frames changes nothing
#   7  gateway SIGKILL: the edge marks it offline and refuses its routes' clients at once
#   8  two SNI passthrough routes on edge port 443, one gateway, two LAN TLS servers
#   9  PROXY v2 to the LAN device carries the real client address (through the hop header)
#   10 Wake-on-LAN through a synced route
# Exit 0 pass, 1 fail, 77 skip (no root, no TUN, a tool missing).
# RINGFWD=path/to/ringfwd (meson sets it); E2E_KEEP=1 keeps the work directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source-path=SCRIPTDIR/../..
source "$root/tools/lib/common.sh"
source "$root/tools/lib/topo.sh"
source "$root/tools/lib/lan.sh"
source "$root/tools/lib/ringfwd.sh"

skip() { echo "SKIP: $*"; exit 77; }

RINGFWD=${RINGFWD:-$root/build/src/ringfwd}
# The interpreter itself, not a version manager's shim (pyenv's costs 250 ms a start, which
# would end up in the measured figures).
PY=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || skip "python3 not installed"
# Blocked ports are part of what is checked (the gateway refuses the sync port): no override.
unset RINGFWD_BLOCKED_PORTS
[[ -x $RINGFWD ]] || rf_die "no ringfwd binary at $RINGFWD (set RINGFWD)"
reason=$(topo_unavailable_reason)
[[ -z $reason ]] || skip "$reason"
for tool in python3 ss sha256sum openssl socat busctl dbus-daemon od; do
  rf_have "$tool" || skip "$tool not installed"
done

work=$(mktemp -d /tmp/ringfwd-e2e-sync.XXXXXX)
chmod 755 "$work"
# Our own topology ID: this shell's pid (namespaces rf-PID-*, WireGuard interfaces rfwgPID[eg]),
# so the test runs beside run.sh or tools/dev, and topo_clean_stale knows it is alive.
topo_init "$work" "$$"
failures=0
declare -A FIG=()
edge_pid='' gw_pid='' wrong_pid='' other_pid='' fake_pid='' pid='' st='' st2='' ms='' out=''

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # The daemons before the rest: topo_down stops everything at once, the edge's bus too.
  local p
  for p in ${edge_pid:-} ${gw_pid:-}; do
    if rf_pid_alive "$p"; then rf_stop_pids 10 "$p"; fi
  done
  topo_down
  if ((rc != 0)); then
    local f
    for f in "$work"/*.log; do
      [[ -s $f ]] || continue
      echo "--- last lines of $(basename "$f")"
      tail -n 40 "$f"
    done
  fi
  if [[ ${E2E_KEEP:-0} == 1 ]]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
figure() { FIG[$1]=$2; echo "figure $1=$2"; }

in_client() { ip netns exec "$TOPO_NS_CLIENT" "$@"; }
in_edge() { ip netns exec "$TOPO_NS_EDGE" "$@"; }
in_gw() { ip netns exec "$TOPO_NS_GW" "$@"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

EDGE=$TOPO_EDGE_PUBLIC_IP
LAN=$TOPO_LAN_HOST_IP
SYNC=$TOPO_EDGE_TUNNEL_IP:7946

# ---------------------------------------------------------------- helpers (python3)
# tool.py MODE ...: the clients of the checks, each bounded by its own timeouts.
cat >"$work/tool.py" <<'PY'
import socket, struct, subprocess, sys, time

def line_from(c, limit=4096):
    data = b""
    while not data.endswith(b"\n") and len(data) < limit:
        d = c.recv(limit)
        if not d:
            break
        data += d
    return data

mode = sys.argv[1]
if mode == "probe":  # probe HOST PORT: one connection, prints its first line
    host, port = sys.argv[2], int(sys.argv[3])
    try:
        c = socket.create_connection((host, port), timeout=3)
        c.settimeout(3)
        print(line_from(c).decode(errors="replace").strip() or "(closed)")
    except OSError as e:
        print("error:", e)
elif mode == "addroute":  # addroute EDGE_NS BUS ROUTE_JSON HOST PORT WANT
    ns, bus, route, host, port, want = sys.argv[2:8]
    cmd = ["ip", "netns", "exec", ns, "busctl", "--address=" + bus, "--timeout=5", "call",
           "io.ringfwd1", "/io/ringfwd1", "io.ringfwd1.Manager", "AddRoute", "s", route]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    t0 = time.monotonic()
    if r.returncode != 0:
        print("busctl AddRoute failed:", (r.stderr or r.stdout).strip())
        sys.exit(2)
    tries = 0
    while time.monotonic() - t0 < 5:
        tries += 1
        try:
            c = socket.create_connection((host, int(port)), timeout=0.5)
            c.settimeout(0.5)
            got = line_from(c).strip()
            c.close()
            if got == want.encode():
                print("%d %d" % (round((time.monotonic() - t0) * 1000), tries))
                sys.exit(0)
        except OSError:
            pass
        time.sleep(0.005)
    print("no round trip within 5 s (%d tries)" % tries)
    sys.exit(1)
elif mode == "refusal":  # refusal HOST PORT: how and how fast a connection ends
    host, port = sys.argv[2], int(sys.argv[3])
    t0 = time.monotonic()
    how = "?"
    try:
        c = socket.create_connection((host, port), timeout=3)
        c.settimeout(3)
        d = c.recv(100)
        how = "closed" if not d else "answered:" + d.decode(errors="replace").strip()
    except ConnectionResetError:
        how = "reset"
    except ConnectionRefusedError:
        how = "refused"
    except socket.timeout:
        how = "hang"
    except OSError as e:
        how = "error:" + str(e)
    print(how, round((time.monotonic() - t0) * 1000))
elif mode == "firstbyte":  # firstbyte HOST PORT TIMEOUT: connect to first line, ms
    host, port, limit = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    t0 = time.monotonic()
    try:
        c = socket.create_connection((host, port), timeout=limit)
        c.settimeout(limit)
        got = line_from(c).decode(errors="replace").strip() or "(closed)"
    except OSError as e:
        got = "error:" + str(e).replace(" ", "_")
    print(got, round((time.monotonic() - t0) * 1000))
elif mode == "pp":  # pp HOST PORT: prints the server's line and our own address
    host, port = sys.argv[2], int(sys.argv[3])
    try:
        c = socket.create_connection((host, port), timeout=5)
        c.settimeout(5)
        me = "%s:%d" % c.getsockname()
        print(line_from(c).decode(errors="replace").strip() or "(closed)", "me=" + me)
    except OSError as e:
        print("error:", e)
elif mode == "waitgw":  # waitgw EDGE_NS BUS FIELD=JSON[,FIELD=JSON] TIMEOUT_S START_EPOCH_MS
    # Polls ListGateways until gateway "home" has every FIELD=JSON; prints the milliseconds
    # from START to the answer that showed it (or "timeout").
    import json
    ns, bus, cond, limit, start = sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), int(sys.argv[6])
    want = dict(kv.split("=", 1) for kv in cond.split(","))
    cmd = ["ip", "netns", "exec", ns, "busctl", "--address=" + bus, "--timeout=5", "--json=short",
           "call", "io.ringfwd1", "/io/ringfwd1", "io.ringfwd1.Manager", "ListGateways"]
    deadline = time.time() + limit
    while True:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        now = time.time()
        if r.returncode == 0:
            gws = json.loads(json.loads(r.stdout)["data"][0])
            g = next((g for g in gws if g["id"] == "home"), None)
            if g is not None and all(json.dumps(g.get(k)) == v for k, v in want.items()):
                print(round(now * 1000 - start))
                sys.exit(0)
        if now > deadline:
            print("timeout")
            sys.exit(1)
        time.sleep(0.01)
elif mode == "hop":  # hop HOST PORT ROUTE_ID: a hop header (as the edge sends it), a line back
    host, port, rid = sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    addrs = socket.inet_aton("203.0.113.2") + socket.inet_aton("203.0.113.1") + struct.pack(">HH", 40000, port)
    tlv = b"\xe0" + struct.pack(">H", len(rid)) + rid
    try:
        c = socket.create_connection((host, port), timeout=3)
        c.settimeout(3)
        c.sendall(sig + bytes([0x21, 0x11]) + struct.pack(">H", len(addrs) + len(tlv)) + addrs + tlv)
        print(line_from(c).decode(errors="replace").strip() or "(closed)")
    except OSError as e:
        print("error:", e)
PY

# The LAN device behind a proxy_protocol v2 route: parses the header, answers with the source
# address it carries, the address of its TCP peer, and whether anything else came first.
cat >"$work/ppserver.py" <<'PY'
import socket, struct, sys, threading
host, port = sys.argv[1], int(sys.argv[2])
SIG = b"\r\n\r\n\x00\r\nQUIT\n"
def recvn(c, n):
    b = b""
    while len(b) < n:
        d = c.recv(n - len(b))
        if not d:
            raise EOFError("closed after %d bytes" % len(b))
        b += d
    return b
def handle(c, peer):
    try:
        c.settimeout(5)
        h = recvn(c, 16)
        if h[:12] != SIG:
            c.sendall(b"no-proxy-v2-header\n")
            return
        if h[12] != 0x21 or h[13] != 0x11:
            c.sendall(b"unexpected ver/cmd %02x family %02x\n" % (h[12], h[13]))
            return
        body = recvn(c, struct.unpack(">H", h[14:16])[0])
        src, dst = socket.inet_ntoa(body[0:4]), socket.inet_ntoa(body[4:8])
        sport, dport = struct.unpack(">HH", body[8:12])
        # Anything after the header before we answered (a second PROXY header?) is wrong.
        c.settimeout(0.2)
        try:
            extra = len(c.recv(4096))
        except socket.timeout:
            extra = 0
        c.sendall(("src=%s:%d dst=%s:%d peer=%s extra=%d\n" % (src, sport, dst, dport, peer[0], extra)).encode())
        print("served", peer, "src", src, sport, flush=True)
    except Exception as e:
        print("error", peer, e, flush=True)
    finally:
        c.close()
srv = socket.create_server((host, port))
print("listening", flush=True)
while True:
    c, peer = srv.accept()
    threading.Thread(target=handle, args=(c, peer), daemon=True).start()
PY

# A fake edge that speaks protocol v1 correctly (challenge, welcome with the right proof; it
# checks nothing of the gateway) and then feeds it what must change nothing: invalid route
# sets, a frame with an impossible length, a frame that is not JSON. Prints one line per answer:
#   RESULT NAME {json of the gateway's answer}
cat >"$work/fake_edge.py" <<'PY'
import hashlib, hmac, json, os, socket, struct, sys, time
host, port, token_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
token = open(token_path).read().strip().encode()

def send(c, obj):
    b = json.dumps(obj).encode()
    c.sendall(struct.pack(">I", len(b)) + b)

def recvn(c, n):
    b = b""
    while len(b) < n:
        d = c.recv(n - len(b))
        if not d:
            raise EOFError("connection closed")
        b += d
    return b

def read_msg(c):  # the next message that is not a ping
    while True:
        n = struct.unpack(">I", recvn(c, 4))[0]
        m = json.loads(recvn(c, n))
        if m.get("type") != "ping":
            return m

def session(srv):
    c, peer = srv.accept()
    c.settimeout(10)
    nonce = os.urandom(32).hex()
    send(c, {"type": "challenge", "version": 1, "nonce": nonce})
    hello = read_msg(c)
    print("HELLO", json.dumps({k: hello.get(k) for k in ("type", "gateway", "hash")}), flush=True)
    proof = hmac.new(token, ("ringfwd-sync-v1 edge " + hello["nonce"]).encode(), hashlib.sha256).hexdigest()
    send(c, {"type": "welcome", "proof": proof})
    return c

def routes_msg(routes):
    text = json.dumps(routes, separators=(",", ":"))
    return {"type": "routes", "hash": hashlib.sha256(text.encode()).hexdigest(), "routes": routes}

def hop(rid, port, proto="tcp", **kw):
    r = {"id": rid, "protocol": proto, "listen_port": port, "hop": True,
         "target": {"lan_host": "192.168.2.20", "lan_port": 7200}}
    r.update(kw)
    return r

def answer(c):  # the gateway's answer, or how the session ended
    try:
        return read_msg(c)
    except (EOFError, OSError) as e:
        return {"type": "(none)", "error": "session ended: %s" % e}

srv = socket.create_server((host, port))
srv.settimeout(20)
c = session(srv)
bad_sets = {
    "blocked-port": [hop("blocked", 7946)],  # the sync port, always blocked
    "no-hop": [{"id": "nohop", "protocol": "tcp", "listen_port": 7600,
                "target": {"lan_host": "192.168.2.20", "lan_port": 7200}}],
    "conflict": [hop("u1", 7610, "udp"), hop("u2", 7610, "udp")],
    "half-good": [hop("good", 7602), hop("bad", 7946)],  # all or nothing
    "bad-field": [hop("typo", 7603, max_connections="many")],
}
for name, routes in bad_sets.items():
    send(c, routes_msg(routes))
    print("RESULT", name, json.dumps(answer(c)), flush=True)
# An impossible length: the gateway reports it and ends the session.
c.sendall(struct.pack(">I", 0xFFFFFF00) + b"x" * 64)
print("RESULT bad-length", json.dumps(answer(c)), flush=True)
c.close()
# The gateway comes back (an authenticated session ended: backoff from 250 ms).
c = session(srv)
body = b"this is {not json"
c.sendall(struct.pack(">I", len(body)) + body)
print("RESULT not-json", json.dumps(answer(c)), flush=True)
c.close()
srv.close()
PY

# ---------------------------------------------------------------- D-Bus on the edge
edge_call() {
  in_edge busctl --address="$RFD_BUS" --timeout=5 call io.ringfwd1 /io/ringfwd1 io.ringfwd1.Manager "$@"
}
# edge_get METHOD: the JSON string the method returns.
edge_get() {
  in_edge busctl --address="$RFD_BUS" --timeout=5 --json=short call \
    io.ringfwd1 /io/ringfwd1 io.ringfwd1.Manager "$1" 2>/dev/null |
    "$PY" -c 'import json, sys; print(json.load(sys.stdin)["data"][0])'
}
# gw_state FIELD...: the gateway "home" in ListGateways, FIELD=value for each (JSON values).
gw_state() {
  edge_get ListGateways | "$PY" -c '
import json, sys
g = [g for g in json.load(sys.stdin) if g["id"] == "home"][0]
print(" ".join("%s=%s" % (k, json.dumps(g.get(k))) for k in sys.argv[1:]))' "$@"
}
# wait_gw FIELD=JSON[,...] SECONDS START_MS: prints ms from START until ListGateways shows it.
wait_gw() {
  timeout $(($2 + 10)) "$PY" "$work/tool.py" waitgw "$TOPO_NS_EDGE" "$RFD_BUS" "$1" "$2" "$3" 2>&1 || true
}
gw_online() { [[ $(gw_state online 2>/dev/null) == "online=true" ]]; }
gw_in_sync() { [[ $(gw_state online in_sync 2>/dev/null) == "online=true in_sync=true" ]]; }
# route_counter ROUTE FIELD: from GetStats.
route_counter() {
  edge_get GetStats | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["routes"][sys.argv[1]][sys.argv[2]])' "$@"
}

# ---------------------------------------------------------------- the gateway's sockets
gw_ports() { in_gw ss -Hltn | awk '{print $4}' | sort -u | tr '\n' ' '; }
gw_listens() { [[ -n $(in_gw ss -Hltn src "$TOPO_GW_TUNNEL_IP" sport = ":$1") ]]; }
gw_not_listening() { ! gw_listens "$1"; }
# wait_ms VAR SECONDS CMD...: runs CMD until it succeeds; VAR gets the milliseconds it took
# (or "timeout").
wait_ms() {
  local _var=$1 secs=$2 t0 t; shift 2
  t0=$(now_ms)
  while ! "$@" >/dev/null 2>&1; do
    t=$(now_ms)
    if ((t - t0 > secs * 1000)); then printf -v "$_var" timeout; return 1; fi
    sleep 0.02
  done
  printf -v "$_var" '%s' "$(($(now_ms) - t0))"
}
probe() { timeout 15 ip netns exec "$1" "$PY" "$work/tool.py" probe "$2" "$3" 2>&1 || true; }
client_ok() { [[ $(probe "$TOPO_NS_CLIENT" "$EDGE" "$1") == "$2" ]]; }

# ---------------------------------------------------------------- daemons
EDGE_RUN=0
GW_RUN=0
start_edge() {
  EDGE_RUN=$((EDGE_RUN + 1))
  EDGE_LOG=$work/edge-$EDGE_RUN.log
  rfd_start edge_pid "$TOPO_NS_EDGE" "$EDGE_LOG" "$work/edge.json" "$RFD_BUS"
}
start_gw() {
  GW_RUN=$((GW_RUN + 1))
  GW_LOG=$work/gateway-$GW_RUN.log
  rfd_start gw_pid "$TOPO_NS_GW" "$GW_LOG" "$work/gateway.json"
}
stop_edge() {  # SIGTERM; the exit status lands in $1
  rfd_stop "$1" "$edge_pid" 15
}

echo "== topology $TOPO_PREFIX-{client,edge,gw,lan}, work directory $work"
topo_up
lan_port_responders 7200 7201
lan_sleeper_start 02:00:00:00:00:42 3390
lan_cert "$TOPO_DIR/pki" a.example.test
lan_cert "$TOPO_DIR/pki" b.example.test
PKI=$TOPO_DIR/pki
for n in a:8441 b:8442; do
  topo_spawn pid "$TOPO_NS_LAN" "$work/tls-${n%%:*}.log" openssl s_server -quiet -www \
    -accept "$LAN:${n##*:}" -cert "$PKI/${n%%:*}.example.test.pem" -key "$PKI/${n%%:*}.example.test.key"
  _lan_wait_listen 10 "openssl s_server ${n%%:*}" "$pid" "$LAN" "${n##*:}"
done
topo_spawn pid "$TOPO_NS_LAN" "$work/ppserver.log" "$PY" -u "$work/ppserver.py" "$LAN" 7300
_lan_wait_listen 10 "PROXY v2 server" "$pid" "$LAN" 7300
rfd_bus_start "$work" "$TOPO_NS_EDGE"
echo "ok   topology up: WireGuard handshake done, LAN servers listening, edge bus $RFD_BUS"

od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$work/home.token"
od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$work/wrong.token"
chmod 600 "$work/home.token" "$work/wrong.token"
mkdir -p "$work/edgestate" "$work/gwstate" "$work/gwstate-wrong" "$work/gwstate-other"
# E2E_DATAPLANE: the dataplane of both daemons (meson runs this once with auto, once with
# sockmap: the hop header and the PROXY header are written before the kernel takes over).
DP=${E2E_DATAPLANE:-auto}
cat >"$work/edge.json" <<JSON
{ "role": "edge", "dataplane": "$DP", "state_dir": "$work/edgestate", "blocked_ports": [22, 53, 51820],
  "limits": { "connect_timeout_ms": 3000, "drain_timeout_s": 5 },
  "gateways": [ { "id": "home", "tunnel_ip": "$TOPO_GW_TUNNEL_IP", "token_file": "$work/home.token" } ],
  "sync": { "listen": "$SYNC" },
  "routes": [
    { "id": "base", "protocol": "tcp", "listen_port": 7000,
      "target": { "gateway": "home", "lan_host": "$LAN", "lan_port": 7200 } },
    { "id": "tls-a", "protocol": "tcp", "listen_port": 443,
      "tls": { "mode": "passthrough", "domains": ["a.example.test"] },
      "target": { "gateway": "home", "lan_host": "$LAN", "lan_port": 8441 } },
    { "id": "tls-b", "protocol": "tcp", "listen_port": 443,
      "tls": { "mode": "passthrough", "domains": ["b.example.test"] },
      "target": { "gateway": "home", "lan_host": "$LAN", "lan_port": 8442 } },
    { "id": "pp", "protocol": "tcp", "listen_port": 7300, "proxy_protocol": "v2",
      "target": { "gateway": "home", "lan_host": "$LAN", "lan_port": 7300 } },
    { "id": "wake", "protocol": "tcp", "listen_port": 3390,
      "wol": { "mac": "02:00:00:00:00:42", "wait_s": 20 },
      "target": { "gateway": "home", "lan_host": "$LAN", "lan_port": 3390 } } ] }
JSON
# The gateway's whole file: who it is and where the edge is. No routes.
gwfile() {  # gwfile ID TOKEN STATE_DIR
  printf '{"role": "gateway", "dataplane": "%s", "gateway_id": "%s", "tunnel_ip": "%s", "state_dir": "%s",\n "sync": {"edge": "%s", "token_file": "%s"}}\n' \
    "$DP" "$1" "$TOPO_GW_TUNNEL_IP" "$3" "$SYNC" "$2"
}
gwfile home "$work/home.token" "$work/gwstate" >"$work/gateway.json"
gwfile home "$work/wrong.token" "$work/gwstate-wrong" >"$work/gateway-wrong.json"
gwfile other "$work/home.token" "$work/gwstate-other" >"$work/gateway-other.json"
for f in edge.json gateway.json; do
  if "$RINGFWD" --check "$work/$f" >"$work/check.out" 2>&1; then
    pass "ringfwd --check $f"
  else
    fail "ringfwd --check $f: $(cat "$work/check.out")"
  fi
done

start_gw || rf_die "the gateway did not start"
start_edge || rf_die "the edge did not start"
if rfd_wait_log "$GW_LOG" 'sync: applied route set' 15 && rf_wait_for 10 "gateway in sync" gw_in_sync; then
  pass "setup: the gateway got its routes over sync: $(grep -m1 'sync: applied route set' "$GW_LOG" | sed 's/^ringfwd\[info\]: //')"
else
  fail "setup: the gateway did not get its routes from the edge ($(gw_state online in_sync last_error 2>&1))"
  exit 1
fi
SYNCED_PORTS=$(gw_ports)
echo "     gateway listening: $SYNCED_PORTS"
if [[ $SYNCED_PORTS == *"$TOPO_GW_TUNNEL_IP:443 "* && $SYNCED_PORTS == *":7000 "* && $SYNCED_PORTS == *":3390 "* && $SYNCED_PORTS == *":7300 "* ]]; then
  pass "setup: the gateway listens on 443 (two SNI routes, one hop port), 7000, 3390, 7300"
else
  fail "setup: the gateway listens on: $SYNCED_PORTS"
fi

# ================================================================ 1. AddRoute / RemoveRoute
echo "== 1. a route added on the edge reaches the gateway and carries traffic"
route='{"id":"live","protocol":"tcp","listen_port":7101,"target":{"gateway":"home","lan_host":"'"$LAN"'","lan_port":7201}}'
out=$(timeout 30 ip netns exec "$TOPO_NS_CLIENT" "$PY" "$work/tool.py" addroute \
  "$TOPO_NS_EDGE" "$RFD_BUS" "$route" "$EDGE" 7101 port-7201 2>&1) || true
if [[ $out =~ ^([0-9]+)\ ([0-9]+)$ ]]; then
  ms=${BASH_REMATCH[1]}
  figure sync_add_ms "$ms"
  if ((ms <= 1000)); then
    pass "1: AddRoute -> first round trip client -> edge:7101 -> gateway -> LAN in $ms ms (${BASH_REMATCH[2]} tries)"
  else
    fail "1: AddRoute -> first round trip took $ms ms (> 1000)"
  fi
else
  figure sync_add_ms none
  fail "1: AddRoute: $out"
fi
if gw_listens 7101; then
  pass "1: the gateway listens on $TOPO_GW_TUNNEL_IP:7101 (ss)"
else
  fail "1: the gateway does not listen on 7101: $(gw_ports)"
fi
if edge_call RemoveRoute s live >"$work/busctl.out" 2>&1; then
  wait_ms ms 3 gw_not_listening 7101 || true
  figure sync_remove_ms "$ms"
  if [[ $ms != timeout ]] && ((ms <= 1000)); then
    pass "1: RemoveRoute -> the gateway stopped listening on 7101 in $ms ms"
  else
    fail "1: RemoveRoute -> the gateway still listens on 7101 after ${ms} ms"
  fi
else
  figure sync_remove_ms none
  fail "1: RemoveRoute: $(cat "$work/busctl.out")"
fi

# ================================================================ 2. health on D-Bus
echo "== 2. ListGateways, ListRoutes, GetStats"
rf_wait_for 5 "in sync after RemoveRoute" gw_in_sync || true
out=$(gw_state online in_sync address hash_sent hash_applied last_error 2>&1 || true)
if [[ $out == "online=true in_sync=true "* ]]; then
  pass "2: ListGateways: home $out"
else
  fail "2: ListGateways: home $out"
fi
if out=$(edge_get ListRoutes | "$PY" -c '
import json, sys
bad, n = [], 0
for r in json.load(sys.stdin):
    if not r.get("target", {}).get("gateway"):
        continue
    n += 1
    g = r.get("state", {}).get("gateway")
    if g != {"id": "home", "online": True}:
        bad.append("%s: %s" % (r["id"], json.dumps(g)))
print("%d gateway routes" % n if n and not bad else "; ".join(bad) or "no gateway routes")
sys.exit(1 if bad or not n else 0)' 2>&1); then
  pass "2: ListRoutes: state.gateway {\"id\":\"home\",\"online\":true} on all $out"
else
  fail "2: ListRoutes: $out"
fi
if out=$(edge_get GetStats | "$PY" -c '
import json, sys
s = json.load(sys.stdin)
g = s.get("gateways", {}).get("home")
print(json.dumps(g) if g else "no gateways.home in: " + json.dumps(s)[:300])
sys.exit(0 if g and g.get("online") is True else 1)' 2>&1); then
  pass "2: GetStats has gateways.home, online: $out"
else
  fail "2: GetStats: $out"
fi

# ================================================================ 3. wrong token / unknown id
echo "== 3. a wrong token and an unknown gateway are refused"
edge_lines=$(wc -l <"$EDGE_LOG")
rfd_start wrong_pid "$TOPO_NS_GW" "$work/gateway-wrong.log" "$work/gateway-wrong.json" || fail "3: the wrong-token gateway did not start"
rfd_start other_pid "$TOPO_NS_GW" "$work/gateway-other.log" "$work/gateway-other.json" || fail "3: the unknown gateway did not start"
if rfd_wait_log "$work/gateway-wrong.log" 'the edge refused this gateway' 10; then
  pass "3: wrong token: its log: $(grep -m1 -o 'the edge refused this gateway.*' "$work/gateway-wrong.log")"
else
  fail "3: wrong token: no 'the edge refused this gateway' in its log: $(tail -n 3 "$work/gateway-wrong.log")"
fi
if rfd_wait_log "$work/gateway-other.log" 'the edge refused this gateway' 10; then
  pass "3: unknown id \"other\": its log says the edge refused it"
else
  fail "3: unknown id: no 'the edge refused this gateway' in its log: $(tail -n 3 "$work/gateway-other.log")"
fi
sleep 0.3
new_edge=$(tail -n +"$((edge_lines + 1))" "$EDGE_LOG")
if grep -q 'authentication refused: gateway "home": wrong token' <<<"$new_edge"; then
  pass "3: edge log: $(grep -m1 -o 'sync: .*authentication refused: gateway "home".*' <<<"$new_edge")"
else
  fail "3: the edge log does not say authentication refused for the wrong token: $(grep sync <<<"$new_edge" | tail -n 3)"
fi
if grep -q 'authentication refused: unknown gateway "other"' <<<"$new_edge"; then
  pass "3: edge log: authentication refused: unknown gateway \"other\""
else
  fail "3: the edge log does not refuse the unknown gateway: $(grep sync <<<"$new_edge" | tail -n 3)"
fi
if [[ ! -e $work/gwstate-wrong/synced-routes.json && ! -e $work/gwstate-other/synced-routes.json ]] &&
  ! grep -q 'sync: applied' "$work/gateway-wrong.log" "$work/gateway-other.log"; then
  pass "3: the refused gateways applied nothing (no synced-routes.json, no 'applied' line)"
else
  fail "3: a refused gateway applied routes: $(ls "$work"/gwstate-wrong "$work"/gwstate-other)"
fi
if gw_online && client_ok 7000 port-7200; then
  pass "3: the real gateway stays online and serves"
else
  fail "3: the real gateway: $(gw_state online last_error 2>&1)"
fi
rfd_stop st "$wrong_pid" 10
rfd_stop st2 "$other_pid" 10
[[ $st == 0 && $st2 == 0 ]] || fail "3: the refused gateways exited with $st / $st2 on SIGTERM"

# ================================================================ 4. edge restart
echo "== 4. edge restart"
applied_before=$(grep -c 'sync: applied route set' "$GW_LOG" || true)
hash_before=$(gw_state hash_applied 2>&1 || true)
stop_edge st
if [[ $st == 0 ]]; then pass "4: edge exits 0 on SIGTERM"; else fail "4: edge SIGTERM exit status $st"; fi
sleep 0.3
ports=$(gw_ports)
if [[ $ports == "$SYNCED_PORTS" ]] && rf_pid_alive "$gw_pid"; then
  pass "4: with the edge down the gateway still listens on all its ports"
else
  fail "4: with the edge down the gateway listens on: $ports (was $SYNCED_PORTS)"
fi
t0=$(now_ms)
start_edge || rf_die "the edge did not start again"
ms=$(wait_gw online=true 7 "$t0")
figure edge_restart_reconnect_ms "$ms"
if [[ $ms =~ ^[0-9]+$ ]] && ((ms <= 6000)); then
  pass "4: the gateway reconnected: ListGateways online $ms ms after the edge was started"
else
  fail "4: the gateway is not online after the edge restart (${ms} ms): $(gw_state online last_error 2>&1)"
fi
rf_wait_for 5 "in sync" gw_in_sync || fail "4: not in sync after the restart: $(gw_state in_sync hash_sent hash_applied 2>&1)"
if client_ok 7000 port-7200; then pass "4: traffic through the restarted edge"; else fail "4: no traffic after the edge restart: $(probe "$TOPO_NS_CLIENT" "$EDGE" 7000)"; fi
sleep 0.5
applied_after=$(grep -c 'sync: applied route set' "$GW_LOG" || true)
if ((applied_after == applied_before)) && ! grep -q 'sent route set' "$EDGE_LOG"; then
  pass "4: the unchanged set was not sent or applied again (hello hash; $(gw_state hash_applied), $applied_after 'applied' line(s) on the gateway)"
else
  fail "4: after the edge restart: gateway 'applied' lines $applied_before -> $applied_after, edge: $(grep -c 'sent route set' "$EDGE_LOG" || true) 'sent route set' (hash before $hash_before, now $(gw_state hash_sent hash_applied))"
fi

# ================================================================ 5. gateway restart, edge down
echo "== 5. gateway restart while the edge is down"
stop_edge st
rfd_stop st "$gw_pid" 15
[[ $st == 0 ]] || fail "5: gateway SIGTERM exit status $st"
if start_gw; then
  if grep -q 'sync: serving the stored route set' "$GW_LOG"; then
    pass "5: $(grep -m1 -o 'sync: serving the stored route set.*' "$GW_LOG")"
  else
    fail "5: no 'serving the stored route set' in the gateway log: $(head -n 5 "$GW_LOG")"
  fi
  ports=$(gw_ports)
  if [[ $ports == "$SYNCED_PORTS" ]]; then pass "5: listening on its stored ports with the edge unreachable"; else fail "5: listening on $ports (want $SYNCED_PORTS)"; fi
  if rfd_wait_log "$GW_LOG" 'sync: cannot connect to' 5; then
    pass "5: the gateway logs the unreachable edge: $(grep -m1 -o 'sync: cannot connect.*' "$GW_LOG")"
  else
    fail "5: no 'cannot connect' in the gateway log"
  fi
  # A hop header from the edge's tunnel address, as the edge would send it: the stored route serves.
  out=$(timeout 15 ip netns exec "$TOPO_NS_EDGE" "$PY" "$work/tool.py" hop "$TOPO_GW_TUNNEL_IP" 7000 base 2>&1 || true)
  if [[ $out == port-7200 ]]; then pass "5: the stored route serves a hop connection from 10.8.0.1"; else fail "5: hop connection to the stored route: $out"; fi
else
  fail "5: the gateway did not start with its stored routes"
  exit 1
fi
start_edge || rf_die "the edge did not start again"
if rf_wait_for 8 "gateway online" gw_online && client_ok 7000 port-7200; then
  pass "5: edge back: gateway online, traffic works"
else
  fail "5: after the edge came back: $(gw_state online last_error 2>&1); $(probe "$TOPO_NS_CLIENT" "$EDGE" 7000)"
fi
rf_wait_for 5 "in sync" gw_in_sync || fail "5: not in sync: $(gw_state in_sync hash_sent hash_applied 2>&1)"

# ================================================================ 6. a fake edge's bad payloads
echo "== 6. a corrupt sync payload changes nothing"
stored=$work/gwstate/synced-routes.json
sha_before=$(sha256sum <"$stored" | cut -d' ' -f1 || true)
ports_before=$(gw_ports)
stop_edge st
topo_spawn fake_pid "$TOPO_NS_EDGE" "$work/fake-edge.log" timeout 60 "$PY" -u "$work/fake_edge.py" \
  "$TOPO_EDGE_TUNNEL_IP" 7946 "$work/home.token"
rfd_wait_exit st "$fake_pid" 70
[[ $st == 0 ]] || fail "6: the fake edge exited with $st: $(tail -n 5 "$work/fake-edge.log")"
echo "     fake edge got: $(grep -m1 '^HELLO' "$work/fake-edge.log" || echo 'no hello')"
for name in blocked-port no-hop conflict half-good bad-field bad-length not-json; do
  line=$(grep -m1 "^RESULT $name " "$work/fake-edge.log" || true)
  if out=$("$PY" -c '
import json, sys
m = json.loads(sys.argv[1].split(" ", 2)[2])
print(m.get("error", "")[:240])
sys.exit(0 if m.get("type") == "refused" and m.get("error") else 1)' "$line" 2>&1); then
    pass "6: $name: the gateway answered refused: $out"
  else
    fail "6: $name: the gateway answered: ${line:-nothing} $out"
  fi
done
ports=$(gw_ports)
if [[ $ports == "$ports_before" ]]; then
  pass "6: the gateway listens on exactly the ports it had: $ports"
else
  fail "6: ports changed: $ports_before -> $ports"
fi
sha_after=$(sha256sum <"$stored" | cut -d' ' -f1 || true)
if [[ -n $sha_before && $sha_after == "$sha_before" ]]; then
  pass "6: synced-routes.json unchanged (sha256 ${sha_before:0:16}... before and after)"
else
  fail "6: synced-routes.json changed: ${sha_before:-missing} -> ${sha_after:-missing}"
fi
if rf_pid_alive "$gw_pid"; then pass "6: the gateway keeps running"; else fail "6: the gateway died"; fi
out=$(timeout 15 ip netns exec "$TOPO_NS_EDGE" "$PY" "$work/tool.py" hop "$TOPO_GW_TUNNEL_IP" 7000 base 2>&1 || true)
if [[ $out == port-7200 ]]; then pass "6: and still serves its routes (hop connection from 10.8.0.1)"; else fail "6: the gateway does not serve after the fake edge: $out"; fi
start_edge || rf_die "the edge did not start again"
if rf_wait_for 8 "gateway online" gw_online && rf_wait_for 5 "in sync" gw_in_sync && client_ok 7000 port-7200; then
  pass "6: real edge back: online, in sync, traffic works"
else
  fail "6: after the real edge came back: $(gw_state online in_sync last_error 2>&1)"
fi

# ================================================================ 7. gateway killed
echo "== 7. gateway SIGKILL"
refused_before=$(route_counter base refused 2>/dev/null || echo 0)
t0=$(now_ms)
kill -KILL "$gw_pid" || true
wait "$gw_pid" 2>/dev/null || true
ms=$(wait_gw online=false 7 "$t0")
figure gateway_offline_ms "$ms"
if [[ $ms =~ ^[0-9]+$ ]]; then
  pass "7: ListGateways: home online:false $ms ms after SIGKILL ($(gw_state last_error))"
else
  fail "7: the edge still reports home online 7 s after SIGKILL ($ms)"
fi
out=$(timeout 15 ip netns exec "$TOPO_NS_CLIENT" "$PY" "$work/tool.py" refusal "$EDGE" 7000 2>&1 || true)
how=${out% *}
ms=${out##* }
figure offline_refusal_ms "$ms"
if [[ $how == reset || $how == closed ]] && [[ $ms =~ ^[0-9]+$ ]] && ((ms < 1000)); then
  pass "7: a client of route base is refused at once: $how after $ms ms"
else
  fail "7: a client of route base with the gateway offline: $out"
fi
refused_after=$(route_counter base refused 2>/dev/null || echo "?")
if [[ $refused_after =~ ^[0-9]+$ ]] && ((refused_after > refused_before)); then
  pass "7: route base refused counter $refused_before -> $refused_after"
else
  fail "7: route base refused counter $refused_before -> $refused_after"
fi
if grep -q 'route=base .*refused: gateway home is offline' "$EDGE_LOG"; then
  pass "7: edge log: $(grep -m1 -o 'route=base.*offline' "$EDGE_LOG")"
else
  fail "7: no 'route=base ... refused: gateway home is offline' line in the edge log"
fi
start_gw || rf_die "the gateway did not start again"
if rf_wait_for 8 "gateway online" gw_online && rf_wait_for 5 "in sync" gw_in_sync && client_ok 7000 port-7200; then
  pass "7: gateway restarted: online, in sync, traffic works"
else
  fail "7: after the gateway restart: $(gw_state online in_sync last_error 2>&1)"
fi

# ================================================================ 8. SNI, one port, one gateway
echo "== 8. two SNI passthrough routes on edge port 443 to one gateway"
for n in a b; do
  out=$(in_client timeout 15 openssl s_client -connect "$EDGE:443" -servername "$n.example.test" \
    -CAfile "$PKI/ca.pem" -verify_hostname "$n.example.test" -verify_return_error </dev/null 2>/dev/null |
    openssl x509 -noout -subject 2>&1 || true)
  if [[ $out == "subject=CN = $n.example.test" ]]; then
    pass "8: -servername $n.example.test -> its own LAN server, certificate $out (verified)"
  else
    fail "8: $n.example.test got: $out"
  fi
done

# ================================================================ 9. PROXY v2 to the LAN
echo "== 9. the LAN device sees the real client (proxy_protocol v2)"
out=$(timeout 15 ip netns exec "$TOPO_NS_CLIENT" "$PY" "$work/tool.py" pp "$EDGE" 7300 2>&1 || true)
me=${out##*me=}
if [[ $out == "src=$me dst=$EDGE:7300 peer=$TOPO_GW_LAN_IP extra=0 me=$me" && $me == "$TOPO_CLIENT_IP:"* ]]; then
  pass "9: the LAN server got PROXY v2 src=$me (the client), from the gateway $TOPO_GW_LAN_IP, one header"
else
  fail "9: the LAN server answered: $out"
fi

# ================================================================ 10. Wake-on-LAN
echo "== 10. Wake-on-LAN through a synced route"
out=$(timeout 40 ip netns exec "$TOPO_NS_CLIENT" "$PY" "$work/tool.py" firstbyte "$EDGE" 3390 30 2>&1 || true)
got=${out% *}
ms=${out##* }
figure wol_first_byte_ms "$ms"
if [[ $got == awake-3390 ]]; then
  pass "10: one connect reached the sleeping machine: awake-3390 after $ms ms ($(grep -m1 'magic packet' "$TOPO_DIR/sleeper-3390.log"))"
else
  fail "10: the connect returned '$out'; sleeper: $(tail -n 2 "$TOPO_DIR/sleeper-3390.log")"
fi

# ================================================================ the end
echo "== stop"
stop_edge st
if [[ $st == 0 ]]; then pass "the edge exits 0 on SIGTERM"; else fail "the edge's SIGTERM exit status: $st"; fi
rfd_stop st "$gw_pid" 15
if [[ $st == 0 ]]; then pass "the gateway exits 0 on SIGTERM"; else fail "the gateway's SIGTERM exit status: $st"; fi

echo "== summary"
for k in sync_add_ms sync_remove_ms edge_restart_reconnect_ms gateway_offline_ms offline_refusal_ms wol_first_byte_ms; do
  echo "figure $k=${FIG[$k]:-none}"
done
if ((failures > 0)); then
  echo "== $failures check(s) failed"
  exit 1
fi
echo "== all checks passed"
