// Process identity for liveness: a pid alone is not an identity (pids are
// recycled), a pid plus the process start time (field 22 of /proc/<pid>/stat,
// clock ticks since boot) is.

#ifndef RUNNEL_IPC_INTERNAL_PROCESS_H_
#define RUNNEL_IPC_INTERNAL_PROCESS_H_

#include <cstdint>
#include <optional>

namespace runnel::internal {

struct ProcessIdentity {
  int32_t pid = 0;
  uint64_t start_time = 0;  // clock ticks since boot; 0 if /proc was unreadable
};

// The calling process (getpid() is re-read on every call: correct after fork).
ProcessIdentity SelfIdentity();

// Field 22 of /proc/<pid>/stat; nullopt if the process does not exist or the
// file cannot be read or parsed.
std::optional<uint64_t> ProcessStartTime(int32_t pid);

enum class Liveness : uint8_t {
  kAlive = 0,  // the pid exists and its start time matches (or cannot be read)
  kDead = 1,   // no such pid, or the pid was recycled by another process
};
// kill(pid, 0) for existence (EPERM counts as existing), then the start time.
Liveness CheckProcess(int32_t pid, uint64_t start_time);

}  // namespace runnel::internal

#endif  // RUNNEL_IPC_INTERNAL_PROCESS_H_
