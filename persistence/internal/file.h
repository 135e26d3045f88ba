// Thin, error-reporting wrappers around the file system calls persistence
// uses: owned descriptors, read-only mappings, full reads/writes, fsync,
// preallocation and zeroing. Every error is a Status naming the file.

#ifndef RUNNEL_PERSISTENCE_INTERNAL_FILE_H_
#define RUNNEL_PERSISTENCE_INTERNAL_FILE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace runnel::internal {

// An owned file descriptor (move-only; closes on destruction).
class ScopedFd {
 public:
  ScopedFd() = default;
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() { reset(); }
  ScopedFd(ScopedFd&& o) noexcept : fd_(o.release()) {}
  ScopedFd& operator=(ScopedFd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// A read-only MAP_SHARED mapping of the first `size` bytes of a file.
class Mapping {
 public:
  Mapping() = default;
  ~Mapping() { reset(); }
  Mapping(Mapping&& o) noexcept : data_(o.data_), size_(o.size_) {
    o.data_ = nullptr;
    o.size_ = 0;
  }
  Mapping& operator=(Mapping&& o) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  // A zero size gives an empty mapping (no mmap call).
  static Result<Mapping> Map(int fd, uint64_t size, std::string_view path);

  const std::byte* data() const { return data_; }
  uint64_t size() const { return size_; }
  void reset();

 private:
  const std::byte* data_ = nullptr;
  uint64_t size_ = 0;
};

std::string JoinPath(std::string_view dir, std::string_view name);

Result<ScopedFd> OpenFile(const std::string& path, int flags, unsigned mode = 0644);
Result<uint64_t> FileSize(int fd, std::string_view path);

// Reads up to n bytes at `offset`, retrying on EINTR and short reads; returns
// the count read (less than n only at end of file).
Result<uint64_t> ReadAt(int fd, void* dst, uint64_t n, uint64_t offset, std::string_view path);
// Writes all n bytes at `offset` (EINTR and short writes are retried).
Status WriteAt(int fd, const void* src, uint64_t n, uint64_t offset, std::string_view path);

Status SyncData(int fd, std::string_view path);  // fdatasync
Status SyncDir(std::string_view dir);            // fsync of a directory
Status Truncate(int fd, uint64_t size, std::string_view path);
// Allocates [0, size) so later writes cannot fail with ENOSPC; falls back to
// ftruncate (a sparse file) where fallocate is unsupported. Never shrinks.
Status Preallocate(int fd, uint64_t size, std::string_view path);
// Makes [from, to) read as zeros without changing the file size (so readers
// that map the file never see it shrink); the range stays allocated.
Status ZeroRange(int fd, uint64_t from, uint64_t to, std::string_view path);
Status RemoveFile(const std::string& path);
Status RenameFile(const std::string& from, const std::string& to);

struct DirEntry {
  std::string name;
  bool is_dir = false;
  bool is_regular = false;
};
// Entries other than "." and "..", unsorted.
Result<std::vector<DirEntry>> ListDirectory(const std::string& dir);

}  // namespace runnel::internal

#endif  // RUNNEL_PERSISTENCE_INTERNAL_FILE_H_
