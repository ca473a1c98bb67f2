// UDP load generator and sink for the perf lab's udp suite (compiled by perf/lab at run time).
//
//   udpload sink --port P [--host H] [--max-seconds S]
//       Binds H:P (UDP), counts every datagram it receives (recvmmsg, batches of 64) and
//       echoes the probe datagrams ("PROBE..." payloads) back to their sender. On SIGTERM or
//       SIGINT prints one JSON line: packets, bytes, first/last arrival (CLOCK_MONOTONIC, s).
//   udpload send --port P [--host H] --size N --seconds S [--flows F] [--batch B]
//       F connected UDP sockets (one flow each, distinct source ports). First proves each
//       flow carries a reply (a probe echoed by the sink, 3 s timeout); then sends N-byte
//       datagrams as fast as it can for S seconds, round-robin over the flows, B datagrams
//       per sendmmsg. Prints one JSON line: packets/bytes sent, send errors, elapsed seconds.
//
// Why not iperf3 -u: iperf3 sends one datagram per syscall and reads one per syscall; on two
// vCPUs its sender and receiver top out near 190k/100k packets/s even with no proxy, so the
// figure would measure iperf3. Batching moves the ceiling to the proxy.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <string>
#include <vector>

static volatile sig_atomic_t g_stop = 0;
static void on_sig(int) { g_stop = 1; }

static double now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char* arg(int argc, char** argv, const char* name, const char* def) {
  for (int i = 2; i + 1 < argc; ++i)
    if (strcmp(argv[i], name) == 0) return argv[i + 1];
  return def;
}

static sockaddr_in addr_of(const char* host, int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
    fprintf(stderr, "bad host %s\n", host);
    exit(2);
  }
  return a;
}

static int sink(int argc, char** argv) {
  const char* host = arg(argc, argv, "--host", "127.0.0.1");
  int port = atoi(arg(argc, argv, "--port", "0"));
  double max_s = atof(arg(argc, argv, "--max-seconds", "600"));
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  int one = 1, buf = 8 << 20;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf) != 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  sockaddr_in a = addr_of(host, port);
  if (bind(fd, (sockaddr*)&a, sizeof a) != 0) {
    fprintf(stderr, "bind %s:%d: %s\n", host, port, strerror(errno));
    return 1;
  }
  fprintf(stderr, "ready\n");
  enum { B = 64, MAXLEN = 65536 };
  static char bufs[B][2048];
  std::vector<char> big(MAXLEN);
  mmsghdr msgs[B];
  iovec iov[B];
  sockaddr_in from[B];
  unsigned long long packets = 0, bytes = 0, probes = 0;
  double first = 0, last = 0, deadline = now() + max_s;
  while (!g_stop && now() < deadline) {
    for (int i = 0; i < B; ++i) {
      iov[i] = {bufs[i], sizeof bufs[i]};
      msgs[i].msg_hdr = {};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_name = &from[i];
      msgs[i].msg_hdr.msg_namelen = sizeof from[i];
    }
    int n = recvmmsg(fd, msgs, B, 0, nullptr);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) {
        pollfd p{fd, POLLIN, 0};
        poll(&p, 1, 100);
        continue;
      }
      fprintf(stderr, "recvmmsg: %s\n", strerror(errno));
      return 1;
    }
    double t = now();
    for (int i = 0; i < n; ++i) {
      unsigned len = msgs[i].msg_len;
      if (len >= 5 && memcmp(bufs[i], "PROBE", 5) == 0) {
        ++probes;
        sendto(fd, bufs[i], len, 0, (sockaddr*)&from[i], msgs[i].msg_hdr.msg_namelen);
        continue;
      }
      if (packets == 0) first = t;
      ++packets;
      bytes += len;
    }
    if (n > 0) last = t;
  }
  printf("{\"packets\": %llu, \"bytes\": %llu, \"probes\": %llu, \"first\": %.6f, \"last\": %.6f}\n",
         packets, bytes, probes, first, last);
  fflush(stdout);
  return 0;
}

static int send_load(int argc, char** argv) {
  const char* host = arg(argc, argv, "--host", "127.0.0.1");
  int port = atoi(arg(argc, argv, "--port", "0"));
  int size = atoi(arg(argc, argv, "--size", "64"));
  double seconds = atof(arg(argc, argv, "--seconds", "5"));
  int flows = atoi(arg(argc, argv, "--flows", "4"));
  int batch = atoi(arg(argc, argv, "--batch", "32"));
  if (size < 16 || size > 65000 || flows < 1 || flows > 64 || batch < 1 || batch > 1024) {
    fprintf(stderr, "bad arguments\n");
    return 2;
  }
  sockaddr_in dst = addr_of(host, port);
  std::vector<int> fds;
  for (int f = 0; f < flows; ++f) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int buf = 4 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf) != 0)
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    if (connect(fd, (sockaddr*)&dst, sizeof dst) != 0) {
      fprintf(stderr, "connect: %s\n", strerror(errno));
      return 1;
    }
    fds.push_back(fd);
  }
  // 1. every flow must carry a reply back (the proxy must map the return path)
  for (int f = 0; f < flows; ++f) {
    char probe[64], reply[128];
    int len = snprintf(probe, sizeof probe, "PROBE %d", f);
    bool ok = false;
    for (int attempt = 0; attempt < 6 && !ok; ++attempt) {
      send(fds[f], probe, len, 0);
      pollfd p{fds[f], POLLIN, 0};
      if (poll(&p, 1, 500) == 1) {
        ssize_t r = recv(fds[f], reply, sizeof reply, 0);
        ok = r == len && memcmp(reply, probe, len) == 0;
        if (r < 0) {
          fprintf(stderr, "flow %d: probe reply: %s\n", f, strerror(errno));
          usleep(200000);
        }
      }
    }
    if (!ok) {
      printf("{\"error\": \"flow %d: no echo of the probe within 3 s\"}\n", f);
      return 1;
    }
  }
  // 2. the load
  std::vector<char> payload(size, 'u');
  std::vector<mmsghdr> msgs(batch);
  std::vector<iovec> iov(batch);
  unsigned long long seq = 0, packets = 0, bytes = 0, errors = 0;
  std::vector<std::vector<char>> bufs(batch, payload);
  double t0 = now(), end = t0 + seconds, t = t0;
  int f = 0;
  unsigned loops = 0;
  while (!g_stop) {
    if ((++loops & 15) == 0 && (t = now()) >= end) break;
    for (int i = 0; i < batch; ++i) {
      memcpy(bufs[i].data(), &seq, sizeof seq);
      ++seq;
      iov[i] = {bufs[i].data(), (size_t)size};
      msgs[i].msg_hdr = {};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int n = sendmmsg(fds[f], msgs.data(), batch, 0);
    if (n < 0) {
      ++errors;  // ECONNREFUSED (ICMP from a missing listener), ENOBUFS: count, go on
      if (errors > 1000000) break;
    } else {
      packets += n;
      bytes += (unsigned long long)n * size;
    }
    f = (f + 1) % flows;
  }
  t = now();
  printf("{\"packets\": %llu, \"bytes\": %llu, \"send_errors\": %llu, \"seconds\": %.6f, "
         "\"flows\": %d, \"batch\": %d, \"size\": %d}\n",
         packets, bytes, errors, t - t0, flows, batch, size);
  fflush(stdout);
  return 0;
}

int main(int argc, char** argv) {
  signal(SIGTERM, on_sig);
  signal(SIGINT, on_sig);
  signal(SIGPIPE, SIG_IGN);
  if (argc >= 2 && strcmp(argv[1], "sink") == 0) return sink(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "send") == 0) return send_load(argc, argv);
  fprintf(stderr, "usage: udpload sink|send ...\n");
  return 2;
}
