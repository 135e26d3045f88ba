// Shared-memory regions and lock files under /dev/shm.
//
// SharedRegion wraps Boost.Interprocess shared_memory_object + mapped_region
// and never lets an exception out: every failure becomes a Status that names
// the file. LockFile is an flock(2) lock: the kernel drops it when the holding
// process dies, which is the property the directory and broker locks need
// (a robust pthread mutex in shared memory would need recovery code for the
// state it protects; flock needs none).

#ifndef RUNNEL_IPC_INTERNAL_SHM_H_
#define RUNNEL_IPC_INTERNAL_SHM_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace boost::interprocess {
class mapped_region;
}

namespace runnel::internal {

// A MAP_SHARED read-write mapping of a /dev/shm object. Move-only; unmaps
// on destruction (the object itself stays until Remove).
class SharedRegion {
 public:
  SharedRegion();
  SharedRegion(SharedRegion&&) noexcept;
  SharedRegion& operator=(SharedRegion&&) noexcept;
  ~SharedRegion();

  // Creates the object exclusively (kAlreadyExists if it exists), gives it
  // `mode` with fchmod (the umask does not matter), reserves `bytes` with
  // posix_fallocate (kResourceExhausted when /dev/shm is full, rather than
  // SIGBUS later) and maps it. The memory reads as zeros.
  [[nodiscard]] static Result<SharedRegion> Create(const std::string& shm_name, uint64_t bytes,
                                                   uint32_t mode);
  // Maps an existing object whole. kNotFound if absent, kPermissionDenied on
  // EACCES, kUnavailable if it has size 0 (its creator is still sizing it).
  // `populate` pre-faults the mapping (MAP_POPULATE): no page faults later.
  [[nodiscard]] static Result<SharedRegion> Open(const std::string& shm_name, bool populate);
  // Unlinks the object; OK if it does not exist. Mappings stay valid.
  [[nodiscard]] static Status Remove(const std::string& shm_name);

  bool valid() const { return region_ != nullptr; }
  std::span<std::byte> bytes() const { return {data_, size_}; }
  std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::string& name() const { return name_; }

 private:
  std::unique_ptr<boost::interprocess::mapped_region> region_;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::string name_;
};

// An flock(2) lock file. Each LockFile is its own open file description, so
// two LockFiles conflict even inside one process; one LockFile shared by two
// threads does NOT exclude them (guard it with a mutex).
class LockFile {
 public:
  LockFile() = default;
  LockFile(LockFile&& other) noexcept;
  LockFile& operator=(LockFile&& other) noexcept;
  LockFile(const LockFile&) = delete;
  LockFile& operator=(const LockFile&) = delete;
  ~LockFile();

  // Opens (and with `create`, creates with `mode`, set by fchmod) the file.
  [[nodiscard]] static Result<LockFile> Open(const std::string& path, bool create, uint32_t mode);

  // Blocks until the exclusive lock is held.
  [[nodiscard]] Status Lock();
  // Non-blocking; false if another open file description holds it.
  [[nodiscard]] bool TryLock();
  void Unlock();
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// Names (not paths) of every /dev/shm entry that starts with `prefix`.
[[nodiscard]] Result<std::vector<std::string>> ListShmFiles(const std::string& prefix);

}  // namespace runnel::internal

#endif  // RUNNEL_IPC_INTERNAL_SHM_H_
