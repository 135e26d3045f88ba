// LogReader and VerifyLog: iteration, seeks by offset and timestamp across
// segments, damage reports, a concurrent writer, data dir listing.

#include "persistence/reader.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "persistence/format.h"
#include "persistence/log.h"
#include "tests/persistence/test_util.h"

namespace runnel {
namespace {

using testing::FileSizeOf;
using testing::MakeFrame;
using testing::MakeFrames;
using testing::MakePadding;
using testing::TempDir;
using testing::XorByte;

constexpr uint64_t kFrame = 80;

LogOptions Opts(uint64_t segment_bytes) {
  LogOptions o;
  o.segment_bytes = segment_bytes;
  o.index_interval_bytes = 512;
  return o;
}

LogReaderOptions AtRest() {
  LogReaderOptions o;
  o.follow = false;
  return o;
}

// A closed log of `n` records, timestamps 1000 + 10 * offset, in segments of
// 4 KiB (50 records each).
void WriteLog(const std::string& dir, uint64_t n) {
  auto log = PartitionLog::Open(dir, Opts(4096));
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE(log->Append(MakeFrames(0, n, 1000, 10)).ok());
  ASSERT_TRUE(log->Close().ok());
}

std::optional<uint64_t> NextOffset(LogReader& r) {
  LogEntry e = r.Next();
  if (e.kind != LogEntry::Kind::kRecord) return std::nullopt;
  return e.record.offset();
}

TEST(LogReader, ReadsEveryRecordInOrderAcrossSegments) {
  TempDir d(/*in_memory=*/true);
  WriteLog(d.path(), 1000);
  auto r = LogReader::Open(d.path(), AtRest());
  ASSERT_TRUE(r.ok());
  for (uint64_t i = 0; i < 1000; ++i) {
    LogEntry e = r->Next();
    ASSERT_EQ(e.kind, LogEntry::Kind::kRecord) << i;
    ASSERT_EQ(e.record.offset(), i);
    EXPECT_EQ(e.record.timestamp_ns(), int64_t(1000 + 10 * i));
    EXPECT_EQ(e.record.key(), "k");
    EXPECT_EQ(e.record.value().substr(0, 6), "value-");
    EXPECT_EQ(e.segment_base, i / 50 * 50);
    EXPECT_FALSE(e.control);
  }
  EXPECT_EQ(r->Next().kind, LogEntry::Kind::kEnd);
  EXPECT_EQ(r->Next().kind, LogEntry::Kind::kEnd);
  EXPECT_TRUE(r->damages().empty());
}

TEST(LogReader, SeekByOffsetUsesTheSegmentAndTheTimeIndex) {
  TempDir d(/*in_memory=*/true);
  WriteLog(d.path(), 1000);
  auto r = LogReader::Open(d.path(), AtRest());
  ASSERT_TRUE(r.ok());
  for (uint64_t target : {0, 1, 49, 50, 51, 333, 777, 998, 999}) {
    ASSERT_TRUE(r->Seek(target).ok());
    const uint64_t walked_before = r->stats().records;
    ASSERT_EQ(NextOffset(*r), target);
    // The index (an entry per 512 bytes) bounds the scan to a few records.
    EXPECT_LE(r->stats().records - walked_before, 512 / kFrame + 2) << target;
    ASSERT_EQ(NextOffset(*r), target == 999 ? std::nullopt : std::optional<uint64_t>(target + 1));
  }
  // Past the end: positioned at the end; the record comes when written.
  ASSERT_TRUE(r->Seek(5000).ok());
  EXPECT_EQ(r->Next().kind, LogEntry::Kind::kEnd);
}

// A seek into a segment whose header is damaged: the damage is the first
// thing Next() returns (it was dropped, so a consumer starting at the
// earliest offset began at the next segment without a word of loss).
TEST(LogReader, ASeekIntoASegmentWithADamagedHeaderReportsIt) {
  TempDir d(/*in_memory=*/true);
  WriteLog(d.path(), 120);
  XorByte(d / "00000000000000000000.log", 0, 0x01);  // the magic
  // and its CRC: not a header of ours with one damaged byte (read by its
  // records), but a file named like a segment that is not one.
  XorByte(d / "00000000000000000000.log", file_header::kCrc, 0x01);
  auto r = LogReader::Open(d.path(), AtRest());
  ASSERT_TRUE(r.ok());
  for (uint64_t target : {0, 10}) {
    ASSERT_TRUE(r->Seek(target).ok());
    const LogEntry e = r->Next();
    ASSERT_EQ(e.kind, LogEntry::Kind::kDamage) << target;
    EXPECT_EQ(e.damage->file, "00000000000000000000.log");
    EXPECT_EQ(NextOffset(*r), 50u);
  }
}

// Every record offset and every damage a reader at rest meets, start to end.
struct ReadToEnd {
  std::vector<uint64_t> offsets;
  std::vector<Damage> damages;
};
ReadToEnd ReadAllOf(const std::string& dir) {
  ReadToEnd out;
  auto r = LogReader::Open(dir, AtRest());
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (!r.ok()) return out;
  for (LogEntry e = r->Next(); e.kind != LogEntry::Kind::kEnd; e = r->Next()) {
    if (e.kind == LogEntry::Kind::kRecord) out.offsets.push_back(e.record.offset());
    if (e.kind == LogEntry::Kind::kDamage) out.damages.push_back(*e.damage);
  }
  return out;
}

// A header that fails only its CRC (a damaged byte in its creation time)
// costs nothing but the report: the records carry their own CRCs and offsets
// (every one of the segment's 50 was dropped as damaged). VerifyLog counts
// them all and names the header. The same for a damaged bit in the magic or
// the version, which the CRC tells from a file of another format (the whole
// segment was skipped, or, for the version, the log refused).
TEST(LogReader, ASegmentWhoseHeaderFailsOnlyItsCrcIsReadByItsRecords) {
  for (const uint64_t at :
       {uint64_t{file_header::kCreatedNs + 6}, uint64_t{3}, uint64_t{file_header::kVersion + 2}}) {
    SCOPED_TRACE(at);
    TempDir d(/*in_memory=*/true);
    WriteLog(d.path(), 120);
    XorByte(d / "00000000000000000050.log", at, 0x01);
    const ReadToEnd all = ReadAllOf(d.path());
    ASSERT_EQ(all.damages.size(), 1u);
    EXPECT_EQ(all.damages[0].file, "00000000000000000050.log");
    EXPECT_NE(all.damages[0].reason.find("header CRC mismatch"), std::string::npos)
        << all.damages[0].reason;
    ASSERT_EQ(all.offsets.size(), 120u);
    for (uint64_t i = 0; i < 120; ++i) EXPECT_EQ(all.offsets[i], i);
    Result<VerifyReport> v = VerifyLog(d.path());
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v->records, 120u);
    ASSERT_EQ(v->damages.size(), 1u);
    EXPECT_EQ(v->damages[0].file, "00000000000000000050.log");
  }
}

// Only a CRC mismatch is read past: a whole header whose base offset is not
// its name's (segment 100 copied under the name of segment 0, which
// retention removed) is skipped as damage; its records were handed out
// first, before offsets 50..99.
TEST(LogReader, ASegmentWhoseHeaderNamesAnotherBaseIsNotRead) {
  TempDir d(/*in_memory=*/true);
  WriteLog(d.path(), 120);
  std::filesystem::remove(d / "00000000000000000000.log");
  std::filesystem::remove(d / "00000000000000000000.timeindex");
  std::filesystem::copy_file(d / "00000000000000000100.log", d / "00000000000000000000.log");
  const ReadToEnd all = ReadAllOf(d.path());
  EXPECT_FALSE(all.damages.empty());
  ASSERT_EQ(all.offsets.size(), 70u);
  for (uint64_t i = 0; i < 70; ++i) EXPECT_EQ(all.offsets[i], 50 + i);
}

TEST(LogReader, SeekBeforeTheLogStartIsOutOfRange) {
  TempDir d(/*in_memory=*/true);
  {
    auto log = PartitionLog::Open(d.path(), Opts(4096));
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE(log->Append(MakeFrames(0, 200)).ok());
    auto gone = log->Retention(RetentionPolicy{4096, std::nullopt}, 0);
    ASSERT_TRUE(gone.ok());
    ASSERT_TRUE(log->Close().ok());
  }
  auto r = LogReader::Open(d.path(), AtRest());
  ASSERT_TRUE(r.ok());
  const uint64_t start = r->log_start_offset();
  ASSERT_GT(start, 0u);
  auto s = r->Seek(start - 1);
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  EXPECT_NE(s.message().find("seek to " + std::to_string(start)), std::string::npos);
  ASSERT_TRUE(r->Seek(start).ok());
  EXPECT_EQ(NextOffset(*r), start);
}

TEST(LogReader, SeekTimestampFindsTheFirstRecordAtOrAfterIt) {
  TempDir d(/*in_memory=*/true);
  WriteLog(d.path(), 1000);  // ts = 1000 + 10 * offset
  auto r = LogReader::Open(d.path(), AtRest());
  ASSERT_TRUE(r.ok());
  struct Case {
    int64_t ts;
    std::optional<uint64_t> want;
  };
  for (const Case& c : std::vector<Case>{{1000 + 10 * 137, 137},               // exact
                                         {1000 + 10 * 137 - 5, 137},           // between records
                                         {1000 + 10 * 50, 50},                 // first of a segment
                                         {1000 + 10 * 49 + 1, 50},             // between segments
                                         {1000 + 10 * 999, 999},               // the last
                                         {0, 0},                               // before everything
                                         {1000 + 10 * 1000, std::nullopt}}) {  // after
    ASSERT_TRUE(r->SeekTimestamp(c.ts).ok());
    const uint64_t walked_before = r->stats().records;
    EXPECT_EQ(NextOffset(*r), c.want) << c.ts;
    if (c.want) {
      EXPECT_LE(r->stats().records - walked_before, 512 / kFrame + 2) << c.ts;
    }
  }
}

// Time index entries whose timestamps are lower than their records' (a
// damaged index: in order within the file, but below what they index) are
// not trusted: the seek scans instead of skipping the records they hide.
TEST(LogReader, SeekTimestampDoesNotTrustIndexEntriesBelowTheirRecords) {
  TempDir d(/*in_memory=*/true);
  WriteLog(d.path(), 200);  // ts = 1000 + 10 * offset, segments of 50
  const std::string idx = d / "00000000000000000100.timeindex";
  ASSERT_GT(std::filesystem::file_size(idx), kFileHeaderLength);
  testing::LowerIndexTimestamps(idx, 1000);
  auto r = LogReader::Open(d.path(), AtRest());
  ASSERT_TRUE(r.ok());
  for (const uint64_t want : {uint64_t{100}, uint64_t{120}, uint64_t{149}, uint64_t{150}}) {
    ASSERT_TRUE(r->SeekTimestamp(1000 + 10 * static_cast<int64_t>(want)).ok());
    EXPECT_EQ(NextOffset(*r), want);
    EXPECT_EQ(NextOffset(*r), want + 1);
  }
}

// An index that lost its last entries (a crash before they were written)
// does not tell a seek by time that its segment ends early.
TEST(LogReader, SeekTimestampDoesNotSkipASegmentWhoseIndexLostItsLastEntries) {
  TempDir d(/*in_memory=*/true);
  WriteLog(d.path(), 200);  // ts = 1000 + 10 * offset, segments of 50
  const std::string idx = d / "00000000000000000100.timeindex";
  const uint64_t size = std::filesystem::file_size(idx);
  ASSERT_GE(size, kFileHeaderLength + 2 * kTimeIndexEntryLength);
  std::filesystem::resize_file(idx, size - kTimeIndexEntryLength);
  auto r = LogReader::Open(d.path(), AtRest());
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->SeekTimestamp(1000 + 10 * 149).ok());
  EXPECT_EQ(NextOffset(*r), 149u);
  EXPECT_EQ(NextOffset(*r), 150u);
}

TEST(LogReader, SeekTimestampWithOutOfOrderTimestampsFollowsLogOrder) {
  TempDir d(/*in_memory=*/true);
  {
    auto log = PartitionLog::Open(d.path(), Opts(4096));
    ASSERT_TRUE(log.ok());
    // Producers' clocks disagree: timestamps go back and forth.
    const std::vector<int64_t> ts = {100, 500, 200, 300, 900, 400, 950, 600};
    for (uint64_t i = 0; i < ts.size(); ++i) {
      ASSERT_TRUE(log->Append(MakeFrame(i, ts[i], "k", std::string(500, 'x'))).ok());
    }
    ASSERT_TRUE(log->Close().ok());
  }
  auto r = LogReader::Open(d.path(), AtRest());
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->SeekTimestamp(450).ok());
  EXPECT_EQ(NextOffset(*r), 1u);  // 500 is the first at or after 450
  EXPECT_EQ(NextOffset(*r), 2u);  // then everything after it, in log order
  ASSERT_TRUE(r->SeekTimestamp(920).ok());
  EXPECT_EQ(NextOffset(*r), 6u);
}

TEST(LogReader, ReportsDamageWithFileAndPositionAndResynchronizes) {
  TempDir d(/*in_memory=*/true);
  WriteLog(d.path(), 100);
  const uint64_t pos = kFileHeaderLength + 7 * kFrame;
  XorByte(d / "00000000000000000000.log", pos + 60, 0x04);
  auto r = LogReader::Open(d.path(), AtRest());
  ASSERT_TRUE(r.ok());
  std::vector<uint64_t> offsets;
  int damages = 0;
  for (LogEntry e = r->Next(); e.kind != LogEntry::Kind::kEnd; e = r->Next()) {
    if (e.kind == LogEntry::Kind::kRecord) {
      offsets.push_back(e.record.offset());
    } else {
      ++damages;
      ASSERT_NE(e.damage, nullptr);
      EXPECT_EQ(e.damage->file, "00000000000000000000.log");
      EXPECT_EQ(e.damage->file_position, pos);
      EXPECT_EQ(e.damage->reason, "crc mismatch");
      EXPECT_EQ(e.damage->offset_before, 6u);
      EXPECT_EQ(e.damage->resume_position, pos + kFrame);
      EXPECT_EQ(e.damage->ToString(),
                "00000000000000000000.log:624: crc mismatch (after offset 6; resumed at 704)");
    }
  }
  EXPECT_EQ(damages, 1);
  EXPECT_EQ(offsets.size(), 99u);
  EXPECT_EQ(offsets[6], 6u);
  EXPECT_EQ(offsets[7], 8u);
}

TEST(LogReader, WaitsAtAFrameTheWriterHasNotFinished) {
  TempDir d(/*in_memory=*/true);
  auto log = PartitionLog::Open(d.path(), Opts(4096));
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE(log->Append(MakeFrames(0, 3)).ok());
  auto r = LogReader::Open(d.path());  // follow
  ASSERT_TRUE(r.ok());
  for (uint64_t i = 0; i < 3; ++i) ASSERT_EQ(NextOffset(*r), i);
  EXPECT_EQ(r->Next().kind, LogEntry::Kind::kEnd);
  // Half a frame lands (as a concurrent pwrite may look to an mmap reader).
  const auto f = MakeFrames(3, 1);
  auto t = log->PrepareAppend(f.size());
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(pwrite(t->fd, f.data(), 44, static_cast<off_t>(t->file_position)), 44);
  EXPECT_EQ(r->Next().kind, LogEntry::Kind::kEnd);
  EXPECT_EQ(r->Next().kind, LogEntry::Kind::kEnd);
  ASSERT_EQ(pwrite(t->fd, f.data() + 44, f.size() - 44, static_cast<off_t>(t->file_position + 44)),
            static_cast<ssize_t>(f.size() - 44));
  const FrameMeta m{3, 1030, t->file_position};
  log->CommitAppend(*t, t->nbytes, std::span<const FrameMeta>(&m, 1));
  EXPECT_EQ(NextOffset(*r), 3u);
  EXPECT_TRUE(r->damages().empty());
  ASSERT_TRUE(log->Close().ok());
}

// Following a live log, a bad frame in the last segment is taken as one the
// writer has not finished, unless the reader knows its record is written
// (SetWrittenBelow, e.g. it is durable): then it is damage, skipped as soon
// as a valid record follows it.
TEST(LogReader, FollowingALogSkipsDamageBelowTheWrittenBound) {
  TempDir d(/*in_memory=*/true);
  auto log = PartitionLog::Open(d.path(), Opts(1 << 20));  // one segment: the last
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE(log->Append(MakeFrames(0, 10)).ok());
  XorByte(d / "00000000000000000000.log", kFileHeaderLength + 5 * kFrame + 60, 0x04);
  auto r = LogReader::Open(d.path());  // follow
  ASSERT_TRUE(r.ok());
  for (uint64_t i = 0; i < 5; ++i) ASSERT_EQ(NextOffset(*r), i);
  EXPECT_EQ(r->Next().kind, LogEntry::Kind::kEnd);  // maybe still being written
  r->SetWrittenBelow(5);                            // records 0..4: not enough
  EXPECT_EQ(r->Next().kind, LogEntry::Kind::kEnd);
  r->SetWrittenBelow(10);
  const LogEntry e = r->Next();
  ASSERT_EQ(e.kind, LogEntry::Kind::kDamage);
  EXPECT_EQ(e.damage->reason, "crc mismatch");
  for (uint64_t i = 6; i < 10; ++i) ASSERT_EQ(NextOffset(*r), i);
  EXPECT_EQ(r->Next().kind, LogEntry::Kind::kEnd);
  // The writer goes on appending to the same segment: the reader follows.
  ASSERT_TRUE(log->Append(MakeFrames(10, 2)).ok());
  EXPECT_EQ(NextOffset(*r), 10u);
  EXPECT_EQ(NextOffset(*r), 11u);
  ASSERT_TRUE(log->Close().ok());
}

// A reader maps the last segment at its preallocated size; the writer then
// seals it (cuts it to its data). A damaged length claiming a frame that
// runs past the cut is damage, read from the file as it is now: the CRC
// over it touched pages no longer in the file (SIGBUS, the process died).
TEST(LogReader, ADamagedLengthPastTheSealOfASegmentMappedBeforeIsDamageNotAFault) {
  TempDir d(/*in_memory=*/true);
  auto log = PartitionLog::Open(d.path(), Opts(1 << 20));  // preallocated 1 MiB
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE(log->Append(MakeFrames(0, 100)).ok());
  auto r = LogReader::Open(d.path());  // follow
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(NextOffset(*r), 0u);  // the segment is mapped, all 1 MiB of it
  // Record 50's length + 64 KiB: still inside the mapping, far past the data.
  XorByte(d / "00000000000000000000.log", kFileHeaderLength + 50 * kFrame + frame::kLength + 2,
          0x01);
  ASSERT_TRUE(log->Close().ok());  // seals: the file is cut to its 8 KiB of data
  ASSERT_LT(FileSizeOf(d / "00000000000000000000.log"), 64u * 1024);
  r->SetWrittenBelow(100);
  for (uint64_t i = 1; i < 50; ++i) ASSERT_EQ(NextOffset(*r), i);
  const LogEntry e = r->Next();
  ASSERT_EQ(e.kind, LogEntry::Kind::kDamage);
  for (uint64_t i = 51; i < 100; ++i) ASSERT_EQ(NextOffset(*r), i);
  EXPECT_EQ(r->Next().kind, LogEntry::Kind::kEnd);
}

// The damaged record is the last one written: nothing follows it yet, so
// the reader waits (and never gives up on the segment) until one does.
TEST(LogReader, FollowingALogWaitsPastDamageUntilARecordFollowsIt) {
  TempDir d(/*in_memory=*/true);
  auto log = PartitionLog::Open(d.path(), Opts(1 << 20));
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE(log->Append(MakeFrames(0, 3)).ok());
  XorByte(d / "00000000000000000000.log", kFileHeaderLength + 2 * kFrame + 60, 0x04);
  auto r = LogReader::Open(d.path());
  ASSERT_TRUE(r.ok());
  r->SetWrittenBelow(3);
  ASSERT_EQ(NextOffset(*r), 0u);
  ASSERT_EQ(NextOffset(*r), 1u);
  EXPECT_EQ(r->Next().kind, LogEntry::Kind::kEnd);
  EXPECT_EQ(r->Next().kind, LogEntry::Kind::kEnd);
  EXPECT_TRUE(r->damages().empty());
  ASSERT_TRUE(log->Append(MakeFrames(3, 1)).ok());
  EXPECT_EQ(r->Next().kind, LogEntry::Kind::kDamage);
  EXPECT_EQ(NextOffset(*r), 3u);
  EXPECT_EQ(r->damages().size(), 1u);
  ASSERT_TRUE(log->Close().ok());
}

// The writer seals a segment by cutting it to its data. A reader whose
// mapping still covers the preallocated size must not touch the page past
// the new end (SIGBUS): it probes a page-aligned end with pread.
TEST(LogReader, SurvivesTheWriterSealingTheSegmentUnderIt) {
  TempDir d(/*in_memory=*/true);
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  auto log = PartitionLog::Open(d.path(), Opts(4 * page));
  ASSERT_TRUE(log.ok());
  // Fill exactly to the first page boundary: 64-byte header + frames.
  const uint64_t n = (page - kFileHeaderLength) / kFrame;
  const uint64_t rest = page - kFileHeaderLength - n * kFrame;
  ASSERT_TRUE(log->Append(MakeFrames(0, n)).ok());
  if (rest > 0) {
    ASSERT_GE(rest, kMinPaddingWithLength);
    ASSERT_TRUE(log->Append(MakePadding(static_cast<uint32_t>(rest))).ok());
  }
  ASSERT_EQ(log->committed_end().file_position, page);
  auto r = LogReader::Open(d.path());
  ASSERT_TRUE(r.ok());
  for (uint64_t i = 0; i < n; ++i) ASSERT_EQ(NextOffset(*r), i);
  EXPECT_EQ(r->Next().kind, LogEntry::Kind::kEnd);  // at the zero word at `page`
  ASSERT_TRUE(log->Close().ok());                   // the file shrinks to `page`
  ASSERT_EQ(testing::FileSizeOf(d / "00000000000000000000.log"), page);
  EXPECT_EQ(r->Next().kind, LogEntry::Kind::kEnd);
  EXPECT_EQ(r->Next().kind, LogEntry::Kind::kEnd);
  // A later writer appends to the same segment again.
  auto again = PartitionLog::Open(d.path(), Opts(4 * page));
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE(again->Append(MakeFrames(n, 2)).ok());
  EXPECT_EQ(NextOffset(*r), n);
  EXPECT_EQ(NextOffset(*r), n + 1);
  EXPECT_TRUE(r->damages().empty());
}

// A writer appending batches of 64 records to 256 KiB segments, so it seals
// (cuts a segment to its preallocated size down to its data) and rolls every
// 50 appends; publishes how many records it has written. Stops after
// `records`.
class RollingWriter {
 public:
  RollingWriter(const std::string& dir, uint64_t records) {
    thread_ = std::thread([this, dir, records] {
      auto log = PartitionLog::Open(dir, Opts(256 << 10));
      ASSERT_TRUE(log.ok());
      for (uint64_t next = 0; next < records && !stop_.load(); next += 64) {
        ASSERT_TRUE(log->Append(MakeFrames(next, 64)).ok());
        written_.store(next + 64, std::memory_order_release);
      }
      ASSERT_TRUE(log->Close().ok());
    });
  }
  ~RollingWriter() {
    stop_ = true;
    thread_.join();
  }
  uint64_t written() const { return written_.load(std::memory_order_acquire); }

 private:
  std::atomic<uint64_t> written_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// A consumer following the log right behind the writer sees the end of a
// segment just before the writer appends there and rolls. That is the end of
// the data for now, not a hole: every record arrives, none is reported
// damaged. (It reported "zero-filled hole followed by non-zero bytes" and
// skipped records, every few rolls.)
TEST(LogReader, FollowingRightBehindARollingWriterSeesEveryRecordAndNoDamage) {
  TempDir d(/*in_memory=*/true);
  constexpr uint64_t kRecords = 640'000;
  RollingWriter writer(d.path(), kRecords);
  auto r = LogReader::Open(d.path());
  ASSERT_TRUE(r.ok());
  uint64_t next = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (next < kRecords && std::chrono::steady_clock::now() < deadline) {
    r->SetWrittenBelow(writer.written());
    const LogEntry e = r->Next();
    if (e.kind == LogEntry::Kind::kDamage) {
      ADD_FAILURE() << "damage at record " << next << ": " << e.damage->ToString();
      break;
    }
    if (e.kind != LogEntry::Kind::kRecord) continue;
    ASSERT_EQ(e.record.offset(), next);
    ++next;
  }
  EXPECT_EQ(next, kRecords);
}

// A reader at rest (not following) run to the end of a log that is being
// written, again and again, as Bus::CreateTopic and `runnel replay` do: the
// writer's seal cuts the segment under its mapping, and it must not touch
// the pages cut off (SIGBUS killed the process).
TEST(LogReader, AReaderAtRestOfALogBeingWrittenNeverTouchesTheCutPages) {
  TempDir d(/*in_memory=*/true);
  constexpr uint64_t kRecords = 640'000;
  RollingWriter writer(d.path(), kRecords);
  uint64_t last = 0;
  // Until the writer is done, and at least one pass that read a record (a
  // writer that ran alone on a loaded machine may finish before the first).
  for (int pass = 0; (writer.written() < kRecords || last == 0) && pass < 100'000; ++pass) {
    auto r = LogReader::Open(d.path(), AtRest());
    if (!r.ok()) continue;  // no segment yet
    // From near the end, as NextOffsetOnDisk does: the active segment's tail.
    const uint64_t w = writer.written();
    if (!r->Seek(w > 10 ? w - 10 : 0).ok()) continue;
    for (LogEntry e = r->Next(); e.kind != LogEntry::Kind::kEnd; e = r->Next()) {
      if (e.kind == LogEntry::Kind::kRecord) last = std::max(last, e.record.offset());
    }
  }
  EXPECT_GT(last, 0u);
}

TEST(LogReader, StartsOnAnEmptyDirectoryAndPicksUpTheFirstSegment) {
  TempDir d(/*in_memory=*/true);
  auto r = LogReader::Open(d.path());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->Next().kind, LogEntry::Kind::kEnd);
  auto log = PartitionLog::Open(d.path(), Opts(4096));
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE(log->Append(MakeFrames(0, 2)).ok());
  EXPECT_EQ(NextOffset(*r), 0u);
  EXPECT_EQ(NextOffset(*r), 1u);
  ASSERT_TRUE(log->Close().ok());
  EXPECT_EQ(LogReader::Open(d / "missing").status().code(), StatusCode::kNotFound);
}

// A writer thread appends (rolling segments, with padding frames between some
// records) while the reader polls: every record exactly once, in order.
TEST(LogReader, KeepsUpWithAConcurrentAppender) {
  TempDir d(/*in_memory=*/true);
  constexpr uint64_t kRecords = 20000;
  LogOptions o = Opts(16 * 1024);
  o.sync_on_roll = false;  // speed: durability is not under test here
  auto opened = PartitionLog::Open(d.path(), o);
  ASSERT_TRUE(opened.ok());
  PartitionLog log = std::move(*opened);
  std::atomic<bool> writer_failed{false};
  std::thread writer([&] {
    std::mt19937_64 rng(42);
    uint64_t next = 0;
    while (next < kRecords) {
      std::vector<std::byte> batch;
      const uint64_t n = std::min<uint64_t>(1 + rng() % 20, kRecords - next);
      for (uint64_t i = 0; i < n; ++i) {
        const uint64_t off = next + i;
        testing::Append(batch,
                        MakeFrame(off, int64_t(off), "key",
                                  "v" + std::to_string(off) + std::string(rng() % 200, 'x')));
      }
      if (rng() % 10 == 0) testing::Append(batch, MakePadding(16 + 8 * (rng() % 10)));
      if (!log.Append(batch).ok()) {
        writer_failed = true;
        return;
      }
      next += n;
      if (rng() % 50 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  auto r = LogReader::Open(d.path());
  ASSERT_TRUE(r.ok());
  uint64_t expected = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (expected < kRecords && std::chrono::steady_clock::now() < deadline && !writer_failed) {
    LogEntry e = r->Next();
    if (e.kind == LogEntry::Kind::kEnd) {
      std::this_thread::yield();
      continue;
    }
    ASSERT_EQ(e.kind, LogEntry::Kind::kRecord) << e.damage->ToString();
    ASSERT_EQ(e.record.offset(), expected);
    ASSERT_EQ(e.record.value().substr(0, 1 + std::to_string(expected).size()),
              "v" + std::to_string(expected));
    ++expected;
  }
  writer.join();
  EXPECT_FALSE(writer_failed);
  EXPECT_EQ(expected, kRecords);
  EXPECT_GT(log.segments().size(), 20u);
  EXPECT_EQ(r->Next().kind, LogEntry::Kind::kEnd);
  EXPECT_TRUE(r->damages().empty());
  ASSERT_TRUE(log.Close().ok());
}

TEST(VerifyLog, SummarizesAHealthyLog) {
  TempDir d(/*in_memory=*/true);
  {
    auto log = PartitionLog::Open(d.path(), Opts(4096));
    ASSERT_TRUE(log.ok());
    std::vector<std::byte> b = MakeFrames(0, 120, 5000, 1);
    testing::Append(b, MakePadding(40));
    testing::Append(b, MakeFrame(121, 9999, "", "commit", FrameState::kControl));
    ASSERT_TRUE(log->Append(b).ok());
    ASSERT_TRUE(log->Close().ok());
  }
  auto v = VerifyLog(d.path());
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok());
  EXPECT_EQ(v->segments, 3u);
  EXPECT_EQ(v->records, 121u);
  EXPECT_EQ(v->control_records, 1u);
  EXPECT_EQ(v->padding_frames, 1u);
  EXPECT_EQ(v->first_offset, 0u);
  EXPECT_EQ(v->last_offset, 121u);
  EXPECT_EQ(v->first_timestamp_ns, 5000);
  EXPECT_EQ(v->last_timestamp_ns, 9999);
  EXPECT_EQ(v->bytes, 120 * kFrame + 40 + MakeFrame(121, 0, "", "commit").size());
}

TEST(VerifyLog, ReportsDamagedRecordsAndIndexEntries) {
  TempDir d(/*in_memory=*/true);
  WriteLog(d.path(), 200);
  XorByte(d / "00000000000000000050.log", kFileHeaderLength + 3 * kFrame + 20,
          0x01);  // offset field
  XorByte(d / "00000000000000000100.timeindex", kFileHeaderLength + 16 + 12,
          0x08);  // entry 1 position
  std::filesystem::remove(d / "00000000000000000150.timeindex");
  auto v = VerifyLog(d.path());
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok());
  EXPECT_EQ(v->records, 199u);
  ASSERT_EQ(v->damages.size(), 3u);
  EXPECT_EQ(v->damages[0].file, "00000000000000000050.log");
  EXPECT_EQ(v->damages[0].file_position, kFileHeaderLength + 3 * kFrame);
  EXPECT_EQ(v->damages[1].file, "00000000000000000100.timeindex");
  EXPECT_NE(v->damages[1].reason.find("entry 1"), std::string::npos) << v->damages[1].reason;
  EXPECT_EQ(v->damages[2].file, "00000000000000000150.timeindex");
  EXPECT_NE(v->damages[2].reason.find("missing"), std::string::npos);
}

// A crash during a segment roll leaves a last segment with no records whose
// header (the file was created, maybe preallocated) or time index was never
// written. Nothing is lost and the broker completes the roll when it opens
// the log: a reader at rest ends there, and VerifyLog says so in a note.
TEST(VerifyLog, TakesTheLeftoversOfAnInterruptedRollForNoDamage) {
  const std::string seg = "00000000000000000200.log";
  for (const uint64_t size : {uint64_t{0}, uint64_t{kFileHeaderLength}, uint64_t{8192}}) {
    for (const bool header_written : {false, true}) {
      if (header_written && size == 0) continue;
      SCOPED_TRACE("segment of " + std::to_string(size) + " bytes, header " +
                   (header_written ? "written" : "zero"));
      TempDir d(/*in_memory=*/true);
      WriteLog(d.path(), 200);
      std::vector<std::byte> bytes(size);
      if (header_written) {
        FileHeader h;
        h.kind = FileKind::kSegment;
        h.base_offset = 200;
        h.segment_bytes = 4096;
        const auto b = EncodeFileHeader(h);
        std::copy(b.begin(), b.end(), bytes.begin());
      }
      testing::WriteFileBytes(d / seg, bytes);

      auto r = LogReader::Open(d.path(), AtRest());
      ASSERT_TRUE(r.ok());
      for (uint64_t i = 0; i < 200; ++i) ASSERT_EQ(NextOffset(*r), i);
      EXPECT_EQ(r->Next().kind, LogEntry::Kind::kEnd);
      EXPECT_EQ(r->Next().kind, LogEntry::Kind::kEnd);
      EXPECT_TRUE(r->damages().empty()) << r->damages()[0].ToString();

      auto v = VerifyLog(d.path());
      ASSERT_TRUE(v.ok());
      EXPECT_TRUE(v->ok()) << v->damages[0].ToString();
      EXPECT_EQ(v->records, 200u);
      EXPECT_EQ(v->segments, 5u);
      ASSERT_EQ(v->notes.size(), header_written ? 1u : 2u);
      if (!header_written) {
        EXPECT_EQ(v->notes[0].rfind(seg + ": its header was never written", 0), 0u) << v->notes[0];
      }
      EXPECT_EQ(v->notes.back().rfind("00000000000000000200.timeindex does not exist", 0), 0u)
          << v->notes.back();

      // The log's owner completes the roll; then there is nothing to note.
      {
        auto log = PartitionLog::Open(d.path(), Opts(4096));
        ASSERT_TRUE(log.ok()) << log.status().ToString();
        ASSERT_TRUE(log->Append(MakeFrames(200, 1, 3000, 10)).ok());
        ASSERT_TRUE(log->Close().ok());
      }
      v = VerifyLog(d.path());
      ASSERT_TRUE(v.ok());
      EXPECT_TRUE(v->ok());
      EXPECT_TRUE(v->notes.empty());
      EXPECT_EQ(v->records, 201u);
    }
  }
}

// Only the last segment can be an unfinished roll: a zero header before it,
// or a missing time index of a segment with records, is still damage.
TEST(VerifyLog, ReportsAZeroHeaderBeforeTheLastSegment) {
  TempDir d(/*in_memory=*/true);
  WriteLog(d.path(), 200);
  testing::WriteFileBytes(d / "00000000000000000200.log", {});
  {
    std::vector<std::byte> zeros(kFileHeaderLength);
    auto f = std::fopen((d / "00000000000000000100.log").c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(zeros.data(), 1, zeros.size(), f), zeros.size());
    std::fclose(f);
  }
  std::filesystem::remove(d / "00000000000000000150.timeindex");
  auto v = VerifyLog(d.path());
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok());
  ASSERT_GE(v->damages.size(), 2u);
  EXPECT_EQ(v->damages[0].file, "00000000000000000100.log");
  EXPECT_TRUE(std::any_of(v->damages.begin(), v->damages.end(), [](const Damage& x) {
    return x.file == "00000000000000000150.timeindex" &&
           x.reason.find("missing") != std::string::npos;
  }));
  EXPECT_EQ(v->notes.size(), 2u);  // the empty segment 200 and its time index
}

// The leftovers of an interrupted roll do not hide what is wrong around them:
// a segment missing before it, records the checkpoint says are durable in
// it; and a zero header with records after it reads the records.
const std::string kSeg150 = "00000000000000000150.log";

TEST(VerifyLog, AnInterruptedRollHidesNoSegmentMissingBeforeIt) {
  TempDir d(/*in_memory=*/true);
  WriteLog(d.path(), 200);
  std::filesystem::remove(d / kSeg150);
  std::filesystem::remove(d / "00000000000000000150.timeindex");
  testing::WriteFileBytes(d / "00000000000000000200.log", {});
  auto r = LogReader::Open(d.path(), AtRest());
  ASSERT_TRUE(r.ok());
  for (uint64_t i = 0; i < 150; ++i) ASSERT_EQ(NextOffset(*r), i);
  LogEntry e = r->Next();
  ASSERT_EQ(e.kind, LogEntry::Kind::kDamage);
  EXPECT_NE(e.damage->reason.find("offsets 150..199 are missing"), std::string::npos)
      << e.damage->reason;
  EXPECT_EQ(r->Next().kind, LogEntry::Kind::kEnd);
  EXPECT_EQ(r->Next().kind, LogEntry::Kind::kEnd);
  EXPECT_EQ(r->damages().size(), 1u);
  auto v = VerifyLog(d.path());
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok());
}

TEST(VerifyLog, AnInterruptedRollHidesNoDurableRecordsTheCheckpointNames) {
  TempDir d(/*in_memory=*/true);
  WriteLog(d.path(), 200);  // the checkpoint: offsets below 200 durable in 150.log
  const uint64_t size = std::filesystem::file_size(d / kSeg150);
  testing::WriteFileBytes(d / kSeg150, std::vector<std::byte>(size));
  std::filesystem::remove(d / "00000000000000000150.timeindex");
  auto v = VerifyLog(d.path());
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->ok());
  EXPECT_EQ(v->records, 150u);
  ASSERT_FALSE(v->damages.empty());
  EXPECT_EQ(v->damages.back().file, "checkpoint");
}

TEST(VerifyLog, ALastSegmentWithAZeroHeaderAndRecordsReadsTheRecords) {
  TempDir d(/*in_memory=*/true);
  WriteLog(d.path(), 200);
  std::vector<std::byte> b = testing::ReadFileBytes(d / kSeg150);
  std::fill(b.begin(), b.begin() + kFileHeaderLength, std::byte{0});
  testing::WriteFileBytes(d / kSeg150, b);
  auto r = LogReader::Open(d.path(), AtRest());
  ASSERT_TRUE(r.ok());
  for (uint64_t i = 0; i < 200; ++i) ASSERT_EQ(NextOffset(*r), i);
  EXPECT_EQ(r->Next().kind, LogEntry::Kind::kEnd);
  auto v = VerifyLog(d.path());
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok()) << v->damages[0].ToString();
  EXPECT_EQ(v->records, 200u);
  ASSERT_EQ(v->notes.size(), 1u);
  EXPECT_EQ(v->notes[0].rfind(kSeg150 + ": its header was never written", 0), 0u);
}

TEST(VerifyLog, ReportsAMissingSegmentAsAGap) {
  TempDir d(/*in_memory=*/true);
  WriteLog(d.path(), 200);
  std::filesystem::remove(d / "00000000000000000050.log");
  std::filesystem::remove(d / "00000000000000000050.timeindex");
  auto v = VerifyLog(d.path());
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->damages.size(), 1u);
  EXPECT_EQ(v->damages[0].file, "00000000000000000100.log");
  EXPECT_NE(v->damages[0].reason.find("offsets 50..99 are missing"), std::string::npos)
      << v->damages[0].reason;
  EXPECT_EQ(v->records, 150u);
}

// A log cut short at a frame boundary reads clean; only the checkpoint
// knows that durable records are gone. VerifyLog agrees with recovery, which
// refuses to open such a log without repair.
TEST(VerifyLog, ReportsDurableRecordsCutOffBehindTheCheckpoint) {
  TempDir d(/*in_memory=*/true);
  WriteLog(d.path(), 200);
  std::filesystem::resize_file(d / "00000000000000000150.log", kFileHeaderLength + 30 * kFrame);
  auto v = VerifyLog(d.path());
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->records, 180u);
  // The time index still points at the cut records, then the checkpoint.
  ASSERT_EQ(v->damages.size(), 2u);
  EXPECT_EQ(v->damages[0].file, "00000000000000000150.timeindex");
  EXPECT_EQ(v->damages[1].file, "checkpoint");
  EXPECT_EQ(v->damages[1].file_position, kFileHeaderLength + 30 * kFrame);
  EXPECT_NE(
      v->damages[1].reason.find("up to file position " +
                                std::to_string(kFileHeaderLength + 50 * kFrame) + " (offset 200)"),
      std::string::npos)
      << v->damages[1].reason;
  EXPECT_EQ(PartitionLog::Open(d.path(), Opts(4096)).status().code(), StatusCode::kCorruption);
}

TEST(VerifyLog, ReportsTheCheckpointsSegmentMissing) {
  TempDir d(/*in_memory=*/true);
  WriteLog(d.path(), 200);
  std::filesystem::remove(d / "00000000000000000150.log");
  std::filesystem::remove(d / "00000000000000000150.timeindex");
  auto v = VerifyLog(d.path());
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->records, 150u);
  ASSERT_EQ(v->damages.size(), 1u);
  EXPECT_EQ(v->damages[0].file, "checkpoint");
  EXPECT_NE(v->damages[0].reason.find("00000000000000000150.log, which does not exist"),
            std::string::npos)
      << v->damages[0].reason;
  EXPECT_EQ(PartitionLog::Open(d.path(), Opts(4096)).status().code(), StatusCode::kCorruption);
}

TEST(VerifyLog, ReportsACorruptCheckpoint) {
  TempDir d(/*in_memory=*/true);
  WriteLog(d.path(), 200);
  testing::XorByte(d / "checkpoint", 20, 0x10);
  auto v = VerifyLog(d.path());
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->records, 200u);
  ASSERT_EQ(v->damages.size(), 1u);
  EXPECT_EQ(v->damages[0].file, "checkpoint");
  EXPECT_NE(v->damages[0].reason.find("recovery ignores it"), std::string::npos)
      << v->damages[0].reason;
  // Recovery opens it all the same, rescanning.
  auto log = PartitionLog::Open(d.path(), Opts(4096));
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ(log->next_offset(), 200u);
}

// A checkpoint with flags this runnel does not know (a newer writer's, or
// written over with a matching CRC) is ignored by recovery, as a corrupt
// one is: verify says so instead of passing the log.
TEST(VerifyLog, ReportsACheckpointWithUnknownFlags) {
  TempDir d(/*in_memory=*/true);
  WriteLog(d.path(), 200);
  std::vector<std::byte> bytes(kCheckpointLength);
  {
    std::FILE* f = std::fopen((d / "checkpoint").c_str(), "rb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fread(bytes.data(), 1, bytes.size(), f), bytes.size());
    std::fclose(f);
  }
  Result<Checkpoint> c = DecodeCheckpoint(bytes, "checkpoint");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  c->flags |= 2;
  const auto encoded = EncodeCheckpoint(*c);
  {
    std::FILE* f = std::fopen((d / "checkpoint").c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(encoded.data(), 1, encoded.size(), f), encoded.size());
    std::fclose(f);
  }
  auto v = VerifyLog(d.path());
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->records, 200u);
  ASSERT_EQ(v->damages.size(), 1u);
  EXPECT_EQ(v->damages[0].file, "checkpoint");
  EXPECT_NE(v->damages[0].reason.find("unknown flags"), std::string::npos) << v->damages[0].reason;
  EXPECT_NE(v->damages[0].reason.find("recovery ignores it"), std::string::npos)
      << v->damages[0].reason;
  auto log = PartitionLog::Open(d.path(), Opts(4096));
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ(log->next_offset(), 200u);
}

TEST(DataDir, ListsTopicsAndPartitions) {
  TempDir d(/*in_memory=*/true);
  for (auto p : {"orders/0", "orders/1", "orders/10", "clicks/3"}) {
    auto log = PartitionLog::Open(d / p, Opts(4096));
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE(log->Close().ok());
  }
  std::filesystem::create_directories(d / "orders/007");  // not canonical: skipped
  // A topic may be named with a leading dot: replay and inspect skipped it.
  std::filesystem::create_directories(d / ".audit/0");
  testing::WriteFileBytes(d / "README", testing::Bytes("x"));
  // Never topics: the topic locks and what an interrupted removal left.
  std::filesystem::create_directories(d / "~locks");
  std::filesystem::create_directories(d / "orders~deleted.12.34/0");
  auto topics = ListTopics(d.path());
  ASSERT_TRUE(topics.ok());
  EXPECT_EQ(*topics, (std::vector<std::string>{".audit", "clicks", "orders"}));
  auto parts = ListPartitions(d.path(), "orders");
  ASSERT_TRUE(parts.ok());
  EXPECT_EQ(*parts, (std::vector<uint32_t>{0, 1, 10}));
  EXPECT_EQ(PartitionDir(d.path(), "orders", 10), d / "orders/10");
  EXPECT_EQ(ListPartitions(d.path(), "nope").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace runnel
