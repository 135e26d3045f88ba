// A disk-backed cold reader for `runnel perf`'s consumer: serves the records
// a consumer wants that its ring no longer holds from the partition's segment
// files in the data dir (persistence/reader.h LogReader, mmap'd, every CRC
// checked), so the consumer reads old records from disk and then rejoins the
// ring without a gap (ipc/internal/cold_reader.h describes the seam).
//
// Stopgap: the bus should install such a reader itself (issue 4); until it
// does, the perf consumer installs this one when the bus has none.

#ifndef RUNNEL_TOOLS_PERF_COLD_READER_H_
#define RUNNEL_TOOLS_PERF_COLD_READER_H_

#include <cstdint>
#include <string>

#include "ipc/bus.h"

namespace runnel::cli {

// Installs a LogReader-backed cold reader for `data_dir` on `bus` unless the
// bus already has one. Returns true if a cold reader is in place afterwards.
bool EnsureDiskColdReader(const Bus& bus, const std::string& data_dir);

// Records the cold reader installed by EnsureDiskColdReader in this process
// has handed out (0 when the bus brought its own).
uint64_t DiskColdRecords();

}  // namespace runnel::cli

#endif  // RUNNEL_TOOLS_PERF_COLD_READER_H_
