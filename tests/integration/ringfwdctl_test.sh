#!/usr/bin/env bash
# ringfwdctl for real: a private dbus-daemon, the real ringfwd on it, every command and every
# error path through the CLI, with the exit codes scripts rely on. Loopback traffic only.
set -uo pipefail
RINGFWD=${RINGFWD:?set RINGFWD to the ringfwd binary}
RINGFWDCTL=${RINGFWDCTL:?set RINGFWDCTL to the ringfwdctl binary}
for t in dbus-daemon busctl python3; do
  command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
# shellcheck source=tests/integration/bus_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bus_lib.sh"
bus_lib_init ringfwdctl-test
read -r P_ECHO P_A P_B P_C P_D P_E < <(free_ports 6)
start_echo "$P_ECHO"
start_private_bus

cfg="$work/ringfwd.json"
cat >"$cfg" <<JSON
{"role":"edge","dataplane":"auto","workers":2,"blocked_ports":[22],
 "limits":{"overlap_ms":1500},
 "routes":[{"id":"a","listen":"127.0.0.1","listen_port":$P_A,"target":{"host":"127.0.0.1","port":$P_ECHO}}]}
JSON

"$RINGFWD" --config "$cfg" --bus "$BUS" >>"$work/ringfwd.log" 2>&1 &
RF_PID=$!
pids+=("$RF_PID")
up=0
for _ in $(seq 100); do
  busctl --address="$BUS" get-property io.ringfwd1 /io/ringfwd1 io.ringfwd1.Manager Role \
    >/dev/null 2>&1 && { up=1; break; }
  sleep 0.1
done
((up)) || { fail "daemon did not come up on the bus"; cat "$work/ringfwd.log"; exit 1; }

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
# ctl ARGS...: runs ringfwdctl on the private bus; output in $out/$err, exit code in $rc.
ctl() {
  "$RINGFWDCTL" --bus "$BUS" "$@" >"$work/out" 2>"$work/err"
  rc=$?
  out=$(<"$work/out")
  err=$(<"$work/err")
}
# expect CODE DESCRIPTION [STDERR-SUBSTRING]: checks the last ctl call.
expect() {
  local code=$1 what=$2 needle=${3:-}
  if [[ $rc -ne $code ]]; then
    fail "$what: exit $rc, want $code (stderr: $err)"
  elif [[ -n $needle && $err != *"$needle"* ]]; then
    fail "$what: stderr lacks '$needle': $err"
  else
    pass "$what"
  fi
}

# --- add with flags: traffic flows, the table and the JSON show it ---
ctl add b --tcp --listen "$P_B" --bind 127.0.0.1 --to "127.0.0.1:$P_ECHO"
expect 0 "add b with flags"
[[ $(echo_via "$P_B") == ok ]] && pass "route b carries traffic" || fail "route b does not carry traffic"
grep -q "\"id\": \"b\"" "$cfg" && pass "add written to the config file" || fail "config file lacks b"

ctl routes
expect 0 "routes"
line=$(grep -E '^b ' <<<"$out")
if [[ $(head -1 <<<"$out") == ID*PROTO*LISTEN*TARGET*LISTENING*ACTIVE*TOTAL*BYTES* &&
      $line == *"tcp"*"127.0.0.1:$P_B"*"127.0.0.1:$P_ECHO"*"127.0.0.1:$P_B"* ]]; then
  pass "routes table shows b with its listening address"
else
  fail "routes table: $out"
fi
[[ $(awk '$1=="b"{print $7}' <<<"$out") -ge 1 ]] && pass "routes table counts b's connection" || fail "TOTAL for b: $out"

ctl --json routes
expect 0 "--json routes"
python3 -c 'import json,sys; r=json.load(sys.stdin); assert {x["id"] for x in r} == {"a","b"}, r' \
  <<<"$out" && pass "--json routes parses as JSON with a and b" || fail "--json routes: $out"
busctl_json=$(busctl --address="$BUS" --json=short call io.ringfwd1 /io/ringfwd1 io.ringfwd1.Manager ListRoutes |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0])')
[[ $(python3 -c 'import json,sys; a,b=sys.argv[1:]; r1=json.loads(a); r2=json.loads(b)
for r in r1+r2: r["state"].pop("counters", None)
print(r1 == r2)' "$out" "$busctl_json") == True ]] && pass "--json prints the daemon's JSON" || fail "--json differs from ListRoutes"

ctl route b
expect 0 "route b"
[[ $out == *"127.0.0.1:$P_B"* && $out == *"127.0.0.1:$P_ECHO"* ]] && pass "route b shows listen and target" || fail "route b: $out"
ctl --json route b
python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["id"]=="b" and "state" in r' <<<"$out" \
  && pass "--json route b parses" || fail "--json route b: $out"

# --- the error paths, each with its exit code and the error name as sent ---
ctl add b --tcp --listen "$P_E" --bind 127.0.0.1 --to "127.0.0.1:$P_ECHO"
expect 1 "duplicate id -> 1 Exists" "ringfwdctl: io.ringfwd1.Error.Exists: "
ctl add s --listen 22 --to 127.0.0.1:22
expect 1 "blocked port -> 1 BlockedPort" "ringfwdctl: io.ringfwd1.Error.BlockedPort: "
ctl add c --listen "$P_A" --bind 127.0.0.1 --to 127.0.0.1:1
expect 1 "same port -> 1 PortConflict" "ringfwdctl: io.ringfwd1.Error.PortConflict: "
ctl add 'Bad Id' --listen "$P_E" --to 127.0.0.1:1
expect 1 "bad id -> 1 InvalidRoute" "ringfwdctl: io.ringfwd1.Error.InvalidRoute: "
ctl add g --udp --listen "$P_E" --gateway nowhere --lan 192.168.2.5:27015
expect 1 "unknown gateway -> 1 InvalidRoute" "ringfwdctl: io.ringfwd1.Error.InvalidRoute: "
ctl rm nope
expect 4 "rm unknown -> 4 NotFound" "ringfwdctl: io.ringfwd1.Error.NotFound: "
ctl route nope
expect 4 "route unknown -> 4 NotFound" "ringfwdctl: io.ringfwd1.Error.NotFound: "
ctl update nope --listen "$P_E"
expect 4 "update unknown -> 4 NotFound" "ringfwdctl: io.ringfwd1.Error.NotFound: "
echo '{"role":"edge","routes":[{"id":"x"}]}' >"$work/bad-apply.json"
ctl apply "$work/bad-apply.json"
expect 1 "apply a bad config -> 1 InvalidConfig" "ringfwdctl: io.ringfwd1.Error.InvalidConfig: "
[[ $(echo_via "$P_A") == ok && $(echo_via "$P_B") == ok ]] && pass "refused calls changed nothing" || fail "a refused call changed routes"

# Usage errors: 2, before the bus is touched.
for args in "" "frob" "add" "add x --listen 1" "add x --to 127.0.0.1:1" "add x --listen 1 --to nocolon" \
    "add x --listen 1 --to 127.0.0.1:1 --gateway g --lan 1.2.3.4:5" "add x --listen 1 --gateway g" \
    "add x --tcp --udp --listen 1 --to 127.0.0.1:1" "add x --frob" "add --file $work/f.json x" \
    "route" "route a b" "rm" "apply" "stats extra" "update b" "check" "--bus" "add --file $work/missing.json"; do
  # shellcheck disable=SC2086
  ctl $args
  expect 2 "usage: ringfwdctl ${args:-(nothing)} -> 2"
done
"$RINGFWDCTL" --help | grep -q '^usage: ringfwdctl' && pass "--help prints usage, exit 0" || fail "--help"

# --- update to a new port: dual-bind overlap ---
ctl update b --listen "$P_C"
expect 0 "update b to a new port"
[[ $(echo_via "$P_C") == ok ]] && pass "the new port serves" || fail "new port does not serve"
ctl --json route b
python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["listen_port"]=='"$P_C"' and r["listen"]=="127.0.0.1" and r["target"]["port"]=='"$P_ECHO"', r' \
  <<<"$out" && pass "update kept the other fields" || fail "update lost fields: $out"
sleep 1.8
[[ $(echo_via "$P_B") != ok ]] && pass "the old port closed after overlap_ms" || fail "old port still open"

# update and add from JSON (a file and stdin).
echo "{\"id\":\"b\",\"protocol\":\"tcp\",\"listen\":\"127.0.0.1\",\"listen_port\":$P_D,\"target\":{\"host\":\"127.0.0.1\",\"port\":$P_ECHO}}" >"$work/b.json"
ctl update --file "$work/b.json"
expect 0 "update --file"
[[ $(echo_via "$P_D") == ok ]] && pass "update --file moved b" || fail "update --file"
echo "{\"id\":\"e\",\"listen\":\"127.0.0.1\",\"listen_port\":$P_E,\"target\":{\"host\":\"127.0.0.1\",\"port\":$P_ECHO}}" |
  "$RINGFWDCTL" --bus "$BUS" add --file - >/dev/null 2>"$work/err"
rc=$?; err=$(<"$work/err")
expect 0 "add --file - (stdin)"
[[ $(echo_via "$P_E") == ok ]] && pass "route e from stdin carries traffic" || fail "route e"

# --- rm ---
ctl rm e
expect 0 "rm e"
ctl --json routes
python3 -c 'import json,sys; assert "e" not in {x["id"] for x in json.load(sys.stdin)}' <<<"$out" \
  && pass "e is gone from routes" || fail "e still listed"
grep -q "\"id\": \"e\"" "$cfg" && fail "config file still has e" || pass "rm written to the config file"

# --- apply FILE ---
cat >"$work/apply.json" <<JSON
{"role":"edge","dataplane":"auto","workers":2,"blocked_ports":[22],
 "limits":{"overlap_ms":1500},
 "routes":[{"id":"a","listen":"127.0.0.1","listen_port":$P_A,"target":{"host":"127.0.0.1","port":$P_ECHO}},
           {"id":"z","listen":"127.0.0.1","listen_port":$P_B,"target":{"host":"127.0.0.1","port":$P_ECHO}}]}
JSON
ctl apply "$work/apply.json"
expect 0 "apply FILE"
ctl --json routes
[[ $(python3 -c 'import json,sys; print(",".join(sorted(x["id"] for x in json.load(sys.stdin))))' <<<"$out") == a,z ]] \
  && pass "apply replaced the routes (a, z)" || fail "apply: $out"
[[ $(echo_via "$P_B") == ok ]] && pass "applied route z carries traffic" || fail "route z"

# --- stats ---
ctl stats
expect 0 "stats"
[[ $out == *"dataplane:"* && $out == *"(total)"* && $(grep -cE '^(a|z) ' <<<"$out") == 2 ]] \
  && pass "stats shows the dataplane, each route and the total" || fail "stats: $out"
ctl --json stats
python3 -c 'import json,sys; s=json.load(sys.stdin); assert "dataplane" in s and "z" in s["routes"]' <<<"$out" \
  && pass "--json stats parses" || fail "--json stats: $out"

# --- reload: the file is re-read ---
python3 - "$cfg" "$P_D" "$P_ECHO" <<'PY'
import json, sys
path, port, echo = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = json.load(open(path))
c["routes"].append({"id": "r", "listen": "127.0.0.1", "listen_port": port,
                    "target": {"host": "127.0.0.1", "port": echo}})
json.dump(c, open(path, "w"))
PY
ctl reload
expect 0 "reload"
[[ $(echo_via "$P_D") == ok ]] && pass "reload picked up the edited file" || fail "reload did not pick up r"
cp "$cfg" "$work/good.json"
echo '{"role":"edge","routes":[{"id":"Bad"}' >"$cfg"
ctl reload
expect 1 "reload of a broken file -> 1 InvalidConfig" "ringfwdctl: io.ringfwd1.Error.InvalidConfig: "
[[ $(echo_via "$P_D") == ok ]] && pass "a refused reload keeps what ran" || fail "refused reload dropped routes"
cp "$work/good.json" "$cfg"

# --- check, offline ---
"$RINGFWDCTL" check "$work/apply.json" >"$work/out" 2>"$work/err"; rc=$?; err=$(<"$work/err")
expect 0 "check a good file"
grep -q ': ok (2 routes, role edge)' "$work/out" && pass "check prints ok" || fail "check output: $(<"$work/out")"
cat >"$work/bad.json" <<'JSON'
{"role":"edge","blocked_ports":[22],
 "routes":[{"id":"Bad Id","listen_port":22,"target":{"host":"127.0.0.1","port":1}}]}
JSON
"$RINGFWDCTL" check "$work/bad.json" >"$work/out" 2>"$work/err"; rc=$?; err=$(<"$work/err")
expect 1 "check a bad file -> 1" "routes[0]"
"$RINGFWD" --check "$work/bad.json" >/dev/null 2>"$work/err2"
[[ $err == "$(<"$work/err2")" ]] && pass "check prints what ringfwd --check prints" || fail "check differs from ringfwd --check"

# --- cannot reach: 3 ---
ctl --bus "unix:path=$work/no-such-bus" routes
expect 3 "no bus -> 3" "cannot connect"
kill "$RF_PID"; wait "$RF_PID" 2>/dev/null
ctl routes
expect 3 "bus up, daemon gone -> 3" "cannot reach ringfwd"
ctl add q --listen "$P_E" --to 127.0.0.1:1
expect 3 "add with the daemon gone -> 3"

if ((fails)); then
  echo "--- ringfwd log ---"; tail -30 "$work/ringfwd.log"
  echo "$fails failed"
  exit 1
fi
echo "ringfwdctl: all checks passed"
