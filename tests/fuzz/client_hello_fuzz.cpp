// libFuzzer target: the ClientHello reader never reads outside its input or scratch buffer,
// its verdict is consistent as the stream grows, and a Done result is self-consistent.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "ringfwd/proto/client_hello.hpp"

namespace {

using rf::proto::ClientHello;
using rf::proto::HelloStatus;

void check(std::span<const uint8_t> stream, std::span<uint8_t> scratch, HelloStatus& status) {
  ClientHello out;
  const auto res = rf::proto::parse_client_hello(stream, scratch, out);
  status = res.status;
  if (res.why == nullptr) __builtin_trap();
  if (res.status != HelloStatus::Done) return;
  if (out.sni_len > 255 || out.alpn_len > sizeof out.alpn) __builtin_trap();
  if (out.hello_bytes == 0 || out.hello_bytes > stream.size()) __builtin_trap();
  for (char c : out.server_name()) {
    if (c >= 'A' && c <= 'Z') __builtin_trap();  // lower-cased
  }
  if (out.first_alpn().size() > out.alpn_len) __builtin_trap();
  // The bytes the caller forwards as "the hello" must parse alone to the same result.
  ClientHello again;
  const auto res2 = rf::proto::parse_client_hello(stream.first(out.hello_bytes), scratch, again);
  if (res2.status != HelloStatus::Done || again.hello_bytes != out.hello_bytes ||
      again.server_name() != out.server_name() || again.alpn_len != out.alpn_len ||
      std::memcmp(again.alpn, out.alpn, out.alpn_len) != 0) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exact-size heap copy and scratch buffer, so that ASan sees any overread.
  static std::vector<uint8_t> scratch(rf::proto::kMaxClientHelloBytes);
  std::vector<uint8_t> input(data, data + size);
  const std::span<const uint8_t> stream(input);

  // Short prefixes as the stream arrives; once a verdict other than NeedMore is reached,
  // longer prefixes must keep it (the caller acts on the first one).
  HelloStatus first = HelloStatus::NeedMore;
  for (size_t n = 0; n <= std::min<size_t>(size, 64); ++n) {
    std::vector<uint8_t> prefix(input.begin(), input.begin() + static_cast<ptrdiff_t>(n));
    HelloStatus st;
    check(prefix, scratch, st);
    if (first != HelloStatus::NeedMore && st != first) __builtin_trap();
    if (first == HelloStatus::NeedMore) first = st;
  }
  HelloStatus whole;
  check(stream, scratch, whole);
  if (first != HelloStatus::NeedMore && whole != first) __builtin_trap();
  return 0;
}
