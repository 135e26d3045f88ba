// Small forwards to the bus's durability API, kept for code written while
// ipc/ was gaining it (tools/perf*.cc). New code calls the API directly:
// Producer::WaitDurable, StartPosition::Timestamp, PartitionInfo's
// written_offset / durable_offset / persist_error.

#ifndef RUNNEL_TOOLS_API_COMPAT_H_
#define RUNNEL_TOOLS_API_COMPAT_H_

#include <chrono>
#include <cstdint>
#include <optional>

#include "core/status.h"
#include "ipc/bus.h"
#include "ipc/consumer.h"
#include "ipc/durability.h"
#include "ipc/producer.h"

namespace runnel::cli {

inline std::optional<StartPosition> StartAtTimestamp(int64_t ns) {
  return StartPosition::Timestamp(ns);
}

inline Status WaitDurable(Producer& producer, uint32_t partition, uint64_t offset,
                          std::chrono::nanoseconds timeout) {
  return producer.WaitDurable(partition, offset, timeout);
}

inline std::optional<uint64_t> WrittenOffset(const PartitionInfo& info) {
  return info.written_offset;
}
inline std::optional<uint64_t> DurableOffset(const PartitionInfo& info) {
  return info.durable_offset;
}
inline int32_t PersistError(const PartitionInfo& info) { return info.persist_error; }

}  // namespace runnel::cli

#endif  // RUNNEL_TOOLS_API_COMPAT_H_
