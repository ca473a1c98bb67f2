#!/usr/bin/env bash
# Route sync on loopback, without namespaces (runs unprivileged): a real edge (127.0.0.1, its
# API on a private dbus-daemon) and a real sync gateway (tunnel address 127.0.0.2, its API on a
# second private bus), an echo server as the LAN device. What the WireGuard e2e test
# (tests/e2e/sync.sh) does not look at: the hop port takes the header only from the edge's
# address, a sync gateway refuses D-Bus route changes, and the edge survives a peer that speaks
# nonsense, a wrong proof and a flood of silent connections.
set -uo pipefail
RINGFWD=${RINGFWD:?set RINGFWD to the ringfwd binary}
for t in dbus-daemon busctl python3; do
  command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
# shellcheck source=tests/integration/bus_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bus_lib.sh"
bus_lib_init ringfwd-sync-test
read -r P_ECHO P_SYNC P_A P_B < <(free_ports 4)
start_echo "$P_ECHO"
start_private_bus
EDGE_BUS=$BUS
# A second bus for the gateway (each daemon owns io.ringfwd1 on its own bus).
top=$work
mkdir -p "$work/gwbus"
work=$top/gwbus
start_private_bus
GW_BUS=$BUS
work=$top

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/home.token"
mkdir -p "$work/edge-state" "$work/gw-state"
cat >"$work/edge.json" <<JSON
{"role":"edge","workers":1,"state_dir":"$work/edge-state","blocked_ports":[22],
 "gateways":[{"id":"home","tunnel_ip":"127.0.0.2","token_file":"$work/home.token"}],
 "sync":{"listen":"127.0.0.1:$P_SYNC"},
 "routes":[{"id":"a","listen":"127.0.0.1","listen_port":$P_A,
            "target":{"gateway":"home","lan_host":"127.0.0.1","lan_port":$P_ECHO}}]}
JSON
cat >"$work/gw.json" <<JSON
{"role":"gateway","gateway_id":"home","tunnel_ip":"127.0.0.2","workers":1,
 "state_dir":"$work/gw-state","sync":{"edge":"127.0.0.1:$P_SYNC","token_file":"$work/home.token"}}
JSON

"$RINGFWD" --config "$work/edge.json" --bus "$EDGE_BUS" >>"$work/edge.log" 2>&1 &
EDGE_PID=$!
pids+=("$EDGE_PID")
"$RINGFWD" --config "$work/gw.json" --bus "$GW_BUS" >>"$work/gw.log" 2>&1 &
GW_PID=$!
pids+=("$GW_PID")

wait_for() {  # wait_for SECONDS CMD...: true once CMD succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do ((SECONDS < deadline)) || return 1; sleep 0.1; done
}
# echo_via PORT [SOURCE_IP]: "ok" when a round trip through 127.0.0.1/2:PORT works.
echo_via() {
  python3 - "$@" <<'PY'
import socket, sys
port = int(sys.argv[1])
host = "127.0.0.2" if len(sys.argv) > 2 else "127.0.0.1"
try:
    c = socket.socket()
    c.settimeout(2)
    if len(sys.argv) > 2:
        c.bind((sys.argv[2], 0))
    c.connect((host, port))
    c.sendall(b"ping")
    print("ok" if c.recv(16) == b"ping" else "closed")
except OSError as e:
    print(e.strerror or e)
PY
}
via_edge_ok() { [[ $(echo_via "$P_A") == ok ]]; }
edge_call() { busctl --address="$EDGE_BUS" --timeout=5 call io.ringfwd1 /io/ringfwd1 io.ringfwd1.Manager "$@" 2>&1; }
gw_call() { busctl --address="$GW_BUS" --timeout=5 call io.ringfwd1 /io/ringfwd1 io.ringfwd1.Manager "$@" 2>&1; }

if wait_for 15 via_edge_ok; then
  pass "route a: client -> edge -> sync gateway -> echo"
else
  fail "route a does not work through the synced gateway"; tail -20 "$work/edge.log" "$work/gw.log"; exit 1
fi

# --- the hop port: the header is the edge's word, taken from the edge's address only
# hop_send PORT SOURCE_IP ROUTE_ID: a valid hop header naming ROUTE_ID, then "ping", from
# SOURCE_IP; prints "ok" when the echo comes back, else how the connection ended.
hop_send() {
  python3 - "$@" <<'PY'
import socket, struct, sys
port, src, rid = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
sig = b"\r\n\r\n\x00\r\nQUIT\n"
addrs = socket.inet_aton("203.0.113.7") + socket.inet_aton("127.0.0.1") + struct.pack(">HH", 5555, port)
tlv = b"\xe0" + struct.pack(">H", len(rid)) + rid
hdr = sig + bytes([0x21, 0x11]) + struct.pack(">H", len(addrs) + len(tlv)) + addrs + tlv
try:
    c = socket.socket()
    c.settimeout(3)
    c.bind((src, 0))
    c.connect(("127.0.0.2", port))
    c.sendall(hdr + b"ping")
    d = c.recv(16)
    print("ok" if d == b"ping" else "closed" if d == b"" else "answered")
except OSError as e:
    print(e.strerror or e)
PY
}
out=$(hop_send "$P_A" 127.0.0.1 a)
[[ $out == ok ]] && pass "hop port: a valid header from the edge's address is served" ||
  fail "hop port: the edge's own header was refused: $out"
out=$(hop_send "$P_A" 127.0.0.9 a)
[[ $out != ok ]] && pass "hop port: the same header from a stranger (127.0.0.9) is refused ($out)" ||
  fail "hop port: a stranger's hop header reached the LAN device"
grep -q "not the edge" "$work/gw.log" && pass "hop port: the gateway log says why" ||
  fail "hop port: no 'not the edge' line in the gateway log"
out=$(hop_send "$P_A" 127.0.0.1 nope)
[[ $out != ok ]] && pass "hop port: a header naming a route the gateway does not run is refused" ||
  fail "hop port: unknown route id served"
out=$(python3 - "$P_A" <<'PY'
import socket, struct, sys
# From the edge's address but without a hop header: refused (the route is not known).
c = socket.create_connection(("127.0.0.2", int(sys.argv[1])), timeout=3)
c.sendall(b"ping\r\n")
try:
    print("closed" if c.recv(16) == b"" else "answered")
except OSError as e:
    print("closed")
PY
)
[[ $out == closed ]] && pass "hop port: bytes without a hop header are refused" ||
  fail "hop port: no header but $out"

# --- a sync gateway's routes are changed on the edge only
out=$(gw_call AddRoute s '{"id":"x","listen_port":'"$P_B"',"target":{"lan_host":"127.0.0.1","lan_port":'"$P_ECHO"'}}')
[[ $out == *"come from its edge"* ]] && pass "gateway: AddRoute refused (routes come from the edge)" ||
  fail "gateway: AddRoute: $out"
out=$(gw_call RemoveRoute s a)
[[ $out == *"come from its edge"* ]] && pass "gateway: RemoveRoute refused" || fail "gateway: RemoveRoute: $out"
out=$(gw_call GetStats)
[[ $out == *'\"sync\":{'*'\"connected\":true'* ]] && pass "gateway: GetStats shows its sync session" ||
  fail "gateway: GetStats: $out"
out=$(gw_call ListRoutes)
[[ $out == *'\"hop\":true'* ]] && pass "gateway: ListRoutes shows the synced hop route" ||
  fail "gateway: ListRoutes: $out"

# --- the edge against peers that are not gateways
python3 - "$P_SYNC" "$work/home.token" <<'PY' >"$work/peers.out" 2>&1
import hashlib, hmac, json, socket, struct, sys, time
port = int(sys.argv[1])
token = open(sys.argv[2]).read().strip().encode()
def frame(o):
    b = json.dumps(o).encode()
    return struct.pack(">I", len(b)) + b
def read_frame(c):
    hdr = b""
    while len(hdr) < 4:
        d = c.recv(4 - len(hdr))
        if not d:
            return None
        hdr += d
    n = struct.unpack(">I", hdr)[0]
    body = b""
    while len(body) < n:
        d = c.recv(n - len(body))
        if not d:
            return None
        body += d
    return json.loads(body)
# 1. garbage instead of frames: closed
c = socket.create_connection(("127.0.0.1", port), timeout=5)
read_frame(c)
c.sendall(b"GET / HTTP/1.0\r\n\r\n" * 10)
try:
    print("garbage:", "closed" if c.recv(100) == b"" else "answered")
except OSError:
    print("garbage: closed")
# 2. a frame too large for an unauthenticated peer: closed
c = socket.create_connection(("127.0.0.1", port), timeout=5)
read_frame(c)
c.sendall(struct.pack(">I", 10 << 20) + b"{" * 1000)
try:
    print("huge:", "closed" if c.recv(100) == b"" else "answered")
except OSError:
    print("huge: closed")
# 3. a wrong proof and an unknown id get the same answer
for gw, key in (("home", b"wrong-token-0123456789"), ("nobody", token)):
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    ch = read_frame(c)
    nonce = "ab" * 32
    proof = hmac.new(key, ("ringfwd-sync-v1 gateway %s %s" % (ch["nonce"], gw)).encode(), hashlib.sha256).hexdigest()
    c.sendall(frame({"type": "hello", "version": 1, "gateway": gw, "nonce": nonce, "proof": proof, "hash": ""}))
    print("hello %s:" % gw, json.dumps(read_frame(c)))
# 4. 300 silent connections: the edge keeps serving the real gateway
silent = []
for _ in range(300):
    try:
        silent.append(socket.create_connection(("127.0.0.1", port), timeout=2))
    except OSError:
        pass
print("silent:", len(silent))
time.sleep(1)
PY
grep -q "garbage: closed" "$work/peers.out" && pass "edge: a peer sending garbage is closed" ||
  fail "edge: garbage peer: $(cat "$work/peers.out")"
grep -q "huge: closed" "$work/peers.out" && pass "edge: an oversized frame before authentication is refused" ||
  fail "edge: oversized frame: $(cat "$work/peers.out")"
a=$(grep '^hello home:' "$work/peers.out" | cut -d: -f2-)
b=$(grep '^hello nobody:' "$work/peers.out" | cut -d: -f2-)
if [[ -n $a && $a == "$b" && $a == *'authentication failed'* ]]; then
  pass "edge: wrong token and unknown gateway get the same answer ($a)"
else
  fail "edge: wrong token '$a' vs unknown id '$b'"
fi
grep -q 'wrong token' "$work/edge.log" && grep -q 'unknown gateway "nobody"' "$work/edge.log" &&
  pass "edge: its log tells the operator which it was" || fail "edge: log lacks the refusal reasons"
kill -0 "$EDGE_PID" 2>/dev/null && pass "edge: still running" || fail "edge: died"
out=$(edge_call ListGateways)
[[ $out == *'\"online\":true'* ]] && pass "edge: the real gateway stayed online" || fail "edge: ListGateways: $out"
via_edge_ok && pass "route a still works" || fail "route a broken after the bad peers"

# --- the edge's change reaches the gateway; an unchanged set is not applied again
before=$(grep -c "sync: applied route set" "$work/gw.log")
out=$(edge_call AddRoute s '{"id":"b","listen":"127.0.0.1","listen_port":'"$P_B"',"target":{"gateway":"home","lan_host":"127.0.0.1","lan_port":'"$P_ECHO"'}}')
if wait_for 1 bash -c "[[ \$(python3 -c 'import socket;socket.create_connection((\"127.0.0.2\",$P_B),timeout=1)' 2>&1) == '' ]]"; then
  pass "AddRoute on the edge: the gateway listens within 1 s"
else
  fail "AddRoute b: the gateway is not listening after 1 s ($out)"
fi
kill -HUP "$EDGE_PID"  # same file content: same set
sleep 1
after=$(grep -c "sync: applied route set" "$work/gw.log")
((after == before + 1)) && pass "an edge reload with the same routes applies nothing on the gateway" ||
  fail "gateway applied $((after - before)) sets, want 1"

# --- a port the gateway cannot bind: the set is refused whole, the edge shows why
read -r P_BUSY < <(free_ports 1)
python3 -c "import socket,time; s=socket.socket(); s.bind(('127.0.0.2',$P_BUSY)); s.listen(); time.sleep(60)" &
busy=$!
pids+=("$busy")
busy_up() { python3 -c "import socket; socket.create_connection(('127.0.0.2',$P_BUSY),timeout=1).close()"; }
wait_for 10 busy_up || fail "the port holder did not start"
edge_call AddRoute s '{"id":"busy","listen":"127.0.0.1","listen_port":'"$P_BUSY"',"target":{"gateway":"home","lan_host":"127.0.0.1","lan_port":'"$P_ECHO"'}}' >/dev/null
gw_failure() { [[ $(edge_call ListGateways) == *'listener_failures\":[\"'*"$P_BUSY"* ]]; }
if wait_for 3 gw_failure; then
  pass "gateway cannot bind $P_BUSY: ListGateways shows the listener failure"
else
  fail "no listener failure shown: $(edge_call ListGateways)"
fi
out=$(edge_call ListGateways)
[[ $out == *'\"in_sync\":false'* ]] && pass "... and the gateway is not in sync" || fail "in_sync: $out"
via_edge_ok && pass "... and what it ran still serves (route a)" || fail "route a broken by the refused set"
kill "$busy"
edge_call RemoveRoute s busy >/dev/null
wait_for 3 bash -c "[[ \$(busctl --address=$EDGE_BUS call io.ringfwd1 /io/ringfwd1 io.ringfwd1.Manager ListGateways) == *'in_sync\\\":true'* ]]" &&
  pass "route removed on the edge: the gateway is in sync again" || fail "not in sync again: $(edge_call ListGateways)"

# --- a reload that changes the sync section is refused whole: what runs stays
cp "$work/edge.json" "$work/edge.json.keep"
python3 - "$work/edge.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["sync"]["listen"] = "127.0.0.1:1"
json.dump(c, open(sys.argv[1], "w"))
PY
out=$(edge_call Reload)
[[ $out == *"sync section changed"* ]] && pass "Reload with another sync section: refused ($out)" ||
  fail "Reload with another sync section: $out"
cp "$work/edge.json.keep" "$work/edge.json"
out=$(edge_call ListGateways)
[[ $out == *'\"online\":true'* ]] && via_edge_ok && pass "after the refused reload the gateway is online and route a works" ||
  fail "after the refused reload: $out"

if ((fails)); then
  echo "--- edge log"; tail -30 "$work/edge.log"; echo "--- gateway log"; tail -30 "$work/gw.log"
  echo "FAILED: $fails"
  exit 1
fi
echo "all passed"
