// The on-disk format, byte for byte: file header, names, time index entry,
// checkpoint, and a log written through PartitionLog read back raw.

#include "persistence/format.h"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "core/coding.h"
#include "core/crc32c.h"
#include "persistence/log.h"
#include "tests/persistence/test_util.h"

namespace runnel {
namespace {

using testing::Bytes;
using testing::MakeFrame;
using testing::MakePadding;
using testing::ReadFileBytes;
using testing::TempDir;

std::vector<std::byte> Hex(std::initializer_list<int> v) {
  std::vector<std::byte> out;
  for (int b : v) out.push_back(static_cast<std::byte>(b));
  return out;
}

TEST(Format, FileHeaderHasExactBytes) {
  FileHeader h;
  h.kind = FileKind::kSegment;
  h.base_offset = 0x2A;
  h.created_ns = 0x0102030405060708;
  h.segment_bytes = 0x100000;
  const auto b = EncodeFileHeader(h);
  const std::vector<std::byte> got(b.begin(), b.end());
  std::vector<std::byte> want = Hex({
      'R',  'N',  'L',  'S',  'E',  'G',  0x00, 0x01,  // magic
      0x00, 0x00, 0x01, 0x00,                          // version 1.0
      0x40, 0x00, 0x00, 0x00,                          // header_length 64
      0x2A, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // base_offset 42
      0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,  // created_ns
      0x00, 0x00, 0x00, 0x00,                          // flags
      0x00, 0x00, 0x00, 0x00,                          // index_interval (segment: 0)
      0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00,  // segment_bytes 1 MiB
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // reserved
      0x00, 0x00, 0x00, 0x00,                          //
  });
  const uint32_t crc = crc32c::Value(want.data(), 60);
  for (int i = 0; i < 4; ++i) want.push_back(static_cast<std::byte>(crc >> (8 * i)));
  EXPECT_EQ(got, want);

  auto d = DecodeFileHeader(got, FileKind::kSegment, "x.log");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->base_offset, 42u);
  EXPECT_EQ(d->created_ns, 0x0102030405060708);
  EXPECT_EQ(d->version, kFormatVersion);
  EXPECT_EQ(d->header_length, kFileHeaderLength);
  EXPECT_EQ(d->segment_bytes, 0x100000u);
}

TEST(Format, HeaderOfTheOtherKindOrDamagedIsCorruption) {
  FileHeader h;
  h.kind = FileKind::kTimeIndex;
  auto b = EncodeFileHeader(h);
  EXPECT_EQ(DecodeFileHeader(b, FileKind::kSegment, "a.log").status().code(),
            StatusCode::kCorruption);
  b[20] ^= std::byte{1};
  auto d = DecodeFileHeader(b, FileKind::kTimeIndex, "a.timeindex");
  EXPECT_EQ(d.status().code(), StatusCode::kCorruption);
  EXPECT_NE(d.status().message().find("CRC"), std::string::npos);
  auto shorter = DecodeFileHeader(std::span<const std::byte>(b.data(), 10), FileKind::kTimeIndex,
                                  "a.timeindex");
  EXPECT_EQ(shorter.status().code(), StatusCode::kCorruption);
}

TEST(Format, OtherMajorVersionIsAVersionMismatchNamingBoth) {
  FileHeader h;
  h.version = 2u << 16;
  const auto b = EncodeFileHeader(h);
  auto d = DecodeFileHeader(b, FileKind::kSegment, "00000000000000000042.log");
  ASSERT_EQ(d.status().code(), StatusCode::kVersionMismatch);
  EXPECT_NE(d.status().message().find("00000000000000000042.log was written by format version 2.0"),
            std::string::npos)
      << d.status().message();
  EXPECT_NE(d.status().message().find("reads 1.x"), std::string::npos);
  // A newer minor version is readable.
  h.version = (1u << 16) | 7;
  EXPECT_TRUE(DecodeFileHeader(EncodeFileHeader(h), FileKind::kSegment, "x").ok());
}

TEST(Format, SegmentNamesAreTwentyDigitsAndParseBack) {
  EXPECT_EQ(SegmentFileName(42), "00000000000000000042.log");
  EXPECT_EQ(TimeIndexFileName(42), "00000000000000000042.timeindex");
  EXPECT_EQ(SegmentFileName(UINT64_MAX), "18446744073709551615.log");
  EXPECT_EQ(ParseSegmentFileName("00000000000000000042.log"), 42u);
  EXPECT_EQ(ParseSegmentFileName("18446744073709551615.log"), UINT64_MAX);
  EXPECT_EQ(ParseTimeIndexFileName("00000000000000000042.timeindex"), 42u);
  EXPECT_FALSE(ParseSegmentFileName("42.log"));
  EXPECT_FALSE(ParseSegmentFileName("0000000000000000004a.log"));
  EXPECT_FALSE(ParseSegmentFileName("00000000000000000042.log.bak"));
  EXPECT_FALSE(ParseSegmentFileName("99999999999999999999.log"));  // > 2^64 - 1
  EXPECT_FALSE(ParseSegmentFileName("00000000000000000042.timeindex"));
}

TEST(Format, TimeIndexEntryHasExactBytes) {
  std::array<std::byte, kTimeIndexEntryLength> b{};
  EncodeTimeIndexEntry(TimeIndexEntry{-2, 0x11223344, 0x55667788}, b.data());
  const std::vector<std::byte> got(b.begin(), b.end());
  EXPECT_EQ(got, Hex({0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,  //
                      0x44, 0x33, 0x22, 0x11, 0x88, 0x77, 0x66, 0x55}));
  const TimeIndexEntry e = DecodeTimeIndexEntry(b.data());
  EXPECT_EQ(e.timestamp_ns, -2);
  EXPECT_EQ(e.relative_offset, 0x11223344u);
  EXPECT_EQ(e.position, 0x55667788u);
}

TEST(Format, CheckpointRoundTripsAndDetectsDamage) {
  Checkpoint c{4096, 8192, 77, 123456789, 42};
  auto b = EncodeCheckpoint(c);
  EXPECT_EQ(std::memcmp(b.data(), "RNLCKP\0\1", 8), 0);
  auto d = DecodeCheckpoint(b, "checkpoint");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->segment_base, 4096u);
  EXPECT_EQ(d->file_position, 8192u);
  EXPECT_EQ(d->next_offset, 77u);
  EXPECT_EQ(d->max_timestamp_ns, 123456789);
  b[33] ^= std::byte{0x10};
  EXPECT_EQ(DecodeCheckpoint(b, "checkpoint").status().code(), StatusCode::kCorruption);
}

// A log written through PartitionLog holds exactly: the header, then the
// frames as given (ring tags and padding bytes included), back to back.
TEST(Format, AppendedFramesAreStoredByteForByte) {
  TempDir dir;
  std::vector<std::byte> frames;
  testing::Append(frames, MakeFrame(0, 1000, "key-0", "hello"));
  testing::Append(frames, MakeFrame(1, 900, "", std::string(100, 'v')));
  testing::Append(frames, MakePadding(60));  // a dead producer's hole: offset 2 is skipped
  testing::Append(frames, MakeFrame(3, 1100, "k", "", FrameState::kControl));
  {
    auto log = PartitionLog::Open(dir.path());
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    ASSERT_TRUE(log->Append(frames).ok());
    EXPECT_EQ(log->next_offset(), 4u);
    ASSERT_TRUE(log->Close().ok());
  }
  const auto seg = ReadFileBytes(dir / "00000000000000000000.log");
  ASSERT_EQ(seg.size(), kFileHeaderLength + frames.size());  // sealed: exact size
  EXPECT_EQ(std::vector<std::byte>(seg.begin() + kFileHeaderLength, seg.end()), frames);
  auto h = DecodeFileHeader(seg, FileKind::kSegment, "seg");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->base_offset, 0u);

  // The index: the first record always, then the last record at seal, with
  // timestamps as max so far (record 3 is 1100 > 1000).
  const auto idx = ReadFileBytes(dir / "00000000000000000000.timeindex");
  ASSERT_EQ(idx.size(), kFileHeaderLength + 2 * kTimeIndexEntryLength);
  auto ih = DecodeFileHeader(idx, FileKind::kTimeIndex, "idx");
  ASSERT_TRUE(ih.ok());
  EXPECT_EQ(ih->index_interval, 4096u);
  const TimeIndexEntry e0 = DecodeTimeIndexEntry(idx.data() + kFileHeaderLength);
  const TimeIndexEntry e1 = DecodeTimeIndexEntry(idx.data() + kFileHeaderLength + 16);
  EXPECT_EQ(e0.timestamp_ns, 1000);
  EXPECT_EQ(e0.relative_offset, 0u);
  EXPECT_EQ(e0.position, kFileHeaderLength);
  EXPECT_EQ(e1.timestamp_ns, 1100);
  EXPECT_EQ(e1.relative_offset, 3u);
  EXPECT_EQ(e1.position, kFileHeaderLength + frames.size() - MakeFrame(3, 0, "k", "").size());

  // The checkpoint: durable end = end of the data.
  const auto cp = ReadFileBytes(dir / "checkpoint");
  auto c = DecodeCheckpoint(cp, "checkpoint");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->segment_base, 0u);
  EXPECT_EQ(c->file_position, kFileHeaderLength + frames.size());
  EXPECT_EQ(c->next_offset, 4u);
  EXPECT_EQ(c->max_timestamp_ns, 1100);
}

}  // namespace
}  // namespace runnel
