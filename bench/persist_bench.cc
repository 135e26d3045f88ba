// runnel_persist_bench: the io_uring persistence thread (persistence/
// persister.h) against the disk it writes to, in one process and one run:
//
//  1. Disk baselines: fio --ioengine=io_uring sequential buffered 1 MiB writes
//     with end_fsync=1 (fork/exec, JSON output; run before and after the
//     persisted runs, the better one is the baseline), and an in-process
//     pwrite loop doing the same.
//  2. Sustained persisted throughput: one producer fills a 64 MiB ring with
//     1 KiB (and 64 B) records while the persister drains it into a
//     PartitionLog (256 MiB segments), policies interval:10 and never, for
//     ~1 GiB or ~5 s; the time includes the final Flush() (write + fdatasync),
//     like fio's end_fsync. Ratio against fio.
//  3. One-way producer -> consumer latency of 64 B records, paced (100k/s),
//     consumer busy-spinning, without and with the persister draining the
//     same ring (interval:10), in alternating chunks of one run. Ratio of the
//     p50s.
//  4. Diagnostics: a bare io_uring loop writing 1 MiB blocks from a
//     ring-sized buffer into the page cache, plain IORING_OP_WRITE (what the
//     persister does) against WRITE_FIXED from a registered buffer (and a
//     registered file); the interval policy replayed in a bare loop with and
//     without writes while its fdatasync runs; the persister placed on the
//     spinning consumer's CPU.
//
// Placement on the 2-vCPU machine (../shared/LIMITS.md): the producer runs on
// CPU 0. Throughput: the persister on CPU 1 (nothing else spins there).
// Latency: the consumer spins on CPU 1, so the persister shares CPU 0 with
// the paced producer, which yields the CPU while it waits for its next send
// (with and without the persister alike); a diagnostic run puts the
// persister on the spinning consumer's CPU instead.
//
//   runnel_persist_bench [--persist_data_dir=DIR] [--persist_bytes=N]
//       [--persist_seconds=S] [--persist_rate=R] [--persist_samples=N]
//       [--persist_rounds=N] [--persist_coalesce_us=US] [--persist_coalesce_bytes=N]
//       [--persist_fio=PATH] [--persist_fio_iodepth=N] [Google Benchmark flags]
//
// The data dir defaults to persist-bench-data next to the executable (under
// the build dir: the same file system as the work tree, not a tmpfs /tmp).
// Everything written there is deleted after each run.

#include <benchmark/benchmark.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/harness.h"
#include "bench/persist_disk.h"
#include "core/record.h"
#include "core/ring.h"
#include "persistence/log.h"
#include "persistence/persister.h"

namespace runnel::bench {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kRingCapacity = 64ull << 20;
constexpr uint64_t kSegmentBytes = 256ull << 20;
constexpr int kProducerCpu = 0;
constexpr int kPersisterCpuForThroughput = 1;
constexpr int kConsumerCpu = 1;
constexpr double kThroughputTarget = 0.80;  // of fio
constexpr double kLatencyTarget = 1.20;     // p50 with / without persister

struct Config {
  std::string data_dir;
  std::string fio = "fio";
  uint32_t fio_iodepth = 1;
  uint64_t bytes = 1ull << 30;
  double seconds = 5;
  double rate = 100'000;
  uint64_t samples = 200'000;  // per condition
  uint32_t rounds = 8;         // alternating off/on chunks
  // The persister's options (coalescing).
  PersisterOptions persister;
};
Config g_config;
FsInfo g_fs;

const SyncPolicy kInterval10{SyncPolicy::Kind::kInterval, 10};
const SyncPolicy kNever{SyncPolicy::Kind::kNever, 10};

std::string PolicyName(const SyncPolicy& p) { return p.ToString(); }

// ---------------------------------------------------------------------------
// Set-up shared by the persisted runs

// A ring of kRingCapacity in its own pre-faulted shared mapping.
struct BenchRing {
  SharedMapping memory{Ring::RequiredBytes(kRingCapacity)};
  std::optional<Ring> ring;
  std::string error;

  BenchRing() {
    if (!memory.ok()) {
      error = "mmap of the ring failed";
      return;
    }
    RingOptions o;
    o.capacity = kRingCapacity;
    o.mode = RingMode::kSingleProducer;
    Result<Ring> r = Ring::Create(memory.span(), o);
    if (!r.ok()) {
      error = r.status().ToString();
      return;
    }
    ring = *r;
  }
};

// A persister whose thread runs on `cpu` (-1: anywhere), handed one
// partition: `ring` through a fresh gating slot, logged to `dir`.
struct RunningPersister {
  std::unique_ptr<Persister> persister;
  pid_t tid = -1;  // the persistence thread
  uint32_t slot = 0;
  std::string error;

  RunningPersister(const Ring& ring, const std::string& dir, SyncPolicy policy, int cpu) {
    RemoveTree(dir);
    Result<uint32_t> s = ring.AcquireGatingSlot(kPersisterGatingOwner, ring.tail());
    if (!s.ok()) {
      error = s.status().ToString();
      return;
    }
    slot = *s;
    LogOptions lo;
    lo.segment_bytes = kSegmentBytes;
    lo.sync_on_roll = policy.kind != SyncPolicy::Kind::kNever;  // as the broker does
    Result<PartitionLog> log = PartitionLog::Open(dir + "/bench/0", lo);
    if (!log.ok()) {
      error = log.status().ToString();
      return;
    }
    // A thread starts with the affinity of the thread that creates it: pin
    // ourselves where the persister should run while it is created.
    if (cpu >= 0) {
      PinThisThreadToCpu(cpu);
    } else {
      UnpinThisThread();
    }
    const std::vector<pid_t> before = ThreadIds();
    Result<std::unique_ptr<Persister>> p = Persister::Start(g_config.persister);
    const std::vector<pid_t> after = ThreadIds();
    if (!p.ok()) {
      error = p.status().ToString();
      return;
    }
    for (pid_t t : after) {
      if (!std::binary_search(before.begin(), before.end(), t)) tid = t;
    }
    persister = std::move(*p);
    persister->Add(PersistedPartition{"bench/0", ring, slot, std::move(*log), policy, {}});
  }
};

// Claims room for one record; on back-pressure spins briefly, then sleeps in
// WaitForSpace. Adds the TSC ticks spent blocked to *blocked.
RingClaim ClaimBlocking(RingProducer& producer, uint32_t payload, uint64_t* blocked,
                        uint64_t* full_events) {
  RingClaim claim = producer.try_claim(0, 0, payload, false);
  if (claim.status() != ClaimStatus::kFull) return claim;
  ++*full_events;
  const uint64_t t0 = Tsc::Now();
  const int64_t give_up = MonotonicNanos() + kWaitTimeoutNs;
  for (uint32_t i = 0;; ++i) {
    if (i < 256) {
      CpuRelax();
    } else {
      (void)producer.WaitForSpace(1'000'000);
    }
    claim = producer.try_claim(0, 0, payload, false);
    if (claim.status() != ClaimStatus::kFull) break;
    if ((i & 255) == 255 && MonotonicNanos() > give_up) break;
  }
  *blocked += Tsc::Now() - t0;
  return claim;
}

// ---------------------------------------------------------------------------
// 1. Disk baselines

void FioBaseline(benchmark::State& state) {
  for (auto _ : state) {
    const WriteFigures f =
        RunFio(g_config.fio, g_config.data_dir, g_config.bytes, g_config.fio_iodepth);
    if (!f.ok) {
      state.SkipWithError(f.error.c_str());
      break;
    }
    state.SetIterationTime(f.seconds);
    state.counters["MB/s"] = f.MBps();
    state.counters["GiB"] = static_cast<double>(f.bytes) / (1ull << 30);
  }
}

void PwriteBaseline(benchmark::State& state) {
  for (auto _ : state) {
    const WriteFigures f = PwriteSequential(g_config.data_dir, g_config.bytes);
    if (!f.ok) {
      state.SkipWithError(f.error.c_str());
      break;
    }
    state.SetIterationTime(f.seconds);
    state.counters["MB/s"] = f.MBps();
    state.counters["cpu_%"] = 100 * f.cpu_seconds / f.seconds;
  }
}

// ---------------------------------------------------------------------------
// 2. Sustained persisted throughput

void PersistThroughput(benchmark::State& state, uint32_t payload, SyncPolicy policy) {
  for (auto _ : state) {
    BenchRing br;
    if (!br.error.empty()) {
      state.SkipWithError(br.error.c_str());
      break;
    }
    const Ring ring = *br.ring;
    const std::string dir = g_config.data_dir + "/throughput";
    RunningPersister rp(ring, dir, policy, kPersisterCpuForThroughput);
    PinThisThreadToCpu(kProducerCpu);
    if (!rp.error.empty()) {
      state.SkipWithError(rp.error.c_str());
      break;
    }
    RingProducer producer(ring);
    const std::vector<std::byte> filler(payload, std::byte{0x5A});
    const uint64_t frame = AlignedFrameLength(FrameLength(0, 0, payload));
    const uint64_t target_records = g_config.bytes / frame;
    const uint64_t dev0 = DeviceBytesWritten(g_fs.device);
    const int64_t cpu0 = ProcessCpuNanos();
    const int64_t main_cpu0 = ThisThreadCpuNanos();
    const int64_t persister_cpu0 = ThreadRunNanos(rp.tid);
    const int64_t t0 = MonotonicNanos();
    const int64_t deadline = t0 + static_cast<int64_t>(g_config.seconds * 1e9);
    uint64_t records = 0;
    uint64_t blocked_ticks = 0;
    uint64_t full_events = 0;
    std::string error;
    for (; records < target_records; ++records) {
      if ((records & 1023) == 0 && MonotonicNanos() > deadline) break;
      RingClaim claim = ClaimBlocking(producer, payload, &blocked_ticks, &full_events);
      if (!claim.ok()) {
        error = std::string("claim failed: ") + std::string(ClaimStatusName(claim.status()));
        break;
      }
      FillPayload(claim.value().data(), payload, 0, records, filler.data());
      if (producer.commit(claim) != CommitStatus::kOk) {
        error = "commit failed";
        break;
      }
    }
    const int64_t t_produced = MonotonicNanos();
    const Status flushed = rp.persister->Flush();
    const int64_t t1 = MonotonicNanos();
    const int64_t persister_cpu = ThreadRunNanos(rp.tid) - persister_cpu0;
    const int64_t main_cpu = ThisThreadCpuNanos() - main_cpu0;
    const int64_t all_cpu = ProcessCpuNanos() - cpu0;
    const uint64_t dev_bytes = DeviceBytesWritten(g_fs.device) - dev0;
    const std::vector<PersistedPartitionStats> stats = rp.persister->Stats();
    const RingPosition durable = ring.Durable(rp.slot);
    rp.persister->Stop();
    rp.persister.reset();
    RemoveTree(dir);
    if (error.empty() && !flushed.ok()) error = "flush: " + flushed.ToString();
    if (error.empty() && durable.offset != records) {
      error = "durable offset " + std::to_string(durable.offset) + " != records " +
              std::to_string(records);
    }
    if (error.empty() && stats.size() != 1) error = "no persister stats";
    if (!error.empty()) {
      state.SkipWithError(error.c_str());
      break;
    }
    const PersistedPartitionStats& s = stats[0];
    const double seconds = static_cast<double>(t1 - t0) / 1e9;
    state.SetIterationTime(seconds);
    state.counters["MB/s"] = static_cast<double>(s.bytes_written) / seconds / 1e6;
    state.counters["payload_MB/s"] = static_cast<double>(records * payload) / seconds / 1e6;
    state.counters["records/s"] = static_cast<double>(records) / seconds;
    state.counters["GiB"] = static_cast<double>(s.bytes_written) / (1ull << 30);
    state.counters["flush_ms"] = static_cast<double>(t1 - t_produced) / 1e6;
    state.counters["producer_blocked_%"] =
        100 * Tsc::ToNanos(blocked_ticks) / static_cast<double>(t_produced - t0);
    state.counters["full_events"] = static_cast<double>(full_events);
    state.counters["persister_cpu_%"] =
        100.0 * static_cast<double>(persister_cpu) / static_cast<double>(t1 - t0);
    // Everything else the process ran: io_uring workers (iou-wrk-*) that
    // carried writes the kernel could not do inline.
    state.counters["io_workers_cpu_%"] =
        100.0 * static_cast<double>(std::max<int64_t>(0, all_cpu - main_cpu - persister_cpu)) /
        static_cast<double>(t1 - t0);
    state.counters["writes"] = static_cast<double>(s.writes);
    state.counters["mean_write_KiB"] =
        s.writes ? static_cast<double>(s.bytes_written) / static_cast<double>(s.writes) / 1024 : 0;
    state.counters["syncs"] = static_cast<double>(s.syncs);
    state.counters["writes_during_sync"] = static_cast<double>(s.writes_during_sync);
    state.counters["device_MB/s"] = static_cast<double>(dev_bytes) / seconds / 1e6;
  }
  UnpinThisThread();
}

// ---------------------------------------------------------------------------
// 3. Latency with and without the persister
//
// The cross-CPU cost moves 2-4x between host placements of the two vCPUs
// (LIMITS.md), and other work on the machine comes and goes, so the two
// conditions are measured in alternating chunks (off, on, on, off, ...) of
// one run, each on a freshly formatted ring, and their samples pooled.

struct LatencyChunk {
  std::string error;
  uint64_t late = 0;  // sends more than a gap behind schedule (producer preempted)
  uint64_t full_events = 0;
  int64_t nanos = 0;
  int64_t persister_cpu_ns = 0;
  uint64_t writes = 0;
  uint64_t syncs = 0;
  int64_t producer_preempted = 0;  // involuntary context switches of the producer
  int64_t consumer_preempted = 0;  // ... and of the spinning consumer
  LatencySamples::Summary summary;
};

int64_t InvoluntarySwitches() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return u.ru_nivcsw;
}

// One chunk: `count` timed records after `warmup` untimed ones, paced at
// g_config.rate, 64 B each, from a producer on kProducerCpu to a consumer
// busy-spinning on kConsumerCpu; with `policy`, a persister (on
// `persister_cpu`) drains the same ring into a log. Samples also go to *pool.
LatencyChunk RunLatencyChunk(const SharedMapping& memory, std::optional<SyncPolicy> policy,
                             int persister_cpu, uint64_t warmup, uint64_t count,
                             LatencySamples* pool) {
  constexpr uint32_t kPayload = 64;
  LatencyChunk out;
  RingOptions o;
  o.capacity = kRingCapacity;
  o.mode = RingMode::kSingleProducer;
  Result<Ring> created = Ring::Create(memory.span(), o);
  if (!created.ok()) {
    out.error = created.status().ToString();
    return out;
  }
  const Ring ring = *created;
  const std::string dir = g_config.data_dir + "/latency";
  std::optional<RunningPersister> rp;
  if (policy) {
    rp.emplace(ring, dir, *policy, persister_cpu);
    if (!rp->error.empty()) {
      out.error = rp->error;
      return out;
    }
  }
  PinThisThreadToCpu(kProducerCpu);
  const uint64_t total = warmup + count;
  LatencySamples samples(count);
  std::atomic<bool> abort{false};
  std::atomic<int> consumer_error{0};
  std::atomic<int64_t> consumer_preempted{0};
  // The consumer: a plain (non-gating) reader that busy-spins on the ring.
  std::thread consumer([&] {
    if (!PinThisThreadToCpu(kConsumerCpu)) {
      consumer_error.store(1, std::memory_order_relaxed);
      return;
    }
    RingReader reader(ring, RingPosition{});
    uint64_t received = 0;
    const int64_t preempted0 = InvoluntarySwitches();  // incl. the warm-up
    auto handler = [&](const RecordView& v) {
      const uint64_t now = Tsc::NowAfterLoads();
      uint64_t stamp;
      std::memcpy(&stamp, v.value().data(), sizeof stamp);
      if (received >= warmup) {
        samples.Add(now - stamp);
        pool->Add(now - stamp);
      }
      ++received;
    };
    while (received < total) {
      if (!reader.Wait(WaitStrategy::kBusySpin, 10'000'000)) {
        if (abort.load(std::memory_order_relaxed)) return;
        continue;
      }
      const ReadResult r = reader.read(handler, 1);
      if (r.status != ReadStatus::kOk) {
        consumer_error.store(2, std::memory_order_relaxed);
        return;
      }
    }
    consumer_preempted.store(InvoluntarySwitches() - preempted0, std::memory_order_relaxed);
  });
  RingProducer producer(ring);
  std::vector<std::byte> filler(kPayload, std::byte{0x5A});
  const uint64_t gap = Tsc::FromNanos(1e9 / g_config.rate);
  const uint64_t yield_margin = Tsc::FromNanos(3000);
  uint64_t blocked_ticks = 0;
  const int64_t persister_cpu0 = rp ? ThreadRunNanos(rp->tid) : 0;
  const int64_t preempted0 = InvoluntarySwitches();
  const int64_t t0 = MonotonicNanos();
  uint64_t next = Tsc::Now() + gap;
  for (uint64_t i = 0; i < total; ++i) {
    // Pacing: give the CPU away (to the persister, when it shares this CPU)
    // while the next send is more than a few microseconds off.
    for (uint64_t now = Tsc::Now(); now < next; now = Tsc::Now()) {
      if (next - now > yield_margin) {
        sched_yield();
      } else {
        CpuRelax();
      }
    }
    const uint64_t stamp = Tsc::Now();
    RingClaim claim = ClaimBlocking(producer, kPayload, &blocked_ticks, &out.full_events);
    if (!claim.ok()) {
      out.error = "claim failed";
      break;
    }
    std::byte* v = claim.value().data();
    std::memcpy(v, filler.data(), kPayload);
    std::memcpy(v, &stamp, sizeof stamp);
    if (producer.commit(claim) != CommitStatus::kOk) {
      out.error = "commit failed";
      break;
    }
    next += gap;
    if (const uint64_t now = Tsc::Now(); now > next + gap) {
      ++out.late;  // fell more than a gap behind (preempted): no burst to catch up
      next = now + gap;
    }
  }
  out.producer_preempted = InvoluntarySwitches() - preempted0;
  if (!out.error.empty()) abort.store(true, std::memory_order_relaxed);
  consumer.join();
  out.nanos = MonotonicNanos() - t0;
  out.consumer_preempted = consumer_preempted.load(std::memory_order_relaxed);
  if (rp) {
    out.persister_cpu_ns = ThreadRunNanos(rp->tid) - persister_cpu0;
    const std::vector<PersistedPartitionStats> stats = rp->persister->Stats();
    if (stats.size() == 1) {
      out.writes = stats[0].writes;
      out.syncs = stats[0].syncs;
    }
    const Status flushed = rp->persister->Flush();
    if (out.error.empty() && !flushed.ok()) out.error = "flush: " + flushed.ToString();
    if (out.error.empty() && ring.Durable(rp->slot).offset != total) out.error = "not all durable";
    rp->persister->Stop();
    rp.reset();
    RemoveTree(dir);
  }
  if (out.error.empty() && consumer_error.load() != 0) {
    out.error = consumer_error.load() == 1 ? "cannot pin the consumer" : "consumer read failed";
  }
  if (out.error.empty() && samples.count() != count) out.error = "samples missing";
  out.summary = samples.Summarize();
  UnpinThisThread();
  return out;
}

void ReportLatency(benchmark::State& state, const std::string& prefix, const LatencySamples& pool) {
  const LatencySamples::Summary s = pool.Summarize();
  state.counters[prefix + "p50_ns"] = s.p50_ns;
  state.counters[prefix + "p99_ns"] = s.p99_ns;
  state.counters[prefix + "p99.9_ns"] = s.p999_ns;
  state.counters[prefix + "max_ns"] = s.max_ns;
}

// Persistence off and on (interval:10, persister sharing the producer's CPU),
// in g_config.rounds alternating pairs.
void PersistLatencyInterleaved(benchmark::State& state) {
  for (auto _ : state) {
    SharedMapping memory(Ring::RequiredBytes(kRingCapacity));
    if (!memory.ok()) {
      state.SkipWithError("mmap of the ring failed");
      break;
    }
    const uint32_t rounds = std::max<uint32_t>(1, g_config.rounds);
    const uint64_t per_chunk = std::max<uint64_t>(g_config.samples / rounds, 1000);
    const uint64_t warmup = std::max<uint64_t>(per_chunk / 20, 1000);
    LatencySamples off(per_chunk * rounds);
    LatencySamples on(per_chunk * rounds);
    std::vector<double> ratios;
    uint64_t late_off = 0, late_on = 0, writes = 0, syncs = 0;
    int64_t nanos = 0, off_nanos = 0, on_nanos = 0, persister_ns = 0;
    int64_t preempted_off = 0, preempted_on = 0, consumer_off = 0, consumer_on = 0;
    std::string error;
    for (uint32_t r = 0; r < rounds && error.empty(); ++r) {
      double p50[2] = {0, 0};  // off, on
      for (int k = 0; k < 2 && error.empty(); ++k) {
        const bool with = (r % 2 == 0) == (k == 1);  // off,on then on,off
        const LatencyChunk c =
            RunLatencyChunk(memory, with ? std::optional<SyncPolicy>(kInterval10) : std::nullopt,
                            kProducerCpu, warmup, per_chunk, with ? &on : &off);
        if (!c.error.empty()) {
          error = std::string(with ? "persistence on: " : "persistence off: ") + c.error;
          break;
        }
        p50[with ? 1 : 0] = c.summary.p50_ns;
        nanos += c.nanos;
        (with ? late_on : late_off) += c.late;
        (with ? preempted_on : preempted_off) += c.producer_preempted;
        (with ? consumer_on : consumer_off) += c.consumer_preempted;
        (with ? on_nanos : off_nanos) += c.nanos;
        if (with) {
          persister_ns += c.persister_cpu_ns;
          writes += c.writes;
          syncs += c.syncs;
        }
      }
      if (error.empty() && p50[0] > 0) ratios.push_back(p50[1] / p50[0]);
    }
    if (!error.empty()) {
      state.SkipWithError(error.c_str());
      break;
    }
    state.SetIterationTime(static_cast<double>(nanos) / 1e9);
    ReportLatency(state, "off_", off);
    ReportLatency(state, "on_", on);
    const double off_p50 = off.Summarize().p50_ns;
    state.counters["p50_ratio"] = off_p50 > 0 ? on.Summarize().p50_ns / off_p50 : 0;
    std::sort(ratios.begin(), ratios.end());
    if (!ratios.empty()) {
      state.counters["round_p50_ratio_min"] = ratios.front();
      state.counters["round_p50_ratio_median"] = ratios[ratios.size() / 2];
      state.counters["round_p50_ratio_max"] = ratios.back();
    }
    auto per_second = [](int64_t n, int64_t ns) {
      return ns > 0 ? static_cast<double>(n) * 1e9 / static_cast<double>(ns) : 0.0;
    };
    state.counters["off_producer_preempted/s"] = per_second(preempted_off, off_nanos);
    state.counters["on_producer_preempted/s"] = per_second(preempted_on, on_nanos);
    state.counters["off_consumer_preempted/s"] = per_second(consumer_off, off_nanos);
    state.counters["on_consumer_preempted/s"] = per_second(consumer_on, on_nanos);
    state.counters["rounds"] = rounds;
    state.counters["off_late_sends"] = static_cast<double>(late_off);
    state.counters["on_late_sends"] = static_cast<double>(late_on);
    state.counters["on_persister_cpu_%"] =
        on_nanos > 0 ? 100.0 * static_cast<double>(persister_ns) / static_cast<double>(on_nanos)
                     : 0;
    state.counters["on_writes/s"] =
        on_nanos > 0 ? static_cast<double>(writes) * 1e9 / static_cast<double>(on_nanos) : 0;
    state.counters["on_syncs/s"] =
        on_nanos > 0 ? static_cast<double>(syncs) * 1e9 / static_cast<double>(on_nanos) : 0;
  }
}

// Diagnostic: the persister on the consumer's CPU, fighting the spinning
// consumer (one chunk).
void PersistLatencyOnConsumerCpu(benchmark::State& state) {
  for (auto _ : state) {
    SharedMapping memory(Ring::RequiredBytes(kRingCapacity));
    const uint64_t count = std::max<uint64_t>(g_config.samples / 4, 1000);
    LatencySamples pool(count);
    const LatencyChunk c =
        RunLatencyChunk(memory, kInterval10, kConsumerCpu, count / 10, count, &pool);
    if (!c.error.empty()) {
      state.SkipWithError(c.error.c_str());
      break;
    }
    state.SetIterationTime(static_cast<double>(c.nanos) / 1e9);
    ReportLatency(state, "", pool);
    state.counters["persister_cpu_%"] =
        100.0 * static_cast<double>(c.persister_cpu_ns) / static_cast<double>(c.nanos);
    state.counters["late_sends"] = static_cast<double>(c.late);
  }
}

// ---------------------------------------------------------------------------
// 4. Registered buffers

// Two rounds of plain / fixed / fixed+file, alternating so that a noisy
// neighbour hurts every mode alike; the better round of each is reported.
void RegisteredBuffers(benchmark::State& state) {
  const UringBufferMode modes[] = {UringBufferMode::kPlain, UringBufferMode::kFixed,
                                   UringBufferMode::kFixedAndFile};
  const char* keys[] = {"write", "fixed", "fixed_file"};
  for (auto _ : state) {
    PinThisThreadToCpu(kPersisterCpuForThroughput);
    SharedMapping buffer(kRingCapacity);  // a ring-sized buffer, like the ring memory
    if (!buffer.ok()) {
      state.SkipWithError("mmap failed");
      break;
    }
    std::memset(buffer.data(), 0x5A, buffer.size());
    const uint64_t bytes = std::min<uint64_t>(g_config.bytes, 512ull << 20);
    double best[3] = {0, 0, 0};
    double cpu_per_gib[3] = {1e9, 1e9, 1e9};
    double write_us[3] = {0, 0, 0};
    int workers = 0;
    std::string error;
    double total_seconds = 0;
    for (int round = 0; round < 2 && error.empty(); ++round) {
      for (int m = 0; m < 3; ++m) {
        const UringLoopFigures f = UringSequential(g_config.data_dir, buffer.span(), bytes, 1 << 20,
                                                   1, modes[m], /*sync_at_end=*/false);
        if (!f.ok) {
          error = std::string(UringBufferModeName(modes[m])) + ": " + f.error;
          break;
        }
        total_seconds += f.seconds;
        workers = std::max(workers, f.io_workers);
        if (f.MBps() > best[m]) {
          best[m] = f.MBps();
          write_us[m] = f.mean_write_us;
        }
        cpu_per_gib[m] = std::min(cpu_per_gib[m],
                                  f.cpu_seconds * static_cast<double>(1ull << 30) / f.bytes * 1e3);
      }
    }
    UnpinThisThread();
    if (!error.empty()) {
      state.SkipWithError(error.c_str());
      break;
    }
    state.SetIterationTime(total_seconds);
    for (int m = 0; m < 3; ++m) {
      state.counters[std::string(keys[m]) + "_MB/s"] = best[m];
      state.counters[std::string(keys[m]) + "_us/MiB"] = write_us[m];
      state.counters[std::string(keys[m]) + "_cpu_ms/GiB"] = cpu_per_gib[m];
    }
    state.counters["io_workers"] = workers;
    state.counters["registered_MiB"] = static_cast<double>(kRingCapacity >> 20);
  }
}

// ---------------------------------------------------------------------------
// 5. Does the interval policy pay for stopping writes during its fdatasync?

void IntervalSync(benchmark::State& state, bool overlap) {
  for (auto _ : state) {
    PinThisThreadToCpu(kPersisterCpuForThroughput);
    SharedMapping buffer(kRingCapacity);
    if (!buffer.ok()) {
      state.SkipWithError("mmap failed");
      break;
    }
    std::memset(buffer.data(), 0x5A, buffer.size());
    const IntervalSyncFigures f =
        UringIntervalSync(g_config.data_dir, buffer.span(), g_config.bytes, 10, overlap);
    UnpinThisThread();
    if (!f.ok) {
      state.SkipWithError(f.error.c_str());
      break;
    }
    state.SetIterationTime(f.seconds);
    state.counters["MB/s"] = f.MBps();
    state.counters["syncs"] = static_cast<double>(f.syncs);
    state.counters["mean_sync_ms"] = f.mean_sync_ms;
    state.counters["sync_share_%"] = 100 * f.sync_share;
  }
}

// ---------------------------------------------------------------------------
// Registration and summary

// Passes every run on to the console display and keeps its counters (per
// repetition) for the summary.
class Collector : public benchmark::BenchmarkReporter {
 public:
  explicit Collector(benchmark::BenchmarkReporter* display) : display_(display) {}
  bool ReportContext(const Context& context) override { return display_->ReportContext(context); }
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.run_type != Run::RT_Iteration) continue;
      const std::string& name = run.run_name.function_name;
      if (run.error_occurred) {
        failed_.push_back(name);
        continue;
      }
      std::map<std::string, double> counters;
      for (const auto& [key, counter] : run.counters) counters[key] = counter.value;
      runs_[name].push_back(std::move(counters));
    }
    display_->ReportRuns(runs);
  }
  void Finalize() override { display_->Finalize(); }

  struct Figure {
    bool ok = false;
    double median = 0, min = 0, max = 0;
    int samples = 0;
  };
  // A counter of `name` over its repetitions.
  Figure Get(const std::string& name, const std::string& counter) const {
    Figure f;
    const auto it = runs_.find(name);
    if (it == runs_.end()) return f;
    std::vector<double> v;
    for (const auto& counters : it->second) {
      if (const auto c = counters.find(counter); c != counters.end()) v.push_back(c->second);
    }
    if (v.empty()) return f;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    f.ok = true;
    f.samples = static_cast<int>(n);
    f.median = n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    f.min = v.front();
    f.max = v.back();
    return f;
  }
  bool Failed(const std::string& name) const {
    return std::find(failed_.begin(), failed_.end(), name) != failed_.end();
  }
  bool Ran(const std::string& name) const { return runs_.count(name) > 0 || Failed(name); }

 private:
  benchmark::BenchmarkReporter* display_;
  std::map<std::string, std::vector<std::map<std::string, double>>> runs_;
  std::vector<std::string> failed_;
};

const char* kFioBefore = "baseline/fio_io_uring_seq_write/before";
const char* kFioAfter = "baseline/fio_io_uring_seq_write/after";
const char* kPwrite = "baseline/pwrite_seq_write";
const char* kLatency = "persist_latency/64B/off_vs_interval:10";
const char* kLatencyBadCpu = "diag/persist_latency/64B/interval:10/persister_on_consumer_cpu";
const char* kRegistered = "diag/uring_page_cache_write/registered_buffers";
const char* kSyncSerialized = "diag/uring_interval:10/no_writes_during_sync";
const char* kSyncOverlapped = "diag/uring_interval:10/writes_during_sync";

std::string ThroughputName(uint32_t payload, const SyncPolicy& p) {
  return "persist_throughput/" + std::to_string(payload) + "B/" + PolicyName(p);
}

// Registers a one-shot benchmark that also reports how much CPU the rest of
// the machine used meanwhile (others_cpu_%: the noise behind its figures).
template <typename Fn>
void Add(const std::string& name, Fn fn) {
  benchmark::RegisterBenchmark(name.c_str(),
                               [fn](benchmark::State& state) {
                                 const MachineNoise noise;
                                 fn(state);
                                 state.counters["others_cpu_%"] = noise.OthersPercent();
                               })
      ->Iterations(1)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
}

void Register() {
  // The target comparison (interval:10 against fio) sits between the two
  // fio runs; the rest follows.
  Add(kFioBefore, FioBaseline);
  for (uint32_t payload : {1024u, 64u}) {
    Add(ThroughputName(payload, kInterval10),
        [payload](benchmark::State& st) { PersistThroughput(st, payload, kInterval10); });
  }
  Add(kFioAfter, FioBaseline);
  Add(kPwrite, PwriteBaseline);
  for (uint32_t payload : {1024u, 64u}) {
    Add(ThroughputName(payload, kNever),
        [payload](benchmark::State& st) { PersistThroughput(st, payload, kNever); });
  }
  Add(kSyncSerialized, [](benchmark::State& st) { IntervalSync(st, false); });
  Add(kSyncOverlapped, [](benchmark::State& st) { IntervalSync(st, true); });
  Add(kLatency, PersistLatencyInterleaved);
  Add(kLatencyBadCpu, PersistLatencyOnConsumerCpu);
  Add(kRegistered, RegisteredBuffers);
}

std::string Fmt(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

std::string Fig(const Collector::Figure& f, const char* fmt) {
  if (!f.ok) return "n/a";
  std::string s = Fmt(fmt, f.median);
  if (f.samples > 1) s += " [" + Fmt(fmt, f.min) + "-" + Fmt(fmt, f.max) + "]";
  return s;
}

double Load1() {
  double l = -1;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &l) != 1) l = -1;
    std::fclose(f);
  }
  return l;
}

void PrintSummary(const Collector& c, double load_before, double load_after, std::ostream& out) {
  out << "\n=== runnel_persist_bench summary\n";
  out << "data dir " << g_config.data_dir << " (" << g_fs.type << ")"
      << (g_fs.tmpfs ? "  WARNING: tmpfs, not a disk" : "") << "; load average "
      << Fmt("%.2f", load_before) << " before, " << Fmt("%.2f", load_after)
      << " after (our own spinning threads add up to 2)\n";
  // The noise behind every figure: CPU the rest of the machine used meanwhile.
  double worst_noise = 0;
  for (const char* name : {kFioBefore, kFioAfter, kLatency, kSyncSerialized, kSyncOverlapped}) {
    worst_noise = std::max(worst_noise, c.Get(name, "others_cpu_%").max);
  }
  for (uint32_t payload : {1024u, 64u}) {
    for (const SyncPolicy& p : {kInterval10, kNever}) {
      worst_noise = std::max(worst_noise, c.Get(ThroughputName(payload, p), "others_cpu_%").max);
    }
  }
  out << "other processes used up to " << Fmt("%.0f", worst_noise)
      << "% of the machine's CPU during a measurement"
      << (worst_noise > 10 ? "  WARNING: not an idle machine, the figures are disturbed" : "")
      << "\n";
  out << "placement: producer CPU " << kProducerCpu << "; throughput: persister CPU "
      << kPersisterCpuForThroughput << "; latency: consumer spins on CPU " << kConsumerCpu
      << ", persister on CPU " << kProducerCpu << " with the paced producer\n";
  out << "persister: coalesce " << (g_config.persister.coalesce_bytes >> 10) << " KiB or "
      << g_config.persister.coalesce_delay_ns / 1000 << " us\n\n";

  // Baselines.
  const Collector::Figure fio_before = c.Get(kFioBefore, "MB/s");
  const Collector::Figure fio_after = c.Get(kFioAfter, "MB/s");
  const Collector::Figure pw = c.Get(kPwrite, "MB/s");
  out << "disk baselines (1 MiB sequential buffered writes + final fsync, "
      << (g_config.bytes >> 20) << " MiB):\n";
  auto others = [&](const std::string& name) {
    const Collector::Figure f = c.Get(name, "others_cpu_%");
    return f.ok ? " (others " + Fmt("%.0f%%", f.median) + ")" : std::string();
  };
  out << "  fio io_uring iodepth=" << g_config.fio_iodepth << "  before " << Fig(fio_before, "%.0f")
      << " MB/s" << others(kFioBefore) << ", after " << Fig(fio_after, "%.0f") << " MB/s"
      << others(kFioAfter) << "\n";
  out << "  pwrite loop (in process)  " << Fig(pw, "%.0f") << " MB/s" << others(kPwrite) << "\n";
  double fio = 0;
  if (fio_before.ok) fio = fio_before.median;
  if (fio_after.ok) fio = std::max(fio, fio_after.median);
  if (fio > 0) {
    out << "  baseline for the ratios: the better fio run, " << Fmt("%.0f", fio) << " MB/s\n";
    if (fio_before.ok && fio_after.ok) {
      const double spread = std::abs(fio_before.median - fio_after.median) / fio;
      if (spread > 0.2)
        out << "  note: fio moved " << Fmt("%.0f", 100 * spread)
            << "% between before and after: the disk is shared and noisy\n";
    }
  } else {
    out << "  no fio figure (" << (c.Failed(kFioBefore) ? "fio failed or is missing" : "not run")
        << "): throughput ratios skipped\n";
  }

  // Throughput.
  out << "\nsustained persisted throughput (1 producer, ring 64 MiB, segments 256 MiB, time "
         "includes the final Flush):\n";
  char line[320];
  std::snprintf(line, sizeof line, "  %-8s %-12s %9s %8s %7s %7s %8s %9s %7s %8s %7s  %s\n",
                "payload", "policy", "log MB/s", "payload", "Mrec/s", "vs fio", "blocked",
                "persister", "device", "w/ sync", "others", "verdict");
  out << line;
  for (uint32_t payload : {1024u, 64u}) {
    for (const SyncPolicy& p : {kInterval10, kNever}) {
      const std::string name = ThroughputName(payload, p);
      const Collector::Figure mb = c.Get(name, "MB/s");
      if (!mb.ok) {
        std::snprintf(line, sizeof line, "  %-8s %-12s %s\n",
                      (std::to_string(payload) + "B").c_str(), PolicyName(p).c_str(),
                      c.Failed(name) ? "failed" : "not run");
        out << line;
        continue;
      }
      const double ratio = fio > 0 ? mb.median / fio : 0;
      std::string verdict = "n/a (no fio)";
      if (fio > 0) {
        const bool pass = ratio >= kThroughputTarget;
        verdict = p.kind == SyncPolicy::Kind::kInterval
                      ? (pass ? "PASS (>= 80% of fio)" : "MISS (< 80% of fio)")
                      : (pass ? "info: >= 80%" : "info: < 80%");
      }
      const double writes = c.Get(name, "writes").median;
      std::snprintf(
          line, sizeof line, "  %-8s %-12s %9s %8s %7s %7s %8s %9s %7s %8s %7s  %s\n",
          (std::to_string(payload) + "B").c_str(), PolicyName(p).c_str(), Fig(mb, "%.0f").c_str(),
          Fig(c.Get(name, "payload_MB/s"), "%.0f").c_str(),
          Fmt("%.2f", c.Get(name, "records/s").median / 1e6).c_str(),
          fio > 0 ? Fmt("%.0f%%", 100 * ratio).c_str() : "n/a",
          Fmt("%.0f%%", c.Get(name, "producer_blocked_%").median).c_str(),
          Fmt("%.0f%%", c.Get(name, "persister_cpu_%").median).c_str(),
          Fmt("%.0f", c.Get(name, "device_MB/s").median).c_str(),
          writes > 0
              ? Fmt("%.0f%%", 100 * c.Get(name, "writes_during_sync").median / writes).c_str()
              : "n/a",
          Fmt("%.0f%%", c.Get(name, "others_cpu_%").median).c_str(), verdict.c_str());
      out << line;
    }
  }
  out << "  (log MB/s: frame bytes written to the log per second; blocked: share of the "
         "producer's time spent\n   waiting for ring space; persister: CPU of the persistence "
         "thread; device: bytes the block\n   device wrote, whole machine; w/ sync: share of the "
         "writes "
         "submitted while an fdatasync\n   was in flight. never: the broker opens such logs "
         "with sync_on_roll off; the final Flush()\n   syncs every segment written, so it pays "
         "for the whole GiB at the end)\n";

  // The interval policy replayed in a bare loop.
  const Collector::Figure ser = c.Get(kSyncSerialized, "MB/s");
  const Collector::Figure ovl = c.Get(kSyncOverlapped, "MB/s");
  if (ser.ok || ovl.ok) {
    out << "\ninterval:10 replayed in a bare io_uring loop (1 MiB writes, one in flight):\n";
    for (const char* name : {kSyncSerialized, kSyncOverlapped}) {
      const Collector::Figure mb = c.Get(name, "MB/s");
      if (!mb.ok) continue;
      std::snprintf(line, sizeof line,
                    "  %-44s %5.0f MB/s %5s of fio  %4.0f syncs, %5.1f ms each, in flight %3.0f%% "
                    "of the time (others %.0f%%)\n",
                    name, mb.median, fio > 0 ? Fmt("%.0f%%", 100 * mb.median / fio).c_str() : "n/a",
                    c.Get(name, "syncs").median, c.Get(name, "mean_sync_ms").median,
                    c.Get(name, "sync_share_%").median, c.Get(name, "others_cpu_%").median);
      out << line;
    }
  }

  // Latency.
  out << "\none-way latency, 64 B records at " << Fmt("%.0f", g_config.rate)
      << "/s, consumer busy-spinning (ns):\n";
  std::snprintf(line, sizeof line, "  %-44s %8s %8s %9s %10s\n", "", "p50", "p99", "p99.9", "max");
  out << line;
  auto latency_row = [&](const std::string& label, const char* name, const std::string& prefix) {
    std::snprintf(line, sizeof line, "  %-44s %8s %8s %9s %10s\n", label.c_str(),
                  Fig(c.Get(name, prefix + "p50_ns"), "%.0f").c_str(),
                  Fig(c.Get(name, prefix + "p99_ns"), "%.0f").c_str(),
                  Fig(c.Get(name, prefix + "p99.9_ns"), "%.0f").c_str(),
                  Fig(c.Get(name, prefix + "max_ns"), "%.0f").c_str());
    out << line;
  };
  if (c.Failed(kLatency)) {
    out << "  " << kLatency << ": failed (see above)\n";
  } else if (c.Ran(kLatency)) {
    const int rounds = static_cast<int>(c.Get(kLatency, "rounds").median);
    latency_row("persistence off", kLatency, "off_");
    latency_row("persistence on (interval:10, persister CPU 0)", kLatency, "on_");
    const Collector::Figure r = c.Get(kLatency, "p50_ratio");
    out << "  p50 ratio on / off: " << Fmt("%.2f", r.median) << " (per round "
        << Fmt("%.2f", c.Get(kLatency, "round_p50_ratio_min").median) << "-"
        << Fmt("%.2f", c.Get(kLatency, "round_p50_ratio_max").median) << ", median "
        << Fmt("%.2f", c.Get(kLatency, "round_p50_ratio_median").median) << "; " << rounds
        << " alternating rounds)  " << (r.median <= kLatencyTarget ? "PASS" : "MISS")
        << " (target <= 1.2)\n";
    const double p99off = c.Get(kLatency, "off_p99_ns").median;
    if (p99off > 0)
      out << "  p99 ratio " << Fmt("%.2f", c.Get(kLatency, "on_p99_ns").median / p99off)
          << " (no target); persister CPU "
          << Fmt("%.0f%%", c.Get(kLatency, "on_persister_cpu_%").median) << ", "
          << Fmt("%.0f", c.Get(kLatency, "on_writes/s").median) << " writes/s, "
          << Fmt("%.0f", c.Get(kLatency, "on_syncs/s").median) << " syncs/s; late sends off/on "
          << Fmt("%.0f", c.Get(kLatency, "off_late_sends").median) << "/"
          << Fmt("%.0f", c.Get(kLatency, "on_late_sends").median) << "; producer preempted "
          << Fmt("%.0f", c.Get(kLatency, "off_producer_preempted/s").median) << "/"
          << Fmt("%.0f", c.Get(kLatency, "on_producer_preempted/s").median)
          << " times/s off/on, consumer "
          << Fmt("%.0f", c.Get(kLatency, "off_consumer_preempted/s").median) << "/"
          << Fmt("%.0f", c.Get(kLatency, "on_consumer_preempted/s").median) << "; others used "
          << Fmt("%.0f%%", c.Get(kLatency, "others_cpu_%").median) << " of the CPU\n";
  }
  if (c.Failed(kLatencyBadCpu)) {
    out << "  " << kLatencyBadCpu << ": failed (see above)\n";
  } else if (c.Ran(kLatencyBadCpu)) {
    latency_row("diag: persister on the consumer's CPU 1", kLatencyBadCpu, "");
  }

  // Registered buffers.
  if (c.Ran(kRegistered)) {
    out << "\nio_uring 1 MiB buffered writes into the page cache (one in flight, 64 MiB buffer, "
           "better of 2 rounds):\n";
    if (c.Failed(kRegistered)) {
      out << "  failed (see above)\n";
    } else {
      for (const char* key : {"write", "fixed", "fixed_file"}) {
        const std::string k(key);
        std::snprintf(
            line, sizeof line, "  %-26s %7.0f MB/s  %6.0f us per 1 MiB write  %5.0f ms CPU/GiB\n",
            k == "write"   ? "IORING_OP_WRITE"
            : k == "fixed" ? "WRITE_FIXED"
                           : "WRITE_FIXED + fixed file",
            c.Get(kRegistered, k + "_MB/s").median, c.Get(kRegistered, k + "_us/MiB").median,
            c.Get(kRegistered, k + "_cpu_ms/GiB").median);
        out << line;
      }
      const double plain = c.Get(kRegistered, "write_MB/s").median;
      const double fixed = c.Get(kRegistered, "fixed_MB/s").median;
      if (plain > 0)
        out << "  registered buffer vs plain: " << Fmt("%+.0f%%", 100 * (fixed / plain - 1))
            << " (io_uring workers seen: " << Fmt("%.0f", c.Get(kRegistered, "io_workers").median)
            << ")\n";
    }
  }
}

// Takes our --persist_* flags out of argv; false on a malformed one.
bool ParseFlags(int* argc, char** argv) {
  int out = 1;
  bool ok = true;
  for (int i = 1; i < *argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* flag) -> std::optional<std::string> {
      const std::string prefix = std::string("--") + flag + "=";
      if (a.rfind(prefix, 0) != 0) return std::nullopt;
      return a.substr(prefix.size());
    };
    auto number = [&](const std::string& v, double* d) {
      char* end = nullptr;
      *d = std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end != '\0' || *d <= 0) {
        std::fprintf(stderr, "runnel_persist_bench: bad value in %s\n", a.c_str());
        ok = false;
      }
    };
    double d = 0;
    if (auto v = value("persist_data_dir")) {
      g_config.data_dir = *v;
    } else if (auto v = value("persist_fio")) {
      g_config.fio = *v;
    } else if (auto v = value("persist_fio_iodepth")) {
      number(*v, &d);
      g_config.fio_iodepth = static_cast<uint32_t>(d);
    } else if (auto v = value("persist_bytes")) {
      number(*v, &d);
      g_config.bytes = static_cast<uint64_t>(d) & ~uint64_t{(1 << 20) - 1};
    } else if (auto v = value("persist_seconds")) {
      number(*v, &d);
      g_config.seconds = d;
    } else if (auto v = value("persist_rate")) {
      number(*v, &d);
      g_config.rate = d;
    } else if (auto v = value("persist_rounds")) {
      number(*v, &d);
      g_config.rounds = static_cast<uint32_t>(d);
    } else if (auto v = value("persist_samples")) {
      number(*v, &d);
      g_config.samples = static_cast<uint64_t>(d);
    } else if (auto v = value("persist_coalesce_us")) {
      // 0 is allowed here: no coalescing.
      g_config.persister.coalesce_delay_ns =
          static_cast<int64_t>(std::strtod(v->c_str(), nullptr) * 1000);
    } else if (auto v = value("persist_coalesce_bytes")) {
      g_config.persister.coalesce_bytes = std::strtoull(v->c_str(), nullptr, 10);
    } else {
      argv[out++] = argv[i];
    }
  }
  *argc = out;
  argv[out] = nullptr;
  if (g_config.bytes < (1 << 20)) {
    std::fprintf(stderr, "runnel_persist_bench: --persist_bytes must be at least 1 MiB\n");
    ok = false;
  }
  return ok;
}

}  // namespace
}  // namespace runnel::bench

int main(int argc, char** argv) {
  using namespace runnel::bench;
  if (!ParseFlags(&argc, argv)) return 2;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

  if (g_config.data_dir.empty()) {
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    g_config.data_dir = ((ec ? fs::current_path() : exe.parent_path()) / "persist-bench-data");
  }
  std::error_code ec;
  fs::create_directories(g_config.data_dir, ec);
  g_fs = DescribeFs(g_config.data_dir);
  if (!g_fs.error.empty()) {
    std::fprintf(stderr, "runnel_persist_bench: %s\n", g_fs.error.c_str());
    return 1;
  }
  if (g_fs.tmpfs) {
    std::fprintf(stderr,
                 "runnel_persist_bench: warning: %s is on tmpfs; the figures measure RAM, not a "
                 "disk (pass --persist_data_dir on a disk)\n",
                 g_config.data_dir.c_str());
  }

  Tsc::Calibrate();
  char ghz[32];
  std::snprintf(ghz, sizeof ghz, "%.4f", Tsc::ticks_per_ns());
  benchmark::AddCustomContext("tsc_ghz", ghz);
  benchmark::AddCustomContext("data_dir", g_config.data_dir + " (" + g_fs.type + ")");
  benchmark::AddCustomContext(
      "persister", "coalesce " + std::to_string(g_config.persister.coalesce_bytes) + " B / " +
                       std::to_string(g_config.persister.coalesce_delay_ns / 1000) + " us");
  benchmark::AddCustomContext(
      "placement",
      "producer CPU 0; throughput: persister CPU 1; latency: consumer CPU 1, persister CPU 0");
#if !defined(__OPTIMIZE__)
  benchmark::AddCustomContext("warning", "built without optimization");
#endif

  Register();
  const double load_before = Load1();
  benchmark::BenchmarkReporter* display = benchmark::CreateDefaultDisplayReporter();
  Collector collector(display);
  benchmark::RunSpecifiedBenchmarks(&collector);
  PrintSummary(collector, load_before, Load1(), std::cout);
  benchmark::Shutdown();
  RemoveTree(g_config.data_dir);
  return 0;
}
