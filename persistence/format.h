// The on-disk layout of a partition's log: file names, the 64-byte file
// header shared by segments and time indexes, the time index entry and the
// checkpoint. docs/format.md is the full description (grammar, recovery rules,
// a worked example); this header is the code's single source of the layout.
//
// A partition directory, DATA_DIR/<topic>/<partition>/, holds:
//
//   00000000000000000000.log        segment: file header, then record frames
//   00000000000000000000.timeindex  sparse time index of that segment
//   00000000000000004711.log        next segment, named by its base offset
//   00000000000000004711.timeindex
//   checkpoint                      last known-good (durable) log end
//
// Every integer is little-endian (core/coding.h).
//
// File header (segments and time indexes; 64 bytes):
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +---------------------------------------------------------------+
//  |  magic (64): "RNLSEG\0\1" (.log) or "RNLTIX\0\1" (.timeindex) |  0
//  |                                                               |  4
//  +---------------------------------------------------------------+
//  |  version (32): major << 16 | minor (1.0 = 0x00010000)         |  8
//  +---------------------------------------------------------------+
//  |  header_length (32): where the first frame / entry starts     | 12
//  +---------------------------------------------------------------+
//  |  base_offset (64): offset of the segment's first record       | 16
//  |                                                               | 20
//  +---------------------------------------------------------------+
//  |  created_ns (64): wall clock when the file was created        | 24
//  |                                                               | 28
//  +---------------------------------------------------------------+
//  |  flags (32): none defined in 1.0, written as zero             | 32
//  +---------------------------------------------------------------+
//  |  index_interval (32): .timeindex: log bytes between entries;  | 36
//  |                       .log: zero                              |
//  +---------------------------------------------------------------+
//  |  segment_bytes (64): roll size when the file was created      | 40
//  |                      (informational)                          | 44
//  +---------------------------------------------------------------+
//  |  reserved (96), zero                                          | 48
//  |                                                               | 52
//  |                                                               | 56
//  +---------------------------------------------------------------+
//  |  header_crc (32): CRC32C of bytes [0, 60)                     | 60
//  +---------------------------------------------------------------+
//
// After the header, a .log holds record frames (core/record.h) back to back,
// each starting at an 8-byte aligned file position; a .timeindex holds 16-byte
// entries:
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +---------------------------------------------------------------+
//  |  timestamp_ns (64): largest record timestamp of the partition |  0
//  |                     up to and including this record           |  4
//  +---------------------------------------------------------------+
//  |  relative_offset (32): record offset - segment base_offset    |  8
//  +---------------------------------------------------------------+
//  |  position (32): file position of the record's frame           | 12
//  +---------------------------------------------------------------+
//
// Checkpoint (64 bytes, replaced atomically: write temp, fsync, rename):
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +---------------------------------------------------------------+
//  |  magic (64): "RNLCKP\0\1"                                     |  0
//  |                                                               |  4
//  +---------------------------------------------------------------+
//  |  version (32): major << 16 | minor                            |  8
//  +---------------------------------------------------------------+
//  |  length (32): 64                                              | 12
//  +---------------------------------------------------------------+
//  |  segment_base (64): segment holding the durable end           | 16
//  |                                                               | 20
//  +---------------------------------------------------------------+
//  |  file_position (64): durable end of data in that segment      | 24
//  |                                                               | 28
//  +---------------------------------------------------------------+
//  |  next_offset (64): offset the next record will get            | 32
//  |                                                               | 36
//  +---------------------------------------------------------------+
//  |  max_timestamp_ns (64): largest timestamp before the end      | 40
//  |                                                               | 44
//  +---------------------------------------------------------------+
//  |  written_ns (64): wall clock when the checkpoint was written  | 48
//  |                                                               | 52
//  +---------------------------------------------------------------+
//  |  flags (32): none defined in 1.0, written as zero             | 56
//  +---------------------------------------------------------------+
//  |  crc (32): CRC32C of bytes [0, 60)                            | 60
//  +---------------------------------------------------------------+

#ifndef RUNNEL_PERSISTENCE_FORMAT_H_
#define RUNNEL_PERSISTENCE_FORMAT_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/record.h"
#include "core/status.h"

namespace runnel {

// Format version. A different major cannot be read (kVersionMismatch); a
// higher minor only adds things a 1.0 reader may ignore (header fields that
// were zero, a longer header whose extra bytes it skips).
inline constexpr uint16_t kFormatMajor = 1;
inline constexpr uint16_t kFormatMinor = 0;
inline constexpr uint32_t kFormatVersion = (uint32_t{kFormatMajor} << 16) | kFormatMinor;

inline constexpr uint32_t kFileHeaderLength = 64;
// Largest header_length a reader accepts (a later minor may grow the header).
inline constexpr uint32_t kMaxFileHeaderLength = 4096;
inline constexpr uint32_t kTimeIndexEntryLength = 16;
inline constexpr uint32_t kCheckpointLength = 64;

// Positions in the time index are 32-bit, so a segment is smaller than 4 GiB.
inline constexpr uint64_t kMaxSegmentBytes = (uint64_t{1} << 32) - 4096;
inline constexpr uint64_t kMinSegmentBytes = 512;

inline constexpr std::array<char, 8> kSegmentMagic = {'R', 'N', 'L', 'S', 'E', 'G', '\0', '\1'};
inline constexpr std::array<char, 8> kTimeIndexMagic = {'R', 'N', 'L', 'T', 'I', 'X', '\0', '\1'};
inline constexpr std::array<char, 8> kCheckpointMagic = {'R', 'N', 'L', 'C', 'K', 'P', '\0', '\1'};

inline constexpr std::string_view kSegmentSuffix = ".log";
inline constexpr std::string_view kTimeIndexSuffix = ".timeindex";
inline constexpr std::string_view kCheckpointFileName = "checkpoint";
inline constexpr std::string_view kCheckpointTempFileName = "checkpoint.tmp";
inline constexpr int kBaseOffsetDigits = 20;

// Byte offsets of the file header fields.
namespace file_header {
inline constexpr uint32_t kMagic = 0;
inline constexpr uint32_t kVersion = 8;
inline constexpr uint32_t kHeaderLength = 12;
inline constexpr uint32_t kBaseOffset = 16;
inline constexpr uint32_t kCreatedNs = 24;
inline constexpr uint32_t kFlags = 32;
inline constexpr uint32_t kIndexInterval = 36;
inline constexpr uint32_t kSegmentBytes = 40;
inline constexpr uint32_t kReserved = 48;
inline constexpr uint32_t kCrc = 60;
}  // namespace file_header

namespace checkpoint {
inline constexpr uint32_t kMagic = 0;
inline constexpr uint32_t kVersion = 8;
inline constexpr uint32_t kLength = 12;
inline constexpr uint32_t kSegmentBase = 16;
inline constexpr uint32_t kFilePosition = 24;
inline constexpr uint32_t kNextOffset = 32;
inline constexpr uint32_t kMaxTimestamp = 40;
inline constexpr uint32_t kWrittenNs = 48;
inline constexpr uint32_t kFlags = 56;
inline constexpr uint32_t kCrc = 60;
}  // namespace checkpoint

enum class FileKind : uint8_t { kSegment, kTimeIndex };

// The decoded file header of a .log or .timeindex.
struct FileHeader {
  FileKind kind = FileKind::kSegment;
  uint32_t version = kFormatVersion;
  uint32_t header_length = kFileHeaderLength;
  uint64_t base_offset = 0;
  int64_t created_ns = 0;
  uint32_t flags = 0;
  uint32_t index_interval = 0;
  uint64_t segment_bytes = 0;
};

// Writes the 64-byte header, CRC included.
std::array<std::byte, kFileHeaderLength> EncodeFileHeader(const FileHeader& h);

// True if `bytes` is a header of `kind` and of this major version that fails
// its CRC: damage. The damaged byte may be in the magic or the version: the
// CRC matches once ours is put back (the version one bit away).
bool IsDamagedHeaderOfOurs(std::span<const std::byte> bytes, FileKind kind);

// Decodes and validates a header read from the start of `file_name` (used in
// messages only). `bytes` is what could be read (may be short). Errors:
//   kCorruption       too short, wrong magic, bad header_length, CRC mismatch
//                     (also a magic or version damaged: IsDamagedHeaderOfOurs)
//   kVersionMismatch  another major version
// The base offset is not compared with the file name here.
Result<FileHeader> DecodeFileHeader(std::span<const std::byte> bytes, FileKind kind,
                                    std::string_view file_name);

// One time index entry (see the ruler above).
struct TimeIndexEntry {
  int64_t timestamp_ns = 0;
  uint32_t relative_offset = 0;
  uint32_t position = 0;
};
void EncodeTimeIndexEntry(const TimeIndexEntry& e, std::byte* dst);
TimeIndexEntry DecodeTimeIndexEntry(const std::byte* src);

// The durable end of a partition's log, as stored in the checkpoint.
struct Checkpoint {
  uint64_t segment_base = 0;
  uint64_t file_position = 0;
  uint64_t next_offset = 0;
  int64_t max_timestamp_ns = 0;
  int64_t written_ns = 0;
  uint32_t flags = 0;  // kCheckpointRepairing
};
// Set while `repair` cuts a log: segment_base names the segment being cut
// and next_offset is only a floor (offsets below it were durable once); the
// position is not to be trusted. Recovery without repair refuses such a log,
// recovery with repair rescans that segment from its start.
inline constexpr uint32_t kCheckpointRepairing = 1;
std::array<std::byte, kCheckpointLength> EncodeCheckpoint(const Checkpoint& c);
// kCorruption (short, magic, length, CRC) or kVersionMismatch.
Result<Checkpoint> DecodeCheckpoint(std::span<const std::byte> bytes, std::string_view file_name);

// "00000000000000000042.log" / ".timeindex".
std::string SegmentFileName(uint64_t base_offset);
std::string TimeIndexFileName(uint64_t base_offset);
// The base offset of a file named exactly like SegmentFileName() /
// TimeIndexFileName(), else nullopt.
std::optional<uint64_t> ParseSegmentFileName(std::string_view name);
std::optional<uint64_t> ParseTimeIndexFileName(std::string_view name);

// "2.0" for a version word.
std::string FormatVersionString(uint32_t version);

// The gap marker: where a log's offsets jump because records were never
// written to it (a ring that lost them before a broker persisted it) or were
// cut from it (repair), the broker appends a padding frame (so the jump reads
// as a continuation, not as damage) and then a control frame (state
// kControl) with key "runnel.gap", no headers, and as value `from` and `to`
// (two u64): offsets [from, to) are not in the log. The control frame takes
// offset to - 1, so recovery, which takes the next offset from the last
// frame, never hands those offsets out again. Readers skip control frames;
// consumers report the gap as lost records.
inline constexpr std::string_view kGapMarkerKey = "runnel.gap";
struct GapMarker {
  uint64_t from = 0;
  uint64_t to = 0;
};
// The padding and the control frame, ready for PartitionLog::Append.
// REQUIRES: from < to.
std::vector<std::byte> EncodeGapMarker(const GapMarker& gap, int64_t timestamp_ns);
// The marker a valid control frame carries, else nullopt.
std::optional<GapMarker> DecodeGapMarker(const RecordView& control);

}  // namespace runnel

#endif  // RUNNEL_PERSISTENCE_FORMAT_H_
