// The record frame: one format for the ring, the segment files and replay.
//
// A frame is a 40-byte header followed by the key, the encoded headers and
// the value, padded to a multiple of 8 bytes (kFrameAlignment). All integers
// are little-endian. Byte ruler (32-bit rows):
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +-------------------------------------------------------------+-----+
//  |            commit word, bits 0..31 (tag)                    |state| 0
//  +-------------------------------------------------------------+-----+
//  |            commit word, bits 32..63 (tag)                           | 4
//  +---------------------------------------------------------------------+
//  |            frame_length: header + key + headers + value             | 8
//  +---------------------------------------------------------------------+
//  |            crc32c                                                   | 12
//  +---------------------------------------------------------------------+
//  |            offset (64): the record's offset in its partition        | 16
//  |                                                                     | 20
//  +---------------------------------------------------------------------+
//  |            timestamp (64): nanoseconds since the Unix epoch         | 24
//  |                                                                     | 28
//  +----------------------------------+----------------------------------+
//  |      key_length (16)             |     headers_length (16)          | 32
//  +-----------------+----------------+----------------------------------+
//  |   flags (8)     |  reserved (8)  |     reserved (16), zero          | 36
//  +-----------------+----------------+----------------------------------+
//  |   [producer block, 16 bytes, only with kFlagProducerBlock]          | 40
//  |   key bytes | headers bytes | value bytes | zero pad to 8           |
//  +---------------------------------------------------------------------+
//
// The commit word is the frame's publication flag (consumers spin on it, not
// on a shared index). Its low 3 bits are the FrameState; the other 61 bits are
// a tag derived from the frame's ring position and the ring's salt, so a word
// left over from an earlier lap of the ring never looks committed. On disk the
// tag is meaningless and only the state is read.
//
// crc32c covers frame_length (4 bytes) followed by bytes [16, frame_length):
// offset, timestamp, lengths, flags, key, headers and value. It does not cover
// the commit word (position-specific) or the crc field itself.
//
// Headers are encoded as repeated { name_length u16, value_length u16, name,
// value }, filling headers_length bytes exactly.
//
// Padding frames (state kPadding) fill the end of a ring lap, or the hole of a
// producer that died between claim and commit. They carry frame_length (when
// at least 16 bytes remain) but no CRC, offset or payload.

#ifndef RUNNEL_CORE_RECORD_H_
#define RUNNEL_CORE_RECORD_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "core/coding.h"
#include "core/crc32c.h"

namespace runnel {

inline constexpr uint32_t kFrameHeaderLength = 40;
inline constexpr uint32_t kFrameAlignment = 8;
inline constexpr uint32_t kProducerBlockLength = 16;
// Smallest frame whose length field is readable (commit word + length + crc).
inline constexpr uint32_t kMinPaddingWithLength = 16;
inline constexpr uint32_t kMaxKeyLength = 0xFFFF;
inline constexpr uint32_t kMaxHeadersLength = 0xFFFF;
// A batch frame's value: an 8-byte count block, then 8-byte entry headers
// (core/batch.h).
inline constexpr uint32_t kBatchBodyHeaderLength = 8;
inline constexpr uint32_t kBatchEntryHeaderLength = 8;

// Byte offsets of the header fields.
namespace frame {
inline constexpr uint32_t kCommit = 0;
inline constexpr uint32_t kLength = 8;
inline constexpr uint32_t kCrc = 12;
inline constexpr uint32_t kOffset = 16;
inline constexpr uint32_t kTimestamp = 24;
inline constexpr uint32_t kKeyLength = 32;
inline constexpr uint32_t kHeadersLength = 34;
inline constexpr uint32_t kFlags = 36;
inline constexpr uint32_t kReserved8 = 37;
inline constexpr uint32_t kReserved16 = 38;
}  // namespace frame

// Low 3 bits of the commit word.
enum class FrameState : uint8_t {
  kEmpty = 0,    // never written (zero-filled ring or preallocated file)
  kClaimed = 1,  // claimed by a producer, not yet committed
  kData = 2,     // committed data record
  kPadding = 3,  // skip frame_length bytes (or to the end of the lap)
  kControl = 4,  // committed control record (transactions; reserved)
  kPoison = 7,   // being turned into padding by an unblocker
};
inline constexpr uint64_t kStateMask = 7;

inline constexpr uint8_t kFlagHasKey = 1u << 0;         // key present (may be empty)
inline constexpr uint8_t kFlagProducerBlock = 1u << 1;  // reserved: producer id + sequence
// The value is a batch of records (core/batch.h). Not in kKnownFlags:
// CheckFrame refuses a batch frame (kBadLayout); only readers that ask for
// batches (CheckBatchFrame, ReaderOptions::batches) accept one.
inline constexpr uint8_t kFlagBatch = 1u << 2;
inline constexpr uint8_t kKnownFlags = kFlagHasKey | kFlagProducerBlock;

struct Header {
  std::string_view name;
  std::string_view value;
};

// Bytes the frame occupies before alignment, and after.
inline constexpr uint64_t FrameLength(uint64_t key, uint64_t headers, uint64_t value) {
  return kFrameHeaderLength + key + headers + value;
}
inline constexpr uint64_t AlignedFrameLength(uint64_t frame_length) {
  return AlignUp(frame_length, kFrameAlignment);
}

// Encoded size of `headers`, or -1 if a name or value is longer than 65535.
int64_t EncodedHeadersLength(std::span<const Header> headers);
// REQUIRES: dst has EncodedHeadersLength(headers) bytes.
void EncodeHeaders(std::span<const Header> headers, std::byte* dst);

// Writes the header fields of a frame other than the commit word and the crc.
// REQUIRES: frame has room for kFrameHeaderLength bytes.
void WriteFrameHeader(std::byte* frame, uint32_t frame_length, uint64_t offset,
                      int64_t timestamp_ns, uint16_t key_length, uint16_t headers_length,
                      uint8_t flags);
// The CRC of a frame whose header and payload are written (see above).
uint32_t ComputeFrameCrc(const std::byte* frame, uint32_t frame_length);
// Computes and stores the CRC.
void SealFrame(std::byte* frame, uint32_t frame_length);
// WriteFrameHeader + SealFrame for a frame whose length field and payload are
// already in place (a ring claim): writes bytes [12, 40). The CRC is computed
// from the arguments and the payload; the header bytes just written are never
// read back. (A load of bytes that sit in the store buffer as several smaller
// stores cannot be forwarded: it waits until the line is owned, which is a
// cross-core round trip when a consumer is polling that line.)
// Inline: it is most of a record's commit.
inline void SealFrameHeader(std::byte* frame, uint32_t frame_length, uint64_t offset,
                            int64_t timestamp_ns, uint16_t key_length, uint16_t headers_length,
                            uint8_t flags);

enum class FrameCheck : uint8_t {
  kOk = 0,
  kTruncated,   // the frame runs past the available bytes
  kBadLength,   // frame_length below the header or above the limit
  kBadLayout,   // key/headers lengths, flags or reserved bytes are inconsistent
  kBadCrc,      // CRC mismatch
  kBadHeaders,  // headers area does not parse
};
std::string_view FrameCheckName(FrameCheck c);

// Bounds-checks a committed data/control frame that starts at `frame` with
// `available` readable bytes. Never reads outside [frame, frame+available).
FrameCheck CheckFrame(const std::byte* frame, uint64_t available, uint32_t max_frame_length,
                      bool verify_crc);

// Iterates the encoded headers area. Stops (valid() == false afterwards) at
// the end or at the first malformed entry; ok() tells which.
class HeaderIterator {
 public:
  HeaderIterator() = default;
  explicit HeaderIterator(std::span<const std::byte> area) : area_(area) { Next(); }
  bool valid() const { return valid_; }
  bool ok() const { return ok_; }
  const Header& operator*() const { return current_; }
  const Header* operator->() const { return &current_; }
  void Next();

 private:
  std::span<const std::byte> area_;
  std::size_t pos_ = 0;
  Header current_;
  bool valid_ = false;
  bool ok_ = true;
};

// A read-only view of one committed frame. Valid while the memory it points
// to is (see RingReader::read and SegmentReader for how long that is).
// Every header field is read once, when the view is made: key, headers and
// value are spans inside [frame, frame + frame_length()) whatever the bytes
// do afterwards, so a frame that changes under a reader (shared memory a
// producer has lapped, or a peer scribbles on) yields wrong bytes, never a
// read outside the frame.
// REQUIRES: CheckFrame() returned kOk for the frame.
class RecordView {
 public:
  RecordView() = default;
  // A frame whose length field was checked and does not change.
  explicit RecordView(const std::byte* frame)
      : RecordView(frame, DecodeFixed32(frame + frame::kLength)) {}
  // A frame of `frame_length` bytes, the length the caller checked (the
  // length field is not read again). REQUIRES: frame_length >=
  // kFrameHeaderLength, and that many bytes are readable.
  RecordView(const std::byte* frame, uint32_t frame_length) : frame_(frame) {
    frame_length_ = frame_length;
    offset_ = DecodeFixed64(frame + frame::kOffset);
    timestamp_ns_ = static_cast<int64_t>(DecodeFixed64(frame + frame::kTimestamp));
    flags_ = static_cast<uint8_t>(frame[frame::kFlags]);
    uint32_t at = kFrameHeaderLength + ((flags_ & kFlagProducerBlock) ? kProducerBlockLength : 0);
    at = std::min(at, frame_length);
    key_start_ = at;
    key_length_ = std::min<uint32_t>(DecodeFixed16(frame + frame::kKeyLength), frame_length - at);
    at += key_length_;
    headers_length_ =
        std::min<uint32_t>(DecodeFixed16(frame + frame::kHeadersLength), frame_length - at);
  }

  // One record of a batch frame (core/batch.h): `entry` is its entry in the
  // batch, `entry_length` the entry's unpadded length (entry header, key and
  // value), `key_length` and `flags` its fields, checked by the caller.
  static RecordView BatchEntry(const std::byte* entry, uint32_t entry_length, uint32_t key_length,
                               uint8_t flags, uint64_t offset, int64_t timestamp_ns) {
    RecordView v;
    v.frame_ = entry;
    v.frame_length_ = entry_length;
    v.key_start_ = kBatchEntryHeaderLength;
    v.key_length_ = key_length;
    v.headers_length_ = 0;
    v.offset_ = offset;
    v.timestamp_ns_ = timestamp_ns;
    v.flags_ = flags;
    return v;
  }

  // The frame, or for a record of a batch, its entry in the batch frame.
  const std::byte* frame() const { return frame_; }
  uint32_t frame_length() const { return frame_length_; }
  uint64_t offset() const { return offset_; }
  int64_t timestamp_ns() const { return timestamp_ns_; }
  uint8_t flags() const { return flags_; }
  bool has_key() const { return (flags_ & kFlagHasKey) != 0; }
  std::string_view key() const { return {Chars(frame_ + key_start_), key_length_}; }
  std::span<const std::byte> headers_bytes() const {
    return {frame_ + key_start_ + key_length_, headers_length_};
  }
  HeaderIterator headers() const { return HeaderIterator(headers_bytes()); }
  std::string_view value() const {
    const uint32_t v = key_start_ + key_length_ + headers_length_;
    return {Chars(frame_ + v), frame_length_ - v};
  }

 private:
  static const char* Chars(const std::byte* p) { return reinterpret_cast<const char*>(p); }

  const std::byte* frame_ = nullptr;
  uint32_t frame_length_ = 0;
  uint32_t key_start_ = 0;  // from frame_
  uint32_t key_length_ = 0;
  uint32_t headers_length_ = 0;
  uint64_t offset_ = 0;
  int64_t timestamp_ns_ = 0;
  uint8_t flags_ = 0;
};

// Current wall-clock time in nanoseconds since the epoch (CLOCK_REALTIME).
int64_t WallClockNanos();

inline void SealFrameHeader(std::byte* f, uint32_t frame_length, uint64_t offset,
                            int64_t timestamp_ns, uint16_t key_length, uint16_t headers_length,
                            uint8_t flags) {
  // Bytes [16, 40) as three words, in memory order (little-endian); the CRC
  // takes them (and the length) as values.
  const uint64_t words[3] = {
      offset, static_cast<uint64_t>(timestamp_ns),
      uint64_t{key_length} | uint64_t{headers_length} << 16 | uint64_t{flags} << 32};
  static_assert(frame::kOffset == 16 && frame::kTimestamp == 24 && frame::kKeyLength == 32 &&
                frame::kHeadersLength == 34 && frame::kFlags == 36 && frame::kReserved8 == 37 &&
                frame::kReserved16 == 38);
  const uint32_t crc =
      crc32c::ExtendFieldsInline(crc32c::kInit, frame_length, words, f + kFrameHeaderLength,
                                 frame_length - kFrameHeaderLength);
  std::memcpy(f + frame::kOffset, words, sizeof words);
  EncodeFixed32(f + frame::kCrc, crc32c::Finish(crc));
}

}  // namespace runnel

#endif  // RUNNEL_CORE_RECORD_H_
