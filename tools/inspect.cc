// `runnel inspect PATH`: describes one file or directory of runnel's,
// recognised by its magic (else by its name):
//   - a segment (.log): header fields, frames walked and CRC-checked, record
//     count, offset and time range, where the data ends, damage;
//   - a time index (.timeindex): header, entries, ordering checks;
//   - a checkpoint: its fields;
//   - a partition dir: segments, checkpoint and a full verification; a topic
//     or data dir: one line per partition;
//   - a bus's shared memory under /dev/shm: the directory region (topics,
//     clients, broker), a partition ring (geometry, positions, gating slots,
//     records in the ring), or a lock file (who holds it, from /proc/locks).
// Everything is opened read-only; a ring or directory is mapped privately,
// so inspecting never changes a live bus.

#include <fcntl.h>
#include <fmt/core.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "core/coding.h"
#include "core/record.h"
#include "core/ring.h"
#include "ipc/durability.h"
#include "ipc/internal/directory.h"
#include "ipc/internal/process.h"
#include "persistence/format.h"
#include "persistence/internal/scan.h"
#include "persistence/reader.h"
#include "tools/bus_util.h"
#include "tools/cli_common.h"
#include "tools/commands.h"

namespace runnel::cli {
namespace {

constexpr std::string_view kInspectCmd = "inspect";
namespace fs = std::filesystem;

// A read-only view of a whole file: MAP_PRIVATE with write permission so
// that structures that want a mutable pointer can be attached, although we
// never write (no page is ever copied).
class FileMap {
 public:
  static Result<FileMap> Open(const std::string& path) {
    // Non-blocking: opening a FIFO put in a ring's place would wait for a
    // writer for ever.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return Status::FromErrno(errno, "cannot open " + path);
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      return Status::FromErrno(err, "cannot stat " + path);
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      return Status::InvalidArgument(path + " is not a regular file");
    }
    FileMap m;
    m.size_ = static_cast<uint64_t>(st.st_size);
    if (m.size_ > 0) {
      void* p = ::mmap(nullptr, m.size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int err = errno;
        ::close(fd);
        return Status::FromErrno(err, "cannot map " + path);
      }
      m.data_ = static_cast<std::byte*>(p);
    }
    ::close(fd);
    return m;
  }
  FileMap() = default;
  FileMap(FileMap&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(o.size_) {}
  FileMap& operator=(FileMap&&) = delete;
  ~FileMap() {
    if (data_ != nullptr) ::munmap(data_, size_);
  }
  std::byte* data() const { return data_; }
  uint64_t size() const { return size_; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }

 private:
  std::byte* data_ = nullptr;
  uint64_t size_ = 0;
};

std::string Ts(int64_t ns) { return fmt::format("{} ({} ns)", FormatTimestamp(ns), ns); }

// ---- segment --------------------------------------------------------------------

int InspectSegment(const std::string& path, const FileMap& m) {
  const std::string name = fs::path(path).filename().string();
  Result<FileHeader> h = DecodeFileHeader(m.bytes(), FileKind::kSegment, name);
  fmt::print("{}: segment file, {} bytes\n", path, m.size());
  if (!h.ok()) {
    fmt::print("  DAMAGE header: {}\n", h.status().message());
    return kExitDamage;
  }
  fmt::print("  version {}, header_length {}, base_offset {}, created {}\n",
             FormatVersionString(h->version), h->header_length, h->base_offset, Ts(h->created_ns));
  fmt::print("  flags {:#x}, segment_bytes {} (roll size when created)\n", h->flags,
             h->segment_bytes);
  if (auto named = ParseSegmentFileName(name); named && *named != h->base_offset) {
    fmt::print("  DAMAGE file name says base offset {}, header says {}\n", *named, h->base_offset);
  }
  uint64_t pos = h->header_length;
  uint64_t records = 0, control = 0, padding = 0, damages = 0, gaps = 0, gap_offsets = 0;
  std::optional<uint64_t> first, last;
  std::optional<int64_t> first_ts, last_ts;
  uint64_t expected = h->base_offset;
  bool after_padding = true;
  while (pos < m.size()) {
    const internal::DiskFrame f = internal::InspectDiskFrame(m.data() + pos, m.size() - pos, true);
    if (f.kind == internal::DiskFrameKind::kEnd) break;
    if (f.kind == internal::DiskFrameKind::kPadding) {
      ++padding;
      after_padding = true;
      pos += f.aligned_length;
      continue;
    }
    if (f.kind == internal::DiskFrameKind::kBad) {
      ++damages;
      std::optional<uint64_t> next =
          internal::FindNextValidRecord(m.data(), m.size(), pos + 8, expected);
      fmt::print("  DAMAGE at byte {}: {}{}\n", pos, f.reason,
                 next ? fmt::format(" (next valid record at byte {})", *next)
                      : std::string(" (nothing valid after it: a torn tail)"));
      if (!next) {
        // The extent is aligned up to 8; a torn file may end inside it.
        pos = std::min<uint64_t>(internal::NonZeroExtentEnd(m.data(), m.size(), pos), m.size());
        break;
      }
      pos = *next;
      after_padding = true;
      continue;
    }
    const RecordView r(m.data() + pos);
    if (!internal::OffsetFollows(r.offset(), expected, after_padding)) {
      ++damages;
      fmt::print("  DAMAGE at byte {}: offset {} where {} was expected\n", pos, r.offset(),
                 expected);
    }
    if (f.state == FrameState::kControl) {
      if (const std::optional<GapMarker> gap = DecodeGapMarker(r)) {
        // Not a record: the offsets [from, to) it names are lost.
        ++gaps;
        gap_offsets += gap->to - gap->from;
        fmt::print("  gap at byte {}: offsets {}..{} are lost (a repair or a lost ring)\n", pos,
                   gap->from, gap->to - 1);
        expected = r.offset() + 1;
        after_padding = false;
        pos += f.aligned_length;
        continue;
      }
      ++control;
    }
    ++records;
    if (!first) {
      first = r.offset();
      first_ts = r.timestamp_ns();
    }
    last = r.offset();
    last_ts = r.timestamp_ns();
    expected = r.offset() + 1;
    after_padding = false;
    pos += f.aligned_length;
  }
  fmt::print("  records {}{}, padding frames {}{}\n", records,
             control ? fmt::format(" ({} control)", control) : std::string(), padding,
             gaps ? fmt::format(", gaps {} ({} offsets)", gaps, gap_offsets) : std::string());
  if (first) {
    fmt::print("  offsets {}..{}\n  timestamps {} .. {}\n", *first, *last, Ts(*first_ts),
               Ts(*last_ts));
  }
  const uint64_t nonzero =
      std::min<uint64_t>(internal::NonZeroExtentEnd(m.data(), m.size(), pos), m.size());
  if (pos >= m.size()) {
    fmt::print("  data ends at byte {}, the end of the file\n", m.size());
  } else {
    fmt::print("  data ends at byte {}; {} bytes after it{}\n", pos, m.size() - pos,
               nonzero > pos ? fmt::format(" (NOT all zero up to byte {})", nonzero)
                             : std::string(" (zero: preallocated)"));
  }
  fmt::print("  {}\n", damages == 0 ? "clean" : fmt::format("DAMAGED ({} places)", damages));
  return damages == 0 ? kExitOk : kExitDamage;
}

// ---- time index -----------------------------------------------------------------

int InspectTimeIndex(const std::string& path, const FileMap& m) {
  const std::string name = fs::path(path).filename().string();
  Result<FileHeader> h = DecodeFileHeader(m.bytes(), FileKind::kTimeIndex, name);
  fmt::print("{}: time index file, {} bytes\n", path, m.size());
  if (!h.ok()) {
    fmt::print("  DAMAGE header: {}\n", h.status().message());
    return kExitDamage;
  }
  fmt::print("  version {}, header_length {}, base_offset {}, created {}\n",
             FormatVersionString(h->version), h->header_length, h->base_offset, Ts(h->created_ns));
  fmt::print("  index_interval {} bytes\n", h->index_interval);
  const uint64_t body = m.size() > h->header_length ? m.size() - h->header_length : 0;
  const uint64_t n = body / kTimeIndexEntryLength;
  uint64_t used = 0, problems = 0;
  std::optional<TimeIndexEntry> prev, first;
  for (uint64_t i = 0; i < n; ++i) {
    const TimeIndexEntry e =
        DecodeTimeIndexEntry(m.data() + h->header_length + i * kTimeIndexEntryLength);
    if (e.timestamp_ns == 0 && e.relative_offset == 0 && e.position == 0) break;  // unused tail
    ++used;
    if (!first) first = e;
    if (prev && (e.timestamp_ns < prev->timestamp_ns || e.relative_offset < prev->relative_offset ||
                 e.position <= prev->position)) {
      ++problems;
      fmt::print("  DAMAGE entry {} at byte {}: not after the previous entry\n", i,
                 h->header_length + i * kTimeIndexEntryLength);
    }
    prev = e;
  }
  fmt::print("  entries {}{}\n", used,
             n > used ? fmt::format(" (+{} unused zero entries)", n - used) : std::string());
  if (body % kTimeIndexEntryLength != 0) {
    fmt::print("  {} trailing bytes (a partial entry)\n", body % kTimeIndexEntryLength);
  }
  if (first) {
    fmt::print("  first: offset {} at byte {}, {}\n", h->base_offset + first->relative_offset,
               first->position, Ts(first->timestamp_ns));
    fmt::print("  last:  offset {} at byte {}, {}\n", h->base_offset + prev->relative_offset,
               prev->position, Ts(prev->timestamp_ns));
  }
  fmt::print("  {}\n", problems == 0 ? "clean" : "DAMAGED");
  return problems == 0 ? kExitOk : kExitDamage;
}

// ---- checkpoint ------------------------------------------------------------------

int InspectCheckpoint(const std::string& path, const FileMap& m) {
  fmt::print("{}: checkpoint, {} bytes\n", path, m.size());
  Result<Checkpoint> c = DecodeCheckpoint(m.bytes(), fs::path(path).filename().string());
  if (!c.ok()) {
    fmt::print("  DAMAGE: {}\n", c.status().message());
    return kExitDamage;
  }
  fmt::print("  durable end: segment {} ({}), byte {}\n", c->segment_base,
             SegmentFileName(c->segment_base), c->file_position);
  fmt::print("  next_offset {}\n  max_timestamp {}\n  written {}\n", c->next_offset,
             Ts(c->max_timestamp_ns), Ts(c->written_ns));
  if ((c->flags & kCheckpointRepairing) != 0) {
    fmt::print(
        "  DAMAGE: a repair was interrupted while it cut segment {} (the position is not "
        "used; next_offset is a floor); run `runnel broker --repair` to finish it\n",
        c->segment_base);
    return kExitDamage;
  }
  fmt::print("  clean\n");
  return kExitOk;
}

// ---- log directories ---------------------------------------------------------------

bool IsPartitionDir(const fs::path& dir) {
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (ParseSegmentFileName(name) || name == kCheckpointFileName) return true;
  }
  return false;
}

int InspectPartitionDir(const std::string& dir) {
  const std::vector<int32_t> writers = FlockHolders(dir);
  fmt::print("{}: partition log{}\n", dir,
             writers.empty() ? std::string(" (at rest)")
                             : fmt::format(" (open for writing by pid {}: the tail may be "
                                           "mid-write)",
                                           writers.front()));
  std::vector<std::pair<uint64_t, uint64_t>> segments;  // base, size
  std::vector<uint64_t> indexes;
  std::vector<std::string> others;
  bool checkpoint_tmp = false;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (auto base = ParseSegmentFileName(name)) {
      std::error_code size_ec;
      segments.emplace_back(*base, it->file_size(size_ec));
    } else if (auto index_base = ParseTimeIndexFileName(name)) {
      indexes.push_back(*index_base);
    } else if (name == kCheckpointTempFileName) {
      checkpoint_tmp = true;
    } else if (name != kCheckpointFileName) {
      others.push_back(name);
    }
  }
  std::sort(segments.begin(), segments.end());
  std::sort(indexes.begin(), indexes.end());
  for (const auto& [base, size] : segments) {
    fmt::print("  segment {}  {} bytes{}\n", SegmentFileName(base), size,
               base == segments.back().first ? " (active)" : "");
  }
  // Leftovers of interrupted operations (docs/format.md): the next writer
  // removes them.
  for (const uint64_t base : indexes) {
    if (std::none_of(segments.begin(), segments.end(),
                     [&](const auto& s) { return s.first == base; })) {
      fmt::print(
          "  leftover: {} (a time index without its segment: retention was interrupted; "
          "the next broker removes it)\n",
          TimeIndexFileName(base));
    }
  }
  if (checkpoint_tmp) {
    fmt::print(
        "  leftover: {} (an interrupted checkpoint write; the next broker removes "
        "it)\n",
        kCheckpointTempFileName);
  }
  for (const std::string& o : others) fmt::print("  other file: {} (not runnel's; ignored)\n", o);
  const std::string cp = (fs::path(dir) / std::string(kCheckpointFileName)).string();
  if (Result<FileMap> m = FileMap::Open(cp); m.ok()) {
    if (Result<Checkpoint> c = DecodeCheckpoint(m->bytes(), kCheckpointFileName); c.ok()) {
      if ((c->flags & kCheckpointRepairing) != 0) {
        fmt::print(
            "  checkpoint: an interrupted repair of {} (next_offset at least {}), written {}\n",
            SegmentFileName(c->segment_base), c->next_offset, FormatTimestamp(c->written_ns));
      } else {
        fmt::print("  checkpoint: next_offset {}, durable end {}:{}, written {}\n", c->next_offset,
                   SegmentFileName(c->segment_base), c->file_position,
                   FormatTimestamp(c->written_ns));
      }
    } else {
      fmt::print("  DAMAGE: {}\n", c.status().message());
    }
  } else {
    fmt::print("  no checkpoint\n");
  }
  Result<VerifyReport> r = VerifyLog(dir);
  if (!r.ok()) {
    PrintError(kInspectCmd, fmt::format("cannot verify {}: {}", dir, r.status().ToString()));
    return kExitRuntime;
  }
  fmt::print("  records {}, padding frames {}, bytes {}\n", r->records, r->padding_frames,
             r->bytes);
  if (r->first_offset) {
    fmt::print("  offsets {}..{}, timestamps {} .. {}\n", *r->first_offset, *r->last_offset,
               r->first_timestamp_ns ? FormatTimestamp(*r->first_timestamp_ns) : "-",
               r->last_timestamp_ns ? FormatTimestamp(*r->last_timestamp_ns) : "-");
  }
  for (const std::string& n : r->notes) fmt::print("  note: {}\n", n);
  for (const Damage& d : r->damages) fmt::print("  DAMAGE {}/{}\n", dir, d.ToString());
  fmt::print("  {}\n", r->ok() ? "clean" : "DAMAGED");
  return r->ok() ? kExitOk : kExitDamage;
}

// A data dir or a topic dir: one line per partition.
int InspectLogTree(const std::string& dir) {
  struct Part {
    std::string topic;
    uint32_t partition;
    std::string dir;
  };
  std::vector<Part> parts;
  std::string data_dir;  // the topics' parent
  const fs::path p(dir);
  const std::string parent = p.parent_path().string();
  const std::string name = p.filename().string();
  std::vector<std::string> topics_with_meta;  // checked below even with no partition log
  std::error_code meta_ec;
  if (Result<std::vector<uint32_t>> as_topic = ListPartitions(parent, name);
      as_topic.ok() &&
      ((!as_topic->empty() && IsPartitionDir(PartitionDir(parent, name, as_topic->front()))) ||
       fs::is_regular_file(p / "topic.meta", meta_ec))) {
    data_dir = parent;
    for (uint32_t q : *as_topic) parts.push_back({name, q, PartitionDir(parent, name, q)});
    topics_with_meta.push_back(name);
  } else if (Result<std::vector<std::string>> topics = ListTopics(dir); topics.ok()) {
    data_dir = dir;
    for (const std::string& t : *topics) {
      Result<std::vector<uint32_t>> ps = ListPartitions(dir, t);
      if (!ps.ok()) continue;
      for (uint32_t q : *ps) parts.push_back({t, q, PartitionDir(dir, t, q)});
      if (fs::is_regular_file(fs::path(dir) / t / "topic.meta", meta_ec)) {
        topics_with_meta.push_back(t);
      }
    }
  }
  if (parts.empty() && topics_with_meta.empty()) {
    PrintError(kInspectCmd,
               fmt::format("{} holds no runnel logs (expected a data dir, a topic dir or a "
                           "partition dir)",
                           dir));
    return kExitRuntime;
  }
  fmt::print("{}: {} partition log{}\n", dir, parts.size(), parts.size() == 1 ? "" : "s");
  fmt::print("{:<24} {:>9} {:>8} {:>10} {:>12} {:>12} {:>12}  {}\n", "TOPIC", "PARTITION",
             "SEGMENTS", "RECORDS", "FIRST", "LAST", "BYTES", "STATE");
  bool damaged = false;
  for (const Part& q : parts) {
    Result<VerifyReport> r = VerifyLog(q.dir);
    if (!r.ok()) {
      fmt::print("{:<24} {:>9}  error: {}\n", q.topic, q.partition, r.status().ToString());
      damaged = true;
      continue;
    }
    damaged |= !r->ok();
    fmt::print("{:<24} {:>9} {:>8} {:>10} {:>12} {:>12} {:>12}  {}\n", q.topic, q.partition,
               r->segments, r->records, r->first_offset ? std::to_string(*r->first_offset) : "-",
               r->last_offset ? std::to_string(*r->last_offset) : "-", r->bytes,
               r->ok() ? "clean" : fmt::format("DAMAGED ({})", r->damages.size()));
  }
  // The topics: those with a partition log, and those whose settings file
  // is there although none of their partition directories is.
  std::vector<std::string> topic_names;
  for (const Part& q : parts) {
    if (topic_names.empty() || topic_names.back() != q.topic) topic_names.push_back(q.topic);
  }
  for (const std::string& t : topics_with_meta) {
    if (std::find(topic_names.begin(), topic_names.end(), t) == topic_names.end()) {
      topic_names.push_back(t);
    }
  }
  // A topic whose settings file cannot be read is not restored by a broker.
  for (const std::string& topic : topic_names) {
    if (ReadTopicTombstone(fs::absolute(data_dir).string(), topic)) {
      fmt::print(
          "topic {}: deleted (it has a topic.deleted tombstone): never restored; a broker "
          "removes its log\n",
          topic);
      continue;
    }
    Result<TopicOptions> o = ReadTopicMeta(fs::absolute(data_dir).string(), topic);
    if (!o.ok()) {
      fmt::print("DAMAGE topic {}: {} (a broker cannot restore the topic)\n", topic,
                 o.status().message());
      damaged = true;
      continue;
    }
    // A partition log past the count it names is hidden from a restored
    // topic (a settings file edited or damaged).
    for (const Part& q : parts) {
      if (q.topic == topic && q.partition >= o->partitions) {
        fmt::print(
            "DAMAGE topic {}: partition {} has a log in {}, but topic.meta says {} "
            "partition{}: a broker does not restore the topic so (its records would not be "
            "served)\n",
            topic, q.partition, q.dir, o->partitions, o->partitions == 1 ? "" : "s");
        damaged = true;
      }
    }
    // Every partition it names was made before topic.meta was written.
    for (uint32_t partition = 0; partition < o->partitions; ++partition) {
      const std::string pdir = PartitionDir(data_dir, topic, partition);
      std::error_code ec;
      if (!fs::exists(pdir, ec)) {
        fmt::print(
            "DAMAGE topic {}: partition {}: its log directory {} is missing (removed, "
            "with its records)\n",
            topic, partition, pdir);
        damaged = true;
      }
    }
  }
  if (damaged) fmt::print("details: runnel replay {} --verify\n", dir);
  return damaged ? kExitDamage : kExitOk;
}

// ---- shared memory ------------------------------------------------------------------

std::string Alive(int32_t pid, uint64_t start_time) {
  if (pid <= 0) return "none";
  return internal::CheckProcess(pid, start_time) == internal::Liveness::kAlive
             ? fmt::format("pid {} (alive)", pid)
             : fmt::format("pid {} (dead)", pid);
}

int InspectDirectory(const std::string& path, const FileMap& m) {
  // "runnel.<bus>.dir"
  std::string file = fs::path(path).filename().string();
  std::string bus;
  if (file.starts_with("runnel.") && file.ends_with(".dir")) {
    bus = file.substr(7, file.size() - 7 - 4);
  }
  fmt::print("{}: bus directory region, {} bytes\n", path, m.size());
  const auto* header = reinterpret_cast<const internal::DirectoryHeader*>(m.data());
  if (m.size() < sizeof(internal::DirectoryHeader)) {
    fmt::print("  DAMAGE: smaller than the directory header\n");
    return kExitDamage;
  }
  if (bus.empty()) {
    const uint32_t len = std::min<uint32_t>(header->bus_name_length, internal::kNameBytes);
    bus.assign(reinterpret_cast<const char*>(header->bus_name), len);
  }
  if (Status s = internal::Directory::Check(m.bytes(), path, bus); !s.ok()) {
    fmt::print("  DAMAGE: {}\n", s.message());
    return kExitDamage;
  }
  internal::Directory dir(m.data());
  fmt::print("  bus '{}', version {}.{}, file mode {:04o}, created {}\n", bus,
             header->version >> 16, header->version & 0xFFFF, dir.file_mode(),
             FormatTimestamp(static_cast<int64_t>(header->created_wall_ns)));
  const internal::BrokerRecord b = dir.ReadBroker();
  fmt::print("  broker: {}, epoch {}{}\n", Alive(b.pid, b.start_time), b.epoch,
             b.stopped_pid != 0 ? fmt::format(", last clean stop: pid {} at {}", b.stopped_pid,
                                              FormatTimestamp(b.stopped_wall_ns))
                                : std::string());
  const internal::DataDirRecord data_dir = dir.ReadDataDir();
  fmt::print("  broker's data dir: {}\n",
             data_dir.path.empty()
                 ? std::string("none recorded")
                 : fmt::format("{} (recorded by epoch {})", data_dir.path, data_dir.epoch));
  fmt::print("  clients reaped {}, claims unblocked {}, topics version {}\n", dir.clients_reaped(),
             dir.claims_unblocked(), dir.topics_version());
  const std::vector<internal::TopicRecord> topics = dir.LiveTopics();
  fmt::print("  topics ({})\n", topics.size());
  for (const internal::TopicRecord& t : topics) {
    fmt::print("    [{}] {}: generation {}, {} partition{}, ring {}, max record {}{}{}\n", t.slot,
               t.name, t.generation, t.partitions, t.partitions == 1 ? "" : "s",
               FormatSize(t.ring_capacity), FormatSize(t.max_record_bytes),
               (t.flags & internal::kTopicFlagDurable) ? ", durable" : "",
               (t.flags & internal::kTopicFlagSingleProducer) ? ", single producer" : "");
  }
  const std::vector<internal::ClientRecord> clients = dir.LiveClients();
  fmt::print("  clients ({})\n", clients.size());
  for (const internal::ClientRecord& c : clients) {
    std::string topic = "?";
    for (const internal::TopicRecord& t : topics) {
      if (t.slot == c.topic_slot && t.generation == c.topic_generation) topic = t.name;
    }
    fmt::print("    [{}] id {} {} of '{}', {}, partitions mask {:#x}\n", c.slot, c.client_id,
               c.role == internal::ClientRole::kProducer ? "producer" : "consumer", topic,
               Alive(c.pid, c.start_time), c.partition_mask);
  }
  return kExitOk;
}

int InspectRing(const std::string& path, const FileMap& m) {
  fmt::print("{}: partition ring region, {} bytes\n", path, m.size());
  Result<Ring> ring = Ring::Attach(std::span<std::byte>(m.data(), m.size()));
  if (!ring.ok()) {
    fmt::print("  DAMAGE: {}\n", ring.status().message());
    return kExitDamage;
  }
  const internal::RingControl* c = ring->control();
  fmt::print("  version {}.{}, {}, capacity {}, max frame {} bytes, base offset {}\n",
             c->version >> 16, c->version & 0xFFFF,
             ring->mode() == RingMode::kSingleProducer ? "single-producer" : "multi-producer",
             FormatSize(ring->capacity()), ring->max_frame_length(), ring->base_offset());
  const RingPosition tail = ring->tail();
  const RingPosition earliest = ring->earliest();
  fmt::print("  tail: position {}, next offset {}\n", tail.position, tail.offset);
  fmt::print("  earliest: position {}, offset {}\n", earliest.position, earliest.offset);
  for (uint32_t s = 0; s < kMaxGatingSlots; ++s) {
    const uint64_t owner = ring->GatingOwner(s);
    if (owner == 0) continue;
    const RingPosition g = ring->GatingPosition(s);
    const RingPosition d = ring->Durable(s);
    const int32_t err = ring->GatingError(s);
    fmt::print("  gating slot {}: owner {:#x}, released {} (offset {}), durable {} (offset {}){}\n",
               s, owner, g.position, g.offset, d.position, d.offset,
               err == 0 ? std::string() : fmt::format(", error {} ({})", err, std::strerror(err)));
  }
  fmt::print("  unblocked claims {} ({} bytes), aborted claims {}\n", ring->unblocked_claims(),
             ring->unblocked_bytes(), ring->aborted_claims());
  // Walk what the ring holds, CRC-checking every record.
  RingReader reader(*ring, earliest, ReaderOptions{.verify_crc = true});
  uint64_t records = 0;
  std::optional<uint64_t> first, last;
  int status = kExitOk;
  while (reader.position().position < tail.position) {
    const ReadResult r = reader.read(
        [&](const RecordView& v) {
          if (!first) first = v.offset();
          last = v.offset();
          ++records;
        },
        4096);
    if (r.status == ReadStatus::kOverrun) {
      const Lost lost = reader.Resync();
      fmt::print("  (producers lapped the walk: skipped {} records)\n", lost.records);
      continue;
    }
    if (r.status == ReadStatus::kCorrupt) {
      fmt::print("  DAMAGE at ring position {}: {}\n", reader.position().position,
                 FrameCheckName(r.check));
      status = kExitDamage;
      break;
    }
    if (r.records == 0) break;  // an uncommitted claim: stop here
  }
  fmt::print("  records readable in the ring: {}{}\n", records,
             first ? fmt::format(" (offsets {}..{})", *first, *last) : std::string());
  if (status == kExitOk) fmt::print("  clean\n");
  return status;
}

// Who holds an flock on `path`, from /proc/locks ("1: FLOCK ADVISORY WRITE
// <pid> <maj>:<min>:<inode> 0 EOF").
int InspectLockFile(const std::string& path) {
  const bool broker = path.ends_with(".broker");
  fmt::print("{}: {} lock file (flock)\n", path,
             broker ? "broker (held by the active broker)" : "directory (held during changes)");
  const std::vector<int32_t> holders = FlockHolders(path);
  if (holders.empty()) {
    fmt::print("  not held{}\n", broker ? ": no broker is running" : "");
  } else {
    for (const int32_t pid : holders) fmt::print("  held by pid {}\n", pid);
  }
  return kExitOk;
}

int InspectFile(const std::string& path) {
  const std::string name = fs::path(path).filename().string();
  if (name.starts_with("runnel.") && (name.ends_with(".lock") || name.ends_with(".broker"))) {
    return InspectLockFile(path);
  }
  Result<FileMap> m = FileMap::Open(path);
  if (!m.ok()) {
    PrintError(kInspectCmd, m.status().message());
    return kExitRuntime;
  }
  if (name == "topic.meta") {
    fmt::print("{}: topic settings (written by the broker; used to re-create the topic)\n", path);
    std::string text(reinterpret_cast<const char*>(m->data()), m->size());
    fmt::print("{}{}", text, text.ends_with('\n') ? "" : "\n");
    // Read as the broker reads it when it restores the topic.
    const fs::path topic_dir = fs::absolute(path).parent_path();
    Result<TopicOptions> o =
        ReadTopicMeta(topic_dir.parent_path().string(), topic_dir.filename().string());
    if (!o.ok()) {
      fmt::print("  DAMAGE: {} (a broker cannot restore the topic from it)\n",
                 o.status().message());
      return kExitDamage;
    }
    fmt::print("  valid\n");
    return kExitOk;
  }
  if (name == "topic.deleted") {
    fmt::print(
        "{}: tombstone: the topic was deleted; the next broker (or creating it again) "
        "removes this directory, none restores it\n",
        path);
    std::string text(reinterpret_cast<const char*>(m->data()), m->size());
    fmt::print("{}{}", text, text.ends_with('\n') ? "" : "\n");
    return kExitOk;
  }
  std::array<char, 8> magic{};
  if (m->size() >= 8) std::memcpy(magic.data(), m->data(), 8);
  if (magic == kSegmentMagic || name.ends_with(kSegmentSuffix)) return InspectSegment(path, *m);
  if (magic == kTimeIndexMagic || name.ends_with(kTimeIndexSuffix)) {
    return InspectTimeIndex(path, *m);
  }
  if (magic == kCheckpointMagic || name == kCheckpointFileName || name == kCheckpointTempFileName) {
    return InspectCheckpoint(path, *m);
  }
  const uint64_t word = m->size() >= 8 ? DecodeFixed64(m->data()) : 0;
  if (word == internal::kDirectoryMagic ||
      (name.starts_with("runnel.") && name.ends_with(".dir"))) {
    return InspectDirectory(path, *m);
  }
  if (word == kRingMagic || name.starts_with("runnel.")) return InspectRing(path, *m);
  PrintError(kInspectCmd,
             fmt::format("{} is not a runnel file (segment, time index, checkpoint, bus "
                         "directory or ring)",
                         path));
  return kExitRuntime;
}

int RunInspect(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) {
    PrintError(kInspectCmd,
               fmt::format("{} does not exist (a bus's files are /dev/shm/runnel.<bus>.*; "
                           "logs are under the data dir)",
                           path));
    return kExitRuntime;
  }
  if (fs::is_directory(st)) {
    fs::path p = fs::absolute(path, ec).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();
    if (IsPartitionDir(p)) return InspectPartitionDir(p.string());
    return InspectLogTree(p.string());
  }
  return InspectFile(path);
}

}  // namespace

void RegisterInspect(CLI::App& app, const GlobalOptions& /*global*/) {
  CLI::App* sub = app.add_subcommand(
      "inspect",
      "Describe a runnel file or directory: a segment (.log), a time index (.timeindex), a "
      "checkpoint, a partition/topic/data dir, or a bus's shared memory under /dev/shm "
      "(runnel.<bus>.dir, a ring runnel.<bus>.<topic>.<partition>.<generation>, a lock file). "
      "Exit 3 if damage was found.");
  auto path = std::make_shared<std::string>();
  sub->add_option("PATH", *path, "The file or directory")->required();
  SetRunner(sub, [path] { return RunInspect(*path); });
}

}  // namespace runnel::cli
