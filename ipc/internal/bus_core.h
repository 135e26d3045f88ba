// BusCore: the per-process state of one attached bus, shared (shared_ptr) by
// the Bus handle, its producers, consumers and brokers: the directory
// mapping, the directory lock, a cache of mapped topic rings, and the
// persistence seam.

#ifndef RUNNEL_IPC_INTERNAL_BUS_CORE_H_
#define RUNNEL_IPC_INTERNAL_BUS_CORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/ring.h"
#include "core/status.h"
#include "ipc/bus.h"
#include "ipc/internal/cold_reader.h"
#include "ipc/internal/directory.h"
#include "ipc/internal/shm.h"

namespace runnel::internal {

// kFailedPrecondition: "this <what> was moved from: use the object it was
// moved to", for every call on a moved-from Bus, Producer or Consumer.
Status MovedFrom(std::string_view what);

// The mapped rings of one topic generation. Immutable once built.
struct TopicMapping {
  TopicRecord topic;
  std::vector<SharedRegion> regions;
  std::vector<Ring> rings;  // index = partition
};

// Validates options and turns them into a directory record (max record size
// resolved). Does not set slot, generation, state. kInvalidArgument names
// the setting.
Result<TopicRecord> ResolveOptions(std::string_view name, const TopicOptions& o);
// The settings that differ, as "partitions 2 (requested 1), ..."; empty if none.
std::string DescribeDifferences(const TopicRecord& have, const TopicRecord& want);
TopicOptions OptionsFromRecord(const TopicRecord& t);

class BusCore {
 public:
  [[nodiscard]] static Result<std::shared_ptr<BusCore>> Open(std::string_view name,
                                                             const BusOptions& options);
  ~BusCore();

  const std::string& name() const { return name_; }
  const BusOptions& options() const { return options_; }
  Directory& directory() { return dir_; }
  const Directory& directory() const { return dir_; }
  uint32_t file_mode() const { return dir_.file_mode(); }

  // The directory lock: a process-local mutex (threads of one process share
  // the flock's file description, which would not exclude them) plus flock on
  // /dev/shm/runnel.<bus>.lock. Acquiring it repairs entries left behind by a
  // holder that died mid-mutation.
  class Guard {
   public:
    Guard(Guard&& other) noexcept
        : core_(std::exchange(other.core_, nullptr)), lock_(std::move(other.lock_)) {}
    Guard& operator=(Guard&&) = delete;
    ~Guard();

   private:
    friend class BusCore;
    Guard(BusCore* core, std::unique_lock<std::mutex> lock) : core_(core), lock_(std::move(lock)) {}
    BusCore* core_;
    std::unique_lock<std::mutex> lock_;
  };
  [[nodiscard]] Result<Guard> Lock();
  // Non-blocking: kUnavailable if another thread or process holds the lock.
  [[nodiscard]] Result<Guard> TryLock();

  // `base_offsets` (one per partition, or empty for 0) lets persistence
  // re-create a topic whose log continues at a later offset.
  [[nodiscard]] Status CreateTopic(std::string_view name, const TopicOptions& options,
                                   std::span<const uint64_t> base_offsets = {});
  // With `generation`, only that incarnation (kNotFound if the live topic
  // of that name is another one).
  [[nodiscard]] Status DeleteTopic(std::string_view name,
                                   std::optional<uint64_t> generation = std::nullopt);

  // Maps the rings of a live topic. kNotFound if it is gone. With `populate`
  // the mapping is pre-faulted (MAP_POPULATE: no page faults on hot paths)
  // and shared with other users in this process while any holds it; without,
  // it reuses a shared mapping if there is one, else maps lazily (for tools
  // that only read ring headers).
  [[nodiscard]] Result<std::shared_ptr<const TopicMapping>> MapTopic(const TopicRecord& topic,
                                                                     bool populate = true);

  struct Registration {
    uint32_t slot = 0;
    uint64_t client_id = 0;
  };
  // Registers a client of a live topic. For producers of a single_producer
  // topic, refuses (kFailedPrecondition) when a live producer holds one of
  // the partitions; a dead holder's registration is released on the spot.
  [[nodiscard]] Result<Registration> Register(ClientRole role, const TopicRecord& topic,
                                              uint64_t partition_mask, std::string_view group);
  void Unregister(const Registration& registration);

  // Releases registrations whose process is dead. Returns how many. With
  // `wait` false it gives up (kUnavailable) if the directory lock is busy.
  [[nodiscard]] Result<uint32_t> ReapDeadClients(bool wait = true);
  // Lock-free scan: does any entry look half-written? (Then Lock() repairs.)
  bool NeedsRepair() const;

  void SetColdReader(std::shared_ptr<ColdReader> reader);
  std::shared_ptr<ColdReader> cold_reader() const;

  // The data dir this process uses: options().data_dir (made absolute), or,
  // when that was empty at Open, the one a broker has recorded since.
  std::string data_dir() const;
  // Records data_dir() for the bus (Directory::WriteDataDir, epoch 0) if it
  // is set, differs from the recorded one, no broker is live and none ever
  // recorded one: later processes given no data dir then use it. A live
  // broker records its own.
  void RecordDataDir();
  // When this process has no data dir yet and a broker has recorded one
  // since Open, adopts it, with the cold reader `make_reader` returns for it.
  void AdoptRecordedDataDir(
      const std::function<std::shared_ptr<ColdReader>(const std::string&)>& make_reader);

 private:
  BusCore() = default;
  // options_.data_dir becomes absolute, or the bus's recorded one when empty.
  [[nodiscard]] Status ResolveDataDir();
  void RepairLocked();
  // Every ring file of `t` exists with the size its capacity gives.
  bool RingsPresentLocked(const TopicRecord& t) const;
  // A tombstone for `t` is in the data dir: its delete was committed.
  bool DeleteCommitted(const TopicRecord& t) const;
  void ReleaseTopicClientsLocked(uint32_t slot, uint64_t generation);
  void UnlinkRings(const TopicRecord& t, uint32_t partitions);

  std::string name_;
  BusOptions options_;
  SharedRegion dir_region_;
  Directory dir_;
  LockFile lock_file_;
  std::mutex lock_mu_;
  mutable std::mutex mu_;  // guards cache_, cold_reader_ and data_dir_
  std::map<std::pair<uint32_t, uint64_t>, std::weak_ptr<const TopicMapping>> cache_;
  std::shared_ptr<ColdReader> cold_reader_;
  std::string data_dir_;  // options_.data_dir, or the recorded one adopted since
};

// What the broker's durability hooks need of a Bus while they hold a
// TopicDirLock (ipc/durability.h): Bus::CreateTopic and DeleteTopic take
// that lock themselves.
struct BusInternals {
  static BusCore& Core(Bus& bus) { return *bus.core_; }
};

}  // namespace runnel::internal

#endif  // RUNNEL_IPC_INTERNAL_BUS_CORE_H_
