// Test helpers: ring memory that is shared with forked children.

#ifndef RUNNEL_TESTS_CORE_TEST_MEMORY_H_
#define RUNNEL_TESTS_CORE_TEST_MEMORY_H_

#include <sys/mman.h>

#include <cstddef>
#include <span>

#include "core/ring.h"

namespace runnel::testing {

// Sanitizer builds run 5-20x slower: stress loops scale their counts down.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
inline constexpr uint32_t kStressScale = 10;
#else
inline constexpr uint32_t kStressScale = 1;
#endif

// An anonymous MAP_SHARED mapping: survives fork() as shared memory, like a
// /dev/shm region mapped by two processes.
class SharedMemory {
 public:
  explicit SharedMemory(std::size_t bytes) : size_(bytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    data_ = p == MAP_FAILED ? nullptr : static_cast<std::byte*>(p);
  }
  ~SharedMemory() {
    if (data_ != nullptr) munmap(data_, size_);
  }
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;
  std::span<std::byte> span() const { return {data_, size_}; }
  std::byte* data() const { return data_; }

 private:
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

// A ring in its own shared mapping.
struct TestRing {
  explicit TestRing(RingOptions options)
      : memory(Ring::RequiredBytes(options.capacity)),
        ring(*Ring::Create(memory.span(), options)) {}
  SharedMemory memory;
  Ring ring;
};

}  // namespace runnel::testing

#endif  // RUNNEL_TESTS_CORE_TEST_MEMORY_H_
