#include "bench/drivers.h"

namespace runnel::bench {

bool PingPongAnswer(PingPongLines& lines, uint64_t first, uint64_t count,
                    const std::atomic<uint32_t>& abort) {
  for (uint64_t seq = first; seq < first + count; ++seq) {
    const bool asked = SpinUntil([&] {
      return lines.ping.load(std::memory_order_acquire) >= seq ||
             abort.load(std::memory_order_relaxed) != 0;
    });
    if (!asked || abort.load(std::memory_order_relaxed) != 0) return false;
    lines.pong.store(seq, std::memory_order_release);
  }
  return true;
}

double MeasureFloor(PingPongLines& lines, uint64_t first, uint64_t count) {
  LatencySamples rtt(count);
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t ticks = PingPongRound(lines, first + i);
    if (ticks == 0) return 0;
    rtt.Add(ticks);
  }
  return rtt.Summarize().p50_ns / 2;
}

bool ConsumerBase::ShouldGiveUp() {
  if (sync_.abort.load(std::memory_order_relaxed) != 0) return true;
  if (received_ != seen_at_check_) {
    seen_at_check_ = received_;
    stalled_since_ns_ = MonotonicNanos();
    return false;
  }
  return MonotonicNanos() - stalled_since_ns_ > kWaitTimeoutNs;
}

void ThroughputConsumer::IterationDone() {
  // The latest completion over all consumers ends the iteration.
  const int64_t now = MonotonicNanos();
  int64_t latest = sync_.done_ns.load(std::memory_order_relaxed);
  while (latest < now &&
         !sync_.done_ns.compare_exchange_weak(latest, now, std::memory_order_relaxed)) {
  }
  // Release: done_ns (and everything received) before the count.
  sync_.done.fetch_add(1, std::memory_order_release);
  boundary_ += per_iteration_;
}

// Verdicts are summed over consumers. The worker's exit (waitpid/join) orders
// these before the benchmark process reads them.
int ThroughputConsumer::Finish() {
  sync_.records.fetch_add(checker_.records(), std::memory_order_relaxed);
  sync_.checksum.fetch_add(checker_.checksum(), std::memory_order_relaxed);
  sync_.errors.fetch_add(checker_.errors(), std::memory_order_relaxed);
  preemptions_.AddTo(sync_.preemptions);
  return 0;
}

int LatencyConsumer::Finish() {
  sync_.records.fetch_add(received_, std::memory_order_relaxed);
  sync_.checksum.fetch_add(checksum_, std::memory_order_relaxed);
  sync_.clock_skews.fetch_add(clock_skews_, std::memory_order_relaxed);
  preemptions_.AddTo(sync_.preemptions);
  return 0;
}

void FinishThroughput(benchmark::State& state, const ThroughputConfig& config, RunSync& sync,
                      uint64_t per_producer, std::string error) {
  const uint64_t total = per_producer * config.producers;
  if (error.empty()) {
    const uint64_t records = sync.records.load(std::memory_order_relaxed);
    const uint64_t errors = sync.errors.load(std::memory_order_relaxed);
    const uint64_t checksum = sync.checksum.load(std::memory_order_relaxed);
    const uint64_t expected_checksum =
        PayloadChecker::Expected(config.producers, per_producer, config.payload) * config.consumers;
    const uint64_t expected_records = total * config.consumers;
    if (records != expected_records || errors != 0 || checksum != expected_checksum) {
      error = "verification failed: " + std::to_string(records) + " of " +
              std::to_string(expected_records) + " deliveries, " + std::to_string(errors) +
              " out of sequence or wrong size, checksum " +
              (checksum == expected_checksum ? "ok" : "wrong");
    }
  }
  if (!error.empty()) {
    state.SkipWithError(error.c_str());
    return;
  }
  // Records produced per second; each was delivered to every consumer.
  const double records = static_cast<double>(total);
  state.counters["records/s"] = benchmark::Counter(records, benchmark::Counter::kIsRate);
  state.counters["bytes/s"] =
      benchmark::Counter(records * config.payload, benchmark::Counter::kIsRate);
  ReportPreemptions(state, sync);
}

}  // namespace runnel::bench
