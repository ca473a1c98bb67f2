#!/usr/bin/env bash
# End-to-end test: real clients in a "client" namespace reach real servers in a "lan"
# namespace through ringfwd edge -> WireGuard (wireguard-go) -> ringfwd gateway -> LAN, with
# the configs from examples/dev-*.json. Runs once per dataplane (splice, copy, auto; sockmap with E2E_DATAPLANES).
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
# The test checks the example configs as written: no blocked-ports override from outside.
unset RINGFWD_BLOCKED_PORTS
[[ -x $RINGFWD ]] || rf_die "no ringfwd binary at $RINGFWD (set RINGFWD)"
reason=$(topo_unavailable_reason)
[[ -z $reason ]] || skip "$reason"
for tool in curl ssh ssh-keygen sshd iperf3 socat python3 ss sha256sum openssl dig dnsmasq; do
  rf_have "$tool" || skip "$tool not installed"
done

# sockmap is not in the default list yet: in about one run of three its edge kept one
# connection open after SIGTERM (the drain timeout then ended it), an open bug of the sockmap
# dataplane; every other check passes in sockmap mode. E2E_DATAPLANES="sockmap" runs it.
read -ra DATAPLANES <<<"${E2E_DATAPLANES:-splice copy auto}"
work=$(mktemp -d /tmp/ringfwd-e2e.XXXXXX)
topo_init "$work"
failures=0

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  topo_down
  if ((rc != 0)); then
    local f
    for f in "$work"/*.log; do
      [[ -s $f ]] || continue
      echo "--- last lines of $(basename "$f")"
      tail -n 30 "$f"
    done
  fi
  if [[ ${E2E_KEEP:-0} == 1 ]]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }

in_client() { ip netns exec "$TOPO_NS_CLIENT" "$@"; }

EDGE=$TOPO_EDGE_PUBLIC_IP
echo "== topology $TOPO_PREFIX-{client,edge,gw,lan}, work directory $work"
topo_up
lan_web_start
lan_ssh_start "$EDGE" 2222
lan_iperf_start
lan_port_responders 7100 7105 7109
lan_tls_start nas.example.test          # the LAN's own certificate: passthrough keeps it
lan_dns_start nas.example.test 192.0.2.7
lan_sleeper_start 02:00:00:00:00:20 3389  # Wake-on-LAN: listens only once woken
lan_cert "$TOPO_DIR/pki" wiki.example.test  # held by the edge: terminate
PKI=$TOPO_DIR/pki
mapfile -t SSH_OPTS < <(lan_ssh_opts; printf '%s\n' -p 2222)
blob_sha=$(sha256sum <"$work/www/blob.bin" | cut -d' ' -f1)
echo "ok   topology up: WireGuard handshake done, LAN servers listening"

# iperf3_check NAME ARGS...: a 2-second run; passes when the receiver counted bytes.
iperf3_check() {
  local name=$1 out summary; shift
  if ! out=$(in_client timeout 30 iperf3 -c "$EDGE" -p 5201 -t 2 -J "$@" 2>&1); then
    fail "$name: iperf3 failed: $(tail -c 400 <<<"$out")"
    return
  fi
  if summary=$(python3 -c '
import json, sys
end = json.load(sys.stdin)["end"]
received = end["sum_received"]
if received["bytes"] <= 0 or received["bits_per_second"] <= 0:
    sys.exit("receiver counted nothing")
print("%.0f Mbit/s, %d bytes" % (received["bits_per_second"] / 1e6, received["bytes"]))
' <<<"$out" 2>&1); then
    pass "$name: $summary"
  else
    fail "$name: $summary"
  fi
}

# expect_field NAME LINE FIELD MIN: LINE's FIELD is at least MIN.
expect_field() {
  local name=$1 line=$2 field=$3 min=$4 value
  value=$(rfd_field "$line" "$field")
  if [[ -n $value ]] && ((value >= min)); then
    pass "$name: $field=$value (>= $min)"
  else
    fail "$name: $field=${value:-missing}, want >= $min in: $line"
  fi
}

run_dataplane() {
  local dp=$1 edge_cfg=$work/edge-$1.json gw_cfg=$work/gateway-$1.json
  local edge_pid gw_pid edge_log=$work/edge-$1.log gw_log=$work/gateway-$1.log
  local out i port want line st
  echo "== dataplane $dp"
  mkdir -p "$work/state-edge-$dp" "$work/state-gw-$dp"
  rfd_config_copy "$root/examples/dev-edge.json" "$edge_cfg" \
    "dataplane=\"$dp\"" "state_dir=\"$work/state-edge-$dp\""
  rfd_config_copy "$root/examples/dev-gateway.json" "$gw_cfg" \
    "dataplane=\"$dp\"" "state_dir=\"$work/state-gw-$dp\""
  # TLS and UDP routes beside the examples' TCP ones. Each TLS route has its own edge port:
  # routes sharing one edge port by SNI towards one gateway need the hop header (issue 5).
  rfd_config_add_routes "$edge_cfg" '[
    {"id": "nas", "protocol": "tcp", "listen_port": 8443,
     "tls": {"mode": "passthrough", "domains": ["nas.example.test"]},
     "target": {"gateway": "home", "lan_host": "192.168.2.20", "lan_port": 443}},
    {"id": "wiki", "protocol": "tcp", "listen_port": 9443,
     "tls": {"mode": "terminate", "domains": ["wiki.example.test"],
             "cert": "'"$PKI"'/wiki.example.test.pem", "key": "'"$PKI"'/wiki.example.test.key"},
     "target": {"gateway": "home", "lan_host": "192.168.2.20", "lan_port": 80}},
    {"id": "dns", "protocol": "udp", "listen_port": 5353,
     "target": {"gateway": "home", "lan_host": "192.168.2.20", "lan_port": 53}},
    {"id": "rdp", "protocol": "tcp", "listen_port": 3389, "wol": {"mac": "02:00:00:00:00:20"},
     "target": {"gateway": "home", "lan_host": "192.168.2.20", "lan_port": 3389}}]'
  rfd_config_add_routes "$gw_cfg" '[
    {"id": "nas", "protocol": "tcp", "listen": "10.8.0.2", "listen_port": 8443,
     "target": {"lan_host": "192.168.2.20", "lan_port": 443}},
    {"id": "wiki", "protocol": "tcp", "listen": "10.8.0.2", "listen_port": 9443,
     "target": {"lan_host": "192.168.2.20", "lan_port": 80}},
    {"id": "dns", "protocol": "udp", "listen": "10.8.0.2", "listen_port": 5353,
     "target": {"lan_host": "192.168.2.20", "lan_port": 53}},
    {"id": "rdp", "protocol": "tcp", "listen": "10.8.0.2", "listen_port": 3389,
     "wol": {"mac": "02:00:00:00:00:20", "wait_s": 20},
     "target": {"lan_host": "192.168.2.20", "lan_port": 3389}}]'
  for out in "$edge_cfg" "$gw_cfg"; do
    if "$RINGFWD" --check "$out" >"$work/check.out" 2>&1; then
      pass "ringfwd --check $(basename "$out")"
    else
      fail "ringfwd --check $(basename "$out"): $(cat "$work/check.out")"
    fi
  done

  rfd_start gw_pid "$TOPO_NS_GW" "$gw_log" "$gw_cfg" || { fail "$dp: gateway did not start"; return; }
  if ! rfd_start edge_pid "$TOPO_NS_EDGE" "$edge_log" "$edge_cfg"; then
    fail "$dp: edge did not start"
    rfd_stop st "$gw_pid" 10
    return
  fi
  local want=$dp
  [[ $dp == auto ]] && want=hybrid  # auto resolves to the copy/splice hybrid
  for line in "$(rfd_ready_line "$gw_log")" "$(rfd_ready_line "$edge_log")"; do
    if [[ $line == *" dataplane=$want "* ]]; then pass "$dp: ${line#ringfwd\[info\]: }"; else fail "$dp: ready line does not say dataplane=$want: $line"; fi
  done

  # HTTP: a small page (exact body) and 4 MiB of random bytes (hash), then 8 downloads at once.
  out=$(in_client curl -sS --max-time 20 "http://$EDGE:8080/index.html" 2>&1) || true
  if [[ $out == "hello from the LAN web server: $LAN_WEB_TOKEN" ]]; then
    pass "$dp: curl http://$EDGE:8080/ -> LAN web server, body matches"
  else
    fail "$dp: curl http://$EDGE:8080/index.html returned: $(head -c 300 <<<"$out")"
  fi
  out=$(in_client curl -sS --max-time 30 "http://$EDGE:8080/blob.bin" 2>&1 | sha256sum | cut -d' ' -f1)
  if [[ $out == "$blob_sha" ]]; then pass "$dp: 4 MiB download, sha256 matches"; else fail "$dp: 4 MiB download corrupted or cut"; fi
  local pids=()
  for i in 1 2 3 4 5 6 7 8; do
    in_client curl -sS --max-time 60 -o "$work/parallel-$i.bin" "http://$EDGE:8080/blob.bin" 2>"$work/parallel-$i.err" &
    pids+=($!)
  done
  wait "${pids[@]}" || true
  out=0
  for i in 1 2 3 4 5 6 7 8; do
    if [[ $(sha256sum <"$work/parallel-$i.bin" 2>/dev/null | cut -d' ' -f1) == "$blob_sha" ]]; then
      out=$((out + 1))
    fi
  done
  rm -f "$work"/parallel-*
  if ((out == 8)); then pass "$dp: 8 parallel downloads intact"; else fail "$dp: only $out of 8 parallel downloads intact"; fi

  # SSH: host key pinned for the edge address, so the LAN sshd answered; it sees the
  # gateway's LAN address as the client. 4 MiB upload hashed on the far side.
  # shellcheck disable=SC2016  # expanded by the remote shell
  out=$(in_client timeout 30 ssh "${SSH_OPTS[@]}" "root@$EDGE" \
    'echo "ssh-ok ${SSH_CONNECTION%% *}"' 2>&1) || true
  if [[ $out == "ssh-ok $TOPO_GW_LAN_IP" ]]; then
    pass "$dp: ssh -p 2222 $EDGE -> LAN sshd (host key verified), command output matches"
  else
    fail "$dp: ssh returned: $(head -c 400 <<<"$out")"
  fi
  out=$(in_client timeout 30 ssh "${SSH_OPTS[@]}" "root@$EDGE" sha256sum <"$work/www/blob.bin" 2>&1 | cut -d' ' -f1) || true
  if [[ $out == "$blob_sha" ]]; then pass "$dp: 4 MiB upload over ssh, sha256 matches"; else fail "$dp: ssh upload hash: $(head -c 300 <<<"$out")"; fi

  # iperf3: both directions.
  iperf3_check "$dp: iperf3 client -> LAN"
  iperf3_check "$dp: iperf3 LAN -> client (-R)" -R

  iperf3_check "$dp: iperf3 -u client -> LAN (UDP through the tunnel)" -u -b 50M -l 1200

  # TLS passthrough: the client verifies the LAN server's own certificate for its name, so
  # the bytes came through untouched. A name no route serves is closed.
  out=$(in_client curl -sS --max-time 20 --cacert "$PKI/ca.pem" \
    --resolve "nas.example.test:8443:$EDGE" https://nas.example.test:8443/index.html 2>&1) || true
  if [[ $out == "hello from the LAN web server: $LAN_WEB_TOKEN" ]]; then
    pass "$dp: https://nas.example.test:8443 passthrough -> LAN nginx, its certificate verified"
  else
    fail "$dp: passthrough curl returned: $(head -c 300 <<<"$out")"
  fi
  if in_client curl -sS --max-time 10 -k --resolve "other.example.test:8443:$EDGE" \
      https://other.example.test:8443/ >/dev/null 2>&1; then
    fail "$dp: a server name no route serves got an answer"
  else
    pass "$dp: a server name no route serves is closed"
  fi
  # TLS terminate at the edge with its own certificate; plain HTTP through the tunnel.
  out=$(in_client curl -sS --max-time 30 --cacert "$PKI/ca.pem" \
    --resolve "wiki.example.test:9443:$EDGE" https://wiki.example.test:9443/blob.bin 2>&1 | sha256sum | cut -d' ' -f1)
  if [[ $out == "$blob_sha" ]]; then
    pass "$dp: https://wiki.example.test:9443 terminated at the edge, 4 MiB sha256 matches"
  else
    fail "$dp: terminate download corrupted or failed"
  fi
  # UDP: a DNS query to the LAN's dnsmasq through edge and gateway.
  out=$(in_client dig @"$EDGE" -p 5353 +short +time=3 +tries=2 nas.example.test 2>&1) || true
  if [[ $out == 192.0.2.7 ]]; then
    pass "$dp: dig @$EDGE -p 5353 -> LAN dnsmasq answers 192.0.2.7"
  else
    fail "$dp: dig through the UDP route returned: $(head -c 300 <<<"$out")"
  fi

  # Wake-on-LAN: the LAN machine sleeps (nothing on 3389); the gateway broadcasts the magic
  # packet on the LAN and holds the client's one connection until the machine is up.
  local t0=$SECONDS
  out=$(in_client timeout 30 socat -T 25 -t 25 - "TCP:$EDGE:3389" </dev/null 2>&1) || true
  if [[ $out == awake-3389 ]]; then
    pass "$dp: Wake-on-LAN: one connect through edge and gateway reached the sleeping machine ($((SECONDS - t0)) s)"
  else
    fail "$dp: Wake-on-LAN: the connect returned '$(head -c 200 <<<"$out")'; sleeper: $(tail -n 3 "$TOPO_DIR/sleeper-3389.log")"
  fi

  # Port range 7000-7009 -> LAN 7100-7109, keeping the offset; 7010 is outside every route.
  for port in 7000 7005 7009; do
    want=port-$((port + 100))
    out=$(in_client timeout 10 socat -T 5 - "TCP:$EDGE:$port" </dev/null 2>&1) || true
    if [[ $out == "$want" ]]; then pass "$dp: range port $port -> LAN $((port + 100))"; else fail "$dp: range port $port answered '$(head -c 200 <<<"$out")', want '$want'"; fi
  done
  if in_client timeout 10 socat -T 2 - "TCP:$EDGE:7010" </dev/null >/dev/null 2>&1; then
    fail "$dp: port 7010 (no route) accepted a connection"
  else
    pass "$dp: port 7010 (no route) refused"
  fi

  # Counters: the edge saw the bytes of everything above.
  if out=$(rfd_stats "$edge_pid" "$edge_log" web ssh iperf range nas wiki dns); then
    line=$(grep 'route=web ' <<<"$out" || true)
    expect_field "$dp: edge stats web" "$line" total 10
    expect_field "$dp: edge stats web" "$line" bytes_down $((9 * 4 * 1024 * 1024))
    line=$(grep 'route=ssh ' <<<"$out" || true)
    expect_field "$dp: edge stats ssh" "$line" total 2
    expect_field "$dp: edge stats ssh" "$line" bytes_up $((4 * 1024 * 1024))
    line=$(grep 'route=iperf ' <<<"$out" || true)
    expect_field "$dp: edge stats iperf" "$line" bytes_up 1000000
    expect_field "$dp: edge stats iperf" "$line" bytes_down 1000000
    line=$(grep 'route=range ' <<<"$out" || true)
    expect_field "$dp: edge stats range" "$line" total 3
    line=$(grep 'route=nas ' <<<"$out" || true)
    expect_field "$dp: edge stats nas" "$line" total 1
    line=$(grep 'route=wiki ' <<<"$out" || true)
    expect_field "$dp: edge stats wiki" "$line" bytes_down $((4 * 1024 * 1024))
    line=$(grep 'route=dns ' <<<"$out" || true)
    expect_field "$dp: edge stats dns" "$line" total 1
  else
    fail "$dp: edge stats after SIGUSR1: $(tail -n 5 "$edge_log")"
  fi
  if out=$(rfd_stats "$gw_pid" "$gw_log" web); then
    expect_field "$dp: gateway stats web" "$out" bytes_down $((9 * 4 * 1024 * 1024))
  else
    fail "$dp: gateway stats after SIGUSR1"
  fi

  # SIGTERM drains: a slow download already running completes intact, new connections are
  # refused, then the edge exits 0 by itself. The gateway has nothing open: it exits at once.
  in_client curl -sS --max-time 60 --limit-rate 256K -o "$work/drain.bin" "http://$EDGE:8080/blob.bin" \
    2>"$work/drain.err" &
  local curl_pid=$!
  if rf_wait_for 15 "the slow download to start" test -s "$work/drain.bin"; then
    kill -TERM "$edge_pid"
    rf_pid_alive "$curl_pid" || fail "$dp: the slow download ended before SIGTERM: the drain check proves nothing"
    # shellcheck disable=SC2016  # expanded by the inner bash
    if rf_wait_for 5 "the edge to stop accepting" bash -c '! ip netns exec "$0" timeout 2 bash -c "exec 3<>/dev/tcp/$1/8080"' \
      "$TOPO_NS_CLIENT" "$EDGE" 2>/dev/null; then
      pass "$dp: after SIGTERM the edge refuses new connections"
    else
      fail "$dp: the edge still accepts connections after SIGTERM"
    fi
    wait "$curl_pid" || true
    if [[ $(sha256sum <"$work/drain.bin" | cut -d' ' -f1) == "$blob_sha" ]]; then
      pass "$dp: a download in flight at SIGTERM completed intact (drain)"
    else
      fail "$dp: the download in flight at SIGTERM was cut: $(cat "$work/drain.err")"
    fi
    rfd_wait_exit st "$edge_pid" 15
  else
    wait "$curl_pid" || true
    fail "$dp: the slow download did not start: $(cat "$work/drain.err")"
    rfd_stop st "$edge_pid" 15
  fi
  rm -f "$work/drain.bin"
  if [[ $st == 0 ]]; then pass "$dp: edge exits 0 after SIGTERM"; else fail "$dp: edge SIGTERM exit status $st"; fi
  rfd_stop st "$gw_pid" 15
  if [[ $st == 0 ]]; then pass "$dp: gateway exits 0 on SIGTERM"; else fail "$dp: gateway SIGTERM exit status $st"; fi
}

for dp in "${DATAPLANES[@]}"; do
  run_dataplane "$dp"
done

if ((failures > 0)); then
  echo "== $failures check(s) failed"
  exit 1
fi
echo "== all checks passed (${DATAPLANES[*]})"
