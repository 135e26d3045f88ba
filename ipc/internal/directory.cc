#include "ipc/internal/directory.h"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "core/record.h"
#include "core/wait.h"

namespace runnel::internal {

namespace {

// Memory orders used below, named once:
//  - kPublish (release): a writer's field stores inside the seqlock; a reader
//    that sees a new value with kObserve also sees the odd seq stored before.
//  - kObserve (acquire): a reader's field loads; the seq re-check after them
//    cannot move above them.
//  - relaxed: counters and owner-written statistics nobody synchronizes on.
constexpr std::memory_order kPublish = std::memory_order_release;
constexpr std::memory_order kObserve = std::memory_order_acquire;

template <typename T>
T Load(const T& w, std::memory_order mo) {
  return std::atomic_ref<T>(const_cast<T&>(w)).load(mo);
}
template <typename T>
void Store(T& w, std::type_identity_t<T> v, std::memory_order mo) {
  std::atomic_ref<T>(w).store(v, mo);
}

void StoreName(uint64_t (&words)[kNameWords], uint32_t& length, std::string_view s) {
  uint64_t packed[kNameWords] = {};
  const std::size_t n = std::min<std::size_t>(s.size(), kNameBytes);
  std::memcpy(packed, s.data(), n);
  for (uint32_t i = 0; i < kNameWords; ++i) Store(words[i], packed[i], kPublish);
  Store(length, static_cast<uint32_t>(n), kPublish);
}

std::string LoadName(const uint64_t (&words)[kNameWords], const uint32_t& length) {
  uint64_t packed[kNameWords];
  for (uint32_t i = 0; i < kNameWords; ++i) packed[i] = Load(words[i], kObserve);
  const uint32_t n = std::min<uint32_t>(Load(length, kObserve), kNameBytes);
  return std::string(reinterpret_cast<const char*>(packed), n);
}

// Seqlock writer halves. The writer holds the directory lock, so `seq` has
// one writer; relaxed load, and the odd store is ordered before the field
// stores because those are release stores (a release store keeps earlier
// stores before it).
void BeginWrite(uint64_t& seq) {
  const uint64_t s = Load(seq, std::memory_order_relaxed);
  // A dead writer may have left it odd: make it odd from whatever it is.
  Store(seq, (s | 1) + ((s & 1) ? 2 : 0), std::memory_order_relaxed);
}
void EndWrite(uint64_t& seq) {
  const uint64_t s = Load(seq, std::memory_order_relaxed);
  // Release: every field store above is visible to whoever sees the even seq.
  Store(seq, (s + 1) & ~1ull, std::memory_order_release);
}

constexpr int kReadRetries = 1000;

// The directory is shared memory: a bug or a hostile peer may have written
// anything. Entries that do not make sense are ignored rather than used to
// index arrays or build file names.
bool Sane(const TopicRecord& t) {
  if (t.partitions < 1 || t.partitions > kMaxPartitions) return false;
  if (t.ring_capacity == 0 || (t.ring_capacity & (t.ring_capacity - 1)) != 0) return false;
  if (t.name.empty()) return false;
  for (char c : t.name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return t.name != "." && t.name != "..";
}

}  // namespace

void Directory::Format(std::span<std::byte> memory, std::string_view bus_name, uint32_t file_mode) {
  auto* d = reinterpret_cast<DirectoryLayout*>(memory.data());
  DirectoryHeader& h = d->header;
  // Nobody reads the region before the magic is published: plain stores.
  h.version = (kDirectoryVersionMajor << 16) | kDirectoryVersionMinor;
  h.header_bytes = sizeof(DirectoryHeader);
  h.topic_capacity = kMaxTopics;
  h.partition_capacity = kMaxPartitions;
  h.client_capacity = kMaxClients;
  h.topic_entry_bytes = sizeof(TopicEntry);
  h.client_entry_bytes = sizeof(ClientEntry);
  h.file_mode = file_mode;
  h.topics_offset = offsetof(DirectoryLayout, topics);
  h.clients_offset = offsetof(DirectoryLayout, clients);
  h.total_bytes = sizeof(DirectoryLayout);
  h.created_wall_ns = static_cast<uint64_t>(WallClockNanos());
  StoreName(h.bus_name, h.bus_name_length, bus_name);
  // Release: everything above is visible to whoever sees the magic.
  Store(h.magic, kDirectoryMagic, std::memory_order_release);
}

uint64_t Directory::LoadMagic(const std::byte* base) {
  const auto* d = reinterpret_cast<const DirectoryLayout*>(base);
  // Acquire: pairs with Format's release store of the magic.
  return Load(d->header.magic, std::memory_order_acquire);
}

Status Directory::Check(std::span<const std::byte> memory, const std::string& path,
                        std::string_view bus_name) {
  const std::string remedy = "; if no process uses this bus any more, remove it (runnel --bus " +
                             std::string(bus_name) + " bus remove, or rm /dev/shm/runnel." +
                             std::string(bus_name) + ".*) and open it again";
  if (memory.size() < sizeof(DirectoryHeader)) {
    return Status::Corruption(path + " is " + std::to_string(memory.size()) +
                              " bytes, too small for a bus directory" + remedy);
  }
  const auto* d = reinterpret_cast<const DirectoryLayout*>(memory.data());
  const DirectoryHeader& h = d->header;
  const uint64_t magic = LoadMagic(memory.data());
  if (magic != kDirectoryMagic) {
    return Status::Corruption(path + " is not a runnel bus directory (bad magic)" + remedy);
  }
  const uint32_t version = Load(h.version, std::memory_order_relaxed);
  const uint32_t major = version >> 16;
  if (major != kDirectoryVersionMajor) {
    return Status::VersionMismatch(path + " has directory layout version " + std::to_string(major) +
                                   "." + std::to_string(version & 0xFFFF) +
                                   " but this library speaks version " +
                                   std::to_string(kDirectoryVersionMajor) + "." +
                                   std::to_string(kDirectoryVersionMinor) + remedy);
  }
  if (memory.size() < sizeof(DirectoryLayout) || h.header_bytes != sizeof(DirectoryHeader) ||
      h.topic_capacity != kMaxTopics || h.partition_capacity != kMaxPartitions ||
      h.client_capacity != kMaxClients || h.topic_entry_bytes != sizeof(TopicEntry) ||
      h.client_entry_bytes != sizeof(ClientEntry) ||
      h.topics_offset != offsetof(DirectoryLayout, topics) ||
      h.clients_offset != offsetof(DirectoryLayout, clients) ||
      h.total_bytes != sizeof(DirectoryLayout)) {
    return Status::Corruption(path + " has an unexpected geometry (" +
                              std::to_string(memory.size()) + " bytes, " +
                              std::to_string(h.topic_capacity) + " topics, " +
                              std::to_string(h.client_capacity) + " clients)" + remedy);
  }
  const std::string stored = LoadName(h.bus_name, h.bus_name_length);
  if (stored != bus_name) {
    return Status::Corruption(path + " belongs to bus '" + stored + "', not '" +
                              std::string(bus_name) + "'" + remedy);
  }
  return Status::Ok();
}

uint32_t Directory::file_mode() const {
  return Load(d_->header.file_mode, std::memory_order_relaxed);
}

std::optional<TopicRecord> Directory::ReadTopic(uint32_t slot) const {
  const TopicEntry& e = d_->topics[slot];
  for (int i = 0; i < kReadRetries; ++i) {
    // Acquire: the fields read below are at least as new as this seq.
    const uint64_t s1 = Load(e.seq, std::memory_order_acquire);
    if (s1 & 1) {
      CpuRelax();
      continue;
    }
    TopicRecord t;
    t.slot = slot;
    t.state = static_cast<TopicState>(Load(e.state, kObserve));
    t.partitions = Load(e.partitions, kObserve);
    t.generation = Load(e.generation, kObserve);
    t.ring_capacity = Load(e.ring_capacity, kObserve);
    t.max_record_bytes = Load(e.max_record_bytes, kObserve);
    t.flags = Load(e.flags, kObserve);
    t.segment_bytes = Load(e.segment_bytes, kObserve);
    t.retention_bytes = Load(e.retention_bytes, kObserve);
    t.retention_ms = Load(e.retention_ms, kObserve);
    t.fsync_kind = Load(e.fsync_kind, kObserve);
    t.fsync_interval_ms = Load(e.fsync_interval_ms, kObserve);
    t.created_wall_ns = static_cast<int64_t>(Load(e.created_wall_ns, kObserve));
    t.name = LoadName(e.name, e.name_length);
    // Relaxed: the acquire loads above keep this load after them.
    const uint64_t s2 = Load(e.seq, std::memory_order_relaxed);
    if (s1 == s2) return t;
  }
  return std::nullopt;
}

std::optional<TopicRecord> Directory::FindLiveTopic(std::string_view name) const {
  for (uint32_t i = 0; i < kMaxTopics; ++i) {
    // Cheap pre-filter (relaxed): only live entries are read under the seqlock.
    if (Load(d_->topics[i].state, std::memory_order_relaxed) !=
        static_cast<uint32_t>(TopicState::kLive)) {
      continue;
    }
    std::optional<TopicRecord> t = ReadTopic(i);
    if (t && t->state == TopicState::kLive && t->name == name && Sane(*t)) return t;
  }
  return std::nullopt;
}

std::vector<TopicRecord> Directory::LiveTopics() const {
  std::vector<TopicRecord> out;
  for (uint32_t i = 0; i < kMaxTopics; ++i) {
    if (Load(d_->topics[i].state, std::memory_order_relaxed) !=
        static_cast<uint32_t>(TopicState::kLive)) {
      continue;
    }
    std::optional<TopicRecord> t = ReadTopic(i);
    if (t && t->state == TopicState::kLive && Sane(*t)) out.push_back(std::move(*t));
  }
  return out;
}

bool Directory::IsLive(uint32_t slot, uint64_t generation) const {
  const TopicEntry& e = d_->topics[slot];
  // Acquire on both: a delete publishes the state change with a release store.
  return Load(e.state, std::memory_order_acquire) == static_cast<uint32_t>(TopicState::kLive) &&
         Load(e.generation, std::memory_order_acquire) == generation;
}

std::optional<ClientRecord> Directory::ReadClient(uint32_t slot) const {
  const ClientEntry& e = d_->clients[slot];
  for (int i = 0; i < kReadRetries; ++i) {
    // Acquire: see ReadTopic.
    const uint64_t s1 = Load(e.seq, std::memory_order_acquire);
    if (s1 & 1) {
      CpuRelax();
      continue;
    }
    if (Load(e.state, kObserve) != static_cast<uint32_t>(ClientState::kLive)) return std::nullopt;
    ClientRecord c;
    c.slot = slot;
    c.role = static_cast<ClientRole>(Load(e.role, kObserve));
    c.client_id = Load(e.client_id, kObserve);
    c.pid = static_cast<int32_t>(Load(e.pid, kObserve));
    c.start_time = Load(e.start_time, kObserve);
    c.topic_slot = Load(e.topic_slot, kObserve);
    c.topic_generation = Load(e.topic_generation, kObserve);
    c.partition_mask = Load(e.partition_mask, kObserve);
    c.registered_wall_ns = static_cast<int64_t>(Load(e.registered_wall_ns, kObserve));
    c.group = LoadName(e.group, e.group_length);
    // Relaxed: see ReadTopic.
    const uint64_t s2 = Load(e.seq, std::memory_order_relaxed);
    if (s1 != s2) continue;
    // Owner-written statistics: approximate by design (relaxed).
    c.heartbeat_ns = static_cast<int64_t>(Load(e.heartbeat_ns, std::memory_order_relaxed));
    for (uint32_t p = 0; p < kMaxPartitions; ++p) {
      c.positions[p] = Load(e.positions[p], std::memory_order_relaxed);
    }
    return c;
  }
  return std::nullopt;
}

std::vector<ClientRecord> Directory::LiveClients() const {
  std::vector<ClientRecord> out;
  for (uint32_t i = 0; i < kMaxClients; ++i) {
    if (Load(d_->clients[i].state, std::memory_order_relaxed) !=
        static_cast<uint32_t>(ClientState::kLive)) {
      continue;
    }
    if (std::optional<ClientRecord> c = ReadClient(i)) out.push_back(std::move(*c));
  }
  return out;
}

uint64_t Directory::topics_version() const {
  // Acquire: a reader that sees a new version then reads the new entries.
  return Load(d_->header.topics_version, std::memory_order_acquire);
}

bool Directory::TopicInTransition(uint32_t slot) const {
  const TopicEntry& e = d_->topics[slot];
  // Relaxed: a hint for the broker, which then takes the lock to repair.
  if ((Load(e.seq, std::memory_order_relaxed) & 1) != 0) return true;
  const uint32_t state = Load(e.state, std::memory_order_relaxed);
  return state == static_cast<uint32_t>(TopicState::kCreating) ||
         state == static_cast<uint32_t>(TopicState::kDeleting);
}

BrokerRecord Directory::ReadBroker() const {
  const DirectoryHeader& h = d_->header;
  // Relaxed below: informational (who is the broker); liveness is re-checked
  // by pid. Acquire: pairs with ClearBroker's release, so a cleared pid comes
  // with its stop record.
  BrokerRecord b;
  b.pid = static_cast<int32_t>(Load(h.broker_pid, std::memory_order_acquire));
  b.start_time = Load(h.broker_start_time, std::memory_order_relaxed);
  b.heartbeat_ns = static_cast<int64_t>(Load(h.broker_heartbeat_ns, std::memory_order_relaxed));
  b.epoch = Load(h.broker_epoch, std::memory_order_relaxed);
  b.stopped_pid = static_cast<int32_t>(Load(h.broker_stopped_pid, std::memory_order_relaxed));
  b.stopped_wall_ns =
      static_cast<int64_t>(Load(h.broker_stopped_wall_ns, std::memory_order_relaxed));
  return b;
}

uint64_t Directory::clients_reaped() const {
  return Load(d_->header.clients_reaped, std::memory_order_relaxed);  // a counter
}

// ---------------------------------------------------------------------------
// Writers (directory lock held).

TopicRecord Directory::ReadTopicLocked(uint32_t slot) const {
  const TopicEntry& e = d_->topics[slot];
  TopicRecord t;
  // Relaxed: we hold the lock; no concurrent writer exists.
  t.slot = slot;
  t.state = static_cast<TopicState>(Load(e.state, std::memory_order_relaxed));
  t.partitions = Load(e.partitions, std::memory_order_relaxed);
  t.generation = Load(e.generation, std::memory_order_relaxed);
  t.ring_capacity = Load(e.ring_capacity, std::memory_order_relaxed);
  t.name = LoadName(e.name, e.name_length);
  return t;
}

bool Directory::TopicSeqOdd(uint32_t slot) const {
  return (Load(d_->topics[slot].seq, std::memory_order_relaxed) & 1) != 0;  // lock held
}

bool Directory::ResealLiveTopic(uint32_t slot) {
  const TopicRecord t = ReadTopicLocked(slot);
  if (t.state != TopicState::kLive || t.generation == 0 || !Sane(t)) return false;
  EndWrite(d_->topics[slot].seq);
  return true;
}

bool Directory::ClientSeqOdd(uint32_t slot) const {
  return (Load(d_->clients[slot].seq, std::memory_order_relaxed) & 1) != 0;  // lock held
}

std::optional<uint32_t> Directory::FreeTopicSlot() const {
  for (uint32_t i = 0; i < kMaxTopics; ++i) {
    // Relaxed: lock held, only lock holders change the state.
    if (Load(d_->topics[i].state, std::memory_order_relaxed) ==
        static_cast<uint32_t>(TopicState::kFree)) {
      return i;
    }
  }
  return std::nullopt;
}

std::optional<uint32_t> Directory::FreeClientSlot() const {
  for (uint32_t i = 0; i < kMaxClients; ++i) {
    // Relaxed: lock held.
    if (Load(d_->clients[i].state, std::memory_order_relaxed) ==
        static_cast<uint32_t>(ClientState::kFree)) {
      return i;
    }
  }
  return std::nullopt;
}

uint64_t Directory::NextGeneration() {
  // Relaxed: only lock holders touch it; the flock orders them.
  uint64_t& g = d_->header.next_generation;
  const uint64_t v = Load(g, std::memory_order_relaxed) + 1;
  Store(g, v, std::memory_order_relaxed);
  return v;
}

uint64_t Directory::NextClientId() {
  uint64_t& g = d_->header.next_client_id;
  const uint64_t v = Load(g, std::memory_order_relaxed) + 1;  // lock held
  Store(g, v, std::memory_order_relaxed);
  return v;
}

void Directory::BumpTopicsVersion() {
  uint64_t& v = d_->header.topics_version;
  // Release: pairs with topics_version()'s acquire.
  Store(v, Load(v, std::memory_order_relaxed) + 1, std::memory_order_release);
}

void Directory::WriteTopic(const TopicRecord& t) {
  TopicEntry& e = d_->topics[t.slot];
  BeginWrite(e.seq);
  Store(e.state, static_cast<uint32_t>(t.state), kPublish);
  Store(e.partitions, t.partitions, kPublish);
  Store(e.generation, t.generation, kPublish);
  Store(e.ring_capacity, t.ring_capacity, kPublish);
  Store(e.max_record_bytes, t.max_record_bytes, kPublish);
  Store(e.flags, t.flags, kPublish);
  Store(e.segment_bytes, t.segment_bytes, kPublish);
  Store(e.retention_bytes, t.retention_bytes, kPublish);
  Store(e.retention_ms, t.retention_ms, kPublish);
  Store(e.fsync_kind, t.fsync_kind, kPublish);
  Store(e.fsync_interval_ms, t.fsync_interval_ms, kPublish);
  Store(e.created_wall_ns, static_cast<uint64_t>(t.created_wall_ns), kPublish);
  StoreName(e.name, e.name_length, t.name);
  EndWrite(e.seq);
}

void Directory::SetTopicState(uint32_t slot, TopicState state) {
  TopicEntry& e = d_->topics[slot];
  BeginWrite(e.seq);
  Store(e.state, static_cast<uint32_t>(state), kPublish);
  EndWrite(e.seq);
}

void Directory::ClearTopic(uint32_t slot) {
  TopicEntry& e = d_->topics[slot];
  BeginWrite(e.seq);
  Store(e.state, static_cast<uint32_t>(TopicState::kFree), kPublish);
  Store(e.partitions, 0u, kPublish);
  Store(e.ring_capacity, uint64_t{0}, kPublish);
  Store(e.max_record_bytes, 0u, kPublish);
  Store(e.flags, 0u, kPublish);
  StoreName(e.name, e.name_length, "");
  EndWrite(e.seq);
}

void Directory::WriteClient(const ClientRecord& c) {
  ClientEntry& e = d_->clients[c.slot];
  BeginWrite(e.seq);
  Store(e.role, static_cast<uint32_t>(c.role), kPublish);
  Store(e.client_id, c.client_id, kPublish);
  Store(e.pid, static_cast<uint32_t>(c.pid), kPublish);
  Store(e.start_time, c.start_time, kPublish);
  Store(e.topic_slot, c.topic_slot, kPublish);
  Store(e.topic_generation, c.topic_generation, kPublish);
  Store(e.partition_mask, c.partition_mask, kPublish);
  Store(e.registered_wall_ns, static_cast<uint64_t>(c.registered_wall_ns), kPublish);
  StoreName(e.group, e.group_length, c.group);
  // Relaxed: statistics, see the header comment.
  Store(e.heartbeat_ns, static_cast<uint64_t>(c.heartbeat_ns), std::memory_order_relaxed);
  for (uint32_t p = 0; p < kMaxPartitions; ++p) {
    Store(e.positions[p], c.positions[p], std::memory_order_relaxed);
  }
  Store(e.state, static_cast<uint32_t>(ClientState::kLive), kPublish);
  EndWrite(e.seq);
}

void Directory::ClearClient(uint32_t slot) {
  ClientEntry& e = d_->clients[slot];
  BeginWrite(e.seq);
  Store(e.state, static_cast<uint32_t>(ClientState::kFree), kPublish);
  Store(e.client_id, uint64_t{0}, kPublish);
  Store(e.pid, 0u, kPublish);
  Store(e.partition_mask, uint64_t{0}, kPublish);
  EndWrite(e.seq);
}

void Directory::AddClientsReaped(uint64_t n) {
  // Relaxed: a counter.
  std::atomic_ref<uint64_t>(d_->header.clients_reaped).fetch_add(n, std::memory_order_relaxed);
}

void Directory::StoreHeartbeat(uint32_t slot, int64_t now_ns) const {
  // Relaxed: statistics only.
  Store(d_->clients[slot].heartbeat_ns, static_cast<uint64_t>(now_ns), std::memory_order_relaxed);
}

void Directory::StorePosition(uint32_t slot, uint32_t partition, uint64_t position) const {
  // Relaxed: statistics only (lag in describe/stat).
  Store(d_->clients[slot].positions[partition], position, std::memory_order_relaxed);
}

bool Directory::ClientIs(uint32_t slot, uint64_t client_id) const {
  const ClientEntry& e = d_->clients[slot];
  // Acquire: pairs with the release stores of a register/clear.
  return Load(e.state, std::memory_order_acquire) == static_cast<uint32_t>(ClientState::kLive) &&
         Load(e.client_id, std::memory_order_acquire) == client_id;
}

void Directory::WriteBroker(int32_t pid, uint64_t start_time, int64_t now_ns) {
  DirectoryHeader& h = d_->header;
  // Relaxed: informational; only the holder of the broker lock writes these.
  Store(h.broker_pid, static_cast<uint32_t>(pid), std::memory_order_relaxed);
  Store(h.broker_start_time, start_time, std::memory_order_relaxed);
  Store(h.broker_heartbeat_ns, static_cast<uint64_t>(now_ns), std::memory_order_relaxed);
  std::atomic_ref<uint64_t>(h.broker_epoch).fetch_add(1, std::memory_order_relaxed);
}

void Directory::StoreBrokerHeartbeat(int64_t now_ns) {
  // Relaxed: informational.
  Store(d_->header.broker_heartbeat_ns, static_cast<uint64_t>(now_ns), std::memory_order_relaxed);
}

void Directory::ClearBroker(int32_t pid, int64_t now_wall_ns) {
  DirectoryHeader& h = d_->header;
  uint32_t expected = static_cast<uint32_t>(pid);
  // We still hold the broker lock: no other broker writes these meanwhile.
  // Relaxed: the stop record is informational; it is published by the
  // release below.
  if (Load(h.broker_pid, std::memory_order_relaxed) != expected) return;
  Store(h.broker_stopped_pid, expected, std::memory_order_relaxed);
  Store(h.broker_stopped_wall_ns, static_cast<uint64_t>(now_wall_ns), std::memory_order_relaxed);
  // Release: a reader that sees pid 0 (acquire in ReadBroker) sees the stop
  // record too.
  std::atomic_ref<uint32_t>(h.broker_pid)
      .compare_exchange_strong(expected, 0u, std::memory_order_release, std::memory_order_relaxed);
}

void Directory::AddClaimsUnblocked(uint64_t n) {
  // Relaxed: a counter.
  std::atomic_ref<uint64_t>(d_->header.claims_unblocked).fetch_add(n, std::memory_order_relaxed);
}

uint64_t Directory::claims_unblocked() const {
  return Load(d_->header.claims_unblocked, std::memory_order_relaxed);  // a counter
}

void Directory::WriteDataDir(std::string_view path, uint64_t epoch) {
  DirectoryHeader& h = d_->header;
  const std::size_t n = std::min<std::size_t>(path.size(), kDataDirBytes);
  uint64_t packed[kDataDirWords] = {};
  std::memcpy(packed, path.data(), n);
  // Writers hold the directory lock: one writer for the seq.
  BeginWrite(h.data_dir_seq);
  Store(h.data_dir_epoch, epoch, kPublish);
  for (uint32_t i = 0; i < kDataDirWords; ++i) Store(h.data_dir[i], packed[i], kPublish);
  Store(h.data_dir_length, static_cast<uint32_t>(n), kPublish);
  EndWrite(h.data_dir_seq);
}

DataDirRecord Directory::ReadDataDir() const {
  const DirectoryHeader& h = d_->header;
  uint64_t packed[kDataDirWords];
  for (int i = 0; i < kReadRetries; ++i) {
    // Acquire: the fields read below are at least as new as this seq.
    const uint64_t s1 = Load(h.data_dir_seq, std::memory_order_acquire);
    if (s1 & 1) {
      CpuRelax();
      continue;
    }
    const uint64_t epoch = Load(h.data_dir_epoch, kObserve);
    for (uint32_t w = 0; w < kDataDirWords; ++w) packed[w] = Load(h.data_dir[w], kObserve);
    const uint32_t n = Load(h.data_dir_length, kObserve);
    // Relaxed: the acquire loads above keep this load after them.
    if (Load(h.data_dir_seq, std::memory_order_relaxed) != s1) continue;
    if (n == 0 || n > kDataDirBytes) return {};
    std::string path(reinterpret_cast<const char*>(packed), n);
    // Only an absolute path without NUL bytes makes sense.
    if (path.front() != '/' || path.find('\0') != std::string::npos) return {};
    return {std::move(path), epoch};
  }
  return {};
}

}  // namespace runnel::internal
