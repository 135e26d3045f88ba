// The bus's figures for `runnel stat` and the broker's Prometheus endpoint:
// a Sample of the bus (BusInfo, every topic with its partitions and clients),
// rows with rates between two samples and disk usage, and the metric
// families both the `stat --format prometheus` text and the exporter
// (`runnel broker --metrics-port`) are made of.

#ifndef RUNNEL_TOOLS_METRICS_H_
#define RUNNEL_TOOLS_METRICS_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"
#include "ipc/bus.h"

namespace runnel::cli {

struct Sample {
  std::chrono::steady_clock::time_point at;
  int64_t wall_ns = 0;
  BusInfo bus;
  std::vector<TopicInfo> topics;
  // Topics listed on the bus that could not be described (a ring file
  // missing or damaged): "topic 'NAME': why". Not in `topics`.
  std::vector<std::string> unreadable;
};

// Samples `bus`; `topics` empty: every topic, else only those named.
Result<Sample> TakeSample(const Bus& bus, const std::vector<std::string>& topics);

// What is shown for one partition.
struct PartitionRow {
  const PartitionInfo* info = nullptr;
  std::optional<double> records_per_sec;
  std::optional<double> bytes_per_sec;
  std::optional<uint64_t> disk_bytes;
  std::optional<uint64_t> log_start_offset;
};

struct TopicRows {
  const TopicInfo* topic = nullptr;
  std::vector<PartitionRow> partitions;
  std::optional<uint64_t> disk_bytes;
};

// Rows for `now` (they point into it): rates against `before` (none if
// null, or for a topic re-created in between), disk usage and log start of
// durable topics in `data_dir`.
std::vector<TopicRows> Compute(const std::string& data_dir, const Sample* before,
                               const Sample& now);

struct MetricValue {
  std::vector<std::pair<std::string, std::string>> labels;  // name, value (raw)
  double value = 0;
};

struct MetricFamily {
  std::string name;
  bool counter = false;  // else a gauge
  std::string help;
  std::vector<MetricValue> values;
};

// The families for bus `bus`: broker, bus counters, per partition, per
// topic, consumer lag. Partition values that are unknown are left out.
std::vector<MetricFamily> BuildMetrics(const std::string& bus, const Sample& s,
                                       const std::vector<TopicRows>& rows);

// The Prometheus text exposition format (version 0.0.4).
std::string PrometheusText(const std::vector<MetricFamily>& families);

}  // namespace runnel::cli

#endif  // RUNNEL_TOOLS_METRICS_H_
