#include "tools/perf_cold_reader.h"

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>
#include <utility>

#include "ipc/internal/bus_core.h"
#include "ipc/internal/cold_reader.h"
#include "persistence/reader.h"

namespace runnel::cli {
namespace {

// Relaxed: a statistic read by the same thread after the run.
std::atomic<uint64_t> g_cold_records{0};

class LogColdReader : public internal::ColdReader {
 public:
  explicit LogColdReader(std::string data_dir) : data_dir_(std::move(data_dir)) {}

  Result<internal::ColdReadBatch> ReadFrom(
      const internal::ColdReadRequest& request,
      const std::function<void(const RecordView&)>& sink) override {
    std::lock_guard<std::mutex> lock(mu_);
    Cursor& c = cursors_[{request.topic, request.generation, request.partition}];
    if (!c.reader) {
      LogReaderOptions options;
      options.follow = true;  // the broker may still be appending
      Result<LogReader> r =
          LogReader::Open(PartitionDir(data_dir_, request.topic, request.partition), options);
      if (!r.ok()) return r.status();
      c.reader.emplace(std::move(*r));
      c.next = UINT64_MAX;
    }
    internal::ColdReadBatch batch;
    batch.next_offset = request.offset;
    if (c.next != request.offset) {
      Status s = c.reader->Seek(request.offset);
      if (s.code() == StatusCode::kOutOfRange) {
        // Retention removed the start: report it as skipped, read on.
        const uint64_t start = c.reader->log_start_offset();
        batch.skipped = start > request.offset ? start - request.offset : 0;
        batch.next_offset = request.offset + batch.skipped;
        s = c.reader->Seek(batch.next_offset);
      }
      if (!s.ok()) return s;
    }
    while (batch.records < request.limit) {
      const LogEntry e = c.reader->Next();
      if (e.kind == LogEntry::Kind::kEnd) break;
      if (e.kind != LogEntry::Kind::kRecord || e.control) continue;  // damage: a gap shows
      const uint64_t offset = e.record.offset();
      if (offset < batch.next_offset) continue;
      sink(e.record);
      ++batch.records;
      g_cold_records.fetch_add(1, std::memory_order_relaxed);
      batch.next_offset = offset + 1;
    }
    c.next = batch.next_offset;
    return batch;
  }

 private:
  struct Cursor {
    std::optional<LogReader> reader;
    uint64_t next = UINT64_MAX;  // where the reader stands (offset of the next record)
  };
  std::string data_dir_;
  std::mutex mu_;
  std::map<std::tuple<std::string, uint64_t, uint32_t>, Cursor> cursors_;
};

}  // namespace

uint64_t DiskColdRecords() { return g_cold_records.load(std::memory_order_relaxed); }

bool EnsureDiskColdReader(const Bus& bus, const std::string& data_dir) {
  const std::shared_ptr<internal::BusCore>& core = bus.core();
  if (!core) return false;
  if (core->cold_reader()) return true;
  if (data_dir.empty()) return false;
  core->SetColdReader(std::make_shared<LogColdReader>(data_dir));
  return true;
}

}  // namespace runnel::cli
