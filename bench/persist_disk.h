// Disk-side helpers of runnel_persist_bench: the baselines the persistence
// thread is judged against (fio with io_uring, plain pwrite, a bare io_uring
// write loop with and without registered buffers), and the probes that say
// where the time went (file system of the data dir, block-device counters,
// CPU time of threads).
//
// Every baseline writes a fresh file sequentially in 1 MiB blocks, buffered
// (page cache), preallocated like a segment, and (unless told otherwise)
// fdatasyncs it at the end inside the timed interval, so that it is compared
// with a persisted run that includes its final Flush().

#ifndef RUNNEL_BENCH_PERSIST_DISK_H_
#define RUNNEL_BENCH_PERSIST_DISK_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace runnel::bench {

// ---------------------------------------------------------------------------
// The data directory

struct FsInfo {
  std::string type;  // "ext4", "tmpfs", ... (from statfs f_type)
  bool tmpfs = false;
  dev_t device = 0;  // st_dev of the directory
  std::string error;
};
FsInfo DescribeFs(const std::string& dir);

// Lets the calling thread run on every online CPU again (undoes a pin).
void UnpinThisThread();

// rm -rf `path`; errors are ignored (the next create reports them).
void RemoveTree(const std::string& path);

// Sectors written by the block device holding `dev` (from /sys/dev/block),
// in bytes; 0 if unknown (e.g. a partition without stats, or tmpfs).
uint64_t DeviceBytesWritten(dev_t dev);

// ---------------------------------------------------------------------------
// CPU time

// CPU time of the whole process (every thread, incl. exited io_uring workers)
// and of the calling thread, from getrusage, in nanoseconds.
int64_t ProcessCpuNanos();
int64_t ThisThreadCpuNanos();
// Run time of one thread of this process (/proc/self/task/TID/schedstat),
// nanoseconds; -1 if the thread is gone.
int64_t ThreadRunNanos(pid_t tid);
// The thread ids of this process now.
std::vector<pid_t> ThreadIds();
// How many threads of this process are io_uring workers (comm "iou-wrk-*").
int CountIoWorkers();

// What the rest of the machine ran while a measurement ran: busy CPU time from
// /proc/stat (incl. steal) minus this process's and its children's, as a
// share of all CPUs. Another benchmark spinning on a CPU shows up as ~50%.
class MachineNoise {
 public:
  MachineNoise();  // starts the interval
  double OthersPercent() const;

 private:
  static int64_t BusyNanos();
  static int64_t OursNanos();
  int64_t busy0_, ours0_, wall0_;
};

// ---------------------------------------------------------------------------
// Baselines

struct WriteFigures {
  bool ok = false;
  std::string error;
  uint64_t bytes = 0;
  double seconds = 0;  // includes the final fdatasync when there is one
  double MBps() const { return seconds > 0 ? static_cast<double>(bytes) / seconds / 1e6 : 0; }
  // Extra detail (fio: its own runtime; uring loop: mean write latency).
  double mean_write_us = 0;
  int io_workers = 0;  // io_uring workers seen (bare uring loop)
  double cpu_seconds = 0;
};

// fio --ioengine=io_uring, sequential buffered writes of `bytes` in 1 MiB
// blocks to DIR/fio-seq.dat with end_fsync=1, via fork/exec and
// --output-format=json; the write bandwidth is fio's own (its runtime
// includes the end fsync). error "fio not found" when it is not installed.
WriteFigures RunFio(const std::string& fio, const std::string& dir, uint64_t bytes,
                    uint32_t iodepth);

// pwrite() of 1 MiB blocks to a preallocated file, then fdatasync.
WriteFigures PwriteSequential(const std::string& dir, uint64_t bytes);

enum class UringBufferMode : uint8_t {
  kPlain,         // IORING_OP_WRITE from the buffer (what the persister does)
  kFixed,         // IORING_OP_WRITE_FIXED from a registered buffer
  kFixedAndFile,  // WRITE_FIXED with a registered file (IOSQE_FIXED_FILE)
};
const char* UringBufferModeName(UringBufferMode mode);

// A bare io_uring loop that writes `bytes` sequentially to a preallocated
// file in `block`-sized writes taken round-robin from `buffer` (the bench
// passes a ring-sized shared mapping), `inflight` writes at a time (the
// persister keeps one in flight per partition). With `sync_at_end` the time
// includes a final fdatasync; without, it measures the path into the page
// cache only. With kFixed*, `buffer` is registered first; registered_bytes
// says how much (0 if registration failed, see error).
struct UringLoopFigures : WriteFigures {
  uint64_t registered_bytes = 0;
};
UringLoopFigures UringSequential(const std::string& dir, std::span<std::byte> buffer,
                                 uint64_t bytes, uint32_t block, uint32_t inflight,
                                 UringBufferMode mode, bool sync_at_end);

// The persister's interval policy replayed in a bare io_uring loop: 1 MiB
// writes from `buffer`, one in flight, and an fdatasync of the file once
// `interval_ms` have passed since the previous sync completed; a final
// fdatasync is timed. With overlap == false no write is submitted while a
// sync is in flight (what persistence/persister.cc did until writes were let
// overlap the sync); with overlap == true writes go on while the sync runs
// (what it does now). The difference is the cost of that serialization.
struct IntervalSyncFigures : WriteFigures {
  uint64_t syncs = 0;
  double mean_sync_ms = 0;
  double sync_share = 0;  // share of the time a sync was in flight
};
IntervalSyncFigures UringIntervalSync(const std::string& dir, std::span<std::byte> buffer,
                                      uint64_t bytes, uint32_t interval_ms, bool overlap);

}  // namespace runnel::bench

#endif  // RUNNEL_BENCH_PERSIST_DISK_H_
