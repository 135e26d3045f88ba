// The persistence thread: drains partition rings into their logs through
// io_uring.
//
// One thread serves every partition. For each partition it is a gating
// reader of the ring (producers never overwrite bytes it has not written) and
// it submits the ring memory itself as the write buffer: the record bytes are
// written once by the producer and never copied on their way to the page
// cache. Per partition at most one write is in flight, so completions apply in
// order; across partitions writes overlap, capped by the queue depth.
//
// Positions it publishes in the ring's gating slot (core/ring.h):
//   position/offset                 written to the segment file (page cache);
//                                   the ring may reuse the bytes before it
//   durable_position/durable_offset written and synced per the fsync policy;
//                                   at-least-once producers wait for this
//   error                           an errno that stops the partition (ENOSPC,
//                                   EIO); cleared when a retry succeeds
//
// fsync policies:
//   never        durable = written (page cache).
//   interval:MS  one fdatasync of the active segment per partition at most
//                every MS (from the previous sync's completion) after new
//                writes. Writes go on while it runs; durable = what was
//                written when the sync was submitted, never a byte whose write
//                completed after that (persistence/internal/sync_tracker.h).
//   always       every write is linked to an fdatasync (IOSQE_IO_LINK); the
//                next write waits for that sync; durable after it completes.
//
// Coalescing (never, interval): a partition's pending bytes are written once
// coalesce_bytes (at most 1/8 of its ring) are pending or coalesce_delay_ns
// after the persister first saw the oldest of them, not as soon as a record
// is committed: a trickle of records costs ~1,000 writes/s instead of one per
// batch. Consumers read the ring, so this does not delay them; it delays the
// durable position (what at-least-once producers wait for) by at most about
// the delay. `always` and Flush() write at once.
//
// Control requests (add/remove a partition, flush, stop) from other threads
// travel through a moodycamel::ConcurrentQueue: the loop never takes a lock.
//
// Threading: Start() spawns the thread; every public method may be called from
// any thread. Flush() and Remove() block until the persister has done them.

#ifndef RUNNEL_PERSISTENCE_PERSISTER_H_
#define RUNNEL_PERSISTENCE_PERSISTER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/ring.h"
#include "core/status.h"
#include "persistence/log.h"

namespace runnel {

struct SyncPolicy {
  enum class Kind : uint8_t { kNever = 0, kInterval = 1, kAlways = 2 };
  Kind kind = Kind::kInterval;
  uint32_t interval_ms = 10;

  // "never", "always", "interval:MS" (MS in 1..3600000), or "interval" (10 ms).
  static Result<SyncPolicy> Parse(std::string_view text);
  std::string ToString() const;
  friend bool operator==(const SyncPolicy&, const SyncPolicy&) = default;
};

// The owner tag of the persistence thread's gating slot in a partition ring.
// The slot belongs to the role, not to a process: a broker that takes over
// finds the slot of its predecessor by this tag and continues from it.
inline constexpr uint64_t kPersisterGatingOwner = 0x5045525349535452ull;  // "RTSISREP"

struct PersisterOptions {
  uint32_t queue_depth = 64;            // io_uring SQ size; in-flight cap is half
  uint64_t max_write_bytes = 1 << 20;   // largest single write (one ring extent)
  int64_t idle_sleep_max_ns = 200'000;  // longest sleep between polls when idle
  // Idle this long (no partition had anything to write), the longest sleep
  // grows to deep_idle_sleep_ns: an idle broker costs ~1000 wake-ups a
  // second instead of ~5000, and the first record after the silence waits
  // up to that much longer to be written. With no partition at all, the
  // thread sleeps until a command comes.
  int64_t deep_idle_after_ns = 1'000'000'000;
  int64_t deep_idle_sleep_ns = 1'000'000;
  int64_t checkpoint_interval_ms = 1000;  // checkpoint after a sync, at most this often
  int64_t retention_interval_ms = 5000;   // run retention this often
  int64_t error_retry_ms = 100;           // retry a failed write (ENOSPC) this often
  // Coalescing (policies never and interval, see above): write once this many
  // bytes are pending (capped at 1/8 of the ring) ...
  uint64_t coalesce_bytes = 64 << 10;
  // ... or this long after the persister first saw the oldest pending byte.
  // 0 writes whatever is committed at once (no coalescing).
  int64_t coalesce_delay_ns = 1'000'000;
};

// One partition handed to the persister.
struct PersistedPartition {
  std::string name;      // "<topic>/<partition>", for stats and errors
  Ring ring;             // the partition's ring
  uint32_t gating_slot;  // a slot of `ring` the caller acquired for the persister
  PartitionLog log;      // opened and recovered; the persister owns it from now on
  SyncPolicy fsync;
  RetentionPolicy retention;
};

// Counters of one partition (read with Persister::Stats).
struct PersistedPartitionStats {
  std::string name;
  RingPosition written;
  RingPosition durable;
  uint64_t bytes_written = 0;
  uint64_t records_written = 0;
  uint64_t writes = 0;
  uint64_t syncs = 0;
  uint64_t writes_during_sync = 0;  // writes submitted while an fdatasync was in flight
  uint64_t offsets_lost = 0;        // overwritten in the ring before they were written
  int32_t error = 0;                // errno, 0 if healthy
  uint64_t log_start_offset = 0;
  uint64_t disk_bytes = 0;
};

class Persister {
 public:
  // Sets up io_uring and starts the thread.
  static Result<std::unique_ptr<Persister>> Start(const PersisterOptions& options);
  ~Persister();  // Stop()
  Persister(const Persister&) = delete;
  Persister& operator=(const Persister&) = delete;

  // Hands a partition over. Persisting starts at the gating slot's position;
  // records the log already holds (a broker restarted while the ring lived
  // on) are skipped, so nothing is written twice.
  void Add(PersistedPartition partition);
  // Finishes in-flight I/O of the partition, syncs, checkpoints and closes
  // its log. Blocks until done. Unknown names are ignored.
  Status Remove(std::string_view name);
  // Writes everything committed so far in every ring, makes every log durable
  // whatever its fsync policy (fdatasync of the active segment, of segments
  // sealed without a sync since the last flush, of their indexes and of the
  // directory: PartitionLog::Sync) and checkpoints. On return every record
  // committed before the call is on disk. Blocks until done (or timeout).
  // Returns the first error.
  Status Flush(int64_t timeout_ns = 30'000'000'000);
  // Flush, then stop the thread and close every log. Idempotent.
  void Stop();

  std::vector<PersistedPartitionStats> Stats() const;

 private:
  struct Impl;
  explicit Persister(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace runnel

#endif  // RUNNEL_PERSISTENCE_PERSISTER_H_
