#include "persistence/internal/layout.h"

#include <fcntl.h>

#include <algorithm>
#include <array>
#include <utility>

#include "core/coding.h"
#include "persistence/internal/file.h"

namespace runnel::internal {

std::optional<IndexFile> OpenIndex(const std::string& dir, uint64_t base) {
  const std::string name = TimeIndexFileName(base);
  auto fd = OpenFile(JoinPath(dir, name), O_RDONLY);
  if (!fd.ok()) return std::nullopt;
  auto h = ReadFileHeader(fd->get(), FileKind::kTimeIndex, base, dir, name);
  if (!h.ok()) return std::nullopt;
  auto size = FileSize(fd->get(), name);
  if (!size.ok() || *size < h->header_length) return std::nullopt;
  IndexFile f;
  f.fd = std::move(*fd);
  f.file_size = *size;
  f.entries_start = h->header_length;
  f.count = (*size - h->header_length) / kTimeIndexEntryLength;
  f.whole = (*size - h->header_length) % kTimeIndexEntryLength == 0;
  return f;
}

Result<Checkpoint> ReadCheckpointFile(const std::string& dir) {
  const std::string path = JoinPath(dir, kCheckpointFileName);
  auto fd = OpenFile(path, O_RDONLY);
  if (!fd.ok()) return fd.status();
  std::array<std::byte, kCheckpointLength> buf{};
  auto n = ReadAt(fd->get(), buf.data(), buf.size(), 0, path);
  if (!n.ok()) return n.status();
  return DecodeCheckpoint(std::span<const std::byte>(buf.data(), *n), path);
}

Result<PartitionListing> ListPartition(const std::string& dir) {
  auto entries = ListDirectory(dir);
  if (!entries.ok()) return entries.status();
  PartitionListing l;
  for (const DirEntry& e : *entries) {
    if (e.is_regular) {
      if (auto base = ParseSegmentFileName(e.name)) {
        l.segments.push_back(*base);
        continue;
      }
      if (auto base = ParseTimeIndexFileName(e.name)) {
        l.time_indexes.push_back(*base);
        continue;
      }
      if (e.name == kCheckpointFileName) {
        l.has_checkpoint = true;
        continue;
      }
      if (e.name == kCheckpointTempFileName) {
        l.has_checkpoint_temp = true;
        continue;
      }
    }
    l.foreign.push_back(e.name);
  }
  std::sort(l.segments.begin(), l.segments.end());
  std::sort(l.time_indexes.begin(), l.time_indexes.end());
  std::sort(l.foreign.begin(), l.foreign.end());
  return l;
}

Result<FileHeader> ReadFileHeader(int fd, FileKind kind, uint64_t expected_base,
                                  const std::string& dir, const std::string& name) {
  std::array<std::byte, kFileHeaderLength> buf{};
  const std::string path = JoinPath(dir, name);
  auto n = ReadAt(fd, buf.data(), buf.size(), 0, path);
  if (!n.ok()) return n.status();
  auto h = DecodeFileHeader(std::span<const std::byte>(buf.data(), *n), kind, path);
  if (!h.ok()) return h;
  if (h->base_offset != expected_base) {
    return Status::Corruption(path + ": header says base offset " + std::to_string(h->base_offset) +
                              " but the file name says " + std::to_string(expected_base) +
                              "; the file was renamed or damaged: move it out of the partition "
                              "directory");
  }
  return h;
}

bool HeaderNeverWritten(int fd, uint64_t size) {
  std::array<std::byte, kFileHeaderLength> buf{};
  const uint64_t want = std::min<uint64_t>(size, buf.size());
  auto n = ReadAt(fd, buf.data(), want, 0, "");
  if (!n.ok() || *n != want) return false;
  return std::all_of(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(want),
                     [](std::byte b) { return b == std::byte{0}; });
}

bool IndexEntryMatchesRecord(const std::string& dir, uint64_t base, const TimeIndexEntry& e) {
  if (e.position < kFileHeaderLength || e.position % kFrameAlignment != 0) return false;
  const std::string name = SegmentFileName(base);
  auto fd = OpenFile(JoinPath(dir, name), O_RDONLY);
  if (!fd.ok()) return false;
  std::array<std::byte, kFrameHeaderLength> h{};
  auto n = ReadAt(fd->get(), h.data(), h.size(), e.position, name);
  if (!n.ok() || *n != h.size()) return false;
  const uint64_t state = DecodeFixed64(h.data() + frame::kCommit) & kStateMask;
  return (state == static_cast<uint64_t>(FrameState::kData) ||
          state == static_cast<uint64_t>(FrameState::kControl)) &&
         DecodeFixed64(h.data() + frame::kOffset) == base + e.relative_offset &&
         static_cast<int64_t>(DecodeFixed64(h.data() + frame::kTimestamp)) <= e.timestamp_ns;
}

std::optional<uint64_t> TimeIndexView::LastAtOrBeforeOffset(uint32_t rel) const {
  // First entry with relative_offset > rel, then step back.
  uint64_t lo = 0, hi = count_;
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    if (at(mid).relative_offset <= rel) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo == 0) return std::nullopt;
  return lo - 1;
}

std::optional<uint64_t> TimeIndexView::LastBeforeTimestamp(int64_t ts) const {
  uint64_t lo = 0, hi = count_;
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    if (at(mid).timestamp_ns < ts) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo == 0) return std::nullopt;
  return lo - 1;
}

}  // namespace runnel::internal
