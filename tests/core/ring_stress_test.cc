// Concurrency stress: threads and real processes, every record exactly once,
// in order per producer, exact bytes.

#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "core/ring.h"
#include "tests/core/test_memory.h"

namespace runnel {
namespace {

using testing::SharedMemory;
using testing::TestRing;

// Value layout: producer id (u32), sequence (u32), then a pattern derived
// from both, so any torn or misplaced byte is caught.
std::string MakeValue(uint32_t producer, uint32_t seq, uint32_t size) {
  std::string v(size, '\0');
  for (uint32_t i = 0; i < size; ++i)
    v[i] = static_cast<char>((producer * 131 + seq * 7 + i) & 0xFF);
  if (size >= 8) {
    std::memcpy(v.data(), &producer, 4);
    std::memcpy(v.data() + 4, &seq, 4);
  }
  return v;
}

// Checks a stream of records from `producers` producers; returns "" if fine.
class Checker {
 public:
  Checker(uint32_t producers, uint32_t size) : next_seq_(producers, 0), size_(size) {}
  std::string Check(const RecordView& v) {
    if (v.offset() != next_offset_) {
      return "offset " + std::to_string(v.offset()) + " expected " + std::to_string(next_offset_);
    }
    ++next_offset_;
    std::string_view value = v.value();
    if (value.size() != size_) return "size " + std::to_string(value.size());
    uint32_t producer, seq;
    std::memcpy(&producer, value.data(), 4);
    std::memcpy(&seq, value.data() + 4, 4);
    if (producer >= next_seq_.size()) return "bad producer id";
    if (seq != next_seq_[producer]) {
      return "producer " + std::to_string(producer) + " seq " + std::to_string(seq) + " expected " +
             std::to_string(next_seq_[producer]);
    }
    ++next_seq_[producer];
    if (value != MakeValue(producer, seq, size_)) return "bytes differ";
    return "";
  }
  uint64_t total() const { return next_offset_; }

 private:
  std::vector<uint32_t> next_seq_;
  uint64_t next_offset_ = 0;
  uint32_t size_;
};

void Produce(Ring ring, uint32_t id, uint32_t count, uint32_t size) {
  RingProducer p(ring);
  for (uint32_t seq = 0; seq < count;) {
    const std::string v = MakeValue(id, seq, size);
    const WriteResult w = p.try_write(std::nullopt, {}, v);
    if (w.ok()) {
      ++seq;
    } else if (w.status == ClaimStatus::kFull) {
      (void)p.WaitForSpace(1'000'000);
    } else {
      ADD_FAILURE() << "write failed: " << ClaimStatusName(w.status);
      return;
    }
  }
}

// How a consumer reads: read() in place, or read_copy() through a buffer.
struct ReadMode {
  ReaderOptions options;
  uint32_t limit = 256;
  bool copy = false;
};

// A gating consumer: releases what it has read so producers never lap it.
std::string Consume(Ring ring, uint32_t slot, uint32_t producers, uint32_t per_producer,
                    uint32_t size, ReadMode mode = {}) {
  RingReader r(ring, ring.GatingPosition(slot), mode.options);
  Checker checker(producers, size);
  const uint64_t total = static_cast<uint64_t>(producers) * per_producer;
  std::vector<std::byte> buffer(mode.copy ? 8192 : 0);
  std::string error;
  const int64_t deadline = MonotonicNanos() + 60'000'000'000;
  while (checker.total() < total && error.empty()) {
    auto handler = [&](const RecordView& v) {
      if (error.empty()) error = checker.Check(v);
    };
    const ReadResult res =
        mode.copy ? r.read_copy(handler, mode.limit, buffer) : r.read(handler, mode.limit);
    if (res.status != ReadStatus::kOk)
      return std::string("read status ") + std::string(ReadStatusName(res.status));
    if (res.records > 0) {
      ring.AdvanceGatingSlot(slot, r.position());
    } else {
      (void)r.Wait(WaitStrategy::kBlocking, 1'000'000);
      if (MonotonicNanos() > deadline) return "timed out at " + std::to_string(checker.total());
    }
  }
  return error;
}

// Forks a process per consumer and per producer; each re-attaches to the
// ring through the shared bytes, like another process would. consume(ring,
// c) returns "" or what went wrong; a producer fails through gtest
// assertions. Waits for all and expects each to have succeeded.
void RunInProcesses(const TestRing& t, uint32_t consumers, uint32_t producers,
                    const std::function<std::string(Ring, uint32_t)>& consume,
                    const std::function<void(Ring, uint32_t)>& produce) {
  std::vector<pid_t> children;
  for (uint32_t i = 0; i < consumers + producers; ++i) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      Result<Ring> ring = Ring::Attach(t.memory.span());
      if (i < consumers) {
        const std::string err = consume(*ring, i);
        if (!err.empty()) fprintf(stderr, "consumer %u: %s\n", i, err.c_str());
        _exit(err.empty() ? 0 : 1);
      }
      produce(*ring, i - consumers);
      _exit(::testing::Test::HasFailure() ? 1 : 0);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child " << pid << " " << status;
  }
}

using Shape =
    std::tuple<RingMode, uint32_t /*producers*/, uint32_t /*consumers*/, uint32_t /*value size*/>;

class RingStress : public ::testing::TestWithParam<Shape> {};

// A single producer that commits deferred and publishes batches of 1..13
// records (and lets full batches publish themselves).
void ProduceDeferred(Ring ring, uint32_t count, uint32_t size) {
  RingProducer p(ring);
  for (uint32_t seq = 0; seq < count;) {
    const std::string v = MakeValue(0, seq, size);
    RingClaim c = p.try_claim(0, 0, size, false);
    if (c.status() == ClaimStatus::kFull) {
      (void)p.WaitForSpace(1'000'000);
      continue;
    }
    if (!c.ok()) {
      ADD_FAILURE() << "claim failed: " << ClaimStatusName(c.status());
      return;
    }
    std::memcpy(c.value().data(), v.data(), size);
    if (p.commit_deferred(c) != CommitStatus::kOk) {
      ADD_FAILURE() << "commit_deferred failed";
      return;
    }
    ++seq;
    if (seq % 13 == seq / 13 % 13 || seq == count) {
      const uint32_t pending = p.deferred();
      const PublishResult r = p.publish();
      if (r.published != pending || r.unblocked != 0) {
        ADD_FAILURE() << "published " << r.published << " of " << pending;
        return;
      }
    }
  }
}

// A gating slot's released pair under a reader that never stops: every pair
// read is one the owner wrote whole (offset k at position 8k), and the
// position never goes back.
TEST(RingStressGating, ReadersSeeWholeReleasedPairsInOrder) {
  RingOptions o;
  o.capacity = 64 * 1024;
  TestRing t(o);
  Result<uint32_t> slot = t.ring.AcquireGatingSlot(1, RingPosition{0, 0});
  ASSERT_TRUE(slot.ok());
  // At least this many updates, and as many as it takes for the reader to
  // read this often while they happen (threads start at their own pace).
  const uint64_t min_updates = 400'000 / testing::kStressScale;
  const uint64_t min_reads = 20'000 / testing::kStressScale;
  std::atomic<bool> started{false}, done{false};
  std::atomic<uint64_t> reads{0}, bad{0};
  std::thread reader([&] {
    started.store(true, std::memory_order_release);
    uint64_t last = 0;
    while (!done.load(std::memory_order_acquire)) {
      const RingPosition p = t.ring.GatingPosition(*slot);
      if (p.position != p.offset * 8 || p.position < last) bad.fetch_add(1);
      last = p.position;
      reads.fetch_add(1, std::memory_order_relaxed);
    }
  });
  while (!started.load(std::memory_order_acquire)) std::this_thread::yield();
  uint64_t k = 0;
  while (k < min_updates || reads.load(std::memory_order_relaxed) < min_reads) {
    ++k;
    t.ring.AdvanceGatingSlot(*slot, RingPosition{8 * k, k});
  }
  done.store(true, std::memory_order_release);
  reader.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_GE(reads.load(), min_reads);
  EXPECT_EQ(t.ring.GatingPosition(*slot), (RingPosition{8 * k, k}));
}

TEST(RingStressDeferred, BatchesAcrossProcessesArriveOnceInOrder) {
  RingOptions o;
  o.capacity = 64 * 1024;
  o.mode = RingMode::kSingleProducer;
  TestRing t(o);
  const uint32_t count = 200000 / testing::kStressScale;
  constexpr uint32_t kConsumers = 2;
  constexpr uint32_t kSize = 24;
  std::vector<uint32_t> slots;
  for (uint32_t c = 0; c < kConsumers; ++c) {
    slots.push_back(*t.ring.AcquireGatingSlot(c + 1, t.ring.tail()));
  }
  std::vector<pid_t> children;
  for (uint32_t c = 0; c < kConsumers; ++c) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      Result<Ring> ring = Ring::Attach(t.memory.span());
      const std::string err = Consume(*ring, slots[c], 1, count, kSize);
      if (!err.empty()) fprintf(stderr, "consumer %u: %s\n", c, err.c_str());
      _exit(err.empty() ? 0 : 1);
    }
    children.push_back(pid);
  }
  const pid_t producer = fork();
  ASSERT_GE(producer, 0);
  if (producer == 0) {
    Result<Ring> ring = Ring::Attach(t.memory.span());
    ProduceDeferred(*ring, count, kSize);
    _exit(::testing::Test::HasFailure() ? 1 : 0);
  }
  children.push_back(producer);
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child " << pid << " " << status;
  }
  EXPECT_EQ(t.ring.tail().offset, count);
}

TEST_P(RingStress, ThreadsSeeEveryRecordOnceInOrder) {
  const auto [mode, producers, consumers, size] = GetParam();
  RingOptions o;
  o.capacity = 64 * 1024;
  o.mode = mode;
  TestRing t(o);
  const uint32_t per_producer = (size >= 1000 ? 20000 : 200000) / testing::kStressScale;
  std::vector<uint32_t> slots;
  for (uint32_t c = 0; c < consumers; ++c) {
    slots.push_back(*t.ring.AcquireGatingSlot(c + 1, t.ring.tail()));
  }
  std::vector<std::string> errors(consumers);
  std::vector<std::thread> threads;
  for (uint32_t c = 0; c < consumers; ++c) {
    threads.emplace_back(
        [&, c] { errors[c] = Consume(t.ring, slots[c], producers, per_producer, size); });
  }
  for (uint32_t p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] { Produce(t.ring, p, per_producer, size); });
  }
  for (auto& th : threads) th.join();
  for (uint32_t c = 0; c < consumers; ++c) EXPECT_EQ(errors[c], "") << "consumer " << c;
  EXPECT_EQ(t.ring.tail().offset, static_cast<uint64_t>(producers) * per_producer);
}

TEST_P(RingStress, ProcessesSeeEveryRecordOnceInOrder) {
  const auto [mode, producers, consumers, size] = GetParam();
  RingOptions o;
  o.capacity = 64 * 1024;
  o.mode = mode;
  TestRing t(o);
  const uint32_t per_producer = (size >= 1000 ? 20000 : 200000) / testing::kStressScale;
  std::vector<uint32_t> slots;
  for (uint32_t c = 0; c < consumers; ++c) {
    slots.push_back(*t.ring.AcquireGatingSlot(c + 1, t.ring.tail()));
  }
  RunInProcesses(
      t, consumers, producers,
      [&](Ring ring, uint32_t c) { return Consume(ring, slots[c], producers, per_producer, size); },
      [&](Ring ring, uint32_t p) { Produce(ring, p, per_producer, size); });
  EXPECT_EQ(t.ring.tail().offset, static_cast<uint64_t>(producers) * per_producer);
}

std::string ShapeName(const ::testing::TestParamInfo<Shape>& info) {
  const RingMode mode = std::get<0>(info.param);
  return std::string(mode == RingMode::kSingleProducer ? "Spsc" : "Mpmc") + "_" +
         std::to_string(std::get<1>(info.param)) + "p_" + std::to_string(std::get<2>(info.param)) +
         "c_" + std::to_string(std::get<3>(info.param)) + "B";
}

INSTANTIATE_TEST_SUITE_P(Shapes, RingStress,
                         ::testing::Values(Shape{RingMode::kSingleProducer, 1, 1, 8},
                                           Shape{RingMode::kSingleProducer, 1, 3, 64},
                                           Shape{RingMode::kSingleProducer, 1, 2, 1000},
                                           Shape{RingMode::kMultiProducer, 1, 1, 64},
                                           Shape{RingMode::kMultiProducer, 2, 1, 8},
                                           Shape{RingMode::kMultiProducer, 3, 2, 64},
                                           Shape{RingMode::kMultiProducer, 4, 4, 1000}),
                         ShapeName);

// Both ring modes: a multi-producer claim is marked and turned into padding;
// a single producer's is unmarked and filled as a hole.
class RingCrash : public ::testing::TestWithParam<RingMode> {};

// A producer process is killed with SIGKILL while it holds a claim; the
// unblocker turns the claim into padding and the others go on.
TEST_P(RingCrash, ProducerKilledMidClaimIsUnblocked) {
  RingOptions o;
  o.capacity = 64 * 1024;
  o.mode = GetParam();
  TestRing t(o);
  RingProducer before(t.ring);
  ASSERT_TRUE(before.try_write(std::nullopt, {}, "before").ok());
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    Result<Ring> ring = Ring::Attach(t.memory.span());
    RingProducer p(*ring);
    RingClaim c = p.try_claim(0, 0, 64, false);
    std::memset(c.value().data(), 'x', 32);  // half-written
    raise(SIGKILL);
    _exit(3);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  RingProducer after(t.ring);
  ASSERT_TRUE(after.try_write(std::nullopt, {}, "after").ok());
  RingReader r(t.ring, t.ring.earliest());
  std::vector<std::string> got;
  auto drain = [&] {
    (void)r.read([&](const RecordView& v) { got.emplace_back(v.value()); }, 100);
  };
  drain();
  ASSERT_EQ(got.size(), 1u);  // blocked behind the dead claim
  RingUnblocker u(t.ring, 50'000'000);
  const int64_t start = MonotonicNanos();
  while (got.size() < 2 && MonotonicNanos() - start < 5'000'000'000) {
    (void)u.Poll(MonotonicNanos());
    drain();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1], "after");
  EXPECT_GE(MonotonicNanos() - start, 50'000'000);
  EXPECT_EQ(t.ring.unblocked_claims(), 1u);
}

// Producer processes are killed at random moments while writing; with an
// unblocker running, a reader still gets every committed record, in order,
// with exact bytes, and is never wedged.
TEST_P(RingCrash, RandomlyKilledProducersNeverWedgeReaders) {
  RingOptions o;
  o.capacity = 64 * 1024;
  o.mode = GetParam();
  TestRing t(o);
  SharedMemory committed(8 * 64);  // per producer: records it saw committed
  constexpr int kRounds = 12;
  std::vector<std::string> got;
  RingReader r(t.ring, t.ring.earliest());
  RingUnblocker u(t.ring, 20'000'000);
  for (int round = 0; round < kRounds; ++round) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      Result<Ring> ring = Ring::Attach(t.memory.span());
      RingProducer p(*ring);
      for (uint32_t seq = 0;; ++seq) {
        const std::string v = MakeValue(static_cast<uint32_t>(round), seq, 48);
        WriteResult w;
        do {
          w = p.try_write(std::nullopt, {}, v);
        } while (w.status == ClaimStatus::kFull);
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(500 + round * 397 % 3000));
    kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    // Drain everything the dead producer left, unblocking if it died mid-claim.
    const int64_t start = MonotonicNanos();
    uint32_t expected_seq = 0;
    for (;;) {
      const ReadResult res = r.read(
          [&](const RecordView& v) {
            uint32_t producer, seq;
            std::memcpy(&producer, v.value().data(), 4);
            std::memcpy(&seq, v.value().data() + 4, 4);
            EXPECT_EQ(producer, static_cast<uint32_t>(round));
            if (expected_seq != UINT32_MAX) {
              EXPECT_EQ(seq, expected_seq);
            }
            EXPECT_EQ(std::string(v.value()), MakeValue(producer, seq, 48));
            expected_seq = seq + 1;
          },
          1024);
      if (res.status == ReadStatus::kOverrun) {
        // No gating reader: the producer may lap us while we sleep. Told, not silent.
        const Lost lost = r.Resync();
        EXPECT_GT(lost.bytes, 0u);
        expected_seq = UINT32_MAX;  // unknown after a resync
        continue;
      }
      ASSERT_EQ(res.status, ReadStatus::kOk);
      if (res.records == 0) {
        if (r.position().position >= t.ring.tail().position) break;
        (void)u.Poll(MonotonicNanos());
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      ASSERT_LT(MonotonicNanos() - start, 5'000'000'000) << "reader wedged in round " << round;
    }
  }
}

// A reader that no gating slot protects is lapped again and again by a
// producer process that never waits. read_copy() must never hand over a
// record whose bytes are not the ones its producer wrote: every record it
// delivers has the offset, length and bytes that belong together. (read()
// in the same place delivers such records and only flags them as torn.)
TEST(RingStressLapped, CopyingReaderNeverHandsOverATornRecord) {
  RingOptions o;
  o.capacity = 64 * 1024;
  TestRing t(o);
  // Sizes vary with the sequence number, so a stale length shows.
  auto size_of = [](uint32_t seq) { return 8 + (seq * 37) % 1500; };
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    Result<Ring> ring = Ring::Attach(t.memory.span());
    RingProducer p(*ring);
    for (uint32_t seq = 0;; ++seq) {
      while (!p.try_write(std::nullopt, {}, MakeValue(0, seq, size_of(seq))).ok()) {
      }
    }
  }
  // Killed and reaped on every way out of the test, failed assertions too.
  struct KillOnExit {
    pid_t pid;
    ~KillOnExit() {
      kill(pid, SIGKILL);
      int status = 0;
      waitpid(pid, &status, 0);
    }
  } producer{pid};
  std::vector<std::byte> buffer(AlignedFrameLength(t.ring.max_frame_length()));
  RingReader r(t.ring, t.ring.earliest());
  uint64_t delivered = 0;
  uint64_t overruns = 0;
  uint64_t bad = 0;
  std::string first_bad;
  // At least 1 s and 3 laps of the reader, at most 20 s: a slow producer (a
  // sanitizer build) laps a reader that pauses 20 us only by luck.
  const int64_t start = MonotonicNanos();
  auto more = [&] {
    const int64_t ran = MonotonicNanos() - start;
    return ran < 1'000'000'000 || (overruns < 3 && ran < 20'000'000'000);
  };
  for (uint32_t round = 0; more(); ++round) {
    const ReadResult res = r.read_copy(
        [&](const RecordView& v) {
          ++delivered;
          // One producer: the sequence number is the offset.
          const uint32_t seq = static_cast<uint32_t>(v.offset());
          if (v.value() != MakeValue(0, seq, size_of(seq))) {
            if (bad++ == 0) first_bad = "offset " + std::to_string(v.offset());
          }
        },
        256, buffer);
    EXPECT_EQ(res.torn, 0u);
    if (res.status == ReadStatus::kOverrun) {
      ++overruns;
      (void)r.Resync();
    } else {
      ASSERT_EQ(res.status, ReadStatus::kOk) << ReadStatusName(res.status);
    }
    // Fall behind by varying amounts, so that laps also land mid-copy; now
    // and then by 2 ms, which a producer laps however slow it is.
    const int64_t pause = round % 64 == 63 ? 2'000'000 : (round * 7919) % 20000;
    const int64_t pause_until = MonotonicNanos() + pause;
    while (MonotonicNanos() < pause_until) {
    }
  }
  EXPECT_EQ(bad, 0u) << "first: " << first_bad;
  EXPECT_GT(delivered, 0u);
  EXPECT_GT(overruns, 0u);  // the reader was lapped: the test tested something
}

// Two producer processes on one CPU and no gating reader (a memory-only
// topic): each is preempted in the middle of claims again and again, for far
// longer than the other takes to write a lap of the 64 KiB ring. Neither may
// lap the other's open claim: every commit succeeds, and every record a
// reader gets carries exactly the bytes its producer wrote. (Before the claim
// horizon, commits failed with kUnblocked and late writes landed in newer
// records.)
TEST(RingStressProducers, ProducersSharingACpuNeverLapEachOthersClaims) {
  RingOptions o;
  o.capacity = 64 * 1024;
  TestRing t(o);
  constexpr uint32_t kProducers = 2;
  constexpr uint32_t kPerProducer = 200'000;
  constexpr uint32_t kSize = 64;
  SharedMemory failures(64);
  auto* failed = reinterpret_cast<std::atomic<uint64_t>*>(failures.data());
  std::vector<pid_t> pids;
  for (uint32_t id = 0; id < kProducers; ++id) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(0, &one);
      (void)sched_setaffinity(0, sizeof one, &one);
      Result<Ring> ring = Ring::Attach(t.memory.span());
      RingProducer p(*ring);
      for (uint32_t seq = 0; seq < kPerProducer;) {
        const WriteResult w = p.try_write(std::nullopt, {}, MakeValue(id, seq, kSize));
        if (w.status == ClaimStatus::kFull) {
          (void)p.WaitForSpace(1'000'000);
          continue;
        }
        if (!w.ok()) failed->fetch_add(1);
        ++seq;
      }
      _exit(0);
    }
    pids.push_back(pid);
  }
  struct Reap {
    std::vector<pid_t>& pids;
    ~Reap() {
      for (pid_t pid : pids) {
        if (pid <= 0) continue;  // reaped already (kill(0) would hit our group)
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
      }
    }
  } reap{pids};
  std::vector<std::byte> buffer(AlignedFrameLength(t.ring.max_frame_length()));
  RingReader r(t.ring, t.ring.earliest());
  std::vector<uint32_t> next(kProducers, 0);
  uint64_t delivered = 0;
  uint64_t bad = 0;
  std::string first_bad;
  const int64_t deadline = MonotonicNanos() + 60'000'000'000;
  for (;;) {
    const ReadResult res = r.read_copy(
        [&](const RecordView& v) {
          ++delivered;
          uint32_t producer = 0, seq = 0;
          if (v.value().size() == kSize) {
            std::memcpy(&producer, v.value().data(), 4);
            std::memcpy(&seq, v.value().data() + 4, 4);
          }
          if (v.value().size() != kSize || producer >= kProducers || seq < next[producer] ||
              v.value() != MakeValue(producer, seq, kSize)) {
            if (bad++ == 0) first_bad = "offset " + std::to_string(v.offset());
            return;
          }
          next[producer] = seq + 1;  // skips only after an overrun
        },
        256, buffer);
    if (res.status == ReadStatus::kOverrun) {
      (void)r.Resync();
      continue;
    }
    ASSERT_EQ(res.status, ReadStatus::kOk) << ReadStatusName(res.status);
    if (res.records > 0) continue;
    bool running = false;
    for (pid_t& pid : pids) {
      int status = 0;
      if (pid > 0 && waitpid(pid, &status, WNOHANG) == 0)
        running = true;
      else if (pid > 0) {
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        pid = 0;
      }
    }
    if (!running && r.position().position >= t.ring.tail().position) break;
    ASSERT_LT(MonotonicNanos(), deadline) << "wedged at " << r.position().position;
  }
  pids.clear();
  EXPECT_EQ(failed->load(), 0u) << "commits lost to another producer";
  EXPECT_EQ(bad, 0u) << "first: " << first_bad;
  EXPECT_GT(delivered, 0u);
  EXPECT_EQ(t.ring.tail().offset, uint64_t{kProducers} * kPerProducer);
}

// Record batches (core/batch.h) across processes: producers write batches
// of 1..40 records and, now and then, a record on its own; one consumer
// reads in place with a limit that stops inside batches, the other copies.
// Every record arrives once, in order per producer, with its bytes.
void ProduceBatches(Ring ring, uint32_t id, uint32_t count, uint32_t size, uint32_t seed) {
  RingProducer p(ring);
  RecordBatch batch(2048);
  uint32_t rng = seed;
  auto next = [&] { return rng = rng * 1664525u + 1013904223u; };
  for (uint32_t seq = 0; seq < count;) {
    const uint32_t n = std::min(count - seq, 1 + (next() >> 8) % 40);
    WriteResult w;
    if (n == 1 && (next() >> 8) % 2 == 0) {
      const std::string v = MakeValue(id, seq, size);
      while ((w = p.try_write(std::nullopt, {}, v)).status == ClaimStatus::kFull) {
        (void)p.WaitForSpace(1'000'000);
      }
    } else {
      batch.Clear();
      for (uint32_t i = 0; i < n; ++i) {
        const BatchAppend a = batch.Append(MakeValue(id, seq + i, size));
        if (a != BatchAppend::kOk) {
          ADD_FAILURE() << "append: " << BatchAppendName(a);
          return;
        }
      }
      while ((w = p.try_write(batch)).status == ClaimStatus::kFull) {
        (void)p.WaitForSpace(1'000'000);
      }
    }
    if (!w.ok()) {
      ADD_FAILURE() << "write failed: " << ClaimStatusName(w.status) << " "
                    << CommitStatusName(w.commit);
      return;
    }
    seq += n;
  }
}

class RingStressBatches : public ::testing::TestWithParam<RingMode> {};

TEST_P(RingStressBatches, ProcessesSeeEveryRecordOnceInOrder) {
  const RingMode mode = GetParam();
  const uint32_t producers = mode == RingMode::kSingleProducer ? 1 : 2;
  constexpr uint32_t kSize = 24;
  const uint32_t per_producer = 300000 / testing::kStressScale;
  RingOptions o;
  o.capacity = 64 * 1024;
  o.mode = mode;
  TestRing t(o);
  std::vector<uint32_t> slots;
  for (uint32_t c = 0; c < 2; ++c) slots.push_back(*t.ring.AcquireGatingSlot(c + 1, t.ring.tail()));
  RunInProcesses(
      t, 2, producers,
      [&](Ring ring, uint32_t c) {
        ReadMode mode;
        mode.options.batches = true;
        mode.options.verify_crc = c == 1;
        mode.limit = c == 1 ? 5 : 7;
        mode.copy = c == 1;
        return Consume(ring, slots[c], producers, per_producer, kSize, mode);
      },
      [&](Ring ring, uint32_t p) { ProduceBatches(ring, p, per_producer, kSize, 17 + p); });
  EXPECT_EQ(t.ring.tail().offset, uint64_t{producers} * per_producer);
}

INSTANTIATE_TEST_SUITE_P(Modes, RingStressBatches,
                         ::testing::Values(RingMode::kSingleProducer, RingMode::kMultiProducer),
                         [](const ::testing::TestParamInfo<RingMode>& info) {
                           return std::string(info.param == RingMode::kSingleProducer ? "Spsc"
                                                                                      : "Mpmc");
                         });

INSTANTIATE_TEST_SUITE_P(Modes, RingCrash,
                         ::testing::Values(RingMode::kSingleProducer, RingMode::kMultiProducer),
                         [](const ::testing::TestParamInfo<RingMode>& info) {
                           return std::string(info.param == RingMode::kSingleProducer ? "Spsc"
                                                                                      : "Mpmc");
                         });

}  // namespace
}  // namespace runnel
