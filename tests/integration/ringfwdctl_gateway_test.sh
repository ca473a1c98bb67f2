#!/usr/bin/env bash
# ringfwdctl gateways / gateway add / gateway rm against the real daemon: an edge with a "sync"
# section on a private dbus-daemon. Checks the files `gateway add --out` writes (token, the
# gateway's ringfwd.json, wg-quick pairs whose keys match when wg is installed), that a real
# gateway started from those files comes online and carries traffic, and every error path with
# its exit code. Loopback only: 127.0.0.1 stands for the edge's tunnel address, 127.0.0.x for
# the gateways'.
set -uo pipefail
RINGFWD=${RINGFWD:?set RINGFWD to the ringfwd binary}
RINGFWDCTL=${RINGFWDCTL:?set RINGFWDCTL to the ringfwdctl binary}
for t in dbus-daemon busctl python3; do
  command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
# shellcheck source=tests/integration/bus_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bus_lib.sh"
bus_lib_init ringfwdctl-gw-test
read -r P_ECHO P_SYNC P_R P_R2 < <(free_ports 4)
start_echo "$P_ECHO"
start_private_bus
WG=$(command -v wg || true)

mkdir -p "$work/state"
cfg="$work/ringfwd.json"
cat >"$cfg" <<JSON
{"role":"edge","dataplane":"auto","workers":1,"state_dir":"$work/state",
 "blocked_ports":[22],
 "sync":{"listen":"127.0.0.1:$P_SYNC"},
 "gateways":[],
 "routes":[]}
JSON

# start_edge CONFIG: the daemon on the private bus; sets RF_PID.
start_edge() {
  "$RINGFWD" --config "$1" --bus "$BUS" >>"$work/ringfwd.log" 2>&1 &
  RF_PID=$!
  pids+=("$RF_PID")
  local up=0
  for _ in $(seq 100); do
    busctl --address="$BUS" get-property io.ringfwd1 /io/ringfwd1 io.ringfwd1.Manager Role \
      >/dev/null 2>&1 && { up=1; break; }
    sleep 0.1
  done
  ((up)) || { fail "daemon did not come up on the bus"; cat "$work/ringfwd.log"; exit 1; }
}
start_edge "$cfg"

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
    fail "$what: exit $rc, want $code (stdout: $out) (stderr: $err)"
  elif [[ -n $needle && $err != *"$needle"* ]]; then
    fail "$what: stderr lacks '$needle': $err"
  else
    pass "$what"
  fi
}
check() {  # check DESCRIPTION COMMAND...: pass when the command succeeds
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
# conf_value FILE KEY [NTH]: the value of the NTH (default 1) "KEY = value" line of a wg-quick file.
conf_value() {
  awk -v k="$2" -v n="${3:-1}" '$1 == k && $2 == "=" { if (++i == n) { print $3; exit } }' "$1"
}
mode_of() { stat -c %a "$1"; }
gateways_json() {  # the daemon's ListGateways, through busctl
  busctl --address="$BUS" --json=short call io.ringfwd1 /io/ringfwd1 io.ringfwd1.Manager ListGateways |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0])'
}

ctl gateways
expect 0 "gateways with none"
[[ $out == "no gateways" ]] && pass "gateways says there are none" || fail "gateways: $out"

# --- gateway add --out: the files ---
od="$work/home-files"
ctl gateway add home --endpoint 203.0.113.1 --out "$od"
expect 0 "gateway add home --out"
token_file="$work/state/gateways/home.token"
check "the daemon wrote the token file" test -f "$token_file"
check "the token file in --out is there, mode 600" test "$(mode_of "$od/home.token" 2>/dev/null)" = 600
token=$(tr -d '\n' <"$od/home.token" 2>/dev/null)
[[ $token =~ ^[0-9a-f]{64}$ ]] && pass "the token is 64 hex characters" || fail "token: '$token'"
[[ $token == "$(tr -d '\n' <"$token_file" 2>/dev/null)" ]] && pass "the token equals the daemon's token file" \
  || fail "token differs from $token_file"
tunnel_ip=$(gateways_json | python3 -c 'import json,sys; print([g for g in json.load(sys.stdin) if g["id"]=="home"][0]["tunnel_ip"])')
[[ $tunnel_ip == 127.0.0.2 ]] && pass "the default tunnel_ip is the next free address of the sync /24" \
  || fail "tunnel_ip: $tunnel_ip"
python3 - "$od/home-ringfwd.json" "$P_SYNC" <<'PY' && pass "home-ringfwd.json: role, gateway_id, tunnel_ip, sync" || fail "home-ringfwd.json: $(cat "$od/home-ringfwd.json")"
import json, sys
c = json.load(open(sys.argv[1]))
assert c == {"role": "gateway", "gateway_id": "home", "tunnel_ip": "127.0.0.2",
             "sync": {"edge": "127.0.0.1:" + sys.argv[2], "token_file": "/etc/ringfwd/token"}}, c
PY
"$RINGFWD" --check "$od/home-ringfwd.json" >"$work/check.out" 2>&1 && pass "ringfwd --check accepts home-ringfwd.json" \
  || fail "ringfwd --check home-ringfwd.json: $(<"$work/check.out")"
[[ $out == *"$od/home.token"*"/etc/ringfwd/token"* && $out == *"Next steps"* && $out == *"ringfwdctl gateways"* ]] \
  && pass "the output names the files and the next steps" || fail "gateway add output: $out"
grep -q '"home"' "$cfg" && pass "the gateway is written to the config file" || fail "config file lacks home"

if [[ -n $WG ]]; then
  gw_conf="$od/home-wg0.conf"
  if wg show wg0 public-key >/dev/null 2>&1; then
    edge_conf="$od/edge-home-peer.conf"  # this machine runs a wg0: only a peer block
  else
    edge_conf="$od/edge-wg0.conf"
  fi
  check "home-wg0.conf is there, mode 600" test "$(mode_of "$gw_conf" 2>/dev/null)" = 600
  check "$(basename "$edge_conf") is there, mode 600" test "$(mode_of "$edge_conf" 2>/dev/null)" = 600
  gw_priv=$(conf_value "$gw_conf" PrivateKey)
  gw_pub_in_edge=$(conf_value "$edge_conf" PublicKey)
  [[ -n $gw_priv && $(wg pubkey <<<"$gw_priv") == "$gw_pub_in_edge" ]] \
    && pass "the edge's peer key is the gateway's private key's public key" || fail "gateway key pair does not match"
  if [[ $edge_conf == */edge-wg0.conf ]]; then
    edge_priv=$(conf_value "$edge_conf" PrivateKey)
    [[ -n $edge_priv && $(wg pubkey <<<"$edge_priv") == "$(conf_value "$gw_conf" PublicKey)" ]] \
      && pass "the gateway's peer key is the edge's private key's public key" || fail "edge key pair does not match"
    [[ $(conf_value "$edge_conf" Address) == 127.0.0.1/24 && $(conf_value "$edge_conf" ListenPort) == 51820 ]] \
      && pass "edge-wg0.conf: Address and ListenPort" || fail "edge-wg0.conf: $(cat "$edge_conf")"
  fi
  [[ $(conf_value "$gw_conf" Address) == 127.0.0.2/24 && $(conf_value "$gw_conf" Endpoint) == 203.0.113.1:51820 &&
     $(conf_value "$gw_conf" AllowedIPs) == 127.0.0.1/32 && $(conf_value "$gw_conf" PersistentKeepalive) == 25 ]] \
    && pass "home-wg0.conf: Address, Endpoint, AllowedIPs, PersistentKeepalive" || fail "home-wg0.conf: $(cat "$gw_conf")"
  [[ $(conf_value "$edge_conf" AllowedIPs) == 127.0.0.2/32 ]] && pass "the edge's peer allows the gateway's /32" \
    || fail "edge AllowedIPs: $(cat "$edge_conf")"

  # An edge whose interface runs already: a fake `wg` answers `show` with a known key.
  mkdir -p "$work/fakebin"
  fake_priv=$(wg genkey)
  fake_pub=$(wg pubkey <<<"$fake_priv")
  cat >"$work/fakebin/wg" <<SH
#!/usr/bin/env bash
if [[ \$1 == show && \$3 == public-key ]]; then echo "$fake_pub"; exit 0; fi
exec "$WG" "\$@"
SH
  chmod +x "$work/fakebin/wg"
  PATH="$work/fakebin:$PATH" ctl gateway add lab --tunnel-ip 127.0.0.7 --endpoint 203.0.113.1:4000 \
    --wg-interface wg7 --wg-port 4000 --out "$work/lab-files"
  expect 0 "gateway add lab with the edge's wg7 running"
  lab="$work/lab-files"
  check "a running interface gives a [Peer] block, no whole edge file" \
    test -f "$lab/edge-lab-peer.conf" -a ! -e "$lab/edge-wg7.conf"
  [[ $(conf_value "$lab/lab-wg7.conf" PublicKey) == "$fake_pub" && $(conf_value "$lab/lab-wg7.conf" Endpoint) == 203.0.113.1:4000 ]] \
    && pass "lab-wg7.conf peers with the running interface's key" || fail "lab-wg7.conf: $(cat "$lab/lab-wg7.conf")"
  lab_pub=$(wg pubkey <<<"$(conf_value "$lab/lab-wg7.conf" PrivateKey)")
  [[ $(conf_value "$lab/edge-lab-peer.conf" PublicKey) == "$lab_pub" && $(conf_value "$lab/edge-lab-peer.conf" AllowedIPs) == 127.0.0.7/32 ]] \
    && pass "edge-lab-peer.conf holds the gateway's public key and /32" || fail "edge-lab-peer.conf: $(cat "$lab/edge-lab-peer.conf")"
  [[ $out == *"wg set wg7 peer $lab_pub allowed-ips 127.0.0.7/32"* ]] && pass "the output gives the wg set line" \
    || fail "no wg set line: $out"
else
  echo "skip: wg is not installed: the WireGuard key checks do not run"
fi

# Without wg: the gateway is added, the WireGuard part skipped, exit 0.
mkdir -p "$work/nowg-bin"
PATH="$work/nowg-bin" ctl gateway add nowg --out "$work/nowg-files"
expect 0 "gateway add without wg installed -> 0"
[[ $out == *"not installed"*"The gateway was added"* ]] && pass "it says wg is missing and the gateway was added" \
  || fail "no-wg output: $out"
check "without wg: token and ringfwd.json, no wg-quick files" test -f "$work/nowg-files/nowg.token" -a \
  -f "$work/nowg-files/nowg-ringfwd.json" -a ! -e "$work/nowg-files/nowg-wg0.conf" -a ! -e "$work/nowg-files/edge-wg0.conf"

# Printed instead of written: the token and the sections are on stdout; no endpoint -> placeholder.
ctl gateway add office --tunnel-ip 127.0.0.9
expect 0 "gateway add office (printed)"
office_token=$(tr -d '\n' <"$work/state/gateways/office.token" 2>/dev/null)
[[ -n $office_token && $out == *"$office_token"* && $out == *"--- on the gateway: /etc/ringfwd/ringfwd.json ---"* &&
   $out == *'"tunnel_ip": "127.0.0.9"'* ]] && pass "the printed form has the token and the gateway's config" \
  || fail "printed gateway add: $out"
if [[ -n $WG ]]; then
  [[ $out == *"Endpoint = EDGE_PUBLIC_IP:51820"* && $out == *"No --endpoint given"* ]] \
    && pass "no --endpoint: a placeholder and a note" || fail "placeholder: $out"
fi
ctl --json gateway add js
expect 0 "--json gateway add"
python3 -c 'import json,sys; c=json.load(sys.stdin); assert set(c)=={"id","tunnel_ip","token","token_file","sync","edge_tunnel_ip"} and c["id"]=="js", c' \
  <<<"$out" && pass "--json gateway add prints the daemon's reply" || fail "--json gateway add: $out"

# --- gateways: listed offline ---
ctl gateways
expect 0 "gateways"
line=$(grep -E '^home ' <<<"$out")
if [[ $(head -1 <<<"$out") == ID*TUNNEL_IP*ONLINE*ADDRESS*IN_SYNC*ROUTES*LAST_SEEN* &&
      $(awk '{print $2, $3, $4, $5, $6, $7}' <<<"$line") == "127.0.0.2 no - no - never" ]]; then
  pass "gateways lists home offline"
else
  fail "gateways table: $out"
fi
ctl --json gateways
python3 -c 'import json,sys; g={x["id"]:x for x in json.load(sys.stdin)}; h=g["home"]
assert h["online"] is False and h["tunnel_ip"]=="127.0.0.2" and h["routes"]==[] and h["token_file"].endswith("/gateways/home.token"), h' \
  <<<"$out" && pass "--json gateways parses, home offline" || fail "--json gateways: $out"

# --- errors ---
ctl gateway add home
expect 1 "gateway add of an existing name -> 1 Exists" "ringfwdctl: io.ringfwd1.Error.Exists: "
ctl gateway add other --tunnel-ip 127.0.0.2
expect 1 "gateway add with a taken tunnel_ip -> 1 Exists" "ringfwdctl: io.ringfwd1.Error.Exists: "
ctl gateway add 'Bad Name'
expect 1 "gateway add with a bad name -> 1 InvalidConfig" "ringfwdctl: io.ringfwd1.Error.InvalidConfig: "
ctl gateway add again --out "$od"
expect 2 "gateway add --out into a directory with the files -> 2" "exists already"
[[ $(gateways_json) != *'"again"'* ]] && pass "a refused --out added nothing" || fail "'again' was added"
for args in "gateway" "gateway add" "gateway rm" "gateway frob x" "gateway rm a b" "gateway rm a --out x" \
    "gateway add x --wg-port 0" "gateway add x --wg-port 70000" "gateway add x --endpoint host:99999" \
    "gateway add x --endpoint" "gateway add x --wg-interface much-too-long-name" "gateway add x --frob" \
    "gateway add x y" "gateway add x --token-file relative" "gateways extra"; do
  # shellcheck disable=SC2086
  ctl $args
  expect 2 "usage: ringfwdctl $args -> 2"
done

# --- a real gateway from the files comes online, in sync, and carries a route ---
gw_cfg="$work/gateway.json"
python3 - "$od/home-ringfwd.json" "$od/home.token" "$work/gwstate" "$gw_cfg" <<'PY'
import json, os, sys
c = json.load(open(sys.argv[1]))
c["sync"]["token_file"] = sys.argv[2]  # instead of /etc/ringfwd/token
c["state_dir"] = sys.argv[3]
c["workers"] = 1
os.makedirs(sys.argv[3], exist_ok=True)
json.dump(c, open(sys.argv[4], "w"))
PY
"$RINGFWD" --config "$gw_cfg" --bus none >>"$work/gateway.log" 2>&1 &
GW_PID=$!
pids+=("$GW_PID")
ctl add r1 --tcp --listen "$P_R" --bind 127.0.0.1 --gateway home --lan "127.0.0.1:$P_ECHO"
expect 0 "add a route to gateway home"
online=0
for _ in $(seq 100); do
  ctl --json gateways
  python3 -c 'import json,sys; h=[g for g in json.load(sys.stdin) if g["id"]=="home"][0]; sys.exit(0 if h["online"] and h["in_sync"] else 1)' \
    <<<"$out" 2>/dev/null && { online=1; break; }
  sleep 0.1
done
((online)) && pass "the gateway started from the files is online and in sync" || fail "home never came online in sync: $out"
ctl gateways
line=$(grep -E '^home ' <<<"$out")
[[ $(awk '{print $3, $5, $6}' <<<"$line") == "yes yes r1" && $(awk '{print $4}' <<<"$line") == 127.0.0.1:* &&
   $line == *"s ago"* ]] && pass "gateways: home online from 127.0.0.1, in sync, route r1, last seen" \
  || fail "gateways table with home online: $out"
reply=$(python3 - "$P_R" <<'PY'
import socket, sys, time
for _ in range(50):
    try:
        c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
        c.sendall(b"ping")
        if c.recv(16) == b"ping":
            print("ok"); break
    except OSError:
        pass
    time.sleep(0.1)
PY
)
[[ $reply == ok ]] && pass "r1 carries traffic edge -> gateway -> LAN" || fail "r1 does not carry traffic"
ctl stats
[[ $out == *"home: online from 127.0.0.1"*", in sync"* ]] && pass "stats shows home online and in sync" \
  || fail "stats: $out"

# --- rm ---
ctl gateway rm home
expect 1 "gateway rm with a route targeting it -> 1 InUse" "ringfwdctl: io.ringfwd1.Error.InUse: "
[[ $err == *r1* ]] && pass "InUse names the route" || fail "InUse message: $err"
ctl rm r1
expect 0 "rm r1"
ctl gateway rm home
expect 0 "gateway rm home"
[[ $out == "removed gateway home" ]] && pass "gateway rm says so" || fail "gateway rm output: $out"
[[ $(gateways_json) != *'"home"'* ]] && pass "home is gone from ListGateways" || fail "home still listed"
check "rm deleted the daemon's token file" test ! -e "$token_file"
grep -q '"home"' "$cfg" && fail "config file still has home" || pass "rm written to the config file"
ctl gateway rm home
expect 4 "gateway rm again -> 4 NotFound" "ringfwdctl: io.ringfwd1.Error.NotFound: "
kill "$GW_PID" 2>/dev/null; wait "$GW_PID" 2>/dev/null

# --- an edge without a sync section: AddGateway refused ---
kill "$RF_PID"; wait "$RF_PID" 2>/dev/null
cfg2="$work/nosync.json"
cat >"$cfg2" <<JSON
{"role":"edge","workers":1,"state_dir":"$work/state",
 "gateways":[{"id":"manual","tunnel_ip":"10.9.0.2"}],
 "routes":[{"id":"m","listen":"127.0.0.1","listen_port":$P_R2,
            "target":{"gateway":"manual","lan_host":"192.168.9.9","lan_port":22}}]}
JSON
start_edge "$cfg2"
ctl gateway add home
expect 1 "gateway add on an edge without sync -> 1 InvalidConfig" "ringfwdctl: io.ringfwd1.Error.InvalidConfig: "
ctl gateways
line=$(grep -E '^manual ' <<<"$out")
[[ $(awk '{print $2, $3, $6}' <<<"$line") == "10.9.0.2 no m" ]] && pass "gateways lists a hand-configured gateway with its route" \
  || fail "gateways without sync: $out"

# --- cannot reach: 3 ---
kill "$RF_PID"; wait "$RF_PID" 2>/dev/null
ctl gateways
expect 3 "gateways with the daemon gone -> 3" "cannot reach ringfwd"
ctl gateway add x --out "$work/unreached"
expect 3 "gateway add with the daemon gone -> 3"

if ((fails)); then
  echo "--- ringfwd log ---"; tail -30 "$work/ringfwd.log"
  echo "--- gateway log ---"; tail -30 "$work/gateway.log" 2>/dev/null
  echo "$fails failed"
  exit 1
fi
echo "ringfwdctl gateways: all checks passed"
