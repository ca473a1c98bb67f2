#!/usr/bin/env bash
# The sockmap dataplane without its privileges (CAP_BPF + CAP_NET_ADMIN):
#  - "dataplane": "sockmap" refuses to start (exit 3) with a message naming what is missing;
#  - "dataplane": "auto" starts on hybrid and says once in the log why sockmap is not used.
# As root the daemon runs as nobody with every capability dropped (setpriv); as any other user
# it runs as that user, which has no capabilities either.
set -uo pipefail
RINGFWD=${RINGFWD:?set RINGFWD to the ringfwd binary}

failures=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; failures=$((failures + 1)); }

tmp=$(mktemp -d /tmp/ringfwd-sockmap-priv.XXXXXX)
pid=
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
chmod 0755 "$tmp"

run_as=()
if [[ $(id -u) == 0 ]]; then
  command -v setpriv >/dev/null || { echo "SKIP: setpriv (util-linux) not installed"; exit 77; }
  # nobody, no groups, no capabilities at all (bounding set included), no way to regain them.
  run_as=(setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all
          --bounding-set=-all --no-new-privs --)
  # The binary must be reachable for nobody.
  if ! "${run_as[@]}" test -x "$RINGFWD"; then
    echo "SKIP: $RINGFWD is not executable for user nobody"
    exit 77
  fi
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
config() {  # config DATAPLANE
  mkdir -p "$tmp/state-$1"
  [[ $(id -u) == 0 ]] && chown 65534:65534 "$tmp/state-$1"
  cat >"$tmp/$1.json" <<JSON
{ "role": "edge", "dataplane": "$1", "workers": 1, "state_dir": "$tmp/state-$1",
  "routes": [ { "id": "web", "protocol": "tcp", "listen": "127.0.0.1", "listen_port": $port,
                "target": { "host": "127.0.0.1", "port": 9 } } ] }
JSON
  chmod 0644 "$tmp/$1.json"
}

# 1. sockmap, forced: exit 3, and the message says what is missing.
config sockmap
out=$(timeout 20 "${run_as[@]}" "$RINGFWD" --config "$tmp/sockmap.json" --bus none 2>&1)
rc=$?
if [[ $rc == 3 ]]; then ok "sockmap without privileges exits 3"; else bad "sockmap without privileges: exit $rc: $out"; fi
if grep -q 'dataplane "sockmap" cannot run here: sockmap: .*needs CAP_BPF and CAP_NET_ADMIN, or root' <<<"$out"; then
  ok "the error names the missing capabilities: $(grep -m1 'cannot run here' <<<"$out")"
else
  bad "the error does not name CAP_BPF/CAP_NET_ADMIN: $out"
fi
if grep -q 'ready:' <<<"$out"; then bad "it reported ready"; else ok "it never reported ready"; fi

# 2. auto: starts on hybrid and says once why sockmap is out.
config auto
"${run_as[@]}" "$RINGFWD" --config "$tmp/auto.json" --bus none >"$tmp/auto.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  grep -q 'ready:' "$tmp/auto.log" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if grep -q 'ready: role=edge dataplane=hybrid ' "$tmp/auto.log"; then
  ok "auto without privileges runs hybrid: $(grep -m1 'ready:' "$tmp/auto.log")"
else
  bad "auto did not start on hybrid: $(cat "$tmp/auto.log")"
fi
n=$(grep -c 'sockmap unavailable: sockmap: .*needs CAP_BPF and CAP_NET_ADMIN' "$tmp/auto.log")
if [[ $n == 1 ]]; then
  ok "the log says once why: $(grep -m1 'sockmap unavailable' "$tmp/auto.log")"
else
  bad "expected one line saying why sockmap is unavailable, found $n: $(cat "$tmp/auto.log")"
fi
# It forwards: the target port 9 (discard) is closed here, so the client is closed at once;
# what matters is that the listener accepts.
if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), timeout=3).close()"; then
  ok "auto without privileges accepts connections"
else
  bad "auto without privileges does not accept on 127.0.0.1:$port"
fi
kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
if [[ $rc == 0 ]]; then ok "exits 0 on SIGTERM"; else bad "exit $rc on SIGTERM"; fi

if ((failures > 0)); then
  echo "== $failures check(s) failed"
  exit 1
fi
echo "== all checks passed"
