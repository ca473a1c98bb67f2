# Shared by the shell tests that drive the daemon over D-Bus (sourced, not run): a work
# directory and processes cleaned up on exit, pass/fail lines, free loopback ports, a python3
# echo server as the target, and a private dbus-daemon. Loopback only.

# bus_lib_init NAME: work dir /tmp/NAME-XXXXXX, cleanup trap, counters.
bus_lib_init() {
  work=$(mktemp -d "/tmp/$1-XXXXXX")
  pids=()
  fails=0
  trap bus_lib_cleanup EXIT
}
bus_lib_cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }

# free_ports N: N distinct free ports below the ephemeral range, each checked by binding.
free_ports() {
  python3 - "$1" <<'PY'
import random, socket, sys
ports = []
while len(ports) < int(sys.argv[1]):
    p = random.randint(20000, 30000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        if p not in ports:
            ports.append(p)
    except OSError:
        pass
    finally:
        s.close()
print(*ports)
PY
}

# start_echo PORT: an echo server on 127.0.0.1:PORT.
start_echo() {
  python3 - "$1" >"$work/echo.log" 2>&1 <<'PY' &
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
def h(c):
    with c:
        while (d := c.recv(65536)):
            c.sendall(d)
while True:
    c, _ = s.accept(); threading.Thread(target=h, args=(c,), daemon=True).start()
PY
  pids+=($!)
  # Ready when it accepts: the first check must not race the interpreter's start-up.
  python3 - "$1" <<'PY'
import socket, sys, time
deadline = time.time() + 10
while time.time() < deadline:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        break
    except OSError:
        time.sleep(0.05)
PY
}

# start_private_bus: a dbus-daemon of our own (anyone may own and call); sets BUS.
start_private_bus() {
  cat >"$work/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=$work/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
CONF
  dbus-daemon --config-file="$work/bus.conf" --nofork --nopidfile >"$work/bus.log" 2>&1 &
  pids+=($!)
  BUS="unix:path=$work/bus"
  for _ in $(seq 50); do [[ -S $work/bus ]] && break; sleep 0.1; done
}
