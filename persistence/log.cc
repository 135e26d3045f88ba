#include "persistence/log.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <limits>
#include <utility>

#include "core/coding.h"
#include "core/record.h"
#include "persistence/format.h"
#include "persistence/internal/file.h"
#include "persistence/internal/layout.h"
#include "persistence/internal/scan.h"

namespace runnel {
namespace internal {

inline constexpr int64_t kNoTimestamp = std::numeric_limits<int64_t>::min();
// Index entries are buffered and written in groups of this many (and at
// Sync, roll, checkpoint and Close): the index is a hint that recovery
// rebuilds, so it needs neither a write per entry nor its own fsync policy.
inline constexpr std::size_t kIndexFlushEntries = 64;

// Appends entries to a segment's .timeindex.
struct IndexWriter {
  std::string path;
  ScopedFd fd;
  uint64_t base = 0;
  uint32_t interval = 4096;
  uint64_t entries_start = kFileHeaderLength;
  uint64_t entries_on_disk = 0;
  std::vector<TimeIndexEntry> pending;
  bool has_entry = false;
  uint64_t last_entry_position = 0;
  uint64_t last_entry_offset = 0;

  void Add(uint64_t offset, int64_t max_ts, uint64_t position) {
    if (offset - base > std::numeric_limits<uint32_t>::max() ||
        position > std::numeric_limits<uint32_t>::max()) {
      return;  // not representable; the index is only a hint
    }
    pending.push_back(TimeIndexEntry{max_ts, static_cast<uint32_t>(offset - base),
                                     static_cast<uint32_t>(position)});
    has_entry = true;
    last_entry_position = position;
    last_entry_offset = offset;
  }
  void MaybeAdd(uint64_t offset, int64_t max_ts, uint64_t position) {
    if (!has_entry || position - last_entry_position >= interval) Add(offset, max_ts, position);
  }
  Status Flush() {
    if (pending.empty() || !fd.valid()) return Status::Ok();
    std::vector<std::byte> buf(pending.size() * kTimeIndexEntryLength);
    for (std::size_t i = 0; i < pending.size(); ++i) {
      EncodeTimeIndexEntry(pending[i], buf.data() + i * kTimeIndexEntryLength);
    }
    RUNNEL_RETURN_IF_ERROR(WriteAt(fd.get(), buf.data(), buf.size(),
                                   entries_start + entries_on_disk * kTimeIndexEntryLength, path));
    entries_on_disk += pending.size();
    pending.clear();
    return Status::Ok();
  }
};

struct ActiveSegment {
  uint64_t base = 0;
  std::string path;
  ScopedFd fd;
  uint32_t header_length = kFileHeaderLength;
  uint64_t data_end = 0;      // end of committed frames
  uint64_t reserved_end = 0;  // end of prepared (maybe in-flight) bytes
  IndexWriter index;
  bool has_record = false;  // last_* are valid
  uint64_t last_offset = 0;
  uint64_t last_position = 0;
};

struct SealedSegment {
  uint64_t base = 0;
  uint64_t bytes = 0;
  uint32_t header_length = kFileHeaderLength;
  std::optional<int64_t> max_ts;  // cached for retention by age
};

struct LogState {
  std::string dir;
  LogOptions options;
  ScopedFd dir_lock;  // holds the flock
  std::vector<SealedSegment> sealed;
  ActiveSegment active;
  uint64_t next_offset = 0;
  bool after_padding = false;  // the last frame appended was padding (or unknown)
  int64_t max_ts = kNoTimestamp;
  LogPosition durable;
  // Segments sealed by a roll without sync_on_roll whose data (and index)
  // the next Sync() must still fdatasync: base offsets, oldest first.
  std::vector<uint64_t> unsynced_sealed;
  Status sticky;  // first failure that leaves the log in an unknown state
  bool dir_dirty = false;
  bool closed = false;
  RecoveryReport report;
  std::vector<std::string> warnings;
  // The valid checkpoint's next_offset recovery found (0: none): offsets
  // below it were durable once and are never given out again.
  uint64_t checkpoint_next = 0;
  bool repair_begun = false;  // BeginRepair wrote its checkpoint
};

namespace {

std::string SegPath(const LogState& st, uint64_t base) {
  return JoinPath(st.dir, SegmentFileName(base));
}
std::string IdxPath(const LogState& st, uint64_t base) {
  return JoinPath(st.dir, TimeIndexFileName(base));
}

Status ValidateOptions(const LogOptions& o) {
  if (o.segment_bytes < kMinSegmentBytes || o.segment_bytes > kMaxSegmentBytes) {
    return Status::InvalidArgument("LogOptions::segment_bytes " + std::to_string(o.segment_bytes) +
                                   " is outside [" + std::to_string(kMinSegmentBytes) + ", " +
                                   std::to_string(kMaxSegmentBytes) + "]");
  }
  if (o.index_interval_bytes < kFrameAlignment) {
    return Status::InvalidArgument("LogOptions::index_interval_bytes must be at least 8");
  }
  return Status::Ok();
}

LogPosition CommittedEnd(const LogState& st) {
  return LogPosition{st.active.base, st.active.data_end, st.next_offset, st.max_ts};
}

// Writes a fresh file header (and truncates the file to it) into an index.
Status ResetIndexFile(const LogState& st, IndexWriter& idx) {
  FileHeader h;
  h.kind = FileKind::kTimeIndex;
  h.base_offset = idx.base;
  h.created_ns = WallClockNanos();
  h.index_interval = st.options.index_interval_bytes;
  h.segment_bytes = st.options.segment_bytes;
  const auto bytes = EncodeFileHeader(h);
  RUNNEL_RETURN_IF_ERROR(Truncate(idx.fd.get(), 0, idx.path));
  RUNNEL_RETURN_IF_ERROR(WriteAt(idx.fd.get(), bytes.data(), bytes.size(), 0, idx.path));
  idx.entries_start = kFileHeaderLength;
  idx.entries_on_disk = 0;
  return Status::Ok();
}

// Reads the usable prefix of a segment's index: entries in strictly
// increasing position and offset, non-decreasing timestamp, pointing inside
// [header_length, below_position). nullopt if the index is missing or its
// header is not valid.
struct LoadedIndex {
  uint64_t entries_start = kFileHeaderLength;
  std::vector<TimeIndexEntry> entries;
};
std::optional<LoadedIndex> LoadIndex(const std::string& dir, uint64_t base,
                                     uint32_t segment_header_length, uint64_t below_position) {
  auto f = OpenIndex(dir, base);
  if (!f) return std::nullopt;
  LoadedIndex out;
  out.entries_start = f->entries_start;
  std::vector<std::byte> buf(f->count * kTimeIndexEntryLength);
  auto n = ReadAt(f->fd.get(), buf.data(), buf.size(), f->entries_start, TimeIndexFileName(base));
  if (!n.ok()) return std::nullopt;
  const uint64_t got = *n / kTimeIndexEntryLength;
  out.entries.reserve(got);
  for (uint64_t i = 0; i < got; ++i) {
    const TimeIndexEntry e = DecodeTimeIndexEntry(buf.data() + i * kTimeIndexEntryLength);
    if (e.position < segment_header_length || e.position % 8 != 0 || e.position >= below_position) {
      break;
    }
    if (!out.entries.empty()) {
      const TimeIndexEntry& p = out.entries.back();
      if (e.position <= p.position || e.relative_offset <= p.relative_offset ||
          e.timestamp_ns < p.timestamp_ns) {
        break;
      }
    }
    out.entries.push_back(e);
  }
  return out;
}

std::optional<TimeIndexEntry> LastIndexEntry(const std::string& dir, uint64_t base) {
  auto f = OpenIndex(dir, base);
  if (!f || f->count == 0) return std::nullopt;
  std::array<std::byte, kTimeIndexEntryLength> buf{};
  auto n = ReadAt(f->fd.get(), buf.data(), buf.size(),
                  f->entries_start + (f->count - 1) * kTimeIndexEntryLength, "");
  if (!n.ok() || *n != buf.size()) return std::nullopt;
  return DecodeTimeIndexEntry(buf.data());
}

// Scans frames of one mapped segment, verifying every one.
struct ScanResult {
  enum class Stop : uint8_t { kEof, kZero, kBad };
  Stop stop = Stop::kEof;
  uint64_t end = 0;  // after the last valid frame
  uint64_t records = 0;
  bool has_record = false;
  uint64_t last_offset = 0;
  uint64_t last_position = 0;
  bool last_was_padding = false;
  std::string reason;  // kBad
};

// `expected`/`lenient` describe the offset sequence on entry (lenient: the
// first record may jump forward, as at a segment start or checkpoint) and
// are updated. on_record(offset, max_ts, position) is called per record.
template <typename OnRecord>
ScanResult ScanFrames(const std::byte* data, uint64_t size, uint64_t from, uint64_t& expected,
                      bool& lenient, int64_t& max_ts, OnRecord&& on_record) {
  ScanResult r;
  uint64_t pos = from;
  while (true) {
    if (pos >= size) {
      r.stop = ScanResult::Stop::kEof;
      break;
    }
    const DiskFrame f = InspectDiskFrame(data + pos, size - pos, /*verify_crc=*/true);
    if (f.kind == DiskFrameKind::kEnd) {
      r.stop = ScanResult::Stop::kZero;
      break;
    }
    if (f.kind == DiskFrameKind::kBad) {
      r.stop = ScanResult::Stop::kBad;
      r.reason = f.reason;
      break;
    }
    if (f.kind == DiskFrameKind::kPadding) {
      pos += f.aligned_length;
      lenient = true;
      r.last_was_padding = true;
      continue;
    }
    const RecordView v(data + pos);
    const uint64_t offset = v.offset();
    if (!OffsetFollows(offset, expected, lenient)) {
      r.stop = ScanResult::Stop::kBad;
      r.reason = "record offset " + std::to_string(offset) + " out of sequence (expected " +
                 std::string(lenient ? "at least " : "") + std::to_string(expected) + ")";
      break;
    }
    max_ts = std::max(max_ts, v.timestamp_ns());
    on_record(offset, max_ts, pos);
    ++r.records;
    r.has_record = true;
    r.last_offset = offset;
    r.last_position = pos;
    r.last_was_padding = false;
    expected = offset + 1;
    lenient = false;
    pos += f.aligned_length;
  }
  r.end = pos > size ? size : pos;
  return r;
}

// The newest timestamp and the last offset of a sealed segment: from its last
// usable index entry, then a verified scan to its end.
// A scan that stopped on a frame failing its check, or on zeros followed by
// data, rather than at the clean end of the data.
bool StoppedOnDamage(const ScanResult& r, const std::byte* data, uint64_t size) {
  return r.stop == ScanResult::Stop::kBad ||
         (r.stop == ScanResult::Stop::kZero && NonZeroExtentEnd(data, size, r.end) > r.end);
}

struct SegmentSummary {
  int64_t max_ts = kNoTimestamp;
  std::optional<uint64_t> last_offset;
  std::optional<uint64_t> next_offset;
  bool damaged = false;  // the scan stopped on damage, not at the end of the data
};
Result<SegmentSummary> Summarize(const std::string& dir, uint64_t base, uint32_t header_length) {
  const std::string path = JoinPath(dir, SegmentFileName(base));
  auto fd = OpenFile(path, O_RDONLY);
  if (!fd.ok()) return fd.status();
  auto size = FileSize(fd->get(), path);
  if (!size.ok()) return size.status();
  auto map = Mapping::Map(fd->get(), *size, path);
  if (!map.ok()) return map.status();
  SegmentSummary s;
  uint64_t from = header_length;
  uint64_t expected = base;
  bool lenient = true;
  if (auto e = LastIndexEntry(dir, base);
      e && e->position >= header_length && e->position % 8 == 0 && e->position < *size) {
    const DiskFrame f = InspectDiskFrame(map->data() + e->position, *size - e->position, true);
    if (f.kind == DiskFrameKind::kRecord &&
        RecordView(map->data() + e->position).offset() == base + e->relative_offset) {
      from = e->position;
      expected = base + e->relative_offset;
      lenient = false;
      s.max_ts = e->timestamp_ns;
    }
  }
  const ScanResult r = ScanFrames(map->data(), *size, from, expected, lenient, s.max_ts,
                                  [](uint64_t, int64_t, uint64_t) {});
  if (r.has_record) s.last_offset = r.last_offset;
  if (r.has_record || from != header_length) s.next_offset = expected;
  s.damaged = StoppedOnDamage(r, map->data(), *size);
  return s;
}

// Creates `<base>.log` (preallocated, with its header) and `<base>.timeindex`.
Result<ActiveSegment> CreateSegment(LogState& st, uint64_t base) {
  ActiveSegment a;
  a.base = base;
  a.path = SegPath(st, base);
  auto fd = OpenFile(a.path, O_RDWR | O_CREAT | O_EXCL, 0644);
  if (!fd.ok()) return fd.status();
  a.fd = std::move(*fd);
  auto fail = [&](Status s) -> Result<ActiveSegment> {
    a.fd.reset();
    (void)RemoveFile(a.path);
    return s;
  };
  if (st.options.preallocate) {
    Status s = Preallocate(a.fd.get(), st.options.segment_bytes, a.path);
    if (!s.ok()) return fail(std::move(s));
  }
  FileHeader h;
  h.kind = FileKind::kSegment;
  h.base_offset = base;
  h.created_ns = WallClockNanos();
  h.segment_bytes = st.options.segment_bytes;
  const auto bytes = EncodeFileHeader(h);
  if (Status s = WriteAt(a.fd.get(), bytes.data(), bytes.size(), 0, a.path); !s.ok()) {
    return fail(std::move(s));
  }
  a.header_length = kFileHeaderLength;
  a.data_end = a.reserved_end = kFileHeaderLength;
  a.index.base = base;
  a.index.interval = st.options.index_interval_bytes;
  a.index.path = IdxPath(st, base);
  auto ifd = OpenFile(a.index.path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (!ifd.ok()) return fail(ifd.status());
  a.index.fd = std::move(*ifd);
  if (Status s = ResetIndexFile(st, a.index); !s.ok()) {
    a.index.fd.reset();
    (void)RemoveFile(a.index.path);
    return fail(std::move(s));
  }
  st.dir_dirty = true;
  return a;
}

// Finishes the active segment: final index entry, exact size. Optionally
// syncs it. The caller replaces st.active afterwards.
Status SealActive(LogState& st, bool sync) {
  ActiveSegment& a = st.active;
  if (a.has_record && (!a.index.has_entry || a.index.last_entry_offset != a.last_offset)) {
    a.index.Add(a.last_offset, st.max_ts, a.last_position);
  }
  RUNNEL_RETURN_IF_ERROR(a.index.Flush());
  RUNNEL_RETURN_IF_ERROR(Truncate(a.fd.get(), a.data_end, a.path));
  if (sync) {
    RUNNEL_RETURN_IF_ERROR(SyncData(a.fd.get(), a.path));
    RUNNEL_RETURN_IF_ERROR(SyncData(a.index.fd.get(), a.index.path));
  }
  return Status::Ok();
}

Status Roll(LogState& st) {
  RUNNEL_RETURN_IF_ERROR(SealActive(st, st.options.sync_on_roll));
  auto next = CreateSegment(st, st.next_offset);
  if (!next.ok()) return next.status();
  if (st.options.sync_on_roll) {
    RUNNEL_RETURN_IF_ERROR(SyncDir(st.dir));
    st.dir_dirty = false;
  } else {
    st.unsynced_sealed.push_back(st.active.base);
  }
  st.sealed.push_back(
      SealedSegment{st.active.base, st.active.data_end, st.active.header_length, st.max_ts});
  st.active = std::move(*next);
  return Status::Ok();
}

// fdatasyncs the segments (and indexes) that rolls without sync_on_roll
// sealed since the last Sync. A file retention or Truncate deleted since has
// nothing left to make durable and is skipped.
Status SyncUnsyncedSealed(LogState& st) {
  while (!st.unsynced_sealed.empty()) {
    const uint64_t base = st.unsynced_sealed.front();
    for (const std::string& path : {SegPath(st, base), IdxPath(st, base)}) {
      Result<ScopedFd> fd = OpenFile(path, O_RDONLY);
      if (!fd.ok()) {
        if (fd.status().code() == StatusCode::kNotFound) continue;
        return fd.status();
      }
      RUNNEL_RETURN_IF_ERROR(SyncData(fd->get(), path));
    }
    st.unsynced_sealed.erase(st.unsynced_sealed.begin());
  }
  return Status::Ok();
}

Status Usable(const LogState* st) {
  if (st == nullptr) return Status::FailedPrecondition("PartitionLog was moved from");
  if (st->closed) return Status::FailedPrecondition("PartitionLog " + st->dir + " is closed");
  return st->sticky;
}

// --- recovery -------------------------------------------------------------

struct SegmentFile {
  uint64_t base = 0;
  uint64_t size = 0;
  uint32_t header_length = kFileHeaderLength;
};

std::string Pos(uint64_t base, uint64_t position) {
  return SegmentFileName(base) + " at file position " + std::to_string(position);
}

// Recovery scans from the checkpoint's position on, trusting what is before
// it. That trust is checked where it is cheap: from the last index entry
// before the position, the frames must run without a zero-filled hole to
// exactly the position, and the last record must be the one before the
// checkpoint's next offset (internal::CheckDurableEnd). Durable records
// zeroed behind the checkpoint, or a checkpoint whose fields do not match its
// log, went unnoticed: records were appended after a hole, or offsets the log
// held were handed out again. Index entries that do not name a valid record
// are passed over. Returns what does not match.
std::optional<std::string> DurableEndMismatch(const LogState& st, const SegmentFile& seg,
                                              const LoadedIndex& idx, const Checkpoint& cp) {
  const std::string path = SegPath(st, seg.base);
  auto fd = OpenFile(path, O_RDONLY);
  if (!fd.ok()) return fd.status().message();
  auto map = Mapping::Map(fd->get(), cp.file_position, path);
  if (!map.ok()) return map.status().message();
  // From the last index entry that names a whole record with its offset (a
  // damaged entry, or one into zeroed bytes, says nothing); else from the
  // segment's start.
  uint64_t from = seg.header_length;
  for (auto it = idx.entries.rbegin(); it != idx.entries.rend(); ++it) {
    const DiskFrame f =
        InspectDiskFrame(map->data() + it->position, cp.file_position - it->position, true);
    if (f.kind == DiskFrameKind::kRecord &&
        RecordView(map->data() + it->position).offset() == seg.base + it->relative_offset) {
      from = it->position;
      break;
    }
  }
  return internal::CheckDurableEnd(map->data(), from, cp.file_position, cp.next_offset);
}

// Brings the index of a scanned segment in line with the scan: the kept
// prefix plus the entries generated by the scan (and a final entry).
Status RewriteIndex(LogState& st, IndexWriter& idx, const LoadedIndex* kept,
                    const std::vector<TimeIndexEntry>& generated) {
  auto fd = OpenFile(idx.path, O_RDWR | O_CREAT, 0644);
  if (!fd.ok()) return fd.status();
  idx.fd = std::move(*fd);
  if (kept == nullptr) {
    RUNNEL_RETURN_IF_ERROR(ResetIndexFile(st, idx));
  } else {
    idx.entries_start = kept->entries_start;
    idx.entries_on_disk = kept->entries.size();
    RUNNEL_RETURN_IF_ERROR(Truncate(
        idx.fd.get(), idx.entries_start + idx.entries_on_disk * kTimeIndexEntryLength, idx.path));
  }
  idx.pending = generated;
  const std::vector<TimeIndexEntry>& all =
      !generated.empty() ? generated : (kept ? kept->entries : generated);
  idx.has_entry = !all.empty();
  if (idx.has_entry) {
    idx.last_entry_position = all.back().position;
    idx.last_entry_offset = idx.base + all.back().relative_offset;
  }
  return idx.Flush();
}

// Builds a missing or unusable index of a sealed segment by scanning it.
// A scan that stops on a frame that fails its check (not at the clean end of
// the data) adds a warning: recovery does not cut a sealed segment, readers
// report what is there as damage.
Status RebuildIndex(LogState& st, uint64_t base, uint32_t header_length) {
  const std::string path = SegPath(st, base);
  auto fd = OpenFile(path, O_RDONLY);
  if (!fd.ok()) return fd.status();
  auto size = FileSize(fd->get(), path);
  if (!size.ok()) return size.status();
  auto map = Mapping::Map(fd->get(), *size, path);
  if (!map.ok()) return map.status();
  IndexWriter gen;
  gen.base = base;
  gen.interval = st.options.index_interval_bytes;
  uint64_t expected = base;
  bool lenient = true;
  int64_t max_ts = kNoTimestamp;
  const ScanResult r =
      ScanFrames(map->data(), *size, header_length, expected, lenient, max_ts,
                 [&](uint64_t off, int64_t ts, uint64_t p) { gen.MaybeAdd(off, ts, p); });
  if (r.has_record && gen.last_entry_offset != r.last_offset) {
    gen.Add(r.last_offset, max_ts, r.last_position);
  }
  if (StoppedOnDamage(r, map->data(), *size)) {
    st.warnings.push_back(
        SegmentFileName(base) + ": damage at file position " + std::to_string(r.end) +
        (r.stop == ScanResult::Stop::kBad ? " (" + r.reason + ")" : " (zeros followed by data)") +
        "; the sealed segment is kept as it is and readers report the damage "
        "(runnel replay DIR --verify)");
  }
  IndexWriter idx;
  idx.base = base;
  idx.interval = st.options.index_interval_bytes;
  idx.path = IdxPath(st, base);
  return RewriteIndex(st, idx, nullptr, gen.pending);
}

// Writes a fresh header for segment `base` at `path` (its name says the
// base offset), fdatasync'ed if `sync`.
Status RewriteSegmentHeader(const LogState& st, const std::string& path, uint64_t base, bool sync) {
  auto rw = OpenFile(path, O_RDWR);
  if (!rw.ok()) return rw.status();
  FileHeader h;
  h.base_offset = base;
  h.created_ns = WallClockNanos();
  h.segment_bytes = st.options.segment_bytes;
  const auto bytes = EncodeFileHeader(h);
  RUNNEL_RETURN_IF_ERROR(WriteAt(rw->get(), bytes.data(), bytes.size(), 0, path));
  return sync ? SyncData(rw->get(), path) : Status::Ok();
}

// The segment's header fails its own checks (magic, length, CRC): damage,
// as opposed to a readable header of another version or another base.
bool HeaderDamaged(int fd, const std::string& path) {
  std::array<std::byte, kFileHeaderLength> buf{};
  auto n = ReadAt(fd, buf.data(), buf.size(), 0, path);
  if (!n.ok()) return false;
  auto h = DecodeFileHeader(std::span<const std::byte>(buf.data(), *n), FileKind::kSegment, path);
  return !h.ok() && h.status().code() == StatusCode::kCorruption;
}

// Replaces the checkpoint atomically: a temporary file, fdatasync, rename,
// directory fsync.
Status StoreCheckpoint(const LogState& st, const Checkpoint& c) {
  const auto bytes = EncodeCheckpoint(c);
  const std::string tmp = JoinPath(st.dir, kCheckpointTempFileName);
  const std::string final_path = JoinPath(st.dir, kCheckpointFileName);
  {
    auto fd = OpenFile(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (!fd.ok()) return fd.status();
    RUNNEL_RETURN_IF_ERROR(WriteAt(fd->get(), bytes.data(), bytes.size(), 0, tmp));
    RUNNEL_RETURN_IF_ERROR(SyncData(fd->get(), tmp));
  }
  RUNNEL_RETURN_IF_ERROR(RenameFile(tmp, final_path));
  return SyncDir(st.dir);
}

// Before repair changes a byte of the log (cuts, zeroes, removes a segment,
// writes a gap marker), the checkpoint says so: a crash in the middle must
// not leave a checkpoint whose position points into what the repair cut
// (recovery would then continue after a hole). `floor` keeps the offsets
// that were durable once out of reach; the next open repairs again from the
// start of `segment_base`.
Status BeginRepair(LogState& st, uint64_t segment_base, uint64_t floor) {
  if (st.repair_begun) return Status::Ok();
  Checkpoint c;
  c.segment_base = segment_base;
  c.file_position = 0;
  c.next_offset = std::max(floor, st.checkpoint_next);
  c.max_timestamp_ns = 0;
  c.written_ns = WallClockNanos();
  c.flags = kCheckpointRepairing;
  RUNNEL_RETURN_IF_ERROR(StoreCheckpoint(st, c));
  st.checkpoint_next = c.next_offset;
  st.repair_begun = true;
  return Status::Ok();
}

Status Recover(LogState& st) {
  auto listing = ListPartition(st.dir);
  if (!listing.ok()) return listing.status();
  for (const std::string& name : listing->foreign) {
    st.warnings.push_back("ignored " + JoinPath(st.dir, name) +
                          ": not a runnel file (runnel only uses *.log, *.timeindex and "
                          "checkpoint files here)");
  }
  if (listing->has_checkpoint_temp) {
    (void)RemoveFile(JoinPath(st.dir, kCheckpointTempFileName));
    st.warnings.push_back("removed " + std::string(kCheckpointTempFileName) +
                          " left by an interrupted checkpoint write");
  }

  // Segment headers. A last segment whose header reads as zeros is the
  // leftover of a roll interrupted by a crash before the header reached the
  // disk: the header is rewritten from the name, the scan decides the rest.
  const std::vector<uint64_t>& bases = listing->segments;
  std::vector<SegmentFile> segs;
  for (uint64_t base : bases) {
    const std::string name = SegmentFileName(base);
    const std::string path = JoinPath(st.dir, name);
    auto fd = OpenFile(path, O_RDONLY);
    if (!fd.ok()) return fd.status();
    auto size = FileSize(fd->get(), name);
    if (!size.ok()) return size.status();
    if (base == bases.back() && HeaderNeverWritten(fd->get(), *size)) {
      RUNNEL_RETURN_IF_ERROR(RewriteSegmentHeader(st, path, base, /*sync=*/false));
      st.warnings.push_back("rewrote the header of " + name +
                            ": its creation was interrupted before the header reached the disk");
      *size = std::max<uint64_t>(*size, kFileHeaderLength);
    }
    auto h = ReadFileHeader(fd->get(), FileKind::kSegment, base, st.dir, name);
    if (!h.ok() && HeaderDamaged(fd->get(), path)) {
      // Bad magic or CRC (not a renamed file, not a newer format): the
      // records after it carry their own CRCs and offsets.
      if (!st.options.repair) {
        return Status::Corruption(h.status().message() +
                                  ". If it is this log's segment with a damaged header, restore "
                                  "it, or open with repair (`runnel broker --repair`, "
                                  "LogOptions::repair) to rewrite the header from the file name "
                                  "and check the records after it");
      }
      RUNNEL_RETURN_IF_ERROR(RewriteSegmentHeader(st, path, base, /*sync=*/true));
      // Its index is rebuilt by scanning the records (or the scan below
      // starts at the segment's start), which checks them.
      if (Status r = RemoveFile(IdxPath(st, base)); !r.ok() && r.code() != StatusCode::kNotFound) {
        return r;
      }
      st.warnings.push_back("repair: rewrote the damaged header of " + name +
                            " from its file name (" + h.status().message() + ")");
      *size = std::max<uint64_t>(*size, kFileHeaderLength);
      h = ReadFileHeader(fd->get(), FileKind::kSegment, base, st.dir, name);
    }
    if (!h.ok()) return h.status();
    if (*size < h->header_length) {
      return Status::Corruption("segment " + path + " is " + std::to_string(*size) +
                                " bytes, shorter than its header; move it out of the partition "
                                "directory");
    }
    segs.push_back(SegmentFile{base, *size, h->header_length});
  }
  // Indexes without a segment: leftovers of retention or of the removal above.
  for (uint64_t base : listing->time_indexes) {
    if (!std::binary_search(bases.begin(), bases.end(), base)) {
      (void)RemoveFile(IdxPath(st, base));
      st.warnings.push_back("removed " + TimeIndexFileName(base) + ": its segment does not exist");
    }
  }

  // The checkpoint.
  std::optional<Checkpoint> cp;
  if (listing->has_checkpoint) {
    auto c = ReadCheckpointFile(st.dir);
    if (c.ok()) {
      cp = *c;
      st.checkpoint_next = c->next_offset;
    } else if (c.status().code() != StatusCode::kCorruption &&
               c.status().code() != StatusCode::kVersionMismatch) {
      return c.status();
    } else {
      st.warnings.push_back("ignored the checkpoint (" + c.status().message() +
                            "); recovery scans the last segment from its start");
    }
  }
  std::optional<std::size_t> cp_index;
  // An interrupted repair: its checkpoint names the segment it was cutting
  // and a floor for the next offset, not a position.
  const bool repairing = cp && (cp->flags & kCheckpointRepairing) != 0;
  if (repairing) {
    if (!st.options.repair) {
      return Status::Corruption(
          "a repair of " + st.dir +
          " was interrupted (its checkpoint says so): the log may be "
          "cut part way through " +
          SegmentFileName(cp->segment_base) +
          ". Open with repair again (`runnel broker --repair`, LogOptions::repair) to finish it");
    }
    auto it = std::lower_bound(segs.begin(), segs.end(), cp->segment_base,
                               [](const SegmentFile& s, uint64_t b) { return s.base < b; });
    if (it != segs.end() && it->base == cp->segment_base) {
      cp_index = static_cast<std::size_t>(it - segs.begin());
    }
    if (segs.empty()) st.options.initial_offset = cp->next_offset;
    st.warnings.push_back("repair: finishing an interrupted repair (from " +
                          SegmentFileName(cp->segment_base) + ")");
  } else if (cp) {
    if (segs.empty()) {
      if (!st.options.repair) {
        return Status::Corruption(
            "the checkpoint in " + st.dir + " says the log holds records up to offset " +
            std::to_string(cp->next_offset) + " (segment " + SegmentFileName(cp->segment_base) +
            "), but the directory has no segment files: the log was deleted or moved. Restore "
            "the segments, or open with repair (`runnel broker --repair`, LogOptions::repair) to "
            "start an empty log at offset " +
            std::to_string(cp->next_offset) + " (offsets are never reused)");
      }
      st.report.reason = "repair: no segments; the log restarts at the checkpoint's next offset";
      st.options.initial_offset = cp->next_offset;
    } else {
      auto it = std::lower_bound(segs.begin(), segs.end(), cp->segment_base,
                                 [](const SegmentFile& s, uint64_t b) { return s.base < b; });
      if (it != segs.end() && it->base == cp->segment_base) {
        const bool position_ok = cp->file_position >= it->header_length &&
                                 cp->file_position % 8 == 0 && cp->next_offset >= it->base;
        if (position_ok && cp->file_position > it->size && !st.options.repair) {
          return Status::Corruption("the checkpoint says " + SegmentFileName(it->base) +
                                    " holds durable data up to file position " +
                                    std::to_string(cp->file_position) + " (offset " +
                                    std::to_string(cp->next_offset) + "), but the file has only " +
                                    std::to_string(it->size) +
                                    " bytes: durable records were lost. Restore the file, or "
                                    "open with repair (`runnel broker --repair`, "
                                    "LogOptions::repair) to continue with what is there");
        }
        if (position_ok && cp->file_position <= it->size) {
          cp_index = static_cast<std::size_t>(it - segs.begin());
        } else {
          st.warnings.push_back("ignored the checkpoint: its position does not fit " +
                                SegmentFileName(it->base));
        }
      } else if (cp->segment_base > segs.back().base ||
                 (cp->segment_base > segs.front().base && !st.options.repair)) {
        if (!st.options.repair) {
          return Status::Corruption(
              "the checkpoint names segment " + SegmentFileName(cp->segment_base) +
              " (durable up to offset " + std::to_string(cp->next_offset) +
              "), which is missing from " + st.dir +
              ": segments were deleted or moved. Restore them, or open with "
              "repair (`runnel broker --repair`, LogOptions::repair) to continue without them");
        }
        st.warnings.push_back("repair: ignored the checkpoint; its segment " +
                              SegmentFileName(cp->segment_base) + " is missing");
      }
      // Else: older than every segment (retention removed it): stale, unused.
    }
  }

  if (segs.empty()) {
    auto a = CreateSegment(st, st.options.initial_offset);
    if (!a.ok()) return a.status();
    st.active = std::move(*a);
    st.next_offset = st.options.initial_offset;
    st.after_padding = false;
    st.report.scan_segment_base = st.active.base;
    st.report.scan_start_position = st.active.header_length;
    return Status::Ok();
  }

  // Where the scan starts.
  std::size_t start = segs.size() - 1;
  uint64_t pos = segs[start].header_length;
  uint64_t expected = segs[start].base;
  bool lenient = true;
  int64_t max_ts = kNoTimestamp;
  std::optional<LoadedIndex> start_index;
  if (cp_index && repairing) {
    start = *cp_index;
    pos = segs[start].header_length;
    expected = segs[start].base;
  } else if (cp_index) {
    start = *cp_index;
    start_index = LoadIndex(st.dir, segs[start].base, segs[start].header_length, cp->file_position);
    std::optional<std::string> mismatch;
    if (start_index) mismatch = DurableEndMismatch(st, segs[start], *start_index, *cp);
    if (mismatch && !st.options.repair) {
      return Status::Corruption(
          "the checkpoint in " + st.dir + " says " + SegmentFileName(segs[start].base) +
          " holds durable records up to file position " + std::to_string(cp->file_position) +
          " (next offset " + std::to_string(cp->next_offset) +
          "), but the log does not match: " + *mismatch +
          ". The log or the checkpoint changed after it was written. Restore the files, or "
          "open with repair (`runnel broker --repair`, LogOptions::repair) to rescan the segment "
          "and cut it at the damage (the offsets the checkpoint called durable become a gap)");
    }
    if (mismatch) {
      start_index.reset();
      st.warnings.push_back("repair: the log does not match its checkpoint (" + *mismatch +
                            "); rescanning " + SegmentFileName(segs[start].base));
      pos = segs[start].header_length;
      expected = segs[start].base;
    } else if (start_index) {
      pos = cp->file_position;
      expected = cp->next_offset;
      max_ts = cp->max_timestamp_ns;
      st.report.from_checkpoint = true;
    } else {
      st.warnings.push_back("the time index of " + SegmentFileName(segs[start].base) +
                            " is unusable; recovery rescans the segment to rebuild it");
      pos = segs[start].header_length;
      expected = segs[start].base;
    }
  }
  if (!st.report.from_checkpoint && start > 0) {
    auto prev = Summarize(st.dir, segs[start - 1].base, segs[start - 1].header_length);
    if (prev.ok()) max_ts = prev->max_ts;
  }
  st.report.scan_segment_base = segs[start].base;
  st.report.scan_start_position = pos;

  // Sealed segments before the scan: make sure each has a usable index.
  for (std::size_t i = 0; i < start; ++i) {
    // Usable: whole entries, each in the segment and after the one before
    // (a damaged entry made it partly unusable and was kept), the last one
    // matching its record (one read per sealed segment).
    auto idx = OpenIndex(st.dir, segs[i].base);
    std::optional<LoadedIndex> loaded;
    if (idx && idx->whole) {
      loaded = LoadIndex(st.dir, segs[i].base, segs[i].header_length, segs[i].size);
    }
    if (!loaded || loaded->entries.size() != idx->count ||
        (!loaded->entries.empty() &&
         !IndexEntryMatchesRecord(st.dir, segs[i].base, loaded->entries.back()))) {
      RUNNEL_RETURN_IF_ERROR(RebuildIndex(st, segs[i].base, segs[i].header_length));
      st.warnings.push_back("rebuilt the time index of " + SegmentFileName(segs[i].base));
    }
    st.sealed.push_back(SealedSegment{segs[i].base, segs[i].size, segs[i].header_length, {}});
    // Sealed segments are not rescanned, but a hole between two of them (a
    // segment deleted or moved) is said. The segment's end comes from its
    // tail (Summarize: from the last index entry on), not the index alone,
    // which may miss its last records after a crash.
    // A segment whose records stop at damage has its end past it: readers
    // report that damage, there is no hole to name.
    Result<SegmentSummary> sum = Summarize(st.dir, segs[i].base, segs[i].header_length);
    if (sum.ok() && sum->last_offset && !sum->damaged) {
      const uint64_t end = *sum->last_offset + 1;
      const uint64_t next = segs[i + 1].base;
      if (next > end) {
        st.warnings.push_back("offsets " + std::to_string(end) + ".." + std::to_string(next - 1) +
                              " are missing between " + SegmentFileName(segs[i].base) + " and " +
                              SegmentFileName(next) +
                              " (a segment was deleted or moved?); their records are gone");
      } else if (next < end) {
        st.warnings.push_back(SegmentFileName(next) + " starts at offset " + std::to_string(next) +
                              ", inside " + SegmentFileName(segs[i].base) +
                              " (which ends at offset " + std::to_string(end - 1) +
                              "); readers report the overlap as damage");
      }
    }
  }

  // Scan the segments from `start` to the last.
  for (std::size_t i = start; i < segs.size(); ++i) {
    const SegmentFile& seg = segs[i];
    const std::string path = SegPath(st, seg.base);
    if (i > start) {
      pos = seg.header_length;
      lenient = true;
    }
    auto fd = OpenFile(path, O_RDWR);
    if (!fd.ok()) return fd.status();
    auto map = Mapping::Map(fd->get(), seg.size, path);
    if (!map.ok()) return map.status();

    IndexWriter gen;
    gen.base = seg.base;
    gen.interval = st.options.index_interval_bytes;
    const LoadedIndex* kept = (i == start && start_index) ? &*start_index : nullptr;
    if (kept != nullptr && !kept->entries.empty()) {
      gen.has_entry = true;
      gen.last_entry_position = kept->entries.back().position;
      gen.last_entry_offset = seg.base + kept->entries.back().relative_offset;
    }
    const uint64_t offset_at_start = expected;
    const ScanResult r =
        ScanFrames(map->data(), seg.size, pos, expected, lenient, max_ts,
                   [&](uint64_t off, int64_t ts, uint64_t p) { gen.MaybeAdd(off, ts, p); });
    st.report.records_recovered += r.records;

    // Drops segments i+1.. (repair), accounting for their bytes in the
    // report (their offsets are in it through dropped_floor, below). The
    // newest goes first, so a crash part way leaves a log without a hole.
    auto drop_later = [&]() -> Status {
      for (std::size_t j = segs.size() - 1; j > i; --j) {
        RUNNEL_RETURN_IF_ERROR(RemoveFile(SegPath(st, segs[j].base)));
        (void)RemoveFile(IdxPath(st, segs[j].base));
        st.report.bytes_dropped += segs[j].size - segs[j].header_length;
        ++st.report.segments_removed;
      }
      segs.resize(i + 1);
      return Status::Ok();
    };

    // The offset after every record a repair cut drops: readable ones after
    // `from` in this segment (past the damage too) and those of the later
    // segments. They may have been confirmed durable after the checkpoint
    // was written: the repair's floor keeps them from being given out again.
    auto dropped_floor = [&](uint64_t from, uint64_t floor) {
      auto raise = [&](std::optional<uint64_t> o) {
        if (o) floor = std::max(floor, *o + 1);
      };
      // Only records that pass their CRC: a flipped byte in an offset field
      // must not move the floor.
      for (std::optional<uint64_t> q = FindNextValidRecord(map->data(), seg.size, from, floor); q;
           q = FindNextValidRecord(
               map->data(), seg.size,
               *q + AlignedFrameLength(RecordView(map->data() + *q).frame_length()), floor)) {
        raise(RecordView(map->data() + *q).offset());
      }
      for (std::size_t j = i + 1; j < segs.size(); ++j) {
        if (auto sum = Summarize(st.dir, segs[j].base, segs[j].header_length); sum.ok()) {
          raise(sum->last_offset);
        }
      }
      return floor;
    };

    // How did the data end?
    const bool last = i + 1 == segs.size();
    const uint64_t cut = r.end;
    // The checkpoint fit this segment, so the bytes before its position were
    // durable: a scan that ends before them (zeros or damage where records
    // were, read from the segment start because the time index was unusable)
    // lost durable data, and going on would hand their offsets out again.
    if (cp_index && i == *cp_index && cut < cp->file_position && !st.options.repair) {
      return Status::Corruption(
          "the checkpoint says " + SegmentFileName(seg.base) +
          " holds durable data up to file "
          "position " +
          std::to_string(cp->file_position) + " (offset " + std::to_string(cp->next_offset) +
          "), but its data ends at " + Pos(seg.base, cut) +
          ": durable records were lost (zero-filled or damaged). Restore the file, or open "
          "with repair (`runnel broker --repair`, LogOptions::repair) to continue with what is "
          "there");
    }
    uint64_t extent_end = r.end;  // end of the non-zero bytes after the cut
    std::string reason;
    if (r.stop == ScanResult::Stop::kZero) {
      extent_end = NonZeroExtentEnd(map->data(), seg.size, r.end);
      if (extent_end > r.end) reason = "zero-filled hole followed by non-zero bytes";
    } else if (r.stop == ScanResult::Stop::kBad) {
      reason = r.reason;
      extent_end = std::max(NonZeroExtentEnd(map->data(), seg.size, r.end), r.end + 8);
      extent_end = std::min(extent_end, seg.size);
    }
    if (!reason.empty()) {
      const uint64_t min_offset = r.has_record ? r.last_offset + 1 : offset_at_start;
      const std::optional<uint64_t> valid_after =
          FindNextValidRecord(map->data(), seg.size, cut + 8, min_offset);
      const bool mid_log = valid_after.has_value() || !last;
      if (mid_log && !st.options.repair) {
        std::string msg = "segment " + Pos(seg.base, cut) + ": corrupt frame (" + reason + ")";
        if (r.has_record) msg += " after offset " + std::to_string(r.last_offset);
        if (valid_after) {
          msg += "; valid records follow at file position " + std::to_string(*valid_after) +
                 " (offset " + std::to_string(RecordView(map->data() + *valid_after).offset()) +
                 "), so this is not a torn tail";
        } else {
          msg += "; " + std::to_string(segs.size() - 1 - i) +
                 " later segments follow, so this is not a torn tail";
        }
        msg +=
            ". Restore the file, or open with repair (`runnel broker --repair`, "
            "LogOptions::repair) to truncate the log here "
            "(dropping " +
            std::to_string(extent_end - cut) + " bytes of this segment";
        if (!last) msg += " and " + std::to_string(segs.size() - 1 - i) + " later segments";
        msg += ")";
        return Status::Corruption(std::move(msg));
      }
      st.report.bytes_dropped += extent_end - cut;
      st.report.first_dropped_offset = expected;
      st.report.last_dropped_offset =
          LastReadableOffset(map->data(), seg.size, cut, expected).value_or(expected);
      st.report.file = SegmentFileName(seg.base);
      st.report.truncated_at = cut;
      st.report.reason = (mid_log ? "repair: corrupt frame: " : "torn tail: ") + reason;
      if (st.options.repair) {
        // A torn tail holds nothing confirmed; damage mid-log may hide
        // records confirmed after the checkpoint.
        const uint64_t floor = mid_log ? dropped_floor(cut, expected) : expected;
        if (floor > expected) st.report.last_dropped_offset = floor - 1;
        RUNNEL_RETURN_IF_ERROR(BeginRepair(st, seg.base, floor));
      }
      RUNNEL_RETURN_IF_ERROR(drop_later());
      RUNNEL_RETURN_IF_ERROR(ZeroRange(fd->get(), cut, extent_end, path));
    } else if (!last && segs[i + 1].base != expected) {
      // Segment i ends cleanly, but the next one does not continue it.
      const uint64_t next = segs[i + 1].base;
      const std::string what =
          next > expected ? "offsets " + std::to_string(expected) + ".." +
                                std::to_string(next - 1) + " are missing between " +
                                SegmentFileName(seg.base) + " and " + SegmentFileName(next)
                          : SegmentFileName(next) + " starts at offset " + std::to_string(next) +
                                ", inside " + SegmentFileName(seg.base) +
                                " (which ends before offset " + std::to_string(expected) + ")";
      if (!st.options.repair) {
        return Status::Corruption(
            what +
            ". Restore the missing data, or open with "
            "repair (`runnel broker --repair`, LogOptions::repair) to truncate the log after " +
            SegmentFileName(seg.base));
      }
      st.report.first_dropped_offset = expected;
      st.report.file = SegmentFileName(seg.base);
      st.report.truncated_at = cut;
      st.report.reason = "repair: " + what;
      const uint64_t floor = dropped_floor(cut, expected);
      if (floor > expected) st.report.last_dropped_offset = floor - 1;
      RUNNEL_RETURN_IF_ERROR(BeginRepair(st, seg.base, floor));
      RUNNEL_RETURN_IF_ERROR(drop_later());
    }
    const bool now_last = i + 1 == segs.size();

    // Index: the kept prefix plus what the scan generated (plus, for a
    // sealed segment, an entry for its last record).
    if (!now_last && r.has_record && gen.last_entry_offset != r.last_offset) {
      gen.Add(r.last_offset, max_ts, r.last_position);
    }
    IndexWriter idx;
    idx.base = seg.base;
    idx.interval = st.options.index_interval_bytes;
    idx.path = IdxPath(st, seg.base);
    RUNNEL_RETURN_IF_ERROR(RewriteIndex(st, idx, kept, gen.pending));

    if (!now_last) {
      // A sealed segment whose size was never cut to its data (a crash
      // between roll and seal, or sync_on_roll off): seal it now.
      if (cut < seg.size) RUNNEL_RETURN_IF_ERROR(Truncate(fd->get(), cut, path));
      st.sealed.push_back(SealedSegment{seg.base, cut, seg.header_length, max_ts});
      continue;
    }

    // The last segment becomes the active one.
    ActiveSegment& a = st.active;
    a.base = seg.base;
    a.path = path;
    a.fd = std::move(*fd);
    a.header_length = seg.header_length;
    a.data_end = a.reserved_end = cut;
    a.index = std::move(idx);
    a.has_record = r.has_record;
    a.last_offset = r.last_offset;
    a.last_position = r.last_position;
    st.after_padding = r.last_was_padding || !r.has_record;
    if (st.options.preallocate && seg.size < st.options.segment_bytes) {
      RUNNEL_RETURN_IF_ERROR(Preallocate(a.fd.get(), st.options.segment_bytes, path));
    }
    break;
  }
  st.next_offset = expected;
  st.max_ts = max_ts;
  return Status::Ok();
}

}  // namespace
}  // namespace internal

using internal::LogState;

// --- RecoveryReport ---------------------------------------------------------

std::string RecoveryReport::ToString() const {
  std::string s;
  if (clean()) {
    s = "clean (" + std::to_string(records_recovered) + " records verified from " +
        (from_checkpoint ? "the checkpoint" : "the segment start") + ")";
    return s;
  }
  s = "dropped " + std::to_string(bytes_dropped) + " bytes";
  if (first_dropped_offset) {
    s += " (offsets " + std::to_string(*first_dropped_offset);
    if (last_dropped_offset && *last_dropped_offset != *first_dropped_offset) {
      s += ".." + std::to_string(*last_dropped_offset);
    }
    s += ")";
  }
  if (!file.empty()) s += " at " + file + ":" + std::to_string(truncated_at);
  if (segments_removed > 0) s += ", removed " + std::to_string(segments_removed) + " segments";
  s += ": " + reason + "; " + std::to_string(records_recovered) + " records verified";
  return s;
}

// --- PartitionLog -------------------------------------------------------------

PartitionLog::PartitionLog(std::unique_ptr<LogState> state) : state_(std::move(state)) {}
PartitionLog::PartitionLog(PartitionLog&&) noexcept = default;
PartitionLog& PartitionLog::operator=(PartitionLog&& o) noexcept {
  if (this != &o) {
    if (state_ && !state_->closed) (void)Close();
    state_ = std::move(o.state_);
  }
  return *this;
}
PartitionLog::~PartitionLog() {
  if (state_ && !state_->closed) (void)Close();
}

Result<PartitionLog> PartitionLog::Open(std::string dir, LogOptions options) {
  RUNNEL_RETURN_IF_ERROR(internal::ValidateOptions(options));
  std::error_code ec;
  const bool created = std::filesystem::create_directories(dir, ec);
  if (ec) {
    return Status::FromErrno(ec.value(), "cannot create partition directory " + dir +
                                             " (check the data dir and its permissions)");
  }
  if (created) {
    // Make the new directory entries durable: the partition and topic
    // directories live in their parents.
    const std::filesystem::path p = std::filesystem::path(dir).lexically_normal();
    const std::filesystem::path topic =
        p.has_filename() ? p.parent_path() : p.parent_path().parent_path();
    if (!topic.empty()) {
      RUNNEL_RETURN_IF_ERROR(internal::SyncDir(topic.string()));
      if (topic.has_parent_path()) (void)internal::SyncDir(topic.parent_path().string());
    }
  }
  auto st = std::make_unique<LogState>();
  st->dir = std::move(dir);
  st->options = options;
  auto lock = internal::OpenFile(st->dir, O_RDONLY | O_DIRECTORY);
  if (!lock.ok()) return lock.status();
  if (::flock(lock->get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Status::Unavailable("partition directory " + st->dir +
                                 " is open for writing by another PartitionLog (is another "
                                 "broker running on this data dir?)");
    }
    return Status::FromErrno(errno, "flock " + st->dir);
  }
  st->dir_lock = std::move(*lock);
  RUNNEL_RETURN_IF_ERROR(internal::Recover(*st));
  PartitionLog log(std::move(st));
  internal::LogState& state = *log.state_;
  if (state.options.repair && state.checkpoint_next > state.next_offset) {
    // Repair cut records the checkpoint called durable: a gap marker names
    // them, in the same sync as the cut, so the checkpoint below never goes
    // back and no later open hands those offsets out again.
    const int64_t ts = std::max<int64_t>(0, internal::CommittedEnd(state).max_timestamp_ns);
    const uint64_t from = state.next_offset;
    RUNNEL_RETURN_IF_ERROR(internal::BeginRepair(state, state.active.base, state.checkpoint_next));
    RUNNEL_RETURN_IF_ERROR(log.Append(EncodeGapMarker({from, state.checkpoint_next}, ts)));
    state.warnings.push_back("repair: offsets " + std::to_string(from) + ".." +
                             std::to_string(state.checkpoint_next - 1) +
                             " were cut and may have been confirmed durable; marked as a gap "
                             "(never reused; consumers are told)");
  }
  // Whatever recovery kept is on disk now; make it durable and remember it.
  RUNNEL_RETURN_IF_ERROR(log.Sync());
  RUNNEL_RETURN_IF_ERROR(log.WriteCheckpoint());
  return log;
}

const std::string& PartitionLog::dir() const { return state_->dir; }
const LogOptions& PartitionLog::options() const { return state_->options; }
const RecoveryReport& PartitionLog::recovery() const { return state_->report; }
const std::vector<std::string>& PartitionLog::warnings() const { return state_->warnings; }
uint64_t PartitionLog::next_offset() const { return state_->next_offset; }
uint64_t PartitionLog::log_start_offset() const {
  return state_->sealed.empty() ? state_->active.base : state_->sealed.front().base;
}
LogPosition PartitionLog::committed_end() const { return internal::CommittedEnd(*state_); }
LogPosition PartitionLog::durable_end() const { return state_->durable; }

std::vector<SegmentInfo> PartitionLog::segments() const {
  std::vector<SegmentInfo> out;
  for (const auto& s : state_->sealed) out.push_back(SegmentInfo{s.base, s.bytes, false});
  out.push_back(SegmentInfo{state_->active.base, state_->active.data_end, true});
  return out;
}

uint64_t PartitionLog::size_bytes() const {
  uint64_t total = state_->active.data_end;
  for (const auto& s : state_->sealed) total += s.bytes;
  return total;
}

Result<AppendTarget> PartitionLog::PrepareAppend(uint64_t nbytes) {
  RUNNEL_RETURN_IF_ERROR(internal::Usable(state_.get()));
  LogState& st = *state_;
  const uint64_t capacity = st.options.segment_bytes - kFileHeaderLength;
  if (nbytes == 0 || nbytes % kFrameAlignment != 0 || nbytes > capacity) {
    return Status::InvalidArgument(
        "PrepareAppend(" + std::to_string(nbytes) + "): need a non-zero multiple of 8 of at most " +
        std::to_string(capacity) + " bytes (split the batch at frame boundaries)");
  }
  internal::ActiveSegment& a = st.active;
  const bool has_data = a.reserved_end > a.header_length;
  if (a.reserved_end + nbytes > st.options.segment_bytes && has_data) {
    if (a.reserved_end != a.data_end) {
      return Status::Unavailable("segment " + SegmentFileName(a.base) +
                                 " is full: commit the in-flight appends, then prepare again");
    }
    // A segment holding only padding has next_offset == base: a new segment
    // could not get another name, so this one grows past segment_bytes.
    if (st.next_offset != a.base) {
      // On failure nothing is reserved and the active segment stays usable
      // (a later PrepareAppend retries the roll).
      RUNNEL_RETURN_IF_ERROR(internal::Roll(st));
    }
  }
  AppendTarget t;
  t.fd = st.active.fd.get();
  t.file_position = st.active.reserved_end;
  t.segment_base = st.active.base;
  t.nbytes = nbytes;
  st.active.reserved_end += nbytes;
  return t;
}

void PartitionLog::CommitAppend(const AppendTarget& target, uint64_t nbytes,
                                std::span<const FrameMeta> frames) {
  if (!internal::Usable(state_.get()).ok()) return;
  LogState& st = *state_;
  internal::ActiveSegment& a = st.active;
  auto poison = [&](std::string why) {
    st.sticky = Status::Internal("CommitAppend contract violated: " + why +
                                 "; the log refuses further appends (reopen it to recover)");
  };
  if (target.segment_base != a.base || target.file_position != a.data_end ||
      nbytes != target.nbytes || a.data_end + nbytes > a.reserved_end) {
    poison("target at " + SegmentFileName(target.segment_base) + ":" +
           std::to_string(target.file_position) + " is not the oldest outstanding reservation (" +
           std::to_string(a.data_end) + ")");
    return;
  }
  const uint64_t end = target.file_position + nbytes;
  for (const FrameMeta& m : frames) {
    if (m.file_position < target.file_position || m.file_position + kFrameHeaderLength > end ||
        m.file_position % kFrameAlignment != 0) {
      poison("frame at file position " + std::to_string(m.file_position) +
             " is outside the target");
      return;
    }
    if (m.offset < st.next_offset || (a.has_record && m.file_position <= a.last_position)) {
      poison("offset " + std::to_string(m.offset) + " does not follow " +
             std::to_string(st.next_offset));
      return;
    }
    st.max_ts = std::max(st.max_ts, m.timestamp_ns);
    a.index.MaybeAdd(m.offset, st.max_ts, m.file_position);
    a.has_record = true;
    a.last_offset = m.offset;
    a.last_position = m.file_position;
    st.next_offset = m.offset + 1;
  }
  a.data_end = end;
  // FrameMeta does not say whether padding ends the batch: be lenient.
  st.after_padding = true;
  if (a.index.pending.size() >= internal::kIndexFlushEntries) {
    // A failed write (a full disk) keeps the entries for the next flush; Sync
    // reports it, and the log goes on once it succeeds. (It used to refuse
    // every later append until reopened: a broker never resumed after a full
    // disk had refused an index write.)
    (void)a.index.Flush();
  }
}

Status PartitionLog::AbortAppend(const AppendTarget& target) {
  RUNNEL_RETURN_IF_ERROR(internal::Usable(state_.get()));
  internal::ActiveSegment& a = state_->active;
  if (target.segment_base != a.base || target.file_position + target.nbytes != a.reserved_end) {
    return Status::FailedPrecondition("AbortAppend: not the newest outstanding reservation");
  }
  RUNNEL_RETURN_IF_ERROR(
      internal::ZeroRange(a.fd.get(), target.file_position, a.reserved_end, a.path));
  a.reserved_end = target.file_position;
  return Status::Ok();
}

void PartitionLog::MarkDurable(const LogPosition& end) {
  if (!state_) return;
  if (end.next_offset >= state_->durable.next_offset &&
      (end.segment_base > state_->durable.segment_base ||
       (end.segment_base == state_->durable.segment_base &&
        end.file_position >= state_->durable.file_position))) {
    state_->durable = end;
  }
}

Status PartitionLog::Append(std::span<const std::byte> frames) {
  RUNNEL_RETURN_IF_ERROR(internal::Usable(state_.get()));
  LogState& st = *state_;
  if (st.active.reserved_end != st.active.data_end) {
    return Status::FailedPrecondition("Append with asynchronous appends in flight");
  }
  if (frames.size() % kFrameAlignment != 0) {
    return Status::InvalidArgument("Append: " + std::to_string(frames.size()) +
                                   " bytes is not a whole number of 8-aligned frames");
  }
  // Parse and validate everything first: all or nothing.
  struct Parsed {
    uint64_t start;
    uint64_t length;
    bool record;
    uint64_t offset;
    int64_t ts;
  };
  std::vector<Parsed> parsed;
  uint64_t expected = st.next_offset;
  bool lenient = st.after_padding;
  for (uint64_t pos = 0; pos < frames.size();) {
    const internal::DiskFrame f =
        internal::InspectDiskFrame(frames.data() + pos, frames.size() - pos, true);
    if (f.kind == internal::DiskFrameKind::kEnd || f.kind == internal::DiskFrameKind::kBad) {
      return Status::InvalidArgument(
          "Append: bytes at " + std::to_string(pos) + " are not a frame (" +
          (f.kind == internal::DiskFrameKind::kEnd ? "zero commit word" : f.reason) + ")");
    }
    Parsed p{pos, f.aligned_length, f.kind == internal::DiskFrameKind::kRecord, 0, 0};
    if (p.record) {
      const RecordView v(frames.data() + pos);
      p.offset = v.offset();
      p.ts = v.timestamp_ns();
      if (!internal::OffsetFollows(p.offset, expected, lenient)) {
        return Status::InvalidArgument("Append: record offset " + std::to_string(p.offset) +
                                       " does not continue the log (expected " +
                                       std::to_string(expected) + ")");
      }
      expected = p.offset + 1;
      lenient = false;
    } else {
      lenient = true;
    }
    if (f.aligned_length > st.options.segment_bytes - kFileHeaderLength) {
      return Status::InvalidArgument("Append: a " + std::to_string(f.aligned_length) +
                                     "-byte frame does not fit in a segment of " +
                                     std::to_string(st.options.segment_bytes) + " bytes");
    }
    parsed.push_back(p);
    pos += f.aligned_length;
  }

  std::vector<FrameMeta> metas;
  for (std::size_t i = 0; i < parsed.size();) {
    // Take the frames that fit in the active segment (or in a new one).
    const internal::ActiveSegment& a = st.active;
    uint64_t room =
        st.options.segment_bytes > a.reserved_end ? st.options.segment_bytes - a.reserved_end : 0;
    if (parsed[i].length > room && a.reserved_end > a.header_length) {
      room = st.options.segment_bytes - kFileHeaderLength;  // it will roll
    }
    std::size_t j = i;
    uint64_t n = 0;
    while (j < parsed.size() && (j == i || n + parsed[j].length <= room)) n += parsed[j++].length;
    auto target = PrepareAppend(n);
    if (!target.ok()) return target.status();
    if (Status s = internal::WriteAt(target->fd, frames.data() + parsed[i].start, n,
                                     target->file_position, st.active.path);
        !s.ok()) {
      (void)AbortAppend(*target);
      return s;
    }
    metas.clear();
    for (std::size_t k = i; k < j; ++k) {
      if (parsed[k].record) {
        metas.push_back(FrameMeta{parsed[k].offset, parsed[k].ts,
                                  target->file_position + (parsed[k].start - parsed[i].start)});
      }
    }
    CommitAppend(*target, n, metas);
    RUNNEL_RETURN_IF_ERROR(st.sticky);
    st.after_padding = !parsed[j - 1].record;
    i = j;
  }
  return Status::Ok();
}

Status PartitionLog::Sync() {
  RUNNEL_RETURN_IF_ERROR(internal::Usable(state_.get()));
  LogState& st = *state_;
  const LogPosition end = internal::CommittedEnd(st);
  RUNNEL_RETURN_IF_ERROR(st.active.index.Flush());
  RUNNEL_RETURN_IF_ERROR(internal::SyncData(st.active.fd.get(), st.active.path));
  RUNNEL_RETURN_IF_ERROR(internal::SyncData(st.active.index.fd.get(), st.active.index.path));
  RUNNEL_RETURN_IF_ERROR(internal::SyncUnsyncedSealed(st));
  if (st.dir_dirty) {
    RUNNEL_RETURN_IF_ERROR(internal::SyncDir(st.dir));
    st.dir_dirty = false;
  }
  MarkDurable(end);
  return Status::Ok();
}

bool PartitionLog::DirectoryRemoved() const {
  struct stat st {};
  return state_ && state_->dir_lock.get() >= 0 && ::fstat(state_->dir_lock.get(), &st) == 0 &&
         st.st_nlink == 0;
}

Status PartitionLog::WriteCheckpoint() {
  RUNNEL_RETURN_IF_ERROR(internal::Usable(state_.get()));
  LogState& st = *state_;
  RUNNEL_RETURN_IF_ERROR(st.active.index.Flush());
  Checkpoint c;
  c.segment_base = st.durable.segment_base;
  c.file_position = st.durable.file_position;
  c.next_offset = st.durable.next_offset;
  c.max_timestamp_ns = st.durable.max_timestamp_ns;
  c.written_ns = WallClockNanos();
  return internal::StoreCheckpoint(st, c);
}

Result<RetentionResult> PartitionLog::Retention(const RetentionPolicy& policy, int64_t now_ns) {
  RUNNEL_RETURN_IF_ERROR(internal::Usable(state_.get()));
  LogState& st = *state_;
  RetentionResult out;
  uint64_t total = size_bytes();
  const int64_t age_limit_ns =
      policy.max_age_ms ? now_ns - *policy.max_age_ms * 1'000'000 : internal::kNoTimestamp;
  std::size_t removed = 0;
  while (removed < st.sealed.size()) {
    internal::SealedSegment& s = st.sealed[removed];
    bool by_size = policy.max_bytes && total > *policy.max_bytes;
    bool by_age = false;
    if (!by_size && policy.max_age_ms) {
      if (!s.max_ts) {
        auto sum = internal::Summarize(st.dir, s.base, s.header_length);
        if (!sum.ok()) return sum.status();
        s.max_ts = sum->max_ts;
      }
      by_age = *s.max_ts < age_limit_ns;
    }
    if (!by_size && !by_age) break;
    RUNNEL_RETURN_IF_ERROR(internal::RemoveFile(internal::SegPath(st, s.base)));
    (void)internal::RemoveFile(internal::IdxPath(st, s.base));
    out.removed.push_back(RemovedSegment{s.base, s.bytes, !by_size});
    out.bytes_removed += s.bytes;
    total -= s.bytes;
    ++removed;
  }
  st.sealed.erase(st.sealed.begin(), st.sealed.begin() + static_cast<std::ptrdiff_t>(removed));
  if (removed > 0) st.dir_dirty = true;
  out.log_start_offset = log_start_offset();
  return out;
}

Status PartitionLog::Truncate(uint64_t new_next) {
  RUNNEL_RETURN_IF_ERROR(internal::Usable(state_.get()));
  LogState& st = *state_;
  if (st.active.reserved_end != st.active.data_end) {
    return Status::FailedPrecondition("Truncate with asynchronous appends in flight");
  }
  if (new_next >= st.next_offset) return Status::Ok();
  if (new_next < log_start_offset()) {
    return Status::OutOfRange("Truncate(" + std::to_string(new_next) +
                              "): the log starts at offset " + std::to_string(log_start_offset()));
  }
  // The segment that will hold the new end: the last with base <= new_next.
  RUNNEL_RETURN_IF_ERROR(st.active.index.Flush());
  if (new_next < st.active.base) {
    // Delete the active segment and every sealed one after the target.
    while (!st.sealed.empty() && st.sealed.back().base > new_next) {
      RUNNEL_RETURN_IF_ERROR(internal::RemoveFile(internal::SegPath(st, st.sealed.back().base)));
      (void)internal::RemoveFile(internal::IdxPath(st, st.sealed.back().base));
      st.sealed.pop_back();
    }
    st.active.fd.reset();
    st.active.index.fd.reset();
    RUNNEL_RETURN_IF_ERROR(internal::RemoveFile(st.active.path));
    (void)internal::RemoveFile(st.active.index.path);
    const internal::SealedSegment target = st.sealed.back();
    st.sealed.pop_back();
    internal::ActiveSegment a;
    a.base = target.base;
    a.path = internal::SegPath(st, target.base);
    auto fd = internal::OpenFile(a.path, O_RDWR);
    if (!fd.ok()) return st.sticky = fd.status();
    a.fd = std::move(*fd);
    a.header_length = target.header_length;
    a.data_end = a.reserved_end = target.bytes;
    a.index.base = target.base;
    a.index.interval = st.options.index_interval_bytes;
    a.index.path = internal::IdxPath(st, target.base);
    st.active = std::move(a);
    st.dir_dirty = true;
  }
  // Find the cut in the active segment: the first record with offset >= new_next.
  internal::ActiveSegment& a = st.active;
  auto map = internal::Mapping::Map(a.fd.get(), a.data_end, a.path);
  if (!map.ok()) return st.sticky = map.status();
  int64_t max_ts = internal::kNoTimestamp;
  if (!st.sealed.empty()) {
    auto prev = internal::Summarize(st.dir, st.sealed.back().base, st.sealed.back().header_length);
    if (prev.ok()) max_ts = prev->max_ts;
  }
  uint64_t cut = a.header_length;
  bool has_record = false, after_padding = false;
  uint64_t last_offset = 0, last_position = 0;
  for (uint64_t pos = a.header_length; pos < a.data_end;) {
    const internal::DiskFrame f =
        internal::InspectDiskFrame(map->data() + pos, a.data_end - pos, true);
    if (f.kind == internal::DiskFrameKind::kPadding) {
      pos += f.aligned_length;
      after_padding = true;
      cut = pos;
      continue;
    }
    if (f.kind != internal::DiskFrameKind::kRecord) break;
    const RecordView v(map->data() + pos);
    if (v.offset() >= new_next) break;
    max_ts = std::max(max_ts, v.timestamp_ns());
    has_record = true;
    last_offset = v.offset();
    last_position = pos;
    after_padding = false;
    pos += f.aligned_length;
    cut = pos;
  }
  map->reset();
  auto size = internal::FileSize(a.fd.get(), a.path);
  if (!size.ok()) return st.sticky = size.status();
  if (Status s = internal::ZeroRange(a.fd.get(), cut, *size, a.path); !s.ok()) {
    return st.sticky = s;
  }
  if (st.options.preallocate) {
    if (Status s = internal::Preallocate(a.fd.get(), st.options.segment_bytes, a.path); !s.ok()) {
      return st.sticky = s;
    }
  }
  a.data_end = a.reserved_end = cut;
  a.has_record = has_record;
  a.last_offset = last_offset;
  a.last_position = last_position;
  // Index: keep the entries before the cut.
  auto kept = internal::LoadIndex(st.dir, a.base, a.header_length, cut);
  internal::IndexWriter idx;
  idx.base = a.base;
  idx.interval = st.options.index_interval_bytes;
  idx.path = internal::IdxPath(st, a.base);
  if (Status s = internal::RewriteIndex(st, idx, kept ? &*kept : nullptr, {}); !s.ok()) {
    return st.sticky = s;
  }
  a.index = std::move(idx);
  st.next_offset = new_next;
  st.after_padding = after_padding;
  st.max_ts = max_ts;
  RUNNEL_RETURN_IF_ERROR(Sync());
  st.durable = internal::CommittedEnd(st);  // moves back: MarkDurable would refuse
  return WriteCheckpoint();
}

Status PartitionLog::Close() {
  if (!state_) return Status::FailedPrecondition("PartitionLog was moved from");
  LogState& st = *state_;
  if (st.closed) return Status::FailedPrecondition("PartitionLog " + st.dir + " is closed");
  if (st.active.reserved_end != st.active.data_end) {
    return Status::FailedPrecondition("Close with asynchronous appends in flight");
  }
  Status result = st.sticky;
  if (result.ok()) result = internal::SealActive(st, /*sync=*/false);
  if (result.ok()) result = Sync();
  if (result.ok()) result = WriteCheckpoint();
  st.closed = true;
  st.active.fd.reset();
  st.active.index.fd.reset();
  st.dir_lock.reset();
  return result;
}

std::string NoSpaceHint(uint64_t segment_bytes) {
  const std::string size = segment_bytes % (1 << 20) == 0
                               ? std::to_string(segment_bytes >> 20) + " MiB"
                               : std::to_string(segment_bytes) + " bytes";
  return "every new segment takes its full size (" + size +
         ") at once: free at least that much, or re-create the topic with a smaller "
         "--segment-size";
}

}  // namespace runnel
