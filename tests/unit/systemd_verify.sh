#!/bin/bash
# shellcheck disable=SC2015,SC2317  # ok() never fails; cleanup runs from the EXIT trap
# Checks the shipped systemd and D-Bus files with the real tools:
#  1. systemd-analyze verify on the generated ringfwd.service (Exec paths pointed at the build);
#  2. the bus policy is well-formed XML;
#  3. a private dbus-daemon loads the policy, the real ringfwd daemon owns io.ringfwd1 on it,
#     and the policy decides who may call what (control_bindings_check, built from the
#     generated glue, is the proxy client and the would-be owner that must be refused):
#     root may call everything, user nobody may read but not change (when run as root; as
#     another user, only that it may not own the name).
#  4. systemd-sysusers creates the ringfwd user from ringfwd.sysusers in a scratch root.
# Environment (set by tests/unit/meson.build):
#   RINGFWD_UNIT     the generated ringfwd.service
#   RINGFWD_BIN      the built ringfwd binary
#   RINGFWD_POLICY   systemd/io.ringfwd1.conf
#   RINGFWD_SYSUSERS systemd/ringfwd.sysusers
#   RINGFWD_STUB     the built control_bindings_check
# Exit 0 pass, 1 fail, 77 skip (with the reason on stdout).
set -u

fail=0
say() { printf '%s\n' "$*"; }
bad() { say "FAIL: $*"; fail=1; }
ok() { say "ok: $*"; }
skip() { say "SKIP: $*"; exit 77; }

for v in RINGFWD_UNIT RINGFWD_BIN RINGFWD_POLICY RINGFWD_SYSUSERS RINGFWD_STUB; do
  [[ -n "${!v:-}" && -e "${!v}" ]] || { say "FAIL: $v not set or missing (${!v:-unset})"; exit 1; }
done
command -v systemd-analyze >/dev/null || skip "systemd-analyze not installed (package systemd)"

tmp=$(mktemp -d /tmp/ringfwd-systemd-verify.XXXXXX)
bus_pid=
stub_pid=
cleanup() {
  [[ -n "$stub_pid" ]] && kill "$stub_pid" 2>/dev/null && wait "$stub_pid" 2>/dev/null
  [[ -n "$bus_pid" ]] && kill "$bus_pid" 2>/dev/null && wait "$bus_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

# --- 1. systemd-analyze verify -------------------------------------------------------------
unit_dir="$tmp/units"
mkdir -p "$unit_dir"
unit="$unit_dir/ringfwd.service"
# Only the binary path changes: every other line is verified as shipped.
sed -E "s#^(ExecStart(Pre)?=)[^ ]*/ringfwd #\\1${RINGFWD_BIN} #" "$RINGFWD_UNIT" >"$unit"
grep -q "^ExecStart=${RINGFWD_BIN} --config" "$unit" || bad "could not point ExecStart at $RINGFWD_BIN"
grep -q "^ExecStartPre=${RINGFWD_BIN} --check" "$unit" || bad "could not point ExecStartPre at $RINGFWD_BIN"

# Outside a booted system verify also grumbles about the host's own units; judge only the
# lines that name ours.
verify_out=$(cd "$unit_dir" && SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no "$unit" 2>&1)
verify_rc=$?
ours=$(grep -E "ringfwd\.service|$unit_dir" <<<"$verify_out" || true)
if [[ -n "$ours" ]]; then
  bad "systemd-analyze verify complains about the unit:"
  say "$ours"
elif ((verify_rc != 0)); then
  bad "systemd-analyze verify exited $verify_rc:"
  say "$verify_out"
else
  ok "systemd-analyze verify: no warning about ringfwd.service"
fi
# What the brief promises the unit carries; verify cannot know these.
for want in '^Type=notify$' '^WatchdogSec=' '^User=ringfwd$' '^ProtectSystem=strict$' \
            '^ExecReload=busctl call io.ringfwd1 /io/ringfwd1 io.ringfwd1.Manager Reload$' \
            '^ExecStart=.* --bus system$' '^ReadWritePaths=.*/etc/ringfwd' \
            '^CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_BPF CAP_NET_ADMIN$' \
            '^AmbientCapabilities=CAP_NET_BIND_SERVICE CAP_BPF CAP_NET_ADMIN$'; do
  grep -Eq "$want" "$RINGFWD_UNIT" || bad "unit lacks a line matching $want"
done

# --- 2. policy well-formed -------------------------------------------------------------------
if command -v xmllint >/dev/null; then
  if xmllint --noout "$RINGFWD_POLICY"; then ok "policy well-formed (xmllint)"; else bad "policy is not well-formed XML"; fi
elif command -v python3 >/dev/null; then
  if python3 -c 'import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])' "$RINGFWD_POLICY"; then
    ok "policy well-formed (python3 xml.etree)"
  else
    bad "policy is not well-formed XML"
  fi
else
  bad "neither xmllint nor python3 to check the policy XML"
fi

# --- 3. a private dbus-daemon with the policy --------------------------------------------------
if ! command -v dbus-daemon >/dev/null || ! command -v busctl >/dev/null; then
  say "note: dbus-daemon or busctl missing; bus policy not exercised"
else
  chmod 0755 "$tmp"  # user nobody must reach the socket
  sock="$tmp/bus.sock"
  address="unix:path=$sock"
  policy_abs=$(realpath "$RINGFWD_POLICY")
  # The system bus defaults (dbus-daemon's system.conf), then our policy, as on a real host.
  cat >"$tmp/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>$address</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>$policy_abs</include>
</busconfig>
EOF
  dbus-daemon --config-file="$tmp/bus.conf" --nofork --nopidfile --nosyslog \
    >"$tmp/bus.out" 2>"$tmp/bus.err" &
  bus_pid=$!
  for _ in $(seq 100); do [[ -S "$sock" ]] && break; kill -0 "$bus_pid" 2>/dev/null || break; sleep 0.05; done
  if [[ ! -S "$sock" ]]; then
    bad "dbus-daemon did not start with the policy:"
    cat "$tmp/bus.err"
    bus_pid=
  else
    # The ringfwd user and group may not exist here: dbus-daemon then warns and skips those
    # <policy> blocks. A container may not let it raise its fd limit. Anything else on stderr
    # is a problem with the file.
    other=$(grep -v -E 'Unknown (username|group) "ringfwd"|Failed to set fd limit' "$tmp/bus.err" || true)
    [[ -z "$other" ]] && ok "dbus-daemon loaded the policy" || bad "dbus-daemon complained: $other"

    call() {  # call METHOD [SIGNATURE ARGS...], as the caller (root or not)
      busctl --address="$address" --timeout=5 call io.ringfwd1 /io/ringfwd1 io.ringfwd1.Manager "$@" 2>&1
    }
    if busctl --address="$address" list >"$tmp/list.out" 2>&1; then
      ok "busctl --address lists names on the private bus"
    else
      bad "busctl --address list failed: $(cat "$tmp/list.out")"
    fi

    if [[ $(id -u) -ne 0 ]]; then
      # Only root and the ringfwd user may own the name, so a stub cannot serve here; what can
      # be checked is that this user is refused.
      if out=$(timeout 5 "$RINGFWD_STUB" --serve "$address" 2>&1); then
        bad "$(id -un): could own io.ringfwd1"
      elif [[ "$out" == *AccessDenied* ]]; then
        ok "$(id -un) (not root): may not own io.ringfwd1"
      else
        bad "$(id -un): owning io.ringfwd1 failed, but not with AccessDenied: $out"
      fi
      say "note: not root: method calls through the policy are exercised only when run as root"
    else
      # The real daemon serves the name, as the service would under this policy.
      free_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
      printf '{"role":"edge","workers":1,"routes":[]}\n' >"$tmp/ringfwd.json"
      "$RINGFWD_BIN" --config "$tmp/ringfwd.json" --bus "$address" >"$tmp/stub.out" 2>&1 &
      stub_pid=$!
      for _ in $(seq 100); do
        busctl --address="$address" list 2>/dev/null | grep -q '^io\.ringfwd1 ' && break
        kill -0 "$stub_pid" 2>/dev/null || break
        sleep 0.05
      done
      if ! busctl --address="$address" list 2>/dev/null | grep -q '^io\.ringfwd1 '; then
        bad "root could not own io.ringfwd1: $(cat "$tmp/stub.out")"
      else
        ok "root owns io.ringfwd1"
        # Root: everything.
        out=$(call ListRoutes) && [[ "$out" == 's "[]"' ]] && ok "root: ListRoutes" || bad "root: ListRoutes: $out"
        r="{\"id\":\"p\",\"listen\":\"127.0.0.1\",\"listen_port\":$free_port,\"target\":{\"host\":\"127.0.0.1\",\"port\":9}}"
        out=$(call AddRoute s "$r") && ok "root: AddRoute" || bad "root: AddRoute: $out"
        out=$(call UpdateRoute s "$r") && ok "root: UpdateRoute" || bad "root: UpdateRoute: $out"
        out=$(call RemoveRoute s p) && ok "root: RemoveRoute" || bad "root: RemoveRoute: $out"
        out=$(call ApplyConfig s '{"role":"edge","workers":1,"routes":[]}') && ok "root: ApplyConfig" || bad "root: ApplyConfig: $out"
        out=$(call Reload) && ok "root: Reload" || bad "root: Reload: $out"
        out=$(call GetRoute s nope)
        [[ "$out" == *'no route "nope"'* ]] && ok "root: GetRoute error passes the bus" || bad "root: GetRoute: $out"
        out=$("$RINGFWD_STUB" --list "$address" 2>&1)
        [[ "$out" == "[]" ]] && ok "generated proxy: ListRoutes" || bad "generated proxy: ListRoutes: $out"

        # Anyone else: read, not write. Needs root to become nobody.
        if command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
          as_nobody() { setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups "$@"; }
          nb() { as_nobody busctl --address="$address" --timeout=5 "$@" 2>&1; }
          nbcall() { nb call io.ringfwd1 /io/ringfwd1 io.ringfwd1.Manager "$@"; }
          out=$(nbcall ListRoutes) && ok "nobody: ListRoutes" || bad "nobody: ListRoutes: $out"
          out=$(nbcall GetStats) && ok "nobody: GetStats" || bad "nobody: GetStats: $out"
          out=$(nbcall ListGateways) && ok "nobody: ListGateways" || bad "nobody: ListGateways: $out"
          out=$(nbcall GetRoute s nope)
          [[ "$out" == *'no route "nope"'* ]] && ok "nobody: GetRoute" || bad "nobody: GetRoute: $out"
          out=$(nb get-property io.ringfwd1 /io/ringfwd1 io.ringfwd1.Manager Version) &&
            ok "nobody: Properties.Get" || bad "nobody: Properties.Get: $out"
          out=$(nb call io.ringfwd1 /io/ringfwd1 org.freedesktop.DBus.Properties GetAll s io.ringfwd1.Manager) &&
            ok "nobody: Properties.GetAll" || bad "nobody: Properties.GetAll: $out"
          out=$(nb introspect io.ringfwd1 /io/ringfwd1) && ok "nobody: Introspect" || bad "nobody: Introspect: $out"
          out=$(nb call io.ringfwd1 /io/ringfwd1 org.freedesktop.DBus.Peer Ping) && ok "nobody: Peer.Ping" || bad "nobody: Peer.Ping: $out"
          for m in "AddRoute s {}" "UpdateRoute s {}" "RemoveRoute s x" "ApplyConfig s {}" "Reload" \
                   "AddGateway s {}" "RemoveGateway s x"; do
            # shellcheck disable=SC2086
            if out=$(nbcall $m); then
              bad "nobody: ${m%% *} was allowed"
            elif [[ "$out" == *"ccess denied"* || "$out" == *AccessDenied* ]]; then
              ok "nobody: ${m%% *} denied"
            else
              bad "nobody: ${m%% *} failed, but not with access denied: $out"
            fi
          done
          out=$(nb call io.ringfwd1 /io/ringfwd1 org.freedesktop.DBus.Properties Set ssv io.ringfwd1.Manager Role s gateway)
          [[ "$out" == *"ccess denied"* || "$out" == *AccessDenied* ]] && ok "nobody: Properties.Set denied" ||
            bad "nobody: Properties.Set not denied by the bus: $out"
          # nobody may not own the name (a second stub, as nobody).
          if out=$(as_nobody timeout 5 "$RINGFWD_STUB" --serve "$address" 2>&1); then
            bad "nobody: could own io.ringfwd1"
          elif [[ "$out" == *AccessDenied* ]]; then
            ok "nobody: may not own io.ringfwd1"
          else
            bad "nobody: owning io.ringfwd1 failed, but not with AccessDenied: $out"
          fi
        else
          say "note: no setpriv or no user nobody: the deny side of the policy is not exercised"
        fi
      fi
    fi
  fi
fi

# --- 4. sysusers ----------------------------------------------------------------------------
if command -v systemd-sysusers >/dev/null; then
  mkdir -p "$tmp/root/etc"
  if out=$(systemd-sysusers --root="$tmp/root" "$RINGFWD_SYSUSERS" 2>&1) &&
     grep -q '^ringfwd:' "$tmp/root/etc/passwd" && grep -q '^ringfwd:' "$tmp/root/etc/group"; then
    ok "systemd-sysusers creates the ringfwd user and group"
  else
    bad "systemd-sysusers: $out"
  fi
else
  say "note: systemd-sysusers missing; ringfwd.sysusers not checked"
fi

((fail == 0)) && say "PASS" || say "FAILED"
exit "$fail"
