// Baselines measured in the same run as the ring, with the same drivers and
// placement (benchmark process on CPU 0, worker on CPU 1):
//  - a hand-written cache-line ping-pong between two processes: the physical
//    floor of any cross-core hand-off on this machine;
//  - boost::interprocess::message_queue between two processes (depth 1024,
//    blocking send/receive: its normal use);
//  - moodycamel ReaderWriterQueue and ConcurrentQueue between two threads
//    (in-process queues; single-item try_enqueue/try_dequeue with a
//    preallocated capacity of 16384 elements, i.e. 1 MiB of 64-byte
//    elements like the ring's 1 MiB, so no allocation happens while timing).

#include <concurrentqueue/concurrentqueue.h>
#include <readerwriterqueue/readerwriterqueue.h>
#include <unistd.h>

#include <boost/interprocess/ipc/message_queue.hpp>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "bench/benchmarks.h"
#include "bench/drivers.h"
#include "bench/harness.h"

namespace runnel::bench {
namespace {

// ---------------------------------------------------------------------------
// Cache-line ping-pong: one 64-byte line per direction, 128 bytes apart. The
// benchmark process writes `ping`, the worker answers on `pong`. One
// iteration = one round trip, timed with the TSC in the benchmark process
// (manual time: the real time would include the loop's bookkeeping).

struct PingPongShared {
  StartBarrier barrier;
  PingPongLines lines;
  alignas(kFalseSharingRange) std::atomic<uint32_t> abort{0};
  std::atomic<uint64_t> preemptions{0};
};

void PingPong(benchmark::State& state) {
  if (!HaveTwoCpus() || !PinThisThreadToCpu(kProducerCpu)) {
    state.SkipWithError("needs CPUs 0 and 1");
    return;
  }
  Shared<PingPongShared> shared;
  const uint64_t total = static_cast<uint64_t>(state.max_iterations);
  Worker worker = Worker::Start(Isolation::kProcess, kConsumerCpu, [&]() -> int {
    const PreemptionCounter preemptions;
    if (!shared->barrier.ArriveAndWait(2)) return 2;
    if (!PingPongAnswer(shared->lines, 1, total, shared->abort)) return 3;
    preemptions.AddTo(shared->preemptions);
    return 0;
  });
  LatencySamples rtt(total);
  const PreemptionCounter preemptions;
  std::string error;
  if (!shared->barrier.ArriveAndWait(2)) error = "worker did not start";
  uint64_t seq = 0;
  for (auto _ : state) {
    if (!error.empty()) break;
    const uint64_t ticks = PingPongRound(shared->lines, ++seq);
    if (ticks == 0) {
      error = "no answer";
      break;
    }
    rtt.Add(ticks);
    state.SetIterationTime(Tsc::ToNanos(ticks) * 1e-9);
  }
  preemptions.AddTo(shared->preemptions);
  if (!error.empty()) shared->abort.store(1, std::memory_order_relaxed);
  const int rc = worker.Join(error.empty() ? kWaitTimeoutNs : 1'000'000'000);
  if (rc != 0 && error.empty()) error = "worker exited with " + std::to_string(rc);
  if (!error.empty()) {
    state.SkipWithError(error.c_str());
    return;
  }
  const LatencySamples::Summary s = rtt.Summarize();
  state.counters["rtt_p50_ns"] = s.p50_ns;
  state.counters["rtt_p99_ns"] = s.p99_ns;
  state.counters["rtt_max_ns"] = s.max_ns;
  state.counters["one_way_ns"] = s.p50_ns / 2;
  ReportFloor(state, s.p50_ns / 2, s.p50_ns / 2);
  state.counters["preemptions"] = static_cast<double>(shared->preemptions.load());
}

// ---------------------------------------------------------------------------
// boost::interprocess::message_queue

namespace bip = boost::interprocess;
constexpr std::size_t kMqDepth = 1024;

// A uniquely named queue, removed from /dev/shm when the benchmark ends.
class NamedQueue {
 public:
  NamedQueue(uint32_t payload)
      : name_("runnel_bench_mq_" + std::to_string(getpid()) + "_" + std::to_string(payload)) {
    bip::message_queue::remove(name_.c_str());
    queue_ =
        std::make_unique<bip::message_queue>(bip::create_only, name_.c_str(), kMqDepth, payload);
  }
  ~NamedQueue() {
    queue_.reset();
    bip::message_queue::remove(name_.c_str());
  }
  bip::message_queue& queue() { return *queue_; }
  // The worker opens the queue by name, like an unrelated process would.
  std::unique_ptr<bip::message_queue> Open() const {
    return std::make_unique<bip::message_queue>(bip::open_only, name_.c_str());
  }

 private:
  std::string name_;
  std::unique_ptr<bip::message_queue> queue_;
};

void BoostMqThroughput(benchmark::State& state, uint32_t payload) {
  try {
    NamedQueue q(payload);
    ThroughputConfig config;
    config.payload = payload;
    config.records_per_iteration = 50'000;
    RunThroughput(
        state, config,
        [&](uint32_t) {
          return [&, buf = std::vector<std::byte>(payload),
                  filler = std::vector<std::byte>(payload, std::byte{0x5A})](
                     uint64_t first, uint64_t count, const std::atomic<uint32_t>&) mutable {
            for (uint64_t seq = first; seq < first + count; ++seq) {
              FillPayload(buf.data(), payload, 0, seq, filler.data());
              q.queue().send(buf.data(), payload, 0);  // blocks while the queue is full
            }
            return true;
          };
        },
        [&](ThroughputConsumer& ctx) -> int {
          try {
            std::unique_ptr<bip::message_queue> mq = q.Open();
            std::vector<std::byte> buf(payload);
            while (!ctx.finished()) {
              bip::message_queue::size_type got = 0;
              unsigned int priority = 0;
              mq->receive(buf.data(), buf.size(), got, priority);  // blocks while empty
              ctx.checker().Check(buf.data(), got);
              ctx.Delivered(1);
            }
            return ctx.Finish();
          } catch (const std::exception&) {
            return 20;
          }
        });
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void BoostMqLatency(benchmark::State& state, uint32_t payload) {
  try {
    NamedQueue q(payload);
    RunLatency(
        state, LatencyConfig{},
        [&] {
          return [&, buf = std::vector<std::byte>(payload)](uint64_t stamp) mutable {
            std::memcpy(buf.data(), &stamp, sizeof stamp);
            q.queue().send(buf.data(), payload, 0);
            return true;
          };
        },
        [&](LatencyConsumer& ctx) -> int {
          try {
            std::unique_ptr<bip::message_queue> mq = q.Open();
            std::vector<std::byte> buf(payload);
            while (!ctx.finished()) {
              bip::message_queue::size_type got = 0;
              unsigned int priority = 0;
              mq->receive(buf.data(), buf.size(), got, priority);  // sleeps while empty
              uint64_t stamp;
              std::memcpy(&stamp, buf.data(), sizeof stamp);
              ctx.Received(stamp);
            }
            return ctx.Finish();
          } catch (const std::exception&) {
            return 20;
          }
        });
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// ---------------------------------------------------------------------------
// moodycamel queues between two threads.

constexpr std::size_t kMoodyCapacity = 16384;
template <std::size_t N>
struct Msg {
  std::byte bytes[N];
};
using Msg64 = Msg<64>;

// Two threads, N-byte elements, 200,000 per iteration.
ThroughputConfig MoodyConfig(std::size_t payload = sizeof(Msg64)) {
  ThroughputConfig config;
  config.isolation = Isolation::kThread;
  config.payload = static_cast<uint32_t>(payload);
  config.records_per_iteration = 200'000;
  return config;
}

template <typename Element = Msg64, typename Queue>
int ConsumeMoody(ThroughputConsumer& ctx, Queue& q) {
  Element m;
  while (!ctx.finished()) {
    if (q.try_dequeue(m)) {
      ctx.checker().Check(m.bytes, sizeof m.bytes);
      ctx.Delivered(1);
    } else if (!SpinUntil([&] { return q.try_dequeue(m); }, 10'000'000)) {
      if (ctx.ShouldGiveUp()) return 12;
    } else {
      ctx.checker().Check(m.bytes, sizeof m.bytes);
      ctx.Delivered(1);
    }
  }
  return ctx.Finish();
}

template <std::size_t N>
void MoodyReaderWriterQueue(benchmark::State& state) {
  moodycamel::ReaderWriterQueue<Msg<N>> q(kMoodyCapacity);
  const ThroughputConfig config = MoodyConfig(N);
  RunThroughput(
      state, config,
      [&](uint32_t) {
        return [&, filler = std::vector<std::byte>(N, std::byte{0x5A})](
                   uint64_t first, uint64_t count, const std::atomic<uint32_t>& abort) {
          Msg<N> m;
          for (uint64_t seq = first; seq < first + count; ++seq) {
            FillPayload(m.bytes, sizeof m.bytes, 0, seq, filler.data());
            if (!q.try_enqueue(m) && (!SpinUntil([&] {
                  return q.try_enqueue(m) || abort.load() != 0;
                }) || abort.load() != 0)) {
              return false;
            }
          }
          return true;
        };
      },
      [&](ThroughputConsumer& ctx) { return ConsumeMoody<Msg<N>>(ctx, q); });
}

// ConcurrentQueue's consumer side without a token, through a tokenless
// adaptor, would take a slower path; both sides use tokens (its fast path).
struct ConcurrentQueueConsumer {
  moodycamel::ConcurrentQueue<Msg64>& q;
  moodycamel::ConsumerToken token;
  bool try_dequeue(Msg64& m) { return q.try_dequeue(token, m); }
};

void MoodyConcurrentQueue(benchmark::State& state) {
  moodycamel::ConcurrentQueue<Msg64> q(kMoodyCapacity);
  const ThroughputConfig config = MoodyConfig();
  // The producer token lives across iterations: its blocks are the ones
  // preallocated by the constructor, reused as the consumer frees them.
  std::unique_ptr<moodycamel::ProducerToken> token;
  RunThroughput(
      state, config,
      [&](uint32_t) {
        token = std::make_unique<moodycamel::ProducerToken>(q);
        return [&, filler = std::vector<std::byte>(sizeof(Msg64), std::byte{0x5A})](
                   uint64_t first, uint64_t count, const std::atomic<uint32_t>& abort) {
          Msg64 m;
          for (uint64_t seq = first; seq < first + count; ++seq) {
            FillPayload(m.bytes, sizeof m.bytes, 0, seq, filler.data());
            if (!q.try_enqueue(*token, m) && (!SpinUntil([&] {
                  return q.try_enqueue(*token, m) || abort.load() != 0;
                }) || abort.load() != 0)) {
              return false;
            }
          }
          return true;
        };
      },
      [&](ThroughputConsumer& ctx) {
        ConcurrentQueueConsumer consumer{q, moodycamel::ConsumerToken(q)};
        return ConsumeMoody(ctx, consumer);
      });
}

// The batched counterpart of the ring's batch32 rows: enqueue_bulk and
// try_dequeue_bulk, 32 items at a time, with tokens.
void MoodyConcurrentQueueBulk(benchmark::State& state) {
  constexpr std::size_t kBulk = 32;
  moodycamel::ConcurrentQueue<Msg64> q(kMoodyCapacity);
  const ThroughputConfig config = MoodyConfig();
  std::unique_ptr<moodycamel::ProducerToken> token;
  RunThroughput(
      state, config,
      [&](uint32_t) {
        token = std::make_unique<moodycamel::ProducerToken>(q);
        return [&, filler = std::vector<std::byte>(sizeof(Msg64), std::byte{0x5A})](
                   uint64_t first, uint64_t count, const std::atomic<uint32_t>& abort) {
          std::vector<Msg64> batch(kBulk);
          for (uint64_t seq = first; seq < first + count;) {
            const std::size_t n = std::min<uint64_t>(kBulk, first + count - seq);
            for (std::size_t i = 0; i < n; ++i) {
              FillPayload(batch[i].bytes, sizeof(Msg64), 0, seq + i, filler.data());
            }
            if (!q.try_enqueue_bulk(*token, batch.data(), n) && (!SpinUntil([&] {
                  return q.try_enqueue_bulk(*token, batch.data(), n) || abort.load() != 0;
                }) || abort.load() != 0)) {
              return false;
            }
            seq += n;
          }
          return true;
        };
      },
      [&](ThroughputConsumer& ctx) {
        moodycamel::ConsumerToken consumer(q);
        std::vector<Msg64> batch(kBulk);
        while (!ctx.finished()) {
          std::size_t n = q.try_dequeue_bulk(consumer, batch.data(), kBulk);
          if (n == 0 && !SpinUntil(
                            [&] {
                              n = q.try_dequeue_bulk(consumer, batch.data(), kBulk);
                              return n != 0;
                            },
                            10'000'000)) {
            if (ctx.ShouldGiveUp()) return 12;
            continue;
          }
          for (std::size_t i = 0; i < n; ++i) ctx.checker().Check(batch[i].bytes, sizeof(Msg64));
          ctx.Delivered(n);
        }
        return ctx.Finish();
      });
}

// ---------------------------------------------------------------------------
// A minimal SPSC slot ring in shared memory (diagnostic reference, not a
// target): 128-byte slots, each with its own sequence word written last
// (release) by the producer, so the consumer spins on the slot, not on a
// shared index; the consumer publishes its position once per 256 records.
// No record header, CRC, timestamp, claim marker or shared tail: the
// difference to the ring is what runnel's record protocol costs. The
// cas_publish variant publishes with a locked compare-exchange instead of a
// plain release store (as the ring's commit does), everything else equal.

struct MinimalRing {
  static constexpr uint64_t kSlots = 8192;  // 1 MiB of slots, like the ring
  static constexpr uint64_t kPublishEvery = 256;
  struct alignas(kFalseSharingRange) Slot {
    std::atomic<uint64_t> seq{0};  // record number + 1 when full
    std::byte payload[64];
  };
  alignas(kFalseSharingRange) std::atomic<uint64_t> consumed{0};  // consumer's position
  Slot slots[kSlots];
};

class MinimalSender {
 public:
  MinimalSender(MinimalRing& ring, uint32_t payload, bool cas_publish = false)
      : ring_(ring),
        payload_(payload),
        cas_publish_(cas_publish),
        filler_(payload, std::byte{0x5A}) {}
  bool Produce(uint64_t first, uint64_t count, const std::atomic<uint32_t>& abort) {
    for (uint64_t seq = first; seq < first + count; ++seq) {
      MinimalRing::Slot* slot = Claim(abort);
      if (slot == nullptr) return false;
      FillPayload(slot->payload, payload_, 0, seq, filler_.data());
      Publish(slot);
    }
    return true;
  }
  bool SendStamp(uint64_t stamp) {
    static const std::atomic<uint32_t> never{0};
    MinimalRing::Slot* slot = Claim(never);
    if (slot == nullptr) return false;
    std::memcpy(slot->payload, &stamp, sizeof stamp);
    Publish(slot);
    return true;
  }

 private:
  MinimalRing::Slot* Claim(const std::atomic<uint32_t>& abort) {
    if (next_ - consumed_cache_ >= MinimalRing::kSlots) {
      // Acquire: the consumer is done with the slots below its position.
      const bool room = SpinUntil([&] {
        consumed_cache_ = ring_.consumed.load(std::memory_order_acquire);
        return next_ - consumed_cache_ < MinimalRing::kSlots ||
               abort.load(std::memory_order_relaxed) != 0;
      });
      if (!room || abort.load(std::memory_order_relaxed) != 0) return nullptr;
    }
    return &ring_.slots[next_ % MinimalRing::kSlots];
  }
  void Publish(MinimalRing::Slot* slot) {
    ++next_;
    if (cas_publish_) {
      // seq_cst CAS (lock cmpxchg): drains the store buffer and waits for
      // ownership of the line the consumer is polling.
      uint64_t expected = slot->seq.load(std::memory_order_relaxed);
      while (!slot->seq.compare_exchange_weak(expected, next_, std::memory_order_seq_cst)) {
      }
      return;
    }
    // Release: the payload before the sequence the consumer spins on.
    slot->seq.store(next_, std::memory_order_release);
  }

  MinimalRing& ring_;
  uint32_t payload_;
  bool cas_publish_;
  std::vector<std::byte> filler_;
  uint64_t next_ = 0;
  uint64_t consumed_cache_ = 0;
};

// Calls on_record(payload) for the next record when it is there.
template <typename OnRecord>
bool MinimalReceive(MinimalRing& ring, uint64_t& next, OnRecord&& on_record) {
  MinimalRing::Slot& slot = ring.slots[next % MinimalRing::kSlots];
  // Acquire: pairs with the producer's release of the sequence.
  if (slot.seq.load(std::memory_order_acquire) != next + 1) return false;
  on_record(slot.payload);
  ++next;
  if (next % MinimalRing::kPublishEvery == 0) {
    ring.consumed.store(next, std::memory_order_release);
  }
  return true;
}

void MinimalRingThroughput(benchmark::State& state, bool cas_publish) {
  Shared<MinimalRing> ring;
  ThroughputConfig config;
  config.payload = 64;
  config.records_per_iteration = 200'000;
  RunThroughput(
      state, config,
      [&](uint32_t) {
        return [sender = MinimalSender(*ring, 64, cas_publish)](
                   uint64_t first, uint64_t count, const std::atomic<uint32_t>& abort) mutable {
          return sender.Produce(first, count, abort);
        };
      },
      [&](ThroughputConsumer& ctx) -> int {
        PrefaultInThisProcess(ring.bytes());
        uint64_t next = 0;
        auto on_record = [&](const std::byte* p) { ctx.checker().Check(p, 64); };
        while (!ctx.finished()) {
          uint32_t got = 0;
          while (got < 1024 && MinimalReceive(*ring, next, on_record)) ++got;
          if (got > 0) {
            ctx.Delivered(got);
          } else if (!SpinUntil(
                         [&] {
                           return ring->slots[next % MinimalRing::kSlots].seq.load(
                                      std::memory_order_acquire) == next + 1;
                         },
                         10'000'000) &&
                     ctx.ShouldGiveUp()) {
            return 12;
          }
        }
        return ctx.Finish();
      });
}

void MinimalRingLatency(benchmark::State& state) {
  Shared<MinimalRing> ring;
  RunLatency(
      state, LatencyConfig{},
      [&] {
        return [sender = MinimalSender(*ring, 64)](uint64_t stamp) mutable {
          return sender.SendStamp(stamp);
        };
      },
      [&](LatencyConsumer& ctx) -> int {
        PrefaultInThisProcess(ring.bytes());
        uint64_t next = 0;
        auto on_record = [&](const std::byte* p) {
          uint64_t stamp;
          std::memcpy(&stamp, p, sizeof stamp);
          ctx.Received(stamp);
        };
        while (!ctx.finished()) {
          if (!SpinUntil([&] { return MinimalReceive(*ring, next, on_record); }, 10'000'000) &&
              ctx.ShouldGiveUp()) {
            return 12;
          }
        }
        return ctx.Finish();
      });
}

}  // namespace

void RegisterBaselineBenchmarks() {
  benchmark::RegisterBenchmark("baseline/pingpong", PingPong)
      ->UseManualTime()
      ->Iterations(kLatencySamples)
      ->Unit(benchmark::kNanosecond);
  for (uint32_t payload : {8u, 64u}) {
    const std::string name = "baseline/boost_mq_throughput/" + std::to_string(payload) + "B";
    benchmark::RegisterBenchmark(name.c_str(), BoostMqThroughput, payload)
        ->UseManualTime()
        ->Iterations(10)
        ->Unit(benchmark::kMillisecond);
  }
  // Blocking receive: every record wakes a sleeping process (futex).
  benchmark::RegisterBenchmark("baseline/boost_mq_latency/64B", BoostMqLatency, 64u)
      ->UseManualTime()
      ->Iterations(kLatencySamples / 10)
      ->Unit(benchmark::kNanosecond);
  benchmark::RegisterBenchmark("baseline/moodycamel_rwq_throughput/8B", MoodyReaderWriterQueue<8>)
      ->UseManualTime()
      ->Iterations(10)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("baseline/moodycamel_rwq_throughput/64B", MoodyReaderWriterQueue<64>)
      ->UseManualTime()
      ->Iterations(10)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("baseline/moodycamel_cq_throughput/64B", MoodyConcurrentQueue)
      ->UseManualTime()
      ->Iterations(10)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("baseline/moodycamel_cq_bulk32_throughput/64B",
                               MoodyConcurrentQueueBulk)
      ->UseManualTime()
      ->Iterations(10)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("diag/minimal_slot_ring_throughput/64B", MinimalRingThroughput,
                               false)
      ->UseManualTime()
      ->Iterations(10)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("diag/minimal_slot_ring_throughput/64B/cas_publish",
                               MinimalRingThroughput, true)
      ->UseManualTime()
      ->Iterations(10)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("diag/minimal_slot_ring_latency/64B", MinimalRingLatency)
      ->UseManualTime()
      ->Iterations(kLatencySamples)
      ->Unit(benchmark::kNanosecond);
}

}  // namespace runnel::bench
