#include "core/crc32c.h"

#include <isa-l/crc.h>

#include <climits>
#include <cstring>

namespace runnel::crc32c {

namespace internal {
const bool kHaveSse42 = __builtin_cpu_supports("sse4.2");
}  // namespace internal

namespace {

using internal::kHaveSse42;
using internal::kInlineMax;

uint32_t ExtendIsal(uint32_t running, const unsigned char* p, std::size_t n) {
  auto* q = const_cast<unsigned char*>(p);  // ISA-L takes non-const
  while (n > 0) {
    const int chunk = n > static_cast<std::size_t>(INT_MAX) ? INT_MAX : static_cast<int>(n);
    running = crc32_iscsi(q, chunk, running);
    q += chunk;
    n -= static_cast<std::size_t>(chunk);
  }
  return running;
}

}  // namespace

uint32_t ExtendFields(uint32_t running, uint32_t w32, const uint64_t (&w64)[3], const void* data,
                      std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
#if defined(__x86_64__)
  if (kHaveSse42) {
    if (n <= kInlineMax) return ExtendFieldsInline(running, w32, w64, data, n);
    uint64_t c = internal::Step32(running, w32);
    for (const uint64_t w : w64) c = internal::Step64(c, w);
    return ExtendIsal(static_cast<uint32_t>(c), p, n);
  }
#endif
  running = ExtendIsal(running, reinterpret_cast<const unsigned char*>(&w32), sizeof w32);
  running = ExtendIsal(running, reinterpret_cast<const unsigned char*>(w64), sizeof w64);
  return ExtendIsal(running, p, n);
}

uint32_t Extend(uint32_t running, const void* data, std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
#if defined(__x86_64__)
  if (n <= kInlineMax && kHaveSse42) return internal::ExtendSse42(running, p, n);
#endif
  return ExtendIsal(running, p, n);
}

namespace internal {
uint32_t ExtendWithIsal(uint32_t running, const void* data, std::size_t n) {
  return ExtendIsal(running, static_cast<const unsigned char*>(data), n);
}
bool HaveInlinePath() { return kHaveSse42; }
}  // namespace internal

}  // namespace runnel::crc32c
