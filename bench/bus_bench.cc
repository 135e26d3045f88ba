// The bus through its public API (ipc/bus.h): producer and consumer
// processes on one topic with one partition, 64-byte records, next to the
// raw-ring figures of the same run (bench/ring_bench.cc).
//
// Every process opens the bus by name itself (objects made before fork() are
// not used in a child). The topic is single_producer (SPSC ring) for one
// producer, multi-producer otherwise; its ring is 1 MiB like the raw ring's.
// No broker runs (nothing here needs housekeeping) and the topic is not
// durable, so nothing gates the producers.
//
// Bus consumers are not gating readers: a producer may lap them. One
// throughput iteration is 4000 records (under half a lap of 120-byte frames)
// and the next iteration starts only when every consumer has them all, so no
// consumer can be lapped; an overrun would still be reported as an error.
//
// Producer: TryClaim -> fill in place -> Commit (zero-copy). Consumer:
// PollFor(handler, 1024, ...) with WaitStrategy::kBusySpin, or kSpinYield
// when several consumers share CPU 1 (3 consumers + producers > 2 vCPUs:
// those rows measure an oversubscribed machine).

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "bench/benchmarks.h"
#include "bench/drivers.h"
#include "bench/harness.h"
#include "ipc/bus.h"

namespace runnel::bench {
namespace {

constexpr char kTopic[] = "bench";
constexpr uint64_t kBusRingBytes = 1 << 20;
constexpr uint32_t kPollLimit = 1024;

// A uniquely named bus with one topic; its /dev/shm files are removed at the end.
class BusFixture {
 public:
  explicit BusFixture(bool single_producer) {
    static int counter = 0;
    name_ = "runnel_bench_" + std::to_string(getpid()) + "_" + std::to_string(++counter);
    (void)Bus::Remove(name_);
    Result<Bus> bus = Bus::Open(name_);
    if (!bus.ok()) {
      error_ = bus.status().ToString();
      return;
    }
    bus_.emplace(std::move(*bus));
    TopicOptions topic;
    topic.partitions = 1;
    topic.ring_bytes = kBusRingBytes;
    topic.single_producer = single_producer;
    topic.durable = false;
    const Status s = bus_->CreateTopic(kTopic, topic);
    if (!s.ok()) error_ = s.ToString();
  }
  ~BusFixture() {
    bus_.reset();
    (void)Bus::Remove(name_);
  }
  const std::string& error() const { return error_; }
  Bus& bus() { return *bus_; }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::optional<Bus> bus_;
  std::string error_;
};

// Sends through the Producer API; kFull (not expected: nothing gates) spins.
class BusSender {
 public:
  BusSender(Producer producer, uint32_t id, uint32_t payload)
      : producer_(std::move(producer)),
        id_(id),
        payload_(payload),
        filler_(payload, std::byte{0x5A}) {}

  bool Produce(uint64_t first_seq, uint64_t count, const std::atomic<uint32_t>& abort) {
    for (uint64_t seq = first_seq; seq < first_seq + count; ++seq) {
      ProducerClaim claim = Claim(abort);
      if (!claim.ok()) return false;
      FillPayload(claim.value().data(), payload_, id_, seq, filler_.data());
      if (producer_.Commit(claim) != SendStatus::kOk) return false;
    }
    return true;
  }

  bool SendStamp(uint64_t stamp) {
    static const std::atomic<uint32_t> never{0};
    ProducerClaim claim = Claim(never);
    if (!claim.ok()) return false;
    std::byte* v = claim.value().data();
    std::memcpy(v, &stamp, sizeof stamp);
    if (payload_ > 8) std::memcpy(v + 8, filler_.data(), payload_ - 8);
    return producer_.Commit(claim) == SendStatus::kOk;
  }

 private:
  // One returned object (built in place by TryClaim): a claim is not moved
  // on the common path.
  ProducerClaim Claim(const std::atomic<uint32_t>& abort) {
    ProducerClaim claim = producer_.TryClaim(0, 0, 0, payload_, false);
    if (claim.status() == SendStatus::kFull) {
      (void)SpinUntil([&] {
        claim = producer_.TryClaim(0, 0, 0, payload_, false);
        return claim.status() != SendStatus::kFull || abort.load(std::memory_order_relaxed) != 0;
      });
      if (!claim.ok() || abort.load(std::memory_order_relaxed) != 0) claim = ProducerClaim();
    }
    return claim;
  }

  Producer producer_;
  uint32_t id_;
  uint32_t payload_;
  std::vector<std::byte> filler_;
};

std::optional<BusSender> MakeSender(Bus& bus, uint32_t id, uint32_t payload) {
  Result<Producer> p = bus.CreateProducer(kTopic);
  if (!p.ok()) return std::nullopt;
  return BusSender(std::move(*p), id, payload);
}

// Runs in a consumer worker: opens the bus by name and subscribes to the
// topic from its earliest record, before the start barrier.
std::optional<Consumer> Subscribe(std::optional<Bus>& bus, const std::string& name, bool shares_cpu,
                                  bool zero_copy) {
  BusOptions bus_options;
  bus_options.create_if_missing = false;
  Result<Bus> b = Bus::Open(name, bus_options);
  if (!b.ok()) return std::nullopt;
  bus.emplace(std::move(*b));
  ConsumerOptions options;
  options.start = StartPosition::Earliest();
  options.wait = shares_cpu ? WaitStrategy::kSpinYield : WaitStrategy::kBusySpin;
  options.zero_copy = zero_copy;
  Result<Consumer> c = bus->CreateConsumer(kTopic, options);
  if (!c.ok()) return std::nullopt;
  return std::move(*c);
}

void BusThroughput(benchmark::State& state, uint32_t producers, uint32_t consumers,
                   bool zero_copy) {
  BusFixture fixture(/*single_producer=*/producers == 1);
  if (!fixture.error().empty()) {
    state.SkipWithError(fixture.error().c_str());
    return;
  }
  constexpr uint32_t kPayload = 64;
  ThroughputConfig config;
  config.producers = producers;
  config.consumers = consumers;
  config.payload = kPayload;
  config.records_per_iteration = 4000;
  RunThroughput(
      state, config,
      [&](uint32_t producer) {
        // Worker producers open the bus themselves, like another process.
        std::optional<Bus> own;
        Bus* bus = &fixture.bus();
        if (producer != 0) {
          BusOptions o;
          o.create_if_missing = false;
          Result<Bus> b = Bus::Open(fixture.name(), o);
          if (b.ok()) own.emplace(std::move(*b));
          bus = own ? &*own : nullptr;
        }
        std::optional<BusSender> sender;
        if (bus != nullptr) sender = MakeSender(*bus, producer, kPayload);
        return [own = std::move(own), sender = std::move(sender)](
                   uint64_t first, uint64_t count, const std::atomic<uint32_t>& abort) mutable {
          return sender && sender->Produce(first, count, abort);
        };
      },
      [&](ThroughputConsumer& ctx) -> int {
        std::optional<Bus> bus;
        std::optional<Consumer> consumer =
            Subscribe(bus, fixture.name(), ctx.shares_cpu(), zero_copy);
        if (!consumer) return 10;
        PayloadChecker& checker = ctx.checker();
        auto handler = [&](const ConsumerRecord& r) {
          const std::string_view value = r.value();
          checker.Check(value.data(), value.size());
        };
        while (!ctx.finished()) {
          const PollResult r =
              consumer->PollFor(handler, kPollLimit, std::chrono::milliseconds(10));
          if (!r.ok()) return 11;  // an overrun would mean lost records
          if (r.records > 0) {
            ctx.Delivered(r.records);
          } else if (ctx.ShouldGiveUp()) {
            return 12;
          }
        }
        return ctx.Finish();
      });
}

void BusLatency(benchmark::State& state, bool single_producer, uint32_t consumers, bool zero_copy) {
  BusFixture fixture(single_producer);
  if (!fixture.error().empty()) {
    state.SkipWithError(fixture.error().c_str());
    return;
  }
  LatencyConfig config;
  config.consumers = consumers;
  RunLatency(
      state, config,
      [&] {
        std::optional<BusSender> sender = MakeSender(fixture.bus(), 0, 64);
        return [sender = std::move(sender)](uint64_t stamp) mutable {
          return sender && sender->SendStamp(stamp);
        };
      },
      [&](LatencyConsumer& ctx) -> int {
        std::optional<Bus> bus;
        std::optional<Consumer> consumer =
            Subscribe(bus, fixture.name(), ctx.shares_cpu(), zero_copy);
        if (!consumer) return 10;
        auto handler = [&](const ConsumerRecord& r) {
          uint64_t stamp;
          std::memcpy(&stamp, r.value().data(), sizeof stamp);
          ctx.Received(stamp);
        };
        while (!ctx.finished()) {
          const PollResult r = consumer->PollFor(handler, 1, std::chrono::milliseconds(10));
          if (!r.ok()) return 11;
          if (r.records == 0 && ctx.ShouldGiveUp()) return 12;
        }
        return ctx.Finish();
      });
}

}  // namespace

void RegisterBusBenchmarks() {
  for (uint32_t producers : {1u, 2u}) {
    for (uint32_t consumers : {1u, 3u}) {
      const std::string name = "bus_throughput/" + std::to_string(producers) + "p_" +
                               std::to_string(consumers) + "c/64B";
      benchmark::RegisterBenchmark(name.c_str(), BusThroughput, producers, consumers, false)
          ->UseManualTime()
          ->Iterations(100)
          ->Unit(benchmark::kMillisecond);
    }
  }
  // The consumer's default copies each record out of the ring and validates
  // it (ConsumerOptions::zero_copy); this row hands views into the ring, so
  // the two 1p_1c rows of a run give the cost of the copy.
  benchmark::RegisterBenchmark("bus_throughput/1p_1c/64B/zero_copy", BusThroughput, 1u, 1u, true)
      ->UseManualTime()
      ->Iterations(100)
      ->Unit(benchmark::kMillisecond);
  struct Shape {
    const char* name;
    bool single_producer;
    uint32_t consumers;
    bool zero_copy;
  };
  for (const Shape& s : {Shape{"bus_latency/spsc_topic_1c/64B", true, 1, false},
                         Shape{"bus_latency/mpmc_topic_1c/64B", false, 1, false},
                         Shape{"bus_latency/spsc_topic_3c/64B", true, 3, false},
                         Shape{"bus_latency/spsc_topic_1c/64B/zero_copy", true, 1, true}}) {
    benchmark::RegisterBenchmark(s.name, BusLatency, s.single_producer, s.consumers, s.zero_copy)
        ->UseManualTime()
        ->Iterations(s.consumers == 1 ? kLatencySamples : kLatencySamples / 10)
        ->Unit(benchmark::kNanosecond);
  }
}

}  // namespace runnel::bench
