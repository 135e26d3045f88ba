// Reading a partition's log straight from its directory, with no bus, broker
// or PartitionLog: LogReader iterates records from an offset or a timestamp
// through read-only mmaps of the segments, VerifyLog checks a whole log, and
// ListTopics / ListPartitions walk a data dir.
//
// Everything read is untrusted: every length is bounds-checked against the
// mapping, every record's CRC is verified (unless turned off), and damage is
// reported (Damage), never a crash, hang or unbounded allocation.
//
// Concurrency. Any number of readers, in any threads or processes, may read a
// directory while its PartitionLog appends: a reader stops at the first zero
// word or unfinished frame (LogEntry::Kind::kEnd) and continues from there
// when polled again; it moves to the next segment when the writer rolls. A
// LogReader object itself is not thread-safe.
//
// What can fault: a reader never touches bytes past the end of the data the
// writer wrote, except for one 8-byte probe that it reads with pread where a
// shrinking file could fault. Truncating or deleting segment files by hand
// (not through PartitionLog) while a reader maps them is outside the contract.

#ifndef RUNNEL_PERSISTENCE_READER_H_
#define RUNNEL_PERSISTENCE_READER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/record.h"
#include "core/status.h"

namespace runnel {

namespace internal {
struct ReaderState;
}  // namespace internal

struct LogReaderOptions {
  // CRC-check every record (a record that fails is reported as damage).
  bool verify_crc = true;
  // true: the log may be appended to while we read. A frame in the last
  // segment that fails its check is taken as not yet completely written:
  // Next() returns kEnd there and retries on the next call. It becomes
  // damage once a later segment exists, or once SetWrittenBelow says its
  // record is written and a valid record follows it.
  // false: the log is at rest (replay --verify, after a crash): such a frame
  // is damage, and Next() resynchronizes past it.
  bool follow = true;
  // damages() keeps at most this many (the rest are only counted).
  std::size_t max_damages = 1000;
};

// Bytes that are not what the writer wrote.
struct Damage {
  std::string file;                         // segment or index file name
  uint64_t file_position = 0;               // where the damage starts
  std::string reason;                       // "crc mismatch", "zero-filled hole ...", ...
  std::optional<uint64_t> offset_before;    // last good record offset before it
  std::optional<uint64_t> resume_position;  // where reading resumed in the same file
  // "00000000000000000000.log:4096: crc mismatch (after offset 17; resumed at 4200)".
  std::string ToString() const;
};

// One step of LogReader::Next().
struct LogEntry {
  enum class Kind : uint8_t {
    kRecord,  // record is valid
    kEnd,     // no more data now: poll again later (follow) or done (at rest)
    kDamage,  // damage() describes what was skipped; keep calling Next()
  };
  Kind kind = Kind::kEnd;
  // kRecord: the record, pointing into the segment's mapping. Valid until the
  // next call on the reader (Next, Seek*, destruction).
  RecordView record;
  bool control = false;       // kRecord: a control frame (state kControl)
  uint64_t segment_base = 0;  // kRecord: the segment and file position of the frame
  uint64_t file_position = 0;
  const Damage* damage = nullptr;  // kDamage: valid until the next call on the reader
};

struct LogReaderStats {
  uint64_t records = 0;  // records returned or skipped by a seek
  uint64_t padding_frames = 0;
  uint64_t bytes = 0;  // frame bytes walked (records and padding)
};

class LogReader {
 public:
  // Opens the partition directory `dir` and positions at the log start.
  // kNotFound if it does not exist; kVersionMismatch if a segment has another
  // major format version. Malformed segment headers are reported as damage
  // when reached.
  [[nodiscard]] static Result<LogReader> Open(std::string dir, LogReaderOptions options = {});

  LogReader(LogReader&&) noexcept;
  LogReader& operator=(LogReader&&) noexcept;
  LogReader(const LogReader&) = delete;
  LogReader& operator=(const LogReader&) = delete;
  ~LogReader();

  // Positions before the first record with offset >= `offset`: the segment
  // by binary search on base offsets, then the time index, then a scan.
  // kOutOfRange if offset is before the log start (retention removed it).
  // An offset past the end positions at the end: the record is returned when
  // it is written.
  [[nodiscard]] Status Seek(uint64_t offset);
  // Positions at the start of the oldest segment.
  [[nodiscard]] Status SeekToStart();
  // Positions before the first record (in log order) with timestamp >= ts_ns:
  // O(log segments + log index entries) plus a scan of at most about one
  // index interval when the indexes are intact.
  [[nodiscard]] Status SeekTimestamp(int64_t ts_ns);

  LogEntry Next();

  // Following a live log: every record with an offset below `offset` is
  // known to be completely written (e.g. it is durable). A frame that fails
  // its check where such a record belongs is then damage, skipped as soon as
  // a valid record follows it, even in the last segment (without this it
  // is taken as a frame still being written). Never lowers the bound.
  void SetWrittenBelow(uint64_t offset);

  // The oldest segment's base offset as of the last directory listing.
  uint64_t log_start_offset() const;
  const std::vector<Damage>& damages() const;
  uint64_t damages_not_kept() const;  // beyond max_damages
  const LogReaderStats& stats() const;

 private:
  explicit LogReader(std::unique_ptr<internal::ReaderState> state);
  std::unique_ptr<internal::ReaderState> state_;
};

// What VerifyLog found in one partition directory.
struct VerifyReport {
  uint64_t segments = 0;
  uint64_t records = 0;  // data and control records that passed their CRC
  uint64_t control_records = 0;
  uint64_t padding_frames = 0;
  uint64_t bytes = 0;  // frame bytes (records and padding)
  std::optional<uint64_t> first_offset;
  std::optional<uint64_t> last_offset;
  std::optional<int64_t> first_timestamp_ns;  // of the first / last record in log order
  std::optional<int64_t> last_timestamp_ns;
  std::vector<Damage> damages;  // log and time index damage, in log order
  uint64_t damages_not_kept = 0;
  // Gap markers (persistence/format.h), and the offsets they say are not in
  // the log. Not damage: the broker recorded a loss it could not prevent.
  // Not counted as records.
  uint64_t gaps = 0;
  uint64_t gap_offsets = 0;
  // Not damage either: what a crash left that the broker completes when it
  // opens the log (a segment roll it interrupted), one sentence each.
  std::vector<std::string> notes;
  bool ok() const { return damages.empty() && damages_not_kept == 0; }
};

// Reads every record of the log at rest in `dir`, verifying CRCs, offset
// order, segment continuity and the time indexes. Errors only for what stops
// it from reading at all (kNotFound, kVersionMismatch, kIoError); damage is
// in the report.
[[nodiscard]] Result<VerifyReport> VerifyLog(const std::string& dir);

// DATA_DIR/<topic>/<partition>.
std::string PartitionDir(std::string_view data_dir, std::string_view topic, uint32_t partition);
// Topic directories in a data dir (sorted; files and names with '~' skipped;
// a name may begin with a dot).
[[nodiscard]] Result<std::vector<std::string>> ListTopics(const std::string& data_dir);
// Partition numbers of a topic (sorted; entries that are not a decimal
// number without leading zeros are skipped).
[[nodiscard]] Result<std::vector<uint32_t>> ListPartitions(const std::string& data_dir,
                                                           std::string_view topic);

}  // namespace runnel

#endif  // RUNNEL_PERSISTENCE_READER_H_
