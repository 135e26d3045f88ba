// Test helpers for persistence: frames built with core/record.h (no ring),
// temporary directories, and byte-level file surgery for corruption tests.

#ifndef RUNNEL_TESTS_PERSISTENCE_TEST_UTIL_H_
#define RUNNEL_TESTS_PERSISTENCE_TEST_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/record.h"

namespace runnel::testing {

// A committed frame as the ring holds it: header, key, value, CRC, and a
// commit word whose state is `state` and whose tag bits are non-zero (they
// are meaningless on disk).
std::vector<std::byte> MakeFrame(uint64_t offset, int64_t timestamp_ns, std::string_view key,
                                 std::string_view value, FrameState state = FrameState::kData);
// An unblock padding frame of `length` bytes (frame_length = length).
std::vector<std::byte> MakePadding(uint32_t length);
// Frames for offsets [first, first + count), timestamp = ts0 + i * ts_step,
// value "value-<offset>" padded to value_bytes (frames of 80 bytes by default).
std::vector<std::byte> MakeFrames(uint64_t first, uint64_t count, int64_t ts0 = 1'000,
                                  int64_t ts_step = 10, std::size_t value_bytes = 32);
void Append(std::vector<std::byte>& dst, const std::vector<std::byte>& src);

// A fresh directory under $TMPDIR (or, with in_memory, under /dev/shm when
// it exists: fsync is free there), removed with its contents at destruction.
class TempDir {
 public:
  explicit TempDir(bool in_memory = false);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

std::vector<std::byte> ReadFileBytes(const std::string& path);
void WriteFileBytes(const std::string& path, const std::vector<std::byte>& bytes);
uint64_t FileSizeOf(const std::string& path);
bool FileExists(const std::string& path);
// Overwrites bytes at `position` (the file grows if needed).
void PatchFile(const std::string& path, uint64_t position, const std::vector<std::byte>& bytes);
void XorByte(const std::string& path, uint64_t position, uint8_t mask);
void TruncateFile(const std::string& path, uint64_t size);
// Subtracts `delta` from the timestamp of every entry of the time index at
// `path` (a damaged index: in order, but below the records it indexes).
void LowerIndexTimestamps(const std::string& path, int64_t delta);
// Copies every regular file of `from` into `to` (created): a crash image of
// a log that is still open (its page cache contents, preallocation included).
void CopyDir(const std::string& from, const std::string& to);
std::vector<std::string> ListNames(const std::string& dir);  // sorted

std::vector<std::byte> Bytes(std::string_view s);

}  // namespace runnel::testing

#endif  // RUNNEL_TESTS_PERSISTENCE_TEST_UTIL_H_
