// Names: validation of bus and topic names, and the names of every file a bus
// keeps under /dev/shm. One place, so that Bus::Remove, the CLI's inspect and
// the tests agree on them.
//
//   /dev/shm/runnel.<bus>.dir                        directory region
//   /dev/shm/runnel.<bus>.lock                       flock: directory mutations
//   /dev/shm/runnel.<bus>.broker                     flock: the active broker
//   /dev/shm/runnel.<bus>.<topic>.<partition>.<gen>  one ring per partition
//
// Topic names may contain '.', bus names may not: that keeps the bus part of
// every file name unambiguous ("runnel.a.b.c.0.1" is bus "a", topic "b.c"),
// so removing bus "a" can never touch a bus called "a.b".

#ifndef RUNNEL_IPC_INTERNAL_NAMES_H_
#define RUNNEL_IPC_INTERNAL_NAMES_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace runnel::internal {

inline constexpr std::size_t kMaxNameLength = 64;
inline constexpr std::string_view kShmDir = "/dev/shm";
inline constexpr std::string_view kShmPrefix = "runnel.";

// [A-Za-z0-9._-], 1..64 characters, not "." or "..".
[[nodiscard]] Status ValidateTopicName(std::string_view name);
// [A-Za-z0-9_-], 1..64 characters (no '.', see above).
[[nodiscard]] Status ValidateBusName(std::string_view name);

// Shared-memory object names (no leading slash, as Boost.Interprocess and
// shm_open take them).
std::string DirectoryShmName(std::string_view bus);
std::string RingShmName(std::string_view bus, std::string_view topic, uint32_t partition,
                        uint64_t generation);
// Absolute paths.
std::string ShmPath(std::string_view shm_name);
std::string DirectoryLockPath(std::string_view bus);
std::string BrokerLockPath(std::string_view bus);
// Every file of `bus` starts with this ("runnel.<bus>.").
std::string BusFilePrefix(std::string_view bus);

}  // namespace runnel::internal

#endif  // RUNNEL_IPC_INTERNAL_NAMES_H_
