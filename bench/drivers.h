// The two measurement loops behind every cross-CPU benchmark, so the ring and
// its baselines are measured the same way:
//
//  - RunThroughput: producers on CPU 0 (the benchmark process, plus a second
//    producer worker if asked), a consumer worker on CPU 1. One benchmark
//    iteration = `records_per_iteration` records, timed from the moment the
//    producers are released until the consumer has received the last one.
//    The end of that interval happens in the consumer, i.e. in another
//    process or thread, hence UseManualTime(): the consumer stamps
//    CLOCK_MONOTONIC (same clock in every process) and the benchmark process
//    reports the interval with SetIterationTime().
//  - RunLatency: one record in flight. The benchmark process stamps the TSC,
//    sends, and waits until the consumer worker acknowledges with the
//    one-way latency it measured (its TSC when it saw the record - the
//    stamp). Sends are paced (one per `gap_ns` at most) so a record never
//    queues behind the previous one. Iteration time = that one-way latency
//    (manual time again: measured in the worker).
//
// Every record is verified by the consumer (count, per-producer sequence,
// checksum; see PayloadChecker); a benchmark whose records did not all
// arrive intact reports an error instead of a figure.

#ifndef RUNNEL_BENCH_DRIVERS_H_
#define RUNNEL_BENCH_DRIVERS_H_

#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "bench/harness.h"

namespace runnel::bench {

// Shared between the benchmark process and its workers. Each group of words
// written by one side sits on its own 128-byte span.
struct RunSync {
  StartBarrier barrier;
  // Benchmark process -> producer workers: iterations released so far.
  alignas(kFalseSharingRange) std::atomic<uint64_t> go{0};
  // Consumer -> benchmark process: iterations fully received, and the
  // CLOCK_MONOTONIC time at which the last one completed.
  alignas(kFalseSharingRange) std::atomic<uint64_t> done{0};
  std::atomic<int64_t> done_ns{0};
  // Consumer -> benchmark process (latency): records seen, latest latency.
  alignas(kFalseSharingRange) std::atomic<uint64_t> ack_seq{0};
  std::atomic<uint64_t> ack_ticks{0};
  // Benchmark process -> everyone: give up (something failed).
  alignas(kFalseSharingRange) std::atomic<uint32_t> abort{0};
  // Consumer's verdict, written before it exits.
  alignas(kFalseSharingRange) std::atomic<uint64_t> records{0};
  std::atomic<uint64_t> checksum{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> clock_skews{0};  // latency samples with now < stamp
};

// Tracks what a consumer worker has received and tells the benchmark process.
class ConsumerBase {
 public:
  ConsumerBase(RunSync& sync, uint64_t total) : sync_(sync), total_(total) {}
  bool finished() const { return received_ >= total_; }
  // For idle paths only: true if the run was aborted or nothing arrived for
  // kWaitTimeoutNs. Reads the clock only when progress stalled.
  bool ShouldGiveUp();

 protected:
  RunSync& sync_;
  const uint64_t total_;
  uint64_t received_ = 0;

 private:
  uint64_t seen_at_check_ = ~0ull;
  int64_t stalled_since_ns_ = 0;
};

class ThroughputConsumer : public ConsumerBase {
 public:
  ThroughputConsumer(RunSync& sync, uint32_t producers, uint32_t payload, uint64_t per_iteration,
                     uint64_t total)
      : ConsumerBase(sync, total),
        checker_(producers, payload),
        per_iteration_(per_iteration),
        boundary_(per_iteration) {}
  PayloadChecker& checker() { return checker_; }
  // Call after every delivered batch of `n` records (each already checked).
  void Delivered(uint64_t n) {
    received_ += n;
    while (received_ >= boundary_) {
      sync_.done_ns.store(MonotonicNanos(), std::memory_order_relaxed);
      // Release: done_ns (and everything received) before the count.
      sync_.done.fetch_add(1, std::memory_order_release);
      boundary_ += per_iteration_;
    }
  }
  // Publishes the verdict; returns the worker's exit code.
  int Finish();

 private:
  PayloadChecker checker_;
  const uint64_t per_iteration_;
  uint64_t boundary_;
};

class LatencyConsumer : public ConsumerBase {
 public:
  LatencyConsumer(RunSync& sync, uint64_t total) : ConsumerBase(sync, total) {}
  // Call as soon as the next record is seen, with the stamp it carries.
  void Received(uint64_t stamp) {
    const uint64_t now = Tsc::NowAfterLoads();
    uint64_t ticks = now - stamp;
    if (now < stamp) {
      ticks = 0;
      ++clock_skews_;
    }
    checksum_ += stamp;
    ++received_;
    sync_.ack_ticks.store(ticks, std::memory_order_relaxed);
    // Release: the latency before the sequence the benchmark process waits on.
    sync_.ack_seq.store(received_, std::memory_order_release);
  }
  int Finish();

 private:
  uint64_t checksum_ = 0;
  uint64_t clock_skews_ = 0;
};

struct ThroughputConfig {
  Isolation isolation = Isolation::kProcess;
  uint32_t producers = 1;  // > 1: the extra producers share CPU 0 with the first
  uint32_t payload = 64;   // bytes of user data per record
  uint64_t records_per_iteration = 100'000;
};

// Adds records/s and bytes/s (payload bytes) rate counters, checks the
// consumer's verdict.
void FinishThroughput(benchmark::State& state, const ThroughputConfig& config, RunSync& sync,
                      uint64_t per_producer, std::string error);

// make_producer(uint32_t producer) is called in the process that produces
// (after fork for a worker) and returns a callable
//   bool(uint64_t first_seq, uint64_t count, const std::atomic<uint32_t>& abort)
// that sends records first_seq .. first_seq + count - 1 (false on failure).
// consume(ThroughputConsumer&) runs in the consumer worker and returns its
// exit code (ThroughputConsumer::Finish() on success).
template <typename MakeProducer, typename Consume>
void RunThroughput(benchmark::State& state, const ThroughputConfig& config,
                   MakeProducer&& make_producer, Consume&& consume) {
  if (!HaveTwoCpus() || !PinThisThreadToCpu(kProducerCpu)) {
    state.SkipWithError("needs CPUs 0 and 1");
    return;
  }
  Shared<RunSync> sync;
  if (!sync.ok()) {
    state.SkipWithError("mmap failed");
    return;
  }
  const uint64_t iterations = static_cast<uint64_t>(state.max_iterations);
  const uint64_t share = config.records_per_iteration / config.producers;
  const uint64_t per_iteration = share * config.producers;
  const uint64_t total = per_iteration * iterations;
  const uint32_t parties = 1 + config.producers;
  // Producers that share CPU 0 yield instead of spinning while they wait.
  const bool shared_cpu = config.producers > 1;

  Worker consumer = Worker::Start(config.isolation, kConsumerCpu, [&]() -> int {
    ThroughputConsumer ctx(*sync, config.producers, config.payload, per_iteration, total);
    if (!sync->barrier.ArriveAndWait(parties)) return 2;
    return consume(ctx);
  });
  std::vector<Worker> extra_producers;
  for (uint32_t p = 1; p < config.producers; ++p) {
    extra_producers.push_back(Worker::Start(config.isolation, kProducerCpu, [&, p]() -> int {
      auto produce = make_producer(p);
      if (!sync->barrier.ArriveAndWait(parties, shared_cpu)) return 2;
      for (uint64_t it = 0; it < iterations; ++it) {
        const bool released = SpinUntil(
            [&] {
              return sync->go.load(std::memory_order_acquire) > it ||
                     sync->abort.load(std::memory_order_relaxed) != 0;
            },
            kWaitTimeoutNs, /*yield=*/true);
        if (!released || sync->abort.load(std::memory_order_relaxed) != 0) return 3;
        if (!produce(it * share, share, sync->abort)) return 4;
      }
      return 0;
    }));
  }

  std::string error;
  {
    auto produce = make_producer(0);
    if (!sync->barrier.ArriveAndWait(parties, shared_cpu)) error = "workers did not start";
    uint64_t it = 0;
    for (auto _ : state) {
      if (!error.empty()) break;
      const int64_t start_ns = MonotonicNanos();
      // Release: producers that see the new count start the iteration.
      sync->go.store(it + 1, std::memory_order_release);
      if (!produce(it * share, share, sync->abort)) {
        error = "producer failed or timed out";
        break;
      }
      if (!SpinUntil([&] { return sync->done.load(std::memory_order_acquire) > it; },
                     kWaitTimeoutNs, shared_cpu)) {
        error = "consumer did not receive every record in time";
        break;
      }
      state.SetIterationTime(
          static_cast<double>(sync->done_ns.load(std::memory_order_relaxed) - start_ns) * 1e-9);
      ++it;
    }
  }
  if (!error.empty()) sync->abort.store(1, std::memory_order_relaxed);
  const int64_t join_timeout = error.empty() ? kWaitTimeoutNs : 1'000'000'000;
  for (Worker& w : extra_producers) {
    const int rc = w.Join(join_timeout);
    if (rc != 0 && error.empty()) error = "producer worker exited with " + std::to_string(rc);
  }
  const int rc = consumer.Join(join_timeout);
  if (rc != 0 && error.empty()) error = "consumer worker exited with " + std::to_string(rc);
  FinishThroughput(state, config, *sync, share * iterations, std::move(error));
}

struct LatencyConfig {
  Isolation isolation = Isolation::kProcess;
  double gap_ns = 2000;  // at most one send per gap
};

// make_sender() is called in the benchmark process and returns a callable
// bool(uint64_t stamp) that sends one record carrying `stamp` in its first 8
// bytes. receive(LatencyConsumer&) runs in the worker, calls Received(stamp)
// for every record as soon as it sees it, and returns its exit code.
template <typename MakeSender, typename Receive>
void RunLatency(benchmark::State& state, const LatencyConfig& config, MakeSender&& make_sender,
                Receive&& receive) {
  if (!HaveTwoCpus() || !PinThisThreadToCpu(kProducerCpu)) {
    state.SkipWithError("needs CPUs 0 and 1");
    return;
  }
  Shared<RunSync> sync;
  if (!sync.ok()) {
    state.SkipWithError("mmap failed");
    return;
  }
  const uint64_t total = static_cast<uint64_t>(state.max_iterations);
  Worker consumer = Worker::Start(config.isolation, kConsumerCpu, [&]() -> int {
    LatencyConsumer ctx(*sync, total);
    if (!sync->barrier.ArriveAndWait(2)) return 2;
    return receive(ctx);
  });

  LatencySamples samples(total);
  // How long send() itself took in the benchmark process (stamp to return):
  // the producer's share of the latency, including its cache-line stalls.
  LatencySamples send_samples(total);
  std::string error;
  uint64_t stamp_sum = 0;
  {
    auto send = make_sender();
    if (!sync->barrier.ArriveAndWait(2)) error = "worker did not start";
    const uint64_t gap = Tsc::FromNanos(config.gap_ns);
    uint64_t next_send = 0;
    uint64_t seq = 0;
    for (auto _ : state) {
      if (!error.empty()) break;
      while (Tsc::Now() < next_send) CpuRelax();
      const uint64_t stamp = Tsc::Now();
      next_send = stamp + gap;
      ++seq;
      stamp_sum += stamp;
      if (!send(stamp)) {
        error = "send failed";
        break;
      }
      send_samples.Add(Tsc::Now() - stamp);
      if (!SpinUntil([&] { return sync->ack_seq.load(std::memory_order_acquire) >= seq; })) {
        error = "consumer did not see the record in time";
        break;
      }
      const uint64_t ticks = sync->ack_ticks.load(std::memory_order_relaxed);
      samples.Add(ticks);
      state.SetIterationTime(Tsc::ToNanos(ticks) * 1e-9);
    }
  }
  if (!error.empty()) sync->abort.store(1, std::memory_order_relaxed);
  const int rc = consumer.Join(error.empty() ? kWaitTimeoutNs : 1'000'000'000);
  if (rc != 0 && error.empty()) error = "consumer worker exited with " + std::to_string(rc);
  if (error.empty() && (sync->records.load() != total || sync->checksum.load() != stamp_sum)) {
    error = "consumer saw " + std::to_string(sync->records.load()) + " of " +
            std::to_string(total) + " records or a wrong checksum";
  }
  if (!error.empty()) {
    state.SkipWithError(error.c_str());
    return;
  }
  samples.Report(state);
  state.counters["send_p50_ns"] = send_samples.Summarize().p50_ns;
  if (sync->clock_skews.load() != 0) {
    state.counters["clock_skews"] = static_cast<double>(sync->clock_skews.load());
  }
}

}  // namespace runnel::bench

#endif  // RUNNEL_BENCH_DRIVERS_H_
