#include "bench/summary.h"

#include <algorithm>
#include <cstdio>

#include "bench/harness.h"

namespace runnel::bench {

bool Collector::ReportContext(const Context& context) { return display_->ReportContext(context); }

void Collector::ReportRuns(const std::vector<Run>& runs) {
  std::vector<Run> shown;
  for (const Run& run : runs) {
    const std::string& name = run.run_name.function_name;
    if (run.run_type == Run::RT_Iteration) {
      if (run.error_occurred) {
        errors_[name] = run.error_message;
      } else {
        std::map<std::string, double> counters;
        for (const auto& [key, counter] : run.counters) counters[key] = counter.value;
        runs_[name].push_back(std::move(counters));
      }
    }
    if (run.run_type == Run::RT_Aggregate || run.repetitions <= 1 || run.error_occurred) {
      shown.push_back(run);
    }
  }
  if (!shown.empty()) display_->ReportRuns(shown);
}

Collector::Figure Collector::Get(std::string_view name, std::string_view counter) const {
  Figure f;
  const auto it = runs_.find(name);
  if (it == runs_.end() || Failed(name)) return f;
  std::vector<double> values;
  for (const auto& counters : it->second) {
    const auto c = counters.find(std::string(counter));
    if (c != counters.end()) values.push_back(c->second);
  }
  if (values.empty()) return f;
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  f.ok = true;
  f.samples = static_cast<int>(n);
  f.median = n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  f.min = values.front();
  f.max = values.back();
  return f;
}

bool Collector::Failed(std::string_view name) const { return errors_.find(name) != errors_.end(); }

namespace {

std::string Format(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

std::string Cell(const Collector::Figure& f, double scale, const char* fmt) {
  if (!f.ok) return "n/a";
  std::string s = Format(fmt, f.median * scale);
  if (f.samples > 1)
    s += " [" + Format(fmt, f.min * scale) + "-" + Format(fmt, f.max * scale) + "]";
  return s;
}

void Row(std::ostream& out, const std::string& label, const std::vector<std::string>& cells) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "  %-40s", label.c_str());
  out << buf;
  for (const std::string& c : cells) {
    std::snprintf(buf, sizeof buf, " %-19s", c.c_str());
    out << buf;
  }
  out << "\n";
}

enum class Goal { kAtMost, kAtLeast, kAbove, kNone };

void RatioLine(std::ostream& out, const std::string& label, double r, Goal goal, double target,
               const std::string& range = "") {
  std::string want;
  bool pass = true;
  switch (goal) {
    case Goal::kAtMost:
      want = "<= " + Format("%.2g", target);
      pass = r <= target;
      break;
    case Goal::kAtLeast:
      want = ">= " + Format("%.2g", target);
      pass = r >= target;
      break;
    case Goal::kAbove:
      want = "> " + Format("%.2g", target);
      pass = r > target;
      break;
    case Goal::kNone:
      break;
  }
  const char* verdict = goal == Goal::kNone ? "(info)" : pass ? "PASS" : "MISS";
  char buf[200];
  std::snprintf(buf, sizeof buf, "  %-58s %8.2f   %-8s %-6s%s\n", label.c_str(), r, want.c_str(),
                verdict, range.c_str());
  out << buf;
}

void NotAvailable(std::ostream& out, const std::string& label) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "  %-58s %8s   %-8s %s\n", label.c_str(), "n/a", "", "n/a");
  out << buf;
}

// a / b, from the medians of two benchmarks of this run.
void Ratio(std::ostream& out, const std::string& label, const Collector::Figure& a,
           const Collector::Figure& b, Goal goal, double target) {
  if (!a.ok || !b.ok || b.median == 0) return NotAvailable(out, label);
  RatioLine(out, label, a.median / b.median, goal, target);
}

// A ratio measured inside each repetition: its median and [min-max].
void Ratio(std::ostream& out, const std::string& label, const Collector::Figure& r, Goal goal,
           double target) {
  if (!r.ok) return NotAvailable(out, label);
  std::string range;
  if (r.samples > 1) range = " [" + Format("%.2f", r.min) + "-" + Format("%.2f", r.max) + "]";
  RatioLine(out, label, r.median, goal, target, range);
}

}  // namespace

namespace {

struct Line {
  const char* label;
  const char* name;
};

// "n/a", or the median number of involuntary context switches per repetition.
std::string Preempted(const Collector& c, const char* name) {
  const Collector::Figure f = c.Get(name, "preemptions");
  return f.ok ? Format("%.0f", f.median) : "";
}

bool AnyRan(const Collector& c, const std::vector<Line>& lines) {
  for (const Line& l : lines) {
    if (c.Ran(l.name)) return true;
  }
  return false;
}

void ThroughputTable(const Collector& c, std::ostream& out, const char* title,
                     const std::vector<Line>& lines) {
  if (!AnyRan(c, lines)) return;
  if (*title != '\0') out << title << "\n";
  Row(out, "", {"M records/s", "MB/s (payload)", "preemptions"});
  for (const Line& l : lines) {
    if (!c.Ran(l.name)) continue;
    if (c.Failed(l.name)) {
      Row(out, l.label, {"ERROR (see above)"});
      continue;
    }
    Row(out, l.label,
        {Cell(c.Get(l.name, "records/s"), 1e-6, "%.2f"),
         Cell(c.Get(l.name, "bytes/s"), 1e-6, "%.0f"), Preempted(c, l.name)});
  }
}

void LatencyTable(const Collector& c, std::ostream& out, const char* title,
                  const std::vector<Line>& lines) {
  if (!AnyRan(c, lines)) return;
  if (*title != '\0') out << title << "\n";
  Row(out, "", {"p50", "p99", "p99.9", "max", "send p50", "floor", "preemptions"});
  for (const Line& l : lines) {
    if (!c.Ran(l.name)) continue;
    if (c.Failed(l.name)) {
      Row(out, l.label, {"ERROR (see above)"});
      continue;
    }
    Row(out, l.label,
        {Cell(c.Get(l.name, "p50_ns"), 1, "%.0f"), Cell(c.Get(l.name, "p99_ns"), 1, "%.0f"),
         Cell(c.Get(l.name, "p99.9_ns"), 1, "%.0f"), Cell(c.Get(l.name, "max_ns"), 1, "%.0f"),
         Cell(c.Get(l.name, "send_p50_ns"), 1, "%.0f"), Cell(c.Get(l.name, "floor_ns"), 1, "%.0f"),
         Preempted(c, l.name)});
  }
}

}  // namespace

void PrintSummary(const Collector& c, std::ostream& out) {
  out << "\n=== runnel benchmark summary ===\n"
      << "Medians over repetitions, [min-max] when repeated. Latency clock: TSC at "
      << Format("%.3f", Tsc::ticks_per_ns()) << " GHz (calibrated against CLOCK_MONOTONIC).\n"
      << "Producers on CPU 0, consumers on CPU 1; mpmc_2p: both producers on CPU 0.\n"
      << "preemptions: involuntary context switches of the benchmark's threads (median per\n"
      << "repetition); more than a handful means another task took their CPU: a disturbed "
         "figure.\n\n";

  ThroughputTable(
      c, out, "Throughput (M records/s: records produced per second)",
      {
          {"ring SPSC 8 B", "ring_throughput/spsc/8B"},
          {"ring SPSC 64 B", "ring_throughput/spsc/64B"},
          {"ring SPSC 1 KiB", "ring_throughput/spsc/1024B"},
          {"ring MPMC 1 producer 8 B", "ring_throughput/mpmc_1p/8B"},
          {"ring MPMC 1 producer 64 B", "ring_throughput/mpmc_1p/64B"},
          {"ring MPMC 1 producer 1 KiB", "ring_throughput/mpmc_1p/1024B"},
          {"ring MPMC 2 producers 8 B", "ring_throughput/mpmc_2p/8B"},
          {"ring MPMC 2 producers 64 B", "ring_throughput/mpmc_2p/64B"},
          {"ring MPMC 2 producers 1 KiB", "ring_throughput/mpmc_2p/1024B"},
          {"boost message_queue 8 B", "baseline/boost_mq_throughput/8B"},
          {"boost message_queue 64 B", "baseline/boost_mq_throughput/64B"},
          {"moodycamel ReaderWriterQueue 64 B", "baseline/moodycamel_rwq_throughput/64B"},
          {"moodycamel ConcurrentQueue 64 B", "baseline/moodycamel_cq_throughput/64B"},
      });
  out << "\n";
  LatencyTable(c, out, "One-way latency (ns)",
               {
                   {"ring SPSC 8 B", "ring_latency/spsc/8B"},
                   {"ring SPSC 64 B", "ring_latency/spsc/64B"},
                   {"ring MPMC 1 producer 64 B", "ring_latency/mpmc_1p/64B"},
                   {"boost message_queue 64 B", "baseline/boost_mq_latency/64B"},
               });
  const char* pp = "baseline/pingpong";
  if (c.Ran(pp)) {
    Row(out, "cache-line ping-pong round trip",
        {Cell(c.Get(pp, "rtt_p50_ns"), 1, "%.0f"), Cell(c.Get(pp, "rtt_p99_ns"), 1, "%.0f"), "",
         Cell(c.Get(pp, "rtt_max_ns"), 1, "%.0f"), "", "", Preempted(c, pp)});
    Row(out, "  -> one-way floor (RTT p50 / 2)", {Cell(c.Get(pp, "one_way_ns"), 1, "%.0f")});
  }

  const std::vector<Line> diag_tp = {
      {"minimal slot ring 64 B (reference)", "diag/minimal_slot_ring_throughput/64B"},
      {"  same, publish by locked CAS", "diag/minimal_slot_ring_throughput/64B/cas_publish"},
      {"ring SPSC 64 B, consumer backs off 1us",
       "diag/ring_throughput/spsc/64B/consumer_backoff_1us"},
      {"ring producer alone, 8 B, wall clock", "diag/ring_producer_cost/8B/wall_clock_stamp"},
      {"ring producer alone, 8 B, given stamp", "diag/ring_producer_cost/8B/explicit_timestamp"},
      {"ring read() alone, 64 B", "diag/ring_consumer_cost/64B"},
  };
  const std::vector<Line> diag_lat = {
      {"minimal slot ring 64 B (reference)", "diag/minimal_slot_ring_latency/64B"},
      {"ring SPSC 64 B, consumer spins HasData", "diag/ring_latency/spsc/64B/spin_on_has_data"},
  };
  if (AnyRan(c, diag_tp) || AnyRan(c, diag_lat)) {
    out << "\nDiagnostics (see docs/performance.md)\n";
    ThroughputTable(c, out, "", diag_tp);
    LatencyTable(c, out, "", diag_lat);
  }

  out << "\nRatios (of medians) against the targets\n";
  char head[160];
  std::snprintf(head, sizeof head, "  %-58s %8s   %-8s %s\n", "", "ratio", "target", "result");
  out << head;
  Ratio(out, "SPSC 8 B one-way p50 / floor (in-run ping-pong RTT p50 / 2)",
        c.Get("ring_latency/spsc/8B", "vs_floor"), Goal::kAtMost, 1.5);
  Ratio(out, "SPSC 64 B one-way p50 / floor (in-run ping-pong RTT p50 / 2)",
        c.Get("ring_latency/spsc/64B", "vs_floor"), Goal::kAtMost, 1.5);
  Ratio(out, "  minimal slot ring 64 B (reference) / floor",
        c.Get("diag/minimal_slot_ring_latency/64B", "vs_floor"), Goal::kNone, 0);
  Ratio(out, "SPSC 8 B throughput / boost message_queue 8 B",
        c.Get("ring_throughput/spsc/8B", "records/s"),
        c.Get("baseline/boost_mq_throughput/8B", "records/s"), Goal::kAtLeast, 10);
  Ratio(out, "SPSC 64 B throughput / boost message_queue 64 B",
        c.Get("ring_throughput/spsc/64B", "records/s"),
        c.Get("baseline/boost_mq_throughput/64B", "records/s"), Goal::kNone, 0);
  Ratio(out, "SPSC 64 B throughput / moodycamel ReaderWriterQueue 64 B",
        c.Get("ring_throughput/spsc/64B", "records/s"),
        c.Get("baseline/moodycamel_rwq_throughput/64B", "records/s"), Goal::kAbove, 1);
  Ratio(out, "SPSC 64 B throughput / moodycamel ConcurrentQueue 64 B",
        c.Get("ring_throughput/spsc/64B", "records/s"),
        c.Get("baseline/moodycamel_cq_throughput/64B", "records/s"), Goal::kAbove, 1);
  for (const char* size : {"8B", "64B", "1024B"}) {
    Ratio(out, std::string("MPMC 2 producers / SPSC throughput, ") + size,
          c.Get(std::string("ring_throughput/mpmc_2p/") + size, "records/s"),
          c.Get(std::string("ring_throughput/spsc/") + size, "records/s"), Goal::kAtLeast, 0.5);
  }
  Ratio(out, "MPMC 1 producer / SPSC throughput, 64B",
        c.Get("ring_throughput/mpmc_1p/64B", "records/s"),
        c.Get("ring_throughput/spsc/64B", "records/s"), Goal::kNone, 0);
  Ratio(out, "boost message_queue / ring SPSC one-way p50, 64 B",
        c.Get("baseline/boost_mq_latency/64B", "p50_ns"), c.Get("ring_latency/spsc/64B", "p50_ns"),
        Goal::kNone, 0);
  const std::vector<Line> bus_tp = {
      {"bus 1 producer, 1 consumer", "bus_throughput/1p_1c/64B"},
      {"bus 2 producers, 1 consumer", "bus_throughput/2p_1c/64B"},
      {"bus 1 producer, 3 consumers", "bus_throughput/1p_3c/64B"},
      {"bus 2 producers, 3 consumers", "bus_throughput/2p_3c/64B"},
  };
  const std::vector<Line> bus_lat = {
      {"bus SPSC topic, 1 consumer", "bus_latency/spsc_topic_1c/64B"},
      {"bus MPMC topic, 1 consumer", "bus_latency/mpmc_topic_1c/64B"},
      {"bus SPSC topic, 3 consumers", "bus_latency/spsc_topic_3c/64B"},
  };
  if (AnyRan(c, bus_tp) || AnyRan(c, bus_lat)) {
    out << "\n";
    ThroughputTable(c, out,
                    "Bus API (ipc/), 64 B records (records produced per second; each reaches "
                    "every consumer)",
                    bus_tp);
    LatencyTable(c, out, "Bus API one-way latency (ns)", bus_lat);
    out << "Bus API against the raw ring of this run\n";
    out << head;
    // Each p50 over the floor measured next to it, then bus over ring: the
    // cross-core cost may change between the two benchmarks.
    Ratio(out, "bus / ring SPSC 64 B one-way p50 (each over its floor)",
          c.Get("bus_latency/spsc_topic_1c/64B", "vs_floor"),
          c.Get("ring_latency/spsc/64B", "vs_floor"), Goal::kAtMost, 1.2);
    Ratio(out, "bus MPMC topic / ring MPMC 64 B one-way p50 (each over floor)",
          c.Get("bus_latency/mpmc_topic_1c/64B", "vs_floor"),
          c.Get("ring_latency/mpmc_1p/64B", "vs_floor"), Goal::kAtMost, 1.2);
    Ratio(out, "bus throughput 1p 1c / ring SPSC 64 B",
          c.Get("bus_throughput/1p_1c/64B", "records/s"),
          c.Get("ring_throughput/spsc/64B", "records/s"), Goal::kAtLeast, 0.8);
    Ratio(out, "bus throughput 2p 1c / ring MPMC 2 producers 64 B",
          c.Get("bus_throughput/2p_1c/64B", "records/s"),
          c.Get("ring_throughput/mpmc_2p/64B", "records/s"), Goal::kAtLeast, 0.8);
  }
  out << "\nA ratio against a baseline is only meaningful within one run: cross-core figures\n"
         "move 2-4x between runs on this VM (../shared/LIMITS.md, far/near vCPU placement).\n";
}

}  // namespace runnel::bench
