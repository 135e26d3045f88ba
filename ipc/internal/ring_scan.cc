#include "ipc/internal/ring_scan.h"

namespace runnel::internal {

std::optional<uint64_t> FindStampInRing(RingReader& scan, int64_t ts_ns, uint64_t bound) {
  // The first offset producers took before the scan read it, until a record
  // read after that lap says whether they may have been late enough.
  std::optional<uint64_t> unexamined;
  while (scan.position().offset < bound) {
    const RingPosition before = scan.position();
    const std::optional<uint64_t> lapped_at = unexamined;
    std::optional<uint64_t> found;
    const ReadResult r = scan.read(
        [&](const RecordView& v) {
          if (!found && v.offset() < bound && v.timestamp_ns() >= ts_ns) {
            // The first record after a lap is late enough: so may be those
            // the lap took (stamps mostly rise), start at the first of them.
            found = unexamined.value_or(v.offset());
          }
          unexamined.reset();
        },
        1024);
    if (r.status == ReadStatus::kOverrun) {
      // What this batch read may have been overwritten as it read: not an
      // answer. Everything from `before` on is taken unread.
      unexamined = lapped_at.value_or(before.offset);
      (void)scan.Resync();
      if (scan.position().offset <= before.offset) break;  // no progress: garbage
      continue;
    }
    if (found) return found;
    if (r.status != ReadStatus::kOk || scan.position() == before) break;  // the end, or garbage
  }
  return unexamined;
}

}  // namespace runnel::internal
