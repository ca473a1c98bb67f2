#!/usr/bin/env bash
# The D-Bus API for real: a private dbus-daemon, the real ringfwd on it, driven by busctl (as an
# operator would) and dbus-send (which prints D-Bus error names). Loopback traffic only.
set -uo pipefail
RINGFWD=${RINGFWD:?set RINGFWD to the ringfwd binary}
for t in dbus-daemon busctl dbus-send python3; do
  command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
# shellcheck source=tests/integration/bus_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bus_lib.sh"
bus_lib_init ringfwd-dbus
read -r P_ECHO P_A P_B P_C P_D < <(free_ports 5)
start_echo "$P_ECHO"
start_private_bus

cfg="$work/ringfwd.json"
cat >"$cfg" <<JSON
{"role":"edge","dataplane":"auto","workers":2,"blocked_ports":[22],
 "limits":{"overlap_ms":1500},
 "routes":[{"id":"a","listen":"127.0.0.1","listen_port":$P_A,"target":{"host":"127.0.0.1","port":$P_ECHO}}]}
JSON

start_daemon() {
  "$RINGFWD" --config "$cfg" --bus "$BUS" >>"$work/ringfwd.log" 2>&1 &
  RF_PID=$!
  pids+=("$RF_PID")
  for _ in $(seq 100); do
    busctl --address="$BUS" get-property io.ringfwd1 /io/ringfwd1 io.ringfwd1.Manager Role \
      >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}
echo_via() {  # prints "ok" when a round trip through port $1 works
  python3 - "$1" <<'PY'
import socket, sys
try:
    c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
    c.sendall(b"ping"); print("ok" if c.recv(16) == b"ping" else "bad")
except OSError as e:
    print(e.strerror or e)
PY
}
call() { busctl --address="$BUS" call io.ringfwd1 /io/ringfwd1 io.ringfwd1.Manager "$@"; }
error_name() {  # the D-Bus error name a method call returns ("" on success)
  local method=$1 arg=$2
  dbus-send --bus="$BUS" --print-reply --dest=io.ringfwd1 /io/ringfwd1 \
    "io.ringfwd1.Manager.$method" "string:$arg" 2>&1 | sed -n 's/^Error \([^:]*\):.*/\1/p'
}

start_daemon || { fail "daemon did not come up on the bus"; cat "$work/ringfwd.log"; exit 1; }
pass "daemon owns io.ringfwd1 on a private bus"

[[ $(busctl --address="$BUS" get-property io.ringfwd1 /io/ringfwd1 io.ringfwd1.Manager Role) == 's "edge"' ]] \
  && pass "Role property" || fail "Role property"
[[ $(busctl --address="$BUS" get-property io.ringfwd1 /io/ringfwd1 io.ringfwd1.Manager Dataplane) == 's "hybrid"' ]] \
  && pass "Dataplane property" || fail "Dataplane property"
busctl --address="$BUS" introspect io.ringfwd1 /io/ringfwd1 | grep -q '^\.AddRoute ' \
  && pass "introspection lists AddRoute" || fail "introspection"

# AddRoute: live at once, persisted before the call returns.
route_b="{\"id\":\"b\",\"protocol\":\"tcp\",\"listen\":\"127.0.0.1\",\"listen_port\":$P_B,\"target\":{\"host\":\"127.0.0.1\",\"port\":$P_ECHO}}"
call AddRoute s "$route_b" && pass "AddRoute b" || fail "AddRoute b"
[[ $(echo_via "$P_B") == ok ]] && pass "route b carries traffic" || fail "route b does not carry traffic"
grep -q "\"id\": \"b\"" "$cfg" && pass "AddRoute written to the config file" || fail "config file lacks b"
call ListRoutes | grep -q '\\"id\\":\\"b\\"' && pass "ListRoutes shows b" || fail "ListRoutes"
call GetRoute s b | grep -q "127.0.0.1:$P_B" && pass "GetRoute b shows its listening address" || fail "GetRoute b"

# Error names.
[[ $(error_name AddRoute "$route_b") == io.ringfwd1.Error.Exists ]] && pass "duplicate -> Exists" || fail "duplicate: $(error_name AddRoute "$route_b")"
[[ $(error_name AddRoute '{"id":"s","listen_port":22,"target":{"host":"127.0.0.1","port":22}}') == io.ringfwd1.Error.BlockedPort ]] \
  && pass "blocked port -> BlockedPort" || fail "blocked port"
[[ $(error_name AddRoute "{\"id\":\"c\",\"listen\":\"127.0.0.1\",\"listen_port\":$P_A,\"target\":{\"host\":\"127.0.0.1\",\"port\":1}}") == io.ringfwd1.Error.PortConflict ]] \
  && pass "same port -> PortConflict" || fail "conflict"
[[ $(error_name AddRoute '{"id":"Bad Id"}') == io.ringfwd1.Error.InvalidRoute ]] && pass "bad route -> InvalidRoute" || fail "invalid route"
[[ $(error_name RemoveRoute nope) == io.ringfwd1.Error.NotFound ]] && pass "RemoveRoute unknown -> NotFound" || fail "NotFound"
[[ $(error_name GetRoute nope) == io.ringfwd1.Error.NotFound ]] && pass "GetRoute unknown -> NotFound" || fail "GetRoute NotFound"
[[ $(error_name ApplyConfig '{"role":"edge","routes":[{"id":"x"}]}') == io.ringfwd1.Error.InvalidConfig ]] \
  && pass "bad ApplyConfig -> InvalidConfig" || fail "InvalidConfig"
[[ $(echo_via "$P_A") == ok && $(echo_via "$P_B") == ok ]] && pass "refused calls changed nothing" || fail "a refused call changed routes"

# UpdateRoute with a new port: dual-bind overlap.
route_b2="{\"id\":\"b\",\"protocol\":\"tcp\",\"listen\":\"127.0.0.1\",\"listen_port\":$P_C,\"target\":{\"host\":\"127.0.0.1\",\"port\":$P_ECHO}}"
call UpdateRoute s "$route_b2" && pass "UpdateRoute b -> new port" || fail "UpdateRoute"
[[ $(echo_via "$P_C") == ok && $(echo_via "$P_B") == ok ]] && pass "new and old port both serve during overlap" || fail "overlap"
sleep 1.8
[[ $(echo_via "$P_B") != ok ]] && pass "old port closed after overlap_ms" || fail "old port still open"

# A removed route with an open connection is listed as draining until it ends.
python3 - "$P_C" >"$work/hold.out" 2>&1 <<'PY' &
import socket, sys, time
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
c.sendall(b"x"); c.recv(1); print("held", flush=True); time.sleep(4)
PY
holder=$!
pids+=("$holder")
for _ in $(seq 50); do grep -q held "$work/hold.out" 2>/dev/null && break; sleep 0.1; done

# RoutesChanged is emitted.
timeout 5 busctl --address="$BUS" monitor io.ringfwd1 >"$work/monitor.log" 2>&1 &
mon=$!
sleep 0.5
call RemoveRoute s b && pass "RemoveRoute b" || fail "RemoveRoute"
call ListRoutes | grep -q '\\"id\\":\\"b\\",\\"state\\":{\\"removed\\":true,\\"draining\\":1' \
  && pass "ListRoutes shows b draining one connection" || fail "no draining state: $(call ListRoutes)"
sleep 0.5
kill "$mon" 2>/dev/null; wait "$mon" 2>/dev/null
grep -q "Member=RoutesChanged" "$work/monitor.log" && pass "RoutesChanged emitted" || fail "no RoutesChanged"
call GetStats | grep -q dataplane && pass "GetStats" || fail "GetStats"

# Persistence: kill -9 right after the call returned, restart, same routes.
call AddRoute s "{\"id\":\"d\",\"protocol\":\"tcp\",\"listen\":\"127.0.0.1\",\"listen_port\":$P_D,\"target\":{\"host\":\"127.0.0.1\",\"port\":$P_ECHO}}" \
  && kill -9 "$RF_PID"
wait "$RF_PID" 2>/dev/null
start_daemon || fail "restart"
[[ $(echo_via "$P_D") == ok && $(echo_via "$P_A") == ok ]] && pass "after kill -9 and restart the acknowledged routes serve" || fail "restart lost routes"
[[ $(echo_via "$P_C") != ok ]] && pass "the removed route stays removed" || fail "removed route came back"

# The bus goes away (a dbus-daemon restart): forwarding goes on, the daemon stops cleanly.
bus_pid=$(pgrep -f "dbus-daemon --config-file=$work/bus.conf" | head -1)
kill -TERM "$bus_pid"
sleep 1
if kill -0 "$RF_PID" 2>/dev/null && [[ $(echo_via "$P_A") == ok ]]; then
  pass "bus gone: the daemon still forwards"
else
  fail "bus gone: the daemon died or stopped forwarding"
fi
grep -q "connection lost" "$work/ringfwd.log" && pass "bus gone: logged" || fail "bus gone: no log line"
kill -TERM "$RF_PID"
wait "$RF_PID"
rc=$?
((rc == 0)) && pass "bus gone: SIGTERM exits 0" || fail "bus gone: exit $rc"

echo "$((fails == 0 ? 1 : 0)) passed, $fails failed" >/dev/null
if ((fails)); then
  echo "--- ringfwd log ---"; tail -30 "$work/ringfwd.log"
  exit 1
fi
echo "dbus: all checks passed"
