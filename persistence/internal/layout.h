// Helpers that know the partition directory layout (persistence/format.h):
// classifying directory entries, reading a segment's header, and looking up
// the time index. Shared by PartitionLog and LogReader.

#ifndef RUNNEL_PERSISTENCE_INTERNAL_LAYOUT_H_
#define RUNNEL_PERSISTENCE_INTERNAL_LAYOUT_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "persistence/format.h"
#include "persistence/internal/file.h"

namespace runnel::internal {

// What a partition directory holds, by name only.
struct PartitionListing {
  std::vector<uint64_t> segments;      // sorted base offsets of *.log
  std::vector<uint64_t> time_indexes;  // sorted base offsets of *.timeindex
  bool has_checkpoint = false;
  bool has_checkpoint_temp = false;
  std::vector<std::string> foreign;  // every other entry (ignored), sorted
};
Result<PartitionListing> ListPartition(const std::string& dir);

// Reads and validates the header of `dir/name` through `fd`, and checks that
// its base offset matches the name.
Result<FileHeader> ReadFileHeader(int fd, FileKind kind, uint64_t expected_base,
                                  const std::string& dir, const std::string& name);

// True if the file's first `size` bytes (at most the header) are all zero:
// a segment whose creation was interrupted before its header was written.
bool HeaderNeverWritten(int fd, uint64_t size);

// True if time index entry `e` of segment `base` (in `dir`) points at a data
// or control frame with the offset it claims and a timestamp not above the
// entry's (an entry holds the largest timestamp up to its record). Reads the
// frame's header only (no CRC).
bool IndexEntryMatchesRecord(const std::string& dir, uint64_t base, const TimeIndexEntry& e);

// Reads and decodes `dir`/checkpoint: kNotFound if there is none, the
// read's error, or DecodeCheckpoint's kCorruption / kVersionMismatch.
Result<Checkpoint> ReadCheckpointFile(const std::string& dir);

// A segment's time index, opened read-only with its header validated.
struct IndexFile {
  ScopedFd fd;
  uint64_t file_size = 0;
  uint64_t entries_start = kFileHeaderLength;  // the header's length
  uint64_t count = 0;                          // whole entries after the header
  bool whole = false;                          // the entry area is a whole number of entries
};
// nullopt if the index is missing, unreadable, or its header is not valid
// for the segment with base offset `base`.
std::optional<IndexFile> OpenIndex(const std::string& dir, uint64_t base);

// A bounds-checked view of a time index's entries (the bytes after the file
// header). The entries are untrusted: callers validate what they use.
class TimeIndexView {
 public:
  TimeIndexView() = default;
  TimeIndexView(const std::byte* entries, uint64_t bytes)
      : entries_(entries), count_(bytes / kTimeIndexEntryLength) {}
  uint64_t size() const { return count_; }
  TimeIndexEntry at(uint64_t i) const {
    return DecodeTimeIndexEntry(entries_ + i * kTimeIndexEntryLength);
  }
  // Index of the last entry with relative_offset <= rel, if any (binary
  // search; terminates on any bytes).
  std::optional<uint64_t> LastAtOrBeforeOffset(uint32_t rel) const;
  // Index of the last entry with timestamp_ns < ts, if any.
  std::optional<uint64_t> LastBeforeTimestamp(int64_t ts) const;

 private:
  const std::byte* entries_ = nullptr;
  uint64_t count_ = 0;
};

}  // namespace runnel::internal

#endif  // RUNNEL_PERSISTENCE_INTERNAL_LAYOUT_H_
