// Record batches: many small records in one frame, with one header, one
// timestamp and one CRC32C for all of them (Kafka's record batch, simplified).
//
// A batch frame is a frame (core/record.h) with flags == kFlagBatch, no key,
// no headers, whose value is the batch body. The frame's offset is the offset
// of the first record; record i of the batch has offset + i. Every record
// carries the frame's timestamp (the time its batch was written, as Kafka's
// LogAppendTime). Byte ruler of the body (32-bit rows, little-endian):
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +---------------------------------------------------------------+
//  |  count (32): records in the batch, at least 1                  |  0
//  +---------------------------------------------------------------+
//  |  reserved (32), zero                                           |  4
//  +---------------------------------------------------------------+
//  |  entry 0, entry 1, ... entry count-1                           |  8
//
// Each entry starts 8-byte aligned:
//
//  +---------------------------------------------------------------+
//  |  value_length (32)                                             |  0
//  +-------------------------------+---------------+---------------+
//  |  key_length (16)              |  flags (8)    | reserved (8)  |  4
//  +-------------------------------+---------------+---------------+
//  |  key bytes | value bytes | zero pad to 8                       |  8
//
// flags holds kFlagHasKey only (an empty key is told apart from none); the
// entries fill the body exactly, so the frame's length is a multiple of 8. A
// record in a batch has no headers: write a record with headers on its own.
//
// An 8-byte record costs 16 bytes in a batch, against a 48-byte frame alone;
// a reader checks one CRC and one header per batch. Batches are a core/
// feature: the bus does not write them, and every reader that does not ask
// for them (the bus's consumers, the persister, the segment reader) refuses
// a batch frame as a bad layout.

#ifndef RUNNEL_CORE_BATCH_H_
#define RUNNEL_CORE_BATCH_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <utility>

#include "core/coding.h"
#include "core/record.h"

namespace runnel {

// Bytes one record takes in a batch body.
inline constexpr uint64_t BatchEntryLength(uint64_t key_length, uint64_t value_length) {
  return AlignUp(kBatchEntryHeaderLength + key_length + value_length, kFrameAlignment);
}

enum class BatchAppend : uint8_t {
  kOk = 0,
  kFull = 1,      // the batch has no room left for this record: write it, Clear, append again
  kTooLarge = 2,  // the record does not fit even an empty batch: write it on its own
  kInvalid = 3,   // the key is longer than 65535 bytes
};
std::string_view BatchAppendName(BatchAppend a);

// Builds a batch outside the ring (RingProducer::try_write(const
// RecordBatch&) copies it in). Allocates its buffer once, when made; Append
// and Clear never allocate. Not thread-safe.
class RecordBatch {
 public:
  // Room for records up to a frame of `max_frame_length` bytes (a ring's
  // max_frame_length(); at least kFrameHeaderLength + kBatchBodyHeaderLength
  // + 8 bytes).
  explicit RecordBatch(uint32_t max_frame_length);
  // Moving takes the buffer and the records; the batch moved from is left
  // empty with no room (Append says kTooLarge): make a new one to go on.
  RecordBatch(RecordBatch&& other) noexcept { *this = std::move(other); }
  RecordBatch& operator=(RecordBatch&& other) noexcept {
    if (this != &other) {
      buffer_ = std::move(other.buffer_);
      max_frame_length_ = other.max_frame_length_;
      room_ = other.room_;
      used_ = other.used_;
      count_ = other.count_;
      other.room_ = 0;
      other.used_ = 0;
      other.count_ = 0;
    }
    return *this;
  }

  [[nodiscard]] BatchAppend Append(std::string_view value) { return AppendEntry({}, 0, value); }
  [[nodiscard]] BatchAppend Append(std::optional<std::string_view> key, std::string_view value) {
    if (!key) return Append(value);
    if (key->size() > kMaxKeyLength) return BatchAppend::kInvalid;
    return AppendEntry(*key, kFlagHasKey, value);
  }

  uint32_t count() const { return count_; }
  bool empty() const { return count_ == 0; }
  // The frame the batch makes, header included.
  uint32_t frame_length() const { return kFrameHeaderLength + kBatchBodyHeaderLength + used_; }
  uint32_t max_frame_length() const { return max_frame_length_; }
  // The entries appended so far (the body after its count block).
  std::span<const std::byte> entries() const { return {buffer_.get(), used_}; }
  void Clear() {
    used_ = 0;
    count_ = 0;
  }

 private:
  BatchAppend AppendEntry(std::string_view key, uint8_t flags, std::string_view value) {
    const uint64_t length = BatchEntryLength(key.size(), value.size());
    if (length > room_ - used_) [[unlikely]] {
      return length > room_ ? BatchAppend::kTooLarge : BatchAppend::kFull;
    }
    std::byte* e = buffer_.get() + used_;
    // The last word first, so the zero pad needs no store of its own.
    EncodeFixed64(e + length - 8, 0);
    EncodeFixed64(e, value.size() | uint64_t{key.size()} << 32 | uint64_t{flags} << 48);
    CopySmall(e + kBatchEntryHeaderLength, key.data(), key.size());
    CopySmall(e + kBatchEntryHeaderLength + key.size(), value.data(), value.size());
    used_ += static_cast<uint32_t>(length);
    ++count_;
    return BatchAppend::kOk;
  }
  // memcpy, inline for the small records batches are for (a library call
  // costs more than the copy).
  static void CopySmall(std::byte* to, const char* from, std::size_t n) {
    if (n >= 8 && n <= 16) {
      std::memcpy(to, from, 8);
      std::memcpy(to + n - 8, from + n - 8, 8);
    } else if (n != 0) {
      std::memcpy(to, from, n);
    }
  }

  std::unique_ptr<std::byte[]> buffer_;
  uint32_t max_frame_length_ = 0;
  uint32_t room_ = 0;  // bytes of entries the largest frame holds
  uint32_t used_ = 0;
  uint32_t count_ = 0;
};

// Checks a frame that carries kFlagBatch, as CheckFrame does a plain one:
// the header, the CRC if asked, and (if `entries`) every entry against the
// frame's length; without `entries` the caller walks them with a
// BatchWalker, which checks each entry as it goes. Never reads outside
// [frame, frame + available).
FrameCheck CheckBatchFrame(const std::byte* frame, uint64_t available, uint32_t max_frame_length,
                           bool verify_crc, bool entries = true);

// The records of a batch frame, one by one. Every entry is bounds-checked
// against the length the walker was made with, whatever the bytes do
// meanwhile (shared memory): a malformed entry ends the walk with ok() false,
// never a read outside the frame.
class BatchWalker {
 public:
  // `view` is a checked batch frame (RecordView of the whole frame).
  explicit BatchWalker(const RecordView& view)
      : frame_(view.frame()),
        end_(view.frame_length()),
        base_offset_(view.offset()),
        timestamp_ns_(view.timestamp_ns()) {
    if (end_ >= kFrameHeaderLength + kBatchBodyHeaderLength) {
      count_ = DecodeFixed32(frame_ + kFrameHeaderLength);
    }
  }

  uint32_t count() const { return count_; }
  uint32_t index() const { return index_; }  // records passed
  bool ok() const { return ok_; }

  // The next record, or false at the end (ok()) or at a malformed entry.
  // pos_ never passes end_: an entry, padding included, must fit before it.
  bool Next(RecordView* out) {
    if (index_ >= count_ || !ok_) return false;
    if (end_ - pos_ < kBatchEntryHeaderLength) return Fail();
    const uint64_t h = DecodeFixed64(frame_ + pos_);
    const uint32_t value_length = static_cast<uint32_t>(h);
    const uint32_t key_length = static_cast<uint32_t>(h >> 32) & 0xFFFF;
    const uint8_t flags = static_cast<uint8_t>(h >> 48);
    const uint64_t length = uint64_t{kBatchEntryHeaderLength} + key_length + value_length;
    const uint64_t aligned = AlignUp(length, kFrameAlignment);
    if ((h >> 56) != 0 || (flags & ~kFlagHasKey) != 0 ||
        (key_length != 0 && (flags & kFlagHasKey) == 0) || aligned > end_ - pos_) {
      return Fail();
    }
    *out = RecordView::BatchEntry(frame_ + pos_, static_cast<uint32_t>(length), key_length, flags,
                                  base_offset_ + index_, timestamp_ns_);
    pos_ += aligned;
    ++index_;
    return true;
  }
  // Byte offset of the next entry in the frame.
  uint64_t entry_position() const { return pos_; }
  // Continues a walk that an earlier walker of the same frame left at
  // `index` records and byte offset `pos` (its entry_position()). Bounds stay
  // checked: an out-of-range pair fails the walk.
  void Resume(uint32_t index, uint64_t pos) {
    if (index > count_ || pos < kFrameHeaderLength + kBatchBodyHeaderLength || pos > end_ ||
        pos % kFrameAlignment != 0) {
      ok_ = false;
      return;
    }
    index_ = index;
    pos_ = pos;
  }
  // True if the walk passed every record and ended exactly at the frame's
  // end.
  bool Complete() const { return ok_ && index_ == count_ && pos_ == end_; }

 private:
  bool Fail() {
    ok_ = false;
    return false;
  }

  const std::byte* frame_;
  uint64_t end_;
  uint64_t pos_ = kFrameHeaderLength + kBatchBodyHeaderLength;
  uint64_t base_offset_;
  int64_t timestamp_ns_;
  uint32_t count_ = 0;
  uint32_t index_ = 0;
  bool ok_ = true;
};

// Records in the batch frame `view` (its count field; checked frames only).
inline uint32_t BatchCount(const RecordView& view) {
  return view.frame_length() >= kFrameHeaderLength + kBatchBodyHeaderLength
             ? DecodeFixed32(view.frame() + kFrameHeaderLength)
             : 0;
}

}  // namespace runnel

#endif  // RUNNEL_CORE_BATCH_H_
