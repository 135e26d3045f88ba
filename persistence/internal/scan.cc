#include "persistence/internal/scan.h"

#include <limits>

#include "core/coding.h"

namespace runnel::internal {
namespace {

DiskFrame Bad(const char* reason, FrameCheck check = FrameCheck::kOk, bool truncated = false) {
  DiskFrame f;
  f.kind = DiskFrameKind::kBad;
  f.check = check;
  f.truncated = truncated;
  f.reason = reason;
  return f;
}

}  // namespace

DiskFrame InspectDiskFrame(const std::byte* p, uint64_t available, bool verify_crc) {
  if (available < 8) {
    if (available == 0) return Bad("end of file inside a frame", FrameCheck::kTruncated, true);
    return Bad("truncated commit word", FrameCheck::kTruncated, true);
  }
  const uint64_t commit = DecodeFixed64(p + frame::kCommit);
  if (commit == 0) {
    DiskFrame f;
    f.kind = DiskFrameKind::kEnd;
    return f;
  }
  const auto state = static_cast<FrameState>(commit & kStateMask);
  switch (state) {
    case FrameState::kPadding: {
      if (available < kMinPaddingWithLength) {
        return Bad("truncated padding frame", FrameCheck::kTruncated, true);
      }
      const uint32_t length = DecodeFixed32(p + frame::kLength);
      if (length < kMinPaddingWithLength) {
        return Bad("padding frame shorter than 16 bytes", FrameCheck::kBadLength);
      }
      const uint64_t aligned = AlignedFrameLength(length);
      if (aligned > available) return Bad("truncated padding frame", FrameCheck::kTruncated, true);
      DiskFrame f;
      f.kind = DiskFrameKind::kPadding;
      f.state = state;
      f.aligned_length = aligned;
      return f;
    }
    case FrameState::kData:
    case FrameState::kControl: {
      const FrameCheck check =
          CheckFrame(p, available, std::numeric_limits<uint32_t>::max(), verify_crc);
      if (check != FrameCheck::kOk) {
        return Bad(FrameCheckName(check).data(), check, check == FrameCheck::kTruncated);
      }
      DiskFrame f;
      f.kind = DiskFrameKind::kRecord;
      f.state = state;
      f.aligned_length = AlignedFrameLength(DecodeFixed32(p + frame::kLength));
      return f;
    }
    case FrameState::kEmpty:
      return Bad("commit word with state empty but a non-zero tag");
    case FrameState::kClaimed:
      return Bad("claimed, never committed frame on disk");
    case FrameState::kPoison:
      return Bad("poisoned frame on disk");
  }
  return Bad("unknown frame state");
}

std::optional<uint64_t> FindNextValidRecord(const std::byte* data, uint64_t size, uint64_t from,
                                            uint64_t min_offset) {
  for (uint64_t q = AlignUp(from, 8); q + kFrameHeaderLength <= size; q += 8) {
    const uint64_t commit = DecodeFixed64(data + q);
    const uint64_t state = commit & kStateMask;
    if (state != static_cast<uint64_t>(FrameState::kData) &&
        state != static_cast<uint64_t>(FrameState::kControl)) {
      continue;
    }
    // Cheap plausibility first; the CRC is computed only for candidates.
    const uint32_t length = DecodeFixed32(data + q + frame::kLength);
    if (length < kFrameHeaderLength || length > size - q) continue;
    if (DecodeFixed64(data + q + frame::kOffset) < min_offset) continue;
    const DiskFrame f = InspectDiskFrame(data + q, size - q, /*verify_crc=*/true);
    if (f.kind == DiskFrameKind::kRecord) return q;
  }
  return std::nullopt;
}

uint64_t NonZeroExtentEnd(const std::byte* data, uint64_t size, uint64_t from) {
  uint64_t end = from;
  uint64_t q = from;
  // Word-wise for the aligned part, then the tail bytes.
  for (; q + 8 <= size; q += 8) {
    if (DecodeFixed64(data + q) != 0) end = q + 8;
  }
  for (; q < size; ++q) {
    if (data[q] != std::byte{0}) end = AlignUp(q + 1, 8);
  }
  return end;
}

std::optional<uint64_t> LastReadableOffset(const std::byte* data, uint64_t size, uint64_t from,
                                           uint64_t min_offset) {
  std::optional<uint64_t> last;
  uint64_t q = from;
  while (q + frame::kOffset + 8 <= size) {
    const uint64_t commit = DecodeFixed64(data + q);
    if (commit == 0) break;
    const uint64_t state = commit & kStateMask;
    const uint32_t length = DecodeFixed32(data + q + frame::kLength);
    if (state == static_cast<uint64_t>(FrameState::kData) ||
        state == static_cast<uint64_t>(FrameState::kControl)) {
      const uint64_t offset = DecodeFixed64(data + q + frame::kOffset);
      // Only offsets that fit the sequence count; garbage is ignored.
      if (offset >= min_offset && (!last || offset > *last) && offset - min_offset < (1u << 30)) {
        last = offset;
      }
    } else if (state != static_cast<uint64_t>(FrameState::kPadding)) {
      break;
    }
    if (length < kMinPaddingWithLength) break;
    const uint64_t aligned = AlignedFrameLength(length);
    if (aligned > size - q) break;
    q += aligned;
  }
  return last;
}

std::optional<std::string> CheckDurableEnd(const std::byte* data, uint64_t from, uint64_t end,
                                           uint64_t next_offset) {
  std::optional<uint64_t> last;
  bool padding_after_last = false;
  uint64_t pos = from;
  while (pos < end) {
    const DiskFrame f = InspectDiskFrame(data + pos, end - pos, /*verify_crc=*/true);
    if (f.kind == DiskFrameKind::kPadding) {
      pos += f.aligned_length;
      padding_after_last = true;
      continue;
    }
    if (f.kind == DiskFrameKind::kEnd) {
      return "at file position " + std::to_string(pos) +
             ": zero-filled (records that were durable are gone)";
    }
    if (f.kind != DiskFrameKind::kRecord) {
      // A damaged frame (a bad CRC, a flipped bit) is one record's damage,
      // which readers skip and report, not the checkpoint's business: walk
      // on at the next valid record (its length field may be what is
      // damaged: it is not followed). With none up to the position, the
      // checkpoint's next offset says how many records were there: more
      // than the damaged one means durable records are gone (zeros that
      // began inside a record; that was taken for one damaged record, and
      // the log lost every durable record after it without a word).
      const uint64_t min_offset = last ? *last + 1 : 0;
      if (std::optional<uint64_t> q =
              FindNextValidRecord(data, end, pos + kFrameAlignment, min_offset)) {
        pos = *q;
        padding_after_last = true;  // the damaged record's offset is not known
        continue;
      }
      bool gone = false;
      if (last && !padding_after_last) {
        gone = next_offset > *last + 2;  // two or more records, not just the damaged one
      } else {
        // Nothing to count from (no record before it, or padding between,
        // after which offsets may jump: an aborted claim, a gap marker):
        // zeros from its offset field on are a hole.
        gone = end - pos > 2 * kFrameHeaderLength;
        for (uint64_t q = pos + 16; gone && q < end; ++q) gone = data[q] == std::byte{0};
      }
      if (!gone) return std::nullopt;
      return "at file position " + std::to_string(pos) +
             ": a damaged frame and no readable record after it, where the checkpoint says " +
             (last ? "offsets " + std::to_string(*last + 1) + ".." +
                         std::to_string(next_offset - 1) + " were"
                   : std::string("records were")) +
             " durable (zero-filled or written over: records that were durable are gone)";
    }
    const uint64_t offset = RecordView(data + pos).offset();
    if (last && offset <= *last) {
      return "record offset " + std::to_string(offset) + " out of sequence at file position " +
             std::to_string(pos);
    }
    last = offset;
    padding_after_last = false;
    pos += f.aligned_length;
  }
  // Offsets may jump forward after padding (an aborted claim, a gap marker's
  // padding left by a truncation), never back.
  if (last && (padding_after_last ? *last + 1 > next_offset : *last + 1 != next_offset)) {
    return "the last record before that position is offset " + std::to_string(*last) +
           ", but the checkpoint's next offset is " + std::to_string(next_offset);
  }
  return std::nullopt;
}

}  // namespace runnel::internal
