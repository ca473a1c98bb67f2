// Micro-benchmarks of the control path: parsing a realistic configuration and the per-accept
// route lookup. Run with `meson test -C BUILD --benchmark` or `BUILD/perf/ringfwd-bench`.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "ringfwd/config/config.hpp"
#include "ringfwd/routing/route_table.hpp"

namespace {

constexpr uint16_t kFirstPort = 20000;

// The listen port of route i: consecutive from kFirstPort, one port per route (every fifth
// route is a small range and takes 4 ports).
struct Layout {
  std::string json;
};

// A realistic edge config with n routes: two gateways, direct TCP targets, LAN devices behind
// gateways (some with Wake-on-LAN), UDP port ranges, tcp+udp, per-route limits and allow
// lists, PROXY protocol, and TLS passthrough routes sharing port 443 told apart by SNI.
Layout make_config(int n) {
  Layout l;
  std::string& j = l.json;
  j.reserve(static_cast<size_t>(n) * 260 + 1024);
  j += R"({
  "role": "edge",
  "dataplane": "splice",
  "workers": 0,
  "state_dir": "/var/lib/ringfwd",
  "blocked_ports": [22, 53, 51820],
  "limits": { "max_connections": 100000, "connect_timeout_ms": 5000,
              "idle_timeout_s": 3600, "udp_idle_timeout_s": 30,
              "overlap_ms": 10000, "drain_timeout_s": 300 },
  "gateways": [ { "id": "home", "tunnel_ip": "10.8.0.2" },
                { "id": "office", "tunnel_ip": "10.8.0.3" } ],
  "routes": [
)";
  uint32_t port = kFirstPort;
  char buf[640];
  for (int i = 0; i < n; ++i) {
    if (i) j += ",\n";
    const int kind = i % 10;
    const unsigned a = static_cast<unsigned>(i / 250), b = static_cast<unsigned>(i % 250 + 1);
    int len = 0;
    switch (kind) {
      case 0:  // TLS passthrough on 443, one domain per route
        len = std::snprintf(buf, sizeof buf,
            R"(    { "id": "tls-%d", "protocol": "tcp", "listen_port": 443,)"
            R"( "tls": { "mode": "passthrough", "domains": ["host%d.example.com"] },)"
            R"( "target": { "gateway": "home", "lan_host": "192.168.%u.%u", "lan_port": 443 } })",
            i, i, a, b);
        break;
      case 1:  // UDP range
        len = std::snprintf(buf, sizeof buf,
            R"(    { "id": "udp-%d", "protocol": "udp", "listen_port": "%u-%u",)"
            R"( "target": { "gateway": "office", "lan_host": "192.168.%u.%u", "lan_port": 27015 },)"
            R"( "timeouts": { "udp_idle_timeout_s": 60 } })",
            i, port, port + 3, a, b);
        port += 4;
        break;
      case 2:  // LAN device with Wake-on-LAN
        len = std::snprintf(buf, sizeof buf,
            R"(    { "id": "rdp-%d", "protocol": "tcp", "listen_port": %u,)"
            R"( "target": { "gateway": "home", "lan_host": "192.168.%u.%u", "lan_port": 3389 },)"
            R"( "wol": { "mac": "aa:bb:cc:%02x:%02x:%02x" } })",
            i, port, a, b, (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
        port++;
        break;
      case 3:  // tcp+udp direct
        len = std::snprintf(buf, sizeof buf,
            R"(    { "id": "dns-%d", "protocol": "tcp+udp", "listen": "0.0.0.0", "listen_port": %u,)"
            R"( "target": { "host": "192.0.2.%u", "port": 53 } })",
            i, port, b);
        port++;
        break;
      case 4:  // allow list + limits
        len = std::snprintf(buf, sizeof buf,
            R"(    { "id": "db-%d", "protocol": "tcp", "listen_port": %u,)"
            R"( "target": { "host": "10.0.%u.%u", "port": 5432 }, "max_connections": 200,)"
            R"( "allow": ["203.0.113.0/24", "2001:db8::/32"],)"
            R"( "timeouts": { "connect_timeout_ms": 2000, "idle_timeout_s": 600 } })",
            i, port, a, b);
        port++;
        break;
      case 5:  // PROXY protocol to the target
        len = std::snprintf(buf, sizeof buf,
            R"(    { "id": "web-%d", "protocol": "tcp", "listen_port": %u,)"
            R"( "target": { "host": "127.0.0.1", "port": 8080 }, "proxy_protocol": "v2" })",
            i, port);
        port++;
        break;
      default:  // plain SSH-like LAN forwards
        len = std::snprintf(buf, sizeof buf,
            R"(    { "id": "ssh-%d", "protocol": "tcp", "listen_port": %u,)"
            R"( "target": { "gateway": "%s", "lan_host": "192.168.%u.%u", "lan_port": 22 } })",
            i, port, (i & 1) ? "home" : "office", a, b);
        port++;
        break;
    }
    j.append(buf, static_cast<size_t>(len));
  }
  j += "\n  ]\n}\n";
  return l;
}

const Layout& layout(int n) {
  static const Layout l10 = make_config(10);
  static const Layout l1000 = make_config(1000);
  return n == 10 ? l10 : l1000;
}

std::string first_problem(const rf::config::ParseResult& r) {
  return r.problems.empty() ? std::string("no config") : r.problems.front().str();
}

void BM_ConfigParse(benchmark::State& state) {
  const Layout& l = layout(static_cast<int>(state.range(0)));
  {
    auto r = rf::config::parse(l.json);
    if (!r.ok()) {
      state.SkipWithError(("config rejected: " + first_problem(r)).c_str());
      return;
    }
  }
  for (auto _ : state) {
    auto r = rf::config::parse(l.json);
    benchmark::DoNotOptimize(r);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(l.json.size()));
  state.counters["routes"] = static_cast<double>(state.range(0));
  state.counters["json_bytes"] = static_cast<double>(l.json.size());
}
BENCHMARK(BM_ConfigParse)->Arg(10)->Arg(1000)->Unit(benchmark::kMicrosecond);

void BM_RouteTableBuild(benchmark::State& state) {
  const Layout& l = layout(static_cast<int>(state.range(0)));
  auto r = rf::config::parse(l.json);
  if (!r.ok()) {
    state.SkipWithError(("config rejected: " + first_problem(r)).c_str());
    return;
  }
  for (auto _ : state) {
    auto t = rf::routing::RouteTable::build(*r.config);
    if (!t) {
      state.SkipWithError(("build failed: " + t.error().str()).c_str());
      break;
    }
    benchmark::DoNotOptimize(t);
  }
}
BENCHMARK(BM_RouteTableBuild)->Arg(10)->Arg(1000)->Unit(benchmark::kMicrosecond);

// The per-connection route choice on a shared TLS port: one SNI lookup per new connection,
// cycling over every name served on 443 (hits) and, with misses=1, over names nobody serves
// (a listener already knows its port: plain routes need no lookup at all).
void BM_SniDispatch(benchmark::State& state) {
  const Layout& l = layout(static_cast<int>(state.range(0)));
  const bool misses = state.range(1) != 0;
  auto r = rf::config::parse(l.json);
  if (!r.ok()) {
    state.SkipWithError(("config rejected: " + first_problem(r)).c_str());
    return;
  }
  auto t = rf::routing::RouteTable::build(*r.config);
  if (!t) {
    state.SkipWithError(("build failed: " + t.error().str()).c_str());
    return;
  }
  const rf::routing::TcpPort* tls = nullptr;
  for (const auto& p : (*t)->tcp_ports())
    if (p.port == 443) tls = &p;
  if (!tls || tls->exact.empty()) {
    state.SkipWithError("no TLS routes on port 443 in the config");
    return;
  }
  std::vector<std::string> names;
  for (const auto& [name, route] : tls->exact) names.push_back(misses ? "x" + name : name);
  const size_t n = names.size();
  size_t i = 0;
  uint64_t found = 0;
  for (auto _ : state) {
    const rf::routing::ResolvedRoute* route = tls->by_sni(names[i]);
    benchmark::DoNotOptimize(route);
    found += route != nullptr;
    if (++i == n) i = 0;
  }
  benchmark::DoNotOptimize(found);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["names"] = static_cast<double>(n);
}
BENCHMARK(BM_SniDispatch)
    ->ArgsProduct({{10, 1000}, {0, 1}})
    ->ArgNames({"routes", "misses"});

}  // namespace

BENCHMARK_MAIN();
