// Frame-level parsing of segment bytes, shared by recovery (PartitionLog),
// the reader and the synchronous Append. Everything here treats its input as
// untrusted: each function reads only inside [data, data + size).

#ifndef RUNNEL_PERSISTENCE_INTERNAL_SCAN_H_
#define RUNNEL_PERSISTENCE_INTERNAL_SCAN_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "core/record.h"

namespace runnel::internal {

enum class DiskFrameKind : uint8_t {
  kEnd,      // a zero commit word: preallocated, never-written space
  kRecord,   // a data or control frame that passed CheckFrame
  kPadding,  // an unblock padding frame: skip aligned_length bytes
  kBad,      // anything else (see check / reason)
};

struct DiskFrame {
  DiskFrameKind kind = DiskFrameKind::kBad;
  FrameState state = FrameState::kEmpty;
  uint64_t aligned_length = 0;  // bytes to the next frame (kRecord, kPadding)
  FrameCheck check = FrameCheck::kOk;
  // kBad: the frame runs past the available bytes (a torn write, or a frame
  // a concurrent writer has not finished).
  bool truncated = false;
  const char* reason = "";  // kBad: short description
};

// Classifies the frame at `p` with `available` readable bytes after it.
// REQUIRES: p is 8-byte aligned relative to the start of the frame area.
DiskFrame InspectDiskFrame(const std::byte* p, uint64_t available, bool verify_crc);

// Checks the durable end a checkpoint names against a segment's bytes
// [from, end): no zero-filled hole, increasing offsets, and a last record
// with offset next_offset - 1 (below it if padding or a damaged frame follows
// that record; no record: nothing to compare). A frame that fails its checks
// (CRC included) is one record's damage, which readers report: the check
// goes on at the next valid record; with none up to `end`, more than one
// record missing before next_offset is lost durable data. Returns what does
// not match.
std::optional<std::string> CheckDurableEnd(const std::byte* data, uint64_t from, uint64_t end,
                                           uint64_t next_offset);

// Applies the offset rule to a record: offsets increase by one, except that
// right after a padding frame (or where nothing is known yet) they may jump
// forward. `expected` is the offset the record should have.
inline bool OffsetFollows(uint64_t offset, uint64_t expected, bool after_padding) {
  return after_padding ? offset >= expected : offset == expected;
}

// The first 8-aligned position q in [from, size) holding a record that passes
// its CRC and has offset >= min_offset; nullopt if none. Used to tell a torn
// tail (nothing valid after the damage) from mid-segment corruption.
std::optional<uint64_t> FindNextValidRecord(const std::byte* data, uint64_t size, uint64_t from,
                                            uint64_t min_offset);

// The end (aligned up to 8) of the last non-zero byte in [from, size), or
// `from` if the range is all zeros.
uint64_t NonZeroExtentEnd(const std::byte* data, uint64_t size, uint64_t from);

// Best effort: the largest record offset whose frame header can be read when
// walking frames by their length fields from `from` (stops at the first
// implausible length). nullopt if no offset can be read.
std::optional<uint64_t> LastReadableOffset(const std::byte* data, uint64_t size, uint64_t from,
                                           uint64_t min_offset);

}  // namespace runnel::internal

#endif  // RUNNEL_PERSISTENCE_INTERNAL_SCAN_H_
