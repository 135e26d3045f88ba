// CRC32C (Castagnoli), hardware-accelerated: ISA-L's crc32_iscsi for long
// buffers, the SSE4.2 crc32 instruction inline for short ones (frame headers
// and small records, where the call into ISA-L cost more than the CRC).

#ifndef RUNNEL_CORE_CRC32C_H_
#define RUNNEL_CORE_CRC32C_H_

#include <cstddef>
#include <cstdint>

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

// The standard CRC32C of one buffer (Value("123456789", 9) == 0xE3069283).
inline uint32_t Value(const void* data, std::size_t n) { return Finish(Extend(kInit, data, n)); }

namespace internal {
// For tests: the ISA-L path alone, and whether Extend has the inline path.
uint32_t ExtendWithIsal(uint32_t running, const void* data, std::size_t n);
bool HaveInlinePath();
}  // namespace internal

}  // namespace runnel::crc32c

#endif  // RUNNEL_CORE_CRC32C_H_
