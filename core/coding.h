// Explicit little-endian encoding of fixed-width integers. Every shared-memory
// and on-disk integer that is not accessed atomically goes through these, so
// the layout is defined by the code, not by the host.

#ifndef RUNNEL_CORE_CODING_H_
#define RUNNEL_CORE_CODING_H_

#include <bit>
#include <cstdint>
#include <cstring>

namespace runnel {

static_assert(std::endian::native == std::endian::little,
              "runnel's shared-memory layouts are little-endian; port the atomics first");

inline void EncodeFixed16(void* dst, uint16_t v) { std::memcpy(dst, &v, sizeof v); }
inline void EncodeFixed32(void* dst, uint32_t v) { std::memcpy(dst, &v, sizeof v); }
inline void EncodeFixed64(void* dst, uint64_t v) { std::memcpy(dst, &v, sizeof v); }

inline uint16_t DecodeFixed16(const void* src) {
  uint16_t v;
  std::memcpy(&v, src, sizeof v);
  return v;
}
inline uint32_t DecodeFixed32(const void* src) {
  uint32_t v;
  std::memcpy(&v, src, sizeof v);
  return v;
}
inline uint64_t DecodeFixed64(const void* src) {
  uint64_t v;
  std::memcpy(&v, src, sizeof v);
  return v;
}

inline constexpr uint64_t AlignUp(uint64_t v, uint64_t alignment) {
  return (v + alignment - 1) & ~(alignment - 1);
}

}  // namespace runnel

#endif  // RUNNEL_CORE_CODING_H_
