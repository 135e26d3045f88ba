// Waiting for a shared word to change: busy-spin, spin-then-yield, or block
// on a futex. The futex calls use the shared (not private) futex, so waiters
// and wakers may live in different processes mapping the same memory.

#ifndef RUNNEL_CORE_WAIT_H_
#define RUNNEL_CORE_WAIT_H_

#include <atomic>
#include <cstdint>

namespace runnel {

enum class WaitStrategy : uint8_t {
  kBusySpin = 0,   // never leaves the CPU; lowest latency, burns a core
  kSpinYield = 1,  // spins for ~20 us, then sched_yield()s between checks
  kBlocking = 2,   // spins for ~20 us, then sleeps on a futex until woken
};

// Monotonic clock in nanoseconds (CLOCK_MONOTONIC, vDSO: no syscall).
int64_t MonotonicNanos();
// MonotonicNanos() + timeout_ns, saturating (a huge timeout such as
// std::chrono::nanoseconds::max() means "no deadline", not an overflow).
inline int64_t DeadlineAfter(int64_t timeout_ns) {
  const int64_t now = MonotonicNanos();
  if (timeout_ns <= 0) return now;
  return timeout_ns > INT64_MAX - now ? INT64_MAX : now + timeout_ns;
}

// Sleeps while *word == expected, at most timeout_ns (< 0: no limit).
// Returns false on timeout. Spurious wake-ups are possible: re-check.
bool FutexWait(uint32_t* word, uint32_t expected, int64_t timeout_ns);
// Wakes every waiter on `word`.
void FutexWakeAll(uint32_t* word);

// An asymmetric fence pair (Linux membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED)
// for a handshake whose one side runs per record and the other rarely: a
// single producer publishes a record with a plain store and then checks for
// sleeping readers without a full fence; a reader about to sleep calls
// HeavyFence(), which runs a full barrier on every CPU that is running a
// thread of a registered process. Either the reader then sees the record, or
// the producer sees the reader registered as a sleeper.
//
// RegisterLightFence() registers this process (once; later calls are a load)
// and says whether the light side may skip its fence. A process that could
// not register must use a full fence (std::atomic_thread_fence(seq_cst)).
bool RegisterLightFence();
// The heavy side. False if membarrier is unavailable here: then no process
// could register, every light side used a full fence, and none is needed.
bool HeavyFence();

// One pause instruction: tells the CPU we are spinning.
inline void CpuRelax() { __builtin_ia32_pause(); }

}  // namespace runnel

#endif  // RUNNEL_CORE_WAIT_H_
