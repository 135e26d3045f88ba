// runnel_bench: the ring and its baselines in one run, then a summary of the
// figures and of the ratios against the project's targets.
//
//   runnel_bench [Google Benchmark flags]
//   e.g. --benchmark_repetitions=3 --benchmark_filter=ring_latency
//        --benchmark_out=results.json --benchmark_out_format=json
//
// scripts/bench builds and runs it the way the figures in
// docs/performance.md were taken.

#include <benchmark/benchmark.h>

#include <cstdio>
#include <iostream>

#include "bench/benchmarks.h"
#include "bench/harness.h"
#include "bench/summary.h"

int main(int argc, char** argv) {
  using namespace runnel::bench;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

  Tsc::Calibrate();  // before any worker is forked
  char ghz[32];
  std::snprintf(ghz, sizeof ghz, "%.4f", Tsc::ticks_per_ns());
  benchmark::AddCustomContext("tsc_ghz", ghz);
  benchmark::AddCustomContext("placement", "producers CPU 0, consumer CPU 1");
#if !defined(__OPTIMIZE__)
  benchmark::AddCustomContext("warning", "runnel_bench was built without optimization");
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  benchmark::AddCustomContext("warning", "runnel_bench was built with a sanitizer");
#endif

  RegisterRingBenchmarks();
  RegisterBaselineBenchmarks();
#if defined(RUNNEL_BENCH_HAVE_BUS)
  RegisterBusBenchmarks();
#endif

  // Owned by the library (a static), not by us.
  benchmark::BenchmarkReporter* display = benchmark::CreateDefaultDisplayReporter();
  Collector collector(display);
  benchmark::RunSpecifiedBenchmarks(&collector);
  PrintSummary(collector, std::cout);
  benchmark::Shutdown();
  return 0;
}
