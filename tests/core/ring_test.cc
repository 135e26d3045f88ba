// Unit tests of the ring: rings built by hand in odd states.

#include "core/ring.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/core/test_memory.h"

namespace runnel {
namespace {

using testing::SharedMemory;
using testing::TestRing;

constexpr uint64_t kCap = 64 * 1024;

RingOptions Options(RingMode mode = RingMode::kMultiProducer, uint64_t base_offset = 0) {
  RingOptions o;
  o.capacity = kCap;
  o.mode = mode;
  o.base_offset = base_offset;
  return o;
}

struct Got {
  uint64_t offset;
  std::string key;
  bool has_key;
  std::string value;
};

std::vector<Got> ReadAll(RingReader& r, ReadStatus* status = nullptr) {
  std::vector<Got> out;
  for (;;) {
    const ReadResult res = r.read(
        [&](const RecordView& v) {
          out.push_back({v.offset(), std::string(v.key()), v.has_key(), std::string(v.value())});
        },
        1000);
    if (status) *status = res.status;
    if (res.status != ReadStatus::kOk || res.records == 0) break;
  }
  return out;
}

// Claims `n` records of `value_length` unwritten bytes and commits each
// deferred (not yet published).
void DeferRecords(RingProducer& p, uint32_t n, uint32_t value_length) {
  for (uint32_t i = 0; i < n; ++i) {
    RingClaim c = p.try_claim(0, 0, value_length, false);
    ASSERT_TRUE(c.ok());
    ASSERT_EQ(p.commit_deferred(c), CommitStatus::kOk);
  }
}

// Leaves a claim active forever, as a producer that died would.
RingClaim* Abandon(RingClaim claim) {
  static std::vector<std::unique_ptr<std::byte[]>> graveyard;
  graveyard.emplace_back(new std::byte[sizeof(RingClaim)]);
  return new (graveyard.back().get()) RingClaim(std::move(claim));
}

TEST(Ring, CreateThenAttachSeesTheSameGeometry) {
  TestRing t(Options(RingMode::kSingleProducer, 100));
  Result<Ring> attached = Ring::Attach(t.memory.span());
  ASSERT_TRUE(attached.ok()) << attached.status().ToString();
  EXPECT_EQ(attached->capacity(), kCap);
  EXPECT_EQ(attached->mode(), RingMode::kSingleProducer);
  EXPECT_EQ(attached->base_offset(), 100u);
  EXPECT_EQ(attached->max_frame_length(), kCap / 4);
  EXPECT_EQ(attached->tail(), (RingPosition{0, 100}));
}

TEST(Ring, AttachBeforeCreateIsUnavailable) {
  SharedMemory m(Ring::RequiredBytes(kCap));
  Result<Ring> r = Ring::Attach(m.span());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
}

TEST(Ring, AttachToAnotherMajorVersionNamesBothVersions) {
  TestRing t(Options());
  t.ring.control()->version = (7u << 16) | 3;
  Result<Ring> r = Ring::Attach(t.memory.span());
  ASSERT_EQ(r.status().code(), StatusCode::kVersionMismatch);
  EXPECT_NE(r.status().message().find("7.3"), std::string::npos) << r.status().message();
  const std::string ours =
      std::to_string(kRingVersionMajor) + "." + std::to_string(kRingVersionMinor);
  EXPECT_NE(r.status().message().find(ours), std::string::npos) << r.status().message();
}

TEST(Ring, AttachToScribbledDescriptorIsCorruption) {
  TestRing t(Options());
  t.ring.control()->capacity = 12345;
  EXPECT_EQ(Ring::Attach(t.memory.span()).status().code(), StatusCode::kCorruption);
  TestRing u(Options());
  u.ring.control()->magic = 0xdeadbeef;
  EXPECT_EQ(Ring::Attach(u.memory.span()).status().code(), StatusCode::kCorruption);
}

TEST(Ring, AttachToADescriptorWithAnotherSaltOrBaseOffsetIsCorruption) {
  // Values that pass every range check: only the checksum tells.
  TestRing t(Options());
  t.ring.control()->salt ^= 0x1000;
  Result<Ring> r = Ring::Attach(t.memory.span());
  ASSERT_EQ(r.status().code(), StatusCode::kCorruption);
  EXPECT_NE(r.status().message().find("checksum"), std::string::npos) << r.status().message();
  TestRing u(Options());
  u.ring.control()->base_offset += 1;
  EXPECT_EQ(Ring::Attach(u.memory.span()).status().code(), StatusCode::kCorruption);
}

TEST(Ring, AHandleKeepsTheDescriptorItAttachedWith) {
  TestRing t(Options(RingMode::kSingleProducer, 1000));
  Result<Ring> r = Ring::Attach(t.memory.span());
  ASSERT_TRUE(r.ok());
  const uint64_t salt = r->salt();
  t.ring.control()->salt ^= 0x1000;
  t.ring.control()->base_offset = 7;
  t.ring.control()->mode = 2;
  EXPECT_EQ(r->salt(), salt);
  EXPECT_EQ(r->base_offset(), 1000u);
  EXPECT_EQ(r->mode(), RingMode::kSingleProducer);
}

TEST(Ring, AttachesToARingOfMinorVersion1WhichHasNoChecksum) {
  TestRing t(Options());
  t.ring.control()->version = (kRingVersionMajor << 16) | 1;
  t.ring.control()->descriptor_crc = 0;
  EXPECT_TRUE(Ring::Attach(t.memory.span()).ok());
}

TEST(Ring, InvalidOptionsAreRefused) {
  RingOptions o = Options();
  o.capacity = 100000;  // not a power of two
  EXPECT_EQ(Ring::ValidateOptions(o).code(), StatusCode::kInvalidArgument);
  o.capacity = 1024;  // too small
  EXPECT_EQ(Ring::ValidateOptions(o).code(), StatusCode::kInvalidArgument);
  o = Options();
  o.max_frame_length = kCap;  // more than half
  EXPECT_EQ(Ring::ValidateOptions(o).code(), StatusCode::kInvalidArgument);
  SharedMemory small(4096);
  EXPECT_EQ(Ring::Create(small.span(), Options()).status().code(), StatusCode::kInvalidArgument);
}

TEST(Ring, WriteThenReadKeepsExactBytesAndOffsets) {
  TestRing t(Options(RingMode::kMultiProducer, 1000));
  RingProducer p(t.ring);
  RingReader r(t.ring, t.ring.earliest());
  std::vector<Header> h{{"trace", "t-1"}};
  WriteResult w1 = p.try_write(std::string_view("k1"), h, std::string_view("v\0one", 5));
  WriteResult w2 = p.try_write(std::nullopt, {}, "");
  WriteResult w3 = p.try_write(std::string_view(""), {}, "three");
  ASSERT_TRUE(w1.ok() && w2.ok() && w3.ok());
  EXPECT_EQ(w1.offset, 1000u);
  EXPECT_EQ(w3.offset, 1002u);
  auto got = ReadAll(r);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].offset, 1000u);
  EXPECT_EQ(got[0].key, "k1");
  EXPECT_EQ(got[0].value, std::string("v\0one", 5));
  EXPECT_FALSE(got[1].has_key);
  EXPECT_EQ(got[1].value, "");
  EXPECT_TRUE(got[2].has_key);
  EXPECT_EQ(got[2].key, "");
  EXPECT_EQ(r.position().offset, 1003u);
  EXPECT_EQ(t.ring.tail().offset, 1003u);
}

TEST(Ring, HeadersSurviveTheRing) {
  TestRing t(Options());
  RingProducer p(t.ring);
  std::vector<Header> h{{"a", "1"}, {"bb", "22"}};
  ASSERT_TRUE(p.try_write(std::nullopt, h, "v").ok());
  RingReader r(t.ring, t.ring.earliest(), ReaderOptions{.verify_crc = true});
  int n = 0;
  (void)r.read(
      [&](const RecordView& v) {
        HeaderIterator it = v.headers();
        ASSERT_TRUE(it.valid());
        EXPECT_EQ(it->name, "a");
        it.Next();
        EXPECT_EQ(it->value, "22");
        ++n;
      },
      10);
  EXPECT_EQ(n, 1);
}

TEST(Ring, EmptyRingReadsNothing) {
  TestRing t(Options());
  RingReader r(t.ring, t.ring.tail());
  const ReadResult res = r.read([](const RecordView&) { FAIL(); }, 10);
  EXPECT_EQ(res.status, ReadStatus::kOk);
  EXPECT_EQ(res.records, 0u);
  EXPECT_FALSE(r.HasData());
}

TEST(Ring, EveryReaderSeesEveryRecord) {
  TestRing t(Options());
  RingProducer p(t.ring);
  RingReader a(t.ring, t.ring.earliest());
  RingReader b(t.ring, t.ring.earliest());
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(p.try_write(std::nullopt, {}, std::to_string(i)).ok());
  auto ga = ReadAll(a);
  auto gb = ReadAll(b);
  ASSERT_EQ(ga.size(), 50u);
  ASSERT_EQ(gb.size(), 50u);
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(ga[i].value, std::to_string(i));
    EXPECT_EQ(gb[i].value, std::to_string(i));
  }
}

TEST(Ring, OversizedRecordIsRefusedNotTruncated) {
  TestRing t(Options());
  RingProducer p(t.ring);
  std::string big(kCap / 4, 'x');  // + header > max_frame_length
  WriteResult w = p.try_write(std::nullopt, {}, big);
  EXPECT_EQ(w.status, ClaimStatus::kTooLarge);
  EXPECT_EQ(t.ring.tail(), (RingPosition{0, 0}));
  std::string fits(kCap / 4 - kFrameHeaderLength, 'y');
  EXPECT_TRUE(p.try_write(std::nullopt, {}, fits).ok());
}

TEST(Ring, WrapInsertsPaddingAndRecordsStayContiguous) {
  TestRing t(Options());
  RingProducer p(t.ring);
  RingReader r(t.ring, t.ring.earliest());
  // 1000-byte values: 1040-byte frames do not divide 64 KiB, so laps end in padding.
  std::vector<std::string> sent;
  uint64_t next_expected = 0;
  for (int i = 0; i < 300; ++i) {
    std::string v(1000, static_cast<char>('a' + i % 26));
    v.replace(0, std::to_string(i).size(), std::to_string(i));
    ASSERT_TRUE(p.try_write(std::nullopt, {}, v).ok());
    sent.push_back(v);
    if (i % 20 == 19) {
      for (const Got& g : ReadAll(r)) {
        ASSERT_EQ(g.offset, next_expected);
        EXPECT_EQ(g.value, sent[next_expected]);
        ++next_expected;
      }
    }
  }
  EXPECT_EQ(next_expected, 300u);
  EXPECT_GT(t.ring.tail().position, 4 * kCap);
}

TEST(Ring, GatingReaderCausesBackPressureUntilReleased) {
  TestRing t(Options());
  Result<uint32_t> slot = t.ring.AcquireGatingSlot(1, t.ring.tail());
  ASSERT_TRUE(slot.ok());
  RingProducer p(t.ring);
  RingReader r(t.ring, t.ring.tail());
  std::string v(1000, 'v');
  int written = 0;
  while (p.try_write(std::nullopt, {}, v).ok()) ++written;
  EXPECT_EQ(p.try_write(std::nullopt, {}, v).status, ClaimStatus::kFull);
  EXPECT_EQ(written, static_cast<int>(kCap / 1040));
  // Release what was read; producers continue.
  auto got = ReadAll(r);
  ASSERT_EQ(got.size(), static_cast<size_t>(written));
  t.ring.AdvanceGatingSlot(*slot, r.position());
  EXPECT_TRUE(p.try_write(std::nullopt, {}, v).ok());
  t.ring.ReleaseGatingSlot(*slot);
  EXPECT_FALSE(t.ring.MinGatingPosition().has_value());
}

TEST(Ring, EarliestIsTheSlowestGatingReaderWhenItIsOlderThanTheLap) {
  TestRing t(Options());
  const uint32_t slot = *t.ring.AcquireGatingSlot(1, t.ring.tail());
  RingProducer p(t.ring);
  std::string v(1000, 'v');
  while (p.try_write(std::nullopt, {}, v).ok()) {
  }
  t.ring.AdvanceGatingSlot(slot, RingPosition{10 * 1040, 10});
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(p.try_write(std::nullopt, {}, v).ok());
  EXPECT_GT(t.ring.tail().position, kCap);  // wrapped: the lap reference is in lap 1
  EXPECT_EQ(t.ring.earliest(), (RingPosition{10 * 1040, 10}));
  RingReader r(t.ring, t.ring.earliest());
  auto got = ReadAll(r);
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.front().offset, 10u);
}

// A gating reader killed in the middle of AdvanceGatingSlot (a persister's
// process, kill -9): whatever it wrote of its next position, the slot still
// reads its last whole one, at once, in every call that looks at it; the
// next owner's advance is seen.
TEST(Ring, AGatingOwnerThatDiedMidAdvanceLeavesItsSlotReadable) {
  TestRing t(Options(RingMode::kSingleProducer));
  RingProducer p(t.ring);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(p.try_write(std::nullopt, {}, "r").ok());
  Result<uint32_t> slot = t.ring.AcquireGatingSlot(1, t.ring.earliest());
  ASSERT_TRUE(slot.ok());
  RingReader r(t.ring, t.ring.GatingPosition(*slot));
  ASSERT_EQ(r.read([](const RecordView&) {}, 4).records, 4u);
  const RingPosition last = r.position();
  t.ring.AdvanceGatingSlot(*slot, last);
  // The dying owner's half-done update: the pair readers are not reading,
  // scribbled, and no flip.
  auto& s = t.ring.control()->gating[*slot];
  auto& next = s.released[(s.seq + 1) & 1];
  next.position = 0xDEADBEEF;
  next.offset = 0xBADC0FFEE;
  EXPECT_EQ(t.ring.GatingPosition(*slot), last);
  EXPECT_EQ(t.ring.MinGatingPosition(), last.position);
  EXPECT_EQ(t.ring.earliest(), (RingPosition{0, 0}));  // the lap start is older
  RingUnblocker unblocker(t.ring, 1'000'000);
  EXPECT_EQ(unblocker.Poll(0).action, RingUnblocker::Action::kNone);
  // After its timeout it looks at the frame where the slot stands: committed.
  EXPECT_EQ(unblocker.Poll(2'000'000).action, RingUnblocker::Action::kNone);
  // A new owner takes over and moves on.
  t.ring.ReownGatingSlot(*slot, 2);
  ASSERT_EQ(r.read([](const RecordView&) {}, 10).records, 6u);
  t.ring.AdvanceGatingSlot(*slot, r.position());
  EXPECT_EQ(t.ring.GatingPosition(*slot), r.position());
  EXPECT_EQ(t.ring.GatingPosition(*slot).offset, 10u);
}

TEST(Ring, AllGatingSlotsTakenIsResourceExhausted) {
  TestRing t(Options());
  for (uint32_t i = 0; i < kMaxGatingSlots; ++i) {
    ASSERT_TRUE(t.ring.AcquireGatingSlot(i + 1, t.ring.tail()).ok());
  }
  EXPECT_EQ(t.ring.AcquireGatingSlot(99, t.ring.tail()).status().code(),
            StatusCode::kResourceExhausted);
}

TEST(Ring, UncommittedClaimHoldsBackLaterCommits) {
  TestRing t(Options());
  RingProducer p1(t.ring), p2(t.ring);
  RingReader r(t.ring, t.ring.earliest());
  RingClaim a = p1.try_claim(0, 0, 5, false);
  RingClaim b = p2.try_claim(0, 0, 5, false);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a.offset(), 0u);
  EXPECT_EQ(b.offset(), 1u);
  std::memcpy(b.value().data(), "bbbbb", 5);
  ASSERT_EQ(p2.commit(b), CommitStatus::kOk);
  EXPECT_TRUE(ReadAll(r).empty());  // claim order is ring order
  std::memcpy(a.value().data(), "aaaaa", 5);
  ASSERT_EQ(p1.commit(a), CommitStatus::kOk);
  auto got = ReadAll(r);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].value, "aaaaa");
  EXPECT_EQ(got[1].value, "bbbbb");
}

TEST(Ring, AClaimIsCommittedOnlyByTheProducerThatMadeIt) {
  TestRing t(Options());
  TestRing other(Options());
  RingProducer p1(t.ring), p2(t.ring), elsewhere(other.ring);
  RingReader r(t.ring, t.ring.earliest());
  RingClaim a = p1.try_claim(0, 0, 5, false);
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(p1.owns(a));
  EXPECT_FALSE(p2.owns(a));
  std::memcpy(a.value().data(), "aaaaa", 5);
  // Refused, and the claim stays its maker's to finish.
  EXPECT_EQ(p2.commit(a), CommitStatus::kNotClaimed);
  EXPECT_EQ(p2.commit_deferred(a), CommitStatus::kNotClaimed);
  EXPECT_EQ(p2.abort(a), CommitStatus::kNotClaimed);
  EXPECT_EQ(elsewhere.commit(a), CommitStatus::kNotClaimed);
  EXPECT_TRUE(a.ok());
  EXPECT_TRUE(ReadAll(r).empty());
  ASSERT_EQ(p1.commit(a), CommitStatus::kOk);
  EXPECT_FALSE(p1.owns(a));  // no longer active
  auto got = ReadAll(r);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value, "aaaaa");
  EXPECT_EQ(t.ring.aborted_claims(), 0u);
}

TEST(Ring, AbortedClaimIsSkippedAndItsOffsetIsNotReused) {
  TestRing t(Options());
  RingProducer p(t.ring);
  RingReader r(t.ring, t.ring.earliest());
  RingClaim a = p.try_claim(0, 0, 5, false);
  ASSERT_EQ(p.abort(a), CommitStatus::kOk);
  EXPECT_EQ(p.commit(a), CommitStatus::kNotClaimed);
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "after").ok());
  {
    RingClaim dropped = p.try_claim(0, 0, 3, false);  // destroyed while active: aborted
  }
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "last").ok());
  auto got = ReadAll(r);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].offset, 1u);
  EXPECT_EQ(got[1].offset, 3u);
  EXPECT_EQ(t.ring.aborted_claims(), 2u);
}

// Header bytes that do not parse would stop every reader at the record
// (kBadHeaders): commit aborts the claim instead, and says so.
TEST(Ring, CommitAbortsAClaimWhoseHeadersDoNotParse) {
  for (const RingMode mode : {RingMode::kSingleProducer, RingMode::kMultiProducer}) {
    for (const bool deferred : {false, true}) {
      SCOPED_TRACE(std::string(mode == RingMode::kSingleProducer ? "single" : "multi") +
                   (deferred ? ", deferred" : ""));
      RingOptions o = Options();
      o.mode = mode;
      TestRing t(o);
      RingProducer p(t.ring);
      RingReader r(t.ring, t.ring.earliest());
      RingClaim bad = p.try_claim(0, 4, 1, false);
      ASSERT_TRUE(bad.ok());
      const std::byte garbage[4] = {std::byte{0xff}, std::byte{0xff}, std::byte{0},
                                    std::byte{0}};  // a 65535-byte name in 4 bytes
      std::memcpy(bad.headers().data(), garbage, 4);
      EXPECT_EQ(deferred ? p.commit_deferred(bad) : p.commit(bad), CommitStatus::kBadHeaders);
      EXPECT_EQ(p.commit(bad), CommitStatus::kNotClaimed);
      const Header h{"n", "v"};
      ASSERT_TRUE(p.try_write(std::nullopt, std::span<const Header>(&h, 1), "ok").ok());
      (void)p.publish();
      auto got = ReadAll(r);
      ASSERT_EQ(got.size(), 1u);
      EXPECT_EQ(got[0].offset, 1u);
      EXPECT_EQ(got[0].value, "ok");
      EXPECT_EQ(t.ring.aborted_claims(), 1u);
    }
  }
}

// write_headers encodes a list that fills the claim's header area exactly,
// and nothing else.
TEST(Ring, WriteHeadersFillsTheHeaderAreaExactly) {
  TestRing t(Options());
  RingProducer p(t.ring);
  RingReader r(t.ring, t.ring.earliest());
  const Header h[] = {{"n", "v"}, {"name", ""}};  // 6 + 8 bytes encoded
  RingClaim wrong = p.try_claim(0, 8, 1, false);
  ASSERT_TRUE(wrong.ok());
  EXPECT_FALSE(wrong.write_headers(std::span<const Header>(h, 1)));
  ASSERT_EQ(p.abort(wrong), CommitStatus::kOk);
  RingClaim right = p.try_claim(0, 14, 1, false);
  ASSERT_TRUE(right.ok());
  ASSERT_TRUE(right.write_headers(h));
  right.value()[0] = std::byte{'v'};
  ASSERT_EQ(p.commit(right), CommitStatus::kOk);
  std::vector<std::pair<std::string, std::string>> got;
  ASSERT_EQ(r.read(
                 [&](const RecordView& v) {
                   for (HeaderIterator it = v.headers(); it.valid(); it.Next()) {
                     got.emplace_back(it->name, it->value);
                   }
                 },
                 10)
                .records,
            1u);
  EXPECT_EQ(got, (std::vector<std::pair<std::string, std::string>>{{"n", "v"}, {"name", ""}}));
}

// Assigning a claim over an active one aborts the active one, as destroying
// it does (it was left claimed: readers and gating stopped there for good).
TEST(Ring, AClaimAssignedOverAnActiveOneAbortsIt) {
  for (const RingMode mode : {RingMode::kSingleProducer, RingMode::kMultiProducer}) {
    SCOPED_TRACE(mode == RingMode::kSingleProducer ? "single producer" : "multi producer");
    RingOptions o = Options();
    o.mode = mode;
    TestRing t(o);
    RingProducer p(t.ring);
    RingReader r(t.ring, t.ring.earliest());
    RingClaim c = p.try_claim(0, 0, 1, false);  // offset 0
    ASSERT_TRUE(c.ok());
    c = p.try_claim(0, 0, 1, false);  // offset 1; offset 0 is aborted
    ASSERT_TRUE(c.ok());
    c.value()[0] = std::byte{'x'};
    ASSERT_EQ(p.commit(c), CommitStatus::kOk);
    auto got = ReadAll(r);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].offset, 1u);
    EXPECT_EQ(got[0].value, "x");
    EXPECT_EQ(t.ring.aborted_claims(), 1u);
  }
}

// Padding at the tail (an aborted or unblocked claim, the last thing in the
// ring) does not say which offset it skipped; the tail does. A reader that
// passes it is told (ended_on_padding), and SettledPosition() has the
// tail's offset, for what it reports (a consumer's lag would stay one short
// until the next record); position() keeps the last record's + 1, the safe
// place to resume from.
TEST(Ring, AReaderPastAnAbortedClaimAtTheTailCanReportTheTailsOffset) {
  for (int how = 0; how < 2; ++how) {
    SCOPED_TRACE(how == 0 ? "read" : "read_copy");
    TestRing t(Options());
    RingProducer p(t.ring);
    RingReader r(t.ring, t.ring.earliest());
    ASSERT_TRUE(p.try_write(std::nullopt, {}, "first").ok());
    RingClaim a = p.try_claim(0, 0, 5, false);  // offset 1
    ASSERT_EQ(p.abort(a), CommitStatus::kOk);
    ASSERT_EQ(t.ring.tail().offset, 2u);
    std::vector<uint64_t> offsets;
    std::array<std::byte, 4096> buffer{};
    auto handler = [&](const RecordView& v) { offsets.push_back(v.offset()); };
    const ReadResult res = how == 0 ? r.read(handler, 10) : r.read_copy(handler, 10, buffer);
    ASSERT_EQ(res.status, ReadStatus::kOk);
    EXPECT_EQ(offsets, std::vector<uint64_t>{0});
    EXPECT_TRUE(res.ended_on_padding);
    EXPECT_EQ(r.position().position, t.ring.tail().position);
    EXPECT_EQ(r.position().offset, 1u);
    EXPECT_EQ(r.SettledPosition(), t.ring.tail());
    // Not at the tail any more: nothing to settle; the next record says.
    ASSERT_TRUE(p.try_write(std::nullopt, {}, "next").ok());
    EXPECT_EQ(r.SettledPosition().offset, 1u);
    auto got = ReadAll(r);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].offset, 2u);
    EXPECT_EQ(r.position().offset, 3u);
  }
}

TEST(Ring, LappedReaderIsToldHowMuchItLost) {
  TestRing t(Options());
  RingProducer p(t.ring);
  RingReader r(t.ring, t.ring.earliest());
  std::string v(1000, 'v');
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(p.try_write(std::nullopt, {}, v).ok());
  ReadStatus st;
  auto got = ReadAll(r, &st);
  EXPECT_TRUE(got.empty());
  EXPECT_EQ(st, ReadStatus::kOverrun);
  const Lost lost = r.Resync();
  EXPECT_EQ(lost.from, (RingPosition{0, 0}));
  EXPECT_GT(lost.records, 0u);
  EXPECT_EQ(lost.bytes, lost.to.position);
  // After the resync the reader gets exactly the rest, in order.
  got = ReadAll(r, &st);
  EXPECT_EQ(st, ReadStatus::kOk);
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.front().offset, lost.records);
  EXPECT_EQ(got.back().offset, 199u);
  EXPECT_EQ(got.size(), 200 - lost.records);
}

TEST(Ring, CorruptLengthInTheRingIsReportedNotFollowed) {
  TestRing t(Options());
  RingProducer p(t.ring);
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "fine").ok());
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "scribbled").ok());
  // A hostile peer rewrites the second frame's length to run off the ring.
  std::byte* second = t.ring.At(48);
  EncodeFixed32(second + frame::kLength, 0x7FFFFFF0);
  RingReader r(t.ring, t.ring.earliest());
  ReadResult res = r.read([](const RecordView&) {}, 10);
  EXPECT_EQ(res.records, 1u);
  EXPECT_EQ(res.status, ReadStatus::kCorrupt);
  EXPECT_EQ(res.check, FrameCheck::kBadLength);
  // The reader stays on the bad frame: it does not skip silently.
  res = r.read([](const RecordView&) {}, 10);
  EXPECT_EQ(res.status, ReadStatus::kCorrupt);
}

TEST(Ring, CrcVerificationCatchesAScribbledValue) {
  TestRing t(Options());
  RingProducer p(t.ring);
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "payload").ok());
  t.ring.At(0)[kFrameHeaderLength] ^= std::byte{1};
  RingReader checked(t.ring, t.ring.earliest(), ReaderOptions{.verify_crc = true});
  EXPECT_EQ(checked.read([](const RecordView&) {}, 10).check, FrameCheck::kBadCrc);
}

TEST(Ring, CopyingReaderWithCrcChecksHandsOverTheGoodRecordsAndStopsAtTheScribbledOne) {
  TestRing t(Options());
  RingProducer p(t.ring);
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "first").ok());
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "second").ok());
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "third").ok());
  t.ring.At(48)[kFrameHeaderLength] ^= std::byte{1};  // "second"'s value
  RingReader r(t.ring, t.ring.earliest(), ReaderOptions{.verify_crc = true});
  std::vector<std::string> seen;
  std::vector<std::byte> buffer(4096);
  auto handler = [&](const RecordView& v) { seen.emplace_back(v.value()); };
  ReadResult res = r.read_copy(handler, 10, buffer);
  EXPECT_EQ(res.status, ReadStatus::kCorrupt);
  EXPECT_EQ(res.check, FrameCheck::kBadCrc);
  EXPECT_EQ(res.records, 1u);
  EXPECT_EQ(seen, std::vector<std::string>{"first"});
  EXPECT_EQ(r.position().position, 48u);
  // It stays on the bad frame: nothing after it is handed over silently.
  res = r.read_copy(handler, 10, buffer);
  EXPECT_EQ(res.status, ReadStatus::kCorrupt);
  EXPECT_EQ(res.records, 0u);
  EXPECT_EQ(seen.size(), 1u);
}

TEST(Ring, GarbageStateWithAMatchingTagIsCorrupt) {
  TestRing t(Options());
  RingProducer p(t.ring);
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "x").ok());
  EncodeFixed64(t.ring.At(0), t.ring.Tag(0) | 5);
  RingReader r(t.ring, t.ring.earliest());
  EXPECT_EQ(r.read([](const RecordView&) {}, 10).status, ReadStatus::kCorrupt);
}

// A peer scribbled on the control block: the lap reference is ahead of the
// tail, which no producer ever leaves behind. Every process used to spin in
// tail() forever (the whole bus hung, SIGTERM or not).
TEST(Ring, ControlWordsWrittenOverAreAnErrorNotAHang) {
  TestRing t(Options());
  RingProducer p(t.ring);
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "before").ok());
  RingReader r(t.ring, t.ring.earliest());
  ASSERT_EQ(ReadAll(r).size(), 1u);
  const uint64_t tail = t.ring.tail().position;
  internal::Word64(t.ring.control()->lap_position).store(tail + 8000);
  EXPECT_EQ(t.ring.tail().position, tail + 8000);  // returns: the lap reference
  (void)t.ring.earliest();
  EXPECT_EQ(p.try_claim(0, 0, 5, false).status(), ClaimStatus::kCorrupt);
  RingProducer q(t.ring);
  EXPECT_EQ(q.try_write(std::nullopt, {}, "after").status, ClaimStatus::kCorrupt);
  EXPECT_TRUE(ReadAll(r).empty());
  RingUnblocker u(t.ring, 0);
  EXPECT_EQ(u.Poll(0).action, RingUnblocker::Action::kNone);
}

// A tail word a peer moved back or on by 8 bytes: committed frames run past
// the tail, or a claim leaves an 8-byte hole no padding fits. The unblocker
// says so (once), instead of nothing: readers and persistence stop there.
TEST(Ring, TheUnblockerReportsControlWordsThatDoNotFitTheFrames) {
  for (const RingMode mode : {RingMode::kSingleProducer, RingMode::kMultiProducer}) {
    SCOPED_TRACE(static_cast<int>(mode));
    RingOptions o = Options();
    o.mode = mode;
    {
      TestRing t(o);
      RingProducer p(t.ring);
      for (int i = 0; i < 3; ++i) ASSERT_TRUE(p.try_write(std::nullopt, {}, "record").ok());
      const uint64_t tail = t.ring.tail().position;
      internal::Word64(t.ring.control()->tail).fetch_sub(1);  // position - 8
      RingUnblocker u(t.ring, 0);
      const RingUnblocker::Result r = u.Poll(0);
      EXPECT_EQ(r.action, RingUnblocker::Action::kInconsistent);
      EXPECT_EQ(r.position, tail - 8);
      EXPECT_EQ(r.bytes, 8u);
      EXPECT_EQ(u.Poll(1).action, RingUnblocker::Action::kNone);  // said once
      // With a gating reader (a durable topic's persister) that read it all.
      const uint32_t slot = *t.ring.AcquireGatingSlot(1, RingPosition{tail, 3});
      RingUnblocker gated(t.ring, 0);
      const RingUnblocker::Result g = gated.Poll(0);
      EXPECT_EQ(g.action, RingUnblocker::Action::kInconsistent);
      EXPECT_EQ(g.position, tail - 8);
      EXPECT_EQ(g.bytes, 8u);
      // The tail moves (claims move it; still behind the gate): not said
      // again at every poll.
      internal::Word64(t.ring.control()->tail).fetch_sub(1);
      EXPECT_EQ(gated.Poll(1).action, RingUnblocker::Action::kNone);
      EXPECT_EQ(u.Poll(2).action, RingUnblocker::Action::kNone);
      t.ring.ReleaseGatingSlot(slot);
    }
    {
      TestRing t(o);
      RingProducer p(t.ring);
      for (int i = 0; i < 3; ++i) ASSERT_TRUE(p.try_write(std::nullopt, {}, "record").ok());
      const uint64_t hole = t.ring.tail().position;
      internal::Word64(t.ring.control()->tail).fetch_add(1);  // position + 8
      ASSERT_TRUE(p.try_write(std::nullopt, {}, "after").ok());
      // Its producer lives: no claim of it is here, all the same.
      RingUnblocker u(t.ring, 0, [](uint64_t) { return true; });
      RingUnblocker::Result r;
      for (int64_t now = 0; now < 4 && r.action == RingUnblocker::Action::kNone; ++now) {
        r = u.Poll(now);
      }
      EXPECT_EQ(r.action, RingUnblocker::Action::kInconsistent);
      EXPECT_EQ(r.position, hole);
      EXPECT_EQ(r.bytes, 8u);
    }
  }
}

TEST(Ring, DeadMarkedClaimIsTurnedIntoPaddingAfterTheTimeout) {
  TestRing t(Options());
  RingProducer dead(t.ring), alive(t.ring);
  RingClaim* c = Abandon(dead.try_claim(0, 0, 100, false));
  ASSERT_TRUE(c->ok());
  ASSERT_TRUE(alive.try_write(std::nullopt, {}, "after").ok());
  RingReader r(t.ring, t.ring.earliest());
  EXPECT_TRUE(ReadAll(r).empty());
  RingUnblocker u(t.ring, 1'000'000);
  EXPECT_EQ(u.Poll(0).action, RingUnblocker::Action::kNone);        // stuck: timer starts
  EXPECT_EQ(u.Poll(999'999).action, RingUnblocker::Action::kNone);  // not yet
  const auto res = u.Poll(1'000'000);
  EXPECT_EQ(res.action, RingUnblocker::Action::kPadded);
  EXPECT_EQ(res.position, 0u);
  EXPECT_EQ(res.bytes, AlignedFrameLength(FrameLength(0, 0, 100)));
  auto got = ReadAll(r);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value, "after");
  EXPECT_EQ(got[0].offset, 1u);
  EXPECT_EQ(t.ring.unblocked_claims(), 1u);
  // The producer was only slow: it learns its record is lost.
  EXPECT_EQ(dead.commit(*c), CommitStatus::kUnblocked);
}

// A claim whose producer lives is never taken, however long it is held: the
// bytes that producer still writes in place would land in the records other
// producers claim after it once the padding is passed. It is taken once the
// owner is found dead.
TEST(Ring, AClaimWhoseOwnerLivesIsNotUnblocked) {
  TestRing t(Options());
  RingProducer slow(t.ring), other(t.ring);
  slow.set_owner(42);
  other.set_owner(7);
  RingClaim c = slow.try_claim(0, 0, 5, false);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(other.try_write(std::nullopt, {}, "after").ok());
  bool alive = true;
  std::vector<uint64_t> asked;
  RingUnblocker u(t.ring, 1'000'000, [&](uint64_t owner) {
    asked.push_back(owner);
    return alive;
  });
  EXPECT_EQ(u.Poll(0).action, RingUnblocker::Action::kNone);
  EXPECT_EQ(u.Poll(1'000'000).action, RingUnblocker::Action::kOwnerAlive);
  for (int64_t now = 1'500'000; now <= 10'000'000; now += 500'000) {
    const RingUnblocker::Action a = u.Poll(now).action;
    EXPECT_TRUE(a == RingUnblocker::Action::kNone || a == RingUnblocker::Action::kOwnerAlive);
  }
  ASSERT_FALSE(asked.empty());
  EXPECT_EQ(asked, std::vector<uint64_t>(asked.size(), 42));
  EXPECT_EQ(t.ring.unblocked_claims(), 0u);
  std::memcpy(c.value().data(), "slow!", 5);
  ASSERT_EQ(slow.commit(c), CommitStatus::kOk);
  RingReader r(t.ring, t.ring.earliest());
  auto got = ReadAll(r);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].value, "slow!");
  EXPECT_EQ(got[1].value, "after");
  // Dead owner: taken after the timeout.
  RingClaim d = slow.try_claim(0, 0, 5, false);
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(other.try_write(std::nullopt, {}, "later").ok());
  alive = false;
  EXPECT_EQ(u.Poll(20'000'000).action, RingUnblocker::Action::kNone);
  EXPECT_EQ(u.Poll(21'000'000).action, RingUnblocker::Action::kPadded);
  EXPECT_EQ(asked.back(), 42u);
  EXPECT_EQ(slow.commit(d), CommitStatus::kUnblocked);
  got = ReadAll(r);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value, "later");
}

TEST(Ring, DeadClaimWhereTheGatingReaderWaitsIsUnblocked) {
  TestRing t(Options());
  const uint32_t slot = *t.ring.AcquireGatingSlot(1, t.ring.tail());
  RingProducer dead(t.ring), alive(t.ring);
  ASSERT_TRUE(alive.try_write(std::nullopt, {}, "first").ok());
  RingClaim* c = Abandon(dead.try_claim(0, 0, 100, false));
  ASSERT_TRUE(c->ok());
  ASSERT_TRUE(alive.try_write(std::nullopt, {}, "after").ok());
  // The gating reader consumed "first" and now waits on the dead claim.
  RingReader r(t.ring, t.ring.earliest());
  ASSERT_EQ(ReadAll(r).size(), 1u);
  t.ring.AdvanceGatingSlot(slot, r.position());
  RingUnblocker u(t.ring, 1'000'000);
  EXPECT_EQ(u.Poll(0).action, RingUnblocker::Action::kNone);
  EXPECT_EQ(u.Poll(500'000).action, RingUnblocker::Action::kNone);
  EXPECT_EQ(u.Poll(1'000'000).action, RingUnblocker::Action::kPadded);
  auto got = ReadAll(r);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value, "after");
  // A slow gating reader on a committed frame is left alone.
  RingUnblocker v(t.ring, 1'000'000);
  ASSERT_TRUE(alive.try_write(std::nullopt, {}, "slow").ok());
  EXPECT_EQ(v.Poll(0).action, RingUnblocker::Action::kNone);
  EXPECT_EQ(v.Poll(5'000'000).action, RingUnblocker::Action::kNone);
}

// A gate that stood still because nothing was produced: the timeout runs
// from the first poll that sees the claim, not from when the gate stopped.
// (A live claim held 10-100 ms after an idle half second was taken for dead
// and its record lost.)
TEST(Ring, AClaimAfterAnIdleGateGetsTheWholeTimeout) {
  TestRing t(Options());
  const uint32_t slot = *t.ring.AcquireGatingSlot(1, t.ring.tail());
  RingProducer p(t.ring);
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "first").ok());
  RingReader r(t.ring, t.ring.earliest());
  ASSERT_EQ(ReadAll(r).size(), 1u);
  t.ring.AdvanceGatingSlot(slot, r.position());
  RingUnblocker u(t.ring, 1'000'000);
  EXPECT_EQ(u.Poll(0).action, RingUnblocker::Action::kNone);
  EXPECT_EQ(u.Poll(5'000'000).action, RingUnblocker::Action::kNone);  // idle, 5 timeouts
  RingClaim c = p.try_claim(0, 0, 5, false);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(u.Poll(5'000'001).action, RingUnblocker::Action::kNone);
  EXPECT_EQ(u.Poll(5'900'000).action, RingUnblocker::Action::kNone);
  std::memcpy(c.value().data(), "hello", 5);
  ASSERT_EQ(p.commit(c), CommitStatus::kOk);
  auto got = ReadAll(r);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value, "hello");
  t.ring.AdvanceGatingSlot(slot, r.position());
  // Still dead claims are found: the same wait, after the claim is seen.
  RingProducer dead(t.ring);
  RingClaim* d = Abandon(dead.try_claim(0, 0, 5, false));
  ASSERT_TRUE(d->ok());
  EXPECT_EQ(u.Poll(20'000'000).action, RingUnblocker::Action::kNone);
  EXPECT_EQ(u.Poll(20'900'000).action, RingUnblocker::Action::kNone);
  EXPECT_EQ(u.Poll(21'000'000).action, RingUnblocker::Action::kPadded);
}

// Writes `value` through `p` until the ring refuses; returns how many went in.
int WriteUntilFull(RingProducer& p, std::string_view value, int at_most) {
  for (int i = 0; i < at_most; ++i) {
    const WriteResult w = p.try_write(std::nullopt, {}, value);
    if (w.status == ClaimStatus::kFull) return i;
    EXPECT_TRUE(w.ok());
  }
  return at_most;
}

// A ring nobody gated, taken over late (a persistence thread arriving after
// the producers): earliest() is the start of the newest lap, but everything
// from the open claim at the claim horizon on is still there. OldestIntact()
// finds that claim, with its offset, so the newcomer misses nothing.
TEST(Ring, OldestIntactIsTheOpenClaimAtTheClaimHorizonALapBeforeEarliest) {
  TestRing t(Options());
  RingProducer stuck(t.ring), other(t.ring);
  const std::string v(200, 'v');
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(other.try_write(std::nullopt, {}, v).ok());
  RingClaim c = stuck.try_claim(0, 0, 8, false);  // offset 3, left open
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c.offset(), 3u);
  // The others fill a ring past the claim, overwriting offsets 0..2.
  uint64_t last = 0;
  for (;;) {
    WriteResult w = other.try_write(std::nullopt, {}, v);
    if (!w.ok()) break;
    last = w.offset;
  }
  const RingPosition e = t.ring.earliest();
  EXPECT_GT(e.offset, 3u);  // the newest lap starts after the claim
  const RingPosition oldest = t.ring.OldestIntact();
  EXPECT_EQ(oldest.position, c.position());
  EXPECT_EQ(oldest.offset, 3u);
  // From there a reader gets the claim (once committed) and everything after.
  ASSERT_EQ(stuck.commit(c), CommitStatus::kOk);
  RingReader r(t.ring, oldest);
  auto got = ReadAll(r);
  ASSERT_EQ(got.size(), last - 2);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].offset, i + 3);
}

TEST(Ring, OldestIntactIsEarliestWhereProducersMayLapAnything) {
  TestRing single(Options(RingMode::kSingleProducer));
  RingProducer p(single.ring);
  const std::string v(200, 'v');
  for (int i = 0; i < 2000; ++i) ASSERT_TRUE(p.try_write(std::nullopt, {}, v).ok());
  EXPECT_EQ(single.ring.OldestIntact(), single.ring.earliest());
  // A gating reader bounds the producers: its position is the answer.
  TestRing gated(Options());
  auto slot = gated.ring.AcquireGatingSlot(7, gated.ring.tail());
  ASSERT_TRUE(slot.ok());
  RingProducer q(gated.ring);
  ASSERT_TRUE(q.try_write(std::nullopt, {}, v).ok());
  EXPECT_EQ(gated.ring.OldestIntact(), gated.ring.earliest());
}

TEST(Ring, ProducersDoNotLapAnotherProducersOpenClaim) {
  // No gating reader: a memory-only topic. A producer stalled between claim
  // and commit (preempted) must not have its record overwritten by the
  // others, nor write its late bytes into their newer records.
  TestRing t(Options());
  RingProducer slow(t.ring), fast(t.ring);
  RingReader r(t.ring, t.ring.earliest());
  RingClaim c = slow.try_claim(0, 0, 100, false);
  ASSERT_TRUE(c.ok());
  std::memset(c.value().data(), 's', 100);
  const std::string v(1000, 'f');
  const int n = WriteUntilFull(fast, v, 1000);
  // Less than a ring: the claim's frame stays unwritten by anybody else.
  EXPECT_LT(n * AlignedFrameLength(FrameLength(0, 0, 1000)), kCap);
  EXPECT_GT(n, 50);
  EXPECT_FALSE(fast.WaitForSpace(1'000'000));  // still held: times out
  ASSERT_EQ(slow.commit(c), CommitStatus::kOk);
  auto got = ReadAll(r);
  ASSERT_EQ(got.size(), static_cast<size_t>(n) + 1);
  EXPECT_EQ(got[0].value, std::string(100, 's'));
  for (size_t i = 1; i < got.size(); ++i) {
    EXPECT_EQ(got[i].offset, i);
    EXPECT_EQ(got[i].value, v);
  }
  // Committed: the others go on into the next lap.
  EXPECT_TRUE(fast.WaitForSpace(0));
  EXPECT_TRUE(fast.try_write(std::nullopt, {}, v).ok());
}

TEST(Ring, ADeadClaimHoldsTheOtherProducersOnlyUntilItIsUnblocked) {
  TestRing t(Options());
  RingProducer dead(t.ring), alive(t.ring);
  RingClaim* c = Abandon(dead.try_claim(0, 0, 100, false));
  ASSERT_TRUE(c->ok());
  const std::string v(1000, 'a');
  const int n = WriteUntilFull(alive, v, 1000);
  ASSERT_LT(n, 1000);
  EXPECT_EQ(RingUnblocker(t.ring, 0).Unblock(0).action, RingUnblocker::Action::kPadded);
  // Now the producers run free again, lap after lap.
  EXPECT_EQ(WriteUntilFull(alive, v, 500), 500);
  EXPECT_EQ(dead.commit(*c), CommitStatus::kUnblocked);
}

// The unblocker's own cursor restarts at the lap reference once the
// producers lap it, which can be past a dead claim that holds the claim
// horizon: it watches the horizon too, or the producers would wait forever.
TEST(Ring, ADeadClaimBehindTheLapReferenceIsUnblockedAtTheHorizon) {
  TestRing t(Options());
  RingProducer dead(t.ring), alive(t.ring);
  const std::string v(1000, 'a');
  ASSERT_EQ(WriteUntilFull(alive, v, 30), 30);  // mid-lap
  RingClaim* c = Abandon(dead.try_claim(0, 0, 100, false));
  ASSERT_TRUE(c->ok());
  ASSERT_LT(WriteUntilFull(alive, v, 1000), 1000);       // into the next lap, then held
  ASSERT_GT(t.ring.earliest().position, c->position());  // the lap reference passed it
  RingUnblocker u(t.ring, 1'000'000);                    // a broker that starts now
  EXPECT_EQ(u.Poll(0).action, RingUnblocker::Action::kNone);
  const RingUnblocker::Result r = u.Poll(1'000'000);
  EXPECT_EQ(r.action, RingUnblocker::Action::kPadded);
  EXPECT_EQ(r.position, c->position());
  EXPECT_EQ(WriteUntilFull(alive, v, 500), 500);
}

// A gating reader that leaves hands the producers its position as the claim
// horizon: an open claim just past it stays theirs to respect.
TEST(Ring, AGatingReaderThatLeavesKeepsOpenClaimsPastItSafe) {
  TestRing t(Options());
  RingProducer slow(t.ring), fast(t.ring);
  const uint32_t slot = *t.ring.AcquireGatingSlot(1, t.ring.tail());
  const std::string v(1000, 'f');
  ASSERT_EQ(WriteUntilFull(fast, v, 10), 10);
  RingReader gate(t.ring, t.ring.earliest());
  ASSERT_EQ(ReadAll(gate).size(), 10u);
  t.ring.AdvanceGatingSlot(slot, gate.position());
  RingClaim c = slow.try_claim(0, 0, 100, false);
  ASSERT_TRUE(c.ok());
  std::memset(c.value().data(), 's', 100);
  ASSERT_LT(WriteUntilFull(fast, v, 1000), 1000);  // held by the gating reader
  t.ring.ReleaseGatingSlot(slot);
  ASSERT_LT(WriteUntilFull(fast, v, 1000), 1000);  // now held by the open claim
  const RingPosition at{c.position(), c.offset()};
  ASSERT_EQ(slow.commit(c), CommitStatus::kOk);
  RingReader r(t.ring, at);
  const ReadResult res =
      r.read([&](const RecordView& rec) { EXPECT_EQ(rec.value(), std::string(100, 's')); }, 1);
  EXPECT_EQ(res.records, 1u);
}

TEST(Ring, AScribbledFrameDoesNotStopTheProducers) {
  TestRing t(Options());
  RingProducer p(t.ring);
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "fine").ok());
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "scribbled").ok());
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "after").ok());
  EncodeFixed32(t.ring.At(48) + frame::kLength, 0x7FFFFFF0);
  // A lap and a half of records: the horizon steps over the bad frame.
  EXPECT_EQ(WriteUntilFull(p, std::string(1000, 'x'), 100), 100);
}

TEST(Ring, ProducersLeftBehindByAGatingReaderRunOnWhenItLeaves) {
  TestRing t(Options());
  RingProducer p(t.ring);
  const uint32_t slot = *t.ring.AcquireGatingSlot(1, t.ring.tail());
  RingReader r(t.ring, t.ring.earliest());
  const std::string v(1000, 'g');
  // Three laps while the gating reader keeps up; the horizon stays at 0.
  for (int lap = 0; lap < 3; ++lap) {
    ASSERT_GT(WriteUntilFull(p, v, 1000), 0);
    ASSERT_FALSE(ReadAll(r).empty());
    t.ring.AdvanceGatingSlot(slot, r.position());
  }
  t.ring.ReleaseGatingSlot(slot);
  EXPECT_EQ(WriteUntilFull(p, v, 300), 300);
}

TEST(Ring, ClaimThatDiedBeforeMarkingIsFoundAndFilled) {
  TestRing t(Options());
  RingProducer dead(t.ring), alive(t.ring);
  RingClaim* c = Abandon(dead.try_claim(0, 0, 200, false));
  ASSERT_TRUE(c->ok());
  // Undo the marker: as if the producer died right after winning the tail CAS.
  EncodeFixed64(t.ring.At(0), 0);
  ASSERT_TRUE(alive.try_write(std::nullopt, {}, "after").ok());
  RingUnblocker u(t.ring, 0);
  const auto res = u.Unblock(0);
  EXPECT_EQ(res.action, RingUnblocker::Action::kHoleFilled);
  EXPECT_EQ(res.bytes, AlignedFrameLength(FrameLength(0, 0, 200)));
  RingReader r(t.ring, t.ring.earliest());
  auto got = ReadAll(r);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value, "after");
}

TEST(Ring, LateProducerLosesToAnUnblockerThatPoisonedItsSlot) {
  TestRing t(Options());
  RingProducer slow(t.ring);
  RingClaim* c = Abandon(slow.try_claim(0, 0, 16, false));
  EncodeFixed64(t.ring.At(0), 0);  // not marked yet
  RingUnblocker u(t.ring, 0);
  ASSERT_EQ(u.Unblock(0).action, RingUnblocker::Action::kHoleFilled);
  EXPECT_EQ(slow.commit(*c), CommitStatus::kUnblocked);
}

TEST(Ring, UnblockerLeavesCommittedFramesAlone) {
  TestRing t(Options());
  RingProducer p(t.ring);
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "ok").ok());
  RingUnblocker u(t.ring, 0);
  EXPECT_EQ(u.Unblock(0).action, RingUnblocker::Action::kNone);
  EXPECT_EQ(u.Poll(1).action, RingUnblocker::Action::kNone);
  EXPECT_EQ(u.Poll(2).action, RingUnblocker::Action::kNone);
  RingReader r(t.ring, t.ring.earliest());
  EXPECT_EQ(ReadAll(r).size(), 1u);
}

TEST(Ring, BlockingWaitTimesOutWhenNothingArrives) {
  TestRing t(Options());
  RingReader r(t.ring, t.ring.tail());
  const int64_t start = MonotonicNanos();
  EXPECT_FALSE(r.Wait(WaitStrategy::kBlocking, 20'000'000));
  EXPECT_GE(MonotonicNanos() - start, 20'000'000);
}

TEST(Ring, BlockingWaitIsWokenByACommit) {
  for (WaitStrategy s :
       {WaitStrategy::kBlocking, WaitStrategy::kSpinYield, WaitStrategy::kBusySpin}) {
    TestRing t(Options());
    RingReader r(t.ring, t.ring.tail());
    std::thread producer([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      RingProducer p(t.ring);
      ASSERT_TRUE(p.try_write(std::nullopt, {}, "wake").ok());
    });
    EXPECT_TRUE(r.Wait(s, 10'000'000'000));
    producer.join();
    EXPECT_EQ(ReadAll(r).size(), 1u);
  }
}

TEST(Ring, ProducerWaitingForSpaceIsWokenByTheGatingReader) {
  TestRing t(Options());
  Result<uint32_t> slot = t.ring.AcquireGatingSlot(1, t.ring.tail());
  ASSERT_TRUE(slot.ok());
  RingProducer p(t.ring);
  std::string v(1000, 'v');
  while (p.try_write(std::nullopt, {}, v).ok()) {
  }
  RingReader r(t.ring, t.ring.earliest());
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    (void)ReadAll(r);
    t.ring.AdvanceGatingSlot(*slot, r.position());
  });
  EXPECT_TRUE(p.WaitForSpace(10'000'000'000));
  releaser.join();
  EXPECT_TRUE(p.try_write(std::nullopt, {}, v).ok());
}

TEST(Ring, ProducerWaitsUntilItsRecordIsDurable) {
  TestRing t(Options());
  const uint32_t slot = *t.ring.AcquireGatingSlot(1, t.ring.tail());
  RingProducer p(t.ring);
  const WriteResult w = p.try_write(std::nullopt, {}, "durable me");
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(t.ring.WaitForDurable(w.offset, 1'000'000));
  std::thread persister([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    t.ring.PublishDurable(slot, t.ring.tail());
  });
  EXPECT_TRUE(t.ring.WaitForDurable(w.offset, 10'000'000'000));
  persister.join();
  EXPECT_EQ(t.ring.Durable(slot).offset, 1u);
  // The largest timeout waits (it used to overflow into the past).
  const WriteResult w2 = p.try_write(std::nullopt, {}, "and me");
  ASSERT_TRUE(w2.ok());
  std::thread persister2([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    t.ring.PublishDurable(slot, t.ring.tail());
  });
  EXPECT_TRUE(t.ring.WaitForDurable(w2.offset, INT64_MAX));
  persister2.join();
}

// A persister past an aborted last claim has everything up to the tail
// durable: a wait for the skipped offset ends (it waited for the next
// record), and so does one for the offset after the tail's only later.
TEST(Ring, DurabilityWaitForAnAbortedLastOffsetEnds) {
  TestRing t(Options());
  const uint32_t slot = *t.ring.AcquireGatingSlot(1, t.ring.tail());
  RingProducer p(t.ring);
  RingReader r(t.ring, t.ring.earliest());
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "kept").ok());  // offset 0
  RingClaim c = p.try_claim(0, 0, 4, false);                // offset 1
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(p.abort(c), CommitStatus::kOk);
  EXPECT_EQ(ReadAll(r).size(), 1u);
  EXPECT_EQ(r.position().offset, 1u);  // the last record's + 1
  t.ring.PublishDurable(slot, r.position());
  EXPECT_TRUE(t.ring.WaitForDurable(0, 0));
  EXPECT_TRUE(t.ring.WaitForDurable(1, 0));
  EXPECT_FALSE(t.ring.WaitForDurable(2, 1'000'000));
  // Not at the tail: only what the slot's offset says.
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "later").ok());  // offset 2
  EXPECT_FALSE(t.ring.WaitForDurable(1, 1'000'000));
}

TEST(Ring, DurabilityWaitStopsOnAPersisterError) {
  TestRing t(Options());
  const uint32_t slot = *t.ring.AcquireGatingSlot(1, t.ring.tail());
  RingProducer p(t.ring);
  const WriteResult w = p.try_write(std::nullopt, {}, "x");
  t.ring.SetGatingError(slot, 28 /* ENOSPC */);
  const int64_t start = MonotonicNanos();
  EXPECT_FALSE(t.ring.WaitForDurable(w.offset, 10'000'000'000));
  EXPECT_LT(MonotonicNanos() - start, 1'000'000'000);
  EXPECT_EQ(t.ring.GatingError(slot), 28);
}

TEST(Ring, ScanReturnsWholeFramesAndWrapPaddingThatSaysItsLength) {
  TestRing t(Options());
  const uint32_t slot = *t.ring.AcquireGatingSlot(1, t.ring.tail());
  RingProducer p(t.ring);
  std::string v(1000, 'v');
  const int per_lap = static_cast<int>(kCap / 1040);
  for (int i = 0; i < per_lap; ++i) ASSERT_TRUE(p.try_write(std::nullopt, {}, v).ok());
  RingReader r(t.ring, t.ring.earliest());
  std::vector<uint64_t> offsets;
  auto on_frame = [&](const RecordView& view, uint64_t) { offsets.push_back(view.offset()); };
  auto e = r.Scan(kCap * 2, on_frame);
  EXPECT_EQ(e.status, ReadStatus::kOk);
  EXPECT_EQ(e.begin, 0u);
  EXPECT_EQ(e.end, static_cast<uint64_t>(per_lap) * 1040);
  EXPECT_EQ(e.records, static_cast<uint32_t>(per_lap));
  r.Consume(e);
  t.ring.AdvanceGatingSlot(slot, r.position());
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(p.try_write(std::nullopt, {}, v).ok());
  // The wrap padding (16 bytes: it says its length) is an extent of its own.
  e = r.Scan(kCap, on_frame);
  EXPECT_EQ(e.records, 0u);
  EXPECT_EQ(e.begin, static_cast<uint64_t>(per_lap) * 1040);
  EXPECT_EQ(e.end, kCap);
  EXPECT_EQ(e.next.position, kCap);
  r.Consume(e);
  e = r.Scan(kCap, on_frame);
  EXPECT_EQ(e.records, 2u);
  EXPECT_EQ(e.begin, kCap);
  EXPECT_EQ(e.end, kCap + 2 * 1040);
  ASSERT_EQ(offsets.size(), static_cast<size_t>(per_lap + 2));
  for (size_t i = 0; i < offsets.size(); ++i) EXPECT_EQ(offsets[i], i);
}

// A reader that registers late (a broker adopting a ring) can be lapped
// before it scans anything: Scan must say so, not report an empty ring.
TEST(Ring, AScanOfALappedReaderSaysOverrun) {
  for (RingMode mode : {RingMode::kMultiProducer, RingMode::kSingleProducer}) {
    TestRing t(Options(mode));
    RingProducer p(t.ring);
    RingReader r(t.ring, t.ring.earliest());
    const std::string v(1000, 'v');
    const int per_lap = static_cast<int>(kCap / 1040);
    for (int i = 0; i < 2 * per_lap + 3; ++i) ASSERT_TRUE(p.try_write(std::nullopt, {}, v).ok());
    ASSERT_TRUE(r.Lapped());
    uint32_t seen = 0;
    const auto e = r.Scan(kCap, [&](const RecordView&, uint64_t) { ++seen; });
    EXPECT_EQ(e.status, ReadStatus::kOverrun);
    const Lost lost = r.Resync();
    EXPECT_EQ(lost.from.offset, 0u);
    EXPECT_EQ(lost.to.offset, t.ring.earliest().offset);
    const auto after = r.Scan(kCap, [&](const RecordView&, uint64_t) { ++seen; });
    EXPECT_EQ(after.status, ReadStatus::kOk);
    EXPECT_GT(after.records, 0u);
  }
}

// A frame whose header a lapping producer has not reached yet, but whose
// body the next producer already rewrote, fails its CRC: that is an overrun
// too, as read() says, not a corrupt ring (the persister stopped the
// partition for good instead of skipping).
TEST(Ring, AScanOfAFrameALapIsRewritingSaysOverrun) {
  TestRing t(Options());
  RingProducer p1(t.ring), p2(t.ring);
  const std::string v(1000, 'v');  // frames of 1040 bytes
  const int per_lap = static_cast<int>(kCap / 1040);
  for (int i = 0; i < per_lap; ++i) ASSERT_TRUE(p1.try_write(std::nullopt, {}, v).ok());
  RingReader r(t.ring, RingPosition{1040, 1}, ReaderOptions{.verify_crc = true});
  // Next lap: p1's claim covers [0, 1200) (frame 1's header at 1040 is in
  // its unwritten value); p2's record after it rewrites frame 1's body.
  RingClaim c1 = p1.try_claim(0, 0, 1160, false);
  ASSERT_TRUE(c1.ok());
  ASSERT_EQ(c1.position() % kCap, 0u);
  ASSERT_TRUE(p2.try_write(std::nullopt, {}, std::string(600, 'w')).ok());
  const auto e = r.Scan(kCap, [](const RecordView&, uint64_t) {});
  EXPECT_EQ(e.status, ReadStatus::kOverrun);
  RingReader r2(t.ring, RingPosition{1040, 1}, ReaderOptions{.verify_crc = true});
  EXPECT_EQ(r2.read([](const RecordView&) {}, 10).status, ReadStatus::kOverrun);
  (void)p1.abort(c1);
}

TEST(Ring, SingleProducerModeWorksTheSame) {
  TestRing t(Options(RingMode::kSingleProducer, 5));
  RingProducer p(t.ring);
  RingReader r(t.ring, t.ring.earliest());
  std::string v(3000, 's');
  uint64_t expected = 5;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(p.try_write(std::nullopt, {}, v).ok());
    for (const Got& g : ReadAll(r)) EXPECT_EQ(g.offset, expected++);
  }
  EXPECT_EQ(expected, 105u);
}

// A single producer does not mark its claim: its commit is the only write to
// the commit word. A claim it abandons is found as a hole ending at the tail,
// and the producer, if only slow, learns its record was lost.
TEST(Ring, SingleProducerClaimIsUnmarkedAndADeadOneIsFilledAsAHole) {
  TestRing t(Options(RingMode::kSingleProducer));
  RingProducer p(t.ring);
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "first").ok());
  const uint64_t at = t.ring.tail().position;
  const uint64_t before = DecodeFixed64(t.ring.At(at));
  RingClaim* c = Abandon(p.try_claim(0, 0, 100, false));
  ASSERT_TRUE(c->ok());
  EXPECT_EQ(DecodeFixed64(t.ring.At(at)), before);  // untouched until commit
  RingReader r(t.ring, t.ring.earliest());
  ASSERT_EQ(ReadAll(r).size(), 1u);
  RingUnblocker u(t.ring, 1'000'000);
  EXPECT_EQ(u.Poll(0).action, RingUnblocker::Action::kNone);
  const auto res = u.Poll(1'000'000);
  EXPECT_EQ(res.action, RingUnblocker::Action::kHoleFilled);
  EXPECT_EQ(res.position, at);
  EXPECT_EQ(res.bytes, AlignedFrameLength(FrameLength(0, 0, 100)));
  EXPECT_EQ(p.commit(*c), CommitStatus::kUnblocked);
  // The producer goes on after the hole; readers skip it.
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "after").ok());
  auto got = ReadAll(r);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value, "after");
  EXPECT_EQ(got[0].offset, 2u);
}

// A single producer commits with a plain store and checks for sleepers
// behind a compiler barrier only; readers about to sleep run HeavyFence. A
// lost wake-up would leave the reader asleep for a whole 100 ms slice. Each
// round the producer commits about when the reader ends its 20 us spin phase
// and goes to sleep. (The window a missing fence opens is tens of
// nanoseconds wide: this test shows wake-ups work in every round, it cannot
// prove the fence; the argument for that is in docs/ring.md.)
TEST(Ring, SingleProducerWakesASleepingReaderEveryTime) {
  TestRing t(Options(RingMode::kSingleProducer));
  std::atomic<uint32_t> seen{0};
  std::atomic<int64_t> worst_ns{0};
  constexpr uint32_t kRounds = 1000;
  const RingPosition start = t.ring.tail();
  std::thread reader([&] {
    RingReader r(t.ring, start);
    for (uint32_t i = 0; i < kRounds; ++i) {
      if (!r.Wait(WaitStrategy::kBlocking, 5'000'000'000)) return;
      int64_t committed_at = 0;
      const ReadResult res =
          r.read([&](const RecordView& v) { std::memcpy(&committed_at, v.value().data(), 8); }, 1);
      if (res.records != 1) return;
      const int64_t late = MonotonicNanos() - committed_at;
      if (late > worst_ns.load()) worst_ns.store(late);
      seen.store(i + 1, std::memory_order_release);
    }
  });
  RingProducer p(t.ring);
  for (uint32_t i = 0; i < kRounds; ++i) {
    // 15-30 us: around the end of the reader's spin phase.
    const int64_t gap = 15'000 + static_cast<int64_t>(i % 16) * 1'000;
    const int64_t until = MonotonicNanos() + gap;
    while (MonotonicNanos() < until) CpuRelax();
    RingClaim c = p.try_claim(0, 0, 8, false);
    ASSERT_TRUE(c.ok());
    const int64_t now = MonotonicNanos();
    std::memcpy(c.value().data(), &now, 8);
    ASSERT_EQ(p.commit(c), CommitStatus::kOk);
    while (seen.load(std::memory_order_acquire) < i + 1) {
      ASSERT_LT(MonotonicNanos() - now, 10'000'000'000) << "round " << i;
      CpuRelax();
    }
  }
  reader.join();
  EXPECT_EQ(seen.load(), kRounds);
  EXPECT_LT(worst_ns.load(), 50'000'000) << "a wake-up was lost (slept a whole slice)";
}

// Where membarrier works, a process that registers can skip the producer's
// full fence; where it does not, nobody registers, so nobody skips it.
TEST(Ring, LightFenceIsOnlyUsedWhereTheHeavyFenceWorks) {
  const bool registered = RegisterLightFence();
  if (registered) {
    EXPECT_TRUE(HeavyFence());
  }
  if (!HeavyFence()) {
    EXPECT_FALSE(registered);
  }
  EXPECT_EQ(RegisterLightFence(), registered);  // once per process
}

// Batching on a single-producer ring: deferred records are sealed but
// invisible until publish(), then all appear at once, in order, exact.
TEST(Ring, DeferredRecordsAppearTogetherWhenPublished) {
  TestRing t(Options(RingMode::kSingleProducer, 100));
  RingProducer p(t.ring);
  RingReader r(t.ring, t.ring.earliest());
  for (const char* v : {"one", "two", "three"}) {
    RingClaim c = p.try_claim(0, 0, static_cast<uint32_t>(strlen(v)), false);
    ASSERT_TRUE(c.ok());
    std::memcpy(c.value().data(), v, strlen(v));
    ASSERT_EQ(p.commit_deferred(c), CommitStatus::kOk);
  }
  EXPECT_EQ(p.deferred(), 3u);
  EXPECT_FALSE(r.HasData());
  EXPECT_TRUE(ReadAll(r).empty());
  const PublishResult res = p.publish();
  EXPECT_EQ(res.published, 3u);
  EXPECT_EQ(res.unblocked, 0u);
  EXPECT_EQ(p.deferred(), 0u);
  auto got = ReadAll(r);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].value, "one");
  EXPECT_EQ(got[0].offset, 100u);
  EXPECT_EQ(got[2].value, "three");
  EXPECT_EQ(got[2].offset, 102u);
  // Every frame passes its CRC.
  RingReader strict(t.ring, t.ring.earliest(), ReaderOptions{.verify_crc = true});
  EXPECT_EQ(ReadAll(strict).size(), 3u);
  EXPECT_EQ(p.publish().published, 0u);  // nothing pending
}

TEST(Ring, DeferredCommitOfNoClaimIsRefusedAndChangesNothing) {
  TestRing t(Options(RingMode::kSingleProducer));
  RingProducer p(t.ring);
  RingClaim none;
  EXPECT_EQ(p.commit_deferred(none), CommitStatus::kNotClaimed);
  RingClaim c = p.try_claim(0, 0, 1, false);
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(p.commit_deferred(c), CommitStatus::kOk);
  EXPECT_EQ(p.commit_deferred(c), CommitStatus::kNotClaimed);  // already committed
  EXPECT_EQ(p.commit(c), CommitStatus::kNotClaimed);
  EXPECT_EQ(p.deferred(), 0u);  // commit() published the batch anyway
  RingReader r(t.ring, t.ring.earliest());
  EXPECT_EQ(ReadAll(r).size(), 1u);
}

TEST(Ring, CommitPublishesThePendingDeferredRecordsWithItself) {
  TestRing t(Options(RingMode::kSingleProducer));
  RingProducer p(t.ring);
  RingClaim a = p.try_claim(0, 0, 1, false);
  ASSERT_TRUE(a.ok());
  a.value()[0] = std::byte{'a'};
  ASSERT_EQ(p.commit_deferred(a), CommitStatus::kOk);
  RingClaim b = p.try_claim(0, 0, 1, false);
  ASSERT_TRUE(b.ok());
  b.value()[0] = std::byte{'b'};
  ASSERT_EQ(p.commit(b), CommitStatus::kOk);
  EXPECT_EQ(p.deferred(), 0u);
  RingReader r(t.ring, t.ring.earliest());
  auto got = ReadAll(r);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].value, "a");
  EXPECT_EQ(got[1].value, "b");
}

TEST(Ring, AFullBatchPublishesItself) {
  TestRing t(Options(RingMode::kSingleProducer));
  RingProducer p(t.ring);
  ASSERT_NO_FATAL_FAILURE(DeferRecords(p, RingProducer::kMaxDeferred, 8));
  EXPECT_EQ(p.deferred(), 0u);
  RingReader r(t.ring, t.ring.earliest());
  EXPECT_EQ(ReadAll(r).size(), RingProducer::kMaxDeferred);
  // So does a batch that reaches a quarter of the ring (16 KiB here).
  ASSERT_NO_FATAL_FAILURE(DeferRecords(p, 3, 6000));
  EXPECT_EQ(p.deferred(), 0u);
  EXPECT_EQ(ReadAll(r).size(), 3u);
}

TEST(Ring, DeferredCommitOnAMultiProducerRingPublishesAtOnce) {
  TestRing t(Options(RingMode::kMultiProducer));
  RingProducer p(t.ring);
  RingClaim c = p.try_claim(0, 0, 2, false);
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(p.commit_deferred(c), CommitStatus::kOk);
  EXPECT_EQ(p.deferred(), 0u);
  RingReader r(t.ring, t.ring.earliest());
  EXPECT_EQ(ReadAll(r).size(), 1u);
}

// A producer that waits for space publishes its batch first: the gating
// reader could never release space while it stops at unpublished records.
TEST(Ring, ProducerThatFindsTheRingFullPublishesItsBatch) {
  TestRing t(Options(RingMode::kSingleProducer));
  const uint32_t slot = *t.ring.AcquireGatingSlot(1, t.ring.tail());
  RingProducer p(t.ring);
  RingReader r(t.ring, t.ring.GatingPosition(slot));
  uint32_t written = 0;
  for (;;) {
    RingClaim c = p.try_claim(0, 0, 1000, false);
    if (c.status() == ClaimStatus::kFull) break;
    ASSERT_TRUE(c.ok());
    ASSERT_EQ(p.commit_deferred(c), CommitStatus::kOk);
    ++written;
  }
  EXPECT_EQ(p.deferred(), 0u);
  EXPECT_EQ(ReadAll(r).size(), written);
  t.ring.AdvanceGatingSlot(slot, r.position());
  RingClaim c = p.try_claim(0, 0, 1000, false);
  EXPECT_TRUE(c.ok());
}

// A producer that dies with a batch pending leaves one hole that an
// unblocker fills; if it was only slow, publish() tells it the batch is lost.
TEST(Ring, AnAbandonedBatchIsUnblockedAsOneHole) {
  TestRing t(Options(RingMode::kSingleProducer));
  RingProducer p(t.ring);
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "before").ok());
  const uint64_t at = t.ring.tail().position;
  ASSERT_NO_FATAL_FAILURE(DeferRecords(p, 3, 16));
  RingReader r(t.ring, t.ring.earliest());
  ASSERT_EQ(ReadAll(r).size(), 1u);
  RingUnblocker u(t.ring, 1'000'000);
  EXPECT_EQ(u.Poll(0).action, RingUnblocker::Action::kNone);
  const auto res = u.Poll(1'000'000);
  EXPECT_EQ(res.action, RingUnblocker::Action::kHoleFilled);
  EXPECT_EQ(res.position, at);
  EXPECT_EQ(res.bytes, 3 * AlignedFrameLength(FrameLength(0, 0, 16)));
  const PublishResult pr = p.publish();
  EXPECT_EQ(pr.published, 0u);
  EXPECT_EQ(pr.unblocked, 3u);
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "after").ok());
  auto got = ReadAll(r);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value, "after");
  EXPECT_EQ(got[0].offset, 4u);
}

// A single producer looks at its frame's commit word only when the ring's
// unblock epoch moved; an unblock elsewhere costs it one precise look, no
// false kUnblocked, and an unblock of its own claim is always seen.
TEST(Ring, SingleProducerSeesEveryUnblockAndNoFalseOnes) {
  TestRing t(Options(RingMode::kSingleProducer));
  RingProducer p(t.ring);
  RingUnblocker u(t.ring, 0);
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "first").ok());
  // An Unblock that finds nothing to do still raises the epoch.
  EXPECT_EQ(u.Unblock(0).action, RingUnblocker::Action::kNone);
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "second").ok());
  RingClaim* c = Abandon(p.try_claim(0, 0, 8, false));
  ASSERT_TRUE(c->ok());
  EXPECT_EQ(u.Unblock(c->position()).action, RingUnblocker::Action::kHoleFilled);
  EXPECT_EQ(p.commit(*c), CommitStatus::kUnblocked);
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "third").ok());
  // The same for a deferred batch: the batch after an unblock publishes.
  RingClaim d = p.try_claim(0, 0, 6, false);
  ASSERT_TRUE(d.ok());
  std::memcpy(d.value().data(), "fourth", 6);
  ASSERT_EQ(p.commit_deferred(d), CommitStatus::kOk);
  EXPECT_EQ(p.publish().published, 1u);
  RingReader r(t.ring, t.ring.earliest());
  auto got = ReadAll(r);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].value, "first");
  EXPECT_EQ(got[1].value, "second");
  EXPECT_EQ(got[2].value, "third");
  EXPECT_EQ(got[3].value, "fourth");
  EXPECT_EQ(got[2].offset, 3u);  // offset 2 was the unblocked claim
}

// Review finding: an unblocked batch must stay lost even when the producer
// later commits a clean record (its check of that record must not vouch for
// the batch), and readers must never meet a half-overwritten frame.
TEST(Ring, AnUnblockedBatchStaysLostWhenTheProducerCommitsAgain) {
  TestRing t(Options(RingMode::kSingleProducer));
  RingProducer p(t.ring);
  const uint64_t at = t.ring.tail().position;
  ASSERT_NO_FATAL_FAILURE(DeferRecords(p, 3, 16));
  RingUnblocker u(t.ring, 0);
  ASSERT_EQ(u.Unblock(at).action, RingUnblocker::Action::kHoleFilled);
  RingClaim d = p.try_claim(0, 0, 5, false);
  ASSERT_TRUE(d.ok());
  std::memcpy(d.value().data(), "after", 5);
  EXPECT_EQ(p.commit(d), CommitStatus::kUnblocked);  // the batch was lost
  EXPECT_EQ(p.deferred(), 0u);
  RingReader r(t.ring, t.ring.earliest(), ReaderOptions{.verify_crc = true});
  ReadStatus status;
  auto got = ReadAll(r, &status);
  EXPECT_EQ(status, ReadStatus::kOk);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value, "after");
  EXPECT_EQ(got[0].offset, 3u);
}

// A hole never spans more than one maximum frame; a batch longer than that is
// lost in part. What lies past the hole is published, the rest is reported
// lost, and every frame a reader meets is whole.
TEST(Ring, ABatchLongerThanTheUnblockersHoleIsLostOnlyInPart) {
  RingOptions o = Options(RingMode::kSingleProducer);
  o.max_frame_length = 512;
  TestRing t(o);
  RingProducer p(t.ring);
  const uint64_t at = t.ring.tail().position;
  for (uint32_t i = 0; i < 4; ++i) {
    RingClaim c = p.try_claim(0, 0, 200, false);
    ASSERT_TRUE(c.ok());
    std::memset(c.value().data(), 'a' + i, 200);
    ASSERT_EQ(p.commit_deferred(c), CommitStatus::kOk);
  }
  RingUnblocker u(t.ring, 0);
  const auto res = u.Unblock(at);
  ASSERT_EQ(res.action, RingUnblocker::Action::kHoleFilled);
  ASSERT_LT(res.bytes, 4 * AlignedFrameLength(FrameLength(0, 0, 200)));
  const PublishResult pr = p.publish();
  EXPECT_EQ(pr.published + pr.unblocked, 4u);
  EXPECT_GT(pr.unblocked, 0u);
  // Frames the hole cut into are lost, and may be followed by more poison:
  // the unblocker fills what is left after another timeout.
  for (int round = 0; round < 4 && t.ring.unblocked_claims() < 4; ++round) {
    RingUnblocker again(t.ring, 0);
    (void)again.Poll(0);
    (void)again.Poll(1);
  }
  RingReader r(t.ring, t.ring.earliest(), ReaderOptions{.verify_crc = true});
  ReadStatus status;
  auto got = ReadAll(r, &status);
  EXPECT_EQ(status, ReadStatus::kOk);
  EXPECT_EQ(got.size(), pr.published);
  for (const auto& g : got) {
    EXPECT_EQ(g.value, std::string(200, static_cast<char>('a' + g.offset)));
  }
}

TEST(Ring, CommitOfAnUnblockedClaimStillPublishesThePendingBatch) {
  TestRing t(Options(RingMode::kSingleProducer));
  RingProducer p(t.ring);
  RingClaim a = p.try_claim(0, 0, 1, false);
  ASSERT_TRUE(a.ok());
  a.value()[0] = std::byte{'a'};
  ASSERT_EQ(p.commit_deferred(a), CommitStatus::kOk);
  RingClaim* b = Abandon(p.try_claim(0, 0, 1, false));
  ASSERT_TRUE(b->ok());
  // Only b is unblocked: the hole starts at b (a is not stuck, just pending).
  RingUnblocker u(t.ring, 0);
  ASSERT_EQ(u.Unblock(b->position()).action, RingUnblocker::Action::kHoleFilled);
  EXPECT_EQ(p.commit(*b), CommitStatus::kUnblocked);
  EXPECT_EQ(p.deferred(), 0u);
  RingReader r(t.ring, t.ring.earliest());
  auto got = ReadAll(r);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value, "a");
}

// A batch whose first record has a given timestamp still reads the clock for
// the others (not an earlier batch's reading).
TEST(Ring, BatchTimestampIsReadForEveryBatch) {
  TestRing t(Options(RingMode::kSingleProducer));
  RingProducer p(t.ring);
  RingClaim first = p.try_claim(0, 0, 1, false);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(p.commit_deferred(first), CommitStatus::kOk);
  ASSERT_EQ(p.publish().published, 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  RingClaim given = p.try_claim(0, 0, 1, false);
  ASSERT_TRUE(given.ok());
  given.set_timestamp(42);
  ASSERT_EQ(p.commit_deferred(given), CommitStatus::kOk);
  RingClaim stamped = p.try_claim(0, 0, 1, false);
  ASSERT_TRUE(stamped.ok());
  ASSERT_EQ(p.commit_deferred(stamped), CommitStatus::kOk);
  ASSERT_EQ(p.publish().published, 2u);
  RingReader r(t.ring, t.ring.earliest());
  std::vector<int64_t> ts;
  (void)r.read([&](const RecordView& v) { ts.push_back(v.timestamp_ns()); }, 10);
  ASSERT_EQ(ts.size(), 3u);
  EXPECT_EQ(ts[1], 42);
  EXPECT_GE(ts[2] - ts[0], 15'000'000);  // read after the sleep, not reused
}

// The batch belongs to one handle: a copy starts without it, a move takes
// it, and the destructor publishes it.
TEST(Ring, ABatchMovesWithItsProducerAndIsPublishedByTheDestructor) {
  TestRing t(Options(RingMode::kSingleProducer));
  RingReader r(t.ring, t.ring.earliest());
  {
    RingProducer p(t.ring);
    RingClaim c = p.try_claim(0, 0, 1, false);
    ASSERT_TRUE(c.ok());
    c.value()[0] = std::byte{'x'};
    ASSERT_EQ(p.commit_deferred(c), CommitStatus::kOk);
    RingProducer copy(p);
    EXPECT_EQ(copy.deferred(), 0u);
    RingProducer moved(std::move(p));
    EXPECT_EQ(moved.deferred(), 1u);
    EXPECT_TRUE(ReadAll(r).empty());
  }
  auto got = ReadAll(r);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value, "x");
}

// Records a batch loses when try_claim publishes it (before kFull) are
// reported by the next publish(), not by an unrelated later commit().
TEST(Ring, LossesOfABatchPublishedBeforeKFullAreReportedByPublish) {
  TestRing t(Options(RingMode::kSingleProducer));
  const uint32_t slot = *t.ring.AcquireGatingSlot(1, t.ring.tail());
  RingProducer p(t.ring);
  const std::string big(1000, 'b');
  // Fill the ring but the last ~1.5 KiB with published records.
  while (t.ring.tail().position + 2600 < kCap) ASSERT_TRUE(p.try_write(std::nullopt, {}, big).ok());
  const uint64_t at = t.ring.tail().position;
  ASSERT_NO_FATAL_FAILURE(DeferRecords(p, 2, 8));
  RingUnblocker u(t.ring, 0);
  ASSERT_EQ(u.Unblock(at).action, RingUnblocker::Action::kHoleFilled);
  RingClaim full = p.try_claim(0, 0, 3000, false);
  ASSERT_EQ(full.status(), ClaimStatus::kFull);
  EXPECT_EQ(p.deferred(), 0u);  // published (found lost) before kFull
  RingReader r(t.ring, t.ring.GatingPosition(slot));
  (void)ReadAll(r);
  t.ring.AdvanceGatingSlot(slot, r.position());
  EXPECT_EQ(p.try_write(std::nullopt, {}, "x").commit, CommitStatus::kOk);
  const PublishResult pr = p.publish();
  EXPECT_EQ(pr.published, 0u);
  EXPECT_EQ(pr.unblocked, 2u);
  EXPECT_EQ(p.publish().unblocked, 0u);  // reported once
}

TEST(Ring, SingleProducerAbortIsSkipped) {
  TestRing t(Options(RingMode::kSingleProducer));
  RingProducer p(t.ring);
  RingClaim c = p.try_claim(0, 0, 300, false);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(p.abort(c), CommitStatus::kOk);
  ASSERT_TRUE(p.try_write(std::nullopt, {}, "kept").ok());
  RingReader r(t.ring, t.ring.earliest());
  auto got = ReadAll(r);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value, "kept");
  EXPECT_EQ(got[0].offset, 1u);
  EXPECT_EQ(t.ring.aborted_claims(), 1u);
}

// The single producer's fast path (the lap of its last claim, within the
// gating bound it knows, its own tail word) must stop exactly where the slow
// path would: at the gating reader's position plus one ring.
TEST(Ring, SingleProducerWithSmallRecordsStopsExactlyAtTheGatingReader) {
  TestRing t(Options(RingMode::kSingleProducer));
  Result<uint32_t> slot = t.ring.AcquireGatingSlot(1, t.ring.tail());
  ASSERT_TRUE(slot.ok());
  RingProducer p(t.ring);
  RingReader r(t.ring, t.ring.tail());
  uint64_t next = 0;
  for (int round = 0; round < 3; ++round) {
    const uint64_t first = next;
    while (p.try_write(std::nullopt, {}, std::to_string(next)).ok()) ++next;
    EXPECT_EQ(p.try_write(std::nullopt, {}, "x").status, ClaimStatus::kFull);
    // Every frame is 48 bytes ("0".."9999" pad to 8 value bytes, 64 KiB is
    // 1365 frames and 16 bytes: the round ends at the gating reader, give or
    // take the wrap padding).
    EXPECT_GE(next - first, (kCap - 48) / 48);
    EXPECT_LE(t.ring.tail().position - r.position().position, kCap);
    const auto got = ReadAll(r);
    ASSERT_EQ(got.size(), next - first) << "round " << round;
    for (uint64_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(got[i].offset, first + i);
      ASSERT_EQ(got[i].value, std::to_string(first + i));
    }
    t.ring.AdvanceGatingSlot(*slot, r.position());
  }
}

// Handles of one single-producer ring used in turn (copies, a fresh one):
// each notices that the tail is no longer the one it stored and takes the
// slow path, so claims never overlap and offsets stay dense.
TEST(Ring, SingleProducerHandlesTakingTurnsNeverOverlap) {
  TestRing t(Options(RingMode::kSingleProducer, 7));
  RingProducer a(t.ring);
  RingProducer b(a);
  std::optional<RingProducer> c;
  RingReader r(t.ring, t.ring.earliest());
  uint64_t expected = 7;
  for (int i = 0; i < 5000; ++i) {
    const std::string v(static_cast<size_t>(i % 97) * 3, static_cast<char>('a' + i % 26));
    // Runs of 1-4 claims per handle: the fast path runs right after another
    // handle claimed.
    const int turn = (i / (1 + i % 4)) % 3;
    RingProducer& p = turn == 0 ? a : turn == 1 ? b : (i % 4 == 0 || !c) ? c.emplace(t.ring) : *c;
    const WriteResult w = p.try_write(std::nullopt, {}, v);
    ASSERT_TRUE(w.ok()) << i;
    ASSERT_EQ(w.offset, expected + static_cast<uint64_t>(i)) << i;
    if (i % 50 == 49) {
      ReadStatus st = ReadStatus::kOk;
      const auto got = ReadAll(r, &st);
      ASSERT_EQ(st, ReadStatus::kOk);
      ASSERT_EQ(got.size(), 50u);
      for (int k = 0; k < 50; ++k) {
        const int j = i - 49 + k;
        ASSERT_EQ(got[k].offset, expected + static_cast<uint64_t>(j));
        ASSERT_EQ(got[k].value,
                  std::string(static_cast<size_t>(j % 97) * 3, static_cast<char>('a' + j % 26)));
      }
    }
  }
  EXPECT_GT(t.ring.tail().position, 3 * kCap);  // several laps
}

// Records of mixed sizes move the single producer's cached gating bound off
// the lap boundaries (five records of 16 KB, the fifth wrapping, then small
// ones): its fast path must still stop at the end of the lap, where the slow
// path pads the rest.
TEST(Ring, SingleProducerFastPathNeverCrossesTheEndOfTheRing) {
  TestRing t(Options(RingMode::kSingleProducer));
  RingProducer p(t.ring);
  RingReader r(t.ring, t.ring.earliest());
  std::vector<std::string> sent(5, std::string(16000, 'A'));
  for (int i = 0; i < 6000; ++i) sent.push_back(std::string(static_cast<size_t>(i % 13), 'c'));
  for (size_t i = 0; i < sent.size(); ++i) {
    ASSERT_TRUE(p.try_write(std::nullopt, {}, sent[i]).ok()) << i;
    if (i < 10 || i % 500 == 0 || i + 1 == sent.size()) {
      ReadStatus st = ReadStatus::kOk;
      for (const Got& g : ReadAll(r, &st)) ASSERT_EQ(g.value, sent[g.offset]) << g.offset;
      ASSERT_EQ(st, ReadStatus::kOk) << i;
      ASSERT_EQ(r.position().offset, i + 1);
    }
  }
  EXPECT_GT(t.ring.tail().position, 4 * kCap);
}

// A gating reader that registers at earliest() (the first record of the
// newest lap), as durability does on a live topic, after the producer ran
// free for a while. The producer re-checks for gating readers once a claim
// ends a ring past the lap reference; if it re-checked one ring after the
// position of its last check (mid-lap once an earlier gating reader released
// its slot there), it would lap the new reader before noticing it.
TEST(Ring, GatingReaderRegisteredAtEarliestIsNeverLapped) {
  for (int variant = 0; variant < 8; ++variant) {
    TestRing t(Options(RingMode::kSingleProducer));
    RingProducer p(t.ring);
    uint64_t n = 0;
    auto value = [](uint64_t i) {
      return std::string(static_cast<size_t>(i * 7919 % 1500), static_cast<char>('a' + i % 26));
    };
    auto write = [&] {
      const WriteResult w = p.try_write(std::nullopt, {}, value(n));
      if (w.ok()) ++n;
      return w.status;
    };
    {
      // An earlier gating reader stops mid-lap; the producer runs into it
      // (kFull: its cached bound is now that mid-lap position), then it
      // releases its slot.
      Result<uint32_t> a = t.ring.AcquireGatingSlot(1, t.ring.tail());
      ASSERT_TRUE(a.ok());
      RingReader ra(t.ring, t.ring.tail());
      ClaimStatus s;
      while ((s = write()) == ClaimStatus::kOk) {
      }
      ASSERT_EQ(s, ClaimStatus::kFull);
      const uint64_t mid = kCap / 8 * static_cast<uint64_t>(variant + 1) - 1000;
      while (ra.position().position < mid) {
        ASSERT_EQ(ra.read([](const RecordView&) {}, 1).records, 1u);
      }
      t.ring.AdvanceGatingSlot(*a, ra.position());
      while ((s = write()) == ClaimStatus::kOk) {
      }
      ASSERT_EQ(s, ClaimStatus::kFull);
      t.ring.ReleaseGatingSlot(*a);
    }
    // Free running, then a new gating reader at earliest().
    const uint64_t stop = t.ring.tail().position + 2 * kCap + kCap / 3;
    while (t.ring.tail().position < stop) ASSERT_EQ(write(), ClaimStatus::kOk);
    const RingPosition start = t.ring.earliest();
    Result<uint32_t> slot = t.ring.AcquireGatingSlot(2, start);
    ASSERT_TRUE(slot.ok());
    ClaimStatus s;
    while ((s = write()) == ClaimStatus::kOk) {
    }
    ASSERT_EQ(s, ClaimStatus::kFull);
    RingReader r(t.ring, start);
    ReadStatus st = ReadStatus::kOk;
    const auto got = ReadAll(r, &st);
    ASSERT_EQ(st, ReadStatus::kOk) << "variant " << variant;
    ASSERT_FALSE(got.empty());
    for (const Got& g : got) ASSERT_EQ(g.value, value(g.offset)) << g.offset;
    EXPECT_EQ(got.back().offset + 1, n);
  }
}

// A gating reader that registers while the single producer runs free must
// still hold it back: the fast path never runs past the end of the lap it
// was armed in, and the slow path then finds the new reader.
TEST(Ring, GatingReaderRegisteredMidLapHoldsTheSingleProducer) {
  TestRing t(Options(RingMode::kSingleProducer));
  RingProducer p(t.ring);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(p.try_write(std::nullopt, {}, "free").ok());
  const RingPosition start = t.ring.tail();
  Result<uint32_t> slot = t.ring.AcquireGatingSlot(1, start);
  ASSERT_TRUE(slot.ok());
  uint64_t written = 0;
  while (p.try_write(std::nullopt, {}, std::to_string(written)).ok()) ++written;
  EXPECT_LE(t.ring.tail().position - start.position, kCap);
  RingReader r(t.ring, start);
  ReadStatus st = ReadStatus::kOk;
  const auto got = ReadAll(r, &st);
  ASSERT_EQ(st, ReadStatus::kOk);
  ASSERT_EQ(got.size(), written);
  for (uint64_t i = 0; i < written; ++i) ASSERT_EQ(got[i].value, std::to_string(i));
}

// A handle assigned from a handle of another ring starts with its fast path
// disarmed: that ring's tail word may read exactly what the handle stored
// last, while a gating reader there sets a bound this handle never saw.
TEST(Ring, SingleProducerHandleAssignedToAnotherRingHonoursItsGatingReader) {
  const std::string v(24, 'g');  // 64-byte frames: a lap holds kCap / 64, no wrap padding
  TestRing gated(Options(RingMode::kSingleProducer));
  Result<uint32_t> slot = gated.ring.AcquireGatingSlot(1, gated.ring.tail());
  ASSERT_TRUE(slot.ok());
  RingProducer q(gated.ring);
  for (int i = 0; i < 512; ++i) ASSERT_TRUE(q.try_write(std::nullopt, {}, v).ok());
  // The gating reader releases half a lap, so its bound is mid-lap 1.
  RingReader gate(gated.ring, gated.ring.earliest());
  ASSERT_EQ(ReadAll(gate).size(), 512u);
  gated.ring.AdvanceGatingSlot(*slot, gate.position());
  uint64_t n = 512;
  while (q.try_write(std::nullopt, {}, v).ok()) ++n;
  ASSERT_EQ(n, kCap / 64 + 512);
  // A ring with no gating reader and the same records: the same tail word,
  // and a handle whose fast path reaches to the end of lap 1.
  TestRing free(Options(RingMode::kSingleProducer));
  RingProducer p(free.ring);
  for (uint64_t i = 0; i < n; ++i) ASSERT_TRUE(p.try_write(std::nullopt, {}, v).ok());
  ASSERT_EQ(free.ring.control()->tail, gated.ring.control()->tail);

  p = q;
  EXPECT_EQ(p.try_write(std::nullopt, {}, "x").status, ClaimStatus::kFull);
  // Nothing the gating reader has not released was overwritten.
  ReadStatus st = ReadStatus::kOk;
  const auto got = ReadAll(gate, &st);
  EXPECT_EQ(st, ReadStatus::kOk);
  ASSERT_EQ(got.size(), n - 512);
  for (uint64_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].offset, 512 + i);
    ASSERT_EQ(got[i].value, v);
  }
}

// write_lap: raised to a lap before anybody writes in it, so readers can
// tell "not lapped" without the tail.
TEST(Ring, ProducersRaiseTheWriteLapBeforeWritingInANewLap) {
  for (RingMode mode : {RingMode::kSingleProducer, RingMode::kMultiProducer}) {
    TestRing t(Options(mode));
    RingProducer p(t.ring);
    RingReader r(t.ring, t.ring.earliest());
    EXPECT_EQ(t.ring.control()->write_lap, 0u);
    std::string v(1000, 'w');
    // Fill lap 0 up to the last record that fits (1040-byte frames).
    while (t.ring.tail().position + 1040 <= kCap)
      ASSERT_TRUE(p.try_write(std::nullopt, {}, v).ok());
    EXPECT_EQ(t.ring.control()->write_lap, 0u);
    EXPECT_EQ(ReadAll(r).size(), t.ring.tail().offset);
    ASSERT_TRUE(p.try_write(std::nullopt, {}, v).ok());  // wraps: padding, then lap 1
    EXPECT_EQ(t.ring.control()->write_lap, kCap);
    // The reader is behind the new lap but not lapped: it still gets it all.
    EXPECT_FALSE(r.Lapped());
    ReadStatus st;
    EXPECT_EQ(ReadAll(r, &st).size(), 1u);
    EXPECT_EQ(st, ReadStatus::kOk);
  }
}

TEST(Ring, UnblockerRaisesTheWriteLapForAClaimThatDiedBeforeItsFirstWrite) {
  TestRing t(Options(RingMode::kSingleProducer));
  RingProducer p(t.ring);
  std::string v(1000, 'u');
  // Fill lap 0 up to the last record that fits (1040-byte frames).
  while (t.ring.tail().position + 1040 <= kCap) ASSERT_TRUE(p.try_write(std::nullopt, {}, v).ok());
  ASSERT_TRUE(p.try_write(std::nullopt, {}, v).ok());  // into lap 1
  const RingPosition t1 = t.ring.tail();
  // As if this claim (in lap 1) were the first of its lap and its producer
  // died between its tail store and raising write_lap: write_lap says lap 0.
  RingClaim* c = Abandon(p.try_claim(0, 0, 1000, false));
  ASSERT_TRUE(c->ok());
  t.ring.control()->write_lap = 0;
  RingUnblocker u(t.ring, 0);
  EXPECT_EQ(u.Unblock(t1.position).action, RingUnblocker::Action::kHoleFilled);
  EXPECT_EQ(t.ring.control()->write_lap, kCap);
}

// A reader lapped by exactly one record: write_lap says "maybe", the tail
// says "yes".
TEST(Ring, ReaderOneRecordIntoTheNextLapIsLapped) {
  TestRing t(Options(RingMode::kSingleProducer));
  RingProducer p(t.ring);
  RingReader r(t.ring, t.ring.earliest());
  std::string v(1016, 'x');  // 1056-byte frames
  while (!r.Lapped()) ASSERT_TRUE(p.try_write(std::nullopt, {}, v).ok());
  // The first lap holds 62 frames (65472 bytes) and 64 bytes of padding;
  // the 63rd record starts lap 1 and its end passes position 0 + capacity.
  EXPECT_EQ(t.ring.tail().offset, 63u);
  ReadStatus st;
  EXPECT_TRUE(ReadAll(r, &st).empty());
  EXPECT_EQ(st, ReadStatus::kOverrun);
}

}  // namespace
}  // namespace runnel
