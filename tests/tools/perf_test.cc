// `runnel perf`: the histogram and the protocol pieces as units, then the real
// binary end to end against a bus with a broker child: the exit code, the
// one JSON object on stdout (checked with Python's json module), records ==
// N, and that no worker process or /dev/shm file is left behind.

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/wait.h"
#include "gtest/gtest.h"
#include "ipc/bus.h"
#include "tools/perf_stats.h"

extern char** environ;

namespace runnel {
namespace {

namespace fs = std::filesystem;
using perf::Histogram;

// ---------------------------------------------------------------------------
// Units.

TEST(PerfHistogram, ExactBelow256AndWithinOnePercentAbove) {
  for (uint64_t v = 0; v < 256; ++v) {
    EXPECT_EQ(Histogram::UpperEdge(Histogram::Index(v)), v);
  }
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    const uint64_t v = rng() >> (rng() % 64);
    const uint32_t index = Histogram::Index(v);
    ASSERT_LT(index, Histogram::kBuckets);
    const uint64_t edge = Histogram::UpperEdge(index);
    ASSERT_GE(edge, v);
    ASSERT_LE(static_cast<double>(edge - v), static_cast<double>(v) / 128.0 + 1) << v;
    if (index > 0) {
      ASSERT_LT(Histogram::UpperEdge(index - 1), v) << v;
    }
  }
  EXPECT_EQ(Histogram::UpperEdge(Histogram::Index(UINT64_MAX)), UINT64_MAX);
}

TEST(PerfHistogram, PercentilesAreNearestRankAndCappedAtMax) {
  Histogram h;
  EXPECT_EQ(h.Percentile(0.5), 0u);
  for (uint64_t v = 1; v <= 1000; ++v) h.Record(v);
  EXPECT_EQ(h.count(), 1000u);
  EXPECT_EQ(h.max(), 1000u);
  EXPECT_NEAR(static_cast<double>(h.Percentile(0.5)), 500, 500 / 128.0 + 1);
  EXPECT_NEAR(static_cast<double>(h.Percentile(0.99)), 990, 990 / 128.0 + 1);
  EXPECT_EQ(h.Percentile(1.0), 1000u);
  EXPECT_LE(h.Percentile(0.9999), h.max());
  Histogram one;
  one.Record(123456789);
  EXPECT_EQ(one.Percentile(0.5), 123456789u);  // the bucket edge is capped at max
}

TEST(PerfHistogram, SerializeParseAndMergeKeepEveryCount) {
  Histogram a;
  Histogram b;
  for (uint64_t v = 0; v < 5000; v += 3) a.Record(v * 17);
  for (uint64_t v = 0; v < 300; ++v) b.Record(1'000'000 + v);
  std::optional<Histogram> a2 = Histogram::Parse(a.Serialize());
  ASSERT_TRUE(a2.has_value());
  EXPECT_EQ(a2->count(), a.count());
  EXPECT_EQ(a2->max(), a.max());
  EXPECT_EQ(a2->Percentile(0.9), a.Percentile(0.9));
  a2->Merge(b);
  EXPECT_EQ(a2->count(), a.count() + b.count());
  EXPECT_EQ(a2->max(), b.max());
  EXPECT_FALSE(Histogram::Parse("1:2,x;3").has_value());
  EXPECT_FALSE(Histogram::Parse("999999:1;3").has_value());
  EXPECT_FALSE(Histogram::Parse("no max").has_value());
}

TEST(PerfReportLine, RoundTripsFields) {
  perf::ReportLine line{"done", {{"records", "42"}, {"error", "a_b"}}};
  std::optional<perf::ReportLine> back = perf::ReportLine::Parse(line.Format());
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->tag, "done");
  EXPECT_EQ(back->U64("records"), 42u);
  EXPECT_EQ(back->Str("error"), "a_b");
  EXPECT_EQ(back->U64("absent"), 0u);
  EXPECT_FALSE(perf::ReportLine::Parse("done =x").has_value());
}

TEST(PerfCpuList, ParsesListsAndRanges) {
  EXPECT_EQ(perf::ParseCpuList("0,2-3"), (std::vector<int>{0, 2, 3}));
  EXPECT_EQ(perf::ParseCpuList("3,1,1"), (std::vector<int>{1, 3}));
  EXPECT_FALSE(perf::ParseCpuList("").has_value());
  EXPECT_FALSE(perf::ParseCpuList("2-1").has_value());
  EXPECT_FALSE(perf::ParseCpuList("a").has_value());
  EXPECT_EQ(perf::FormatCpuList({0, 1}), "0,1");
}

// ---------------------------------------------------------------------------
// End to end.

std::string RunnelPath() { return RUNNEL_BINARY_DIR "/tools/runnel"; }

struct Output {
  int exit_code = -1;
  std::string out;
};

// Runs argv with stdout captured (stderr goes to the test log); kills it
// after `timeout_s`.
Output RunProcess(const std::vector<std::string>& args, int timeout_s = 120) {
  Output result;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return result;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    return result;
  }
  const int64_t deadline = MonotonicNanos() + int64_t{timeout_s} * 1'000'000'000;
  char buf[4096];
  for (;;) {
    pollfd p{fds[0], POLLIN, 0};
    const int64_t left_ms = (deadline - MonotonicNanos()) / 1'000'000;
    if (left_ms <= 0) {
      ADD_FAILURE() << args[0] << " did not finish in " << timeout_s << " s";
      ::kill(pid, SIGKILL);
      break;
    }
    if (::poll(&p, 1, static_cast<int>(std::min<int64_t>(left_ms, 1000))) <= 0) continue;
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    result.out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

// Validates `json` with Python's json module: exactly one object with the
// keys and value types the issue promises; `records` must equal `records`.
// Returns Python's complaint, or "" if it is fine.
std::string CheckJson(const std::string& json, uint64_t records, bool latency_null,
                      const std::string& dir) {
  const std::string file = dir + "/perf.json";
  std::ofstream(file) << json;
  const char* script = R"PY(
import json, sys
text = open(sys.argv[1]).read()
d = json.loads(text)  # exactly one JSON value: extra text raises
assert isinstance(d, dict), "not an object"
for k in ("records", "bytes", "seconds", "records_per_sec", "mb_per_sec", "latency_ns"):
    assert k in d, "missing key " + k
assert d["records"] == int(sys.argv[2]), "records %r != %s" % (d["records"], sys.argv[2])
assert isinstance(d["bytes"], int) and d["bytes"] > 0
for k in ("seconds", "records_per_sec", "mb_per_sec"):
    assert isinstance(d[k], (int, float)) and d[k] > 0, k
lat = d["latency_ns"]
keys = ("p50", "p90", "p99", "p999", "p9999", "max")
assert sorted(lat) == sorted(keys), "latency_ns keys " + repr(sorted(lat))
if sys.argv[3] == "null":
    assert all(lat[k] is None for k in keys), "latency should be null"
else:
    vals = [lat[k] for k in keys]
    assert all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in vals), vals
    assert vals == sorted(vals), "percentiles not monotonic: %r" % vals
assert d["verified"] is True
)PY";
  Output r = RunProcess({"/usr/bin/env", "python3", "-c", script, file, std::to_string(records),
                         latency_null ? "null" : "ints"});
  if (r.exit_code == 0) return "";
  return "python3 rejected the JSON (exit " + std::to_string(r.exit_code) + "): " + json;
}

std::vector<std::string> BusFiles(const std::string& bus) {
  std::vector<std::string> out;
  const std::string prefix = "runnel." + bus + ".";
  if (DIR* d = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n.rfind(prefix, 0) == 0) out.push_back(n);
    }
    ::closedir(d);
  }
  return out;
}

// Processes still running `perf-worker` on `bus` (left behind by a run).
std::vector<pid_t> LeftoverWorkers(const std::string& bus) {
  std::vector<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(e.path() / "cmdline");
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (char& c : cmdline) {
      if (c == '\0') c = ' ';
    }
    if (cmdline.find(" perf-worker ") != std::string::npos &&
        cmdline.find(" " + bus + " ") != std::string::npos) {
      out.push_back(static_cast<pid_t>(std::stol(name)));
    }
  }
  return out;
}

class PerfEndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(RunnelPath().c_str(), X_OK) != 0) GTEST_SKIP() << RunnelPath() << " not built";
    bus_ = "perft" + std::to_string(::getpid());
    (void)Bus::Remove(bus_);
    dir_ = fs::temp_directory_path() / ("runnel-perf-test-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    data_dir_ = dir_ + "/data";
  }

  void TearDown() override {
    StopBroker();
    (void)Bus::Remove(bus_);
    EXPECT_TRUE(BusFiles(bus_).empty());
    EXPECT_TRUE(LeftoverWorkers(bus_).empty()) << "a perf worker outlived the run";
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::vector<std::string> Cmd(std::vector<std::string> tail) const {
    std::vector<std::string> v = {RunnelPath(), "--bus", bus_, "--data-dir", data_dir_};
    v.insert(v.end(), tail.begin(), tail.end());
    return v;
  }

  // Starts `runnel broker` and waits until it says it is active.
  void StartBroker() {
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDERR_FILENO);
    std::vector<std::string> args = Cmd({"broker"});
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ASSERT_EQ(posix_spawn(&broker_, argv[0], &fa, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    ::close(fds[1]);
    broker_err_ = fds[0];
    std::string text;
    const int64_t deadline = MonotonicNanos() + 20'000'000'000;
    while (text.find("active on bus") == std::string::npos && MonotonicNanos() < deadline) {
      pollfd p{broker_err_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[512];
      const ssize_t n = ::read(broker_err_, buf, sizeof buf);
      if (n <= 0) break;
      text.append(buf, static_cast<std::size_t>(n));
    }
    ASSERT_NE(text.find("active on bus"), std::string::npos) << "broker said: " << text;
  }

  // SIGTERM, then the broker must flush and exit 0.
  void StopBroker() {
    if (broker_ <= 0) return;
    ::kill(broker_, SIGTERM);
    int status = 0;
    const int64_t deadline = MonotonicNanos() + 30'000'000'000;
    pid_t r = 0;
    while ((r = ::waitpid(broker_, &status, WNOHANG)) == 0 && MonotonicNanos() < deadline) {
      ::usleep(10'000);
    }
    if (r == 0) {
      ::kill(broker_, SIGKILL);
      ::waitpid(broker_, &status, 0);
      ADD_FAILURE() << "the broker did not stop within 30 s of SIGTERM";
    } else {
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "broker status " << status;
    }
    broker_ = -1;
    if (broker_err_ >= 0) ::close(broker_err_);
    broker_err_ = -1;
  }

  std::string bus_;
  std::string dir_;
  std::string data_dir_;
  pid_t broker_ = -1;
  int broker_err_ = -1;
};

TEST_F(PerfEndToEnd, RoundtripWithABrokerDeliversEveryRecordAndPrintsOneJsonObject) {
  StartBroker();
  // 16 MiB rings hold the whole run: the consumer is never lapped, so this
  // checks the output contract, not the lapped-consumer path.
  constexpr uint64_t kRecords = 30000;
  Output r = RunProcess(
      Cmd({"perf", "roundtrip", "events", "--records", std::to_string(kRecords), "--partitions",
           "2", "--producers", "2", "--size", "64", "--ring-size", "16MiB", "--json"}));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(CheckJson(r.out, kRecords, /*latency_null=*/false, dir_), "");
  EXPECT_NE(r.out.find("\"persisted\": true"), std::string::npos) << r.out;
  StopBroker();
  // The broker wrote the topic's partitions to the data dir.
  EXPECT_TRUE(fs::exists(data_dir_ + "/events/0"));
  EXPECT_TRUE(fs::exists(data_dir_ + "/events/1"));
}

TEST_F(PerfEndToEnd, ConsumeReadsWhatTheRingNoLongerHoldsFromDisk) {
  StartBroker();
  // 64 KiB ring: 20000 records of 100 bytes are ~45 rings' worth.
  constexpr uint64_t kRecords = 20000;
  Output r = RunProcess(Cmd({"perf", "consume", "old", "--records", std::to_string(kRecords),
                             "--ring-size", "64KiB", "--json"}));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(CheckJson(r.out, kRecords, /*latency_null=*/true, dir_), "");
  EXPECT_EQ(r.out.find("\"records_from_disk\": 0,"), std::string::npos) << r.out;
}

TEST_F(PerfEndToEnd, ProduceWithoutABrokerCommitsEveryRecord) {
  constexpr uint64_t kRecords = 50000;
  // 64 MiB: the 7 MB of records never lap the ring, so a producer preempted
  // between claim and commit is never overrun by the other one.
  Output r = RunProcess(Cmd({"perf", "produce", "fast", "--records", std::to_string(kRecords),
                             "--producers", "2", "--ring-size", "64MiB", "--json"}));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(CheckJson(r.out, kRecords, /*latency_null=*/false, dir_), "");
  EXPECT_NE(r.out.find("\"broker\": false"), std::string::npos) << r.out;
}

// A --duration longer than nanoseconds can count (1e11 s) is no limit (it
// overflowed into a deadline in the past: nothing was sent).
TEST_F(PerfEndToEnd, ADurationOfMillenniaIsNoLimit) {
  Output r = RunProcess(Cmd({"perf", "produce", "long", "--records", "1000", "--duration",
                             "100000000000", "--ring-size", "1MiB", "--json"}));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(CheckJson(r.out, 1000, /*latency_null=*/false, dir_), "");
}

TEST_F(PerfEndToEnd, PacedRoundtripWithoutABrokerPrintsATable) {
  // 16 MiB ring: the 4000 records can never lap the consumer.
  Output r = RunProcess(Cmd({"perf", "roundtrip", "paced", "--records", "4000", "--rate", "20000",
                             "--ring-size", "16MiB"}));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("records/s"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("p99.99"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("exactly once"), std::string::npos) << r.out;
}

TEST_F(PerfEndToEnd, UsageErrorsExitTwo) {
  EXPECT_EQ(RunProcess(Cmd({"perf", "roundtrip", "t", "--size", "8"})).exit_code, 2);
  EXPECT_EQ(RunProcess(Cmd({"perf", "roundtrip"})).exit_code, 2);
  EXPECT_EQ(RunProcess(Cmd({"perf", "produce", "t", "--records", "0"})).exit_code, 2);
  EXPECT_EQ(RunProcess(Cmd({"perf", "roundtrip", "t", "--wait", "sometimes"})).exit_code, 2);
  EXPECT_EQ(RunProcess(Cmd({"perf"})).exit_code, 2);
}

TEST_F(PerfEndToEnd, HelpDocumentsTheLatencyAndHidesTheWorker) {
  Output perf_help = RunProcess(Cmd({"perf", "--help"}));
  EXPECT_EQ(perf_help.exit_code, 0);
  EXPECT_NE(perf_help.out.find("first 8 bytes of the value"), std::string::npos) << perf_help.out;
  Output top = RunProcess(Cmd({"--help"}));
  EXPECT_EQ(top.out.find("perf-worker"), std::string::npos) << top.out;
}

}  // namespace
}  // namespace runnel
