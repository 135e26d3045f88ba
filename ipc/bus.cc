#include "ipc/bus.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>

#include "core/wait.h"
#include "ipc/broker.h"
#include "ipc/durability.h"
#include "ipc/internal/bus_core.h"
#include "ipc/internal/log_cold_reader.h"
#include "ipc/internal/names.h"
#include "ipc/internal/process.h"
#include "ipc/internal/ring_scan.h"
#include "ipc/internal/shm.h"
#include "persistence/persister.h"

namespace runnel {

using internal::BusCore;
using internal::ClientRecord;
using internal::ClientRole;
using internal::TopicRecord;

Status ValidateTopicName(std::string_view name) { return internal::ValidateTopicName(name); }
Status ValidateBusName(std::string_view name) { return internal::ValidateBusName(name); }

Bus::Bus(std::shared_ptr<BusCore> core, std::unique_ptr<Broker> broker)
    : core_(std::move(core)), broker_(std::move(broker)) {}
Bus::Bus(Bus&&) noexcept = default;
Bus& Bus::operator=(Bus&&) noexcept = default;
Bus::~Bus() = default;  // ~Broker stops the thread

namespace {
// Every call on a moved-from Bus, Producer or Consumer says so instead of
// following the null pointer it was left with.
const std::string kNone;
}  // namespace

Status internal::MovedFrom(std::string_view what) {
  return Status::FailedPrecondition("this " + std::string(what) +
                                    " was moved from: use the object it was moved to");
}

const std::string& Bus::name() const { return core_ ? core_->name() : kNone; }

namespace {
// A process that opened the bus before any broker recorded a data dir takes
// the one recorded since: topics it creates are durable, its consumers read
// the log (options().data_dir stays what Open resolved).
void AdoptRecordedDataDir(internal::BusCore& core) {
  core.AdoptRecordedDataDir(
      [](const std::string& dir) { return internal::MakeLogColdReader(dir); });
}

// A topic that is only in the data dir (the bus lost its shared memory) is
// created again with the settings its log was written with, or not at all,
// as a live one: fewer partitions would hide the records of the others and
// move keys, and a memory-only topic would leave its log unread. The caller
// checked that it is neither live nor deleted.
Status CheckAgainstLogOnDisk(const std::string& data_dir, std::string_view name,
                             const TopicOptions& options) {
  // No settings file, or one that does not read: the broker says so, and
  // creating the topic with its settings is the way back.
  Result<TopicOptions> meta = ReadTopicMeta(data_dir, name);
  if (!meta.ok()) return Status::Ok();
  Result<internal::TopicRecord> have = internal::ResolveOptions(name, *meta);
  Result<internal::TopicRecord> want = internal::ResolveOptions(name, options);
  if (!have.ok() || !want.ok()) return Status::Ok();  // CreateTopic says what is wrong
  const std::string diff = internal::DescribeDifferences(*have, *want);
  if (diff.empty()) return Status::Ok();
  return Status::AlreadyExists("topic '" + std::string(name) + "' is in the data dir " + data_dir +
                               " with other settings: " + diff +
                               "; create it with the same settings (a broker restores it with "
                               "them by itself), or delete it first");
}
}  // namespace

std::string Bus::data_dir() const {
  if (!core_) return kNone;
  AdoptRecordedDataDir(*core_);
  return core_->data_dir();
}

Result<Bus> Bus::Open(std::string_view name, const BusOptions& options) {
  Result<std::shared_ptr<BusCore>> core = BusCore::Open(name, options);
  if (!core.ok()) return core.status();
  const std::string& data_dir = (*core)->options().data_dir;  // resolved
  if (!data_dir.empty()) (*core)->SetColdReader(internal::MakeLogColdReader(data_dir));
  std::unique_ptr<Broker> broker;
  if (options.embedded_broker) {
    broker.reset(new Broker(*core, BrokerOptions{}));
    if (!data_dir.empty()) {
      DurabilityOptions d;
      d.data_dir = data_dir;
      broker->AddHooks(MakeDurabilityHooks(d));
    }
    RUNNEL_RETURN_IF_ERROR(broker->Start(BrokerMode::kStandby));
  }
  return Bus(std::move(*core), std::move(broker));
}

Status Bus::Remove(std::string_view name) {
  RUNNEL_RETURN_IF_ERROR(internal::ValidateBusName(name));
  Result<std::vector<std::string>> files = internal::ListShmFiles(internal::BusFilePrefix(name));
  if (!files.ok()) return files.status();
  if (files->empty()) {
    return Status::NotFound("bus '" + std::string(name) + "' has no files under /dev/shm");
  }
  Status first;
  for (const std::string& f : *files) {
    Status s = internal::SharedRegion::Remove(f);
    if (!s.ok() && first.ok()) first = s;
  }
  return first;
}

Status Bus::CreateTopic(std::string_view name, const TopicOptions& options) {
  if (!core_) return internal::MovedFrom("Bus");
  AdoptRecordedDataDir(*core_);
  const std::string data_dir = core_->data_dir();
  if (data_dir.empty() || !ValidateTopicName(name).ok() || options.partitions == 0 ||
      options.partitions > 64) {
    return core_->CreateTopic(name, options);
  }
  if (!options.durable) {
    if (!core_->directory().FindLiveTopic(name) && !ReadTopicTombstone(data_dir, name)) {
      RUNNEL_RETURN_IF_ERROR(CheckAgainstLogOnDisk(data_dir, name, options));
    }
    return core_->CreateTopic(name, options);
  }
  // From the tombstone check to the topic on the bus, no other process's
  // create or delete, nor the broker, changes the topic's directory.
  const TopicDirLock lock(data_dir, name);
  if (std::optional<TopicTombstone> t = ReadTopicTombstone(data_dir, name)) {
    // The log on disk belongs to a deleted topic (docs/design.md, "Deleting a
    // topic"): the new one starts afresh, after that log is gone.
    std::optional<TopicRecord> live = core_->directory().FindLiveTopic(name);
    if (live &&
        (live->generation != t->generation || live->created_wall_ns != t->created_wall_ns)) {
      // A newer incarnation is live; its broker removes the old log.
      return core_->CreateTopic(name, options);
    }
    if (live) {
      // Its delete was committed (tombstone) but never finished: finish it.
      Status d = core_->DeleteTopic(name, live->generation);
      if (!d.ok() && d.code() != StatusCode::kNotFound) return d;
    }
    // A broker that still has the old logs open closes them on its next tick.
    Status purged = PurgeTopicData(data_dir, name, std::chrono::seconds(5));
    if (!purged.ok()) {
      return Status(purged.code(),
                    "topic '" + std::string(name) +
                        "' was deleted and its old log is not removed yet: " + purged.message());
    }
  }
  // Live already (the idempotent create every process of an application may
  // run at start-up): the directory compares the options; the log, which the
  // broker is appending to, is not read.
  if (core_->directory().FindLiveTopic(name)) return core_->CreateTopic(name, options);
  // A topic whose log is already on disk (the bus's shared memory was lost)
  // continues at the offsets recovered there, with the settings it has there.
  RUNNEL_RETURN_IF_ERROR(CheckAgainstLogOnDisk(data_dir, name, options));
  std::vector<uint64_t> base(options.partitions, 0);
  for (uint32_t p = 0; p < options.partitions; ++p) {
    Result<uint64_t> next = NextOffsetOnDisk(data_dir, name, p);
    if (!next.ok()) {
      return Status(next.status().code(), "topic '" + std::string(name) + "' partition " +
                                              std::to_string(p) +
                                              " on disk: " + next.status().message());
    }
    base[p] = *next;
  }
  RUNNEL_RETURN_IF_ERROR(core_->CreateTopic(name, options, base));
  // Its log goes to data_dir: with no broker yet, say so on the bus, so
  // commands and brokers given no data dir use that one.
  core_->RecordDataDir();
  return Status::Ok();
}

Status Bus::DeleteTopic(std::string_view name) {
  if (!core_) return internal::MovedFrom("Bus");
  // This process's data dir, else the one a broker recorded since this
  // process opened the bus: only a tombstone lets a broker remove the log
  // (and keeps it from restoring the topic).
  AdoptRecordedDataDir(*core_);
  const std::string data_dir = core_->data_dir();
  if (data_dir.empty() || !ValidateTopicName(name).ok()) return core_->DeleteTopic(name);
  // A memory-only topic (or none) has nothing on disk: no topic lock (its
  // file would stay in DATA_DIR/~locks for every such name).
  const std::optional<TopicRecord> before = core_->directory().FindLiveTopic(name);
  if (!before) return core_->DeleteTopic(name);
  if ((before->flags & internal::kTopicFlagDurable) == 0) {
    return core_->DeleteTopic(name, before->generation);
  }
  // The tombstone and the delete from the bus as one step for the other
  // processes and the broker (see CreateTopic).
  const TopicDirLock lock(data_dir, name);
  const std::optional<TopicRecord> t = core_->directory().FindLiveTopic(name);
  if (!t) return core_->DeleteTopic(name);
  if ((t->flags & internal::kTopicFlagDurable) == 0) return core_->DeleteTopic(name, t->generation);
  // The tombstone first: once it is on disk the delete is committed, so a
  // crash from here on never brings the topic back (docs/design.md).
  Status marked = WriteTopicTombstone(data_dir, name, {t->generation, t->created_wall_ns});
  if (!marked.ok()) {
    // Another delete won meanwhile, and its broker may have removed the
    // directory under our tombstone (ENOENT): that is "not found", as any
    // late deleter hears it (TSan's timing showed it in CI).
    if (!core_->directory().IsLive(t->slot, t->generation)) {
      return Status::NotFound("topic '" + std::string(name) +
                              "' does not exist (deleted meanwhile)");
    }
    return Status(marked.code(), "topic '" + std::string(name) +
                                     "': cannot mark its log as deleted, nothing was deleted: " +
                                     marked.message());
  }
  Status s = core_->DeleteTopic(name, t->generation);
  if (!s.ok() && s.code() != StatusCode::kNotFound) {
    // Still live: take the tombstone back (a broker would finish the delete).
    std::error_code ec;
    std::filesystem::remove(data_dir + "/" + std::string(name) + "/topic.deleted", ec);
  }
  return s;
}

namespace {

TopicInfo InfoFromRecord(const TopicRecord& t) {
  TopicInfo info;
  info.name = t.name;
  info.generation = t.generation;
  info.options = internal::OptionsFromRecord(t);
  info.created_wall_ns = t.created_wall_ns;
  return info;
}

Result<uint64_t> PartitionMask(std::string_view topic, uint32_t partitions,
                               const std::vector<uint32_t>& wanted) {
  if (wanted.empty()) return partitions == 64 ? ~0ull : (1ull << partitions) - 1;
  uint64_t mask = 0;
  for (uint32_t p : wanted) {
    if (p >= partitions) {
      return Status::InvalidArgument(
          "topic '" + std::string(topic) + "' has " + std::to_string(partitions) +
          (partitions == 1 ? " partition (0)"
                           : " partitions (0.." + std::to_string(partitions - 1) + ")") +
          "; there is no partition " + std::to_string(p));
    }
    mask |= 1ull << p;
  }
  return mask;
}

Result<TopicRecord> FindTopic(const BusCore& core, std::string_view name) {
  RUNNEL_RETURN_IF_ERROR(ValidateTopicName(name));
  std::optional<TopicRecord> t = core.directory().FindLiveTopic(name);
  if (!t) {
    return Status::NotFound("topic '" + std::string(name) + "' does not exist on bus '" +
                            core.name() + "'");
  }
  return *std::move(t);
}

// What a new producer or consumer needs: the live topic, the partitions it
// uses, their rings mapped, and its registration as a client.
struct Attachment {
  TopicRecord topic;
  uint64_t mask = 0;
  std::shared_ptr<const internal::TopicMapping> mapping;
  BusCore::Registration registration;
};

Result<Attachment> Attach(BusCore& core, ClientRole role, std::string_view topic,
                          const std::vector<uint32_t>& partitions, std::string_view group) {
  Attachment a;
  Result<TopicRecord> t = FindTopic(core, topic);
  if (!t.ok()) return t.status();
  a.topic = std::move(t).value();
  Result<uint64_t> mask = PartitionMask(topic, a.topic.partitions, partitions);
  if (!mask.ok()) return mask.status();
  a.mask = *mask;
  Result<std::shared_ptr<const internal::TopicMapping>> m = core.MapTopic(a.topic);
  if (!m.ok()) return m.status();
  a.mapping = std::move(m).value();
  Result<BusCore::Registration> reg = core.Register(role, a.topic, a.mask, group);
  if (!reg.ok()) return reg.status();
  a.registration = *reg;
  return a;
}

// A start on disk (earliest, a timestamp) that cannot look at the log.
Status UnreadableLog(const std::string& topic, uint32_t partition, const Status& s) {
  return Status(s.code(), "cannot read the log of topic '" + topic + "' partition " +
                              std::to_string(partition) +
                              " to find where to start: " + s.message());
}

}  // namespace

Result<std::vector<TopicInfo>> Bus::ListTopics() const {
  if (!core_) return internal::MovedFrom("Bus");
  std::vector<TopicInfo> out;
  for (const TopicRecord& t : core_->directory().LiveTopics()) out.push_back(InfoFromRecord(t));
  std::sort(out.begin(), out.end(),
            [](const TopicInfo& a, const TopicInfo& b) { return a.name < b.name; });
  return out;
}

Result<TopicInfo> Bus::DescribeTopic(std::string_view name) const {
  if (!core_) return internal::MovedFrom("Bus");
  const Result<TopicRecord> t = FindTopic(*core_, name);
  if (!t.ok()) return t.status();
  // Only ring headers are read: no need to pre-fault the data.
  Result<std::shared_ptr<const internal::TopicMapping>> m = core_->MapTopic(*t, /*populate=*/false);
  if (!m.ok()) return m.status();
  TopicInfo info = InfoFromRecord(*t);
  std::vector<uint64_t> next_offsets;
  for (uint32_t p = 0; p < t->partitions; ++p) {
    const Ring& ring = (*m)->rings[p];
    PartitionInfo pi;
    pi.partition = p;
    const RingPosition tail = ring.tail();
    const RingPosition earliest = ring.earliest();
    pi.next_offset = tail.offset;
    pi.tail_position = tail.position;
    pi.earliest_offset = earliest.offset;
    pi.earliest_position = earliest.position;
    pi.unblocked_claims = ring.unblocked_claims();
    pi.unblocked_bytes = ring.unblocked_bytes();
    pi.aborted_claims = ring.aborted_claims();
    pi.gating_position = ring.MinGatingPosition();
    for (uint32_t i = 0; i < kMaxGatingSlots; ++i) {
      if (ring.GatingOwner(i) != kPersisterGatingOwner) continue;
      // At the tail, padding may end the ring (an aborted or unblocked last
      // claim): the slot's offset is then the last record's + 1, and the
      // tail's says which offsets that padding skipped.
      const RingPosition written = ring.GatingPosition(i);
      const RingPosition durable = ring.Durable(i);
      pi.written_offset = Ring::SettledOffset(written, tail);
      pi.durable_offset = Ring::SettledOffset(durable, tail);
      pi.persist_error = ring.GatingError(i);
    }
    next_offsets.push_back(tail.offset);
    info.partitions.push_back(pi);
  }
  const int64_t now = MonotonicNanos();
  for (const ClientRecord& c : core_->directory().LiveClients()) {
    if (c.topic_slot != t->slot || c.topic_generation != t->generation) continue;
    ClientInfo ci;
    ci.id = c.client_id;
    ci.kind = c.role == ClientRole::kProducer ? ClientKind::kProducer : ClientKind::kConsumer;
    ci.pid = c.pid;
    ci.alive = internal::CheckProcess(c.pid, c.start_time) == internal::Liveness::kAlive;
    ci.idle_ms =
        c.heartbeat_ns > 0 && now > c.heartbeat_ns ? (now - c.heartbeat_ns) / 1'000'000 : 0;
    ci.group = c.group;
    for (uint32_t p = 0; p < t->partitions; ++p) {
      if ((c.partition_mask >> p & 1) == 0) continue;
      ClientPartition cp;
      cp.partition = p;
      cp.position = c.positions[p];
      if (ci.kind == ClientKind::kConsumer && next_offsets[p] > cp.position) {
        cp.lag = next_offsets[p] - cp.position;
      }
      ci.partitions.push_back(cp);
    }
    (ci.kind == ClientKind::kProducer ? info.producers : info.consumers).push_back(std::move(ci));
  }
  return info;
}

Result<BusInfo> Bus::Info() const {
  if (!core_) return internal::MovedFrom("Bus");
  const internal::Directory& dir = core_->directory();
  BusInfo info;
  info.name = core_->name();
  info.file_mode = dir.file_mode();
  const internal::BrokerRecord b = dir.ReadBroker();
  info.broker_pid = b.pid;
  info.broker_alive =
      b.pid != 0 && internal::CheckProcess(b.pid, b.start_time) == internal::Liveness::kAlive;
  info.broker_epoch = b.epoch;
  info.broker_stopped_pid = b.stopped_pid;
  info.broker_stopped_wall_ns = b.stopped_wall_ns;
  info.broker_data_dir = dir.ReadDataDir().path;
  if (b.pid != 0) {
    info.broker_state = info.broker_alive ? BrokerState::kRunning : BrokerState::kDied;
    const int64_t now = MonotonicNanos();
    if (b.heartbeat_ns > 0 && now > b.heartbeat_ns) {
      info.broker_idle_ms = (now - b.heartbeat_ns) / 1'000'000;
    }
  } else {
    info.broker_state = b.epoch > 0 ? BrokerState::kStopped : BrokerState::kNeverStarted;
  }
  info.topics = static_cast<uint32_t>(dir.LiveTopics().size());
  info.clients = static_cast<uint32_t>(dir.LiveClients().size());
  info.clients_reaped = dir.clients_reaped();
  info.claims_unblocked = dir.claims_unblocked();
  return info;
}

Result<Producer> Bus::CreateProducer(std::string_view topic, const ProducerOptions& options) {
  if (!core_) return internal::MovedFrom("Bus");
  Result<Attachment> a = Attach(*core_, ClientRole::kProducer, topic, options.partitions, "");
  if (!a.ok()) return a.status();

  Producer p;
  p.core_ = core_;
  p.mapping_ = a->mapping;
  p.rings_.reserve(a->topic.partitions);
  for (const Ring& r : a->mapping->rings) {
    // Its claims carry its client id: an unblocker takes them only once the
    // process is dead (internal::Housekeeper).
    p.rings_.emplace_back(r).set_owner(a->registration.client_id);
  }
  p.deferred_next_offset_.assign(p.rings_.size(), 0);
  for (uint32_t i = 0; i < a->topic.partitions; ++i) {
    if (a->mask >> i & 1) p.allowed_.push_back(i);
  }
  p.allowed_mask_ = a->mask;
  // Each producer starts its round-robin at another partition (its client id
  // picks it): processes that send a record or two each, one after another,
  // spread over the partitions instead of all writing partition 0.
  p.round_robin_ = static_cast<uint32_t>(a->registration.client_id % p.allowed_.size());
  p.max_record_bytes_ = a->topic.max_record_bytes;
  p.topic_slot_ = a->topic.slot;
  p.generation_ = a->topic.generation;
  p.client_slot_ = a->registration.slot;
  p.client_id_ = a->registration.client_id;
  p.topic_ = a->topic.name;
  return p;
}

Result<Consumer> Bus::CreateConsumer(std::string_view topic, const ConsumerOptions& options) {
  if (!core_) return internal::MovedFrom("Bus");
  RUNNEL_RETURN_IF_ERROR(ValidateTopicName(topic));
  if (!options.group.empty()) {
    if (Status s = internal::ValidateTopicName(options.group); !s.ok()) {
      return Status::InvalidArgument("consumer group id: " + s.message());
    }
  }
  AdoptRecordedDataDir(*core_);
  Result<Attachment> a =
      Attach(*core_, ClientRole::kConsumer, topic, options.partitions, options.group);
  if (!a.ok()) return a.status();

  Consumer c;
  c.core_ = core_;
  c.mapping_ = a->mapping;
  // Only a durable topic's records are on disk: a memory-only topic never
  // reads a log (one left in the data dir under its name is another's).
  if ((a->topic.flags & internal::kTopicFlagDurable) != 0) {
    c.cold_reader_ = core_->cold_reader();
    c.cold_id_ = internal::ColdReader::NewReaderId();
  }
  c.wait_ = options.wait;
  c.zero_copy_ = options.zero_copy;
  if (!c.zero_copy_) c.GrowStage(64 * 1024);
  c.topic_slot_ = a->topic.slot;
  c.generation_ = a->topic.generation;
  c.client_slot_ = a->registration.slot;
  c.client_id_ = a->registration.client_id;
  c.on_overrun_ = options.on_overrun;
  c.topic_ = a->topic.name;
  for (int8_t& x : c.cursor_of_) x = -1;
  ReaderOptions ro;
  ro.verify_crc = options.verify_crc;
  for (uint32_t p = 0; p < a->topic.partitions; ++p) {
    if ((a->mask >> p & 1) == 0) continue;
    const Ring& ring = a->mapping->rings[p];
    const RingPosition start =
        options.start.kind == StartPosition::Kind::kLatest ? ring.tail() : ring.earliest();
    Consumer::Cursor cur(p, RingReader(ring, start, ro));
    cur.skip_until = start.offset;
    c.cursor_of_[p] = static_cast<int8_t>(c.cursors_.size());
    c.cursors_.push_back(std::move(cur));
  }
  const std::shared_ptr<internal::ColdReader>& cold = c.cold_reader_;
  if (options.start.kind == StartPosition::Kind::kEarliest && cold) {
    // The oldest retained record may be on disk, older than the ring holds.
    for (Consumer::Cursor& cur : c.cursors_) {
      Result<std::optional<uint64_t>> first =
          cold->EarliestOffset(c.topic_, c.generation_, cur.partition);
      if (!first.ok()) return UnreadableLog(c.topic_, cur.partition, first.status());
      if (*first && **first < cur.reader.position().offset) {
        RUNNEL_RETURN_IF_ERROR(c.SeekCursor(cur, **first));
      }
    }
  }
  if (options.start.kind == StartPosition::Kind::kTimestamp) {
    for (Consumer::Cursor& cur : c.cursors_) {
      std::optional<uint64_t> at;
      if (cold) {
        Result<std::optional<uint64_t>> on_disk = cold->OffsetForTimestamp(
            c.topic_, c.generation_, cur.partition, options.start.timestamp_ns,
            cur.reader.ring().MinDurableOffset().value_or(0));
        if (!on_disk.ok()) return UnreadableLog(c.topic_, cur.partition, on_disk.status());
        at = *on_disk;
      }
      // The ring also holds records older than the one found on disk when
      // retention removed them from disk first (small segments, a large
      // ring): the first record in the ring with a late enough stamp, up to
      // the one found on disk. Nothing on disk: up to the tail.
      const Ring& ring = cur.reader.ring();
      // The disk answered for every offset it still holds: the ring is
      // scanned only below the disk's first one.
      std::optional<uint64_t> disk_start;
      if (at) {
        Result<std::optional<uint64_t>> first =
            cold->EarliestOffset(c.topic_, c.generation_, cur.partition);
        if (!first.ok()) return UnreadableLog(c.topic_, cur.partition, first.status());
        disk_start = *first;
      }
      if (!at || (disk_start && *disk_start > ring.earliest().offset)) {
        RingReader scan(ring, ring.earliest());
        const uint64_t bound = at ? std::min(*at, *disk_start) : ring.tail().offset;
        const std::optional<uint64_t> in_ring =
            internal::FindStampInRing(scan, options.start.timestamp_ns, bound);
        if (in_ring || !at) at = in_ring.value_or(bound);
      }
      RUNNEL_RETURN_IF_ERROR(c.SeekCursor(cur, *at));
    }
  }
  if (options.start.kind == StartPosition::Kind::kOffset) {
    for (Consumer::Cursor& cur : c.cursors_) {
      // Past the end: wait at the end and skip what comes before the offset
      // (the first record delivered is the one at `offset`).
      const RingPosition tail = cur.reader.ring().tail();
      RUNNEL_RETURN_IF_ERROR(c.SeekCursor(cur, std::min(options.start.offset, tail.offset)));
      if (options.start.offset > tail.offset) cur.skip_until = options.start.offset;
    }
  }
  for (const Consumer::Cursor& cur : c.cursors_) c.PublishPosition(cur);
  return c;
}

}  // namespace runnel
