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

// Sleeps while *word == expected, at most timeout_ns (< 0: no limit).
// Returns false on timeout. Spurious wake-ups are possible: re-check.
bool FutexWait(uint32_t* word, uint32_t expected, int64_t timeout_ns);
// Wakes every waiter on `word`.
void FutexWakeAll(uint32_t* word);

// One pause instruction: tells the CPU we are spinning.
inline void CpuRelax() { __builtin_ia32_pause(); }

}  // namespace runnel

#endif  // RUNNEL_CORE_WAIT_H_
