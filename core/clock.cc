#include "core/clock.h"

#include <cpuid.h>
#include <time.h>
#include <x86intrin.h>

namespace runnel {

namespace {

__extension__ typedef unsigned __int128 U128;

int64_t RealtimeNanos() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// CPUID 0x80000007, EDX bit 8: the TSC runs at a constant rate in every
// power state and is synchronised across cores ("nonstop_tsc").
bool HaveInvariantTsc() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_max(0x80000000, nullptr) < 0x80000007) return false;
  __get_cpuid(0x80000007, &a, &b, &c, &d);
  return (d & (1u << 8)) != 0;
}

using internal::ThreadClock;

// One (TSC, CLOCK_REALTIME) pair: the clock read between two TSC reads, the
// TSC taken as their midpoint. The narrowest of a few tries, so a thread
// preempted in the middle does not anchor on a pair that is milliseconds off.
void ReadAnchor(uint64_t* tsc, int64_t* ns) {
  uint64_t best_width = ~0ull;
  for (int i = 0; i < 4; ++i) {
    const uint64_t t1 = __rdtsc();
    const int64_t n = RealtimeNanos();
    const uint64_t t2 = __rdtsc();
    if (t2 - t1 < best_width) {
      best_width = t2 - t1;
      *tsc = t1 + (t2 - t1) / 2;
      *ns = n;
    }
    if (best_width < 1000) break;  // well under a microsecond at any TSC rate
  }
}

// Takes a new anchor (and, past the calibration span, a better rate).
int64_t Reanchor(ThreadClock& c) {
  uint64_t tsc = 0;
  int64_t ns = 0;
  ReadAnchor(&tsc, &ns);
  if (c.first_ns == 0) {
    c.first_tsc = tsc;
    c.first_ns = ns;
  } else if (ns - c.first_ns >= kCalibrationNs && tsc > c.first_tsc) {
    const uint64_t ticks = tsc - c.first_tsc;
    const auto span = static_cast<U128>(ns - c.first_ns);
    c.mult = static_cast<uint64_t>((span << 32) / ticks);
    if (c.mult != 0) c.limit = (static_cast<U128>(kReanchorNs) << 32) / c.mult;
  }
  c.anchor_tsc = tsc;
  c.anchor_ns = ns;
  return ns;
}

}  // namespace

namespace internal {

const bool kClockUsesTsc = HaveInvariantTsc();
thread_local constinit ThreadClock t_clock;

int64_t RecordClockSlow() {
  ThreadClock& c = t_clock;
  int64_t ns;
  if (!kClockUsesTsc) {
    ns = RealtimeNanos();
  } else {
    const uint64_t delta = __rdtsc() - c.anchor_tsc;
    if (c.mult == 0 || delta >= c.limit) {
      ns = Reanchor(c);
    } else {
      ns = c.anchor_ns + static_cast<int64_t>((static_cast<U128>(delta) * c.mult) >> 32);
    }
  }
  if (ns < c.last) ns = c.last;
  c.last = ns;
  return ns;
}

}  // namespace internal

namespace internal {
bool RecordClockUsesTsc() { return kClockUsesTsc; }
}  // namespace internal

}  // namespace runnel
