#include "persistence/persister.h"

#include <concurrentqueue/concurrentqueue.h>
#include <liburing.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <future>
#include <mutex>
#include <thread>

#include "core/coding.h"
#include "core/log.h"
#include "core/record.h"
#include "persistence/format.h"
#include "persistence/internal/sync_tracker.h"

namespace runnel {

// ---------------------------------------------------------------------------
// SyncPolicy

Result<SyncPolicy> SyncPolicy::Parse(std::string_view text) {
  SyncPolicy p;
  if (text == "never") {
    p.kind = Kind::kNever;
    return p;
  }
  if (text == "always") {
    p.kind = Kind::kAlways;
    return p;
  }
  if (text == "interval") return p;
  constexpr std::string_view kPrefix = "interval:";
  if (text.substr(0, kPrefix.size()) == kPrefix) {
    std::string_view ms = text.substr(kPrefix.size());
    uint32_t v = 0;
    auto [ptr, ec] = std::from_chars(ms.data(), ms.data() + ms.size(), v);
    if (ec == std::errc() && ptr == ms.data() + ms.size() && v >= 1 && v <= 3'600'000) {
      p.interval_ms = v;
      return p;
    }
  }
  return Status::InvalidArgument("fsync policy '" + std::string(text) +
                                 "' is not one of: never, always, interval:MS (MS 1..3600000)");
}

std::string SyncPolicy::ToString() const {
  switch (kind) {
    case Kind::kNever:
      return "never";
    case Kind::kAlways:
      return "always";
    case Kind::kInterval:
      return "interval:" + std::to_string(interval_ms);
  }
  return "?";
}

// ---------------------------------------------------------------------------
// The thread

namespace {

enum class Op : uint64_t { kWrite = 1, kSync = 2 };
constexpr uint64_t kOpMask = 7;

int ErrnoOf(const Status& s) {
  switch (s.code()) {
    case StatusCode::kResourceExhausted:
      return ENOSPC;
    case StatusCode::kPermissionDenied:
      return EACCES;
    case StatusCode::kCorruption:
      return EILSEQ;
    default:
      return EIO;
  }
}

}  // namespace

struct Persister::Impl {
  struct Partition {
    explicit Partition(PersistedPartition p)
        : spec(std::move(p)),
          // Every frame's CRC is checked before its bytes go to disk: a
          // peer that wrote over a record in shared memory must not put it
          // in the log (where recovery would call everything after it
          // damage).
          reader(spec.ring, spec.ring.GatingPosition(spec.gating_slot),
                 ReaderOptions{.verify_crc = true}) {}

    PersistedPartition spec;
    RingReader reader;
    // Written (page cache), covered by the sync in flight, durable per policy.
    internal::SyncTracker tracker;
    bool removing = false;
    // The I/O in flight: at most one write, and at most one fdatasync. With
    // `interval` the sync runs while later writes go on; with `always` it is
    // linked behind its write and the next write waits for it.
    bool write_inflight = false;
    bool sync_inflight = false;
    RingReader::Extent extent;
    AppendTarget target;  // of the last write: target.fd is the active segment
    uint64_t length = 0;
    uint64_t done = 0;
    std::vector<FrameMeta> frames;
    // Coalescing: when the persister first saw the oldest unwritten byte
    // (0: nothing pending).
    int64_t pending_since_ns = 0;
    // Errors and timing.
    int32_t error = 0;
    int64_t retry_at_ns = 0;
    int64_t last_sync_ns = 0;
    int64_t last_checkpoint_ns = 0;
    uint64_t checkpointed_position = 0;  // ring position durable at the last checkpoint
    int64_t last_retention_ns = 0;
    bool error_reported = false;
    // The ring starts past the end of the log: a padding frame must mark the
    // gap before any record goes after it (MarkGap).
    bool gap_pending = false;
    int gap_error = 0;
    GapMarker gap;  // the offsets the marker names
    // The ring is behind the log: its records would reuse offsets the log
    // already holds. Nothing is written until the partition is added again.
    bool halted = false;
    PersistedPartitionStats stats;
  };

  struct Command {
    enum class Kind : uint8_t { kAdd, kRemove, kFlush, kStop, kStats } kind;
    std::unique_ptr<PersistedPartition> partition;
    std::string name;
    std::shared_ptr<std::promise<Status>> done;
    std::shared_ptr<std::promise<std::vector<PersistedPartitionStats>>> stats;
  };

  PersisterOptions options;
  io_uring ring{};
  uint32_t inflight = 0;  // SQEs submitted and not yet reaped
  moodycamel::ConcurrentQueue<Command> commands;
  // Wakes the thread sleeping with no partition (WaitForCommand).
  std::mutex wake_mu;
  std::condition_variable wake_cv;
  uint64_t posted = 0;  // commands posted, under wake_mu
  void Post(Command c) {
    commands.enqueue(std::move(c));
    {
      std::lock_guard<std::mutex> lk(wake_mu);
      ++posted;
    }
    wake_cv.notify_one();
  }
  // Sleeps until a command was posted since the last call, or `timeout`.
  void WaitForCommand(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lk(wake_mu);
    wake_cv.wait_for(lk, timeout, [&] { return posted != seen_posted; });
    seen_posted = posted;
  }
  uint64_t seen_posted = 0;  // under wake_mu
  std::vector<std::unique_ptr<Partition>> parts;
  std::vector<std::pair<std::string, std::shared_ptr<std::promise<Status>>>> removals;
  struct FlushRequest {
    std::shared_ptr<std::promise<Status>> done;
    std::vector<std::pair<std::string, uint64_t>> targets;  // partition -> tail at request
  };
  std::vector<FlushRequest> flushes;
  FlushRequest NewFlush(std::shared_ptr<std::promise<Status>> done) const;
  bool stopping = false;
  // Earliest time a held-back (coalescing) partition is due; 0 if none.
  int64_t wake_at_ns = 0;
  std::thread thread;
  std::atomic<bool> stopped{false};

  ~Impl() { io_uring_queue_exit(&ring); }

  void Run();
  void DrainCommands();
  void AddPartition(std::unique_ptr<PersistedPartition> p);
  bool WriteDue(Partition& part, int64_t now);
  bool Pump(Partition& part, int64_t now);
  void SubmitWrite(Partition& part, bool with_sync);
  void SubmitSync(Partition& part);
  io_uring_sqe* GetSqe();
  void Reap();
  void OnWrite(Partition& part, int res);
  void OnSync(Partition& part, int res);
  void Fail(Partition& part, int err, const char* what);
  bool MarkGap(Partition& part);
  void SkipOverrun(Partition& part);
  void SkipUnpaddedJump(Partition& part, uint64_t to);
  void Recovered(Partition& part);
  void PublishDurable(Partition& part);
  bool Idle(const Partition& part) const;
  Status SyncNow(Partition& part);
  void Housekeep(Partition& part, int64_t now);
  void CheckFlushes();
  void CheckRemovals();
  PersistedPartitionStats StatsOf(Partition& part);
};

io_uring_sqe* Persister::Impl::GetSqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  if (sqe == nullptr) {
    io_uring_submit(&ring);
    sqe = io_uring_get_sqe(&ring);
  }
  return sqe;
}

void Persister::Impl::AddPartition(std::unique_ptr<PersistedPartition> p) {
  auto part = std::make_unique<Partition>(std::move(*p));
  Partition& pt = *part;
  pt.stats.name = pt.spec.name;
  // Skip what the log already holds: a broker that died after its write
  // completed but before it advanced the gating slot left those records in
  // both places.
  const uint64_t next = pt.spec.log.next_offset();
  while (pt.reader.position().offset < next) {
    RingReader::Extent e = pt.reader.Scan(1, [](const RecordView&, uint64_t) {});
    if (e.next == pt.reader.position() || e.status != ReadStatus::kOk) break;
    pt.reader.Consume(e);
  }
  if (pt.reader.position().offset < next) {
    Log(LogLevel::kError,
        "runnel persister: %s: the ring's next offset is %llu but the log already ends at "
        "%llu: persisting would give two records one offset, so this partition is not "
        "persisted. The ring was made without this log, or from an older state of it (for "
        "example the topic was created by a client before the broker started after a "
        "reboot): stop its clients, remove the bus with `runnel bus remove --force` (the "
        "ring's records are dropped) and start the broker first: it restores the topic at "
        "the log's end",
        pt.spec.name.c_str(), static_cast<unsigned long long>(pt.reader.position().offset),
        static_cast<unsigned long long>(next));
    pt.halted = true;
    pt.error = EILSEQ;
    pt.error_reported = true;
    pt.spec.ring.SetGatingError(pt.spec.gating_slot, EILSEQ);
    parts.push_back(std::move(part));
    return;
  }
  if (pt.reader.position().offset > next) {
    Log(LogLevel::kWarning,
        "runnel persister: %s: ring starts at offset %llu but the log ends at %llu; "
        "records in between are not on disk",
        pt.spec.name.c_str(), static_cast<unsigned long long>(pt.reader.position().offset),
        static_cast<unsigned long long>(next));
    // Producers waiting for these offsets to be durable must hear that they
    // never will be (Producer::WaitDurable).
    pt.spec.ring.SetUnread(pt.spec.gating_slot,
                           Ring::OffsetRange{next, pt.reader.position().offset});
    pt.gap = GapMarker{next, pt.reader.position().offset};
    pt.gap_pending = true;
    (void)MarkGap(pt);
  }
  // Open() synced and checkpointed the log: what it holds is durable (a gap
  // marker appended above was synced when written).
  pt.tracker = internal::SyncTracker(
      internal::PersistMark{pt.reader.position(), pt.spec.log.committed_end()});
  pt.checkpointed_position = pt.reader.position().position;
  pt.spec.ring.AdvanceGatingSlot(pt.spec.gating_slot, pt.tracker.written().ring);
  pt.spec.ring.PublishDurable(pt.spec.gating_slot, pt.tracker.durable().ring);
  pt.spec.ring.SetGatingError(pt.spec.gating_slot, 0);
  if (pt.gap_pending) Fail(pt, pt.gap_error, "cannot mark the offset gap in the log");
  const int64_t now = MonotonicNanos();
  pt.last_sync_ns = pt.last_checkpoint_ns = pt.last_retention_ns = now;
  parts.push_back(std::move(part));
}

void Persister::Impl::DrainCommands() {
  Command c;
  while (commands.try_dequeue(c)) {
    switch (c.kind) {
      case Command::Kind::kAdd:
        AddPartition(std::move(c.partition));
        break;
      case Command::Kind::kRemove: {
        bool found = false;
        for (auto& p : parts) {
          if (p->spec.name == c.name) {
            p->removing = true;
            found = true;
          }
        }
        if (found) {
          removals.emplace_back(c.name, c.done);
        } else {
          c.done->set_value(Status::Ok());
        }
        break;
      }
      case Command::Kind::kFlush:
        flushes.push_back(NewFlush(c.done));
        break;
      case Command::Kind::kStop:
        stopping = true;
        flushes.push_back(NewFlush(c.done));
        break;
      case Command::Kind::kStats: {
        std::vector<PersistedPartitionStats> out;
        for (auto& p : parts) out.push_back(StatsOf(*p));
        c.stats->set_value(std::move(out));
        break;
      }
    }
  }
}

PersistedPartitionStats Persister::Impl::StatsOf(Partition& p) {
  PersistedPartitionStats s = p.stats;
  s.written = p.tracker.written().ring;
  s.durable = p.tracker.durable().ring;
  s.error = p.error;
  s.log_start_offset = p.spec.log.log_start_offset();
  s.disk_bytes = p.spec.log.size_bytes();
  return s;
}

bool Persister::Impl::Idle(const Partition& p) const {
  return !p.write_inflight && !p.sync_inflight;
}

void Persister::Impl::Fail(Partition& part, int err, const char* what) {
  part.error = err;
  part.retry_at_ns = MonotonicNanos() + options.error_retry_ms * 1'000'000;
  part.spec.ring.SetGatingError(part.spec.gating_slot, err);
  if (!part.error_reported) {
    // `what` is often a Status that names the error already; EILSEQ's text
    // ("invalid multibyte character") never says anything useful here.
    const char* reason = std::strerror(err);
    const bool named = err == EILSEQ || std::strstr(what, reason) != nullptr;
    const std::string hint = err == ENOSPC || err == EDQUOT
                                 ? "; " + NoSpaceHint(part.spec.log.options().segment_bytes)
                                 : std::string();
    Log(LogLevel::kError, "runnel persister: %s: %s%s%s%s (retrying every %lld ms)",
        part.spec.name.c_str(), what, named ? "" : ": ", named ? "" : reason, hint.c_str(),
        static_cast<long long>(options.error_retry_ms));
    part.error_reported = true;
  }
}

// The offsets jump where the ring starts: a gap marker (persistence/format.h)
// says so on disk, so readers and recovery take the next record as the
// continuation it is, not as a record out of sequence (damage); consumers
// hear of the lost offsets, and recovery never hands them out again. Until
// it is written no record may be (Pump retries it). It is synced and
// checkpointed at once: nothing may follow it for a long time, and a power
// loss before the next sync would otherwise take the offsets it covers.
bool Persister::Impl::MarkGap(Partition& part) {
  PartitionLog& log = part.spec.log;
  // Stamped with the newest timestamp in the log, not the clock: the ring's
  // records after it may be older, and a timestamp search must not land on it.
  const int64_t ts = std::max<int64_t>(0, log.committed_end().max_timestamp_ns);
  if (Status s = log.Append(EncodeGapMarker(part.gap, ts)); !s.ok()) {
    part.gap_error = ErrnoOf(s);
    return false;
  }
  part.gap_pending = false;
  Status s = log.Sync();
  if (s.ok()) s = log.WriteCheckpoint();
  if (!s.ok()) {
    Log(LogLevel::kWarning, "runnel persister: %s: the gap marker is written, not yet synced: %s",
        part.spec.name.c_str(), s.ToString().c_str());
  }
  return true;
}

// Producers lapped the persister: the ring no longer holds records it had
// not written. A broker that adopts a ring late meets this (a producer that
// looked for gating readers just before the slot appeared may still claim up
// to a ring past it); with a slot from the start only a peer scribbling on
// the ring causes it. Stopping would wedge the partition for good (nothing
// moves the gate); instead the lost offsets become a gap, as at a late
// adoption (AddPartition): producers waiting for them hear they never will
// be durable, a marker says so on disk, and the persister goes on from the
// oldest record the ring holds.
void Persister::Impl::SkipOverrun(Partition& part) {
  const Lost lost = part.reader.Resync();
  const uint64_t from = lost.from.offset;
  const uint64_t to = std::max(lost.to.offset, from);
  part.stats.offsets_lost += to - from;
  Log(LogLevel::kError,
      "runnel persister: %s: producers overwrote ring records before they were written to "
      "disk (a broker that adopted the ring late, or a peer writing into shared memory)%s",
      part.spec.name.c_str(),
      to > from ? (": offsets " + std::to_string(from) + ".." + std::to_string(to - 1) +
                   " are lost and marked as a gap")
                      .c_str()
                : "");
  if (to > from) {
    // One range for producers to check: the union with the one before
    // (WaitDurable may be asked about its offsets at any time). A record in
    // between is then called lost: a retry duplicates it, never the reverse.
    const Ring::OffsetRange old = part.spec.ring.Unread(part.spec.gating_slot);
    Ring::OffsetRange unread{from, to};
    if (old.to > old.from) unread = {std::min(old.from, from), std::max(old.to, to)};
    part.spec.ring.SetUnread(part.spec.gating_slot, unread);
    // A marker not yet written ends where this one starts (nothing is
    // written while one is pending).
    if (part.gap_pending) {
      part.gap.to = to;
    } else {
      part.gap = GapMarker{from, to};
      part.gap_pending = true;
    }
  }
  // Like wrap padding: the step writes nothing, so it is durable as soon as
  // everything before it is.
  const bool clean = !part.tracker.dirty();
  part.tracker.Written(internal::PersistMark{part.reader.position(), part.tracker.written().log});
  if (clean) part.tracker.SyncedAll();
  part.spec.ring.AdvanceGatingSlot(part.spec.gating_slot, part.reader.position());
  if (clean) PublishDurable(part);
}

// The next record's offset is past the reader's with no padding before it:
// only a tail word written over (its offset half moved) hands producers such
// an offset. Written as it is, the jump would read as damage on disk, and
// every reader of the log would skip the record its producer was told is
// durable. The offsets in between never held a record: they become a gap
// (nothing to tell producers, none was given them), and the record follows.
void Persister::Impl::SkipUnpaddedJump(Partition& part, uint64_t to) {
  const RingPosition at = part.reader.position();
  Log(LogLevel::kError,
      "runnel persister: %s: the record at ring position %llu has offset %llu, but the next "
      "offset is %llu and no padding comes before it: a process wrote over the ring's tail word. "
      "Offsets %llu..%llu never held a record; they are marked as a gap and persisting goes on",
      part.spec.name.c_str(), static_cast<unsigned long long>(at.position),
      static_cast<unsigned long long>(to), static_cast<unsigned long long>(at.offset),
      static_cast<unsigned long long>(at.offset), static_cast<unsigned long long>(to - 1));
  if (part.gap_pending) {
    part.gap.to = to;  // nothing was read since that one: it ends at `at`
  } else {
    part.gap = GapMarker{at.offset, to};
    part.gap_pending = true;
  }
  part.reader.Seek(RingPosition{at.position, to});
  // As after an overrun: the slot moves to the new offset, so that a broker
  // that takes over before the record is written continues here (and marks
  // the gap itself if this one could not), not at the jump again.
  const bool clean = !part.tracker.dirty();
  part.tracker.Written(internal::PersistMark{part.reader.position(), part.tracker.written().log});
  if (clean) part.tracker.SyncedAll();
  part.spec.ring.AdvanceGatingSlot(part.spec.gating_slot, part.reader.position());
  if (clean) PublishDurable(part);
}

// A write or sync succeeded after a failure: clear the error.
void Persister::Impl::Recovered(Partition& part) {
  if (part.error == 0 || part.halted) return;  // halted: for good
  part.error = 0;
  part.error_reported = false;
  part.spec.ring.SetGatingError(part.spec.gating_slot, 0);
  Log(LogLevel::kInfo, "runnel persister: %s: writing again", part.spec.name.c_str());
}

void Persister::Impl::PublishDurable(Partition& part) {
  if (part.spec.log.DirectoryRemoved()) [[unlikely]] {
    // Removed under us (rm -rf): what was written since went to unlinked
    // files and is gone with them. Confirm nothing more, and stop.
    if (!part.halted) {
      part.halted = true;
      part.error = ENOENT;
      part.error_reported = true;
      part.spec.ring.SetGatingError(part.spec.gating_slot, ENOENT);
      Log(LogLevel::kError,
          "runnel persister: %s: its log directory was removed while the broker wrote to it: "
          "the records written since are gone, and none is confirmed durable any more. Stop "
          "the broker; the next one reports the directory missing (mkdir it to start the "
          "partition afresh)",
          part.spec.name.c_str());
    }
    return;
  }
  part.spec.ring.PublishDurable(part.spec.gating_slot, part.tracker.durable().ring);
}

// Whether to write what is pending now, or wait for more (policies never and
// interval). One write per tiny batch costs an io_uring round trip through
// the kernel's worker each, ~10,000 a second at 100k small records/s, and the
// wake-ups preempt the producer's CPU. Durability under these policies does
// not hinge on a single record (interval publishes durable positions only
// every MS anyway; consumers read the ring, not the disk), so the persister
// writes once coalesce_bytes are pending (capped at 1/8 of the ring, so that a
// small ring never waits for a full coalesce) or coalesce_delay_ns after it
// first saw the oldest unwritten byte.
bool Persister::Impl::WriteDue(Partition& part, int64_t now) {
  const uint64_t pending = part.spec.ring.tail().position - part.reader.position().position;
  if (pending == 0) {
    part.pending_since_ns = 0;
    return false;
  }
  if (part.pending_since_ns == 0) part.pending_since_ns = now;
  const bool urgent = !flushes.empty() || stopping || part.error != 0;
  const uint64_t threshold =
      std::max<uint64_t>(std::min(options.coalesce_bytes, part.spec.ring.capacity() / 8), 1);
  const int64_t due = part.pending_since_ns + options.coalesce_delay_ns;
  if (urgent || pending >= threshold || now >= due) return true;
  if (wake_at_ns == 0 || due < wake_at_ns) wake_at_ns = due;
  return false;
}

bool Persister::Impl::Pump(Partition& part, int64_t now) {
  if (part.write_inflight || part.removing || part.halted) return false;
  if (part.error != 0 && now < part.retry_at_ns) return false;
  if (part.gap_pending) {
    // Append may roll the segment: never while its fdatasync is in flight.
    if (part.sync_inflight) return false;
    if (!MarkGap(part)) {
      Fail(part, part.gap_error, "cannot mark the offset gap in the log");
      return false;
    }
    Recovered(part);
  }
  const SyncPolicy::Kind kind = part.spec.fsync.kind;
  bool progressed = false;
  if (kind == SyncPolicy::Kind::kAlways) {
    // Each batch is written, then synced (linked), before the next write.
    if (part.sync_inflight) return false;
    if (part.tracker.NeedsSync()) {
      // Its linked sync was cancelled (short or failed write): sync now.
      if (inflight + 1 > options.queue_depth / 2) return false;
      SubmitSync(part);
      return true;
    }
  } else if (kind == SyncPolicy::Kind::kInterval && !part.sync_inflight &&
             part.tracker.NeedsSync() &&
             now - part.last_sync_ns >= int64_t{part.spec.fsync.interval_ms} * 1'000'000) {
    // Later writes go on while it runs; it covers what is written now.
    SubmitSync(part);
    progressed = true;
  }
  if (inflight + 2 > options.queue_depth / 2) return progressed;
  if (kind != SyncPolicy::Kind::kAlways && !WriteDue(part, now)) return progressed;
  part.frames.clear();
  // One write never spans segments: cap it at what a segment holds.
  const uint64_t segment_bytes = part.spec.log.options().segment_bytes;
  const uint64_t cap =
      std::min<uint64_t>(options.max_write_bytes, segment_bytes - kFileHeaderLength);
  const RingReader::Extent e = part.reader.Scan(cap, [&](const RecordView& v, uint64_t position) {
    part.frames.push_back(FrameMeta{v.offset(), v.timestamp_ns(), position});
  });
  if (e.status == ReadStatus::kOverrun) {
    SkipOverrun(part);
    return true;
  }
  if (e.jump_to != 0 && e.end == e.begin) {
    // The offset was read after the frame's checks: a producer lapping the
    // reader may have been rewriting it (that is an overrun, not a jump).
    if (part.reader.Lapped()) {
      SkipOverrun(part);
    } else {
      SkipUnpaddedJump(part, e.jump_to);
    }
    return true;
  }
  if (e.status != ReadStatus::kOk && e.end == e.begin && e.next == part.reader.position()) {
    // A frame in shared memory fails validation: somebody wrote over the
    // ring. Writing it would put garbage on disk; stop and say so. (The good
    // records before it were written first.)
    const std::string what =
        "the record at ring offset " + std::to_string(part.reader.position().offset) +
        " fails its checks (" + std::string(FrameCheckName(e.check)) +
        "): a process wrote over shared memory. It is not written to disk, and "
        "nothing after it is; `runnel bus remove --force` drops what the ring holds, and "
        "the broker then restores the topic at the log's end";
    Fail(part, EILSEQ, what.c_str());
    return progressed;
  }
  if (e.end == e.begin) {
    if (e.next == part.reader.position()) return progressed;
    // Only wrap padding: nothing to write, just move on. It is durable as
    // soon as everything before it is.
    const bool clean = !part.tracker.dirty();
    part.reader.Consume(e);
    part.tracker.Written(internal::PersistMark{e.next, part.tracker.written().log});
    if (clean) part.tracker.SyncedAll();
    part.spec.ring.AdvanceGatingSlot(part.spec.gating_slot, part.tracker.written().ring);
    if (clean) PublishDurable(part);
    return true;
  }
  const uint64_t length = e.end - e.begin;
  // A roll (inside PrepareAppend) closes the active segment's fd: never
  // while an fdatasync of it is in flight. Wait for the sync; rolls are rare.
  if (part.sync_inflight && part.spec.log.committed_end().file_position + length > segment_bytes) {
    return progressed;
  }
  Result<AppendTarget> target = part.spec.log.PrepareAppend(length);
  if (!target.ok()) {
    Fail(part, ErrnoOf(target.status()), target.status().ToString().c_str());
    return progressed;
  }
  part.extent = e;
  part.target = *target;
  part.length = length;
  part.done = 0;
  for (FrameMeta& f : part.frames)
    f.file_position = target->file_position + (f.file_position - e.begin);
  if (part.sync_inflight) ++part.stats.writes_during_sync;
  SubmitWrite(part, kind == SyncPolicy::Kind::kAlways);
  // Whatever is left behind this write arrived after the write was cut.
  part.pending_since_ns = 0;
  return true;
}

void Persister::Impl::SubmitWrite(Partition& part, bool with_sync) {
  io_uring_sqe* sqe = GetSqe();
  // The ring memory is the write buffer: no copy.
  io_uring_prep_write(sqe, part.target.fd, part.spec.ring.At(part.extent.begin + part.done),
                      static_cast<unsigned>(part.length - part.done),
                      part.target.file_position + part.done);
  io_uring_sqe_set_data64(sqe,
                          reinterpret_cast<uint64_t>(&part) | static_cast<uint64_t>(Op::kWrite));
  part.write_inflight = true;
  ++inflight;
  if (with_sync) {
    // The sync runs only after the write completes in full (a short write
    // breaks the link and the sync completes with -ECANCELED). The tracker
    // learns of it when the write is reaped: only then does it start.
    sqe->flags |= IOSQE_IO_LINK;
    io_uring_sqe* s = GetSqe();
    io_uring_prep_fsync(s, part.target.fd, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data64(s,
                            reinterpret_cast<uint64_t>(&part) | static_cast<uint64_t>(Op::kSync));
    part.sync_inflight = true;
    ++inflight;
  }
}

void Persister::Impl::SubmitSync(Partition& part) {
  // target.fd is the active segment: a roll synced the segments before it
  // (sync_on_roll), and none happens while this sync is in flight.
  io_uring_sqe* s = GetSqe();
  io_uring_prep_fsync(s, part.target.fd, IORING_FSYNC_DATASYNC);
  io_uring_sqe_set_data64(s, reinterpret_cast<uint64_t>(&part) | static_cast<uint64_t>(Op::kSync));
  part.sync_inflight = true;
  part.tracker.Submitted();  // covers exactly what is written now
  ++inflight;
}

void Persister::Impl::OnWrite(Partition& part, int res) {
  part.write_inflight = false;
  const bool always = part.spec.fsync.kind == SyncPolicy::Kind::kAlways;
  if (res == -EAGAIN || res == -EINTR) {
    SubmitWrite(part, always && !part.sync_inflight);
    return;
  }
  if (res < 0 || (res == 0 && part.done < part.length)) {
    // Give the reservation back (the log zeroes it) and retry later with a
    // new one: nothing is acknowledged, the ring keeps the bytes.
    Status s = part.spec.log.AbortAppend(part.target);
    if (!s.ok())
      Log(LogLevel::kError, "runnel persister: %s: %s", part.spec.name.c_str(),
          s.ToString().c_str());
    Fail(part, res < 0 ? -res : EIO, "write to segment failed");
    return;
  }
  part.done += static_cast<uint64_t>(res);
  if (part.done < part.length) {
    // Short write: the rest, and (for `always`) a new linked sync since the
    // old one is cancelled.
    SubmitWrite(part, always && !part.sync_inflight);
    return;
  }
  if (part.reader.Lapped()) {  // the reader is still at the write's first byte
    // Producers lapped the bytes while the kernel copied them: what reached
    // the file may be torn. Give the reservation back (zeroed) and skip.
    if (Status s = part.spec.log.AbortAppend(part.target); !s.ok()) {
      Fail(part, ErrnoOf(s), s.ToString().c_str());
      return;
    }
    SkipOverrun(part);
    return;
  }
  part.spec.log.CommitAppend(part.target, part.length, part.frames);
  part.reader.Consume(part.extent);
  part.tracker.Written(internal::PersistMark{part.extent.next, part.spec.log.committed_end()});
  part.spec.ring.AdvanceGatingSlot(part.spec.gating_slot, part.tracker.written().ring);
  part.stats.bytes_written += part.length;
  part.stats.records_written += part.frames.size();
  ++part.stats.writes;
  Recovered(part);
  switch (part.spec.fsync.kind) {
    case SyncPolicy::Kind::kNever:
      part.tracker.SyncedAll();  // durable = written
      PublishDurable(part);
      break;
    case SyncPolicy::Kind::kInterval:
      break;  // the next interval sync covers it
    case SyncPolicy::Kind::kAlways:
      // The linked sync starts now that its write is complete.
      if (part.sync_inflight && !part.tracker.inflight()) part.tracker.Submitted();
      break;
  }
}

void Persister::Impl::OnSync(Partition& part, int res) {
  part.sync_inflight = false;
  if (res < 0) {
    if (part.tracker.inflight()) part.tracker.Abandoned();
    // -ECANCELED: the link was broken by a short or failed write; Pump
    // syncs again once the write is done.
    if (res != -ECANCELED) Fail(part, -res, "fdatasync of segment failed");
    return;
  }
  ++part.stats.syncs;
  part.last_sync_ns = MonotonicNanos();
  if (!part.tracker.inflight()) return;
  part.tracker.Completed();
  part.spec.log.MarkDurable(part.tracker.durable().log);
  PublishDurable(part);
  Recovered(part);
}

void Persister::Impl::Reap() {
  io_uring_cqe* cqe;
  unsigned head;
  unsigned n = 0;
  io_uring_for_each_cqe(&ring, head, cqe) {
    const uint64_t data = io_uring_cqe_get_data64(cqe);
    auto* part = reinterpret_cast<Partition*>(data & ~kOpMask);
    const auto op = static_cast<Op>(data & kOpMask);
    --inflight;
    if (op == Op::kWrite) {
      OnWrite(*part, cqe->res);
    } else {
      OnSync(*part, cqe->res);
    }
    ++n;
  }
  io_uring_cq_advance(&ring, n);
}

Status Persister::Impl::SyncNow(Partition& part) {
  // An explicit flush syncs whatever the policy: the caller asked for it.
  // REQUIRES: Idle(part).
  Status s = part.spec.log.Sync();
  if (!s.ok()) return s;
  ++part.stats.syncs;
  part.tracker.SyncedAll();
  PublishDurable(part);
  part.last_sync_ns = MonotonicNanos();
  s = part.spec.log.WriteCheckpoint();
  if (s.ok()) part.checkpointed_position = part.tracker.durable().ring.position;
  return s;
}

void Persister::Impl::Housekeep(Partition& part, int64_t now) {
  if (!Idle(part)) return;
  // The checkpoint records the log's durable end (never more), when it moved.
  if (part.error == 0 && part.tracker.durable().ring.position != part.checkpointed_position &&
      now - part.last_checkpoint_ns >= options.checkpoint_interval_ms * 1'000'000) {
    part.last_checkpoint_ns = now;
    Status s = part.spec.log.WriteCheckpoint();
    if (!s.ok()) {
      Fail(part, ErrnoOf(s), s.ToString().c_str());
    } else {
      part.checkpointed_position = part.tracker.durable().ring.position;
    }
  }
  if (now - part.last_retention_ns >= options.retention_interval_ms * 1'000'000) {
    part.last_retention_ns = now;
    Result<RetentionResult> r = part.spec.log.Retention(part.spec.retention, WallClockNanos());
    if (!r.ok()) {
      Log(LogLevel::kWarning, "runnel persister: %s: retention: %s", part.spec.name.c_str(),
          r.status().ToString().c_str());
    }
  }
}

Persister::Impl::FlushRequest Persister::Impl::NewFlush(
    std::shared_ptr<std::promise<Status>> done) const {
  FlushRequest r;
  r.done = std::move(done);
  for (const auto& p : parts) r.targets.emplace_back(p->spec.name, p->spec.ring.tail().position);
  return r;
}

void Persister::Impl::CheckFlushes() {
  if (flushes.empty()) return;
  for (auto f = flushes.begin(); f != flushes.end();) {
    // Done when every partition wrote up to the tail it had at the request,
    // or has nothing more committed (a claim still open), or is failing.
    bool ready = true;
    for (const auto& [name, tail] : f->targets) {
      for (const auto& p : parts) {
        if (p->spec.name != name) continue;
        if (!Idle(*p)) ready = false;
        if (p->error == 0 && p->tracker.written().ring.position < tail && p->reader.HasData())
          ready = false;
      }
    }
    if (!ready) {
      ++f;
      continue;
    }
    Status first;
    for (const auto& [name, tail] : f->targets) {
      for (auto& p : parts) {
        if (p->spec.name != name) continue;
        if (p->error != 0) {
          if (first.ok()) first = Status::IoError(p->spec.name + ": " + std::strerror(p->error));
          continue;
        }
        Status s = SyncNow(*p);
        if (!s.ok() && first.ok()) first = s;
      }
    }
    f->done->set_value(first);
    f = flushes.erase(f);
  }
}

void Persister::Impl::CheckRemovals() {
  for (auto it = removals.begin(); it != removals.end();) {
    bool busy = false;
    for (auto& p : parts) {
      if (p->spec.name == it->first && !Idle(*p)) busy = true;
    }
    if (busy) {
      ++it;
      continue;
    }
    Status first;
    for (auto p = parts.begin(); p != parts.end();) {
      if ((*p)->spec.name == it->first) {
        Status s = (*p)->error == 0 ? SyncNow(**p) : Status::Ok();
        if (first.ok()) first = s;
        Status c = (*p)->spec.log.Close();
        if (first.ok()) first = c;
        p = parts.erase(p);
      } else {
        ++p;
      }
    }
    it->second->set_value(first);
    it = removals.erase(it);
  }
}

void Persister::Impl::Run() {
  int64_t sleep_ns = 1000;
  int64_t busy_at_ns = MonotonicNanos();  // when there was last something to write
  for (;;) {
    DrainCommands();
    const int64_t now = MonotonicNanos();
    bool progressed = false;
    wake_at_ns = 0;
    for (auto& p : parts) progressed |= Pump(*p, now);
    for (auto& p : parts) Housekeep(*p, now);
    if (progressed || inflight > 0) busy_at_ns = now;
    if (io_uring_sq_ready(&ring) > 0) io_uring_submit(&ring);
    // Longest wait: 1 ms, or until a coalescing partition is due.
    int64_t wait_ns = 1'000'000;
    if (wake_at_ns != 0) wait_ns = std::clamp<int64_t>(wake_at_ns - now, 1000, wait_ns);
    if (inflight > 0) {
      io_uring_cqe* cqe = nullptr;
      __kernel_timespec ts{0, wait_ns};
      (void)io_uring_wait_cqe_timeout(&ring, &cqe, &ts);
      Reap();
      sleep_ns = 1000;
    } else if (progressed) {
      sleep_ns = 1000;
    } else {
      CheckFlushes();
      CheckRemovals();
      if (stopping && flushes.empty()) break;
      if (parts.empty() && flushes.empty() && removals.empty()) {
        // Nothing to persist: sleep until a command comes (slices bound a
        // missed wake-up).
        WaitForCommand(std::chrono::milliseconds(100));
        sleep_ns = 1000;
        continue;
      }
      // Idle: back off from 1 us up to idle_sleep_max_ns (deep_idle_sleep_ns
      // after deep_idle_after_ns). The persister must not compete with
      // spinning producers and consumers for the CPU, nor wake a sleeping
      // machine thousands of times a second.
      // A partition held back for coalescing: sleep until it is due.
      timespec ts{0, wake_at_ns != 0 ? wait_ns : sleep_ns};
      nanosleep(&ts, nullptr);
      const int64_t cap = now - busy_at_ns >= options.deep_idle_after_ns
                              ? std::max(options.deep_idle_sleep_ns, options.idle_sleep_max_ns)
                              : options.idle_sleep_max_ns;
      sleep_ns = std::min<int64_t>({sleep_ns * 2, cap, 999'999'999});
      continue;
    }
    CheckFlushes();
    CheckRemovals();
  }
  for (auto& p : parts) (void)p->spec.log.Close();
  parts.clear();
  // Answer whatever arrived after the stop.
  Command c;
  while (commands.try_dequeue(c)) {
    if (c.done) c.done->set_value(Status::Ok());
    if (c.stats) c.stats->set_value({});
  }
}

// ---------------------------------------------------------------------------
// Persister

Persister::Persister(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<Persister>> Persister::Start(const PersisterOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  if (options.queue_depth < 4) return Status::InvalidArgument("persister queue depth below 4");
  const int rc = io_uring_queue_init(options.queue_depth, &impl->ring, 0);
  if (rc < 0) return Status::FromErrno(-rc, "io_uring_queue_init");
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->Run(); });
  return std::unique_ptr<Persister>(new Persister(std::move(impl)));
}

Persister::~Persister() { Stop(); }

void Persister::Add(PersistedPartition partition) {
  Impl::Command c;
  c.kind = Impl::Command::Kind::kAdd;
  c.partition = std::make_unique<PersistedPartition>(std::move(partition));
  impl_->Post(std::move(c));
}

Status Persister::Remove(std::string_view name) {
  if (impl_->stopped.load(std::memory_order_acquire)) return Status::Ok();
  Impl::Command c;
  c.kind = Impl::Command::Kind::kRemove;
  c.name = std::string(name);
  c.done = std::make_shared<std::promise<Status>>();
  std::future<Status> f = c.done->get_future();
  impl_->Post(std::move(c));
  return f.get();
}

Status Persister::Flush(int64_t timeout_ns) {
  if (impl_->stopped.load(std::memory_order_acquire)) return Status::Ok();
  Impl::Command c;
  c.kind = Impl::Command::Kind::kFlush;
  c.done = std::make_shared<std::promise<Status>>();
  std::shared_future<Status> f = c.done->get_future().share();
  impl_->Post(std::move(c));
  if (f.wait_for(std::chrono::nanoseconds(timeout_ns)) != std::future_status::ready) {
    return Status::Timeout("flush did not finish in time (a producer holding a claim?)");
  }
  return f.get();
}

void Persister::Stop() {
  if (impl_ == nullptr || impl_->stopped.exchange(true, std::memory_order_acq_rel)) return;
  Impl::Command c;
  c.kind = Impl::Command::Kind::kStop;
  c.done = std::make_shared<std::promise<Status>>();
  impl_->Post(std::move(c));
  impl_->thread.join();
}

std::vector<PersistedPartitionStats> Persister::Stats() const {
  if (impl_->stopped.load(std::memory_order_acquire)) return {};
  Impl::Command c;
  c.kind = Impl::Command::Kind::kStats;
  c.stats = std::make_shared<std::promise<std::vector<PersistedPartitionStats>>>();
  auto f = c.stats->get_future();
  impl_->Post(std::move(c));
  return f.get();
}

}  // namespace runnel
