// The clock that stamps records: CLOCK_REALTIME in nanoseconds, read through
// the TSC when the CPU has an invariant one.
//
// clock_gettime(CLOCK_REALTIME) costs ~30 ns on this class of VM (LIMITS.md);
// a record's whole commit is about as much. RecordClockNanos() reads the TSC
// (~10 ns) and extrapolates from an anchor pair (TSC, CLOCK_REALTIME) that it
// takes again every kReanchorNs, so NTP slews and steps reach it within that
// period. The TSC rate is measured, not assumed: from the thread's first
// anchor, over an ever longer span, so it converges to well under 1 ppm.
// Until the first kCalibrationNs of a thread have passed, and on CPUs without
// an invariant TSC, every call is a plain clock_gettime.
//
// Each thread keeps its own anchor; within a thread the stamps never go
// back. Across threads and processes two stamps taken at the same instant
// agree within the anchors' error (a few microseconds at most), the same
// order of error as two hosts' NTP clocks, which is what record timestamps
// are in Kafka too. Use WallClockNanos() (core/record.h) where exactness
// matters more than 20 ns.

#ifndef RUNNEL_CORE_CLOCK_H_
#define RUNNEL_CORE_CLOCK_H_

#include <cstdint>

namespace runnel {

inline constexpr int64_t kCalibrationNs = 2'000'000;  // first rate estimate after 2 ms
inline constexpr int64_t kReanchorNs = 50'000'000;    // a fresh anchor every 50 ms

inline int64_t RecordClockNanos();

namespace internal {
// For tests: whether RecordClockNanos reads the TSC on this machine.
bool RecordClockUsesTsc();

struct ThreadClock {
  // First anchor of the thread: the rate is measured from here.
  uint64_t first_tsc = 0;
  int64_t first_ns = 0;
  // Current anchor and rate: ns = anchor_ns + ((tsc - anchor_tsc) * mult >> 32).
  uint64_t anchor_tsc = 0;
  int64_t anchor_ns = 0;
  uint64_t mult = 0;   // ns per tick, 32.32 fixed point; 0 until calibrated
  uint64_t limit = 0;  // ticks after the anchor before the next anchor
  int64_t last = 0;    // the last stamp handed out (never go back)
};
// constinit: no dynamic initialisation, so the inline path reaches it
// without a TLS wrapper call.
extern thread_local constinit ThreadClock t_clock;
extern const bool kClockUsesTsc;
// Everything but the TSC fast path: no invariant TSC, not calibrated yet, or
// time for a new anchor.
int64_t RecordClockSlow();
}  // namespace internal

// Inline: a record's commit calls it, and the call cost a third of the read.
inline int64_t RecordClockNanos() {
#if defined(__x86_64__)
  internal::ThreadClock& c = internal::t_clock;
  if (internal::kClockUsesTsc) {
    // Unsigned: a TSC behind the anchor (never on an invariant TSC) also
    // takes the slow path.
    const uint64_t delta = __builtin_ia32_rdtsc() - c.anchor_tsc;
    if (c.mult != 0 && delta < c.limit) {
      __extension__ typedef unsigned __int128 U128;
      int64_t ns = c.anchor_ns + static_cast<int64_t>((static_cast<U128>(delta) * c.mult) >> 32);
      if (ns < c.last) ns = c.last;
      c.last = ns;
      return ns;
    }
  }
#endif
  return internal::RecordClockSlow();
}

}  // namespace runnel

#endif  // RUNNEL_CORE_CLOCK_H_
