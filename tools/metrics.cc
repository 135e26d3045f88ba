#include "tools/metrics.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

#include "core/record.h"
#include "persistence/reader.h"
#include "tools/bus_util.h"

namespace runnel::cli {

Result<Sample> TakeSample(const Bus& bus, const std::vector<std::string>& topics) {
  Sample s;
  s.at = std::chrono::steady_clock::now();
  s.wall_ns = WallClockNanos();
  Result<BusInfo> info = bus.Info();
  if (!info.ok()) return info.status();
  s.bus = *info;
  Result<std::vector<TopicInfo>> list = bus.ListTopics();
  if (!list.ok()) return list.status();
  for (const TopicInfo& t : *list) {
    if (!topics.empty() && std::find(topics.begin(), topics.end(), t.name) == topics.end()) {
      continue;
    }
    Result<TopicInfo> d = bus.DescribeTopic(t.name);
    if (d.ok()) {
      s.topics.push_back(std::move(*d));
    } else if (d.status().code() != StatusCode::kNotFound) {  // not deleted meanwhile
      s.unreadable.push_back("topic '" + t.name + "': " + d.status().message());
    }
  }
  return s;
}

std::vector<TopicRows> Compute(const std::string& data_dir, const Sample* before,
                               const Sample& now) {
  std::map<std::pair<std::string, uint32_t>, const PartitionInfo*> old;
  std::map<std::string, uint64_t> old_generation;
  double seconds = 0;
  if (before != nullptr) {
    seconds = std::chrono::duration<double>(now.at - before->at).count();
    for (const TopicInfo& t : before->topics) {
      old_generation[t.name] = t.generation;
      for (const PartitionInfo& p : t.partitions) old[{t.name, p.partition}] = &p;
    }
  }
  std::vector<TopicRows> out;
  for (const TopicInfo& t : now.topics) {
    TopicRows rows;
    rows.topic = &t;
    for (const PartitionInfo& p : t.partitions) {
      PartitionRow row;
      row.info = &p;
      auto it = old.find({t.name, p.partition});
      if (it != old.end() && seconds > 0 && old_generation[t.name] == t.generation) {
        const PartitionInfo& o = *it->second;
        row.records_per_sec =
            static_cast<double>(p.next_offset - std::min(p.next_offset, o.next_offset)) / seconds;
        row.bytes_per_sec =
            static_cast<double>(p.tail_position - std::min(p.tail_position, o.tail_position)) /
            seconds;
      }
      if (t.options.durable && !data_dir.empty()) {
        const std::string dir = PartitionDir(data_dir, t.name, p.partition);
        row.disk_bytes = DiskUsage(dir);
        if (row.disk_bytes) {
          LogReaderOptions ro;
          ro.verify_crc = false;
          if (Result<LogReader> r = LogReader::Open(dir, ro); r.ok()) {
            row.log_start_offset = r->log_start_offset();
          }
          rows.disk_bytes = rows.disk_bytes.value_or(0) + *row.disk_bytes;
        }
      }
      rows.partitions.push_back(row);
    }
    out.push_back(std::move(rows));
  }
  return out;
}

std::vector<MetricFamily> BuildMetrics(const std::string& bus, const Sample& s,
                                       const std::vector<TopicRows>& rows) {
  std::vector<MetricFamily> out;
  auto family = [&out](std::string name, bool counter, std::string help) -> MetricFamily& {
    out.push_back({std::move(name), counter, std::move(help), {}});
    return out.back();
  };
  auto bus_value = [&](double v) { return MetricValue{{{"bus", bus}}, v}; };
  family("runnel_broker_up", false, "1 if the bus's active broker process is alive.")
      .values.push_back(bus_value(s.bus.broker_alive ? 1 : 0));
  family("runnel_broker_epoch", true, "How many times a broker became active on the bus.")
      .values.push_back(bus_value(static_cast<double>(s.bus.broker_epoch)));
  family("runnel_bus_clients", false, "Registered producers and consumers.")
      .values.push_back(bus_value(s.bus.clients));
  family("runnel_bus_clients_reaped_total", true,
         "Client registrations released because their process died.")
      .values.push_back(bus_value(static_cast<double>(s.bus.clients_reaped)));
  family("runnel_bus_claims_unblocked_total", true,
         "Dead producer claims turned into padding by the broker.")
      .values.push_back(bus_value(static_cast<double>(s.bus.claims_unblocked)));

  struct PartitionMetric {
    const char* name;
    bool counter;
    const char* help;
    std::function<std::optional<double>(const PartitionRow&)> value;
  };
  auto opt = [](const std::optional<uint64_t>& v) -> std::optional<double> {
    return v ? std::optional<double>(static_cast<double>(*v)) : std::nullopt;
  };
  const std::vector<PartitionMetric> metrics = {
      {"runnel_partition_next_offset", false, "Offset the next record of the partition gets.",
       [](const PartitionRow& r) { return static_cast<double>(r.info->next_offset); }},
      {"runnel_partition_earliest_ring_offset", false,
       "Oldest offset still readable from the shared-memory ring.",
       [](const PartitionRow& r) { return static_cast<double>(r.info->earliest_offset); }},
      {"runnel_partition_written_offset", false,
       "Records below this offset are written to the segment files.",
       [&](const PartitionRow& r) { return opt(r.info->written_offset); }},
      {"runnel_partition_durable_offset", false,
       "Records below this offset are durable per the topic's fsync policy.",
       [&](const PartitionRow& r) { return opt(r.info->durable_offset); }},
      {"runnel_partition_log_start_offset", false, "Oldest offset retained on disk.",
       [&](const PartitionRow& r) { return opt(r.log_start_offset); }},
      {"runnel_partition_records_per_second", false,
       "Records produced per second over the sampling interval.",
       [](const PartitionRow& r) { return r.records_per_sec; }},
      {"runnel_partition_bytes_per_second", false,
       "Ring bytes (frames) produced per second over the sampling interval.",
       [](const PartitionRow& r) { return r.bytes_per_sec; }},
      {"runnel_partition_unblocked_claims_total", true,
       "Claims of dead producers turned into padding.",
       [](const PartitionRow& r) { return static_cast<double>(r.info->unblocked_claims); }},
      {"runnel_partition_aborted_claims_total", true, "Claims aborted by their producer.",
       [](const PartitionRow& r) { return static_cast<double>(r.info->aborted_claims); }},
      {"runnel_partition_persist_error", false,
       "errno that stops the partition's persistence (0: healthy; 28: disk full).",
       [&](const PartitionRow& r) { return static_cast<double>(r.info->persist_error); }},
      {"runnel_partition_disk_bytes", false, "Bytes the partition's log occupies on disk.",
       [&](const PartitionRow& r) { return opt(r.disk_bytes); }},
  };
  for (const PartitionMetric& m : metrics) {
    MetricFamily& f = family(m.name, m.counter, m.help);
    for (const TopicRows& t : rows) {
      for (const PartitionRow& r : t.partitions) {
        if (std::optional<double> v = m.value(r)) {
          f.values.push_back({{{"bus", bus},
                               {"topic", t.topic->name},
                               {"partition", std::to_string(r.info->partition)}},
                              *v});
        }
      }
    }
  }
  for (const bool of_producers : {true, false}) {
    MetricFamily& f =
        of_producers
            ? family("runnel_topic_producers", false, "Producers registered on the topic.")
            : family("runnel_topic_consumers", false, "Consumers registered on the topic.");
    for (const TopicRows& t : rows) {
      const std::size_t n = (of_producers ? t.topic->producers : t.topic->consumers).size();
      f.values.push_back({{{"bus", bus}, {"topic", t.topic->name}}, static_cast<double>(n)});
    }
  }
  MetricFamily& lag =
      family("runnel_consumer_lag", false,
             "Records between a consumer's position and the partition's next offset.");
  for (const TopicRows& t : rows) {
    for (const ClientInfo& c : t.topic->consumers) {
      for (const ClientPartition& cp : c.partitions) {
        lag.values.push_back({{{"bus", bus},
                               {"topic", t.topic->name},
                               {"partition", std::to_string(cp.partition)},
                               {"consumer", std::to_string(c.id)},
                               {"pid", std::to_string(c.pid)}},
                              static_cast<double>(cp.lag)});
      }
    }
  }
  return out;
}

namespace {

// A Prometheus label value: backslash, double quote and newline escaped.
std::string LabelValue(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string PromValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

}  // namespace

std::string PrometheusText(const std::vector<MetricFamily>& families) {
  std::string out;
  for (const MetricFamily& f : families) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", f.name, f.help, f.name,
                       f.counter ? "counter" : "gauge");
    for (const MetricValue& v : f.values) {
      std::string labels;
      for (const auto& [name, value] : v.labels) {
        if (!labels.empty()) labels.push_back(',');
        labels += fmt::format("{}=\"{}\"", name, LabelValue(value));
      }
      out += fmt::format("{}{{{}}} {}\n", f.name, labels, PromValue(v.value));
    }
  }
  return out;
}

}  // namespace runnel::cli
