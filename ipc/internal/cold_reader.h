// The seam for persistence (issue 4): a Consumer whose wanted offset is older
// than its ring holds (it started early, seeked back, or was lapped) asks the
// bus's ColdReader for those records, then rejoins the ring at exactly the
// next offset. Without a ColdReader (nullptr, the default) such a consumer is
// told what it lost (PollStatus::kOverrun) and continues at the ring's
// earliest record.
//
// Install one with BusCore::SetColdReader before creating consumers.

#ifndef RUNNEL_IPC_INTERNAL_COLD_READER_H_
#define RUNNEL_IPC_INTERNAL_COLD_READER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "core/record.h"
#include "core/status.h"

namespace runnel::internal {

struct ColdReadRequest {
  // Who reads (NewReaderId): each reader has its own position in the log,
  // kept open between requests until Close.
  uint64_t reader = 0;
  std::string topic;
  uint64_t generation = 0;
  uint32_t partition = 0;
  uint64_t offset = 0;  // deliver records with offset >= this
  uint32_t limit = 0;   // at most this many
  // Records below this offset are completely on disk (durable): a frame
  // that fails its check where one of them belongs is damage, not a write
  // in progress.
  uint64_t written_below = 0;
};

struct ColdReadBatch {
  uint32_t records = 0;      // handed to the sink, in offset order
  uint64_t next_offset = 0;  // where the next request should start
  // Offsets in [request.offset, first available) that no longer exist on
  // disk (retention). A batch that skips delivers no record (next_offset is
  // the first available): the consumer reads what of them the ring still
  // holds, and reports the rest as lost.
  uint64_t skipped = 0;
  // Offsets [damaged_from, damaged_to) were skipped over damage on disk; the
  // batch ends before the first record after them (the next one starts
  // with it).
  uint64_t damaged_from = 0;
  uint64_t damaged_to = 0;
  // The damage above is the log's start moving past them while they were
  // read (retention deleted their segments), not damage.
  bool damage_was_retention = false;
  // Offsets [gap_from, gap_to) were never in the log, or were cut from it (a
  // gap marker, persistence/format.h); the batch ends there.
  uint64_t gap_from = 0;
  uint64_t gap_to = 0;
};

class ColdReader {
 public:
  virtual ~ColdReader() = default;
  // A fresh id for ColdReadRequest::reader, unique in this process.
  static uint64_t NewReaderId() {
    static std::atomic<uint64_t> next{1};
    return next.fetch_add(1, std::memory_order_relaxed);  // relaxed: a unique number
  }
  // Called on the consumer's thread. The RecordView is valid until the sink
  // returns. Must not block for long: it runs inside Consumer::Poll.
  [[nodiscard]] virtual Result<ColdReadBatch> ReadFrom(
      const ColdReadRequest& request, const std::function<void(const RecordView&)>& sink) = 0;
  // Drops what ReadFrom keeps open for `reader`: the partition's log, or
  // all of them (nullopt). Files deleted meanwhile (retention, a deleted
  // topic) are freed only then.
  virtual void Close(uint64_t /*reader*/, std::optional<uint32_t> /*partition*/) {}
  // The oldest offset the log holds now (nullopt: no log); an error if
  // there is one that cannot be read.
  virtual Result<std::optional<uint64_t>> EarliestOffset(const std::string& /*topic*/,
                                                         uint64_t /*generation*/,
                                                         uint32_t /*partition*/) {
    return std::optional<uint64_t>();
  }
  // The offset of the first record on disk with timestamp >= ts_ns (nullopt:
  // none on disk; look in the ring); an error as for EarliestOffset.
  // `written_below` as in ColdReadRequest.
  virtual Result<std::optional<uint64_t>> OffsetForTimestamp(const std::string& /*topic*/,
                                                             uint64_t /*generation*/,
                                                             uint32_t /*partition*/,
                                                             int64_t /*ts_ns*/,
                                                             uint64_t /*written_below*/) {
    return std::optional<uint64_t>();
  }
};

}  // namespace runnel::internal

#endif  // RUNNEL_IPC_INTERNAL_COLD_READER_H_
