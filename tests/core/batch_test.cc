// Record batches: the builder, the batch frame check, and batch frames
// through the ring (read, read_copy, Scan).

#include "core/batch.h"

#include <gtest/gtest.h>

#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/ring.h"
#include "tests/core/test_memory.h"

namespace runnel {
namespace {

using testing::TestRing;

constexpr uint64_t kCap = 64 * 1024;

RingOptions Options(RingMode mode = RingMode::kSingleProducer, uint64_t base_offset = 0) {
  RingOptions o;
  o.capacity = kCap;
  o.mode = mode;
  o.base_offset = base_offset;
  return o;
}

ReaderOptions Batches(bool verify_crc = false) {
  ReaderOptions o;
  o.batches = true;
  o.verify_crc = verify_crc;
  return o;
}

struct Got {
  uint64_t offset;
  int64_t timestamp_ns;
  bool has_key;
  std::string key;
  std::string value;
  friend bool operator==(const Got&, const Got&) = default;
};

std::ostream& operator<<(std::ostream& os, const Got& g) {
  return os << "{" << g.offset << " " << g.timestamp_ns << " " << g.has_key << " '" << g.key
            << "' '" << g.value << "'}";
}

Got From(const RecordView& v) {
  return {v.offset(), v.timestamp_ns(), v.has_key(), std::string(v.key()), std::string(v.value())};
}

// Reads until nothing is left, `limit` records per call; every call's
// status lands in `statuses`.
std::vector<Got> ReadAll(RingReader& r, uint32_t limit, ReadStatus* last = nullptr) {
  std::vector<Got> out;
  for (;;) {
    const ReadResult res = r.read([&](const RecordView& v) { out.push_back(From(v)); }, limit);
    if (last) *last = res.status;
    if (res.status != ReadStatus::kOk || res.records == 0) break;
    EXPECT_LE(res.records, limit);
  }
  return out;
}

std::vector<Got> ReadAllCopy(RingReader& r, uint32_t limit, std::size_t buffer_bytes) {
  std::vector<Got> out;
  std::vector<std::byte> buffer(buffer_bytes);
  for (;;) {
    const ReadResult res =
        r.read_copy([&](const RecordView& v) { out.push_back(From(v)); }, limit, buffer);
    EXPECT_EQ(res.status, ReadStatus::kOk);
    if (res.status != ReadStatus::kOk || res.records == 0) break;
    EXPECT_LE(res.records, limit);
  }
  return out;
}

TEST(RecordBatch, AppendLaysOutEntriesAsTheRulerSays) {
  RecordBatch b(4096);
  ASSERT_EQ(b.Append("abc"), BatchAppend::kOk);
  ASSERT_EQ(b.Append(std::string_view("k"), "value-9"), BatchAppend::kOk);
  ASSERT_EQ(b.Append(std::string_view(""), ""), BatchAppend::kOk);  // empty key, not none
  EXPECT_EQ(b.count(), 3u);
  // 8 + 3 -> 16; 8 + 1 + 7 -> 16; 8 + 0 -> 8.
  ASSERT_EQ(b.entries().size(), 40u);
  EXPECT_EQ(b.frame_length(), kFrameHeaderLength + kBatchBodyHeaderLength + 40);
  const std::byte* e = b.entries().data();
  EXPECT_EQ(DecodeFixed32(e), 3u);
  EXPECT_EQ(DecodeFixed16(e + 4), 0u);
  EXPECT_EQ(static_cast<uint8_t>(e[6]), 0u);
  EXPECT_EQ(static_cast<uint8_t>(e[7]), 0u);
  EXPECT_EQ(std::memcmp(e + 8, "abc\0\0\0\0\0", 8), 0);
  EXPECT_EQ(DecodeFixed32(e + 16), 7u);
  EXPECT_EQ(DecodeFixed16(e + 20), 1u);
  EXPECT_EQ(static_cast<uint8_t>(e[22]), kFlagHasKey);
  EXPECT_EQ(std::memcmp(e + 24, "kvalue-9", 8), 0);
  EXPECT_EQ(DecodeFixed32(e + 32), 0u);
  EXPECT_EQ(DecodeFixed16(e + 36), 0u);
  EXPECT_EQ(static_cast<uint8_t>(e[38]), kFlagHasKey);
  b.Clear();
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.frame_length(), kFrameHeaderLength + kBatchBodyHeaderLength);
}

TEST(RecordBatch, FullTooLargeAndInvalidAreToldApartAndAppendNothing) {
  // Room for 64 bytes of entries: four 8-byte records.
  RecordBatch b(kFrameHeaderLength + kBatchBodyHeaderLength + 64);
  for (int i = 0; i < 4; ++i) ASSERT_EQ(b.Append("12345678"), BatchAppend::kOk);
  EXPECT_EQ(b.Append("x"), BatchAppend::kFull);
  EXPECT_EQ(b.Append(std::string(57, 'x')), BatchAppend::kTooLarge);
  EXPECT_EQ(b.Append(std::string(kMaxKeyLength + 1, 'k'), "v"), BatchAppend::kInvalid);
  EXPECT_EQ(b.count(), 4u);
  EXPECT_EQ(b.entries().size(), 64u);
  b.Clear();
  EXPECT_EQ(b.Append(std::string(56, 'x')), BatchAppend::kOk);  // exactly the room
}

TEST(RingBatch, RecordsArriveOneByOneWithConsecutiveOffsetsAndTheBatchTimestamp) {
  TestRing t(Options(RingMode::kSingleProducer, 100));
  RingProducer p(t.ring);
  RingReader r(t.ring, t.ring.tail(), Batches(/*verify_crc=*/true));
  RecordBatch b(t.ring.max_frame_length());
  ASSERT_EQ(b.Append("first"), BatchAppend::kOk);
  ASSERT_EQ(b.Append(std::string_view("key"), "second"), BatchAppend::kOk);
  ASSERT_EQ(b.Append(std::string_view(""), ""), BatchAppend::kOk);
  ASSERT_EQ(b.Append(""), BatchAppend::kOk);
  const WriteResult w = p.try_write(b, 1234);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w.offset, 100u);
  // A plain record after the batch takes the next offset.
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "plain", 99).ok());
  EXPECT_EQ(t.ring.tail().offset, 105u);
  const std::vector<Got> want = {{100, 1234, false, "", "first"},
                                 {101, 1234, true, "key", "second"},
                                 {102, 1234, true, "", ""},
                                 {103, 1234, false, "", ""},
                                 {104, 99, false, "", "plain"}};
  EXPECT_EQ(ReadAll(r, 1000), want);
  EXPECT_EQ(r.position(), t.ring.tail());
}

TEST(RingBatch, ClockStampsTheBatchWhenNoTimestampIsGiven) {
  TestRing t(Options());
  RingProducer p(t.ring);
  RingReader r(t.ring, t.ring.tail(), Batches());
  RecordBatch b(t.ring.max_frame_length());
  ASSERT_EQ(b.Append("a"), BatchAppend::kOk);
  ASSERT_EQ(b.Append("b"), BatchAppend::kOk);
  const int64_t before = WallClockNanos();
  ASSERT_TRUE(p.try_write(b).ok());
  const std::vector<Got> got = ReadAll(r, 10);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].timestamp_ns, got[1].timestamp_ns);
  // The TSC clock may run a little off the kernel's; a minute is generous.
  EXPECT_GT(got[0].timestamp_ns, before - 60'000'000'000);
  EXPECT_LT(got[0].timestamp_ns, before + 60'000'000'000);
}

// A reader whose limit ends inside a batch stops there and resumes at the
// next record of the same batch: nothing lost, nothing twice.
TEST(RingBatch, LimitInsideABatchResumesAtTheNextRecord) {
  for (uint32_t limit : {1u, 2u, 3u, 7u, 10u, 11u}) {
    TestRing t(Options(RingMode::kMultiProducer, 5));
    RingProducer p(t.ring);
    RecordBatch b(t.ring.max_frame_length());
    std::vector<Got> want;
    uint64_t offset = 5;
    for (int batch = 0; batch < 3; ++batch) {
      b.Clear();
      for (int i = 0; i < 10; ++i) {
        const std::string v = "b" + std::to_string(batch) + "r" + std::to_string(i);
        ASSERT_EQ(b.Append(v), BatchAppend::kOk);
        want.push_back({offset++, 7, false, "", v});
      }
      ASSERT_TRUE(p.try_write(b, 7).ok());
    }
    RingReader r(t.ring, t.ring.earliest(), Batches());
    RingReader rc(t.ring, t.ring.earliest(), Batches(/*verify_crc=*/true));
    EXPECT_EQ(ReadAll(r, limit), want) << "limit " << limit;
    EXPECT_EQ(ReadAllCopy(rc, limit, 64 * 1024), want) << "limit " << limit;
    EXPECT_EQ(r.position(), t.ring.tail());
    EXPECT_EQ(rc.position(), t.ring.tail());
  }
}

TEST(RingBatch, ReadCopyWithRoomForOneBatchDeliversThemAll) {
  TestRing t(Options());
  RingProducer p(t.ring);
  RecordBatch b(256);
  std::vector<Got> want;
  for (uint64_t i = 0; i < 50; ++i) {
    const std::string v = "v" + std::to_string(i);
    if (b.Append(v) == BatchAppend::kFull) {
      ASSERT_TRUE(p.try_write(b, 1).ok());
      b.Clear();
      ASSERT_EQ(b.Append(v), BatchAppend::kOk);
    }
    want.push_back({i, 1, false, "", v});
  }
  ASSERT_TRUE(p.try_write(b, 1).ok());
  RingReader r(t.ring, t.ring.earliest(), Batches());
  EXPECT_EQ(ReadAllCopy(r, 1000, 256), want);
}

// Every reader that does not ask for batches (the bus's consumers, the
// persister) is told the frame is corrupt, and stays before it.
TEST(RingBatch, ReaderThatDoesNotAskForBatchesReportsABadLayout) {
  TestRing t(Options());
  RingProducer p(t.ring);
  RecordBatch b(t.ring.max_frame_length());
  ASSERT_EQ(b.Append("x"), BatchAppend::kOk);
  ASSERT_TRUE(p.try_write(b).ok());
  RingReader r(t.ring, t.ring.earliest());
  uint32_t seen = 0;
  const ReadResult res = r.read([&](const RecordView&) { ++seen; }, 10);
  EXPECT_EQ(res.status, ReadStatus::kCorrupt);
  EXPECT_EQ(res.check, FrameCheck::kBadLayout);
  EXPECT_EQ(seen, 0u);
  EXPECT_EQ(r.position(), t.ring.earliest());
  std::vector<std::byte> buffer(4096);
  const ReadResult copy = r.read_copy([&](const RecordView&) { ++seen; }, 10, buffer);
  EXPECT_EQ(copy.status, ReadStatus::kCorrupt);
  EXPECT_EQ(seen, 0u);
  // The plain frame check, which segment files go through, refuses it too.
  const std::byte* f = t.ring.data();
  EXPECT_EQ(CheckFrame(f, kCap, t.ring.max_frame_length(), true), FrameCheck::kBadLayout);
  EXPECT_EQ(CheckBatchFrame(f, kCap, t.ring.max_frame_length(), true), FrameCheck::kOk);
}

TEST(RingBatch, RefusalsWriteNothingAndLeaveTheBatch) {
  TestRing t(Options());
  RingProducer p(t.ring);
  RecordBatch empty(t.ring.max_frame_length());
  EXPECT_EQ(p.try_write(empty).status, ClaimStatus::kInvalid);
  RecordBatch big(t.ring.max_frame_length() + 64);
  while (big.Append("12345678") == BatchAppend::kOk) {
  }
  ASSERT_GT(big.frame_length(), t.ring.max_frame_length());
  EXPECT_EQ(p.try_write(big).status, ClaimStatus::kTooLarge);
  EXPECT_EQ(t.ring.tail(), (RingPosition{0, 0}));
  // Back-pressure: a gating reader that releases nothing.
  ASSERT_TRUE(t.ring.AcquireGatingSlot(1, t.ring.tail()).ok());
  RecordBatch b(t.ring.max_frame_length());
  while (b.Append("12345678") == BatchAppend::kOk) {
  }
  const uint32_t count = b.count();
  uint64_t written = 0;
  WriteResult w;
  while ((w = p.try_write(b)).ok()) written += count;
  EXPECT_EQ(w.status, ClaimStatus::kFull);
  EXPECT_EQ(b.count(), count);
  EXPECT_EQ(t.ring.tail().offset, written);
  RingReader r(t.ring, t.ring.earliest(), Batches());
  const std::vector<Got> got = ReadAll(r, 100000);
  ASSERT_EQ(got.size(), written);
  for (uint64_t i = 0; i < written; ++i) ASSERT_EQ(got[i].offset, i);
}

// Batches across many laps, with wrap padding, and a Scan that counts
// records, not frames.
TEST(RingBatch, ManyLapsOfMixedBatchesAndRecordsKeepEveryOffset) {
  for (RingMode mode : {RingMode::kSingleProducer, RingMode::kMultiProducer}) {
    TestRing t(Options(mode));
    RingProducer p(t.ring);
    const Result<uint32_t> slot = t.ring.AcquireGatingSlot(1, t.ring.tail());
    ASSERT_TRUE(slot.ok());
    RingReader r(t.ring, t.ring.tail(), Batches());
    RingReader scan(t.ring, t.ring.tail(), Batches());
    RecordBatch b(t.ring.max_frame_length());
    std::mt19937 rng(7);
    uint64_t next_write = 0, next_read = 0, scanned = 0;
    // One read of at most `limit` records, one Scan, and the gating slot
    // moved to the slower of the two.
    auto drain = [&](uint32_t limit) {
      const ReadResult res = r.read(
          [&](const RecordView& v) {
            ASSERT_EQ(v.offset(), next_read);
            ASSERT_TRUE(v.value().empty() ||
                        v.value()[0] == static_cast<char>('a' + next_read % 26));
            ++next_read;
          },
          limit);
      ASSERT_EQ(res.status, ReadStatus::kOk);
      const RingReader::Extent e = scan.Scan(1 << 20, [](const RecordView&, uint64_t) {});
      ASSERT_EQ(e.status, ReadStatus::kOk);
      scan.Consume(e);
      scanned += e.records;
      ASSERT_EQ(scan.position().offset, scanned);
      const RingPosition lo =
          r.position().position < scan.position().position ? r.position() : scan.position();
      t.ring.AdvanceGatingSlot(*slot, lo);
    };
    while (next_write < 200000) {
      WriteResult w;
      uint32_t n = 1;
      if (rng() % 4 == 0) {
        const std::string v(rng() % 40, static_cast<char>('a' + next_write % 26));
        while ((w = p.try_write(std::nullopt, {}, v)).status == ClaimStatus::kFull) drain(1000);
      } else {
        b.Clear();
        n = 1 + rng() % 90;
        for (uint32_t i = 0; i < n; ++i) {
          const std::string v(rng() % 40, static_cast<char>('a' + (next_write + i) % 26));
          ASSERT_EQ(b.Append(v), BatchAppend::kOk);
        }
        while ((w = p.try_write(b)).status == ClaimStatus::kFull) drain(1000);
      }
      ASSERT_TRUE(w.ok()) << ClaimStatusName(w.status);
      ASSERT_EQ(w.offset, next_write);
      next_write += n;
      drain(1 + rng() % 50);
      if (::testing::Test::HasFatalFailure()) return;
    }
    ReadAll(r, 1000);
    EXPECT_EQ(r.position(), t.ring.tail());
    EXPECT_EQ(scanned, next_write);
  }
}

// A CRC that does not match is reported when the reader checks CRCs.
TEST(RingBatch, FlippedPayloadBitFailsTheCrc) {
  TestRing t(Options());
  RingProducer p(t.ring);
  RecordBatch b(t.ring.max_frame_length());
  ASSERT_EQ(b.Append("payload"), BatchAppend::kOk);
  ASSERT_TRUE(p.try_write(b).ok());
  t.ring.data()[kFrameHeaderLength + kBatchBodyHeaderLength + 9] ^= std::byte{1};
  RingReader r(t.ring, t.ring.earliest(), Batches(/*verify_crc=*/true));
  const ReadResult res = r.read([](const RecordView&) {}, 10);
  EXPECT_EQ(res.status, ReadStatus::kCorrupt);
  EXPECT_EQ(res.check, FrameCheck::kBadCrc);
}

// An entry written over inside a batch that read() has begun to hand over:
// the records before it arrive, then kCorrupt, and the reader stays on the
// damaged record (read_copy checks the whole copy first: nothing arrives).
TEST(RingBatch, DamagedEntryEndsTheBatchAfterTheGoodRecords) {
  TestRing t(Options(RingMode::kSingleProducer, 50));
  RingProducer p(t.ring);
  RecordBatch b(t.ring.max_frame_length());
  for (int i = 0; i < 5; ++i) ASSERT_EQ(b.Append("1234567" + std::to_string(i)), BatchAppend::kOk);
  ASSERT_TRUE(p.try_write(b, 3).ok());
  // Entry 3's value length, pointing past the frame.
  EncodeFixed32(t.ring.data() + kFrameHeaderLength + kBatchBodyHeaderLength + 3 * 16, 4000);
  RingReader r(t.ring, t.ring.earliest(), Batches());
  std::vector<Got> got;
  const ReadResult res = r.read([&](const RecordView& v) { got.push_back(From(v)); }, 100);
  EXPECT_EQ(res.status, ReadStatus::kCorrupt);
  EXPECT_EQ(res.check, FrameCheck::kBadLayout);
  EXPECT_EQ(res.records, 3u);
  const std::vector<Got> want = {{50, 3, false, "", "12345670"},
                                 {51, 3, false, "", "12345671"},
                                 {52, 3, false, "", "12345672"}};
  EXPECT_EQ(got, want);
  EXPECT_EQ(r.position(), (RingPosition{0, 53}));
  // Asked again, it says the same and hands over nothing twice.
  got.clear();
  EXPECT_EQ(r.read([&](const RecordView& v) { got.push_back(From(v)); }, 100).status,
            ReadStatus::kCorrupt);
  EXPECT_TRUE(got.empty());
  RingReader rc(t.ring, t.ring.earliest(), Batches());
  std::vector<std::byte> buffer(4096);
  const ReadResult copy =
      rc.read_copy([&](const RecordView& v) { got.push_back(From(v)); }, 100, buffer);
  EXPECT_EQ(copy.status, ReadStatus::kCorrupt);
  EXPECT_EQ(copy.check, FrameCheck::kBadLayout);
  EXPECT_TRUE(got.empty());
  EXPECT_EQ(rc.position(), t.ring.earliest());
}

// A batch whose offset field was written over after the reader's check of
// the frame before it: read_copy hands over the good record before it, then
// says kCorrupt and stays there (it delivered an offset twice and skipped
// the record after the batch, reporting kOk).
TEST(RingBatch, ReadCopyRefusesABatchWhoseOffsetGoesBack) {
  TestRing t(Options(RingMode::kSingleProducer, 10));
  RingProducer p(t.ring);
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "plain", 1).ok());
  const RingPosition batch_at = t.ring.tail();
  RecordBatch b(t.ring.max_frame_length());
  for (int i = 1; i <= 5; ++i) ASSERT_EQ(b.Append("v" + std::to_string(i)), BatchAppend::kOk);
  ASSERT_TRUE(p.try_write(b, 1).ok());
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "after", 1).ok());
  EncodeFixed64(t.ring.data() + batch_at.position + frame::kOffset, 9);
  RingReader r(t.ring, t.ring.earliest(), Batches());
  std::vector<Got> got;
  std::vector<std::byte> buffer(4096);
  const ReadResult res =
      r.read_copy([&](const RecordView& v) { got.push_back(From(v)); }, 100, buffer);
  EXPECT_EQ(res.status, ReadStatus::kCorrupt);
  EXPECT_EQ(res.check, FrameCheck::kBadLayout);
  EXPECT_EQ(res.records, 1u);
  const std::vector<Got> want = {{10, 1, false, "", "plain"}};
  EXPECT_EQ(got, want);
  EXPECT_EQ(r.position(), batch_at);
}

TEST(RecordBatch, MovedFromBatchIsEmptyAndRefusesRecords) {
  TestRing t(Options());
  RingProducer p(t.ring);
  RecordBatch building(t.ring.max_frame_length());
  ASSERT_EQ(building.Append("x"), BatchAppend::kOk);
  RecordBatch handed_off = std::move(building);
  EXPECT_EQ(handed_off.count(), 1u);
  EXPECT_TRUE(building.empty());  // NOLINT(bugprone-use-after-move): what is tested
  EXPECT_EQ(building.Append("y"), BatchAppend::kTooLarge);
  EXPECT_EQ(p.try_write(building).status, ClaimStatus::kInvalid);
  ASSERT_TRUE(p.try_write(handed_off, 4).ok());
  building = std::move(handed_off);
  EXPECT_EQ(building.count(), 1u);
  building.Clear();
  EXPECT_EQ(building.Append("z"), BatchAppend::kOk);
  ASSERT_TRUE(p.try_write(building, 5).ok());
  RingReader r(t.ring, t.ring.earliest(), Batches());
  const std::vector<Got> want = {{0, 4, false, "", "x"}, {1, 5, false, "", "z"}};
  EXPECT_EQ(ReadAll(r, 10), want);
}

// A batch frame with a field written over: the check refuses it with the
// error the field calls for, never reading outside the frame (ASan).
TEST(CheckBatchFrame, EveryDamagedFieldIsRefused) {
  RecordBatch b(1024);
  ASSERT_EQ(b.Append("12345678"), BatchAppend::kOk);
  ASSERT_EQ(b.Append(std::string_view("key"), "value"), BatchAppend::kOk);
  const uint32_t length = b.frame_length();
  auto build = [&] {
    std::vector<std::byte> f(length);
    EncodeFixed64(f.data() + kFrameHeaderLength, b.count());
    std::memcpy(f.data() + kFrameHeaderLength + kBatchBodyHeaderLength, b.entries().data(),
                b.entries().size());
    WriteFrameHeader(f.data(), length, 10, 20, 0, 0, kFlagBatch);
    SealFrame(f.data(), length);
    return f;
  };
  {
    const std::vector<std::byte> f = build();
    EXPECT_EQ(CheckBatchFrame(f.data(), f.size(), 1024, true), FrameCheck::kOk);
    EXPECT_EQ(CheckBatchFrame(f.data(), f.size() - 1, 1024, true), FrameCheck::kTruncated);
    EXPECT_EQ(CheckBatchFrame(f.data(), f.size(), length - 8, true), FrameCheck::kBadLength);
  }
  struct Damage {
    const char* what;
    uint32_t at;
    uint32_t value;  // 32-bit little-endian store
    FrameCheck want;
  };
  const uint32_t body = kFrameHeaderLength;
  const uint32_t e0 = body + kBatchBodyHeaderLength;
  const uint32_t e1 = e0 + 16;
  const Damage damages[] = {
      {"count zero", body, 0, FrameCheck::kBadLayout},
      {"count one short", body, 1, FrameCheck::kBadLayout},
      {"count one over", body, 3, FrameCheck::kBadLayout},
      {"count huge", body, 0xFFFFFFFF, FrameCheck::kBadLayout},
      {"body reserved", body + 4, 1, FrameCheck::kBadLayout},
      {"entry past the end", e0, 1000, FrameCheck::kBadLayout},
      {"entry swallows the next", e0, 24, FrameCheck::kBadLayout},
      {"key past the end", e1 + 4, 200 | (uint32_t{kFlagHasKey} << 16), FrameCheck::kBadLayout},
      {"key without the flag", e1 + 4, 3, FrameCheck::kBadLayout},
      {"unknown entry flag", e1 + 4, 3 | (0x80u << 16), FrameCheck::kBadLayout},
      {"entry reserved", e1 + 4, 3 | (0x01u << 16) | (1u << 24), FrameCheck::kBadLayout},
      {"frame has a key", frame::kKeyLength, 1, FrameCheck::kBadLayout},
      {"frame flags", frame::kFlags, kFlagBatch | kFlagHasKey, FrameCheck::kBadLayout},
      {"frame length short", frame::kLength, kFrameHeaderLength + 4, FrameCheck::kBadLayout},
      {"frame length below header", frame::kLength, 8, FrameCheck::kBadLength},
      {"frame length not a multiple of 8", frame::kLength, length - 4, FrameCheck::kBadLayout},
  };
  for (const Damage& d : damages) {
    std::vector<std::byte> f = build();
    EncodeFixed32(f.data() + d.at, d.value);
    if (d.at >= frame::kOffset || d.at == frame::kLength) {
      // Re-seal, so the layout check, not the CRC, is what refuses it.
      const uint32_t l = std::min<uint32_t>(DecodeFixed32(f.data() + frame::kLength), length);
      if (l >= kFrameHeaderLength) SealFrame(f.data(), l);
    }
    EXPECT_EQ(CheckBatchFrame(f.data(), f.size(), 1024, true), d.want) << d.what;
  }
}

// Random bytes over a batch frame held in a buffer of exactly its size, so
// that ASan sees any read past it: the check and a walk over any length
// the frame may claim (unaligned ones included) stay inside.
TEST(BatchWalker, ScribbledFrameIsNeverReadPastItsLength) {
  std::mt19937 rng(5);
  for (int round = 0; round < 20000; ++round) {
    RecordBatch b(512);
    const uint32_t n = 1 + rng() % 12;
    for (uint32_t i = 0; i < n; ++i) {
      if (rng() % 3 == 0) {
        ASSERT_EQ(b.Append(std::string(rng() % 5, 'k'), std::string(rng() % 20, 'v')),
                  BatchAppend::kOk);
      } else {
        ASSERT_EQ(b.Append(std::string(rng() % 20, 'v')), BatchAppend::kOk);
      }
    }
    std::vector<std::byte> f(b.frame_length());
    EncodeFixed64(f.data() + kFrameHeaderLength, b.count());
    std::memcpy(f.data() + kFrameHeaderLength + kBatchBodyHeaderLength, b.entries().data(),
                b.entries().size());
    WriteFrameHeader(f.data(), b.frame_length(), 0, 0, 0, 0, kFlagBatch);
    SealFrame(f.data(), b.frame_length());
    for (int k = 0, hits = 1 + rng() % 4; k < hits; ++k) {
      f[rng() % f.size()] = static_cast<std::byte>(rng());
    }
    if (rng() % 4 == 0) EncodeFixed32(f.data() + kFrameHeaderLength, rng());  // the count
    (void)CheckBatchFrame(f.data(), f.size(), 1 << 20, rng() % 2 == 0);
    // Any length a reader may have checked against the ring: at least a
    // header, at most the buffer.
    const uint32_t length =
        kFrameHeaderLength + rng() % (static_cast<uint32_t>(f.size()) - kFrameHeaderLength + 1);
    const RecordView view(f.data(), length);
    BatchWalker walker(view);
    RecordView record;
    uint32_t walked = 0;
    while (walker.Next(&record)) {
      ASSERT_LE(reinterpret_cast<const std::byte*>(record.value().data()) + record.value().size(),
                f.data() + length);
      ASSERT_LT(walked++, length / kBatchEntryHeaderLength);
    }
  }
}

// Scan from a reader that read() left inside a batch counts only the
// records it has not passed, and ends where read() would.
TEST(RingBatch, ScanInsideABatchCountsTheRecordsLeft) {
  TestRing t(Options());
  RingProducer p(t.ring);
  RecordBatch b(t.ring.max_frame_length());
  for (int i = 0; i < 10; ++i) ASSERT_EQ(b.Append("r"), BatchAppend::kOk);
  ASSERT_TRUE(p.try_write(b).ok());
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "plain").ok());
  RingReader r(t.ring, t.ring.earliest(), Batches());
  ASSERT_EQ(r.read([](const RecordView&) {}, 4).records, 4u);
  EXPECT_EQ(r.position(), (RingPosition{0, 4}));
  std::vector<uint64_t> frames;
  const RingReader::Extent e =
      r.Scan(1 << 20, [&](const RecordView&, uint64_t position) { frames.push_back(position); });
  EXPECT_EQ(e.status, ReadStatus::kOk);
  EXPECT_EQ(e.records, 7u);  // 6 of the batch, and the plain record
  EXPECT_EQ(frames.size(), 2u);
  EXPECT_EQ(e.next, t.ring.tail());
}

// A gating reader that stands inside a batch holds the whole frame, and
// earliest() (where new readers and Resync start) starts at its first
// record, not at the gating reader's next one.
TEST(RingBatch, EarliestBeforeAGatingReaderInsideABatchIsTheBatchStart) {
  TestRing t(Options(RingMode::kSingleProducer, 20));
  RingProducer p(t.ring);
  const Result<uint32_t> slot = t.ring.AcquireGatingSlot(1, t.ring.tail());
  ASSERT_TRUE(slot.ok());
  RingReader gate(t.ring, t.ring.tail(), Batches());
  auto gate_reads = [&](uint32_t limit) {
    const uint32_t n = gate.read([](const RecordView&) {}, limit).records;
    t.ring.AdvanceGatingSlot(*slot, gate.position());
    return n;
  };
  // Into the second lap, the gating reader keeping up.
  while (t.ring.tail().position < kCap + kCap / 4) {
    ASSERT_TRUE(p.try_write(std::nullopt, {}, std::string(100, 'x')).ok());
    gate_reads(1000);
  }
  const RingPosition batch_at = t.ring.tail();
  RecordBatch b(t.ring.max_frame_length());
  for (int i = 0; i < 10; ++i) ASSERT_EQ(b.Append("r" + std::to_string(i)), BatchAppend::kOk);
  ASSERT_TRUE(p.try_write(b).ok());
  ASSERT_EQ(gate_reads(3), 3u);
  EXPECT_EQ(gate.position(), (RingPosition{batch_at.position, batch_at.offset + 3}));
  // Into the third lap, up to the gating reader: the lap reference moves
  // past the batch, so the gating reader is the earliest thing left.
  uint64_t written = 10;
  while (p.try_write(std::nullopt, {}, std::string(100, 'x')).ok()) ++written;
  ASSERT_GT(t.ring.tail().position, 2 * kCap);
  EXPECT_EQ(t.ring.earliest(), batch_at);
  RingReader late(t.ring, t.ring.earliest(), Batches());
  const std::vector<Got> got = ReadAll(late, 1000);
  ASSERT_EQ(got.size(), written);
  EXPECT_EQ(got[0].value, "r0");
  EXPECT_EQ(got[0].offset, batch_at.offset);
}

// A reader inside a batch that producers lap is told so, and Resync counts
// exactly the records it never got.
TEST(RingBatch, LappedInsideABatchResyncCountsTheRecordsLost) {
  TestRing t(Options(RingMode::kMultiProducer));
  RingProducer p(t.ring);
  RecordBatch b(t.ring.max_frame_length());
  for (int i = 0; i < 10; ++i) ASSERT_EQ(b.Append("r"), BatchAppend::kOk);
  ASSERT_TRUE(p.try_write(b).ok());
  RingReader r(t.ring, t.ring.earliest(), Batches());
  ASSERT_EQ(r.read([](const RecordView&) {}, 4).records, 4u);
  // Two laps of plain records over it.
  while (t.ring.tail().position < 2 * kCap) {
    ASSERT_TRUE(p.try_write(std::nullopt, {}, std::string(200, 'y')).ok());
  }
  uint32_t seen = 0;
  const ReadResult res = r.read([&](const RecordView&) { ++seen; }, 100);
  EXPECT_EQ(res.status, ReadStatus::kOverrun);
  EXPECT_EQ(seen, 0u);
  const RingPosition from = r.position();
  EXPECT_EQ(from, (RingPosition{0, 4}));
  const Lost lost = r.Resync();
  EXPECT_EQ(lost.records, r.position().offset - 4);
  uint64_t next = r.position().offset;
  ReadStatus status;
  uint64_t bad = 0;
  for (const Got& g : ReadAll(r, 1000, &status)) bad += g.offset != next++;
  EXPECT_EQ(status, ReadStatus::kOk);
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(next, t.ring.tail().offset);
}

// Random bytes written over a batch frame in the ring: read and read_copy
// report an error or deliver records, never crash or read out of bounds
// (ASan), and never hand over a record outside the frame.
TEST(RingBatch, ScribbledBatchNeverCrashesAReader) {
  std::mt19937 rng(11);
  for (int round = 0; round < 2000; ++round) {
    TestRing t(Options());
    RingProducer p(t.ring);
    RecordBatch b(1024);
    const uint32_t n = 1 + rng() % 20;
    for (uint32_t i = 0; i < n; ++i)
      ASSERT_EQ(b.Append(std::string(rng() % 30, 'x')), BatchAppend::kOk);
    ASSERT_TRUE(p.try_write(b).ok());
    const uint32_t length = b.frame_length();
    for (int k = 0; k < 3; ++k) {
      const uint32_t at = 8 + rng() % (length - 8);  // not the commit word
      t.ring.data()[at] = static_cast<std::byte>(rng());
    }
    // The bound is the frame's length field, which the scribble may have
    // changed too (the reader checks it against the ring, not the batch).
    const uint32_t bound = std::max(length, DecodeFixed32(t.ring.data() + frame::kLength));
    const std::byte* lo = t.ring.data();
    const std::byte* hi = lo + bound;
    RingReader r(t.ring, t.ring.earliest(), Batches());
    (void)r.read(
        [&](const RecordView& v) {
          ASSERT_GE(reinterpret_cast<const std::byte*>(v.value().data()), lo);
          ASSERT_LE(reinterpret_cast<const std::byte*>(v.value().data()) + v.value().size(), hi);
        },
        100);
    std::vector<std::byte> buffer(2048);
    RingReader rc(t.ring, t.ring.earliest(), Batches());
    (void)rc.read_copy(
        [&](const RecordView& v) {
          ASSERT_GE(reinterpret_cast<const std::byte*>(v.value().data()), buffer.data());
          ASSERT_LE(reinterpret_cast<const std::byte*>(v.value().data()) + v.value().size(),
                    buffer.data() + bound);
        },
        100, buffer);
  }
}

}  // namespace
}  // namespace runnel
