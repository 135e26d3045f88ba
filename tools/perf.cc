// `runnel perf produce|consume|roundtrip TOPIC`: the throughput-tuning tool.
//
// The coordinator (this file) opens the bus, creates the topic if it is
// missing, and starts every producer and the consumer as a separate process:
// it re-executes its own binary (/proc/self/exe) as the hidden subcommand
// `perf-worker` (tools/perf_worker.cc), pins the workers to CPUs, waits until
// all of them are attached, releases them at once, collects their reports and
// prints records/s, MB/s and latency percentiles (tools/perf_stats.h says how
// records are stamped and how the histogram works).

#include "tools/perf.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/wait.h"
#include "ipc/bus.h"
#include "tools/api_compat.h"
#include "tools/perf_stats.h"
#include "tools/perf_worker.h"

extern char** environ;

namespace runnel::cli {
namespace {

using perf::Histogram;
using perf::ReportLine;

enum class Mode { kProduce, kConsume, kRoundtrip };

const char* ModeName(Mode m) {
  switch (m) {
    case Mode::kProduce:
      return "produce";
    case Mode::kConsume:
      return "consume";
    case Mode::kRoundtrip:
      return "roundtrip";
  }
  return "?";
}

struct PerfOptions {
  Mode mode = Mode::kRoundtrip;
  std::string topic;
  uint64_t records = 1'000'000;
  uint32_t size = 100;
  uint32_t producers = 1;
  double rate = 0;
  double duration_s = 0;
  bool json = false;
  uint32_t partitions = 1;  // only when the topic is created
  uint64_t ring_size = 0;   // only when the topic is created (0: the bus default)
  CLI::Option* partitions_option = nullptr;
  std::string wait = "block";
  bool no_pin = false;
  std::string cpus;
  bool verify_crc = false;
  uint64_t timeout_ms = 2000;
};

// ---------------------------------------------------------------------------
// Worker processes.

// SIGINT/SIGTERM to the coordinator: the workers are told to stop (SIGTERM)
// and report what they did; the run is printed and the exit code is 130.
// Relaxed everywhere: a lone flag set in a signal handler; it publishes no data.
std::atomic<bool> g_interrupted{false};
std::vector<pid_t> g_worker_pids;  // every worker started, for forwarding

void OnInterrupt(int) { g_interrupted.store(true, std::memory_order_relaxed); }

struct Worker {
  std::string name;
  pid_t pid = -1;
  int to = -1;    // its stdin
  int from = -1;  // its stdout
  std::string buffer;
  bool eof = false;
  bool reaped = false;
  int status = 0;
};

void CloseFd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

Status Spawn(Worker& w, const std::vector<std::string>& args) {
  int in[2];
  int out[2];
  if (pipe2(in, O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe2");
  if (pipe2(out, O_CLOEXEC) != 0) {
    const int err = errno;
    ::close(in[0]);
    ::close(in[1]);
    return Status::FromErrno(err, "pipe2");
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const int rc = posix_spawn(&w.pid, "/proc/self/exe", &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(in[0]);
  ::close(out[1]);
  if (rc != 0) {
    ::close(in[1]);
    ::close(out[0]);
    w.pid = -1;
    return Status::FromErrno(rc, "posix_spawn /proc/self/exe (" + w.name + ")");
  }
  w.to = in[1];
  w.from = out[0];
  g_worker_pids.push_back(w.pid);
  return Status::Ok();
}

bool Send(Worker& w, std::string_view line) {
  while (!line.empty()) {
    const ssize_t n = ::write(w.to, line.data(), line.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;  // EPIPE: it is gone (SIGPIPE is ignored)
    }
    line.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Reads until every worker in `ws` has a complete line or its pipe closed,
// or until `deadline_ns` (monotonic). out[i]: the parsed line, or nullopt if
// the worker closed its pipe without one. False on timeout.
bool Collect(const std::vector<Worker*>& ws, int64_t deadline_ns,
             std::vector<std::optional<ReportLine>>& out) {
  out.assign(ws.size(), std::nullopt);
  std::vector<bool> settled(ws.size(), false);
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<std::size_t> which;
    for (std::size_t i = 0; i < ws.size(); ++i) {
      if (settled[i]) continue;
      const std::size_t nl = ws[i]->buffer.find('\n');
      if (nl != std::string::npos) {
        out[i] = ReportLine::Parse(std::string_view(ws[i]->buffer).substr(0, nl));
        ws[i]->buffer.erase(0, nl + 1);
        settled[i] = true;
        continue;
      }
      if (ws[i]->eof) {
        settled[i] = true;
        continue;
      }
      fds.push_back({ws[i]->from, POLLIN, 0});
      which.push_back(i);
    }
    if (fds.empty()) return true;
    if (g_interrupted.load(std::memory_order_relaxed)) {
      // Once is enough; the signal handler of a worker only sets a flag.
      static bool forwarded = false;
      if (!forwarded) {
        forwarded = true;
        for (pid_t pid : g_worker_pids) (void)::kill(pid, SIGTERM);
      }
    }
    const int64_t now = MonotonicNanos();
    if (now >= deadline_ns) return false;
    const int64_t wait_ms = std::min<int64_t>((deadline_ns - now) / 1'000'000 + 1, 1000);
    const int n = ::poll(fds.data(), fds.size(), static_cast<int>(wait_ms));
    if (n < 0 && errno != EINTR) return false;
    for (std::size_t j = 0; j < fds.size(); ++j) {
      if (fds[j].revents == 0) continue;
      Worker& w = *ws[which[j]];
      char buf[65536];
      const ssize_t r = ::read(w.from, buf, sizeof buf);
      if (r > 0) {
        w.buffer.append(buf, static_cast<std::size_t>(r));
      } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
        w.eof = true;
      }
    }
  }
}

void Reap(Worker& w, bool block) {
  if (w.pid <= 0 || w.reaped) return;
  int status = 0;
  const pid_t r = ::waitpid(w.pid, &status, block ? 0 : WNOHANG);
  if (r == w.pid) {
    w.reaped = true;
    w.status = status;
  } else if (r < 0 && errno == ECHILD) {
    w.reaped = true;
  }
}

// Ends every worker still running (SIGTERM, then SIGKILL after 2 s), reaps
// them and closes the pipes. Safe to call more than once.
class WorkerSet {
 public:
  ~WorkerSet() { StopAll(); }
  Worker& Add(std::string name) {
    workers_.push_back(std::make_unique<Worker>());
    workers_.back()->name = std::move(name);
    return *workers_.back();
  }
  void StopAll() {
    for (auto& w : workers_) {
      CloseFd(w->to);
      if (w->pid > 0 && !w->reaped) (void)::kill(w->pid, SIGTERM);
    }
    const int64_t deadline = MonotonicNanos() + 2'000'000'000;
    for (auto& w : workers_) {
      while (w->pid > 0 && !w->reaped && MonotonicNanos() < deadline) {
        Reap(*w, false);
        if (!w->reaped) ::usleep(1000);
      }
      if (w->pid > 0 && !w->reaped) {
        (void)::kill(w->pid, SIGKILL);
        Reap(*w, true);
      }
      CloseFd(w->from);
    }
  }

 private:
  std::vector<std::unique_ptr<Worker>> workers_;
};

// ---------------------------------------------------------------------------
// CPU placement.

std::vector<int> AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

struct Placement {
  std::string consumer;                // "" : not pinned
  std::vector<std::string> producers;  // per producer
};

// One CPU per process while there are enough; the consumer gets the last CPU
// of its own, the producers share the others when they outnumber them.
Placement Place(const std::vector<int>& cpus, uint32_t producers, bool with_consumer) {
  Placement p;
  p.producers.assign(producers, "");
  if (cpus.size() < 2) return p;
  std::vector<int> rest = cpus;
  if (with_consumer) {
    p.consumer = std::to_string(rest.back());
    rest.pop_back();
  }
  if (producers <= rest.size()) {
    for (uint32_t k = 0; k < producers; ++k) p.producers[k] = std::to_string(rest[k]);
  } else if (with_consumer) {
    for (uint32_t k = 0; k < producers; ++k) p.producers[k] = perf::FormatCpuList(rest);
  }
  return p;
}

// ---------------------------------------------------------------------------
// The run.

struct ProducerReport {
  bool ok = false;
  uint64_t records = 0;
  uint64_t start_ticks = 0;
  uint64_t end_ticks = 0;
  uint64_t stalls = 0;
  uint64_t stall_ticks = 0;
  uint64_t durable_ticks = 0;
  std::string durable_error;
  std::string error;
  Histogram hist;
};

struct ConsumerReport {
  bool ok = false;
  std::string error;
  uint64_t received = 0;
  uint64_t missing = 0;
  uint64_t duplicates = 0;
  uint64_t out_of_order = 0;
  uint64_t foreign = 0;
  uint64_t lost = 0;
  uint64_t torn = 0;
  uint64_t from_disk = 0;
  uint64_t skipped_offsets = 0;
  std::string first_skip;
  uint64_t negative = 0;
  uint64_t start_ticks = 0;
  uint64_t first_ticks = 0;
  uint64_t last_ticks = 0;
  Histogram hist;
};

std::string Unword(std::string s) {
  for (char& c : s) {
    if (c == '_') c = ' ';
  }
  return s;
}

void DebugLine(std::string_view who, const std::optional<ReportLine>& line);

ProducerReport ToProducerReport(const std::optional<ReportLine>& line) {
  DebugLine("producer", line);
  ProducerReport r;
  if (!line) {
    r.error = "exited without a report";
    return r;
  }
  r.ok = line->tag == "done";
  if (!r.ok) r.error = Unword(line->Str("error"));
  r.records = line->U64("records");
  r.start_ticks = line->U64("start_ticks");
  r.end_ticks = line->U64("end_ticks");
  r.stalls = line->U64("stalls");
  r.stall_ticks = line->U64("stall_ticks");
  r.durable_ticks = line->U64("durable_ticks");
  r.durable_error = Unword(line->Str("durable_error"));
  if (std::optional<Histogram> h = Histogram::Parse(line->Str("hist"))) r.hist = std::move(*h);
  return r;
}

// RUNNEL_PERF_DEBUG=1: the workers' report lines go to stderr.
void DebugLine(std::string_view who, const std::optional<ReportLine>& line) {
  static const bool debug = std::getenv("RUNNEL_PERF_DEBUG") != nullptr;
  if (!debug) return;
  std::optional<ReportLine> shown = line;
  if (shown) shown->fields.erase("hist");
  const std::string text = shown ? shown->Format() : std::string("(no report)\n");
  fmt::print(stderr, "runnel perf: {}: {}", who, text);
}

ConsumerReport ToConsumerReport(const std::optional<ReportLine>& line) {
  DebugLine("consumer", line);
  ConsumerReport r;
  if (!line) {
    r.error = "exited without a report";
    return r;
  }
  r.ok = line->tag == "done";
  if (!r.ok) r.error = Unword(line->Str("error"));
  r.received = line->U64("received");
  r.missing = line->U64("missing");
  r.duplicates = line->U64("duplicates");
  r.out_of_order = line->U64("out_of_order");
  r.foreign = line->U64("foreign");
  r.lost = line->U64("lost");
  r.torn = line->U64("torn");
  r.from_disk = line->U64("from_disk");
  r.skipped_offsets = line->U64("skipped_offsets");
  r.first_skip = Unword(line->Str("first_skip"));
  r.negative = line->U64("negative");
  r.start_ticks = line->U64("start_ticks");
  r.first_ticks = line->U64("first_ticks");
  r.last_ticks = line->U64("last_ticks");
  if (std::optional<Histogram> h = Histogram::Parse(line->Str("hist"))) r.hist = std::move(*h);
  return r;
}

struct Summary {
  Mode mode = Mode::kRoundtrip;
  uint64_t records = 0;
  uint64_t bytes = 0;
  double seconds = 0;
  bool has_latency = false;
  perf::Percentiles latency;
  uint64_t stalls = 0;
  double stall_seconds = 0;
  std::optional<double> durable_after_s;
  std::string durable_note;
  bool verified = false;
  std::vector<std::string> problems;
  // Context.
  uint32_t partitions = 0;
  bool broker = false;
  bool persisted = false;
  int32_t broker_pid = 0;
  std::optional<double> prefill_seconds;
  uint64_t negative = 0;
  uint64_t from_disk = 0;
  std::optional<double> cpu_busy_before;
};

// The fraction of CPU time (all CPUs, steal included) that was not idle
// during the next `ms` milliseconds, from /proc/stat. nullopt if unreadable.
std::optional<double> CpuBusyFraction(int ms) {
  auto sample = [](uint64_t& idle, uint64_t& total) -> bool {
    std::FILE* f = std::fopen("/proc/stat", "r");
    if (f == nullptr) return false;
    unsigned long long v[10] = {};
    const int n = std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
                              &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
    std::fclose(f);
    if (n < 8) return false;
    idle = v[3] + v[4];                                             // idle + iowait
    total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];  // ... + steal
    return true;
  };
  uint64_t idle0 = 0, total0 = 0, idle1 = 0, total1 = 0;
  if (!sample(idle0, total0)) return std::nullopt;
  ::usleep(static_cast<useconds_t>(ms) * 1000);
  if (!sample(idle1, total1) || total1 <= total0) return std::nullopt;
  const double idle = static_cast<double>(idle1 - idle0) / static_cast<double>(total1 - total0);
  return std::clamp(1.0 - idle, 0.0, 1.0);
}

uint32_t RandomRunId() {
  uint32_t id = 0;
  if (getrandom(&id, sizeof id, 0) != sizeof id || id == 0) {
    id = static_cast<uint32_t>(MonotonicNanos()) ^ static_cast<uint32_t>(getpid()) ^ 0x5a5a5a5au;
  }
  return id;
}

std::vector<std::string> WorkerArgs(const GlobalOptions& global, const PerfOptions& o,
                                    const char* role, const char* mode, uint32_t run_id) {
  return {"runnel",        "--bus",
          global.bus,      "--data-dir",
          global.data_dir, "perf-worker",
          "--role",        role,
          "--mode",        mode,
          "--topic",       o.topic,
          "--run-id",      std::to_string(run_id),
          "--producers",   std::to_string(o.producers),
          "--size",        std::to_string(o.size),
          "--parent-pid",  std::to_string(getpid())};
}

void PrintHuman(const PerfOptions& o, const Summary& s) {
  std::string rate = o.rate > 0 ? fmt::format("paced at {} records/s",
                                              perf::GroupThousands(static_cast<uint64_t>(o.rate)))
                                : std::string("no rate limit");
  fmt::print("runnel perf {}: topic {} ({} partition{}), {} producer{}, {}-byte values, {}\n",
             ModeName(s.mode), o.topic, s.partitions, s.partitions == 1 ? "" : "s", o.producers,
             o.producers == 1 ? "" : "s", o.size, rate);
  if (s.persisted) {
    fmt::print("  broker        pid {}, persisting the topic to disk\n", s.broker_pid);
  } else if (s.broker) {
    fmt::print("  broker        pid {}, but this topic is not persisted\n", s.broker_pid);
  } else {
    fmt::print(
        "  broker        none: records are not persisted and producers are never held back\n");
  }
  if (s.prefill_seconds) {
    fmt::print("  pre-fill      {} records written in {:.3f} s, then drained:\n",
               perf::GroupThousands(s.records), *s.prefill_seconds);
  }
  fmt::print("  records       {} ({:.1f} MB) in {:.3f} s\n", perf::GroupThousands(s.records),
             static_cast<double>(s.bytes) / 1e6, s.seconds);
  const double rps = s.seconds > 0 ? static_cast<double>(s.records) / s.seconds : 0;
  const double mbps = s.seconds > 0 ? static_cast<double>(s.bytes) / 1e6 / s.seconds : 0;
  fmt::print("  throughput    {} records/s, {:.1f} MB/s\n",
             perf::GroupThousands(static_cast<uint64_t>(rps)), mbps);
  if (s.mode != Mode::kProduce) {
    fmt::print(
        "  read from     {}\n",
        s.from_disk == 0
            ? std::string("the ring (shared memory) only")
            : fmt::format(
                  "disk (segment files): {}, the ring: {}", perf::GroupThousands(s.from_disk),
                  perf::GroupThousands(s.records > s.from_disk ? s.records - s.from_disk : 0)));
  }
  if (s.has_latency) {
    std::string what = s.mode == Mode::kProduce
                           ? "send: first claim attempt -> commit returned, per record"
                           : "one-way, producer commit -> consumer receive";
    if (s.mode == Mode::kRoundtrip && o.rate <= 0) {
      what += " (no --rate: includes the time records queue in the ring)";
    }
    fmt::print("  latency       {}\n", what);
    fmt::print("                {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n", "p50", "p90", "p99",
               "p99.9", "p99.99", "max");
    fmt::print("                {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
               perf::FormatNanos(s.latency.p50), perf::FormatNanos(s.latency.p90),
               perf::FormatNanos(s.latency.p99), perf::FormatNanos(s.latency.p999),
               perf::FormatNanos(s.latency.p9999), perf::FormatNanos(s.latency.max));
  }
  if (s.stalls == 0) {
    fmt::print("  back-pressure none\n");
  } else {
    fmt::print(
        "  back-pressure producers waited {} times, {:.3f} s in total, for the broker to "
        "write the ring to disk\n",
        perf::GroupThousands(s.stalls), s.stall_seconds);
  }
  if (s.durable_after_s) {
    fmt::print("  durable       every record durable {} after the last commit\n",
               perf::FormatNanos(static_cast<uint64_t>(*s.durable_after_s * 1e9)));
  } else if (!s.durable_note.empty()) {
    fmt::print("  durable       {}\n", s.durable_note);
  }
  if (s.verified) {
    if (s.mode == Mode::kProduce) {
      fmt::print("  verified      every record committed (offsets advanced by {})\n",
                 perf::GroupThousands(s.records));
    } else {
      fmt::print(
          "  verified      every record received exactly once, in order within each "
          "partition\n");
    }
  } else {
    fmt::print("  FAILED        {}\n", s.problems.empty() ? "see above" : s.problems.front());
    for (std::size_t i = 1; i < s.problems.size(); ++i)
      fmt::print("                {}\n", s.problems[i]);
  }
}

void PrintJson(const PerfOptions& o, const Summary& s) {
  const double rps = s.seconds > 0 ? static_cast<double>(s.records) / s.seconds : 0;
  const double mbps = s.seconds > 0 ? static_cast<double>(s.bytes) / 1e6 / s.seconds : 0;
  std::string out = "{";
  out += fmt::format("\"mode\": \"{}\", ", ModeName(s.mode));
  std::string topic;
  AppendJsonString(topic, o.topic);
  out += fmt::format("\"topic\": {}, \"partitions\": {}, \"producers\": {}, \"size\": {}, ", topic,
                     s.partitions, o.producers, o.size);
  out += o.rate > 0 ? fmt::format("\"rate\": {:.0f}, ", o.rate) : std::string("\"rate\": null, ");
  out += fmt::format("\"records\": {}, \"bytes\": {}, \"seconds\": {:.6f}, ", s.records, s.bytes,
                     s.seconds);
  out += fmt::format("\"records_per_sec\": {:.1f}, \"mb_per_sec\": {:.3f}, ", rps, mbps);
  if (s.has_latency) {
    out += fmt::format(
        "\"latency_ns\": {{\"p50\": {}, \"p90\": {}, \"p99\": {}, \"p999\": {}, \"p9999\": {}, "
        "\"max\": {}}}, ",
        s.latency.p50, s.latency.p90, s.latency.p99, s.latency.p999, s.latency.p9999,
        s.latency.max);
    out += fmt::format("\"latency\": \"{}\", ",
                       s.mode == Mode::kProduce ? "send" : "commit_to_receive");
  } else {
    out +=
        "\"latency_ns\": {\"p50\": null, \"p90\": null, \"p99\": null, \"p999\": null, "
        "\"p9999\": null, \"max\": null}, \"latency\": null, ";
  }
  out += fmt::format("\"backpressure\": {{\"stalls\": {}, \"seconds\": {:.6f}}}, ", s.stalls,
                     s.stall_seconds);
  out += s.durable_after_s ? fmt::format("\"durable_after_seconds\": {:.6f}, ", *s.durable_after_s)
                           : std::string("\"durable_after_seconds\": null, ");
  if (s.mode != Mode::kProduce) out += fmt::format("\"records_from_disk\": {}, ", s.from_disk);
  out += fmt::format("\"broker\": {}, \"persisted\": {}, \"verified\": {}, ",
                     s.broker ? "true" : "false", s.persisted ? "true" : "false",
                     s.verified ? "true" : "false");
  out += s.cpu_busy_before ? fmt::format("\"cpu_busy_before\": {:.3f}, ", *s.cpu_busy_before)
                           : std::string("\"cpu_busy_before\": null, ");
  out += "\"problems\": [";
  for (std::size_t i = 0; i < s.problems.size(); ++i) {
    if (i > 0) out += ", ";
    AppendJsonString(out, s.problems[i]);
  }
  out += "]}\n";
  fmt::print("{}", out);
}

int RunPerf(const GlobalOptions& global, const PerfOptions& o) {
  const std::string cmd = std::string("perf ") + ModeName(o.mode);
  if (Status s = ValidateTopicName(o.topic); !s.ok()) {
    PrintError(cmd, s.message());
    return kExitUsage;
  }
  if (o.records == 0) {
    PrintError(cmd, "--records must be at least 1");
    return kExitUsage;
  }
  std::vector<int> cpus = AllowedCpus();
  if (!o.cpus.empty()) {
    std::optional<std::vector<int>> list = perf::ParseCpuList(o.cpus);
    if (!list) {
      PrintError(cmd, "--cpus takes a CPU list such as 0,1 or 0-3 (CPUs below 1024), not '" +
                          o.cpus + "'; see: runnel " + std::string(cmd) + " --help");
      return kExitUsage;
    }
    for (int c : *list) {
      if (std::find(cpus.begin(), cpus.end(), c) == cpus.end()) {
        std::string allowed;
        for (int a : cpus) allowed += (allowed.empty() ? "" : ",") + std::to_string(a);
        PrintError(cmd, "--cpus: CPU " + std::to_string(c) +
                            " is not one this process may run on (allowed: " + allowed +
                            "); see: runnel " + std::string(cmd) + " --help");
        return kExitUsage;
      }
    }
    cpus = *list;
  }
  (void)signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = OnInterrupt;
  sigemptyset(&sa.sa_mask);
  (void)sigaction(SIGINT, &sa, nullptr);
  (void)sigaction(SIGTERM, &sa, nullptr);

  BusOptions bo;
  bo.create_if_missing = true;
  bo.data_dir = global.data_dir;
  Result<Bus> bus = Bus::Open(global.bus, bo);
  if (!bus.ok()) {
    PrintError(cmd, ExplainBusOpen(bus.status(), global.bus));
    return kExitRuntime;
  }
  Result<TopicInfo> topic = bus->DescribeTopic(o.topic);
  Summary sum;
  sum.mode = o.mode;
  if (Result<BusInfo> info = bus->Info(); info.ok()) {
    sum.broker = info->broker_alive;
    sum.broker_pid = info->broker_pid;
  }
  if (!topic.ok() && topic.status().code() == StatusCode::kNotFound) {
    TopicOptions to;
    to.partitions = o.partitions;
    if (o.ring_size != 0) to.ring_bytes = o.ring_size;
    // Durable only when a broker persists it: a durable topic's ring holds
    // every record until the persistence thread wrote it, so with no broker
    // the producers would stop once the ring is full.
    to.durable = sum.broker;
    if (Status s = bus->CreateTopic(o.topic, to); !s.ok()) {
      PrintError(cmd, "cannot create topic '" + o.topic + "': " + s.message());
      // A setting the bus refuses (--ring-size 3000) is a usage error.
      return s.code() == StatusCode::kInvalidArgument ? kExitUsage : kExitRuntime;
    }
    if (!o.json) {
      fmt::print(stderr, "runnel {}: created topic '{}' with {} partition{} ({})\n", cmd, o.topic,
                 o.partitions, o.partitions == 1 ? "" : "s",
                 sum.broker
                     ? fmt::format("durable: the broker, pid {}, persists it", sum.broker_pid)
                     : std::string("ring only: no broker is running"));
    }
    topic = bus->DescribeTopic(o.topic);
  } else if (topic.ok() && o.partitions_option != nullptr && o.partitions_option->count() > 0 &&
             topic->options.partitions != o.partitions) {
    PrintWarning(cmd, fmt::format("topic '{}' exists with {} partitions; --partitions {} only "
                                  "applies when perf creates the topic",
                                  o.topic, topic->options.partitions, o.partitions));
  }
  if (!topic.ok()) {
    PrintError(cmd, topic.status().ToString());
    return kExitRuntime;
  }
  if (o.size > topic->options.max_record_bytes) {
    PrintError(cmd, fmt::format("--size {} exceeds the max record size {} of topic '{}'; use a "
                                "topic with a larger --ring-size or --max-record-size",
                                o.size, topic->options.max_record_bytes, o.topic));
    return kExitUsage;
  }
  if (!sum.broker) {
    for (const PartitionInfo& p : topic->partitions) {
      if (!p.gating_position.has_value()) continue;
      // A persistence gating slot with nobody behind it (the broker is not
      // running, or died): the ring fills and the producers wait forever.
      PrintError(cmd,
                 fmt::format("topic '{}' is durable but no broker is running on bus '{}': "
                             "producers would stop once its ring is full, because nothing "
                             "writes it to disk. Start one ({} broker &), or measure a "
                             "ring-only topic ({} topic create NAME --no-durable)",
                             o.topic, global.bus, RunnelCommand(global), RunnelCommand(global)));
      return kExitRuntime;
    }
  }

  // A broker picks up a new topic on its next tick: wait for its persistence
  // thread to gate every partition, so every record of the run is persisted.
  auto gated = [](const TopicInfo& t) {
    for (const PartitionInfo& p : t.partitions) {
      if (!p.gating_position.has_value()) return false;
    }
    return !t.partitions.empty();
  };
  if (sum.broker && topic->options.durable && !gated(*topic)) {
    const int64_t give_up = MonotonicNanos() + 3'000'000'000;
    while (MonotonicNanos() < give_up) {
      ::usleep(10'000);
      Result<TopicInfo> again = bus->DescribeTopic(o.topic);
      if (!again.ok()) break;
      topic = std::move(again);
      if (gated(*topic)) break;
    }
    if (!gated(*topic)) {
      PrintWarning(cmd, fmt::format("the broker (pid {}) does not persist topic '{}' yet; "
                                    "records of this run may not reach the disk",
                                    sum.broker_pid, o.topic));
    }
  }
  sum.partitions = topic->options.partitions;
  for (const PartitionInfo& p : topic->partitions) {
    if (p.gating_position.has_value()) sum.persisted = true;
  }
  sum.persisted = sum.persisted && sum.broker;
  std::vector<uint64_t> offsets_before;
  for (const PartitionInfo& p : topic->partitions) offsets_before.push_back(p.next_offset);

  if (std::optional<double> busy = CpuBusyFraction(200); busy && *busy > 0.25) {
    // Other work (or the host: steal time) takes CPU time the workers need.
    if (!o.json) {
      PrintWarning(cmd, fmt::format("the CPUs were {:.0f}% busy with other work just before the "
                                    "run: the figures will be low and noisy",
                                    *busy * 100));
    }
    sum.cpu_busy_before = busy;
  } else if (busy) {
    sum.cpu_busy_before = busy;
  }
  const uint32_t run_id = RandomRunId();
  const Placement place = o.no_pin ? Place({}, o.producers, o.mode == Mode::kRoundtrip)
                                   : Place(cpus, o.producers, o.mode == Mode::kRoundtrip);
  const perf::ClockPoint clock_start = perf::ClockPoint::Now();
  WorkerSet set;

  auto spawn_producers = [&](const char* worker_mode, std::vector<Worker*>& out) -> bool {
    for (uint32_t k = 0; k < o.producers; ++k) {
      Worker& w = set.Add("producer " + std::to_string(k));
      std::vector<std::string> args = WorkerArgs(global, o, "producer", worker_mode, run_id);
      args.insert(args.end(), {"--index", std::to_string(k), "--records",
                               std::to_string(PerfShare(o.records, o.producers, k))});
      if (o.rate > 0) {
        args.insert(args.end(), {"--rate", fmt::format("{:.6f}", o.rate / o.producers)});
      }
      if (o.duration_s > 0)
        args.insert(args.end(), {"--duration", fmt::format("{}", o.duration_s)});
      if (!place.producers[k].empty()) args.insert(args.end(), {"--cpus", place.producers[k]});
      if (sum.persisted) args.push_back("--wait-durable");
      if (Status s = Spawn(w, args); !s.ok()) {
        PrintError(cmd, s.ToString());
        return false;
      }
      out.push_back(&w);
    }
    return true;
  };
  auto spawn_consumer = [&](const std::string& seek, uint64_t records) -> Worker* {
    Worker& w = set.Add("consumer");
    std::vector<std::string> args = WorkerArgs(global, o, "consumer", ModeName(o.mode), run_id);
    args.insert(args.end(), {"--records", std::to_string(records), "--wait", o.wait,
                             "--idle-timeout-ms", std::to_string(o.timeout_ms)});
    if (!seek.empty()) args.insert(args.end(), {"--seek", seek});
    if (!place.consumer.empty()) args.insert(args.end(), {"--cpus", place.consumer});
    if (o.verify_crc) args.push_back("--verify-crc");
    if (Status s = Spawn(w, args); !s.ok()) {
      PrintError(cmd, s.ToString());
      return nullptr;
    }
    return &w;
  };
  // Waits for "ready" from all of `ws`.
  auto await_ready = [&](const std::vector<Worker*>& ws) -> bool {
    std::vector<std::optional<ReportLine>> lines;
    if (!Collect(ws, MonotonicNanos() + 30'000'000'000, lines)) {
      PrintError(cmd, "the worker processes did not attach to the bus within 30 s");
      return false;
    }
    for (std::size_t i = 0; i < ws.size(); ++i) {
      if (!lines[i] || lines[i]->tag != "ready") {
        PrintError(cmd, ws[i]->name + " could not start (see the error above)");
        return false;
      }
    }
    return true;
  };
  auto run_producers = [&](const std::vector<Worker*>& ps, std::vector<ProducerReport>& reports) {
    std::vector<std::optional<ReportLine>> lines;
    (void)Collect(ps, INT64_MAX, lines);
    for (std::size_t i = 0; i < ps.size(); ++i) {
      reports.push_back(ToProducerReport(lines[i]));
      Reap(*ps[i], true);
    }
  };

  std::vector<Worker*> producers;
  std::vector<ProducerReport> preports;
  Worker* consumer = nullptr;
  ConsumerReport creport;

  if (o.mode == Mode::kConsume) {
    // Pre-fill with producer processes, then drain with a consumer process.
    if (!spawn_producers("produce", producers) || !await_ready(producers)) return kExitRuntime;
    for (Worker* w : producers) (void)Send(*w, "go\n");
    run_producers(producers, preports);
  } else {
    if (o.mode == Mode::kRoundtrip) {
      consumer = spawn_consumer("", o.records);
      if (consumer == nullptr) return kExitRuntime;
    }
    if (!spawn_producers(ModeName(o.mode), producers)) return kExitRuntime;
    std::vector<Worker*> all = producers;
    if (consumer != nullptr) all.insert(all.begin(), consumer);
    if (!await_ready(all)) return kExitRuntime;
    for (Worker* w : all) (void)Send(*w, "go\n");
    run_producers(producers, preports);
  }

  // What the producers committed.
  uint64_t committed = 0;
  uint64_t min_start = UINT64_MAX;
  uint64_t max_end = 0;
  uint64_t max_durable = 0;
  bool all_durable = sum.persisted;
  std::string durable_error;
  std::string counts;
  for (std::size_t k = 0; k < preports.size(); ++k) {
    const ProducerReport& r = preports[k];
    committed += r.records;
    counts += (k == 0 ? "" : ",") + std::to_string(r.records);
    if (!r.ok) sum.problems.push_back(fmt::format("producer {}: {}", k, r.error));
    if (r.start_ticks != 0) min_start = std::min(min_start, r.start_ticks);
    max_end = std::max(max_end, r.end_ticks);
    sum.stalls += r.stalls;
    if (r.durable_ticks == 0) {
      all_durable = false;
      if (!r.durable_error.empty()) durable_error = r.durable_error;
    }
    max_durable = std::max(max_durable, r.durable_ticks);
  }
  if (min_start == UINT64_MAX) min_start = max_end;

  if (o.mode == Mode::kConsume && sum.problems.empty()) {
    std::string seek;
    for (uint32_t p = 0; p < offsets_before.size(); ++p) {
      seek += (p == 0 ? "" : ",") + fmt::format("{}:{}", p, offsets_before[p]);
    }
    consumer = spawn_consumer(seek, o.records);
    if (consumer == nullptr || !await_ready({consumer})) return kExitRuntime;
    (void)Send(*consumer, "go\n");
  }
  if (consumer != nullptr) {
    // The producers' final counts (they may have stopped early).
    (void)Send(*consumer, "end counts=" + counts + "\n");
    std::vector<std::optional<ReportLine>> lines;
    if (!Collect({consumer}, INT64_MAX, lines)) lines.assign(1, std::nullopt);
    creport = ToConsumerReport(lines[0]);
    Reap(*consumer, true);
  }
  const perf::ClockPoint clock_end = perf::ClockPoint::Now();
  set.StopAll();
  const double ns_per_tick = perf::NanosPerTick(clock_start, clock_end);
  auto seconds = [&](uint64_t from, uint64_t to) {
    return to > from ? static_cast<double>(to - from) * ns_per_tick / 1e9 : 0.0;
  };
  for (const ProducerReport& r : preports) sum.stall_seconds += seconds(0, r.stall_ticks);

  // Results per mode.
  if (o.mode == Mode::kProduce) {
    sum.records = committed;
    sum.seconds = seconds(min_start, max_end);
    Histogram h;
    for (const ProducerReport& r : preports) h.Merge(r.hist);
    sum.has_latency = h.count() > 0;
    sum.latency = perf::ComputePercentiles(h, ns_per_tick);
    // Committed means published: the partitions' offsets moved by at least
    // that much (more if someone else produced meanwhile).
    if (Result<TopicInfo> after = bus->DescribeTopic(o.topic); after.ok()) {
      uint64_t advanced = 0;
      for (std::size_t p = 0; p < after->partitions.size() && p < offsets_before.size(); ++p) {
        advanced += after->partitions[p].next_offset - offsets_before[p];
      }
      if (advanced < committed) {
        sum.problems.push_back(fmt::format(
            "producers reported {} commits but the partitions' offsets advanced by only {}",
            committed, advanced));
      }
    }
  } else {
    if (!creport.ok) sum.problems.push_back("consumer: " + creport.error);
    sum.records = creport.received;
    sum.negative = creport.negative;
    sum.from_disk = creport.from_disk;
    if (o.mode == Mode::kRoundtrip) {
      sum.seconds = seconds(min_start, creport.last_ticks);
      sum.has_latency = creport.hist.count() > 0;
      sum.latency = perf::ComputePercentiles(creport.hist, ns_per_tick);
    } else {
      sum.prefill_seconds = seconds(min_start, max_end);
      sum.seconds = seconds(creport.start_ticks, creport.last_ticks);
    }
    if (creport.received != committed) {
      sum.problems.push_back(fmt::format("the consumer received {} of the {} records committed",
                                         creport.received, committed));
    }
    // A torn record carries whatever offset the lap wrote over it, so jumps
    // after torn reads are theirs (reported below), not vanished records.
    if (creport.skipped_offsets > creport.lost && creport.torn == 0) {
      sum.problems.push_back(fmt::format(
          "the consumer skipped {} offsets that no overrun report explains (first: {}): records "
          "vanished between the ring and the consumer",
          creport.skipped_offsets - creport.lost, creport.first_skip));
    }
    if (creport.missing > 0 && creport.received == committed) {
      sum.problems.push_back(fmt::format("{} records missing", creport.missing));
    }
    if (creport.lost > 0) {
      sum.problems.push_back(
          fmt::format("the consumer was lapped and lost {} records{}", creport.lost,
                      sum.persisted ? " (older than the ring and not readable from disk)"
                                    : " (no broker holds the producers back: use --rate, a bigger "
                                      "--ring-size, or run `runnel broker`)"));
    }
    if (creport.torn > 0) {
      // Duplicates and disorder after a lap are torn reads, not delivery bugs.
      sum.problems.push_back(fmt::format(
          "{} records were read while a producer overwrote them (torn by the lap)", creport.torn));
    } else if (creport.duplicates > 0) {
      sum.problems.push_back(fmt::format("{} records were delivered twice", creport.duplicates));
    }
    if (creport.out_of_order > 0 && creport.torn == 0) {
      sum.problems.push_back(
          fmt::format("{} records arrived out of order within a partition", creport.out_of_order));
    }
  }
  if (creport.foreign > 0 && !o.json) {
    PrintWarning(cmd, fmt::format("{} records of other producers on topic '{}' were ignored",
                                  creport.foreign, o.topic));
  }
  if (sum.negative > 0) {
    PrintWarning(cmd, fmt::format("{} records were stamped later than they were received: the "
                                  "CPUs' time-stamp counters disagree, latency is unreliable",
                                  sum.negative));
  }
  if (sum.persisted) {
    if (all_durable && max_durable >= max_end) {
      sum.durable_after_s = seconds(max_end, max_durable);
    } else if (!durable_error.empty()) {
      sum.durable_note = "not measured: " + durable_error;
    }
  }
  if (sum.persisted) {
    if (Result<TopicInfo> after = bus->DescribeTopic(o.topic); after.ok()) {
      for (const PartitionInfo& p : after->partitions) {
        if (int32_t err = PersistError(p); err != 0) {
          sum.problems.push_back(fmt::format("partition {}: the broker cannot persist: {}",
                                             p.partition, std::strerror(err)));
        }
      }
    }
  }
  sum.bytes = sum.records * o.size;
  sum.verified = sum.problems.empty();
  const bool interrupted = g_interrupted.load(std::memory_order_relaxed);
  if (interrupted) PrintWarning(cmd, "interrupted: the figures cover the run up to the signal");
  if (o.json) {
    PrintJson(o, sum);
  } else {
    PrintHuman(o, sum);
  }
  if (!sum.verified && o.json) {
    for (const std::string& p : sum.problems) PrintError(cmd, p);
  }
  if (interrupted) return 130;
  return sum.verified ? kExitOk : kExitRuntime;
}

void AddModeOptions(CLI::App* sub, const std::shared_ptr<PerfOptions>& o) {
  sub->add_option("TOPIC", o->topic, "Topic to use (created if missing)")
      ->required()
      ->check(CheckTopicName);
  sub->add_option("--records", o->records, "Records in total, split over the producers")
      ->capture_default_str()
      ->transform(Decimal())
      ->check([](const std::string& v) -> std::string {
        std::optional<uint64_t> n = ParseUint(v);
        return n && *n > 0 ? std::string() : "--records takes a whole number of at least 1";
      });
  sub->add_option_function<std::string>(
         "--size",
         [o](const std::string& text) {
           Result<uint64_t> v = ParseSize(text);
           if (!v.ok()) throw CLI::ValidationError("--size", v.status().message());
           if (*v < perf::kPerfHeaderBytes || *v > (1u << 30)) {
             throw CLI::ValidationError("--size", fmt::format("{} is not between {} and 1GiB", text,
                                                              perf::kPerfHeaderBytes));
           }
           o->size = static_cast<uint32_t>(*v);
         },
         "Value bytes per record (no key; suffixes as for sizes: 1KiB); the first 24 carry a "
         "stamp, the run id, the producer and its sequence number (default 100)")
      ->type_name("BYTES");
  sub->add_option("--producers", o->producers, "Producer processes")
      ->capture_default_str()
      ->transform(Decimal())
      ->check(CLI::Range(1, 64));
  sub->add_option("--rate", o->rate,
                  "Records/s in total over all producers (0: as fast as possible)")
      ->capture_default_str()
      ->transform(DecimalFraction());
  sub->add_option("--duration", o->duration_s,
                  "Stop producing after this many seconds even if --records are not sent yet "
                  "(0: no limit)")
      ->transform(DecimalFraction());
  o->partitions_option =
      sub->add_option("--partitions", o->partitions, "Partitions when perf creates the topic")
          ->capture_default_str()
          ->transform(Decimal())
          ->check(CLI::Range(1, 64));
  AddSizeOption(sub, "--ring-size", &o->ring_size,
                "Ring bytes per partition when perf creates the topic (default: the bus's)");
  sub->add_option("--wait", o->wait,
                  "How the consumer waits for records: busy (spin, lowest latency, burns a CPU), "
                  "yield, or block (futex after a short spin)")
      ->capture_default_str()
      ->check(CLI::IsMember({"busy", "yield", "block"}));
  sub->add_option("--cpus", o->cpus, "CPUs to pin workers to (default: all this process may use)");
  sub->add_flag("--no-pin", o->no_pin, "Do not pin the worker processes to CPUs");
  sub->add_flag("--verify-crc", o->verify_crc, "The consumer CRC-checks every record");
  sub->add_option("--timeout-ms", o->timeout_ms,
                  "Consumer: give up after this long without a new record once the producers "
                  "are done")
      ->capture_default_str()
      ->transform(Decimal());
  sub->add_flag("--json", o->json, "Print one JSON object on stdout instead of the table");
}

}  // namespace

void RegisterPerf(CLI::App& app, const GlobalOptions& global) {
  CLI::App* perf = app.add_subcommand(
      "perf", "Measure throughput and latency with producer and consumer processes on a live bus");
  perf->require_subcommand(1);
  perf->footer(
      "Every producer and the consumer is a separate process (this binary re-executed), pinned "
      "to its own CPU while there are enough.\n"
      "Latency is one-way, producer commit -> consumer receive: the producer stamps the CPU's "
      "time-stamp counter into the first 8 bytes of the value just before it commits, the "
      "consumer reads the counter when it receives the record. Without --rate the producers run "
      "flat out and the latency includes the time records queue in the ring; use --rate for "
      "transit latency. `produce` reports the send latency instead (from the first claim "
      "attempt to the return of commit, including back-pressure waits); `consume` reports no "
      "latency (the records were written before the consumer started). MB/s counts value "
      "bytes, MB = 10^6 bytes.\n"
      "The consumer checks that every record arrives exactly once and in order within its "
      "partition; the exit code is 1 if not.");
  struct ModeDef {
    Mode mode;
    const char* name;
    const char* help;
  };
  const ModeDef modes[] = {
      {Mode::kProduce, "produce",
       "Producer processes only: how fast records are committed (with a persisting broker, "
       "also how long until they are durable)"},
      {Mode::kConsume, "consume",
       "Pre-fill --records, then time one consumer process draining them (from the ring, or "
       "from disk where the ring no longer holds them)"},
      {Mode::kRoundtrip, "roundtrip",
       "Producers and a consumer at the same time: end-to-end throughput and commit -> receive "
       "latency"},
  };
  for (const ModeDef& m : modes) {
    CLI::App* sub = perf->add_subcommand(m.name, m.help);
    auto o = std::make_shared<PerfOptions>();
    o->mode = m.mode;
    AddModeOptions(sub, o);
    SetRunner(sub, [o, &global] { return RunPerf(global, *o); });
  }
  RegisterPerfWorker(app, global);
}

}  // namespace runnel::cli
