// wolfSSL server side of terminate routes. Two things shape this file:
//  - the route is chosen from the ClientHello before TLS starts, so those bytes are already in
//    userspace; the SSL object reads them first through its own I/O callbacks, then the socket;
//  - the data plane never blocks, so every call maps wolfSSL's WANT_READ/WANT_WRITE to Io and
//    the caller waits on the socket itself.
#include "ringfwd/tls/terminator.hpp"

#include <fcntl.h>
#include <string.h>  // explicit_bzero
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

// options.h must come before any other wolfSSL header: it fixes the build flags (and with them
// the struct layouts) the library was compiled with; without it settings.h even warns (an error
// here). clang-format would regroup and sort it, hence the guard.
// clang-format off
#include <wolfssl/options.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfio.h>
// clang-format on

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <mutex>

#include "ringfwd/base/unique_fd.hpp"

namespace rf::tls {
namespace {

WOLFSSL_CTX* as_ctx(void* p) { return static_cast<WOLFSSL_CTX*>(p); }
WOLFSSL* as_ssl(void* p) { return static_cast<WOLFSSL*>(p); }

// TLS 1.3 suites (all AEAD) and, for TLS 1.2, ECDHE (forward secrecy) with AEAD only; both
// ECDSA and RSA authentication so that either kind of certificate works. Both families are in
// one list because wolfSSL drops the TLS 1.3 suites that a list does not name.
// ChaCha20-Poly1305 comes first and the server's order wins: Debian's libwolfssl is built
// without AES-NI, where ChaCha20 moves twice the bytes of AES-GCM per CPU second (measured
// through a terminate route: 220 vs 107-137 MB/s on one core).
constexpr const char* kCipherList =
    "TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";

// These messages are complete sentences ("wiki.pem: no PEM certificate found"); Error::msg
// would add ": Invalid argument" to them, so they carry no error code.
Error problem(std::string text) { return Error{std::error_code(), std::move(text)}; }

std::string wolf_error_text(int err) {
  char buf[WOLFSSL_MAX_ERROR_SZ] = {};
  wolfSSL_ERR_error_string_n(static_cast<unsigned long>(err), buf, sizeof buf);
  return buf;
}

// wolfSSL (built with OPENSSL_EXTRA) also queues errors per thread, OpenSSL style; this code
// reads the return values instead, so drop the queue to keep it from growing on a worker.
void forget_queued_errors() { wolfSSL_ERR_clear_error(); }

// Reads a whole (small) PEM file to explain why wolfSSL refused it. Only used on the error
// path; the content is never logged, it may be a private key.
Result<std::string> slurp(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Error::from_errno(path);
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::from_errno(path);
    if (n == 0) break;
    out.append(buf, size_t(n));
  }
  return out;
}

Error cert_error(const std::string& path, int ret) {
  auto text = slurp(path);
  if (!text) return text.error();
  if (text->find("-----BEGIN CERTIFICATE-----") == std::string::npos)
    return problem(path + ": no PEM certificate found");
  return problem(path + ": cannot load the certificate chain (" + wolf_error_text(ret) + ")");
}

Error key_error(const std::string& path, int ret) {
  auto text = slurp(path);
  if (!text) return text.error();
  if (text->find("-----BEGIN ENCRYPTED PRIVATE KEY-----") != std::string::npos ||
      text->find("Proc-Type: 4,ENCRYPTED") != std::string::npos)
    return problem(path + ": the private key is encrypted (a passphrase is not supported)");
  if (text->find("PRIVATE KEY-----") == std::string::npos)
    return problem(path + ": no PEM private key found");
  return problem(path + ": cannot load the private key (" + wolf_error_text(ret) + ")");
}

Result<std::vector<uint8_t>> alpn_wire(const std::vector<std::string>& protocols) {
  std::vector<uint8_t> wire;
  for (const auto& p : protocols) {
    if (p.empty() || p.size() > 255)
      return problem("ALPN protocol \"" + p + "\" must be 1 to 255 bytes long");
    wire.push_back(uint8_t(p.size()));
    wire.insert(wire.end(), p.begin(), p.end());
  }
  return wire;
}

// Picks the first of the server's protocols (arg: its wire list, in preference order) that the
// client also offers. No match is not an error: answering without ALPN lets the client decide,
// which is what it does with a server that knows no ALPN at all.
int select_alpn(WOLFSSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void* arg) {
  const auto& ours = *static_cast<const std::vector<uint8_t>*>(arg);
  for (size_t i = 0; i < ours.size(); i += 1 + ours[i]) {
    const uint8_t len = ours[i];
    // The client's list is untrusted: a length running past the end stops the scan.
    for (unsigned int j = 0; j < inlen && j + 1 + in[j] <= inlen; j += 1 + in[j]) {
      if (in[j] == len && std::memcmp(in + j + 1, ours.data() + i + 1, len) == 0) {
        *out = ours.data() + i + 1;
        *outlen = len;
        return SSL_TLSEXT_ERR_OK;
      }
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

// Exports an EC public key as an uncompressed point.
bool ec_point(ecc_key* key, std::vector<uint8_t>& out) {
  word32 len = 2 * MAX_ECC_BYTES + 1;
  out.resize(len);
  if (wc_ecc_export_x963(key, out.data(), &len) != 0) return false;
  out.resize(len);
  return true;
}

// The certificate's EC public key; the buffer is SubjectPublicKeyInfo or a bare point
// depending on how the certificate was decoded, so both are accepted.
bool cert_ec_point(WOLFSSL_X509* leaf, std::vector<uint8_t>& out) {
  std::vector<uint8_t> buf(1024);
  int len = int(buf.size());
  if (wolfSSL_X509_get_pubkey_buffer(leaf, buf.data(), &len) != WOLFSSL_SUCCESS || len <= 0)
    return false;
  ecc_key key;
  if (wc_ecc_init(&key) != 0) return false;
  word32 idx = 0;
  bool ok = (buf[0] == 0x30 ? wc_EccPublicKeyDecode(buf.data(), &idx, &key, word32(len))
                            : wc_ecc_import_x963(buf.data(), word32(len), &key)) == 0 &&
            ec_point(&key, out);
  wc_ecc_free(&key);
  return ok;
}

// wolfSSL_CTX_check_private_key compares RSA moduli, but for EC it only pairs the key's scalar
// with the certificate's point and checks the point is on the curve (Debian's build lacks
// WOLFSSL_VALIDATE_ECC_IMPORT), so any P-256 key "matches" any P-256 certificate. Derive the
// public point from the private key and compare. The key bytes are wiped after use.
// Returns false only for a real mismatch; anything it cannot evaluate is left to wolfSSL.
bool ec_key_matches(WOLFSSL_CTX* ctx, const std::string& key_file) {
  WOLFSSL_X509* leaf = wolfSSL_CTX_get0_certificate(ctx);
  if (!leaf || wolfSSL_X509_get_pubkey_type(leaf) != ECDSAk) return true;
  std::vector<uint8_t> cert_pub;
  if (!cert_ec_point(leaf, cert_pub)) return true;

  auto pem = slurp(key_file);
  if (!pem) return true;
  std::vector<uint8_t> der(pem->size());
  const int der_len = wc_KeyPemToDer(reinterpret_cast<const unsigned char*>(pem->data()),
                                     int(pem->size()), der.data(), int(der.size()), nullptr);
  explicit_bzero(pem->data(), pem->size());
  bool match = true;
  ecc_key key;
  if (der_len > 0 && wc_ecc_init(&key) == 0) {
    word32 idx = 0;
    std::vector<uint8_t> key_pub;
    if (wc_EccPrivateKeyDecode(der.data(), &idx, &key, word32(der_len)) == 0 &&
        wc_ecc_make_pub(&key, nullptr) == 0 && ec_point(&key, key_pub)) {
      match = key_pub == cert_pub;
    }
    wc_ecc_free(&key);
  }
  explicit_bzero(der.data(), der.size());
  return match;
}

std::string leaf_subject(WOLFSSL_CTX* ctx) {
  WOLFSSL_X509* leaf = wolfSSL_CTX_get0_certificate(ctx);  // owned by ctx
  if (!leaf) return {};
  char cn[256] = {};
  if (WOLFSSL_X509_NAME* name = wolfSSL_X509_get_subject_name(leaf)) {
    int n = wolfSSL_X509_NAME_get_text_by_NID(name, NID_commonName, cn, sizeof cn);
    if (n > 0) return std::string(cn, size_t(n));
  }
  if (const char* san = wolfSSL_X509_get_next_altname(leaf)) return san;
  return {};
}

}  // namespace

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { wolfSSL_Init(); });
}

// ---- ServerContext -----------------------------------------------------------------------

ServerContext::FileId ServerContext::id_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return FileId{st.st_dev, st.st_ino, st.st_size,
                int64_t(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
}

Result<std::shared_ptr<ServerContext>> ServerContext::load(const std::string& cert_file,
                                                           const std::string& key_file,
                                                           const std::vector<std::string>& alpn) {
  global_init();
  auto wire = alpn_wire(alpn);
  if (!wire) return wire.error();

  // Identity is taken before the contents: a file replaced during the load then shows up as
  // changed on the next check, and is loaded again, rather than being missed.
  struct stat st {};
  if (::stat(cert_file.c_str(), &st) != 0) return Error::from_errno(cert_file);
  if (::stat(key_file.c_str(), &st) != 0) return Error::from_errno(key_file);

  std::shared_ptr<ServerContext> sc(new ServerContext());
  sc->cert_ = cert_file;
  sc->key_ = key_file;
  sc->cert_id_ = id_of(cert_file);
  sc->key_id_ = id_of(key_file);
  sc->alpn_wire_ = std::move(*wire);

  WOLFSSL_CTX* ctx = wolfSSL_CTX_new(wolfSSLv23_server_method());
  if (!ctx) return problem("wolfSSL_CTX_new failed (out of memory?)");
  sc->ctx_ = ctx;  // from here the destructor frees it on every error path

  if (wolfSSL_CTX_SetMinVersion(ctx, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS)
    return problem("wolfSSL: cannot restrict to TLS 1.2 and later");
  if (wolfSSL_CTX_set_cipher_list(ctx, kCipherList) != WOLFSSL_SUCCESS)
    return problem("wolfSSL: cipher list rejected");
  wolfSSL_CTX_set_options(ctx, WOLFSSL_OP_CIPHER_SERVER_PREFERENCE);
  // A terminator authenticates itself only; client certificates are not asked for.
  wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, nullptr);

  int ret = wolfSSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str());
  if (ret != WOLFSSL_SUCCESS) {
    forget_queued_errors();
    return cert_error(cert_file, ret);
  }
  ret = wolfSSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), WOLFSSL_FILETYPE_PEM);
  if (ret != WOLFSSL_SUCCESS) {
    forget_queued_errors();
    return key_error(key_file, ret);
  }
  if (wolfSSL_CTX_check_private_key(ctx) != WOLFSSL_SUCCESS || !ec_key_matches(ctx, key_file)) {
    forget_queued_errors();
    return problem(key_file + " does not match the certificate in " + cert_file);
  }
  sc->subject_ = leaf_subject(ctx);

  if (!sc->alpn_wire_.empty()) {
    // The vector lives in *sc, which outlives the CTX (its destructor frees it), and is never
    // modified after this point.
    wolfSSL_CTX_set_alpn_select_cb(ctx, select_alpn, &sc->alpn_wire_);
  }
  return sc;
}

ServerContext::~ServerContext() {
  if (ctx_) wolfSSL_CTX_free(as_ctx(ctx_));
}

bool ServerContext::files_changed() const {
  return id_of(cert_) != cert_id_ || id_of(key_) != key_id_;
}

// ---- Conn ---------------------------------------------------------------------------------

Result<std::unique_ptr<Conn>> Conn::create(std::shared_ptr<ServerContext> ctx, int fd,
                                           std::span<const uint8_t> prefix) {
  if (!ctx || !ctx->ctx_) return problem("TLS connection without a loaded context");
  std::unique_ptr<Conn> c(new Conn());
  WOLFSSL* ssl = wolfSSL_new(as_ctx(ctx->ctx_));
  if (!ssl) {
    forget_queued_errors();
    return problem("wolfSSL_new failed (out of memory?)");
  }
  c->ssl_ = ssl;
  c->ctx_ = std::move(ctx);
  c->fd_ = fd;
  c->prefix_.assign(prefix.begin(), prefix.end());

  // Per-SSL callbacks (not per-CTX): the context is shared by every connection of the route,
  // the prefix and the fd are this connection's. The lambdas only adapt WOLFSSL* to void*.
  wolfSSL_SSLSetIORecv(
      ssl, [](WOLFSSL* s, char* buf, int sz, void* arg) { return Conn::recv_cb(s, buf, sz, arg); });
  wolfSSL_SSLSetIOSend(
      ssl, [](WOLFSSL* s, char* buf, int sz, void* arg) { return Conn::send_cb(s, buf, sz, arg); });
  wolfSSL_SetIOReadCtx(ssl, c.get());  // the Conn is heap-allocated: its address is stable
  wolfSSL_SetIOWriteCtx(ssl, c.get());
  return c;
}

Conn::~Conn() {
  if (ssl_) wolfSSL_free(as_ssl(ssl_));
  // ctx_ (declared first) is released after this body: the CTX outlives its SSL objects.
}

int Conn::recv_cb(void*, char* buf, int sz, void* arg) {
  auto* c = static_cast<Conn*>(arg);
  if (sz <= 0) return 0;
  if (c->prefix_off_ < c->prefix_.size()) {
    const size_t n = std::min(size_t(sz), c->prefix_.size() - c->prefix_off_);
    std::memcpy(buf, c->prefix_.data() + c->prefix_off_, n);
    c->prefix_off_ += n;
    if (c->prefix_off_ == c->prefix_.size()) {
      // The ClientHello copy is not needed any more; give its memory back.
      std::vector<uint8_t>().swap(c->prefix_);
      c->prefix_off_ = 0;
    }
    return int(n);
  }
  const ssize_t n = ::recv(c->fd_, buf, size_t(sz), MSG_DONTWAIT);
  if (n > 0) return int(n);
  if (n == 0) {
    c->eof_ = true;
    return WOLFSSL_CBIO_ERR_CONN_CLOSE;
  }
  switch (errno) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
      return WOLFSSL_CBIO_ERR_WANT_READ;
    case EINTR:
      return WOLFSSL_CBIO_ERR_ISR;
    case ECONNRESET:
      c->sock_err_ = errno;
      return WOLFSSL_CBIO_ERR_CONN_RST;
    default:
      c->sock_err_ = errno;
      return WOLFSSL_CBIO_ERR_GENERAL;
  }
}

int Conn::send_cb(void*, char* buf, int sz, void* arg) {
  auto* c = static_cast<Conn*>(arg);
  if (sz <= 0) return 0;
  // MSG_NOSIGNAL: a peer that went away must produce EPIPE here, not kill the process.
  const ssize_t n = ::send(c->fd_, buf, size_t(sz), MSG_DONTWAIT | MSG_NOSIGNAL);
  if (n >= 0) return int(n);
  switch (errno) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
      return WOLFSSL_CBIO_ERR_WANT_WRITE;
    case EINTR:
      return WOLFSSL_CBIO_ERR_ISR;
    case EPIPE:
    case ECONNRESET:
      c->sock_err_ = errno;
      return WOLFSSL_CBIO_ERR_CONN_RST;
    default:
      c->sock_err_ = errno;
      return WOLFSSL_CBIO_ERR_GENERAL;
  }
}

Conn::Io Conn::status_of(int ret) {
  const int err = wolfSSL_get_error(as_ssl(ssl_), ret);
  switch (err) {
    case WOLFSSL_ERROR_WANT_READ:
      return Io::WantRead;
    case WOLFSSL_ERROR_WANT_WRITE:
      return Io::WantWrite;
    case WOLFSSL_ERROR_ZERO_RETURN:  // close_notify
    case SOCKET_PEER_CLOSED_E:       // FIN
      return Io::Closed;
    default:
      break;
  }
  forget_queued_errors();
  // A FIN seen by recv_cb surfaces as a generic socket error in some wolfSSL paths.
  if (eof_ && (err == SOCKET_ERROR_E || err == WOLFSSL_ERROR_SYSCALL)) return Io::Closed;
  if (sock_err_ != 0 && (err == SOCKET_ERROR_E || err == WOLFSSL_ERROR_SYSCALL)) {
    error_ = std::strerror(sock_err_);
  } else {
    error_ = wolf_error_text(err);
  }
  return Io::Error;
}

Conn::Io Conn::handshake() {
  const int ret = wolfSSL_accept(as_ssl(ssl_));
  if (ret == WOLFSSL_SUCCESS) return Io::Ok;
  return failed(ret, "handshake: ");
}

Conn::Io Conn::moved(int ret, size_t& n, const char* what) {
  if (ret > 0) {
    n = size_t(ret);
    return Io::Ok;
  }
  n = 0;
  return failed(ret, what);
}

Conn::Io Conn::failed(int ret, const char* what) {
  const Io io = status_of(ret);
  if (io == Io::Error) error_.insert(0, what);
  return io;
}

Conn::Io Conn::read(uint8_t* buf, size_t cap, size_t& n) {
  return moved(wolfSSL_read(as_ssl(ssl_), buf, int(std::min(cap, size_t(INT_MAX)))), n, "read: ");
}

// wolfSSL keeps the records it has already built for buf; after WANT_WRITE it resumes from
// them, which is why the retry must pass the same buf and len.
Conn::Io Conn::write(const uint8_t* buf, size_t len, size_t& n) {
  n = 0;
  if (len == 0) return Io::Ok;
  return moved(wolfSSL_write(as_ssl(ssl_), buf, int(std::min(len, size_t(INT_MAX)))), n,
               "write: ");
}

void Conn::shutdown() {
  if (shutdown_sent_) return;
  shutdown_sent_ = true;
  // One attempt only: close_notify is a courtesy, waiting for the peer's would need a blocking
  // or retried call, and the socket is closed right after anyway.
  (void)wolfSSL_shutdown(as_ssl(ssl_));
  forget_queued_errors();
}

bool Conn::pending() const { return wolfSSL_pending(as_ssl(ssl_)) > 0; }

std::string_view Conn::alpn() const {
  char* name = nullptr;
  unsigned short size = 0;
  if (wolfSSL_ALPN_GetProtocol(as_ssl(ssl_), &name, &size) != WOLFSSL_SUCCESS || !name) return {};
  return std::string_view(name, size);
}

std::string_view Conn::version() const {
  const char* v = wolfSSL_get_version(as_ssl(ssl_));
  return v ? std::string_view(v) : std::string_view();
}

std::string_view Conn::cipher() const {
  const char* c = wolfSSL_get_cipher_name(as_ssl(ssl_));
  return c ? std::string_view(c) : std::string_view();
}

}  // namespace rf::tls
