// Collects every benchmark run while passing it on to the normal display,
// then prints the figures that matter (median and range over repetitions)
// and the ratios against the baselines of the same run, with PASS/MISS
// against the project's targets.

#ifndef RUNNEL_BENCH_SUMMARY_H_
#define RUNNEL_BENCH_SUMMARY_H_

#include <benchmark/benchmark.h>

#include <map>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace runnel::bench {

class Collector : public benchmark::BenchmarkReporter {
 public:
  // `display` prints the runs; when a benchmark is repeated it is only shown
  // the aggregates (mean, median, stddev, cv): every repetition is in the
  // JSON file (--benchmark_out).
  explicit Collector(benchmark::BenchmarkReporter* display) : display_(display) {}

  bool ReportContext(const Context& context) override;
  void ReportRuns(const std::vector<Run>& runs) override;
  void Finalize() override { display_->Finalize(); }

  struct Figure {
    bool ok = false;  // the benchmark ran without error
    double median = 0, min = 0, max = 0;
    int samples = 0;
  };
  // A counter of the benchmark registered as `name`, over its repetitions.
  Figure Get(std::string_view name, std::string_view counter) const;
  // The same over the repetitions whose `placement` counter is `placement`
  // (1 near, 2 far, 3 adjacent; kUnknownPlacement: repetitions without one).
  static constexpr int kAnyPlacement = -1;
  static constexpr int kUnknownPlacement = 0;
  Figure Get(std::string_view name, std::string_view counter, int placement) const;
  // True if any run of `name` reported an error.
  bool Failed(std::string_view name) const;
  // True if `name` ran (with or without error).
  bool Ran(std::string_view name) const { return runs_.find(name) != runs_.end() || Failed(name); }

 private:
  benchmark::BenchmarkReporter* display_;
  // Registered name -> one counter map per repetition.
  std::map<std::string, std::vector<std::map<std::string, double>>, std::less<>> runs_;
  std::map<std::string, std::string, std::less<>> errors_;
};

// Prints the figures and ratio tables.
void PrintSummary(const Collector& c, std::ostream& out);

}  // namespace runnel::bench

#endif  // RUNNEL_BENCH_SUMMARY_H_
