#include "core/crc32c.h"

#include <isa-l/crc.h>

#include <climits>

namespace runnel::crc32c {

uint32_t Extend(uint32_t running, const void* data, std::size_t n) {
  auto* p = static_cast<unsigned char*>(const_cast<void*>(data));  // ISA-L takes non-const
  while (n > 0) {
    const int chunk = n > static_cast<std::size_t>(INT_MAX) ? INT_MAX : static_cast<int>(n);
    running = crc32_iscsi(p, chunk, running);
    p += chunk;
    n -= static_cast<std::size_t>(chunk);
  }
  return running;
}

}  // namespace runnel::crc32c
