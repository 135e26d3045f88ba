// Durability: the broker hooks that persist a bus's topics.
//
// A Broker with these hooks runs one Persister (persistence/persister.h) and
// hands it every partition of every durable topic: the partition's ring and
// its persistence gating slot, and the partition's log in
// DATA_DIR/<topic>/<partition>/. Next to the partitions it keeps
// DATA_DIR/<topic>/topic.meta, the topic's settings, so that a broker that
// starts on a bus whose shared memory is gone (a reboot) re-creates the topic
// and its rings continue at the offsets recovered from disk.
//
// When a topic is deleted from the bus, its partitions are closed and its data
// directory is removed. When the broker stops, everything is flushed (written,
// fdatasync'ed, checkpointed) and the logs are closed.

#ifndef RUNNEL_IPC_DURABILITY_H_
#define RUNNEL_IPC_DURABILITY_H_

#include <memory>
#include <optional>
#include <string>

#include "ipc/broker.h"
#include "persistence/persister.h"

namespace runnel {

struct DurabilityOptions {
  std::string data_dir = "./runnel-data";
  // Overrides every topic's own fsync policy (runnel broker --fsync).
  std::optional<SyncPolicy> fsync_override;
  PersisterOptions persister;
};

[[nodiscard]] std::shared_ptr<BrokerHooks> MakeDurabilityHooks(const DurabilityOptions& options);

// The settings file of a topic in a data dir (DATA_DIR/<topic>/topic.meta).
[[nodiscard]] Status WriteTopicMeta(const std::string& data_dir, std::string_view topic,
                                    const TopicOptions& options);
[[nodiscard]] Result<TopicOptions> ReadTopicMeta(const std::string& data_dir,
                                                 std::string_view topic);

// The offset the next record of DATA_DIR/<topic>/<partition> gets, read from
// the segment files without opening the log for writing (0 if there is none).
[[nodiscard]] Result<uint64_t> NextOffsetOnDisk(const std::string& data_dir, std::string_view topic,
                                                uint32_t partition);

// SyncPolicy of a topic's settings.
SyncPolicy TopicSyncPolicy(const TopicOptions& options);

}  // namespace runnel

#endif  // RUNNEL_IPC_DURABILITY_H_
