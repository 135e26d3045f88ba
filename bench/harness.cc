#include "bench/harness.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace runnel::bench {

bool PinThisThreadToCpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  // pid 0: the calling thread (Linux affinity is per thread).
  return sched_setaffinity(0, sizeof set, &set) == 0;
}

bool HaveTwoCpus() {
  // The system's CPUs, not our mask: the benchmark process pins itself to CPU 0.
  return sysconf(_SC_NPROCESSORS_ONLN) >= 2;
}

uint64_t InvoluntarySwitches() {
  rusage usage{};
  if (getrusage(RUSAGE_THREAD, &usage) != 0) return 0;
  return static_cast<uint64_t>(usage.ru_nivcsw);
}

void Tsc::Calibrate() {
  // Three 10 ms windows against CLOCK_MONOTONIC; the median rate wins.
  double rates[3];
  for (double& rate : rates) {
    const int64_t m0 = MonotonicNanos();
    const uint64_t t0 = __rdtsc();
    int64_t m1;
    do {
      m1 = MonotonicNanos();
    } while (m1 - m0 < 10'000'000);
    const uint64_t t1 = __rdtsc();
    rate = static_cast<double>(t1 - t0) / static_cast<double>(m1 - m0);
  }
  std::sort(rates, rates + 3);
  ticks_per_ns_ = rates[1];
}

// ---------------------------------------------------------------------------

SharedMapping::SharedMapping(std::size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE,
                 -1, 0);
  if (p != MAP_FAILED) {
    data_ = static_cast<std::byte*>(p);
    size_ = bytes;
  }
}

SharedMapping::~SharedMapping() {
  if (data_ != nullptr) munmap(data_, size_);
}

SharedMapping& SharedMapping::operator=(SharedMapping&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) munmap(data_, size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void PrefaultInThisProcess(std::span<std::byte> memory) {
  if (memory.empty()) return;
  if (madvise(memory.data(), memory.size(), MADV_POPULATE_WRITE) == 0) return;
  // Older kernels: touch one byte per page (an atomic add of 0 is a write
  // that cannot race with the other processes using the memory).
  const long page = sysconf(_SC_PAGESIZE);
  for (std::size_t i = 0; i < memory.size(); i += static_cast<std::size_t>(page)) {
    std::atomic_ref<unsigned char>(reinterpret_cast<unsigned char&>(memory[i]))
        .fetch_add(0, std::memory_order_relaxed);
  }
}

// ---------------------------------------------------------------------------

Worker Worker::Start(Isolation isolation, int cpu, std::function<int()> body) {
  Worker w;
  if (isolation == Isolation::kThread) {
    w.thread_result_ = std::make_unique<std::atomic<int>>(-1);
    std::atomic<int>* result = w.thread_result_.get();
    w.thread_ = std::thread([cpu, result, body = std::move(body)] {
      if (!PinThisThreadToCpu(cpu)) {
        result->store(97, std::memory_order_release);
        return;
      }
      result->store(body(), std::memory_order_release);
    });
    return w;
  }
  std::fflush(nullptr);  // the child must not flush the parent's buffers again
  const pid_t pid = fork();
  if (pid == 0) {
    if (!PinThisThreadToCpu(cpu)) _exit(97);
    _exit(body());
  }
  w.pid_ = pid;
  return w;
}

int Worker::Join(int64_t timeout_ns) {
  if (thread_.joinable()) {
    thread_.join();
    return thread_result_->load(std::memory_order_acquire);
  }
  if (pid_ <= 0) return -1;
  const pid_t pid = std::exchange(pid_, -1);
  const int64_t deadline = MonotonicNanos() + timeout_ns;
  int status = 0;
  for (;;) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0) return -1;
    if (MonotonicNanos() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    const timespec nap{0, 200'000};
    nanosleep(&nap, nullptr);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Worker& Worker::operator=(Worker&& other) noexcept {
  if (this != &other) {
    if (started()) Join(0);
    pid_ = std::exchange(other.pid_, -1);
    thread_ = std::move(other.thread_);
    thread_result_ = std::move(other.thread_result_);
  }
  return *this;
}

Worker::~Worker() {
  if (started()) Join(0);
}

// ---------------------------------------------------------------------------

LatencySamples::LatencySamples(std::size_t capacity) : ticks_(capacity, 0) {}

LatencySamples::Summary LatencySamples::Summarize() const {
  Summary s;
  if (count_ == 0) return s;
  std::vector<uint64_t> sorted(ticks_.begin(),
                               ticks_.begin() + static_cast<std::ptrdiff_t>(count_));
  std::sort(sorted.begin(), sorted.end());
  // Nearest rank: the smallest sample with at least q of all samples <= it.
  auto at = [&](double q) {
    const std::size_t rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(count_)));
    return Tsc::ToNanos(sorted[std::clamp<std::size_t>(rank, 1, count_) - 1]);
  };
  s.p50_ns = at(0.50);
  s.p99_ns = at(0.99);
  s.p999_ns = at(0.999);
  s.max_ns = Tsc::ToNanos(sorted.back());
  long double sum = 0;
  for (uint64_t t : sorted) sum += t;
  s.mean_ns = Tsc::ToNanos(static_cast<uint64_t>(sum / count_));
  return s;
}

void LatencySamples::Report(benchmark::State& state) const {
  const Summary s = Summarize();
  state.counters["p50_ns"] = s.p50_ns;
  state.counters["p99_ns"] = s.p99_ns;
  state.counters["p99.9_ns"] = s.p999_ns;
  state.counters["max_ns"] = s.max_ns;
}

// ---------------------------------------------------------------------------

void FillPayload(std::byte* dst, uint32_t size, uint32_t producer, uint64_t seq,
                 const std::byte* filler) {
  const uint64_t head = HeadWord(producer, seq);
  std::memcpy(dst, &head, 8);
  if (size >= 16) {
    std::memcpy(dst + 8, filler + 8, size - 16);
    const uint64_t tail = TailWord(producer, seq);
    std::memcpy(dst + size - 8, &tail, 8);
  } else if (size > 8) {
    std::memcpy(dst + 8, filler + 8, size - 8);
  }
}

uint64_t PayloadChecker::Expected(uint32_t producers, uint64_t per_producer, uint32_t size) {
  uint64_t sum = 0;
  for (uint32_t p = 0; p < producers; ++p) {
    for (uint64_t seq = 0; seq < per_producer; ++seq) sum += ChecksumWord(p, seq, size);
  }
  return sum;
}

}  // namespace runnel::bench
