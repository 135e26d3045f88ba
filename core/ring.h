// The ring: a lock-free, fan-out record ring over a caller-given span of
// memory. The span may be a MAP_SHARED mapping used by many processes: the
// layout holds no pointers, only positions, and is fixed (static_asserts).
//
// Roles:
//  - Producers claim space (try_claim), write the record in place, and commit
//    (or abort). In kSingleProducer mode at most one RingProducer may exist at
//    a time (the bus enforces that); in kMultiProducer mode any number claim
//    concurrently with a CAS on the tail, and ring order is claim order.
//  - Readers (RingReader) each keep their own position and see every record
//    (fan-out). They never block producers: a reader that falls a full lap
//    behind is told it was overrun and how much it lost.
//  - Gating readers (at most kMaxGatingSlots, e.g. the persistence thread)
//    publish their position in a slot; producers never overwrite bytes that a
//    gating reader has not released. When a gating reader lags a full ring,
//    try_claim returns kFull (back-pressure).
//  - An unblocker (RingUnblocker, run by the bus housekeeping) turns a claim
//    whose producer died before committing into padding after a timeout.
//
// Positions and offsets: a *position* is a monotonic byte count since the ring
// was created (index = position & (capacity - 1)); an *offset* is the record's
// offset in its partition (base_offset + records claimed before it). Every
// record is contiguous in the ring: a claim that would cross the end of the
// ring first fills the rest of the lap with a padding frame.
//
// Memory layout (kHeaderBytes = 4096, then `capacity` bytes of frames):
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +---------------------------------------------------------------+
//  |  magic (64), published last with a release store               |    0
//  +---------------------------------------------------------------+
//  |  version (32): major << 16 | minor                             |    8
//  |  mode (32): 1 single-producer, 2 multi-producer                |   12
//  |  capacity (64): data bytes, a power of two                     |   16
//  |  max_frame_length (32)         |  gating slot count (32)       |   24
//  |  salt (64): random, mixed into every commit tag                |   32
//  |  base_offset (64): offset of the first record                  |   40
//  |  descriptor_crc (32): CRC32C of bytes [8, 48); 5.2  | rsv (32) |   48
//  |  ... reserved to 128                                           |
//  +---------------------------------------------------------------+
//  |  tail (64), producers' word: offset mod 2^32 in the high half, |  128
//  |  position/8 mod 2^32 in the low half; 128 bytes to itself      |
//  +---------------------------------------------------------------+
//  |  lap_seq (64) | lap_position (64) | lap_offset (64)            |  256
//  |  a frame boundary in the newest lap, published on lap change   |
//  +---------------------------------------------------------------+
//  |  data_seq (32) | data_waiters (32): futex for sleeping readers |  384
//  +---------------------------------------------------------------+
//  |  space_seq (32) | space_waiters (32): futex for producers      |  512
//  +---------------------------------------------------------------+
//  |  unblocked_claims (64) | unblocked_bytes (64) | aborted (64)   |  640
//  |  unblock_epoch (64): unblocks begun << 16 | unblocks running    |  664
//  +---------------------------------------------------------------+
//  |  gating slot 0: owner (64) | seq (64) | released[2]: position |  768
//  |    (64), offset (64) each; released[seq & 1] is current         |
//  |    durable_position (64) | durable_offset (64) | error (32)    |
//  |    reserved (32) | unread_from (64) | unread_to (64) (5.1)      |
//  |  gating slot 1..3, 128 bytes each                              |
//  +---------------------------------------------------------------+
//  |  durable_seq (32) | durable_waiters (32): futex for producers  | 1280
//  |  waiting until a record is durable                             |
//  +---------------------------------------------------------------+
//  |  write_lap (64): start position of the newest lap anybody may  | 1408
//  |  have begun to write in; raised before the first write there   |
//  +---------------------------------------------------------------+
//  |  claim_horizon (64): multi-producer rings, a frame boundary    | 1536
//  |  below which every frame is finished (committed, padding)      |
//  +---------------------------------------------------------------+
//  |  reserved to 4096                                              | 1664
//  +---------------------------------------------------------------+
//  |  frames (core/record.h)                                        | 4096
//
// The packed tail is reconstructed into full 64-bit values against the lap
// reference (always within two laps of the tail), which is why a ring is at
// most 1 GiB. See docs/design.md for the full argument.
//
// write_lap lets readers check that they were not lapped without touching the
// producers' tail line, which changes with every claim: bytes of lap L can
// only be overwritten by writes in lap L + 1 or later, and nobody writes in a
// lap before raising write_lap to it. So a reader whose batch started in lap
// L and sees write_lap <= L (after its reads) knows nothing it read was
// overwritten; only otherwise does it reconstruct the tail. write_lap changes
// once per lap, so the line stays in the readers' caches.

#ifndef RUNNEL_CORE_RING_H_
#define RUNNEL_CORE_RING_H_

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string_view>

#include "core/batch.h"
#include "core/record.h"
#include "core/status.h"
#include "core/wait.h"

namespace runnel {

inline constexpr uint64_t kRingMagic = 0x31474E49524C4E52ull;  // "RNLRING1"
inline constexpr uint32_t kRingVersionMajor = 5;
inline constexpr uint32_t kRingVersionMinor = 2;
inline constexpr uint64_t kRingHeaderBytes = 4096;
inline constexpr uint64_t kRingMinCapacity = 64 * 1024;
inline constexpr uint64_t kRingMaxCapacity = 1ull << 30;
inline constexpr uint32_t kMaxGatingSlots = 4;

enum class RingMode : uint32_t { kSingleProducer = 1, kMultiProducer = 2 };

struct RingOptions {
  uint64_t capacity = 1 << 20;    // power of two in [kRingMinCapacity, kRingMaxCapacity]
  uint32_t max_frame_length = 0;  // 0: capacity / 4; at most capacity / 2
  RingMode mode = RingMode::kMultiProducer;
  uint64_t base_offset = 0;  // offset of the first record
  uint64_t salt = 0;         // 0: random
};

// A position in the ring together with the offset of the record there.
struct RingPosition {
  uint64_t position = 0;
  uint64_t offset = 0;
  friend bool operator==(const RingPosition&, const RingPosition&) = default;
};

// The ring's control block (see the ruler above). Lives in shared memory.
namespace internal {
struct alignas(128) RingControl {
  // Descriptor: written once by Create, then read-only.
  uint64_t magic;
  uint32_t version;
  uint32_t mode;
  uint64_t capacity;
  uint32_t max_frame_length;
  uint32_t gating_slot_count;
  uint64_t salt;
  uint64_t base_offset;
  // CRC32C of [version, base_offset]: a descriptor written over after Create
  // (a wrong salt makes every reader blind to every frame) fails Attach. 5.2.
  uint32_t descriptor_crc;
  uint8_t reserved0[128 - 52];
  // Producers.
  alignas(128) uint64_t tail;
  alignas(128) uint64_t lap_seq;  // seqlock: odd while a lap reference is written
  uint64_t lap_position;
  uint64_t lap_offset;
  alignas(128) uint32_t data_seq;
  uint32_t data_waiters;
  alignas(128) uint32_t space_seq;
  uint32_t space_waiters;
  alignas(128) uint64_t unblocked_claims;
  uint64_t unblocked_bytes;
  uint64_t aborted_claims;
  uint64_t unblock_epoch;
  struct alignas(128) GatingSlot {
    uint64_t owner;  // 0: free
    // Updates of the released pair; released[seq & 1] is the current one.
    // The owner writes the other pair, then stores seq + 1: an owner that
    // dies mid-update leaves the current pair whole (readers never wait on
    // it, unlike a seqlock left odd).
    uint64_t seq;
    struct Released {
      uint64_t position;  // released up to here (e.g. written to a file)
      uint64_t offset;    // offset of the record at `position`
    } released[2];
    uint64_t durable_position;  // durable up to here (e.g. written and synced)
    uint64_t durable_offset;    // offset of the record at `durable_position`
    int32_t error;              // 0, or the errno that stops this reader (ENOSPC, EIO)
    uint32_t reserved;
    // Offsets [unread_from, unread_to) this reader never got to read (they
    // were overwritten before it took the slot); equal when none. 5.1.
    uint64_t unread_from;
    uint64_t unread_to;
  } gating[kMaxGatingSlots];
  alignas(128) uint32_t durable_seq;
  uint32_t durable_waiters;
  alignas(128) uint64_t write_lap;
  alignas(128) uint64_t claim_horizon;
};
static_assert(offsetof(RingControl, descriptor_crc) == 48);
static_assert(offsetof(RingControl, tail) == 128);
static_assert(offsetof(RingControl, lap_seq) == 256);
static_assert(offsetof(RingControl, data_seq) == 384);
static_assert(offsetof(RingControl, space_seq) == 512);
static_assert(offsetof(RingControl, unblocked_claims) == 640);
static_assert(offsetof(RingControl, unblock_epoch) == 664);
static_assert(offsetof(RingControl, gating) == 768);
static_assert(sizeof(RingControl::GatingSlot) == 128);
static_assert(offsetof(RingControl::GatingSlot, released) == 16);
static_assert(offsetof(RingControl::GatingSlot, unread_from) == 72);
static_assert(offsetof(RingControl, durable_seq) == 1280);
static_assert(offsetof(RingControl, write_lap) == 1408);
static_assert(offsetof(RingControl, claim_horizon) == 1536);
static_assert(sizeof(RingControl) == 1664);
static_assert(sizeof(RingControl) <= kRingHeaderBytes);
static_assert(std::is_trivially_copyable_v<RingControl>);
static_assert(std::atomic_ref<uint64_t>::is_always_lock_free);
static_assert(std::atomic_ref<uint32_t>::is_always_lock_free);
// unblock_epoch: an unblock adds kUnblockBegin before it writes any commit
// word and subtracts 1 when it is done, so the word is unchanged with a zero
// low half exactly when no unblock began, or ran, in between two reads.
inline constexpr uint64_t kUnblockBegin = (uint64_t{1} << 16) + 1;
inline constexpr uint64_t kUnblocksRunning = 0xFFFF;
}  // namespace internal

// A non-owning handle to a formatted ring. Cheap to copy. The memory must
// outlive every handle and every producer/reader made from it.
class Ring {
 public:
  // An empty handle; only assignment and destruction are valid on it.
  Ring() = default;
  // Bytes of memory a ring of `capacity` needs.
  static constexpr uint64_t RequiredBytes(uint64_t capacity) { return kRingHeaderBytes + capacity; }
  static Status ValidateOptions(const RingOptions& options);

  // Formats `memory` as an empty ring: zero-fills (and so pre-faults) every
  // byte, writes the descriptor, and publishes the magic last.
  // REQUIRES: memory.size() >= RequiredBytes(options.capacity), 128-byte aligned,
  // and nobody else uses the memory until Create returns.
  static Result<Ring> Create(std::span<std::byte> memory, const RingOptions& options);

  // Attaches to a ring formatted by Create (possibly in another process).
  // kUnavailable if the magic is not published yet (retry), kVersionMismatch
  // for another major layout version, kCorruption if the descriptor does not
  // describe a valid ring that fits in `memory` or fails its checksum (it was
  // written over). The descriptor is read once, here: a handle does not see
  // later writes to it.
  static Result<Ring> Attach(std::span<std::byte> memory);

  uint64_t capacity() const { return capacity_; }
  RingMode mode() const {
    return single_producer_ ? RingMode::kSingleProducer : RingMode::kMultiProducer;
  }
  uint32_t max_frame_length() const { return max_frame_length_; }
  uint64_t base_offset() const { return base_offset_; }
  uint64_t salt() const { return salt_; }
  std::byte* data() const { return data_; }

  // The newest claimed position and the next offset (includes claims that are
  // not committed yet). A consistent pair.
  RingPosition tail() const;
  // The offset a reader at `at` has settled: at the tail, padding may end
  // the ring (an aborted or unblocked last claim), and the tail's offset
  // says which offsets it skipped; elsewhere `at`'s own.
  static uint64_t SettledOffset(RingPosition at, RingPosition tail) {
    return at.position == tail.position ? std::max(at.offset, tail.offset) : at.offset;
  }
  // The oldest frame boundary this ring can still be read from: the lowest
  // gating position (always intact), or the first record the producers saw in
  // the newest lap, or the ring start before the first wrap.
  RingPosition earliest() const;
  // The oldest frame boundary from which every frame up to the tail is still
  // in the ring, with its offset, for a reader that must miss nothing it can
  // still get (a persistence thread taking over a ring nobody gated). On a
  // multi-producer ring without a gating reader that is the claim horizon
  // (producers never claim more than a ring past it), which may lie a lap
  // behind earliest(); otherwise, and when the frames there do not say their
  // offset, earliest().
  RingPosition OldestIntact() const;

  // Gating slots. Acquire returns a slot index whose position is `start`;
  // kResourceExhausted when all slots are taken.
  // REQUIRES: start is a frame boundary not older than earliest(); owner != 0.
  Result<uint32_t> AcquireGatingSlot(uint64_t owner, RingPosition start) const;
  // Takes over a slot whose previous owner died (same slot, same position).
  // REQUIRES: the previous owner is known to be dead: two live owners would
  // both write the slot's spare pair.
  void ReownGatingSlot(uint32_t slot, uint64_t owner) const;
  void ReleaseGatingSlot(uint32_t slot) const;
  uint64_t GatingOwner(uint32_t slot) const;
  RingPosition GatingPosition(uint32_t slot) const;
  // Advances a gating slot (monotonic) and wakes producers waiting for space.
  void AdvanceGatingSlot(uint32_t slot, RingPosition released) const;
  // Durability, published by a gating reader that persists what it reads:
  // every record with an offset below durable().offset survives a crash per
  // the reader's policy. Wakes producers waiting in WaitForDurable.
  void PublishDurable(uint32_t slot, RingPosition durable) const;
  RingPosition Durable(uint32_t slot) const;
  // The lowest durable offset over the gating slots in use (nullopt: none).
  std::optional<uint64_t> MinDurableOffset() const;
  // An errno that stops a gating reader (e.g. ENOSPC); 0 clears it.
  void SetGatingError(uint32_t slot, int32_t error) const;
  int32_t GatingError(uint32_t slot) const;
  // Offsets [from, to) below the slot's start that it never read (they were
  // overwritten before the slot was taken): a persistence thread that takes
  // over a ring late says so, and durable() says nothing about them.
  struct OffsetRange {
    uint64_t from = 0;
    uint64_t to = 0;
    bool empty() const { return from >= to; }
  };
  void SetUnread(uint32_t slot, OffsetRange unread) const;
  OffsetRange Unread(uint32_t slot) const;
  // Waits until MinDurableOffset() > offset (the record at `offset` is
  // durable), or until every gating slot is durable up to the tail and the
  // tail's offset is past `offset` (an aborted or unblocked last claim
  // skipped it: settled, nothing more will be written for it). Returns false
  // on timeout or if no gating slot is in use.
  bool WaitForDurable(uint64_t offset, int64_t timeout_ns) const;

  // The lowest position of any gating slot in use; nullopt if none is.
  std::optional<uint64_t> MinGatingPosition() const;

  // Counters.
  uint64_t unblocked_claims() const;
  uint64_t unblocked_bytes() const;
  uint64_t aborted_claims() const;

  // Sleeps until a producer commits after `data_seq` was read, or timeout.
  // Used by RingReader::Wait; exposed for the bus.
  internal::RingControl* control() const { return control_; }

  // Tag for the commit word of a frame at `position`.
  uint64_t Tag(uint64_t position) const { return (position ^ salt_) & ~kStateMask; }
  std::byte* At(uint64_t position) const { return data_ + (position & mask_); }

 private:
  // Takes the descriptor (capacity, salt, ...) from `d`, a checked copy.
  Ring(internal::RingControl* control, std::byte* data, const internal::RingControl& d);
  friend class RingProducer;
  friend class RingReader;
  friend class RingUnblocker;

  void PublishLap(uint64_t position, uint64_t offset) const;
  // The offset of the committed batch frame at `position`, or ~0 if there
  // is none (earliest(): a gating reader may stand inside a batch).
  uint64_t FrameOffsetAt(uint64_t position) const;
  // Multi-producer rings: raises claim_horizon to `position` (CAS to the
  // maximum), a frame boundary every frame below which is finished.
  void RaiseClaimHorizon(uint64_t position) const;
  // The aligned length of the finished (committed or padding) frame at
  // `position`; 0 if the frame there is not finished (claimed, poisoned, or
  // not written in this lap); kBadFrame if it carries its tag with a state or
  // length no producer writes. Reads the commit word and length atomically.
  static constexpr uint64_t kBadFrame = ~0ull;
  uint64_t FinishedLength(uint64_t position) const;
  // Past a bad frame at `position`: the next position below `limit` whose
  // commit word carries its tag, else the end of the lap if it is at most
  // `limit`, else `position`.
  uint64_t NextTaggedFrame(uint64_t position, uint64_t limit) const;
  // Raises write_lap to the lap holding `position`, before writing there.
  // `known` caches the highest value this caller raised or saw.
  void RaiseWriteLap(uint64_t position, uint64_t& known) const;
  // True if bytes read from [from, ...) since the caller's last acquire may
  // have been overwritten by a later lap: write_lap first (a cache hit almost
  // always), then the reconstructed tail. Call after reading.
  bool Overwritten(uint64_t from) const;
  // The highest position producers may have written, reconstructed against
  // `floor` (a position at or behind the tail).
  uint64_t OverwriteHorizon(uint64_t floor) const;

  internal::RingControl* control_ = nullptr;
  std::byte* data_ = nullptr;
  uint64_t capacity_ = 0;
  uint64_t mask_ = 0;
  uint64_t salt_ = 0;
  uint64_t base_offset_ = 0;
  uint32_t max_frame_length_ = 0;
  bool single_producer_ = false;
};

// Result of try_claim. kOk is the only success.
enum class ClaimStatus : uint8_t {
  kOk = 0,
  kFull = 1,       // back-pressure: a gating reader has not released enough space
  kTooLarge = 2,   // error: the frame exceeds max_frame_length (never truncated)
  kUnblocked = 3,  // error: an unblocker declared this claim dead before it was marked
  kInvalid = 4,    // error: bad arguments (key or headers longer than 65535)
  kCorrupt = 5,    // error: the control block's tail and lap words contradict each other
                   // (the shared memory was written over); nothing was claimed
};
std::string_view ClaimStatusName(ClaimStatus s);

enum class CommitStatus : uint8_t {
  kOk = 0,
  kUnblocked = 1,   // the claim was turned into padding before commit: the record is lost
  kNotClaimed = 2,  // the claim is not active (already committed/aborted, or failed),
                    // or another RingProducer made it
  kBadHeaders = 3,  // the bytes written into headers() are not headers in the encoding of
                    // core/record.h: the claim was aborted instead (its offset is skipped)
};
std::string_view CommitStatusName(CommitStatus s);

// An active claim: write the key, headers and value in place, then commit.
// Move-only; a claim that is destroyed while active is aborted.
class RingClaim {
 public:
  RingClaim() = default;
  RingClaim(RingClaim&& other) noexcept { *this = std::move(other); }
  RingClaim& operator=(RingClaim&& other) noexcept;
  RingClaim(const RingClaim&) = delete;
  RingClaim& operator=(const RingClaim&) = delete;
  ~RingClaim() {
    if (ok() && ring_ != nullptr) AbortUnfinished();
  }

  ClaimStatus status() const { return status_; }
  bool ok() const { return status_ == ClaimStatus::kOk && frame_ != nullptr; }
  uint64_t offset() const { return offset_; }
  uint64_t position() const { return position_; }
  std::span<std::byte> key() const { return {frame_ + kFrameHeaderLength, key_length_}; }
  std::span<std::byte> headers() const {
    return {frame_ + kFrameHeaderLength + key_length_, headers_length_};
  }
  std::span<std::byte> value() const {
    return {frame_ + kFrameHeaderLength + key_length_ + headers_length_, value_length_};
  }
  // Timestamp to stamp at commit; 0 (default) stamps RecordClockNanos()
  // (core/clock.h: CLOCK_REALTIME through the TSC) then.
  void set_timestamp(int64_t ns) { timestamp_ns_ = ns; }
  // Encodes `headers` into headers(); false (nothing written) unless their
  // encoded length is headers().size(). Headers written this way are not
  // parsed again at commit; bytes written into headers() by hand are.
  bool write_headers(std::span<const Header> list);

 private:
  friend class RingProducer;
  void AbortUnfinished();
  // Makes this an active claim (try_claim's two paths).
  [[gnu::always_inline]] inline void Fill(const Ring* ring, uint64_t position, uint64_t offset,
                                          uint64_t frame_length, uint32_t key_length,
                                          uint32_t headers_length, uint32_t value_length,
                                          uint8_t flags, uint64_t unblock_seen);
  const Ring* ring_ = nullptr;
  std::byte* frame_ = nullptr;
  uint64_t position_ = 0;
  uint64_t offset_ = 0;
  int64_t timestamp_ns_ = 0;
  uint32_t frame_length_ = 0;
  uint32_t key_length_ = 0;
  uint32_t headers_length_ = 0;
  uint32_t value_length_ = 0;
  uint64_t unblock_seen_ = 0;  // the ring's unblock_epoch at claim time
  uint8_t flags_ = 0;
  bool headers_encoded_ = false;  // by write_headers: commit need not parse them
  ClaimStatus status_ = ClaimStatus::kInvalid;
};

// Result of RingProducer::publish().
struct PublishResult {
  uint32_t published = 0;  // deferred records readers can now see
  uint32_t unblocked = 0;  // deferred records an unblocker declared dead first: lost
};

// Result of a convenience write.
struct WriteResult {
  ClaimStatus status = ClaimStatus::kInvalid;
  CommitStatus commit = CommitStatus::kNotClaimed;
  uint64_t offset = 0;
  bool ok() const { return status == ClaimStatus::kOk && commit == CommitStatus::kOk; }
};

// A producer handle. Not thread-safe: one per thread. A batch of deferred
// records belongs to one handle: a copy starts without it, a move takes it,
// and the destructor (or an assignment over a handle) publishes it.
class RingProducer {
 public:
  RingProducer() = default;
  explicit RingProducer(Ring ring) : ring_(ring), light_fence_(RegisterLightFence()) {}
  RingProducer(const RingProducer& other) noexcept;
  RingProducer& operator=(const RingProducer& other) noexcept;
  RingProducer(RingProducer&& other) noexcept;
  RingProducer& operator=(RingProducer&& other) noexcept;
  ~RingProducer();

  // Claims room for one record. Never blocks, allocates or enters the kernel.
  // has_key distinguishes an empty key from none.
  [[nodiscard]] RingClaim try_claim(uint32_t key_length, uint32_t headers_length,
                                    uint32_t value_length, bool has_key);
  // Stamps, checksums and publishes the record; wakes sleeping readers. With
  // deferred records pending, publishes them together with this one; then
  // kUnblocked means this record or one of them was lost. Headers that do
  // not parse (core/record.h's encoding) abort the claim: kBadHeaders.
  [[nodiscard]] CommitStatus commit(RingClaim& claim);
  // Batching, single-producer rings: stamps and checksums the record but does
  // not publish it yet (kOk; a claim an unblocker took meanwhile is reported
  // by the publish, as lost). Readers see nothing from the first deferred record on
  // until publish() (or commit()) publishes them all at once: the producer
  // writes a batch without a reader taking its lines away after each record.
  // Publish within the unblock timeout, or an unblocker takes the batch for a
  // dead claim. On a multi-producer ring this is commit(). At most
  // kMaxDeferred records wait; the one that fills the batch publishes it.
  [[nodiscard]] CommitStatus commit_deferred(RingClaim& claim);
  // Publishes the deferred records, newest first and the oldest last, so a
  // reader that sees the oldest sees them all; wakes sleeping readers.
  // `unblocked` also counts records lost from a batch that try_claim
  // published on its own (before reporting kFull) since the last call.
  PublishResult publish();
  uint32_t deferred() const { return deferred_count_; }
  static constexpr uint32_t kMaxDeferred = 64;
  // Turns the claim into padding: readers skip it (the offset is skipped too).
  [[nodiscard]] CommitStatus abort(RingClaim& claim);
  // Multi-producer rings: claims are marked with `owner` (not 0), so that an
  // unblocker can ask whether their producer lives (RingUnblocker).
  void set_owner(uint64_t owner) { owner_ = owner; }
  uint64_t owner() const { return owner_; }
  // True if `claim` is an active claim this producer made (commit, abort and
  // commit_deferred refuse any other with kNotClaimed).
  bool owns(const RingClaim& claim) const { return claim.ok() && claim.ring_ == &ring_; }

  // Claim + copy + commit.
  [[nodiscard]] WriteResult try_write(std::optional<std::string_view> key,
                                      std::span<const Header> headers, std::string_view value,
                                      int64_t timestamp_ns = 0);
  // Writes `batch` as one batch frame (core/batch.h): its records take
  // consecutive offsets from `offset` in the result on, and all carry
  // `timestamp_ns` (0: the clock, as commit). kInvalid for an empty batch,
  // kTooLarge if the frame exceeds this ring's max_frame_length; on any
  // refusal (kFull: back-pressure) nothing was written and the batch is
  // unchanged. Only readers that ask for batches (ReaderOptions::batches)
  // read the frame. Deferred records pending on this producer are published
  // with the batch (or before kFull), as by commit and try_claim.
  [[nodiscard]] WriteResult try_write(const RecordBatch& batch, int64_t timestamp_ns = 0);

  // Waits until a gating reader releases space (sleeping) or, on a
  // multi-producer ring without one, until the open claim that holds the
  // claim horizon is finished (spinning, then yielding: the claimer may need
  // this CPU), at most timeout_ns. Returns false on timeout. Call after
  // try_claim returned kFull.
  bool WaitForSpace(int64_t timeout_ns);

  const Ring& ring() const { return ring_; }

 private:
  // Moves the claimed frame's commit word to `state`; false if an unblocker
  // declared the claim dead first. `seen`: the claim's unblock_seen_.
  [[gnu::always_inline]] inline bool Publish(std::byte* frame, uint64_t position, FrameState state,
                                             uint64_t seen, uint32_t frame_length);
  PublishResult PublishBatch();
  // try_claim past the single producer's fast path: a new lap, a stale
  // gating bound, several producers, or another handle claimed since.
  // A claim that takes `records` offsets (a batch frame takes one per record).
  [[gnu::always_inline]] inline void ClaimInto(RingClaim& claim, uint32_t key_length,
                                               uint32_t headers_length, uint32_t value_length,
                                               uint8_t flags, uint32_t records);
  void TryClaimSlow(RingClaim& claim, uint64_t frame_length, uint32_t key_length,
                    uint32_t headers_length, uint32_t value_length, uint8_t flags,
                    uint32_t records);
  // Multi-producer ring without a gating reader: the claim horizon, walked
  // up to `limit` (a position every frame below which is claimed) if it is
  // below `need`. See claim_horizon above.
  uint64_t ClaimHorizon(uint64_t need, uint64_t limit, uint64_t lap_reference) const;
  friend class RingClaim;  // AbortUnfinished
  // commit() with deferred records pending: the record joins the batch.
  CommitStatus CommitWithBatch(RingClaim& claim);
  // abort() of an active claim, whoever made it.
  CommitStatus AbortClaim(RingClaim& claim);
  // kOk if the claim's header area parses; else aborts it: kBadHeaders.
  CommitStatus AbortBadHeaders(RingClaim& claim);
  void CopySettings(const RingProducer& other);
  void TakeBatch(RingProducer& other);
  // Writes everything of a committed record but its commit word and length.
  [[gnu::always_inline]] inline void Seal(RingClaim& claim);
  // The single producer's store-then-check-for-sleepers fence.
  [[gnu::always_inline]] inline void SleeperFence() const;
  // Single producer: true if an unblocker has taken the frame at `position`,
  // claimed when the ring's unblock_epoch read `seen`. Looks at the frame's
  // commit word only if an unblock began or ran since (loading the commit
  // word misses whenever a reader has just polled it: a cross-core trip).
  [[gnu::always_inline]] inline bool Unblocked(uint64_t position, uint64_t seen) const;

  Ring ring_;
  uint64_t gating_cache_position_ = 0;  // local copy of the lowest gating position
  uint64_t write_lap_known_ = 0;        // local copy of write_lap
  bool light_fence_ = false;            // this process runs the light side of HeavyFence
  uint64_t owner_ = 0;                  // marked into multi-producer claims
  // Single producer: the tail as this handle last stored it. While the tail
  // word still reads fast_packed_ and a claim ends by fast_limit_ (in the lap
  // of the last claim, within the cached gating bound), a claim needs no
  // unpacking, lap or gating work (try_claim's fast path).
  uint64_t fast_packed_ = ~0ull;  // ~0: no claim through this handle yet
  uint64_t fast_position_ = 0;
  uint64_t fast_offset_ = 0;
  uint64_t fast_limit_ = 0;
  // The batch of deferred records.
  uint32_t deferred_count_ = 0;
  uint32_t lost_unreported_ = 0;   // lost in batches try_claim published
  bool batch_quiet_ = true;        // every claim of the batch saw batch_seen_
  bool batch_clock_read_ = false;  // batch_timestamp_ns_ is this batch's
  uint64_t batch_seen_ = 0;        // unblock_epoch when the first was claimed
  int64_t batch_timestamp_ns_ = 0;
  uint64_t deferred_[kMaxDeferred];         // positions of the deferred records
  uint32_t deferred_length_[kMaxDeferred];  // and their frame lengths
};

enum class ReadStatus : uint8_t {
  kOk = 0,       // `records` records were handed over (possibly 0: nothing committed yet)
  kOverrun = 1,  // the reader was lapped: call Resync; records/torn say what was delivered
  kCorrupt = 2,  // the frame at position() fails validation (see check)
};
std::string_view ReadStatusName(ReadStatus s);

struct ReadResult {
  ReadStatus status = ReadStatus::kOk;
  uint32_t records = 0;                // handed to the handler in this call
  uint32_t torn = 0;                   // of those, how many may have been overwritten while handled
  FrameCheck check = FrameCheck::kOk;  // for kCorrupt
  // read_copy only: the buffer was full before `limit` records (more may
  // follow at once); and, when it could not hold even the first frame, the
  // bytes that frame needs (nothing was read: call again with a larger one).
  bool buffer_full = false;
  uint64_t buffer_needed = 0;
  // The last frame passed was padding (an aborted or unblocked claim, or
  // wrap padding): the reader's offset is the last record's + 1, which may
  // be below the offsets the padding skipped (see SettledPosition).
  bool ended_on_padding = false;
};

// What Resync skipped.
struct Lost {
  uint64_t bytes = 0;
  uint64_t records = 0;
  RingPosition from;  // where the reader was
  RingPosition to;    // where it is now
};

struct ReaderOptions {
  bool verify_crc = false;  // CRC-check every frame read (read_copy: the copy handed over)
  // Read batch frames (core/batch.h), handing their records over one by one.
  // Without it a batch frame is corrupt (kBadLayout), as for every reader
  // that does not know the format.
  bool batches = false;
};

// One reader cursor. Not thread-safe. Any number may read the same ring.
class RingReader {
 public:
  RingReader() = default;
  // REQUIRES: start is a frame boundary of this ring (tail(), earliest(), a
  // gating position, or a position/offset pair returned by this class).
  RingReader(Ring ring, RingPosition start, ReaderOptions options = {})
      : ring_(ring), next_(start), options_(options) {}

  // Hands up to `limit` committed records, in order, to handler(const
  // RecordView&). The view points into the ring and is valid until the
  // handler returns, provided this reader is not lapped meanwhile; if it was,
  // the result says kOverrun and how many of the delivered records may be torn.
  template <typename Handler>
  ReadResult read(Handler&& handler, uint32_t limit);

  // As read(), but no record the handler sees can be torn: the batch's
  // frames are first copied into `buffer` (as many whole frames as fit, up
  // to `limit`), then checked not to have been overwritten meanwhile, and
  // only then handed over, as views into `buffer` (valid until the handler
  // returns; `buffer` is free again after the call). If the producers lapped
  // the copy, nothing is handed over, the cursor stays at the batch start
  // and the result is kOverrun (Resync, or re-read the batch from disk).
  // This is a seqlock-style read: the price is one memcpy per frame. A
  // frame larger than the whole buffer is not read: the result says how
  // large a buffer it needs (buffer_needed; at most
  // AlignedFrameLength(ring().max_frame_length())).
  template <typename Handler>
  ReadResult read_copy(Handler&& handler, uint32_t limit, std::span<std::byte> buffer);

  // True if the frame at position() is committed (a record or padding).
  bool HasData() const;
  // True if producers lapped this reader (read() would say kOverrun).
  bool Lapped() const { return ring_.Overwritten(next_.position); }
  // Sleeps (per strategy) until HasData() or timeout. Returns HasData().
  bool Wait(WaitStrategy strategy, int64_t timeout_ns);

  // After kOverrun: moves to the oldest readable frame boundary and says
  // what was skipped.
  Lost Resync();

  RingPosition position() const { return next_; }
  // position(), with the offset an aborted or unblocked claim's padding at
  // the tail skipped: padding does not say which offset it held, the tail
  // does (every offset below the tail's was claimed before it). For what a
  // reader reports (lag), never to resume from: a log that ends before the
  // padding gives that offset out again after a restore.
  RingPosition SettledPosition() const {
    RingPosition at = next_;
    const RingPosition t = ring_.tail();
    if (t.position == at.position && t.offset > at.offset) at.offset = t.offset;
    return at;
  }
  // Sets the cursor. REQUIRES: as for the constructor.
  void Seek(RingPosition p) {
    next_ = p;
    after_padding_ = true;
  }
  const Ring& ring() const { return ring_; }

  // Persister support: walks committed frames from position() without a
  // handler, up to max_bytes and never across the end of the ring lap. The
  // returned span [begin, end) holds whole frames, padding included (wrap
  // padding shorter than kMinPaddingWithLength is skipped); `on_frame(const RecordView&, position)`
  // is called for every data/control frame. Does not advance: call Consume(result). Checks CRCs if
  // the reader's options say so. kCorrupt: the frame at `end` fails its checks; the extent holds
  // the good frames before it. kOverrun: producers lapped the walk (the frames it passed may be
  // torn): Resync. A batch frame (ReaderOptions::batches) is passed whole and its entries checked;
  // `records` counts records, those of a batch the reader stands inside from its offset on.
  // A record whose offset is past the next one with no padding (with a length) before it ends the
  // extent: jump_to is its offset when it stands at `end` (producers were handed a tail word
  // written over; a log holding the jump would read as damaged there). Seek past the offsets.
  struct Extent {
    ReadStatus status = ReadStatus::kOk;
    FrameCheck check = FrameCheck::kOk;
    uint64_t begin = 0;  // position of the first byte
    uint64_t end = 0;    // position after the last frame written
    RingPosition next;   // where the cursor goes after Consume
    uint32_t records = 0;
    uint64_t jump_to = 0;        // nonzero: the unpadded jump above
    bool after_padding = false;  // the last frame in the extent (or before it) is padding
  };
  template <typename OnFrame>
  Extent Scan(uint64_t max_bytes, OnFrame&& on_frame) const;
  void Consume(const Extent& e) {
    next_ = e.next;
    after_padding_ = e.after_padding;
  }

 private:
  enum class Step : uint8_t { kRecord, kPadding, kEmpty, kLapped, kCorrupt };
  struct Peek {
    Step step;
    uint64_t aligned_length;  // bytes to advance
    FrameCheck check;
    const std::byte* frame;
    uint32_t frame_length = 0;  // kRecord: the length that was checked
    bool batch = false;         // kRecord: a batch frame (options_.batches)
    uint32_t records = 0;       // kRecord: records in the frame (its count, read once)
  };
  // walk_batches: check every entry of a batch frame now (read() checks
  // them as it hands them over).
  Peek PeekAt(RingPosition at, bool verify_crc, bool walk_batches = true) const;

  friend class RingUnblocker;

  Ring ring_;
  RingPosition next_;
  // Scan: the last frame passed with a length was padding, so the next
  // record's offset may jump. True after construction, Seek and Resync
  // (what came before is not known).
  bool after_padding_ = true;
  ReaderOptions options_;
  // read() stopped inside a batch at walk_at_ (frame position, offset of the
  // next record), with the walk at byte walk_entry_ of the frame: the next
  // call resumes there instead of walking from the first entry again (and
  // does not check the CRC again), so reading a batch takes one walk
  // whatever the limit.
  RingPosition walk_at_{~0ull, 0};
  uint64_t walk_base_ = 0;  // the batch's first offset, as read then
  uint64_t walk_entry_ = 0;
};

// Turns dead claims into padding. Keeps its own cursor that follows committed
// frames; when the cursor stays on an uncommitted frame below the tail for
// `timeout_ns`, the claim there is declared dead, unless `owner_alive` says
// its producer lives: `owner_alive(owner)` gets the owner a multi-producer
// claim was marked with (RingProducer::set_owner), or 0 for a claim that
// carries none (unmarked: a single producer's, or one whose producer stopped
// between taking the tail and marking it). A live producer's claim is never
// taken: the bytes it still writes in place would land in records claimed
// after it. Without `owner_alive` every stale claim is taken.
class RingUnblocker {
 public:
  using OwnerAlive = std::function<bool(uint64_t owner)>;
  RingUnblocker(Ring ring, int64_t timeout_ns, OwnerAlive owner_alive = {});

  // kOwnerAlive: stale, but owner_alive says its producer lives; asked again
  // after another timeout. kInconsistent: the control words do not fit the
  // frames (a peer wrote over them): committed frames run past the tail
  // (`position` is the tail, `bytes` how far past), or a hole no claim
  // covers is too short for padding (`position`, `bytes`). Nothing was
  // changed; readers and persistence stop there. Reported once per place.
  enum class Action : uint8_t { kNone, kPadded, kHoleFilled, kOwnerAlive, kInconsistent };
  struct Result {
    Action action = Action::kNone;
    uint64_t position = 0;
    uint64_t bytes = 0;
  };
  // Advances the cursor and acts if stuck long enough. `now_ns` is monotonic.
  Result Poll(int64_t now_ns);

  // Unblocks the claim at `position` (a frame boundary that is not
  // committed, below the tail) now, unless owner_alive says its producer
  // lives. Exposed for tests and tools.
  Result Unblock(uint64_t position);

 private:
  Ring ring_;
  int64_t timeout_ns_;
  OwnerAlive owner_alive_;
  RingPosition cursor_;
  uint64_t stuck_position_ = ~0ull;
  int64_t stuck_since_ns_ = 0;
  uint64_t lap_seq_seen_ = 0;
  int64_t lap_seq_since_ns_ = 0;
  uint64_t write_lap_known_ = 0;
  uint64_t horizon_stuck_position_ = ~0ull;
  int64_t horizon_stuck_since_ns_ = 0;
  uint64_t inconsistent_reported_ = ~0ull;  // the position last reported kInconsistent
  bool tail_behind_reported_ = false;       // committed frames past the tail, reported
};

// ---------------------------------------------------------------------------
// Implementation of the templates.

namespace internal {
inline std::atomic_ref<uint64_t> Word64(uint64_t& w) { return std::atomic_ref<uint64_t>(w); }
inline std::atomic_ref<uint64_t> Word64At(std::byte* p) {
  return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(p));
}
inline std::atomic_ref<uint32_t> Word32At(std::byte* p) {
  return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(p));
}
// memcpy of `n` ring bytes that a lapping producer may be rewriting (the
// caller validates afterwards); out of line so that the one deliberate race
// has a name (tests/tsan.supp).
void CopyRingBytes(std::byte* to, const std::byte* from, std::size_t n);
}  // namespace internal

template <typename Handler>
ReadResult RingReader::read(Handler&& handler, uint32_t limit) {
  ReadResult result;
  const RingPosition batch_start_position = next_;
  const uint64_t batch_start = next_.position;
  if (ring_.Overwritten(next_.position)) {
    result.status = ReadStatus::kOverrun;
    return result;
  }
  uint32_t delivered = 0;
  bool after_padding = false;
  while (delivered < limit) {
    const bool resuming = next_ == walk_at_;
    const Peek p = PeekAt(next_, options_.verify_crc && !resuming, /*walk_batches=*/false);
    if (p.step == Step::kEmpty) break;
    if (p.step == Step::kLapped) {
      result.status = ReadStatus::kOverrun;
      break;
    }
    if (p.step == Step::kCorrupt) {
      // A lapping producer rewriting the frame looks like garbage.
      result.status =
          ring_.Overwritten(next_.position) ? ReadStatus::kOverrun : ReadStatus::kCorrupt;
      result.check = p.check;
      break;
    }
    if (p.step == Step::kPadding) {
      next_.position += p.aligned_length;
      after_padding = true;
      continue;
    }
    const RecordView view(p.frame, p.frame_length);
    after_padding = false;
    if (!p.batch) {
      handler(static_cast<const RecordView&>(view));
      ++delivered;
      next_.position += p.aligned_length;
      next_.offset = view.offset() + 1;
      continue;
    }
    // A batch: its records from the reader's offset on (it may have stopped
    // inside this batch at the limit), up to the limit. The walker checks
    // each entry as it goes: a malformed one ends the batch as corrupt after
    // the good records before it, as a bad frame after good ones does.
    BatchWalker walker(view);
    const uint64_t skip = next_.offset > view.offset() ? next_.offset - view.offset() : 0;
    if (resuming && view.offset() == walk_base_ && skip > 0 && skip <= walker.count()) {
      walker.Resume(static_cast<uint32_t>(skip), walk_entry_);
    }
    RecordView record;
    while (delivered < limit && walker.Next(&record)) {
      if (walker.index() <= skip) continue;
      handler(static_cast<const RecordView&>(record));
      ++delivered;
    }
    if (walker.Complete()) {
      next_.position += p.aligned_length;
      next_.offset = view.offset() + walker.count();
      continue;
    }
    next_.offset = view.offset() + std::max<uint64_t>(skip, walker.index());
    if (walker.ok() && walker.index() > skip) {
      walk_at_ = next_;
      walk_base_ = view.offset();
      walk_entry_ = walker.entry_position();
    }
    if (!walker.ok() || walker.index() == walker.count()) {
      // A lapping producer rewriting it, or a peer scribbling on it.
      result.status =
          ring_.Overwritten(next_.position) ? ReadStatus::kOverrun : ReadStatus::kCorrupt;
      result.check = FrameCheck::kBadLayout;
    }
    break;  // the limit, inside the batch, or the damage
  }
  result.records = delivered;
  result.ended_on_padding = after_padding;
  if (delivered > 0) {
    // Anything the handler saw may have been overwritten while it looked.
    if (ring_.Overwritten(batch_start)) {
      result.status = ReadStatus::kOverrun;
      result.torn = delivered;  // conservative: the batch is suspect
      // Offsets read from possibly rewritten frames cannot be trusted: go
      // back to the batch start, so a caller that re-reads (from disk)
      // redelivers the suspect records rather than skipping any.
      next_ = batch_start_position;
      result.ended_on_padding = false;
    }
  }
  return result;
}

template <typename Handler>
ReadResult RingReader::read_copy(Handler&& handler, uint32_t limit, std::span<std::byte> buffer) {
  ReadResult result;
  const RingPosition batch_start = next_;
  if (ring_.Overwritten(next_.position)) {
    result.status = ReadStatus::kOverrun;
    return result;
  }
  RingPosition at = next_;
  uint32_t copied = 0;
  std::size_t used = 0;
  bool after_padding = false;
  while (copied < limit) {
    // The CRC, if asked for, is checked on the copy: that is what the
    // handler sees.
    const Peek p = PeekAt(at, /*verify_crc=*/false, /*walk_batches=*/false);
    if (p.step == Step::kEmpty) break;
    if (p.step == Step::kLapped) {
      result.status = ReadStatus::kOverrun;
      break;
    }
    if (p.step == Step::kCorrupt) {
      result.status = ring_.Overwritten(at.position) ? ReadStatus::kOverrun : ReadStatus::kCorrupt;
      result.check = p.check;
      break;
    }
    if (p.step == Step::kPadding) {
      at.position += p.aligned_length;
      after_padding = true;
      continue;
    }
    if (p.aligned_length > buffer.size() - used) {
      result.buffer_full = true;
      if (copied == 0) result.buffer_needed = p.aligned_length;
      break;
    }
    std::byte* copy = buffer.data() + used;
    internal::CopyRingBytes(copy, p.frame, p.frame_length);
    // The copy keeps the length that was checked, whatever the ring said
    // while it was copied (a peer may scribble on it).
    EncodeFixed32(copy + frame::kLength, p.frame_length);
    if (options_.verify_crc &&
        DecodeFixed32(copy + frame::kCrc) != ComputeFrameCrc(copy, p.frame_length)) {
      // Not handed over; a lapping producer's bytes say kOverrun below.
      result.status = ReadStatus::kCorrupt;
      result.check = FrameCheck::kBadCrc;
      break;
    }
    after_padding = false;
    // The copy's offset must not go back (it was checked in the ring, then
    // copied: a frame that changed meanwhile can say anything). Only the
    // first frame may start below the cursor: a batch it stopped inside.
    // The hand-over below relies on that.
    const uint64_t copy_offset = DecodeFixed64(copy + frame::kOffset);
    if (copy_offset < at.offset && (!p.batch || used > 0)) {
      result.status = ReadStatus::kCorrupt;  // or kOverrun, below
      result.check = FrameCheck::kBadLayout;
      break;
    }
    if (!p.batch) {
      if (options_.batches && (static_cast<uint8_t>(copy[frame::kFlags]) & kFlagBatch) != 0) {
        // Checked as a plain frame, copied as a batch: changed meanwhile.
        result.status = ReadStatus::kCorrupt;  // or kOverrun, below
        result.check = FrameCheck::kBadLayout;
        break;
      }
      used += p.aligned_length;
      at.position += p.aligned_length;
      at.offset = copy_offset + 1;
      ++copied;
      continue;
    }
    // A batch is checked again on the copy: that is what the handler walks.
    const FrameCheck check = CheckBatchFrame(copy, p.frame_length, p.frame_length, false);
    if (check != FrameCheck::kOk) {
      result.status = ReadStatus::kCorrupt;  // or kOverrun, below
      result.check = check;
      break;
    }
    const RecordView view(copy, p.frame_length);
    const uint64_t count = BatchCount(view);
    const uint64_t skip =
        at.offset > view.offset() ? std::min(at.offset - view.offset(), count) : 0;
    const uint64_t take = std::min<uint64_t>(count - skip, limit - copied);
    used += p.aligned_length;
    copied += static_cast<uint32_t>(take);
    if (skip + take < count) {
      at.offset = view.offset() + skip + take;  // the limit, inside the batch
      break;
    }
    at.position += p.aligned_length;
    at.offset = view.offset() + count;
  }
  // Overwritten's acquire fence orders the copies above before its check.
  if (ring_.Overwritten(batch_start.position)) {
    result.status = ReadStatus::kOverrun;  // the copies are suspect: none is handed over
    return result;
  }
  if (result.status == ReadStatus::kOverrun) return result;  // stays at the batch start
  // Only the copies are read from here on: the views' lengths are the ones
  // checked in the ring, their bytes cannot change any more.
  std::size_t pos = 0;
  uint32_t handed = 0;
  while (handed < copied && pos < used) {
    const std::byte* f = buffer.data() + pos;
    const uint32_t length = DecodeFixed32(f + frame::kLength);
    const RecordView view(f, length);
    pos += AlignedFrameLength(length);
    if (!options_.batches || (view.flags() & kFlagBatch) == 0) {
      handler(static_cast<const RecordView&>(view));
      ++handed;
      continue;
    }
    // Only the first frame can start inside its batch; the copy was checked.
    BatchWalker walker(view);
    const uint64_t skip =
        batch_start.offset > view.offset() ? batch_start.offset - view.offset() : 0;
    RecordView record;
    while (handed < copied && walker.Next(&record)) {
      if (walker.index() <= skip) continue;
      handler(static_cast<const RecordView&>(record));
      ++handed;
    }
  }
  next_ = at;
  result.records = handed;
  result.ended_on_padding = after_padding;
  return result;
}

template <typename OnFrame>
RingReader::Extent RingReader::Scan(uint64_t max_bytes, OnFrame&& on_frame) const {
  Extent e;
  e.begin = next_.position;
  e.end = next_.position;
  e.next = next_;
  e.after_padding = after_padding_;
  const uint64_t lap_end = (next_.position | (ring_.capacity() - 1)) + 1;
  RingPosition at = next_;
  while (at.position < lap_end && at.position - e.begin < max_bytes) {
    const Peek p = PeekAt(at, options_.verify_crc);
    if (p.step == Step::kEmpty) {
      // Not written yet, or already overwritten by a later lap.
      if (ring_.Overwritten(at.position)) e.status = ReadStatus::kOverrun;
      break;
    }
    if (p.step == Step::kLapped) {
      e.status = ReadStatus::kOverrun;
      break;
    }
    if (p.step == Step::kCorrupt) {
      // A frame a lapping producer is rewriting fails its checks too.
      e.status = ring_.Overwritten(at.position) ? ReadStatus::kOverrun : ReadStatus::kCorrupt;
      e.check = p.check;
      break;
    }
    if (p.step == Step::kPadding) {
      if (p.aligned_length > max_bytes - (at.position - e.begin) && e.end > e.begin) break;
      at.position += p.aligned_length;
      if (at.position == lap_end && p.aligned_length < kMinPaddingWithLength) {
        // Wrap padding too short to say its length: skipped, not part of
        // the extent (it never stands for a claim: no frame is this short).
        e.next = at;
        break;
      }
      // Padding with a length is part of the extent, at the end of the lap
      // too: an aborted or unblocked claim that ends exactly there looks like
      // wrap padding, and readers of the log accept the offset it skipped
      // only after a padding frame.
      e.end = at.position;
      e.next = at;
      e.after_padding = true;
      continue;
    }
    const RecordView view(p.frame, p.frame_length);
    if (view.offset() > at.offset && !e.after_padding) [[unlikely]] {
      e.jump_to = view.offset();
      break;
    }
    if (p.aligned_length > max_bytes - (at.position - e.begin) && e.records > 0) break;
    on_frame(static_cast<const RecordView&>(view), at.position);
    // A reader inside a batch has handed over its records below its offset:
    // the extent holds the whole frame but counts only the rest.
    const uint64_t passed = at.offset > view.offset() ? at.offset - view.offset() : 0;
    at.position += p.aligned_length;
    at.offset = view.offset() + p.records;
    e.records += static_cast<uint32_t>(p.records - std::min<uint64_t>(passed, p.records));
    e.end = at.position;
    e.next = at;
    e.after_padding = false;
  }
  return e;
}

}  // namespace runnel

#endif  // RUNNEL_CORE_RING_H_
