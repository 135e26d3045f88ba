// The durability API that ipc/ is gaining (ipc/durability.h,
// Producer::WaitDurable, StartPosition::Timestamp, PartitionInfo's written /
// durable offsets and persist error), reached through detection so that the
// tools build on both sides of that change. When a piece is missing, the
// helpers say so at run time (kUnavailable / nullopt) instead of failing the
// build. Once ipc/ has all of it, the helpers are plain forwards.

#ifndef RUNNEL_TOOLS_API_COMPAT_H_
#define RUNNEL_TOOLS_API_COMPAT_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/ring.h"
#include "core/status.h"
#include "ipc/bus.h"
#include "ipc/consumer.h"
#include "ipc/internal/shm.h"
#include "ipc/producer.h"

// tools/CMakeLists.txt defines RUNNEL_TOOLS_HAVE_DURABILITY from whether
// runnel_ipc links ipc/durability.cc.
#ifndef RUNNEL_TOOLS_HAVE_DURABILITY
#if __has_include("ipc/durability.h")
#define RUNNEL_TOOLS_HAVE_DURABILITY 1
#else
#define RUNNEL_TOOLS_HAVE_DURABILITY 0
#endif
#endif
#if RUNNEL_TOOLS_HAVE_DURABILITY
#include "ipc/durability.h"
#endif

namespace runnel::cli {

// StartPosition::Timestamp(ns), or nullopt if the bus API lacks it.
template <typename S = StartPosition>
std::optional<StartPosition> StartAtTimestamp(int64_t ns) {
  if constexpr (requires { S::Timestamp(ns); }) {
    return S::Timestamp(ns);
  } else {
    return std::nullopt;
  }
}

// Producer::WaitDurable, or kUnavailable if the bus API lacks it.
template <typename P>
Status WaitDurable(P& producer, uint32_t partition, uint64_t offset,
                   std::chrono::nanoseconds timeout) {
  if constexpr (requires { producer.WaitDurable(partition, offset, timeout); }) {
    return producer.WaitDurable(partition, offset, timeout);
  } else {
    return Status::Unavailable(
        "this build of runnel has no durability API (Producer::WaitDurable)");
  }
}

// Waits until a produced record is durable: Producer::WaitDurable when the
// bus API has it; otherwise the same wait done here on the partition's ring
// (its persistence gating slot publishes the durable offset and any error).
class DurabilityWaiter {
 public:
  DurabilityWaiter(const Bus& bus, Producer& producer) : bus_(bus), producer_(producer) {}

  // OK once the record at `offset` of `partition` is durable; kTimeout;
  // kResourceExhausted when the persister reports a full disk;
  // kUnavailable if the topic is not durable.
  template <typename P = Producer>
  Status Wait(uint32_t partition, uint64_t offset, std::chrono::nanoseconds timeout) {
    P& producer = producer_;
    if constexpr (requires { producer.WaitDurable(partition, offset, timeout); }) {
      return producer.WaitDurable(partition, offset, timeout);
    } else {
      return FallbackWait(partition, offset, timeout);
    }
  }

 private:
  Status FallbackWait(uint32_t partition, uint64_t offset, std::chrono::nanoseconds timeout);
  Result<Ring> RingOf(uint32_t partition);

  const Bus& bus_;
  Producer& producer_;
  std::vector<std::optional<Ring>> rings_;
  std::vector<internal::SharedRegion> regions_;
};

template <typename T>
std::optional<uint64_t> WrittenOffset(const T& info) {
  if constexpr (requires { info.written_offset; }) {
    return info.written_offset;
  } else {
    return std::nullopt;
  }
}

template <typename T>
std::optional<uint64_t> DurableOffset(const T& info) {
  if constexpr (requires { info.durable_offset; }) {
    return info.durable_offset;
  } else {
    return std::nullopt;
  }
}

template <typename T>
int32_t PersistError(const T& info) {
  if constexpr (requires { info.persist_error; }) {
    return info.persist_error;
  } else {
    return 0;
  }
}

}  // namespace runnel::cli

#endif  // RUNNEL_TOOLS_API_COMPAT_H_
