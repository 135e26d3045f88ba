// runnel's public bus API: open a bus by name, manage its topics, and create
// producers and consumers. See ipc/producer.h, ipc/consumer.h and
// ipc/broker.h for the client objects and the housekeeping broker, and
// docs/design.md for the shared-memory layout and the liveness rules.
//
//   runnel::Result<runnel::Bus> bus = runnel::Bus::Open("default", {.embedded_broker = true});
//   if (!bus.ok()) { ... bus.status().ToString() ... }
//   (void)bus->CreateTopic("orders", {.partitions = 4});
//   auto producer = bus->CreateProducer("orders");
//   runnel::SendResult r = producer->TrySend("key", "value");
//   auto consumer = bus->CreateConsumer("orders");
//   consumer->Poll([](const runnel::ConsumerRecord& rec) { ... rec.value() ... }, 64);
//
// Threads: Bus methods are thread-safe. A Producer or Consumer belongs to one
// thread at a time. Fork: objects made before fork() must not be used in the
// child (the child is another process: open the bus again there).
//
// Errors: cold paths return Status/Result (core/status.h); no exception ever
// leaves the library. Hot paths (send, poll) return small enums.

#ifndef RUNNEL_IPC_BUS_H_
#define RUNNEL_IPC_BUS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "ipc/consumer.h"
#include "ipc/producer.h"

namespace runnel {

class Broker;
namespace internal {
class BusCore;
struct BusInternals;
}  // namespace internal

struct BusOptions {
  // Create the bus's shared memory if it does not exist (else kNotFound).
  bool create_if_missing = true;
  // Files of a bus created by this call get mode 0660 instead of 0600, so
  // processes of other users in the creator's group can use the bus. The mode
  // is fixed when the bus is created and applies to every file made later.
  bool group_shared = false;
  // Run a broker (housekeeping: liveness sweep, dead-claim unblocking,
  // persistence) in a thread of this process. Any number of processes may
  // ask for one: exactly one is active per bus, the others stand by and take
  // over when the active one dies.
  bool embedded_broker = false;
  // A claim that stays uncommitted this long is declared dead and turned into
  // padding by the broker (its producer's commit then reports kUnblocked),
  // unless its producer's process is alive: on a multi-producer topic a
  // live producer's claim is never taken (docs/design.md, "Liveness").
  // Values above a year count as a year (here and in sweep_period_ms).
  int64_t unblock_timeout_ms = 200;
  // Broker housekeeping period: liveness sweep and unblocker polls.
  int64_t sweep_period_ms = 20;
  // Where persistence keeps segment files: DATA_DIR/<topic>/<partition>/.
  // Set (the CLI's default is ./runnel-data), or taken from the bus: durable
  // topics this process creates reserve the persistence thread's gating slot
  // and continue at the offsets found on disk; its consumers read offsets
  // older than the ring from the segment files; its embedded broker persists
  // (with a data dir known at Open only: one taken from the bus later is
  // not persisted by this process's embedded broker).
  // Empty (the library default): the data dir the bus's broker recorded when
  // it became active (Bus::data_dir() says which), or, if no broker ever
  // recorded one, the one a process created a durable topic with. If
  // none has been recorded yet, none until one is: topics
  // this process creates before that are ring-only, consumers it creates
  // before that read no disk; it takes the recorded one at its next
  // CreateTopic, DeleteTopic, CreateConsumer or data_dir(). Every process of a
  // bus must use the same one: while a live broker has recorded another,
  // Open fails with kInvalidArgument. At most 2048 bytes once absolute.
  std::string data_dir;
};

enum class FsyncPolicy : uint8_t {
  kNever = 0,     // page cache only
  kInterval = 1,  // fdatasync every fsync_interval_ms
  kAlways = 2,    // every batch synced before it counts as durable
};

struct TopicOptions {
  uint32_t partitions = 1;  // 1..64
  // Ring size per partition: a power of two between 64 KiB and 1 GiB. The
  // memory is reserved and pre-faulted at creation.
  uint64_t ring_bytes = 1 << 20;
  // Largest key + encoded headers + value of one record. 0: ring_bytes / 4
  // minus the frame overhead. At most ring_bytes / 2 minus the overhead.
  uint32_t max_record_bytes = 0;
  // One producer per partition (SPSC ring, no CAS on the claim path). The bus
  // refuses a second live producer on such a partition.
  bool single_producer = false;
  // Persistence, carried out by the active broker's persistence thread
  // (docs/design.md, "Durability"). durable: the broker writes every record
  // to segment files under DATA_DIR/<topic>/<partition>/ and producers wait
  // (kFull) rather than overwrite what it has not written; false: ring only.
  // segment_bytes: a segment file's size before the log rolls to the next.
  // retention_*: whole sealed segments older or beyond are deleted. fsync /
  // fsync_interval_ms: when written data is made durable (see FsyncPolicy).
  bool durable = true;
  uint64_t segment_bytes = 64ull << 20;
  uint64_t retention_bytes = 0;  // 0: unlimited
  uint64_t retention_ms = 0;     // 0: unlimited
  FsyncPolicy fsync = FsyncPolicy::kInterval;
  uint32_t fsync_interval_ms = 10;

  friend bool operator==(const TopicOptions&, const TopicOptions&) = default;
};

// Frame bytes a record needs beyond key + headers + value (header plus the
// room reserved for an idempotent producer's id and sequence).
inline constexpr uint32_t kRecordOverheadBytes = 56;
// The largest TopicOptions::retention_ms (its nanoseconds fit an int64).
inline constexpr uint64_t kMaxRetentionMs = INT64_MAX / 1'000'000;

struct PartitionInfo {
  uint32_t partition = 0;
  uint64_t next_offset = 0;      // the offset the next record gets
  uint64_t tail_position = 0;    // bytes ever claimed in the ring
  uint64_t earliest_offset = 0;  // oldest offset still readable from the ring
  uint64_t earliest_position = 0;
  uint64_t unblocked_claims = 0;  // dead claims turned into padding
  uint64_t unblocked_bytes = 0;
  uint64_t aborted_claims = 0;
  std::optional<uint64_t> gating_position;  // slowest gating reader (persistence)
  // The persistence thread's progress (durable topics of a bus with a data
  // dir): records below written_offset are in the segment files, below
  // durable_offset also synced per the fsync policy. persist_error is the
  // errno that stops it (ENOSPC: disk full), 0 when healthy.
  std::optional<uint64_t> written_offset;
  std::optional<uint64_t> durable_offset;
  int32_t persist_error = 0;
};

enum class ClientKind : uint8_t { kProducer = 1, kConsumer = 2 };

struct ClientPartition {
  uint32_t partition = 0;
  // Consumer: next offset it will read. Producer: offset after the last
  // record it committed (0 if none yet). Updated per batch: approximate.
  uint64_t position = 0;
  uint64_t lag = 0;  // consumers: next_offset - position
};

struct ClientInfo {
  uint64_t id = 0;
  ClientKind kind = ClientKind::kProducer;
  int32_t pid = 0;
  bool alive = true;    // pid + start time still match a process
  int64_t idle_ms = 0;  // since the client's last heartbeat
  std::string group;    // consumer group id (reserved)
  std::vector<ClientPartition> partitions;
};

struct TopicInfo {
  std::string name;
  uint64_t generation = 0;  // bus-unique; a re-created topic gets a new one
  TopicOptions options;     // as stored (max_record_bytes resolved)
  int64_t created_wall_ns = 0;
  // Filled by DescribeTopic only (ListTopics leaves them empty):
  std::vector<PartitionInfo> partitions;
  std::vector<ClientInfo> producers;
  std::vector<ClientInfo> consumers;
};

enum class BrokerState : uint8_t {
  kNeverStarted = 0,  // no broker has been active on this bus
  kRunning = 1,       // broker_pid is the active broker and alive
  kStopped = 2,       // the last active broker stopped cleanly (Broker::Stop)
  kDied = 3,          // broker_pid died while active (crash, kill -9)
};

struct BusInfo {
  std::string name;
  uint32_t file_mode = 0600;
  BrokerState broker_state = BrokerState::kNeverStarted;
  int32_t broker_pid = 0;     // the active broker (kRunning) or the dead one (kDied); else 0
  bool broker_alive = false;  // broker_pid is still alive (kRunning)
  uint64_t broker_epoch = 0;  // how many times a broker became active
  // kRunning, kDied: milliseconds since the broker's last tick (for a dead
  // broker: when it was last seen).
  int64_t broker_idle_ms = 0;
  // The last broker that stopped cleanly and when (ns since the Unix epoch);
  // 0: none recorded (also for buses created by runnel before directory 1.1).
  int32_t broker_stopped_pid = 0;
  int64_t broker_stopped_wall_ns = 0;
  // Where the active (or last active) broker persists, or where a durable
  // topic was created while no broker was live, whichever was later; empty:
  // none recorded.
  std::string broker_data_dir;
  uint32_t topics = 0;
  uint32_t clients = 0;
  uint64_t clients_reaped = 0;
  uint64_t claims_unblocked = 0;
};

// Checks a topic name: 1..64 characters from [A-Za-z0-9._-], not "." or "..".
[[nodiscard]] Status ValidateTopicName(std::string_view name);
// Checks a bus name: 1..64 characters from [A-Za-z0-9_-] (no '.': it separates
// the parts of the bus's file names under /dev/shm).
[[nodiscard]] Status ValidateBusName(std::string_view name);

class Bus {
 public:
  // Attaches to the bus `name`, creating it if allowed. Errors:
  // kInvalidArgument (bad name), kNotFound (absent, create_if_missing false),
  // kPermissionDenied (files of another user; the message names the file),
  // kVersionMismatch (another directory layout; names both versions),
  // kCorruption (not a bus directory), kUnavailable (its creator died
  // before finishing it and create_if_missing is false: with it, this Open
  // formats it). The first two of the last three tell how to remove the bus.
  [[nodiscard]] static Result<Bus> Open(std::string_view name, const BusOptions& options = {});

  // Unlinks every /dev/shm file of bus `name` (directory, lock files, rings).
  // Processes that still map them keep working on their (now private) copy;
  // call it when no process uses the bus. kNotFound if there was nothing.
  [[nodiscard]] static Status Remove(std::string_view name);

  Bus(Bus&&) noexcept;
  Bus& operator=(Bus&&) noexcept;
  Bus(const Bus&) = delete;
  Bus& operator=(const Bus&) = delete;
  ~Bus();  // stops the embedded broker; producers/consumers stay usable

  const std::string& name() const;
  // The absolute data dir this bus handle uses (BusOptions::data_dir, or the
  // one its broker recorded, also after Open); empty: none.
  std::string data_dir() const;

  // Creates a topic and its partition rings. Same name and same settings:
  // OK (idempotent). Same name, other settings: kAlreadyExists naming the
  // settings that differ; also for a topic that is only in the data dir (its
  // topic.meta; memory-only included). kResourceExhausted: 128 topics, or
  // /dev/shm full.
  [[nodiscard]] Status CreateTopic(std::string_view name, const TopicOptions& options = {});
  // Live topics with their settings (no statistics), in name order.
  [[nodiscard]] Result<std::vector<TopicInfo>> ListTopics() const;
  // Settings, per-partition ring statistics and attached clients.
  [[nodiscard]] Result<TopicInfo> DescribeTopic(std::string_view name) const;
  // Unlinks the topic's rings and releases its client registrations. Clients
  // still attached get kTopicDeleted / kNotFound on a later operation (they
  // check every 1024 sends (producers) or 256 polls (consumers), and
  // whenever they wait; CheckTopic checks at once).
  [[nodiscard]] Status DeleteTopic(std::string_view name);

  [[nodiscard]] Result<Producer> CreateProducer(std::string_view topic,
                                                const ProducerOptions& options = {});
  [[nodiscard]] Result<Consumer> CreateConsumer(std::string_view topic,
                                                const ConsumerOptions& options = {});

  [[nodiscard]] Result<BusInfo> Info() const;

  // The embedded broker (BusOptions::embedded_broker), or nullptr.
  Broker* embedded_broker() const { return broker_.get(); }

  // For ipc internals, tools and tests.
  const std::shared_ptr<internal::BusCore>& core() const { return core_; }

 private:
  friend struct internal::BusInternals;
  Bus(std::shared_ptr<internal::BusCore> core, std::unique_ptr<Broker> broker);

  std::shared_ptr<internal::BusCore> core_;
  std::unique_ptr<Broker> broker_;
};

}  // namespace runnel

#endif  // RUNNEL_IPC_BUS_H_
