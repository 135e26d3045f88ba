// `runnel stat`: per topic and partition, the offsets (next, earliest in the
// ring, written, durable, log start on disk), records/s and bytes/s, clients
// with their lag, unblocked/aborted claims and disk usage.
//
// Rates come from two samples: --interval-ms apart (default 1000), or, with
// --watch, between refreshes. records/s is the growth of next_offset;
// bytes/s the growth of the ring's tail position (frame bytes: records plus
// their 40+ byte frame headers and alignment, and any padding).
//
// Prometheus output is the text exposition format (version 0.0.4), written
// directly from tools/metrics (the same families the broker's
// --metrics-port serves through prometheus-cpp): a one-shot print needs no
// registry, and works in a build without prometheus-cpp.

#include <fmt/core.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ipc/bus.h"
#include "tools/bus_util.h"
#include "tools/cli_common.h"
#include "tools/commands.h"
#include "tools/metrics.h"

namespace runnel::cli {
namespace {

constexpr std::string_view kStatCmd = "stat";

struct StatArgs {
  bool watch = false;
  std::string format = "table";
  int64_t interval_ms = 1000;
  std::vector<std::string> topics;  // empty: all
};

std::string Rate(const std::optional<double>& v) {
  return v ? fmt::format("{:.0f}", *v) : std::string("-");
}
std::string Num(const std::optional<uint64_t>& v) {
  return v ? std::to_string(*v) : std::string("-");
}

void PrintTable(const GlobalOptions& global, const Sample& s, const std::vector<TopicRows>& rows,
                int64_t interval_ms) {
  std::string out;
  auto add = [&out](const std::string& line) {
    out += line;
    out.push_back('\n');
  };
  add(fmt::format("bus '{}' at {}: broker {}, {}, {} (rates over {} ms)", global.bus,
                  FormatTimestamp(s.wall_ns), DescribeBroker(s.bus, global),
                  Count(s.topics.size(), "topic"), Count(s.bus.clients, "client"), interval_ms));
  for (const TopicRows& t : rows) {
    add("");
    add(fmt::format(
        "topic {} ({}{}, {}, {}{})", t.topic->name, Count(t.topic->options.partitions, "partition"),
        t.topic->options.durable ? ", durable" : "", Count(t.topic->producers.size(), "producer"),
        Count(t.topic->consumers.size(), "consumer"),
        t.disk_bytes ? ", disk " + FormatSize(*t.disk_bytes) : std::string()));
    add(fmt::format("  {:>4} {:>12} {:>12} {:>12} {:>12} {:>12} {:>10} {:>12} {:>9} {:>10} {}",
                    "PART", "NEXT", "RING_FROM", "WRITTEN", "DURABLE", "LOG_START", "REC/S",
                    "BYTES/S", "UNBLOCKED", "DISK", "ERROR"));
    for (const PartitionRow& r : t.partitions) {
      const PartitionInfo& p = *r.info;
      const int32_t err = p.persist_error;
      add(fmt::format("  {:>4} {:>12} {:>12} {:>12} {:>12} {:>12} {:>10} {:>12} {:>9} {:>10} {}",
                      p.partition, p.next_offset, p.earliest_offset, Num(p.written_offset),
                      Num(p.durable_offset), Num(r.log_start_offset), Rate(r.records_per_sec),
                      Rate(r.bytes_per_sec), p.unblocked_claims,
                      r.disk_bytes ? FormatSize(*r.disk_bytes) : std::string("-"),
                      err == 0 ? std::string("-") : PersistErrorText(err)));
    }
    for (const ClientInfo& c : t.topic->producers) {
      std::string parts;
      for (const ClientPartition& cp : c.partitions) {
        parts += fmt::format(" p{}@{}", cp.partition, cp.position);
      }
      add(fmt::format("  producer {} pid {}{}:{}", c.id, c.pid, c.alive ? "" : " (dead)", parts));
    }
    for (const ClientInfo& c : t.topic->consumers) {
      std::string parts;
      uint64_t lag = 0;
      for (const ClientPartition& cp : c.partitions) {
        parts += fmt::format(" p{}@{} lag {}", cp.partition, cp.position, cp.lag);
        lag += cp.lag;
      }
      add(fmt::format("  consumer {} pid {}{}{}: total lag {};{}", c.id, c.pid,
                      c.alive ? "" : " (dead)", c.group.empty() ? "" : " group " + c.group, lag,
                      parts));
    }
  }
  fmt::print("{}", out);
}

void PrintJson(const GlobalOptions& global, const Sample& s, const std::vector<TopicRows>& rows,
               int64_t interval_ms) {
  JsonWriter w;
  w.BeginObject();
  w.Key("bus").String(global.bus);
  w.Key("time_ms").Int(s.wall_ns / 1'000'000);
  w.Key("interval_ms").Int(interval_ms);
  w.Key("data_dir").String(IsValidUtf8(global.data_dir) ? global.data_dir : "?");
  WriteBrokerJson(w, s.bus);
  w.Key("clients").Uint(s.bus.clients);
  w.Key("clients_reaped").Uint(s.bus.clients_reaped);
  w.Key("claims_unblocked").Uint(s.bus.claims_unblocked);
  w.Key("topics").BeginArray();
  for (const TopicRows& t : rows) {
    w.BeginObject();
    w.Key("name").String(t.topic->name);
    w.Key("generation").Uint(t.topic->generation);
    w.Key("durable").Bool(t.topic->options.durable);
    w.Key("disk_bytes").OptionalUint(t.disk_bytes);
    w.Key("partitions").BeginArray();
    for (const PartitionRow& r : t.partitions) {
      const PartitionInfo& p = *r.info;
      w.BeginObject();
      w.Key("partition").Uint(p.partition);
      w.Key("next_offset").Uint(p.next_offset);
      w.Key("earliest_ring_offset").Uint(p.earliest_offset);
      w.Key("written_offset").OptionalUint(p.written_offset);
      w.Key("durable_offset").OptionalUint(p.durable_offset);
      w.Key("log_start_offset").OptionalUint(r.log_start_offset);
      w.Key("tail_position").Uint(p.tail_position);
      w.Key("records_per_sec");
      r.records_per_sec ? w.Double(*r.records_per_sec) : w.Null();
      w.Key("bytes_per_sec");
      r.bytes_per_sec ? w.Double(*r.bytes_per_sec) : w.Null();
      w.Key("unblocked_claims").Uint(p.unblocked_claims);
      w.Key("unblocked_bytes").Uint(p.unblocked_bytes);
      w.Key("aborted_claims").Uint(p.aborted_claims);
      w.Key("persist_error").Int(p.persist_error);
      w.Key("disk_bytes").OptionalUint(r.disk_bytes);
      w.EndObject();
    }
    w.EndArray();
    for (const auto* clients : {&t.topic->producers, &t.topic->consumers}) {
      const bool consumers = clients == &t.topic->consumers;
      w.Key(consumers ? "consumers" : "producers").BeginArray();
      for (const ClientInfo& c : *clients) {
        w.BeginObject();
        w.Key("id").Uint(c.id).Key("pid").Int(c.pid).Key("alive").Bool(c.alive);
        w.Key("idle_ms").Int(c.idle_ms);
        if (consumers) w.Key("group").String(IsValidUtf8(c.group) ? c.group : "?");
        w.Key("partitions").BeginArray();
        for (const ClientPartition& cp : c.partitions) {
          w.BeginObject().Key("partition").Uint(cp.partition).Key("position").Uint(cp.position);
          if (consumers) w.Key("lag").Uint(cp.lag);
          w.EndObject();
        }
        w.EndArray().EndObject();
      }
      w.EndArray();
    }
    w.EndObject();
  }
  w.EndArray().EndObject();
  fmt::print("{}\n", w.str());
}

// Sleeps `ms`, waking early on SIGINT/SIGTERM. False if stopped.
bool SleepUnlessStopped(int64_t ms) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (!StopRequested()) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= until) return true;
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(until - now, std::chrono::milliseconds(50)));
  }
  return false;
}

int RunStat(const GlobalOptions& global, const StatArgs& args) {
  std::optional<Bus> bus = OpenExistingBus(global, kStatCmd);
  if (!bus) return kExitRuntime;
  InstallStopHandlers(/*ignore_sigpipe=*/true);

  Result<Sample> first = TakeSample(*bus, args.topics);
  if (!first.ok()) {
    PrintError(kStatCmd, first.status().ToString());
    return kExitRuntime;
  }
  for (const std::string& t : args.topics) {
    bool found = false;
    for (const TopicInfo& info : first->topics) found |= info.name == t;
    if (!found) {
      PrintError(kStatCmd, ExplainTopicNotFound(t, global));
      return kExitRuntime;
    }
  }
  // A topic the bus lists but that cannot be read is named, not left out
  // (the output said "1 topic" while `topic list` showed 2); exit 1.
  bool unreadable = false;
  auto report = [&](const Sample& s) {
    for (const std::string& u : s.unreadable) PrintWarning(kStatCmd, "cannot read " + u);
    unreadable = unreadable || !s.unreadable.empty();
  };
  report(*first);
  Sample before = std::move(*first);
  const bool clear = args.watch && args.format == "table" && isatty(STDOUT_FILENO);
  for (;;) {
    if (!SleepUnlessStopped(args.interval_ms)) break;
    Result<Sample> now = TakeSample(*bus, args.topics);
    if (!now.ok()) {
      PrintError(kStatCmd, now.status().ToString());
      return kExitRuntime;
    }
    if (args.watch) report(*now);
    const std::vector<TopicRows> rows = Compute(global.data_dir, &before, *now);
    if (clear) fmt::print("\x1b[H\x1b[2J");
    if (args.format == "json") {
      PrintJson(global, *now, rows, args.interval_ms);
    } else if (args.format == "prometheus") {
      fmt::print("{}", PrometheusText(BuildMetrics(global.bus, *now, rows)));
      if (args.watch) fmt::print("\n");
    } else {
      PrintTable(global, *now, rows, args.interval_ms);
      if (args.watch && !clear) fmt::print("\n");
    }
    if (std::fflush(stdout) != 0) break;  // the reader went away
    if (!args.watch) break;
    before = std::move(*now);
  }
  return unreadable ? kExitRuntime : kExitOk;
}

}  // namespace

void RegisterStat(CLI::App& app, const GlobalOptions& global) {
  CLI::App* sub = app.add_subcommand(
      "stat",
      "Per topic and partition: offsets (next, ring, written, durable, log start), records/s "
      "and bytes/s, producers and consumers with their lag, unblocked claims, disk usage");
  auto a = std::make_shared<StatArgs>();
  sub->add_flag("--watch,-w", a->watch, "Refresh every --interval-ms until Ctrl-C");
  sub->add_option("--format,-f", a->format,
                  "table, json (one object per sample) or prometheus (text exposition format)")
      ->capture_default_str()
      ->check(CLI::IsMember({"table", "json", "prometheus"}));
  sub->add_option("--interval-ms", a->interval_ms,
                  "Time between the two samples the rates come from (and between refreshes)")
      ->capture_default_str()
      ->transform(Decimal())
      ->check(CLI::Range(int64_t{10}, int64_t{3'600'000}));
  sub->add_option("--topic,-t", a->topics, "Only these topics (repeatable)")
      ->type_name("T")
      ->check(CheckTopicName);
  SetRunner(sub, [a, &global] { return RunStat(global, *a); });
}

}  // namespace runnel::cli
