#pragma once
// TLS termination with wolfSSL: a server context per certificate (PEM files, reloadable), and
// a non-blocking TLS connection over an accepted socket whose first bytes (the ClientHello,
// read to choose the route) are already in userspace. Only this layer includes wolfSSL.
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ringfwd/base/result.hpp"

namespace rf::tls {

// Initializes wolfSSL once per process (thread-safe, idempotent).
void global_init();

// Certificate chain + key for one terminate route. Immutable once loaded; a reload builds a
// new one (connections keep the context they started with).
class ServerContext {
 public:
  // Loads cert (PEM chain, leaf first) and key (PEM, RSA or EC); checks that the key matches
  // the certificate. The error names the file and what is wrong ("wiki.pem: no certificate
  // found", "wiki.key does not match the certificate in wiki.pem", "...: No such file").
  // alpn: protocols this server accepts, in preference order; empty = no ALPN negotiation.
  // TLS 1.2 and 1.3 only.
  static Result<std::shared_ptr<ServerContext>> load(const std::string& cert_file,
                                                     const std::string& key_file,
                                                     const std::vector<std::string>& alpn);
  ~ServerContext();
  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;

  // True when cert or key file changed (mtime, size or inode) since load; cheap (two stat()s).
  bool files_changed() const;
  const std::string& cert_file() const { return cert_; }
  const std::string& key_file() const { return key_; }
  // The leaf certificate's subject CN or first SAN, for logs.
  const std::string& subject() const { return subject_; }

 private:
  ServerContext() = default;
  struct FileId {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const FileId&) const = default;
  };
  static FileId id_of(const std::string& path);
  void* ctx_ = nullptr;  // WOLFSSL_CTX*
  std::string cert_, key_, subject_;
  FileId cert_id_, key_id_;
  std::vector<uint8_t> alpn_wire_;
  friend class Conn;
};

// One server-side TLS connection over a non-blocking socket.
class Conn {
 public:
  enum class Io {
    Ok,         // progress: handshake done / n bytes moved
    WantRead,   // wait for the socket to be readable, then call again
    WantWrite,  // wait for the socket to be writable, then call again
    Closed,     // the peer ended TLS (close_notify) or the socket (FIN)
    Error,      // fatal: error() says why
  };
  // fd stays owned by the caller. `prefix`: bytes already read from fd (the ClientHello);
  // they are fed to TLS before anything is read from the socket.
  static Result<std::unique_ptr<Conn>> create(std::shared_ptr<ServerContext> ctx, int fd,
                                              std::span<const uint8_t> prefix);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  Io handshake();
  // Decrypts into buf; n = bytes (> 0) when Ok.
  Io read(uint8_t* buf, size_t cap, size_t& n);
  // Encrypts and sends; n = bytes of buf consumed when Ok (may be < len). After WantWrite,
  // call again with the same buf/len (wolfSSL's rule).
  Io write(const uint8_t* buf, size_t len, size_t& n);
  // Sends close_notify (best effort, non-blocking).
  void shutdown();
  // True when decrypted bytes are buffered inside TLS (read() would return them without
  // touching the socket): the caller must not wait for readability before reading them.
  bool pending() const;

  std::string_view alpn() const;     // negotiated protocol, empty when none
  std::string_view version() const;  // "TLSv1.3"
  std::string_view cipher() const;
  const std::string& error() const { return error_; }

 private:
  Conn() = default;
  Io status_of(int ret);
  // A failed wolfSSL call: its Io, with `what` in front of the error text.
  Io failed(int ret, const char* what);
  // A read/write result: n bytes moved (Ok), or failed().
  Io moved(int ret, size_t& n, const char* what);
  static int recv_cb(void* ssl, char* buf, int sz, void* ctx);
  static int send_cb(void* ssl, char* buf, int sz, void* ctx);
  std::shared_ptr<ServerContext> ctx_;
  void* ssl_ = nullptr;  // WOLFSSL*
  int fd_ = -1;
  std::vector<uint8_t> prefix_;
  size_t prefix_off_ = 0;
  bool eof_ = false;            // recv() saw FIN: a socket error after it is a close
  bool shutdown_sent_ = false;  // close_notify is attempted once
  int sock_err_ = 0;            // errno of the last failed recv/send, for error()
  std::string error_;
};

}  // namespace rf::tls
