# Real servers on the LAN host of the topology (tools/lib/topo.sh): a web server, sshd,
# iperf3 and small TCP responders for a port range. Each writes its files and logs under
# $TOPO_DIR and runs in $TOPO_NS_LAN through topo_spawn, so topo_down stops it.
# shellcheck shell=bash disable=SC2034  # LAN_* variables are for the callers

# Web server on TOPO_LAN_HOST_IP:80 serving $TOPO_DIR/www: index.html (one line with a token
# unique to this run) and blob.bin (4 MiB of random bytes). nginx, or python3 if nginx is missing.
# Sets LAN_WEB_TOKEN.
lan_web_start() {
  local www=$TOPO_DIR/www pid
  mkdir -p "$www"
  LAN_WEB_TOKEN="ringfwd-lan-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  printf 'hello from the LAN web server: %s\n' "$LAN_WEB_TOKEN" >"$www/index.html"
  head -c $((4 * 1024 * 1024)) /dev/urandom >"$www/blob.bin"
  if rf_have nginx; then
    mkdir -p "$TOPO_DIR/nginx"
    cat >"$TOPO_DIR/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
user root;
pid $TOPO_DIR/nginx/nginx.pid;
error_log $TOPO_DIR/nginx/error.log warn;
events { worker_connections 512; }
http {
  access_log $TOPO_DIR/nginx/access.log;
  client_body_temp_path $TOPO_DIR/nginx/body;
  proxy_temp_path $TOPO_DIR/nginx/proxy;
  fastcgi_temp_path $TOPO_DIR/nginx/fastcgi;
  uwsgi_temp_path $TOPO_DIR/nginx/uwsgi;
  scgi_temp_path $TOPO_DIR/nginx/scgi;
  default_type application/octet-stream;
  sendfile on;
  server {
    listen $TOPO_LAN_HOST_IP:80;
    root $www;
  }
}
EOF
    topo_spawn pid "$TOPO_NS_LAN" "$TOPO_DIR/nginx/stderr.log" \
      nginx -e "$TOPO_DIR/nginx/error.log" -p "$TOPO_DIR/nginx" -c "$TOPO_DIR/nginx/nginx.conf"
    LAN_WEB_LOG=$TOPO_DIR/nginx/access.log
  else
    topo_spawn pid "$TOPO_NS_LAN" "$TOPO_DIR/web.log" \
      python3 -m http.server --bind "$TOPO_LAN_HOST_IP" --directory "$www" 80
    LAN_WEB_LOG=$TOPO_DIR/web.log
  fi
  _lan_wait_listen 10 web "$pid" "$TOPO_LAN_HOST_IP" 80
}

# sshd on TOPO_LAN_HOST_IP:22 with a fresh host key; a fresh user key for the current user.
# Sets LAN_SSH_KEY (client identity) and LAN_SSH_KNOWN_HOSTS (host key pinned for
# "[EDGE_HOST]:EDGE_PORT", the address clients use through the edge).
# lan_ssh_start EDGE_HOST EDGE_PORT
lan_ssh_start() {
  local d=$TOPO_DIR/ssh pid sshd
  sshd=$(command -v sshd) || { rf_log "sshd not installed"; return 1; }
  mkdir -p "$d"
  ssh-keygen -q -t ed25519 -N '' -C ringfwd-dev-host -f "$d/host_ed25519_key"
  ssh-keygen -q -t ed25519 -N '' -C ringfwd-dev-user -f "$d/user_ed25519_key"
  cp "$d/user_ed25519_key.pub" "$d/authorized_keys"
  printf '[%s]:%s %s\n' "$1" "$2" "$(cut -d' ' -f1,2 "$d/host_ed25519_key.pub")" >"$d/known_hosts"
  cat >"$d/sshd_config" <<EOF
ListenAddress $TOPO_LAN_HOST_IP:22
HostKey $d/host_ed25519_key
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
AllowUsers $(id -un)
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
PrintMotd no
LogLevel VERBOSE
EOF
  # sshd's privilege separation directory; the openssh-server package normally creates it.
  [[ -d /run/sshd ]] || install -d -m 0755 /run/sshd
  topo_spawn pid "$TOPO_NS_LAN" "$d/sshd.log" "$sshd" -D -e -f "$d/sshd_config"
  LAN_SSH_KEY=$d/user_ed25519_key
  LAN_SSH_KNOWN_HOSTS=$d/known_hosts
  LAN_SSH_LOG=$d/sshd.log
  _lan_wait_listen 10 sshd "$pid" "$TOPO_LAN_HOST_IP" 22
}

# The ssh options a client uses with lan_ssh_start's keys (prints one option per line).
lan_ssh_opts() {
  printf '%s\n' -F /dev/null -i "$LAN_SSH_KEY" -o IdentitiesOnly=yes \
    -o UserKnownHostsFile="$LAN_SSH_KNOWN_HOSTS" -o GlobalKnownHostsFile=/dev/null \
    -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=10 -o LogLevel=ERROR
}

# iperf3 server on TOPO_LAN_HOST_IP:5201.
lan_iperf_start() {
  local pid
  topo_spawn pid "$TOPO_NS_LAN" "$TOPO_DIR/iperf3.log" iperf3 -s -B "$TOPO_LAN_HOST_IP" -p 5201
  LAN_IPERF_LOG=$TOPO_DIR/iperf3.log
  _lan_wait_listen 10 iperf3 "$pid" "$TOPO_LAN_HOST_IP" 5201
}

# lan_port_responders PORT...: on each PORT a TCP server that answers "port-PORT" and closes.
lan_port_responders() {
  local port pid
  for port in "$@"; do
    topo_spawn pid "$TOPO_NS_LAN" "$TOPO_DIR/responder-$port.log" \
      socat "TCP-LISTEN:$port,bind=$TOPO_LAN_HOST_IP,reuseaddr,fork" "SYSTEM:echo port-$port"
    _lan_wait_listen 10 "responder $port" "$pid" "$TOPO_LAN_HOST_IP" "$port"
  done
}

# A listening socket on HOST:PORT, seen with ss (a probe connection would confuse iperf3).
_lan_listening() { [[ -n $(ip netns exec "$TOPO_NS_LAN" ss -Hltn src "$1" sport = ":$2") ]]; }

# _lan_wait_listen SECONDS NAME PID HOST PORT
_lan_wait_listen() {
  local secs=$1 name=$2 pid=$3 deadline=$((SECONDS + $1))
  until _lan_listening "$4" "$5" 2>/dev/null; do
    rf_pid_alive "$pid" || { rf_log "$name exited at start"; return 1; }
    ((SECONDS < deadline)) || { rf_log "$name is not listening on $4:$5 after ${secs}s"; return 1; }
    sleep 0.1
  done
}

# A test CA and a server certificate signed by it, with openssl: DIR/ca.pem, DIR/NAME.pem
# (leaf), DIR/NAME.key. ECDSA P-256.
# lan_cert DIR NAME
lan_cert() {
  local d=$1 name=$2
  mkdir -p "$d"
  if [[ ! -f $d/ca.pem ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
      -subj "/CN=ringfwd test CA" -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
  fi
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
    -keyout "$d/$name.key" -out "$d/$name.csr" 2>/dev/null
  openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
    -days 2 -extfile <(printf 'subjectAltName=DNS:%s\n' "$name") -out "$d/$name.pem" 2>/dev/null
}

# HTTPS on TOPO_LAN_HOST_IP:443 serving $TOPO_DIR/www (after lan_web_start) with the LAN's own
# certificate for NAME (lan_cert in $TOPO_DIR/pki): what a passthrough route must deliver
# untouched. lan_tls_start NAME
lan_tls_start() {
  local name=$1 d=$TOPO_DIR/nginx-tls pid
  lan_cert "$TOPO_DIR/pki" "$name"
  mkdir -p "$d"
  cat >"$d/nginx.conf" <<EOF2
daemon off;
master_process on;
worker_processes 1;
user root;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 512; }
http {
  access_log $d/access.log;
  client_body_temp_path $d/body;
  proxy_temp_path $d/proxy;
  fastcgi_temp_path $d/fastcgi;
  uwsgi_temp_path $d/uwsgi;
  scgi_temp_path $d/scgi;
  default_type application/octet-stream;
  server {
    listen $TOPO_LAN_HOST_IP:443 ssl;
    server_name $name;
    ssl_certificate $TOPO_DIR/pki/$name.pem;
    ssl_certificate_key $TOPO_DIR/pki/$name.key;
    root $TOPO_DIR/www;
  }
}
EOF2
  topo_spawn pid "$TOPO_NS_LAN" "$d/stderr.log" \
    nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf"
  _lan_wait_listen 10 "nginx https" "$pid" "$TOPO_LAN_HOST_IP" 443
}

# dnsmasq on TOPO_LAN_HOST_IP:53 (UDP) answering NAME -> ADDRESS, nothing else.
# lan_dns_start NAME ADDRESS
lan_dns_start() {
  local pid
  rf_have dnsmasq || { rf_log "dnsmasq not installed"; return 1; }
  topo_spawn pid "$TOPO_NS_LAN" "$TOPO_DIR/dnsmasq.log" \
    dnsmasq --no-daemon --port=53 --listen-address="$TOPO_LAN_HOST_IP" \
    --bind-interfaces --no-resolv --no-hosts --log-queries --address="/$1/$2" \
    --pid-file="$TOPO_DIR/dnsmasq.pid" --user=root
  local deadline=$((SECONDS + 10))
  until [[ -n $(ip netns exec "$TOPO_NS_LAN" ss -Hlun src "$TOPO_LAN_HOST_IP" sport = :53) ]]; do
    rf_pid_alive "$pid" || { rf_log "dnsmasq exited at start"; return 1; }
    ((SECONDS < deadline)) || { rf_log "dnsmasq is not listening after 10s"; return 1; }
    sleep 0.1
  done
}

# A sleeping machine on TOPO_LAN_HOST_IP: nothing listens on PORT until a Wake-on-LAN magic
# packet for MAC arrives (UDP port 9, broadcast on the LAN); then, after a 1 s "boot", it
# answers one TCP connection on PORT with "awake-PORT" and goes back to sleep.
# lan_sleeper_start MAC PORT
lan_sleeper_start() {
  local pid
  local script
  script=$(cat <<'PY'
import socket, sys, time
mac = bytes.fromhex(sys.argv[1].replace(":", ""))
host, port = sys.argv[2], int(sys.argv[3])
magic = b"\xff" * 6 + mac * 16
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
udp.bind(("0.0.0.0", 9))
print("asleep, waiting for", sys.argv[1], flush=True)
while True:
    data, src = udp.recvfrom(2048)
    if data != magic:
        print("ignored a packet from", src, flush=True)
        continue
    print("magic packet from", src, "- booting", flush=True)
    time.sleep(1)
    srv = socket.create_server((host, port))
    conn, peer = srv.accept()
    conn.sendall(b"awake-%d\n" % port)
    conn.close()
    srv.close()
    print("served", peer, "- asleep again", flush=True)
    while True:  # packets that came while awake are not a new wake-up
        udp.setblocking(False)
        try:
            udp.recvfrom(2048)
        except BlockingIOError:
            break
    udp.setblocking(True)
PY
)
  topo_spawn pid "$TOPO_NS_LAN" "$TOPO_DIR/sleeper-$2.log" python3 -u -c "$script" "$1" "$TOPO_LAN_HOST_IP" "$2"
  local deadline=$((SECONDS + 10))
  until [[ -n $(ip netns exec "$TOPO_NS_LAN" ss -Hlun sport = :9) ]]; do
    rf_pid_alive "$pid" || { rf_log "sleeper exited at start"; return 1; }
    ((SECONDS < deadline)) || { rf_log "sleeper is not listening on UDP 9 after 10s"; return 1; }
    sleep 0.1
  done
}
