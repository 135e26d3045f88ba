// SyncTracker: what the persister may publish as durable when writes go on
// while an fdatasync runs.

#include "persistence/internal/sync_tracker.h"

#include <gtest/gtest.h>

namespace runnel::internal {
namespace {

// A mark whose ring position is `position` (offset = position / 8) and whose
// log end is file position 64 + position in segment 0.
PersistMark At(uint64_t position) {
  PersistMark m;
  m.ring = RingPosition{position, position / 8};
  m.log.file_position = 64 + position;
  m.log.next_offset = position / 8;
  return m;
}

TEST(SyncTracker, StartsDurableAtItsStart) {
  const SyncTracker t(At(800));
  EXPECT_EQ(t.written().ring.position, 800u);
  EXPECT_EQ(t.durable().ring.position, 800u);
  EXPECT_FALSE(t.dirty());
  EXPECT_FALSE(t.NeedsSync());
  EXPECT_FALSE(t.inflight());
}

TEST(SyncTracker, DurableNeverPassesABytesWrittenAfterTheSyncWasSubmitted) {
  SyncTracker t(At(0));
  t.Written(At(1000));
  EXPECT_TRUE(t.dirty());
  EXPECT_TRUE(t.NeedsSync());
  t.Submitted();  // covers [0, 1000)
  EXPECT_FALSE(t.NeedsSync());
  EXPECT_EQ(t.Covered().ring.position, 1000u);
  // Writes complete while the sync runs.
  t.Written(At(1500));
  t.Written(At(4096));
  EXPECT_TRUE(t.NeedsSync());
  t.Completed();
  EXPECT_EQ(t.durable().ring.position, 1000u);
  EXPECT_EQ(t.durable().ring.offset, 125u);
  EXPECT_EQ(t.durable().log.file_position, 1064u);
  EXPECT_EQ(t.durable().log.next_offset, 125u);
  EXPECT_EQ(t.written().ring.position, 4096u);
  EXPECT_TRUE(t.dirty());
  // The next sync covers exactly the rest.
  t.Submitted();
  t.Written(At(5000));
  t.Completed();
  EXPECT_EQ(t.durable().ring.position, 4096u);
  EXPECT_EQ(t.durable().log.file_position, 64u + 4096u);
  t.Submitted();
  t.Completed();
  EXPECT_EQ(t.durable().ring.position, 5000u);
  EXPECT_FALSE(t.dirty());
  EXPECT_FALSE(t.NeedsSync());
}

TEST(SyncTracker, AFailedOrCancelledSyncMakesNothingDurable) {
  SyncTracker t(At(0));
  t.Written(At(1000));
  t.Submitted();
  t.Written(At(2000));
  t.Abandoned();
  EXPECT_FALSE(t.inflight());
  EXPECT_EQ(t.durable().ring.position, 0u);
  EXPECT_TRUE(t.NeedsSync());  // everything written needs a sync again
  EXPECT_EQ(t.Covered().ring.position, 0u);
  t.Submitted();
  t.Completed();
  EXPECT_EQ(t.durable().ring.position, 2000u);
}

TEST(SyncTracker, ALinkedSyncCoversTheWriteItStartsAfter) {
  // Policy always: the sync is reported when its write is reaped.
  SyncTracker t(At(0));
  t.Written(At(256));
  t.Submitted();
  t.Completed();
  EXPECT_EQ(t.durable().ring.position, 256u);
}

TEST(SyncTracker, SyncedAllCoversEverythingWrittenAndACompletionNeverMovesBack) {
  SyncTracker t(At(0));
  t.Written(At(1000));
  t.Submitted();
  t.Written(At(3000));
  // e.g. wrap padding stepped over while nothing was dirty, or a flush.
  t.SyncedAll();
  EXPECT_EQ(t.durable().ring.position, 3000u);
  EXPECT_FALSE(t.dirty());
  t.Completed();  // covered only 1000
  EXPECT_EQ(t.durable().ring.position, 3000u);
  EXPECT_EQ(t.durable().log.file_position, 3064u);
}

}  // namespace
}  // namespace runnel::internal
