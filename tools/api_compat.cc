#include "tools/api_compat.h"

#include <fmt/core.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "core/wait.h"
#include "ipc/internal/names.h"

namespace runnel::cli {

Result<Ring> DurabilityWaiter::RingOf(uint32_t partition) {
  if (partition < rings_.size() && rings_[partition]) return *rings_[partition];
  Result<TopicInfo> topic = bus_.DescribeTopic(producer_.topic());
  if (!topic.ok()) return topic.status();
  if (!topic->options.durable) {
    return Status::Unavailable("topic '" + producer_.topic() + "' is not durable");
  }
  Result<internal::SharedRegion> region = internal::SharedRegion::Open(
      internal::RingShmName(bus_.name(), topic->name, partition, topic->generation), false);
  if (!region.ok()) return region.status();
  Result<Ring> ring = Ring::Attach(region->bytes());
  if (!ring.ok()) return ring.status();
  regions_.push_back(std::move(*region));
  if (rings_.size() <= partition) rings_.resize(partition + 1);
  rings_[partition] = *ring;
  return *ring;
}

Status DurabilityWaiter::FallbackWait(uint32_t partition, uint64_t offset,
                                      std::chrono::nanoseconds timeout) {
  Result<Ring> ring = RingOf(partition);
  if (!ring.ok()) return ring.status();
  const int64_t deadline = MonotonicNanos() + timeout.count();
  for (;;) {
    const int64_t left = deadline - MonotonicNanos();
    // WaitForDurable returns early when no persister holds a gating slot or
    // one reports an error: poll in short slices until the deadline.
    if (ring->WaitForDurable(offset, std::max<int64_t>(0, std::min<int64_t>(left, 20'000'000)))) {
      return Status::Ok();
    }
    bool persisted = false;
    for (uint32_t s = 0; s < kMaxGatingSlots; ++s) {
      if (ring->GatingOwner(s) == 0) continue;
      persisted = true;
      if (const int32_t err = ring->GatingError(s); err != 0) {
        const std::string what = fmt::format("the broker cannot persist partition {} of '{}': {}{}",
                                             partition, producer_.topic(), std::strerror(err),
                                             err == ENOSPC ? " (the data dir's disk is full)" : "");
        if (MonotonicNanos() >= deadline) {
          return err == ENOSPC ? Status::ResourceExhausted(what) : Status::IoError(what);
        }
      }
    }
    if (!persisted && MonotonicNanos() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // no persister (yet)
    }
    if (MonotonicNanos() >= deadline) {
      return Status::Timeout(fmt::format("offset {} of partition {} is not durable after {} ms",
                                         offset, partition, timeout.count() / 1'000'000));
    }
  }
}

}  // namespace runnel::cli
