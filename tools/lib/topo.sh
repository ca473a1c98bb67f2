# The development/e2e topology: four network namespaces joined by veth links, with a
# WireGuard tunnel (wireguard-go, userspace) between edge and gateway.
#
#   client ──"internet"── edge ══ WireGuard over the underlay ══ gw ──LAN── lan
#   203.0.113.2     203.0.113.1                                 192.168.2.1  192.168.2.20
#                   198.51.100.1 ── underlay (UDP 51820) ── 198.51.100.2
#                   10.8.0.1 ──────────── tunnel ────────────── 10.8.0.2
#
# The gateway dials out to the edge (it sits behind NAT in real life); the edge learns the
# gateway's endpoint from the handshake. ringfwd on the gateway reaches the LAN host on its own
# subnet, so no namespace forwards IP packets.
#
# Usage: source tools/lib/common.sh and this file, then
#   topo_init WORKDIR [ID]      names and addresses (ID defaults to $$; must be a number)
#   trap topo_down EXIT         always: topo_down removes whatever exists, even half-built
#   topo_up                     build and check it (returns non-zero with a message on failure)
#   topo_spawn VAR NS LOG CMD…  run CMD in namespace NS in the background; VAR gets its pid
#   topo_down                   stop every process in the namespaces, delete them
# shellcheck shell=bash

topo_init() {
  TOPO_DIR=$1
  TOPO_ID=${2:-$$}
  [[ $TOPO_ID =~ ^[0-9]+$ ]] || { rf_log "topo_init: ID must be a number"; return 1; }
  TOPO_PREFIX=rf-$TOPO_ID
  TOPO_NS_CLIENT=$TOPO_PREFIX-client
  TOPO_NS_EDGE=$TOPO_PREFIX-edge
  TOPO_NS_GW=$TOPO_PREFIX-gw
  TOPO_NS_LAN=$TOPO_PREFIX-lan
  TOPO_ALL_NS=("$TOPO_NS_CLIENT" "$TOPO_NS_EDGE" "$TOPO_NS_GW" "$TOPO_NS_LAN")

  TOPO_CLIENT_IP=203.0.113.2
  TOPO_EDGE_PUBLIC_IP=203.0.113.1
  TOPO_EDGE_UNDERLAY_IP=198.51.100.1
  TOPO_GW_UNDERLAY_IP=198.51.100.2
  TOPO_EDGE_TUNNEL_IP=10.8.0.1
  TOPO_GW_TUNNEL_IP=10.8.0.2
  TOPO_GW_LAN_IP=192.168.2.1
  TOPO_LAN_HOST_IP=192.168.2.20
  TOPO_WG_PORT=51820
  # wireguard-go keeps its control socket in /var/run/wireguard/IFACE.sock, which all
  # namespaces share: interface names must be unique per run (and at most 15 characters).
  TOPO_WG_EDGE_IF=rfwg${TOPO_ID}e
  TOPO_WG_GW_IF=rfwg${TOPO_ID}g
  TOPO_PIDS=()
}

# Why the topology cannot be built here, or nothing. Used to skip tests cleanly.
topo_unavailable_reason() {
  if ((EUID != 0)); then echo "needs root (network namespaces)"; return; fi
  if [[ ! -c /dev/net/tun ]]; then echo "no /dev/net/tun (wireguard-go needs a TUN device)"; return; fi
  local c
  for c in ip wg wireguard-go timeout; do
    rf_have "$c" || { echo "$c not installed"; return; }
  done
  if ! ip netns list >/dev/null 2>&1; then echo "ip netns does not work here"; return; fi
}

topo_ns_exists() { [[ -e /run/netns/$1 ]]; }

# topo_exec NS CMD...
topo_exec() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

topo_spawn() {
  local _var=$1 _ns=$2 _log=$3; shift 3
  ip netns exec "$_ns" "$@" >"$_log" 2>&1 </dev/null &
  local _topo_pid=$!
  TOPO_PIDS+=("$_topo_pid")
  printf -v "$_var" '%s' "$_topo_pid"
}

# _topo_link NS_A IF_A ADDR_A NS_B IF_B ADDR_B (addresses with prefix length)
_topo_link() {
  ip -n "$1" link add "$2" type veth peer name "$5" netns "$4"
  # brd +: the subnet's broadcast address, as DHCP or networkd set it on a real LAN
  # (Wake-on-LAN packets go there).
  ip -n "$1" addr add "$3" brd + dev "$2"
  ip -n "$4" addr add "$6" brd + dev "$5"
  ip -n "$1" link set "$2" up
  ip -n "$4" link set "$5" up
}

# _topo_reach NS IP: a TCP SYN to a closed port of IP; a reset (or an accept) proves the path
# both ways without needing ping. "No route" or silence fails.
_topo_reach() {
  local out
  # shellcheck disable=SC2016  # expanded by the inner bash
  out=$(ip netns exec "$1" timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/1"' "$2" 2>&1) && return 0
  [[ $out == *"Connection refused"* ]]
}

# _topo_wg_start NS IFACE: wireguard-go in the foreground (so it is our child), waits for its socket.
_topo_wg_start() {
  local ns=$1 ifc=$2 pid
  topo_spawn pid "$ns" "$TOPO_DIR/wireguard-go-$ifc.log" \
    env WG_PROCESS_FOREGROUND=1 LOG_LEVEL=error wireguard-go -f "$ifc"
  if ! rf_wait_for 10 "wireguard-go $ifc in $ns" test -S "/var/run/wireguard/$ifc.sock"; then
    rf_log "wireguard-go log:"; cat "$TOPO_DIR/wireguard-go-$ifc.log" >&2 || true
    return 1
  fi
  rf_pid_alive "$pid" || { rf_log "wireguard-go $ifc exited"; return 1; }
}

topo_up() {
  local reason ns
  reason=$(topo_unavailable_reason)
  [[ -z $reason ]] || { rf_log "cannot build the topology: $reason"; return 1; }
  mkdir -p "$TOPO_DIR"

  for ns in "${TOPO_ALL_NS[@]}"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
  done
  _topo_link "$TOPO_NS_CLIENT" eth0 "$TOPO_CLIENT_IP/24" "$TOPO_NS_EDGE" public0 "$TOPO_EDGE_PUBLIC_IP/24"
  _topo_link "$TOPO_NS_EDGE" underlay0 "$TOPO_EDGE_UNDERLAY_IP/24" "$TOPO_NS_GW" underlay0 "$TOPO_GW_UNDERLAY_IP/24"
  _topo_link "$TOPO_NS_GW" lan0 "$TOPO_GW_LAN_IP/24" "$TOPO_NS_LAN" eth0 "$TOPO_LAN_HOST_IP/24"

  (umask 077 && wg genkey >"$TOPO_DIR/wg-edge.key" && wg genkey >"$TOPO_DIR/wg-gw.key")
  wg pubkey <"$TOPO_DIR/wg-edge.key" >"$TOPO_DIR/wg-edge.pub"
  wg pubkey <"$TOPO_DIR/wg-gw.key" >"$TOPO_DIR/wg-gw.pub"

  _topo_wg_start "$TOPO_NS_EDGE" "$TOPO_WG_EDGE_IF"
  _topo_wg_start "$TOPO_NS_GW" "$TOPO_WG_GW_IF"
  ip netns exec "$TOPO_NS_EDGE" wg set "$TOPO_WG_EDGE_IF" \
    private-key "$TOPO_DIR/wg-edge.key" listen-port "$TOPO_WG_PORT" \
    peer "$(cat "$TOPO_DIR/wg-gw.pub")" allowed-ips "$TOPO_GW_TUNNEL_IP/32"
  ip netns exec "$TOPO_NS_GW" wg set "$TOPO_WG_GW_IF" \
    private-key "$TOPO_DIR/wg-gw.key" listen-port "$TOPO_WG_PORT" \
    peer "$(cat "$TOPO_DIR/wg-edge.pub")" allowed-ips "$TOPO_EDGE_TUNNEL_IP/32" \
    endpoint "$TOPO_EDGE_UNDERLAY_IP:$TOPO_WG_PORT" persistent-keepalive 25
  ip -n "$TOPO_NS_EDGE" addr add "$TOPO_EDGE_TUNNEL_IP/24" dev "$TOPO_WG_EDGE_IF"
  ip -n "$TOPO_NS_GW" addr add "$TOPO_GW_TUNNEL_IP/24" dev "$TOPO_WG_GW_IF"
  ip -n "$TOPO_NS_EDGE" link set "$TOPO_WG_EDGE_IF" up
  ip -n "$TOPO_NS_GW" link set "$TOPO_WG_GW_IF" up

  # Every hop, in the order traffic needs it; the gateway speaks first through the tunnel.
  rf_wait_for 10 "client -> edge public address" _topo_reach "$TOPO_NS_CLIENT" "$TOPO_EDGE_PUBLIC_IP"
  rf_wait_for 10 "gateway -> edge underlay" _topo_reach "$TOPO_NS_GW" "$TOPO_EDGE_UNDERLAY_IP"
  rf_wait_for 15 "gateway -> edge through WireGuard" _topo_reach "$TOPO_NS_GW" "$TOPO_EDGE_TUNNEL_IP"
  rf_wait_for 10 "edge -> gateway through WireGuard" _topo_reach "$TOPO_NS_EDGE" "$TOPO_GW_TUNNEL_IP"
  rf_wait_for 10 "gateway -> LAN host" _topo_reach "$TOPO_NS_GW" "$TOPO_LAN_HOST_IP"
  # The client must not reach the tunnel or the LAN except through ringfwd.
  if _topo_reach "$TOPO_NS_CLIENT" "$TOPO_LAN_HOST_IP" >/dev/null 2>&1; then
    rf_log "topology is wrong: the client reaches the LAN directly"; return 1
  fi
}

topo_down() {
  local ns pids
  for ns in "${TOPO_ALL_NS[@]}"; do
    topo_ns_exists "$ns" || continue
    mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
    rf_stop_pids 3 "${pids[@]}"
  done
  rf_stop_pids 3 "${TOPO_PIDS[@]}"
  TOPO_PIDS=()
  for ns in "${TOPO_ALL_NS[@]}"; do
    topo_ns_exists "$ns" && { ip netns del "$ns" 2>/dev/null || rf_log "could not delete netns $ns"; }
  done
  rm -f "/var/run/wireguard/$TOPO_WG_EDGE_IF.sock" "/var/run/wireguard/$TOPO_WG_GW_IF.sock"
  return 0
}

# Removes namespaces left by runs that were killed before they could clean up
# (rf-<pid>-* whose pid is gone).
topo_clean_stale() {
  local ns id pids n=0
  while read -r ns _; do
    [[ $ns =~ ^rf-([0-9]+)-(client|edge|gw|lan)$ ]] || continue
    id=${BASH_REMATCH[1]}
    rf_pid_alive "$id" && continue
    mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
    rf_stop_pids 3 "${pids[@]}"
    ip netns del "$ns" && n=$((n + 1))
    rm -f "/var/run/wireguard/rfwg${id}e.sock" "/var/run/wireguard/rfwg${id}g.sock"
  done < <(ip netns list 2>/dev/null)
  rf_log "removed $n stale namespace(s)"
}
