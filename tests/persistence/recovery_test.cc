// Recovery in PartitionLog::Open, one rule per test (docs/format.md#recovery).
// A "crash image" is a copy of the files of a log that is still open: what a
// machine crash leaves when everything written reached the disk, including
// the zero-filled preallocated tail. Tests then damage it by hand.

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "persistence/format.h"
#include "persistence/log.h"
#include "persistence/reader.h"
#include "tests/persistence/test_util.h"

namespace runnel {
namespace {

using testing::Append;
using testing::CopyDir;
using testing::FileExists;
using testing::FileSizeOf;
using testing::MakeFrame;
using testing::MakeFrames;
using testing::PatchFile;
using testing::ReadFileBytes;
using testing::TempDir;
using testing::XorByte;

constexpr uint64_t kFrame = 80;  // MakeFrames' frame size
const std::string kSeg0 = "00000000000000000000.log";

LogOptions Opts(uint64_t segment_bytes = 64 * 1024) {
  LogOptions o;
  o.segment_bytes = segment_bytes;
  o.index_interval_bytes = 256;
  return o;
}

uint64_t PositionOf(uint64_t record) { return kFileHeaderLength + record * kFrame; }

// A crash image of a log holding records [0, n) in one segment; the
// checkpoint is the one Open wrote (at the start), unless `checkpoint_at`.
void MakeImage(const std::string& image, uint64_t n, std::optional<uint64_t> checkpoint_at = {},
               uint64_t segment_bytes = 64 * 1024) {
  TempDir live;
  auto log = PartitionLog::Open(live.path(), Opts(segment_bytes));
  ASSERT_TRUE(log.ok());
  if (checkpoint_at) {
    ASSERT_TRUE(log->Append(MakeFrames(0, *checkpoint_at)).ok());
    ASSERT_TRUE(log->Sync().ok());
    ASSERT_TRUE(log->WriteCheckpoint().ok());
    ASSERT_TRUE(log->Append(MakeFrames(*checkpoint_at, n - *checkpoint_at)).ok());
  } else {
    ASSERT_TRUE(log->Append(MakeFrames(0, n)).ok());
  }
  CopyDir(live.path(), image);
}

std::vector<uint64_t> Offsets(const std::string& dir) {
  LogReaderOptions ro;
  ro.follow = false;
  auto r = LogReader::Open(dir, ro);
  std::vector<uint64_t> out;
  if (!r.ok()) return out;
  for (LogEntry e = r->Next(); e.kind != LogEntry::Kind::kEnd; e = r->Next()) {
    if (e.kind == LogEntry::Kind::kRecord) out.push_back(e.record.offset());
  }
  return out;
}

void ExpectVerifies(const std::string& dir, uint64_t records) {
  auto v = VerifyLog(dir);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_TRUE(v->ok()) << v->damages.front().ToString();
  EXPECT_EQ(v->records, records);
}

// Records [0, 200) in segments of 4096 bytes: 50 records each, four
// segments (0, 50, 100, 150), closed cleanly.
constexpr uint64_t kPerSmallSegment = (4096 - kFileHeaderLength) / kFrame;  // 50
void MakeFourSegments(const std::string& dir) {
  auto log = PartitionLog::Open(dir, Opts(4096));
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE(log->Append(MakeFrames(0, 200)).ok());
  ASSERT_TRUE(log->Close().ok());
}

// VerifyLog reports damage of the file `checkpoint` (its durable end does
// not fit the log).
::testing::AssertionResult VerifyNamesTheCheckpoint(const std::string& dir) {
  auto v = VerifyLog(dir);
  if (!v.ok()) return ::testing::AssertionFailure() << v.status().ToString();
  for (const Damage& dmg : v->damages) {
    if (dmg.file == "checkpoint") return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "VerifyLog does not name the checkpoint";
}

bool HasWarning(const PartitionLog& log, const std::string& text) {
  for (const std::string& w : log.warnings()) {
    if (w.find(text) != std::string::npos) return true;
  }
  return false;
}

TEST(Recovery, ZeroFilledPreallocatedTailIsTheCleanEndOfData) {
  TempDir d;
  MakeImage(d.path(), 10);
  EXPECT_EQ(FileSizeOf(d / kSeg0), 64u * 1024);  // preallocated, mostly zeros
  auto log = PartitionLog::Open(d.path(), Opts());
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  const RecoveryReport& r = log->recovery();
  EXPECT_TRUE(r.clean()) << r.ToString();
  EXPECT_EQ(r.records_recovered, 10u);
  EXPECT_EQ(r.bytes_dropped, 0u);
  EXPECT_EQ(log->next_offset(), 10u);
  EXPECT_EQ(log->committed_end().file_position, PositionOf(10));
  ASSERT_TRUE(log->Append(MakeFrames(10, 1)).ok());
  ASSERT_TRUE(log->Close().ok());
  ExpectVerifies(d.path(), 11);
}

TEST(Recovery, TornTailIsTruncatedAtTheLastValidFrameAndReported) {
  TempDir d;
  MakeImage(d.path(), 10);
  // The write of record 9 stopped after 30 of its 80 bytes; the file ends there.
  testing::TruncateFile(d / kSeg0, PositionOf(9) + 30);
  auto log = PartitionLog::Open(d.path(), Opts());
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  const RecoveryReport& r = log->recovery();
  EXPECT_FALSE(r.clean());
  EXPECT_EQ(r.records_recovered, 9u);
  EXPECT_EQ(r.bytes_dropped, 30u);
  EXPECT_EQ(r.first_dropped_offset, 9u);
  EXPECT_EQ(r.last_dropped_offset, 9u);
  EXPECT_EQ(r.file, kSeg0);
  EXPECT_EQ(r.truncated_at, PositionOf(9));
  EXPECT_NE(r.reason.find("torn tail"), std::string::npos) << r.reason;
  EXPECT_NE(r.ToString().find("dropped 30 bytes (offsets 9)"), std::string::npos) << r.ToString();
  EXPECT_EQ(log->next_offset(), 9u);
  // The bus continues at the right offset.
  ASSERT_TRUE(log->Append(MakeFrames(9, 3)).ok());
  ASSERT_TRUE(log->Close().ok());
  EXPECT_EQ(Offsets(d.path()).size(), 12u);
  ExpectVerifies(d.path(), 12);
}

TEST(Recovery, TornWriteIntoPreallocatedSpaceIsTruncated) {
  TempDir d;
  MakeImage(d.path(), 10);
  // Records 7..9 were one write; only its first 100 bytes reached the disk:
  // record 7 is whole, record 8 is cut, 9 is zeros (still preallocated).
  PatchFile(d / kSeg0, PositionOf(8) + 20, std::vector<std::byte>(2 * kFrame - 20));
  auto log = PartitionLog::Open(d.path(), Opts());
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  const RecoveryReport& r = log->recovery();
  EXPECT_EQ(r.records_recovered, 8u);
  EXPECT_EQ(r.bytes_dropped, 24u);  // the surviving prefix of record 8
  EXPECT_EQ(r.first_dropped_offset, 8u);
  EXPECT_NE(r.reason.find("crc mismatch"), std::string::npos) << r.reason;
  EXPECT_EQ(log->next_offset(), 8u);
  // The cut is zeroed: the file never holds stale bytes past the end.
  const auto bytes = ReadFileBytes(d / kSeg0);
  for (uint64_t i = PositionOf(8); i < PositionOf(10); ++i) ASSERT_EQ(bytes[i], std::byte{0});
}

TEST(Recovery, GarbageTailIsCutZeroedAndReported) {
  TempDir d;
  MakeImage(d.path(), 10);
  std::vector<std::byte> garbage(300);
  for (std::size_t i = 0; i < garbage.size(); ++i) garbage[i] = std::byte(i * 7 + 1);
  PatchFile(d / kSeg0, PositionOf(10), garbage);
  auto log = PartitionLog::Open(d.path(), Opts());
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  const RecoveryReport& r = log->recovery();
  EXPECT_EQ(r.records_recovered, 10u);
  EXPECT_EQ(r.bytes_dropped, 304u);
  EXPECT_EQ(r.truncated_at, PositionOf(10));
  EXPECT_EQ(r.first_dropped_offset, 10u);
  EXPECT_EQ(log->next_offset(), 10u);
  const auto bytes = ReadFileBytes(d / kSeg0);
  for (uint64_t i = PositionOf(10); i < PositionOf(10) + 304; ++i) {
    ASSERT_EQ(bytes[i], std::byte{0}) << i;
  }
  ASSERT_TRUE(log->Append(MakeFrames(10, 2)).ok());
  ASSERT_TRUE(log->Close().ok());
  ExpectVerifies(d.path(), 12);
}

TEST(Recovery, CrcMismatchInTheMiddleIsCorruptionNamingFileAndPosition) {
  TempDir d;
  MakeImage(d.path(), 10);
  XorByte(d / kSeg0, PositionOf(4) + 50, 0x01);  // a value byte of record 4
  auto log = PartitionLog::Open(d.path(), Opts());
  ASSERT_EQ(log.status().code(), StatusCode::kCorruption) << log.status().ToString();
  const std::string& m = log.status().message();
  EXPECT_NE(m.find(kSeg0 + " at file position " + std::to_string(PositionOf(4))), std::string::npos)
      << m;
  EXPECT_NE(m.find("crc mismatch"), std::string::npos) << m;
  EXPECT_NE(m.find("after offset 3"), std::string::npos) << m;
  EXPECT_NE(m.find("valid records follow at file position " + std::to_string(PositionOf(5))),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("LogOptions::repair"), std::string::npos) << m;
  // Nothing was changed by the failed open.
  EXPECT_EQ(Offsets(d.path()).size(), 9u);  // the reader skips the damaged record

  // repair truncates the log at the damaged frame and says what it dropped.
  // The offsets it dropped (4..9: records after the damage may have been
  // confirmed durable) are marked as a gap and never given out again.
  LogOptions o = Opts();
  o.repair = true;
  auto repaired = PartitionLog::Open(d.path(), o);
  ASSERT_TRUE(repaired.ok()) << repaired.status().ToString();
  const RecoveryReport& r = repaired->recovery();
  EXPECT_EQ(r.truncated_at, PositionOf(4));
  EXPECT_EQ(r.bytes_dropped, 6 * kFrame);
  EXPECT_EQ(r.first_dropped_offset, 4u);
  EXPECT_EQ(r.last_dropped_offset, 9u);
  EXPECT_NE(r.reason.find("repair"), std::string::npos);
  EXPECT_EQ(repaired->next_offset(), 10u);
  ASSERT_TRUE(repaired->Close().ok());
  ExpectVerifies(d.path(), 4);
  auto v = VerifyLog(d.path());
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->gaps, 1u);
  EXPECT_EQ(v->gap_offsets, 6u);
}

TEST(Recovery, DamageInASegmentThatIsNotTheLastIsCorruption) {
  TempDir d;
  MakeImage(d.path(), 100, std::nullopt, 1024);  // 12 records per segment
  // The checkpoint Open wrote points at the start of segment 0: the scan
  // covers every segment. Damage the last record of segment 0.
  XorByte(d / kSeg0, PositionOf(11) + 45, 0x80);
  auto log = PartitionLog::Open(d.path(), Opts(1024));
  ASSERT_EQ(log.status().code(), StatusCode::kCorruption) << log.status().ToString();
  EXPECT_NE(
      log.status().message().find(kSeg0 + " at file position " + std::to_string(PositionOf(11))),
      std::string::npos)
      << log.status().message();
  EXPECT_NE(log.status().message().find("later segments follow"), std::string::npos);

  LogOptions o = Opts(1024);
  o.repair = true;
  auto repaired = PartitionLog::Open(d.path(), o);
  ASSERT_TRUE(repaired.ok()) << repaired.status().ToString();
  // Every dropped offset (11..99) is marked as a gap, never given out again;
  // the marker did not fit in the full segment 0, so it starts segment 11.
  EXPECT_EQ(repaired->next_offset(), 100u);
  EXPECT_EQ(repaired->segments().size(), 2u);
  EXPECT_EQ(repaired->recovery().first_dropped_offset, 11u);
  EXPECT_EQ(repaired->recovery().last_dropped_offset, 99u);
  EXPECT_GE(repaired->recovery().segments_removed, 8u);
  EXPECT_FALSE(FileExists(d / "00000000000000000012.log"));
  ASSERT_TRUE(repaired->Close().ok());
  auto v = VerifyLog(d.path());
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok()) << v->damages.front().ToString();
  EXPECT_EQ(v->records, 11u);
  EXPECT_EQ(v->gap_offsets, 89u);
}

TEST(Recovery, ZeroHoleFollowedByRecordsIsCorruption) {
  TempDir d;
  MakeImage(d.path(), 10);
  PatchFile(d / kSeg0, PositionOf(3), std::vector<std::byte>(kFrame));  // record 3 zeroed
  auto log = PartitionLog::Open(d.path(), Opts());
  ASSERT_EQ(log.status().code(), StatusCode::kCorruption);
  EXPECT_NE(log.status().message().find("zero-filled hole"), std::string::npos)
      << log.status().message();
}

TEST(Recovery, ScanStartsAtTheCheckpoint) {
  TempDir d;
  MakeImage(d.path(), 15, /*checkpoint_at=*/10);
  auto log = PartitionLog::Open(d.path(), Opts());
  ASSERT_TRUE(log.ok());
  EXPECT_TRUE(log->recovery().from_checkpoint);
  EXPECT_EQ(log->recovery().scan_start_position, PositionOf(10));
  EXPECT_EQ(log->recovery().records_recovered, 5u);
  EXPECT_EQ(log->next_offset(), 15u);
  ASSERT_TRUE(log->Close().ok());
  ExpectVerifies(d.path(), 15);
}

// Zeros where durable records were (a power loss that lost written pages),
// and a time index that no longer fits, so recovery scans the segment from
// its start and finds the data ending early: that is lost durable data, not a
// torn tail. (It was taken for one: the log continued at offset 6 and gave
// offsets 6..9 out again.)
TEST(Recovery, DurableRecordsZeroedBeforeTheCheckpointAreCorruption) {
  TempDir d;
  MakeImage(d.path(), 15, /*checkpoint_at=*/10);
  PatchFile(d / kSeg0, PositionOf(6), std::vector<std::byte>(9 * kFrame));
  std::filesystem::remove(d / "00000000000000000000.timeindex");
  auto log = PartitionLog::Open(d.path(), Opts());
  ASSERT_EQ(log.status().code(), StatusCode::kCorruption) << log.status().ToString();
  EXPECT_NE(log.status().message().find("durable records were lost"), std::string::npos)
      << log.status().message();
  // Repair continues with what is there.
  LogOptions repair = Opts();
  repair.repair = true;
  auto repaired = PartitionLog::Open(d.path(), repair);
  ASSERT_TRUE(repaired.ok()) << repaired.status().ToString();
}

// The same zeros with the time index intact: recovery starts at the
// checkpoint's position and never looked behind it, so the log opened and
// the next record went after the hole. The bytes before the position are now
// checked against the checkpoint (from the last index entry before it).
TEST(Recovery, DurableRecordsZeroedBehindAnIntactIndexAreCorruption) {
  TempDir d;
  MakeImage(d.path(), 15, /*checkpoint_at=*/10);
  PatchFile(d / kSeg0, PositionOf(6), std::vector<std::byte>(4 * kFrame));  // records 6..9
  auto log = PartitionLog::Open(d.path(), Opts());
  ASSERT_EQ(log.status().code(), StatusCode::kCorruption) << log.status().ToString();
  EXPECT_NE(log.status().message().find("but the log does not match: at file position " +
                                        std::to_string(PositionOf(6)) + ": zero-filled"),
            std::string::npos)
      << log.status().message();
  EXPECT_TRUE(VerifyNamesTheCheckpoint(d.path()));
  // Repair cuts at the hole; every offset it drops becomes a gap.
  LogOptions repair = Opts();
  repair.repair = true;
  auto repaired = PartitionLog::Open(d.path(), repair);
  ASSERT_TRUE(repaired.ok()) << repaired.status().ToString();
  EXPECT_EQ(repaired->next_offset(), 15u);
  ASSERT_TRUE(repaired->Close().ok());
  // 0..5, then the gap marker (a control record at offset 14).
  EXPECT_EQ(Offsets(d.path()), (std::vector<uint64_t>{0, 1, 2, 3, 4, 5, 14}));
  auto after = VerifyLog(d.path());
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->ok()) << after->damages.front().ToString();
  EXPECT_EQ(after->records, 6u);
  EXPECT_EQ(after->gap_offsets, 9u);
}

// A checkpoint that does not fit its log (its CRC is fine: it was written
// so, or rewritten): a next offset past the log's last record. The log
// continued there, and readers took the next record for damage.
TEST(Recovery, ACheckpointWhoseNextOffsetDoesNotFitItsLogIsCorruption) {
  TempDir d;
  MakeImage(d.path(), 15, /*checkpoint_at=*/10);
  const std::vector<std::byte> bytes = ReadFileBytes(d / "checkpoint");
  auto cp = DecodeCheckpoint(bytes, "checkpoint");
  ASSERT_TRUE(cp.ok());
  cp->next_offset = 5000;
  const auto encoded = EncodeCheckpoint(*cp);
  PatchFile(d / "checkpoint", 0, std::vector<std::byte>(encoded.begin(), encoded.end()));
  auto log = PartitionLog::Open(d.path(), Opts());
  ASSERT_EQ(log.status().code(), StatusCode::kCorruption) << log.status().ToString();
  EXPECT_NE(log.status().message().find("the last record before that position is offset 9, "
                                        "but the checkpoint's next offset is 5000"),
            std::string::npos)
      << log.status().message();
}

// The check behind the checkpoint judges only what it can: one damaged
// record there (a flipped bit in its offset or length) costs that record, as
// anywhere else in the log, and the log opens. (It was refused, and a repair
// would have cut every record after it.)
TEST(Recovery, ADamagedRecordJustBeforeTheCheckpointCostsOnlyItself) {
  for (const uint64_t field : {uint64_t{16} /* offset */, uint64_t{9} /* length, +256 */}) {
    SCOPED_TRACE(field);
    TempDir d;
    MakeImage(d.path(), 15, /*checkpoint_at=*/10);
    XorByte(d / kSeg0, PositionOf(9) + field, 0x01);
    auto log = PartitionLog::Open(d.path(), Opts());
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    EXPECT_EQ(log->next_offset(), 15u);
    ASSERT_TRUE(log->Close().ok());
    auto v = VerifyLog(d.path());
    ASSERT_TRUE(v.ok());
    ASSERT_FALSE(v->damages.empty());
    for (const Damage& dmg : v->damages) EXPECT_EQ(dmg.file, kSeg0) << dmg.ToString();
  }
}

// One damaged frame after padding, where offsets may jump (an aborted claim
// skipped an offset; a gap marker is padding, then a control frame at the
// gap's last offset), as the last frame before the checkpoint: it costs
// only itself. The offsets between the last record and the checkpoint's
// next offset were not records, so they are not counted as lost (the log
// used to be refused as "durable records are gone").
TEST(Recovery, ADamagedFrameAfterPaddingBeforeTheCheckpointCostsOnlyItself) {
  for (const bool gap_marker : {false, true}) {
    SCOPED_TRACE(gap_marker);
    TempDir d;
    uint64_t damaged_at = 0;
    {
      TempDir live;
      auto log = PartitionLog::Open(live.path(), Opts());
      ASSERT_TRUE(log.ok());
      std::vector<std::byte> frames = MakeFrames(0, 5);
      if (!gap_marker) {
        Append(frames, testing::MakePadding(80));  // an aborted claim: offset 5 skipped
        damaged_at = frames.size();
        Append(frames, MakeFrame(6, 2'000, "", std::string(64, 'v')));
      } else {
        damaged_at = frames.size() + 16;  // the control frame after the marker's padding
        Append(frames, EncodeGapMarker({5, 20}, 5000));
      }
      ASSERT_TRUE(log->Append(frames).ok());
      ASSERT_TRUE(log->Sync().ok());
      ASSERT_TRUE(log->WriteCheckpoint().ok());
      ASSERT_TRUE(log->Close().ok());
      CopyDir(live.path(), d.path());
    }
    XorByte(d / kSeg0, kFileHeaderLength + damaged_at + 44, 0x01);  // a byte of its body
    auto log = PartitionLog::Open(d.path(), Opts());
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    EXPECT_EQ(log->next_offset(), gap_marker ? 20u : 7u);
    ASSERT_TRUE(log->Close().ok());
    auto v = VerifyLog(d.path());
    ASSERT_TRUE(v.ok());
    // The damaged frame, once in the segment (its time index entry points
    // at it too).
    int in_segment = 0;
    for (const Damage& dmg : v->damages) {
      if (dmg.file != kSeg0) continue;
      ++in_segment;
      EXPECT_EQ(dmg.file_position, kFileHeaderLength + damaged_at) << dmg.ToString();
    }
    EXPECT_EQ(in_segment, 1);
  }
}

// Damage earlier in the segment does not hide durable records zeroed just
// before the checkpoint (the check starts at the last index entry that
// names a valid record).
TEST(Recovery, EarlierDamageDoesNotHideRecordsZeroedBeforeTheCheckpoint) {
  TempDir d;
  MakeImage(d.path(), 15, /*checkpoint_at=*/10);
  XorByte(d / kSeg0, PositionOf(1) + 37, 0x01);  // record 1: a reserved byte set
  PatchFile(d / kSeg0, PositionOf(8), std::vector<std::byte>(2 * kFrame));  // records 8, 9
  auto log = PartitionLog::Open(d.path(), Opts());
  ASSERT_EQ(log.status().code(), StatusCode::kCorruption) << log.status().ToString();
  EXPECT_NE(log.status().message().find("zero-filled"), std::string::npos)
      << log.status().message();
}

// Zeros that begin inside a durable record, not at its start: the record
// fails its CRC and every record after it up to the checkpoint is gone. That
// was taken for one damaged record: the log opened, and the offsets after it
// were lost without a word. It is lost durable data, as when the zeros begin
// at a frame boundary; so is a range that begins inside a frame's header.
TEST(Recovery, DurableRecordsZeroedFromInsideARecordAreCorruption) {
  for (const uint64_t into : {uint64_t{48}, uint64_t{8}, uint64_t{20}}) {
    SCOPED_TRACE(into);
    TempDir d;
    MakeImage(d.path(), 15, /*checkpoint_at=*/10);
    const uint64_t from = PositionOf(7) + into;
    PatchFile(d / kSeg0, from, std::vector<std::byte>(PositionOf(10) - from));
    auto log = PartitionLog::Open(d.path(), Opts());
    ASSERT_EQ(log.status().code(), StatusCode::kCorruption) << log.status().ToString();
    EXPECT_NE(log.status().message().find(
                  "at file position " + std::to_string(PositionOf(7)) +
                  ": a damaged frame and no readable record after it, where the checkpoint says "
                  "offsets 7..9 were durable (zero-filled or written over: records that were "
                  "durable are gone)"),
              std::string::npos)
        << log.status().message();
    EXPECT_TRUE(VerifyNamesTheCheckpoint(d.path()));
  }
}

// The walk past a damaged frame does not follow its length field, which may
// be the damaged part: the last record before the checkpoint, its length cut
// short into a value of zeros, is one damaged record, not a hole, and the
// log opens.
TEST(Recovery, ADamagedLengthPointingIntoZerosIsNotTakenForAHole) {
  TempDir d;
  {
    TempDir live;
    auto log = PartitionLog::Open(live.path(), Opts());
    ASSERT_TRUE(log.ok());
    std::vector<std::byte> frames = MakeFrames(0, 5);
    Append(frames, MakeFrame(5, 2'000, "", std::string(256, '\0')));
    ASSERT_TRUE(log->Append(frames).ok());
    ASSERT_TRUE(log->Sync().ok());
    ASSERT_TRUE(log->WriteCheckpoint().ok());
    CopyDir(live.path(), d.path());
  }
  XorByte(d / kSeg0, PositionOf(5) + frame::kLength + 1, 0x01);  // its length: 256 less
  auto log = PartitionLog::Open(d.path(), Opts());
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ(log->next_offset(), 6u);
  EXPECT_EQ(Offsets(d.path()), (std::vector<uint64_t>{0, 1, 2, 3, 4}));
}

// A log truncated right after padding (an aborted claim, or a gap marker's
// padding) ends below its next offset: offsets may jump after padding, and
// the log reopens clean.
TEST(Recovery, ALogTruncatedAfterPaddingReopens) {
  for (const bool gap : {false, true}) {
    SCOPED_TRACE(gap);
    TempDir d;
    {
      auto log = PartitionLog::Open(d.path(), Opts());
      ASSERT_TRUE(log.ok());
      ASSERT_TRUE(log->Append(MakeFrames(0, 10)).ok());
      if (gap) {
        ASSERT_TRUE(log->Append(EncodeGapMarker({10, 20}, 5000)).ok());
        ASSERT_TRUE(log->Append(MakeFrames(20, 5, 9000)).ok());
        ASSERT_TRUE(log->Truncate(15).ok());
      } else {
        ASSERT_TRUE(log->Append(testing::MakePadding(80)).ok());
        ASSERT_TRUE(log->Append(MakeFrames(11, 5, 9000)).ok());
        ASSERT_TRUE(log->Truncate(11).ok());
      }
      ASSERT_TRUE(log->Close().ok());
    }
    auto again = PartitionLog::Open(d.path(), Opts());
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_EQ(again->next_offset(), gap ? 15u : 11u);
    auto v = VerifyLog(d.path());
    ASSERT_TRUE(v.ok());
    EXPECT_TRUE(v->ok()) << v->damages.front().ToString();
  }
}

// Records 6 and 7 zeroed behind the checkpoint (offset 10), records 8..14
// after them: a repair cuts at 6, drops 8..14 and marks 6..14 as a gap
// (8..14 may have been confirmed durable after the checkpoint).
void MakeImageThatNeedsARepair(const std::string& dir) {
  MakeImage(dir, 15, /*checkpoint_at=*/10);
  PatchFile(dir + "/" + kSeg0, PositionOf(6), std::vector<std::byte>(2 * kFrame));
  std::filesystem::remove(dir + "/00000000000000000000.timeindex");
}

// Before a repair changes a byte, its checkpoint says a repair is under way.
// (A crash part way used to leave the old checkpoint pointing into what the
// repair had cut, and the next plain open continued after the hole.) Here
// that checkpoint cannot be written (a directory is in the way of its
// temporary file): the repair must fail with the log untouched.
TEST(Recovery, ARepairChangesNothingBeforeItsCheckpointSaysARepairIsUnderWay) {
  TempDir d;
  MakeImageThatNeedsARepair(d.path());
  const std::vector<std::byte> before = ReadFileBytes(d / kSeg0);
  std::filesystem::create_directory(d / "checkpoint.tmp");
  LogOptions repair = Opts();
  repair.repair = true;
  EXPECT_FALSE(PartitionLog::Open(d.path(), repair).ok());
  EXPECT_EQ(ReadFileBytes(d / kSeg0), before);
  std::filesystem::remove(d / "checkpoint.tmp");
  auto log = PartitionLog::Open(d.path(), repair);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ(log->next_offset(), 15u);
}

// A repair stopped after its cut (here its time index cannot be written; a
// crash leaves the same files): a plain open refuses the log, VerifyLog
// reports it, and the next repair finishes the job without reusing offsets.
TEST(Recovery, AnInterruptedRepairIsRefusedWithoutRepairAndFinishedWithIt) {
  TempDir d;
  MakeImageThatNeedsARepair(d.path());
  std::filesystem::create_directory(d / "00000000000000000000.timeindex");
  LogOptions repair = Opts();
  repair.repair = true;
  ASSERT_FALSE(PartitionLog::Open(d.path(), repair).ok());
  const std::vector<std::byte> cut = ReadFileBytes(d / kSeg0);
  EXPECT_EQ(cut[PositionOf(9)], std::byte{0});  // the repair had begun cutting

  auto plain = PartitionLog::Open(d.path(), Opts());
  ASSERT_EQ(plain.status().code(), StatusCode::kCorruption);
  EXPECT_NE(plain.status().message().find("repair of " + d.path() + " was interrupted"),
            std::string::npos)
      << plain.status().message();
  auto v = VerifyLog(d.path());
  ASSERT_TRUE(v.ok());
  ASSERT_FALSE(v->ok());
  EXPECT_NE(v->damages.back().reason.find("a repair was interrupted"), std::string::npos)
      << v->damages.back().reason;

  std::filesystem::remove(d / "00000000000000000000.timeindex");
  {
    auto log = PartitionLog::Open(d.path(), repair);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    EXPECT_EQ(log->next_offset(), 15u);
    ASSERT_TRUE(log->Close().ok());
  }
  auto log = PartitionLog::Open(d.path(), Opts());
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ(log->next_offset(), 15u);
  ASSERT_TRUE(log->Close().ok());
  v = VerifyLog(d.path());
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok()) << v->damages.front().ToString();
  EXPECT_EQ(v->records, 6u);
  EXPECT_EQ(v->gaps, 1u);
  EXPECT_EQ(v->gap_offsets, 9u);
}

// Sealed segments are not rescanned at open, but a hole between them is
// said (it was not: a deleted middle segment went unnoticed until a reader
// reached it).
TEST(Recovery, AMissingMiddleSegmentIsNamedInAWarning) {
  TempDir d;
  MakeFourSegments(d.path());
  const uint64_t per_segment = kPerSmallSegment;
  ASSERT_TRUE(std::filesystem::remove(d / SegmentFileName(per_segment)));
  auto log = PartitionLog::Open(d.path(), Opts(4096));
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ(log->next_offset(), 200u);
  const std::string want = "offsets 50..99 are missing between " + SegmentFileName(0) + " and " +
                           SegmentFileName(2 * per_segment);
  EXPECT_TRUE(HasWarning(*log, want)) << "no warning containing: " << want;
}

// A damaged segment header (bad CRC) in a middle and in the last segment:
// refused with the remedy; repair rewrites the headers from the file names,
// checks the records after them, and loses nothing. (Repair used to fail
// the same way as a plain open, so the partition could never persist again.)
TEST(Recovery, ADamagedSegmentHeaderIsRewrittenByARepair) {
  TempDir d;
  MakeFourSegments(d.path());
  const uint64_t per_segment = kPerSmallSegment;
  XorByte(d / SegmentFileName(per_segment), 17, 0xff);
  XorByte(d / SegmentFileName(3 * per_segment), 17, 0xff);
  auto plain = PartitionLog::Open(d.path(), Opts(4096));
  ASSERT_EQ(plain.status().code(), StatusCode::kCorruption);
  EXPECT_NE(plain.status().message().find("runnel broker --repair"), std::string::npos)
      << plain.status().message();
  LogOptions repair = Opts(4096);
  repair.repair = true;
  {
    auto log = PartitionLog::Open(d.path(), repair);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    EXPECT_EQ(log->next_offset(), 200u);
    int rewritten = 0;
    for (const std::string& w : log->warnings()) {
      rewritten += w.find("rewrote the damaged header") != std::string::npos;
    }
    EXPECT_EQ(rewritten, 2);
    ASSERT_TRUE(log->Append(MakeFrames(200, 1)).ok());
    ASSERT_TRUE(log->Close().ok());
  }
  ExpectVerifies(d.path(), 201);
  const std::vector<uint64_t> offsets = Offsets(d.path());
  ASSERT_EQ(offsets.size(), 201u);
  for (uint64_t i = 0; i < offsets.size(); ++i) ASSERT_EQ(offsets[i], i);
}

// Behind a rewritten header, a record of a sealed segment that fails its
// CRC is named in a warning (the segment is kept; readers report it).
TEST(Recovery, DamageBehindARepairedHeaderOfASealedSegmentIsNamed) {
  TempDir d;
  MakeFourSegments(d.path());
  const uint64_t per_segment = kPerSmallSegment;
  const std::string seg = d / SegmentFileName(per_segment);
  XorByte(seg, 17, 0xff);                                    // the header
  XorByte(seg, kFileHeaderLength + 10 * kFrame + 50, 0x01);  // record 60's value
  LogOptions repair = Opts(4096);
  repair.repair = true;
  auto log = PartitionLog::Open(d.path(), repair);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  const std::string want = SegmentFileName(per_segment) + ": damage at file position " +
                           std::to_string(kFileHeaderLength + 10 * kFrame);
  EXPECT_TRUE(HasWarning(*log, want)) << "no warning containing: " << want;
  // The records after the damage are there: no hole is named, now or at
  // the next open (the rebuilt index ends at the damage; it did).
  EXPECT_FALSE(HasWarning(*log, "are missing between"));
  ASSERT_TRUE(log->Close().ok());
  auto again = PartitionLog::Open(d.path(), Opts(4096));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_FALSE(HasWarning(*again, "are missing between"));
}

// A sealed segment's time index with a damaged entry (whole, but one entry
// out of order) is rebuilt at open; it was kept, and VerifyLog kept
// reporting it.
TEST(Recovery, ASealedSegmentsIndexWithADamagedEntryIsRebuilt) {
  TempDir d;
  MakeFourSegments(d.path());
  const std::string idx = d / "00000000000000000000.timeindex";
  PatchFile(idx, kFileHeaderLength + 8, std::vector<std::byte>(4, std::byte{0xff}));
  {
    auto v = VerifyLog(d.path());
    ASSERT_TRUE(v.ok());
    ASSERT_FALSE(v->ok());  // the damage is there
  }
  auto log = PartitionLog::Open(d.path(), Opts(4096));
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_TRUE(HasWarning(*log, "rebuilt the time index of " + kSeg0));
  ASSERT_TRUE(log->Close().ok());
  ExpectVerifies(d.path(), 200);
}

// A sealed segment's time index whose entries are whole and in order but
// carry timestamps below their records' (a seek by time would skip the
// segment on its last entry's word) is rebuilt at open.
TEST(Recovery, ASealedSegmentsIndexWithTimestampsBelowItsRecordsIsRebuilt) {
  TempDir d;
  MakeFourSegments(d.path());
  const std::string idx = d / "00000000000000000050.timeindex";
  ASSERT_GT(std::filesystem::file_size(idx), kFileHeaderLength);
  testing::LowerIndexTimestamps(idx, 1);
  {
    auto v = VerifyLog(d.path());
    ASSERT_TRUE(v.ok());
    ASSERT_FALSE(v->ok());  // the damage is there
  }
  auto log = PartitionLog::Open(d.path(), Opts(4096));
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_TRUE(HasWarning(*log, "rebuilt the time index of 00000000000000000050.log"));
  EXPECT_FALSE(HasWarning(*log, "rebuilt the time index of " + kSeg0));
  ASSERT_TRUE(log->Close().ok());
  ExpectVerifies(d.path(), 200);
}

TEST(Recovery, DamageBeforeTheCheckpointIsNotRescanned) {
  TempDir d;
  MakeImage(d.path(), 15, /*checkpoint_at=*/10);
  // Bytes before the checkpoint were verified when written: recovery does
  // not read them again (VerifyLog does).
  XorByte(d / kSeg0, PositionOf(2) + 50, 0x01);
  auto log = PartitionLog::Open(d.path(), Opts());
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(log->next_offset(), 15u);
  ASSERT_TRUE(log->Close().ok());
  auto v = VerifyLog(d.path());
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->damages.size(), 1u);
  EXPECT_EQ(v->damages[0].file, kSeg0);
  EXPECT_EQ(v->damages[0].file_position, PositionOf(2));
}

TEST(Recovery, DamagedCheckpointIsIgnoredAndTheLastSegmentScanned) {
  TempDir d;
  MakeImage(d.path(), 15, /*checkpoint_at=*/10);
  XorByte(d / "checkpoint", 30, 0xFF);
  auto log = PartitionLog::Open(d.path(), Opts());
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_FALSE(log->recovery().from_checkpoint);
  EXPECT_EQ(log->recovery().records_recovered, 15u);
  EXPECT_EQ(log->next_offset(), 15u);
  ASSERT_EQ(log->warnings().size(), 1u);
  EXPECT_NE(log->warnings()[0].find("ignored the checkpoint"), std::string::npos);
}

TEST(Recovery, CheckpointNamingAMissingSegmentIsCorruption) {
  TempDir d;
  MakeImage(d.path(), 60, std::nullopt, 1024);
  {
    auto log = PartitionLog::Open(d.path(), Opts(1024));  // checkpoints the end
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE(log->Close().ok());
  }
  const auto names = testing::ListNames(d.path());
  std::string last_log;
  for (const auto& n : names) {
    if (ParseSegmentFileName(n)) last_log = n;
  }
  std::filesystem::remove(d / last_log);
  auto log = PartitionLog::Open(d.path(), Opts(1024));
  ASSERT_EQ(log.status().code(), StatusCode::kCorruption);
  EXPECT_NE(log.status().message().find(last_log), std::string::npos) << log.status().message();
  EXPECT_NE(log.status().message().find("missing"), std::string::npos);
}

TEST(Recovery, SegmentOfAnotherFormatVersionIsRefusedNamingBothVersions) {
  TempDir d;
  MakeImage(d.path(), 5);
  PatchFile(d / kSeg0, file_header::kVersion,
            {std::byte{0}, std::byte{0}, std::byte{2}, std::byte{0}});
  auto log = PartitionLog::Open(d.path(), Opts());
  ASSERT_EQ(log.status().code(), StatusCode::kVersionMismatch);
  EXPECT_NE(log.status().message().find(kSeg0), std::string::npos);
  EXPECT_NE(log.status().message().find("format version 2.0"), std::string::npos)
      << log.status().message();
  EXPECT_NE(log.status().message().find("reads 1.x"), std::string::npos);
  // The reader refuses it the same way.
  EXPECT_EQ(LogReader::Open(d.path()).status().code(), StatusCode::kVersionMismatch);
}

TEST(Recovery, ForeignFilesAreIgnoredAndListedInWarnings) {
  TempDir d;
  MakeImage(d.path(), 5);
  testing::WriteFileBytes(d / "notes.txt", testing::Bytes("hello"));
  testing::WriteFileBytes(d / "42.log", testing::Bytes("not ours: name is not 20 digits"));
  std::filesystem::create_directory(d / "lost+found");
  auto log = PartitionLog::Open(d.path(), Opts());
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ(log->next_offset(), 5u);
  std::string all;
  for (const auto& w : log->warnings()) all += w + "\n";
  EXPECT_NE(all.find("notes.txt"), std::string::npos) << all;
  EXPECT_NE(all.find("42.log"), std::string::npos) << all;
  EXPECT_NE(all.find("lost+found"), std::string::npos) << all;
  EXPECT_TRUE(FileExists(d / "notes.txt"));  // never touched
}

TEST(Recovery, FileNamedLikeASegmentWithoutItsMagicIsRefused) {
  TempDir d;
  MakeImage(d.path(), 5);
  testing::WriteFileBytes(d / "00000000000000000003.log",
                          std::vector<std::byte>(100, std::byte{7}));
  auto log = PartitionLog::Open(d.path(), Opts());
  ASSERT_EQ(log.status().code(), StatusCode::kCorruption);
  EXPECT_NE(log.status().message().find("00000000000000000003.log"), std::string::npos);
  EXPECT_NE(log.status().message().find("magic"), std::string::npos) << log.status().message();
}

TEST(Recovery, SegmentWhoseHeaderNeverReachedTheDiskIsRewritten) {
  TempDir d;
  MakeImage(d.path(), 13, std::nullopt, 1024);  // segment 0: 0..11, segment 12: 12
  ASSERT_TRUE(FileExists(d / "00000000000000000012.log"));
  PatchFile(d / "00000000000000000012.log", 0, std::vector<std::byte>(kFileHeaderLength));
  std::filesystem::remove(d / "00000000000000000012.timeindex");
  auto log = PartitionLog::Open(d.path(), Opts(1024));
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ(log->next_offset(), 13u);
  ASSERT_FALSE(log->warnings().empty());
  EXPECT_NE(log->warnings()[0].find("rewrote the header"), std::string::npos);
  ASSERT_TRUE(log->Append(MakeFrames(13, 3)).ok());
  ASSERT_TRUE(log->Close().ok());
  ExpectVerifies(d.path(), 16);
}

TEST(Recovery, MissingOrDamagedTimeIndexIsRebuilt) {
  TempDir d;
  {
    auto log = PartitionLog::Open(d.path(), Opts(1024));
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE(log->Append(MakeFrames(0, 40)).ok());
    ASSERT_TRUE(log->Close().ok());
  }
  std::filesystem::remove(d / "00000000000000000000.timeindex");
  XorByte(d / "00000000000000000012.timeindex", 3, 0xFF);  // header magic
  auto log = PartitionLog::Open(d.path(), Opts(1024));
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ(log->warnings().size(), 2u);
  ASSERT_TRUE(log->Close().ok());
  ExpectVerifies(d.path(), 40);
}

TEST(Recovery, LeftoversOfInterruptedOperationsAreRemoved) {
  TempDir d;
  MakeImage(d.path(), 5);
  testing::WriteFileBytes(d / "checkpoint.tmp", testing::Bytes("half"));
  testing::WriteFileBytes(d / "00000000000000000099.timeindex", testing::Bytes("orphan"));
  auto log = PartitionLog::Open(d.path(), Opts());
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_FALSE(FileExists(d / "checkpoint.tmp"));
  EXPECT_FALSE(FileExists(d / "00000000000000000099.timeindex"));
  EXPECT_EQ(log->warnings().size(), 2u);
}

TEST(Recovery, EmptyDirectoryWithACheckpointNeedsRepairAndKeepsOffsets) {
  TempDir d;
  MakeImage(d.path(), 5);
  {
    auto log = PartitionLog::Open(d.path(), Opts());
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE(log->Close().ok());
  }
  std::filesystem::remove(d / kSeg0);
  std::filesystem::remove(d / "00000000000000000000.timeindex");
  EXPECT_EQ(PartitionLog::Open(d.path(), Opts()).status().code(), StatusCode::kCorruption);
  LogOptions o = Opts();
  o.repair = true;
  auto log = PartitionLog::Open(d.path(), o);
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(log->next_offset(), 5u);  // offsets are never reused
}

}  // namespace
}  // namespace runnel
