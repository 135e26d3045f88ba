// Consumer: reads a topic's partitions, zero-copy, each consumer with its own
// cursor per partition (fan-out: consumers never block producers or each
// other).
//
// Overrun: a consumer that falls a full ring behind is lapped. Poll reports
// it, never silently: the PollResult says kOverrun with the records and bytes
// lost (summed over partitions), ConsumerOptions::on_overrun gets the detail
// per partition, and the consumer continues at the oldest record still in the
// ring. Records handed to the handler in the same batch may have been
// overwritten while it read them (PollResult::torn counts them).
//
// Waiting (PollFor): one partition sleeps on its ring's futex
// (RingReader::Wait). Several partitions with WaitStrategy::kBlocking sleep on
// all their rings at once with futex_waitv(2) (Linux 5.16+; on older kernels
// it falls back to 1 ms sleeps on one ring at a time). kBusySpin and
// kSpinYield poll every partition in turn.
//
// Topic deletion is checked every kTopicCheckInterval polls and whenever
// PollFor waits; afterwards Poll returns kTopicDeleted.
//
// REQUIRES: one thread at a time per Consumer. The ConsumerRecord handed to
// the handler (and every view it returns) is valid until the handler returns.
// The handler must not Seek, move or destroy its own consumer; other
// consumers it may.

#ifndef RUNNEL_IPC_CONSUMER_H_
#define RUNNEL_IPC_CONSUMER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/record.h"
#include "core/ring.h"
#include "core/status.h"
#include "core/wait.h"

namespace runnel {

namespace internal {
class BusCore;
class ColdReader;
}  // namespace internal

// Where a new consumer starts in each partition.
struct StartPosition {
  enum class Kind : uint8_t { kEarliest, kLatest, kOffset, kTimestamp };
  Kind kind = Kind::kEarliest;
  uint64_t offset = 0;
  int64_t timestamp_ns = 0;
  // The oldest retained record: on disk when the bus has a data dir, else
  // the oldest still in the ring.
  static StartPosition Earliest() { return {Kind::kEarliest, 0, 0}; }
  // Only records claimed after the consumer was created.
  static StartPosition Latest() { return {Kind::kLatest, 0, 0}; }
  // The first record with offset >= n (as Consumer::Seek, except that past
  // the end it waits there for offset n instead of failing).
  static StartPosition Offset(uint64_t n) { return {Kind::kOffset, n, 0}; }
  // The first record with timestamp >= ns (nanoseconds since the epoch),
  // found through the time index on disk, else in the ring; the end if none.
  static StartPosition Timestamp(int64_t ns) { return {Kind::kTimestamp, 0, ns}; }
};

// Why records were lost (OverrunInfo::cause).
enum class LossCause : uint8_t {
  kOverrun = 0,    // the consumer fell behind the ring, and they are not on disk either
  kRetention = 1,  // retention removed them from disk before the consumer read them
  kDamaged = 2,    // damaged on disk (failed their check), or missing from a log cut short
  // Never on disk, or cut from it: the ring lost them before a broker
  // persisted it, or a repair cut them from a damaged log (the broker's
  // output says which). The log marks the gap; so did the broker.
  kNotPersisted = 3,
  // On disk, but the log could not be read (OverrunInfo::error says why:
  // permissions, too many open files, ...).
  kUnreadable = 4,
};

struct OverrunInfo {
  uint32_t partition = 0;
  uint64_t lost_records = 0;  // offsets skipped
  uint64_t lost_bytes = 0;    // ring bytes skipped (0 when unknown, e.g. after Seek)
  uint64_t from_offset = 0;   // where the consumer was
  uint64_t to_offset = 0;     // where it continues
  uint32_t torn = 0;          // records of the last batch that may have been overwritten
  LossCause cause = LossCause::kOverrun;
  std::string error;  // kUnreadable: the error reading the log
};

struct ConsumerOptions {
  std::vector<uint32_t> partitions;  // empty: all partitions of the topic
  StartPosition start = StartPosition::Earliest();
  WaitStrategy wait = WaitStrategy::kBlocking;  // used by PollFor
  bool verify_crc = false;                      // CRC-check every record read from the ring
  // false (the default): records read from the ring are copied out of it
  // before the handler sees them, and checked after the copy not to have
  // been overwritten by producers that lapped this consumer (then they are
  // re-read from disk, or reported lost): the handler never sees a torn
  // record. true: the handler gets views into the ring itself (no copy); a
  // consumer that is lapped while its handler runs may see bytes being
  // rewritten, and PollResult::torn / OverrunInfo::torn count the records
  // delivered that way (their offsets are delivered again from disk).
  bool zero_copy = false;
  std::string group;  // consumer group id: reserved (recorded, not acted on)
  // Called from Poll for every overrun, with the partition's details.
  std::function<void(const OverrunInfo&)> on_overrun;
};

// What the handler sees: a record of `topic` / `partition`, in place.
class ConsumerRecord {
 public:
  ConsumerRecord(std::string_view topic, uint32_t partition, const RecordView& view)
      : topic_(topic), partition_(partition), view_(view) {}
  std::string_view topic() const { return topic_; }
  uint32_t partition() const { return partition_; }
  const RecordView& view() const { return view_; }
  uint64_t offset() const { return view_.offset(); }
  int64_t timestamp_ns() const { return view_.timestamp_ns(); }
  bool has_key() const { return view_.has_key(); }
  std::string_view key() const { return view_.key(); }
  std::string_view value() const { return view_.value(); }
  HeaderIterator headers() const { return view_.headers(); }

 private:
  std::string_view topic_;
  uint32_t partition_;
  const RecordView& view_;
};

enum class PollStatus : uint8_t {
  kOk = 0,
  kOverrun = 1,       // lapped on some partition: see lost_*; the consumer continued
  kCorrupt = 2,       // a frame in the ring failed validation (partition says where)
  kTopicDeleted = 3,  // the topic was deleted (or re-created): this consumer is done
  kMovedFrom = 4,     // this Consumer was moved from: poll the one it was moved to
};
std::string_view PollStatusName(PollStatus s);

struct PollResult {
  PollStatus status = PollStatus::kOk;
  uint32_t records = 0;       // handed to the handler
  uint64_t lost_records = 0;  // kOverrun: records skipped, all partitions
  uint64_t lost_bytes = 0;
  uint32_t torn = 0;       // delivered records that may have been overwritten meanwhile
  uint32_t partition = 0;  // kOverrun / kCorrupt: the (last) partition concerned
  bool ok() const { return status == PollStatus::kOk; }
};

class Consumer {
 public:
  static constexpr uint32_t kTopicCheckInterval = 256;

  Consumer(Consumer&&) noexcept;
  Consumer& operator=(Consumer&&) noexcept;
  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;
  ~Consumer();  // releases the registration

  const std::string& topic() const { return topic_; }
  // The subscribed partitions, in the order they are polled.
  std::vector<uint32_t> partitions() const;

  // Hands up to `limit` records to handler(const ConsumerRecord&), visiting
  // the partitions round-robin (each call starts one partition further).
  // Never blocks.
  template <typename Handler>
  PollResult Poll(Handler&& handler, uint32_t limit);

  // As Poll, but waits (per ConsumerOptions::wait) up to `timeout` for a
  // first record. Returns as soon as a poll delivers records or reports a
  // status; records == 0 and kOk means the timeout ran out. A limit of 0
  // takes nothing and waits for nothing: one Poll.
  template <typename Handler>
  PollResult PollFor(Handler&& handler, uint32_t limit, std::chrono::nanoseconds timeout);

  // Continue `partition` at the first record with offset >= `offset`.
  // kOutOfRange past the partition's next offset; kNotFound for a partition
  // this consumer does not read. An offset older than the ring holds is read
  // from the cold reader (persistence) if there is one; otherwise the next
  // Poll reports it as an overrun and continues at the oldest record.
  [[nodiscard]] Status Seek(uint32_t partition, uint64_t offset);
  // The offset the consumer reads next in `partition`.
  [[nodiscard]] Result<uint64_t> Position(uint32_t partition) const;
  // Cold check: kNotFound once the topic was deleted.
  [[nodiscard]] Status CheckTopic();

  // Totals since creation.
  uint64_t overruns() const { return overruns_; }
  uint64_t lost_records() const { return lost_records_total_; }

 private:
  friend class Bus;
  Consumer() = default;

  struct Cursor {
    Cursor(uint32_t p, RingReader r) : partition(p), reader(r) {}
    uint32_t partition = 0;
    RingReader reader;
    uint64_t skip_until = 0;    // records below this offset are skipped (Seek)
    bool slow = false;          // take PollSlow: a pending loss or a cold read
    bool pending_loss = false;  // Seek/start before the ring's earliest, no cold reader
    uint64_t loss_from = 0;
    uint64_t loss_to = 0;
    bool cold = false;       // reading from the cold reader
    uint64_t cold_next = 0;  // next offset to ask the cold reader for
  };
  using Sink = std::function<void(const ConsumerRecord&)>;

  void MaintenanceCheck();
  void OnReadProblem(Cursor& c, const ReadResult& rr, PollResult& result);
  // `settled`: the reader passed padding last; report the offsets that
  // padding skipped at the tail as read (RingReader::SettledPosition).
  void PublishPosition(const Cursor& c, bool settled = false);
  // Replaces the stage buffer with one of at least `bytes` (cold path).
  void GrowStage(std::size_t bytes);
  // Pending losses and cold reads. `sink` adapts the user's handler.
  void PollSlow(Cursor& c, const std::function<void(const RecordView&)>& sink, uint32_t limit,
                PollResult& result);
  // False once `deadline_ns` (monotonic) has passed.
  bool WaitForData(int64_t deadline_ns);
  Status SeekCursor(Cursor& c, uint64_t offset);
  // Back to the ring: the cold reader closes what it kept open for `c`.
  void LeaveCold(Cursor& c);
  void Release();

  std::shared_ptr<internal::BusCore> core_;
  std::shared_ptr<const void> mapping_;  // keeps the rings mapped
  std::shared_ptr<internal::ColdReader> cold_reader_;
  uint64_t cold_id_ = 0;  // ColdReadRequest::reader
  std::vector<Cursor> cursors_;
  int8_t cursor_of_[64] = {};  // partition -> index in cursors_, -1: not subscribed
  std::size_t next_cursor_ = 0;
  uint32_t polls_until_check_ = kTopicCheckInterval;
  bool topic_gone_ = false;  // also set in a moved-from Consumer: Poll stops there
  WaitStrategy wait_ = WaitStrategy::kBlocking;
  bool zero_copy_ = false;
  // Without zero_copy: where records are copied out of the ring. 64 KiB,
  // touched at creation, grown when a larger record comes (GrowStage).
  std::unique_ptr<std::byte[]> stage_memory_;
  std::span<std::byte> stage_;
  uint32_t topic_slot_ = 0;
  uint64_t generation_ = 0;
  uint32_t client_slot_ = 0;
  uint64_t client_id_ = 0;
  uint64_t overruns_ = 0;
  uint64_t lost_records_total_ = 0;
  std::function<void(const OverrunInfo&)> on_overrun_;
  std::string topic_;
};

// ---------------------------------------------------------------------------
// Implementation of the templates.

template <typename Handler>
PollResult Consumer::Poll(Handler&& handler, uint32_t limit) {
  PollResult result;
  if (--polls_until_check_ == 0) [[unlikely]] {
    MaintenanceCheck();
  }
  if (topic_gone_) [[unlikely]] {
    result.status = core_ ? PollStatus::kTopicDeleted : PollStatus::kMovedFrom;
    return result;
  }
  const std::size_t n = cursors_.size();
  std::size_t i = next_cursor_;
  next_cursor_ = next_cursor_ + 1 == n ? 0 : next_cursor_ + 1;
  for (std::size_t visited = 0; visited < n && result.records < limit; ++visited) {
    Cursor& c = cursors_[i];
    i = i + 1 == n ? 0 : i + 1;
    if (c.slow) [[unlikely]] {
      PollSlow(
          c,
          [&](const RecordView& v) {
            handler(static_cast<const ConsumerRecord&>(ConsumerRecord(topic_, c.partition, v)));
          },
          limit - result.records, result);
      if (topic_gone_) [[unlikely]] {
        break;
      }
      if (c.slow || result.records >= limit) continue;  // else: back in the ring, read on
    }
    uint32_t delivered = 0;
    const uint64_t skip_until = c.skip_until;
    const uint32_t partition = c.partition;
    auto deliver = [&](const RecordView& v) {
      if (v.offset() < skip_until) [[unlikely]] {
        return;  // before a Seek target
      }
      handler(static_cast<const ConsumerRecord&>(ConsumerRecord(topic_, partition, v)));
      ++delivered;
    };
    ReadResult rr;
    uint32_t read_total = 0;
    const RingPosition start = c.reader.position();
    for (;;) {
      const uint32_t ask = limit - result.records - delivered;
      const uint32_t before = delivered;
      rr = zero_copy_ ? c.reader.read(deliver, ask) : c.reader.read_copy(deliver, ask, stage_);
      read_total += rr.records;
      if (rr.buffer_needed > stage_.size()) [[unlikely]] {
        GrowStage(rr.buffer_needed);  // a record larger than any before
        continue;
      }
      // Skipped records count against read()'s limit: read on until the
      // caller's limit is met by delivered records or the ring has no more.
      if (rr.status != ReadStatus::kOk || (rr.records < ask && !rr.buffer_full) ||
          delivered - before == ask) {
        break;
      }
    }
    result.records += delivered;
    // Also after padding alone (an aborted or unblocked claim): the position
    // moved, and the lag others see must not stay one short.
    if (read_total > 0 || c.reader.position() != start) PublishPosition(c, rr.ended_on_padding);
    if (rr.status != ReadStatus::kOk) [[unlikely]] {
      OnReadProblem(c, rr, result);
    }
  }
  return result;
}

template <typename Handler>
PollResult Consumer::PollFor(Handler&& handler, uint32_t limit, std::chrono::nanoseconds timeout) {
  PollResult r = Poll(handler, limit);
  // Nothing can be taken with limit 0: waiting would spin on records that
  // are there until the timeout.
  if (r.records > 0 || r.status != PollStatus::kOk || limit == 0) return r;
  // The clock only once there is something to wait for: a busy consumer
  // would otherwise read it (~26 ns) for every batch.
  const int64_t deadline = DeadlineAfter(timeout.count());
  for (;;) {
    if (!WaitForData(deadline)) return Poll(handler, limit);
    r = Poll(handler, limit);
    if (r.records > 0 || r.status != PollStatus::kOk) return r;
  }
}

}  // namespace runnel

#endif  // RUNNEL_IPC_CONSUMER_H_
