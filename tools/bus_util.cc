#include "tools/bus_util.h"

#include <fmt/core.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "persistence/persister.h"

namespace runnel::cli {

Result<Bus> OpenBus(const GlobalOptions& global, bool create_if_missing) {
  BusOptions options;
  options.create_if_missing = create_if_missing;
  options.embedded_broker = false;
  options.data_dir = global.data_dir;
  return Bus::Open(global.bus, options);
}

std::optional<Bus> OpenExistingBus(const GlobalOptions& global, std::string_view command) {
  Result<Bus> bus = OpenBus(global, /*create_if_missing=*/false);
  if (!bus.ok()) {
    PrintError(command, ExplainBusOpen(bus.status(), global.bus));
    return std::nullopt;
  }
  NoteOtherDataDir(command, global, *bus);
  return std::move(*bus);
}

void NoteOtherDataDir(std::string_view command, const GlobalOptions& global, const Bus& bus) {
  Result<BusInfo> info = bus.Info();
  if (info.ok() && !info->broker_data_dir.empty() && info->broker_data_dir != bus.data_dir()) {
    fmt::print(stderr,
               "runnel {}: note: bus '{}' keeps its logs in {} (recorded by its last broker, or "
               "by a topic create while none ran); this command uses {}\n",
               command, global.bus, info->broker_data_dir, bus.data_dir());
  }
}

namespace {

std::optional<Bus> OpenQuietly(const std::string& bus) {
  BusOptions options;
  options.create_if_missing = false;
  Result<Bus> b = Bus::Open(bus, options);
  if (!b.ok()) return std::nullopt;
  return std::move(*b);
}

}  // namespace

std::string RecordedDataDir(const std::string& bus) {
  std::optional<Bus> b = OpenQuietly(bus);
  if (!b) return {};
  Result<BusInfo> info = b->Info();
  return info.ok() ? info->broker_data_dir : std::string();
}

int32_t RunningBrokerPid(const std::string& bus) {
  std::optional<Bus> b = OpenQuietly(bus);
  if (!b) return 0;
  Result<BusInfo> info = b->Info();
  return info.ok() && info->broker_alive ? info->broker_pid : 0;
}

std::string FsyncString(const TopicOptions& o) {
  switch (o.fsync) {
    case FsyncPolicy::kNever:
      return "never";
    case FsyncPolicy::kAlways:
      return "always";
    case FsyncPolicy::kInterval:
      return fmt::format("interval:{}", o.fsync_interval_ms);
  }
  return fmt::format("unknown({})", static_cast<int>(o.fsync));
}

Status ApplyFsync(std::string_view text, TopicOptions& o) {
  Result<SyncPolicy> p = SyncPolicy::Parse(text);
  if (!p.ok()) return p.status();
  switch (p->kind) {
    case SyncPolicy::Kind::kNever:
      o.fsync = FsyncPolicy::kNever;
      break;
    case SyncPolicy::Kind::kAlways:
      o.fsync = FsyncPolicy::kAlways;
      break;
    case SyncPolicy::Kind::kInterval:
      o.fsync = FsyncPolicy::kInterval;
      o.fsync_interval_ms = p->interval_ms;
      break;
  }
  return Status::Ok();
}

void WriteTopicSettingsJson(JsonWriter& w, const TopicInfo& t) {
  const TopicOptions& o = t.options;
  w.Key("name").String(t.name);
  w.Key("generation").Uint(t.generation);
  w.Key("partitions").Uint(o.partitions);
  w.Key("ring_bytes").Uint(o.ring_bytes);
  w.Key("max_record_bytes").Uint(o.max_record_bytes);
  w.Key("single_producer").Bool(o.single_producer);
  w.Key("durable").Bool(o.durable);
  w.Key("segment_bytes").Uint(o.segment_bytes);
  w.Key("retention_bytes").Uint(o.retention_bytes);
  w.Key("retention_ms").Uint(o.retention_ms);
  w.Key("fsync").String(FsyncString(o));
  w.Key("created_ms").Int(t.created_wall_ns / 1'000'000);
}

std::string DescribeBroker(const BusInfo& info, const GlobalOptions& global) {
  const std::string start = fmt::format("start one with: {} broker", RunnelCommand(global));
  switch (info.broker_state) {
    case BrokerState::kRunning:
      return fmt::format("pid {} (alive)", info.broker_pid);
    case BrokerState::kDied:
      return fmt::format("pid {} NOT RUNNING (died without stopping, last seen {:.1f} s ago; {})",
                         info.broker_pid, static_cast<double>(info.broker_idle_ms) / 1000.0, start);
    case BrokerState::kStopped:
      if (info.broker_stopped_pid != 0 && info.broker_stopped_wall_ns != 0) {
        return fmt::format("not running (pid {} stopped cleanly at {}; {})",
                           info.broker_stopped_pid, FormatTimestamp(info.broker_stopped_wall_ns),
                           start);
      }
      return fmt::format("not running (stopped cleanly; {})", start);
    case BrokerState::kNeverStarted:
      break;
  }
  return fmt::format("never started ({})", start);
}

void WriteBrokerJson(JsonWriter& w, const BusInfo& info) {
  const char* state = "never_started";
  switch (info.broker_state) {
    case BrokerState::kRunning:
      state = "running";
      break;
    case BrokerState::kStopped:
      state = "stopped";
      break;
    case BrokerState::kDied:
      state = "died";
      break;
    case BrokerState::kNeverStarted:
      break;
  }
  w.Key("broker").BeginObject();
  w.Key("pid").Int(info.broker_pid).Key("alive").Bool(info.broker_alive);
  w.Key("epoch").Uint(info.broker_epoch).Key("state").String(state);
  w.Key("stopped_pid").Int(info.broker_stopped_pid).Key("stopped_ms");
  if (info.broker_stopped_wall_ns != 0) {
    w.Int(info.broker_stopped_wall_ns / 1'000'000);
  } else {
    w.Null();
  }
  w.EndObject();
}

std::optional<uint64_t> DiskUsage(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return std::nullopt;
  uint64_t total = static_cast<uint64_t>(st.st_blocks) * 512;
  if (!S_ISDIR(st.st_mode)) return total;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(
           path, std::filesystem::directory_options::skip_permission_denied, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (::lstat(it->path().c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

std::vector<int32_t> FlockHolders(const std::string& path) {
  std::vector<int32_t> holders;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return holders;
  const std::string want = fmt::format("{:02x}:{:02x}:{}", major(st.st_dev), minor(st.st_dev),
                                       static_cast<unsigned long>(st.st_ino));
  std::ifstream locks("/proc/locks");
  std::string line;
  while (std::getline(locks, line)) {
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string t; fields >> t;) f.push_back(t);
    // "1:" "FLOCK" "ADVISORY" "WRITE" pid maj:min:inode start end; a waiter's
    // line has "->" after the number, so f[1] is not "FLOCK" there.
    if (f.size() < 6 || f[1] != "FLOCK" || f[5] != want) continue;
    if (std::optional<uint64_t> pid = ParseUint(f[4]); pid && *pid <= INT32_MAX) {
      holders.push_back(static_cast<int32_t>(*pid));
    }
  }
  return holders;
}

}  // namespace runnel::cli
