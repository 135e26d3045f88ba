#include "ipc/internal/log_cold_reader.h"

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>
#include <vector>

#include "persistence/format.h"
#include "persistence/reader.h"

namespace runnel::internal {

namespace {

class LogColdReader : public ColdReader {
 public:
  explicit LogColdReader(std::string data_dir) : data_dir_(std::move(data_dir)) {}

  Result<ColdReadBatch> ReadFrom(const ColdReadRequest& req,
                                 const std::function<void(const RecordView&)>& sink) override {
    // Not under mu_ while reading: the sink runs the user's handler, which
    // may destroy or seek another consumer (Close). One closing this entry
    // meanwhile leaves it to this read alone, dropped when it ends.
    Result<std::shared_ptr<Open>> open = Get(req.reader, req.topic, req.generation, req.partition);
    if (!open.ok()) return open.status();
    Open& o = **open;
    ColdReadBatch batch;
    batch.next_offset = req.offset;
    if (o.next != req.offset) {
      o.next = UINT64_MAX;  // unknown until the seek succeeds
      o.damage = false;
      Status s = o.reader.Seek(req.offset);
      if (s.code() == StatusCode::kOutOfRange) {
        // Retention removed it: continue at the log start, say what was lost.
        const uint64_t start = o.reader.log_start_offset();
        batch.skipped = start > req.offset ? start - req.offset : 0;
        s = o.reader.Seek(start);
      }
      if (!s.ok()) return s;
      o.next = req.offset + batch.skipped;
      o.damage = false;
      if (batch.skipped > 0) {
        // Nothing delivered with it: the ring may still hold what the log
        // lost, and the consumer reads that first (ColdReadBatch::skipped).
        batch.next_offset = o.next;
        return batch;
      }
    }
    o.reader.SetWrittenBelow(req.written_below);
    const uint32_t limit = req.limit == 0 ? 256 : req.limit;
    while (batch.records < limit) {
      const LogEntry e = o.reader.Next();
      if (e.kind == LogEntry::Kind::kEnd) break;
      if (e.kind == LogEntry::Kind::kDamage) {
        o.damage = true;
        continue;
      }
      if (e.control) {
        const std::optional<GapMarker> gap = DecodeGapMarker(e.record);
        if (!gap || gap->to <= o.next || o.next == UINT64_MAX) continue;
        if (o.damage && gap->from > o.next) {
          // Damage right before the marker: the offsets up to it are lost too.
          batch.damaged_from = o.next;
          batch.damaged_to = gap->from;
        }
        batch.gap_from = std::max(gap->from, o.next);
        batch.gap_to = gap->to;
        o.damage = false;
        o.next = gap->to;
        break;
      }
      const uint64_t offset = e.record.offset();
      if (offset < o.next) continue;
      if (o.damage && offset > o.next) {
        // The offsets in between were in the damage (or aborted claims
        // next to it: the log cannot tell them apart).
        batch.damaged_from = o.next;
        batch.damaged_to = offset;
        // Segments that vanished under the reader, now older than the log's
        // start (which this record begins): retention, not damage.
        batch.damage_was_retention = o.reader.log_start_offset() >= offset;
        o.damage = false;
        // The batch ends before this record: the consumer hears of the loss
        // before it sees a record after it, as from the ring. The next read
        // seeks back to it (no view into the mapping is kept across calls:
        // a repair may cut the segment at the damage meanwhile).
        o.next = UINT64_MAX;
        batch.next_offset = offset;
        return batch;
      }
      sink(e.record);
      ++batch.records;
      o.damage = false;
      o.next = offset + 1;
    }
    batch.next_offset = o.next;
    return batch;
  }

  void Close(uint64_t reader, std::optional<uint32_t> partition) override {
    std::vector<std::shared_ptr<Open>> closing;  // unmapped after the lock
    std::lock_guard<std::mutex> lk(mu_);
    std::erase_if(open_, [&](auto& entry) {
      if (std::get<0>(entry.first) != reader ||
          (partition && std::get<3>(entry.first) != *partition)) {
        return false;
      }
      closing.push_back(std::move(entry.second));
      return true;
    });
  }

  // Both open the log afresh: its start as it is now (retention), and no
  // reader kept open for a consumer that may never read the disk.
  Result<std::optional<uint64_t>> EarliestOffset(const std::string& topic, uint64_t /*generation*/,
                                                 uint32_t partition) override {
    Result<LogReader> r = LogReader::Open(PartitionDir(topic, partition));
    if (!r.ok()) return NoLogOr(r.status());
    return std::optional<uint64_t>(r->log_start_offset());
  }

  Result<std::optional<uint64_t>> OffsetForTimestamp(const std::string& topic,
                                                     uint64_t /*generation*/, uint32_t partition,
                                                     int64_t ts_ns,
                                                     uint64_t written_below) override {
    Result<LogReader> r = LogReader::Open(PartitionDir(topic, partition));
    if (!r.ok()) return NoLogOr(r.status());
    r->SetWrittenBelow(written_below);
    if (Status s = r->SeekTimestamp(ts_ns); !s.ok()) return NoLogOr(s);
    for (;;) {
      const LogEntry e = r->Next();
      if (e.kind == LogEntry::Kind::kEnd) return std::optional<uint64_t>();
      if (e.kind == LogEntry::Kind::kRecord && !e.control && e.record.timestamp_ns() >= ts_ns) {
        return std::optional<uint64_t>(e.record.offset());
      }
    }
  }

 private:
  // No log (not persisted yet, or removed) is no answer; any other failure
  // to open it is an error.
  static Result<std::optional<uint64_t>> NoLogOr(const Status& s) {
    if (s.code() == StatusCode::kNotFound) return std::optional<uint64_t>();
    return s;
  }

  struct Open {
    explicit Open(LogReader r) : reader(std::move(r)) {}
    LogReader reader;
    uint64_t next = UINT64_MAX;  // offset the reader returns next, if known
    bool damage = false;         // the reader skipped damage since the last record
  };

  std::string PartitionDir(const std::string& topic, uint32_t partition) const {
    return data_dir_ + "/" + topic + "/" + std::to_string(partition);
  }

  Result<std::shared_ptr<Open>> Get(uint64_t reader, const std::string& topic, uint64_t generation,
                                    uint32_t partition) {
    const auto key = std::make_tuple(reader, topic, generation, partition);
    {
      std::lock_guard<std::mutex> lk(mu_);
      auto it = open_.find(key);
      if (it != open_.end()) return it->second;
    }
    // Opened unlocked (it reads the directory and maps a segment); only this
    // reader's consumer asks for this key, one thread at a time.
    Result<LogReader> r = LogReader::Open(PartitionDir(topic, partition));
    if (!r.ok()) return r.status();
    auto open = std::make_shared<Open>(std::move(*r));
    std::lock_guard<std::mutex> lk(mu_);
    open_[key] = open;
    return open;
  }

  std::string data_dir_;
  std::mutex mu_;  // guards open_ (not the entries: each is one consumer's)
  // One open log per reader (a consumer) and partition, from its first cold
  // read until Close: each consumer keeps its own position.
  std::map<std::tuple<uint64_t, std::string, uint64_t, uint32_t>, std::shared_ptr<Open>> open_;
};

}  // namespace

std::shared_ptr<ColdReader> MakeLogColdReader(std::string data_dir) {
  return std::make_shared<LogColdReader>(std::move(data_dir));
}

}  // namespace runnel::internal
