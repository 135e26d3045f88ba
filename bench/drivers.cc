#include "bench/drivers.h"

namespace runnel::bench {

bool ConsumerBase::ShouldGiveUp() {
  if (sync_.abort.load(std::memory_order_relaxed) != 0) return true;
  if (received_ != seen_at_check_) {
    seen_at_check_ = received_;
    stalled_since_ns_ = MonotonicNanos();
    return false;
  }
  return MonotonicNanos() - stalled_since_ns_ > kWaitTimeoutNs;
}

int ThroughputConsumer::Finish() {
  sync_.records.store(checker_.records(), std::memory_order_relaxed);
  sync_.checksum.store(checker_.checksum(), std::memory_order_relaxed);
  sync_.errors.store(checker_.errors(), std::memory_order_relaxed);
  return 0;  // the worker's exit (waitpid/join) orders these before the reads
}

int LatencyConsumer::Finish() {
  sync_.records.store(received_, std::memory_order_relaxed);
  sync_.checksum.store(checksum_, std::memory_order_relaxed);
  sync_.clock_skews.store(clock_skews_, std::memory_order_relaxed);
  return 0;
}

void FinishThroughput(benchmark::State& state, const ThroughputConfig& config, RunSync& sync,
                      uint64_t per_producer, std::string error) {
  const uint64_t total = per_producer * config.producers;
  if (error.empty()) {
    const uint64_t records = sync.records.load(std::memory_order_relaxed);
    const uint64_t errors = sync.errors.load(std::memory_order_relaxed);
    const uint64_t checksum = sync.checksum.load(std::memory_order_relaxed);
    if (records != total || errors != 0 ||
        checksum != PayloadChecker::Expected(config.producers, per_producer, config.payload)) {
      error = "verification failed: " + std::to_string(records) + " of " + std::to_string(total) +
              " records, " + std::to_string(errors) + " out of sequence or wrong size, checksum " +
              (checksum == PayloadChecker::Expected(config.producers, per_producer, config.payload)
                   ? "ok"
                   : "wrong");
    }
  }
  if (!error.empty()) {
    state.SkipWithError(error.c_str());
    return;
  }
  const double records = static_cast<double>(total);
  state.counters["records/s"] = benchmark::Counter(records, benchmark::Counter::kIsRate);
  state.counters["bytes/s"] =
      benchmark::Counter(records * config.payload, benchmark::Counter::kIsRate);
}

}  // namespace runnel::bench
