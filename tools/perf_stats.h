// Measurement pieces of `runnel perf` (tools/perf.cc): the clock the workers
// stamp records with, the latency histogram, the layout of a perf record's
// value, and the line protocol between the coordinator and its workers.
//
// Clock. Records are stamped with the CPU's time-stamp counter (rdtsc, ~11 ns
// a read; CLOCK_MONOTONIC via the vDSO costs ~26 ns). The TSC is invariant
// and agrees across CPUs on the machines runnel targets (LIMITS.md), so a
// stamp taken by a producer on one CPU can be subtracted from a reading taken
// by a consumer on another. Ticks become nanoseconds with a ratio the
// coordinator measures against CLOCK_MONOTONIC over the whole run. Elsewhere
// than x86-64 the "ticks" are CLOCK_MONOTONIC nanoseconds.
//
// Value layout of a perf record (little-endian; --size is the whole value, at
// least kPerfHeaderBytes):
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +---------------------------------------------------------------+
//  |  stamp (64): Ticks() taken just before the producer commits   |  0
//  |                                                               |  4
//  +---------------------------------------------------------------+
//  |  run id (32): random per `runnel perf` run                    |  8
//  +---------------------------------------------------------------+
//  |  producer index (32)                                          | 12
//  +---------------------------------------------------------------+
//  |  sequence (64): 0, 1, 2, ... per producer                     | 16
//  |                                                               | 20
//  +---------------------------------------------------------------+
//  |  filler to --size bytes                                       | 24
//
// The frame's own timestamp stays the wall clock (the log's time index
// depends on it); latency uses the stamp in the value.

#ifndef RUNNEL_TOOLS_PERF_STATS_H_
#define RUNNEL_TOOLS_PERF_STATS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include "core/wait.h"

namespace runnel::perf {

inline constexpr uint32_t kPerfHeaderBytes = 24;
namespace value {
inline constexpr uint32_t kStamp = 0;
inline constexpr uint32_t kRunId = 8;
inline constexpr uint32_t kProducer = 12;
inline constexpr uint32_t kSequence = 16;
}  // namespace value

// A monotonic tick count that agrees across CPUs (see above).
inline uint64_t Ticks() {
#if defined(__x86_64__)
  return __rdtsc();
#else
  return static_cast<uint64_t>(MonotonicNanos());
#endif
}

// Ticks() that is not executed before earlier loads complete (lfence): the
// consumer reads it after it saw a record's commit word, and rdtsc alone may
// run ahead of that load and read a time before the commit.
inline uint64_t TicksAfterLoads() {
#if defined(__x86_64__)
  _mm_lfence();
  return __rdtsc();
#else
  return static_cast<uint64_t>(MonotonicNanos());
#endif
}

// Pairs a tick reading with CLOCK_MONOTONIC; two of them give the tick rate.
struct ClockPoint {
  int64_t mono_ns = 0;
  uint64_t ticks = 0;
  static ClockPoint Now();
};
// Nanoseconds per tick between two points (1.0 if they are too close).
double NanosPerTick(const ClockPoint& a, const ClockPoint& b);

// A log-linear histogram of non-negative integers (ticks or nanoseconds):
// exact below 256, then 128 buckets per power of two, so a reported value is
// at most 1/128 (0.8 %) above the true one. 7424 counters; Record is a few
// instructions and never allocates.
class Histogram {
 public:
  static constexpr uint32_t kLinear = 256;
  static constexpr uint32_t kSubBuckets = 128;
  static constexpr uint32_t kBuckets = kLinear + (64 - 8) * kSubBuckets;

  Histogram();

  void Record(uint64_t v) {
    ++counts_[Index(v)];
    ++count_;
    if (v > max_) max_ = v;
  }
  void Merge(const Histogram& other);

  uint64_t count() const { return count_; }
  uint64_t max() const { return max_; }
  // The smallest recorded value v such that at least q * count() values are
  // <= v (nearest rank), reported as the upper edge of its bucket and never
  // above max(). 0 when empty. q in [0, 1].
  uint64_t Percentile(double q) const;

  // "index:count,index:count,...;max" (non-zero buckets only), and back.
  std::string Serialize() const;
  static std::optional<Histogram> Parse(std::string_view text);

  static uint32_t Index(uint64_t v) {
    if (v < kLinear) return static_cast<uint32_t>(v);
    const uint32_t msb = 63u - static_cast<uint32_t>(__builtin_clzll(v));  // >= 8
    const uint32_t shift = msb - 7;
    const uint32_t mantissa = static_cast<uint32_t>(v >> shift);  // [128, 256)
    return kLinear + (msb - 8) * kSubBuckets + (mantissa - kSubBuckets);
  }
  // The largest value that maps to bucket `index`.
  static uint64_t UpperEdge(uint32_t index);

 private:
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  uint64_t max_ = 0;
};

// The latency percentiles `runnel perf` reports, in nanoseconds.
struct Percentiles {
  uint64_t p50 = 0, p90 = 0, p99 = 0, p999 = 0, p9999 = 0, max = 0;
};
// Percentiles of a histogram of ticks, converted with `ns_per_tick`.
Percentiles ComputePercentiles(const Histogram& ticks, double ns_per_tick);

// The worker -> coordinator protocol: one line "<tag> key=value key=value..."
// (values without spaces).
struct ReportLine {
  std::string tag;
  std::map<std::string, std::string> fields;

  std::string Format() const;
  static std::optional<ReportLine> Parse(std::string_view line);
  // Field as an unsigned integer (0 if absent or malformed).
  uint64_t U64(const std::string& key) const;
  int64_t I64(const std::string& key) const;
  std::string Str(const std::string& key) const;
};

// "1,234,567".
std::string GroupThousands(uint64_t v);
// "950 ns", "12.3 us", "4.56 ms", "1.23 s".
std::string FormatNanos(uint64_t ns);

// Parses a CPU list "0,2-3" into CPU numbers (sorted, unique); nullopt if
// malformed.
std::optional<std::vector<int>> ParseCpuList(std::string_view text);
std::string FormatCpuList(const std::vector<int>& cpus);

}  // namespace runnel::perf

#endif  // RUNNEL_TOOLS_PERF_STATS_H_
