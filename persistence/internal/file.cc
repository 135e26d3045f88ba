#include "persistence/internal/file.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace runnel::internal {
namespace {

std::string What(std::string_view op, std::string_view path) {
  std::string s(op);
  s += ' ';
  s += path;
  return s;
}

}  // namespace

void ScopedFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Mapping& Mapping::operator=(Mapping&& o) noexcept {
  if (this != &o) {
    reset();
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

void Mapping::reset() {
  if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

Result<Mapping> Mapping::Map(int fd, uint64_t size, std::string_view path) {
  Mapping m;
  if (size == 0) return m;
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return Status::FromErrno(errno, What("mmap", path));
  m.data_ = static_cast<const std::byte*>(p);
  m.size_ = size;
  return m;
}

std::string JoinPath(std::string_view dir, std::string_view name) {
  std::string s(dir);
  if (!s.empty() && s.back() != '/') s += '/';
  s += name;
  return s;
}

Result<ScopedFd> OpenFile(const std::string& path, int flags, unsigned mode) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return Status::FromErrno(errno, What("open", path));
  return ScopedFd(fd);
}

Result<uint64_t> FileSize(int fd, std::string_view path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return Status::FromErrno(errno, What("fstat", path));
  return static_cast<uint64_t>(st.st_size);
}

Result<uint64_t> ReadAt(int fd, void* dst, uint64_t n, uint64_t offset, std::string_view path) {
  auto* p = static_cast<char*>(dst);
  uint64_t done = 0;
  while (done < n) {
    const ssize_t r = ::pread(fd, p + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, What("read", path));
    }
    if (r == 0) break;
    done += static_cast<uint64_t>(r);
  }
  return done;
}

Status WriteAt(int fd, const void* src, uint64_t n, uint64_t offset, std::string_view path) {
  const auto* p = static_cast<const char*>(src);
  uint64_t done = 0;
  while (done < n) {
    const ssize_t r = ::pwrite(fd, p + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, What("write", path));
    }
    done += static_cast<uint64_t>(r);
  }
  return Status::Ok();
}

Status SyncData(int fd, std::string_view path) {
  while (::fdatasync(fd) != 0) {
    if (errno != EINTR) return Status::FromErrno(errno, What("fdatasync", path));
  }
  return Status::Ok();
}

Status SyncDir(std::string_view dir) {
  auto fd = OpenFile(std::string(dir), O_RDONLY | O_DIRECTORY);
  if (!fd.ok()) return fd.status();
  while (::fsync(fd->get()) != 0) {
    if (errno != EINTR) return Status::FromErrno(errno, What("fsync directory", dir));
  }
  return Status::Ok();
}

Status Truncate(int fd, uint64_t size, std::string_view path) {
  while (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    if (errno != EINTR) return Status::FromErrno(errno, What("ftruncate", path));
  }
  return Status::Ok();
}

Status Preallocate(int fd, uint64_t size, std::string_view path) {
  auto current = FileSize(fd, path);
  if (!current.ok()) return current.status();
  if (*current >= size) return Status::Ok();
  int r;
  do {
    r = ::fallocate(fd, 0, 0, static_cast<off_t>(size));
  } while (r != 0 && errno == EINTR);
  if (r == 0) return Status::Ok();
  if (errno == EOPNOTSUPP || errno == ENOSYS) return Truncate(fd, size, path);
  return Status::FromErrno(errno, What("fallocate", path));
}

Status ZeroRange(int fd, uint64_t from, uint64_t to, std::string_view path) {
  if (to <= from) return Status::Ok();
  const off_t off = static_cast<off_t>(from);
  const off_t len = static_cast<off_t>(to - from);
  if (::fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len) == 0) {
    return Status::Ok();
  }
  if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0) {
    // Re-allocate the hole so appends there cannot hit ENOSPC; best effort.
    (void)::fallocate(fd, FALLOC_FL_KEEP_SIZE, off, len);
    return Status::Ok();
  }
  // No fallocate support: write zeros.
  static constexpr uint64_t kChunk = 64 * 1024;
  static const char zeros[kChunk] = {};
  for (uint64_t pos = from; pos < to;) {
    const uint64_t n = to - pos < kChunk ? to - pos : kChunk;
    RUNNEL_RETURN_IF_ERROR(WriteAt(fd, zeros, n, pos, path));
    pos += n;
  }
  return Status::Ok();
}

Status RemoveFile(const std::string& path) {
  if (::unlink(path.c_str()) != 0) return Status::FromErrno(errno, What("unlink", path));
  return Status::Ok();
}

Status RenameFile(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return Status::FromErrno(errno, "rename " + from + " to " + to);
  }
  return Status::Ok();
}

Result<std::vector<DirEntry>> ListDirectory(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return Status::FromErrno(errno, What("open directory", dir));
  std::vector<DirEntry> out;
  errno = 0;
  while (dirent* e = ::readdir(d)) {
    const std::string_view name(e->d_name);
    if (name == "." || name == "..") continue;
    DirEntry entry;
    entry.name = std::string(name);
    unsigned char type = e->d_type;
    if (type == DT_UNKNOWN || type == DT_LNK) {
      struct stat st;
      if (::fstatat(::dirfd(d), e->d_name, &st, 0) == 0) {
        type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
      }
    }
    entry.is_dir = type == DT_DIR;
    entry.is_regular = type == DT_REG;
    out.push_back(std::move(entry));
    errno = 0;
  }
  const int err = errno;
  ::closedir(d);
  if (err != 0) return Status::FromErrno(err, What("read directory", dir));
  return out;
}

}  // namespace runnel::internal
