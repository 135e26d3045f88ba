#include "persistence/reader.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <limits>
#include <map>
#include <utility>

#include "core/coding.h"
#include "core/crc32c.h"
#include "persistence/format.h"
#include "persistence/internal/file.h"
#include "persistence/internal/layout.h"
#include "persistence/internal/scan.h"

namespace runnel {
namespace internal {

struct ReaderState {
  std::string dir;
  LogReaderOptions options;
  uint64_t page_size = 4096;
  std::vector<uint64_t> bases;  // segments as of the last listing

  // The open segment.
  bool open = false;
  uint64_t base = 0;
  std::string name;
  ScopedFd fd;
  Mapping map;
  uint64_t header_length = kFileHeaderLength;
  // A segment whose header failed only its CRC (damage reported): opened
  // again, its records are read by their own checks.
  std::optional<uint64_t> tolerated_header_base;
  uint64_t pos = 0;
  bool exhausted = false;        // at rest: nothing more in this segment
  uint64_t zero_checked_at = 0;  // a zero-word end already verified (at rest)

  // Which segment to open next: the first with base >= want_base.
  uint64_t want_base = 0;

  // The offset sequence: the next record must have `expected` (or more when
  // lenient). have_context: a record was read since the last seek/resync.
  uint64_t expected = 0;
  bool lenient = true;
  std::optional<uint64_t> last_offset;

  // Follow mode: records below this offset are completely written.
  uint64_t written_below = 0;
  std::vector<std::byte> scan_buffer;  // KnownDamage's window, kept between calls

  // Seek targets not reached yet.
  std::optional<uint64_t> skip_below_offset;
  std::optional<int64_t> skip_before_ts;

  std::vector<Damage> damages;
  uint64_t damages_not_kept = 0;
  Damage last_damage;
  // A damaged segment header a seek met: Next() returns it first (a seek
  // into a log whose first segment is damaged skipped it silently).
  bool seek_damage_pending = false;
  // The open segment was the last when it was opened: the writer may seal
  // (shrink) it under the mapping.
  bool may_shrink = false;
  LogReaderStats stats;
  std::map<uint64_t, int64_t> segment_max_ts;  // SeekTimestamp cache
};

namespace {

LogEntry EndEntry() { return LogEntry{}; }

Status Relist(ReaderState& r) {
  auto listing = ListPartition(r.dir);
  if (!listing.ok()) return listing.status();
  r.bases = std::move(listing->segments);
  return Status::Ok();
}

bool HasLaterSegment(const ReaderState& r) {
  return std::upper_bound(r.bases.begin(), r.bases.end(), r.base) != r.bases.end();
}

LogEntry RecordDamage(ReaderState& r, std::string file, uint64_t position, std::string reason,
                      std::optional<uint64_t> resume = std::nullopt) {
  Damage d{std::move(file), position, std::move(reason), r.last_offset, resume};
  if (r.damages.size() < r.options.max_damages) {
    r.damages.push_back(d);
  } else {
    ++r.damages_not_kept;
  }
  r.last_damage = std::move(d);
  LogEntry e;
  e.kind = LogEntry::Kind::kDamage;
  e.damage = &r.last_damage;
  return e;
}

void CloseSegment(ReaderState& r) {
  r.seek_damage_pending = false;
  r.map.reset();
  r.fd.reset();
  r.open = false;
  r.exhausted = false;
  r.zero_checked_at = 0;
}

// Re-maps the open segment if the file size changed (it grows, or shrinks
// once when the writer seals it: a mapping past the end of the file would
// fault). Returns the current file size.
uint64_t Refresh(ReaderState& r) {
  auto size = FileSize(r.fd.get(), r.name);
  if (!size.ok()) return r.map.size();
  if (*size != r.map.size()) {
    auto m = Mapping::Map(r.fd.get(), *size, r.name);
    if (m.ok()) r.map = std::move(*m);
  }
  return *size;
}

// Opens the first segment with base >= want_base. Returns a damage entry for
// a malformed header (the segment is skipped), kEnd when there is none (yet).
std::optional<LogEntry> OpenNextSegment(ReaderState& r) {
  auto it = std::lower_bound(r.bases.begin(), r.bases.end(), r.want_base);
  if (it == r.bases.end()) {
    if (!Relist(r).ok()) return EndEntry();
    it = std::lower_bound(r.bases.begin(), r.bases.end(), r.want_base);
    if (it == r.bases.end()) return EndEntry();
  }
  if (r.last_offset && !r.lenient && *it > r.expected) {
    // Not the segment that continues the one we read: list again before
    // calling offsets missing. A directory read while the writer creates
    // files can leave some out (seen on ext4 with tens of thousands of
    // segments: a reader skipped whole segments of a healthy live log).
    if (Relist(r).ok()) {
      it = std::lower_bound(r.bases.begin(), r.bases.end(), r.want_base);
      if (it == r.bases.end()) return EndEntry();
    }
  }
  const uint64_t base = *it;
  const std::string name = SegmentFileName(base);
  auto fd = OpenFile(JoinPath(r.dir, name), O_RDONLY);
  if (!fd.ok()) {
    // Deleted by retention since the listing: list again and retry later.
    (void)Relist(r);
    if (fd.status().code() == StatusCode::kNotFound) {
      r.want_base = base + 1;
      return RecordDamage(r, name, 0, "segment deleted (by retention?) before it was read");
    }
    return EndEntry();
  }
  auto size = FileSize(fd->get(), name);
  if (!size.ok()) return EndEntry();
  const bool last = it + 1 == r.bases.end();
  r.may_shrink = last;
  // A last segment whose header reads as zeros is being created by the
  // writer right now (follow), or is the leftover of a roll a crash
  // interrupted before the header reached the disk (at rest). Either way it
  // is not damage: the log's owner rewrites the header from the name when it
  // opens the log (LogOptions), and what follows it is read as it would be.
  const bool unfinished = last && HeaderNeverWritten(fd->get(), *size);
  if (unfinished && r.options.follow) return EndEntry();
  // Continuity with the previous segment: the writer names a segment by the
  // offset that follows the last record of the one before.
  auto continuity = [&]() -> std::optional<LogEntry> {
    if (!r.last_offset || r.lenient || base == r.expected) return std::nullopt;
    return RecordDamage(r, name, 0,
                        base > r.expected
                            ? "offsets " + std::to_string(r.expected) + ".." +
                                  std::to_string(base - 1) + " are missing before this segment"
                            : "segment starts at offset " + std::to_string(base) +
                                  ", before the end of the previous one (" +
                                  std::to_string(r.expected) + ")");
  };
  if (unfinished && *size <= kFileHeaderLength) {
    // Nothing in it to read; but offsets missing before it are missing.
    std::optional<LogEntry> gap = continuity();
    if (gap) r.lenient = true;  // reported once
    return gap ? *gap : EndEntry();
  }
  Result<FileHeader> h = FileHeader{};
  if (unfinished) {
    h->base_offset = base;
  } else {
    h = ReadFileHeader(fd->get(), FileKind::kSegment, base, r.dir, name);
  }
  if (!h.ok() && *size >= kFileHeaderLength) {
    // A header with the magic and a version of ours that fails only its
    // CRC (a damaged byte in an informational field, say): every record in
    // the segment carries its own CRC and offset, and the base offset is in
    // the file's name. Report the header once, then read the records.
    // Only a CRC mismatch: a header whose CRC holds but whose base offset
    // is not the name's (a renamed file, a stray copy) is not read.
    std::array<std::byte, kFileHeaderLength> raw{};
    auto n = ReadAt(fd->get(), raw.data(), raw.size(), 0, name);
    const bool ours = n.ok() && *n == raw.size() && IsDamagedHeaderOfOurs(raw, FileKind::kSegment);
    if (ours && r.tolerated_header_base != base) {
      r.tolerated_header_base = base;
      r.want_base = base;  // opened again on the next call, its offsets checked as usual
      return RecordDamage(r, name, 0,
                          h.status().message() + "; its records are read by their own checks");
    }
    if (ours) {
      // Writers always write a 64-byte header; the stored length may be the
      // damaged byte.
      h = FileHeader{};
      h->base_offset = base;
      h->header_length = kFileHeaderLength;
    }
  }
  if (!h.ok() || *size < h->header_length) {
    r.want_base = base + 1;
    r.lenient = true;
    return RecordDamage(r, name, 0,
                        h.ok() ? "segment shorter than its header" : h.status().message());
  }
  auto map = Mapping::Map(fd->get(), *size, name);
  if (!map.ok()) return EndEntry();

  const std::optional<LogEntry> gap = continuity();
  const bool strict = r.last_offset && !r.lenient && !gap;
  r.fd = std::move(*fd);
  r.map = std::move(*map);
  r.open = true;
  r.exhausted = false;
  r.zero_checked_at = 0;
  r.base = base;
  r.name = name;
  r.header_length = h->header_length;
  r.pos = h->header_length;
  r.want_base = base + 1;
  r.expected = base;
  r.lenient = !strict;
  return gap;
}

// Damage at r.pos: report it and resynchronize at the next valid record of
// this segment, or give up on the segment.
constexpr uint64_t kKnownDamageFirstScan = 64 << 10;
constexpr uint64_t kKnownDamageScan = 4 << 20;

LogEntry DamageAndResync(ReaderState& r, std::string reason, uint64_t limit) {
  const uint64_t at = r.pos;
  limit = std::min(limit, Refresh(r));
  limit = std::min(limit, r.map.size());
  const uint64_t min_offset = r.last_offset ? *r.last_offset + 1 : r.base;
  std::optional<uint64_t> q;
  if (!HasLaterSegment(r)) {
    // A writer may still append to this segment (also under a reader at
    // rest), and a seal may cut the file under the mapping: search with
    // pread, as far as KnownDamage looks. At rest, only a damaged stretch
    // longer than that is searched through the mapping.
    const uint64_t window = limit > at ? std::min(limit - at, kKnownDamageScan) : 0;
    if (r.scan_buffer.size() < window) r.scan_buffer.resize(window);
    auto n = window == 0 ? Result<uint64_t>(uint64_t{0})
                         : ReadAt(r.fd.get(), r.scan_buffer.data(), window, at, r.name);
    if (n.ok() && *n > 8) {
      if (auto rel = FindNextValidRecord(r.scan_buffer.data(), *n, 8, min_offset)) q = at + *rel;
    }
    if (!q && !r.options.follow && limit > at && limit - at > window) {
      q = FindNextValidRecord(r.map.data(), limit, at + 8, min_offset);
    }
  } else {
    q = FindNextValidRecord(r.map.data(), limit, at + 8, min_offset);
  }
  if (q) {
    r.pos = *q;
    r.lenient = true;
  } else {
    r.exhausted = true;
  }
  return RecordDamage(r, r.name, at, std::move(reason), q);
}

// Follow mode, at a frame that fails its check (or is out of sequence, or a
// zero word) in the last segment: true if it is damage after all, because
// the record that belongs here is known to be completely written and a
// valid record follows it within kKnownDamageScan bytes (so the resync that
// comes next finds it, and never gives up on a segment the writer still
// appends to). Read with pread, not through the mapping: the writer may cut
// the file to its data (seal) meanwhile, and touching the mapping past the
// new end would fault. A damaged frame longer than the window is waited on
// as one being written, until the segment is sealed. The first look reads
// 64 KiB (a damaged small record is followed by the next one right away);
// only a full first window that holds no valid record is read again whole.
bool KnownDamage(ReaderState& r) {
  const uint64_t min_offset = r.last_offset ? *r.last_offset + 1 : r.base;
  if (min_offset >= r.written_below) return false;
  for (uint64_t window = kKnownDamageFirstScan;; window = kKnownDamageScan) {
    if (r.scan_buffer.size() < window) r.scan_buffer.resize(window);
    auto n = ReadAt(r.fd.get(), r.scan_buffer.data(), window, r.pos, r.name);
    if (!n.ok() || *n <= 8) return false;
    if (FindNextValidRecord(r.scan_buffer.data(), *n, 8, min_offset)) return true;
    if (*n < window || window == kKnownDamageScan) return false;
  }
}

// True if a byte in [from, to) of the open segment is not zero. Read with
// pread, not through the mapping: the writer may cut the file meanwhile.
bool NonZeroOnDisk(ReaderState& r, uint64_t from, uint64_t to) {
  constexpr uint64_t kChunk = 1 << 20;
  if (r.scan_buffer.size() < kChunk) r.scan_buffer.resize(kChunk);
  for (uint64_t at = from; at < to;) {
    auto n = ReadAt(r.fd.get(), r.scan_buffer.data(), std::min(kChunk, to - at), at, r.name);
    if (!n.ok() || *n == 0) return false;
    if (NonZeroExtentEnd(r.scan_buffer.data(), *n, 0) > 0) return true;
    at += *n;
  }
  return false;
}

// Reached the end of the open segment's data (a zero word, or the end of the
// file). Moves on to the next segment when there is one; else kEnd.
std::optional<LogEntry> AtSegmentEnd(ReaderState& r, bool zero_word, uint64_t file_size,
                                     bool file_short = false) {
  bool later = HasLaterSegment(r);
  // In follow mode, list the directory only when the file looks sealed (its
  // size ends at our position): that is when the writer may have rolled.
  if (!later && (!r.options.follow || file_size <= r.pos)) {
    (void)Relist(r);
    later = HasLaterSegment(r);
  }
  if (!later && r.options.follow) return EndEntry();
  if (zero_word && r.zero_checked_at != r.pos) {
    // The writer may have written here since we saw the zero word, and then
    // rolled to the later segment we just found: read the frame again.
    std::byte word[8];
    auto n = ReadAt(r.fd.get(), word, sizeof word, r.pos, r.name);
    if (n.ok() && *n == sizeof word && DecodeFixed64(word) != 0) return std::nullopt;
    // At rest, or sealed by a later segment: zeros must run to the end.
    r.zero_checked_at = r.pos;
    if (NonZeroOnDisk(r, r.pos, file_size)) {
      return DamageAndResync(r, "zero-filled hole followed by non-zero bytes",
                             std::min(file_size, r.map.size()));
    }
  }
  if (!later) {
    r.exhausted = true;
    return EndEntry();
  }
  if (file_short) {
    // The file ended at our position (a segment just created, its
    // preallocation not yet visible). The writer may have filled it since,
    // and then rolled to the later segment we just found: look again before
    // leaving (a reader skipped whole segments of a live log, and called
    // their offsets missing).
    const uint64_t now = Refresh(r);
    if (now >= r.pos + 8 && r.map.size() >= r.pos + 8) {
      std::byte word[8];
      auto n = ReadAt(r.fd.get(), word, sizeof word, r.pos, r.name);
      if (n.ok() && *n == sizeof word && DecodeFixed64(word) != 0) return std::nullopt;
    }
  }
  CloseSegment(r);
  return std::nullopt;  // continue with the next segment
}

bool PassesSkip(ReaderState& r, const RecordView& v) {
  if (r.skip_below_offset) {
    if (v.offset() < *r.skip_below_offset) return false;
    r.skip_below_offset.reset();
  }
  if (r.skip_before_ts) {
    if (v.timestamp_ns() < *r.skip_before_ts) return false;
    r.skip_before_ts.reset();
  }
  return true;
}

LogEntry NextImpl(ReaderState& r) {
  for (;;) {
    if (!r.open) {
      if (auto e = OpenNextSegment(r)) return *e;
      if (!r.open) continue;
    }
    if (r.exhausted) {
      // At rest we stay here unless a later segment appears.
      if (auto e = AtSegmentEnd(r, false, r.map.size())) return *e;
      continue;
    }
    uint64_t size = r.map.size();
    if (r.pos + 8 > size) {
      size = Refresh(r);
      if (r.pos + 8 > std::min(size, r.map.size())) {
        if (auto e = AtSegmentEnd(r, false, size, /*file_short=*/true)) return *e;
        continue;
      }
    }
    // The data ends at a zero commit word.
    auto at_zero_word = [&r]() -> std::optional<LogEntry> {
      if (r.options.follow && KnownDamage(r)) {
        return DamageAndResync(r, "zero-filled hole followed by non-zero bytes", r.map.size());
      }
      return AtSegmentEnd(r, true, Refresh(r));
    };
    if (r.pos % r.page_size == 0) {
      // The first word of a page: if the writer sealed (shrank) the file
      // right here, touching the mapping would fault. pread cannot. A zero
      // word there is not read through the mapping either: the page is past
      // the data, so it is the page a seal cuts off.
      std::byte word[8];
      auto n = ReadAt(r.fd.get(), word, sizeof word, r.pos, r.name);
      if (!n.ok() || *n < sizeof word) {
        const uint64_t now = Refresh(r);
        if (auto e = AtSegmentEnd(r, false, now)) return *e;
        continue;
      }
      if (DecodeFixed64(word) == 0) {
        if (auto e = at_zero_word()) return *e;
        continue;
      }
    }
    uint64_t avail = r.map.size() - r.pos;
    if (r.may_shrink && avail >= frame::kLength + 4) {
      // A frame running on into later pages of a segment mapped while it
      // was the last: the writer may have sealed (cut) it since, and a
      // damaged length may reach past the cut, where touching the mapping
      // faults. Checked against the file as it is now.
      const uint32_t claimed = DecodeFixed32(r.map.data() + r.pos + frame::kLength);
      if (r.pos % r.page_size + AlignedFrameLength(claimed) > r.page_size) {
        const uint64_t now = Refresh(r);
        avail = now > r.pos ? std::min(now, r.map.size()) - r.pos : 0;
      }
    }
    const DiskFrame f = InspectDiskFrame(r.map.data() + r.pos, avail, r.options.verify_crc);
    switch (f.kind) {
      case DiskFrameKind::kEnd: {
        if (auto e = at_zero_word()) return *e;
        continue;
      }
      case DiskFrameKind::kPadding:
        r.pos += f.aligned_length;
        r.lenient = true;
        ++r.stats.padding_frames;
        r.stats.bytes += f.aligned_length;
        continue;
      case DiskFrameKind::kBad: {
        if (r.options.follow && !KnownDamage(r)) {
          // Possibly a frame the writer is still writing; it is damage only
          // once the writer has moved on to a later segment.
          if (!HasLaterSegment(r)) (void)Relist(r);
          if (!HasLaterSegment(r)) return EndEntry();
          // Sealed: re-check against the exact file size before judging.
          Refresh(r);
          if (r.pos + 8 > r.map.size()) continue;
          const DiskFrame again =
              InspectDiskFrame(r.map.data() + r.pos, r.map.size() - r.pos, r.options.verify_crc);
          if (again.kind != DiskFrameKind::kBad) continue;
        }
        return DamageAndResync(r, f.reason, r.map.size());
      }
      case DiskFrameKind::kRecord:
        break;
    }
    const RecordView v(r.map.data() + r.pos);
    const uint64_t offset = v.offset();
    const bool follows =
        OffsetFollows(offset, r.expected, r.lenient) && (!r.last_offset || *r.last_offset < offset);
    if (!follows) {
      // Like a bad frame: in the last segment of a followed log, wait; the
      // resync could not see records the writer has not written yet.
      if (r.options.follow && !KnownDamage(r)) {
        if (!HasLaterSegment(r)) (void)Relist(r);
        if (!HasLaterSegment(r)) return EndEntry();
      }
      return DamageAndResync(
          r,
          "record offset " + std::to_string(offset) + " out of sequence (expected " +
              std::string(r.lenient ? "at least " : "") + std::to_string(r.expected) + ")",
          r.map.size());
    }
    LogEntry e;
    e.kind = LogEntry::Kind::kRecord;
    e.record = v;
    e.control = f.state == FrameState::kControl;
    e.segment_base = r.base;
    e.file_position = r.pos;
    r.pos += f.aligned_length;
    r.expected = offset + 1;
    r.lenient = false;
    r.last_offset = offset;
    ++r.stats.records;
    r.stats.bytes += f.aligned_length;
    if (!PassesSkip(r, v)) continue;
    return e;
  }
}

// A bounds-checked, read-only view of a segment's time index.
struct IndexMap {
  ScopedFd fd;
  Mapping map;
  TimeIndexView view;
};
std::optional<IndexMap> MapIndex(const std::string& dir, uint64_t base) {
  auto f = OpenIndex(dir, base);
  if (!f) return std::nullopt;
  auto map = Mapping::Map(f->fd.get(), f->file_size, TimeIndexFileName(base));
  if (!map.ok()) return std::nullopt;
  IndexMap m;
  m.fd = std::move(f->fd);
  m.map = std::move(*map);
  m.view = TimeIndexView(m.map.data() + f->entries_start, f->file_size - f->entries_start);
  return m;
}

// True if `e` points at a record of the open segment with the offset it claims.
bool EntryValid(const ReaderState& r, const TimeIndexEntry& e) {
  if (e.position < r.header_length || e.position % 8 != 0 || e.position >= r.map.size()) {
    return false;
  }
  const DiskFrame f =
      InspectDiskFrame(r.map.data() + e.position, r.map.size() - e.position, r.options.verify_crc);
  // An entry's timestamp is the largest up to its record: never below the
  // record's own (an entry with a lowered timestamp would make a seek by
  // time skip records).
  return f.kind == DiskFrameKind::kRecord &&
         RecordView(r.map.data() + e.position).offset() == r.base + e.relative_offset &&
         RecordView(r.map.data() + e.position).timestamp_ns() <= e.timestamp_ns;
}

// Opens the segment `base` for a seek; positions at its start.
Status OpenForSeek(ReaderState& r, uint64_t base) {
  CloseSegment(r);
  r.want_base = base;
  r.last_offset.reset();
  r.lenient = true;
  r.expected = base;
  r.seek_damage_pending = false;
  if (auto e = OpenNextSegment(r); e && e->kind == LogEntry::Kind::kDamage) {
    r.seek_damage_pending = true;  // Next() hands it over, then goes on
  }
  return Status::Ok();
}

// The largest timestamp up to the end of sealed segment `base`, which
// `next_base` follows (its last index entry, written when it was sealed);
// nullopt if unknown. Trusted only if that entry is the segment's last
// record (the one before `next_base`) and matches it: a timestamp below
// that record's, or an index that lost its last entries, would make the
// seek skip records.
std::optional<int64_t> SegmentMaxTimestamp(ReaderState& r, uint64_t base, uint64_t next_base) {
  constexpr int64_t kUnknown = std::numeric_limits<int64_t>::max();  // cached "do not skip"
  auto known = [](int64_t ts) { return ts == kUnknown ? std::nullopt : std::optional(ts); };
  if (auto it = r.segment_max_ts.find(base); it != r.segment_max_ts.end()) {
    return known(it->second);
  }
  int64_t ts = kUnknown;
  if (auto idx = MapIndex(r.dir, base); idx && idx->view.size() > 0) {
    const TimeIndexEntry last = idx->view.at(idx->view.size() - 1);
    if (base + last.relative_offset + 1 == next_base &&
        IndexEntryMatchesRecord(r.dir, base, last)) {
      ts = last.timestamp_ns;
    }
  }
  r.segment_max_ts.emplace(base, ts);
  return known(ts);
}

}  // namespace
}  // namespace internal

using internal::ReaderState;

std::string Damage::ToString() const {
  std::string s = file + ":" + std::to_string(file_position) + ": " + reason;
  if (offset_before || resume_position) {
    s += " (";
    if (offset_before) s += "after offset " + std::to_string(*offset_before);
    if (offset_before && resume_position) s += "; ";
    if (resume_position) s += "resumed at " + std::to_string(*resume_position);
    s += ")";
  }
  return s;
}

LogReader::LogReader(std::unique_ptr<ReaderState> state) : state_(std::move(state)) {}
LogReader::LogReader(LogReader&&) noexcept = default;
LogReader& LogReader::operator=(LogReader&&) noexcept = default;
LogReader::~LogReader() = default;

Result<LogReader> LogReader::Open(std::string dir, LogReaderOptions options) {
  auto st = std::make_unique<ReaderState>();
  st->dir = std::move(dir);
  st->options = options;
  const long page = ::sysconf(_SC_PAGESIZE);
  st->page_size = page > 0 ? static_cast<uint64_t>(page) : 4096;
  auto listing = internal::ListPartition(st->dir);
  if (!listing.ok()) {
    if (listing.status().code() == StatusCode::kNotFound) {
      return Status::NotFound("partition directory " + st->dir + " does not exist");
    }
    return listing.status();
  }
  st->bases = std::move(listing->segments);
  // Refuse a log written by another major version up front.
  for (uint64_t base : st->bases) {
    const std::string name = SegmentFileName(base);
    auto fd = internal::OpenFile(internal::JoinPath(st->dir, name), O_RDONLY);
    if (!fd.ok()) continue;
    auto h = internal::ReadFileHeader(fd->get(), FileKind::kSegment, base, st->dir, name);
    if (!h.ok() && h.status().code() == StatusCode::kVersionMismatch) return h.status();
  }
  st->want_base = 0;
  return LogReader(std::move(st));
}

Status LogReader::SeekToStart() {
  ReaderState& r = *state_;
  RUNNEL_RETURN_IF_ERROR(internal::Relist(r));
  internal::CloseSegment(r);
  r.want_base = 0;
  r.last_offset.reset();
  r.lenient = true;
  r.skip_below_offset.reset();
  r.skip_before_ts.reset();
  return Status::Ok();
}

Status LogReader::Seek(uint64_t offset) {
  ReaderState& r = *state_;
  RUNNEL_RETURN_IF_ERROR(internal::Relist(r));
  r.skip_before_ts.reset();
  r.skip_below_offset = offset;
  if (r.bases.empty()) {
    internal::CloseSegment(r);
    r.want_base = 0;
    return Status::Ok();
  }
  if (offset < r.bases.front()) {
    return Status::OutOfRange("offset " + std::to_string(offset) + " is before the log start " +
                              std::to_string(r.bases.front()) + " of " + r.dir +
                              " (removed by retention?); seek to " +
                              std::to_string(r.bases.front()) + " or later");
  }
  const uint64_t base = *(std::upper_bound(r.bases.begin(), r.bases.end(), offset) - 1);
  RUNNEL_RETURN_IF_ERROR(internal::OpenForSeek(r, base));
  if (!r.open || r.base != base) return Status::Ok();
  const uint64_t rel = offset - base;
  if (rel > std::numeric_limits<uint32_t>::max()) return Status::Ok();
  if (auto idx = internal::MapIndex(r.dir, base)) {
    if (auto i = idx->view.LastAtOrBeforeOffset(static_cast<uint32_t>(rel))) {
      const TimeIndexEntry e = idx->view.at(*i);
      if (internal::EntryValid(r, e)) {
        r.pos = e.position;
        r.expected = base + e.relative_offset;
        r.lenient = false;
      }
    }
  }
  return Status::Ok();
}

Status LogReader::SeekTimestamp(int64_t ts_ns) {
  ReaderState& r = *state_;
  RUNNEL_RETURN_IF_ERROR(internal::Relist(r));
  r.skip_below_offset.reset();
  r.skip_before_ts = ts_ns;
  if (r.bases.empty()) {
    internal::CloseSegment(r);
    r.want_base = 0;
    return Status::Ok();
  }
  // The first segment whose largest timestamp (max so far, so monotonic over
  // segments) reaches ts; the last segment is open-ended.
  std::size_t lo = 0, hi = r.bases.size() - 1;
  while (lo < hi) {
    const std::size_t mid = lo + (hi - lo) / 2;
    const std::optional<int64_t> max_ts =
        internal::SegmentMaxTimestamp(r, r.bases[mid], r.bases[mid + 1]);
    if (!max_ts || *max_ts >= ts_ns) {
      hi = mid;  // unknown: do not skip it
    } else {
      lo = mid + 1;
    }
  }
  const uint64_t base = r.bases[lo];
  RUNNEL_RETURN_IF_ERROR(internal::OpenForSeek(r, base));
  if (!r.open || r.base != base) return Status::Ok();
  if (auto idx = internal::MapIndex(r.dir, base)) {
    if (auto i = idx->view.LastBeforeTimestamp(ts_ns)) {
      const TimeIndexEntry e = idx->view.at(*i);
      if (internal::EntryValid(r, e)) {
        r.pos = e.position;
        r.expected = base + e.relative_offset;
        r.lenient = false;
      }
    }
  }
  return Status::Ok();
}

LogEntry LogReader::Next() {
  ReaderState& r = *state_;
  if (r.seek_damage_pending) {
    r.seek_damage_pending = false;
    LogEntry e;
    e.kind = LogEntry::Kind::kDamage;
    e.damage = &r.last_damage;
    return e;
  }
  return internal::NextImpl(r);
}

uint64_t LogReader::log_start_offset() const {
  return state_->bases.empty() ? 0 : state_->bases.front();
}
void LogReader::SetWrittenBelow(uint64_t offset) {
  state_->written_below = std::max(state_->written_below, offset);
}

const std::vector<Damage>& LogReader::damages() const { return state_->damages; }
uint64_t LogReader::damages_not_kept() const { return state_->damages_not_kept; }
const LogReaderStats& LogReader::stats() const { return state_->stats; }

// --- VerifyLog ----------------------------------------------------------------

namespace {

// Checks every entry of one segment's time index against the segment.
// `unfinished_roll`: the segment is the last one and holds no frame (see
// VerifyLog); a time index missing or never written is then a note.
void VerifyIndex(const std::string& dir, uint64_t base, bool unfinished_roll,
                 VerifyReport& report) {
  const std::string seg_name = SegmentFileName(base);
  const std::string idx_name = TimeIndexFileName(base);
  auto add = [&](uint64_t position, std::string reason) {
    if (report.damages.size() < 1000) {
      report.damages.push_back(Damage{idx_name, position, std::move(reason), {}, {}});
    } else {
      ++report.damages_not_kept;
    }
  };
  auto fd = internal::OpenFile(internal::JoinPath(dir, idx_name), O_RDONLY);
  if (unfinished_roll) {
    auto size = fd.ok() ? internal::FileSize(fd->get(), idx_name) : Result<uint64_t>(uint64_t{0});
    if (!fd.ok() || (size.ok() && internal::HeaderNeverWritten(fd->get(), *size))) {
      report.notes.push_back(idx_name + (fd.ok() ? " was never written" : " does not exist") +
                             ": the segment roll that creates it was interrupted (its segment "
                             "holds no records); the broker creates it when it opens the log");
      return;
    }
  }
  if (!fd.ok()) {
    add(0, "missing time index (" + fd.status().message() + "); seeks scan the segment");
    return;
  }
  auto h = internal::ReadFileHeader(fd->get(), FileKind::kTimeIndex, base, dir, idx_name);
  if (!h.ok()) {
    add(0, h.status().message());
    return;
  }
  auto seg = internal::OpenFile(internal::JoinPath(dir, seg_name), O_RDONLY);
  if (!seg.ok()) return;
  auto seg_size = internal::FileSize(seg->get(), seg_name);
  auto idx_size = internal::FileSize(fd->get(), idx_name);
  if (!seg_size.ok() || !idx_size.ok() || *idx_size < h->header_length) return;
  auto seg_map = internal::Mapping::Map(seg->get(), *seg_size, seg_name);
  auto idx_map = internal::Mapping::Map(fd->get(), *idx_size, idx_name);
  if (!seg_map.ok() || !idx_map.ok()) return;
  const uint64_t area = *idx_size - h->header_length;
  if (area % kTimeIndexEntryLength != 0) {
    add(*idx_size - area % kTimeIndexEntryLength, "partial entry at the end of the time index");
  }
  const internal::TimeIndexView view(idx_map->data() + h->header_length, area);
  std::optional<TimeIndexEntry> prev;
  for (uint64_t i = 0; i < view.size(); ++i) {
    const TimeIndexEntry e = view.at(i);
    const uint64_t at = h->header_length + i * kTimeIndexEntryLength;
    std::string problem;
    if (e.position < kFileHeaderLength || e.position % 8 != 0 || e.position >= *seg_size) {
      problem = "points outside the segment's frames";
    } else {
      const internal::DiskFrame f = internal::InspectDiskFrame(
          seg_map->data() + e.position, *seg_size - e.position, /*verify_crc=*/true);
      if (f.kind != internal::DiskFrameKind::kRecord) {
        problem = "does not point at a valid record";
      } else {
        const RecordView v(seg_map->data() + e.position);
        if (v.offset() != base + e.relative_offset) {
          problem = "says offset " + std::to_string(base + e.relative_offset) +
                    " but the record there has " + std::to_string(v.offset());
        } else if (v.timestamp_ns() > e.timestamp_ns) {
          problem = "timestamp is below the record's";
        }
      }
    }
    if (problem.empty() && prev &&
        (e.position <= prev->position || e.relative_offset <= prev->relative_offset ||
         e.timestamp_ns < prev->timestamp_ns)) {
      problem = "is not after the previous entry";
    }
    if (!problem.empty()) {
      add(at, "time index entry " + std::to_string(i) + " (position " + std::to_string(e.position) +
                  ") " + problem);
      return;  // one report per index is enough
    }
    prev = e;
  }
}

}  // namespace

namespace {

// The checkpoint names the durable end of the log: a segment and a position
// in it. A log that ends before it lost durable records (recovery refuses to
// open it without repair). A checkpoint recovery ignores (corrupt, unknown
// flags or format) is reported: records cut from the end would go unnoticed.
void VerifyCheckpoint(const std::string& dir, const std::vector<uint64_t>& segments,
                      VerifyReport& report) {
  auto cp = internal::ReadCheckpointFile(dir);
  Damage d;
  d.file = std::string(kCheckpointFileName);
  if (!cp.ok()) {
    // Written whole or not at all (temporary file, rename): damage. So are
    // flags this runnel does not know: recovery ignores such a checkpoint
    // just the same.
    if (cp.status().code() == StatusCode::kCorruption ||
        cp.status().code() == StatusCode::kVersionMismatch) {
      d.reason = cp.status().message() +
                 "; recovery ignores it and rescans the last segment, so records cut off "
                 "from the end of the log would go unnoticed";
      report.damages.push_back(std::move(d));
    }
    return;
  }
  if ((cp->flags & kCheckpointRepairing) != 0) {
    d.reason = "a repair was interrupted (the checkpoint says so) while it cut " +
               SegmentFileName(cp->segment_base) + "; offsets below " +
               std::to_string(cp->next_offset) +
               " were durable once. A writer refuses the log until `runnel broker --repair` "
               "finishes the repair";
    report.damages.push_back(std::move(d));
    return;
  }
  if (!std::binary_search(segments.begin(), segments.end(), cp->segment_base)) {
    // Older than every segment: retention removed it, the checkpoint is stale.
    if (!segments.empty() && cp->segment_base < segments.front()) return;
    d.reason = "the checkpoint says records up to offset " + std::to_string(cp->next_offset) +
               " are durable in " + SegmentFileName(cp->segment_base) +
               ", which does not exist: durable records are missing";
    report.damages.push_back(std::move(d));
    return;
  }
  const std::string seg_path = internal::JoinPath(dir, SegmentFileName(cp->segment_base));
  auto seg = internal::OpenFile(seg_path, O_RDONLY);
  if (!seg.ok()) return;
  auto size = internal::FileSize(seg->get(), seg_path);
  // A position that cannot be a frame boundary makes recovery ignore the
  // checkpoint (a warning there), so it is not damage here either.
  if (cp->file_position % kFrameAlignment != 0 || cp->next_offset < cp->segment_base) return;
  if (!size.ok()) return;
  if (*size >= cp->file_position) {
    // The bytes before the position must be the durable records it names
    // (recovery checks the same and refuses the log otherwise).
    Result<FileHeader> h = internal::ReadFileHeader(
        seg->get(), FileKind::kSegment, cp->segment_base, dir, SegmentFileName(cp->segment_base));
    // A header never written (an interrupted roll, a note) is taken as the
    // reader and recovery take it: the records the checkpoint names must
    // still be there.
    if (!h.ok() && internal::HeaderNeverWritten(seg->get(), *size)) h = FileHeader{};
    if (!h.ok() || h->header_length > cp->file_position) return;  // reported as damage elsewhere
    auto map = internal::Mapping::Map(seg->get(), cp->file_position, seg_path);
    if (!map.ok()) return;
    if (std::optional<std::string> problem = internal::CheckDurableEnd(
            map->data(), h->header_length, cp->file_position, cp->next_offset)) {
      d.reason = "the checkpoint says " + SegmentFileName(cp->segment_base) +
                 " holds durable records up to file position " + std::to_string(cp->file_position) +
                 " (next offset " + std::to_string(cp->next_offset) +
                 "), but the log does not match: " + *problem;
      d.file_position = cp->file_position;
      report.damages.push_back(std::move(d));
    }
    return;
  }
  d.reason = "the checkpoint says " + SegmentFileName(cp->segment_base) +
             " holds durable records up to file position " + std::to_string(cp->file_position) +
             " (offset " + std::to_string(cp->next_offset) + "), but the file is " +
             std::to_string(*size) + " bytes: durable records are missing (cut off)";
  d.file_position = *size;
  report.damages.push_back(std::move(d));
}

}  // namespace

Result<VerifyReport> VerifyLog(const std::string& dir) {
  LogReaderOptions options;
  options.follow = false;
  options.verify_crc = true;
  auto reader = LogReader::Open(dir, options);
  if (!reader.ok()) return reader.status();
  VerifyReport report;
  auto listing = internal::ListPartition(dir);
  if (!listing.ok()) return listing.status();
  report.segments = listing->segments.size();
  for (;;) {
    const LogEntry e = reader->Next();
    if (e.kind == LogEntry::Kind::kEnd) break;
    if (e.kind == LogEntry::Kind::kDamage) continue;
    if (e.control) {
      if (const std::optional<GapMarker> gap = DecodeGapMarker(e.record)) {
        ++report.gaps;
        report.gap_offsets += gap->to - gap->from;
        continue;
      }
    }
    ++report.records;
    if (e.control) ++report.control_records;
    if (!report.first_offset) {
      report.first_offset = e.record.offset();
      report.first_timestamp_ns = e.record.timestamp_ns();
    }
    report.last_offset = e.record.offset();
    report.last_timestamp_ns = e.record.timestamp_ns();
  }
  report.padding_frames = reader->stats().padding_frames;
  report.bytes = reader->stats().bytes;
  report.damages = reader->damages();
  report.damages_not_kept = reader->damages_not_kept();
  // The leftovers of a segment roll a crash interrupted: a last segment
  // with no frame, whose header or time index may never have been written.
  // The broker completes them when it opens the log (nothing was lost).
  bool unfinished_roll = false;
  if (!listing->segments.empty()) {
    const std::string name = SegmentFileName(listing->segments.back());
    auto fd = internal::OpenFile(internal::JoinPath(dir, name), O_RDONLY);
    auto size = fd.ok() ? internal::FileSize(fd->get(), name) : Result<uint64_t>(uint64_t{0});
    if (fd.ok() && size.ok()) {
      std::array<std::byte, 8> word{};
      auto n = *size >= kFileHeaderLength + word.size()
                   ? internal::ReadAt(fd->get(), word.data(), word.size(), kFileHeaderLength, name)
                   : Result<uint64_t>(word.size());
      // No frame where the first one goes, and no damage the reader found
      // further on (records after zeros).
      unfinished_roll = n.ok() && *n == word.size() && DecodeFixed64(word.data()) == 0 &&
                        std::none_of(report.damages.begin(), report.damages.end(),
                                     [&](const Damage& d) { return d.file == name; });
      if (internal::HeaderNeverWritten(fd->get(), *size)) {
        report.notes.push_back(name +
                               ": its header was never written (a segment roll that a crash "
                               "interrupted); the broker rewrites it from the file name when it "
                               "opens the log");
      }
    }
  }
  for (uint64_t base : listing->segments) {
    VerifyIndex(dir, base, unfinished_roll && base == listing->segments.back(), report);
  }
  if (listing->has_checkpoint) VerifyCheckpoint(dir, listing->segments, report);
  return report;
}

// --- data dir helpers -----------------------------------------------------------

std::string PartitionDir(std::string_view data_dir, std::string_view topic, uint32_t partition) {
  return internal::JoinPath(internal::JoinPath(data_dir, topic), std::to_string(partition));
}

Result<std::vector<std::string>> ListTopics(const std::string& data_dir) {
  auto entries = internal::ListDirectory(data_dir);
  if (!entries.ok()) return entries.status();
  std::vector<std::string> topics;
  for (const auto& e : *entries) {
    // Topic names may begin with a dot (".audit"): every directory counts,
    // but names with '~', which no topic has: the topic locks (~locks) and
    // what an interrupted removal left (<topic>~deleted.<pid>.<n>).
    if (e.is_dir && !e.name.empty() && e.name != "." && e.name != ".." &&
        e.name.find('~') == std::string::npos) {
      topics.push_back(e.name);
    }
  }
  std::sort(topics.begin(), topics.end());
  return topics;
}

Result<std::vector<uint32_t>> ListPartitions(const std::string& data_dir, std::string_view topic) {
  auto entries = internal::ListDirectory(internal::JoinPath(data_dir, topic));
  if (!entries.ok()) return entries.status();
  std::vector<uint32_t> parts;
  for (const auto& e : *entries) {
    if (!e.is_dir || e.name.empty() || (e.name.size() > 1 && e.name[0] == '0')) continue;
    uint32_t v = 0;
    const char* end = e.name.data() + e.name.size();
    auto [p, ec] = std::from_chars(e.name.data(), end, v);
    if (ec == std::errc() && p == end) parts.push_back(v);
  }
  std::sort(parts.begin(), parts.end());
  return parts;
}

}  // namespace runnel
