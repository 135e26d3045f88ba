#include "core/clock.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "core/record.h"

namespace runnel {
namespace {

// Every stamp lies between two exact CLOCK_REALTIME reads taken around it,
// give or take the anchor error (tens of ns) and what NTP may slew in one
// anchor period; 100 us is far above both and far below a wrong TSC rate,
// which is off by milliseconds after one anchor period.
constexpr int64_t kToleranceNs = 100'000;

void CheckAgainstRealtime(int64_t run_ns) {
  const int64_t end = WallClockNanos() + run_ns;
  int64_t last = 0;
  uint64_t calls = 0;
  for (;;) {
    const int64_t before = WallClockNanos();
    const int64_t stamp = RecordClockNanos();
    const int64_t after = WallClockNanos();
    ASSERT_GE(stamp, before - kToleranceNs) << "after " << calls << " calls";
    ASSERT_LE(stamp, after + kToleranceNs) << "after " << calls << " calls";
    ASSERT_GE(stamp, last) << "went back after " << calls << " calls";
    last = stamp;
    ++calls;
    if (after >= end) break;
  }
}

TEST(RecordClock, TracksTheRealtimeClockAcrossAnchorsAndNeverGoesBack) {
  // Several anchor periods: calibration, then extrapolation and re-anchoring.
  CheckAgainstRealtime(4 * kReanchorNs);
}

TEST(RecordClock, EveryThreadCalibratesOnItsOwn) {
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) threads.emplace_back([] { CheckAgainstRealtime(2 * kReanchorNs); });
  for (std::thread& t : threads) t.join();
}

}  // namespace
}  // namespace runnel
