// A small tmpfs for a test that fills a file system (a full disk), unmounted
// (lazily) when it goes out of scope. Mounting needs CAP_SYS_ADMIN: a test
// skips when mounted() is false, saying error().

#ifndef RUNNEL_TESTS_COMMON_SCOPED_TMPFS_H_
#define RUNNEL_TESTS_COMMON_SCOPED_TMPFS_H_

#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

namespace runnel::testing {

class ScopedTmpfs {
 public:
  // `options`: mount options, e.g. "size=1m".
  ScopedTmpfs(std::string path, const char* options) : path_(std::move(path)) {
    std::error_code ec;
    std::filesystem::create_directories(path_, ec);
    if (::mount("tmpfs", path_.c_str(), "tmpfs", 0, options) != 0) {
      error_ = "cannot mount a small tmpfs to fill (needs root/CAP_SYS_ADMIN): " +
               std::string(std::strerror(errno));
    }
  }
  ~ScopedTmpfs() {
    if (mounted()) ::umount2(path_.c_str(), MNT_DETACH);
  }
  ScopedTmpfs(const ScopedTmpfs&) = delete;
  ScopedTmpfs& operator=(const ScopedTmpfs&) = delete;

  bool mounted() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string error_;
};

}  // namespace runnel::testing

#endif  // RUNNEL_TESTS_COMMON_SCOPED_TMPFS_H_
