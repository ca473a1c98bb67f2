// Build check for the glue generated from io.ringfwd1.Manager.xml: a class deriving from the
// adaptor and one deriving from the proxy, every pure virtual overridden, so a member added to
// or changed in the XML breaks the build here first.
//
// Run with no arguments it only proves it links. With `--serve ADDRESS` it owns io.ringfwd1 on
// that bus and answers with canned data, which lets the bus-policy test
// (tests/unit/systemd_verify.sh) check who may call what on a real dbus-daemon. With
// `--list ADDRESS` it calls ListRoutes through the generated proxy and prints the answer.
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <string>

#include <sdbus-c++/sdbus-c++.h>

#include "ringfwd1_adaptor.h"
#include "ringfwd1_proxy.h"

namespace {

constexpr const char* kBusName = "io.ringfwd1";
constexpr const char* kObjectPath = "/io/ringfwd1";

class StubManager final : public sdbus::AdaptorInterfaces<io::ringfwd1::Manager_adaptor> {
 public:
  StubManager(sdbus::IConnection& connection, std::string path)
      : AdaptorInterfaces(connection, std::move(path)) {
    registerAdaptor();
  }
  ~StubManager() { unregisterAdaptor(); }

 private:
  std::string ListRoutes() override { return "[]"; }
  std::string GetRoute(const std::string& id) override {
    throw sdbus::Error("io.ringfwd1.Error.NotFound", "no route '" + id + "'");
  }
  void AddRoute(const std::string&) override { emitRoutesChanged(); }
  void UpdateRoute(const std::string&) override { emitRoutesChanged(); }
  void RemoveRoute(const std::string&) override { emitRoutesChanged(); }
  void ApplyConfig(const std::string&) override { emitRoutesChanged(); }
  std::string GetStats() override { return "{}"; }
  void Reload() override {}
  std::string ListGateways() override { return "[]"; }
  std::string AddGateway(const std::string&) override { return "{}"; }
  void RemoveGateway(const std::string&) override {}
  std::string Role() override { return "edge"; }
  std::string Version() override { return "stub"; }
  std::string Dataplane() override { return "copy"; }
};

class StubClient final : public sdbus::ProxyInterfaces<io::ringfwd1::Manager_proxy> {
 public:
  StubClient(sdbus::IConnection& connection, std::string destination, std::string path)
      : ProxyInterfaces(connection, std::move(destination), std::move(path)) {
    registerProxy();
  }
  ~StubClient() { unregisterProxy(); }

 private:
  void onRoutesChanged() override {}
};

int serve(const std::string& address) {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);  // the event loop thread inherits the mask

  auto connection = sdbus::createSessionBusConnectionWithAddress(address);
  StubManager manager(*connection, kObjectPath);
  connection->requestName(kBusName);
  connection->enterEventLoopAsync();
  std::printf("serving %s on %s\n", kBusName, address.c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop, &sig);
  connection->leaveEventLoop();
  return 0;
}

int list(const std::string& address) {
  auto connection = sdbus::createSessionBusConnectionWithAddress(address);
  StubClient client(*connection, kBusName, kObjectPath);
  std::printf("%s\n", client.ListRoutes().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 1) return 0;
  if (argc != 3 || (std::strcmp(argv[1], "--serve") != 0 && std::strcmp(argv[1], "--list") != 0)) {
    std::fprintf(stderr, "usage: control_bindings_check [--serve|--list ADDRESS]\n");
    return 2;
  }
  try {
    return std::strcmp(argv[1], "--serve") == 0 ? serve(argv[2]) : list(argv[2]);
  } catch (const sdbus::Error& e) {
    std::fprintf(stderr, "control_bindings_check: %s: %s\n", e.getName().c_str(),
                 e.getMessage().c_str());
    return 1;
  }
}
