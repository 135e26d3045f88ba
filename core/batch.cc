#include "core/batch.h"

namespace runnel {

std::string_view BatchAppendName(BatchAppend a) {
  switch (a) {
    case BatchAppend::kOk:
      return "ok";
    case BatchAppend::kFull:
      return "batch full";
    case BatchAppend::kTooLarge:
      return "record too large for a batch";
    case BatchAppend::kInvalid:
      return "invalid record";
  }
  return "unknown";
}

RecordBatch::RecordBatch(uint32_t max_frame_length) : max_frame_length_(max_frame_length) {
  const uint32_t fixed = kFrameHeaderLength + kBatchBodyHeaderLength;
  room_ = max_frame_length > fixed ? (max_frame_length - fixed) & ~(kFrameAlignment - 1) : 0;
  buffer_ = std::make_unique<std::byte[]>(room_);
}

FrameCheck CheckBatchFrame(const std::byte* f, uint64_t available, uint32_t max_frame_length,
                           bool verify_crc, bool entries) {
  if (available < kFrameHeaderLength) return FrameCheck::kTruncated;
  const uint32_t length = DecodeFixed32(f + frame::kLength);
  if (length < kFrameHeaderLength || length > max_frame_length) return FrameCheck::kBadLength;
  if (length > available) return FrameCheck::kTruncated;
  if (static_cast<uint8_t>(f[frame::kFlags]) != kFlagBatch ||
      f[frame::kReserved8] != std::byte{0} || DecodeFixed16(f + frame::kReserved16) != 0 ||
      DecodeFixed16(f + frame::kKeyLength) != 0 || DecodeFixed16(f + frame::kHeadersLength) != 0 ||
      length < kFrameHeaderLength + kBatchBodyHeaderLength || length % kFrameAlignment != 0 ||
      DecodeFixed32(f + kFrameHeaderLength + 4) != 0) {
    return FrameCheck::kBadLayout;
  }
  if (verify_crc && ComputeFrameCrc(f, length) != DecodeFixed32(f + frame::kCrc)) {
    return FrameCheck::kBadCrc;
  }
  const RecordView view(f, length);
  BatchWalker walker(view);
  if (walker.count() == 0) return FrameCheck::kBadLayout;
  if (!entries) return FrameCheck::kOk;
  RecordView record;
  while (walker.Next(&record)) {
  }
  return walker.Complete() ? FrameCheck::kOk : FrameCheck::kBadLayout;
}

}  // namespace runnel
