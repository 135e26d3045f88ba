// Producer: writes records into a topic's partition rings.
//
// Two ways to send:
//  - zero-copy: TryClaim reserves a frame in the ring, you write key, headers
//    and value in place (claim.key(), claim.headers(), claim.value()), then
//    Commit (or Abort). Headers must be written in the encoding of
//    core/record.h (EncodeHeaders).
//  - copying: TrySend / Send(key, value, headers, partition).
//
// Partition choice, when `partition` is kAnyPartition: a record with a key
// goes to KeyPartition(key) -- Kafka's default partitioner (murmur2 of the key
// bytes, & 0x7fffffff, % partitions), so the same key lands on the same
// partition in every process and run; a record without a key goes to the next
// partition of this producer round-robin, starting at a partition that differs
// from one producer to the next (TryClaim has no key bytes yet: it always uses
// round-robin for kAnyPartition).
//
// Back-pressure: kFull means a gating reader (the persistence thread) has not
// released enough space; it is not an error. Without gating readers a ring
// never fills: producers overwrite, and lapped consumers are told (kOverrun).
//
// Topic deletion: checked every kTopicCheckInterval operations, on every
// blocking wait, by WaitDurable when it times out (kNotFound: the records
// will never be durable), and by CheckTopic(); afterwards every call returns
// kTopicDeleted. A producer that sends rarely should call CheckTopic() now
// and then (it also refreshes its heartbeat): `runnel produce` does, around
// every read of stdin.
//
// REQUIRES: one thread at a time per Producer; claims do not outlive it.

#ifndef RUNNEL_IPC_PRODUCER_H_
#define RUNNEL_IPC_PRODUCER_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/record.h"
#include "core/ring.h"
#include "core/status.h"

namespace runnel {

namespace internal {
class BusCore;
}

inline constexpr uint32_t kAnyPartition = UINT32_MAX;

struct ProducerOptions {
  // Partitions this producer writes (empty: all). On a single_producer topic
  // the producer holds these partitions exclusively while it lives.
  std::vector<uint32_t> partitions;
};

enum class SendStatus : uint8_t {
  kOk = 0,
  kFull = 1,              // back-pressure: retry later, or use Send with a timeout
  kTooLarge = 2,          // error: key + headers + value exceed the topic's max record size
  kUnknownPartition = 3,  // error: no such partition, or not one of this producer's
  kInvalid = 4,           // error: key, a header or all headers over 65535 bytes, or no claim
  kUnblocked = 5,         // error: the claim was declared dead (held > unblock timeout); lost
  kTimeout = 6,           // Send only: still full when the timeout ran out
  kTopicDeleted = 7,      // error: the topic was deleted (or re-created)
  kCorrupt = 8,           // error: the partition's ring control block was written over
};
std::string_view SendStatusName(SendStatus s);

struct SendResult {
  SendStatus status = SendStatus::kInvalid;
  uint32_t partition = 0;
  uint64_t offset = 0;  // valid when ok()
  bool ok() const { return status == SendStatus::kOk; }
};

// An active zero-copy claim. Move-only; destroying an uncommitted claim
// aborts it (the ring skips it, its offset is skipped too).
class ProducerClaim {
 public:
  ProducerClaim() = default;
  ProducerClaim(ProducerClaim&&) noexcept = default;
  ProducerClaim& operator=(ProducerClaim&&) noexcept = default;

  SendStatus status() const { return status_; }
  bool ok() const { return status_ == SendStatus::kOk && claim_.ok(); }
  uint32_t partition() const { return partition_; }
  uint64_t offset() const { return claim_.offset(); }
  std::span<std::byte> key() const { return claim_.key(); }
  std::span<std::byte> headers() const { return claim_.headers(); }
  std::span<std::byte> value() const { return claim_.value(); }
  // Timestamp to stamp at commit (ns since the epoch); default (and 0):
  // the wall clock at commit.
  void set_timestamp(int64_t ns) { claim_.set_timestamp(ns); }

 private:
  friend class Producer;
  ProducerClaim(uint32_t partition, SendStatus status) : partition_(partition), status_(status) {}
  // Claims in `ring`: the ring's claim is built in place, never moved (a
  // RingClaim move copies it field by field).
  ProducerClaim(RingProducer& ring, uint32_t partition, uint32_t key_length,
                uint32_t headers_length, uint32_t value_length, bool has_key);
  RingClaim claim_;
  uint32_t partition_ = 0;
  SendStatus status_ = SendStatus::kInvalid;
};

class Producer {
 public:
  static constexpr uint32_t kTopicCheckInterval = 1024;

  Producer(Producer&&) noexcept;
  Producer& operator=(Producer&&) noexcept;
  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;
  ~Producer();  // releases the registration

  const std::string& topic() const { return topic_; }
  // Partitions of the topic, and the ones this producer writes.
  uint32_t partition_count() const { return static_cast<uint32_t>(rings_.size()); }
  const std::vector<uint32_t>& partitions() const { return allowed_; }
  // Largest key + headers + value accepted.
  uint32_t max_record_bytes() const { return max_record_bytes_; }

  // Zero-copy. Never blocks, allocates or enters the kernel. `partition` may
  // be kAnyPartition (round-robin). Check claim.status().
  [[nodiscard]] ProducerClaim TryClaim(uint32_t partition, uint32_t key_length,
                                       uint32_t headers_length, uint32_t value_length,
                                       bool has_key);
  // Publishes the record: kOk, or kUnblocked (the record was lost), kInvalid
  // (no active claim, or a claim another Producer made: that one is left
  // untouched, for its own producer to commit or abort; or headers() holds
  // bytes that are not headers in core/record.h's encoding: the claim is
  // aborted, its offset skipped). Explain() says which.
  [[nodiscard]] SendStatus Commit(ProducerClaim& claim);
  [[nodiscard]] SendStatus Abort(ProducerClaim& claim);

  // Batching. As Commit, but on a single_producer topic the record becomes
  // visible (to consumers and to persistence) only at the next Publish(), or
  // at the next Commit on its partition, together with the rest of its
  // batch: the producer writes the batch without consumers taking its cache
  // lines after every record (docs/ring.md, "Batching"). On other topics it
  // is Commit. Records of one batch share one timestamp unless set; a batch
  // that reaches 64 records or a quarter of the ring publishes itself.
  // Publish well within the broker's unblock timeout: a batch left
  // unpublished longer is taken for a dead producer's claim and lost.
  [[nodiscard]] SendStatus CommitDeferred(ProducerClaim& claim);
  // Publishes the deferred records of every partition. kOk, or kUnblocked if
  // an unblocker had declared some of them dead (those are lost). The
  // destructor publishes too.
  [[nodiscard]] SendStatus Publish();

  // Copies one record in. Never blocks; kFull is back-pressure.
  [[nodiscard]] SendResult TrySend(std::optional<std::string_view> key, std::string_view value,
                                   std::span<const Header> headers = {},
                                   uint32_t partition = kAnyPartition);
  // As TrySend, but on kFull spins briefly, then sleeps (futex) until space
  // is released, up to `timeout`; then kTimeout. The partition is chosen once.
  [[nodiscard]] SendResult Send(std::optional<std::string_view> key, std::string_view value,
                                std::span<const Header> headers, uint32_t partition,
                                std::chrono::nanoseconds timeout);

  // The partition TrySend would use for `key` (advances round-robin when
  // there is no key).
  uint32_t ChoosePartition(std::optional<std::string_view> key);
  // KeyPartition over this topic's partition count (no side effects).
  uint32_t KeyPartition(std::string_view key) const;

  // A Status that explains a failed result, with the numbers (limits, sizes).
  [[nodiscard]] Status Explain(const SendResult& result) const;
  // Waits until the record at `offset` of `partition` is durable per the
  // topic's fsync policy (the persistence thread's durable position passed
  // it). kTimeout (a negative timeout is no wait; the wait ends early, with
  // the reason, when the topic is deleted or the broker reports an error);
  // kResourceExhausted when the broker reports a full disk; kIoError for
  // another persistence error; kUnavailable if the partition is not
  // persisted (not a durable topic, or a bus without a data dir and no
  // broker yet); kOutOfRange if the record never will be: it was overwritten
  // in the ring before a broker took the topic over; kInvalidArgument for a
  // partition the topic does not have. The offset of an aborted or
  // unblocked claim has no record: kOk once everything around it is durable
  // (for the last claim: once the broker has passed it).
  [[nodiscard]] Status WaitDurable(uint32_t partition, uint64_t offset,
                                   std::chrono::nanoseconds timeout);

  // Cold check: kNotFound once the topic was deleted.
  [[nodiscard]] Status CheckTopic();

 private:
  // Why a call returned kInvalid, for Explain.
  enum class InvalidCause : uint8_t {
    kNoClaim,
    kForeignClaim,
    kKeyTooLong,
    kHeaderTooLong,
    kHeadersTooLong,
    kBadHeaders
  };
  bool Owns(const ProducerClaim& claim) const {
    return claim.partition_ < rings_.size() && rings_[claim.partition_].owns(claim.claim_);
  }
  SendStatus Invalid(InvalidCause cause, uint64_t bytes = 0) {
    last_invalid_ = cause;
    last_invalid_bytes_ = bytes;
    return SendStatus::kInvalid;
  }
  // Why `partition` was full, for Explain.
  std::string WhyFull(uint32_t partition) const;
  friend class Bus;
  Producer() = default;
  void MaintenanceCheck();
  void Release();

  std::shared_ptr<internal::BusCore> core_;
  std::shared_ptr<const void> mapping_;  // keeps the rings mapped
  std::vector<RingProducer> rings_;      // by partition index
  std::vector<uint32_t> allowed_;
  uint64_t allowed_mask_ = 0;
  uint32_t round_robin_ = 0;
  uint32_t ops_until_check_ = kTopicCheckInterval;
  bool topic_gone_ = false;
  uint32_t max_record_bytes_ = 0;
  uint32_t topic_slot_ = 0;
  uint64_t generation_ = 0;
  uint32_t client_slot_ = 0;
  uint64_t client_id_ = 0;
  uint64_t last_record_bytes_ = 0;                      // for Explain(kTooLarge)
  InvalidCause last_invalid_ = InvalidCause::kNoClaim;  // for Explain(kInvalid)
  uint64_t last_invalid_bytes_ = 0;
  uint64_t deferred_mask_ = 0;                  // partitions with deferred records
  std::vector<uint64_t> deferred_next_offset_;  // by partition: after the last deferred
  std::string topic_;
};

}  // namespace runnel

#endif  // RUNNEL_IPC_PRODUCER_H_
