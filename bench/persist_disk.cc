#include "bench/persist_disk.h"

#include <dirent.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/magic.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string_view>

#include "core/wait.h"

namespace runnel::bench {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kBlock = 1 << 20;

std::string Errno(const char* what, int err) {
  return std::string(what) + ": " + std::strerror(err);
}

// A file created for one baseline and deleted when done.
class ScratchFile {
 public:
  ScratchFile(std::string path, uint64_t preallocate) : path_(std::move(path)) {
    fd_ = open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      error_ = Errno(("open " + path_).c_str(), errno);
      return;
    }
    // Like a new segment (LogOptions::preallocate): the blocks exist before
    // the first write.
    if (preallocate > 0 && fallocate(fd_, 0, 0, static_cast<off_t>(preallocate)) != 0) {
      error_ = Errno("fallocate", errno);
    }
  }
  ~ScratchFile() {
    if (fd_ >= 0) close(fd_);
    unlink(path_.c_str());
  }
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;
  int fd() const { return fd_; }
  const std::string& error() const { return error_; }

 private:
  std::string path_;
  int fd_ = -1;
  std::string error_;
};

// The number after `"key" :` at or after `from`; nullopt if absent.
std::optional<double> NumberAfter(std::string_view text, size_t from, std::string_view key) {
  std::string quoted = "\"";
  quoted.append(key).push_back('"');
  const size_t k = text.find(quoted, from);
  if (k == std::string_view::npos) return std::nullopt;
  size_t p = text.find(':', k + quoted.size());
  if (p == std::string_view::npos) return std::nullopt;
  ++p;
  while (p < text.size() && (text[p] == ' ' || text[p] == '\t' || text[p] == '\n')) ++p;
  const std::string rest(text.substr(p, 32));
  char* end = nullptr;
  const double v = std::strtod(rest.c_str(), &end);
  if (end == rest.c_str()) return std::nullopt;
  return v;
}

// Position of the object `"key" : {` (not the string value "key") after
// `from`, or npos.
size_t ObjectAfter(std::string_view text, size_t from, std::string_view key) {
  std::string quoted = "\"";
  quoted.append(key).push_back('"');
  for (size_t k = text.find(quoted, from); k != std::string_view::npos;
       k = text.find(quoted, k + 1)) {
    size_t p = k + quoted.size();
    while (p < text.size() && text[p] == ' ') ++p;
    if (p >= text.size() || text[p] != ':') continue;
    ++p;
    while (p < text.size() && (text[p] == ' ' || text[p] == '\n')) ++p;
    if (p < text.size() && text[p] == '{') return p;
  }
  return std::string_view::npos;
}

}  // namespace

void UnpinThisThread() {
  cpu_set_t set;
  CPU_ZERO(&set);
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  for (long c = 0; c < n && c < CPU_SETSIZE; ++c) CPU_SET(c, &set);
  (void)sched_setaffinity(0, sizeof set, &set);
}

// ---------------------------------------------------------------------------

FsInfo DescribeFs(const std::string& dir) {
  FsInfo info;
  struct statfs s;
  if (statfs(dir.c_str(), &s) != 0) {
    info.error = Errno(("statfs " + dir).c_str(), errno);
    return info;
  }
  struct stat st;
  if (stat(dir.c_str(), &st) == 0) info.device = st.st_dev;
  switch (static_cast<unsigned long>(s.f_type)) {
    case EXT4_SUPER_MAGIC:  // ext2/3/4 share it
      info.type = "ext4";
      break;
    case TMPFS_MAGIC:
      info.type = "tmpfs";
      info.tmpfs = true;
      break;
    case XFS_SUPER_MAGIC:
      info.type = "xfs";
      break;
    case BTRFS_SUPER_MAGIC:
      info.type = "btrfs";
      break;
    case OVERLAYFS_SUPER_MAGIC:
      info.type = "overlayfs";
      break;
    default: {
      char hex[32];
      std::snprintf(hex, sizeof hex, "0x%lx", static_cast<unsigned long>(s.f_type));
      info.type = hex;
    }
  }
  return info;
}

void RemoveTree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
}

uint64_t DeviceBytesWritten(dev_t dev) {
  const std::string path =
      "/sys/dev/block/" + std::to_string(major(dev)) + ":" + std::to_string(minor(dev)) + "/stat";
  std::ifstream in(path);
  uint64_t v[7] = {};
  for (uint64_t& x : v) {
    if (!(in >> x)) return 0;
  }
  return v[6] * 512;  // field 7: sectors written
}

// ---------------------------------------------------------------------------

int64_t ProcessCpuNanos() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1'000'000'000LL +
         (u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1000LL;
}

int64_t ThisThreadCpuNanos() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1'000'000'000LL +
         (u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1000LL;
}

int64_t ThreadRunNanos(pid_t tid) {
  std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/schedstat");
  int64_t run = -1;
  if (!(in >> run)) return -1;
  return run;
}

std::vector<pid_t> ThreadIds() {
  std::vector<pid_t> ids;
  DIR* d = opendir("/proc/self/task");
  if (d == nullptr) return ids;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] >= '0' && e->d_name[0] <= '9') ids.push_back(std::atoi(e->d_name));
  }
  closedir(d);
  std::sort(ids.begin(), ids.end());
  return ids;
}

int CountIoWorkers() {
  int n = 0;
  for (pid_t tid : ThreadIds()) {
    std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/comm");
    std::string comm;
    std::getline(in, comm);
    if (comm.rfind("iou-wrk-", 0) == 0) ++n;
  }
  return n;
}

MachineNoise::MachineNoise() : busy0_(BusyNanos()), ours0_(OursNanos()), wall0_(MonotonicNanos()) {}

int64_t MachineNoise::BusyNanos() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  int64_t v[8] = {};  // user nice system idle iowait irq softirq steal
  in >> cpu;
  for (int64_t& x : v) in >> x;
  const int64_t busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
  return busy * (1'000'000'000 / sysconf(_SC_CLK_TCK));
}

int64_t MachineNoise::OursNanos() {
  rusage self{}, children{};
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_CHILDREN, &children);  // fio
  auto ns = [](const timeval& t) { return t.tv_sec * 1'000'000'000LL + t.tv_usec * 1000LL; };
  return ns(self.ru_utime) + ns(self.ru_stime) + ns(children.ru_utime) + ns(children.ru_stime);
}

double MachineNoise::OthersPercent() const {
  const int64_t wall = MonotonicNanos() - wall0_;
  const int64_t others = (BusyNanos() - busy0_) - (OursNanos() - ours0_);
  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  if (wall <= 0 || cpus <= 0) return 0;
  return std::max(0.0, 100.0 * static_cast<double>(others) / static_cast<double>(wall * cpus));
}

// ---------------------------------------------------------------------------

WriteFigures RunFio(const std::string& fio, const std::string& dir, uint64_t bytes,
                    uint32_t iodepth) {
  WriteFigures f;
  const std::string file = dir + "/fio-seq.dat";
  const std::string err_file = dir + "/fio-stderr.txt";
  std::vector<std::string> args = {
      fio,
      "--name=seqwrite",
      "--filename=" + file,
      "--rw=write",
      "--bs=1M",
      "--size=" + std::to_string(bytes),
      "--ioengine=io_uring",
      "--iodepth=" + std::to_string(iodepth),
      "--direct=0",
      "--end_fsync=1",
      "--runtime=60",
      "--output-format=json",
  };
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    f.error = Errno("pipe", errno);
    return f;
  }
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    f.error = Errno("fork", errno);
    close(out[0]);
    close(out[1]);
    return f;
  }
  if (pid == 0) {
    // fio may use every CPU, as the kernel's writeback does for the bus.
    UnpinThisThread();
    dup2(out[1], STDOUT_FILENO);
    const int err = open(err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (err >= 0) dup2(err, STDERR_FILENO);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  std::string json;
  char buf[65536];
  for (;;) {
    const ssize_t n = read(out[0], buf, sizeof buf);
    if (n > 0) {
      json.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  close(out[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::string stderr_text;
  {
    std::ifstream in(err_file);
    std::stringstream ss;
    ss << in.rdbuf();
    stderr_text = ss.str();
  }
  unlink(err_file.c_str());
  unlink(file.c_str());
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
    f.error = "fio not found (" + fio + "): scripts/setup installs it; the ratio is skipped";
    return f;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    f.error = "fio failed: " + stderr_text.substr(0, 300);
    return f;
  }
  // fio may print notes before the JSON document.
  const size_t start = json.find('{');
  const size_t jobs = start == std::string::npos ? start : json.find("\"jobs\"", start);
  const size_t write = jobs == std::string::npos ? jobs : ObjectAfter(json, jobs, "write");
  if (write == std::string::npos) {
    f.error = "cannot parse fio's JSON output";
    return f;
  }
  const std::optional<double> io_bytes = NumberAfter(json, write, "io_bytes");
  const std::optional<double> runtime_ms = NumberAfter(json, write, "runtime");
  const std::optional<double> bw_bytes = NumberAfter(json, write, "bw_bytes");
  const std::optional<double> error = NumberAfter(json, jobs, "error");
  if (!io_bytes || !runtime_ms || !bw_bytes || *runtime_ms <= 0) {
    f.error = "fio's JSON has no write io_bytes/runtime/bw_bytes";
    return f;
  }
  if (error && *error != 0) {
    f.error = "fio reports error " + std::to_string(static_cast<int>(*error));
    return f;
  }
  f.ok = true;
  f.bytes = static_cast<uint64_t>(*io_bytes);
  // fio's runtime includes the end_fsync; bw_bytes = io_bytes / runtime.
  f.seconds = static_cast<double>(f.bytes) / *bw_bytes;
  return f;
}

WriteFigures PwriteSequential(const std::string& dir, uint64_t bytes) {
  WriteFigures f;
  ScratchFile file(dir + "/pwrite-seq.dat", bytes);
  if (!file.error().empty()) {
    f.error = file.error();
    return f;
  }
  void* raw = nullptr;
  if (posix_memalign(&raw, 4096, kBlock) != 0) {
    f.error = "out of memory";
    return f;
  }
  std::unique_ptr<void, decltype(&std::free)> buffer(raw, &std::free);
  std::memset(raw, 0x5A, kBlock);
  const int64_t cpu0 = ProcessCpuNanos();
  const int64_t t0 = MonotonicNanos();
  for (uint64_t pos = 0; pos < bytes;) {
    const uint64_t want = std::min<uint64_t>(kBlock, bytes - pos);
    const uint64_t in_block = pos % kBlock;
    const ssize_t n = pwrite(file.fd(), static_cast<char*>(raw) + in_block,
                             std::min<uint64_t>(want, kBlock - in_block), static_cast<off_t>(pos));
    if (n < 0) {
      if (errno == EINTR) continue;
      f.error = Errno("pwrite", errno);
      return f;
    }
    pos += static_cast<uint64_t>(n);
  }
  if (fdatasync(file.fd()) != 0) {
    f.error = Errno("fdatasync", errno);
    return f;
  }
  f.seconds = static_cast<double>(MonotonicNanos() - t0) / 1e9;
  f.cpu_seconds = static_cast<double>(ProcessCpuNanos() - cpu0) / 1e9;
  f.bytes = bytes;
  f.ok = true;
  return f;
}

const char* UringBufferModeName(UringBufferMode mode) {
  switch (mode) {
    case UringBufferMode::kPlain:
      return "write";
    case UringBufferMode::kFixed:
      return "write_fixed";
    case UringBufferMode::kFixedAndFile:
      return "write_fixed+fixed_file";
  }
  return "?";
}

UringLoopFigures UringSequential(const std::string& dir, std::span<std::byte> buffer,
                                 uint64_t bytes, uint32_t block, uint32_t inflight,
                                 UringBufferMode mode, bool sync_at_end) {
  UringLoopFigures f;
  if (buffer.size() < block || block == 0 || inflight == 0) {
    f.error = "buffer smaller than one block";
    return f;
  }
  ScratchFile file(dir + "/uring-seq.dat", bytes);
  if (!file.error().empty()) {
    f.error = file.error();
    return f;
  }
  io_uring ring;
  const unsigned entries = std::max(8u, 2 * inflight);
  int rc = io_uring_queue_init(entries, &ring, 0);
  if (rc < 0) {
    f.error = Errno("io_uring_queue_init", -rc);
    return f;
  }
  struct RingGuard {
    io_uring* r;
    ~RingGuard() { io_uring_queue_exit(r); }
  } guard{&ring};
  if (mode != UringBufferMode::kPlain) {
    const iovec iov{buffer.data(), buffer.size()};
    rc = io_uring_register_buffers(&ring, &iov, 1);
    if (rc < 0) {
      f.error = Errno("io_uring_register_buffers", -rc);
      return f;
    }
    f.registered_bytes = buffer.size();
  }
  int fd = file.fd();
  if (mode == UringBufferMode::kFixedAndFile) {
    rc = io_uring_register_files(&ring, &fd, 1);
    if (rc < 0) {
      f.error = Errno("io_uring_register_files", -rc);
      return f;
    }
    fd = 0;  // index into the registered files
  }
  struct Slot {
    uint64_t file_pos = 0;
    uint32_t length = 0;
    uint32_t done = 0;
    int64_t submitted_ns = 0;
  };
  std::vector<Slot> slots(inflight);
  std::vector<uint32_t> free_slots;
  for (uint32_t i = 0; i < inflight; ++i) free_slots.push_back(i);
  const uint64_t blocks_in_buffer = buffer.size() / block;
  auto submit = [&](uint32_t s) {
    Slot& slot = slots[s];
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    std::byte* src = buffer.data() + ((slot.file_pos / block) % blocks_in_buffer) * block;
    src += slot.done;
    const unsigned len = slot.length - slot.done;
    const uint64_t off = slot.file_pos + slot.done;
    if (mode == UringBufferMode::kPlain) {
      io_uring_prep_write(sqe, fd, src, len, off);
    } else {
      io_uring_prep_write_fixed(sqe, fd, src, len, off, 0);
    }
    if (mode == UringBufferMode::kFixedAndFile) sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, s);
  };
  uint64_t next = 0;
  uint64_t completed = 0;
  uint64_t writes = 0;
  int64_t latency_sum_ns = 0;
  int io_workers = 0;
  const int64_t cpu0 = ProcessCpuNanos();
  const int64_t t0 = MonotonicNanos();
  while (completed < bytes) {
    while (!free_slots.empty() && next < bytes) {
      const uint32_t s = free_slots.back();
      free_slots.pop_back();
      slots[s] = Slot{next, static_cast<uint32_t>(std::min<uint64_t>(block, bytes - next)), 0,
                      MonotonicNanos()};
      next += slots[s].length;
      submit(s);
    }
    rc = io_uring_submit_and_wait(&ring, 1);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN) {
      f.error = Errno("io_uring_submit_and_wait", -rc);
      return f;
    }
    io_uring_cqe* cqe;
    unsigned head;
    unsigned n = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      ++n;
      const uint32_t s = static_cast<uint32_t>(io_uring_cqe_get_data64(cqe));
      Slot& slot = slots[s];
      if (cqe->res == -EAGAIN || cqe->res == -EINTR) {
        submit(s);
        continue;
      }
      if (cqe->res <= 0) {
        f.error = cqe->res == 0 ? std::string("write returned 0") : Errno("write", -cqe->res);
        io_uring_cq_advance(&ring, n);
        return f;
      }
      slot.done += static_cast<uint32_t>(cqe->res);
      if (slot.done < slot.length) {  // short write: the rest
        submit(s);
        continue;
      }
      latency_sum_ns += MonotonicNanos() - slot.submitted_ns;
      ++writes;
      completed += slot.length;
      free_slots.push_back(s);
    }
    io_uring_cq_advance(&ring, n);
    if (io_workers == 0 && writes == 4) io_workers = CountIoWorkers();
  }
  if (sync_at_end && fdatasync(file.fd()) != 0) {
    f.error = Errno("fdatasync", errno);
    return f;
  }
  f.seconds = static_cast<double>(MonotonicNanos() - t0) / 1e9;
  f.cpu_seconds = static_cast<double>(ProcessCpuNanos() - cpu0) / 1e9;
  f.bytes = bytes;
  f.mean_write_us = writes > 0 ? static_cast<double>(latency_sum_ns) / 1e3 / writes : 0;
  f.io_workers = std::max(io_workers, CountIoWorkers());
  f.ok = true;
  return f;
}

IntervalSyncFigures UringIntervalSync(const std::string& dir, std::span<std::byte> buffer,
                                      uint64_t bytes, uint32_t interval_ms, bool overlap) {
  IntervalSyncFigures f;
  if (buffer.size() < kBlock) {
    f.error = "buffer smaller than one block";
    return f;
  }
  ScratchFile file(dir + "/uring-interval.dat", bytes);
  if (!file.error().empty()) {
    f.error = file.error();
    return f;
  }
  io_uring ring;
  int rc = io_uring_queue_init(8, &ring, 0);
  if (rc < 0) {
    f.error = Errno("io_uring_queue_init", -rc);
    return f;
  }
  struct RingGuard {
    io_uring* r;
    ~RingGuard() { io_uring_queue_exit(r); }
  } guard{&ring};
  enum : uint64_t { kWrite = 1, kSync = 2 };
  const uint64_t blocks_in_buffer = buffer.size() / kBlock;
  const int64_t interval_ns = int64_t{interval_ms} * 1'000'000;
  uint64_t next = 0;        // next byte to write
  uint64_t written = 0;     // completed
  uint32_t write_done = 0;  // of the write in flight
  bool write_inflight = false;
  bool sync_inflight = false;
  int64_t sync_submitted_ns = 0;
  int64_t sync_time_ns = 0;
  const int64_t t0 = MonotonicNanos();
  int64_t last_sync_ns = t0;
  auto submit_write = [&] {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    const uint32_t len = static_cast<uint32_t>(std::min<uint64_t>(kBlock, bytes - next));
    std::byte* src = buffer.data() + ((next / kBlock) % blocks_in_buffer) * kBlock;
    io_uring_prep_write(sqe, file.fd(), src + write_done, len - write_done, next + write_done);
    io_uring_sqe_set_data64(sqe, kWrite);
    write_inflight = true;
  };
  while (written < bytes) {
    const int64_t now = MonotonicNanos();
    const bool dirty = written > 0;
    if (!sync_inflight && dirty && now - last_sync_ns >= interval_ns &&
        (overlap || !write_inflight)) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      io_uring_prep_fsync(sqe, file.fd(), IORING_FSYNC_DATASYNC);
      io_uring_sqe_set_data64(sqe, kSync);
      sync_inflight = true;
      sync_submitted_ns = now;
    }
    if (!write_inflight && next < bytes && (overlap || !sync_inflight)) submit_write();
    rc = io_uring_submit_and_wait(&ring, 1);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN) {
      f.error = Errno("io_uring_submit_and_wait", -rc);
      return f;
    }
    io_uring_cqe* cqe;
    unsigned head;
    unsigned n = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      ++n;
      const int res = cqe->res;
      if (io_uring_cqe_get_data64(cqe) == kSync) {
        sync_inflight = false;
        if (res < 0) {
          f.error = Errno("fdatasync", -res);
          break;
        }
        last_sync_ns = MonotonicNanos();
        sync_time_ns += last_sync_ns - sync_submitted_ns;
        ++f.syncs;
        continue;
      }
      write_inflight = false;
      if (res == -EAGAIN || res == -EINTR) continue;  // resubmitted by the loop
      if (res <= 0) {
        f.error = res == 0 ? std::string("write returned 0") : Errno("write", -res);
        break;
      }
      write_done += static_cast<uint32_t>(res);
      const uint32_t len = static_cast<uint32_t>(std::min<uint64_t>(kBlock, bytes - next));
      if (write_done == len) {
        next += len;
        written += len;
        write_done = 0;
      }
    }
    io_uring_cq_advance(&ring, n);
    if (!f.error.empty()) return f;
  }
  // Let a sync still in flight finish, then the final one (as Flush does).
  while (sync_inflight) {
    io_uring_cqe* cqe = nullptr;
    if (io_uring_wait_cqe(&ring, &cqe) == 0) {
      sync_inflight = false;
      sync_time_ns += MonotonicNanos() - sync_submitted_ns;
      ++f.syncs;
      io_uring_cqe_seen(&ring, cqe);
    }
  }
  const int64_t final_sync = MonotonicNanos();
  if (fdatasync(file.fd()) != 0) {
    f.error = Errno("fdatasync", errno);
    return f;
  }
  const int64_t t1 = MonotonicNanos();
  sync_time_ns += t1 - final_sync;
  ++f.syncs;
  f.seconds = static_cast<double>(t1 - t0) / 1e9;
  f.bytes = bytes;
  f.mean_sync_ms = static_cast<double>(sync_time_ns) / 1e6 / static_cast<double>(f.syncs);
  f.sync_share = static_cast<double>(sync_time_ns) / static_cast<double>(t1 - t0);
  f.ok = true;
  return f;
}

}  // namespace runnel::bench
