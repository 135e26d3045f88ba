#include "ipc/internal/partitioner.h"

#include "core/coding.h"

namespace runnel::internal {

int32_t Murmur2(const void* data, std::size_t length) {
  // Kafka computes in Java ints: wrapping 32-bit arithmetic with logical
  // shifts (>>>), which unsigned arithmetic reproduces exactly.
  const auto* bytes = static_cast<const unsigned char*>(data);
  constexpr uint32_t kSeed = 0x9747b28c;
  constexpr uint32_t m = 0x5bd1e995;
  constexpr int r = 24;
  const uint32_t len = static_cast<uint32_t>(length);
  uint32_t h = kSeed ^ len;
  const uint32_t words = len / 4;
  for (uint32_t i = 0; i < words; ++i) {
    uint32_t k = DecodeFixed32(bytes + i * 4);  // little-endian, as Kafka reads it
    k *= m;
    k ^= k >> r;
    k *= m;
    h *= m;
    h ^= k;
  }
  const uint32_t tail = words * 4;
  switch (len % 4) {
    case 3:
      h ^= static_cast<uint32_t>(bytes[tail + 2]) << 16;
      [[fallthrough]];
    case 2:
      h ^= static_cast<uint32_t>(bytes[tail + 1]) << 8;
      [[fallthrough]];
    case 1:
      h ^= static_cast<uint32_t>(bytes[tail]);
      h *= m;
  }
  h ^= h >> 13;
  h *= m;
  h ^= h >> 15;
  return static_cast<int32_t>(h);
}

}  // namespace runnel::internal
