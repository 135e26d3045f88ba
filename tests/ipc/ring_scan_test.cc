#include "ipc/internal/ring_scan.h"

#include <gtest/gtest.h>

#include <optional>

#include "tests/core/test_memory.h"

namespace runnel::internal {
namespace {

using testing::TestRing;

// Records from..to-1 of one byte, record i stamped 1000 + i.
void Write(RingProducer& p, uint64_t from, uint64_t to) {
  for (uint64_t i = from; i < to; ++i) {
    ASSERT_TRUE(p.try_write(std::nullopt, {}, "x", static_cast<int64_t>(1000 + i)).ok());
  }
}

TEST(FindStampInRing, FindsTheFirstRecordStampedAtOrAfterBelowTheBound) {
  TestRing t(RingOptions{.capacity = kRingMinCapacity});
  RingProducer p(t.ring);
  Write(p, 0, 20);
  RingReader scan(t.ring, t.ring.earliest());
  EXPECT_EQ(FindStampInRing(scan, 1007, 20), std::optional<uint64_t>(7));
  RingReader again(t.ring, t.ring.earliest());
  EXPECT_EQ(FindStampInRing(again, 1015, 10), std::nullopt);  // 15 is past the bound
  RingReader late(t.ring, t.ring.earliest());
  EXPECT_EQ(FindStampInRing(late, 5000, 20), std::nullopt);
}

// Producers lapped the scan: it goes on from the oldest record the ring
// holds now (it used to give up, and a consumer started at the tail,
// skipping every record in the ring stamped after the time)...
TEST(FindStampInRing, ALappedScanGoesOnFromTheOldestRecord) {
  TestRing t(RingOptions{.capacity = kRingMinCapacity});
  RingProducer p(t.ring);
  RingReader lapped(t.ring, RingPosition{});
  Write(p, 0, 10000);  // laps the scan (no gating reader)
  ASSERT_GT(t.ring.earliest().offset, 100u);
  ASSERT_LT(t.ring.earliest().offset, 9990u);
  EXPECT_EQ(FindStampInRing(lapped, 1000 + 9990, 10000), std::optional<uint64_t>(9990));
}

// ... unless the oldest record is already late enough: then so may be those
// the lap took unread, and the answer is the first of them (the consumer
// reads them from disk or is told they are lost; it went on from the oldest
// record, skipping them unseen).
TEST(FindStampInRing, ALappedScanWhoseOldestRecordIsLateEnoughAnswersTheFirstItLost) {
  TestRing t(RingOptions{.capacity = kRingMinCapacity});
  RingProducer p(t.ring);
  Write(p, 0, 10);
  RingReader scan(t.ring, t.ring.earliest());
  Write(p, 10, 5000);
  const uint64_t oldest = t.ring.earliest().offset;
  ASSERT_GT(oldest, 30u);
  EXPECT_EQ(FindStampInRing(scan, 1000 + 20, 5000), std::optional<uint64_t>(0));
  // A scan that read up to 5000 before the lap: the lost ones start there.
  RingReader part(t.ring, t.ring.earliest());
  EXPECT_EQ(FindStampInRing(part, 6000, 5000), std::nullopt);  // none that late
  ASSERT_EQ(part.position().offset, 5000u);
  Write(p, 5000, 10000);
  ASSERT_GT(t.ring.earliest().offset, 5010u);
  EXPECT_EQ(FindStampInRing(part, 1000 + 5005, 10000), std::optional<uint64_t>(5000));
}

}  // namespace
}  // namespace runnel::internal
