// Bus helpers shared by the subcommands that talk to a live bus.

#ifndef RUNNEL_TOOLS_BUS_UTIL_H_
#define RUNNEL_TOOLS_BUS_UTIL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "ipc/bus.h"
#include "tools/cli_common.h"

namespace runnel::cli {

// Opens the bus named by --bus with the data dir of --data-dir and no
// embedded broker; creates it when `create_if_missing`.
Result<Bus> OpenBus(const GlobalOptions& global, bool create_if_missing);
// OpenBus of the existing bus, then NoteOtherDataDir. On failure prints an
// error for `command` that says what to do and returns nullopt.
std::optional<Bus> OpenExistingBus(const GlobalOptions& global, std::string_view command);
// A running broker with another data dir fails Bus::Open; a stopped one only
// left its record, and the data dir given wins. This says so on stderr when
// they differ: segment files are then looked for in another place than the
// broker wrote them.
void NoteOtherDataDir(std::string_view command, const GlobalOptions& global, const Bus& bus);
// The data dir that bus `bus`'s broker recorded; empty if the bus does not
// exist or none was recorded.
std::string RecordedDataDir(const std::string& bus);
// The pid of bus `bus`'s broker if it is running; 0 otherwise.
int32_t RunningBrokerPid(const std::string& bus);

// "never", "interval:10", "always".
std::string FsyncString(const TopicOptions& o);
// Maps `--fsync` text onto TopicOptions::fsync / fsync_interval_ms.
Status ApplyFsync(std::string_view text, TopicOptions& o);

// The topic's settings as JSON members (no braces): name, generation,
// partitions, ring_bytes, max_record_bytes, single_producer, durable,
// segment_bytes, retention_bytes, retention_ms, fsync, created_ms.
void WriteTopicSettingsJson(JsonWriter& w, const TopicInfo& t);

// The broker's state for `stat` and `bus info`: "pid 12 (alive)", "never
// started (start one with: runnel broker)", "not running (pid 12 stopped
// cleanly at 2024-05-01T12:00:00.000Z; start one with: runnel broker)",
// "pid 12 NOT RUNNING (died without stopping, last seen 3.2 s ago; start one
// with: runnel broker)".
std::string DescribeBroker(const BusInfo& info, const GlobalOptions& global);
// The "broker" object: {"pid","alive","epoch","state","stopped_pid",
// "stopped_ms"}; state is never_started | running | stopped | died.
void WriteBrokerJson(JsonWriter& w, const BusInfo& info);

// Bytes allocated on disk under `path` (a file or a directory tree), from
// st_blocks; nullopt if it does not exist.
std::optional<uint64_t> DiskUsage(const std::string& path);

// Pids holding an flock on `path` (a lock file, or a partition directory
// that a PartitionLog has open), read from /proc/locks without taking the
// lock; empty if none (or /proc/locks is unreadable).
std::vector<int32_t> FlockHolders(const std::string& path);

}  // namespace runnel::cli

#endif  // RUNNEL_TOOLS_BUS_UTIL_H_
