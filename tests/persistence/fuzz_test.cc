// Untrusted bytes: random damage to a log never crashes, hangs or misleads
// recovery or the reader. A few hundred seeds within a bounded time.

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "persistence/format.h"
#include "persistence/log.h"
#include "persistence/reader.h"
#include "tests/persistence/test_util.h"

namespace runnel {
namespace {

using testing::MakeFrame;
using testing::MakePadding;
using testing::TempDir;

LogOptions Opts() {
  LogOptions o;
  o.segment_bytes = 2048;
  o.index_interval_bytes = 256;
  o.sync_on_roll = false;  // speed: durability is not under test here
  return o;
}

// Writes the template log: records with keys, headers-free values of mixed
// sizes, some padding frames, three or four segments; the last one open
// (crash image with a preallocated tail).
void BuildTemplate(const std::string& dir, uint64_t* records) {
  TempDir live(/*in_memory=*/true);
  auto log = PartitionLog::Open(live.path(), Opts());
  ASSERT_TRUE(log.ok());
  std::mt19937_64 rng(7);
  uint64_t off = 0;
  while (log->segments().size() < 4) {
    std::vector<std::byte> b;
    if (rng() % 8 == 0) {
      testing::Append(b, MakePadding(16 + 8 * (rng() % 8)));
      off += rng() % 2;  // a dead producer's offset, sometimes
    }
    testing::Append(b, MakeFrame(off, 1000 + int64_t(off), "k" + std::to_string(off),
                                 std::string(rng() % 120, 'v')));
    ASSERT_TRUE(log->Append(b).ok());
    ++off;
  }
  *records = off;
  testing::CopyDir(live.path(), dir);
}

// Reads the whole log with a reader; bounded: every call either returns a
// record, a damage (with progress) or the end.
uint64_t Drain(const std::string& dir, bool follow, uint64_t max_steps) {
  LogReaderOptions ro;
  ro.follow = follow;
  auto r = LogReader::Open(dir, ro);
  if (!r.ok()) return 0;
  uint64_t records = 0;
  std::optional<uint64_t> last;
  for (uint64_t step = 0; step < max_steps; ++step) {
    LogEntry e = r->Next();
    if (e.kind == LogEntry::Kind::kEnd) return records;
    if (e.kind == LogEntry::Kind::kRecord) {
      // Whatever the damage, what comes out passed its CRC and is in order.
      EXPECT_TRUE(!last || e.record.offset() > *last);
      last = e.record.offset();
      (void)e.record.value();
      (void)e.record.key();
      ++records;
    }
  }
  ADD_FAILURE() << "reader did not reach the end in " << max_steps << " steps";
  return records;
}

TEST(Fuzz, RandomByteFlipsNeverCrashTheReaderOrRecovery) {
  TempDir root(/*in_memory=*/true);
  const std::string tmpl = root / "template";
  uint64_t records = 0;
  BuildTemplate(tmpl, &records);
  ASSERT_GT(records, 30u);
  std::vector<std::string> files;
  for (const auto& n : testing::ListNames(tmpl)) files.push_back(n);

  const auto start = std::chrono::steady_clock::now();
  int opened = 0, refused = 0;
  for (uint32_t seed = 0; seed < 300; ++seed) {
    std::mt19937_64 rng(seed);
    const std::string dir = root / ("case-" + std::to_string(seed));
    testing::CopyDir(tmpl, dir);
    // Damage: mostly in segments (headers included), sometimes in the
    // indexes and the checkpoint; a few flips, sometimes a zeroed or
    // randomized run of bytes.
    const int edits = 1 + static_cast<int>(rng() % 6);
    for (int i = 0; i < edits; ++i) {
      const std::string& name = files[rng() % files.size()];
      const std::string path = dir + "/" + name;
      const uint64_t size = testing::FileSizeOf(path);
      if (size == 0) continue;
      // Bias towards where the data is: the first 2 KiB.
      const uint64_t pos = rng() % std::min<uint64_t>(size, 2048);
      switch (rng() % 4) {
        case 0:
        case 1:
          testing::XorByte(path, pos, static_cast<uint8_t>(1u << (rng() % 8)));
          break;
        case 2: {
          std::vector<std::byte> run(1 + rng() % 64);
          for (auto& b : run) b = std::byte(rng());
          testing::PatchFile(path, pos, run);
          break;
        }
        case 3:
          testing::PatchFile(path, pos, std::vector<std::byte>(1 + rng() % 64));
          break;
      }
    }
    // The reader, at rest and following, never crashes and always ends.
    EXPECT_LE(Drain(dir, /*follow=*/false, 100'000), records + 1);
    (void)Drain(dir, /*follow=*/true, 100'000);
    auto v = VerifyLog(dir);
    if (v.ok()) {
      EXPECT_LE(v->records, records + 1);
    }

    // Recovery either opens (and then appends work and the log verifies up
    // to what it did not rescan) or refuses with a clear status.
    auto log = PartitionLog::Open(dir, Opts());
    if (!log.ok()) {
      ++refused;
      const StatusCode c = log.status().code();
      EXPECT_TRUE(c == StatusCode::kCorruption || c == StatusCode::kVersionMismatch)
          << log.status().ToString();
      LogOptions o = Opts();
      o.repair = true;
      log = PartitionLog::Open(dir, o);
      if (!log.ok()) {
        // Only a damaged header (or a version) is beyond repair.
        EXPECT_TRUE(log.status().code() == StatusCode::kCorruption ||
                    log.status().code() == StatusCode::kVersionMismatch)
            << log.status().ToString();
        continue;
      }
    }
    ++opened;
    const uint64_t next = log->next_offset();
    EXPECT_LE(next, records + 1);
    EXPECT_TRUE(log->Append(MakeFrame(next, 5000, "after", "recovery")).ok());
    EXPECT_TRUE(log->Close().ok());
    std::filesystem::remove_all(dir);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 15.0);
  EXPECT_GT(opened, 100);
  RecordProperty("opened", opened);
  RecordProperty("refused_without_repair", refused);
}

}  // namespace
}  // namespace runnel
