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
  return Get(name, counter, kAnyPlacement);
}

Collector::Figure Collector::Get(std::string_view name, std::string_view counter,
                                 int placement) const {
  Figure f;
  const auto it = runs_.find(name);
  if (it == runs_.end() || Failed(name)) return f;
  std::vector<double> values;
  for (const auto& counters : it->second) {
    if (placement != kAnyPlacement) {
      const auto p = counters.find("placement");
      const int got = p == counters.end() ? kUnknownPlacement : static_cast<int>(p->second);
      if (got != placement) continue;
    }
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

// "median [min-max]" (the range only when repeated and asked for).
std::string Cell(const Collector::Figure& f, double scale, const char* fmt, bool range = true) {
  if (!f.ok) return "-";
  std::string s = Format(fmt, f.median * scale);
  if (range && f.samples > 1) {
    s += " [" + Format(fmt, f.min * scale) + "-" + Format(fmt, f.max * scale) + "]";
  }
  return s;
}

void Row(std::ostream& out, const std::string& label, const std::vector<std::string>& cells,
         int width = 17) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "  %-40s", label.c_str());
  out << buf;
  for (const std::string& c : cells) {
    std::snprintf(buf, sizeof buf, " %-*s", width, c.c_str());
    out << buf;
  }
  out << "\n";
}

enum class Goal { kAtMost, kAtLeast, kAbove, kNone };

void RatioLine(std::ostream& out, const std::string& label, double r, Goal goal, double target,
               const std::string& note = "") {
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
  char buf[240];
  std::snprintf(buf, sizeof buf, "  %-60s %8.2f   %-8s %-6s %s\n", label.c_str(), r, want.c_str(),
                verdict, note.c_str());
  out << buf;
}

void NotAvailable(std::ostream& out, const std::string& label) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "  %-60s %8s\n", label.c_str(), "n/a");
  out << buf;
}

struct Line {
  const char* label;
  const char* name;
};

// One placement class of repetitions (or all of them).
class View {
 public:
  View(const Collector& c, int placement) : c_(c), placement_(placement) {}
  Collector::Figure Get(const char* name, const char* counter) const {
    return c_.Get(name, counter, placement_);
  }
  bool Has(const char* name) const {
    return Get(name, "records/s").ok || Get(name, "p50_ns").ok || Get(name, "rtt_p50_ns").ok;
  }
  bool Failed(const char* name) const { return c_.Failed(name); }

 private:
  const Collector& c_;
  int placement_;
};

bool AnyIn(const View& v, const std::vector<Line>& lines) {
  for (const Line& l : lines) {
    if (v.Has(l.name)) return true;
  }
  return false;
}

std::string Preempted(const View& v, const char* name) {
  const Collector::Figure f = v.Get(name, "preemptions");
  return f.ok ? Format("%.0f", f.median) : "";
}

void ThroughputTable(const View& v, std::ostream& out, const char* title,
                     const std::vector<Line>& lines) {
  if (!AnyIn(v, lines)) return;
  out << title << "\n";
  Row(out, "", {"M records/s", "MB/s (payload)", "floor ns", "reps", "preemptions"}, 19);
  for (const Line& l : lines) {
    if (!v.Has(l.name)) continue;
    const Collector::Figure r = v.Get(l.name, "records/s");
    Row(out, l.label,
        {Cell(r, 1e-6, "%.2f"), Cell(v.Get(l.name, "bytes/s"), 1e-6, "%.0f"),
         Cell(v.Get(l.name, "floor_ns"), 1, "%.0f"), Format("%.0f", r.samples),
         Preempted(v, l.name)},
        19);
  }
}

void LatencyTable(const View& v, std::ostream& out, const char* title,
                  const std::vector<Line>& lines) {
  if (!AnyIn(v, lines)) return;
  out << title << "\n";
  Row(out, "",
      {"p50", "p99", "p99.9", "max", "send p50", "floor", "reps", "preempt.", "p50 min-max"}, 9);
  for (const Line& l : lines) {
    if (!v.Has(l.name)) continue;
    const Collector::Figure p50 = v.Get(l.name, "p50_ns");
    Row(out, l.label,
        {Cell(p50, 1, "%.0f", false), Cell(v.Get(l.name, "p99_ns"), 1, "%.0f", false),
         Cell(v.Get(l.name, "p99.9_ns"), 1, "%.0f", false),
         Cell(v.Get(l.name, "max_ns"), 1, "%.0f", false),
         Cell(v.Get(l.name, "send_p50_ns"), 1, "%.0f", false),
         Cell(v.Get(l.name, "floor_ns"), 1, "%.0f", false), Format("%.0f", p50.samples),
         Preempted(v, l.name), Format("%.0f", p50.min) + "-" + Format("%.0f", p50.max)},
        9);
  }
}

// a / b from medians of one placement class.
void Ratio(const View& v, std::ostream& out, const std::string& label, const char* a_name,
           const char* a_counter, const char* b_name, const char* b_counter, Goal goal,
           double target) {
  const Collector::Figure a = v.Get(a_name, a_counter);
  const Collector::Figure b = v.Get(b_name, b_counter);
  if (!a.ok || !b.ok || b.median == 0) return NotAvailable(out, label);
  RatioLine(out, label, a.median / b.median, goal, target);
}

// A ratio measured inside each repetition: median [min-max].
void Ratio(const View& v, std::ostream& out, const std::string& label, const char* name,
           const char* counter, Goal goal, double target) {
  const Collector::Figure r = v.Get(name, counter);
  if (!r.ok) return NotAvailable(out, label);
  std::string range;
  if (r.samples > 1) range = "[" + Format("%.2f", r.min) + "-" + Format("%.2f", r.max) + "]";
  RatioLine(out, label, r.median, goal, target, range);
}

const std::vector<Line> kThroughput = {
    {"ring SPSC 8 B", "ring_throughput/spsc/8B"},
    {"ring SPSC 64 B", "ring_throughput/spsc/64B"},
    {"ring SPSC 1 KiB", "ring_throughput/spsc/1024B"},
    {"ring SPSC 8 B, batches of 32", "ring_throughput/spsc/8B/batch32"},
    {"ring SPSC 64 B, batches of 32", "ring_throughput/spsc/64B/batch32"},
    {"ring SPSC 8 B, record batches", "ring_throughput/spsc/8B/record_batch_4k"},
    {"ring SPSC 64 B, record batches", "ring_throughput/spsc/64B/record_batch_4k"},
    {"ring MPMC 1 producer 8 B, record batches", "ring_throughput/mpmc_1p/8B/record_batch_4k"},
    {"ring MPMC 2 producers 8 B, record batches", "ring_throughput/mpmc_2p/8B/record_batch_4k"},
    {"ring MPMC 2 producers 64 B, record batches", "ring_throughput/mpmc_2p/64B/record_batch_4k"},
    {"ring MPMC 1 producer 8 B", "ring_throughput/mpmc_1p/8B"},
    {"ring MPMC 1 producer 64 B", "ring_throughput/mpmc_1p/64B"},
    {"ring MPMC 1 producer 1 KiB", "ring_throughput/mpmc_1p/1024B"},
    {"ring MPMC 2 producers 8 B", "ring_throughput/mpmc_2p/8B"},
    {"ring MPMC 2 producers 64 B", "ring_throughput/mpmc_2p/64B"},
    {"ring MPMC 2 producers 1 KiB", "ring_throughput/mpmc_2p/1024B"},
    {"boost message_queue 8 B", "baseline/boost_mq_throughput/8B"},
    {"boost message_queue 64 B", "baseline/boost_mq_throughput/64B"},
    {"moodycamel ReaderWriterQueue 8 B", "baseline/moodycamel_rwq_throughput/8B"},
    {"moodycamel ReaderWriterQueue 64 B", "baseline/moodycamel_rwq_throughput/64B"},
    {"moodycamel ConcurrentQueue 64 B", "baseline/moodycamel_cq_throughput/64B"},
    {"moodycamel ConcurrentQueue 64 B, bulk 32", "baseline/moodycamel_cq_bulk32_throughput/64B"},
    {"bus 1 producer, 1 consumer, 64 B", "bus_throughput/1p_1c/64B"},
    {"bus 2 producers, 1 consumer, 64 B", "bus_throughput/2p_1c/64B"},
    {"diag: minimal slot ring 64 B", "diag/minimal_slot_ring_throughput/64B"},
    {"diag:   same, publish by locked CAS", "diag/minimal_slot_ring_throughput/64B/cas_publish"},
    {"diag: ring SPSC 64 B, consumer backoff",
     "diag/ring_throughput/spsc/64B/consumer_backoff_1us"},
};

const std::vector<Line> kLatency = {
    {"ring SPSC 8 B", "ring_latency/spsc/8B"},
    {"ring SPSC 64 B", "ring_latency/spsc/64B"},
    {"ring MPMC 1 producer 64 B", "ring_latency/mpmc_1p/64B"},
    {"boost message_queue 64 B", "baseline/boost_mq_latency/64B"},
    {"bus SPSC topic, 1 consumer", "bus_latency/spsc_topic_1c/64B"},
    {"bus MPMC topic, 1 consumer", "bus_latency/mpmc_topic_1c/64B"},
    {"diag: minimal slot ring 64 B", "diag/minimal_slot_ring_latency/64B"},
    {"diag: ring SPSC 64 B, spin on HasData", "diag/ring_latency/spsc/64B/spin_on_has_data"},
    {"diag: ring SPSC 64 B, timestamp given", "diag/ring_latency/spsc/64B/timestamp_given"},
};

void PlacementSection(const Collector& c, std::ostream& out, int placement, const char* title) {
  const View v(c, placement);
  const char* pp = "baseline/pingpong";
  if (!AnyIn(v, kThroughput) && !AnyIn(v, kLatency) && !v.Has(pp)) return;
  out << "\n--- " << title << " ---\n";
  ThroughputTable(v, out, "Throughput (records produced per second)", kThroughput);
  LatencyTable(v, out, "One-way latency (ns); floor = in-run ping-pong RTT p50 / 2", kLatency);
  if (v.Has(pp)) {
    Row(out, "cache-line ping-pong round trip (ns)",
        {"p50 " + Cell(v.Get(pp, "rtt_p50_ns"), 1, "%.0f"),
         "p99 " + Cell(v.Get(pp, "rtt_p99_ns"), 1, "%.0f"),
         "max " + Cell(v.Get(pp, "rtt_max_ns"), 1, "%.0f")},
        19);
  }

  out << "Ratios (medians of this placement) against the targets\n";
  char head[200];
  std::snprintf(head, sizeof head, "  %-60s %8s   %-8s %s\n", "", "ratio", "target", "result");
  out << head;
  Ratio(v, out, "SPSC 8 B one-way p50 / floor", "ring_latency/spsc/8B", "vs_floor", Goal::kAtMost,
        1.5);
  Ratio(v, out, "SPSC 64 B one-way p50 / floor", "ring_latency/spsc/64B", "vs_floor", Goal::kAtMost,
        1.5);
  Ratio(v, out, "  (minimal slot ring 64 B p50 / floor)", "diag/minimal_slot_ring_latency/64B",
        "vs_floor", Goal::kNone, 0);
  Ratio(v, out, "SPSC 8 B throughput / boost message_queue 8 B", "ring_throughput/spsc/8B",
        "records/s", "baseline/boost_mq_throughput/8B", "records/s", Goal::kAtLeast, 10);
  Ratio(v, out, "SPSC 8 B throughput / moodycamel ReaderWriterQueue 8 B", "ring_throughput/spsc/8B",
        "records/s", "baseline/moodycamel_rwq_throughput/8B", "records/s", Goal::kAbove, 1);
  Ratio(v, out, "SPSC 64 B throughput / moodycamel ReaderWriterQueue 64 B",
        "ring_throughput/spsc/64B", "records/s", "baseline/moodycamel_rwq_throughput/64B",
        "records/s", Goal::kAbove, 1);
  Ratio(v, out, "SPSC 64 B throughput / moodycamel ConcurrentQueue 64 B",
        "ring_throughput/spsc/64B", "records/s", "baseline/moodycamel_cq_throughput/64B",
        "records/s", Goal::kAbove, 1);
  Ratio(v, out, "MPMC 2 producers / SPSC throughput, 8 B", "ring_throughput/mpmc_2p/8B",
        "records/s", "ring_throughput/spsc/8B", "records/s", Goal::kAtLeast, 0.5);
  Ratio(v, out, "MPMC 2 producers / SPSC throughput, 64 B", "ring_throughput/mpmc_2p/64B",
        "records/s", "ring_throughput/spsc/64B", "records/s", Goal::kAtLeast, 0.5);
  Ratio(v, out, "MPMC 2 producers / SPSC throughput, 1 KiB", "ring_throughput/mpmc_2p/1024B",
        "records/s", "ring_throughput/spsc/1024B", "records/s", Goal::kAtLeast, 0.5);
  Ratio(v, out, "SPSC 64 B throughput / boost message_queue 64 B", "ring_throughput/spsc/64B",
        "records/s", "baseline/boost_mq_throughput/64B", "records/s", Goal::kNone, 0);
  // Batching is another API (commit_deferred + publish): informational, next
  // to the batched baseline; the targets above are one record at a time.
  Ratio(v, out, "SPSC 8 B batches of 32 / boost message_queue 8 B",
        "ring_throughput/spsc/8B/batch32", "records/s", "baseline/boost_mq_throughput/8B",
        "records/s", Goal::kNone, 0);
  Ratio(v, out, "SPSC 64 B batches of 32 / moodycamel CQ bulk 32, 64 B",
        "ring_throughput/spsc/64B/batch32", "records/s",
        "baseline/moodycamel_cq_bulk32_throughput/64B", "records/s", Goal::kNone, 0);
  // Record batches (core/batch.h): every record is still its own record
  // (offset, bytes, checked one by one by the consumer), but a batch of them
  // shares one frame header, timestamp and CRC.
  Ratio(v, out, "SPSC 8 B record batches / boost message_queue 8 B",
        "ring_throughput/spsc/8B/record_batch_4k", "records/s", "baseline/boost_mq_throughput/8B",
        "records/s", Goal::kAtLeast, 10);
  Ratio(v, out, "SPSC 8 B record batches / moodycamel ReaderWriterQueue 8 B",
        "ring_throughput/spsc/8B/record_batch_4k", "records/s",
        "baseline/moodycamel_rwq_throughput/8B", "records/s", Goal::kAbove, 1);
  Ratio(v, out, "SPSC 64 B record batches / moodycamel ReaderWriterQueue 64 B",
        "ring_throughput/spsc/64B/record_batch_4k", "records/s",
        "baseline/moodycamel_rwq_throughput/64B", "records/s", Goal::kAbove, 1);
  Ratio(v, out, "MPMC 2 producers / SPSC throughput, 8 B record batches",
        "ring_throughput/mpmc_2p/8B/record_batch_4k", "records/s",
        "ring_throughput/spsc/8B/record_batch_4k", "records/s", Goal::kAtLeast, 0.5);
  if (AnyIn(v, {{"", "bus_throughput/1p_1c/64B"}, {"", "bus_latency/spsc_topic_1c/64B"}})) {
    // Latency: each p50 over the floor measured next to it, then bus over ring.
    Ratio(v, out, "bus / ring one-way p50 (each over its floor), SPSC 64 B",
          "bus_latency/spsc_topic_1c/64B", "vs_floor", "ring_latency/spsc/64B", "vs_floor",
          Goal::kAtMost, 1.2);
    Ratio(v, out, "bus / ring one-way p50 (each over its floor), MPMC 64 B",
          "bus_latency/mpmc_topic_1c/64B", "vs_floor", "ring_latency/mpmc_1p/64B", "vs_floor",
          Goal::kAtMost, 1.2);
    Ratio(v, out, "bus 1p 1c / ring SPSC 64 B throughput", "bus_throughput/1p_1c/64B", "records/s",
          "ring_throughput/spsc/64B", "records/s", Goal::kAtLeast, 0.8);
    Ratio(v, out, "bus 2p 1c / ring MPMC 2 producers 64 B throughput", "bus_throughput/2p_1c/64B",
          "records/s", "ring_throughput/mpmc_2p/64B", "records/s", Goal::kAtLeast, 0.8);
  }
}

}  // namespace

void PrintSummary(const Collector& c, std::ostream& out) {
  out << "\n=== runnel benchmark summary ===\n"
      << "Latency clock: TSC at " << Format("%.3f", Tsc::ticks_per_ns())
      << " GHz (calibrated against CLOCK_MONOTONIC). Producers on CPU 0, consumers on CPU 1\n"
      << "(mpmc_2p: both producers on CPU 0). Figures: median [min-max] over the repetitions.\n"
      << "Every cross-CPU benchmark measures its floor (cache-line ping-pong between its own two\n"
      << "processes, RTT p50 / 2) next to its figure; the host moves the two vCPUs between\n"
      << "adjacent (floor < " << Format("%.0f", kAdjacentFloorNs) << " ns), near (< "
      << Format("%.0f", kNearFloorNs) << " ns) and far placement, even between repetitions,\n"
      << "and every cross-core figure moves 2-4x with it: repetitions are grouped by placement,\n"
      << "ratios taken within a group.\n"
      << "preemptions: involuntary context switches of the benchmark's threads (median per\n"
      << "repetition); more than a few dozen means another task took their CPU (mpmc_2p and\n"
      << "3-consumer rows share a CPU by design).\n";

  PlacementSection(c, out, 3, "adjacent placement (one-way floor < 48 ns)");
  PlacementSection(c, out, 1, "near placement (one-way floor 48-120 ns)");
  PlacementSection(c, out, 2, "far placement (one-way floor >= 120 ns)");

  const View other(c, Collector::kUnknownPlacement);
  const std::vector<Line> other_tp = {
      {"bus 1 producer, 3 consumers, 64 B", "bus_throughput/1p_3c/64B"},
      {"bus 2 producers, 3 consumers, 64 B", "bus_throughput/2p_3c/64B"},
      {"diag: ring producer alone, 8 B", "diag/ring_producer_cost/8B/clock_stamp"},
      {"diag: ring producer alone, 64 B", "diag/ring_producer_cost/64B/clock_stamp"},
      {"diag:   same, timestamp given", "diag/ring_producer_cost/8B/explicit_timestamp"},
      {"diag: ring producer alone, 8 B, record batches",
       "diag/ring_producer_cost/8B/record_batch_4k"},
      {"diag: ring read() alone, 64 B", "diag/ring_consumer_cost/64B"},
  };
  const std::vector<Line> other_lat = {
      {"bus SPSC topic, 3 consumers", "bus_latency/spsc_topic_3c/64B"},
  };
  if (AnyIn(other, other_tp) || AnyIn(other, other_lat)) {
    out << "\n--- no floor: single process, or three consumers sharing CPU 1 ---\n";
    ThroughputTable(other, out, "Throughput", other_tp);
    LatencyTable(other, out, "One-way latency (ns)", other_lat);
  }

  std::vector<std::string> failed;
  for (const auto* lines : {&kThroughput, &kLatency, &other_tp, &other_lat}) {
    for (const Line& l : *lines) {
      if (c.Failed(l.name)) failed.push_back(l.name);
    }
  }
  if (c.Failed("baseline/pingpong")) failed.push_back("baseline/pingpong");
  for (const std::string& name : failed) out << "\nERROR: " << name << " failed (see above)";
  if (!failed.empty()) out << "\n";
}

}  // namespace runnel::bench
