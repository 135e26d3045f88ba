// The core ring between two processes: throughput (SPSC, MPMC with one and
// two producers) and one-way latency, plus single-process diagnostics.
//
// Producer side: RingProducer::try_claim -> fill the payload in place ->
// commit (the zero-copy path; commit stamps the wall clock and the CRC32C).
// Consumer side: a gating reader (its own slot), read(handler, 1024) and
// AdvanceGatingSlot after every batch, RingReader::Wait(kBusySpin) when
// there is nothing to read. A gating reader is never overrun, so every record
// must arrive: the consumer checks count, sequence and checksum.

#include <sched.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "bench/benchmarks.h"
#include "bench/drivers.h"
#include "bench/harness.h"
#include "core/clock.h"
#include "core/record.h"
#include "core/ring.h"

namespace runnel::bench {
namespace {

constexpr uint64_t kRingCapacity = 1 << 20;  // the RingOptions default
constexpr uint32_t kReadBatch = 1024;
constexpr uint64_t kGatingOwner = 1;

// A ring in its own shared mapping, with one gating slot for the consumer.
struct SharedRing {
  SharedMapping memory;
  std::optional<Ring> ring;
  uint32_t slot = 0;
  std::string error;

  explicit SharedRing(RingMode mode) : memory(Ring::RequiredBytes(kRingCapacity)) {
    if (!memory.ok()) {
      error = "mmap failed";
      return;
    }
    RingOptions options;
    options.capacity = kRingCapacity;
    options.mode = mode;
    Result<Ring> r = Ring::Create(memory.span(), options);
    if (!r.ok()) {
      error = r.status().ToString();
      return;
    }
    Result<uint32_t> s = r->AcquireGatingSlot(kGatingOwner, r->tail());
    if (!s.ok()) {
      error = s.status().ToString();
      return;
    }
    ring = *r;
    slot = *s;
  }
};

// Sends records through one RingProducer. On kFull (the consumer has not
// released space yet) it spins, or yields when it shares its CPU with another
// producer, which may be the one holding the claim the consumer waits for.
class RingSender {
 public:
  // batch > 1: commit_deferred, and publish() after every `batch` records.
  // record_batch_bytes > 0: RecordBatch frames of at most that many bytes
  // (core/batch.h) instead of one frame per record.
  RingSender(Ring ring, uint32_t producer, uint32_t payload, bool yield_when_full,
             uint32_t batch = 1, uint32_t record_batch_bytes = 0)
      : producer_(ring),
        id_(producer),
        payload_(payload),
        yield_(yield_when_full),
        batch_(batch),
        filler_(payload, std::byte{0x5A}),
        record_batch_(record_batch_bytes),
        record_batches_(record_batch_bytes > 0) {}

  bool Produce(uint64_t first_seq, uint64_t count, const std::atomic<uint32_t>& abort) {
    if (record_batches_) return ProduceBatches(first_seq, count, abort);
    for (uint64_t seq = first_seq; seq < first_seq + count; ++seq) {
      RingClaim claim = Claim(abort);
      if (!claim.ok()) return false;
      FillPayload(claim.value().data(), payload_, id_, seq, filler_.data());
      if (batch_ <= 1) {
        if (producer_.commit(claim) != CommitStatus::kOk) return false;
        continue;
      }
      if (producer_.commit_deferred(claim) != CommitStatus::kOk) return false;
      if ((seq + 1 - first_seq) % batch_ == 0 && producer_.publish().unblocked != 0) return false;
    }
    return producer_.publish().unblocked == 0;
  }

  // One record carrying `stamp` (latency benchmarks).
  // One record carrying `stamp` (latency benchmarks). give_timestamp: set
  // the record's timestamp (any nonzero value) so commit() does not read the
  // wall clock.
  bool SendStamp(uint64_t stamp, bool give_timestamp = false) {
    static const std::atomic<uint32_t> never{0};
    RingClaim claim = Claim(never);
    if (!claim.ok()) return false;
    std::byte* v = claim.value().data();
    std::memcpy(v, &stamp, sizeof stamp);
    if (payload_ > 8) std::memcpy(v + 8, filler_.data(), payload_ - 8);
    if (give_timestamp) claim.set_timestamp(static_cast<int64_t>(stamp));
    return producer_.commit(claim) == CommitStatus::kOk;
  }

 private:
  // Each record is made in a scratch buffer and appended to the batch, as a
  // user would; a full batch is written (spinning while the ring is full).
  bool ProduceBatches(uint64_t first_seq, uint64_t count, const std::atomic<uint32_t>& abort) {
    std::byte record[1024];
    if (payload_ > sizeof record) return false;
    for (uint64_t seq = first_seq; seq < first_seq + count; ++seq) {
      FillPayload(record, payload_, id_, seq, filler_.data());
      const std::string_view value(reinterpret_cast<const char*>(record), payload_);
      BatchAppend a = record_batch_.Append(value);
      if (a == BatchAppend::kFull) {
        if (!WriteBatch(abort)) return false;
        a = record_batch_.Append(value);
      }
      if (a != BatchAppend::kOk) return false;
    }
    return record_batch_.empty() || WriteBatch(abort);
  }

  bool WriteBatch(const std::atomic<uint32_t>& abort) {
    WriteResult w = producer_.try_write(record_batch_);
    if (w.status == ClaimStatus::kFull) {
      (void)SpinUntil(
          [&] {
            w = producer_.try_write(record_batch_);
            return w.status != ClaimStatus::kFull || abort.load(std::memory_order_relaxed) != 0;
          },
          kWaitTimeoutNs, yield_);
    }
    record_batch_.Clear();
    return w.ok();
  }

  // One returned object (built in place by try_claim): a claim is not moved
  // on the common path.
  RingClaim Claim(const std::atomic<uint32_t>& abort) {
    RingClaim claim = producer_.try_claim(0, 0, payload_, false);
    if (claim.status() == ClaimStatus::kFull) {
      (void)SpinUntil(
          [&] {
            claim = producer_.try_claim(0, 0, payload_, false);
            return claim.status() != ClaimStatus::kFull ||
                   abort.load(std::memory_order_relaxed) != 0;
          },
          kWaitTimeoutNs, yield_);
      if (!claim.ok() || abort.load(std::memory_order_relaxed) != 0) claim = RingClaim();
    }
    return claim;
  }

  RingProducer producer_;
  uint32_t id_;
  uint32_t payload_;
  bool yield_;
  uint32_t batch_;
  std::vector<std::byte> filler_;
  RecordBatch record_batch_;
  bool record_batches_;
};

// Consumer worker: attaches to the ring through the shared bytes (as another
// process would) and reads every record through its gating slot.
// idle_backoff_ns == 0: RingReader::Wait(kBusySpin) when there is nothing to
// read (the documented way). Otherwise (diagnostic) the consumer pauses that
// long without touching the ring before it polls again.
int ConsumeRing(ThroughputConsumer& ctx, std::span<std::byte> memory, uint32_t slot,
                double idle_backoff_ns, bool record_batches) {
  PrefaultInThisProcess(memory);
  Result<Ring> ring = Ring::Attach(memory);
  if (!ring.ok()) return 10;
  ReaderOptions options;
  options.batches = record_batches;
  RingReader reader(*ring, ring->GatingPosition(slot), options);
  PayloadChecker& checker = ctx.checker();
  auto handler = [&](const RecordView& v) {
    const std::string_view value = v.value();
    checker.Check(value.data(), value.size());
  };
  while (!ctx.finished()) {
    const ReadResult r = reader.read(handler, kReadBatch);
    if (r.status != ReadStatus::kOk) return 11;
    if (r.records > 0) {
      // Releases what we read: producers may now reuse that space.
      ring->AdvanceGatingSlot(slot, reader.position());
      ctx.Delivered(r.records);
    } else if (idle_backoff_ns > 0) {
      const uint64_t until = Tsc::Now() + Tsc::FromNanos(idle_backoff_ns);
      while (Tsc::Now() < until) CpuRelax();
      if (ctx.ShouldGiveUp()) return 12;
    } else if (!reader.Wait(WaitStrategy::kBusySpin, 10'000'000) && ctx.ShouldGiveUp()) {
      return 12;
    }
  }
  return ctx.Finish();
}

// How the latency consumer waits for the next record.
enum class LatencyWait {
  kWait,     // RingReader::Wait(kBusySpin), then read(): the documented way
  kHasData,  // spin on RingReader::HasData() (the frame's commit word only)
};

enum class Stamp { kWallClock, kGiven };  // who timestamps the record

int ReceiveRing(LatencyConsumer& ctx, std::span<std::byte> memory, uint32_t slot,
                LatencyWait wait) {
  PrefaultInThisProcess(memory);
  Result<Ring> ring = Ring::Attach(memory);
  if (!ring.ok()) return 10;
  RingReader reader(*ring, ring->GatingPosition(slot));
  auto handler = [&](const RecordView& v) {
    uint64_t stamp;
    std::memcpy(&stamp, v.value().data(), sizeof stamp);
    ctx.Received(stamp);
  };
  while (!ctx.finished()) {
    if (wait == LatencyWait::kWait) {
      if (!reader.Wait(WaitStrategy::kBusySpin, 10'000'000)) {
        if (ctx.ShouldGiveUp()) return 12;
        continue;
      }
    } else if (!SpinUntil([&] { return reader.HasData(); }, 10'000'000)) {
      if (ctx.ShouldGiveUp()) return 12;
      continue;
    }
    const ReadResult r = reader.read(handler, 1);
    if (r.status != ReadStatus::kOk) return 11;
    if (r.records > 0) ring->AdvanceGatingSlot(slot, reader.position());
  }
  return ctx.Finish();
}

// ---------------------------------------------------------------------------

void RingThroughput(benchmark::State& state, RingMode mode, uint32_t producers, uint32_t payload,
                    double idle_backoff_ns = 0, uint32_t batch = 1,
                    uint32_t record_batch_bytes = 0) {
  SharedRing shared(mode);
  if (!shared.error.empty()) {
    state.SkipWithError(shared.error.c_str());
    return;
  }
  ThroughputConfig config;
  config.producers = producers;
  config.payload = payload;
  config.records_per_iteration = payload >= 1024 ? 50'000 : 200'000;
  RunThroughput(
      state, config,
      [&](uint32_t producer) {
        // Worker producers attach through the shared bytes like another process
        // (the bytes were formatted before the fork, so Attach cannot fail).
        Ring ring = *shared.ring;
        if (producer != 0) {
          PrefaultInThisProcess(shared.memory.span());
          ring = Ring::Attach(shared.memory.span()).value();
        }
        return [sender =
                    RingSender(ring, producer, payload, producers > 1, batch, record_batch_bytes)](
                   uint64_t first, uint64_t count, const std::atomic<uint32_t>& abort) mutable {
          return sender.Produce(first, count, abort);
        };
      },
      [&](ThroughputConsumer& ctx) {
        return ConsumeRing(ctx, shared.memory.span(), shared.slot, idle_backoff_ns,
                           record_batch_bytes > 0);
      });
}

void RingLatency(benchmark::State& state, RingMode mode, uint32_t payload, LatencyWait wait,
                 Stamp stamp_kind = Stamp::kWallClock) {
  SharedRing shared(mode);
  if (!shared.error.empty()) {
    state.SkipWithError(shared.error.c_str());
    return;
  }
  RunLatency(
      state, LatencyConfig{},
      [&] {
        return [sender = RingSender(*shared.ring, 0, payload, false),
                given = stamp_kind == Stamp::kGiven](uint64_t stamp) mutable {
          return sender.SendStamp(stamp, given);
        };
      },
      [&](LatencyConsumer& ctx) {
        return ReceiveRing(ctx, shared.memory.span(), shared.slot, wait);
      });
}

// A single-producer ring in this process only (the diagnostics below).
Result<Ring> LocalRing(SharedMapping& memory) {
  RingOptions options;
  options.capacity = kRingCapacity;
  options.mode = RingMode::kSingleProducer;
  return Ring::Create(memory.span(), options);
}

// As RingProducerCost, through RecordBatch frames of at most 4 KiB: a
// record is made in a scratch buffer and appended; a full batch is written.
void RingBatchProducerCost(benchmark::State& state, uint32_t payload) {
  SharedMapping memory(Ring::RequiredBytes(kRingCapacity));
  Result<Ring> ring = LocalRing(memory);
  if (!ring.ok() || payload > 1024) {
    state.SkipWithError("ring setup failed");
    return;
  }
  RingProducer producer(*ring);
  RecordBatch batch(4096);
  std::vector<std::byte> filler(payload, std::byte{0x5A});
  std::byte record[1024];
  uint64_t seq = 0;
  for (auto _ : state) {
    FillPayload(record, payload, 0, seq, filler.data());
    const std::string_view value(reinterpret_cast<const char*>(record), payload);
    if (batch.Append(value) == BatchAppend::kFull) {
      if (!producer.try_write(batch).ok()) {
        state.SkipWithError("write failed");
        break;
      }
      batch.Clear();
      (void)batch.Append(value);
    }
    ++seq;
  }
  state.counters["records/s"] =
      benchmark::Counter(static_cast<double>(seq), benchmark::Counter::kIsRate);
}

// Single process, no consumer and no gating reader (the producer runs free
// around the ring): the cost of try_claim + fill + commit alone.
void RingProducerCost(benchmark::State& state, uint32_t payload, bool explicit_timestamp) {
  SharedMapping memory(Ring::RequiredBytes(kRingCapacity));
  Result<Ring> ring = LocalRing(memory);
  if (!ring.ok()) {
    state.SkipWithError(ring.status().ToString().c_str());
    return;
  }
  RingProducer producer(*ring);
  std::vector<std::byte> filler(payload, std::byte{0x5A});
  uint64_t seq = 0;
  for (auto _ : state) {
    RingClaim claim = producer.try_claim(0, 0, payload, false);
    if (!claim.ok()) {
      state.SkipWithError("claim failed");
      break;
    }
    FillPayload(claim.value().data(), payload, 0, seq, filler.data());
    if (explicit_timestamp) claim.set_timestamp(static_cast<int64_t>(seq) + 1);
    if (producer.commit(claim) != CommitStatus::kOk) {
      state.SkipWithError("commit failed");
      break;
    }
    ++seq;
  }
  state.counters["records/s"] =
      benchmark::Counter(static_cast<double>(seq), benchmark::Counter::kIsRate);
}

// Single process: the cost of RingReader::read per record, on a ring
// pre-filled (untimed) with one lap's worth of records.
void RingConsumerCost(benchmark::State& state, uint32_t payload) {
  SharedMapping memory(Ring::RequiredBytes(kRingCapacity));
  Result<Ring> ring = LocalRing(memory);
  if (!ring.ok()) {
    state.SkipWithError(ring.status().ToString().c_str());
    return;
  }
  const uint64_t per_lap = kRingCapacity / 2 / AlignedFrameLength(FrameLength(0, 0, payload));
  RingProducer producer(*ring);
  RingReader reader(*ring, ring->tail());
  std::vector<std::byte> filler(payload, std::byte{0x5A});
  PayloadChecker checker(1, payload);
  uint64_t seq = 0;
  uint64_t records = 0;
  for (auto _ : state) {
    state.PauseTiming();
    for (uint64_t i = 0; i < per_lap; ++i, ++seq) {
      RingClaim claim = producer.try_claim(0, 0, payload, false);
      FillPayload(claim.value().data(), payload, 0, seq, filler.data());
      (void)producer.commit(claim);
    }
    state.ResumeTiming();
    uint64_t got = 0;
    while (got < per_lap) {
      const ReadResult r = reader.read(
          [&](const RecordView& v) {
            const std::string_view value = v.value();
            checker.Check(value.data(), value.size());
          },
          kReadBatch);
      if (r.status != ReadStatus::kOk || r.records == 0) break;
      got += r.records;
    }
    records += got;
  }
  if (checker.errors() != 0 || checker.records() != seq) state.SkipWithError("lost records");
  state.counters["records/s"] =
      benchmark::Counter(static_cast<double>(records), benchmark::Counter::kIsRate);
}

// What commit() spends per record on its CRC32C (ComputeFrameCrc, ISA-L).
void FrameCrcCost(benchmark::State& state, uint32_t payload) {
  const uint32_t frame_length = static_cast<uint32_t>(FrameLength(0, 0, payload));
  std::vector<std::byte> frame(AlignedFrameLength(frame_length), std::byte{0x5A});
  for (auto _ : state) {
    benchmark::DoNotOptimize(frame.data());
    benchmark::DoNotOptimize(ComputeFrameCrc(frame.data(), frame_length));
  }
}

// What commit() spends per record on its stamp (no timestamp set):
// RecordClockNanos(), against the clock_gettime it replaces.
void RecordClockCost(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(RecordClockNanos());
}
void WallClockCost(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(WallClockNanos());
}

}  // namespace

void RegisterRingBenchmarks() {
  struct Mode {
    const char* name;
    RingMode mode;
    uint32_t producers;
  };
  const Mode modes[] = {{"spsc", RingMode::kSingleProducer, 1},
                        {"mpmc_1p", RingMode::kMultiProducer, 1},
                        {"mpmc_2p", RingMode::kMultiProducer, 2}};
  for (const Mode& m : modes) {
    for (uint32_t payload : {8u, 64u, 1024u}) {
      const std::string name =
          std::string("ring_throughput/") + m.name + "/" + std::to_string(payload) + "B";
      benchmark::RegisterBenchmark(name.c_str(), RingThroughput, m.mode, m.producers, payload, 0.0,
                                   1u, 0u)
          ->UseManualTime()
          ->Iterations(10)
          ->Unit(benchmark::kMillisecond);
    }
  }
  // Batching (commit_deferred + publish every 32 records): another API, so
  // another name; the targets are taken on the one-record-at-a-time rows.
  for (uint32_t payload : {8u, 64u}) {
    const std::string name = "ring_throughput/spsc/" + std::to_string(payload) + "B/batch32";
    benchmark::RegisterBenchmark(name.c_str(), RingThroughput, RingMode::kSingleProducer, 1u,
                                 payload, 0.0, 32u, 0u)
        ->UseManualTime()
        ->Iterations(10)
        ->Unit(benchmark::kMillisecond);
  }
  // Record batches (core/batch.h: one frame, header and CRC per batch of at
  // most 4 KiB): another API and another format, so another name.
  for (const Mode& m : modes) {
    for (uint32_t payload : {8u, 64u}) {
      const std::string name = std::string("ring_throughput/") + m.name + "/" +
                               std::to_string(payload) + "B/record_batch_4k";
      benchmark::RegisterBenchmark(name.c_str(), RingThroughput, m.mode, m.producers, payload, 0.0,
                                   1u, 4096u)
          ->UseManualTime()
          ->Iterations(10)
          ->Unit(benchmark::kMillisecond);
    }
  }
  for (uint32_t payload : {8u, 64u}) {
    const std::string name = "ring_latency/spsc/" + std::to_string(payload) + "B";
    benchmark::RegisterBenchmark(name.c_str(), RingLatency, RingMode::kSingleProducer, payload,
                                 LatencyWait::kWait, Stamp::kWallClock)
        ->UseManualTime()
        ->Iterations(kLatencySamples)
        ->Unit(benchmark::kNanosecond);
  }
  benchmark::RegisterBenchmark("ring_latency/mpmc_1p/64B", RingLatency, RingMode::kMultiProducer,
                               64u, LatencyWait::kWait, Stamp::kWallClock)
      ->UseManualTime()
      ->Iterations(kLatencySamples)
      ->Unit(benchmark::kNanosecond);
  // Diagnostics: where the time goes.
  benchmark::RegisterBenchmark("diag/ring_latency/spsc/64B/spin_on_has_data", RingLatency,
                               RingMode::kSingleProducer, 64u, LatencyWait::kHasData,
                               Stamp::kWallClock)
      ->UseManualTime()
      ->Iterations(kLatencySamples)
      ->Unit(benchmark::kNanosecond);
  benchmark::RegisterBenchmark("diag/ring_latency/spsc/64B/timestamp_given", RingLatency,
                               RingMode::kSingleProducer, 64u, LatencyWait::kWait, Stamp::kGiven)
      ->UseManualTime()
      ->Iterations(kLatencySamples)
      ->Unit(benchmark::kNanosecond);
  benchmark::RegisterBenchmark("diag/ring_throughput/spsc/64B/consumer_backoff_1us", RingThroughput,
                               RingMode::kSingleProducer, 1u, 64u, 1000.0, 1u, 0u)
      ->UseManualTime()
      ->Iterations(10)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("diag/ring_consumer_cost/64B", RingConsumerCost, 64u);
  for (uint32_t payload : {8u, 64u, 1024u}) {
    const std::string name = "diag/frame_crc/" + std::to_string(payload) + "B_payload";
    benchmark::RegisterBenchmark(name.c_str(), FrameCrcCost, payload);
  }
  benchmark::RegisterBenchmark("diag/record_clock_stamp", RecordClockCost);
  benchmark::RegisterBenchmark("diag/wall_clock_stamp", WallClockCost);
  benchmark::RegisterBenchmark("diag/ring_producer_cost/8B/record_batch_4k", RingBatchProducerCost,
                               8u);
  benchmark::RegisterBenchmark("diag/ring_producer_cost/8B/clock_stamp", RingProducerCost, 8u,
                               false);
  benchmark::RegisterBenchmark("diag/ring_producer_cost/64B/clock_stamp", RingProducerCost, 64u,
                               false);
  benchmark::RegisterBenchmark("diag/ring_producer_cost/8B/explicit_timestamp", RingProducerCost,
                               8u, true);
}

}  // namespace runnel::bench
