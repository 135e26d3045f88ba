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

int64_t RecordClockNanos();

namespace internal {
// For tests: whether RecordClockNanos reads the TSC on this machine.
bool RecordClockUsesTsc();
}  // namespace internal

}  // namespace runnel

#endif  // RUNNEL_CORE_CLOCK_H_
