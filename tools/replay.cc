// `runnel replay DIR`: reads segment files directly (persistence/reader.h),
// with no bus and no broker: prints records, verifies logs (--verify), or
// re-publishes records into a live topic (--into).
//
// DIR may be a data dir (DIR/<topic>/<partition>/), a topic dir
// (DIR/<partition>/) or a partition dir (segment files in DIR itself).
// Partitions are replayed one after the other, topics and partitions in
// sorted order. Any damage (a frame that fails its checks) is reported on
// stderr with its file and byte position, and makes the exit code 3.

#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "ipc/bus.h"
#include "ipc/durability.h"
#include "ipc/producer.h"
#include "persistence/format.h"
#include "persistence/reader.h"
#include "tools/bus_util.h"
#include "tools/cli_common.h"
#include "tools/commands.h"
#include "tools/record_format.h"

namespace runnel::cli {
namespace {

constexpr std::string_view kReplayCmd = "replay";
namespace fs = std::filesystem;

struct ReplayArgs {
  std::string dir;
  std::optional<std::string> topic;
  std::optional<uint32_t> partition;
  std::string from;  // "": the log start; OFFSET; @EPOCH_MS
  std::optional<uint64_t> to;
  bool verify = false;
  std::string format = "value";
  std::string key_separator = "\t";
  std::optional<std::string> into;
  int64_t timeout_ms = 5000;
  bool progress = false;
  bool no_progress = false;
};

// One partition directory to read.
struct Source {
  std::string topic;
  uint32_t partition = 0;
  std::string dir;
};

bool LooksLikePartitionDir(const fs::path& dir) {
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (ParseSegmentFileName(name) || name == kCheckpointFileName) return true;
  }
  return false;
}

// Adds the partitions topic.meta names whose directory is missing: --verify
// reports them (removed by hand, with their records), reading says it cannot.
void AddMissingPartitions(const std::string& data_dir, const std::string& topic,
                          std::vector<uint32_t>& parts) {
  Result<TopicOptions> meta = ReadTopicMeta(data_dir, topic);
  if (!meta.ok()) return;
  for (uint32_t p = 0; p < meta->partitions; ++p) {
    if (std::find(parts.begin(), parts.end(), p) == parts.end()) parts.push_back(p);
  }
  std::sort(parts.begin(), parts.end());
}

// Finds the partition directories under `dir` that pass the filters.
Result<std::vector<Source>> FindSources(const ReplayArgs& args) {
  std::error_code ec;
  const fs::path dir = fs::absolute(args.dir, ec).lexically_normal();
  const fs::path clean = dir.filename().empty() ? dir.parent_path() : dir;
  if (!fs::is_directory(clean, ec)) {
    return Status::NotFound(fmt::format("{} is not a directory", args.dir));
  }
  std::vector<Source> out;
  auto wanted = [&](const std::string& topic, uint32_t partition) {
    return (!args.topic || *args.topic == topic) &&
           (!args.partition || *args.partition == partition);
  };
  if (LooksLikePartitionDir(clean)) {
    // A partition dir: its name is the partition, its parent's the topic.
    const std::string topic = clean.parent_path().filename().string();
    const std::optional<uint64_t> p = ParseUint(clean.filename().string());
    const uint32_t partition = p && *p <= UINT32_MAX ? static_cast<uint32_t>(*p) : 0;
    if (wanted(topic, partition)) {
      out.push_back({topic, partition, clean.string()});
    }
    return out;
  }
  // A topic dir?
  const std::string parent = clean.parent_path().string();
  const std::string name = clean.filename().string();
  Result<std::vector<uint32_t>> as_topic = ListPartitions(parent, name);
  std::error_code topic_meta_ec;
  const bool has_meta = fs::is_regular_file(clean / "topic.meta", topic_meta_ec);
  if (as_topic.ok() && ((!as_topic->empty() &&
                         LooksLikePartitionDir(PartitionDir(parent, name, as_topic->front()))) ||
                        has_meta)) {
    AddMissingPartitions(parent, name, *as_topic);
    for (uint32_t p : *as_topic) {
      if (wanted(name, p)) {
        out.push_back({name, p, PartitionDir(parent, name, p)});
      }
    }
    return out;
  }
  // A data dir.
  Result<std::vector<std::string>> topics = ListTopics(clean.string());
  if (!topics.ok()) return topics.status();
  for (const std::string& t : *topics) {
    if (args.topic && *args.topic != t) continue;
    Result<std::vector<uint32_t>> parts = ListPartitions(clean.string(), t);
    if (!parts.ok()) continue;
    // A directory that only looks like a topic (`replay /etc`) is skipped:
    // a runnel topic has its settings file or runnel files in a partition.
    std::error_code meta_ec;
    const bool runnel_topic = fs::exists(clean / t / "topic.meta", meta_ec);
    if (runnel_topic) AddMissingPartitions(clean.string(), t, *parts);
    for (uint32_t p : *parts) {
      const std::string pdir = PartitionDir(clean.string(), t, p);
      if (!runnel_topic && !LooksLikePartitionDir(pdir)) continue;
      if (wanted(t, p)) out.push_back({t, p, pdir});
    }
  }
  if (out.empty() && args.topic) {
    std::string names;
    for (const std::string& t : *topics) names += (names.empty() ? "" : ", ") + t;
    return Status::NotFound(
        fmt::format("no topic '{}'{} in {} (topics there: {})", *args.topic,
                    args.partition ? fmt::format(" partition {}", *args.partition) : std::string(),
                    clean.string(), names.empty() ? "none" : names));
  }
  return out;
}

uint64_t SegmentBytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    if (!ParseSegmentFileName(it->path().filename().string())) continue;
    std::error_code size_ec;
    const uint64_t size = it->file_size(size_ec);
    if (!size_ec) total += size;
  }
  return total;
}

std::string FormatDamage(const std::string& dir, const Damage& d) {
  if (d.file.empty()) return fmt::format("{}: {}", dir, d.reason);  // the directory itself
  std::string s = fmt::format("{}/{} at byte {}: {}", dir, d.file, d.file_position, d.reason);
  if (d.offset_before || d.resume_position) {
    s += " (";
    if (d.offset_before) s += fmt::format("after offset {}", *d.offset_before);
    if (d.offset_before && d.resume_position) s += "; ";
    if (d.resume_position) s += fmt::format("resumed at byte {}", *d.resume_position);
    s += ")";
  }
  return s;
}

// A progress bar on stderr, redrawn at most every 100 ms; silent unless
// enabled (stderr is a terminal, or --progress).
class Progress {
 public:
  enum class Unit : uint8_t { kBytes, kPartitions };
  Progress(bool enabled, uint64_t total, Unit unit = Unit::kBytes)
      : enabled_(enabled), total_(total), unit_(unit) {}
  ~Progress() { Finish(); }

  void Update(uint64_t done, uint64_t records, std::string_view label) {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (drawn_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    drawn_ = true;
    constexpr int kWidth = 30;
    const double fraction =
        total_ == 0 ? 1.0 : std::min(1.0, static_cast<double>(done) / static_cast<double>(total_));
    const int filled = static_cast<int>(fraction * kWidth);
    const std::string amount = unit_ == Unit::kBytes
                                   ? fmt::format("{} / {}", FormatSize(done), FormatSize(total_))
                                   : fmt::format("partition {} / {}", done + 1, total_);
    fmt::print(stderr, "\r[{}{}] {:3.0f}% {}, {} records  {}\x1b[K",
               std::string(static_cast<std::size_t>(filled), '#'),
               std::string(static_cast<std::size_t>(kWidth - filled), '.'), fraction * 100, amount,
               records, label);
    std::fflush(stderr);
  }

  void Finish() {
    if (enabled_ && drawn_) {
      fmt::print(stderr, "\r\x1b[K");
      std::fflush(stderr);
      drawn_ = false;
    }
  }

 private:
  bool enabled_;
  uint64_t total_;
  Unit unit_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

// Re-publishes records into a live topic, keeping key, headers and
// timestamp. Partition: by key hash, round-robin without a key (as
// `runnel produce` without --partition).
class Republisher {
 public:
  Republisher(Producer producer, int64_t timeout_ms)
      : producer_(std::move(producer)), timeout_ms_(timeout_ms) {}

  Status Publish(const RecordView& r) {
    const uint32_t partition =
        r.has_key() ? producer_.KeyPartition(r.key()) : producer_.ChoosePartition(std::nullopt);
    const std::string_view key = r.key();
    const std::span<const std::byte> headers = r.headers_bytes();
    const std::string_view value = r.value();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms_);
    for (int spins = 0;; ++spins) {
      ProducerClaim claim = producer_.TryClaim(partition, static_cast<uint32_t>(key.size()),
                                               static_cast<uint32_t>(headers.size()),
                                               static_cast<uint32_t>(value.size()), r.has_key());
      if (claim.ok()) {
        std::memcpy(claim.key().data(), key.data(), key.size());
        std::memcpy(claim.headers().data(), headers.data(), headers.size());
        std::memcpy(claim.value().data(), value.data(), value.size());
        claim.set_timestamp(r.timestamp_ns());
        const SendStatus s = producer_.Commit(claim);
        if (s != SendStatus::kOk) {
          return Status::Internal(fmt::format("commit failed: {}", SendStatusName(s)));
        }
        ++published_;
        return Status::Ok();
      }
      if (claim.status() != SendStatus::kFull) {
        SendResult sr;
        sr.status = claim.status();
        sr.partition = partition;
        return producer_.Explain(sr);
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        return Status::Timeout(
            fmt::format("partition {} of topic '{}' stayed full for {} ms: is its broker running?",
                        partition, producer_.topic(), timeout_ms_));
      }
      if (spins > 64) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

  uint64_t published() const { return published_; }

 private:
  Producer producer_;
  int64_t timeout_ms_;
  uint64_t published_ = 0;
};

class Output {
 public:
  // False once stdout is gone (EPIPE) or failed.
  bool Write(std::string& buf, bool force) {
    if (failed_) return false;
    if (!force && buf.size() < (1 << 16)) return true;
    if (!buf.empty() && std::fwrite(buf.data(), 1, buf.size(), stdout) != buf.size()) {
      error_ = errno;
      failed_ = true;
      return false;
    }
    buf.clear();
    if (force && std::fflush(stdout) != 0) {
      error_ = errno;
      failed_ = true;
    }
    return !failed_;
  }
  int error() const { return error_; }

 private:
  bool failed_ = false;
  int error_ = 0;
};

// ---- --verify ---------------------------------------------------------------

int RunVerify(const ReplayArgs& args, const std::vector<Source>& sources, bool json) {
  Progress progress(args.progress || (!args.no_progress && isatty(STDERR_FILENO)), sources.size(),
                    Progress::Unit::kPartitions);
  JsonWriter w;
  if (json) w.BeginObject().Key("dir").String(args.dir).Key("partitions").BeginArray();
  uint64_t segments = 0, records = 0, bytes = 0, damaged = 0, damage_count = 0;
  uint64_t unreadable = 0;  // VerifyLog failed: not checked, so not "clean"
  bool error = false;
  for (std::size_t i = 0; i < sources.size(); ++i) {
    const Source& src = sources[i];
    progress.Update(i, records, fmt::format("{}/{}", src.topic, src.partition));
    if (std::vector<int32_t> writers = FlockHolders(src.dir); !writers.empty()) {
      progress.Finish();
      PrintWarning(kReplayCmd,
                   fmt::format("{} is open for writing by pid {}: a record being written "
                               "at its tail may show as damage (verify a stopped broker's "
                               "log, or a copy)",
                               src.dir, writers.front()));
    }
    std::error_code dir_ec;
    Result<VerifyReport> report = VerifyReport{};
    if (fs::exists(src.dir, dir_ec)) {
      report = VerifyLog(src.dir);
    } else {
      report->damages.push_back(
          Damage{"", 0,
                 "missing: the topic's settings (topic.meta) name this partition, so its log "
                 "directory was removed, and its records with it"});
    }
    progress.Finish();
    if (!report.ok()) {
      PrintError(kReplayCmd,
                 fmt::format("cannot verify {}: {}", src.dir, report.status().ToString()));
      error = true;
      ++unreadable;
      continue;
    }
    const VerifyReport& r = *report;
    segments += r.segments;
    records += r.records;
    bytes += r.bytes;
    damage_count += r.damages.size() + r.damages_not_kept;
    if (!r.ok()) ++damaged;
    if (json) {
      w.BeginObject();
      w.Key("topic").String(IsValidUtf8(src.topic) ? src.topic : "?");
      w.Key("partition").Uint(src.partition);
      w.Key("dir").String(IsValidUtf8(src.dir) ? src.dir : "?");
      w.Key("segments").Uint(r.segments).Key("records").Uint(r.records);
      w.Key("control_records").Uint(r.control_records);
      w.Key("padding_frames").Uint(r.padding_frames).Key("bytes").Uint(r.bytes);
      w.Key("first_offset").OptionalUint(r.first_offset);
      w.Key("last_offset").OptionalUint(r.last_offset);
      w.Key("first_timestamp_ns");
      r.first_timestamp_ns ? w.Int(*r.first_timestamp_ns) : w.Null();
      w.Key("last_timestamp_ns");
      r.last_timestamp_ns ? w.Int(*r.last_timestamp_ns) : w.Null();
      w.Key("damages").BeginArray();
      for (const Damage& d : r.damages) {
        w.BeginObject();
        w.Key("file").String(IsValidUtf8(d.file) ? d.file : "?");
        w.Key("file_position").Uint(d.file_position);
        w.Key("reason").String(IsValidUtf8(d.reason) ? d.reason : "?");
        w.Key("offset_before").OptionalUint(d.offset_before);
        w.Key("resume_position").OptionalUint(d.resume_position);
        w.EndObject();
      }
      w.EndArray();
      w.Key("damages_not_kept").Uint(r.damages_not_kept);
      w.Key("gaps").Uint(r.gaps).Key("gap_offsets").Uint(r.gap_offsets);
      w.Key("notes").BeginArray();
      for (const std::string& n : r.notes) w.String(IsValidUtf8(n) ? n : "?");
      w.EndArray();
      w.Key("ok").Bool(r.ok());
      w.EndObject();
      continue;
    }
    fmt::print("{}/{}  ({})\n", src.topic, src.partition, src.dir);
    fmt::print("  segments {}, records {}{}, padding frames {}, bytes {}\n", r.segments, r.records,
               r.control_records ? fmt::format(" ({} control)", r.control_records) : "",
               r.padding_frames, r.bytes);
    if (r.first_offset) {
      fmt::print("  offsets {}..{}, timestamps {} .. {}\n", *r.first_offset,
                 r.last_offset.value_or(*r.first_offset),
                 r.first_timestamp_ns ? FormatTimestamp(*r.first_timestamp_ns) : "-",
                 r.last_timestamp_ns ? FormatTimestamp(*r.last_timestamp_ns) : "-");
    } else {
      fmt::print("  no records\n");
    }
    if (r.gaps > 0) {
      fmt::print(
          "  gaps {}: {} not in the log (lost before the broker persisted them, or cut from a "
          "damaged log by a repair; marked by the broker, not damage)\n",
          r.gaps, Count(r.gap_offsets, "offset"));
    }
    for (const std::string& n : r.notes) fmt::print("  note: {}\n", n);
    for (const Damage& d : r.damages) fmt::print("  DAMAGE {}\n", FormatDamage(src.dir, d));
    if (r.damages_not_kept > 0) {
      fmt::print("  ... and {} more damaged places\n", r.damages_not_kept);
    }
    fmt::print("  {}\n", r.ok() ? "clean" : "DAMAGED");
  }
  progress.Finish();
  if (json) {
    w.EndArray();
    w.Key("partitions_checked").Uint(sources.size()).Key("segments").Uint(segments);
    w.Key("records").Uint(records).Key("bytes").Uint(bytes);
    w.Key("damaged_partitions").Uint(damaged).Key("damages").Uint(damage_count);
    w.Key("unreadable_partitions").Uint(unreadable);
    w.Key("ok").Bool(damaged == 0 && !error).EndObject();
    fmt::print("{}\n", w.str());
  } else {
    std::string verdict = damaged == 0
                              ? std::string(unreadable == 0 ? "clean" : "no damage found")
                              : fmt::format("{} damaged partition{} ({} damaged places)", damaged,
                                            damaged == 1 ? "" : "s", damage_count);
    if (unreadable > 0) {
      verdict += fmt::format("; {} could not be read (see above)", Count(unreadable, "partition"));
    }
    fmt::print("summary: {} partition{}, {} segments, {} records, {}: {}\n", sources.size(),
               sources.size() == 1 ? "" : "s", segments, records, FormatSize(bytes), verdict);
  }
  std::fflush(stdout);
  if (damaged > 0) return kExitDamage;
  return error ? kExitRuntime : kExitOk;
}

// ---- reading ----------------------------------------------------------------

int RunRead(const GlobalOptions& global, const ReplayArgs& args, const std::vector<Source>& sources,
            OutputFormat format) {
  std::optional<Republisher> into;
  std::optional<Bus> bus;
  if (args.into) {
    bus = OpenExistingBus(global, kReplayCmd);
    if (!bus) return kExitRuntime;
    Result<Producer> producer = bus->CreateProducer(*args.into);
    if (!producer.ok()) {
      PrintError(kReplayCmd, producer.status().code() == StatusCode::kNotFound
                                 ? ExplainTopicNotFound(*args.into, global)
                                 : producer.status().ToString());
      return kExitRuntime;
    }
    into.emplace(std::move(*producer), args.timeout_ms);
  }
  // Replaying a topic into itself: the copies land in the log being read.
  // Each of its partitions is read up to the offset it had reached before
  // anything was published, so every record is copied once and the replay
  // ends (it used to read its own copies, on and on).
  std::map<std::string, uint64_t> stop_at;  // partition dir -> first offset not to read
  if (into) {
    Result<BusInfo> info = bus->Info();
    Result<TopicInfo> topic = bus->DescribeTopic(*args.into);
    if (info.ok() && topic.ok() && !info->broker_data_dir.empty()) {
      for (const Source& src : sources) {
        if (src.topic != *args.into || src.partition >= topic->partitions.size()) continue;
        std::error_code ec;
        const fs::path live =
            fs::path(info->broker_data_dir) / src.topic / std::to_string(src.partition);
        if (fs::equivalent(src.dir, live, ec)) {
          stop_at[src.dir] = topic->partitions[src.partition].next_offset;
        }
      }
    }
  }
  std::signal(SIGPIPE, SIG_IGN);

  uint64_t total_bytes = 0;
  for (const Source& s : sources) total_bytes += SegmentBytes(s.dir);
  Progress progress(args.progress || (!args.no_progress && isatty(STDERR_FILENO)), total_bytes);

  const std::string sep = UnescapeSeparator(args.key_separator);
  Output output;
  std::string buf;
  uint64_t done_bytes = 0, records = 0, damages = 0;
  bool failed = false;
  for (const Source& src : sources) {
    LogReaderOptions ropts;
    ropts.verify_crc = true;
    // A log a broker has open may end in a frame being written: read it as
    // a live log (an unfinished frame at the tail is the end, not damage).
    ropts.follow = !FlockHolders(src.dir).empty();
    Result<LogReader> reader = LogReader::Open(src.dir, ropts);
    if (!reader.ok()) {
      PrintError(kReplayCmd,
                 fmt::format("cannot read {}: {}", src.dir, reader.status().ToString()));
      failed = true;
      continue;
    }
    Status seek = Status::Ok();
    if (args.from.empty()) {
      seek = reader->SeekToStart();
    } else if (args.from[0] == '@') {
      const uint64_t ms = *ParseUint(std::string_view(args.from).substr(1));
      seek = reader->SeekTimestamp(static_cast<int64_t>(ms) * 1'000'000);
    } else {
      seek = reader->Seek(*ParseUint(args.from));
      if (seek.code() == StatusCode::kOutOfRange) {
        PrintWarning(kReplayCmd,
                     fmt::format("{}: {}; starting at the log start", src.dir, seek.message()));
        seek = reader->SeekToStart();
      }
    }
    if (!seek.ok()) {
      PrintError(kReplayCmd, fmt::format("cannot position in {}: {}", src.dir, seek.ToString()));
      failed = true;
      continue;
    }
    const uint64_t records_before = records;
    const auto stop = stop_at.find(src.dir);
    for (;;) {
      LogEntry e = reader->Next();
      if (e.kind == LogEntry::Kind::kEnd) break;
      if (stop != stop_at.end() && e.kind == LogEntry::Kind::kRecord &&
          e.record.offset() >= stop->second) {
        break;  // this replay's own copies from here on
      }
      if (e.kind == LogEntry::Kind::kDamage) {
        ++damages;
        progress.Finish();
        PrintWarning(kReplayCmd, fmt::format("damage: {}", FormatDamage(src.dir, *e.damage)));
        continue;
      }
      if (e.control) {
        std::optional<GapMarker> gap = DecodeGapMarker(e.record);
        // Only what the requested range ([--from, --to]) misses.
        if (gap && !args.from.empty() && args.from[0] != '@') {
          gap->from = std::max(gap->from, *ParseUint(args.from));
        }
        if (gap && args.to) gap->to = std::min(gap->to, *args.to + 1);
        if (gap && gap->from < gap->to) {
          progress.Finish();
          PrintWarning(kReplayCmd,
                       fmt::format("{}/{}: offsets {}..{} are not in the log (lost before the "
                                   "broker persisted them, or cut from a damaged log by a repair)",
                                   src.topic, src.partition, gap->from, gap->to - 1));
        }
        if (args.to && e.record.offset() >= *args.to) break;
        continue;
      }
      if (args.to && e.record.offset() > *args.to) break;
      ++records;
      if (into) {
        if (Status s = into->Publish(e.record); !s.ok()) {
          progress.Finish();
          PrintError(kReplayCmd, fmt::format("cannot publish offset {} of {}/{} into '{}': {}",
                                             e.record.offset(), src.topic, src.partition,
                                             *args.into, s.message()));
          failed = true;
          break;
        }
      } else {
        AppendRecord(buf, format, src.topic, src.partition, e.record, sep);
        if (!output.Write(buf, false)) break;
      }
      if ((records & 1023) == 0) {
        progress.Update(done_bytes + reader->stats().bytes, records,
                        fmt::format("{}/{}", src.topic, src.partition));
      }
    }
    if (records == records_before && !args.from.empty() && !failed) {
      // Said, so that an empty output is not taken for an empty log.
      progress.Finish();
      const std::string range = args.from[0] == '@'
                                    ? "stamped at or after " + args.from.substr(1) + " ms"
                                    : "at or after offset " + args.from;
      PrintWarning(kReplayCmd,
                   fmt::format("{}/{}: no records {}{}", src.topic, src.partition, range,
                               args.to ? fmt::format(" up to offset {}", *args.to) : ""));
    }
    done_bytes += SegmentBytes(src.dir);
    if (failed || !output.Write(buf, true)) break;
  }
  progress.Finish();
  if (!output.Write(buf, true) && output.error() != EPIPE) {
    PrintError(kReplayCmd,
               fmt::format("cannot write to stdout: {}", std::strerror(output.error())));
    return kExitRuntime;
  }
  if (into) {
    fmt::print(stderr, "runnel replay: republished {} record{} into topic '{}' on bus '{}'\n",
               into->published(), into->published() == 1 ? "" : "s", *args.into, global.bus);
  }
  if (damages > 0) {
    PrintError(kReplayCmd, fmt::format("{} damaged place{} found (the damage lines above say "
                                       "what each one cost: a damaged record is skipped, a "
                                       "damaged segment header costs nothing); run "
                                       "`runnel replay {} --verify` for a report",
                                       damages, damages == 1 ? "" : "s", args.dir));
    return kExitDamage;
  }
  return failed ? kExitRuntime : kExitOk;
}

int RunReplay(const GlobalOptions& global, const ReplayArgs& args) {
  const std::optional<OutputFormat> format = ParseOutputFormat(args.format);
  if (!format) return kExitUsage;
  if (args.verify && (!args.from.empty() || args.to || args.into)) {
    PrintError(kReplayCmd,
               "--verify checks whole logs: it cannot be combined with --from, --to or --into");
    return kExitUsage;
  }
  if (args.verify && *format == OutputFormat::kKv) {
    PrintError(kReplayCmd, "--verify prints a report: use --format value (text) or --format json");
    return kExitUsage;
  }
  if (args.to && !args.from.empty() && args.from[0] != '@' && *ParseUint(args.from) > *args.to) {
    PrintError(kReplayCmd, fmt::format("--from {} is after --to {}", args.from, *args.to));
    return kExitUsage;
  }
  Result<std::vector<Source>> sources = FindSources(args);
  if (!sources.ok()) {
    PrintError(kReplayCmd, sources.status().message());
    return kExitRuntime;
  }
  if (sources->empty() && (args.topic || args.partition)) {
    PrintError(kReplayCmd,
               fmt::format("no partition log in {} matches{}{} (see: runnel inspect {})", args.dir,
                           args.topic ? fmt::format(" --topic {}", *args.topic) : "",
                           args.partition ? fmt::format(" --partition {}", *args.partition) : "",
                           args.dir));
    return kExitRuntime;
  }
  if (sources->empty()) {
    PrintError(kReplayCmd,
               fmt::format("{} holds no partition logs (expected a data dir DIR/<topic>/"
                           "<partition>/, a topic dir or a partition dir with .log "
                           "segment files)",
                           args.dir));
    return kExitRuntime;
  }
  if (args.verify) return RunVerify(args, *sources, *format == OutputFormat::kJson);
  return RunRead(global, args, *sources, *format);
}

}  // namespace

void RegisterReplay(CLI::App& app, const GlobalOptions& global) {
  CLI::App* sub = app.add_subcommand(
      "replay",
      "Read segment files directly (no bus or broker needed): print records, verify the logs "
      "(--verify), or re-publish the records into a live topic (--into). Exit 3 if damage was "
      "found.");
  auto a = std::make_shared<ReplayArgs>();
  sub->add_option("DIR", a->dir,
                  "A data dir (DIR/<topic>/<partition>/), a topic dir, or a partition dir")
      ->required();
  sub->add_option("--topic,-t", a->topic, "Only this topic (in a data dir)")
      ->type_name("T")
      ->check(CheckTopicName);
  sub->add_option("--partition,-p", a->partition, "Only this partition")
      ->type_name("P")
      ->transform(Decimal());
  sub->add_option("--from", a->from,
                  "First offset to read in each partition (default: the log start), or "
                  "@EPOCH_MS: the first record with a timestamp at or after it")
      ->type_name("OFFSET")
      ->check([](const std::string& text) -> std::string {
        if (ParseUint(text)) return {};
        if (!text.empty() && text[0] == '@' && ParseUint(std::string_view(text).substr(1)) &&
            *ParseUint(std::string_view(text).substr(1)) <= uint64_t{INT64_MAX} / 1'000'000) {
          return {};
        }
        const std::string_view number = !text.empty() && text[0] == '@'
                                            ? std::string_view(text).substr(1)
                                            : std::string_view(text);
        if (!number.empty() && number.find_first_not_of("0123456789") == std::string_view::npos) {
          return "'" + text + "' is too large";
        }
        return "'" + text + "' is not an offset (a whole number, e.g. 42) or @EPOCH_MS";
      });
  sub->add_option("--to", a->to, "Last offset to read in each partition (inclusive)")
      ->type_name("OFFSET")
      ->transform(Decimal());
  sub->add_flag("--verify", a->verify,
                "Check every CRC, the offset sequence, segment continuity and the time indexes; "
                "print a report (segments, records, bytes, offsets, timestamps, damage with file "
                "and byte position)");
  sub->add_option("--format,-f", a->format,
                  "value, kv or json (as consume); with --verify: value (text report) or json")
      ->capture_default_str()
      ->check(CLI::IsMember({"value", "kv", "json"}));
  sub->add_option("--key-separator,-k", a->key_separator,
                  "Separator between key and value for --format kv (default: tab)")
      ->type_name("SEP")
      ->check([](const std::string& s) {
        return s.empty() ? std::string("the key separator must not be empty") : std::string();
      });
  sub->add_option("--into", a->into,
                  "Re-publish the records into this topic of the live bus (--bus), keeping key, "
                  "headers and timestamp; partition by key hash, round-robin without a key")
      ->type_name("TOPIC")
      ->check(CheckTopicName);
  sub->add_option("--timeout-ms", a->timeout_ms,
                  "--into: how long to wait for ring space before giving up")
      ->capture_default_str()
      ->transform(Decimal())
      ->check(CLI::Range(int64_t{1}, int64_t{3'600'000}));
  CLI::Option* progress = sub->add_flag("--progress", a->progress,
                                        "Show the progress bar even if stderr is not a terminal");
  sub->add_flag("--no-progress", a->no_progress, "Never show the progress bar")->excludes(progress);
  SetRunner(sub, [a, &global] { return RunReplay(global, *a); });
}

}  // namespace runnel::cli
