// Registration of runnel's benchmarks (see bench/main.cc for the run and the
// summary of ratios printed after it).

#ifndef RUNNEL_BENCH_BENCHMARKS_H_
#define RUNNEL_BENCH_BENCHMARKS_H_

#include <cstdint>

namespace runnel::bench {

// Records per latency benchmark: 200k paced at 2 us = 0.4 s each.
inline constexpr int64_t kLatencySamples = 200'000;

// ring_throughput/*, ring_latency/*, diag/*  (bench/ring_bench.cc)
void RegisterRingBenchmarks();
// baseline/*  (bench/baselines.cc)
void RegisterBaselineBenchmarks();
// bus_throughput/*, bus_latency/*  (bench/bus_bench.cc; built when ipc/ is)
void RegisterBusBenchmarks();

}  // namespace runnel::bench

#endif  // RUNNEL_BENCH_BENCHMARKS_H_
