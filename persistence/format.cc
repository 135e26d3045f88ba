#include "persistence/format.h"

#include <array>
#include <cstdio>
#include <cstring>

#include "core/coding.h"
#include "core/crc32c.h"

namespace runnel {
namespace {

const std::array<char, 8>& MagicOf(FileKind kind) {
  return kind == FileKind::kSegment ? kSegmentMagic : kTimeIndexMagic;
}

std::string_view KindName(FileKind kind) {
  return kind == FileKind::kSegment ? "segment" : "time index";
}

uint32_t Crc60(const std::byte* p) { return crc32c::Value(p, 60); }

std::optional<uint64_t> ParseBase(std::string_view name, std::string_view suffix) {
  if (name.size() != kBaseOffsetDigits + suffix.size()) return std::nullopt;
  if (name.substr(kBaseOffsetDigits) != suffix) return std::nullopt;
  uint64_t v = 0;
  for (int i = 0; i < kBaseOffsetDigits; ++i) {
    const char c = name[static_cast<std::size_t>(i)];
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;  // 20 digits can exceed 2^64
    v = v * 10 + d;
  }
  return v;
}

std::string BaseName(uint64_t base, std::string_view suffix) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%020llu", static_cast<unsigned long long>(base));
  std::string s(buf);
  s += suffix;
  return s;
}

}  // namespace

std::string FormatVersionString(uint32_t version) {
  return std::to_string(version >> 16) + "." + std::to_string(version & 0xFFFF);
}

std::array<std::byte, kFileHeaderLength> EncodeFileHeader(const FileHeader& h) {
  std::array<std::byte, kFileHeaderLength> b{};
  std::memcpy(b.data() + file_header::kMagic, MagicOf(h.kind).data(), 8);
  EncodeFixed32(b.data() + file_header::kVersion, h.version);
  EncodeFixed32(b.data() + file_header::kHeaderLength, h.header_length);
  EncodeFixed64(b.data() + file_header::kBaseOffset, h.base_offset);
  EncodeFixed64(b.data() + file_header::kCreatedNs, static_cast<uint64_t>(h.created_ns));
  EncodeFixed32(b.data() + file_header::kFlags, h.flags);
  EncodeFixed32(b.data() + file_header::kIndexInterval, h.index_interval);
  EncodeFixed64(b.data() + file_header::kSegmentBytes, h.segment_bytes);
  EncodeFixed32(b.data() + file_header::kCrc, Crc60(b.data()));
  return b;
}

bool IsDamagedHeaderOfOurs(std::span<const std::byte> bytes, FileKind kind) {
  if (bytes.size() < kFileHeaderLength) return false;
  std::array<std::byte, kFileHeaderLength> h;
  std::memcpy(h.data(), bytes.data(), h.size());
  const uint32_t stored = DecodeFixed32(h.data() + file_header::kCrc);
  const uint32_t version = DecodeFixed32(h.data() + file_header::kVersion);
  if (std::memcmp(h.data(), MagicOf(kind).data(), 8) == 0 && (version >> 16) == kFormatMajor) {
    return stored != Crc60(h.data());
  }
  // The damage is in the magic or the version: with ours put back (the
  // version one bit away) the CRC holds. A file of another version has a
  // CRC over its own bytes, which no such change keeps.
  std::memcpy(h.data(), MagicOf(kind).data(), 8);
  for (int bit = -1; bit < 32; ++bit) {
    const uint32_t v = bit < 0 ? version : version ^ (uint32_t{1} << bit);
    if ((v >> 16) != kFormatMajor) continue;
    EncodeFixed32(h.data() + file_header::kVersion, v);
    if (Crc60(h.data()) == stored) return true;
  }
  return false;
}

Result<FileHeader> DecodeFileHeader(std::span<const std::byte> bytes, FileKind kind,
                                    std::string_view file_name) {
  const std::string name(file_name);
  const std::string_view what = KindName(kind);
  // The magic and the version come first: a file of another major version
  // may have a different header layout, so nothing else is trusted before.
  if (bytes.size() < file_header::kVersion + 4) {
    return Status::Corruption(std::string(what) + " " + name + " is " +
                              std::to_string(bytes.size()) + " bytes, shorter than its " +
                              std::to_string(kFileHeaderLength) +
                              "-byte header; it was never completely written: delete it "
                              "or move it out of the partition directory");
  }
  const bool mine = std::memcmp(bytes.data(), MagicOf(kind).data(), 8) == 0 &&
                    (DecodeFixed32(bytes.data() + file_header::kVersion) >> 16) == kFormatMajor;
  if (!mine && IsDamagedHeaderOfOurs(bytes, kind)) {
    return Status::Corruption(std::string(what) + " " + name +
                              ": header CRC mismatch (the first 64 bytes are damaged: its magic "
                              "or version bytes, which the CRC shows were runnel's of format " +
                              std::to_string(kFormatMajor) + ".x)");
  }
  if (std::memcmp(bytes.data(), MagicOf(kind).data(), 8) != 0) {
    return Status::Corruption(name + " is named like a runnel " + std::string(what) +
                              " but does not start with its magic; move it out of the "
                              "partition directory");
  }
  FileHeader h;
  h.kind = kind;
  h.version = DecodeFixed32(bytes.data() + file_header::kVersion);
  if ((h.version >> 16) != kFormatMajor) {
    return Status::VersionMismatch(
        std::string(what) + " " + name + " was written by format version " +
        FormatVersionString(h.version) + "; this runnel reads " + std::to_string(kFormatMajor) +
        ".x: open it with a runnel of that version");
  }
  if (bytes.size() < kFileHeaderLength) {
    return Status::Corruption(std::string(what) + " " + name + " is " +
                              std::to_string(bytes.size()) + " bytes, shorter than its " +
                              std::to_string(kFileHeaderLength) + "-byte header");
  }
  const uint32_t stored_crc = DecodeFixed32(bytes.data() + file_header::kCrc);
  if (stored_crc != Crc60(bytes.data())) {
    return Status::Corruption(std::string(what) + " " + name +
                              ": header CRC mismatch (the first 64 bytes are damaged)");
  }
  h.header_length = DecodeFixed32(bytes.data() + file_header::kHeaderLength);
  if (h.header_length < kFileHeaderLength || h.header_length > kMaxFileHeaderLength ||
      h.header_length % 8 != 0) {
    return Status::Corruption(std::string(what) + " " + name + ": header_length " +
                              std::to_string(h.header_length) + " is not a multiple of 8 in [" +
                              std::to_string(kFileHeaderLength) + ", " +
                              std::to_string(kMaxFileHeaderLength) + "]");
  }
  h.base_offset = DecodeFixed64(bytes.data() + file_header::kBaseOffset);
  h.created_ns = static_cast<int64_t>(DecodeFixed64(bytes.data() + file_header::kCreatedNs));
  h.flags = DecodeFixed32(bytes.data() + file_header::kFlags);
  h.index_interval = DecodeFixed32(bytes.data() + file_header::kIndexInterval);
  h.segment_bytes = DecodeFixed64(bytes.data() + file_header::kSegmentBytes);
  return h;
}

void EncodeTimeIndexEntry(const TimeIndexEntry& e, std::byte* dst) {
  EncodeFixed64(dst, static_cast<uint64_t>(e.timestamp_ns));
  EncodeFixed32(dst + 8, e.relative_offset);
  EncodeFixed32(dst + 12, e.position);
}

TimeIndexEntry DecodeTimeIndexEntry(const std::byte* src) {
  return {static_cast<int64_t>(DecodeFixed64(src)), DecodeFixed32(src + 8),
          DecodeFixed32(src + 12)};
}

std::array<std::byte, kCheckpointLength> EncodeCheckpoint(const Checkpoint& c) {
  std::array<std::byte, kCheckpointLength> b{};
  std::memcpy(b.data() + checkpoint::kMagic, kCheckpointMagic.data(), 8);
  EncodeFixed32(b.data() + checkpoint::kVersion, kFormatVersion);
  EncodeFixed32(b.data() + checkpoint::kLength, kCheckpointLength);
  EncodeFixed64(b.data() + checkpoint::kSegmentBase, c.segment_base);
  EncodeFixed64(b.data() + checkpoint::kFilePosition, c.file_position);
  EncodeFixed64(b.data() + checkpoint::kNextOffset, c.next_offset);
  EncodeFixed64(b.data() + checkpoint::kMaxTimestamp, static_cast<uint64_t>(c.max_timestamp_ns));
  EncodeFixed64(b.data() + checkpoint::kWrittenNs, static_cast<uint64_t>(c.written_ns));
  EncodeFixed32(b.data() + checkpoint::kFlags, c.flags);
  EncodeFixed32(b.data() + checkpoint::kCrc, Crc60(b.data()));
  return b;
}

Result<Checkpoint> DecodeCheckpoint(std::span<const std::byte> bytes, std::string_view file_name) {
  const std::string name(file_name);
  if (bytes.size() < kCheckpointLength) {
    return Status::Corruption("checkpoint " + name + " is " + std::to_string(bytes.size()) +
                              " bytes, expected " + std::to_string(kCheckpointLength));
  }
  if (std::memcmp(bytes.data(), kCheckpointMagic.data(), 8) != 0) {
    return Status::Corruption("checkpoint " + name + " does not start with its magic");
  }
  const uint32_t version = DecodeFixed32(bytes.data() + checkpoint::kVersion);
  if ((version >> 16) != kFormatMajor) {
    return Status::VersionMismatch("checkpoint " + name + " was written by format version " +
                                   FormatVersionString(version) + "; this runnel reads " +
                                   std::to_string(kFormatMajor) + ".x");
  }
  if (DecodeFixed32(bytes.data() + checkpoint::kCrc) != Crc60(bytes.data())) {
    return Status::Corruption("checkpoint " + name + ": CRC mismatch");
  }
  if (DecodeFixed32(bytes.data() + checkpoint::kLength) != kCheckpointLength) {
    return Status::Corruption("checkpoint " + name + ": unexpected length field");
  }
  Checkpoint c;
  c.segment_base = DecodeFixed64(bytes.data() + checkpoint::kSegmentBase);
  c.file_position = DecodeFixed64(bytes.data() + checkpoint::kFilePosition);
  c.next_offset = DecodeFixed64(bytes.data() + checkpoint::kNextOffset);
  c.max_timestamp_ns =
      static_cast<int64_t>(DecodeFixed64(bytes.data() + checkpoint::kMaxTimestamp));
  c.written_ns = static_cast<int64_t>(DecodeFixed64(bytes.data() + checkpoint::kWrittenNs));
  c.flags = DecodeFixed32(bytes.data() + checkpoint::kFlags);
  if ((c.flags & ~kCheckpointRepairing) != 0) {
    return Status::VersionMismatch("checkpoint " + name + " has unknown flags " +
                                   std::to_string(c.flags) + "; this runnel knows only bit 0");
  }
  return c;
}

std::string SegmentFileName(uint64_t base_offset) { return BaseName(base_offset, kSegmentSuffix); }
std::string TimeIndexFileName(uint64_t base_offset) {
  return BaseName(base_offset, kTimeIndexSuffix);
}
std::optional<uint64_t> ParseSegmentFileName(std::string_view name) {
  return ParseBase(name, kSegmentSuffix);
}
std::optional<uint64_t> ParseTimeIndexFileName(std::string_view name) {
  return ParseBase(name, kTimeIndexSuffix);
}

std::vector<std::byte> EncodeGapMarker(const GapMarker& gap, int64_t timestamp_ns) {
  constexpr uint32_t kValueLength = 16;
  const auto frame_length =
      static_cast<uint32_t>(FrameLength(kGapMarkerKey.size(), 0, kValueLength));
  std::vector<std::byte> out(kMinPaddingWithLength + AlignedFrameLength(frame_length));
  std::byte* padding = out.data();
  EncodeFixed64(padding + frame::kCommit,
                (kStateMask + 1) | static_cast<uint64_t>(FrameState::kPadding));
  EncodeFixed32(padding + frame::kLength, kMinPaddingWithLength);
  std::byte* f = out.data() + kMinPaddingWithLength;
  WriteFrameHeader(f, frame_length, gap.to - 1, timestamp_ns,
                   static_cast<uint16_t>(kGapMarkerKey.size()), 0, kFlagHasKey);
  std::memcpy(f + kFrameHeaderLength, kGapMarkerKey.data(), kGapMarkerKey.size());
  EncodeFixed64(f + kFrameHeaderLength + kGapMarkerKey.size(), gap.from);
  EncodeFixed64(f + kFrameHeaderLength + kGapMarkerKey.size() + 8, gap.to);
  SealFrame(f, frame_length);
  EncodeFixed64(f + frame::kCommit, (kStateMask + 1) | static_cast<uint64_t>(FrameState::kControl));
  return out;
}

std::optional<GapMarker> DecodeGapMarker(const RecordView& control) {
  const std::string_view value = control.value();
  if (control.key() != kGapMarkerKey || value.size() != 16) return std::nullopt;
  const auto* v = reinterpret_cast<const std::byte*>(value.data());
  GapMarker g{DecodeFixed64(v), DecodeFixed64(v + 8)};
  if (g.from >= g.to || g.to - 1 != control.offset()) return std::nullopt;
  return g;
}

}  // namespace runnel
