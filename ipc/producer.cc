#include "ipc/producer.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <utility>

#include "core/wait.h"
#include "ipc/internal/bus_core.h"
#include "ipc/internal/partitioner.h"
#include "ipc/internal/process.h"
#include "persistence/persister.h"

namespace runnel {

std::string_view SendStatusName(SendStatus s) {
  switch (s) {
    case SendStatus::kOk:
      return "ok";
    case SendStatus::kFull:
      return "full (back-pressure)";
    case SendStatus::kTooLarge:
      return "record too large";
    case SendStatus::kUnknownPartition:
      return "unknown partition";
    case SendStatus::kInvalid:
      return "invalid";
    case SendStatus::kUnblocked:
      return "claim unblocked as dead; record lost";
    case SendStatus::kTimeout:
      return "timeout";
    case SendStatus::kTopicDeleted:
      return "topic deleted";
    case SendStatus::kCorrupt:
      return "ring corrupt";
  }
  return "unknown";
}

namespace {

// The bus's broker if it is alive (cold paths: a directory read and a
// liveness check), else nullopt.
std::optional<int32_t> LiveBrokerPid(const internal::BusCore& core) {
  const internal::BrokerRecord b = core.directory().ReadBroker();
  if (b.pid == 0 || internal::CheckProcess(b.pid, b.start_time) != internal::Liveness::kAlive) {
    return std::nullopt;
  }
  return b.pid;
}

// The command that starts the bus's broker.
std::string BrokerCommand(const internal::BusCore& core) {
  return core.name() == "default" ? std::string("runnel broker")
                                  : "runnel --bus " + core.name() + " broker";
}

SendStatus FromClaim(ClaimStatus s) {
  switch (s) {
    case ClaimStatus::kOk:
      return SendStatus::kOk;
    case ClaimStatus::kFull:
      return SendStatus::kFull;
    case ClaimStatus::kTooLarge:
      return SendStatus::kTooLarge;
    case ClaimStatus::kUnblocked:
      return SendStatus::kUnblocked;
    case ClaimStatus::kInvalid:
      return SendStatus::kInvalid;
    case ClaimStatus::kCorrupt:
      return SendStatus::kCorrupt;
  }
  return SendStatus::kInvalid;
}

SendStatus FromCommit(CommitStatus s) {
  switch (s) {
    case CommitStatus::kOk:
      return SendStatus::kOk;
    case CommitStatus::kUnblocked:
      return SendStatus::kUnblocked;
    case CommitStatus::kNotClaimed:
    case CommitStatus::kBadHeaders:
      return SendStatus::kInvalid;
  }
  return SendStatus::kInvalid;
}

}  // namespace

Producer::Producer(Producer&& other) noexcept { *this = std::move(other); }

Producer& Producer::operator=(Producer&& other) noexcept {
  if (this != &other) {
    Release();
    core_ = std::move(other.core_);
    mapping_ = std::move(other.mapping_);
    rings_ = std::move(other.rings_);
    allowed_ = std::move(other.allowed_);
    allowed_mask_ = std::exchange(other.allowed_mask_, 0);
    round_robin_ = std::exchange(other.round_robin_, 0);
    ops_until_check_ = other.ops_until_check_;
    topic_gone_ = other.topic_gone_;
    max_record_bytes_ = other.max_record_bytes_;
    topic_slot_ = other.topic_slot_;
    generation_ = other.generation_;
    client_slot_ = other.client_slot_;
    client_id_ = std::exchange(other.client_id_, 0);
    last_record_bytes_ = other.last_record_bytes_;
    last_invalid_ = other.last_invalid_;
    last_invalid_bytes_ = other.last_invalid_bytes_;
    deferred_mask_ = std::exchange(other.deferred_mask_, 0);
    deferred_next_offset_ = std::move(other.deferred_next_offset_);
    topic_ = std::move(other.topic_);
  }
  return *this;
}

Producer::~Producer() { Release(); }

void Producer::Release() {
  if (deferred_mask_ != 0) (void)Publish();
  if (core_ && client_id_ != 0) core_->Unregister({client_slot_, client_id_});
  client_id_ = 0;
}

void Producer::MaintenanceCheck() {
  ops_until_check_ = kTopicCheckInterval;
  if (!core_) return;  // moved from: nothing to check (rings_ is empty)
  const internal::Directory& dir = core_->directory();
  if (!dir.IsLive(topic_slot_, generation_)) topic_gone_ = true;
  dir.StoreHeartbeat(client_slot_, MonotonicNanos());
}

Status Producer::CheckTopic() {
  if (!core_) return internal::MovedFrom("Producer");
  MaintenanceCheck();
  if (topic_gone_) return Status::NotFound("topic '" + topic_ + "' was deleted");
  return Status::Ok();
}

uint32_t Producer::KeyPartition(std::string_view key) const {
  if (partition_count() == 0) return 0;  // moved from
  return internal::KeyPartition(key, partition_count());
}

uint32_t Producer::ChoosePartition(std::optional<std::string_view> key) {
  if (allowed_.empty()) return 0;  // moved from: TrySend says kUnknownPartition
  if (key) return KeyPartition(*key);
  const uint32_t p = allowed_[round_robin_];
  round_robin_ = round_robin_ + 1 == allowed_.size() ? 0 : round_robin_ + 1;
  return p;
}

ProducerClaim::ProducerClaim(RingProducer& ring, uint32_t partition, uint32_t key_length,
                             uint32_t headers_length, uint32_t value_length, bool has_key)
    : claim_(ring.try_claim(key_length, headers_length, value_length, has_key)),
      partition_(partition),
      status_(FromClaim(claim_.status())) {}

ProducerClaim Producer::TryClaim(uint32_t partition, uint32_t key_length, uint32_t headers_length,
                                 uint32_t value_length, bool has_key) {
  // Every return is a prvalue: the caller's ProducerClaim is built in place.
  if (--ops_until_check_ == 0) [[unlikely]] {
    MaintenanceCheck();
  }
  if (topic_gone_) [[unlikely]] {
    return ProducerClaim(0, SendStatus::kTopicDeleted);
  }
  if (partition == kAnyPartition) partition = ChoosePartition(std::nullopt);
  if (partition >= rings_.size() || (allowed_mask_ >> partition & 1) == 0) [[unlikely]] {
    return ProducerClaim(partition, SendStatus::kUnknownPartition);
  }
  if (key_length > kMaxKeyLength) [[unlikely]] {
    return ProducerClaim(partition, Invalid(InvalidCause::kKeyTooLong, key_length));
  }
  if (headers_length > kMaxHeadersLength) [[unlikely]] {
    return ProducerClaim(partition, Invalid(InvalidCause::kHeadersTooLong, headers_length));
  }
  const uint64_t size = uint64_t{key_length} + headers_length + value_length;
  if (size > max_record_bytes_) [[unlikely]] {
    last_record_bytes_ = size;
    return ProducerClaim(partition, SendStatus::kTooLarge);
  }
  return ProducerClaim(rings_[partition], partition, key_length, headers_length, value_length,
                       has_key);
}

SendStatus Producer::Commit(ProducerClaim& claim) {
  if (!claim.ok()) return Invalid(InvalidCause::kNoClaim);
  if (!Owns(claim)) return Invalid(InvalidCause::kForeignClaim);
  const uint64_t offset = claim.claim_.offset();
  const CommitStatus c = rings_[claim.partition_].commit(claim.claim_);
  if (c == CommitStatus::kBadHeaders) (void)Invalid(InvalidCause::kBadHeaders);
  const SendStatus s = FromCommit(c);
  claim.status_ = SendStatus::kInvalid;
  if (s == SendStatus::kOk)
    core_->directory().StorePosition(client_slot_, claim.partition_, offset + 1);
  return s;
}

SendStatus Producer::CommitDeferred(ProducerClaim& claim) {
  if (!claim.ok()) return Invalid(InvalidCause::kNoClaim);
  if (!Owns(claim)) return Invalid(InvalidCause::kForeignClaim);
  const uint32_t partition = claim.partition_;
  const uint64_t offset = claim.claim_.offset();
  RingProducer& ring = rings_[partition];
  const CommitStatus c = ring.commit_deferred(claim.claim_);
  if (c == CommitStatus::kBadHeaders) (void)Invalid(InvalidCause::kBadHeaders);
  const SendStatus s = FromCommit(c);
  claim.status_ = SendStatus::kInvalid;
  if (s != SendStatus::kOk) return s;
  if (ring.deferred() == 0) {
    // Published already: a multi-producer ring, or the batch was full.
    core_->directory().StorePosition(client_slot_, partition, offset + 1);
    return s;
  }
  deferred_next_offset_[partition] = offset + 1;
  deferred_mask_ |= uint64_t{1} << partition;
  return s;
}

SendStatus Producer::Publish() {
  SendStatus status = SendStatus::kOk;
  for (uint64_t m = std::exchange(deferred_mask_, 0); m != 0; m &= m - 1) {
    const auto partition = static_cast<uint32_t>(std::countr_zero(m));
    // Also when the ring published the batch itself (full, or before kFull):
    // publish() reports what such a batch lost.
    const PublishResult r = rings_[partition].publish();
    if (r.unblocked != 0) status = SendStatus::kUnblocked;
    core_->directory().StorePosition(client_slot_, partition, deferred_next_offset_[partition]);
  }
  return status;
}

SendStatus Producer::Abort(ProducerClaim& claim) {
  if (!claim.ok()) return Invalid(InvalidCause::kNoClaim);
  if (!Owns(claim)) return Invalid(InvalidCause::kForeignClaim);
  const SendStatus s = FromCommit(rings_[claim.partition_].abort(claim.claim_));
  claim.status_ = SendStatus::kInvalid;
  return s;
}

SendResult Producer::TrySend(std::optional<std::string_view> key, std::string_view value,
                             std::span<const Header> headers, uint32_t partition) {
  SendResult r;
  if (--ops_until_check_ == 0) [[unlikely]] {
    MaintenanceCheck();
  }
  if (topic_gone_) [[unlikely]] {
    r.status = SendStatus::kTopicDeleted;
    return r;
  }
  if (partition == kAnyPartition) partition = ChoosePartition(key);
  r.partition = partition;
  if (partition >= rings_.size() || (allowed_mask_ >> partition & 1) == 0) [[unlikely]] {
    r.status = SendStatus::kUnknownPartition;
    return r;
  }
  const int64_t hlen = headers.empty() ? 0 : EncodedHeadersLength(headers);
  if (hlen < 0 || hlen > kMaxHeadersLength || (key && key->size() > kMaxKeyLength)) [[unlikely]] {
    if (key && key->size() > kMaxKeyLength) {
      r.status = Invalid(InvalidCause::kKeyTooLong, key->size());
    } else if (hlen < 0) {
      uint64_t longest = 0;
      for (const Header& h : headers) longest = std::max({longest, h.name.size(), h.value.size()});
      r.status = Invalid(InvalidCause::kHeaderTooLong, longest);
    } else {
      r.status = Invalid(InvalidCause::kHeadersTooLong, static_cast<uint64_t>(hlen));
    }
    return r;
  }
  const uint64_t size = (key ? key->size() : 0) + static_cast<uint64_t>(hlen) + value.size();
  if (size > max_record_bytes_) [[unlikely]] {
    last_record_bytes_ = size;
    r.status = SendStatus::kTooLarge;
    return r;
  }
  RingProducer& ring = rings_[partition];
  RingClaim c =
      ring.try_claim(key ? static_cast<uint32_t>(key->size()) : 0, static_cast<uint32_t>(hlen),
                     static_cast<uint32_t>(value.size()), key.has_value());
  if (!c.ok()) [[unlikely]] {
    r.status = FromClaim(c.status());
    return r;
  }
  if (key && !key->empty()) std::memcpy(c.key().data(), key->data(), key->size());
  if (hlen > 0) (void)c.write_headers(headers);  // the length is the claim's
  if (!value.empty()) std::memcpy(c.value().data(), value.data(), value.size());
  r.offset = c.offset();
  r.status = FromCommit(ring.commit(c));
  if (r.status == SendStatus::kOk)
    core_->directory().StorePosition(client_slot_, partition, r.offset + 1);
  return r;
}

SendResult Producer::Send(std::optional<std::string_view> key, std::string_view value,
                          std::span<const Header> headers, uint32_t partition,
                          std::chrono::nanoseconds timeout) {
  if (partition == kAnyPartition && !topic_gone_) partition = ChoosePartition(key);
  SendResult r = TrySend(key, value, headers, partition);
  if (r.status != SendStatus::kFull) return r;
  const int64_t deadline = DeadlineAfter(timeout.count());
  // Spin a little first: space often frees within microseconds.
  for (int i = 0; i < 256; ++i) {
    for (int j = 0; j < 16; ++j) CpuRelax();
    r = TrySend(key, value, headers, partition);
    if (r.status != SendStatus::kFull) return r;
  }
  for (;;) {
    const int64_t remaining = deadline - MonotonicNanos();
    if (remaining <= 0) {
      r.status = SendStatus::kTimeout;
      return r;
    }
    // Sliced, so a deleted topic is noticed while we wait.
    (void)rings_[partition].WaitForSpace(std::min<int64_t>(remaining, 100'000'000));
    MaintenanceCheck();
    r = TrySend(key, value, headers, partition);
    if (r.status != SendStatus::kFull) return r;
  }
}

std::string Producer::WhyFull(uint32_t partition) const {
  if (partition < rings_.size()) {
    const Ring& ring = rings_[partition].ring();
    if (ring.mode() == RingMode::kMultiProducer && !ring.MinGatingPosition()) {
      return "another producer's claim a ring back is still open (producers never lap an open "
             "claim; one whose producer died is turned into padding by the broker)";
    }
    for (uint32_t i = 0; i < kMaxGatingSlots; ++i) {
      if (ring.GatingOwner(i) != kPersisterGatingOwner) continue;
      const int32_t err = ring.GatingError(i);
      if (err == ENOSPC || err == EDQUOT || err == EFBIG) {
        return std::string("the broker cannot write the partition's log: ") + std::strerror(err) +
               " (free disk space: each new segment takes the topic's full segment size at once; "
               "it retries and resumes by itself)";
      }
      if (err == ENOENT) {
        return "the broker stopped persisting it: its log directory was removed while the "
               "broker wrote to it; its output says what to do";
      }
      if (err == EILSEQ) {
        return "the broker stopped persisting it: it found damaged data (in the log on disk, "
               "or in the ring), or a ring whose offsets clash with its log; its output says "
               "which, and what to do";
      }
      if (err != 0) {
        return std::string("the broker cannot persist it: ") + std::strerror(err);
      }
    }
  }
  if (core_ && !LiveBrokerPid(*core_)) {
    return "no broker is running to persist it and free the space: start one (" +
           BrokerCommand(*core_) + ")";
  }
  return "the broker (persistence) has not released space yet: it is behind, or the disk is slow";
}

Status Producer::Explain(const SendResult& r) const {
  if (!core_ && r.status != SendStatus::kOk) return internal::MovedFrom("Producer");
  const std::string where = "topic '" + topic_ + "' partition " + std::to_string(r.partition);
  switch (r.status) {
    case SendStatus::kOk:
      return Status::Ok();
    case SendStatus::kFull:
      return Status::ResourceExhausted(where + " is full: " + WhyFull(r.partition) +
                                       "; retry, or Send with a timeout");
    case SendStatus::kTooLarge:
      return Status::InvalidArgument("record of " + std::to_string(last_record_bytes_) +
                                     " bytes (key + headers + value) exceeds the max record size " +
                                     std::to_string(max_record_bytes_) + " of topic '" + topic_ +
                                     "' (records are never truncated: send a smaller one, or "
                                     "re-create the topic with a larger max record size)");
    case SendStatus::kUnknownPartition: {
      // Appended piece by piece: `"," + std::to_string(p)` inserts at the
      // front of a temporary, which GCC 12 at -O3 flags as an overlapping
      // memcpy (a false -Werror=restrict).
      std::string list;
      for (uint32_t p : allowed_) {
        if (!list.empty()) list += ',';
        list += std::to_string(p);
      }
      return Status::InvalidArgument(
          "topic '" + topic_ + "' has " + std::to_string(partition_count()) +
          " partitions and this producer writes partitions [" + list + "]; partition " +
          std::to_string(r.partition) + " is not one of them");
    }
    case SendStatus::kInvalid:
      switch (last_invalid_) {
        case InvalidCause::kKeyTooLong:
          return Status::InvalidArgument("key of " + std::to_string(last_invalid_bytes_) +
                                         " bytes is longer than the limit of 65535 bytes");
        case InvalidCause::kHeaderTooLong:
          return Status::InvalidArgument("a header name or value of " +
                                         std::to_string(last_invalid_bytes_) +
                                         " bytes is longer than the limit of 65535 bytes");
        case InvalidCause::kHeadersTooLong:
          return Status::InvalidArgument(
              "the headers take " + std::to_string(last_invalid_bytes_) +
              " bytes encoded (4 bytes per header plus names and values), over the limit of "
              "65535 bytes");
        case InvalidCause::kBadHeaders:
          return Status::InvalidArgument(
              "the bytes written into the claim's headers() are not headers in the encoding of "
              "core/record.h ({name_length u16, value_length u16, name, value} repeated, "
              "filling the area exactly): the claim was aborted, its offset is skipped");
        case InvalidCause::kForeignClaim:
          return Status::InvalidArgument(
              "the claim was made by another Producer: commit or abort it through the one "
              "that made it (this call left it untouched)");
        case InvalidCause::kNoClaim:
          break;
      }
      return Status::InvalidArgument(
          "no active claim: the claim was already committed or aborted, or TryClaim did not "
          "succeed (check its status first)");
    case SendStatus::kUnblocked:
      return Status::Timeout(where +
                             ": the claim was held longer than the unblock timeout and was "
                             "turned into padding by the broker; the record was not published");
    case SendStatus::kTimeout:
      return Status::Timeout(where +
                             " stayed full until the send timeout: " + WhyFull(r.partition));
    case SendStatus::kTopicDeleted:
      return Status::NotFound("topic '" + topic_ + "' was deleted");
    case SendStatus::kCorrupt:
      return Status::Corruption(where +
                                ": the ring's control block in shared memory was written over "
                                "(its tail and lap words contradict each other); nothing was "
                                "sent. The log on disk is not affected: stop the bus's processes "
                                "and remove the bus (runnel bus remove) to rebuild it");
  }
  return Status::Internal("unknown send status");
}

}  // namespace runnel

namespace runnel {

Status Producer::WaitDurable(uint32_t partition, uint64_t offset,
                             std::chrono::nanoseconds timeout) {
  if (!core_) return internal::MovedFrom("Producer");
  if (partition >= rings_.size()) {
    return Status::InvalidArgument("topic '" + topic_ + "' has no partition " +
                                   std::to_string(partition));
  }
  const Ring& ring = rings_[partition].ring();
  std::optional<uint32_t> slot;
  for (uint32_t i = 0; i < kMaxGatingSlots; ++i) {
    if (ring.GatingOwner(i) == kPersisterGatingOwner) slot = i;
  }
  if (!slot) {
    return Status::Unavailable("topic '" + topic_ + "' partition " + std::to_string(partition) +
                               " is not persisted (not durable, or created without a data dir)");
  }
  auto never = [&]() -> std::optional<Status> {
    const Ring::OffsetRange unread = ring.Unread(*slot);
    if (offset < unread.from || offset >= unread.to) return std::nullopt;
    return Status::OutOfRange(
        "topic '" + topic_ + "' partition " + std::to_string(partition) + ": offset " +
        std::to_string(offset) + " is not on disk and never will be: offsets " +
        std::to_string(unread.from) + ".." + std::to_string(unread.to - 1) +
        " are not in the log (overwritten in the ring before a broker persisted the topic, or "
        "cut from a damaged log by a repair: the broker's output says which); the log "
        "continues at offset " +
        std::to_string(unread.to));
  };
  if (std::optional<Status> s = never()) return *s;
  // A negative timeout is no wait, as everywhere else. The wait is sliced so
  // that a deleted topic, or a broker that stops persisting, ends it early.
  if (timeout.count() < 0) timeout = std::chrono::nanoseconds(0);
  const int64_t deadline = DeadlineAfter(timeout.count());
  for (;;) {
    const int64_t remaining = std::max<int64_t>(deadline - MonotonicNanos(), 0);
    const int64_t slice = std::min<int64_t>(remaining, 100'000'000);
    if (ring.WaitForDurable(offset, slice)) {
      // The range is published before the durable offset that passes it.
      if (std::optional<Status> s = never()) return *s;
      return Status::Ok();
    }
    if (remaining <= slice || ring.GatingOwner(*slot) != kPersisterGatingOwner ||
        ring.GatingError(*slot) != 0 || topic_gone_ || !CheckTopic().ok()) {
      break;
    }
  }
  // A deleted topic is never persisted again: say that, not "timeout".
  if (Status live = CheckTopic(); !live.ok()) return live;
  const int32_t err = ring.GatingError(*slot);
  const std::string where = "topic '" + topic_ + "' partition " + std::to_string(partition);
  if (err == ENOSPC || err == EDQUOT || err == EFBIG) {
    return Status::ResourceExhausted(where + ": the broker cannot write: " + std::strerror(err) +
                                     " (free disk space: each new segment takes the topic's full "
                                     "segment size at once; it retries and resumes by itself)");
  }
  if (err == ENOENT) {
    return Status::IoError(where +
                           ": the broker stopped persisting it: its log directory was removed "
                           "while the broker wrote to it; its output says what to do");
  }
  if (err == EILSEQ) {
    return Status::IoError(where +
                           ": the broker stopped persisting it: it found damaged data (in the "
                           "log on disk, or in the ring), or a ring whose offsets clash with its "
                           "log; its output says which, and what to do");
  }
  if (err != 0) {
    return Status::IoError(where + ": the broker cannot persist: " + std::strerror(err));
  }
  const std::string waited = timeout.count() >= 1'000'000
                                 ? std::to_string(timeout.count() / 1'000'000) + " ms"
                                 : std::to_string(timeout.count() / 1'000) + " us";
  const std::optional<int32_t> broker = LiveBrokerPid(*core_);
  return Status::Timeout(
      where + ": offset " + std::to_string(offset) + " not durable after " + waited +
      " (durable up to " + std::to_string(ring.Durable(*slot).offset) + "); " +
      (broker ? "the broker (pid " + std::to_string(*broker) +
                    ") has not written it yet: it is behind, or the disk is slow"
              : "no broker is running: start one (" + BrokerCommand(*core_) + ")"));
}

}  // namespace runnel
