// `runnel broker --metrics-port`: serves the bus's metrics (tools/metrics)
// at http://ADDRESS:PORT/metrics in the Prometheus text format, through
// prometheus-cpp's exposer (its own HTTP threads). Each scrape samples the
// bus; rates are over the time since the previous scrape.

#ifndef RUNNEL_TOOLS_METRICS_EXPORTER_H_
#define RUNNEL_TOOLS_METRICS_EXPORTER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "core/status.h"
#include "ipc/bus.h"

namespace runnel::cli {

// True if this build has prometheus-cpp (else Start fails).
bool MetricsExporterAvailable();

class MetricsExporter {
 public:
  // Listens on address:port (port 0: any free port). REQUIRES: `bus`
  // outlives the exporter.
  [[nodiscard]] static Result<std::unique_ptr<MetricsExporter>> Start(const Bus& bus,
                                                                      const std::string& address,
                                                                      uint16_t port);
  virtual ~MetricsExporter() = default;
  // The port it listens on.
  virtual uint16_t port() const = 0;
};

}  // namespace runnel::cli

#endif  // RUNNEL_TOOLS_METRICS_EXPORTER_H_
