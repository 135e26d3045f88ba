// Finding where a start at a timestamp begins in a ring (Bus::CreateConsumer,
// StartPosition::Timestamp).

#ifndef RUNNEL_IPC_INTERNAL_RING_SCAN_H_
#define RUNNEL_IPC_INTERNAL_RING_SCAN_H_

#include <cstdint>
#include <optional>

#include "core/ring.h"

namespace runnel::internal {

// Reads on from `scan`'s position for the first record below offset `bound`
// stamped at or after `ts_ns`; nullopt if there is none before `bound` (or
// the ring fails validation). Lapped by producers, it goes on from the
// ring's oldest record, unless that one is already late enough: then the
// answer is the first offset the lap took unread (older than the ring
// holds now: read from disk or reported lost, never skipped unseen).
std::optional<uint64_t> FindStampInRing(RingReader& scan, int64_t ts_ns, uint64_t bound);

}  // namespace runnel::internal

#endif  // RUNNEL_IPC_INTERNAL_RING_SCAN_H_
