#include "core/record.h"

#include <time.h>

#include "core/crc32c.h"

namespace runnel {

int64_t EncodedHeadersLength(std::span<const Header> headers) {
  int64_t total = 0;
  for (const Header& h : headers) {
    if (h.name.size() > 0xFFFF || h.value.size() > 0xFFFF) return -1;
    total += 4 + static_cast<int64_t>(h.name.size() + h.value.size());
  }
  return total;
}

void EncodeHeaders(std::span<const Header> headers, std::byte* dst) {
  for (const Header& h : headers) {
    EncodeFixed16(dst, static_cast<uint16_t>(h.name.size()));
    EncodeFixed16(dst + 2, static_cast<uint16_t>(h.value.size()));
    dst += 4;
    if (!h.name.empty()) std::memcpy(dst, h.name.data(), h.name.size());
    dst += h.name.size();
    if (!h.value.empty()) std::memcpy(dst, h.value.data(), h.value.size());
    dst += h.value.size();
  }
}

void HeaderIterator::Next() {
  valid_ = false;
  if (pos_ == area_.size()) return;
  if (area_.size() - pos_ < 4) {
    ok_ = false;
    return;
  }
  const std::byte* p = area_.data() + pos_;
  const std::size_t n = DecodeFixed16(p);
  const std::size_t v = DecodeFixed16(p + 2);
  if (area_.size() - pos_ - 4 < n + v) {
    ok_ = false;
    return;
  }
  const char* c = reinterpret_cast<const char*>(p + 4);
  current_ = Header{std::string_view(c, n), std::string_view(c + n, v)};
  pos_ += 4 + n + v;
  valid_ = true;
}

void WriteFrameHeader(std::byte* f, uint32_t frame_length, uint64_t offset, int64_t timestamp_ns,
                      uint16_t key_length, uint16_t headers_length, uint8_t flags) {
  EncodeFixed32(f + frame::kLength, frame_length);
  EncodeFixed64(f + frame::kOffset, offset);
  EncodeFixed64(f + frame::kTimestamp, static_cast<uint64_t>(timestamp_ns));
  EncodeFixed16(f + frame::kKeyLength, key_length);
  EncodeFixed16(f + frame::kHeadersLength, headers_length);
  f[frame::kFlags] = static_cast<std::byte>(flags);
  f[frame::kReserved8] = std::byte{0};
  EncodeFixed16(f + frame::kReserved16, 0);
}

uint32_t ComputeFrameCrc(const std::byte* f, uint32_t frame_length) {
  unsigned char len[4];
  EncodeFixed32(len, frame_length);
  uint32_t crc = crc32c::Extend(crc32c::kInit, len, sizeof len);
  crc = crc32c::Extend(crc, f + frame::kOffset, frame_length - frame::kOffset);
  return crc32c::Finish(crc);
}

void SealFrame(std::byte* f, uint32_t frame_length) {
  EncodeFixed32(f + frame::kCrc, ComputeFrameCrc(f, frame_length));
}

std::string_view FrameCheckName(FrameCheck c) {
  switch (c) {
    case FrameCheck::kOk:
      return "ok";
    case FrameCheck::kTruncated:
      return "truncated frame";
    case FrameCheck::kBadLength:
      return "bad frame length";
    case FrameCheck::kBadLayout:
      return "bad frame layout";
    case FrameCheck::kBadCrc:
      return "crc mismatch";
    case FrameCheck::kBadHeaders:
      return "malformed headers";
  }
  return "unknown";
}

FrameCheck CheckFrame(const std::byte* f, uint64_t available, uint32_t max_frame_length,
                      bool verify_crc) {
  if (available < kFrameHeaderLength) return FrameCheck::kTruncated;
  const uint32_t length = DecodeFixed32(f + frame::kLength);
  if (length < kFrameHeaderLength || length > max_frame_length) return FrameCheck::kBadLength;
  if (length > available) return FrameCheck::kTruncated;
  const uint8_t flags = static_cast<uint8_t>(f[frame::kFlags]);
  if ((flags & ~kKnownFlags) != 0 || f[frame::kReserved8] != std::byte{0} ||
      DecodeFixed16(f + frame::kReserved16) != 0) {
    return FrameCheck::kBadLayout;
  }
  const uint64_t fixed =
      kFrameHeaderLength + ((flags & kFlagProducerBlock) ? kProducerBlockLength : 0);
  const uint64_t key = DecodeFixed16(f + frame::kKeyLength);
  const uint64_t headers = DecodeFixed16(f + frame::kHeadersLength);
  if (fixed + key + headers > length) return FrameCheck::kBadLayout;
  if (key != 0 && (flags & kFlagHasKey) == 0) return FrameCheck::kBadLayout;
  if (verify_crc && ComputeFrameCrc(f, length) != DecodeFixed32(f + frame::kCrc)) {
    return FrameCheck::kBadCrc;
  }
  if (headers != 0) {
    HeaderIterator it(std::span<const std::byte>(f + fixed + key, headers));
    while (it.valid()) it.Next();
    if (!it.ok()) return FrameCheck::kBadHeaders;
  }
  return FrameCheck::kOk;
}

int64_t WallClockNanos() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace runnel
