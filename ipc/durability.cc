#include "ipc/durability.h"

#include <sys/stat.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "ipc/bus.h"
#include "persistence/internal/layout.h"
#include "persistence/log.h"
#include "persistence/reader.h"

namespace runnel {

namespace fs = std::filesystem;

namespace {

std::string PartitionDir(const std::string& data_dir, std::string_view topic, uint32_t p) {
  return data_dir + "/" + std::string(topic) + "/" + std::to_string(p);
}

std::string PartitionName(std::string_view topic, uint32_t p) {
  return std::string(topic) + "/" + std::to_string(p);
}

const char* FsyncName(FsyncPolicy f) {
  switch (f) {
    case FsyncPolicy::kNever:
      return "never";
    case FsyncPolicy::kInterval:
      return "interval";
    case FsyncPolicy::kAlways:
      return "always";
  }
  return "interval";
}

}  // namespace

SyncPolicy TopicSyncPolicy(const TopicOptions& o) {
  SyncPolicy p;
  switch (o.fsync) {
    case FsyncPolicy::kNever:
      p.kind = SyncPolicy::Kind::kNever;
      break;
    case FsyncPolicy::kInterval:
      p.kind = SyncPolicy::Kind::kInterval;
      break;
    case FsyncPolicy::kAlways:
      p.kind = SyncPolicy::Kind::kAlways;
      break;
  }
  p.interval_ms = o.fsync_interval_ms == 0 ? 10 : o.fsync_interval_ms;
  return p;
}

Status WriteTopicMeta(const std::string& data_dir, std::string_view topic, const TopicOptions& o) {
  const std::string dir = data_dir + "/" + std::string(topic);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::FromErrno(ec.value(), "create " + dir);
  const std::string path = dir + "/topic.meta";
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return Status::FromErrno(errno, "write " + tmp);
    out << "# runnel topic settings; written by the broker\n"
        << "partitions=" << o.partitions << "\n"
        << "ring_bytes=" << o.ring_bytes << "\n"
        << "max_record_bytes=" << o.max_record_bytes << "\n"
        << "single_producer=" << (o.single_producer ? 1 : 0) << "\n"
        << "segment_bytes=" << o.segment_bytes << "\n"
        << "retention_bytes=" << o.retention_bytes << "\n"
        << "retention_ms=" << o.retention_ms << "\n"
        << "fsync=" << FsyncName(o.fsync) << "\n"
        << "fsync_interval_ms=" << o.fsync_interval_ms << "\n";
    if (!out.flush()) return Status::FromErrno(errno, "write " + tmp);
  }
  fs::rename(tmp, path, ec);
  if (ec) return Status::FromErrno(ec.value(), "rename " + tmp);
  return Status::Ok();
}

Result<TopicOptions> ReadTopicMeta(const std::string& data_dir, std::string_view topic) {
  const std::string path = data_dir + "/" + std::string(topic) + "/topic.meta";
  std::ifstream in(path);
  if (!in) return Status::NotFound("no topic settings at " + path);
  std::map<std::string, std::string> kv;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto eq = line.find('=');
    if (eq == std::string::npos)
      return Status::Corruption(path + ": malformed line '" + line + "'");
    kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  auto num = [&](const char* key, uint64_t& out) -> Status {
    auto it = kv.find(key);
    if (it == kv.end()) return Status::Corruption(path + ": missing " + key);
    const std::string& v = it->second;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    if (ec != std::errc() || p != v.data() + v.size()) {
      return Status::Corruption(path + ": bad value for " + key + ": '" + v + "'");
    }
    return Status::Ok();
  };
  TopicOptions o;
  uint64_t v = 0;
  RUNNEL_RETURN_IF_ERROR(num("partitions", v));
  o.partitions = static_cast<uint32_t>(v);
  RUNNEL_RETURN_IF_ERROR(num("ring_bytes", o.ring_bytes));
  RUNNEL_RETURN_IF_ERROR(num("max_record_bytes", v));
  o.max_record_bytes = static_cast<uint32_t>(v);
  RUNNEL_RETURN_IF_ERROR(num("single_producer", v));
  o.single_producer = v != 0;
  RUNNEL_RETURN_IF_ERROR(num("segment_bytes", o.segment_bytes));
  RUNNEL_RETURN_IF_ERROR(num("retention_bytes", o.retention_bytes));
  RUNNEL_RETURN_IF_ERROR(num("retention_ms", o.retention_ms));
  RUNNEL_RETURN_IF_ERROR(num("fsync_interval_ms", v));
  o.fsync_interval_ms = static_cast<uint32_t>(v);
  const std::string f = kv["fsync"];
  o.fsync = f == "never"    ? FsyncPolicy::kNever
            : f == "always" ? FsyncPolicy::kAlways
                            : FsyncPolicy::kInterval;
  o.durable = true;
  return o;
}

Result<uint64_t> NextOffsetOnDisk(const std::string& data_dir, std::string_view topic,
                                  uint32_t partition) {
  const std::string dir = PartitionDir(data_dir, topic, partition);
  std::error_code ec;
  if (!fs::exists(dir, ec)) return uint64_t{0};
  Result<internal::PartitionListing> listing = internal::ListPartition(dir);
  if (!listing.ok()) return listing.status();
  if (listing->segments.empty()) return uint64_t{0};
  LogReaderOptions ro;
  ro.follow = false;
  Result<LogReader> reader = LogReader::Open(dir, ro);
  if (!reader.ok()) return reader.status();
  uint64_t next = listing->segments.back();
  RUNNEL_RETURN_IF_ERROR(reader->Seek(next));
  for (;;) {
    const LogEntry e = reader->Next();
    if (e.kind == LogEntry::Kind::kEnd) break;
    if (e.kind == LogEntry::Kind::kRecord) next = e.record.offset() + 1;
  }
  return next;
}

namespace {

class DurabilityHooks : public BrokerHooks {
 public:
  explicit DurabilityHooks(DurabilityOptions options) : options_(std::move(options)) {}

  void OnBecameActive(const BrokerContext& context) override {
    if (!context.data_dir.empty() && options_.data_dir.empty())
      options_.data_dir = context.data_dir;
    std::error_code ec;
    fs::create_directories(options_.data_dir, ec);
    if (ec) {
      std::fprintf(stderr, "runnel broker: cannot create data dir %s: %s\n",
                   options_.data_dir.c_str(), ec.message().c_str());
    }
    Result<std::unique_ptr<Persister>> p = Persister::Start(options_.persister);
    if (!p.ok()) {
      std::fprintf(stderr, "runnel broker: persistence is off: %s\n",
                   p.status().ToString().c_str());
      return;
    }
    persister_ = std::move(*p);
    // Re-create topics that are on disk but not on the bus (its shared
    // memory is gone: a reboot, or `runnel` bus removal).
    BusOptions bo;
    bo.create_if_missing = false;
    bo.data_dir = options_.data_dir;
    Result<Bus> bus = Bus::Open(context.bus_name, bo);
    if (!bus.ok()) return;
    bus_ = std::make_unique<Bus>(std::move(*bus));
    for (const auto& entry : fs::directory_iterator(options_.data_dir, ec)) {
      if (!entry.is_directory()) continue;
      const std::string topic = entry.path().filename().string();
      if (!ValidateTopicName(topic).ok()) continue;
      Result<TopicOptions> meta = ReadTopicMeta(options_.data_dir, topic);
      if (!meta.ok()) continue;
      if (bus_->DescribeTopic(topic).ok()) continue;
      Status s = bus_->CreateTopic(topic, *meta);
      std::fprintf(stderr, "runnel broker: restored topic %s from %s: %s\n", topic.c_str(),
                   options_.data_dir.c_str(), s.ToString().c_str());
    }
  }

  void OnTopicAdded(const BrokerTopic& topic) override {
    if (!persister_ || !topic.options.durable) return;
    Status meta = WriteTopicMeta(options_.data_dir, topic.name, topic.options);
    if (!meta.ok()) {
      std::fprintf(stderr, "runnel broker: %s: %s\n", topic.name.c_str(), meta.ToString().c_str());
    }
    const SyncPolicy sync = options_.fsync_override.value_or(TopicSyncPolicy(topic.options));
    for (uint32_t p = 0; p < topic.rings.size(); ++p) {
      const Ring& ring = topic.rings[p];
      const std::string name = PartitionName(topic.name, p);
      std::optional<uint32_t> slot;
      for (uint32_t i = 0; i < kMaxGatingSlots; ++i) {
        if (ring.GatingOwner(i) == kPersisterGatingOwner) slot = i;
      }
      if (!slot) {
        // A topic created without the slot: persist from what the ring holds.
        Result<uint32_t> s = ring.AcquireGatingSlot(kPersisterGatingOwner, ring.earliest());
        if (!s.ok()) {
          std::fprintf(stderr, "runnel broker: %s: %s\n", name.c_str(),
                       s.status().ToString().c_str());
          continue;
        }
        slot = *s;
      }
      LogOptions lo;
      lo.segment_bytes = topic.options.segment_bytes;
      lo.sync_on_roll = sync.kind != SyncPolicy::Kind::kNever;
      lo.initial_offset = ring.GatingPosition(*slot).offset;
      Result<PartitionLog> log =
          PartitionLog::Open(PartitionDir(options_.data_dir, topic.name, p), lo);
      if (!log.ok()) {
        std::fprintf(stderr, "runnel broker: %s: cannot open its log: %s\n", name.c_str(),
                     log.status().ToString().c_str());
        ring.SetGatingError(*slot, log.status().code() == StatusCode::kCorruption ? EILSEQ : EIO);
        continue;
      }
      if (!log->recovery().clean()) {
        std::fprintf(stderr, "runnel broker: %s: recovery: %s\n", name.c_str(),
                     log->recovery().ToString().c_str());
      }
      RetentionPolicy retention;
      if (topic.options.retention_bytes != 0) retention.max_bytes = topic.options.retention_bytes;
      if (topic.options.retention_ms != 0) {
        retention.max_age_ms = static_cast<int64_t>(topic.options.retention_ms);
      }
      persister_->Add(PersistedPartition{name, ring, *slot, std::move(*log), sync, retention});
      partitions_[topic.name] = static_cast<uint32_t>(topic.rings.size());
    }
  }

  void OnTopicRemoved(const BrokerTopic& topic) override {
    if (!persister_) return;
    for (uint32_t p = 0; p < topic.rings.size(); ++p) {
      (void)persister_->Remove(PartitionName(topic.name, p));
    }
    partitions_.erase(topic.name);
    // Deleted from the bus (not just the broker stopping): delete its data.
    if (stopping_ || !bus_) return;
    // Still there (or re-created meanwhile): the directory is not ours to remove.
    if (bus_->DescribeTopic(topic.name).ok()) return;
    std::error_code ec;
    fs::remove_all(options_.data_dir + "/" + topic.name, ec);
  }

  void Stop() override {
    stopping_ = true;
    if (persister_) persister_->Stop();
    persister_.reset();
    bus_.reset();
  }

 private:
  DurabilityOptions options_;
  std::unique_ptr<Persister> persister_;
  std::unique_ptr<Bus> bus_;
  std::map<std::string, uint32_t> partitions_;
  bool stopping_ = false;
};

}  // namespace

std::shared_ptr<BrokerHooks> MakeDurabilityHooks(const DurabilityOptions& options) {
  return std::make_shared<DurabilityHooks>(options);
}

}  // namespace runnel
