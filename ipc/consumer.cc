#include "ipc/consumer.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "ipc/internal/bus_core.h"
#include "ipc/internal/cold_reader.h"
#include "ipc/internal/multi_wait.h"

namespace runnel {

std::string_view PollStatusName(PollStatus s) {
  switch (s) {
    case PollStatus::kOk:
      return "ok";
    case PollStatus::kOverrun:
      return "overrun";
    case PollStatus::kCorrupt:
      return "corrupt";
    case PollStatus::kTopicDeleted:
      return "topic deleted";
    case PollStatus::kMovedFrom:
      return "moved from";
  }
  return "unknown";
}

namespace {

constexpr int64_t kWaitSliceNs = 100'000'000;

// The more severe status wins (the enum is ordered by severity).
void Raise(PollResult& r, PollStatus s) {
  if (static_cast<uint8_t>(s) > static_cast<uint8_t>(r.status)) r.status = s;
}

}  // namespace

Consumer::Consumer(Consumer&& other) noexcept { *this = std::move(other); }

Consumer& Consumer::operator=(Consumer&& other) noexcept {
  if (this != &other) {
    Release();
    core_ = std::move(other.core_);
    mapping_ = std::move(other.mapping_);
    cold_reader_ = std::move(other.cold_reader_);
    cold_id_ = other.cold_id_;
    cursors_ = std::move(other.cursors_);
    std::copy(std::begin(other.cursor_of_), std::end(other.cursor_of_), std::begin(cursor_of_));
    std::fill(std::begin(other.cursor_of_), std::end(other.cursor_of_), -1);
    next_cursor_ = std::exchange(other.next_cursor_, 0);
    polls_until_check_ = other.polls_until_check_;
    topic_gone_ = std::exchange(other.topic_gone_, true);
    wait_ = other.wait_;
    zero_copy_ = other.zero_copy_;
    stage_memory_ = std::move(other.stage_memory_);
    stage_ = std::exchange(other.stage_, {});
    topic_slot_ = other.topic_slot_;
    generation_ = other.generation_;
    client_slot_ = other.client_slot_;
    client_id_ = std::exchange(other.client_id_, 0);
    overruns_ = other.overruns_;
    lost_records_total_ = other.lost_records_total_;
    on_overrun_ = std::move(other.on_overrun_);
    topic_ = std::move(other.topic_);
  }
  return *this;
}

Consumer::~Consumer() { Release(); }

void Consumer::LeaveCold(Cursor& c) {
  if (c.cold && cold_reader_) cold_reader_->Close(cold_id_, c.partition);
  c.cold = false;
}

void Consumer::Release() {
  if (cold_reader_) cold_reader_->Close(cold_id_, std::nullopt);
  if (core_ && client_id_ != 0) core_->Unregister({client_slot_, client_id_});
  client_id_ = 0;
}

std::vector<uint32_t> Consumer::partitions() const {
  std::vector<uint32_t> out;
  for (const Cursor& c : cursors_) out.push_back(c.partition);
  return out;
}

void Consumer::MaintenanceCheck() {
  polls_until_check_ = kTopicCheckInterval;
  if (!core_) return;  // moved from: nothing to check (no cursors)
  const internal::Directory& dir = core_->directory();
  if (!topic_gone_ && !dir.IsLive(topic_slot_, generation_)) {
    topic_gone_ = true;
    // Its files are deleted: unmap them now, not when the consumer goes
    // (the cursors stay as they are: Position() still says where it was).
    if (cold_reader_) cold_reader_->Close(cold_id_, std::nullopt);
  }
  dir.StoreHeartbeat(client_slot_, MonotonicNanos());
}

Status Consumer::CheckTopic() {
  if (!core_) return internal::MovedFrom("Consumer");
  MaintenanceCheck();
  if (topic_gone_) return Status::NotFound("topic '" + topic_ + "' was deleted");
  return Status::Ok();
}

void Consumer::PublishPosition(const Cursor& c, bool settled) {
  const RingPosition at = settled ? c.reader.SettledPosition() : c.reader.position();
  const uint64_t position = c.cold ? c.cold_next : std::max(at.offset, c.skip_until);
  core_->directory().StorePosition(client_slot_, c.partition, position);
}

namespace {

void Report(const OverrunInfo& info, PollResult& result, uint64_t& overruns, uint64_t& lost_total,
            const std::function<void(const OverrunInfo&)>& callback) {
  ++overruns;
  lost_total += info.lost_records;
  result.lost_records += info.lost_records;
  result.lost_bytes += info.lost_bytes;
  result.torn += info.torn;
  result.partition = info.partition;
  Raise(result, PollStatus::kOverrun);
  if (callback) callback(info);
}

}  // namespace

void Consumer::GrowStage(std::size_t bytes) {
  // Touched now, so that copying into it does not page-fault on the hot
  // path (a larger record's first copy pays for its own growth).
  std::unique_ptr<std::byte[]> memory(new std::byte[bytes]);
  std::memset(memory.get(), 0, bytes);
  stage_memory_ = std::move(memory);
  stage_ = {stage_memory_.get(), bytes};
}

void Consumer::OnReadProblem(Cursor& c, const ReadResult& rr, PollResult& result) {
  if (rr.status == ReadStatus::kCorrupt) {
    // Shared memory that fails validation: a bug or a hostile peer. Stay put
    // and keep reporting it; the caller decides (e.g. Seek past it).
    result.partition = c.partition;
    Raise(result, PollStatus::kCorrupt);
    return;
  }
  const uint64_t from = std::max(c.reader.position().offset, c.skip_until);
  if (cold_reader_) {
    // Persistence has what the ring lost: read it from there, then rejoin.
    c.cold = true;
    c.cold_next = from;
    c.slow = true;
    if (rr.torn > 0) {
      OverrunInfo info{c.partition, 0, 0, from, from, rr.torn};
      Report(info, result, overruns_, lost_records_total_, on_overrun_);
    }
    return;
  }
  const Lost lost = c.reader.Resync();
  OverrunInfo info;
  info.partition = c.partition;
  info.from_offset = from;
  info.to_offset = std::max(lost.to.offset, c.skip_until);
  info.lost_records = info.to_offset > from ? info.to_offset - from : 0;
  info.lost_bytes = lost.bytes;
  info.torn = rr.torn;
  // Lapped while skipping up to a start offset past all it lost: nothing
  // the consumer wanted is gone.
  if (info.lost_records > 0 || info.torn > 0) {
    Report(info, result, overruns_, lost_records_total_, on_overrun_);
  }
  PublishPosition(c);
}

void Consumer::PollSlow(Cursor& c, const std::function<void(const RecordView&)>& sink,
                        uint32_t limit, PollResult& result) {
  if (c.pending_loss) {
    c.pending_loss = false;
    c.slow = c.cold;
    OverrunInfo info{c.partition, c.loss_to - c.loss_from, 0, c.loss_from, c.loss_to, 0};
    Report(info, result, overruns_, lost_records_total_, on_overrun_);
    return;
  }
  if (!c.cold) {
    c.slow = false;
    return;
  }
  // The log is found by the topic's name: once the topic is deleted, its
  // files go away (a loss that is not one) and a topic created anew under
  // the name writes its own there. Checked before every read from disk and
  // before a loss is reported.
  auto deleted = [&] {
    MaintenanceCheck();
    if (topic_gone_) Raise(result, PollStatus::kTopicDeleted);
    return topic_gone_;
  };
  if (deleted()) return;
  const RingPosition earliest = c.reader.ring().earliest();
  auto rejoin = [&](uint64_t at) {
    LeaveCold(c);
    c.slow = false;
    c.reader.Seek(earliest);
    c.skip_until = at;
    PublishPosition(c);
  };
  if (c.cold_next >= earliest.offset) {
    rejoin(c.cold_next);  // the ring has it again: no gap, no duplicate
    return;
  }
  internal::ColdReadRequest req;
  req.reader = cold_id_;
  req.topic = topic_;
  req.generation = generation_;
  req.partition = c.partition;
  req.offset = c.cold_next;
  req.limit = limit;
  req.written_below = c.reader.ring().MinDurableOffset().value_or(0);
  uint32_t delivered = 0;
  const uint64_t want = c.cold_next;
  Result<internal::ColdReadBatch> batch = cold_reader_->ReadFrom(req, [&](const RecordView& v) {
    if (v.offset() < want) return;
    sink(v);
    ++delivered;
  });
  result.records += delivered;
  if (!batch.ok() || (delivered == 0 && batch->next_offset <= c.cold_next)) {
    if (deleted()) return;
    // The log cannot serve it: report the gap and continue from the ring.
    OverrunInfo info{
        c.partition, earliest.offset - c.cold_next, 0, c.cold_next, earliest.offset, 0};
    // A log that opens but ends before records the ring no longer holds has
    // lost them (cut short, a segment gone): the persister never lets the
    // ring overwrite what it has not written. One that does not open (or
    // read) is unreadable, unless it is not there at all.
    if (batch.ok()) {
      info.cause = LossCause::kDamaged;
    } else if (batch.status().code() != StatusCode::kNotFound) {
      info.cause = LossCause::kUnreadable;
      info.error = batch.status().ToString();
    }
    rejoin(earliest.offset);
    Report(info, result, overruns_, lost_records_total_, on_overrun_);
    return;
  }
  if (batch->skipped > 0) {
    if (deleted()) return;
    // Retention removed [cold_next, cold_next + skipped) from disk. The ring
    // may still hold the newer part of it: only what it does not is lost.
    const uint64_t log_start = c.cold_next + batch->skipped;
    const RingPosition now = c.reader.ring().earliest();
    const uint64_t lost_to = now.offset < log_start ? std::max(c.cold_next, now.offset) : log_start;
    if (lost_to > c.cold_next) {
      OverrunInfo info{c.partition, lost_to - c.cold_next, 0, c.cold_next, lost_to, 0};
      info.cause = LossCause::kRetention;
      Report(info, result, overruns_, lost_records_total_, on_overrun_);
    }
    if (now.offset < log_start) {
      LeaveCold(c);
      c.slow = false;
      c.reader.Seek(now);
      c.skip_until = lost_to;
      PublishPosition(c);
      return;
    }
  }
  if (batch->damaged_to > batch->damaged_from) {
    if (deleted()) return;
    OverrunInfo info{c.partition,
                     batch->damaged_to - batch->damaged_from,
                     0,
                     batch->damaged_from,
                     batch->damaged_to,
                     0};
    info.cause = batch->damage_was_retention ? LossCause::kRetention : LossCause::kDamaged;
    Report(info, result, overruns_, lost_records_total_, on_overrun_);
  }
  if (batch->gap_to > batch->gap_from) {
    if (deleted()) return;
    OverrunInfo info{
        c.partition, batch->gap_to - batch->gap_from, 0, batch->gap_from, batch->gap_to, 0};
    info.cause = LossCause::kNotPersisted;
    Report(info, result, overruns_, lost_records_total_, on_overrun_);
  }
  c.cold_next = std::max(batch->next_offset, c.cold_next);
  PublishPosition(c);
}

bool Consumer::WaitForData(int64_t deadline_ns) {
  MaintenanceCheck();
  if (topic_gone_) return true;
  for (const Cursor& c : cursors_) {
    if (c.slow) return true;
  }
  const int64_t now = MonotonicNanos();
  if (now >= deadline_ns || cursors_.empty()) return false;
  const int64_t until = std::min(deadline_ns, now + kWaitSliceNs);
  if (cursors_.size() == 1) {
    RingReader& r = cursors_[0].reader;
    if (r.Wait(wait_, until - now)) return true;
    return internal::ReaderReady(r) || MonotonicNanos() < deadline_ns;
  }
  const RingReader* readers[64];
  std::size_t n = 0;
  for (const Cursor& c : cursors_) readers[n++] = &c.reader;
  if (internal::WaitAny({readers, n}, wait_, until)) return true;
  return MonotonicNanos() < deadline_ns;
}

Status Consumer::SeekCursor(Cursor& c, uint64_t offset) {
  const Ring& ring = c.reader.ring();
  const RingPosition tail = ring.tail();
  if (offset > tail.offset) {
    return Status::OutOfRange("offset " + std::to_string(offset) + " is past the end of topic '" +
                              topic_ + "' partition " + std::to_string(c.partition) +
                              " (next offset " + std::to_string(tail.offset) + ")");
  }
  const RingPosition earliest = ring.earliest();
  c.pending_loss = false;
  c.slow = false;
  if (offset >= earliest.offset) {
    LeaveCold(c);
    const RingPosition at = c.reader.position();
    // Keep the cursor when it is still in the ring and not past `offset`;
    // otherwise walk from the earliest record (skipping up to `offset`).
    if (at.position < earliest.position || at.offset > offset || at.position > tail.position) {
      c.reader.Seek(earliest);
    }
    c.skip_until = offset;
  } else if (cold_reader_) {
    c.reader.Seek(earliest);
    c.cold = true;
    c.cold_next = offset;
    c.slow = true;
  } else {
    LeaveCold(c);
    c.reader.Seek(earliest);
    c.skip_until = earliest.offset;
    c.pending_loss = true;
    c.loss_from = offset;
    c.loss_to = earliest.offset;
    c.slow = true;
  }
  PublishPosition(c);
  return Status::Ok();
}

Status Consumer::Seek(uint32_t partition, uint64_t offset) {
  if (!core_) return internal::MovedFrom("Consumer");
  if (partition >= 64 || cursor_of_[partition] < 0) {
    return Status::NotFound("this consumer of topic '" + topic_ + "' does not read partition " +
                            std::to_string(partition));
  }
  RUNNEL_RETURN_IF_ERROR(CheckTopic());
  return SeekCursor(cursors_[static_cast<std::size_t>(cursor_of_[partition])], offset);
}

Result<uint64_t> Consumer::Position(uint32_t partition) const {
  if (!core_) return internal::MovedFrom("Consumer");
  if (partition >= 64 || cursor_of_[partition] < 0) {
    return Status::NotFound("this consumer of topic '" + topic_ + "' does not read partition " +
                            std::to_string(partition));
  }
  const Cursor& c = cursors_[static_cast<std::size_t>(cursor_of_[partition])];
  if (c.cold) return c.cold_next;
  return std::max(c.reader.position().offset, c.skip_until);
}

}  // namespace runnel
