// The bus directory: one fixed-layout shared-memory region per bus,
// /dev/shm/runnel.<bus>.dir, that lists topics and registered clients.
//
// Concurrency rules
//  - Mutations (create/delete topic, register/unregister client, reap a dead
//    client) hold the directory lock: flock(2) on /dev/shm/runnel.<bus>.lock
//    plus a process-local mutex (see BusCore). The kernel drops the flock when
//    its holder dies, so a holder that died mid-mutation leaves an entry with
//    an odd seq or a transitional state; the next holder repairs it (see
//    BusCore::RepairLocked).
//  - Readers take no lock. Topic and client entries are seqlocks: a writer
//    makes `seq` odd, stores the fields with release stores and makes `seq`
//    even again; a reader loads seq, the fields (acquire) and seq again and
//    retries on an odd or changed seq, so it never acts on a half-written
//    entry. Every field is accessed through std::atomic_ref (TSan sees them).
//  - Hot paths only check "is my topic still live at my generation": two
//    acquire loads (state, generation), done every N operations.
//  - Clients update their own heartbeat and positions with relaxed stores:
//    statistics, read approximately by `describe` / `stat`.
//
// Layout (all integers little-endian, offsets in bytes):
//
//   +----------------------------------+ 0
//   | DirectoryHeader                  |     4096 bytes
//   +----------------------------------+ 4096
//   | TopicEntry[kMaxTopics]           |     128 x 256 bytes
//   +----------------------------------+ 36864
//   | ClientEntry[kMaxClients]         |     512 x 768 bytes
//   +----------------------------------+ 430080 (105 pages)
//
// DirectoryHeader:
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +---------------------------------------------------------------+
//  |  magic (64) "RNLBDIR1", published last with a release store    |    0
//  +---------------------------------------------------------------+
//  |  version (32): major << 16 | minor                             |    8
//  |  header_bytes (32) = 4096                                      |   12
//  |  topic_capacity (32) = 128    |  partition_capacity (32) = 64  |   16
//  |  client_capacity (32) = 512   |  topic_entry_bytes (32) = 256  |   24
//  |  client_entry_bytes (32) = 768|  file_mode (32): 0600 or 0660  |   32
//  |  topics_offset (64) = 4096                                     |   40
//  |  clients_offset (64) = 36864                                   |   48
//  |  total_bytes (64) = 430080                                     |   56
//  |  created_wall_ns (64)                                          |   64
//  |  bus_name_length (32)         |  reserved (32)                 |   72
//  |  bus_name (64 bytes, zero padded)                              |   80
//  |  ... reserved to 256                                           |  144
//  +---------------------------------------------------------------+
//  |  topics_version (64): +1 on every topic create/delete          |  256
//  |  next_generation (64): last topic generation handed out        |  264
//  |  next_client_id (64): last client id handed out                |  272
//  |  ... reserved to 384                                           |  280
//  +---------------------------------------------------------------+
//  |  broker_pid (32): 0 = none    |  stopped_pid (32)              |  384
//  |  broker_start_time (64): /proc/<pid>/stat field 22             |  392
//  |  broker_heartbeat_ns (64): CLOCK_MONOTONIC                     |  400
//  |  broker_epoch (64): +1 each time a broker becomes active       |  408
//  |  broker_stopped_wall_ns (64): CLOCK_REALTIME of the last clean |  416
//  |  stop (by stopped_pid); 0 = none. Both fields are new in 1.1   |
//  |  ... reserved to 512                                           |  424
//  +---------------------------------------------------------------+
//  |  clients_reaped (64): dead clients released by brokers        |  512
//  |  claims_unblocked (64): dead claims turned into padding        |  520
//  |  ... reserved to 4096                                          |  528
//  +---------------------------------------------------------------+
//
// TopicEntry (256 bytes):
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +---------------------------------------------------------------+
//  |  seq (64): seqlock, odd while the entry is being written       |    0
//  |  state (32): 0 free 1 creating 2 live 3 deleting               |    8
//  |  partitions (32)                                               |   12
//  |  generation (64): bus-unique, part of the ring file names      |   16
//  |  ring_capacity (64): data bytes per partition ring             |   24
//  |  max_record_bytes (32)        |  flags (32): 1 single_producer,|   32
//  |                               |  2 durable                     |
//  |  segment_bytes (64)                                            |   40
//  |  retention_bytes (64): 0 = unlimited                           |   48
//  |  retention_ms (64): 0 = unlimited                              |   56
//  |  fsync_kind (32): 0 never,    |  fsync_interval_ms (32)        |   64
//  |  1 interval, 2 always         |                                |
//  |  created_wall_ns (64)                                          |   72
//  |  name_length (32)             |  reserved (32)                 |   80
//  |  reserved (64)                                                 |   88
//  |  name (64 bytes, zero padded)                                  |   96
//  |  ... reserved to 256                                           |  160
//  +---------------------------------------------------------------+
//
// ClientEntry (768 bytes): one producer or consumer object.
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +---------------------------------------------------------------+
//  |  seq (64): seqlock over the registration fields (0..127, 192)  |    0
//  |  state (32): 0 free 1 live    |  role (32): 1 producer,        |    8
//  |                               |  2 consumer                    |
//  |  client_id (64): bus-unique, never 0                           |   16
//  |  pid (32)                     |  topic_slot (32)               |   24
//  |  start_time (64): /proc/<pid>/stat field 22                    |   32
//  |  topic_generation (64)                                         |   40
//  |  partition_mask (64): bit p set = reads / writes partition p   |   48
//  |  registered_wall_ns (64)                                       |   56
//  |  group_length (32)            |  reserved (32)                 |   64
//  |  ... reserved to 128                                           |   72
//  +---------------------------------------------------------------+
//  |  heartbeat_ns (64): CLOCK_MONOTONIC, written by the owner      |  128
//  |  ... reserved to 192                                           |  136
//  +---------------------------------------------------------------+
//  |  group (64 bytes): consumer group id, reserved                 |  192
//  +---------------------------------------------------------------+
//  |  positions[64] (64 each), written by the owner: a consumer's   |  256
//  |  next offset, a producer's last committed offset + 1           |
//  +---------------------------------------------------------------+ 768

#ifndef RUNNEL_IPC_INTERNAL_DIRECTORY_H_
#define RUNNEL_IPC_INTERNAL_DIRECTORY_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "core/status.h"

namespace runnel::internal {

inline constexpr uint64_t kDirectoryMagic = 0x31524944424C4E52ull;  // "RNLBDIR1"
inline constexpr uint32_t kDirectoryVersionMajor = 1;
// 1.1: broker stop record; 1.2: the broker's data dir.
inline constexpr uint32_t kDirectoryVersionMinor = 2;
inline constexpr uint32_t kMaxTopics = 128;
inline constexpr uint32_t kMaxPartitions = 64;
inline constexpr uint32_t kMaxClients = 512;
inline constexpr uint32_t kNameBytes = 64;
inline constexpr uint32_t kNameWords = kNameBytes / 8;
// The longest data dir path a broker can record (bytes, no terminator).
inline constexpr uint32_t kDataDirBytes = 2048;
inline constexpr uint32_t kDataDirWords = kDataDirBytes / 8;

enum class TopicState : uint32_t { kFree = 0, kCreating = 1, kLive = 2, kDeleting = 3 };
enum class ClientState : uint32_t { kFree = 0, kLive = 1 };
enum class ClientRole : uint32_t { kProducer = 1, kConsumer = 2 };

inline constexpr uint32_t kTopicFlagSingleProducer = 1u << 0;
inline constexpr uint32_t kTopicFlagDurable = 1u << 1;

struct DirectoryHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t header_bytes;
  uint32_t topic_capacity;
  uint32_t partition_capacity;
  uint32_t client_capacity;
  uint32_t topic_entry_bytes;
  uint32_t client_entry_bytes;
  uint32_t file_mode;
  uint64_t topics_offset;
  uint64_t clients_offset;
  uint64_t total_bytes;
  uint64_t created_wall_ns;
  uint32_t bus_name_length;
  uint32_t reserved0;
  uint64_t bus_name[kNameWords];
  uint8_t reserved1[256 - 144];
  // Mutated under the directory lock.
  uint64_t topics_version;
  uint64_t next_generation;
  uint64_t next_client_id;
  uint8_t reserved2[384 - 280];
  // Written by the active broker.
  uint32_t broker_pid;
  uint32_t broker_stopped_pid;  // since 1.1
  uint64_t broker_start_time;
  uint64_t broker_heartbeat_ns;
  uint64_t broker_epoch;
  uint64_t broker_stopped_wall_ns;  // since 1.1
  uint8_t reserved4[512 - 424];
  // Counters.
  uint64_t clients_reaped;
  uint64_t claims_unblocked;
  uint8_t reserved5[1024 - 528];
  // Since 1.2. Where the last active broker with a data dir persists (an
  // absolute path) and its broker_epoch, or, with epoch 0, the data dir of
  // a client that created a durable topic while no broker was live; written
  // under data_dir_seq (a seqlock) by holders of the directory lock.
  uint64_t data_dir_seq;
  uint64_t data_dir_epoch;
  uint32_t data_dir_length;
  uint32_t reserved6;
  uint64_t data_dir[kDataDirWords];
  uint8_t reserved7[4096 - 1048 - kDataDirBytes];
};

struct TopicEntry {
  uint64_t seq;
  uint32_t state;
  uint32_t partitions;
  uint64_t generation;
  uint64_t ring_capacity;
  uint32_t max_record_bytes;
  uint32_t flags;
  uint64_t segment_bytes;
  uint64_t retention_bytes;
  uint64_t retention_ms;
  uint32_t fsync_kind;
  uint32_t fsync_interval_ms;
  uint64_t created_wall_ns;
  uint32_t name_length;
  uint32_t reserved0;
  uint64_t reserved1;
  uint64_t name[kNameWords];
  uint8_t reserved2[256 - 160];
};

struct ClientEntry {
  uint64_t seq;
  uint32_t state;
  uint32_t role;
  uint64_t client_id;
  uint32_t pid;
  uint32_t topic_slot;
  uint64_t start_time;
  uint64_t topic_generation;
  uint64_t partition_mask;
  uint64_t registered_wall_ns;
  uint32_t group_length;
  uint32_t reserved0;
  uint8_t reserved1[128 - 72];
  uint64_t heartbeat_ns;
  uint8_t reserved2[192 - 136];
  uint64_t group[kNameWords];
  uint64_t positions[kMaxPartitions];
};

struct DirectoryLayout {
  DirectoryHeader header;
  TopicEntry topics[kMaxTopics];
  ClientEntry clients[kMaxClients];
};

static_assert(std::is_trivially_copyable_v<DirectoryLayout>);
static_assert(std::atomic_ref<uint64_t>::is_always_lock_free);
static_assert(std::atomic_ref<uint32_t>::is_always_lock_free);
static_assert(sizeof(DirectoryHeader) == 4096);
static_assert(offsetof(DirectoryHeader, bus_name) == 80);
static_assert(offsetof(DirectoryHeader, topics_version) == 256);
static_assert(offsetof(DirectoryHeader, next_client_id) == 272);
static_assert(offsetof(DirectoryHeader, broker_pid) == 384);
static_assert(offsetof(DirectoryHeader, broker_stopped_pid) == 388);
static_assert(offsetof(DirectoryHeader, broker_epoch) == 408);
static_assert(offsetof(DirectoryHeader, broker_stopped_wall_ns) == 416);
static_assert(offsetof(DirectoryHeader, clients_reaped) == 512);
static_assert(offsetof(DirectoryHeader, data_dir_seq) == 1024);
static_assert(offsetof(DirectoryHeader, data_dir) == 1048);
static_assert(sizeof(TopicEntry) == 256);
static_assert(offsetof(TopicEntry, generation) == 16);
static_assert(offsetof(TopicEntry, max_record_bytes) == 32);
static_assert(offsetof(TopicEntry, fsync_kind) == 64);
static_assert(offsetof(TopicEntry, name_length) == 80);
static_assert(offsetof(TopicEntry, name) == 96);
static_assert(sizeof(ClientEntry) == 768);
static_assert(offsetof(ClientEntry, client_id) == 16);
static_assert(offsetof(ClientEntry, partition_mask) == 48);
static_assert(offsetof(ClientEntry, group_length) == 64);
static_assert(offsetof(ClientEntry, heartbeat_ns) == 128);
static_assert(offsetof(ClientEntry, group) == 192);
static_assert(offsetof(ClientEntry, positions) == 256);
static_assert(offsetof(DirectoryLayout, topics) == 4096);
static_assert(offsetof(DirectoryLayout, clients) == 36864);
static_assert(sizeof(DirectoryLayout) == 430080);
static_assert(sizeof(DirectoryLayout) % 4096 == 0);
static_assert(kMaxPartitions <= 64, "partition_mask is one 64-bit word");

// A consistent copy of a topic entry.
struct TopicRecord {
  uint32_t slot = 0;
  TopicState state = TopicState::kFree;
  uint32_t partitions = 0;
  uint64_t generation = 0;
  uint64_t ring_capacity = 0;
  uint32_t max_record_bytes = 0;
  uint32_t flags = 0;
  uint64_t segment_bytes = 0;
  uint64_t retention_bytes = 0;
  uint64_t retention_ms = 0;
  uint32_t fsync_kind = 0;
  uint32_t fsync_interval_ms = 0;
  int64_t created_wall_ns = 0;
  std::string name;
};

// A consistent copy of a client entry's registration plus its (approximate)
// owner-written statistics.
struct ClientRecord {
  uint32_t slot = 0;
  ClientRole role = ClientRole::kProducer;
  uint64_t client_id = 0;
  int32_t pid = 0;
  uint64_t start_time = 0;
  uint32_t topic_slot = 0;
  uint64_t topic_generation = 0;
  uint64_t partition_mask = 0;
  int64_t registered_wall_ns = 0;
  int64_t heartbeat_ns = 0;
  std::string group;
  uint64_t positions[kMaxPartitions] = {};
};

struct BrokerRecord {
  int32_t pid = 0;  // the active broker (alive or dead); 0: none now
  uint64_t start_time = 0;
  int64_t heartbeat_ns = 0;  // CLOCK_MONOTONIC of its last tick
  uint64_t epoch = 0;        // how many times a broker became active
  // The last broker that stopped cleanly (ClearBroker); 0: none recorded.
  int32_t stopped_pid = 0;
  int64_t stopped_wall_ns = 0;
};

struct DataDirRecord {
  std::string path;    // absolute; empty: none
  uint64_t epoch = 0;  // the broker_epoch of the broker that recorded it
};

// Typed access to a mapped directory. Cheap to copy; does not own memory.
class Directory {
 public:
  static constexpr uint64_t kBytes = sizeof(DirectoryLayout);

  Directory() = default;
  explicit Directory(std::byte* base) : d_(reinterpret_cast<DirectoryLayout*>(base)) {}

  // Formats zeroed memory as an empty directory; the magic goes last.
  // REQUIRES: memory is kBytes of zeros, nobody else reads it meanwhile.
  static void Format(std::span<std::byte> memory, std::string_view bus_name, uint32_t file_mode);
  // The magic word (acquire: pairs with Format's release store).
  static uint64_t LoadMagic(const std::byte* base);
  // Validates a published directory: magic, major version, geometry and bus
  // name. kVersionMismatch names both versions; kCorruption says what is off.
  [[nodiscard]] static Status Check(std::span<const std::byte> memory, const std::string& path,
                                    std::string_view bus_name);

  DirectoryLayout* layout() const { return d_; }
  uint32_t file_mode() const;

  // ---- Lock-free readers.
  // A consistent copy of slot `slot` (any state); nullopt if it kept changing
  // (a writer is active) for the whole retry budget.
  std::optional<TopicRecord> ReadTopic(uint32_t slot) const;
  // The live topic called `name`. Live topics whose entry does not make
  // sense (partitions outside 1..64, a capacity that is not a power of two,
  // a bad name: shared memory is untrusted) are ignored.
  std::optional<TopicRecord> FindLiveTopic(std::string_view name) const;
  std::vector<TopicRecord> LiveTopics() const;
  // True while slot `slot` holds a live topic of `generation`.
  bool IsLive(uint32_t slot, uint64_t generation) const;
  std::optional<ClientRecord> ReadClient(uint32_t slot) const;
  std::vector<ClientRecord> LiveClients() const;
  uint64_t topics_version() const;
  // True if topic slot `slot` is mid-mutation: odd seq or a transitional
  // state. Under the lock that means its writer died (see BusCore).
  bool TopicInTransition(uint32_t slot) const;
  BrokerRecord ReadBroker() const;
  uint64_t clients_reaped() const;

  // ---- Writers. REQUIRES: the directory lock.
  // The raw entry, regardless of its seq (for repair).
  TopicRecord ReadTopicLocked(uint32_t slot) const;
  bool TopicSeqOdd(uint32_t slot) const;
  // Makes the seq of a live, sane entry even again and returns true; false
  // (nothing changed) for any other entry. For repair: an odd seq over a
  // whole live entry was written over, or its writer died storing kLive.
  bool ResealLiveTopic(uint32_t slot);
  bool ClientSeqOdd(uint32_t slot) const;
  std::optional<uint32_t> FreeTopicSlot() const;
  std::optional<uint32_t> FreeClientSlot() const;
  uint64_t NextGeneration();
  uint64_t NextClientId();
  void BumpTopicsVersion();
  // Writes every field of the record (state included) inside the seqlock.
  void WriteTopic(const TopicRecord& t);
  void SetTopicState(uint32_t slot, TopicState state);
  // Back to kFree, fields zeroed (the generation stays, it is never reused).
  void ClearTopic(uint32_t slot);
  void WriteClient(const ClientRecord& c);
  void ClearClient(uint32_t slot);
  void AddClientsReaped(uint64_t n);

  // ---- Owner-written statistics (relaxed).
  void StoreHeartbeat(uint32_t slot, int64_t now_ns) const;
  void StorePosition(uint32_t slot, uint32_t partition, uint64_t position) const;
  // True while the client slot still holds `client_id` (not reaped).
  bool ClientIs(uint32_t slot, uint64_t client_id) const;

  // ---- Broker record, written by the active broker only.
  void WriteBroker(int32_t pid, uint64_t start_time, int64_t now_ns);
  void StoreBrokerHeartbeat(int64_t now_ns);
  // A clean stop: if `pid` is the recorded broker, records it as stopped at
  // `now_wall_ns` and clears the active pid.
  void ClearBroker(int32_t pid, int64_t now_wall_ns);
  void AddClaimsUnblocked(uint64_t n);
  uint64_t claims_unblocked() const;
  // Records `path` (at most kDataDirBytes) as where the broker of `epoch`
  // persists (epoch 0: recorded by a client while no broker was live). The
  // caller holds the directory lock.
  void WriteDataDir(std::string_view path, uint64_t epoch);
  // The recorded data dir; path empty if none was recorded, or if it kept
  // changing or does not make sense (untrusted memory).
  DataDirRecord ReadDataDir() const;

 private:
  DirectoryLayout* d_ = nullptr;
};

}  // namespace runnel::internal

#endif  // RUNNEL_IPC_INTERNAL_DIRECTORY_H_
