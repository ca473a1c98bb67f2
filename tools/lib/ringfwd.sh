# Running ringfwd daemons inside the topology (tools/lib/topo.sh) and reading their logs.
# The binary is $RINGFWD.
# shellcheck shell=bash

# rfd_config_copy SRC DST KEY=JSON...: DST is SRC with the given top-level keys replaced,
# e.g. rfd_config_copy examples/dev-edge.json edge.json 'dataplane="copy"'.
rfd_config_copy() {
  python3 - "$@" <<'EOF'
import json, sys
src, dst, *pairs = sys.argv[1:]
with open(src) as f:
    config = json.load(f)
for pair in pairs:
    key, value = pair.split("=", 1)
    config[key] = json.loads(value)
with open(dst, "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
EOF
}

# rfd_config_add_routes FILE JSON_ARRAY: appends the routes of JSON_ARRAY to FILE's "routes".
rfd_config_add_routes() {
  python3 - "$@" <<'EOF'
import json, sys
path, routes = sys.argv[1], json.loads(sys.argv[2])
with open(path) as f:
    config = json.load(f)
config.setdefault("routes", []).extend(routes)
with open(path, "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
EOF
}

# rfd_start VAR NS LOG CONFIG [BUS]: starts the daemon in namespace NS (stderr to LOG), waits
# for its "ready:" line; VAR gets the pid. BUS (default none) is its --bus. On failure prints
# the log and returns 1.
rfd_start() {
  local _var=$1 ns=$2 log=$3 config=$4 bus=${5:-none} _rfd_pid deadline rc
  topo_spawn _rfd_pid "$ns" "$log" "$RINGFWD" --config "$config" --bus "$bus"
  printf -v "$_var" '%s' "$_rfd_pid"
  deadline=$((SECONDS + 20))
  until grep -q '^ringfwd\[info\]: ready:' "$log" 2>/dev/null; do
    if ! rf_pid_alive "$_rfd_pid"; then
      wait "$_rfd_pid" 2>/dev/null && rc=0 || rc=$?
      rf_log "ringfwd ($config) exited with status $rc before it was ready; its log:"
      sed 's/^/    /' "$log" >&2
      return 1
    fi
    if ((SECONDS >= deadline)); then
      rf_log "ringfwd ($config) not ready after 20s; its log:"
      sed 's/^/    /' "$log" >&2
      return 1
    fi
    sleep 0.1
  done
}

# rfd_ready_line LOG: the daemon's "ready:" line.
rfd_ready_line() { grep -m1 '^ringfwd\[info\]: ready:' "$1"; }

# rfd_stats PID LOG ROUTE...: sends SIGUSR1 and prints the fresh "stats route=ROUTE ..." line
# of every ROUTE (fails if one does not appear within 5 s).
rfd_stats() {
  local pid=$1 log=$2 before route line deadline; shift 2
  before=$(wc -l <"$log")
  kill -USR1 "$pid"
  deadline=$((SECONDS + 5))
  for route in "$@"; do
    while :; do
      line=$(tail -n +"$((before + 1))" "$log" | grep -m1 "ringfwd\[info\]: stats route=$route " || true)
      [[ -z $line ]] || break
      if ((SECONDS >= deadline)); then
        rf_log "no stats line for route $route after SIGUSR1"
        return 1
      fi
      sleep 0.1
    done
    printf '%s\n' "$line"
  done
}

# rfd_field LINE NAME: the number after " NAME=" in a log line (empty if absent).
rfd_field() { sed -n "s/.* $2=\([0-9][0-9]*\).*/\1/p" <<<"$1"; }

# rfd_wait_exit VAR PID SECONDS: waits for PID (a child of this shell) to exit by itself; VAR
# gets its exit status, or "timeout" (then it was killed). Not in $(...): only this shell can
# reap its child.
rfd_wait_exit() {
  local _var=$1 pid=$2 secs=$3 deadline _rfd_rc
  deadline=$((SECONDS + secs))
  while rf_pid_alive "$pid"; do
    if ((SECONDS >= deadline)); then
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      printf -v "$_var" timeout
      return 0
    fi
    sleep 0.1
  done
  wait "$pid" 2>/dev/null && _rfd_rc=0 || _rfd_rc=$?
  printf -v "$_var" '%s' "$_rfd_rc"
}

# rfd_stop VAR PID SECONDS: SIGTERM, then rfd_wait_exit.
rfd_stop() {
  kill -TERM "$2" 2>/dev/null || true
  rfd_wait_exit "$@"
}

# rfd_bus_start DIR [NS]: a private dbus-daemon with its socket at DIR/bus; sets RFD_BUS to its
# address. Without NS it runs outside the namespaces (its socket is a file, which every
# namespace reaches); with NS it runs inside namespace NS (beside the daemon it serves). It is
# stopped with the other processes of the topology (topo_down).
rfd_bus_start() {
  local dir=$1 ns=${2:-} pid
  cat >"$dir/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=$dir/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
EOF
  if [[ -n $ns ]]; then
    topo_spawn pid "$ns" "$dir/bus.log" dbus-daemon --config-file="$dir/bus.conf" --nofork --nopidfile
  else
    dbus-daemon --config-file="$dir/bus.conf" --nofork --nopidfile >"$dir/bus.log" 2>&1 &
    pid=$!
    TOPO_PIDS+=("$pid")
  fi
  local deadline=$((SECONDS + 10))
  until [[ -S $dir/bus ]]; do
    if ! rf_pid_alive "$pid" || ((SECONDS >= deadline)); then
      rf_log "dbus-daemon did not start: $(cat "$dir/bus.log")"
      return 1
    fi
    sleep 0.05
  done
  RFD_BUS="unix:path=$dir/bus"
}

# rfd_wait_log LOG PATTERN SECONDS: waits until a line of LOG matches PATTERN (grep -E).
rfd_wait_log() {
  local log=$1 pattern=$2 deadline=$((SECONDS + $3))
  until grep -qE "$pattern" "$log" 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}
