#include "core/crc32c.h"

#include <isa-l/crc.h>

#include <climits>
#include <cstring>

namespace runnel::crc32c {

namespace {

// Up to this many bytes the SSE4.2 crc32 instruction, inlined, beats the call
// into ISA-L (whose dispatch and set-up for long buffers cost ~15 ns per call;
// see diag/frame_crc in bench/). Longer buffers go to ISA-L, which runs three
// streams in parallel.
constexpr std::size_t kInlineMax = 256;

const bool kHaveSse42 = __builtin_cpu_supports("sse4.2");

__attribute__((target("sse4.2"))) uint32_t ExtendSse42(uint32_t crc, const unsigned char* p,
                                                       std::size_t n) {
  uint64_t c = crc;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = __builtin_ia32_crc32di(c, v);
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  if (n >= 4) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    c32 = __builtin_ia32_crc32si(c32, v);
    p += 4;
    n -= 4;
  }
  for (; n > 0; --n, ++p) c32 = __builtin_ia32_crc32qi(c32, *p);
  return c32;
}

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

__attribute__((target("sse4.2"))) uint32_t ExtendFieldsSse42(uint32_t crc, uint32_t w32,
                                                             const uint64_t (&w64)[3]) {
  uint64_t c = __builtin_ia32_crc32si(crc, w32);
  c = __builtin_ia32_crc32di(c, w64[0]);
  c = __builtin_ia32_crc32di(c, w64[1]);
  c = __builtin_ia32_crc32di(c, w64[2]);
  return static_cast<uint32_t>(c);
}

}  // namespace

uint32_t ExtendFields(uint32_t running, uint32_t w32, const uint64_t (&w64)[3], const void* data,
                      std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  if (kHaveSse42) {
    running = ExtendFieldsSse42(running, w32, w64);
    return n <= kInlineMax ? ExtendSse42(running, p, n) : ExtendIsal(running, p, n);
  }
  running = ExtendIsal(running, reinterpret_cast<const unsigned char*>(&w32), sizeof w32);
  running = ExtendIsal(running, reinterpret_cast<const unsigned char*>(w64), sizeof w64);
  return ExtendIsal(running, p, n);
}

uint32_t Extend(uint32_t running, const void* data, std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  if (n <= kInlineMax && kHaveSse42) return ExtendSse42(running, p, n);
  return ExtendIsal(running, p, n);
}

namespace internal {
uint32_t ExtendWithIsal(uint32_t running, const void* data, std::size_t n) {
  return ExtendIsal(running, static_cast<const unsigned char*>(data), n);
}
bool HaveInlinePath() { return kHaveSse42; }
}  // namespace internal

}  // namespace runnel::crc32c
