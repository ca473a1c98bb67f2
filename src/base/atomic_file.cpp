// write, fsync, rename, fsync the directory: the order that makes a replacement atomic and
// durable on Linux file systems (ext4, xfs, btrfs). A crash before the rename leaves the old
// file and at worst a stray "<path>.tmp-..." file; after it, the new file whole.
#include "ringfwd/base/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <ctime>

#include "ringfwd/base/unique_fd.hpp"

namespace rf {
namespace {

// Reads errno before the message is built: building it allocates, which may touch errno.
template <class F>
Error os_error(F&& context) {
  const int err = errno;
  return Error::from_errno(context(), err);
}

constexpr mode_t kNewFileMode = 0640;

// Removes the temporary file unless the rename consumed it.
class TempFile {
 public:
  TempFile(int dir_fd, std::string name) : dir_fd_(dir_fd), name_(std::move(name)) {}
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (!name_.empty()) ::unlinkat(dir_fd_, name_.c_str(), 0);
  }
  void committed() { name_.clear(); }

 private:
  int dir_fd_;
  std::string name_;
};

// Unique within this process (counter) and between processes (pid); the clock only makes a
// stale name left by an earlier run of the same pid unlikely. O_EXCL settles the rest.
std::string temp_name(std::string_view base) {
  static std::atomic<uint64_t> counter{0};
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return std::string(base) + ".tmp-" + std::to_string(::getpid()) + "-" +
         std::to_string(counter.fetch_add(1, std::memory_order_relaxed)) + "-" +
         std::to_string(uint64_t(ts.tv_nsec) ^ uint64_t(ts.tv_sec));
}

Result<void> write_all(int fd, std::string_view data, const std::string& shown) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return os_error([&] { return "write " + shown; });
    if (n == 0) return Error::from_errno("write " + shown, EIO);
    data.remove_prefix(size_t(n));
  }
  return {};
}

}  // namespace

Result<void> write_file_atomic(const std::string& requested, std::string_view data) {
  // Follow a symlink, so that a config kept elsewhere and linked from /etc stays linked.
  std::string path = requested;
  struct stat st {};
  if (::lstat(requested.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
    char* real = ::realpath(requested.c_str(), nullptr);
    if (!real) return os_error([&] { return "resolve symlink " + requested; });
    path = real;
    std::free(real);
  }

  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  if (base.empty() || base == "." || base == "..")
    return Error::from_errno("write " + requested + " (not a file name)", EISDIR);

  // Opened first: if the directory cannot be synced, nothing is replaced.
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd)
    return os_error([&] { return "open directory " + dir + " (to write " + path + ")"; });

  bool replacing = true;
  if (::fstatat(dir_fd.get(), base.c_str(), &st, 0) != 0) {
    if (errno != ENOENT) return os_error([&] { return "stat " + path; });
    replacing = false;
  }

  std::string tmp;
  UniqueFd fd;
  int create_err = EEXIST;
  for (int attempt = 0; attempt < 100 && create_err == EEXIST; ++attempt) {
    tmp = temp_name(base);
    fd.reset(::openat(dir_fd.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    create_err = fd ? 0 : errno;
  }
  const std::string tmp_path = (dir == "/" ? "" : dir) + "/" + tmp;
  if (!fd) return Error::from_errno("create " + tmp_path, create_err);
  TempFile guard(dir_fd.get(), tmp);

  if (auto r = write_all(fd.get(), data, tmp_path); !r) return r;

  // Owner before mode: chown clears set-id bits, chmod then sets exactly the old mode.
  struct stat now {};
  if (::fstat(fd.get(), &now) != 0) return os_error([&] { return "stat " + tmp_path; });
  if (replacing && (now.st_uid != st.st_uid || now.st_gid != st.st_gid) &&
      ::fchown(fd.get(), st.st_uid, st.st_gid) != 0)
    return os_error([&] {
      return "chown " + tmp_path + " to " + std::to_string(st.st_uid) + ":" +
             std::to_string(st.st_gid) + " (the owner of " + path + ")";
    });
  const mode_t mode = replacing ? (st.st_mode & 07777) : kNewFileMode;
  if (::fchmod(fd.get(), mode) != 0) return os_error([&] { return "chmod " + tmp_path; });

  if (::fsync(fd.get()) != 0) return os_error([&] { return "fsync " + tmp_path; });
  fd.reset();

  if (::renameat(dir_fd.get(), tmp.c_str(), dir_fd.get(), base.c_str()) != 0)
    return os_error([&] { return "rename " + tmp_path + " to " + path; });
  guard.committed();

  if (::fsync(dir_fd.get()) != 0)
    return os_error(
        [&] { return "fsync directory " + dir + " (after renaming over " + path + ")"; });
  return {};
}

}  // namespace rf
