// The two measurement loops behind every cross-CPU benchmark, so the ring and
// its baselines are measured the same way:
//
//  - RunThroughput: producers on CPU 0 (the benchmark process, plus producer
//    workers if asked), consumer workers on CPU 1. One benchmark iteration =
//    `records_per_iteration` records, timed from the moment the producers
//    are released until every consumer has received the last one. The end of
//    that interval happens in a consumer, i.e. in another process or thread,
//    hence UseManualTime(): consumers stamp CLOCK_MONOTONIC (same clock in
//    every process) and the benchmark process reports the interval with
//    SetIterationTime().
//  - RunLatency: one record in flight. The benchmark process stamps the TSC,
//    sends, and waits until every consumer worker acknowledges with the
//    one-way latency it measured (its TSC when it saw the record - the
//    stamp). Sends are paced (one per `gap_ns` at most) so a record never
//    queues behind the previous one. Iteration time = the one-way latency to
//    the last consumer (manual time again: measured in the workers).
//    With one consumer, the same two processes also run a cache-line
//    ping-pong (kFloorRounds round trips) just before and just after the
//    records: `floor_ns` is half its median round trip (the mean of the two)
//    and `vs_floor` = p50 / floor_ns. The cross-core cost moves between
//    repetitions on this VM, so the floor is measured next to the figure.
//
// Every record is verified by the consumer (count, per-producer sequence,
// checksum; see PayloadChecker); a benchmark whose records did not all
// arrive intact reports an error instead of a figure.

#ifndef RUNNEL_BENCH_DRIVERS_H_
#define RUNNEL_BENCH_DRIVERS_H_

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "bench/harness.h"

namespace runnel::bench {

inline constexpr uint32_t kMaxConsumers = 4;
// Round trips of each in-run floor measurement (see RunLatency).
inline constexpr uint64_t kFloorRounds = 20'000;

// A cache-line ping-pong between the benchmark process and a worker: one
// 64-byte line per direction, 128 bytes apart.
struct PingPongLines {
  alignas(kFalseSharingRange) std::atomic<uint64_t> ping{0};  // benchmark process -> worker
  alignas(kFalseSharingRange) std::atomic<uint64_t> pong{0};  // worker -> benchmark process
};

// Benchmark side of one round: publishes `seq` and waits for the answer.
// Returns the round trip in TSC ticks, 0 on timeout.
inline uint64_t PingPongRound(PingPongLines& lines, uint64_t seq) {
  const uint64_t t0 = Tsc::Now();
  // Release/acquire: the round's sequence is the message.
  lines.ping.store(seq, std::memory_order_release);
  if (!SpinUntil([&] { return lines.pong.load(std::memory_order_acquire) >= seq; })) return 0;
  return Tsc::NowAfterLoads() - t0;
}

// Worker side: answers rounds first .. first + count - 1. False on timeout
// or abort.
bool PingPongAnswer(PingPongLines& lines, uint64_t first, uint64_t count,
                    const std::atomic<uint32_t>& abort);

// Benchmark side: `count` rounds from `first`; half the median round trip in
// ns (the one-way floor), 0 if the worker did not answer.
double MeasureFloor(PingPongLines& lines, uint64_t first, uint64_t count);

// The in-run floor of a benchmark: the benchmark process and its (only)
// consumer ping-pong kFloorRounds times before and after the measured part.
// Reported as `floor_ns` (mean of the two); `placement` says adjacent (3,
// floor under kAdjacentFloorNs), near (1, under kNearFloorNs) or far (2): the
// host moves the two vCPUs between repetitions and every cross-core figure
// moves 2-4x with them.
inline void ReportFloor(benchmark::State& state, double before, double after) {
  const double floor = (before + after) / 2;
  state.counters["floor_ns"] = floor;
  state.counters["placement"] = floor < kAdjacentFloorNs ? 3 : floor < kNearFloorNs ? 1 : 2;
}

// Shared between the benchmark process and its workers. Each group of words
// written by one side sits on its own 128-byte span.
struct RunSync {
  StartBarrier barrier;
  // Benchmark process -> producer workers: iterations released so far.
  alignas(kFalseSharingRange) std::atomic<uint64_t> go{0};
  // Consumers -> benchmark process: iterations fully received (summed over
  // consumers), and the latest CLOCK_MONOTONIC time one completed.
  alignas(kFalseSharingRange) std::atomic<uint64_t> done{0};
  std::atomic<int64_t> done_ns{0};
  // Consumer i -> benchmark process (latency): records seen, latest latency.
  struct alignas(kFalseSharingRange) Ack {
    std::atomic<uint64_t> seq{0};
    std::atomic<uint64_t> ticks{0};
  };
  Ack acks[kMaxConsumers];
  // The in-run floor of a latency benchmark (consumer 0 answers).
  PingPongLines floor;
  // Benchmark process -> everyone: give up (something failed).
  alignas(kFalseSharingRange) std::atomic<uint32_t> abort{0};
  // Consumer's verdict, written before it exits.
  alignas(kFalseSharingRange) std::atomic<uint64_t> records{0};
  std::atomic<uint64_t> checksum{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> clock_skews{0};  // latency samples with now < stamp
  // Involuntary context switches of every benchmark thread while it ran.
  std::atomic<uint64_t> preemptions{0};
};

// Counts the calling thread's involuntary context switches from construction
// to AddTo().
class PreemptionCounter {
 public:
  PreemptionCounter() : start_(InvoluntarySwitches()) {}
  void AddTo(std::atomic<uint64_t>& total) const {
    total.fetch_add(InvoluntarySwitches() - start_, std::memory_order_relaxed);
  }

 private:
  uint64_t start_;
};

// Adds the `preemptions` counter: > 0 means some benchmark thread lost its
// CPU to another task during the run, i.e. the figure is disturbed.
inline void ReportPreemptions(benchmark::State& state, const RunSync& sync) {
  state.counters["preemptions"] =
      static_cast<double>(sync.preemptions.load(std::memory_order_relaxed));
}

// Tracks what a consumer worker has received and tells the benchmark process.
class ConsumerBase {
 public:
  ConsumerBase(RunSync& sync, uint32_t index, bool shares_cpu, uint64_t total)
      : sync_(sync), index_(index), shares_cpu_(shares_cpu), total_(total) {}
  bool finished() const { return received_ >= total_; }
  // Which consumer this is (0-based).
  uint32_t index() const { return index_; }
  // True if other consumers run on the same CPU: waits should yield.
  bool shares_cpu() const { return shares_cpu_; }
  // For idle paths only: true if the run was aborted or nothing arrived for
  // kWaitTimeoutNs. Reads the clock only when progress stalled.
  bool ShouldGiveUp();

 protected:
  RunSync& sync_;
  const uint32_t index_;
  const bool shares_cpu_;
  const uint64_t total_;
  uint64_t received_ = 0;
  PreemptionCounter preemptions_;

 private:
  uint64_t seen_at_check_ = ~0ull;
  int64_t stalled_since_ns_ = 0;
};

class ThroughputConsumer : public ConsumerBase {
 public:
  ThroughputConsumer(RunSync& sync, uint32_t index, bool shares_cpu, uint32_t producers,
                     uint32_t payload, uint64_t per_iteration, uint64_t total)
      : ConsumerBase(sync, index, shares_cpu, total),
        checker_(producers, payload),
        per_iteration_(per_iteration),
        boundary_(per_iteration) {}
  PayloadChecker& checker() { return checker_; }
  // Call after every delivered batch of `n` records (each already checked).
  void Delivered(uint64_t n) {
    received_ += n;
    while (received_ >= boundary_) IterationDone();
  }
  // Publishes the verdict; returns the worker's exit code.
  int Finish();

 private:
  void IterationDone();

  PayloadChecker checker_;
  const uint64_t per_iteration_;
  uint64_t boundary_;
};

class LatencyConsumer : public ConsumerBase {
 public:
  LatencyConsumer(RunSync& sync, uint32_t index, bool shares_cpu, uint64_t total)
      : ConsumerBase(sync, index, shares_cpu, total) {}
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
    RunSync::Ack& ack = sync_.acks[index_];
    ack.ticks.store(ticks, std::memory_order_relaxed);
    // Release: the latency before the sequence the benchmark process waits on.
    ack.seq.store(received_, std::memory_order_release);
  }
  int Finish();

 private:
  uint64_t checksum_ = 0;
  uint64_t clock_skews_ = 0;
};

struct ThroughputConfig {
  Isolation isolation = Isolation::kProcess;
  uint32_t producers = 1;  // > 1: the extra producers share CPU 0 with the first
  uint32_t consumers = 1;  // each receives every record; > 1: they share CPU 1
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
// consume(ThroughputConsumer&) runs in each consumer worker and returns its
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
  const uint32_t parties = config.consumers + config.producers;
  // Producers that share CPU 0 yield instead of spinning while they wait.
  const bool shared_cpu = config.producers > 1;
  const bool consumers_share_cpu = config.consumers > 1;

  // Several consumers share CPU 1: no floor (they would disturb it).
  const bool measure_floor = config.consumers == 1;
  std::vector<Worker> consumers;
  for (uint32_t c = 0; c < config.consumers; ++c) {
    consumers.push_back(Worker::Start(config.isolation, kConsumerCpu, [&, c]() -> int {
      ThroughputConsumer ctx(*sync, c, consumers_share_cpu, config.producers, config.payload,
                             per_iteration, total);
      if (!sync->barrier.ArriveAndWait(parties, consumers_share_cpu)) return 2;
      if (measure_floor && !PingPongAnswer(sync->floor, 1, kFloorRounds, sync->abort)) return 5;
      const int rc = consume(ctx);
      if (rc == 0 && measure_floor &&
          !PingPongAnswer(sync->floor, kFloorRounds + 1, kFloorRounds, sync->abort)) {
        return 6;
      }
      return rc;
    }));
  }
  double floor_before = 0;
  double floor_after = 0;
  std::vector<Worker> extra_producers;
  for (uint32_t p = 1; p < config.producers; ++p) {
    extra_producers.push_back(Worker::Start(config.isolation, kProducerCpu, [&, p]() -> int {
      const PreemptionCounter preemptions;
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
      preemptions.AddTo(sync->preemptions);
      return 0;
    }));
  }

  std::string error;
  {
    const PreemptionCounter preemptions;
    auto produce = make_producer(0);
    if (!sync->barrier.ArriveAndWait(parties, shared_cpu)) error = "workers did not start";
    if (error.empty() && measure_floor &&
        (floor_before = MeasureFloor(sync->floor, 1, kFloorRounds)) == 0) {
      error = "no answer to the ping-pong";
    }
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
      const uint64_t target = (it + 1) * config.consumers;
      if (!SpinUntil([&] { return sync->done.load(std::memory_order_acquire) >= target; },
                     kWaitTimeoutNs, shared_cpu)) {
        error = "consumer did not receive every record in time";
        break;
      }
      state.SetIterationTime(
          static_cast<double>(sync->done_ns.load(std::memory_order_relaxed) - start_ns) * 1e-9);
      ++it;
    }
    if (error.empty() && measure_floor &&
        (floor_after = MeasureFloor(sync->floor, kFloorRounds + 1, kFloorRounds)) == 0) {
      error = "no answer to the ping-pong";
    }
    preemptions.AddTo(sync->preemptions);
  }
  if (!error.empty()) sync->abort.store(1, std::memory_order_relaxed);
  const int64_t join_timeout = error.empty() ? kWaitTimeoutNs : 1'000'000'000;
  for (Worker& w : extra_producers) {
    const int rc = w.Join(join_timeout);
    if (rc != 0 && error.empty()) error = "producer worker exited with " + std::to_string(rc);
  }
  for (Worker& w : consumers) {
    const int rc = w.Join(join_timeout);
    if (rc != 0 && error.empty()) error = "consumer worker exited with " + std::to_string(rc);
  }
  FinishThroughput(state, config, *sync, share * iterations, std::move(error));
  if (measure_floor && !state.error_occurred()) ReportFloor(state, floor_before, floor_after);
}

struct LatencyConfig {
  Isolation isolation = Isolation::kProcess;
  uint32_t consumers = 1;  // each sees every record; > 1: they share CPU 1
  double gap_ns = 2000;    // at most one send per gap
  uint64_t warmup = 1000;  // records sent before the timed ones, not recorded
};

// make_sender() is called in the benchmark process and returns a callable
// bool(uint64_t stamp) that sends one record carrying `stamp` in its first 8
// bytes. receive(LatencyConsumer&) runs in each consumer worker, calls
// Received(stamp) for every record as soon as it sees it, and returns its
// exit code. Percentiles are over every (record, consumer) pair.
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
  const uint64_t samples_wanted = static_cast<uint64_t>(state.max_iterations);
  const uint64_t total = config.warmup + samples_wanted;
  const uint32_t parties = 1 + config.consumers;
  const bool consumers_share_cpu = config.consumers > 1;
  const bool measure_floor = config.consumers == 1;
  std::vector<Worker> consumers;
  for (uint32_t c = 0; c < config.consumers; ++c) {
    consumers.push_back(Worker::Start(config.isolation, kConsumerCpu, [&, c]() -> int {
      LatencyConsumer ctx(*sync, c, consumers_share_cpu, total);
      if (!sync->barrier.ArriveAndWait(parties, consumers_share_cpu)) return 2;
      if (measure_floor && !PingPongAnswer(sync->floor, 1, kFloorRounds, sync->abort)) return 5;
      const int rc = receive(ctx);
      if (rc == 0 && measure_floor &&
          !PingPongAnswer(sync->floor, kFloorRounds + 1, kFloorRounds, sync->abort)) {
        return 6;
      }
      return rc;
    }));
  }
  auto floor_one_way = [&](uint64_t first) {
    return MeasureFloor(sync->floor, first, kFloorRounds);
  };
  double floor_before = 0;
  double floor_after = 0;

  LatencySamples samples(samples_wanted * config.consumers);
  // How long send() itself took in the benchmark process (stamp to return):
  // the producer's share of the latency, including its cache-line stalls.
  LatencySamples send_samples(samples_wanted);
  std::string error;
  uint64_t stamp_sum = 0;
  {
    const PreemptionCounter preemptions;
    auto send = make_sender();
    if (!sync->barrier.ArriveAndWait(parties)) error = "workers did not start";
    if (error.empty() && measure_floor && (floor_before = floor_one_way(1)) == 0) {
      error = "no answer to the ping-pong";
    }
    const uint64_t gap = Tsc::FromNanos(config.gap_ns);
    uint64_t next_send = 0;
    uint64_t seq = 0;
    uint64_t one_way_ticks[kMaxConsumers] = {};
    // One paced record, acknowledged by every consumer. False on failure.
    auto round = [&](uint64_t* send_ticks) {
      while (Tsc::Now() < next_send) CpuRelax();
      const uint64_t stamp = Tsc::Now();
      next_send = stamp + gap;
      ++seq;
      stamp_sum += stamp;
      if (!send(stamp)) {
        error = "send failed";
        return false;
      }
      *send_ticks = Tsc::Now() - stamp;
      for (uint32_t c = 0; c < config.consumers; ++c) {
        RunSync::Ack& ack = sync->acks[c];
        if (!SpinUntil([&] { return ack.seq.load(std::memory_order_acquire) >= seq; })) {
          error = "consumer did not see the record in time";
          return false;
        }
        one_way_ticks[c] = ack.ticks.load(std::memory_order_relaxed);
      }
      return true;
    };
    uint64_t send_ticks = 0;
    // Warm-up, not recorded: the first records pay for cold caches and TLBs.
    for (uint64_t i = 0; i < config.warmup && error.empty(); ++i) (void)round(&send_ticks);
    for (auto _ : state) {
      if (!error.empty() || !round(&send_ticks)) break;
      send_samples.Add(send_ticks);
      uint64_t last = 0;
      for (uint32_t c = 0; c < config.consumers; ++c) {
        samples.Add(one_way_ticks[c]);
        last = std::max(last, one_way_ticks[c]);
      }
      state.SetIterationTime(Tsc::ToNanos(last) * 1e-9);
    }
    if (error.empty() && measure_floor && (floor_after = floor_one_way(kFloorRounds + 1)) == 0) {
      error = "no answer to the ping-pong";
    }
    preemptions.AddTo(sync->preemptions);
  }
  if (!error.empty()) sync->abort.store(1, std::memory_order_relaxed);
  for (Worker& w : consumers) {
    const int rc = w.Join(error.empty() ? kWaitTimeoutNs : 1'000'000'000);
    if (rc != 0 && error.empty()) error = "consumer worker exited with " + std::to_string(rc);
  }
  const uint64_t expected = total * config.consumers;
  if (error.empty() &&
      (sync->records.load() != expected || sync->checksum.load() != stamp_sum * config.consumers)) {
    error = "consumers saw " + std::to_string(sync->records.load()) + " of " +
            std::to_string(expected) + " records or a wrong checksum";
  }
  if (!error.empty()) {
    state.SkipWithError(error.c_str());
    return;
  }
  samples.Report(state);
  state.counters["send_p50_ns"] = send_samples.Summarize().p50_ns;
  if (measure_floor) {
    ReportFloor(state, floor_before, floor_after);
    state.counters["vs_floor"] = samples.Summarize().p50_ns / ((floor_before + floor_after) / 2);
  }
  ReportPreemptions(state, *sync);
  if (sync->clock_skews.load() != 0) {
    state.counters["clock_skews"] = static_cast<double>(sync->clock_skews.load());
  }
}

}  // namespace runnel::bench

#endif  // RUNNEL_BENCH_DRIVERS_H_
