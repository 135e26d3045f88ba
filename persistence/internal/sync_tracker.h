// What an fdatasync made durable when writes go on while it runs.
//
// fdatasync(fd) covers every write to fd that completed before the call; a
// write that completes while the sync runs may or may not be covered. The
// persistence thread keeps writing while an interval sync is in flight, so
// the durable position it publishes after a sync is the written position at
// the moment that sync was submitted, never more:
//
//   written  ---w1---|---w2---|---w3---|
//   sync             ^ submitted: covers = end of w1
//                                      ^ completes: durable = end of w1
//   (w2 and w3 wait for the next sync, even if this one happened to flush them)
//
// A sync linked behind its write (IOSQE_IO_LINK, policy `always`) starts
// only once the write completed: the caller reports it as submitted when it
// reaps that write, and it then covers that write.
//
// One tracker per partition, used by the persistence thread only (not
// thread-safe). Positions never move back.

#ifndef RUNNEL_PERSISTENCE_INTERNAL_SYNC_TRACKER_H_
#define RUNNEL_PERSISTENCE_INTERNAL_SYNC_TRACKER_H_

#include "core/ring.h"
#include "persistence/log.h"

namespace runnel::internal {

// A point of the stream in both coordinates: the ring (what producers and
// the gating slot see) and the log (what the checkpoint records).
struct PersistMark {
  RingPosition ring;
  LogPosition log;
};

class SyncTracker {
 public:
  SyncTracker() = default;
  // Everything before `start` is written and durable.
  explicit SyncTracker(const PersistMark& start) : written_(start), durable_(start) {}

  // A write completed in full; the stream is written up to `end`.
  void Written(const PersistMark& end) { written_ = end; }

  // An fdatasync is submitted now (or, when linked, starts now): it covers
  // exactly what is written at this moment. REQUIRES: !inflight().
  void Submitted() {
    covers_ = written_;
    inflight_ = true;
  }

  // The sync in flight succeeded: durable() becomes what it covered (unless
  // SyncedAll moved it further meanwhile). REQUIRES: inflight().
  void Completed() {
    if (covers_.ring.position > durable_.ring.position) durable_ = covers_;
    inflight_ = false;
  }

  // The sync in flight failed or was cancelled: nothing more is durable.
  void Abandoned() { inflight_ = false; }

  // Everything written is durable: a synchronous sync of the whole log
  // (Flush), policy `never`, or a step over bytes that need no sync (ring wrap
  // padding) while nothing else was pending.
  void SyncedAll() { durable_ = written_; }

  // Written bytes that no sync (done or in flight) covers.
  bool NeedsSync() const { return written_.ring.position != Covered().ring.position; }
  // Written bytes that are not durable yet.
  bool dirty() const { return written_.ring.position != durable_.ring.position; }
  bool inflight() const { return inflight_; }

  const PersistMark& written() const { return written_; }
  const PersistMark& durable() const { return durable_; }
  // What the sync in flight will make durable (durable() when none is).
  const PersistMark& Covered() const { return inflight_ ? covers_ : durable_; }

 private:
  PersistMark written_;
  PersistMark durable_;
  PersistMark covers_;
  bool inflight_ = false;
};

}  // namespace runnel::internal

#endif  // RUNNEL_PERSISTENCE_INTERNAL_SYNC_TRACKER_H_
