// PartitionLog: rolling, the asynchronous append API, durability
// bookkeeping, retention, truncation, locking.

#include "persistence/log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "persistence/format.h"
#include "persistence/reader.h"
#include "tests/persistence/test_util.h"

namespace runnel {
namespace {

using testing::FileExists;
using testing::FileSizeOf;
using testing::MakeFrame;
using testing::MakeFrames;
using testing::MakePadding;
using testing::TempDir;

LogOptions Small(uint64_t segment_bytes = 4096) {
  LogOptions o;
  o.segment_bytes = segment_bytes;
  o.index_interval_bytes = 512;
  return o;
}

// Every record of the log at rest, in order.
std::vector<uint64_t> ReadOffsets(const std::string& dir) {
  LogReaderOptions ro;
  ro.follow = false;
  auto r = LogReader::Open(dir, ro);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  std::vector<uint64_t> out;
  if (!r.ok()) return out;
  for (;;) {
    LogEntry e = r->Next();
    if (e.kind == LogEntry::Kind::kEnd) break;
    EXPECT_EQ(e.kind, LogEntry::Kind::kRecord) << (e.damage ? e.damage->ToString() : "");
    if (e.kind == LogEntry::Kind::kRecord) out.push_back(e.record.offset());
  }
  return out;
}

TEST(PartitionLog, NewLogStartsAtTheInitialOffset) {
  TempDir dir;
  LogOptions o = Small();
  o.initial_offset = 1000;
  auto log = PartitionLog::Open(dir / "topic/7", o);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ(log->next_offset(), 1000u);
  EXPECT_EQ(log->log_start_offset(), 1000u);
  EXPECT_TRUE(log->recovery().clean());
  EXPECT_TRUE(FileExists(dir / "topic/7/00000000000000001000.log"));
  EXPECT_EQ(FileSizeOf(dir / "topic/7/00000000000000001000.log"), 4096u);  // preallocated
  EXPECT_TRUE(FileExists(dir / "topic/7/checkpoint"));
}

// A gap marker takes the offsets it names out of use: recovery continues
// after them even without a checkpoint, and readers see no damage.
TEST(PartitionLog, AGapMarkerMovesTheNextOffsetPastTheGapForRecoveryToo) {
  TempDir dir;
  {
    auto log = PartitionLog::Open(dir.path(), Small(1 << 20));
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE(log->Append(MakeFrames(0, 10)).ok());
    ASSERT_TRUE(log->Append(EncodeGapMarker({10, 50}, 12345)).ok());
    EXPECT_EQ(log->next_offset(), 50u);
    ASSERT_TRUE(log->Close().ok());
  }
  ASSERT_EQ(std::remove((dir / "checkpoint").c_str()), 0);
  auto log = PartitionLog::Open(dir.path(), Small(1 << 20));
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ(log->next_offset(), 50u);
  ASSERT_TRUE(log->Append(MakeFrames(50, 2)).ok());
  ASSERT_TRUE(log->Close().ok());
  auto v = VerifyLog(dir.path());
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok());
  EXPECT_EQ(v->records, 12u);
  EXPECT_EQ(v->control_records, 0u);
  EXPECT_EQ(v->gaps, 1u);
  EXPECT_EQ(v->gap_offsets, 40u);
  EXPECT_EQ(v->last_offset, 51u);
  // The marker itself: a control frame at offset 49 naming [10, 50).
  LogReaderOptions ro;
  ro.follow = false;
  auto r = LogReader::Open(dir.path(), ro);
  ASSERT_TRUE(r.ok());
  std::vector<uint64_t> data;
  std::optional<GapMarker> gap;
  for (LogEntry e = r->Next(); e.kind != LogEntry::Kind::kEnd; e = r->Next()) {
    ASSERT_EQ(e.kind, LogEntry::Kind::kRecord);
    if (e.control) {
      EXPECT_EQ(e.record.offset(), 49u);
      EXPECT_EQ(e.record.timestamp_ns(), 12345);
      gap = DecodeGapMarker(e.record);
    } else {
      EXPECT_FALSE(DecodeGapMarker(e.record).has_value());
      data.push_back(e.record.offset());
    }
  }
  ASSERT_TRUE(gap.has_value());
  EXPECT_EQ(gap->from, 10u);
  EXPECT_EQ(gap->to, 50u);
  EXPECT_EQ(data, (std::vector<uint64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 50, 51}));
}

// A repair that cuts records the checkpoint called durable marks them as a
// gap in the same open, so the checkpoint never goes back: a later open
// (also without the checkpoint) continues after them.
TEST(PartitionLog, ARepairMarksTheDurableRecordsItCutAsAGap) {
  TempDir dir;
  {
    auto log = PartitionLog::Open(dir.path(), Small(1 << 20));
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE(log->Append(MakeFrames(0, 200)).ok());
    ASSERT_TRUE(log->Close().ok());
  }
  const std::string seg = dir / "00000000000000000000.log";
  ASSERT_EQ(::truncate(seg.c_str(), static_cast<off_t>(FileSizeOf(seg) / 2)), 0);
  EXPECT_EQ(PartitionLog::Open(dir.path(), Small(1 << 20)).status().code(),
            StatusCode::kCorruption);
  LogOptions repair = Small(1 << 20);
  repair.repair = true;
  {
    auto log = PartitionLog::Open(dir.path(), repair);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    EXPECT_EQ(log->next_offset(), 200u);
    ASSERT_TRUE(log->Close().ok());
  }
  ASSERT_EQ(std::remove((dir / "checkpoint").c_str()), 0);
  auto log = PartitionLog::Open(dir.path(), Small(1 << 20));
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ(log->next_offset(), 200u);
  ASSERT_TRUE(log->Close().ok());
  auto v = VerifyLog(dir.path());
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok());
  EXPECT_EQ(v->gaps, 1u);
  EXPECT_EQ(v->records + v->gap_offsets, 200u);
}

TEST(PartitionLog, RollsAtTheConfiguredSizeAndNamesSegmentsByNextOffset) {
  TempDir dir;
  auto log = PartitionLog::Open(dir.path(), Small(4096));
  ASSERT_TRUE(log.ok());
  const uint64_t frame = MakeFrames(0, 1).size();  // 80 bytes
  for (uint64_t i = 0; i < 300; ++i) ASSERT_TRUE(log->Append(MakeFrames(i, 1)).ok());
  const auto segs = log->segments();
  const uint64_t per_segment = (4096 - kFileHeaderLength) / frame;  // 50
  ASSERT_EQ(segs.size(), (300 + per_segment - 1) / per_segment);
  for (std::size_t i = 0; i < segs.size(); ++i) {
    EXPECT_EQ(segs[i].base_offset, i * per_segment);
    EXPECT_EQ(segs[i].active, i + 1 == segs.size());
    const std::string path = dir / SegmentFileName(segs[i].base_offset);
    if (!segs[i].active) {
      // Sealed segments are cut to their data.
      EXPECT_EQ(segs[i].bytes, kFileHeaderLength + per_segment * frame);
      EXPECT_EQ(FileSizeOf(path), segs[i].bytes);
    } else {
      EXPECT_EQ(FileSizeOf(path), 4096u);  // preallocated
    }
  }
  ASSERT_TRUE(log->Close().ok());
  const auto& last = segs.back();
  EXPECT_EQ(FileSizeOf(dir / SegmentFileName(last.base_offset)),
            kFileHeaderLength + (300 - last.base_offset) * frame);
  const auto offsets = ReadOffsets(dir.path());
  ASSERT_EQ(offsets.size(), 300u);
  for (uint64_t i = 0; i < 300; ++i) ASSERT_EQ(offsets[i], i);
}

// Which files Sync() fdatasyncs is observed by swapping a segment for a link
// to /dev/null, which fdatasync refuses (EINVAL): a Sync that fails names a
// file it synced, one that succeeds did not touch it.
void SwapForDevNull(const std::string& path) {
  ASSERT_EQ(::rename(path.c_str(), (path + ".real").c_str()), 0);
  ASSERT_EQ(::symlink("/dev/null", path.c_str()), 0);
}
void SwapBack(const std::string& path) {
  ASSERT_EQ(::unlink(path.c_str()), 0);
  ASSERT_EQ(::rename((path + ".real").c_str(), path.c_str()), 0);
}

TEST(PartitionLog, SyncWithoutSyncOnRollAlsoSyncsTheSegmentsSealedSinceTheLastSync) {
  TempDir dir;
  LogOptions o = Small(4096);
  o.sync_on_roll = false;  // what a broker does for fsync policy `never`
  auto log = PartitionLog::Open(dir.path(), o);
  ASSERT_TRUE(log.ok());
  for (uint64_t i = 0; i < 120; ++i) ASSERT_TRUE(log->Append(MakeFrames(i, 1)).ok());
  ASSERT_EQ(log->segments().size(), 3u);  // 0 and 50 sealed, 100 active
  const std::string first = dir / SegmentFileName(0);
  const std::string second_index = dir / TimeIndexFileName(50);
  SwapForDevNull(first);
  Status s = log->Sync();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find(SegmentFileName(0)), std::string::npos) << s.ToString();
  SwapBack(first);
  // The failed Sync kept both segments pending: the index of the second one
  // is synced by the next Sync too.
  SwapForDevNull(second_index);
  s = log->Sync();
  EXPECT_NE(s.ToString().find(TimeIndexFileName(50)), std::string::npos) << s.ToString();
  SwapBack(second_index);
  ASSERT_TRUE(log->Sync().ok());
  EXPECT_EQ(log->durable_end().next_offset, 120u);
  // Synced once, never again: the next Sync covers only what rolled since.
  SwapForDevNull(first);
  EXPECT_TRUE(log->Sync().ok());
  SwapBack(first);
  for (uint64_t i = 120; i < 160; ++i) ASSERT_TRUE(log->Append(MakeFrames(i, 1)).ok());
  ASSERT_EQ(log->segments().size(), 4u);  // 100 sealed
  SwapForDevNull(dir / SegmentFileName(100));
  EXPECT_FALSE(log->Sync().ok());
  SwapBack(dir / SegmentFileName(100));
  // A pending segment that retention deleted has nothing left to sync.
  RetentionPolicy keep_little;
  keep_little.max_bytes = 1;
  auto removed = log->Retention(keep_little, 0);
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(removed->removed.size(), 3u);
  EXPECT_TRUE(log->Sync().ok());
  ASSERT_TRUE(log->Close().ok());
}

TEST(PartitionLog, SyncWithSyncOnRollLeavesSealedSegmentsAlone) {
  TempDir dir;
  auto log = PartitionLog::Open(dir.path(), Small(4096));
  ASSERT_TRUE(log.ok());
  for (uint64_t i = 0; i < 120; ++i) ASSERT_TRUE(log->Append(MakeFrames(i, 1)).ok());
  ASSERT_EQ(log->segments().size(), 3u);
  // The roll synced them already.
  SwapForDevNull(dir / SegmentFileName(0));
  EXPECT_TRUE(log->Sync().ok());
  SwapBack(dir / SegmentFileName(0));
  ASSERT_TRUE(log->Close().ok());
}

TEST(PartitionLog, ABatchIsSplitAcrossSegmentsAtFrameBoundaries) {
  TempDir dir;
  auto log = PartitionLog::Open(dir.path(), Small(1024));
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE(log->Append(MakeFrames(0, 100)).ok());
  EXPECT_EQ(log->next_offset(), 100u);
  EXPECT_GT(log->segments().size(), 5u);
  ASSERT_TRUE(log->Close().ok());
  EXPECT_EQ(ReadOffsets(dir.path()).size(), 100u);
}

TEST(PartitionLog, AppendRefusesBytesThatAreNotFramesOfThisLog) {
  TempDir dir;
  auto log = PartitionLog::Open(dir.path(), Small());
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE(log->Append(MakeFrames(0, 3)).ok());
  // A gap in offsets without a padding frame.
  EXPECT_EQ(log->Append(MakeFrames(4, 1)).code(), StatusCode::kInvalidArgument);
  // A repeated offset.
  EXPECT_EQ(log->Append(MakeFrames(2, 1)).code(), StatusCode::kInvalidArgument);
  // A bad CRC.
  auto bad = MakeFrames(3, 1);
  bad[50] ^= std::byte{1};
  EXPECT_EQ(log->Append(bad).code(), StatusCode::kInvalidArgument);
  // Zeros.
  EXPECT_EQ(log->Append(std::vector<std::byte>(64)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(log->next_offset(), 3u);
  // After padding, offsets may jump (a dead producer's claim).
  std::vector<std::byte> ok = MakePadding(48);
  testing::Append(ok, MakeFrames(5, 1));
  EXPECT_TRUE(log->Append(ok).ok());
  EXPECT_EQ(log->next_offset(), 6u);
  ASSERT_TRUE(log->Close().ok());
  EXPECT_EQ(ReadOffsets(dir.path()), (std::vector<uint64_t>{0, 1, 2, 5}));
}

// The io_uring thread's protocol: prepare, write the bytes itself, commit.
TEST(PartitionLog, PreparedAppendsCommitInOrderAndRollOnlyWhenQuiescent) {
  TempDir dir;
  auto log = PartitionLog::Open(dir.path(), Small(1024));
  ASSERT_TRUE(log.ok());
  const auto a_bytes = MakeFrames(0, 5);  // 400 bytes
  const auto b_bytes = MakeFrames(5, 5);
  auto a = log->PrepareAppend(a_bytes.size());
  auto b = log->PrepareAppend(b_bytes.size());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->file_position, kFileHeaderLength);
  EXPECT_EQ(b->file_position, kFileHeaderLength + a_bytes.size());
  EXPECT_EQ(a->segment_base, 0u);
  // Would roll, but a and b are in flight.
  EXPECT_EQ(log->PrepareAppend(400).status().code(), StatusCode::kUnavailable);
  ASSERT_EQ(pwrite(b->fd, b_bytes.data(), b_bytes.size(), static_cast<off_t>(b->file_position)),
            static_cast<ssize_t>(b_bytes.size()));
  ASSERT_EQ(pwrite(a->fd, a_bytes.data(), a_bytes.size(), static_cast<off_t>(a->file_position)),
            static_cast<ssize_t>(a_bytes.size()));
  auto metas = [](uint64_t first, const AppendTarget& t) {
    std::vector<FrameMeta> m;
    for (uint64_t i = 0; i < 5; ++i)
      m.push_back(FrameMeta{first + i, 1000 + int64_t(first + i) * 10, t.file_position + i * 80});
    return m;
  };
  log->CommitAppend(*a, a->nbytes, metas(0, *a));
  EXPECT_EQ(log->next_offset(), 5u);
  const LogPosition mid = log->committed_end();
  log->CommitAppend(*b, b->nbytes, metas(5, *b));
  EXPECT_EQ(log->next_offset(), 10u);
  EXPECT_EQ(log->committed_end().file_position, kFileHeaderLength + 800);

  // Durability: nothing new is durable until a sync is published.
  EXPECT_EQ(log->durable_end().next_offset, 0u);
  log->MarkDurable(mid);
  EXPECT_EQ(log->durable_end().next_offset, 5u);
  ASSERT_TRUE(log->Sync().ok());
  EXPECT_EQ(log->durable_end().next_offset, 10u);
  log->MarkDurable(mid);  // never moves back
  EXPECT_EQ(log->durable_end().next_offset, 10u);

  // Now the roll happens: the new segment is named by the next offset.
  auto c = log->PrepareAppend(400);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->segment_base, 10u);
  EXPECT_EQ(c->file_position, kFileHeaderLength);
  EXPECT_NE(c->fd, a->fd);
  EXPECT_EQ(FileSizeOf(dir / "00000000000000000000.log"), kFileHeaderLength + 800);
  // A write that failed is given back and its bytes zeroed.
  const auto junk = MakeFrames(10, 5);
  ASSERT_EQ(pwrite(c->fd, junk.data(), 100, static_cast<off_t>(c->file_position)), 100);
  ASSERT_TRUE(log->AbortAppend(*c).ok());
  ASSERT_TRUE(log->Append(MakeFrames(10, 2)).ok());
  ASSERT_TRUE(log->Close().ok());
  const auto offsets = ReadOffsets(dir.path());
  EXPECT_EQ(offsets.size(), 12u);
}

TEST(PartitionLog, ACommitOutOfOrderPoisonsTheLog) {
  TempDir dir;
  auto log = PartitionLog::Open(dir.path(), Small());
  ASSERT_TRUE(log.ok());
  auto a = log->PrepareAppend(80);
  auto b = log->PrepareAppend(80);
  ASSERT_TRUE(a.ok() && b.ok());
  const FrameMeta m{0, 1, b->file_position};
  log->CommitAppend(*b, 80, std::span<const FrameMeta>(&m, 1));  // b before a
  auto c = log->PrepareAppend(80);
  EXPECT_EQ(c.status().code(), StatusCode::kInternal);
  EXPECT_NE(c.status().message().find("CommitAppend"), std::string::npos);
  EXPECT_EQ(log->Sync().code(), StatusCode::kInternal);
}

TEST(PartitionLog, PrepareAppendRejectsSizesItCannotPlace) {
  TempDir dir;
  auto log = PartitionLog::Open(dir.path(), Small(1024));
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(log->PrepareAppend(0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(log->PrepareAppend(12).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(log->PrepareAppend(1024).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(log->PrepareAppend(1024 - kFileHeaderLength).ok());
}

TEST(PartitionLog, ReopenContinuesAtTheNextOffsetFromTheCheckpoint) {
  TempDir dir;
  {
    auto log = PartitionLog::Open(dir.path(), Small());
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE(log->Append(MakeFrames(0, 120)).ok());
    ASSERT_TRUE(log->Close().ok());
  }
  auto log = PartitionLog::Open(dir.path(), Small());
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_TRUE(log->recovery().clean()) << log->recovery().ToString();
  EXPECT_TRUE(log->recovery().from_checkpoint);
  EXPECT_EQ(log->recovery().records_recovered, 0u);  // nothing after the checkpoint
  EXPECT_EQ(log->next_offset(), 120u);
  EXPECT_TRUE(log->warnings().empty());
  // The active segment is preallocated again.
  EXPECT_EQ(FileSizeOf(dir / SegmentFileName(log->segments().back().base_offset)), 4096u);
  ASSERT_TRUE(log->Append(MakeFrames(120, 10)).ok());
  ASSERT_TRUE(log->Close().ok());
  EXPECT_EQ(ReadOffsets(dir.path()).size(), 130u);
  auto v = VerifyLog(dir.path());
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok()) << v->damages.front().ToString();
}

TEST(PartitionLog, SecondWriterOnTheSameDirectoryIsUnavailable) {
  TempDir dir;
  auto a = PartitionLog::Open(dir.path(), Small());
  ASSERT_TRUE(a.ok());
  auto b = PartitionLog::Open(dir.path(), Small());
  EXPECT_EQ(b.status().code(), StatusCode::kUnavailable);
  ASSERT_TRUE(a->Close().ok());
  EXPECT_TRUE(PartitionLog::Open(dir.path(), Small()).ok());
}

TEST(PartitionLog, IsMovableAndClosesOnce) {
  TempDir dir;
  auto opened = PartitionLog::Open(dir.path(), Small());
  ASSERT_TRUE(opened.ok());
  PartitionLog a = std::move(*opened);
  ASSERT_TRUE(a.Append(MakeFrames(0, 3)).ok());
  PartitionLog b = std::move(a);
  ASSERT_TRUE(b.Append(MakeFrames(3, 3)).ok());
  std::vector<PartitionLog> logs;
  logs.push_back(std::move(b));
  EXPECT_EQ(logs[0].next_offset(), 6u);
  ASSERT_TRUE(logs[0].Close().ok());
  EXPECT_EQ(logs[0].Close().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(logs[0].Append(MakeFrames(6, 1)).code(), StatusCode::kFailedPrecondition);
}

TEST(PartitionLog, InvalidOptionsAreRefused) {
  TempDir dir;
  LogOptions o;
  o.segment_bytes = 100;
  EXPECT_EQ(PartitionLog::Open(dir.path(), o).status().code(), StatusCode::kInvalidArgument);
  o.segment_bytes = uint64_t{8} << 30;
  EXPECT_EQ(PartitionLog::Open(dir.path(), o).status().code(), StatusCode::kInvalidArgument);
}

TEST(PartitionLog, AFileWhereTheDirectoryShouldBeIsAClearError) {
  TempDir dir;
  testing::WriteFileBytes(dir / "t", testing::Bytes("x"));
  auto log = PartitionLog::Open(dir / "t/0", Small());
  EXPECT_FALSE(log.ok());
  EXPECT_NE(log.status().message().find("cannot create partition directory " + (dir / "t/0")),
            std::string::npos)
      << log.status().ToString();
}

TEST(PartitionLog, UnwritableDataDirIsPermissionDenied) {
  if (geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions";
  TempDir dir;
  ASSERT_EQ(chmod(dir.path().c_str(), 0500), 0);
  auto log = PartitionLog::Open(dir / "t/0", Small());
  EXPECT_EQ(log.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(log.status().message().find(dir / "t/0"), std::string::npos);
  chmod(dir.path().c_str(), 0700);
}

// A full disk (simulated with RLIMIT_FSIZE): the append fails with
// kResourceExhausted, nothing partial stays behind, and appends resume when
// space returns.
TEST(PartitionLog, FullDiskFailsTheAppendCleanlyAndResumes) {
  TempDir dir;
  LogOptions o = Small(16 * 1024);
  o.preallocate = false;  // the file grows with each write
  auto log = PartitionLog::Open(dir.path(), o);
  ASSERT_TRUE(log.ok());
  struct rlimit old_limit;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old_limit;
  small.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  uint64_t next = 0;
  Status s;
  while ((s = log->Append(MakeFrames(next, 10))).ok()) next += 10;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old_limit), 0);
  signal(SIGXFSZ, SIG_DFL);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.ToString();
  EXPECT_EQ(log->next_offset(), next);
  ASSERT_TRUE(log->Append(MakeFrames(next, 10)).ok());
  ASSERT_TRUE(log->Close().ok());
  const auto offsets = ReadOffsets(dir.path());
  ASSERT_EQ(offsets.size(), next + 10);
  auto v = VerifyLog(dir.path());
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok());
}

// A full disk that refuses only the time index (the segment was
// preallocated, so its writes still fit): simulated by putting /dev/full
// (every write ENOSPC) behind the index's descriptor. Appends go on, Sync
// reports the failure, and once the writes succeed again the log goes on
// with a whole index. (The failed flush used to make the log refuse every
// later append until it was reopened: a broker never resumed.)
TEST(PartitionLog, AFullDiskThatRefusesTheIndexWriteDoesNotStopTheLog) {
  TempDir dir;
  LogOptions o = Small(1 << 20);
  o.index_interval_bytes = 64;  // an entry per record
  auto log = PartitionLog::Open(dir.path(), o);
  ASSERT_TRUE(log.ok());
  uint64_t next = 0;
  for (; next < 10; ++next) ASSERT_TRUE(log->Append(MakeFrames(next, 1)).ok());
  ASSERT_TRUE(log->Sync().ok());
  const std::string index = dir / "00000000000000000000.timeindex";
  int fd = -1;
  for (int i = 0; i < 1024 && fd < 0; ++i) {
    char link[4096];
    const ssize_t n = readlink(("/proc/self/fd/" + std::to_string(i)).c_str(), link, sizeof link);
    if (n > 0 && std::string(link, static_cast<size_t>(n)) == index) fd = i;
  }
  ASSERT_GE(fd, 0) << "the index's descriptor";
  const int saved = dup(fd);
  const int full = open("/dev/full", O_WRONLY);
  ASSERT_GE(full, 0);
  ASSERT_EQ(dup2(full, fd), fd);
  for (; next < 210; ++next) {
    const Status s = log->Append(MakeFrames(next, 1));
    ASSERT_TRUE(s.ok()) << next << ": " << s.ToString();
  }
  const Status refused = log->Sync();
  EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted) << refused.ToString();
  ASSERT_EQ(dup2(saved, fd), fd);  // space again
  close(saved);
  close(full);
  ASSERT_TRUE(log->Sync().ok());
  for (; next < 220; ++next) ASSERT_TRUE(log->Append(MakeFrames(next, 1)).ok());
  ASSERT_TRUE(log->Close().ok());
  auto reopened = PartitionLog::Open(dir.path(), o);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_TRUE(reopened->warnings().empty()) << reopened->warnings().front();
  EXPECT_EQ(reopened->next_offset(), next);
  ASSERT_TRUE(reopened->Close().ok());
  const auto offsets = ReadOffsets(dir.path());
  ASSERT_EQ(offsets.size(), next);
  for (uint64_t i = 0; i < next; ++i) ASSERT_EQ(offsets[i], i);
  auto v = VerifyLog(dir.path());
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok());
}

TEST(Retention, BySizeDeletesOldestSegmentsButNeverTheActiveOne) {
  TempDir dir(/*in_memory=*/true);
  auto log = PartitionLog::Open(dir.path(), Small(1024));
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE(log->Append(MakeFrames(0, 100)).ok());
  const auto before = log->segments();
  ASSERT_GE(before.size(), 8u);
  auto r = log->Retention(RetentionPolicy{3000, std::nullopt}, WallClockNanos());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_LE(log->size_bytes(), 3000u);
  ASSERT_FALSE(r->removed.empty());
  EXPECT_EQ(r->removed.front().base_offset, 0u);
  EXPECT_FALSE(r->removed.front().by_age);
  EXPECT_EQ(r->log_start_offset, log->log_start_offset());
  EXPECT_EQ(log->log_start_offset(), log->segments().front().base_offset);
  EXPECT_FALSE(FileExists(dir / "00000000000000000000.log"));
  EXPECT_FALSE(FileExists(dir / "00000000000000000000.timeindex"));
  // Even a zero budget keeps the active segment.
  r = log->Retention(RetentionPolicy{0, std::nullopt}, WallClockNanos());
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(log->segments().size(), 1u);
  EXPECT_TRUE(log->segments().front().active);
  EXPECT_EQ(log->next_offset(), 100u);
  // Readers see the log start move.
  auto reader = LogReader::Open(dir.path());
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ(reader->Seek(0).code(), StatusCode::kOutOfRange);
  ASSERT_TRUE(log->Close().ok());
}

TEST(Retention, ByAgeDeletesExpiredSegmentsButNeverTheActiveOne) {
  TempDir dir(/*in_memory=*/true);
  auto log = PartitionLog::Open(dir.path(), Small(1024));
  ASSERT_TRUE(log.ok());
  const int64_t hour = 3600LL * 1'000'000'000;
  const int64_t now = 100 * hour;
  // Records 0..39 are 50 hours old, 40..79 are 1 hour old.
  ASSERT_TRUE(log->Append(MakeFrames(0, 40, now - 50 * hour, 1)).ok());
  ASSERT_TRUE(log->Append(MakeFrames(40, 40, now - hour, 1)).ok());
  const std::size_t segments = log->segments().size();
  auto r = log->Retention(RetentionPolicy{std::nullopt, 24 * 3600 * 1000}, now);
  ASSERT_TRUE(r.ok());
  ASSERT_FALSE(r->removed.empty());
  for (const auto& s : r->removed) EXPECT_TRUE(s.by_age);
  // Every remaining segment holds a record younger than a day; the segment
  // holding offset 39 mixes both and stays.
  EXPECT_LE(log->log_start_offset(), 39u);
  EXPECT_GT(log->log_start_offset(), 0u);
  EXPECT_LT(log->segments().size(), segments);
  // Everything is old a week later, yet the active segment stays.
  r = log->Retention(RetentionPolicy{std::nullopt, 24 * 3600 * 1000}, now + 7 * 24 * hour);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(log->segments().size(), 1u);
  EXPECT_TRUE(log->segments().front().active);
  ASSERT_TRUE(log->Close().ok());
  // Reopened, the ages come from the time index of sealed segments.
  auto again = PartitionLog::Open(dir.path(), Small(1024));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->segments().size(), 1u);
}

TEST(Retention, AgesOfSealedSegmentsSurviveAReopen) {
  TempDir dir(/*in_memory=*/true);
  const int64_t hour = 3600LL * 1'000'000'000;
  const int64_t now = 100 * hour;
  {
    auto log = PartitionLog::Open(dir.path(), Small(1024));
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE(log->Append(MakeFrames(0, 40, now - 50 * hour, 1)).ok());
    ASSERT_TRUE(log->Append(MakeFrames(40, 40, now - hour, 1)).ok());
    ASSERT_TRUE(log->Close().ok());
  }
  auto log = PartitionLog::Open(dir.path(), Small(1024));
  ASSERT_TRUE(log.ok());
  auto r = log->Retention(RetentionPolicy{std::nullopt, 24 * 3600 * 1000}, now);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->removed.empty());
  EXPECT_LE(log->log_start_offset(), 39u);
}

TEST(PartitionLog, TruncateRemovesTheTailAndContinuesAtTheOffset) {
  TempDir dir;
  auto log = PartitionLog::Open(dir.path(), Small(1024));
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE(log->Append(MakeFrames(0, 60)).ok());
  const std::size_t segments = log->segments().size();
  ASSERT_GE(segments, 4u);
  // Cut inside an older segment: later segments go away.
  ASSERT_TRUE(log->Truncate(20).ok());
  EXPECT_EQ(log->next_offset(), 20u);
  EXPECT_LT(log->segments().size(), segments);
  EXPECT_EQ(log->durable_end().next_offset, 20u);
  ASSERT_TRUE(log->Append(MakeFrames(20, 5, 99'000)).ok());
  EXPECT_EQ(log->Truncate(100).code(), StatusCode::kOk);  // past the end: no-op
  ASSERT_TRUE(log->Close().ok());
  const auto offsets = ReadOffsets(dir.path());
  ASSERT_EQ(offsets.size(), 25u);
  for (uint64_t i = 0; i < 25; ++i) EXPECT_EQ(offsets[i], i);
  auto v = VerifyLog(dir.path());
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok()) << v->damages.front().ToString();
  EXPECT_EQ(v->last_timestamp_ns, 99'000 + 40);
}

}  // namespace
}  // namespace runnel
