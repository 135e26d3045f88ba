#include "ipc/internal/multi_wait.h"

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>

namespace runnel::internal {

namespace {

constexpr int64_t kSliceNs = 100'000'000;
constexpr std::size_t kMaxReaders = 64;

bool AnyReady(std::span<const RingReader* const> readers) {
  for (const RingReader* r : readers) {
    if (ReaderReady(*r)) return true;
  }
  return false;
}

#ifdef SYS_futex_waitv
// Relaxed: set once when the kernel says ENOSYS; a stale read costs one
// more failing syscall.
std::atomic<bool> g_waitv_missing{false};

// futex_waitv on every ring's data_seq; false if unsupported.
bool SleepOnAll(std::span<const RingReader* const> readers, const uint32_t* observed,
                int64_t until_ns) {
  if (g_waitv_missing.load(std::memory_order_relaxed)) return false;
  futex_waitv waiters[kMaxReaders] = {};
  for (std::size_t i = 0; i < readers.size(); ++i) {
    waiters[i].val = observed[i];
    waiters[i].uaddr = reinterpret_cast<uintptr_t>(&readers[i]->ring().control()->data_seq);
    waiters[i].flags = FUTEX_32;  // shared (no FUTEX_PRIVATE_FLAG): other processes wake us
  }
  timespec ts;
  ts.tv_sec = until_ns / 1'000'000'000;
  ts.tv_nsec = until_ns % 1'000'000'000;
  const long rc = ::syscall(SYS_futex_waitv, waiters, static_cast<unsigned>(readers.size()), 0u,
                            &ts, CLOCK_MONOTONIC);
  if (rc < 0 && errno == ENOSYS) {
    g_waitv_missing.store(true, std::memory_order_relaxed);
    return false;
  }
  return true;  // woken, timed out, EAGAIN (a seq moved) or EINTR: re-check
}
#else
bool SleepOnAll(std::span<const RingReader* const>, const uint32_t*, int64_t) { return false; }
#endif

}  // namespace

bool ReaderReady(const RingReader& reader) {
  if (reader.HasData()) return true;
  // Lapped: the frame at our position belongs to a newer lap and never reads
  // as committed; the tail tells.
  return reader.ring().tail().position >= reader.position().position + reader.ring().capacity();
}

bool WaitAny(std::span<const RingReader* const> readers, WaitStrategy strategy,
             int64_t deadline_ns) {
  readers = readers.first(std::min(readers.size(), kMaxReaders));
  if (AnyReady(readers)) return true;
  // Spin about as long as RingReader::Wait does (2000 checks of one ring),
  // whatever the number of rings.
  const int spins = strategy == WaitStrategy::kBusySpin
                        ? INT32_MAX
                        : std::max<int>(64, 2000 / static_cast<int>(readers.size()));
  for (int i = 0; i < spins; ++i) {
    if (AnyReady(readers)) return true;
    CpuRelax();
    if ((i & 63) == 63 && MonotonicNanos() >= deadline_ns) return AnyReady(readers);
  }
  std::size_t fallback_next = 0;
  for (;;) {
    if (AnyReady(readers)) return true;
    const int64_t now = MonotonicNanos();
    if (now >= deadline_ns) return false;
    if (strategy != WaitStrategy::kBlocking) {
      sched_yield();
      continue;
    }
    // Register as a sleeper on every ring, then re-check (Dekker with the
    // producers' WakeAll: they bump data_seq after seeing waiters != 0).
    uint32_t observed[kMaxReaders];
    for (std::size_t i = 0; i < readers.size(); ++i) {
      internal::RingControl* c = readers[i]->ring().control();
      // seq_cst: our half of the Dekker handshake with the committing producer.
      std::atomic_ref<uint32_t>(c->data_waiters).fetch_add(1, std::memory_order_seq_cst);
      observed[i] = std::atomic_ref<uint32_t>(c->data_seq).load(std::memory_order_seq_cst);
    }
    // Single-producer rings' producers check waiters behind a compiler
    // barrier only: this is the other half (core/wait.h, HeavyFence). Where
    // it cannot run, sleep 1 ms at most, so a missed wake-up costs that.
    bool fenced = true;
    for (const RingReader* r : readers) {
      if (r->ring().mode() == RingMode::kSingleProducer) {
        fenced = HeavyFence();
        break;
      }
    }
    if (!AnyReady(readers)) {
      const int64_t until = std::min(deadline_ns, now + (fenced ? kSliceNs : 1'000'000));
      if (!SleepOnAll(readers, observed, until)) {
        // No futex_waitv: 1 ms on one ring at a time.
        const std::size_t i = fallback_next++ % readers.size();
        FutexWait(&readers[i]->ring().control()->data_seq, observed[i],
                  std::min<int64_t>(until - now, 1'000'000));
      }
    }
    for (std::size_t i = 0; i < readers.size(); ++i) {
      // seq_cst: pairs with the fetch_add above.
      std::atomic_ref<uint32_t>(readers[i]->ring().control()->data_waiters)
          .fetch_sub(1, std::memory_order_seq_cst);
    }
  }
}

}  // namespace runnel::internal
