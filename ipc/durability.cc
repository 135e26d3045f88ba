#include "ipc/durability.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "core/log.h"
#include "core/wait.h"
#include "ipc/bus.h"
#include "ipc/internal/bus_core.h"
#include "persistence/internal/file.h"
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
  // Written before the limit existed (a huge value meant "forever").
  o.retention_ms = std::min(o.retention_ms, kMaxRetentionMs);
  RUNNEL_RETURN_IF_ERROR(num("fsync_interval_ms", v));
  o.fsync_interval_ms = static_cast<uint32_t>(v);
  const std::string f = kv["fsync"];  // absent in files of older versions: interval
  if (f == "never") {
    o.fsync = FsyncPolicy::kNever;
  } else if (f == "always") {
    o.fsync = FsyncPolicy::kAlways;
  } else if (f == "interval" || f.empty()) {
    o.fsync = FsyncPolicy::kInterval;
  } else {
    return Status::Corruption(path + ": bad value for fsync: '" + f +
                              "' (never, interval or always)");
  }
  o.durable = true;
  // Values that parse but that no topic can have (a ring of 3 bytes).
  if (Result<internal::TopicRecord> r = internal::ResolveOptions(topic, o); !r.ok()) {
    return Status::Corruption(path + ": " + r.status().message());
  }
  return o;
}

namespace {

constexpr char kTombstoneFile[] = "topic.deleted";
// Names a topic directory being removed: '~' never occurs in a topic name, so
// such a directory is never taken for a topic, and never matches one.
constexpr std::string_view kPurgeInfix = "~deleted.";

Status FsyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open " + dir);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return Status::FromErrno(err, "fsync " + dir);
  return Status::Ok();
}

// DIR/NAME holds `text` after a crash at any point, or is absent/unchanged:
// DIR/NAME.tmp.<pid>.<n>, fsync, rename, fsync of DIR.
Status WriteFileDurably(const std::string& dir, const std::string& name, std::string_view text) {
  const std::string path = dir + "/" + name;
  // A name of its own: threads or processes deleting the same topic at once
  // would otherwise write, and rename away, each other's temporary file.
  static std::atomic<uint64_t> sequence{0};
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." +
                          std::to_string(sequence.fetch_add(1, std::memory_order_relaxed));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno(errno, "create " + tmp);
  // Every way out after this: close, and remove the temporary file unless
  // it became `path`.
  auto fail = [&](const char* op) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return Status::FromErrno(err, std::string(op) + " " + tmp);
  };
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("write");
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("fsync");
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail("rename");
  ::close(fd);
  return FsyncDir(dir);
}

}  // namespace

Status WriteTopicMeta(const std::string& data_dir, std::string_view topic, const TopicOptions& o) {
  const std::string dir = data_dir + "/" + std::string(topic);
  std::error_code ec;
  // Every partition's directory exists before the settings first do: a
  // topic.meta with a partition directory missing means that directory was
  // removed (its records with it), not that it was never made. (A rewrite,
  // at every broker start, must not make a removed one again.)
  if (!fs::is_regular_file(dir + "/topic.meta", ec)) {
    const bool new_topic_dir = !fs::exists(dir, ec);
    for (uint32_t p = 0; p < o.partitions; ++p) {
      const std::string pdir = PartitionDir(data_dir, topic, p);
      fs::create_directories(pdir, ec);
      if (ec) return Status::FromErrno(ec.value(), "create " + pdir);
    }
    fs::create_directories(dir, ec);  // zero partitions: the caller's error, still a directory
    if (ec) return Status::FromErrno(ec.value(), "create " + dir);
    RUNNEL_RETURN_IF_ERROR(FsyncDir(dir));
    // The topic's entry in the data dir, or a crash may lose the whole
    // directory with records confirmed durable (PartitionLog::Open finds the
    // partition directories made and syncs no parent).
    if (new_topic_dir) RUNNEL_RETURN_IF_ERROR(FsyncDir(data_dir));
  }
  std::ostringstream text;
  text << "# runnel topic settings; written by the broker\n"
       << "partitions=" << o.partitions << "\n"
       << "ring_bytes=" << o.ring_bytes << "\n"
       << "max_record_bytes=" << o.max_record_bytes << "\n"
       << "single_producer=" << (o.single_producer ? 1 : 0) << "\n"
       << "segment_bytes=" << o.segment_bytes << "\n"
       << "retention_bytes=" << o.retention_bytes << "\n"
       << "retention_ms=" << o.retention_ms << "\n"
       << "fsync=" << FsyncName(o.fsync) << "\n"
       << "fsync_interval_ms=" << o.fsync_interval_ms << "\n";
  // Durably: after a reboot the topic is restored from it.
  return WriteFileDurably(dir, "topic.meta", text.str());
}

namespace {

// True if a PartitionLog (of any process) has `dir` open: it holds an
// exclusive flock on the directory. Taking the lock ourselves for a moment
// is the test; closing the descriptor drops it.
bool LogIsOpen(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;  // gone
  const bool held = ::flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);
  return held;
}

}  // namespace

Status WriteTopicTombstone(const std::string& data_dir, std::string_view topic,
                           const TopicTombstone& t) {
  const std::string dir = data_dir + "/" + std::string(topic);
  std::error_code ec;
  const bool created = fs::create_directories(dir, ec);
  if (ec) return Status::FromErrno(ec.value(), "create " + dir);
  if (created) RUNNEL_RETURN_IF_ERROR(FsyncDir(data_dir));
  const std::string text =
      "# runnel: this topic was deleted; its data is removed, never restored\n"
      "generation=" +
      std::to_string(t.generation) + "\ncreated_wall_ns=" + std::to_string(t.created_wall_ns) +
      "\n";
  return WriteFileDurably(dir, kTombstoneFile, text);
}

std::optional<TopicTombstone> ReadTopicTombstone(const std::string& data_dir,
                                                 std::string_view topic) {
  const std::string path = data_dir + "/" + std::string(topic) + "/" + kTombstoneFile;
  std::ifstream in(path);
  if (!in) {
    std::error_code ec;
    // Present but unreadable still marks the directory as deleted.
    if (fs::exists(path, ec)) return TopicTombstone{};
    return std::nullopt;
  }
  TopicTombstone t;
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (line.empty() || line[0] == '#' || eq == std::string::npos) continue;
    const std::string_view key(line.data(), eq);
    const char* first = line.data() + eq + 1;
    const char* last = line.data() + line.size();
    if (key == "generation") (void)std::from_chars(first, last, t.generation);
    if (key == "created_wall_ns") (void)std::from_chars(first, last, t.created_wall_ns);
  }
  return t;
}

Status PurgeTopicData(const std::string& data_dir, std::string_view topic,
                      std::chrono::milliseconds wait) {
  const std::string dir = data_dir + "/" + std::string(topic);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return Status::Ok();
  // The broker closes a deleted topic's logs on its next tick.
  const int64_t deadline = MonotonicNanos() + wait.count() * 1'000'000;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (!entry.is_directory()) continue;
    const std::string part = entry.path().string();
    while (LogIsOpen(part)) {
      if (MonotonicNanos() >= deadline) {
        return Status::Unavailable(part + " is still open by a broker after " +
                                   std::to_string(wait.count()) + " ms; not deleting it");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  const std::string doomed = dir + std::string(kPurgeInfix) + std::to_string(::getpid()) + "." +
                             std::to_string(MonotonicNanos());
  if (::rename(dir.c_str(), doomed.c_str()) != 0) {
    if (errno != ENOENT) return Status::FromErrno(errno, "rename " + dir);
    // Another process (the broker) renamed it first and is deleting it: let
    // it finish (up to the deadline), so the space is free when we return.
    const std::string prefix = std::string(topic) + std::string(kPurgeInfix);
    for (;;) {
      bool busy = false;
      for (const auto& entry : fs::directory_iterator(data_dir, ec)) {
        if (entry.path().filename().string().starts_with(prefix)) busy = true;
      }
      if (!busy || MonotonicNanos() >= deadline) return Status::Ok();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  // From here the topic's directory is gone, whatever happens next.
  RUNNEL_RETURN_IF_ERROR(FsyncDir(data_dir));
  fs::remove_all(doomed, ec);
  if (ec) return Status::FromErrno(ec.value(), "remove " + doomed);
  return Status::Ok();
}

namespace {
// The lock files this thread holds (device, inode: the same file however
// its data dir is spelled): a nested TopicDirLock of the same topic (the
// broker restoring a topic through Bus::CreateTopic) is a no-op, where a
// second flock would wait for the first for ever.
thread_local std::vector<std::pair<dev_t, ino_t>> held_topic_locks;
}  // namespace

TopicDirLock::TopicDirLock(const std::string& data_dir, std::string_view topic, bool wait) {
  const std::string dir = data_dir + "/~locks";
  const std::string path = dir + "/" + std::string(topic);
  std::error_code ec;
  fs::create_directories(dir, ec);
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    // Said once per process, not fatal: a process that cannot make a file
    // there (another user's data dir) cannot change the topic's directory
    // either, and may well create its topics idempotently at every start.
    static std::atomic<bool> warned{false};
    if (!warned.exchange(true, std::memory_order_relaxed)) {
      Log(LogLevel::kWarning,
          "runnel: cannot open the topic lock %s: %s; creating and deleting topics in this "
          "process go on without the topic locks (said once)",
          path.c_str(), std::strerror(errno));
    }
    return;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return;
  }
  id_ = {st.st_dev, st.st_ino};
  if (std::find(held_topic_locks.begin(), held_topic_locks.end(), id_) != held_topic_locks.end()) {
    ::close(fd);  // no flock on it: the outer one stays
    nested_ = true;
    return;
  }
  int r;
  do {
    r = ::flock(fd, wait ? LOCK_EX : LOCK_EX | LOCK_NB);
  } while (r != 0 && errno == EINTR);
  if (r != 0) {
    busy_ = errno == EWOULDBLOCK;
    ::close(fd);
    return;
  }
  fd_ = fd;
  held_topic_locks.push_back(id_);
}

TopicDirLock::~TopicDirLock() {
  if (fd_ < 0) return;
  std::erase(held_topic_locks, id_);
  ::close(fd_);  // drops the flock
}

void RemovePurgeLeftovers(const std::string& data_dir) {
  std::error_code ec;
  std::vector<fs::path> doomed;
  for (const auto& entry : fs::directory_iterator(data_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find(kPurgeInfix) != std::string::npos) doomed.push_back(entry.path());
  }
  for (const fs::path& p : doomed) {
    std::error_code rc;
    fs::remove_all(p, rc);
    // Gone meanwhile: the client that renamed it was still deleting it.
    if (rc && rc != std::errc::no_such_file_or_directory) {
      Log(LogLevel::kWarning, "runnel broker: cannot remove %s: %s", p.c_str(),
          rc.message().c_str());
    }
  }
}

namespace {
std::string MissingPartitionDir(const std::string& dir) {
  return "the log directory " + dir +
         " is missing, although the topic's settings (topic.meta) were written after it was "
         "made: it was removed, and its records with it. Restore it; or create it empty (mkdir) "
         "to start the partition afresh at offset 0, giving its old offsets out again";
}
}  // namespace

Result<uint64_t> NextOffsetOnDisk(const std::string& data_dir, std::string_view topic,
                                  uint32_t partition) {
  const std::string dir = PartitionDir(data_dir, topic, partition);
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    if (!fs::is_regular_file(data_dir + "/" + std::string(topic) + "/topic.meta", ec)) {
      return uint64_t{0};
    }
    return Status::Corruption(MissingPartitionDir(dir));
  }
  Result<internal::PartitionListing> listing = internal::ListPartition(dir);
  if (!listing.ok()) return listing.status();
  // Offsets up to the checkpoint's were durable once; they are never given
  // out again, even when the segments that held them are damaged or gone
  // (the log then opens with a gap there, or not at all until repaired).
  uint64_t durable_next = 0;
  if (listing->has_checkpoint) {
    Result<Checkpoint> cp = internal::ReadCheckpointFile(dir);
    if (cp.ok()) durable_next = cp->next_offset;
  }
  // The newest segment whose header reads says where the offsets stood when
  // it was made (a roll's new segment holds no record yet); so does a last
  // one whose header is all zeros (a roll a crash interrupted: recovery
  // rewrites that header from the name). A file named like a segment with
  // another header (garbage, a stray copy) says nothing: the topic took its
  // offsets from the name, and the log, refused for it, later got a gap up
  // to them.
  std::optional<uint64_t> start;
  for (auto it = listing->segments.rbegin(); it != listing->segments.rend() && !start; ++it) {
    const std::string name = SegmentFileName(*it);
    Result<internal::ScopedFd> fd = internal::OpenFile(dir + "/" + name, O_RDONLY);
    if (!fd.ok()) continue;
    struct stat st {};
    const bool interrupted_roll =
        it == listing->segments.rbegin() && ::fstat(fd->get(), &st) == 0 &&
        internal::HeaderNeverWritten(fd->get(), static_cast<uint64_t>(st.st_size));
    if (interrupted_roll ||
        internal::ReadFileHeader(fd->get(), FileKind::kSegment, *it, dir, name).ok()) {
      start = *it;
    }
  }
  if (!start) return durable_next;
  LogReaderOptions ro;
  ro.follow = false;
  Result<LogReader> reader = LogReader::Open(dir, ro);
  if (!reader.ok()) return reader.status();
  uint64_t next = *start;
  RUNNEL_RETURN_IF_ERROR(reader->Seek(next));
  for (;;) {
    const LogEntry e = reader->Next();
    if (e.kind == LogEntry::Kind::kEnd) break;
    if (e.kind == LogEntry::Kind::kRecord) next = e.record.offset() + 1;
  }
  return std::max(next, durable_next);
}

namespace {

// The errno a persister slot shows producers for an error that may pass
// (the broker retries): a full disk, permissions, else an I/O error.
int32_t PassingErrno(StatusCode code) {
  return code == StatusCode::kResourceExhausted  ? ENOSPC
         : code == StatusCode::kPermissionDenied ? EACCES
                                                 : EIO;
}

class DurabilityHooks : public BrokerHooks {
 public:
  explicit DurabilityHooks(DurabilityOptions options) : options_(std::move(options)) {}

  void OnBecameActive(const BrokerContext& context) override {
    if (!context.data_dir.empty() && options_.data_dir.empty())
      options_.data_dir = context.data_dir;
    std::error_code ec;
    fs::create_directories(options_.data_dir, ec);
    if (ec) {
      Log(LogLevel::kError, "runnel broker: cannot create data dir %s: %s",
          options_.data_dir.c_str(), ec.message().c_str());
    }
    Result<std::unique_ptr<Persister>> p = Persister::Start(options_.persister);
    if (!p.ok()) {
      Log(LogLevel::kError, "runnel broker: persistence is off: %s", p.status().ToString().c_str());
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
    RemovePurgeLeftovers(options_.data_dir);
    std::vector<std::string> topics;
    for (const auto& entry : fs::directory_iterator(options_.data_dir, ec)) {
      if (entry.is_directory()) topics.push_back(entry.path().filename().string());
    }
    for (const std::string& topic : topics) {
      if (!ValidateTopicName(topic).ok()) continue;
      // Clients deleting or creating it wait until it is restored (or not):
      // a delete of a topic only on disk is not undone by a restore.
      const TopicDirLock lock(options_.data_dir, topic);
      if (!fs::is_directory(options_.data_dir + "/" + topic, ec)) continue;  // purged meanwhile
      if (ReadTopicTombstone(options_.data_dir, topic)) {
        // Deleted. A live topic of that name is handled by OnTopicAdded
        // (the delete's last step, or a newer incarnation).
        if (bus_->DescribeTopic(topic).ok()) continue;
        Status s = PurgeTopicData(options_.data_dir, topic, std::chrono::milliseconds(0));
        Log(LogLevel::kInfo, "runnel broker: removed the log of deleted topic %s from %s: %s",
            topic.c_str(), options_.data_dir.c_str(), s.ToString().c_str());
        continue;
      }
      if (bus_->DescribeTopic(topic).ok()) continue;
      Result<TopicOptions> meta = ReadTopicMeta(options_.data_dir, topic);
      if (!meta.ok()) {
        Log(LogLevel::kError,
            "runnel broker: cannot restore topic %s from %s: %s (its log stays on disk; "
            "`runnel topic create %s` with its settings makes the broker persist it again)",
            topic.c_str(), options_.data_dir.c_str(), meta.status().ToString().c_str(),
            topic.c_str());
        continue;
      }
      // Partition logs past the count topic.meta names (the file edited or
      // damaged) would not be served by the restored topic: not restored.
      if (Result<std::vector<uint32_t>> parts = ListPartitions(options_.data_dir, topic);
          parts.ok() && !parts->empty() && parts->back() >= meta->partitions) {
        Log(LogLevel::kError,
            "runnel broker: cannot restore topic %s from %s: topic.meta says %u partition%s, "
            "but partition %u has a log directory (its records would not be served): correct "
            "partitions= in %s/%s/topic.meta and restart the broker",
            topic.c_str(), options_.data_dir.c_str(), meta->partitions,
            meta->partitions == 1 ? "" : "s", parts->back(), options_.data_dir.c_str(),
            topic.c_str());
        continue;
      }
      Status s = bus_->CreateTopic(topic, *meta);
      if (s.ok()) {
        Log(LogLevel::kInfo, "runnel broker: restored topic %s from %s", topic.c_str(),
            options_.data_dir.c_str());
      } else {
        Log(LogLevel::kError, "runnel broker: cannot restore topic %s from %s: %s", topic.c_str(),
            options_.data_dir.c_str(), s.ToString().c_str());
      }
    }
  }

  void OnTopicAdded(const BrokerTopic& topic) override {
    if (!persister_ || !topic.options.durable) return;
    // Clients create and delete the topic under this lock: what is seen
    // below stays so until the logs are open (then a purge waits for them).
    const TopicDirLock lock(options_.data_dir, topic.name);
    // Deleted (and perhaps created again) since this tick saw it: nothing
    // of this incarnation may touch the directory; OnTopicRemoved follows.
    if (!IsLive(topic)) return;
    if (std::optional<TopicTombstone> t = ReadTopicTombstone(options_.data_dir, topic.name)) {
      if (bus_ && t->generation == topic.generation &&
          t->created_wall_ns == topic.created_wall_ns) {
        // This very topic was deleted (the tombstone is the commit point)
        // but its deleter died before taking it off the bus: finish that.
        // OnTopicRemoved follows on a later tick and removes the log.
        Status s = internal::BusInternals::Core(*bus_).DeleteTopic(topic.name, topic.generation);
        Log(LogLevel::kInfo, "runnel broker: finished deleting topic %s: %s", topic.name.c_str(),
            s.ToString().c_str());
        return;
      }
      // The log of an earlier incarnation: remove it, this one starts afresh.
      Status s = PurgeTopicData(options_.data_dir, topic.name, std::chrono::seconds(2));
      if (!s.ok()) {
        Log(LogLevel::kWarning, "runnel broker: %s: the log of its deleted predecessor: %s",
            topic.name.c_str(), s.ToString().c_str());
        for (const Ring& ring : topic.rings) {
          for (uint32_t i = 0; i < kMaxGatingSlots; ++i) {
            if (ring.GatingOwner(i) == kPersisterGatingOwner) ring.SetGatingError(i, EIO);
          }
        }
        return;
      }
    }
    // Written before any of its records can become durable (OpenPartition
    // retries it): a log without its settings is not restored after a reboot.
    meta_pending_.insert(topic.name);
    const SyncPolicy sync = options_.fsync_override.value_or(TopicSyncPolicy(topic.options));
    for (uint32_t p = 0; p < topic.rings.size(); ++p) {
      const Ring& ring = topic.rings[p];
      const std::string name = PartitionName(topic.name, p);
      std::optional<uint32_t> slot;
      for (uint32_t i = 0; i < kMaxGatingSlots; ++i) {
        if (ring.GatingOwner(i) == kPersisterGatingOwner) slot = i;
      }
      const bool adopted = !slot;
      if (!slot) {
        // A topic created without the slot: persist from the oldest record
        // the ring still holds (a dead claim there is unblocked like any
        // other at the gate). Nothing is durable until the persister has
        // compared the ring with the log: records the ring lost before this
        // are then reported as never durable (Ring::SetUnread).
        const RingPosition start = ring.OldestIntact();
        Result<uint32_t> s = ring.AcquireGatingSlot(kPersisterGatingOwner, start);
        if (!s.ok()) {
          Log(LogLevel::kError, "runnel broker: %s: %s", name.c_str(),
              s.status().ToString().c_str());
          continue;
        }
        ring.PublishDurable(*s, RingPosition{start.position, ring.base_offset()});
        slot = *s;
      }
      if (!OpenPartition(topic, p, *slot, sync, adopted, /*retrying=*/false)) {
        pending_opens_.push_back({topic, p, *slot, sync, adopted, MonotonicNanos() + kOpenRetryNs});
      }
    }
    partitions_[topic.name] = static_cast<uint32_t>(topic.rings.size());
  }

  // Logs that could not be opened for a reason that may pass (a full disk,
  // an I/O error, permissions): tried again every second, so the broker
  // persists them once the cause is gone without a restart.
  void OnTick(int64_t now_ns) override {
    if (!persister_) return;
    if (now_ns >= next_sweep_ns_) {
      next_sweep_ns_ = now_ns + kSweepNs;
      SweepDeletedTopics();
    }
    for (auto it = pending_opens_.begin(); it != pending_opens_.end();) {
      if (now_ns < it->next_ns) {
        ++it;
        continue;
      }
      // Not waited for: the topic's other partitions may be open here, and
      // a client holding the lock may be waiting for them to close.
      const TopicDirLock lock(options_.data_dir, it->topic.name, /*wait=*/false);
      if (lock.busy()) {
        ++it;  // the next tick
        continue;
      }
      if (!IsLive(it->topic)) {
        it = pending_opens_.erase(it);  // deleted: OnTopicRemoved follows
      } else if (OpenPartition(it->topic, it->partition, it->slot, it->sync, it->adopted,
                               /*retrying=*/true)) {
        it = pending_opens_.erase(it);
      } else {
        it->next_ns = now_ns + kOpenRetryNs;
        ++it;
      }
    }
  }

  void OnTopicRemoved(const BrokerTopic& topic) override {
    std::erase_if(pending_opens_, [&](const PendingOpen& o) { return o.topic.name == topic.name; });
    meta_pending_.erase(topic.name);
    if (!persister_) return;
    for (uint32_t p = 0; p < topic.rings.size(); ++p) {
      (void)persister_->Remove(PartitionName(topic.name, p));
    }
    partitions_.erase(topic.name);
    // Deleted from the bus (not just the broker stopping): delete its data.
    if (stopping_ || !bus_) return;
    const TopicDirLock lock(options_.data_dir, topic.name);
    // Still there (or re-created meanwhile): the directory is not ours to
    // remove (a newer incarnation removes a tombstoned one in OnTopicAdded).
    if (bus_->DescribeTopic(topic.name).ok()) return;
    // Only a delete committed on disk removes a log: Bus::DeleteTopic writes
    // the tombstone before it touches the bus. A topic that left the bus
    // without one (its directory entry scribbled over, the bus removed
    // under the broker) keeps its log.
    if (!ReadTopicTombstone(options_.data_dir, topic.name)) {
      // No directory: a client's re-create already removed the tombstoned
      // log (Bus::CreateTopic), and there is nothing to keep.
      std::error_code ec;
      if (!fs::exists(options_.data_dir + "/" + topic.name, ec)) return;
      Log(LogLevel::kWarning,
          "runnel broker: topic %s left the bus without a delete mark on disk (%s); "
          "its log stays in %s",
          topic.name.c_str(), kTombstoneFile, (options_.data_dir + "/" + topic.name).c_str());
      return;
    }
    // Renamed away first: a crash cannot leave a partial topic directory.
    Status s = PurgeTopicData(options_.data_dir, topic.name, std::chrono::seconds(2));
    if (!s.ok()) {
      Log(LogLevel::kWarning, "runnel broker: cannot remove the log of deleted topic %s: %s",
          topic.name.c_str(), s.ToString().c_str());
    }
  }

  void Stop() override {
    stopping_ = true;
    pending_opens_.clear();
    if (persister_) persister_->Stop();
    persister_.reset();
    bus_.reset();
  }

 private:
  static constexpr int64_t kOpenRetryNs = 1'000'000'000;
  static constexpr int64_t kSweepNs = 1'000'000'000;

  // Removes the logs of deleted topics this broker never saw on the bus (a
  // topic restored at activation, or created, and deleted before a tick saw
  // it: OnTopicRemoved is never called for it), and finishes deletes whose
  // deleter died after the tombstone (of a topic this broker had already
  // seen: OnTopicAdded, which finishes them, is not called again). Without waiting: a topic
  // whose lock a client holds (it creates or deletes the topic meanwhile),
  // or whose logs are open, is looked at again on the next sweep.
  void SweepDeletedTopics() {
    if (!bus_) return;
    std::error_code ec;
    std::vector<std::string> deleted;
    for (const auto& entry : fs::directory_iterator(options_.data_dir, ec)) {
      const std::string topic = entry.path().filename().string();
      std::error_code tomb_ec;
      if (entry.is_directory(tomb_ec) && ValidateTopicName(topic).ok() &&
          fs::exists(entry.path() / kTombstoneFile, tomb_ec)) {
        deleted.push_back(topic);
      }
    }
    for (const std::string& topic : deleted) {
      const TopicDirLock lock(options_.data_dir, topic, /*wait=*/false);
      if (lock.busy()) continue;
      const std::optional<TopicTombstone> t = ReadTopicTombstone(options_.data_dir, topic);
      if (!t) continue;
      internal::BusCore& core = internal::BusInternals::Core(*bus_);
      if (const std::optional<internal::TopicRecord> live = core.directory().FindLiveTopic(topic)) {
        // The tombstone of this very incarnation, and no deleter holds the
        // lock (it does from the tombstone to the delete from the bus): it
        // died in between. Finish its delete; OnTopicRemoved removes the
        // log. (A newer incarnation removes an older tombstone itself.)
        if (live->generation == t->generation && live->created_wall_ns == t->created_wall_ns) {
          Status s = core.DeleteTopic(topic, live->generation);
          Log(LogLevel::kInfo, "runnel broker: finished deleting topic %s: %s", topic.c_str(),
              s.ToString().c_str());
        }
        continue;
      }
      if (partitions_.contains(topic)) continue;  // ours: OnTopicRemoved removes it
      if (PurgeTopicData(options_.data_dir, topic, std::chrono::milliseconds(0)).ok()) {
        Log(LogLevel::kInfo, "runnel broker: removed the log of deleted topic %s from %s",
            topic.c_str(), options_.data_dir.c_str());
      }
    }
  }

  // True if `topic` is still this incarnation on the bus.
  bool IsLive(const BrokerTopic& topic) {
    if (!bus_) return true;  // no bus to ask (it could not be opened): as before
    const std::optional<internal::TopicRecord> live =
        internal::BusInternals::Core(*bus_).directory().FindLiveTopic(topic.name);
    return live && live->generation == topic.generation;
  }

  struct PendingOpen {
    BrokerTopic topic;
    uint32_t partition;
    uint32_t slot;
    SyncPolicy sync;
    bool adopted;  // the ring had no persister slot: it never was persisted
    int64_t next_ns;
  };

  // Opens partition `p`'s log and hands it to the persister. False when the
  // open failed for a reason that may pass (retry later); a damaged log is
  // not retried (it needs --repair or a restored file): true, with the
  // ring's gating error set.
  bool OpenPartition(const BrokerTopic& topic, uint32_t p, uint32_t slot, const SyncPolicy& sync,
                     bool adopted, bool retrying) {
    const Ring& ring = topic.rings[p];
    const std::string name = PartitionName(topic.name, p);
    if (meta_pending_.contains(topic.name)) {
      Status meta = WriteTopicMeta(options_.data_dir, topic.name, topic.options);
      if (!meta.ok()) {
        if (!retrying) {
          Log(LogLevel::kError,
              "runnel broker: %s: cannot write its settings file, so nothing of it is persisted "
              "yet: %s (retrying every second)",
              topic.name.c_str(), meta.ToString().c_str());
        }
        ring.SetGatingError(slot, PassingErrno(meta.code()));
        return false;
      }
      meta_pending_.erase(topic.name);
    }
    const std::string dir = PartitionDir(options_.data_dir, topic.name, p);
    std::error_code ec;
    if (!fs::exists(dir, ec) && !ec) {
      // topic.meta is there (written above, or by an earlier broker), and
      // every partition directory was made before it.
      Log(LogLevel::kError, "runnel broker: %s: cannot open its log: %s", name.c_str(),
          MissingPartitionDir(dir).c_str());
      ring.SetGatingError(slot, EILSEQ);
      return true;
    }
    LogOptions lo;
    lo.segment_bytes = topic.options.segment_bytes;
    lo.sync_on_roll = sync.kind != SyncPolicy::Kind::kNever;
    // A new log starts where durability starts: the slot's start for a
    // topic created with it, the ring's base for one adopted late (the
    // persister then records the offsets the ring had already lost as a gap).
    lo.initial_offset = std::min(ring.GatingPosition(slot).offset, ring.Durable(slot).offset);
    lo.repair = options_.repair;
    Result<PartitionLog> log = PartitionLog::Open(dir, lo);
    if (!log.ok()) {
      const StatusCode code = log.status().code();
      if (code == StatusCode::kCorruption) {
        // The message says what to do: restore or move a file, or repair.
        Log(LogLevel::kError, "runnel broker: %s: cannot open its log: %s", name.c_str(),
            log.status().ToString().c_str());
        ring.SetGatingError(slot, EILSEQ);
        return true;
      }
      if (!retrying) {
        const std::string& why = log.status().message();
        const bool no_space = why.find(std::strerror(ENOSPC)) != std::string::npos ||
                              why.find(std::strerror(EDQUOT)) != std::string::npos;
        const std::string hint =
            no_space ? "; " + NoSpaceHint(topic.options.segment_bytes) : std::string();
        Log(LogLevel::kError,
            "runnel broker: %s: cannot open its log: %s%s (retrying every second)", name.c_str(),
            log.status().ToString().c_str(), hint.c_str());
      }
      ring.SetGatingError(slot, PassingErrno(code));
      return false;
    }
    if (adopted && ring.base_offset() < log->next_offset()) {
      // A ring no broker persisted whose offsets overlap a log already on
      // disk (the topic was created before the bus knew its data dir, e.g.
      // by a client started before the broker after a reboot): its records
      // would share offsets with the log's. Nothing of it is persisted.
      Log(LogLevel::kError,
          "runnel broker: %s: the topic was created on the bus at offset %llu without its log, "
          "which already holds offsets up to %llu: its records would reuse those offsets, so "
          "this partition is not persisted (stop its clients, remove the bus with `runnel bus "
          "remove --force` (the ring's records are dropped), and start the broker before them: "
          "it restores the topic at the log's end)",
          name.c_str(), static_cast<unsigned long long>(ring.base_offset()),
          static_cast<unsigned long long>(log->next_offset()));
      ring.SetGatingError(slot, EILSEQ);
      return true;
    }
    if (retrying) {
      Log(LogLevel::kInfo, "runnel broker: %s: log opened; persisting", name.c_str());
    }
    if (!log->recovery().clean()) {
      Log(LogLevel::kWarning, "runnel broker: %s: recovery: %s", name.c_str(),
          log->recovery().ToString().c_str());
    }
    for (const std::string& w : log->warnings()) {
      Log(LogLevel::kWarning, "runnel broker: %s: %s", name.c_str(), w.c_str());
    }
    ring.SetGatingError(slot, 0);
    RetentionPolicy retention;
    if (topic.options.retention_bytes != 0) retention.max_bytes = topic.options.retention_bytes;
    if (topic.options.retention_ms != 0) {
      retention.max_age_ms = static_cast<int64_t>(topic.options.retention_ms);
    }
    persister_->Add(PersistedPartition{name, ring, slot, std::move(*log), sync, retention});
    return true;
  }

  DurabilityOptions options_;
  std::vector<PendingOpen> pending_opens_;
  std::set<std::string> meta_pending_;  // topics whose topic.meta is not written yet
  std::unique_ptr<Persister> persister_;
  std::unique_ptr<Bus> bus_;
  std::map<std::string, uint32_t> partitions_;
  bool stopping_ = false;
  int64_t next_sweep_ns_ = 0;
};

}  // namespace

std::shared_ptr<BrokerHooks> MakeDurabilityHooks(const DurabilityOptions& options) {
  return std::make_shared<DurabilityHooks>(options);
}

}  // namespace runnel
