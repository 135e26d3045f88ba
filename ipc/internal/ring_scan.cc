#include "ipc/internal/ring_scan.h"

namespace runnel::internal {

std::optional<uint64_t> FindStampInRing(RingReader& scan, int64_t ts_ns, uint64_t bound) {
  std::optional<uint64_t> found;
  while (!found && scan.position().offset < bound) {
    const RingPosition before = scan.position();
    const ReadResult r = scan.read(
        [&](const RecordView& v) {
          if (!found && v.offset() < bound && v.timestamp_ns() >= ts_ns) found = v.offset();
        },
        1024);
    if (r.status == ReadStatus::kOverrun) {
      (void)scan.Resync();  // each resync moves on: the loop ends at `bound`
      continue;
    }
    if (r.status != ReadStatus::kOk || scan.position() == before) break;  // the end, or garbage
  }
  return found;
}

}  // namespace runnel::internal
