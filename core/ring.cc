#include "core/ring.h"

#include <sched.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "core/clock.h"
#include "core/crc32c.h"

namespace runnel {

namespace {

using internal::Word32At;
using internal::Word64;
using internal::Word64At;

constexpr uint64_t kLow32 = 0xFFFFFFFFull;

// The packed tail fails to unpack against the lap reference only while a
// producer publishes a newer reference than the tail we loaded: loading both
// again succeeds. Words that stay the same and still fail this many times
// were written over (a peer scribbled on the control block).
constexpr int kStableUnpackFailures = 1024;

// The packed tail: offset mod 2^32 high, position/8 mod 2^32 low. Both halves
// are reconstructed against a full reference that is known to be behind the
// tail by less than 2^31 units (the lap reference, at most two laps behind).
constexpr uint64_t PackTail(uint64_t position, uint64_t offset) {
  return ((offset & kLow32) << 32) | ((position >> 3) & kLow32);
}

// Reconstructs (position, offset) from `packed` against a reference pair.
// False if the reference is ahead of the packed value (a newer lap reference
// than the tail snapshot): reload and retry.
bool Unpack(uint64_t packed, uint64_t ref_position, uint64_t ref_offset, RingPosition* out) {
  const uint64_t units = (packed - (ref_position >> 3)) & kLow32;
  const uint64_t records = ((packed >> 32) - ref_offset) & kLow32;
  if (units >= (1ull << 31) || records >= (1ull << 31)) return false;
  out->position = ref_position + units * 8;
  out->offset = ref_offset + records;
  return true;
}

uint64_t StateOf(uint64_t word) { return word & kStateMask; }

constexpr uint64_t kPrefetchAhead = 512;
inline void PrefetchForWrite(const void* p) {
#if defined(__x86_64__)
  asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p, 1, 3);
#endif
}
constexpr uint64_t S(FrameState s) { return static_cast<uint64_t>(s); }

uint64_t RandomSalt() {
  uint64_t salt = 0;
  if (getrandom(&salt, sizeof salt, 0) != static_cast<ssize_t>(sizeof salt)) {
    salt = static_cast<uint64_t>(MonotonicNanos()) * 0x9E3779B97F4A7C15ull ^
           static_cast<uint64_t>(getpid());
  }
  salt &= ~kStateMask;
  return salt == 0 ? 0x5A5A5A5A5A5A5A58ull : salt;
}

// CRC32C of the descriptor words after the magic: version to base_offset.
uint32_t DescriptorCrc(const internal::RingControl& c) {
  constexpr size_t kFrom = offsetof(internal::RingControl, version);
  constexpr size_t kTo = offsetof(internal::RingControl, descriptor_crc);
  return crc32c::Value(reinterpret_cast<const std::byte*>(&c) + kFrom, kTo - kFrom);
}

void WakeAll(uint32_t& seq, uint32_t& waiters) {
  // seq_cst: pairs with the sleeper's seq_cst increment of `waiters` and its
  // re-check of the condition (Dekker), so a wake-up is never lost.
  if (std::atomic_ref<uint32_t>(waiters).load(std::memory_order_seq_cst) != 0) {
    std::atomic_ref<uint32_t>(seq).fetch_add(1, std::memory_order_seq_cst);
    FutexWakeAll(&seq);
  }
}

// Spins, yields or sleeps until ready() or the deadline. The blocking path
// registers in `waiters` and sleeps on `seq`. The clock is first read after
// kClockEvery spins (a few microseconds), so a wait that ends sooner (the
// common case on a busy ring) reads no clock; the timeout counts from then.
// kSpinYield and kBlocking spin for kSpinPhaseNs before they yield or sleep.
constexpr uint32_t kClockEvery = 64;
constexpr int64_t kSpinPhaseNs = 20'000;

template <typename Ready>
bool WaitUntil(Ready&& ready, WaitStrategy strategy, int64_t timeout_ns, uint32_t& seq,
               uint32_t& waiters, bool heavy_fence = false) {
  if (ready()) return true;
  if (timeout_ns == 0) return false;
  int64_t spin_start = 0;
  int64_t deadline = INT64_MAX;
  for (uint32_t i = 1;; ++i) {
    if (ready()) return true;
    CpuRelax();
    if (i % kClockEvery != 0) continue;
    const int64_t now = MonotonicNanos();
    if (spin_start == 0) {
      spin_start = now;
      // Saturating: a huge timeout means no deadline, not an overflow.
      if (timeout_ns > 0) deadline = timeout_ns > INT64_MAX - now ? INT64_MAX : now + timeout_ns;
    }
    if (now >= deadline) return ready();
    if (strategy != WaitStrategy::kBusySpin && now - spin_start >= kSpinPhaseNs) break;
  }
  std::atomic_ref<uint32_t> seq_ref(seq);
  std::atomic_ref<uint32_t> waiters_ref(waiters);
  for (;;) {
    if (ready()) return true;
    const int64_t now = MonotonicNanos();
    if (now >= deadline) return false;
    if (strategy == WaitStrategy::kSpinYield) {
      sched_yield();
      continue;
    }
    waiters_ref.fetch_add(1, std::memory_order_seq_cst);
    // The registration before the re-check, whatever orders ready() uses.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const uint32_t observed = seq_ref.load(std::memory_order_seq_cst);
    // A single producer checks `waiters` after its commit without a full
    // fence (see RingProducer::Publish): this is the other half.
    const bool fenced = !heavy_fence || HeavyFence();
    if (!ready()) {
      // Sleep in slices of at most 100 ms so a waker that died between its
      // commit and its wake costs a bounded delay; 1 ms where this process
      // could not run the heavy fence (a producer may miss us).
      const int64_t slice = std::min<int64_t>(deadline - now, fenced ? 100'000'000 : 1'000'000);
      FutexWait(&seq, observed, slice);
    }
    waiters_ref.fetch_sub(1, std::memory_order_seq_cst);
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Ring

Ring::Ring(internal::RingControl* control, std::byte* data, const internal::RingControl& d)
    : control_(control),
      data_(data),
      capacity_(d.capacity),
      mask_(d.capacity - 1),
      salt_(d.salt),
      base_offset_(d.base_offset),
      max_frame_length_(d.max_frame_length),
      single_producer_(d.mode == static_cast<uint32_t>(RingMode::kSingleProducer)) {}

Status Ring::ValidateOptions(const RingOptions& o) {
  if (o.capacity < kRingMinCapacity || o.capacity > kRingMaxCapacity ||
      (o.capacity & (o.capacity - 1)) != 0) {
    return Status::InvalidArgument("ring capacity " + std::to_string(o.capacity) +
                                   " must be a power of two between 64 KiB and 1 GiB");
  }
  if (o.max_frame_length != 0 &&
      (o.max_frame_length < kFrameHeaderLength || o.max_frame_length > o.capacity / 2)) {
    return Status::InvalidArgument("max frame length " + std::to_string(o.max_frame_length) +
                                   " must be between 40 bytes and half the ring capacity (" +
                                   std::to_string(o.capacity / 2) + ")");
  }
  if (o.mode != RingMode::kSingleProducer && o.mode != RingMode::kMultiProducer) {
    return Status::InvalidArgument("unknown ring mode");
  }
  return Status::Ok();
}

Result<Ring> Ring::Create(std::span<std::byte> memory, const RingOptions& options) {
  RUNNEL_RETURN_IF_ERROR(ValidateOptions(options));
  if (memory.size() < RequiredBytes(options.capacity)) {
    return Status::InvalidArgument("ring needs " + std::to_string(RequiredBytes(options.capacity)) +
                                   " bytes, got " + std::to_string(memory.size()));
  }
  if (reinterpret_cast<uintptr_t>(memory.data()) % 128 != 0) {
    return Status::InvalidArgument("ring memory must be 128-byte aligned");
  }
  // Zero-fill: every commit word reads kEmpty, and every page is faulted in
  // now rather than on the hot path.
  std::memset(memory.data(), 0, RequiredBytes(options.capacity));
  auto* c = reinterpret_cast<internal::RingControl*>(memory.data());
  c->version = (kRingVersionMajor << 16) | kRingVersionMinor;
  c->mode = static_cast<uint32_t>(options.mode);
  c->capacity = options.capacity;
  c->max_frame_length = options.max_frame_length != 0 ? options.max_frame_length
                                                      : static_cast<uint32_t>(options.capacity / 4);
  c->gating_slot_count = kMaxGatingSlots;
  c->salt = options.salt != 0 ? (options.salt & ~kStateMask) : RandomSalt();
  if (c->salt == 0) c->salt = RandomSalt();
  c->base_offset = options.base_offset;
  c->descriptor_crc = DescriptorCrc(*c);
  c->tail = PackTail(0, options.base_offset);
  c->lap_position = 0;
  c->lap_offset = options.base_offset;
  c->write_lap = 0;
  // Release: everything above is visible to whoever sees the magic.
  Word64(c->magic).store(kRingMagic, std::memory_order_release);
  return Ring(c, memory.data() + kRingHeaderBytes, *c);
}

Result<Ring> Ring::Attach(std::span<std::byte> memory) {
  if (memory.size() < kRingHeaderBytes + kRingMinCapacity) {
    return Status::Corruption("region of " + std::to_string(memory.size()) +
                              " bytes is too small to hold a ring");
  }
  if (reinterpret_cast<uintptr_t>(memory.data()) % 128 != 0) {
    return Status::InvalidArgument("ring memory must be 128-byte aligned");
  }
  auto* c = reinterpret_cast<internal::RingControl*>(memory.data());
  // Acquire: pairs with Create's release store of the magic.
  const uint64_t magic = Word64(c->magic).load(std::memory_order_acquire);
  if (magic == 0) return Status::Unavailable("ring is not initialized yet");
  if (magic != kRingMagic) return Status::Corruption("not a runnel ring (bad magic)");
  // One copy of the descriptor is checked and used: a peer writing over it
  // meanwhile cannot slip a value past the checks.
  internal::RingControl d;
  std::memcpy(&d, c, offsetof(internal::RingControl, reserved0));
  const uint32_t major = d.version >> 16;
  if (major != kRingVersionMajor) {
    return Status::VersionMismatch("ring layout version " + std::to_string(major) + "." +
                                   std::to_string(d.version & 0xFFFF) +
                                   " but this library speaks " + std::to_string(kRingVersionMajor) +
                                   "." + std::to_string(kRingVersionMinor));
  }
  const uint64_t cap = d.capacity;
  if (cap < kRingMinCapacity || cap > kRingMaxCapacity || (cap & (cap - 1)) != 0 ||
      RequiredBytes(cap) > memory.size() || d.max_frame_length < kFrameHeaderLength ||
      d.max_frame_length > cap / 2 || (d.mode != 1 && d.mode != 2) || d.salt == 0 ||
      (d.salt & kStateMask) != 0) {
    return Status::Corruption("ring descriptor is invalid (capacity " + std::to_string(cap) +
                              ", max frame " + std::to_string(d.max_frame_length) + ")");
  }
  // Rings made by 5.0 and 5.1 carry no checksum.
  if ((d.version & 0xFFFF) >= 2 && d.descriptor_crc != DescriptorCrc(d)) {
    return Status::Corruption(
        "ring descriptor fails its checksum (the ring's control block was written over)");
  }
  return Ring(c, memory.data() + kRingHeaderBytes, d);
}

RingPosition Ring::tail() const {
  uint64_t last_packed = 0;
  uint64_t last_ref = 0;
  for (int stable = 0;;) {
    // Acquire on the tail first, then the lap words: if the lap reference is
    // newer than the tail snapshot, Unpack fails and we take a new snapshot.
    const uint64_t packed = Word64(control_->tail).load(std::memory_order_acquire);
    const uint64_t ref_position = Word64(control_->lap_position).load(std::memory_order_acquire);
    const uint64_t ref_offset = Word64(control_->lap_offset).load(std::memory_order_acquire);
    RingPosition out;
    if (Unpack(packed, ref_position, ref_offset, &out)) return out;
    if (packed == last_packed && ref_position == last_ref) {
      // Written over: the lap reference is the best guess, and spinning on
      // would hang every process of the bus. Producers refuse to claim
      // (kCorrupt); readers find no frame with their tag there.
      if (++stable >= kStableUnpackFailures) return RingPosition{ref_position, ref_offset};
    } else {
      stable = 0;
      last_packed = packed;
      last_ref = ref_position;
    }
    CpuRelax();
  }
}

RingPosition Ring::earliest() const {
  for (int tries = 0; tries < 64; ++tries) {
    // Seqlock read of the lap reference (a consistent position/offset pair).
    const uint64_t s1 = Word64(control_->lap_seq).load(std::memory_order_acquire);
    if (s1 & 1) {
      CpuRelax();
      continue;
    }
    const uint64_t p = Word64(control_->lap_position).load(std::memory_order_acquire);
    const uint64_t o = Word64(control_->lap_offset).load(std::memory_order_acquire);
    const uint64_t s2 = Word64(control_->lap_seq).load(std::memory_order_acquire);
    if (s1 != s2) continue;
    const RingPosition t = tail();
    RingPosition best = t;
    if (p <= t.position && t.position - p <= capacity_) best = RingPosition{p, o};
    // A gating reader's position is a frame boundary producers cannot pass.
    for (uint32_t i = 0; i < kMaxGatingSlots; ++i) {
      if (GatingOwner(i) == 0) continue;
      RingPosition g = GatingPosition(i);
      if (g.position < best.position && g.position <= t.position &&
          t.position - g.position <= capacity_ && g.offset >= base_offset()) {
        // A reader inside a batch frame stands at the offset of its next
        // record: the records before it are still here.
        if (g.position < t.position) {
          const uint64_t first = FrameOffsetAt(g.position);
          if (first < g.offset && first >= base_offset()) g.offset = first;
        }
        best = g;
      }
    }
    return best;
  }
  return tail();
}

uint64_t Ring::FrameOffsetAt(uint64_t position) const {
  // The position comes from shared memory: a frame boundary has room for a
  // header before the end of the ring, or it is none.
  if (position % kFrameAlignment != 0 || capacity_ - (position & mask_) < kFrameHeaderLength) {
    return ~0ull;
  }
  const std::byte* f = At(position);
  const uint64_t w = Word64At(const_cast<std::byte*>(f)).load(std::memory_order_acquire);
  if ((w & ~kStateMask) != Tag(position) || StateOf(w) != S(FrameState::kData) ||
      (static_cast<uint8_t>(f[frame::kFlags]) & kFlagBatch) == 0) {
    return ~0ull;
  }
  return DecodeFixed64(f + frame::kOffset);
}

void Ring::PublishLap(uint64_t position, uint64_t offset) const {
  auto seq = Word64(control_->lap_seq);
  uint64_t s = seq.load(std::memory_order_relaxed);
  if (s & 1) return;  // somebody else is publishing a reference right now
  // acq_rel: the stores below cannot move above taking the seqlock.
  if (!seq.compare_exchange_strong(s, s + 1, std::memory_order_acq_rel,
                                   std::memory_order_relaxed)) {
    return;
  }
  if (position > Word64(control_->lap_position).load(std::memory_order_relaxed)) {
    Word64(control_->lap_position).store(position, std::memory_order_release);
    Word64(control_->lap_offset).store(offset, std::memory_order_release);
  }
  // Release: readers that see the even sequence see the pair.
  seq.store(s + 2, std::memory_order_release);
}

void Ring::RaiseWriteLap(uint64_t position, uint64_t& known) const {
  const uint64_t lap = position & ~mask_;
  if (lap <= known) return;
  auto w = Word64(control_->write_lap);
  // seq_cst: a full barrier on x86, so the raise is visible before any of
  // our stores into the lap.
  uint64_t v = w.load(std::memory_order_seq_cst);
  while (v < lap && !w.compare_exchange_weak(v, lap, std::memory_order_seq_cst)) {
  }
  known = std::max(v, lap);
  // Release fence: pairs with the reader's acquire fence in Overwritten. A
  // reader that sees any of our later stores sees the raise.
  std::atomic_thread_fence(std::memory_order_release);
}

uint64_t Ring::FinishedLength(uint64_t position) const {
  const uint64_t index = position & mask_;
  const uint64_t room = capacity_ - index;
  std::byte* f = data_ + index;
  const uint64_t w = Word64At(f).load(std::memory_order_acquire);
  if ((w & ~kStateMask) != Tag(position)) return 0;
  const uint64_t state = StateOf(w);
  if (state == S(FrameState::kClaimed) || state == S(FrameState::kPoison)) return 0;
  if (state == S(FrameState::kPadding) && room < kMinPaddingWithLength) return room;
  if (state != S(FrameState::kPadding) && state != S(FrameState::kData) &&
      state != S(FrameState::kControl)) {
    return kBadFrame;
  }
  const uint64_t len =
      AlignedFrameLength(Word32At(f + frame::kLength).load(std::memory_order_relaxed));
  const uint64_t min = state == S(FrameState::kPadding) ? kFrameAlignment : kFrameHeaderLength;
  return len < min || len > room ? kBadFrame : len;
}

uint64_t Ring::NextTaggedFrame(uint64_t position, uint64_t limit) const {
  const uint64_t lap_end = (position | mask_) + 1;
  for (uint64_t q = position + kFrameAlignment; q < std::min(limit, lap_end);
       q += kFrameAlignment) {
    if ((Word64At(At(q)).load(std::memory_order_acquire) & ~kStateMask) == Tag(q)) return q;
  }
  return lap_end <= limit ? lap_end : position;
}

bool Ring::Overwritten(uint64_t from) const {
  // Acquire fence: the reads of ring bytes before it are ordered before the
  // load of write_lap below (seqlock-style validation).
  std::atomic_thread_fence(std::memory_order_acquire);
  if (Word64(control_->write_lap).load(std::memory_order_relaxed) <= (from & ~mask_)) {
    return false;  // nobody has begun to write in a later lap
  }
  return OverwriteHorizon(from) > from + capacity_;
}

uint64_t Ring::OverwriteHorizon(uint64_t floor) const {
  const uint64_t packed = Word64(control_->tail).load(std::memory_order_acquire);
  const uint64_t lap = Word64(control_->lap_position).load(std::memory_order_acquire);
  // Both `floor` and the lap reference are at or behind the tail.
  const uint64_t ref = std::max(floor, lap);
  const uint64_t units = (packed - (ref >> 3)) & kLow32;
  if (units >= (1ull << 31)) return ref;
  return ref + units * 8;
}

namespace {

using GatingSlot = internal::RingControl::GatingSlot;

// The owner's update of a slot's released pair: the pair readers are not
// reading, then the flip. Only the slot's owner calls it.
void WriteReleased(GatingSlot& s, RingPosition p) {
  // Acquire: a new owner continues from the count its predecessor left.
  const uint64_t seq = Word64(s.seq).load(std::memory_order_acquire);
  // Release fence: a reader that sees any of the stores below (into the pair
  // that was current before our last flip) also sees that flip, and retries.
  std::atomic_thread_fence(std::memory_order_release);
  GatingSlot::Released& next = s.released[(seq + 1) & 1];
  Word64(next.position).store(p.position, std::memory_order_relaxed);
  Word64(next.offset).store(p.offset, std::memory_order_relaxed);
  // Release: whoever sees the new seq sees the pair it points at.
  Word64(s.seq).store(seq + 1, std::memory_order_release);
}

// A consistent released pair. Retries only while the owner is updating; an
// owner that died mid-update left the current pair whole.
RingPosition ReadReleased(GatingSlot& s) {
  for (;;) {
    const uint64_t seq = Word64(s.seq).load(std::memory_order_acquire);
    GatingSlot::Released& cur = s.released[seq & 1];
    const RingPosition p{Word64(cur.position).load(std::memory_order_acquire),
                         Word64(cur.offset).load(std::memory_order_acquire)};
    if (Word64(s.seq).load(std::memory_order_acquire) == seq) return p;
    CpuRelax();
  }
}

}  // namespace

Result<uint32_t> Ring::AcquireGatingSlot(uint64_t owner, RingPosition start) const {
  for (uint32_t i = 0; i < kMaxGatingSlots; ++i) {
    auto& slot = control_->gating[i];
    uint64_t expected = 0;
    // acq_rel: a slot taken here is ours; a released slot reads position 0
    // until we store ours, which only makes producers more conservative.
    if (Word64(slot.owner).compare_exchange_strong(expected, owner, std::memory_order_acq_rel)) {
      Word64(slot.durable_position).store(start.position, std::memory_order_relaxed);
      Word64(slot.durable_offset).store(start.offset, std::memory_order_relaxed);
      std::atomic_ref<int32_t>(slot.error).store(0, std::memory_order_relaxed);
      Word64(slot.unread_from).store(0, std::memory_order_relaxed);
      Word64(slot.unread_to).store(0, std::memory_order_relaxed);
      WriteReleased(slot, start);
      return i;
    }
  }
  return Status::ResourceExhausted("all " + std::to_string(kMaxGatingSlots) +
                                   " gating slots of the ring are taken");
}

void Ring::SetUnread(uint32_t slot, OffsetRange unread) const {
  auto& s = control_->gating[slot];
  Word64(s.unread_from).store(unread.from, std::memory_order_relaxed);
  // Release: a reader that sees `to` sees `from`.
  Word64(s.unread_to).store(unread.to, std::memory_order_release);
}

Ring::OffsetRange Ring::Unread(uint32_t slot) const {
  auto& s = control_->gating[slot];
  const uint64_t to = Word64(s.unread_to).load(std::memory_order_acquire);
  return {Word64(s.unread_from).load(std::memory_order_relaxed), to};
}

RingPosition Ring::OldestIntact() const {
  const RingPosition e = earliest();
  if (single_producer_ || MinGatingPosition()) return e;
  const RingPosition t = tail();
  const uint64_t h = Word64(control_->claim_horizon).load(std::memory_order_acquire);
  if (h >= e.position || h > t.position || t.position - h > capacity_) return e;
  // Walk from the horizon to the first frame that carries its offset: a
  // claim (marked with its offset when it was made) or a committed record.
  // Padding in front of it has no offset to give, and readers skip it.
  for (uint64_t q = h; q < e.position;) {
    const uint64_t w = Word64At(At(q)).load(std::memory_order_acquire);
    if ((w & ~kStateMask) != Tag(q)) return e;  // an unmarked hole: no offset here
    const uint64_t state = StateOf(w);
    if (state == S(FrameState::kClaimed) || state == S(FrameState::kData) ||
        state == S(FrameState::kControl)) {
      const uint64_t offset = Word64At(At(q) + frame::kOffset).load(std::memory_order_relaxed);
      // Sane, and still there after the reads: else the lap reference.
      if (offset < base_offset() || offset >= e.offset || Overwritten(q)) return e;
      return RingPosition{q, offset};
    }
    const uint64_t len = FinishedLength(q);
    if (len == 0 || len == kBadFrame) return e;
    q += len;
  }
  return e;
}

void Ring::ReownGatingSlot(uint32_t slot, uint64_t owner) const {
  Word64(control_->gating[slot].owner).store(owner, std::memory_order_release);
}

void Ring::RaiseClaimHorizon(uint64_t position) const {
  if (single_producer_) return;
  auto h = Word64(control_->claim_horizon);
  uint64_t v = h.load(std::memory_order_acquire);
  while (v < position && !h.compare_exchange_weak(v, position, std::memory_order_acq_rel,
                                                  std::memory_order_acquire)) {
  }
}

void Ring::ReleaseGatingSlot(uint32_t slot) const {
  auto& s = control_->gating[slot];
  // The producers' bound from now on: everything below the slot's position
  // is finished (it was read), and they may have claimed up to a ring past it.
  RaiseClaimHorizon(ReadReleased(s).position);
  // Position 0 first: a producer that still sees the owner sees a low
  // position and stays conservative.
  WriteReleased(s, RingPosition{0, ReadReleased(s).offset});
  Word64(s.owner).store(0, std::memory_order_release);
  // seq_cst fence: the release before the check for sleeping producers.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  WakeAll(control_->space_seq, control_->space_waiters);
}

uint64_t Ring::GatingOwner(uint32_t slot) const {
  return Word64(control_->gating[slot].owner).load(std::memory_order_acquire);
}

RingPosition Ring::GatingPosition(uint32_t slot) const {
  return ReadReleased(control_->gating[slot]);
}

void Ring::AdvanceGatingSlot(uint32_t slot, RingPosition released) const {
  // Before the release: a walk of the claim horizon that started below it
  // cannot be published once producers may rewrite what it reads.
  RaiseClaimHorizon(released.position);
  WriteReleased(control_->gating[slot], released);
  // seq_cst fence: orders the release before the check for sleeping
  // producers (they re-check after registering in space_waiters).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  WakeAll(control_->space_seq, control_->space_waiters);
}

void Ring::PublishDurable(uint32_t slot, RingPosition durable) const {
  auto& s = control_->gating[slot];
  Word64(s.durable_position).store(durable.position, std::memory_order_relaxed);
  // seq_cst: orders the publication before the check for sleeping producers.
  Word64(s.durable_offset).store(durable.offset, std::memory_order_seq_cst);
  WakeAll(control_->durable_seq, control_->durable_waiters);
}

RingPosition Ring::Durable(uint32_t slot) const {
  auto& s = control_->gating[slot];
  return {Word64(s.durable_position).load(std::memory_order_acquire),
          Word64(s.durable_offset).load(std::memory_order_acquire)};
}

std::optional<uint64_t> Ring::MinDurableOffset() const {
  std::optional<uint64_t> min;
  for (uint32_t i = 0; i < kMaxGatingSlots; ++i) {
    auto& s = control_->gating[i];
    if (Word64(s.owner).load(std::memory_order_acquire) == 0) continue;
    // seq_cst: the waiter's half of the handshake with PublishDurable.
    const uint64_t o = Word64(s.durable_offset).load(std::memory_order_seq_cst);
    if (!min || o < *min) min = o;
  }
  return min;
}

void Ring::SetGatingError(uint32_t slot, int32_t error) const {
  std::atomic_ref<int32_t>(control_->gating[slot].error).store(error, std::memory_order_release);
  WakeAll(control_->durable_seq, control_->durable_waiters);
}

int32_t Ring::GatingError(uint32_t slot) const {
  return std::atomic_ref<int32_t>(control_->gating[slot].error).load(std::memory_order_acquire);
}

bool Ring::WaitForDurable(uint64_t offset, int64_t timeout_ns) const {
  // Settled, as Bus::DescribeTopic reports it: a slot durable up to the tail
  // has every offset below the tail's settled, also those an aborted or
  // unblocked last claim skipped (its offset is the last record's + 1).
  auto durable = [&] {
    const RingPosition t = tail();
    std::optional<uint64_t> min;
    for (uint32_t i = 0; i < kMaxGatingSlots; ++i) {
      auto& s = control_->gating[i];
      if (Word64(s.owner).load(std::memory_order_acquire) == 0) continue;
      // seq_cst: the waiter's half of the handshake with PublishDurable;
      // the position after it is at least the one published with it.
      const uint64_t offset = Word64(s.durable_offset).load(std::memory_order_seq_cst);
      const uint64_t o =
          SettledOffset({Word64(s.durable_position).load(std::memory_order_acquire), offset}, t);
      if (!min || o < *min) min = o;
    }
    return min && *min > offset;
  };
  // Also stop waiting when nobody persists, or a persister reports an error.
  auto settled = [&] {
    if (durable()) return true;
    bool any = false;
    for (uint32_t i = 0; i < kMaxGatingSlots; ++i) {
      if (GatingOwner(i) == 0) continue;
      any = true;
      if (GatingError(i) != 0) return true;
    }
    return !any;
  };
  (void)WaitUntil(settled, WaitStrategy::kBlocking, timeout_ns, control_->durable_seq,
                  control_->durable_waiters);
  return durable();
}

std::optional<uint64_t> Ring::MinGatingPosition() const {
  std::optional<uint64_t> min;
  for (uint32_t i = 0; i < kMaxGatingSlots; ++i) {
    auto& s = control_->gating[i];
    if (Word64(s.owner).load(std::memory_order_acquire) == 0) continue;
    const uint64_t p = ReadReleased(s).position;
    if (!min || p < *min) min = p;
  }
  return min;
}

uint64_t Ring::unblocked_claims() const {
  return Word64(control_->unblocked_claims).load(std::memory_order_relaxed);
}
uint64_t Ring::unblocked_bytes() const {
  return Word64(control_->unblocked_bytes).load(std::memory_order_relaxed);
}
uint64_t Ring::aborted_claims() const {
  return Word64(control_->aborted_claims).load(std::memory_order_relaxed);
}

std::string_view ClaimStatusName(ClaimStatus s) {
  switch (s) {
    case ClaimStatus::kOk:
      return "ok";
    case ClaimStatus::kFull:
      return "ring full (back-pressure)";
    case ClaimStatus::kTooLarge:
      return "record too large";
    case ClaimStatus::kUnblocked:
      return "claim was unblocked as dead";
    case ClaimStatus::kInvalid:
      return "invalid claim";
    case ClaimStatus::kCorrupt:
      return "ring control block is corrupt";
  }
  return "unknown";
}

std::string_view CommitStatusName(CommitStatus s) {
  switch (s) {
    case CommitStatus::kOk:
      return "ok";
    case CommitStatus::kUnblocked:
      return "claim was unblocked as dead; record lost";
    case CommitStatus::kNotClaimed:
      return "no active claim";
    case CommitStatus::kBadHeaders:
      return "malformed headers in the claim; claim aborted";
  }
  return "unknown";
}

std::string_view ReadStatusName(ReadStatus s) {
  switch (s) {
    case ReadStatus::kOk:
      return "ok";
    case ReadStatus::kOverrun:
      return "overrun";
    case ReadStatus::kCorrupt:
      return "corrupt";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------
// Producer

namespace {

// Writes the commit word of the frame at `position` from whatever stale value
// it holds to `tag | state`, unless an unblocker got there first (it leaves
// our tag with kPoison or kPadding). Returns false if we lost. At least
// release: what was written before is visible to whoever sees the word.
bool MarkFrame(std::byte* frame, uint64_t tag, FrameState state,
               std::memory_order order = std::memory_order_release) {
  auto w = Word64At(frame);
  uint64_t old = w.load(std::memory_order_relaxed);
  for (;;) {
    if ((old & ~kStateMask) == tag) return false;  // an unblocker owns it
    if (w.compare_exchange_weak(old, tag | S(state), order, std::memory_order_relaxed)) {
      return true;
    }
  }
}

template <typename T>
T Once(const T& v) {
  return *static_cast<const volatile T*>(&v);
}

// A single producer's claim is unmarked: its tag in the commit word means an
// unblocker has poisoned or padded it.
bool UnblockerOwns(std::byte* frame, uint64_t tag) {
  return (Word64At(frame).load(std::memory_order_relaxed) & ~kStateMask) == tag;
}

}  // namespace

RingClaim& RingClaim::operator=(RingClaim&& other) noexcept {
  if (this != &other) {
    if (ok() && ring_ != nullptr) {
      RingProducer p(*ring_);
      (void)p.AbortClaim(*this);
    }
    // Field by field, each read once and whole (volatile: the compiler may
    // neither merge nor widen the loads). A wide load spanning fields that
    // try_claim has just written one by one cannot be forwarded from the
    // store buffer: it would wait for the producer's pending ring stores
    // before it, which are waiting for their lines to come from a reader.
    ring_ = Once(other.ring_);
    frame_ = Once(other.frame_);
    position_ = Once(other.position_);
    offset_ = Once(other.offset_);
    timestamp_ns_ = Once(other.timestamp_ns_);
    frame_length_ = Once(other.frame_length_);
    key_length_ = Once(other.key_length_);
    headers_length_ = Once(other.headers_length_);
    value_length_ = Once(other.value_length_);
    unblock_seen_ = Once(other.unblock_seen_);
    flags_ = Once(other.flags_);
    headers_encoded_ = Once(other.headers_encoded_);
    status_ = Once(other.status_);
    other.frame_ = nullptr;
    other.status_ = ClaimStatus::kInvalid;
  }
  return *this;
}

inline void RingClaim::Fill(const Ring* ring, uint64_t position, uint64_t offset,
                            uint64_t frame_length, uint32_t key_length, uint32_t headers_length,
                            uint32_t value_length, uint8_t flags, uint64_t unblock_seen) {
  ring_ = ring;
  frame_ = ring->At(position);
  position_ = position;
  offset_ = offset;
  frame_length_ = static_cast<uint32_t>(frame_length);
  key_length_ = key_length;
  headers_length_ = headers_length;
  value_length_ = value_length;
  flags_ = flags;
  unblock_seen_ = unblock_seen;
  headers_encoded_ = false;
  status_ = ClaimStatus::kOk;
}

bool RingClaim::write_headers(std::span<const Header> list) {
  if (!ok() || EncodedHeadersLength(list) != static_cast<int64_t>(headers_length_)) return false;
  EncodeHeaders(list, headers().data());
  headers_encoded_ = true;
  return true;
}

void RingClaim::AbortUnfinished() {
  RingProducer p(*ring_);
  (void)p.AbortClaim(*this);
}

inline void RingProducer::ClaimInto(RingClaim& c, uint32_t key_length, uint32_t headers_length,
                                    uint32_t value_length, uint8_t flags, uint32_t records) {
  const uint64_t frame_length = FrameLength(key_length, headers_length, value_length);
  if (frame_length > ring_.max_frame_length_) {
    c.status_ = ClaimStatus::kTooLarge;
    return;
  }
  const uint64_t position = fast_position_;
  const uint64_t end = position + AlignedFrameLength(frame_length);
  internal::RingControl* ctl = ring_.control_;
  auto tail = Word64(ctl->tail);
  // The single producer's common case: the same lap as its last claim, room
  // below the gating bound it already knows, and nobody else claimed since
  // (the tail word is still its own; relaxed, since it wrote it).
  if (!ring_.single_producer_ || end > fast_limit_ ||
      tail.load(std::memory_order_relaxed) != fast_packed_) {
    TryClaimSlow(c, frame_length, key_length, headers_length, value_length, flags, records);
    return;
  }
  // Before the claim exists, as in TryClaimSlow.
  const uint64_t unblock_seen = Word64(ctl->unblock_epoch).load(std::memory_order_acquire);
  const uint64_t packed = PackTail(end, fast_offset_ + records);
  tail.store(packed, std::memory_order_release);
  fast_packed_ = packed;
  fast_position_ = end;
  PrefetchForWrite(ring_.At(position + kPrefetchAhead));
  c.Fill(&ring_, position, fast_offset_, frame_length, key_length, headers_length, value_length,
         flags, unblock_seen);
  fast_offset_ += records;
}

RingClaim RingProducer::try_claim(uint32_t key_length, uint32_t headers_length,
                                  uint32_t value_length, bool has_key) {
  RingClaim c;  // the one object returned, so it is built in place
  if (key_length > kMaxKeyLength || headers_length > kMaxHeadersLength ||
      (!has_key && key_length != 0)) {
    c.status_ = ClaimStatus::kInvalid;
    return c;
  }
  ClaimInto(c, key_length, headers_length, value_length, has_key ? kFlagHasKey : 0, 1);
  return c;
}

void RingProducer::TryClaimSlow(RingClaim& c, uint64_t frame_length, uint32_t key_length,
                                uint32_t headers_length, uint32_t value_length, uint8_t flags,
                                uint32_t records) {
  const uint64_t aligned = AlignedFrameLength(frame_length);
  const uint64_t cap = ring_.capacity_;
  internal::RingControl* ctl = ring_.control_;
  // Disarmed until this claim succeeds: a refusal (kFull after a gating
  // reader appeared) must not leave a bound the fast path would still use.
  fast_limit_ = 0;
  // Before the claim exists (the tail store below): an unblock that can touch
  // this claim begins after this read, or is running during it.
  const uint64_t unblock_seen =
      ring_.single_producer_ ? Word64(ctl->unblock_epoch).load(std::memory_order_acquire) : 0;
  auto tail = Word64(ctl->tail);
  // Acquire: pairs with other producers' CAS so we reconstruct a current tail.
  uint64_t packed = tail.load(std::memory_order_acquire);
  RingPosition at;
  uint64_t pad = 0;
  uint64_t ref_position = 0;
  uint64_t end = 0;
  int stable_failures = 0;
  for (;;) {
    ref_position = Word64(ctl->lap_position).load(std::memory_order_acquire);
    const uint64_t ref_offset = Word64(ctl->lap_offset).load(std::memory_order_acquire);
    if (!Unpack(packed, ref_position, ref_offset, &at)) {
      const uint64_t again = tail.load(std::memory_order_acquire);
      if (again == packed &&
          Word64(ctl->lap_position).load(std::memory_order_acquire) == ref_position) {
        if (++stable_failures >= kStableUnpackFailures) {
          c.status_ = ClaimStatus::kCorrupt;
          return;
        }
        CpuRelax();
      } else {
        stable_failures = 0;
      }
      packed = again;
      continue;
    }
    const uint64_t index = at.position & ring_.mask_;
    pad = index + aligned > cap ? cap - index : 0;
    end = at.position + pad + aligned;
    if (end > gating_cache_position_ + cap) {
      const std::optional<uint64_t> min = ring_.MinGatingPosition();
      // No gating reader: producers re-check once a claim ends a ring past
      // the lap reference. A gating reader registers at earliest() or later,
      // which is never behind the lap reference, so it is noticed before
      // anything it may read is overwritten (but for the one claim in flight
      // while it registers). A single producer runs free; several stay
      // within a ring of the claim horizon (see claim_horizon in ring.h).
      uint64_t bound = min ? *min : ref_position;
      if (!min && !ring_.single_producer_) {
        const uint64_t horizon = ClaimHorizon(end - cap, at.position, ref_position);
        if (end > horizon + cap) {
          gating_cache_position_ = 0;
          c.status_ = ClaimStatus::kFull;
          return;
        }
        bound = std::min(horizon, ref_position);
      }
      gating_cache_position_ = bound;
      if (min && end > *min + cap) {
        // Deferred records hold the gating readers back: publish them, so
        // that waiting for space can end.
        if (deferred_count_ > 0) lost_unreported_ += PublishBatch().unblocked;
        c.status_ = ClaimStatus::kFull;
        return;
      }
    }
    const uint64_t next = PackTail(end, at.offset + records);
    if (ring_.mode() == RingMode::kSingleProducer) {
      // Release: readers computing the overwrite horizon see our claim.
      tail.store(next, std::memory_order_release);
      break;
    }
    // acq_rel: the winner owns [at.position, end); losers reload.
    if (tail.compare_exchange_weak(packed, next, std::memory_order_acq_rel,
                                   std::memory_order_acquire)) {
      break;
    }
  }
  const uint64_t record_position = at.position + pad;
  // Before any write in a new lap (see write_lap in ring.h); once per lap.
  ring_.RaiseWriteLap(record_position, write_lap_known_);
  if (pad != 0) {
    std::byte* p = ring_.At(at.position);
    if (pad >= kMinPaddingWithLength) {
      Word32At(p + frame::kLength).store(static_cast<uint32_t>(pad), std::memory_order_relaxed);
    }
    if (!MarkFrame(p, ring_.Tag(at.position), FrameState::kPadding)) {
      c.status_ = ClaimStatus::kUnblocked;
      return;
    }
    WakeAll(ctl->data_seq, ctl->data_waiters);
  }
  // A record in a newer lap than the reference: publish it as the new one.
  bool lap_published = true;
  if ((record_position & ~ring_.mask_) > (ref_position & ~ring_.mask_)) {
    ring_.PublishLap(record_position, at.offset);
    // PublishLap gives way to a concurrent publisher (or one that died
    // mid-publish): then keep retrying on the slow path.
    lap_published = Word64(ctl->lap_position).load(std::memory_order_acquire) >= record_position;
  }
  std::byte* f = ring_.At(record_position);
  // Ask for a line a few records ahead in exclusive state now, so the stores
  // there do not each wait for a cross-core invalidation (readers of the last
  // lap may still hold it).
  PrefetchForWrite(ring_.At(record_position + kPrefetchAhead));
  // With several producers the length goes in now, for an unblocker (below);
  // a single producer writes it at commit with the rest of the header.
  if (!ring_.single_producer_) {
    Word32At(f + frame::kLength)
        .store(static_cast<uint32_t>(frame_length), std::memory_order_relaxed);
    // And the offset, for a reader that must start at an open claim
    // (Ring::OldestIntact), and the owner, for an unblocker that asks whether
    // it lives (the timestamp's place: commit writes the timestamp there).
    Word64At(f + frame::kOffset).store(at.offset, std::memory_order_relaxed);
    Word64At(f + frame::kTimestamp).store(owner_, std::memory_order_relaxed);
  }
  // With several producers the claim is marked now, so an unblocker that
  // finds it stale knows its length and leaves the claims after it alone. A
  // single producer skips the mark: its commit is the frame's only write to
  // the commit word, the line readers spin on, and an unblocker treats an
  // unmarked stale claim as a hole ending at the tail, which is exact here.
  if (!ring_.single_producer_ && !MarkFrame(f, ring_.Tag(record_position), FrameState::kClaimed)) {
    c.status_ = ClaimStatus::kUnblocked;
    return;
  }
  c.Fill(&ring_, record_position, at.offset, frame_length, key_length, headers_length, value_length,
         flags, unblock_seen);
  if (ring_.single_producer_) {
    // Arm the fast path for the rest of this lap, up to the gating bound.
    fast_packed_ = PackTail(end, at.offset + records);
    fast_position_ = end;
    fast_offset_ = at.offset + records;
    fast_limit_ = lap_published
                      ? std::min((record_position | ring_.mask_) + 1, gating_cache_position_ + cap)
                      : 0;
  }
}

inline void RingProducer::SleeperFence() const {
  // The check for sleepers in WakeAll must not move above the commit store:
  // sleepers run HeavyFence (core/wait.h), so a compiler barrier is enough
  // once this process is registered.
  if (light_fence_) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
}

inline bool RingProducer::Unblocked(uint64_t position, uint64_t seen) const {
  // Acquire: pairs with the unblocker's seq_cst kUnblockBegin, which comes
  // before it writes any commit word.
  const uint64_t now = Word64(ring_.control_->unblock_epoch).load(std::memory_order_acquire);
  if (now == seen && (now & internal::kUnblocksRunning) == 0) return false;
  return UnblockerOwns(ring_.At(position), ring_.Tag(position));
}

inline bool RingProducer::Publish(std::byte* f, uint64_t position, FrameState state, uint64_t seen,
                                  uint32_t frame_length) {
  const uint64_t tag = ring_.Tag(position);
  if (ring_.single_producer_) {
    // A plain release store, not a locked instruction: a locked one (and a
    // full fence) waits until every store before it owns its line, a
    // cross-core round trip whenever a reader polls this frame's line. Only
    // an unblocker writes this word besides us, and it leaves our tag. The
    // length goes in only after the check: an unblocker's padding keeps its
    // own length (it may cover more than this claim).
    if (Unblocked(position, seen)) return false;
    Word32At(f + frame::kLength).store(frame_length, std::memory_order_relaxed);
    Word64At(f).store(tag | S(state), std::memory_order_release);
    SleeperFence();
    return true;
  }
  // seq_cst: publishes the frame (release) and orders it before the check
  // for sleeping readers in WakeAll. The CAS fails if an unblocker declared
  // the claim dead first (it leaves our tag in the word).
  uint64_t expected = tag | S(FrameState::kClaimed);
  return Word64At(f).compare_exchange_strong(expected, tag | S(state), std::memory_order_seq_cst);
}

inline void RingProducer::Seal(RingClaim& c) {
  std::byte* f = c.frame_;
  // Every field but the length, which several producers write at claim time
  // (an unblocker may read it) and a single producer writes with the commit
  // word, after its unblock check (Publish, PublishBatch).
  const uint64_t aligned = AlignedFrameLength(c.frame_length_);
  if (aligned != c.frame_length_) std::memset(f + c.frame_length_, 0, aligned - c.frame_length_);
  SealFrameHeader(
      f, c.frame_length_, c.offset_, c.timestamp_ns_ != 0 ? c.timestamp_ns_ : RecordClockNanos(),
      static_cast<uint16_t>(c.key_length_), static_cast<uint16_t>(c.headers_length_), c.flags_);
  c.frame_ = nullptr;
  c.status_ = ClaimStatus::kInvalid;
}

// A record whose header area does not parse would be refused by every
// reader (kBadHeaders) and stop them there: it is never published.
CommitStatus RingProducer::AbortBadHeaders(RingClaim& c) {
  HeaderIterator it(c.headers());
  while (it.valid()) it.Next();
  if (it.ok()) return CommitStatus::kOk;
  (void)AbortClaim(c);
  return CommitStatus::kBadHeaders;
}

CommitStatus RingProducer::commit(RingClaim& c) {
  if (deferred_count_ > 0) return CommitWithBatch(c);
  if (!owns(c)) [[unlikely]] {
    return CommitStatus::kNotClaimed;
  }
  if (c.headers_length_ != 0 && !c.headers_encoded_) {
    if (const CommitStatus s = AbortBadHeaders(c); s != CommitStatus::kOk) return s;
  }
  // Inline to the end: no calls on the common path.
  std::byte* f = c.frame_;
  const uint64_t position = c.position_;
  const uint64_t seen = c.unblock_seen_;
  const uint32_t frame_length = c.frame_length_;
  // If an unblocker took the claim meanwhile, Seal writes only over the hole
  // it padded (readers skip it by the padding's length, which Publish leaves
  // alone), and Publish refuses.
  Seal(c);
  if (!Publish(f, position, FrameState::kData, seen, frame_length)) {
    return CommitStatus::kUnblocked;
  }
  WakeAll(ring_.control_->data_seq, ring_.control_->data_waiters);
  return CommitStatus::kOk;
}

CommitStatus RingProducer::CommitWithBatch(RingClaim& c) {
  // Joins the pending batch, which is published with it, whatever became of
  // this record. (Losses of earlier batches are publish()'s to report.)
  const CommitStatus s = owns(c) ? commit_deferred(c) : CommitStatus::kNotClaimed;
  const PublishResult r = PublishBatch();
  if (s != CommitStatus::kOk) return s;
  return r.unblocked == 0 ? CommitStatus::kOk : CommitStatus::kUnblocked;
}

CommitStatus RingProducer::commit_deferred(RingClaim& c) {
  if (!owns(c)) return CommitStatus::kNotClaimed;
  if (!ring_.single_producer_) return commit(c);
  if (c.headers_length_ != 0 && !c.headers_encoded_) {
    if (const CommitStatus s = AbortBadHeaders(c); s != CommitStatus::kOk) return s;
  }
  // Whether an unblocker took the claim is checked once, when the batch is
  // published (which reports it), right before the frame's stores.
  const uint64_t position = c.position_;
  if (deferred_count_ == 0) {
    batch_seen_ = c.unblock_seen_;
    batch_quiet_ = true;
  }
  // Publish checks no commit word only if every claim of the batch saw the
  // same quiet unblock_epoch that it sees then.
  if (c.unblock_seen_ != batch_seen_ || (c.unblock_seen_ & internal::kUnblocksRunning) != 0) {
    batch_quiet_ = false;
  }
  const uint64_t end = position + AlignedFrameLength(c.frame_length_);
  // One clock reading per batch: records that become visible together carry
  // the time their batch began (Kafka's LogAppendTime is per batch, too).
  if (c.timestamp_ns_ == 0) {
    if (!batch_clock_read_) {
      batch_timestamp_ns_ = RecordClockNanos();
      batch_clock_read_ = true;
    }
    c.timestamp_ns_ = batch_timestamp_ns_;
  }
  const uint32_t frame_length = c.frame_length_;
  Seal(c);
  deferred_length_[deferred_count_] = frame_length;
  deferred_[deferred_count_++] = position;
  // A batch never holds more than a quarter of the ring: producers must not
  // wait on (or, with no gating reader, lap) records nobody can read yet.
  if (deferred_count_ == kMaxDeferred || end - deferred_[0] >= ring_.capacity_ / 4) {
    if (PublishBatch().unblocked != 0) return CommitStatus::kUnblocked;
  }
  return CommitStatus::kOk;
}

PublishResult RingProducer::publish() {
  PublishResult r = PublishBatch();
  r.unblocked += std::exchange(lost_unreported_, 0);
  return r;
}

PublishResult RingProducer::PublishBatch() {
  PublishResult r;
  if (deferred_count_ == 0) return r;
  const uint64_t now = Word64(ring_.control_->unblock_epoch).load(std::memory_order_acquire);
  bool quiet = batch_quiet_ && now == batch_seen_;
  // Release stores, the oldest last: a reader stops at the oldest until it is
  // published, and whoever sees it sees the newer ones. If an unblock began
  // or ran since the batch's first claim, every frame is looked at first.
  for (uint32_t i = deferred_count_; i-- > 0;) {
    const uint64_t position = deferred_[i];
    std::byte* f = ring_.At(position);
    const uint64_t tag = ring_.Tag(position);
    // The oldest is stored last: look at the word once more before it.
    if (i == 0 && quiet &&
        Word64(ring_.control_->unblock_epoch).load(std::memory_order_acquire) != now) {
      quiet = false;
    }
    if (!quiet && UnblockerOwns(f, tag)) {
      ++r.unblocked;
      continue;
    }
    Word32At(f + frame::kLength).store(deferred_length_[i], std::memory_order_relaxed);
    Word64At(f).store(tag | S(FrameState::kData), std::memory_order_release);
    ++r.published;
  }
  deferred_count_ = 0;
  batch_clock_read_ = false;
  SleeperFence();
  WakeAll(ring_.control_->data_seq, ring_.control_->data_waiters);
  return r;
}

CommitStatus RingProducer::abort(RingClaim& c) {
  if (!owns(c)) return CommitStatus::kNotClaimed;
  return AbortClaim(c);
}

CommitStatus RingProducer::AbortClaim(RingClaim& c) {
  std::byte* f = c.frame_;
  const uint64_t position = c.position_;
  const uint64_t seen = c.unblock_seen_;
  c.frame_ = nullptr;
  c.status_ = ClaimStatus::kInvalid;
  // The padding covers the claim (a single producer's Publish writes its
  // length after checking for an unblocker).
  if (!Publish(f, position, FrameState::kPadding, seen, c.frame_length_)) {
    return CommitStatus::kUnblocked;
  }
  Word64(ring_.control_->aborted_claims).fetch_add(1, std::memory_order_relaxed);
  WakeAll(ring_.control_->data_seq, ring_.control_->data_waiters);
  return CommitStatus::kOk;
}

void RingProducer::CopySettings(const RingProducer& other) {
  ring_ = other.ring_;
  gating_cache_position_ = other.gating_cache_position_;
  write_lap_known_ = other.write_lap_known_;
  light_fence_ = other.light_fence_;
  owner_ = other.owner_;
  // The fast path starts disarmed (another ring's tail word may read the same).
  fast_packed_ = ~0ull;
  fast_limit_ = 0;
}

void RingProducer::TakeBatch(RingProducer& other) {
  deferred_count_ = std::exchange(other.deferred_count_, 0);
  lost_unreported_ = std::exchange(other.lost_unreported_, 0);
  batch_quiet_ = other.batch_quiet_;
  batch_clock_read_ = std::exchange(other.batch_clock_read_, false);
  batch_seen_ = other.batch_seen_;
  batch_timestamp_ns_ = other.batch_timestamp_ns_;
  std::copy_n(other.deferred_, deferred_count_, deferred_);
  std::copy_n(other.deferred_length_, deferred_count_, deferred_length_);
}

RingProducer::RingProducer(const RingProducer& other) noexcept { CopySettings(other); }

RingProducer& RingProducer::operator=(const RingProducer& other) noexcept {
  if (this != &other) {
    (void)publish();
    CopySettings(other);
  }
  return *this;
}

RingProducer::RingProducer(RingProducer&& other) noexcept {
  CopySettings(other);
  TakeBatch(other);
}

RingProducer& RingProducer::operator=(RingProducer&& other) noexcept {
  if (this != &other) {
    (void)publish();
    CopySettings(other);
    TakeBatch(other);
  }
  return *this;
}

RingProducer::~RingProducer() {
  if (deferred_count_ > 0) (void)publish();
}

WriteResult RingProducer::try_write(std::optional<std::string_view> key,
                                    std::span<const Header> headers, std::string_view value,
                                    int64_t timestamp_ns) {
  WriteResult r;
  const int64_t hlen = EncodedHeadersLength(headers);
  if (hlen < 0 || hlen > kMaxHeadersLength || (key && key->size() > kMaxKeyLength) ||
      value.size() > UINT32_MAX) {
    r.status = ClaimStatus::kInvalid;
    return r;
  }
  RingClaim c = try_claim(key ? static_cast<uint32_t>(key->size()) : 0, static_cast<uint32_t>(hlen),
                          static_cast<uint32_t>(value.size()), key.has_value());
  r.status = c.status();
  if (!c.ok()) return r;
  if (key && !key->empty()) std::memcpy(c.key().data(), key->data(), key->size());
  if (hlen > 0) (void)c.write_headers(headers);  // the length is the claim's
  if (!value.empty()) std::memcpy(c.value().data(), value.data(), value.size());
  c.set_timestamp(timestamp_ns);
  r.offset = c.offset();
  r.commit = commit(c);
  return r;
}

WriteResult RingProducer::try_write(const RecordBatch& batch, int64_t timestamp_ns) {
  WriteResult r;
  if (batch.empty()) {
    r.status = ClaimStatus::kInvalid;
    return r;
  }
  RingClaim c;  // kTooLarge past this ring's max_frame_length
  ClaimInto(c, 0, 0, batch.frame_length() - kFrameHeaderLength, kFlagBatch, batch.count());
  r.status = c.status();
  if (!c.ok()) return r;
  std::byte* body = c.value().data();
  EncodeFixed64(body, batch.count());  // count, then the reserved word
  std::memcpy(body + kBatchBodyHeaderLength, batch.entries().data(), batch.entries().size());
  c.set_timestamp(timestamp_ns);
  r.offset = c.offset();
  r.commit = commit(c);
  return r;
}

uint64_t RingProducer::ClaimHorizon(uint64_t need, uint64_t limit, uint64_t lap_reference) const {
  auto word = Word64(ring_.control_->claim_horizon);
  uint64_t start = word.load(std::memory_order_acquire);
  for (;;) {
    if (start >= need) return start;
    uint64_t h = start;
    // Left more than a ring behind (a gating reader held the producers
    // meanwhile, or a ring made before the horizon existed): the frames there
    // were rewritten. The lap reference is a frame boundary in the newest lap.
    if (limit > h + ring_.capacity_) h = std::max(h, lap_reference);
    while (h < limit) {
      uint64_t len = ring_.FinishedLength(h);
      // A committed frame with a scribbled length: readers report it; the
      // producers step over it rather than stop for good.
      if (len == Ring::kBadFrame) len = ring_.NextTaggedFrame(h, limit) - h;
      if (len == 0) break;  // an open claim
      h += len;
    }
    if (h == start) return start;
    // From the value the walk started at: if another walk was published
    // meanwhile, producers may have rewritten what this one read.
    if (word.compare_exchange_strong(start, h, std::memory_order_acq_rel,
                                     std::memory_order_acquire)) {
      return h;
    }
  }
}

bool RingProducer::WaitForSpace(int64_t timeout_ns) {
  internal::RingControl* ctl = ring_.control_;
  if (!ring_.single_producer_ && !ring_.MinGatingPosition()) {
    // Held by an open claim at the claim horizon. Nobody wakes us when it is
    // committed, and its producer may be waiting for this CPU: spin, then
    // yield.
    const uint64_t before = Word64(ctl->claim_horizon).load(std::memory_order_acquire);
    auto moved = [&] {
      if (ring_.MinGatingPosition()) return true;
      const RingPosition t = ring_.tail();
      return ClaimHorizon(before + 1, t.position,
                          Word64(ctl->lap_position).load(std::memory_order_acquire)) > before;
    };
    const bool ok =
        WaitUntil(moved, WaitStrategy::kSpinYield, timeout_ns, ctl->space_seq, ctl->space_waiters);
    if (ok) gating_cache_position_ = 0;
    return ok;
  }
  const uint64_t before = gating_cache_position_;
  auto moved = [&] {
    const std::optional<uint64_t> min = ring_.MinGatingPosition();
    return !min || *min > before;
  };
  const bool ok = WaitUntil(moved, WaitStrategy::kBlocking, timeout_ns, ring_.control_->space_seq,
                            ring_.control_->space_waiters);
  if (ok) {
    gating_cache_position_ = 0;  // force a refresh on the next claim
    fast_limit_ = 0;
  }
  return ok;
}

// ---------------------------------------------------------------------------
// Reader

RingReader::Peek RingReader::PeekAt(RingPosition at, bool verify_crc, bool walk_batches) const {
  const uint64_t index = at.position & ring_.mask_;
  const uint64_t room = ring_.capacity_ - index;
  const std::byte* f = ring_.data_ + index;
  // Acquire: pairs with the producer's commit CAS; the frame is visible.
  const uint64_t w = Word64At(const_cast<std::byte*>(f)).load(std::memory_order_acquire);
  if ((w & ~kStateMask) != ring_.Tag(at.position)) return {Step::kEmpty, 0, FrameCheck::kOk, f};
  switch (static_cast<FrameState>(StateOf(w))) {
    case FrameState::kClaimed:
    case FrameState::kPoison:
      return {Step::kEmpty, 0, FrameCheck::kOk, f};
    case FrameState::kPadding: {
      uint64_t len = room;
      if (room >= kMinPaddingWithLength) {
        len = Word32At(const_cast<std::byte*>(f) + frame::kLength).load(std::memory_order_relaxed);
        len = AlignedFrameLength(len);
      }
      if (len < kFrameAlignment || len > room) {
        return {Step::kCorrupt, 0, FrameCheck::kBadLength, f};
      }
      return {Step::kPadding, len, FrameCheck::kOk, f};
    }
    case FrameState::kData:
    case FrameState::kControl: {
      // Batch or not is decided once, from one read of the flags: the
      // check that ran is the one the caller's walk relies on.
      const bool batch =
          options_.batches && (static_cast<uint8_t>(f[frame::kFlags]) & kFlagBatch) != 0;
      const FrameCheck check =
          batch ? CheckBatchFrame(f, room, ring_.max_frame_length_, verify_crc, walk_batches)
                : CheckFrame(f, room, ring_.max_frame_length_, verify_crc);
      if (check != FrameCheck::kOk) return {Step::kCorrupt, 0, check, f};
      // The length is read once more, and that is the one used: the frame
      // may change under us (a lapping producer, a scribbling peer).
      const uint32_t length = DecodeFixed32(f + frame::kLength);
      if (length < kFrameHeaderLength || length > room || length > ring_.max_frame_length_ ||
          (batch && (length < kFrameHeaderLength + kBatchBodyHeaderLength ||
                     length % kFrameAlignment != 0))) {
        return {Step::kCorrupt, 0, FrameCheck::kBadLength, f};
      }
      const RecordView view(f, length);
      // A batch may hold the reader's offset (it stopped inside it); any
      // other frame starts at or past it. A batch has at most one record
      // per 8 bytes of its body.
      const uint64_t records = batch ? BatchCount(view) : 1;
      if (records == 0 ||
          (batch && records > (length - kFrameHeaderLength - kBatchBodyHeaderLength) /
                                  kBatchEntryHeaderLength) ||
          view.offset() + records - 1 < at.offset || view.offset() + records - 1 < view.offset()) {
        return {Step::kCorrupt, 0, FrameCheck::kBadLayout, f};
      }
      return {Step::kRecord, AlignedFrameLength(length),    FrameCheck::kOk, f, length,
              batch,         static_cast<uint32_t>(records)};
    }
    default:
      return {Step::kCorrupt, 0, FrameCheck::kBadLayout, f};
  }
}

namespace internal {
void CopyRingBytes(std::byte* to, const std::byte* from, std::size_t n) {
  std::memcpy(to, from, n);
}
}  // namespace internal

bool RingReader::HasData() const { return PeekAt(next_, false, false).step != Step::kEmpty; }

bool RingReader::Wait(WaitStrategy strategy, int64_t timeout_ns) {
  const uint64_t tag = ring_.Tag(next_.position);
  std::byte* f = ring_.data_ + (next_.position & ring_.mask_);
  auto ready = [&] {
    // seq_cst: the sleeper's half of the Dekker handshake with WakeAll.
    const uint64_t w = Word64At(f).load(std::memory_order_seq_cst);
    if ((w & ~kStateMask) != tag) {
      // Not written yet, or overwritten by a later lap (then read() says so).
      return ring_.Overwritten(next_.position);
    }
    const uint64_t s = StateOf(w);
    return s != S(FrameState::kClaimed) && s != S(FrameState::kPoison);
  };
  return WaitUntil(ready, strategy, timeout_ns, ring_.control_->data_seq,
                   ring_.control_->data_waiters,
                   /*heavy_fence=*/ring_.single_producer_);
}

Lost RingReader::Resync() {
  Lost lost;
  lost.from = next_;
  RingPosition to = ring_.earliest();
  if (to.position < next_.position) to = ring_.tail();
  lost.to = to;
  lost.bytes = to.position - next_.position;
  lost.records = to.offset >= next_.offset ? to.offset - next_.offset : 0;
  next_ = to;
  after_padding_ = true;
  return lost;
}

// ---------------------------------------------------------------------------
// Unblocker

RingUnblocker::RingUnblocker(Ring ring, int64_t timeout_ns, OwnerAlive owner_alive)
    : ring_(ring),
      timeout_ns_(timeout_ns),
      owner_alive_(std::move(owner_alive)),
      cursor_(ring.earliest()) {}

RingUnblocker::Result RingUnblocker::Poll(int64_t now_ns) {
  // A lap-reference writer that died mid-publish leaves the seqlock odd.
  // Whoever notices it odd for a whole timeout closes it.
  {
    auto seq = Word64(ring_.control_->lap_seq);
    const uint64_t s = seq.load(std::memory_order_acquire);
    if ((s & 1) != 0) {
      if (s != lap_seq_seen_) {
        lap_seq_seen_ = s;
        lap_seq_since_ns_ = now_ns;
      } else if (now_ns - lap_seq_since_ns_ >= timeout_ns_) {
        uint64_t expected = s;
        seq.compare_exchange_strong(expected, s + 1, std::memory_order_acq_rel);
      }
    }
  }
  // With a gating reader, a dead claim can only hold anybody up where the
  // slowest gating reader stands (an exact frame boundary producers cannot
  // overwrite). Watch that position without touching the ring; look at the
  // frame only once it has not moved for the whole timeout.
  std::optional<RingPosition> gate;
  for (uint32_t i = 0; i < kMaxGatingSlots; ++i) {
    if (ring_.GatingOwner(i) == 0) continue;
    const RingPosition g = ring_.GatingPosition(i);
    if (!gate || g.position < gate->position) gate = g;
  }
  if (gate) {
    // The timeout runs from the first poll that sees a frame claimed past an
    // unmoved gate, not from when the gate stopped: a gate that stood still
    // because nothing was produced says nothing about a claim made since
    // (a live claim held 10 ms after an idle second was taken for dead).
    const uint64_t tail = ring_.tail().position;
    if (gate->position > tail) {
      // A gating reader only passes committed frames, which lie below the
      // tail: the tail word was moved back (or the slot written over).
      stuck_position_ = ~0ull;
      // Once while it lasts: the tail moves with every claim.
      if (tail_behind_reported_) return {};
      tail_behind_reported_ = true;
      return {Action::kInconsistent, tail, gate->position - tail};
    }
    tail_behind_reported_ = false;
    if (gate->position == tail) {
      stuck_position_ = ~0ull;  // nothing claimed past it
      return {};
    }
    if (gate->position != stuck_position_) {
      stuck_position_ = gate->position;
      stuck_since_ns_ = now_ns;
      return {};
    }
    if (now_ns - stuck_since_ns_ < timeout_ns_) return {};
    const uint64_t w = Word64At(ring_.At(gate->position)).load(std::memory_order_acquire);
    if ((w & ~kStateMask) == ring_.Tag(gate->position) && StateOf(w) != S(FrameState::kClaimed) &&
        StateOf(w) != S(FrameState::kPoison)) {
      return {};  // committed: the gating reader is slow, not blocked
    }
    stuck_since_ns_ = now_ns;  // act once per timeout at most
    cursor_ = *gate;
    return Unblock(gate->position);
  }
  // Several producers and no gating reader: producers stay within a ring of
  // the claim horizon, so a dead claim there stops them all. The cursor below
  // may have been lapped past it (it restarts at the lap reference): watch the
  // horizon like a gating position.
  if (!ring_.single_producer_) {
    const uint64_t h = Word64(ring_.control_->claim_horizon).load(std::memory_order_acquire);
    const RingPosition t = ring_.tail();
    if (h < t.position && t.position - h <= ring_.capacity_ && ring_.FinishedLength(h) == 0) {
      if (h != horizon_stuck_position_) {
        horizon_stuck_position_ = h;
        horizon_stuck_since_ns_ = now_ns;
      } else if (now_ns - horizon_stuck_since_ns_ >= timeout_ns_) {
        horizon_stuck_since_ns_ = now_ns;  // act once per timeout at most
        const Result r = Unblock(h);
        if (r.action != Action::kNone) return r;
      }
    } else {
      horizon_stuck_position_ = ~0ull;
    }
  }
  if (ring_.Overwritten(cursor_.position)) cursor_ = ring_.earliest();
  const uint64_t walk_start = cursor_.position;
  // Follow committed frames up to one ring's worth per poll. Only the commit
  // word and the length are read, both atomically: the cursor may lag behind
  // the gating readers, so producers may be rewriting the bytes it looks at.
  auto peek = [&](uint64_t position) -> uint64_t {  // 0: not committed here
    const uint64_t len = ring_.FinishedLength(position);
    return len == Ring::kBadFrame ? 0 : len;  // corrupt: readers report it; nothing to unblock
  };
  uint64_t walked = 0;
  for (uint64_t len; (len = peek(cursor_.position)) != 0;) {
    cursor_.position += len;
    walked += len;
    if (walked >= ring_.capacity_) break;
  }
  if (ring_.Overwritten(walk_start)) {
    // Lapped during the walk: what it followed may have been rewritten.
    cursor_ = ring_.earliest();
    stuck_position_ = ~0ull;
    return {};
  }
  const RingPosition t = ring_.tail();
  if (cursor_.position > t.position) {
    // Committed frames past the tail (read after them, and producers claim
    // before they commit): the tail word was moved back. The next claim
    // would write over the end of a committed record.
    stuck_position_ = ~0ull;
    if (tail_behind_reported_) return {};  // once while it lasts (see above)
    tail_behind_reported_ = true;
    return {Action::kInconsistent, t.position, cursor_.position - t.position};
  }
  tail_behind_reported_ = false;
  if (cursor_.position == t.position) {
    stuck_position_ = ~0ull;
    return {};
  }
  {
    // A committed frame the walk refused (corrupt) is not a dead claim.
    const uint64_t w = Word64At(ring_.At(cursor_.position)).load(std::memory_order_acquire);
    if ((w & ~kStateMask) == ring_.Tag(cursor_.position) && StateOf(w) != S(FrameState::kClaimed) &&
        StateOf(w) != S(FrameState::kPoison)) {
      return {};
    }
  }
  if (cursor_.position != stuck_position_) {
    stuck_position_ = cursor_.position;
    stuck_since_ns_ = now_ns;
    return {};
  }
  if (now_ns - stuck_since_ns_ < timeout_ns_) return {};
  stuck_position_ = ~0ull;
  return Unblock(cursor_.position);
}

RingUnblocker::Result RingUnblocker::Unblock(uint64_t position) {
  const uint64_t cap = ring_.capacity_;
  const uint64_t index = position & ring_.mask_;
  const uint64_t lap_end = position + (cap - index);
  std::byte* f = ring_.At(position);
  const uint64_t tag = ring_.Tag(position);
  auto w = Word64At(f);
  internal::RingControl* ctl = ring_.control_;
  // Begun before any commit word is written, ended on every way out: a
  // single producer looks at its frame's commit word only if an unblock
  // began or ran since its claim (RingProducer::Unblocked).
  struct Running {
    uint64_t& word;
    explicit Running(uint64_t& w) : word(w) {
      Word64(word).fetch_add(internal::kUnblockBegin, std::memory_order_seq_cst);
    }
    ~Running() { Word64(word).fetch_sub(1, std::memory_order_seq_cst); }
  } running(ctl->unblock_epoch);
  for (;;) {
    const RingPosition t = ring_.tail();
    // Not claimed yet, or a lap behind the tail (producers lapped our cursor
    // since the caller looked): nothing of ours to unblock there.
    if (position >= t.position || t.position - position > cap) return {};
    // Before we write into the lap (a claimer that died before its first
    // write may not have raised it).
    ring_.RaiseWriteLap(position, write_lap_known_);
    uint64_t old = w.load(std::memory_order_acquire);
    if ((old & ~kStateMask) == tag) {
      const uint64_t s = StateOf(old);
      if (s == S(FrameState::kData) || s == S(FrameState::kPadding) ||
          s == S(FrameState::kControl)) {
        return {};  // committed meanwhile
      }
      if (s == S(FrameState::kClaimed)) {
        // The claim is marked: its length and owner are known. Turn it into
        // padding, unless its producer lives.
        const uint64_t len =
            AlignedFrameLength(Word32At(f + frame::kLength).load(std::memory_order_relaxed));
        const uint64_t owner = Word64At(f + frame::kTimestamp).load(std::memory_order_relaxed);
        if (owner_alive_ && owner_alive_(owner)) return {Action::kOwnerAlive, position, 0};
        if (len >= kFrameHeaderLength && len <= cap - index) {
          if (w.compare_exchange_strong(old, tag | S(FrameState::kPadding),
                                        std::memory_order_seq_cst)) {
            Word64(ctl->unblocked_claims).fetch_add(1, std::memory_order_relaxed);
            Word64(ctl->unblocked_bytes).fetch_add(len, std::memory_order_relaxed);
            WakeAll(ctl->data_seq, ctl->data_waiters);
            return {Action::kPadded, position, len};
          }
          continue;  // the producer committed or aborted just now
        }
        // A marked claim with an impossible length: treat it as a hole.
      }
    }
    // A hole: the claimer died before marking (or a previous unblocker died),
    // or a single producer's claim (never marked).
    // Poison it so a late producer loses its CAS, then find where it ends.
    const bool poisoned_already =
        (old & ~kStateMask) == tag && StateOf(old) == S(FrameState::kPoison);
    if ((old & ~kStateMask) != tag) {
      // A frame begins less than a claim's length after it: no producer's
      // claim, live or dead, is here. A tail word moved on by a peer left it.
      const uint64_t next = ring_.NextTaggedFrame(position, std::min(t.position, lap_end));
      if (next != position && next != lap_end && next - position < kMinPaddingWithLength) {
        if (inconsistent_reported_ == position) return {};
        inconsistent_reported_ = position;
        return {Action::kInconsistent, position, next - position};
      }
    }
    if (!poisoned_already && owner_alive_ && owner_alive_(0)) {
      return {Action::kOwnerAlive, position, 0};
    }
    if ((old & ~kStateMask) != tag || StateOf(old) != S(FrameState::kPoison)) {
      if (!w.compare_exchange_strong(old, tag | S(FrameState::kPoison),
                                     std::memory_order_seq_cst)) {
        continue;
      }
    }
    const uint64_t limit =
        std::min({t.position, lap_end, position + AlignedFrameLength(ring_.max_frame_length_)});
    uint64_t end = limit;
    for (uint64_t q = position + kFrameAlignment; q < limit; q += kFrameAlignment) {
      auto wq = Word64At(ring_.At(q));
      const uint64_t tq = ring_.Tag(q);
      uint64_t v = wq.load(std::memory_order_acquire);
      bool found = false;
      for (;;) {
        if ((v & ~kStateMask) == tq) {
          found = StateOf(v) != S(FrameState::kPoison);
          break;
        }
        if (wq.compare_exchange_weak(v, tq | S(FrameState::kPoison), std::memory_order_seq_cst,
                                     std::memory_order_acquire)) {
          break;
        }
      }
      if (found) {
        end = q;
        break;
      }
    }
    const uint64_t hole = end - position;
    if (hole < kMinPaddingWithLength && end != lap_end) {
      // Claims are 40 bytes or more: only a tail word moved on by a peer
      // leaves a hole this short, and no padding frame fits it.
      if (inconsistent_reported_ == position) return {};
      inconsistent_reported_ = position;
      return {Action::kInconsistent, position, hole};
    }
    if (hole >= kMinPaddingWithLength) {
      Word32At(f + frame::kLength).store(static_cast<uint32_t>(hole), std::memory_order_relaxed);
    }
    uint64_t poisoned = tag | S(FrameState::kPoison);
    if (!w.compare_exchange_strong(poisoned, tag | S(FrameState::kPadding),
                                   std::memory_order_seq_cst)) {
      continue;
    }
    Word64(ctl->unblocked_claims).fetch_add(1, std::memory_order_relaxed);
    Word64(ctl->unblocked_bytes).fetch_add(hole, std::memory_order_relaxed);
    WakeAll(ctl->data_seq, ctl->data_waiters);
    return {Action::kHoleFilled, position, hole};
  }
}

}  // namespace runnel
