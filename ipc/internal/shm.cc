#include "ipc/internal/shm.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <cstring>
#include <utility>

#include "ipc/internal/names.h"

namespace bip = boost::interprocess;

namespace runnel::internal {

namespace {

// Boost reports errno through get_native_error() for system failures.
Status FromBoost(const bip::interprocess_exception& e, const std::string& what) {
  const int err = e.get_native_error();
  if (err != 0) {
    Status s = Status::FromErrno(err, what);
    if (s.code() == StatusCode::kPermissionDenied) {
      return Status::PermissionDenied(
          s.message() +
          " (the bus belongs to another user or group; open it as that user, or create the bus "
          "with group_shared for group access)");
    }
    return s;
  }
  if (e.get_error_code() == bip::already_exists_error) {
    return Status::AlreadyExists(what + ": already exists");
  }
  if (e.get_error_code() == bip::not_found_error) return Status::NotFound(what + ": not found");
  return Status::IoError(what + ": " + e.what());
}

Status PermissionHint(Status s) {
  if (s.code() != StatusCode::kPermissionDenied) return s;
  return Status::PermissionDenied(
      s.message() +
      " (the bus belongs to another user or group; open it as that user, or create the bus "
      "with group_shared for group access)");
}

}  // namespace

SharedRegion::SharedRegion() = default;
SharedRegion::SharedRegion(SharedRegion&&) noexcept = default;
SharedRegion& SharedRegion::operator=(SharedRegion&&) noexcept = default;
SharedRegion::~SharedRegion() = default;

Result<SharedRegion> SharedRegion::Create(const std::string& shm_name, uint64_t bytes,
                                          uint32_t mode) {
  const std::string path = ShmPath(shm_name);
  try {
    bip::permissions perm(static_cast<int>(mode));
    bip::shared_memory_object shm(bip::create_only, shm_name.c_str(), bip::read_write, perm);
    const int fd = shm.get_mapping_handle().handle;
    // Explicit mode: shm_open applies the umask; fchmod does not.
    if (::fchmod(fd, static_cast<mode_t>(mode)) != 0) {
      const int err = errno;
      bip::shared_memory_object::remove(shm_name.c_str());
      return Status::FromErrno(err, "fchmod " + path);
    }
    // Reserve the pages now: a full /dev/shm fails here with ENOSPC instead
    // of killing a later writer with SIGBUS.
    const int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes));
    if (rc != 0) {
      bip::shared_memory_object::remove(shm_name.c_str());
      return Status::FromErrno(rc, "reserving " + std::to_string(bytes) + " bytes for " + path);
    }
    SharedRegion r;
    r.region_ = std::make_unique<bip::mapped_region>(shm, bip::read_write, 0,
                                                     static_cast<std::size_t>(bytes));
    r.data_ = static_cast<std::byte*>(r.region_->get_address());
    r.size_ = r.region_->get_size();
    r.name_ = shm_name;
    return r;
  } catch (const bip::interprocess_exception& e) {
    if (e.get_error_code() != bip::already_exists_error) {
      bip::shared_memory_object::remove(shm_name.c_str());
    }
    return FromBoost(e, "creating shared memory " + path);
  } catch (const std::exception& e) {
    bip::shared_memory_object::remove(shm_name.c_str());
    return Status::Internal("creating shared memory " + path + ": " + e.what());
  }
}

Result<SharedRegion> SharedRegion::Open(const std::string& shm_name, bool populate) {
  const std::string path = ShmPath(shm_name);
  try {
    bip::shared_memory_object shm(bip::open_only, shm_name.c_str(), bip::read_write);
    bip::offset_t size = 0;
    if (!shm.get_size(size)) return Status::IoError("fstat " + path + " failed");
    if (size <= 0) return Status::Unavailable(path + " is empty (still being created?)");
    SharedRegion r;
    r.region_ = std::make_unique<bip::mapped_region>(
        shm, bip::read_write, 0, static_cast<std::size_t>(size), nullptr,
        populate ? MAP_POPULATE : bip::default_map_options);
    r.data_ = static_cast<std::byte*>(r.region_->get_address());
    r.size_ = r.region_->get_size();
    r.name_ = shm_name;
    return r;
  } catch (const bip::interprocess_exception& e) {
    return FromBoost(e, "opening shared memory " + path);
  } catch (const std::exception& e) {
    return Status::Internal("opening shared memory " + path + ": " + e.what());
  }
}

Status SharedRegion::Remove(const std::string& shm_name) {
  const std::string path = ShmPath(shm_name);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return PermissionHint(Status::FromErrno(errno, "removing " + path));
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------

LockFile::LockFile(LockFile&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)) {}

LockFile& LockFile::operator=(LockFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
  }
  return *this;
}

LockFile::~LockFile() {
  if (fd_ >= 0) ::close(fd_);  // also drops the lock
}

Result<LockFile> LockFile::Open(const std::string& path, bool create, uint32_t mode) {
  LockFile f;
  f.path_ = path;
  if (create) {
    f.fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, static_cast<mode_t>(mode));
    if (f.fd_ >= 0) {
      if (::fchmod(f.fd_, static_cast<mode_t>(mode)) != 0) {
        return Status::FromErrno(errno, "fchmod " + path);
      }
      return f;
    }
    if (errno != EEXIST) return PermissionHint(Status::FromErrno(errno, "creating " + path));
  }
  f.fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (f.fd_ < 0) return PermissionHint(Status::FromErrno(errno, "opening " + path));
  return f;
}

Status LockFile::Lock() {
  while (::flock(fd_, LOCK_EX) != 0) {
    if (errno != EINTR) return Status::FromErrno(errno, "flock " + path_);
  }
  return Status::Ok();
}

bool LockFile::TryLock() {
  for (;;) {
    if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return true;
    if (errno != EINTR) return false;
  }
}

void LockFile::Unlock() { (void)::flock(fd_, LOCK_UN); }

Result<std::vector<std::string>> ListShmFiles(const std::string& prefix) {
  DIR* dir = ::opendir(std::string(kShmDir).c_str());
  if (dir == nullptr) return Status::FromErrno(errno, "opening " + std::string(kShmDir));
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(dir)) {
    const std::string_view n(e->d_name);
    if (n.size() > prefix.size() && n.substr(0, prefix.size()) == prefix) names.emplace_back(n);
  }
  ::closedir(dir);
  return names;
}

}  // namespace runnel::internal
