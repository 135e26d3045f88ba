// The ColdReader of a bus with a data dir: serves records older than a ring
// holds from the partition's segment files (persistence/reader.h), through
// read-only mmaps, concurrently with the broker that writes them.

#ifndef RUNNEL_IPC_INTERNAL_LOG_COLD_READER_H_
#define RUNNEL_IPC_INTERNAL_LOG_COLD_READER_H_

#include <memory>
#include <string>

#include "ipc/internal/cold_reader.h"

namespace runnel::internal {

std::shared_ptr<ColdReader> MakeLogColdReader(std::string data_dir);

}  // namespace runnel::internal

#endif  // RUNNEL_IPC_INTERNAL_LOG_COLD_READER_H_
