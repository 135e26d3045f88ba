// PartitionLog: one partition's log on disk (DATA_DIR/<topic>/<partition>/),
// a sequence of segment files plus their time indexes and a checkpoint. The
// format is in persistence/format.h and docs/format.md.
//
// Roles and threads. A PartitionLog is the log's single writer: one object
// per directory per host (Open takes an exclusive flock on the directory),
// used by one thread at a time (the persistence thread, or a tool). It is not
// thread-safe. Readers never go through it: they open the directory with
// LogReader (persistence/reader.h), in any thread or process, concurrently.
//
// Two ways to append:
//  - Asynchronous (the io_uring persistence thread): PrepareAppend(n) reserves
//    n bytes in the active segment and says where to write them (fd, file
//    position); the caller writes the bytes itself, then calls CommitAppend
//    with the position and offset of every record in them. Several
//    reservations may be outstanding; they are contiguous in the file and
//    must be committed (or aborted) in the order they were prepared.
//  - Synchronous: Append(frames) does the same with pwrite.
//
// Durability. CommitAppend advances committed_end(); nothing is durable until
// the active segment was fdatasync'ed after the writes: Sync() does that (and
// MarkDurable lets a caller that issues its own fdatasync, e.g. through
// io_uring, publish the result). WriteCheckpoint() persists durable_end() so
// that recovery can start there instead of at the start of the last segment.
//
// Recovery (in Open) follows docs/format.md#recovery: the last segment (from
// the checkpoint on, if it is valid) is scanned and every frame verified; a
// torn, zero-filled or garbage tail is cut at the last valid frame and
// reported in recovery(); a damaged frame with valid records after it, or one
// in a segment that is not the last, is corruption: Open fails with
// kCorruption naming the file and position, unless LogOptions::repair.

#ifndef RUNNEL_PERSISTENCE_LOG_H_
#define RUNNEL_PERSISTENCE_LOG_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace runnel {

namespace internal {
struct LogState;
}  // namespace internal

struct LogOptions {
  // A segment rolls when an append would take it past this size; new
  // segments are preallocated to it. In [kMinSegmentBytes, kMaxSegmentBytes].
  uint64_t segment_bytes = uint64_t{1} << 30;
  // A time index entry is added when a record starts at least this many bytes
  // after the previous entry (and for the first record of each segment).
  uint32_t index_interval_bytes = 4096;
  // fallocate new segments to segment_bytes (and the active one at Open).
  bool preallocate = true;
  // On roll, fdatasync the sealed segment and its index and fsync the
  // directory, so the only file a durability fsync must cover is the active
  // segment (AppendTarget::fd). Turn off only for an fsync policy of never:
  // the sealed segments are then synced by the next Sync() (or Close()).
  bool sync_on_roll = true;
  // Let Open repair mid-log corruption by truncating the log at the first
  // damaged frame (deleting later segments) instead of failing.
  bool repair = false;
  // Base offset of the first segment of a new, empty log.
  uint64_t initial_offset = 0;
};

// For ENOSPC / EDQUOT from a log whose segments are `segment_bytes`: what to
// do ("every new segment takes its full size at once: ..."). A disk with
// less free space than one segment fills up with most of it free.
std::string NoSpaceHint(uint64_t segment_bytes);

// What recovery found and did. clean() when nothing was dropped.
struct RecoveryReport {
  bool from_checkpoint = false;    // the scan started at the checkpoint
  uint64_t scan_segment_base = 0;  // where the scan started
  uint64_t scan_start_position = 0;
  uint64_t records_recovered = 0;                // records verified by the scan
  uint64_t bytes_dropped = 0;                    // non-zero bytes cut off the log
  std::optional<uint64_t> first_dropped_offset;  // offset the first dropped record had
  std::optional<uint64_t> last_dropped_offset;   // best effort (read from frame headers)
  std::string file;                              // segment file where the log was cut
  uint64_t truncated_at = 0;                     // file position of the cut
  uint32_t segments_removed = 0;                 // later segments deleted by repair
  std::string reason;                            // why the cut happened ("" if clean)

  bool clean() const { return bytes_dropped == 0 && segments_removed == 0 && reason.empty(); }
  // One line for logs: "clean (1234 records verified from checkpoint)" or
  // "dropped 4096 bytes (offsets 17..20) at 000..0.log:8192: torn tail: ...".
  std::string ToString() const;
};

// A point in the log: the end of the data (file_position in the segment
// segment_base), the offset the next record gets, and the largest timestamp
// before it.
struct LogPosition {
  uint64_t segment_base = 0;
  uint64_t file_position = 0;
  uint64_t next_offset = 0;
  int64_t max_timestamp_ns = 0;
};

// Where to write a prepared append.
struct AppendTarget {
  int fd = -1;                 // the segment file, open O_RDWR; owned by the log
  uint64_t file_position = 0;  // write the bytes here (8-aligned)
  uint64_t segment_base = 0;   // changes when the log rolled
  uint64_t nbytes = 0;
};

// One record (data or control frame) of a committed append.
struct FrameMeta {
  uint64_t offset = 0;
  int64_t timestamp_ns = 0;
  uint64_t file_position = 0;  // where its frame starts in the segment file
};

// Limits for Retention(); nullopt means no limit.
struct RetentionPolicy {
  std::optional<uint64_t> max_bytes;  // keep the log (all segments) at most this big
  std::optional<int64_t> max_age_ms;  // delete segments whose newest record is older
};

struct RemovedSegment {
  uint64_t base_offset = 0;
  uint64_t bytes = 0;
  bool by_age = false;  // else by size
};

struct RetentionResult {
  std::vector<RemovedSegment> removed;
  uint64_t bytes_removed = 0;
  uint64_t log_start_offset = 0;  // after the removal
};

struct SegmentInfo {
  uint64_t base_offset = 0;
  uint64_t bytes = 0;  // file size; for the active segment, the end of its data
  bool active = false;
};

class PartitionLog {
 public:
  // Opens (creating the directory and a first segment if needed) and
  // recovers the log in `dir`. Errors:
  //   kVersionMismatch  a segment of another major format version
  //   kCorruption       a malformed segment header, or mid-log corruption
  //                     (message names the file and position; see repair)
  //   kUnavailable      another PartitionLog has the directory open
  //   kInvalidArgument  options out of range
  //   kPermissionDenied / kIoError / kResourceExhausted from the file system
  // Unrelated files in the directory are ignored and listed in warnings().
  [[nodiscard]] static Result<PartitionLog> Open(std::string dir, LogOptions options = {});

  PartitionLog(PartitionLog&&) noexcept;
  PartitionLog& operator=(PartitionLog&&) noexcept;
  PartitionLog(const PartitionLog&) = delete;
  PartitionLog& operator=(const PartitionLog&) = delete;
  // Closes the log if Close() was not called (errors are lost: call Close).
  ~PartitionLog();

  const std::string& dir() const;
  const LogOptions& options() const;
  const RecoveryReport& recovery() const;
  // Things Open noticed and handled: ignored foreign files, rebuilt indexes,
  // removed leftovers of interrupted operations.
  const std::vector<std::string>& warnings() const;

  // The offset the next record gets (after everything committed).
  uint64_t next_offset() const;
  // The base offset of the oldest segment.
  uint64_t log_start_offset() const;
  LogPosition committed_end() const;
  LogPosition durable_end() const;
  // All segments, oldest first; the last one is active.
  std::vector<SegmentInfo> segments() const;
  // Sum of the segments' bytes (as in segments()).
  uint64_t size_bytes() const;

  // --- asynchronous append (the persistence thread) ---

  // Reserves nbytes for whole frames in the active segment. Rolls to a new
  // segment (named by next_offset(), preallocated) when the bytes would take
  // the active one past segment_bytes. Errors:
  //   kInvalidArgument  nbytes is 0, not a multiple of 8, or larger than a segment holds
  //   kUnavailable      a roll is needed but earlier reservations are not yet
  //                     committed: commit them, then call again
  //   kResourceExhausted / kIoError  creating the new segment failed (nothing reserved)
  //   the sticky error of an earlier failure (see CommitAppend)
  [[nodiscard]] Result<AppendTarget> PrepareAppend(uint64_t nbytes);

  // Records that the bytes of `target` are written: advances committed_end()
  // and indexes the records. REQUIRES: target is the oldest outstanding
  // reservation, nbytes == target.nbytes, frames lists every data/control
  // frame in it in file order with increasing offsets (consecutive, except
  // after a padding frame). A violated contract poisons the log: every later
  // call returns kInternal.
  void CommitAppend(const AppendTarget& target, uint64_t nbytes, std::span<const FrameMeta> frames);

  // Gives back the newest outstanding reservation whose write failed; its
  // bytes are zeroed so the file never holds a partial frame past the end.
  [[nodiscard]] Status AbortAppend(const AppendTarget& target);

  // Publishes that everything up to `end` (a committed_end() taken before
  // the caller's fdatasync of the active segment) is durable.
  // REQUIRES: end was returned by committed_end() of this log.
  void MarkDurable(const LogPosition& end);

  // --- synchronous API (tests, tools, fallback) ---

  // Appends whole frames (core/record.h) with pwrite: each is a data or
  // control frame that passes its CRC, or an unblock padding frame; offsets
  // continue next_offset() (a gap only right after padding). Splits the
  // bytes across segments at frame boundaries as needed. kInvalidArgument for
  // bytes that are not such frames: everything is validated first, so
  // nothing is written then. On an I/O error (kResourceExhausted for a full
  // disk) the frames of earlier segments stay appended, the failed part is
  // zeroed, and next_offset() says where to resume.
  // REQUIRES: no outstanding reservations (else kFailedPrecondition).
  [[nodiscard]] Status Append(std::span<const std::byte> frames);

  // Writes buffered index entries and fdatasyncs the active segment and its
  // index, every segment (and index) a roll sealed without syncing it
  // (sync_on_roll off) since the last Sync, and the directory after a roll:
  // everything committed is then on disk; durable_end() = committed_end().
  [[nodiscard]] Status Sync();

  // Atomically replaces the checkpoint with durable_end().
  [[nodiscard]] Status WriteCheckpoint();

  // True once the log's directory was removed under it (by hand: `rm -rf`):
  // whatever it writes from then on goes to unlinked files. One fstat.
  bool DirectoryRemoved() const;

  // Deletes whole segments, oldest first, never the active one: while the
  // log is larger than max_bytes, and while a segment's newest record is
  // older than now_ns - max_age_ms. Readers that have a deleted segment
  // mapped keep reading it.
  [[nodiscard]] Result<RetentionResult> Retention(const RetentionPolicy& policy, int64_t now_ns);

  // Removes every record with offset >= next_offset (later segments are
  // deleted; the tail of the segment holding next_offset is zeroed, the file
  // keeps its size), then syncs and checkpoints. next_offset() becomes
  // `next_offset`. kOutOfRange if next_offset < log_start_offset().
  // No-op if next_offset >= next_offset(). REQUIRES: no outstanding
  // reservations; readers positioned past the cut see the old records only
  // while they keep the deleted segment mapped.
  [[nodiscard]] Status Truncate(uint64_t next_offset);

  // Seals the active segment (index final entry, truncate to its data end),
  // syncs, writes the checkpoint and releases the directory. Later calls
  // return kFailedPrecondition. REQUIRES: no outstanding reservations.
  [[nodiscard]] Status Close();

 private:
  explicit PartitionLog(std::unique_ptr<internal::LogState> state);
  std::unique_ptr<internal::LogState> state_;
};

}  // namespace runnel

#endif  // RUNNEL_PERSISTENCE_LOG_H_
