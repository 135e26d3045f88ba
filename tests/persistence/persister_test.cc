// The io_uring persistence thread: rings drained into segment files.

#include "persistence/persister.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "core/record.h"
#include "core/ring.h"
#include "persistence/format.h"
#include "persistence/log.h"
#include "persistence/reader.h"
#include "tests/common/scoped_tmpfs.h"
#include "tests/core/test_memory.h"

namespace runnel {
namespace {

namespace fs = std::filesystem;
using testing::TestRing;

constexpr uint64_t kPersisterOwner = 0x5045525349535445ull;

struct DiskRecord {
  uint64_t offset;
  std::string key;
  std::string value;
};

// Reads every data frame of every segment in `dir` straight from the files,
// checking CRCs and offsets: independent of the log and reader code. Control
// frames (gap markers) are allowed only with `controls`, which gets their
// positions in the data order (the index of the next data record).
std::vector<DiskRecord> ReadSegments(const std::string& dir,
                                     std::vector<size_t>* controls = nullptr) {
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".log") files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  std::vector<DiskRecord> out;
  for (const std::string& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto* p = reinterpret_cast<const std::byte*>(bytes.data());
    uint64_t pos = DecodeFixed32(p + 12);  // header_length
    while (pos + 16 <= bytes.size()) {
      const uint64_t word = DecodeFixed64(p + pos);
      if (word == 0) break;
      const uint32_t len = DecodeFixed32(p + pos + frame::kLength);
      if ((word & kStateMask) == static_cast<uint64_t>(FrameState::kPadding)) {
        pos += AlignedFrameLength(len);
        continue;
      }
      if (controls && (word & kStateMask) == static_cast<uint64_t>(FrameState::kControl)) {
        controls->push_back(out.size());
        pos += AlignedFrameLength(len);
        continue;
      }
      EXPECT_EQ(word & kStateMask, static_cast<uint64_t>(FrameState::kData)) << f << ":" << pos;
      EXPECT_EQ(CheckFrame(p + pos, bytes.size() - pos, 1 << 30, true), FrameCheck::kOk)
          << f << ":" << pos;
      RecordView v(p + pos);
      out.push_back({v.offset(), std::string(v.key()), std::string(v.value())});
      pos += AlignedFrameLength(len);
    }
  }
  return out;
}

class PersisterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() /
            ("runnel-persister-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  PersistedPartition Partition(Ring ring, uint32_t slot, SyncPolicy fsync,
                               uint64_t segment_bytes = 1 << 20) {
    LogOptions lo;
    lo.segment_bytes = segment_bytes;
    Result<PartitionLog> log = PartitionLog::Open(dir_ + "/p0", lo);
    EXPECT_TRUE(log.ok()) << log.status().ToString();
    return PersistedPartition{"t/0", ring, slot, std::move(*log), fsync, RetentionPolicy{}};
  }

  // A persister persisting partition `ring` (its log in dir_/p0).
  Result<std::unique_ptr<Persister>> StartPersisting(Ring ring, uint32_t slot,
                                                     std::string_view fsync,
                                                     uint64_t segment_bytes = 1 << 20,
                                                     const PersisterOptions& options = {}) {
    Result<std::unique_ptr<Persister>> p = Persister::Start(options);
    if (p.ok()) (*p)->Add(Partition(ring, slot, *SyncPolicy::Parse(fsync), segment_bytes));
    return p;
  }

  std::string dir_;
};

std::string Value(uint64_t i, size_t size) {
  std::string v(size, static_cast<char>('a' + i % 26));
  const std::string n = std::to_string(i);
  v.replace(0, std::min(n.size(), size), n.substr(0, size));
  return v;
}

TEST_F(PersisterTest, EveryRecordReachesTheSegmentsExactlyOnceForEachPolicy) {
  for (const char* policy : {"never", "interval:5", "always"}) {
    SCOPED_TRACE(policy);
    TearDown();
    SetUp();
    RingOptions ro;
    ro.capacity = 64 * 1024;  // small: the producer laps it many times
    TestRing t(ro);
    const uint32_t slot = *t.ring.AcquireGatingSlot(kPersisterOwner, t.ring.tail());
    auto persister = Persister::Start({});
    ASSERT_TRUE(persister.ok()) << persister.status().ToString();
    (*persister)->Add(Partition(t.ring, slot, *SyncPolicy::Parse(policy), 256 * 1024));
    RingProducer p(t.ring);
    constexpr int kRecords = 3000;
    for (int i = 0; i < kRecords; ++i) {
      const std::string key = "k" + std::to_string(i % 7);
      WriteResult w;
      for (;;) {
        w = p.try_write(std::string_view(key), {}, Value(i, 100 + i % 300));
        if (w.status != ClaimStatus::kFull) break;
        ASSERT_TRUE(p.WaitForSpace(5'000'000'000));
      }
      ASSERT_TRUE(w.ok());
    }
    ASSERT_TRUE((*persister)->Flush().ok());
    EXPECT_EQ(t.ring.Durable(slot).offset, static_cast<uint64_t>(kRecords));
    (*persister)->Stop();
    const auto disk = ReadSegments(dir_ + "/p0");
    ASSERT_EQ(disk.size(), static_cast<size_t>(kRecords));
    for (int i = 0; i < kRecords; ++i) {
      ASSERT_EQ(disk[i].offset, static_cast<uint64_t>(i));
      ASSERT_EQ(disk[i].key, "k" + std::to_string(i % 7));
      ASSERT_EQ(disk[i].value, Value(i, 100 + i % 300));
    }
    // Segments rolled at the configured size.
    int segments = 0;
    for (const auto& e : fs::directory_iterator(dir_ + "/p0")) {
      segments += e.path().extension() == ".log";
    }
    EXPECT_GT(segments, 2);
  }
}

TEST_F(PersisterTest, AtLeastOnceProducerIsReleasedOnlyWhenDurable) {
  RingOptions ro;
  ro.capacity = 64 * 1024;
  TestRing t(ro);
  const uint32_t slot = *t.ring.AcquireGatingSlot(kPersisterOwner, t.ring.tail());
  RingProducer p(t.ring);
  const WriteResult w = p.try_write(std::nullopt, {}, "must be durable");
  ASSERT_TRUE(w.ok());
  // Nobody persists yet: the wait times out.
  EXPECT_FALSE(t.ring.WaitForDurable(w.offset, 20'000'000));
  auto persister = StartPersisting(t.ring, slot, "always");
  ASSERT_TRUE(persister.ok());
  EXPECT_TRUE(t.ring.WaitForDurable(w.offset, 10'000'000'000));
  // Durable means the bytes are in the file already.
  const auto disk = ReadSegments(dir_ + "/p0");
  ASSERT_EQ(disk.size(), 1u);
  EXPECT_EQ(disk[0].value, "must be durable");
}

// Voluntary context switches of every thread of this process so far.
uint64_t VoluntaryContextSwitches() {
  uint64_t n = 0;
  for (const fs::directory_entry& task : fs::directory_iterator("/proc/self/task")) {
    std::ifstream status(task.path() / "status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.starts_with("voluntary_ctxt_switches:")) n += std::stoull(line.substr(24));
    }
  }
  return n;
}

uint64_t VoluntaryContextSwitchesDuring(std::chrono::milliseconds d) {
  const uint64_t before = VoluntaryContextSwitches();
  std::this_thread::sleep_for(d);
  return VoluntaryContextSwitches() - before;
}

// An idle persister sleeps: with no partition, until a command comes; with
// idle partitions, deep_idle_sleep_ns at a time once idle for
// deep_idle_after_ns. It woke every 200 us for good (~1,300 times in
// 500 ms here): 5 % of a CPU for a broker with nothing to do.
TEST_F(PersisterTest, AnIdlePersisterSleepsInsteadOfPolling) {
  {
    auto empty = Persister::Start({});
    ASSERT_TRUE(empty.ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_LT(VoluntaryContextSwitchesDuring(std::chrono::milliseconds(500)), 50u);
  }
  RingOptions ro;
  ro.capacity = 64 * 1024;
  TestRing t(ro);
  const uint32_t slot = *t.ring.AcquireGatingSlot(kPersisterOwner, t.ring.tail());
  PersisterOptions o;
  o.deep_idle_after_ns = 100'000'000;
  o.deep_idle_sleep_ns = 5'000'000;
  auto persister = StartPersisting(t.ring, slot, "always", 1 << 20, o);
  ASSERT_TRUE(persister.ok());
  RingProducer p(t.ring);
  WriteResult w = p.try_write(std::nullopt, {}, "first");
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(t.ring.WaitForDurable(w.offset, 10'000'000'000));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // deep idle by now
  EXPECT_LT(VoluntaryContextSwitchesDuring(std::chrono::milliseconds(500)), 400u);
  // And what comes then is persisted.
  w = p.try_write(std::nullopt, {}, "after the silence");
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE(t.ring.WaitForDurable(w.offset, 10'000'000'000));
  const auto disk = ReadSegments(dir_ + "/p0");
  ASSERT_EQ(disk.size(), 2u);
  EXPECT_EQ(disk[1].value, "after the silence");
}

TEST_F(PersisterTest, RestartedPersisterResumesWithoutLossOrDuplicates) {
  RingOptions ro;
  ro.capacity = 256 * 1024;
  TestRing t(ro);
  const uint32_t slot = *t.ring.AcquireGatingSlot(kPersisterOwner, t.ring.tail());
  RingProducer p(t.ring);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(p.try_write(std::nullopt, {}, Value(i, 50)).ok());
  const RingPosition before = t.ring.GatingPosition(slot);
  {
    auto persister = StartPersisting(t.ring, slot, "interval:5");
    ASSERT_TRUE(persister.ok());
    ASSERT_TRUE((*persister)->Flush().ok());
    (*persister)->Stop();
  }
  EXPECT_EQ(t.ring.GatingPosition(slot).offset, 100u);
  // A broker that died after its write but before advancing the gating
  // slot: the slot still points at the start, the log has everything.
  t.ring.AdvanceGatingSlot(slot, before);
  for (int i = 100; i < 150; ++i) ASSERT_TRUE(p.try_write(std::nullopt, {}, Value(i, 50)).ok());
  {
    auto persister = StartPersisting(t.ring, slot, "interval:5");
    ASSERT_TRUE(persister.ok());
    ASSERT_TRUE((*persister)->Flush().ok());
  }
  const auto disk = ReadSegments(dir_ + "/p0");
  ASSERT_EQ(disk.size(), 150u);
  for (int i = 0; i < 150; ++i) {
    ASSERT_EQ(disk[i].offset, static_cast<uint64_t>(i));
    ASSERT_EQ(disk[i].value, Value(i, 50));
  }
}

// A ring whose offsets are behind the log's end (made from an older state of
// the log) would give two records one offset: the persister refuses it, says
// so to producers through the gating slot, and the log keeps what it had.
TEST_F(PersisterTest, ARingBehindTheLogIsRefusedInsteadOfReusingOffsets) {
  RingOptions ro;
  ro.capacity = 256 * 1024;
  {
    TestRing t(ro);
    const uint32_t slot = *t.ring.AcquireGatingSlot(kPersisterOwner, t.ring.tail());
    RingProducer p(t.ring);
    for (int i = 0; i < 100; ++i) ASSERT_TRUE(p.try_write(std::nullopt, {}, Value(i, 50)).ok());
    auto persister = StartPersisting(t.ring, slot, "always");
    ASSERT_TRUE(persister.ok());
    ASSERT_TRUE((*persister)->Flush().ok());
  }
  TestRing t(ro);  // starts at offset 0 again
  const uint32_t slot = *t.ring.AcquireGatingSlot(kPersisterOwner, t.ring.tail());
  RingProducer p(t.ring);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(p.try_write(std::nullopt, {}, "reused offset").ok());
  auto persister = StartPersisting(t.ring, slot, "always");
  ASSERT_TRUE(persister.ok());
  EXPECT_FALSE((*persister)->Flush().ok());
  const std::vector<PersistedPartitionStats> stats = (*persister)->Stats();
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].error, EILSEQ);
  EXPECT_EQ(t.ring.GatingError(slot), EILSEQ);
  EXPECT_EQ(t.ring.GatingPosition(slot).offset, 0u);  // nothing was taken from the ring
  (*persister)->Stop();
  const auto disk = ReadSegments(dir_ + "/p0");
  ASSERT_EQ(disk.size(), 100u);
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(disk[i].offset, static_cast<uint64_t>(i));
    ASSERT_EQ(disk[i].value, Value(i, 50));
  }
}

// A record a peer wrote over in shared memory (its CRC fails) never reaches
// the disk: the good records before it are written, then the partition stops
// with EILSEQ. (The persister checked frames' structure only, and wrote such
// a record; recovery then found the log damaged in the middle, and a repair
// cut every record after it, acknowledged ones included.)
TEST_F(PersisterTest, ARecordWrittenOverInTheRingIsNotPersisted) {
  RingOptions ro;
  ro.capacity = 256 * 1024;
  TestRing t(ro);
  const uint32_t slot = *t.ring.AcquireGatingSlot(kPersisterOwner, t.ring.tail());
  RingProducer p(t.ring);
  std::vector<uint64_t> positions;
  for (int i = 0; i < 5; ++i) {
    positions.push_back(t.ring.tail().position);
    ASSERT_TRUE(p.try_write(std::nullopt, {}, Value(i, 50)).ok());
  }
  // One byte of record 3's value.
  std::byte* value = const_cast<std::byte*>(t.ring.At(positions[3])) + kFrameHeaderLength + 10;
  *value = static_cast<std::byte>(static_cast<unsigned char>(*value) ^ 0x20);
  auto persister = StartPersisting(t.ring, slot, "always");
  ASSERT_TRUE(persister.ok());
  EXPECT_FALSE((*persister)->Flush(2'000'000'000).ok());
  EXPECT_EQ(t.ring.GatingError(slot), EILSEQ);
  EXPECT_EQ(t.ring.GatingPosition(slot).offset, 3u);
  (*persister)->Stop();
  const auto disk = ReadSegments(dir_ + "/p0");
  ASSERT_EQ(disk.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(disk[i].offset, static_cast<uint64_t>(i));
    EXPECT_EQ(disk[i].value, Value(i, 50));
  }
}

// A peer that moves the offset half of the tail word on hands the next
// producer an offset past the next one, with no padding before its record.
// Written as it was, the log read as damaged there and every reader skipped
// the record its producer was told is durable. The skipped offset is a gap:
// the record is on disk and readable, the log verifies clean.
TEST_F(PersisterTest, AnOffsetSkippedWithoutPaddingIsMarkedAsAGapAndTheRecordKept) {
  for (const RingMode mode : {RingMode::kSingleProducer, RingMode::kMultiProducer}) {
    SCOPED_TRACE(static_cast<int>(mode));
    fs::remove_all(dir_ + "/p0");
    RingOptions ro;
    ro.capacity = 256 * 1024;
    ro.mode = mode;
    TestRing t(ro);
    const uint32_t slot = *t.ring.AcquireGatingSlot(kPersisterOwner, t.ring.tail());
    RingProducer p(t.ring);
    for (uint64_t i = 0; i < 5; ++i) {
      ASSERT_EQ(p.try_write(std::nullopt, {}, Value(i, 50)).offset, i);
    }
    std::atomic_ref<uint64_t>(t.ring.control()->tail).fetch_add(uint64_t{1} << 32);  // offset + 1
    for (uint64_t i = 6; i < 11; ++i) {
      ASSERT_EQ(p.try_write(std::nullopt, {}, Value(i, 50)).offset, i);
    }
    auto persister = StartPersisting(t.ring, slot, "always");
    ASSERT_TRUE(persister.ok());
    ASSERT_TRUE((*persister)->Flush(2'000'000'000).ok());
    EXPECT_EQ(t.ring.GatingError(slot), 0);
    EXPECT_EQ(t.ring.Durable(slot).offset, 11u);
    (*persister)->Stop();
    std::vector<size_t> controls;
    const auto disk = ReadSegments(dir_ + "/p0", &controls);
    EXPECT_EQ(controls, std::vector<size_t>{5});  // the marker, between 4 and 6
    ASSERT_EQ(disk.size(), 10u);
    for (size_t i = 0; i < disk.size(); ++i) {
      const uint64_t offset = i < 5 ? i : i + 1;
      EXPECT_EQ(disk[i].offset, offset);
      EXPECT_EQ(disk[i].value, Value(offset, 50));
    }
    Result<VerifyReport> v = VerifyLog(dir_ + "/p0");
    ASSERT_TRUE(v.ok());
    EXPECT_TRUE(v->ok()) << v->damages.front().ToString();
    EXPECT_EQ(v->records, 10u);
    EXPECT_EQ(v->gap_offsets, 1u);
    LogOptions lo;
    Result<PartitionLog> log = PartitionLog::Open(dir_ + "/p0", lo);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    EXPECT_EQ(log->next_offset(), 11u);
  }
}

// The slot moves past the skipped offsets at once (as after an overrun), not
// when the record after them is written: a broker that takes over before
// that (here the record cannot be written: it is larger than a segment)
// continues after the gap instead of meeting the jump again behind it.
TEST_F(PersisterTest, TheSlotMovesPastASkippedOffsetBeforeTheNextRecordIsWritten) {
  RingOptions ro;
  ro.capacity = 256 * 1024;
  TestRing t(ro);
  const uint32_t slot = *t.ring.AcquireGatingSlot(kPersisterOwner, t.ring.tail());
  RingProducer p(t.ring);
  for (uint64_t i = 0; i < 5; ++i) ASSERT_TRUE(p.try_write(std::nullopt, {}, Value(i, 50)).ok());
  std::atomic_ref<uint64_t>(t.ring.control()->tail).fetch_add(uint64_t{1} << 32);
  const uint64_t at = t.ring.tail().position;
  ASSERT_EQ(p.try_write(std::nullopt, {}, Value(6, 8000)).offset, 6u);
  auto persister = StartPersisting(t.ring, slot, "always", /*segment_bytes=*/4096);
  ASSERT_TRUE(persister.ok());
  EXPECT_FALSE((*persister)->Flush(1'000'000'000).ok());
  EXPECT_NE(t.ring.GatingError(slot), 0);
  EXPECT_EQ(t.ring.GatingPosition(slot), (RingPosition{at, 6}));
  (*persister)->Stop();
  std::vector<size_t> controls;
  EXPECT_EQ(ReadSegments(dir_ + "/p0", &controls).size(), 5u);
  EXPECT_EQ(controls, std::vector<size_t>{5});
}

// A partition directory removed (rm -rf) while the persister writes to it:
// the records written after that went to unlinked files. They were
// confirmed durable, and the broker stopped cleanly; now nothing more is
// confirmed and the partition stops with EILSEQ.
TEST_F(PersisterTest, ALogDirectoryRemovedUnderThePersisterStopsConfirmingDurability) {
  RingOptions ro;
  ro.capacity = 256 * 1024;
  TestRing t(ro);
  const uint32_t slot = *t.ring.AcquireGatingSlot(kPersisterOwner, t.ring.tail());
  RingProducer p(t.ring);
  for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(p.try_write(std::nullopt, {}, Value(i, 50)).ok());
  auto persister = StartPersisting(t.ring, slot, "always");
  ASSERT_TRUE(persister.ok());
  ASSERT_TRUE((*persister)->Flush(2'000'000'000).ok());
  EXPECT_EQ(t.ring.Durable(slot).offset, 10u);
  fs::remove_all(dir_ + "/p0");
  for (uint64_t i = 10; i < 20; ++i) ASSERT_TRUE(p.try_write(std::nullopt, {}, Value(i, 50)).ok());
  EXPECT_FALSE((*persister)->Flush(1'000'000'000).ok());
  EXPECT_EQ(t.ring.GatingError(slot), ENOENT);
  EXPECT_EQ(t.ring.Durable(slot).offset, 10u);
  EXPECT_FALSE(t.ring.WaitForDurable(15, 0));
  (*persister)->Stop();
}

// A broker that adopts a ring late registers its slot where the ring's
// oldest record was a moment before; producers that looked for gating readers
// just before may lap it. The persister must not wait for ever at a position
// that will never be written again (the gate would hold every producer): the
// lost offsets become a gap, producers waiting for them are told, and
// persisting goes on.
TEST_F(PersisterTest, APersisterLappedBeforeItsFirstWriteMarksAGapAndGoesOn) {
  RingOptions ro;
  ro.capacity = 64 * 1024;
  TestRing t(ro);
  RingProducer p(t.ring);
  uint64_t n = 0;
  for (; n < 3000; ++n) ASSERT_TRUE(p.try_write(std::nullopt, {}, Value(n, 50)).ok());
  // The slot at a position producers have since overwritten: they are held
  // (once past the bound they cached before the slot appeared).
  const uint32_t slot = *t.ring.AcquireGatingSlot(kPersisterOwner, RingPosition{0, 0});
  for (; n < 6000; ++n) {
    if (!p.try_write(std::nullopt, {}, Value(n, 50)).ok()) break;
  }
  ASSERT_LT(n, 6000u);
  EXPECT_EQ(p.try_write(std::nullopt, {}, Value(n, 50)).status, ClaimStatus::kFull);
  const uint64_t oldest = t.ring.earliest().offset;
  ASSERT_GT(oldest, 0u);
  auto persister = StartPersisting(t.ring, slot, "always");
  ASSERT_TRUE(persister.ok());
  ASSERT_TRUE((*persister)->Flush(5'000'000'000).ok());
  EXPECT_EQ(t.ring.GatingError(slot), 0);
  EXPECT_EQ(t.ring.Unread(slot).from, 0u);
  EXPECT_EQ(t.ring.Unread(slot).to, oldest);
  // Producers go on, and what they write is persisted after the gap.
  for (const uint64_t end = n + 100; n < end; ++n) {
    const WriteResult w = p.try_write(std::nullopt, {}, Value(n, 50));
    ASSERT_TRUE(w.ok());
    ASSERT_EQ(w.offset, n);
  }
  ASSERT_TRUE((*persister)->Flush(5'000'000'000).ok());
  const std::vector<PersistedPartitionStats> stats = (*persister)->Stats();
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].offsets_lost, oldest);
  EXPECT_EQ(stats[0].durable.offset, n);
  (*persister)->Stop();
  std::vector<size_t> controls;
  const auto disk = ReadSegments(dir_ + "/p0", &controls);
  EXPECT_EQ(controls, std::vector<size_t>{0});  // the gap marker, before every record
  ASSERT_EQ(disk.size(), n - oldest);
  for (size_t i = 0; i < disk.size(); ++i) {
    ASSERT_EQ(disk[i].offset, oldest + i);
    ASSERT_EQ(disk[i].value, Value(oldest + i, 50));
  }
  // Recovery takes the marker for what it is: the log continues at n.
  LogOptions lo;
  Result<PartitionLog> log = PartitionLog::Open(dir_ + "/p0", lo);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ(log->next_offset(), n);
}

// With interval:MS writes go on while the fdatasync runs. Whatever the
// interleaving, the durable position never passes the written one, neither
// moves back, and a flush makes everything durable. (Exactly what a sync may
// publish is SyncTracker's test.)
TEST_F(PersisterTest, IntervalSyncOverlapsWritesAndDurableNeverPassesWritten) {
  RingOptions ro;
  ro.capacity = 1 << 20;
  TestRing t(ro);
  const uint32_t slot = *t.ring.AcquireGatingSlot(kPersisterOwner, t.ring.tail());
  auto persister = StartPersisting(t.ring, slot, "interval:1", 4 << 20);
  ASSERT_TRUE(persister.ok());
  std::atomic<bool> done{false};
  std::atomic<uint64_t> violations{0};
  std::atomic<uint64_t> durable_moves{0};
  std::thread watcher([&] {
    uint64_t last_durable = 0, last_written = 0;
    while (!done.load(std::memory_order_acquire)) {
      const RingPosition d = t.ring.Durable(slot);  // first: it trails the written position
      const RingPosition w = t.ring.GatingPosition(slot);
      if (d.position > w.position || d.position < last_durable || w.position < last_written) {
        violations.fetch_add(1, std::memory_order_relaxed);
      }
      if (d.position > last_durable) durable_moves.fetch_add(1, std::memory_order_relaxed);
      last_durable = d.position;
      last_written = w.position;
    }
  });
  RingProducer p(t.ring);
  constexpr int kRecords = 40'000;
  for (int i = 0; i < kRecords; ++i) {
    WriteResult w;
    for (;;) {
      w = p.try_write(std::nullopt, {}, Value(i, 200 + i % 300));
      if (w.status != ClaimStatus::kFull) break;
      ASSERT_TRUE(p.WaitForSpace(5'000'000'000));
    }
    ASSERT_TRUE(w.ok());
  }
  ASSERT_TRUE((*persister)->Flush().ok());
  done.store(true, std::memory_order_release);
  watcher.join();
  EXPECT_EQ(violations.load(), 0u);
  EXPECT_GT(durable_moves.load(), 0u);
  EXPECT_EQ(t.ring.Durable(slot).offset, static_cast<uint64_t>(kRecords));
  const auto stats = (*persister)->Stats();
  ASSERT_EQ(stats.size(), 1u);
  RecordProperty("writes", std::to_string(stats[0].writes));
  RecordProperty("syncs", std::to_string(stats[0].syncs));
  RecordProperty("writes_during_sync", std::to_string(stats[0].writes_during_sync));
  (*persister)->Stop();
  const auto disk = ReadSegments(dir_ + "/p0");
  ASSERT_EQ(disk.size(), static_cast<size_t>(kRecords));
  for (int i = 0; i < kRecords; ++i) ASSERT_EQ(disk[i].offset, static_cast<uint64_t>(i));
}

// A trickle of records is held back until coalesce_delay_ns after the
// persister saw the first of them, then written in one go.
TEST_F(PersisterTest, ATrickleIsWrittenInOneWriteAfterTheCoalescingDelay) {
  RingOptions ro;
  ro.capacity = 64 * 1024;  // threshold: 8 KiB
  TestRing t(ro);
  const uint32_t slot = *t.ring.AcquireGatingSlot(kPersisterOwner, t.ring.tail());
  PersisterOptions po;
  po.coalesce_delay_ns = 300'000'000;
  auto persister = Persister::Start(po);
  ASSERT_TRUE(persister.ok());
  (*persister)->Add(Partition(t.ring, slot, *SyncPolicy::Parse("never")));
  RingProducer p(t.ring);
  const int64_t start = MonotonicNanos();
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(p.try_write(std::nullopt, {}, Value(i, 64)).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (MonotonicNanos() - start < 250'000'000) {
    EXPECT_EQ(t.ring.GatingPosition(slot).offset, 0u);  // 5 KiB pending: held back
    EXPECT_EQ(t.ring.Durable(slot).offset, 0u);
  }
  ASSERT_TRUE(t.ring.WaitForDurable(49, 10'000'000'000));
  EXPECT_GE(MonotonicNanos() - start, 300'000'000);
  const auto stats = (*persister)->Stats();
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].writes, 1u);
  EXPECT_EQ(stats[0].records_written, 50u);
}

// Enough pending bytes (1/8 of this small ring) are written without waiting
// for the delay; Flush() writes the rest at once.
TEST_F(PersisterTest, CoalescingWritesAtTheThresholdAndFlushDoesNotWait) {
  RingOptions ro;
  ro.capacity = 64 * 1024;
  TestRing t(ro);
  const uint32_t slot = *t.ring.AcquireGatingSlot(kPersisterOwner, t.ring.tail());
  PersisterOptions po;
  po.coalesce_delay_ns = 3'600'000'000'000;  // an hour: only the threshold can trigger
  auto persister = Persister::Start(po);
  ASSERT_TRUE(persister.ok());
  (*persister)->Add(Partition(t.ring, slot, *SyncPolicy::Parse("interval:1")));
  RingProducer p(t.ring);
  uint64_t last = 0;
  for (int i = 0; i < 100; ++i) {  // 100 x 144 B: past the 8 KiB threshold
    const WriteResult w = p.try_write(std::nullopt, {}, Value(i, 100));
    ASSERT_TRUE(w.ok());
    last = w.offset;
  }
  EXPECT_TRUE(t.ring.WaitForDurable(0, 10'000'000'000));
  const int64_t start = MonotonicNanos();
  ASSERT_TRUE((*persister)->Flush().ok());
  EXPECT_LT(MonotonicNanos() - start, 5'000'000'000);
  EXPECT_EQ(t.ring.Durable(slot).offset, last + 1);
  EXPECT_EQ(ReadSegments(dir_ + "/p0").size(), 100u);
}

// `always` writes (and syncs) every batch at once, whatever the coalescing.
TEST_F(PersisterTest, AlwaysDoesNotCoalesce) {
  RingOptions ro;
  ro.capacity = 64 * 1024;
  TestRing t(ro);
  const uint32_t slot = *t.ring.AcquireGatingSlot(kPersisterOwner, t.ring.tail());
  PersisterOptions po;
  po.coalesce_delay_ns = 3'600'000'000'000;
  auto persister = Persister::Start(po);
  ASSERT_TRUE(persister.ok());
  (*persister)->Add(Partition(t.ring, slot, *SyncPolicy::Parse("always")));
  RingProducer p(t.ring);
  const WriteResult w = p.try_write(std::nullopt, {}, "now");
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE(t.ring.WaitForDurable(w.offset, 10'000'000'000));
  const auto stats = (*persister)->Stats();
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].syncs, 1u);
}

// Policy never (the broker opens such logs with sync_on_roll off): Flush()
// also fdatasyncs the segments sealed since the last flush. Observed by
// swapping one for a link to /dev/null, which fdatasync refuses.
TEST_F(PersisterTest, FlushUnderNeverSyncsTheSealedSegmentsToo) {
  RingOptions ro;
  ro.capacity = 64 * 1024;
  TestRing t(ro);
  const uint32_t slot = *t.ring.AcquireGatingSlot(kPersisterOwner, t.ring.tail());
  LogOptions lo;
  lo.segment_bytes = 64 * 1024;
  lo.sync_on_roll = false;
  Result<PartitionLog> log = PartitionLog::Open(dir_ + "/p0", lo);
  ASSERT_TRUE(log.ok());
  auto persister = Persister::Start({});
  ASSERT_TRUE(persister.ok());
  (*persister)
      ->Add(PersistedPartition{"t/0", t.ring, slot, std::move(*log), *SyncPolicy::Parse("never"),
                               RetentionPolicy{}});
  RingProducer p(t.ring);
  uint64_t last = 0;
  for (int i = 0; i < 1000; ++i) {  // ~300 KiB: several segments
    WriteResult w;
    for (;;) {
      w = p.try_write(std::nullopt, {}, Value(i, 256));
      if (w.status != ClaimStatus::kFull) break;
      ASSERT_TRUE(p.WaitForSpace(5'000'000'000));
    }
    ASSERT_TRUE(w.ok());
    last = w.offset;
  }
  ASSERT_TRUE(t.ring.WaitForDurable(last, 10'000'000'000));  // written: all rolls done
  const std::string first = dir_ + "/p0/" + SegmentFileName(0);
  ASSERT_EQ(::rename(first.c_str(), (first + ".real").c_str()), 0);
  ASSERT_EQ(::symlink("/dev/null", first.c_str()), 0);
  const Status failed = (*persister)->Flush();
  EXPECT_FALSE(failed.ok());
  EXPECT_NE(failed.ToString().find(SegmentFileName(0)), std::string::npos) << failed.ToString();
  ASSERT_EQ(::unlink(first.c_str()), 0);
  ASSERT_EQ(::rename((first + ".real").c_str(), first.c_str()), 0);
  ASSERT_TRUE((*persister)->Flush().ok());
  (*persister)->Stop();
  EXPECT_EQ(ReadSegments(dir_ + "/p0").size(), 1000u);
}

TEST_F(PersisterTest, FsyncPolicyParsing) {
  EXPECT_EQ(SyncPolicy::Parse("never")->kind, SyncPolicy::Kind::kNever);
  EXPECT_EQ(SyncPolicy::Parse("always")->kind, SyncPolicy::Kind::kAlways);
  EXPECT_EQ(SyncPolicy::Parse("interval:25")->interval_ms, 25u);
  EXPECT_EQ(SyncPolicy::Parse("interval")->interval_ms, 10u);
  EXPECT_EQ(SyncPolicy::Parse("interval:25")->ToString(), "interval:25");
  for (const char* bad :
       {"", "sometimes", "interval:", "interval:0", "interval:x", "interval:-1"}) {
    EXPECT_EQ(SyncPolicy::Parse(bad).status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

// A full disk: the persister reports ENOSPC in the gating slot, never
// acknowledges what it could not write, and resumes when space returns.
TEST_F(PersisterTest, FullDiskStopsAcknowledgementsAndRecovers) {
  testing::ScopedTmpfs small(dir_ + "/small", "size=1m");
  if (!small.mounted()) GTEST_SKIP() << small.error();
  const std::string& mnt = small.path();
  // Fill most of the file system.
  {
    std::ofstream filler(mnt + "/filler", std::ios::binary);
    std::string chunk(64 * 1024, 'f');
    for (int i = 0; i < 12; ++i) filler << chunk;
  }
  RingOptions ro;
  ro.capacity = 1 << 20;
  TestRing t(ro);
  const uint32_t slot = *t.ring.AcquireGatingSlot(kPersisterOwner, t.ring.tail());
  LogOptions lo;
  lo.segment_bytes = 64 * 1024;
  lo.preallocate = false;
  Result<PartitionLog> log = PartitionLog::Open(mnt + "/p0", lo);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  PersisterOptions po;
  po.error_retry_ms = 10;
  auto persister = Persister::Start(po);
  ASSERT_TRUE(persister.ok());
  (*persister)
      ->Add(PersistedPartition{"small/0", t.ring, slot, std::move(*log),
                               *SyncPolicy::Parse("always"), RetentionPolicy{}});
  RingProducer p(t.ring);
  uint64_t last = 0;
  int written = 0;
  for (; written < 600; ++written) {
    WriteResult w = p.try_write(std::nullopt, {}, Value(written, 1000));
    if (w.status == ClaimStatus::kFull) break;
    ASSERT_TRUE(w.ok());
    last = w.offset;
  }
  // Not everything fits: the persister stops with ENOSPC and says so.
  EXPECT_FALSE(t.ring.WaitForDurable(last, 5'000'000'000));
  EXPECT_EQ(t.ring.GatingError(slot), ENOSPC);
  const uint64_t durable = t.ring.Durable(slot).offset;
  EXPECT_LT(durable, last + 1);
  // What was acknowledged is on disk; nothing beyond it is claimed durable.
  EXPECT_GE(ReadSegments(mnt + "/p0").size(), durable);
  // Space returns: the persister resumes and everything becomes durable.
  fs::remove(mnt + "/filler");
  const int64_t start = MonotonicNanos();
  while (t.ring.GatingError(slot) != 0 && MonotonicNanos() - start < 10'000'000'000) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(t.ring.WaitForDurable(last, 10'000'000'000));
  EXPECT_EQ(t.ring.GatingError(slot), 0);
  ASSERT_TRUE((*persister)->Flush().ok());
  (*persister)->Stop();
  const auto disk = ReadSegments(mnt + "/p0");
  ASSERT_EQ(disk.size(), static_cast<size_t>(written));
  for (int i = 0; i < written; ++i) ASSERT_EQ(disk[i].value, Value(i, 1000));
}

}  // namespace
}  // namespace runnel
