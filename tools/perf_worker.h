// The processes `runnel perf` starts: `runnel --bus B perf-worker --role
// producer|consumer ...`, a subcommand hidden from --help. The coordinator
// (tools/perf.cc) re-executes its own binary (/proc/self/exe) once per
// worker, so producers and consumers are separate processes that attach to
// the bus by name like any client would.
//
// Protocol, one line each way at a time (tools/perf_stats.h: ReportLine):
//   worker -> coordinator (stdout): "ready ..." once attached and pinned;
//                                   "done key=value ..." with the results, or
//                                   "failed error=..." (and exit code 1).
//   coordinator -> worker (stdin):  "go" starts the run (EOF: abort quietly);
//                                   consumer only: "end counts=c0,c1,..." the
//                                   records each producer committed, once
//                                   they all finished.
// Errors in words go to stderr (inherited from the coordinator).

#ifndef RUNNEL_TOOLS_PERF_WORKER_H_
#define RUNNEL_TOOLS_PERF_WORKER_H_

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "tools/cli_common.h"

namespace runnel::cli {

struct PerfWorkerOptions {
  std::string role;  // "producer" or "consumer"
  std::string mode;  // "produce", "consume" or "roundtrip"
  std::string topic;
  uint32_t run_id = 0;
  uint32_t index = 0;      // producer index
  uint32_t producers = 1;  // how many producers the run has
  // Producer: records to send. Consumer: records expected from all producers
  // together (split as the producers split them, see PerfShare).
  uint64_t records = 0;
  uint32_t size = 0;                // value bytes per record
  double rate = 0;                  // producer: records/s (0: as fast as possible)
  double duration_s = 0;            // producer: stop after this long (0: no limit)
  std::string cpus;                 // CPU list to pin to ("" : do not pin)
  std::string wait = "block";       // consumer: busy, yield or block
  std::string seek;                 // consumer: "partition:offset,..." start offsets
  bool verify_crc = false;          // consumer: CRC-check every record
  bool wait_durable = false;        // producer: wait until its records are durable
  uint64_t idle_timeout_ms = 2000;  // consumer: give up after this long without a record
  int64_t parent_pid = 0;           // exit if this process is no longer the parent
};

// Records producer `index` of `producers` sends out of `records`.
inline uint64_t PerfShare(uint64_t records, uint32_t producers, uint32_t index) {
  return records / producers + (index < records % producers ? 1 : 0);
}

// Adds the hidden `perf-worker` subcommand.
void RegisterPerfWorker(CLI::App& app, const GlobalOptions& global);

int RunPerfWorker(const GlobalOptions& global, const PerfWorkerOptions& options);

}  // namespace runnel::cli

#endif  // RUNNEL_TOOLS_PERF_WORKER_H_
