#include "tools/metrics_exporter.h"

#ifdef RUNNEL_HAVE_PROMETHEUS

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>

#include <exception>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "tools/metrics.h"

namespace runnel::cli {
namespace {

class BusCollectable : public prometheus::Collectable {
 public:
  explicit BusCollectable(const Bus& bus) : bus_(bus) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::lock_guard<std::mutex> lk(mu_);  // scrapes may come in parallel
    Result<Sample> now = TakeSample(bus_, {});
    if (!now.ok()) return {};
    const std::vector<TopicRows> rows =
        Compute(bus_.data_dir(), previous_ ? &*previous_ : nullptr, *now);
    std::vector<prometheus::MetricFamily> out;
    for (const MetricFamily& f : BuildMetrics(bus_.name(), *now, rows)) {
      prometheus::MetricFamily pf;
      pf.name = f.name;
      pf.help = f.help;
      pf.type = f.counter ? prometheus::MetricType::Counter : prometheus::MetricType::Gauge;
      for (const MetricValue& v : f.values) {
        prometheus::ClientMetric m;
        for (const auto& [name, value] : v.labels) m.label.push_back({name, value});
        (f.counter ? m.counter.value : m.gauge.value) = v.value;
        pf.metric.push_back(std::move(m));
      }
      out.push_back(std::move(pf));
    }
    previous_ = std::move(*now);  // `rows` is not used past here
    return out;
  }

 private:
  const Bus& bus_;
  mutable std::mutex mu_;
  mutable std::optional<Sample> previous_;
};

class PrometheusExporter : public MetricsExporter {
 public:
  PrometheusExporter(std::unique_ptr<prometheus::Exposer> exposer,
                     std::shared_ptr<BusCollectable> collectable, uint16_t port)
      : collectable_(std::move(collectable)), exposer_(std::move(exposer)), port_(port) {}
  uint16_t port() const override { return port_; }

 private:
  std::shared_ptr<BusCollectable> collectable_;
  // Declared after collectable_, so destroyed before it: its HTTP threads
  // are joined before the collectable goes.
  std::unique_ptr<prometheus::Exposer> exposer_;
  uint16_t port_;
};

}  // namespace

bool MetricsExporterAvailable() { return true; }

Result<std::unique_ptr<MetricsExporter>> MetricsExporter::Start(const Bus& bus,
                                                                const std::string& address,
                                                                uint16_t port) {
  const std::string where = address + ":" + std::to_string(port);  // IPv4 (broker's check)
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(where, /*num_threads=*/1);
  } catch (const std::exception& e) {
    return Status::Unavailable("cannot serve metrics on " + where + ": " + e.what());
  }
  const std::vector<int> ports = exposer->GetListeningPorts();
  if (ports.empty()) return Status::Unavailable("cannot serve metrics on " + where);
  auto collectable = std::make_shared<BusCollectable>(bus);
  exposer->RegisterCollectable(collectable);
  return std::unique_ptr<MetricsExporter>(new PrometheusExporter(
      std::move(exposer), std::move(collectable), static_cast<uint16_t>(ports.front())));
}

}  // namespace runnel::cli

#else  // !RUNNEL_HAVE_PROMETHEUS

namespace runnel::cli {

bool MetricsExporterAvailable() { return false; }

Result<std::unique_ptr<MetricsExporter>> MetricsExporter::Start(const Bus&, const std::string&,
                                                                uint16_t) {
  return Status::FailedPrecondition(
      "this runnel was built without prometheus-cpp (Debian prometheus-cpp-dev): no metrics "
      "endpoint");
}

}  // namespace runnel::cli

#endif  // RUNNEL_HAVE_PROMETHEUS
