// CRC32C (Castagnoli), hardware-accelerated: ISA-L's crc32_iscsi for long
// buffers, the SSE4.2 crc32 instruction inline for short ones (frame headers
// and small records, where the call into ISA-L cost more than the CRC).

#ifndef RUNNEL_CORE_CRC32C_H_
#define RUNNEL_CORE_CRC32C_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace runnel::crc32c {

// Continues a running CRC over [data, data+n). Start with kInit; finish with
// Finish(). Extend(Extend(kInit, a), b) == Extend(kInit, a||b).
inline constexpr uint32_t kInit = 0xFFFFFFFFu;
uint32_t Extend(uint32_t running, const void* data, std::size_t n);
inline uint32_t Finish(uint32_t running) { return running ^ 0xFFFFFFFFu; }

// Extend over the little-endian bytes of w32, w64[0..2], then [data, data+n):
// one call for a record frame's checksummed header fields and its payload,
// taking the fields as values (no loads of freshly written header bytes).
uint32_t ExtendFields(uint32_t running, uint32_t w32, const uint64_t (&w64)[3], const void* data,
                      std::size_t n);
// The same, inline up to kInlineMax payload bytes where the CPU has SSE4.2
// (a record's commit: a call costs as much as the CRC of a small record).
inline uint32_t ExtendFieldsInline(uint32_t running, uint32_t w32, const uint64_t (&w64)[3],
                                   const void* data, std::size_t n);

// The standard CRC32C of one buffer (Value("123456789", 9) == 0xE3069283).
inline uint32_t Value(const void* data, std::size_t n) { return Finish(Extend(kInit, data, n)); }

namespace internal {
// For tests: the ISA-L path alone, and whether Extend has the inline path.
uint32_t ExtendWithIsal(uint32_t running, const void* data, std::size_t n);
bool HaveInlinePath();

// Up to this many bytes the crc32 instruction, inline, beats the call into
// ISA-L (whose dispatch and set-up for long buffers cost ~15 ns per call; see
// diag/frame_crc in bench/). Longer buffers go to ISA-L, which runs three
// streams in parallel.
inline constexpr std::size_t kInlineMax = 256;
extern const bool kHaveSse42;

#if defined(__x86_64__)
// The SSE4.2 crc32 instruction through asm, so that it inlines into code
// compiled for the x86-64 baseline; callers check kHaveSse42 first.
inline uint64_t Step64(uint64_t crc, uint64_t v) {
  asm("crc32q %1, %0" : "+r"(crc) : "rm"(v));
  return crc;
}
inline uint32_t Step32(uint32_t crc, uint32_t v) {
  asm("crc32l %1, %0" : "+r"(crc) : "rm"(v));
  return crc;
}
inline uint32_t Step8(uint32_t crc, uint8_t v) {
  asm("crc32b %1, %0" : "+r"(crc) : "rm"(v));
  return crc;
}

// REQUIRES: kHaveSse42.
inline uint32_t ExtendSse42(uint32_t crc, const unsigned char* p, std::size_t n) {
  uint64_t c = crc;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = Step64(c, v);
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  if (n >= 4) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    c32 = Step32(c32, v);
    p += 4;
    n -= 4;
  }
  for (; n > 0; --n, ++p) c32 = Step8(c32, *p);
  return c32;
}
#endif
}  // namespace internal

inline uint32_t ExtendFieldsInline(uint32_t running, uint32_t w32, const uint64_t (&w64)[3],
                                   const void* data, std::size_t n) {
#if defined(__x86_64__)
  if (internal::kHaveSse42 && n <= internal::kInlineMax) {
    uint64_t c = internal::Step32(running, w32);
    c = internal::Step64(c, w64[0]);
    c = internal::Step64(c, w64[1]);
    c = internal::Step64(c, w64[2]);
    return internal::ExtendSse42(static_cast<uint32_t>(c), static_cast<const unsigned char*>(data),
                                 n);
  }
#endif
  return ExtendFields(running, w32, w64, data, n);
}

}  // namespace runnel::crc32c

#endif  // RUNNEL_CORE_CRC32C_H_
