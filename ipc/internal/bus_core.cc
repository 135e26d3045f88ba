#include "ipc/internal/bus_core.h"

#include <unistd.h>

#include <bit>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "core/record.h"
#include "core/wait.h"
#include "ipc/durability.h"
#include "ipc/internal/names.h"
#include "ipc/internal/process.h"
#include "persistence/format.h"
#include "persistence/persister.h"

namespace runnel::internal {

namespace {

static_assert(kRecordOverheadBytes == kFrameHeaderLength + kProducerBlockLength);

constexpr int64_t kAttachWaitNs = 1'000'000'000;  // how long to wait for a magic word

std::string TopicQuoted(std::string_view name) { return "topic '" + std::string(name) + "'"; }

// Formats a directory region its creator sized but died before formatting
// (maybe part way through). Called under the directory lock. Not if the bus
// has rings: topics were created on it, and a peer scribbled over its magic;
// formatting would forget them while their processes run on.
Status FormatLeftover(SharedRegion& region, std::string_view name, const std::string& dir_path,
                      uint32_t mode) {
  const std::string prefix = BusFilePrefix(name);
  Result<std::vector<std::string>> files = ListShmFiles(prefix);
  if (!files.ok()) return files.status();
  for (const std::string& f : *files) {
    const std::string_view rest = std::string_view(f).substr(prefix.size());
    if (rest != "dir" && rest != "lock" && rest != "broker") {
      return Status::Corruption(dir_path +
                                " has lost its format mark (scribbled on?) while the "
                                "bus has rings (" +
                                f + "): remove the bus (runnel --bus " + std::string(name) +
                                " bus remove, or rm /dev/shm/runnel." + std::string(name) +
                                ".*) once its processes are stopped");
    }
  }
  std::memset(region.data(), 0, region.size());
  Directory::Format(region.bytes(), name, mode);
  return Status::Ok();
}

}  // namespace

// "partitions 4 (requested 8), ring_bytes ..." for every setting that differs.
std::string DescribeDifferences(const TopicRecord& have, const TopicRecord& want) {
  std::string out;
  auto add = [&](std::string_view what, uint64_t h, uint64_t w) {
    if (h == w) return;
    if (!out.empty()) out += ", ";
    out += what;
    out += ' ';
    out += std::to_string(h);
    out += " (requested ";
    out += std::to_string(w);
    out += ')';
  };
  add("partitions", have.partitions, want.partitions);
  add("ring_bytes", have.ring_capacity, want.ring_capacity);
  add("max_record_bytes", have.max_record_bytes, want.max_record_bytes);
  add("single_producer", (have.flags & kTopicFlagSingleProducer) != 0,
      (want.flags & kTopicFlagSingleProducer) != 0);
  add("durable", (have.flags & kTopicFlagDurable) != 0, (want.flags & kTopicFlagDurable) != 0);
  // A memory-only topic has no log: its log settings mean nothing.
  if ((have.flags & kTopicFlagDurable) == 0 && (want.flags & kTopicFlagDurable) == 0) return out;
  add("segment_bytes", have.segment_bytes, want.segment_bytes);
  add("retention_bytes", have.retention_bytes, want.retention_bytes);
  add("retention_ms", have.retention_ms, want.retention_ms);
  add("fsync (0 never, 1 interval, 2 always)", have.fsync_kind, want.fsync_kind);
  add("fsync_interval_ms", have.fsync_interval_ms, want.fsync_interval_ms);
  return out;
}

// Validates options and turns them into a directory record (max record size
// resolved). Does not set slot, generation, state.
Result<TopicRecord> ResolveOptions(std::string_view name, const TopicOptions& o) {
  RUNNEL_RETURN_IF_ERROR(ValidateTopicName(name));
  if (o.partitions < 1 || o.partitions > kMaxPartitions) {
    return Status::InvalidArgument(TopicQuoted(name) + ": partitions must be between 1 and " +
                                   std::to_string(kMaxPartitions) + " (got " +
                                   std::to_string(o.partitions) + ")");
  }
  RingOptions ro;
  ro.capacity = o.ring_bytes;
  if (Status s = Ring::ValidateOptions(ro); !s.ok()) {
    return Status::InvalidArgument(TopicQuoted(name) + ": ring_bytes: " + s.message());
  }
  if (o.segment_bytes < 4096 || o.segment_bytes > kMaxSegmentBytes) {
    return Status::InvalidArgument(TopicQuoted(name) + ": segment_bytes must be between 4096 and " +
                                   std::to_string(kMaxSegmentBytes) + " (4 GiB - 4 KiB; got " +
                                   std::to_string(o.segment_bytes) + ")");
  }
  const uint64_t max_allowed = o.ring_bytes / 2 - kRecordOverheadBytes;
  // A durable topic's record must fit in one segment after its header: the
  // log never splits a frame, and a larger one would stop the partition's
  // persistence for good. The default stays within it.
  const uint64_t segment_fit =
      o.durable ? (o.segment_bytes - kFileHeaderLength) / kFrameAlignment * kFrameAlignment -
                      kRecordOverheadBytes
                : max_allowed;
  const uint64_t max_record = o.max_record_bytes != 0
                                  ? o.max_record_bytes
                                  : std::min(o.ring_bytes / 4 - kRecordOverheadBytes, segment_fit);
  if (o.durable && max_record > segment_fit) {
    return Status::InvalidArgument(
        TopicQuoted(name) + ": max_record_bytes " + std::to_string(max_record) +
        " does not fit in a segment of " + std::to_string(o.segment_bytes) + " bytes (at most " +
        std::to_string(segment_fit) + ": the segment minus its " +
        std::to_string(kFileHeaderLength) + "-byte header and " +
        std::to_string(kRecordOverheadBytes) +
        " bytes of frame overhead); raise segment_bytes or lower max_record_bytes");
  }
  if (max_record > max_allowed) {
    return Status::InvalidArgument(
        TopicQuoted(name) + ": max_record_bytes " + std::to_string(max_record) +
        " is too large for a ring of " + std::to_string(o.ring_bytes) + " bytes (at most " +
        std::to_string(max_allowed) + ": half the ring minus " +
        std::to_string(kRecordOverheadBytes) + " bytes of frame overhead)");
  }
  if (o.retention_ms > kMaxRetentionMs) {
    return Status::InvalidArgument(TopicQuoted(name) + ": retention_ms must be at most " +
                                   std::to_string(kMaxRetentionMs) + " (got " +
                                   std::to_string(o.retention_ms) + ")");
  }
  if (o.fsync != FsyncPolicy::kNever && o.fsync != FsyncPolicy::kInterval &&
      o.fsync != FsyncPolicy::kAlways) {
    return Status::InvalidArgument(TopicQuoted(name) + ": unknown fsync policy");
  }
  if (o.fsync == FsyncPolicy::kInterval && o.fsync_interval_ms == 0) {
    return Status::InvalidArgument(
        TopicQuoted(name) + ": fsync_interval_ms must be at least 1 with the interval policy");
  }
  TopicRecord t;
  t.name = std::string(name);
  t.partitions = o.partitions;
  t.ring_capacity = o.ring_bytes;
  t.max_record_bytes = static_cast<uint32_t>(max_record);
  t.flags =
      (o.single_producer ? kTopicFlagSingleProducer : 0) | (o.durable ? kTopicFlagDurable : 0);
  t.segment_bytes = o.segment_bytes;
  t.retention_bytes = o.retention_bytes;
  t.retention_ms = o.retention_ms;
  t.fsync_kind = static_cast<uint32_t>(o.fsync);
  t.fsync_interval_ms = o.fsync == FsyncPolicy::kInterval ? o.fsync_interval_ms : 0;
  return t;
}

TopicOptions OptionsFromRecord(const TopicRecord& t) {
  TopicOptions o;
  o.partitions = t.partitions;
  o.ring_bytes = t.ring_capacity;
  o.max_record_bytes = t.max_record_bytes;
  o.single_producer = (t.flags & kTopicFlagSingleProducer) != 0;
  o.durable = (t.flags & kTopicFlagDurable) != 0;
  o.segment_bytes = t.segment_bytes;
  o.retention_bytes = t.retention_bytes;
  o.retention_ms = t.retention_ms;
  o.fsync = static_cast<FsyncPolicy>(t.fsync_kind);
  o.fsync_interval_ms = t.fsync_interval_ms;
  return o;
}

// ---------------------------------------------------------------------------
// Open

Result<std::shared_ptr<BusCore>> BusCore::Open(std::string_view name, const BusOptions& options) {
  RUNNEL_RETURN_IF_ERROR(ValidateBusName(name));
  if (options.unblock_timeout_ms <= 0 || options.sweep_period_ms <= 0) {
    return Status::InvalidArgument("unblock_timeout_ms and sweep_period_ms must be positive");
  }
  const uint32_t create_mode = options.group_shared ? 0660 : 0600;
  const std::string dir_name = DirectoryShmName(name);
  const std::string dir_path = ShmPath(dir_name);
  const std::string lock_path = DirectoryLockPath(name);

  Result<SharedRegion> region = SharedRegion::Open(dir_name, /*populate=*/true);
  if (!options.create_if_missing) {
    // Size 0: a creator is between creating and sizing it; give it a moment.
    const int64_t until = MonotonicNanos() + kAttachWaitNs;
    while (!region.ok() && region.status().code() == StatusCode::kUnavailable &&
           MonotonicNanos() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      region = SharedRegion::Open(dir_name, true);
    }
  }
  if (!region.ok() && region.status().code() != StatusCode::kNotFound &&
      region.status().code() != StatusCode::kUnavailable) {
    return region.status();
  }
  if (!region.ok() && region.status().code() == StatusCode::kNotFound &&
      !options.create_if_missing) {
    return Status::NotFound("bus '" + std::string(name) + "' does not exist (no " + dir_path +
                            "); open it with create_if_missing to create it");
  }
  if (!region.ok() && options.create_if_missing) {
    // Create under the directory lock, so two creators cannot both format.
    Result<LockFile> lock = LockFile::Open(lock_path, /*create=*/true, create_mode);
    if (!lock.ok()) return lock.status();
    RUNNEL_RETURN_IF_ERROR(lock->Lock());
    region = SharedRegion::Open(dir_name, true);
    if (!region.ok() && region.status().code() == StatusCode::kUnavailable) {
      // Size 0: a creator died before sizing it (we hold the lock).
      RUNNEL_RETURN_IF_ERROR(SharedRegion::Remove(dir_name));
      region = Status::NotFound(dir_path);
    }
    if (!region.ok() && region.status().code() == StatusCode::kNotFound) {
      region = SharedRegion::Create(dir_name, Directory::kBytes, create_mode);
      if (region.ok()) Directory::Format(region->bytes(), name, create_mode);
    } else if (region.ok() && region->size() >= Directory::kBytes &&
               Directory::LoadMagic(region->data()) == 0) {
      // Sized but never formatted: its creator died (we hold the lock),
      // maybe part way through formatting.
      RUNNEL_RETURN_IF_ERROR(FormatLeftover(*region, name, dir_path, create_mode));
    }
    lock->Unlock();
    if (!region.ok()) return region.status();
  }

  const std::string never_initialized =
      dir_path + " was never initialized: its creator died while creating it; " +
      (options.create_if_missing
           ? std::string("remove the bus (runnel --bus ") + std::string(name) +
                 " bus remove, or rm /dev/shm/runnel." + std::string(name) + ".*) and open it again"
           : std::string("open it with create_if_missing to create it"));
  // Still size 0 (its creator died before sizing it), without create_if_missing.
  if (!region.ok()) return Status::Unavailable(never_initialized);
  // Attach: the magic is published last, by a creator holding the directory
  // lock. Not there yet: wait for the lock; if it is still not there then,
  // its creator died, and with create_if_missing this process formats it.
  if (region->size() >= sizeof(DirectoryHeader) && Directory::LoadMagic(region->data()) == 0) {
    Result<LockFile> lock = LockFile::Open(lock_path, /*create=*/true, create_mode);
    if (!lock.ok()) return lock.status();
    RUNNEL_RETURN_IF_ERROR(lock->Lock());
    if (Directory::LoadMagic(region->data()) == 0) {
      if (!options.create_if_missing || region->size() < Directory::kBytes) {
        return Status::Unavailable(never_initialized);
      }
      RUNNEL_RETURN_IF_ERROR(FormatLeftover(*region, name, dir_path, create_mode));
    }
    lock->Unlock();
  }
  RUNNEL_RETURN_IF_ERROR(Directory::Check(region->bytes(), dir_path, name));

  std::shared_ptr<BusCore> core(new BusCore());
  core->name_ = std::string(name);
  core->options_ = options;
  core->dir_region_ = std::move(*region);
  core->dir_ = Directory(core->dir_region_.data());
  RUNNEL_RETURN_IF_ERROR(core->ResolveDataDir());
  core->data_dir_ = core->options_.data_dir;
  Result<LockFile> lock = LockFile::Open(lock_path, /*create=*/true, core->dir_.file_mode());
  if (!lock.ok()) return lock.status();
  core->lock_file_ = std::move(*lock);
  return core;
}

BusCore::~BusCore() = default;

Status BusCore::ResolveDataDir() {
  std::string& dir = options_.data_dir;
  const DataDirRecord recorded = dir_.ReadDataDir();
  if (dir.empty()) {
    dir = recorded.path;
    return Status::Ok();
  }
  std::error_code ec;
  const std::filesystem::path abs = std::filesystem::absolute(dir, ec);
  if (ec) return Status::InvalidArgument("data dir '" + dir + "': " + ec.message());
  dir = abs.lexically_normal().string();
  if (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (dir.size() > kDataDirBytes) {
    return Status::InvalidArgument("data dir '" + dir + "' is longer than " +
                                   std::to_string(kDataDirBytes) + " bytes");
  }
  if (recorded.path.empty() || recorded.path == dir) return Status::Ok();
  // Refused only while the broker that recorded it runs.
  const BrokerRecord b = dir_.ReadBroker();
  if (b.pid == 0 || b.epoch != recorded.epoch ||
      CheckProcess(b.pid, b.start_time) != Liveness::kAlive) {
    return Status::Ok();
  }
  // The same directory by another name (a symlink on the way)?
  if (std::filesystem::equivalent(dir, recorded.path, ec) && !ec) {
    dir = recorded.path;
    return Status::Ok();
  }
  // Its consumers would read another log than the one the broker writes, and
  // topics it creates would start at offsets found in the wrong place.
  return Status::InvalidArgument("the broker of bus '" + name_ + "' (pid " + std::to_string(b.pid) +
                                 ") keeps its data in " + recorded.path + ", not in " + dir +
                                 "; use the same data dir (or leave it out to use the broker's)");
}

// ---------------------------------------------------------------------------
// Lock and repair

BusCore::Guard::~Guard() {
  if (core_ != nullptr) core_->lock_file_.Unlock();
}

Result<BusCore::Guard> BusCore::Lock() {
  std::unique_lock<std::mutex> lk(lock_mu_);
  RUNNEL_RETURN_IF_ERROR(lock_file_.Lock());
  Guard g(this, std::move(lk));
  RepairLocked();
  return Result<Guard>(std::move(g));
}

Result<BusCore::Guard> BusCore::TryLock() {
  std::unique_lock<std::mutex> lk(lock_mu_, std::try_to_lock);
  if (!lk.owns_lock() || !lock_file_.TryLock()) {
    return Status::Unavailable("the directory lock of bus '" + name_ + "' is busy");
  }
  Guard g(this, std::move(lk));
  RepairLocked();
  return Result<Guard>(std::move(g));
}

void BusCore::UnlinkRings(const TopicRecord& t, uint32_t partitions) {
  for (uint32_t p = 0; p < partitions; ++p) {
    // Best effort: a missing file is fine; a failure leaves litter that
    // Bus::Remove cleans up.
    (void)SharedRegion::Remove(RingShmName(name_, t.name, p, t.generation));
  }
}

void BusCore::ReleaseTopicClientsLocked(uint32_t slot, uint64_t generation) {
  for (const ClientRecord& c : dir_.LiveClients()) {
    if (c.topic_slot == slot && c.topic_generation == generation) dir_.ClearClient(c.slot);
  }
}

void BusCore::RepairLocked() {
  bool changed = false;
  for (uint32_t slot = 0; slot < kMaxTopics; ++slot) {
    const bool odd = dir_.TopicSeqOdd(slot);
    const TopicRecord t = dir_.ReadTopicLocked(slot);
    if (!odd && t.state != TopicState::kCreating && t.state != TopicState::kDeleting) continue;
    // An odd seq over a live entry whose rings are all there: a peer wrote
    // over the seq, or a creator died storing kLive (its rings were made
    // before) or a deleter died before storing kDeleting. Removing it would
    // drop the records only its rings hold: keep it, unless the delete was
    // committed (its tombstone is on disk): then the delete wins at once, as
    // it would have (kept, producers would go on and a later restart would
    // delete what they wrote).
    if (odd && t.state == TopicState::kLive && RingsPresentLocked(t) && !DeleteCommitted(t) &&
        dir_.ResealLiveTopic(slot)) {
      changed = true;
      continue;
    }
    // We hold the lock, so whoever left this half-done is dead: finish the
    // job (a half-created topic is removed, a half-deleted one too).
    if (t.generation != 0 && ValidateTopicName(t.name).ok()) {
      UnlinkRings(
          t, t.partitions >= 1 && t.partitions <= kMaxPartitions ? t.partitions : kMaxPartitions);
    }
    ReleaseTopicClientsLocked(slot, t.generation);
    dir_.ClearTopic(slot);
    changed = true;
  }
  for (uint32_t slot = 0; slot < kMaxClients; ++slot) {
    if (dir_.ClientSeqOdd(slot)) dir_.ClearClient(slot);
  }
  if (changed) dir_.BumpTopicsVersion();
}

bool BusCore::RingsPresentLocked(const TopicRecord& t) const {
  if (t.partitions < 1 || t.partitions > kMaxPartitions || !ValidateTopicName(t.name).ok()) {
    return false;
  }
  for (uint32_t p = 0; p < t.partitions; ++p) {
    Result<SharedRegion> r =
        SharedRegion::Open(RingShmName(name_, t.name, p, t.generation), /*populate=*/false);
    if (!r.ok() || r->size() != Ring::RequiredBytes(t.ring_capacity)) return false;
  }
  return true;
}

bool BusCore::DeleteCommitted(const TopicRecord& t) const {
  const std::string data_dir = this->data_dir();
  if (data_dir.empty()) return false;
  const std::optional<TopicTombstone> tomb = ReadTopicTombstone(data_dir, t.name);
  return tomb && (tomb->generation == 0 || tomb->generation == t.generation);
}

bool BusCore::NeedsRepair() const {
  for (uint32_t slot = 0; slot < kMaxTopics; ++slot) {
    if (dir_.TopicInTransition(slot)) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------
// Topics

Status BusCore::CreateTopic(std::string_view name, const TopicOptions& options,
                            std::span<const uint64_t> base_offsets) {
  Result<TopicRecord> want = ResolveOptions(name, options);
  if (!want.ok()) return want.status();
  if (!base_offsets.empty() && base_offsets.size() != want->partitions) {
    return Status::InvalidArgument(TopicQuoted(name) + ": " + std::to_string(base_offsets.size()) +
                                   " base offsets for " + std::to_string(want->partitions) +
                                   " partitions");
  }
  Result<Guard> guard = Lock();
  if (!guard.ok()) return guard.status();

  if (std::optional<TopicRecord> have = dir_.FindLiveTopic(name)) {
    const std::string diff = DescribeDifferences(*have, *want);
    if (diff.empty()) return Status::Ok();  // idempotent
    return Status::AlreadyExists(TopicQuoted(name) + " already exists with other settings: " +
                                 diff + "; delete it first or create it with the same settings");
  }
  const std::optional<uint32_t> slot = dir_.FreeTopicSlot();
  if (!slot) {
    return Status::ResourceExhausted("bus '" + name_ + "' already has " +
                                     std::to_string(kMaxTopics) + " topics (the maximum)");
  }
  TopicRecord t = std::move(*want);
  t.slot = *slot;
  t.generation = dir_.NextGeneration();
  t.state = TopicState::kCreating;
  t.created_wall_ns = WallClockNanos();
  dir_.WriteTopic(t);

  const uint32_t mode = dir_.file_mode();
  for (uint32_t p = 0; p < t.partitions; ++p) {
    const std::string shm = RingShmName(name_, t.name, p, t.generation);
    const uint64_t bytes = Ring::RequiredBytes(t.ring_capacity);
    Result<SharedRegion> region = SharedRegion::Create(shm, bytes, mode);
    if (!region.ok() && region.status().code() == StatusCode::kAlreadyExists) {
      // Generations are unique within this directory, and we hold its lock:
      // the file is litter from an earlier incarnation of the bus.
      (void)SharedRegion::Remove(shm);
      region = SharedRegion::Create(shm, bytes, mode);
    }
    Status s = region.status();
    if (region.ok()) {
      RingOptions ro;
      ro.capacity = t.ring_capacity;
      ro.max_frame_length = t.max_record_bytes + kRecordOverheadBytes;
      ro.mode = (t.flags & kTopicFlagSingleProducer) ? RingMode::kSingleProducer
                                                     : RingMode::kMultiProducer;
      ro.base_offset = base_offsets.empty() ? 0 : base_offsets[p];
      Result<Ring> ring = Ring::Create(region->bytes(), ro);
      s = ring.status();
      if (ring.ok() && (t.flags & kTopicFlagDurable) && !data_dir().empty()) {
        // The persistence thread's slot exists from the start: until a
        // broker persists the partition, producers cannot overwrite what
        // is not on disk yet (they see back-pressure instead).
        Result<uint32_t> slot =
            ring->AcquireGatingSlot(kPersisterGatingOwner, RingPosition{0, ro.base_offset});
        s = slot.status();
      }
    }
    if (!s.ok()) {
      UnlinkRings(t, p + 1);
      dir_.ClearTopic(t.slot);
      return Status(s.code(), "creating " + TopicQuoted(name) + " partition " + std::to_string(p) +
                                  ": " + s.message());
    }
  }
  dir_.SetTopicState(t.slot, TopicState::kLive);
  dir_.BumpTopicsVersion();
  return Status::Ok();
}

Status BusCore::DeleteTopic(std::string_view name, std::optional<uint64_t> generation) {
  RUNNEL_RETURN_IF_ERROR(ValidateTopicName(name));
  Result<Guard> guard = Lock();
  if (!guard.ok()) return guard.status();
  const std::optional<TopicRecord> t = dir_.FindLiveTopic(name);
  if (!t) return Status::NotFound(TopicQuoted(name) + " does not exist on bus '" + name_ + "'");
  if (generation && t->generation != *generation) {
    return Status::NotFound(TopicQuoted(name) + " generation " + std::to_string(*generation) +
                            " was deleted (generation " + std::to_string(t->generation) +
                            " is live)");
  }
  dir_.SetTopicState(t->slot, TopicState::kDeleting);
  ReleaseTopicClientsLocked(t->slot, t->generation);
  UnlinkRings(*t, t->partitions);
  dir_.ClearTopic(t->slot);
  dir_.BumpTopicsVersion();
  return Status::Ok();
}

Result<std::shared_ptr<const TopicMapping>> BusCore::MapTopic(const TopicRecord& topic,
                                                              bool populate) {
  std::lock_guard<std::mutex> lk(mu_);
  const auto key = std::make_pair(topic.slot, topic.generation);
  for (auto it = cache_.begin(); it != cache_.end();) {
    it = it->second.expired() ? cache_.erase(it) : std::next(it);
  }
  if (auto it = cache_.find(key); it != cache_.end()) {
    if (std::shared_ptr<const TopicMapping> m = it->second.lock()) return m;
  }
  auto m = std::make_shared<TopicMapping>();
  m->topic = topic;
  m->regions.reserve(topic.partitions);
  m->rings.reserve(topic.partitions);
  const std::string gone = TopicQuoted(topic.name) + " was deleted";
  for (uint32_t p = 0; p < topic.partitions; ++p) {
    const std::string shm = RingShmName(name_, topic.name, p, topic.generation);
    Result<SharedRegion> region = SharedRegion::Open(shm, populate);
    if (!region.ok()) {
      if (region.status().code() != StatusCode::kNotFound) return region.status();
      if (!dir_.IsLive(topic.slot, topic.generation)) {
        return Status::NotFound(gone + " (" + ShmPath(shm) + " is gone)");
      }
      // Live, but its ring file is not there: somebody removed it (by hand,
      // a /dev/shm cleaner). Not a deleted topic: say what is wrong.
      return Status::Corruption(
          ShmPath(shm) + ", the ring of " + TopicQuoted(topic.name) + " partition " +
          std::to_string(p) +
          ", is missing (removed by something other than runnel): what only it held is lost. "
          "Delete the topic and create it again, or remove the bus (runnel --bus " +
          name_ +
          " bus remove --force) and start the broker again (a durable topic comes back "
          "from its log)");
    }
    // The ring's magic is published last; topics go live only after their
    // rings are formatted, so this wait is a safety net.
    const int64_t deadline = MonotonicNanos() + kAttachWaitNs;
    Result<Ring> ring = Ring::Attach(region->bytes());
    while (!ring.ok() && ring.status().code() == StatusCode::kUnavailable &&
           MonotonicNanos() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      ring = Ring::Attach(region->bytes());
    }
    if (!ring.ok()) {
      return Status(ring.status().code(), ShmPath(shm) + ": " + ring.status().message());
    }
    if (ring->capacity() != topic.ring_capacity) {
      return Status::Corruption(ShmPath(shm) + ": ring capacity " +
                                std::to_string(ring->capacity()) + " but the directory says " +
                                std::to_string(topic.ring_capacity));
    }
    m->rings.push_back(*ring);
    m->regions.push_back(std::move(*region));
  }
  if (!dir_.IsLive(topic.slot, topic.generation)) return Status::NotFound(gone);
  std::shared_ptr<const TopicMapping> out = m;
  if (populate) cache_[key] = out;  // only pre-faulted mappings are shared
  return out;
}

// ---------------------------------------------------------------------------
// Clients

Result<BusCore::Registration> BusCore::Register(ClientRole role, const TopicRecord& topic,
                                                uint64_t partition_mask, std::string_view group) {
  Result<Guard> guard = Lock();
  if (!guard.ok()) return guard.status();
  if (!dir_.IsLive(topic.slot, topic.generation)) {
    return Status::NotFound(TopicQuoted(topic.name) + " was deleted");
  }
  if (role == ClientRole::kProducer && (topic.flags & kTopicFlagSingleProducer) != 0) {
    for (const ClientRecord& c : dir_.LiveClients()) {
      if (c.role != ClientRole::kProducer || c.topic_slot != topic.slot ||
          c.topic_generation != topic.generation || (c.partition_mask & partition_mask) == 0) {
        continue;
      }
      if (CheckProcess(c.pid, c.start_time) == Liveness::kDead) {
        dir_.ClearClient(c.slot);  // a dead holder: reclaim now
        dir_.AddClientsReaped(1);
        continue;
      }
      const int p = std::countr_zero(c.partition_mask & partition_mask);
      return Status::FailedPrecondition(
          TopicQuoted(topic.name) + " is single-producer and partition " + std::to_string(p) +
          " already has a live producer (pid " + std::to_string(c.pid) +
          "); close that producer, or give each producer its own partitions "
          "(ProducerOptions::partitions, `runnel produce --partition`)");
    }
  }
  std::optional<uint32_t> slot = dir_.FreeClientSlot();
  if (!slot) {
    // Full: take back dead clients' slots now. A broker's sweep does it every
    // tick; with none running nobody else would, and the bus stayed full.
    uint32_t reaped = 0;
    for (const ClientRecord& c : dir_.LiveClients()) {
      if (CheckProcess(c.pid, c.start_time) == Liveness::kDead) {
        dir_.ClearClient(c.slot);
        ++reaped;
      }
    }
    dir_.AddClientsReaped(reaped);
    slot = dir_.FreeClientSlot();
  }
  if (!slot) {
    return Status::ResourceExhausted(
        "all " + std::to_string(kMaxClients) + " client slots of bus '" + name_ +
        "' are in use by live processes (close producers or consumers you no longer need)");
  }
  const ProcessIdentity self = SelfIdentity();
  ClientRecord c;
  c.slot = *slot;
  c.role = role;
  c.client_id = dir_.NextClientId();
  c.pid = self.pid;
  c.start_time = self.start_time;
  c.topic_slot = topic.slot;
  c.topic_generation = topic.generation;
  c.partition_mask = partition_mask;
  c.registered_wall_ns = WallClockNanos();
  c.heartbeat_ns = MonotonicNanos();
  c.group = std::string(group);
  dir_.WriteClient(c);
  return Registration{c.slot, c.client_id};
}

void BusCore::Unregister(const Registration& r) {
  if (r.client_id == 0) return;
  Result<Guard> guard = Lock();
  if (!guard.ok()) return;  // the broker reaps it when this process exits
  if (dir_.ClientIs(r.slot, r.client_id)) dir_.ClearClient(r.slot);
}

Result<uint32_t> BusCore::ReapDeadClients(bool wait) {
  std::vector<ClientRecord> dead;
  std::map<std::pair<int32_t, uint64_t>, Liveness> verdicts;
  for (ClientRecord& c : dir_.LiveClients()) {
    const auto key = std::make_pair(c.pid, c.start_time);
    auto it = verdicts.find(key);
    if (it == verdicts.end()) it = verdicts.emplace(key, CheckProcess(c.pid, c.start_time)).first;
    if (it->second == Liveness::kDead) dead.push_back(std::move(c));
  }
  if (dead.empty()) return 0u;
  Result<Guard> guard = wait ? Lock() : TryLock();
  if (!guard.ok()) return guard.status();
  uint32_t n = 0;
  for (const ClientRecord& c : dead) {
    if (dir_.ClientIs(c.slot, c.client_id)) {
      dir_.ClearClient(c.slot);
      ++n;
    }
  }
  dir_.AddClientsReaped(n);
  return n;
}

void BusCore::SetColdReader(std::shared_ptr<ColdReader> reader) {
  std::lock_guard<std::mutex> lk(mu_);
  cold_reader_ = std::move(reader);
}

std::shared_ptr<ColdReader> BusCore::cold_reader() const {
  std::lock_guard<std::mutex> lk(mu_);
  return cold_reader_;
}

std::string BusCore::data_dir() const {
  std::lock_guard<std::mutex> lk(mu_);
  return data_dir_;
}

void BusCore::RecordDataDir() {
  const std::string mine = data_dir();
  if (mine.empty()) return;
  Result<Guard> guard = Lock();
  if (!guard.ok()) return;  // best effort: the topic is created either way
  const BrokerRecord b = dir_.ReadBroker();
  if (b.pid != 0 && CheckProcess(b.pid, b.start_time) == Liveness::kAlive) return;
  // One a broker recorded stays: it says where that broker's logs are, for
  // every topic it persisted (this topic's log, if any, is in `mine`).
  const DataDirRecord recorded = dir_.ReadDataDir();
  if (recorded.path == mine || (!recorded.path.empty() && recorded.epoch != 0)) return;
  dir_.WriteDataDir(mine, 0);
}

void BusCore::AdoptRecordedDataDir(
    const std::function<std::shared_ptr<ColdReader>(const std::string&)>& make_reader) {
  std::lock_guard<std::mutex> lk(mu_);
  if (!data_dir_.empty()) return;
  std::string recorded = dir_.ReadDataDir().path;
  if (recorded.empty()) return;
  cold_reader_ = make_reader(recorded);
  data_dir_ = std::move(recorded);
}

}  // namespace runnel::internal
