// rf::write_file_atomic: the content is replaced whole, mode and owner are kept, a new file
// is 0640 whatever the umask, no temporary file survives a success or a failure, errors name
// the file and the step, and a reader (or a writer killed at any moment) never sees a torn
// file.
#include "ringfwd/base/atomic_file.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace rf {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/ringfwd-atomic-XXXXXX";
    const char* p = ::mkdtemp(tmpl);
    if (!p) throw std::runtime_error("mkdtemp failed");
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void put(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

struct stat stat_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st;
}

// ---- success -----------------------------------------------------------------------------

TEST(AtomicFile, CreatesANewFile) {
  TempDir d;
  auto r = write_file_atomic(d.file("ringfwd.json"), "{\"role\": \"edge\"}\n");
  ASSERT_TRUE(r.ok()) << r.error().str();
  EXPECT_EQ(read(d.file("ringfwd.json")), "{\"role\": \"edge\"}\n");
  EXPECT_EQ(entries(d.path()), std::vector<std::string>{"ringfwd.json"});
}

TEST(AtomicFile, ReplacesContentWithANewInode) {
  TempDir d;
  const std::string f = d.file("ringfwd.json");
  put(f, std::string(10000, 'o'));  // longer than the new content: nothing of it may remain
  const ino_t before = stat_of(f).st_ino;
  auto r = write_file_atomic(f, "new");
  ASSERT_TRUE(r.ok()) << r.error().str();
  EXPECT_EQ(read(f), "new");
  // Renamed over, not rewritten in place (a rewrite in place could be seen torn).
  EXPECT_NE(stat_of(f).st_ino, before);
  EXPECT_EQ(entries(d.path()), std::vector<std::string>{"ringfwd.json"});
}

TEST(AtomicFile, EmptyAndLargeContent) {
  TempDir d;
  const std::string f = d.file("x");
  ASSERT_TRUE(write_file_atomic(f, "").ok());
  EXPECT_EQ(stat_of(f).st_size, 0);
  std::string big(8 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = char(i * 2654435761u >> 24);
  auto r = write_file_atomic(f, big);
  ASSERT_TRUE(r.ok()) << r.error().str();
  EXPECT_TRUE(read(f) == big);
}

TEST(AtomicFile, KeepsTheModeOfTheReplacedFile) {
  TempDir d;
  const std::string f = d.file("ringfwd.json");
  for (mode_t mode : {mode_t(0604), mode_t(0600), mode_t(0444), mode_t(0751)}) {
    put(f, "old");
    ASSERT_EQ(::chmod(f.c_str(), mode), 0);
    auto r = write_file_atomic(f, "new");
    ASSERT_TRUE(r.ok()) << r.error().str();
    EXPECT_EQ(stat_of(f).st_mode & 07777, mode) << std::oct << mode;
    EXPECT_EQ(read(f), "new");
  }
}

TEST(AtomicFile, NewFileIs0640WhateverTheUmask) {
  TempDir d;
  for (mode_t mask : {mode_t(0077), mode_t(0), mode_t(0022)}) {
    const std::string f = d.file("new-" + std::to_string(mask));
    const mode_t old = ::umask(mask);
    auto r = write_file_atomic(f, "x");
    ::umask(old);
    ASSERT_TRUE(r.ok()) << r.error().str();
    EXPECT_EQ(stat_of(f).st_mode & 07777, mode_t(0640)) << "umask " << std::oct << mask;
  }
}

TEST(AtomicFile, KeepsTheOwnerOfTheReplacedFile) {
  if (::geteuid() != 0) GTEST_SKIP() << "giving a file to another owner needs root";
  TempDir d;
  const std::string f = d.file("ringfwd.json");
  put(f, "old");
  ASSERT_EQ(::chown(f.c_str(), 65534, 65533), 0);
  ASSERT_EQ(::chmod(f.c_str(), 0640), 0);
  auto r = write_file_atomic(f, "new");
  ASSERT_TRUE(r.ok()) << r.error().str();
  struct stat st = stat_of(f);
  EXPECT_EQ(st.st_uid, 65534u);
  EXPECT_EQ(st.st_gid, 65533u);
  EXPECT_EQ(st.st_mode & 07777, mode_t(0640));
  EXPECT_EQ(read(f), "new");
}

TEST(AtomicFile, FollowsASymlink) {
  TempDir d;
  fs::create_directory(d.file("real"));
  fs::create_directory(d.file("etc"));
  put(d.file("real/ringfwd.json"), "old");
  ASSERT_EQ(::symlink("../real/ringfwd.json", d.file("etc/ringfwd.json").c_str()), 0);
  auto r = write_file_atomic(d.file("etc/ringfwd.json"), "new");
  ASSERT_TRUE(r.ok()) << r.error().str();
  EXPECT_TRUE(S_ISLNK(stat_of(d.file("etc/ringfwd.json")).st_mode));
  EXPECT_EQ(read(d.file("real/ringfwd.json")), "new");
  EXPECT_EQ(entries(d.file("real")), std::vector<std::string>{"ringfwd.json"});
  EXPECT_EQ(entries(d.file("etc")), std::vector<std::string>{"ringfwd.json"});
}

TEST(AtomicFile, RelativePath) {
  TempDir d;
  const fs::path cwd = fs::current_path();
  fs::current_path(d.path());
  auto r = write_file_atomic("rel.json", "x");
  fs::current_path(cwd);
  ASSERT_TRUE(r.ok()) << r.error().str();
  EXPECT_EQ(read(d.file("rel.json")), "x");
}

// ---- failures: the old file stays, no temporary file, the error names path and step ------

TEST(AtomicFile, MissingDirectory) {
  TempDir d;
  const std::string f = d.file("nope/ringfwd.json");
  auto r = write_file_atomic(f, "x");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().str().find(f), std::string::npos) << r.error().str();
  EXPECT_NE(r.error().str().find("No such file or directory"), std::string::npos)
      << r.error().str();
  EXPECT_EQ(r.error().code, std::error_code(ENOENT, std::system_category()));
  EXPECT_TRUE(entries(d.path()).empty());
}

TEST(AtomicFile, TargetIsADirectory) {
  // Fails at the rename, after the temporary file was written: it must be removed.
  TempDir d;
  fs::create_directory(d.file("conf"));
  put(d.file("conf/inside"), "keep");
  auto r = write_file_atomic(d.file("conf"), "x");
  ASSERT_FALSE(r.ok());
  const std::string msg = r.error().str();
  EXPECT_EQ(msg.rfind("rename " + d.file("conf") + ".tmp-", 0), 0u) << msg;
  EXPECT_NE(msg.find(" to " + d.file("conf")), std::string::npos) << msg;
  EXPECT_EQ(entries(d.path()), std::vector<std::string>{"conf"});
  EXPECT_EQ(read(d.file("conf/inside")), "keep");
}

TEST(AtomicFile, WriteFailureRemovesTheTemporaryFile) {
  // A file size limit makes write() fail with EFBIG half way, as a full disk would.
  TempDir d;
  const std::string f = d.file("ringfwd.json");
  put(f, "old");
  struct rlimit saved {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  struct rlimit small = saved;
  small.rlim_cur = 4096;
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  auto r = write_file_atomic(f, std::string(100000, 'n'));
  ::setrlimit(RLIMIT_FSIZE, &saved);
  ::signal(SIGXFSZ, old_handler);
  ASSERT_FALSE(r.ok());
  const std::string msg = r.error().str();
  EXPECT_EQ(msg.rfind("write " + f + ".tmp-", 0), 0u) << msg;
  EXPECT_EQ(r.error().code, std::error_code(EFBIG, std::system_category())) << msg;
  EXPECT_EQ(read(f), "old");
  EXPECT_EQ(entries(d.path()), std::vector<std::string>{"ringfwd.json"});
}

// Runs write_file_atomic(path, "new") in a child without root's power to ignore permissions
// (as nobody when we are root); returns the error text, or "" on success.
std::string write_unprivileged(const std::string& path, bool* skipped) {
  *skipped = false;
  if (::geteuid() != 0) {
    auto r = write_file_atomic(path, "new");
    return r.ok() ? "" : r.error().str();
  }
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(3);
    auto r = write_file_atomic(path, "new");
    std::string msg = r.ok() ? "" : r.error().str();
    if (::write(fds[1], msg.data(), msg.size()) != ssize_t(msg.size())) ::_exit(4);
    ::_exit(r.ok() ? 0 : 1);
  }
  ::close(fds[1]);
  std::string msg;
  char buf[512];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) msg.append(buf, size_t(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 3) *skipped = true;
  return msg;
}

TEST(AtomicFile, ReadOnlyDirectory) {
  TempDir d;
  const std::string f = d.file("ringfwd.json");
  put(f, "old");
  ASSERT_EQ(::chmod(f.c_str(), 0666), 0);  // the file itself is writable; its directory is not
  ASSERT_EQ(::chmod(d.path().c_str(), 0555), 0);
  bool skipped = false;
  const std::string msg = write_unprivileged(f, &skipped);
  ::chmod(d.path().c_str(), 0700);
  if (skipped) GTEST_SKIP() << "cannot drop privileges here";
  EXPECT_EQ(msg.rfind("create " + f + ".tmp-", 0), 0u) << msg;
  EXPECT_NE(msg.find("Permission denied"), std::string::npos) << msg;
  EXPECT_EQ(read(f), "old");
  EXPECT_EQ(entries(d.path()), std::vector<std::string>{"ringfwd.json"});
}

TEST(AtomicFile, OwnerThatCannotBeKeptIsAnError) {
  // Silently handing a root-owned config to another user would change who may edit it.
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to set up a file owned by someone else";
  TempDir d;
  ASSERT_EQ(::chmod(d.path().c_str(), 0777), 0);
  const std::string f = d.file("ringfwd.json");
  put(f, "old");
  ASSERT_EQ(::chmod(f.c_str(), 0666), 0);  // root-owned, writable by all
  bool skipped = false;
  const std::string msg = write_unprivileged(f, &skipped);
  if (skipped) GTEST_SKIP() << "cannot drop privileges here";
  EXPECT_EQ(msg.rfind("chown " + f + ".tmp-", 0), 0u) << msg;
  EXPECT_NE(msg.find("Operation not permitted"), std::string::npos) << msg;
  EXPECT_EQ(read(f), "old");
  EXPECT_EQ(stat_of(f).st_uid, 0u);
  EXPECT_EQ(entries(d.path()), std::vector<std::string>{"ringfwd.json"});
}

// ---- never torn ----------------------------------------------------------------------------

TEST(AtomicFile, ConcurrentWritersLeaveOneWholeVersion) {
  TempDir d;
  const std::string f = d.file("ringfwd.json");
  std::vector<std::string> versions;
  for (char c = 'a'; c < 'a' + 6; ++c) versions.push_back(std::string(20000 + c, c));
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (const auto& v : versions)
    threads.emplace_back([&, v] {
      for (int i = 0; i < 30; ++i)
        if (!write_file_atomic(f, v).ok()) ++failures;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_NE(std::find(versions.begin(), versions.end(), read(f)), versions.end());
  EXPECT_EQ(entries(d.path()), std::vector<std::string>{"ringfwd.json"});
}

TEST(AtomicFile, ReadersAndAKilledWriterNeverSeeATornFile) {
  TempDir d;
  const std::string f = d.file("ringfwd.json");
  const std::string a(1 << 20, 'a'), b(1 << 19, 'b');
  ASSERT_TRUE(write_file_atomic(f, a).ok());
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    for (bool flip = false;; flip = !flip)
      if (!write_file_atomic(f, flip ? a : b).ok()) ::_exit(1);
  }
  int torn = 0, reads = 0;
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(400);
  while (std::chrono::steady_clock::now() < end) {
    std::string seen = read(f);
    ++reads;
    if (seen != a && seen != b) ++torn;
  }
  ::kill(pid, SIGKILL);  // at whatever step it is in
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status)) << "the writer stopped on its own: it failed";
  EXPECT_EQ(torn, 0) << "of " << reads << " reads";
  const std::string last = read(f);
  EXPECT_TRUE(last == a || last == b);
  // A killed writer may leave its temporary file: never under the target's name.
  for (const auto& e : entries(d.path()))
    EXPECT_TRUE(e == "ringfwd.json" || e.rfind("ringfwd.json.tmp-", 0) == 0) << e;
}

}  // namespace
}  // namespace rf
