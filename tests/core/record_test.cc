#include "core/record.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "core/crc32c.h"

namespace runnel {
namespace {

TEST(Crc32c, MatchesTheStandardCheckValue) {
  EXPECT_EQ(crc32c::Value("123456789", 9), 0xE3069283u);
  uint32_t running = crc32c::Extend(crc32c::kInit, "1234", 4);
  running = crc32c::Extend(running, "56789", 5);
  EXPECT_EQ(crc32c::Finish(running), 0xE3069283u);
}

// The inline SSE4.2 path (short buffers) and ISA-L (long ones) must agree on
// every length around the switch-over, any alignment and any running value.
TEST(Crc32c, ExtendFieldsEqualsExtendOverTheSameBytes) {
  std::vector<unsigned char> payload(600);
  for (std::size_t i = 0; i < payload.size(); ++i)
    payload[i] = static_cast<unsigned char>(i * 7 + 3);
  const uint64_t words[3] = {0x0102030405060708ull, 0xF0E0D0C0B0A09080ull, 0x1122334455667788ull};
  const uint32_t w32 = 0xDEADBEEF;
  for (std::size_t n : {0u, 1u, 8u, 13u, 255u, 256u, 257u, 600u}) {
    std::vector<unsigned char> all(4 + 24 + n);
    std::memcpy(all.data(), &w32, 4);
    std::memcpy(all.data() + 4, words, 24);
    std::memcpy(all.data() + 28, payload.data(), n);
    EXPECT_EQ(crc32c::ExtendFields(crc32c::kInit, w32, words, payload.data(), n),
              crc32c::Extend(crc32c::kInit, all.data(), all.size()))
        << n;
  }
}

TEST(Crc32c, InlinePathAgreesWithIsal) {
  ASSERT_TRUE(crc32c::internal::HaveInlinePath()) << "this machine has no SSE4.2";
  std::vector<unsigned char> buf(600);
  uint32_t x = 12345;
  for (unsigned char& b : buf) {
    x = x * 1103515245u + 12345u;
    b = static_cast<unsigned char>(x >> 16);
  }
  for (std::size_t start = 0; start < 8; ++start) {
    for (std::size_t n = 0; n + start <= 520; ++n) {
      for (uint32_t running : {crc32c::kInit, 0u, 0xDEADBEEFu}) {
        ASSERT_EQ(crc32c::Extend(running, buf.data() + start, n),
                  crc32c::internal::ExtendWithIsal(running, buf.data() + start, n))
            << "start " << start << " length " << n;
      }
    }
  }
}

// Builds a frame in a vector the way a producer would.
std::vector<std::byte> MakeFrame(uint64_t offset, std::string_view key, bool has_key,
                                 std::vector<Header> headers, std::string_view value) {
  const int64_t hlen = EncodedHeadersLength(headers);
  const uint64_t len = FrameLength(key.size(), static_cast<uint64_t>(hlen), value.size());
  std::vector<std::byte> f(AlignedFrameLength(len));
  WriteFrameHeader(f.data(), static_cast<uint32_t>(len), offset, 1234567, key.size(),
                   static_cast<uint16_t>(hlen), has_key ? kFlagHasKey : 0);
  std::memcpy(f.data() + kFrameHeaderLength, key.data(), key.size());
  EncodeHeaders(headers, f.data() + kFrameHeaderLength + key.size());
  std::memcpy(f.data() + kFrameHeaderLength + key.size() + hlen, value.data(), value.size());
  SealFrame(f.data(), static_cast<uint32_t>(len));
  EncodeFixed64(f.data(), static_cast<uint64_t>(FrameState::kData));
  return f;
}

TEST(Record, RoundTripKeepsExactBytes) {
  const auto f = MakeFrame(42, "user-7", true, {{"trace", "abc"}, {"", "x"}}, "hello\0world");
  ASSERT_EQ(CheckFrame(f.data(), f.size(), 1 << 20, true), FrameCheck::kOk);
  RecordView v(f.data());
  EXPECT_EQ(v.offset(), 42u);
  EXPECT_EQ(v.timestamp_ns(), 1234567);
  EXPECT_TRUE(v.has_key());
  EXPECT_EQ(v.key(), "user-7");
  EXPECT_EQ(v.value(), std::string_view("hello\0world", 5));
  HeaderIterator it = v.headers();
  ASSERT_TRUE(it.valid());
  EXPECT_EQ(it->name, "trace");
  EXPECT_EQ(it->value, "abc");
  it.Next();
  ASSERT_TRUE(it.valid());
  EXPECT_EQ(it->name, "");
  EXPECT_EQ(it->value, "x");
  it.Next();
  EXPECT_FALSE(it.valid());
  EXPECT_TRUE(it.ok());
}

// The ring's commit path seals from its arguments; the bytes must be exactly
// those of WriteFrameHeader + SealFrame (the one format of ring, disk, replay).
TEST(Record, SealFrameHeaderWritesTheSameBytesAsWriteAndSeal) {
  for (uint32_t payload : {0u, 1u, 7u, 8u, 13u, 64u, 300u}) {
    const uint32_t length = kFrameHeaderLength + payload;
    std::vector<std::byte> a(length, std::byte{0xEE});
    std::vector<std::byte> b(length, std::byte{0x11});
    for (uint32_t i = kFrameHeaderLength; i < length; ++i) {
      a[i] = b[i] = static_cast<std::byte>(i * 31 + payload);
    }
    const uint64_t offset = 0x0123456789ABCDEFull + payload;
    const int64_t ts = 1'700'000'000'123'456'789 + payload;
    const uint16_t key_length = static_cast<uint16_t>(payload / 3);
    const uint16_t headers_length = static_cast<uint16_t>(payload / 5);
    WriteFrameHeader(a.data(), length, offset, ts, key_length, headers_length, kFlagHasKey);
    SealFrame(a.data(), length);
    EncodeFixed32(b.data() + frame::kLength, length);
    SealFrameHeader(b.data(), length, offset, ts, key_length, headers_length, kFlagHasKey);
    // The commit word is the ring's business: compare from the length on.
    EXPECT_TRUE(std::equal(a.begin() + frame::kLength, a.end(), b.begin() + frame::kLength))
        << "payload " << payload;
    EXPECT_EQ(DecodeFixed32(b.data() + frame::kCrc), ComputeFrameCrc(b.data(), length));
  }
}

TEST(Record, HeaderIs40BytesAndFramesAlignTo8) {
  EXPECT_EQ(FrameLength(0, 0, 8), 48u);
  EXPECT_EQ(AlignedFrameLength(FrameLength(0, 0, 1)), 48u);
  EXPECT_EQ(AlignedFrameLength(FrameLength(0, 0, 64)), 104u);
}

TEST(Record, NoKeyAndEmptyKeyDiffer) {
  const auto none = MakeFrame(1, "", false, {}, "v");
  const auto empty = MakeFrame(1, "", true, {}, "v");
  EXPECT_FALSE(RecordView(none.data()).has_key());
  EXPECT_TRUE(RecordView(empty.data()).has_key());
}

TEST(Record, EveryFlippedBitIsDetected) {
  const auto good = MakeFrame(7, "k", true, {{"h", "v"}}, "some value bytes");
  const uint32_t len = DecodeFixed32(good.data() + frame::kLength);
  // The commit word and the CRC field itself are outside the CRC by design.
  for (uint32_t byte = frame::kLength; byte < len; ++byte) {
    if (byte >= frame::kCrc && byte < frame::kCrc + 4) continue;
    for (int bit = 0; bit < 8; ++bit) {
      auto f = good;
      f[byte] ^= std::byte(1u << bit);
      EXPECT_NE(CheckFrame(f.data(), f.size(), 1 << 20, true), FrameCheck::kOk)
          << "byte " << byte << " bit " << bit;
    }
  }
}

TEST(Record, BadLengthsAreRefusedWithoutReadingPastTheBuffer) {
  auto f = MakeFrame(7, "k", true, {}, "value");
  EncodeFixed32(f.data() + frame::kLength, 39);
  EXPECT_EQ(CheckFrame(f.data(), f.size(), 1 << 20, false), FrameCheck::kBadLength);
  EncodeFixed32(f.data() + frame::kLength, 1u << 30);
  EXPECT_EQ(CheckFrame(f.data(), f.size(), 1 << 20, false), FrameCheck::kBadLength);
  EncodeFixed32(f.data() + frame::kLength, 1000);
  EXPECT_EQ(CheckFrame(f.data(), f.size(), 1 << 20, false), FrameCheck::kTruncated);
  EXPECT_EQ(CheckFrame(f.data(), 20, 1 << 20, false), FrameCheck::kTruncated);
}

TEST(Record, InconsistentKeyAndHeaderLengthsAreBadLayout) {
  auto f = MakeFrame(7, "k", true, {}, "value");
  EncodeFixed16(f.data() + frame::kKeyLength, 200);
  EXPECT_EQ(CheckFrame(f.data(), f.size(), 1 << 20, false), FrameCheck::kBadLayout);
  auto g = MakeFrame(7, "", false, {{"a", "b"}}, "value");
  // Claim a header value longer than the area.
  EncodeFixed16(g.data() + kFrameHeaderLength + 2, 60);
  SealFrame(g.data(), DecodeFixed32(g.data() + frame::kLength));
  EXPECT_EQ(CheckFrame(g.data(), g.size(), 1 << 20, true), FrameCheck::kBadHeaders);
  auto h = MakeFrame(7, "", false, {}, "value");
  h[frame::kFlags] = std::byte{0x80};
  EXPECT_EQ(CheckFrame(h.data(), h.size(), 1 << 20, false), FrameCheck::kBadLayout);
}

TEST(Record, OverlongHeaderIsRefusedByTheEncoder) {
  std::string big(70000, 'x');
  std::vector<Header> h{{"n", big}};
  EXPECT_EQ(EncodedHeadersLength(h), -1);
}

}  // namespace
}  // namespace runnel
