#include "tools/perf_worker.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/coding.h"
#include "core/wait.h"
#include "ipc/bus.h"
#include "tools/api_compat.h"
#include "tools/perf_stats.h"

namespace runnel::cli {
namespace {

using perf::Histogram;
using perf::ReportLine;
using perf::Ticks;

bool WriteAll(int fd, std::string_view s) {
  while (!s.empty()) {
    const ssize_t n = ::write(fd, s.data(), s.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    s.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

void Report(const ReportLine& line) { (void)WriteAll(STDOUT_FILENO, line.Format()); }

int Fail(const std::string& who, const std::string& message) {
  PrintError("perf " + who, message);
  ReportLine line{"failed", {}};
  std::string word = message;
  for (char& c : word) {
    if (c == ' ' || c == '\n') c = '_';
  }
  line.fields["error"] = word;
  Report(line);
  return kExitRuntime;
}

// Reads one line from stdin, blocking. nullopt on EOF or error.
std::optional<std::string> ReadLineBlocking() {
  std::string line;
  char c;
  for (;;) {
    const ssize_t n = ::read(STDIN_FILENO, &c, 1);
    if (n == 0) return std::nullopt;
    if (n < 0) {
      if (errno == EINTR && !StopRequested()) continue;
      return std::nullopt;
    }
    if (c == '\n') return line;
    line += c;
  }
}

// Reads whatever stdin has without blocking and returns the complete lines.
// Sets *eof when the coordinator closed the pipe.
std::vector<std::string> ReadLinesNonBlocking(std::string& pending, bool* eof) {
  std::vector<std::string> lines;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n > 0) {
      pending.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0) *eof = true;
    break;  // EAGAIN, EOF or an error: nothing more now
  }
  std::size_t nl;
  while ((nl = pending.find('\n')) != std::string::npos) {
    lines.push_back(pending.substr(0, nl));
    pending.erase(0, nl + 1);
  }
  return lines;
}

Status PinToCpus(const std::string& list) {
  if (list.empty()) return Status::Ok();
  std::optional<std::vector<int>> cpus = perf::ParseCpuList(list);
  if (!cpus) return Status::InvalidArgument("bad CPU list '" + list + "'");
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : *cpus) CPU_SET(c, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    return Status::FromErrno(errno, "sched_setaffinity(" + list + ")");
  }
  return Status::Ok();
}

// Common start of every worker: die with the coordinator, stop on SIGTERM.
Status Prepare(const PerfWorkerOptions& o) {
  (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
  (void)prctl(PR_SET_TIMERSLACK, 1UL);  // precise pacing sleeps
  if (o.parent_pid != 0 && getppid() != o.parent_pid) {
    return Status::Unavailable("the coordinator is gone");
  }
  InstallStopHandlers(/*ignore_sigpipe=*/true);
  return PinToCpus(o.cpus);
}

// Waits for "go". False: the coordinator gave up (EOF) or sent something else.
bool AwaitGo() {
  std::optional<std::string> line = ReadLineBlocking();
  return line && *line == "go";
}

// Sleeps or spins until MonotonicNanos() >= t: sleeps through all but the
// last few microseconds of a gap, so a paced producer leaves its CPU to the
// broker's persistence thread (two spinning processes on two CPUs starve
// it), then spins for precision. The timer slack is 1 ns (Prepare), so a
// sleep overshoots by the wake-up latency only. Returns false if told to stop.
bool PaceUntil(int64_t t) {
  constexpr int64_t kSpinNs = 20'000;
  for (;;) {
    const int64_t gap = t - MonotonicNanos();
    if (gap <= 0) return true;
    if (StopRequested()) return false;
    if (gap > kSpinNs) {
      const int64_t sleep_ns = std::min<int64_t>(gap - kSpinNs, 100'000'000);
      timespec ts{static_cast<time_t>(sleep_ns / 1'000'000'000),
                  static_cast<long>(sleep_ns % 1'000'000'000)};
      (void)nanosleep(&ts, nullptr);  // a signal cuts it short: fine
    } else {
      CpuRelax();
    }
  }
}

int RunProducer(const GlobalOptions& global, const PerfWorkerOptions& o) {
  const std::string who = "producer " + std::to_string(o.index);
  if (Status s = Prepare(o); !s.ok()) return Fail(who, s.ToString());
  BusOptions bo;
  bo.create_if_missing = false;
  bo.data_dir = global.data_dir;
  Result<Bus> bus = Bus::Open(global.bus, bo);
  if (!bus.ok()) return Fail(who, ExplainBusOpen(bus.status(), global.bus));
  Result<Producer> made = bus->CreateProducer(o.topic);
  if (!made.ok()) return Fail(who, made.status().ToString());
  Producer& producer = *made;
  if (o.size > producer.max_record_bytes()) {
    return Fail(who, "--size " + std::to_string(o.size) + " exceeds the max record size " +
                         std::to_string(producer.max_record_bytes()) + " of topic '" + o.topic +
                         "'");
  }
  const std::vector<uint32_t> partitions = producer.partitions();
  const uint32_t nparts = static_cast<uint32_t>(partitions.size());
  // The whole value as it goes out: the header is rewritten per record, the
  // filler is a fixed pattern copied into every record.
  std::vector<char> value(o.size);
  for (uint32_t i = perf::kPerfHeaderBytes; i < o.size; ++i) {
    value[i] = static_cast<char>('a' + i % 26);
  }
  EncodeFixed32(value.data() + perf::value::kRunId, o.run_id);
  EncodeFixed32(value.data() + perf::value::kProducer, o.index);
  std::vector<std::optional<uint64_t>> last_offset(producer.partition_count());
  const bool send_latency = o.mode == "produce";
  Histogram hist;
  uint64_t stalls = 0;
  uint64_t stall_ticks = 0;

  Report({"ready", {}});
  if (!AwaitGo()) return kExitRuntime;

  const int64_t start_ns = MonotonicNanos();
  const uint64_t start_ticks = Ticks();
  // Capped at 1e9 s (31 years): up to 1e12 is accepted, and more than
  // ~9.2e9 s of nanoseconds overflows.
  const int64_t deadline_ns =
      o.duration_s > 0 ? start_ns + static_cast<int64_t>(std::min(o.duration_s, 1e9) * 1e9)
                       : INT64_MAX;
  const double interval_ns = o.rate > 0 ? 1e9 / o.rate : 0;
  const std::string_view value_view(value.data(), value.size());
  uint64_t t_prev = start_ticks;
  uint64_t seq = 0;
  std::string error;
  for (; seq < o.records; ++seq) {
    if (StopRequested() || ((seq & 1023) == 0 && MonotonicNanos() >= deadline_ns)) {
      break;
    }
    if (interval_ns > 0) {
      const int64_t due = start_ns + static_cast<int64_t>(static_cast<double>(seq) * interval_ns);
      if (due >= deadline_ns || !PaceUntil(due)) break;
      if (send_latency) t_prev = Ticks();
    }
    const uint32_t partition = partitions[(seq + o.index) % nparts];
    ProducerClaim claim = producer.TryClaim(partition, 0, 0, o.size, /*has_key=*/false);
    if (claim.status() == SendStatus::kFull) [[unlikely]] {
      // Back-pressure: the persistence thread has not written the ring out
      // yet. Block (futex) in Send; the stamp is taken before the wait, so
      // this record's latency includes it.
      ++stalls;
      const uint64_t wait_start = Ticks();
      EncodeFixed64(value.data() + perf::value::kSequence, seq);
      EncodeFixed64(value.data() + perf::value::kStamp, Ticks());
      SendResult r;
      const int64_t give_up = MonotonicNanos() + 30'000'000'000;
      do {
        r = producer.Send(std::nullopt, value_view, {}, partition, std::chrono::milliseconds(100));
      } while (r.status == SendStatus::kTimeout && !StopRequested() && MonotonicNanos() < give_up);
      const uint64_t now = Ticks();
      stall_ticks += now - wait_start;
      if (!r.ok()) {
        if (StopRequested()) break;
        error = r.status == SendStatus::kTimeout
                    ? "topic '" + o.topic + "' partition " + std::to_string(partition) +
                          " stayed full for 30 s: the broker's persistence thread is not "
                          "writing (check `runnel stat` and the broker's stderr)"
                    : producer.Explain(r).ToString();
        break;
      }
      last_offset[partition] = r.offset;
      if (send_latency) hist.Record(now - t_prev);
      t_prev = now;
      continue;
    }
    if (!claim.ok()) [[unlikely]] {
      SendResult r;
      r.status = claim.status();
      r.partition = partition;
      error = producer.Explain(r).ToString();
      break;
    }
    char* v = reinterpret_cast<char*>(claim.value().data());
    std::memcpy(v + perf::kPerfHeaderBytes, value.data() + perf::kPerfHeaderBytes,
                o.size - perf::kPerfHeaderBytes);
    EncodeFixed32(v + perf::value::kRunId, o.run_id);
    EncodeFixed32(v + perf::value::kProducer, o.index);
    EncodeFixed64(v + perf::value::kSequence, seq);
    EncodeFixed64(v + perf::value::kStamp, Ticks());
    const uint64_t offset = claim.offset();
    const SendStatus committed = producer.Commit(claim);
    if (committed != SendStatus::kOk) [[unlikely]] {
      SendResult r;
      r.status = committed;
      r.partition = partition;
      error = producer.Explain(r).ToString();
      break;
    }
    last_offset[partition] = offset;
    if (send_latency) {
      const uint64_t now = Ticks();
      hist.Record(now - t_prev);
      t_prev = now;
    }
  }
  const uint64_t end_ticks = Ticks();

  ReportLine done{"done", {}};
  if (!error.empty()) {
    // Still report what was committed, so the consumer's expectations match.
    PrintError("perf " + who, error);
    done.tag = "failed";
    std::string word = error;
    for (char& c : word) {
      if (c == ' ') c = '_';
    }
    done.fields["error"] = word;
  }
  // With a persisting broker: how long until everything sent is durable.
  uint64_t durable_ticks = 0;
  std::string durable_error;
  if (o.wait_durable && error.empty()) {
    for (uint32_t p = 0; p < last_offset.size(); ++p) {
      if (!last_offset[p]) continue;
      Status s = WaitDurable(producer, p, *last_offset[p], std::chrono::seconds(60));
      if (!s.ok()) {
        durable_error = s.ToString();
        break;
      }
    }
    if (durable_error.empty()) durable_ticks = Ticks();
  }
  done.fields["records"] = std::to_string(seq);
  done.fields["start_ticks"] = std::to_string(start_ticks);
  done.fields["end_ticks"] = std::to_string(end_ticks);
  done.fields["stalls"] = std::to_string(stalls);
  done.fields["stall_ticks"] = std::to_string(stall_ticks);
  if (durable_ticks != 0) done.fields["durable_ticks"] = std::to_string(durable_ticks);
  if (!durable_error.empty()) {
    for (char& c : durable_error) {
      if (c == ' ') c = '_';
    }
    done.fields["durable_error"] = durable_error;
  }
  if (send_latency) done.fields["hist"] = hist.Serialize();
  Report(done);
  return error.empty() ? kExitOk : kExitRuntime;
}

// What the consumer checks per record: that it belongs to this run, comes
// from a known producer with a sequence it expects, is new (a bitmap per
// producer), and comes after that producer's previous record in the same
// partition (order within a partition).
class Verifier {
 public:
  Verifier(uint32_t run_id, uint32_t producers, uint64_t records, uint32_t partitions)
      : run_id_(run_id), producers_(producers), partitions_(partitions) {
    expected_.resize(producers);
    seen_.resize(producers);
    got_.assign(producers, 0);
    last_seq_.assign(static_cast<std::size_t>(producers) * partitions, kNone);
    for (uint32_t k = 0; k < producers; ++k) {
      expected_[k] = PerfShare(records, producers, k);
      seen_[k].assign((expected_[k] + 63) / 64, 0);
    }
  }

  // Returns false if the record is not one of this run's.
  bool Add(std::string_view value, uint32_t partition) {
    if (value.size() < perf::kPerfHeaderBytes) {
      ++foreign_;
      return false;
    }
    const char* d = value.data();
    const uint32_t k = DecodeFixed32(d + perf::value::kProducer);
    const uint64_t seq = DecodeFixed64(d + perf::value::kSequence);
    if (DecodeFixed32(d + perf::value::kRunId) != run_id_ || k >= producers_ ||
        seq >= seen_[k].size() * 64 || partition >= partitions_) [[unlikely]] {
      ++foreign_;
      return false;
    }
    uint64_t& word = seen_[k][seq >> 6];
    const uint64_t bit = uint64_t{1} << (seq & 63);
    if (word & bit) [[unlikely]] {
      ++duplicates_;
    } else {
      word |= bit;
      ++got_[k];
      ++received_;
    }
    uint64_t& last = last_seq_[static_cast<std::size_t>(k) * partitions_ + partition];
    if (last != kNone && seq <= last) [[unlikely]]
      ++out_of_order_;
    last = seq;
    return true;
  }

  // The producers' final counts (they may stop early: --duration, errors).
  void SetExpected(const std::vector<uint64_t>& counts) {
    for (uint32_t k = 0; k < producers_ && k < counts.size(); ++k) {
      expected_[k] = counts[k];
    }
  }
  uint64_t expected_total() const {
    uint64_t t = 0;
    for (uint64_t e : expected_) t += e;
    return t;
  }
  bool complete() const {
    for (uint32_t k = 0; k < producers_; ++k) {
      if (got_[k] < expected_[k]) return false;
    }
    return true;
  }
  // Records of producer k below its expected count that never arrived.
  uint64_t missing() const {
    uint64_t m = 0;
    for (uint32_t k = 0; k < producers_; ++k) {
      if (got_[k] < expected_[k]) m += expected_[k] - got_[k];
    }
    return m;
  }

  uint64_t received() const { return received_; }
  uint64_t duplicates() const { return duplicates_; }
  uint64_t out_of_order() const { return out_of_order_; }
  uint64_t foreign() const { return foreign_; }
  std::string GotList() const {
    std::string s;
    for (uint64_t g : got_) s += (s.empty() ? "" : ",") + std::to_string(g);
    return s;
  }

 private:
  static constexpr uint64_t kNone = UINT64_MAX;
  uint32_t run_id_;
  uint32_t producers_;
  uint32_t partitions_;
  std::vector<uint64_t> expected_;
  std::vector<std::vector<uint64_t>> seen_;
  std::vector<uint64_t> got_;
  std::vector<uint64_t> last_seq_;
  uint64_t received_ = 0;
  uint64_t duplicates_ = 0;
  uint64_t out_of_order_ = 0;
  uint64_t foreign_ = 0;
};

std::optional<std::vector<uint64_t>> ParseCounts(std::string_view text) {
  std::vector<uint64_t> out;
  while (!text.empty()) {
    const std::size_t comma = text.find(',');
    std::optional<uint64_t> v = ParseUint(text.substr(0, comma));
    if (!v) return std::nullopt;
    out.push_back(*v);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
  }
  return out;
}

int RunConsumer(const GlobalOptions& global, const PerfWorkerOptions& o) {
  const std::string who = "consumer";
  if (Status s = Prepare(o); !s.ok()) return Fail(who, s.ToString());
  BusOptions bo;
  bo.create_if_missing = false;
  bo.data_dir = global.data_dir;
  Result<Bus> bus = Bus::Open(global.bus, bo);
  if (!bus.ok()) return Fail(who, ExplainBusOpen(bus.status(), global.bus));
  ConsumerOptions co;
  co.start = o.seek.empty() ? StartPosition::Latest() : StartPosition::Earliest();
  co.wait = o.wait == "busy"    ? WaitStrategy::kBusySpin
            : o.wait == "yield" ? WaitStrategy::kSpinYield
                                : WaitStrategy::kBlocking;
  co.verify_crc = o.verify_crc;
  // Records older than the ring come from the segment files: the bus reads
  // them from --data-dir (BusOptions::data_dir), where the broker writes them.
  Result<Consumer> made = bus->CreateConsumer(o.topic, co);
  if (!made.ok()) return Fail(who, made.status().ToString());
  Consumer& consumer = *made;
  uint32_t nparts = 0;
  for (uint32_t p : consumer.partitions()) nparts = std::max(nparts, p + 1);
  // consume mode: start exactly where the pre-fill started.
  std::string_view seek = o.seek;
  while (!seek.empty()) {
    const std::size_t comma = seek.find(',');
    const std::string_view item = seek.substr(0, comma);
    seek = comma == std::string_view::npos ? std::string_view() : seek.substr(comma + 1);
    const std::size_t colon = item.find(':');
    std::optional<uint64_t> p = ParseUint(item.substr(0, colon));
    std::optional<uint64_t> off =
        colon == std::string_view::npos ? std::nullopt : ParseUint(item.substr(colon + 1));
    if (!p || !off) return Fail(who, "bad --seek item '" + std::string(item) + "'");
    if (Status s = consumer.Seek(static_cast<uint32_t>(*p), *off); !s.ok()) {
      return Fail(who, s.ToString());
    }
  }
  // Where the ring starts now, per partition: in consume mode (nobody
  // produces while we drain) a record below it can only come from disk.
  std::vector<uint64_t> ring_start(nparts, 0);
  if (Result<TopicInfo> info = bus->DescribeTopic(o.topic); info.ok()) {
    for (const PartitionInfo& p : info->partitions) {
      if (p.partition < nparts) ring_start[p.partition] = p.earliest_offset;
    }
  }
  uint64_t from_disk = 0;
  // Offsets within a partition must follow each other (perf producers never
  // abort a claim): a jump that no overrun report explains is a bus bug.
  std::vector<uint64_t> next_offset(nparts, UINT64_MAX);
  uint64_t skipped_offsets = 0;
  std::string first_skip;
  Verifier verifier(o.run_id, o.producers, o.records, nparts);
  const bool latency = o.mode == "roundtrip";
  Histogram hist;
  uint64_t negative = 0;  // stamps from the future: clocks disagree
  uint64_t first_ticks = 0;
  uint64_t last_ticks = 0;
  uint64_t lost = 0;
  uint64_t torn = 0;
  std::string error;

  Report({"ready", {}});
  if (!AwaitGo()) return kExitRuntime;
  const uint64_t start_ticks = Ticks();
  (void)fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);

  auto handler = [&](const ConsumerRecord& r) {
    const uint64_t now = perf::TicksAfterLoads();
    const std::string_view v = r.value();
    if (!verifier.Add(v, r.partition())) return;
    if (r.offset() < ring_start[r.partition()]) ++from_disk;
    uint64_t& expect = next_offset[r.partition()];
    if (expect != UINT64_MAX && r.offset() != expect) [[unlikely]] {
      if (r.offset() > expect) skipped_offsets += r.offset() - expect;
      if (first_skip.empty()) {
        first_skip = "partition_" + std::to_string(r.partition()) + ":_expected_offset_" +
                     std::to_string(expect) + "_got_" + std::to_string(r.offset());
      }
    }
    expect = r.offset() + 1;
    if (latency) {
      const uint64_t stamp = DecodeFixed64(v.data() + perf::value::kStamp);
      if (now >= stamp) {
        hist.Record(now - stamp);
      } else {
        hist.Record(0);
        ++negative;
      }
    }
    if (first_ticks == 0) first_ticks = now;
    last_ticks = now;
  };

  const bool busy = co.wait != WaitStrategy::kBlocking;
  std::string pending;
  bool ended = false;  // the coordinator sent the final counts
  bool eof = false;
  int64_t last_progress_ns = MonotonicNanos();
  uint64_t idle_polls = 0;
  uint64_t last_received = 0;  // progress is measured in records received
  // A stop signal (Ctrl-C) does not end the loop at once: the producers stop
  // too, and the consumer drains what they committed, so the partial run
  // still checks out.
  while (!verifier.complete()) {
    const bool stopping = StopRequested();
    const PollResult r = busy ? consumer.Poll(handler, 256)
                              : consumer.PollFor(handler, 256, std::chrono::milliseconds(2));
    if (r.status == PollStatus::kOverrun) {
      lost += r.lost_records;
      torn += r.torn;
    } else if (r.status == PollStatus::kCorrupt) {
      error =
          "partition " + std::to_string(r.partition) + ": a frame in the ring failed validation";
      break;
    } else if (r.status == PollStatus::kTopicDeleted) {
      error = "topic '" + o.topic + "' was deleted during the run";
      break;
    }
    if (r.records > 0) {
      idle_polls = 0;
      continue;
    }
    // Idle: look at the control pipe now and then (a read is a syscall).
    if (busy && !stopping && (++idle_polls & 4095) != 0) continue;
    const int64_t now = MonotonicNanos();
    for (const std::string& line : ReadLinesNonBlocking(pending, &eof)) {
      std::optional<ReportLine> msg = ReportLine::Parse(line);
      if (!msg || msg->tag != "end") continue;
      std::optional<std::vector<uint64_t>> counts = ParseCounts(msg->Str("counts"));
      if (counts) verifier.SetExpected(*counts);
      ended = true;
      last_progress_ns = now;
    }
    if (eof && !ended) return kExitRuntime;  // the coordinator gave up
    if (verifier.received() != last_received) {
      last_received = verifier.received();
      last_progress_ns = now;
    }
    const int64_t idle_limit_ns =
        stopping ? 300'000'000 : static_cast<int64_t>(o.idle_timeout_ms) * 1'000'000;
    if (ended && (verifier.received() + lost >= verifier.expected_total() ||
                  now - last_progress_ns > idle_limit_ns)) {
      break;  // the rest is not coming (lapped: lost, or never sent)
    }
  }

  ReportLine done{error.empty() ? "done" : "failed", {}};
  if (!error.empty()) {
    PrintError("perf " + who, error);
    std::string word = error;
    for (char& c : word) {
      if (c == ' ') c = '_';
    }
    done.fields["error"] = word;
  }
  done.fields["received"] = std::to_string(verifier.received());
  done.fields["got"] = verifier.GotList();
  done.fields["missing"] = std::to_string(verifier.missing());
  done.fields["duplicates"] = std::to_string(verifier.duplicates());
  done.fields["out_of_order"] = std::to_string(verifier.out_of_order());
  done.fields["foreign"] = std::to_string(verifier.foreign());
  done.fields["lost"] = std::to_string(lost);
  done.fields["torn"] = std::to_string(torn);
  done.fields["skipped_offsets"] = std::to_string(skipped_offsets);
  if (!first_skip.empty()) done.fields["first_skip"] = first_skip;
  done.fields["from_disk"] = std::to_string(o.mode == "consume" ? from_disk : 0);
  done.fields["negative"] = std::to_string(negative);
  done.fields["start_ticks"] = std::to_string(start_ticks);
  done.fields["first_ticks"] = std::to_string(first_ticks);
  done.fields["last_ticks"] = std::to_string(last_ticks);
  if (latency) done.fields["hist"] = hist.Serialize();
  Report(done);
  return error.empty() ? kExitOk : kExitRuntime;
}

}  // namespace

int RunPerfWorker(const GlobalOptions& global, const PerfWorkerOptions& o) {
  if (o.role == "producer") return RunProducer(global, o);
  if (o.role == "consumer") return RunConsumer(global, o);
  PrintError("perf-worker", "--role must be producer or consumer");
  return kExitUsage;
}

void RegisterPerfWorker(CLI::App& app, const GlobalOptions& global) {
  CLI::App* sub = app.add_subcommand("perf-worker",
                                     "A producer or consumer process of `runnel perf` (internal)");
  sub->group("");  // hidden from --help: only `runnel perf` starts it
  auto o = std::make_shared<PerfWorkerOptions>();
  sub->add_option("--role", o->role)->required()->check(CLI::IsMember({"producer", "consumer"}));
  sub->add_option("--mode", o->mode)
      ->required()
      ->check(CLI::IsMember({"produce", "consume", "roundtrip"}));
  sub->add_option("--topic", o->topic)->required();
  sub->add_option("--run-id", o->run_id)->required();
  sub->add_option("--index", o->index);
  sub->add_option("--producers", o->producers)->check(CLI::PositiveNumber);
  sub->add_option("--records", o->records)->required();
  sub->add_option("--size", o->size)->check(CLI::Range(perf::kPerfHeaderBytes, UINT32_MAX));
  sub->add_option("--rate", o->rate)->check(CLI::NonNegativeNumber);
  sub->add_option("--duration", o->duration_s)->check(CLI::NonNegativeNumber);
  sub->add_option("--cpus", o->cpus);
  sub->add_option("--wait", o->wait)->check(CLI::IsMember({"busy", "yield", "block"}));
  sub->add_option("--seek", o->seek);
  sub->add_flag("--verify-crc", o->verify_crc);
  sub->add_flag("--wait-durable", o->wait_durable);
  sub->add_option("--idle-timeout-ms", o->idle_timeout_ms);
  sub->add_option("--parent-pid", o->parent_pid);
  SetRunner(sub, [o, &global] { return RunPerfWorker(global, *o); });
}

}  // namespace runnel::cli
