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
//
// Deleting a topic's data (docs/design.md, "Deleting a topic"): a process
// with a data dir that deletes a durable topic first writes the tombstone
// DATA_DIR/<topic>/topic.deleted (durably), then takes the topic off the bus.
// A tombstoned directory is never restored; the broker removes it (at once
// if it runs, else when it starts), and creating the topic again removes it
// first, so the new topic starts at offset 0. Removal renames the directory
// to DATA_DIR/<topic>~deleted.<pid>.<n> ('~' is not allowed in topic names)
// and then deletes that; a broker removes such leftovers when it starts.

#ifndef RUNNEL_IPC_DURABILITY_H_
#define RUNNEL_IPC_DURABILITY_H_

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "ipc/broker.h"
#include "persistence/persister.h"

namespace runnel {

struct DurabilityOptions {
  std::string data_dir = "./runnel-data";
  // Overrides every topic's own fsync policy (runnel broker --fsync).
  std::optional<SyncPolicy> fsync_override;
  PersisterOptions persister;
  // Open logs whose recovery finds damage by cutting them at it
  // (LogOptions::repair; runnel broker --repair). Off: such a partition
  // stops persisting, and its producers are told.
  bool repair = false;
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

// The tombstone of a deleted topic: which bus entry was deleted (generation
// and creation time together identify it; both 0 when the topic was not on
// the bus, e.g. `runnel topic delete` of a topic only in the data dir).
struct TopicTombstone {
  uint64_t generation = 0;
  int64_t created_wall_ns = 0;
};

// Writes DATA_DIR/<topic>/topic.deleted (creating the directory): a
// temporary file, fsync, rename, fsync of the directory, so after a crash the
// tombstone is either complete or absent.
[[nodiscard]] Status WriteTopicTombstone(const std::string& data_dir, std::string_view topic,
                                         const TopicTombstone& tombstone);
// The tombstone of DATA_DIR/<topic>, or nullopt if there is none. A tombstone
// whose content cannot be parsed still counts (with zero fields).
[[nodiscard]] std::optional<TopicTombstone> ReadTopicTombstone(const std::string& data_dir,
                                                               std::string_view topic);
// Serializes the changes to DATA_DIR/<topic> between the processes and
// threads of a bus: a client's create (which removes a deleted topic's log)
// and delete (which writes the tombstone), and the broker's handling of a
// topic it found added or removed (settings file, opening the logs,
// removal). Each checks under the lock that the incarnation it acts for is
// still the live one, so none acts on a directory a newer incarnation owns.
// An exclusive flock on DATA_DIR/~locks/<topic> ('~' is not allowed in topic
// names), a file never removed (removing a lock file others may hold would
// let two holders in). Blocks until it is held. If the file cannot be made
// (a data dir this process cannot write, where it cannot change anything
// either), held() is false and the caller goes on without it. Within one
// thread it nests: an inner lock of a topic the thread holds is a no-op.
class TopicDirLock {
 public:
  // With `wait` false it does not block: busy() says another holds it.
  TopicDirLock(const std::string& data_dir, std::string_view topic, bool wait = true);
  ~TopicDirLock();
  TopicDirLock(const TopicDirLock&) = delete;
  TopicDirLock& operator=(const TopicDirLock&) = delete;

  bool held() const { return fd_ >= 0 || nested_; }
  bool busy() const { return busy_; }

 private:
  std::pair<dev_t, ino_t> id_{};  // the lock file's
  int fd_ = -1;
  bool nested_ = false;  // this thread holds it already
  bool busy_ = false;    // not waited for, and held by another
};

// Removes DATA_DIR/<topic> (nothing to do if it is absent). Waits up to
// `wait` for every partition log in it to be closed (a PartitionLog holds an
// flock on its directory while open): kUnavailable naming the directory if
// one is still open then. The directory is renamed away first (atomic; the
// parent is fsync'ed), so a crash never leaves a partial <topic> directory.
// REQUIRES: no broker persists (or is about to open) a live topic of that
// name in data_dir: the topic is deleted, or the caller is the broker and
// removes a stale log before it opens the new incarnation's.
[[nodiscard]] Status PurgeTopicData(const std::string& data_dir, std::string_view topic,
                                    std::chrono::milliseconds wait);
// Deletes what purges interrupted by a crash left (DATA_DIR/*~deleted.*).
void RemovePurgeLeftovers(const std::string& data_dir);

// SyncPolicy of a topic's settings.
SyncPolicy TopicSyncPolicy(const TopicOptions& options);

}  // namespace runnel

#endif  // RUNNEL_IPC_DURABILITY_H_
