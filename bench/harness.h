// Benchmark harness: pinned worker processes (or threads), shared mappings,
// a start barrier, a calibrated TSC clock and latency percentiles.
//
// Placement on the 2-vCPU machine (see ../shared/LIMITS.md): the benchmark
// process (the producer side) runs on CPU 0, its worker (the consumer side) on
// CPU 1. A second producer, when there is one, shares CPU 0.

#ifndef RUNNEL_BENCH_HARNESS_H_
#define RUNNEL_BENCH_HARNESS_H_

#include <benchmark/benchmark.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <x86intrin.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <span>
#include <thread>
#include <utility>
#include <vector>

#include "core/wait.h"

namespace runnel::bench {

inline constexpr int kProducerCpu = 0;
inline constexpr int kConsumerCpu = 1;
// Producer- and consumer-written words live this far apart (adjacent-line
// prefetch pulls pairs of 64-byte lines).
inline constexpr std::size_t kFalseSharingRange = 128;
// A one-way cross-core floor (cache-line ping-pong RTT / 2) below this means
// the host placed the two vCPUs "near" each other, above it "far"
// (LIMITS.md: ~88 vs ~205 ns).
inline constexpr double kNearFloorNs = 120;
// Below this the two vCPUs share more than an L3 (seen as a ~35 ns floor on
// some days, against ~60 ns near): a third class, or ratios would mix them.
inline constexpr double kAdjacentFloorNs = 48;
// Every wait in the harness gives up after this long: a broken benchmark
// reports an error instead of hanging the run.
inline constexpr int64_t kWaitTimeoutNs = 20'000'000'000;

// ---------------------------------------------------------------------------
// CPUs

// Pins the calling thread to `cpu`. False if the CPU is not available to us.
bool PinThisThreadToCpu(int cpu);
// True if the system has CPUs 0 and 1.
bool HaveTwoCpus();
// Involuntary context switches of the calling thread so far: a benchmark
// thread that was preempted shared its CPU with something else (on this
// machine: usually another engineer's compiler).
uint64_t InvoluntarySwitches();

// ---------------------------------------------------------------------------
// Clock: the TSC, converted to nanoseconds with a rate calibrated against
// CLOCK_MONOTONIC at start-up. The TSC is invariant and agrees across the two
// vCPUs (LIMITS.md), so a stamp taken on CPU 0 can be subtracted from one
// taken on CPU 1. rdtsc costs ~11 ns here, clock_gettime ~26 ns.
class Tsc {
 public:
  // REQUIRES: called once, before any worker is started.
  static void Calibrate();
  static double ticks_per_ns() { return ticks_per_ns_; }

  static uint64_t Now() { return __rdtsc(); }
  // lfence first: the read cannot execute before earlier loads complete (the
  // load that observed the data we are timing).
  static uint64_t NowAfterLoads() {
    _mm_lfence();
    return __rdtsc();
  }
  static double ToNanos(uint64_t ticks) { return static_cast<double>(ticks) / ticks_per_ns_; }
  static uint64_t FromNanos(double ns) { return static_cast<uint64_t>(ns * ticks_per_ns_); }

 private:
  static inline double ticks_per_ns_ = 1.0;
};

// ---------------------------------------------------------------------------
// Shared memory

// An anonymous MAP_SHARED mapping, pre-faulted (MAP_POPULATE: a first touch
// costs ~11 us per page here). Survives fork() as memory shared with the
// child, like a /dev/shm region mapped by two processes.
class SharedMapping {
 public:
  SharedMapping() = default;
  explicit SharedMapping(std::size_t bytes);
  ~SharedMapping();
  SharedMapping(SharedMapping&& other) noexcept { *this = std::move(other); }
  SharedMapping& operator=(SharedMapping&& other) noexcept;
  SharedMapping(const SharedMapping&) = delete;
  SharedMapping& operator=(const SharedMapping&) = delete;

  bool ok() const { return data_ != nullptr; }
  std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::span<std::byte> span() const { return {data_, size_}; }

 private:
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

// Maps every page of `memory` into this process's page tables now. A forked
// child does not inherit the page-table entries of a MAP_SHARED mapping: its
// first touch of each 4 KiB page would fault (~11 us) on the hot path.
void PrefaultInThisProcess(std::span<std::byte> memory);

// One object of type T constructed in its own shared mapping.
// T must be usable from several processes: no pointers, only lock-free
// (address-free) atomics.
template <typename T>
class Shared {
 public:
  Shared() : mapping_(sizeof(T)) {
    if (mapping_.ok()) object_ = new (mapping_.data()) T();
  }
  ~Shared() {
    if (object_ != nullptr) object_->~T();
  }
  Shared(const Shared&) = delete;
  Shared& operator=(const Shared&) = delete;
  bool ok() const { return object_ != nullptr; }
  T* operator->() const { return object_; }
  T& operator*() const { return *object_; }
  std::span<std::byte> bytes() const { return mapping_.span(); }

 private:
  SharedMapping mapping_;
  T* object_ = nullptr;
};

// ---------------------------------------------------------------------------
// Waiting

// Spins (pause) or yields (when the thread shares its CPU with the thread it
// waits for) until ready() or the timeout. Returns ready().
template <typename Ready>
bool SpinUntil(Ready&& ready, int64_t timeout_ns = kWaitTimeoutNs, bool yield = false) {
  // The clock is first read after a few thousand spins, so a short wait
  // (the common case, often inside a timed region) costs no clock read.
  const uint32_t check_every = yield ? 63 : 4095;
  int64_t deadline = 0;
  for (uint32_t i = 1;; ++i) {
    if (ready()) return true;
    if (yield) {
      sched_yield();
    } else {
      CpuRelax();
    }
    if ((i & check_every) == 0) {
      const int64_t now = MonotonicNanos();
      if (deadline == 0) {
        deadline = now + timeout_ns;
      } else if (now > deadline) {
        return ready();
      }
    }
  }
}

// A one-shot barrier in shared memory: every party arrives, then all go.
struct alignas(kFalseSharingRange) StartBarrier {
  std::atomic<uint32_t> arrived{0};
  // False if not every party arrived within the timeout.
  bool ArriveAndWait(uint32_t parties, bool yield = false) {
    // acq_rel: what each party did before arriving is visible to all after.
    arrived.fetch_add(1, std::memory_order_acq_rel);
    return SpinUntil([&] { return arrived.load(std::memory_order_acquire) >= parties; },
                     kWaitTimeoutNs, yield);
  }
};
static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(std::atomic<uint64_t>::is_always_lock_free);

// ---------------------------------------------------------------------------
// Workers

enum class Isolation : uint8_t {
  kProcess,  // fork(): the worker is another process (shared memory only)
  kThread,   // std::thread in this process (in-process queues)
};

// A pinned worker running `body`; its return value is the exit code.
class Worker {
 public:
  Worker() = default;
  Worker(Worker&& other) noexcept { *this = std::move(other); }
  Worker& operator=(Worker&& other) noexcept;
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  ~Worker();

  // A process worker calls body() in a forked child and _exit()s with its
  // result, so the child never returns into the benchmark library.
  static Worker Start(Isolation isolation, int cpu, std::function<int()> body);

  bool started() const { return pid_ > 0 || thread_.joinable(); }
  // Waits for the worker to end and returns its exit code (-1: killed or
  // crashed). A process still running after timeout_ns is killed; a thread
  // is always joined (thread bodies must honour their own timeouts).
  int Join(int64_t timeout_ns = kWaitTimeoutNs);

 private:
  pid_t pid_ = -1;
  std::thread thread_;
  std::unique_ptr<std::atomic<int>> thread_result_;
};

// ---------------------------------------------------------------------------
// Latency

// Raw latency samples (TSC ticks); exact percentiles at the end.
class LatencySamples {
 public:
  explicit LatencySamples(std::size_t capacity);
  void Add(uint64_t ticks) {
    if (count_ < ticks_.size()) ticks_[count_++] = ticks;
  }
  std::size_t count() const { return count_; }

  struct Summary {
    double p50_ns = 0, p99_ns = 0, p999_ns = 0, max_ns = 0, mean_ns = 0;
  };
  Summary Summarize() const;
  // Adds p50/p99/p99.9/max counters (nanoseconds) to the benchmark.
  void Report(benchmark::State& state) const;

 private:
  std::vector<uint64_t> ticks_;  // sized up front: no allocation while timing
  std::size_t count_ = 0;
};

// ---------------------------------------------------------------------------
// Payloads: every benchmark sends verifiable records. The first 8 bytes hold
// (producer << 56 | sequence); a payload of 16 bytes or more ends with a word
// mixed from both. Consumers check the sequence per producer and sum the last
// word, so a benchmark only counts records that really arrived intact.

inline constexpr uint32_t kMaxProducers = 4;

inline uint64_t HeadWord(uint32_t producer, uint64_t seq) {
  return (static_cast<uint64_t>(producer) << 56) | seq;
}
inline uint64_t TailWord(uint32_t producer, uint64_t seq) {
  return ((seq + 1) * 0x9E3779B97F4A7C15ull) ^ producer;
}
inline uint64_t ChecksumWord(uint32_t producer, uint64_t seq, uint32_t size) {
  return size >= 16 ? TailWord(producer, seq) : HeadWord(producer, seq);
}

// Writes a `size`-byte payload (size >= 8): head word, a copy of `filler` in
// the middle, tail word. REQUIRES: filler has at least `size` bytes.
void FillPayload(std::byte* dst, uint32_t size, uint32_t producer, uint64_t seq,
                 const std::byte* filler);

class PayloadChecker {
 public:
  PayloadChecker(uint32_t producers, uint32_t size) : producers_(producers), size_(size) {}
  void Check(const void* data, std::size_t size) {
    ++records_;
    if (size != size_) {
      ++errors_;
      return;
    }
    uint64_t head;
    __builtin_memcpy(&head, data, sizeof head);
    const uint32_t producer = static_cast<uint32_t>(head >> 56);
    const uint64_t seq = head & ((1ull << 56) - 1);
    if (producer >= producers_ || seq != next_seq_[producer]) {
      ++errors_;
    } else {
      ++next_seq_[producer];
    }
    uint64_t last = head;
    if (size_ >= 16) __builtin_memcpy(&last, static_cast<const std::byte*>(data) + size_ - 8, 8);
    checksum_ += last;
  }
  uint64_t records() const { return records_; }
  uint64_t errors() const { return errors_; }
  uint64_t checksum() const { return checksum_; }

  // The checksum of `per_producer` records from each of `producers`.
  static uint64_t Expected(uint32_t producers, uint64_t per_producer, uint32_t size);

 private:
  uint32_t producers_;
  uint32_t size_;
  uint64_t next_seq_[kMaxProducers] = {};
  uint64_t records_ = 0;
  uint64_t errors_ = 0;
  uint64_t checksum_ = 0;
};

}  // namespace runnel::bench

#endif  // RUNNEL_BENCH_HARNESS_H_
