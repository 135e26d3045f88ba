#include "core/batch.h"

#include <cstring>

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

BatchAppend RecordBatch::Append(std::optional<std::string_view> key, std::string_view value) {
  if (!key) return Append(value);
  const uint64_t key_length = key->size();
  if (key_length > kMaxKeyLength) return BatchAppend::kInvalid;
  const uint64_t length = BatchEntryLength(key_length, value.size());
  if (length > room_ - used_) {
    return length > room_ ? BatchAppend::kTooLarge : BatchAppend::kFull;
  }
  std::byte* e = buffer_.get() + used_;
  EncodeFixed64(e + length - 8, 0);
  EncodeFixed64(e, value.size() | key_length << 32 | uint64_t{kFlagHasKey} << 48);
  if (key_length != 0) std::memcpy(e + kBatchEntryHeaderLength, key->data(), key_length);
  if (!value.empty()) {
    std::memcpy(e + kBatchEntryHeaderLength + key_length, value.data(), value.size());
  }
  used_ += static_cast<uint32_t>(length);
  ++count_;
  return BatchAppend::kOk;
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
