// End-to-end tests of the `runnel` command line: the real binary, run as a
// user would (subprocesses, pipes, exit codes), each test on its own bus and
// data dir, with brokers as child processes that are always stopped.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "ipc/bus.h"
#include "persistence/format.h"
#include "tests/common/scoped_tmpfs.h"
#include "tests/tools/cli_test_util.h"

namespace runnel::clitest {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    bus_ = "t" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
    (void)Bus::Remove(bus_);
    char tmpl[] = "/tmp/runnel-cli-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    data_dir_ = root_ + "/data";
  }

  void TearDown() override {
    brokers_.clear();  // SIGKILL + reap any broker still running
    (void)Bus::Remove(bus_);
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  // `runnel --bus B --data-dir D args...`
  std::vector<std::string> Argv(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {RunnelPath(), "--bus", bus_, "--data-dir", data_dir_};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  RunResult Runnel(const std::vector<std::string>& args, const std::string& input = "",
                   milliseconds timeout = seconds(30)) {
    return RunProcess(Argv(args), input, timeout);
  }

  // `cd DIR && runnel --bus B ARGS...` with no --data-dir (nor
  // RUNNEL_DATA_DIR), as an argv for RunProcess or Child.
  std::vector<std::string> ArgvIn(const std::string& dir, const std::string& args) const {
    return {"sh", "-c",
            "cd '" + dir + "' && exec env -u RUNNEL_DATA_DIR '" + RunnelPath() + "' --bus " + bus_ +
                " " + args};
  }

 public:
  // Runnel() for helpers outside the fixture.
  RunResult RunnelFor(const std::vector<std::string>& args, const std::string& input = "") {
    return Runnel(args, input);
  }

 protected:
  // Starts `runnel broker` and waits until it is active.
  Child& StartBroker(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"broker"};
    args.insert(args.end(), extra.begin(), extra.end());
    brokers_.push_back(std::make_unique<Child>(Argv(args)));
    Child& b = *brokers_.back();
    EXPECT_TRUE(b.WaitForStderr("active on bus", seconds(10))) << b.err();
    return b;
  }

  // Stops the newest broker with SIGTERM; returns its exit code.
  int StopBroker() {
    const int code = brokers_.back()->Stop(SIGTERM);
    return code;
  }

  // Produces 20 records to a new topic `name` (durable, with a broker),
  // stops the broker, and cuts 24 bytes off the end of the log: durable
  // records are lost. Returns the values produced.
  std::vector<std::string> ProduceThenCutTheLog(const std::string& name) {
    StartBroker();
    CreateTopic(name);
    std::vector<std::string> values;
    for (int i = 0; i < 20; ++i) values.push_back("value number " + std::to_string(i));
    std::string lines;
    for (const std::string& v : values) lines += v + "\n";
    EXPECT_EQ(Runnel({"produce", name, "--delivery", "at-least-once"}, lines).exit_code, 0);
    EXPECT_EQ(StopBroker(), 0);
    const std::string segment = data_dir_ + "/" + name + "/0/00000000000000000000.log";
    fs::resize_file(segment, fs::file_size(segment) - 24);
    return values;
  }

  // True once `topic describe` lists a registered client of `kind`
  // ("consumers" or "producers"); false after 20 s, or if `child` exited.
  bool WaitRegistered(const std::string& topic, const std::string& kind, Child& child) {
    const auto deadline = std::chrono::steady_clock::now() + seconds(20);
    while (Runnel({"topic", "describe", topic, "--json"}).out.find("\"" + kind + "\":[{") ==
           std::string::npos) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      if (child.Wait(milliseconds(20)) != -1) return false;  // it exited
    }
    return true;
  }

  void CreateTopic(const std::string& name, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"topic", "create", name};
    args.insert(args.end(), extra.begin(), extra.end());
    RunResult r = Runnel(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  std::string bus_;
  std::string root_;
  std::string data_dir_;
  std::vector<std::unique_ptr<Child>> brokers_;
};

// The first line containing `text`, or "".
std::string LineWith(const std::vector<std::string>& lines, const std::string& text) {
  for (const std::string& l : lines) {
    if (l.find(text) != std::string::npos) return l;
  }
  return {};
}

// The decimal number right after the first `prefix` in `text` (0 if none).
uint64_t NumberAfter(const std::string& text, const std::string& prefix) {
  const std::size_t at = text.find(prefix);
  if (at == std::string::npos) return 0;
  return std::strtoull(text.c_str() + at + prefix.size(), nullptr, 10);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Flips a bit of the 4th byte of the first `text` in the file at `path`;
// returns where `text` starts (npos if it is not there).
std::size_t FlipByteIn(const std::string& path, const std::string& text) {
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::size_t at = bytes.find(text);
  if (at == std::string::npos) return at;
  bytes[at + 3] ^= 0x20;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return at;
}

std::string Join(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& l : lines) out += l + "\n";
  return out;
}

// Values with spaces, tabs, UTF-8, an empty line, a separator in the value.
const std::vector<std::string> kValues = {"hello world",
                                          "  leading and trailing  ",
                                          "tab\tinside",
                                          "héllo wörld ✓ 日本語",
                                          "",
                                          "a:b:c",
                                          "x"};

// ---- usage errors -------------------------------------------------------------------

struct UsageCase {
  std::vector<std::string> args;
  std::string expect_in_stderr;
};

TEST_F(CliTest, EveryUsageErrorExits2WithAHelpfulMessage) {
  const std::vector<UsageCase> cases = {
      {{}, "needs a command"},
      {{"frobnicate"}, "unknown command 'frobnicate'"},
      {{"topic"}, "needs a command: create"},
      {{"topic", "frob"}, "unknown command 'frob'"},
      {{"consume"}, "TOPIC is required"},
      {{"produce"}, "TOPIC is required"},
      {{"topic", "create"}, "NAME is required"},
      {{"consume", "t", "--from", "yesterday"}, "earliest, latest, an offset"},
      {{"consume", "t", "--from", "@soon"}, "@EPOCH_MS"},
      {{"consume", "t", "--from", "-5"}, "--from"},
      {{"topic", "create", "t", "--ring-size", "64QiB"}, "unknown suffix"},
      {{"topic", "create", "t", "--segment-size", "1.5GiB"}, "--segment-size"},
      {{"topic", "create", "t", "--retention-bytes", "lots"}, "not a size"},
      {{"consume", "t", "--format", "yaml"}, "--format"},
      {{"replay", "/tmp", "--format", "xml"}, "--format"},
      {{"stat", "--format", "csv"}, "--format"},
      {{"broker", "--fsync", "sometimes"}, "never, always, interval:MS"},
      {{"topic", "create", "t", "--fsync", "interval:0"}, "interval:MS"},
      {{"produce", "t", "--delivery", "exactly-twice"}, "--delivery"},
      {{"consume", "t", "--bogus"}, "--bogus"},
      {{"--bus", "bad.name", "topic", "list"}, "bus name"},
      {{"replay"}, "DIR is required"},
      {{"inspect"}, "PATH is required"},
      {{"replay", "/tmp", "--from", "ten"}, "not an offset"},
      {{"topic", "create", "t", "--retention-ms", "-1"}, "--retention-ms"},
      {{"topic", "create", "t", "--retention-ms", "18446744073709551615"}, "9223372036854"},
      {{"consume", "t", "--max", "-1"}, "--max"},
      {{"consume", "t", "--partition", "-1"}, "--partition: must not be negative"},
      {{"consume", "t", "--idle-exit-ms", "0x10"}, "--idle-exit-ms: must be a whole number"},
      {{"produce", "t", "--retries", "-1"}, "--retries: must not be negative"},
      {{"replay", "/tmp", "--to", "1e3"}, "--to: must be a whole number"},
      {{"perf", "produce", "t", "--producers", "0x2"}, "--producers: must be a whole number"},
      {{"perf", "produce", "t", "--size", "10"}, "--size: 10 is not between 24 and 1GiB"},
      // CLI11 reads a double with strtod: nan ran unpaced, 0x10 as 16/s.
      {{"perf", "roundtrip", "t", "--rate", "nan"}, "--rate: must be a decimal number"},
      {{"perf", "roundtrip", "t", "--rate", "0x10"}, "--rate: must be a decimal number"},
      {{"perf", "roundtrip", "t", "--rate", "1e3"}, "--rate: must be a decimal number"},
      {{"perf", "roundtrip", "t", "--rate", "-2"}, "--rate: must not be negative"},
      {{"perf", "produce", "t", "--duration", "inf"}, "--duration: must be a decimal number"},
      {{"perf", "produce", "t", "--duration", "1e400"}, "--duration: must be a decimal number"},
      {{"perf", "produce", "t", "--duration", "2000000000000"}, "--duration: must be at most"},
      {{"perf", "roundtrip", "t", "--cpus", "0,1000"}, "--cpus: CPU 1000 is not one this process"},
      {{"topic", "describe", "bad/name"}, "NAME: topic name 'bad/name'"},
      {{"topic", "delete", ".."}, "NAME: topic name '..'"},
      {{"produce", "bad/x"}, "TOPIC: topic name 'bad/x'"},
      {{"replay", "/tmp", "--into", "a/b"}, "--into: topic name 'a/b'"},
      {{"stat", "--topic", "bad/x"}, "--topic: topic name 'bad/x'"},
      // An empty data dir made a broker persist into the file system's root.
      {{"broker", "--data-dir", ""}, "--data-dir: must not be empty"},
      // Log settings for a topic without a log were stored, and then made an
      // identical create fail.
      {{"topic", "create", "t", "--no-durable", "--fsync", "always"}, "excludes"},
      {{"topic", "create", "t", "--segment-size", "1MiB", "--no-durable"}, "excludes"},
  };
  for (const UsageCase& c : cases) {
    std::vector<std::string> argv = {RunnelPath()};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    RunResult r = RunProcess(argv);
    std::string shown;
    for (const std::string& a : c.args) shown += a + " ";
    EXPECT_EQ(r.exit_code, 2) << "runnel " << shown << "\n" << r.err;
    EXPECT_NE(r.err.find(c.expect_in_stderr), std::string::npos)
        << "runnel " << shown << ": stderr lacks '" << c.expect_in_stderr << "':\n"
        << r.err;
    EXPECT_NE(r.err.find("--help"), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

TEST_F(CliTest, HelpExits0OnEveryLevel) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"--help"},
                                             {"topic", "--help"},
                                             {"topic", "create", "--help"},
                                             {"produce", "--help"},
                                             {"consume", "--help"},
                                             {"replay", "--help"},
                                             {"inspect", "--help"},
                                             {"stat", "--help"},
                                             {"broker", "--help"}}) {
    std::vector<std::string> argv = {RunnelPath()};
    argv.insert(argv.end(), args.begin(), args.end());
    RunResult r = RunProcess(argv);
    EXPECT_EQ(r.exit_code, 0) << args[0] << "\n" << r.err;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << r.out;
  }
}

// ---- topics ------------------------------------------------------------------------

TEST_F(CliTest, TopicCreateIsIdempotentAndNamesConflictingSettings) {
  CreateTopic("orders", {"--partitions", "3", "--ring-size", "256KiB"});
  RunResult same =
      Runnel({"topic", "create", "orders", "--partitions", "3", "--ring-size", "256KiB"});
  EXPECT_EQ(same.exit_code, 0) << same.err;
  EXPECT_NE(same.out.find("already exists"), std::string::npos) << same.out;

  RunResult other =
      Runnel({"topic", "create", "orders", "--partitions", "4", "--ring-size", "256KiB"});
  EXPECT_EQ(other.exit_code, 1);
  EXPECT_NE(other.err.find("--partitions 4 (the topic has 3)"), std::string::npos) << other.err;

  RunResult bad_name = Runnel({"topic", "create", "../etc"});
  EXPECT_EQ(bad_name.exit_code, 2) << bad_name.err;

  RunResult not_pow2 = Runnel({"topic", "create", "odd", "--ring-size", "100KiB"});
  EXPECT_NE(not_pow2.exit_code, 0);
  EXPECT_FALSE(not_pow2.err.empty());
}

// A number that is negative, too large for any option, or too large for its
// option is a usage error that says which (not "0 or more", nor CLI11's
// "Could not convert").
TEST_F(CliTest, NumbersOutOfRangeAreUsageErrorsThatSaySo) {
  RunResult negative = Runnel({"topic", "create", "t", "--partitions", "-1"});
  EXPECT_EQ(negative.exit_code, 2);
  EXPECT_NE(negative.err.find("--partitions: must not be negative (got -1)"), std::string::npos)
      << negative.err;
  RunResult huge = Runnel({"consume", "t", "--partition", "99999999999999999999"});
  EXPECT_EQ(huge.exit_code, 2);
  EXPECT_NE(huge.err.find("--partition: is too large (got 99999999999999999999)"),
            std::string::npos)
      << huge.err;
  for (const std::string cmd : {"consume", "replay"}) {
    RunResult from =
        Runnel({cmd, cmd == "replay" ? data_dir_ : "t", "--from", "99999999999999999999"});
    EXPECT_EQ(from.exit_code, 2) << cmd;
    EXPECT_NE(from.err.find("'99999999999999999999' is too large"), std::string::npos) << from.err;
  }
  RunResult wide = Runnel({"consume", "t", "--partition", "4294967296"});
  EXPECT_EQ(wide.exit_code, 2);
  EXPECT_NE(wide.err.find("--partition: 4294967296 is out of range"), std::string::npos)
      << wide.err;
}

// Options that contradict each other, or an empty key separator, are usage
// errors in every command (consume and replay accepted an empty one, and
// replay --progress --no-progress).
TEST_F(CliTest, AnEmptyKeySeparatorAndContradictoryProgressOptionsAreUsageErrors) {
  for (const std::string cmd : {"consume", "replay", "produce"}) {
    SCOPED_TRACE(cmd);
    RunResult r = Runnel({cmd, cmd == "replay" ? data_dir_ : "t", "-k", ""});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("the key separator must not be empty"), std::string::npos) << r.err;
  }
  RunResult both = Runnel({"replay", data_dir_, "--progress", "--no-progress"});
  EXPECT_EQ(both.exit_code, 2) << both.err;
  EXPECT_NE(both.err.find("excludes"), std::string::npos) << both.err;
}

// CLI11 alone would read "010" as octal 8 and "09" as an error.
TEST_F(CliTest, NumbersWithLeadingZerosAreDecimal) {
  CreateTopic("z", {"--partitions", "010"});
  RunResult d = Runnel({"topic", "describe", "z", "--json"});
  ASSERT_EQ(d.exit_code, 0) << d.err;
  EXPECT_NE(d.out.find("\"partitions\":10,"), std::string::npos) << d.out;
  RunResult p =
      Runnel({"produce", "z", "--partition", "09", "--delivery", "at-most-once"}, "nine\n");
  ASSERT_EQ(p.exit_code, 0) << p.err;
  RunResult c = Runnel({"consume", "z", "--partition", "09", "--from", "earliest", "--idle-exit-ms",
                        "0200", "--format", "json"});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_NE(c.out.find("\"partition\":9,"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("\"value\":\"nine\""), std::string::npos) << c.out;
}

TEST_F(CliTest, TopicListAndDescribeJsonParse) {
  ASSERT_TRUE(Python()) << "python3 is needed to check JSON (scripts/setup installs it)";
  CreateTopic("beta", {"--no-durable", "--single-producer"});
  CreateTopic("alpha", {"--partitions", "2"});
  RunResult list = Runnel({"topic", "list", "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(IsJson(list.out)) << list.out;
  EXPECT_NE(list.out.find("\"alpha\""), std::string::npos);
  EXPECT_NE(list.out.find("\"beta\""), std::string::npos);

  RunResult table = Runnel({"topic", "list"});
  EXPECT_EQ(table.exit_code, 0);
  ASSERT_NE(table.out.find("alpha"), std::string::npos);
  EXPECT_LT(table.out.find("alpha"), table.out.find("beta")) << table.out;  // in name order

  RunResult describe = Runnel({"topic", "describe", "alpha", "--json"});
  ASSERT_EQ(describe.exit_code, 0) << describe.err;
  EXPECT_TRUE(IsJson(describe.out)) << describe.out;
  EXPECT_NE(describe.out.find("\"partition_info\""), std::string::npos);

  RunResult missing = Runnel({"topic", "describe", "gamma"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("runnel --bus " + bus_ + " topic create gamma"), std::string::npos)
      << missing.err;

  RunResult nosuch = Runnel({"topic", "delete", "gamma"});
  EXPECT_EQ(nosuch.exit_code, 1);
  EXPECT_EQ(nosuch.err, "runnel topic delete: topic 'gamma' not found on bus '" + bus_ +
                            "' (the topics there: runnel --bus " + bus_ + " topic list)\n");
  EXPECT_FALSE(fs::exists(data_dir_ + "/~locks/gamma"));  // no lock file for a mistyped name

  RunResult del = Runnel({"topic", "delete", "beta"});
  EXPECT_EQ(del.exit_code, 0) << del.err;
  RunResult after = Runnel({"topic", "list", "--json"});
  EXPECT_EQ(after.out.find("\"beta\""), std::string::npos) << after.out;
}

TEST_F(CliTest, CommandsOnAMissingBusSayHowToCreateIt) {
  RunResult r = Runnel({"topic", "list"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("broker"), std::string::npos) << r.err;
  RunResult c = Runnel({"consume", "nope", "--idle-exit-ms", "10"});
  EXPECT_EQ(c.exit_code, 1);
}

// A bus whose creator was killed before formatting it: a command that only
// attaches names the commands that create it (not the library's option),
// and one of those formats it.
TEST_F(CliTest, ABusNeverFormattedNamesTheCommandsThatCreateIt) {
  const std::string path = "/dev/shm/runnel." + bus_ + ".dir";
  std::ofstream(path).close();  // created, never sized: its creator died
  RunResult r = Runnel({"topic", "list"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("was never initialized: its creator died while creating it; start a "
                       "broker (runnel --bus " +
                       bus_ + " broker) or create a topic"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("create_if_missing"), std::string::npos) << r.err;
  CreateTopic("t");
  EXPECT_EQ(Runnel({"topic", "list"}).exit_code, 0);
}

TEST_F(CliTest, BusInfoAndRemove) {
  ASSERT_TRUE(Python());
  CreateTopic("kept");
  RunResult info = Runnel({"bus", "info", "--json"});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_TRUE(IsJson(info.out)) << info.out;
  EXPECT_NE(info.out.find("\"topics\":1"), std::string::npos) << info.out;
  StartBroker();
  RunResult refused = Runnel({"bus", "remove"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("a broker (pid"), std::string::npos) << refused.err;
  EXPECT_EQ(StopBroker(), 0);
  // A live consumer keeps the bus; once it is killed (no broker reaps its
  // registration) it does not.
  {
    Child consumer(Argv({"consume", "kept"}));
    ASSERT_TRUE(WaitRegistered("kept", "consumers", consumer));
    RunResult busy = Runnel({"bus", "remove"});
    EXPECT_EQ(busy.exit_code, 1);
    EXPECT_NE(busy.err.find("has 1 live producer/consumer;"), std::string::npos) << busy.err;
    ASSERT_EQ(consumer.Stop(SIGKILL), 128 + SIGKILL);
  }
  RunResult removed = Runnel({"bus", "remove"});
  EXPECT_EQ(removed.exit_code, 0) << removed.err;
  EXPECT_FALSE(fs::exists("/dev/shm/runnel." + bus_ + ".dir"));
  RunResult gone = Runnel({"bus", "info"});
  EXPECT_EQ(gone.exit_code, 1);
}

// ---- broker -------------------------------------------------------------------------

TEST_F(CliTest, SecondBrokerOnTheSameBusExits1) {
  Child& first = StartBroker();
  RunResult second = Runnel({"broker"}, "", seconds(10));
  EXPECT_EQ(second.exit_code, 1) << second.err;
  EXPECT_NE(second.err.find("already active"), std::string::npos) << second.err;
  EXPECT_NE(second.err.find(std::to_string(first.pid())), std::string::npos) << second.err;
  EXPECT_EQ(StopBroker(), 0) << brokers_.back()->err();
}

TEST_F(CliTest, BrokerStopsCleanlyOnSigint) {
  Child& b = StartBroker({"--fsync", "always"});
  EXPECT_EQ(b.Stop(SIGINT), 0) << b.err();
  EXPECT_NE(b.err().find("stopped"), std::string::npos) << b.err();
}

TEST_F(CliTest, StatAndBusInfoTellABrokerThatNeverRanFromOneThatStoppedOrDied) {
  ASSERT_TRUE(Python());
  CreateTopic("x");
  const std::string start = "start one with: runnel --bus " + bus_ + " broker";
  auto first_line = [&](const std::vector<std::string>& args) {
    RunResult r = Runnel(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const std::vector<std::string> lines = Lines(r.out);
    return lines.empty() ? std::string() : lines[0];
  };
  const std::vector<std::string> stat = {"stat", "--interval-ms", "10"};
  EXPECT_NE(first_line(stat).find(": broker never started (" + start + "), 1 topic"),
            std::string::npos)
      << first_line(stat);

  const int pid = StartBroker().pid();
  EXPECT_NE(first_line(stat).find(": broker pid " + std::to_string(pid) + " (alive), 1 topic"),
            std::string::npos)
      << first_line(stat);

  const int64_t before_ms =
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  ASSERT_EQ(StopBroker(), 0);
  const int64_t after_ms =
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  // Stopped cleanly: not "never started", and it says who and when.
  const std::string stopped = first_line(stat);
  const std::string prefix =
      ": broker not running (pid " + std::to_string(pid) + " stopped cleanly at ";
  const std::size_t at = stopped.find(prefix);
  ASSERT_NE(at, std::string::npos) << stopped;
  const std::string rest = stopped.substr(at + prefix.size());
  // 2024-05-01T12:34:56.789Z; start one with: ...
  ASSERT_GT(rest.size(), 24u) << stopped;
  EXPECT_EQ(rest[10], 'T') << stopped;
  EXPECT_EQ(rest[23], 'Z') << stopped;
  EXPECT_EQ(rest.substr(24), "; " + start + "), 1 topic, 0 clients (rates over 10 ms)");

  RunResult json = Runnel({"stat", "--format", "json", "--interval-ms", "10"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_TRUE(IsJson(json.out)) << json.out;
  const std::string broker_json =
      "\"broker\":{\"pid\":0,\"alive\":false,\"epoch\":1,"
      "\"state\":\"stopped\",\"stopped_pid\":" +
      std::to_string(pid) + ",\"stopped_ms\":";
  ASSERT_NE(json.out.find(broker_json), std::string::npos) << json.out;
  const uint64_t stopped_ms = NumberAfter(json.out, broker_json);
  EXPECT_GE(stopped_ms, static_cast<uint64_t>(before_ms));
  EXPECT_LE(stopped_ms, static_cast<uint64_t>(after_ms));
  RunResult info = Runnel({"bus", "info"});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(
      info.out.find("  broker: not running (pid " + std::to_string(pid) + " stopped cleanly at "),
      std::string::npos)
      << info.out;
  EXPECT_NE(info.out.find("; " + start + "), epoch 1\n"), std::string::npos) << info.out;

  // Killed: it died without stopping.
  const int killed = StartBroker().pid();
  EXPECT_EQ(brokers_.back()->Stop(SIGKILL), 128 + SIGKILL);
  const std::string died = first_line(stat);
  EXPECT_NE(died.find(": broker pid " + std::to_string(killed) +
                      " NOT RUNNING (died without stopping, last seen "),
            std::string::npos)
      << died;
  EXPECT_NE(died.find(" s ago; " + start + "), 1 topic"), std::string::npos) << died;
  RunResult died_json = Runnel({"bus", "info", "--json"});
  EXPECT_NE(died_json.out.find("\"broker\":{\"pid\":" + std::to_string(killed) +
                               ",\"alive\":false,\"epoch\":2,\"state\":\"died\","
                               "\"stopped_pid\":" +
                               std::to_string(pid) + ",\"stopped_ms\":"),
            std::string::npos)
      << died_json.out;
}

// ---- produce / consume ------------------------------------------------------------------

// Options that only the topic can refute are usage errors (exit 2), with
// the topic's facts in the message.
TEST_F(CliTest, OptionsTheTopicCannotHonourAreUsageErrors) {
  CreateTopic("mem", {"--no-durable"});
  RunResult alo = Runnel({"produce", "mem", "--delivery", "at-least-once"}, "x\n");
  EXPECT_EQ(alo.exit_code, 2) << alo.err;
  EXPECT_NE(alo.err.find("topic 'mem' is not durable"), std::string::npos) << alo.err;
  RunResult part = Runnel({"consume", "mem", "--partition", "3", "--idle-exit-ms", "10"});
  EXPECT_EQ(part.exit_code, 2) << part.err;
  EXPECT_NE(part.err.find("topic 'mem' has 1 partition (0); there is no partition 3"),
            std::string::npos)
      << part.err;
}

TEST_F(CliTest, ProducedLinesComeBackExactly) {
  StartBroker();
  CreateTopic("lines");
  RunResult p = Runnel({"produce", "lines", "--delivery", "at-least-once"}, Join(kValues));
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_NE(p.err.find("7 records"), std::string::npos) << p.err;
  EXPECT_NE(p.err.find("records/s"), std::string::npos) << p.err;

  RunResult c = Runnel({"consume", "lines", "--from", "earliest", "--idle-exit-ms", "500"});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(c.out, Join(kValues));

  // --max stops early; --from OFFSET starts there.
  RunResult two = Runnel({"consume", "lines", "--from", "3", "--max", "2"});
  ASSERT_EQ(two.exit_code, 0) << two.err;
  EXPECT_EQ(two.out, Join({kValues[3], kValues[4]}));

  // A line without a final newline is a record too.
  RunResult last = Runnel({"produce", "lines"}, "no newline at the end");
  ASSERT_EQ(last.exit_code, 0) << last.err;
  RunResult tail = Runnel({"consume", "lines", "--from", "7", "--max", "1"});
  EXPECT_EQ(tail.out, "no newline at the end\n");
  EXPECT_EQ(StopBroker(), 0);
}

// A line too large for the topic stops the run (exit 1, naming the line);
// the lines before it were sent, and at-least-once waits for them, so the
// summary counts them durable and a rerun from the next line duplicates
// nothing.
TEST_F(CliTest, ProduceStoppedByAnOversizedLineConfirmsTheLinesBeforeIt) {
  StartBroker();
  CreateTopic("small", {"--max-record-size", "1KiB"});
  RunResult p = Runnel({"produce", "small", "--delivery", "at-least-once"},
                       "a\nb\n" + std::string(2000, 'x') + "\nc\n");
  EXPECT_EQ(p.exit_code, 1) << p.err;
  EXPECT_NE(p.err.find("line 3: "), std::string::npos) << p.err;
  EXPECT_NE(p.err.find("runnel produce: 2 records, 2 B in "), std::string::npos) << p.err;
  EXPECT_NE(p.err.find("at-least-once: 2 durable, 0 not confirmed"), std::string::npos) << p.err;
  RunResult c = Runnel({"consume", "small", "--from", "earliest", "--idle-exit-ms", "300"});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(c.out, "a\nb\n");
  EXPECT_EQ(StopBroker(), 0);
}

// A line that is already longer than any record can be is refused while it
// is read, not once its newline comes: stdin may never have one (a binary
// file, /dev/zero), and the line is not held in memory meanwhile.
TEST_F(CliTest, ProduceRefusesALineLongerThanAnyRecordBeforeItEnds) {
  StartBroker();
  CreateTopic("small", {"--max-record-size", "1KiB"});
  // runnel is bash's process (exec): a kill on timeout reaches it, and cat
  // then ends on its broken pipe.
  std::string cmd = "exec";
  for (const std::string& a : Argv({"produce", "small", "--delivery", "at-least-once"})) {
    cmd += " '" + a + "'";
  }
  cmd += " < <(printf 'a\\nb\\n'; exec cat /dev/zero)";
  RunResult p = RunProcess({"/bin/bash", "-c", cmd}, "", seconds(20));
  EXPECT_FALSE(p.timed_out) << p.err;
  EXPECT_EQ(p.exit_code, 1) << p.err;
  EXPECT_NE(p.err.find("line 3: record of more than 1024 bytes"), std::string::npos) << p.err;
  EXPECT_NE(p.err.find("no end of line yet"), std::string::npos) << p.err;
  EXPECT_NE(p.err.find("at-least-once: 2 durable, 0 not confirmed"), std::string::npos) << p.err;
  RunResult c = Runnel({"consume", "small", "--from", "earliest", "--idle-exit-ms", "300"});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(c.out, "a\nb\n");
  EXPECT_EQ(StopBroker(), 0);
}

// Headers come from the command line: too large ones are a usage error
// before any line is read, not a failure blamed on line 1.
TEST_F(CliTest, ProduceRefusesHeadersNoRecordCanCarry) {
  StartBroker();
  CreateTopic("hdr", {"--max-record-size", "1KiB"});
  const std::string big(70000, 'v');
  RunResult over = Runnel({"produce", "hdr", "-H", "name=" + big}, "a\n");
  EXPECT_EQ(over.exit_code, 2) << over.err;
  EXPECT_NE(over.err.find("--header: a name or value over 65535 bytes"), std::string::npos)
      << over.err;
  EXPECT_EQ(over.err.find("line 1"), std::string::npos) << over.err;
  const std::string mid(2000, 'v');
  RunResult topic = Runnel({"produce", "hdr", "-H", "name=" + mid}, "a\n");
  EXPECT_EQ(topic.exit_code, 2) << topic.err;
  EXPECT_NE(topic.err.find("the headers alone take 2008 bytes, over the max record size 1024 of "
                           "topic 'hdr'"),
            std::string::npos)
      << topic.err;
  RunResult c = Runnel({"consume", "hdr", "--from", "earliest", "--idle-exit-ms", "300"});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(c.out, "");
  EXPECT_EQ(StopBroker(), 0);
}

TEST_F(CliTest, KeysHeadersAndJsonLines) {
  ASSERT_TRUE(Python());
  StartBroker();
  CreateTopic("kv", {"--partitions", "3"});
  const std::string input = "user1:login\nuser2:click here\nuser1:logout\nno separator\n";
  RunResult p = Runnel({"produce", "kv", "--key-separator", ":", "-H", "source=test"}, input);
  ASSERT_EQ(p.exit_code, 0) << p.err;

  RunResult c =
      Runnel({"consume", "kv", "--from", "earliest", "--idle-exit-ms", "400", "--format", "json"});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  const std::vector<std::string> lines = Lines(c.out);
  ASSERT_EQ(lines.size(), 4u) << c.out;
  for (const std::string& l : lines) {
    EXPECT_TRUE(IsJson(l)) << l;
    for (const char* key : {"\"topic\":\"kv\"", "\"partition\":", "\"offset\":",
                            "\"timestamp_ms\":", "\"timestamp_ns\":", "\"key\":", "\"value\":",
                            "\"headers\":[{\"name\":\"source\",\"value\":\"test\"}]"}) {
      EXPECT_NE(l.find(key), std::string::npos) << key << " in " << l;
    }
  }
  EXPECT_NE(c.out.find("\"key\":null,\"value\":\"no separator\""), std::string::npos) << c.out;
  // The same key lands on the same partition, in order.
  const std::string login = LineWith(lines, "\"key\":\"user1\",\"value\":\"login\"");
  const std::string logout = LineWith(lines, "\"key\":\"user1\",\"value\":\"logout\"");
  ASSERT_FALSE(login.empty() || logout.empty()) << c.out;
  EXPECT_EQ(NumberAfter(login, "\"partition\":"), NumberAfter(logout, "\"partition\":"));
  EXPECT_LT(NumberAfter(login, "\"offset\":"), NumberAfter(logout, "\"offset\":"));

  // kv format round-trips keys with another separator.
  RunResult kvout = Runnel({"consume", "kv", "--from", "earliest", "--idle-exit-ms", "300",
                            "--format", "kv", "--key-separator", "="});
  ASSERT_EQ(kvout.exit_code, 0);
  EXPECT_NE(kvout.out.find("user2=click here\n"), std::string::npos) << kvout.out;
  EXPECT_EQ(StopBroker(), 0);
}

TEST_F(CliTest, NonUtf8BytesAreBase64InJson) {
  StartBroker();
  CreateTopic("bin");
  RunResult p = Runnel({"produce", "bin", "-k", "|"}, std::string("k\xff|\xfe\xff v\n", 8));
  ASSERT_EQ(p.exit_code, 0) << p.err;
  RunResult c = Runnel({"consume", "bin", "--from", "earliest", "--max", "1", "--format", "json"});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_NE(c.out.find("\"key_b64\":\"a/8=\""), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("\"value_b64\":\"/v8gdg==\""), std::string::npos) << c.out;
  EXPECT_TRUE(IsJson(c.out)) << c.out;
  EXPECT_EQ(StopBroker(), 0);
}

TEST_F(CliTest, ConsumeFollowsNewRecordsAndExitsWhenIdle) {
  StartBroker();
  CreateTopic("live");
  Child consumer(Argv({"consume", "live", "--idle-exit-ms", "10000", "--max", "3"}));
  // Registered (it starts at "latest") before anything is produced.
  ASSERT_TRUE(WaitRegistered("live", "consumers", consumer)) << consumer.err();
  RunResult p = Runnel({"produce", "live"}, "one\ntwo\nthree\nfour\n");
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_EQ(consumer.Wait(seconds(10)), 0) << consumer.err();
  EXPECT_EQ(consumer.out(), "one\ntwo\nthree\n");
  EXPECT_EQ(StopBroker(), 0);
}

// --from @T with T still to come: records stamped before T are not printed,
// also when they arrive after the consumer started.
TEST_F(CliTest, ConsumeFromAFutureTimeSkipsEarlierRecords) {
  StartBroker();
  CreateTopic("soon");
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  const int64_t at_ms = now_ms + 3000;  // room for a slow (sanitizer) start
  Child consumer(Argv({"consume", "soon", "--from", "@" + std::to_string(at_ms), "--idle-exit-ms",
                       "5000", "--max", "1"}));
  // Registered (so positioned at the end) before "early" is produced.
  ASSERT_TRUE(WaitRegistered("soon", "consumers", consumer)) << consumer.err();
  RunResult early = Runnel({"produce", "soon"}, "early\n");
  ASSERT_EQ(early.exit_code, 0) << early.err;
  while (std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
             .count() <= at_ms) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  RunResult late = Runnel({"produce", "soon"}, "late\n");
  ASSERT_EQ(late.exit_code, 0) << late.err;
  EXPECT_EQ(consumer.Wait(seconds(10)), 0) << consumer.err();
  EXPECT_EQ(consumer.out(), "late\n");
  EXPECT_EQ(StopBroker(), 0);
}

// Records skipped for --from @T keep an --idle-exit-ms consume going: the
// stream is live, only not yet at T.
TEST_F(CliTest, RecordsSkippedForAFutureTimeAreNotIdleness) {
  StartBroker();
  CreateTopic("busy");
  auto now_ms = [] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  const int64_t at_ms = now_ms() + 4000;
  Child consumer(Argv({"consume", "busy", "--from", "@" + std::to_string(at_ms), "--idle-exit-ms",
                       "1500", "--max", "1"}));
  ASSERT_TRUE(WaitRegistered("busy", "consumers", consumer)) << consumer.err();
  // An early record every ~100 ms, far less than 1500; the last comes well
  // before T (a produce stamped past T would be delivered), and the late one
  // well after it.
  while (now_ms() < at_ms - 300) {
    RunResult early = Runnel({"produce", "busy"}, "early\n");
    ASSERT_EQ(early.exit_code, 0) << early.err;
    std::this_thread::sleep_for(milliseconds(100));
  }
  while (now_ms() <= at_ms + 50) std::this_thread::sleep_for(milliseconds(10));
  RunResult late = Runnel({"produce", "busy"}, "late\n");
  ASSERT_EQ(late.exit_code, 0) << late.err;
  EXPECT_EQ(consumer.Wait(seconds(10)), 0) << consumer.err();
  EXPECT_EQ(consumer.out(), "late\n");
  EXPECT_EQ(StopBroker(), 0);
}

// A segment size the log cannot use is refused when the topic is created
// (exit 2), not when the broker first tries to persist it.
TEST_F(CliTest, TopicCreateRefusesSegmentSizesTheLogCannotUse) {
  for (const char* size : {"5GiB", "2KiB"}) {
    RunResult r = Runnel({"topic", "create", "s", "--segment-size", size});
    EXPECT_EQ(r.exit_code, 2) << size << ": " << r.err;
    EXPECT_NE(r.err.find("segment_bytes must be between 4096 and 4294963200"), std::string::npos)
        << r.err;
  }
  RunResult list = Runnel({"topic", "list", "--json"});
  EXPECT_EQ(list.out.find("\"s\""), std::string::npos) << list.out;
}

// --idle-exit-ms 0 still prints what is there; a reader that goes away
// (`| head -1`) ends consume even when no new record comes to fail a write.
TEST_F(CliTest, ConsumeDrainsWithIdleZeroAndNoticesAClosedPipe) {
  CreateTopic("m", {"--no-durable"});
  // A memory-only topic has no log to point at.
  RunResult described = Runnel({"topic", "describe", "m"});
  EXPECT_NE(described.out.find("log: none (memory only)"), std::string::npos) << described.out;
  ASSERT_EQ(Runnel({"produce", "m"}, "a\nb\nc\n").exit_code, 0);
  RunResult all = Runnel({"consume", "m", "--from", "earliest", "--idle-exit-ms", "0"});
  EXPECT_EQ(all.exit_code, 0) << all.err;
  EXPECT_EQ(all.out, "a\nb\nc\n");
  // --idle-exit-ms bounds a consume that misses the closed pipe (the test
  // then fails on the timeout, leaving nothing running for long).
  std::string cmd = "set -o pipefail; ";
  for (const std::string& a :
       Argv({"consume", "m", "--from", "earliest", "--idle-exit-ms", "20000"})) {
    cmd += "'" + a + "' ";
  }
  cmd += "| head -n 1";
  const auto start = std::chrono::steady_clock::now();
  RunResult head = RunProcess({"/bin/bash", "-c", cmd}, "", seconds(30));
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(10));
  EXPECT_EQ(head.exit_code, 0) << head.err;
  EXPECT_EQ(head.out, "a\n");
}

TEST_F(CliTest, AtLeastOnceWithoutABrokerFailsAndSaysSo) {
  CreateTopic("nobroker");
  RunResult p = Runnel({"produce", "nobroker", "--delivery", "at-least-once", "--timeout-ms", "300",
                        "--retries", "0"},
                       "a\nb\n");
  EXPECT_EQ(p.exit_code, 1);
  EXPECT_NE(p.err.find("no broker is running for bus '" + bus_ + "'"), std::string::npos) << p.err;
  EXPECT_NE(p.err.find("runnel --bus " + bus_ + " broker"), std::string::npos) << p.err;
  // at-most-once needs no broker.
  RunResult q = Runnel({"produce", "nobroker", "--delivery", "at-most-once"}, "c\n");
  EXPECT_EQ(q.exit_code, 0) << q.err;
  // Without a broker nothing reaches the disk: once the ring is full,
  // at-most-once stops too (nothing is overwritten before it is on disk).
  CreateTopic("small", {"--ring-size", "64KiB"});
  std::string many;
  for (int i = 0; i < 5000; ++i) many += "record " + std::to_string(i) + "\n";
  RunResult full =
      Runnel({"produce", "small", "--delivery", "at-most-once", "--timeout-ms", "200"}, many);
  EXPECT_EQ(full.exit_code, 1);
  EXPECT_NE(full.err.find("no broker is running"), std::string::npos) << full.err;
  RunResult unknown = Runnel({"produce", "missing"}, "x\n");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("runnel --bus " + bus_ + " topic create missing"), std::string::npos)
      << unknown.err;
}

TEST_F(CliTest, RecordsSurviveABrokerRestart) {
  StartBroker();
  CreateTopic("durable", {"--partitions", "2"});
  std::vector<std::string> values;
  for (int i = 0; i < 500; ++i) values.push_back("record " + std::to_string(i));
  RunResult p = Runnel({"produce", "durable", "--partition", "0", "--delivery", "at-least-once"},
                       Join(values));
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_EQ(StopBroker(), 0) << brokers_.back()->err();

  StartBroker();
  std::vector<std::string> more = {"after restart 1", "after restart 2"};
  RunResult p2 =
      Runnel({"produce", "durable", "--partition", "0", "--delivery", "at-least-once"}, Join(more));
  ASSERT_EQ(p2.exit_code, 0) << p2.err;
  RunResult c = Runnel(
      {"consume", "durable", "--partition", "0", "--from", "earliest", "--idle-exit-ms", "500"});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  values.insert(values.end(), more.begin(), more.end());
  EXPECT_EQ(c.out, Join(values));
  EXPECT_EQ(StopBroker(), 0);
}

TEST_F(CliTest, RecordsSurviveLosingTheSharedMemory) {
  StartBroker();
  CreateTopic("reboot");
  std::vector<std::string> values;
  for (int i = 0; i < 200; ++i) values.push_back("v" + std::to_string(i));
  RunResult p = Runnel({"produce", "reboot", "--delivery", "at-least-once"}, Join(values));
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_EQ(StopBroker(), 0);
  // A reboot: the bus's shared memory is gone, the data dir stays.
  ASSERT_TRUE(Bus::Remove(bus_).ok());

  StartBroker();  // re-creates the topic from the data dir
  RunResult c = Runnel({"consume", "reboot", "--from", "earliest", "--idle-exit-ms", "500"});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(c.out, Join(values));
  RunResult p2 = Runnel({"produce", "reboot", "--delivery", "at-least-once"}, "next\n");
  ASSERT_EQ(p2.exit_code, 0) << p2.err;
  RunResult c2 = Runnel({"consume", "reboot", "--from", "200", "--max", "1", "--idle-exit-ms",
                         "2000", "--format", "json"});
  EXPECT_NE(c2.out.find("\"offset\":200,"), std::string::npos) << c2.out;
  EXPECT_NE(c2.out.find("\"value\":\"next\""), std::string::npos) << c2.out;
  EXPECT_EQ(StopBroker(), 0);
}

// Commands run from another directory, with no --data-dir, use the data dir
// the bus's broker persists to (not ./runnel-data there); another one given
// while that broker runs is refused, and after it stopped it is noted.
TEST_F(CliTest, CommandsGivenNoDataDirUseTheBrokersFromAnyDirectory) {
  StartBroker();
  CreateTopic("far", {"--ring-size", "64KiB"});
  std::vector<std::string> values;
  for (int i = 0; i < 3000; ++i) values.push_back("far away record " + std::to_string(i));
  RunResult p = Runnel({"produce", "far", "--delivery", "at-least-once"}, Join(values));
  ASSERT_EQ(p.exit_code, 0) << p.err;
  const std::string elsewhere = root_ + "/elsewhere";
  fs::create_directories(elsewhere);
  auto from_elsewhere = [&](const std::string& args) {
    return RunProcess(ArgvIn(elsewhere, args));
  };
  const std::string consume = "consume far --from earliest --idle-exit-ms 500";
  RunResult c = from_elsewhere(consume);
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(c.out, Join(values));  // the first records are only on disk
  EXPECT_EQ(c.err, "");
  RunResult info = from_elsewhere("bus info --json");
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_TRUE(IsJson(info.out)) << info.out;
  EXPECT_NE(info.out.find("\"data_dir\":\"" + data_dir_ + "\""), std::string::npos) << info.out;
  EXPECT_FALSE(fs::exists(elsewhere + "/runnel-data"));

  RunResult wrong = from_elsewhere("--data-dir other " + consume);
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_EQ(wrong.err, "runnel consume: the broker of bus '" + bus_ + "' (pid " +
                           std::to_string(brokers_.back()->pid()) + ") keeps its data in " +
                           data_dir_ + ", not in " + elsewhere +
                           "/other; use the same data dir (or leave it out to use the "
                           "broker's)\n");

  EXPECT_EQ(StopBroker(), 0);
  c = from_elsewhere(consume);
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(c.out, Join(values));
  wrong = from_elsewhere("--data-dir other " + consume);
  EXPECT_EQ(wrong.exit_code, 0) << wrong.err;
  EXPECT_NE(wrong.err.find("note: bus '" + bus_ + "' keeps its logs in " + data_dir_ +
                           " (recorded by its last broker, or by a topic create while none ran); "
                           "this command uses " +
                           elsewhere + "/other"),
            std::string::npos)
      << wrong.err;

  // A broker given another data dir says so, and commands then use its one.
  const std::string second = root_ + "/second";
  brokers_.push_back(std::make_unique<Child>(
      std::vector<std::string>{RunnelPath(), "--bus", bus_, "--data-dir", second, "broker"}));
  ASSERT_TRUE(brokers_.back()->WaitForStderr("active on bus", seconds(10)))
      << brokers_.back()->err();
  EXPECT_NE(brokers_.back()->err().find("note: bus '" + bus_ + "' keeps its logs in " + data_dir_ +
                                        " (recorded by its last broker, or by a topic create while "
                                        "none ran); this command uses " +
                                        second),
            std::string::npos)
      << brokers_.back()->err();
  info = from_elsewhere("bus info --json");
  EXPECT_NE(info.out.find("\"broker_data_dir\":\"" + second + "\""), std::string::npos) << info.out;
  EXPECT_EQ(StopBroker(), 0);
}

// A durable topic created with a data dir while no broker runs records that
// dir for the bus: a broker and commands given none, started anywhere, use it.
TEST_F(CliTest, ATopicCreatedBeforeAnyBrokerRecordsItsDataDir) {
  CreateTopic("early");  // --data-dir data_dir_, and no broker yet
  const std::string elsewhere = root_ + "/elsewhere";
  fs::create_directories(elsewhere);
  RunResult p =
      RunProcess(ArgvIn(elsewhere, "produce early --delivery at-most-once"), "one\ntwo\n");
  ASSERT_EQ(p.exit_code, 0) << p.err;
  brokers_.push_back(std::make_unique<Child>(ArgvIn(elsewhere, "broker")));
  ASSERT_TRUE(brokers_.back()->WaitForStderr("active on bus", seconds(10)))
      << brokers_.back()->err();
  RunResult c = RunProcess(ArgvIn(elsewhere, "consume early --from earliest --idle-exit-ms 300"));
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(c.out, "one\ntwo\n");
  EXPECT_EQ(c.err, "");
  RunResult info = RunProcess(ArgvIn(elsewhere, "bus info --json"));
  EXPECT_NE(info.out.find("\"broker_data_dir\":\"" + data_dir_ + "\""), std::string::npos)
      << info.out;
  EXPECT_EQ(StopBroker(), 0);
  EXPECT_FALSE(fs::exists(elsewhere + "/runnel-data"));
  // The broker persisted them where the topic was created.
  RunResult r = Runnel({"replay", data_dir_, "--topic", "early"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Lines(r.out).size(), 2u) << r.out;
}

// A topic created with another data dir while no broker runs leaves the
// one a broker recorded: it says where that broker's logs are.
TEST_F(CliTest, ATopicCreatedElsewhereAfterABrokerStoppedKeepsItsDataDir) {
  StartBroker();
  CreateTopic("kept");
  ASSERT_EQ(Runnel({"produce", "kept"}, "one\n").exit_code, 0);
  EXPECT_EQ(StopBroker(), 0);
  const std::string other = root_ + "/other";
  fs::create_directories(other);
  RunResult t = RunProcess(ArgvIn(other, "--data-dir " + other + "/data topic create later"));
  ASSERT_EQ(t.exit_code, 0) << t.err;
  RunResult info = RunProcess(ArgvIn(other, "bus info --json"));
  EXPECT_NE(info.out.find("\"broker_data_dir\":\"" + data_dir_ + "\""), std::string::npos)
      << info.out;
}

// A consumer that the producer laps (a 64 KiB ring, 100k records) never
// prints a record whose bytes were being overwritten: on a durable topic it
// prints every record exactly once, in order (what the ring lost comes from
// disk); on a memory-only one every record it prints is whole, and what it
// does not print is reported lost.
TEST_F(CliTest, ALappedConsumerPrintsOnlyWholeRecords) {
  StartBroker();
  CreateTopic("lap", {"--ring-size", "64KiB"});
  CreateTopic("lapmem", {"--ring-size", "64KiB", "--no-durable"});
  constexpr int kRecords = 100'000;
  std::vector<std::string> values;
  for (int i = 0; i < kRecords; ++i) values.push_back("v" + std::to_string(i));
  // Each consumer is registered before its producer starts, so it is at
  // offset 0 when the first record comes.
  Child durable(Argv({"consume", "lap", "--from", "earliest", "--max", std::to_string(kRecords),
                      "--idle-exit-ms", "30000"}));
  ASSERT_TRUE(WaitRegistered("lap", "consumers", durable)) << durable.err();
  RunResult p = Runnel({"produce", "lap"}, Join(values));
  ASSERT_EQ(p.exit_code, 0) << p.err;
  ASSERT_EQ(durable.Wait(seconds(60)), 0) << durable.err();
  EXPECT_EQ(durable.out(), Join(values));
  EXPECT_EQ(durable.err(), "");

  Child memory(Argv(
      {"consume", "lapmem", "--from", "earliest", "--idle-exit-ms", "5000", "--format", "json"}));
  ASSERT_TRUE(WaitRegistered("lapmem", "consumers", memory)) << memory.err();
  RunResult pm = Runnel({"produce", "lapmem"}, Join(values));
  ASSERT_EQ(pm.exit_code, 0) << pm.err;
  ASSERT_EQ(memory.Wait(seconds(60)), 0) << memory.err();
  uint64_t printed = 0;
  uint64_t next = 0;
  for (const std::string& line : Lines(memory.out())) {
    const uint64_t offset = NumberAfter(line, "\"offset\":");
    ASSERT_TRUE(offset >= next) << line;  // in order, no duplicate
    next = offset + 1;
    ASSERT_NE(line.find("\"value\":\"v" + std::to_string(offset) + "\""), std::string::npos)
        << line;
    ++printed;
  }
  uint64_t lost = 0;
  for (const std::string& line : Lines(memory.err())) {
    ASSERT_NE(line.find("the consumer fell behind the ring"), std::string::npos) << line;
    lost += NumberAfter(line, "lost ");
  }
  EXPECT_EQ(printed + lost, static_cast<uint64_t>(kRecords)) << memory.err();
  EXPECT_EQ(StopBroker(), 0);
}

// ---- topic delete ---------------------------------------------------------------------------

// After `topic delete` and a broker (re)start: not listed, producing fails
// with the unknown-topic error, and creating it again starts at offset 0.
void ExpectDeletedForGood(CliTest& t, const std::string& bus, const std::string& data_dir) {
  RunResult list = t.RunnelFor({"topic", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_EQ(list.out.find("gone"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("kept"), std::string::npos) << list.out;
  EXPECT_FALSE(fs::exists(data_dir + "/gone"));
  RunResult p = t.RunnelFor({"produce", "gone"}, "x\n");
  EXPECT_EQ(p.exit_code, 1);
  EXPECT_EQ(p.err, "runnel produce: topic 'gone' not found on bus '" + bus +
                       "' (create it with: runnel --bus " + bus + " topic create gone)\n");
  RunResult create = t.RunnelFor({"topic", "create", "gone"});
  ASSERT_EQ(create.exit_code, 0) << create.err;
  RunResult again = t.RunnelFor({"produce", "gone"}, "fresh\n");
  ASSERT_EQ(again.exit_code, 0) << again.err;
  RunResult c = t.RunnelFor(
      {"consume", "gone", "--from", "earliest", "--idle-exit-ms", "500", "--format", "json"});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  const std::vector<std::string> lines = Lines(c.out);
  ASSERT_EQ(lines.size(), 1u) << c.out;
  EXPECT_NE(lines[0].find("\"offset\":0,"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("\"value\":\"fresh\""), std::string::npos) << lines[0];
  RunResult kept = t.RunnelFor({"consume", "kept", "--from", "earliest", "--idle-exit-ms", "500"});
  EXPECT_EQ(kept.out, "k1\nk2\n");
}

// `tail -F log | runnel produce t` ends with Ctrl-C: the lines read so far
// are sent, the summary is printed, and the exit code is 0. A line whose
// newline had not come yet is not sent (its rest may have been on the way),
// and the producer says so.
TEST_F(CliTest, ProduceStoppedBySigintSendsWhatItReadAndSaysSo) {
  CreateTopic("sig", {"--no-durable"});
  const std::string fifo = root_ + "/in";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  Child producer({"sh", "-c",
                  "exec '" + RunnelPath() + "' --bus " + bus_ + " --data-dir '" + data_dir_ +
                      "' produce sig < '" + fifo + "'"});
  const int fd = ::open(fifo.c_str(), O_WRONLY);  // waits for the reader
  ASSERT_GE(fd, 0);
  // One write, read at once: "part" is buffered when a and b are sent.
  ASSERT_EQ(::write(fd, "a\nb\npart", 8), 8);
  // Both lines are in the ring before the signal.
  const auto deadline = std::chrono::steady_clock::now() + seconds(10);
  while (Runnel({"topic", "describe", "sig", "--json"}).out.find("\"next_offset\":2") ==
         std::string::npos) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << producer.err();
    std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_EQ(::kill(producer.pid(), SIGINT), 0);
  EXPECT_EQ(producer.Wait(seconds(10)), 0) << producer.err();
  ::close(fd);
  EXPECT_NE(producer.err().find("runnel produce: 2 records, 2 B in "), std::string::npos)
      << producer.err();
  EXPECT_NE(producer.err().find("stopped in the middle of line 3: its 4 bytes read so far (no "
                                "end of line yet) were not sent"),
            std::string::npos)
      << producer.err();
  EXPECT_NE(Runnel({"topic", "describe", "sig", "--json"}).out.find("\"next_offset\":2"),
            std::string::npos);
}

// A producer reading stdin slowly notices that its topic was deleted at
// the next line (it used to notice only every 256 records): exit 1, saying so.
TEST_F(CliTest, ProduceStopsWhenItsTopicIsDeleted) {
  StartBroker();
  for (const std::string delivery : {"at-most-once", "at-least-once"}) {
    const std::string topic = "del-" + delivery;
    CreateTopic(topic);
    Child producer({"sh", "-c",
                    "(echo a; sleep 2; echo b; sleep 2; echo c) | exec '" + RunnelPath() +
                        "' --bus " + bus_ + " --data-dir '" + data_dir_ + "' produce " + topic +
                        " --delivery " + delivery});
    // Registered (it has the topic open) before the delete.
    ASSERT_TRUE(WaitRegistered(topic, "producers", producer)) << producer.err();
    RunResult d = Runnel({"topic", "delete", topic});
    ASSERT_EQ(d.exit_code, 0) << d.err;
    EXPECT_EQ(producer.Wait(seconds(20)), 1) << producer.err();
    EXPECT_NE(producer.err().find("topic '" + topic + "' was deleted"), std::string::npos)
        << producer.err();
  }
  EXPECT_EQ(StopBroker(), 0);
}

TEST_F(CliTest, TopicDeletedWithNoBrokerRunningStaysDeleted) {
  StartBroker();
  CreateTopic("gone", {"--partitions", "2"});
  CreateTopic("kept");
  ASSERT_EQ(Runnel({"produce", "gone"}, "old1\nold2\nold3\n").exit_code, 0);
  ASSERT_EQ(Runnel({"produce", "kept"}, "k1\nk2\n").exit_code, 0);
  ASSERT_EQ(StopBroker(), 0);

  RunResult del = Runnel({"topic", "delete", "gone"});
  ASSERT_EQ(del.exit_code, 0) << del.err;
  EXPECT_EQ(del.out, "deleted topic 'gone' from bus '" + bus_ + "'\nits log stays in " + data_dir_ +
                         "/gone, marked as deleted: the next broker removes it (no broker is "
                         "running; remove it now with: runnel --bus " +
                         bus_ + " topic delete gone --purge)\n");
  RunResult tomb = Runnel({"inspect", data_dir_ + "/gone/topic.deleted"});
  EXPECT_EQ(tomb.exit_code, 0) << tomb.err;
  EXPECT_EQ(Lines(tomb.out).at(0), data_dir_ +
                                       "/gone/topic.deleted: tombstone: the topic was deleted; "
                                       "the next broker (or creating it again) removes this "
                                       "directory, none restores it");
  RunResult topic_dir = Runnel({"inspect", data_dir_ + "/gone"});
  EXPECT_EQ(topic_dir.exit_code, 0) << topic_dir.err << topic_dir.out;
  // Its logs are clean, and the topic is said to be deleted.
  EXPECT_NE(topic_dir.out.find("topic gone: deleted (it has a topic.deleted tombstone): never "
                               "restored; a broker removes its log\n"),
            std::string::npos)
      << topic_dir.out;
  // Before any broker runs, the hint does not offer to bring it back.
  RunResult p = Runnel({"produce", "gone"}, "x\n");
  EXPECT_EQ(p.err, "runnel produce: topic 'gone' not found on bus '" + bus_ +
                       "' (create it with: runnel --bus " + bus_ + " topic create gone)\n");

  StartBroker();
  ExpectDeletedForGood(*this, bus_, data_dir_);
  ASSERT_EQ(StopBroker(), 0);
  // Still gone after a reboot (the bus's shared memory lost) and a restart.
  ASSERT_TRUE(Bus::Remove(bus_).ok());
  StartBroker();
  RunResult list = Runnel({"topic", "list"});
  EXPECT_NE(list.out.find("gone"), std::string::npos) << list.out;  // the re-created one
  RunResult c = Runnel({"consume", "gone", "--from", "earliest", "--idle-exit-ms", "500"});
  EXPECT_EQ(c.out, "fresh\n");
  EXPECT_EQ(StopBroker(), 0);
}

TEST_F(CliTest, TopicDeletedWhileTheBrokerRunsStaysDeletedAfterARestart) {
  StartBroker();
  CreateTopic("gone");
  CreateTopic("kept");
  ASSERT_EQ(Runnel({"produce", "gone"}, "old1\nold2\n").exit_code, 0);
  ASSERT_EQ(Runnel({"produce", "kept"}, "k1\nk2\n").exit_code, 0);
  RunResult del = Runnel({"topic", "delete", "gone"});
  ASSERT_EQ(del.exit_code, 0) << del.err;
  EXPECT_EQ(del.out, "deleted topic 'gone' from bus '" + bus_ + "'\nthe broker removes its log " +
                         data_dir_ + "/gone\n");
  ASSERT_EQ(StopBroker(), 0);
  StartBroker();
  ExpectDeletedForGood(*this, bus_, data_dir_);
  EXPECT_EQ(StopBroker(), 0);
}

TEST_F(CliTest, TopicOnlyInTheDataDirCanBeDeleted) {
  StartBroker();
  CreateTopic("gone");
  CreateTopic("kept");
  ASSERT_EQ(Runnel({"produce", "gone"}, "old\n").exit_code, 0);
  ASSERT_EQ(Runnel({"produce", "kept"}, "k1\nk2\n").exit_code, 0);
  ASSERT_EQ(StopBroker(), 0);
  ASSERT_TRUE(Bus::Remove(bus_).ok());  // a reboot: only the data dir knows the topics
  RunResult del = Runnel({"topic", "delete", "gone"});  // the bus does not exist either
  ASSERT_EQ(del.exit_code, 0) << del.err;
  EXPECT_EQ(del.out.substr(0, del.out.find('\n') + 1), "topic 'gone' is not on bus '" + bus_ +
                                                           "'; marked its log " + data_dir_ +
                                                           "/gone as deleted\n");
  StartBroker();
  ExpectDeletedForGood(*this, bus_, data_dir_);
  EXPECT_EQ(StopBroker(), 0);
}

// After a reboot, before a broker restored it, a topic is only in the data
// dir: creating it with other settings is refused as for a live topic (it
// was accepted, overwrote topic.meta and hid the other partition's records).
TEST_F(CliTest, TopicOnlyInTheDataDirIsNotCreatedWithOtherSettings) {
  StartBroker();
  CreateTopic("t", {"--partitions", "2"});
  ASSERT_EQ(Runnel({"produce", "t", "-k", ":"}, "k1:a\nk2:b\nk3:c\nk4:d\n").exit_code, 0);
  ASSERT_EQ(StopBroker(), 0);
  ASSERT_TRUE(Bus::Remove(bus_).ok());
  RunResult fewer = Runnel({"topic", "create", "t", "--partitions", "1"});
  EXPECT_EQ(fewer.exit_code, 1);
  EXPECT_EQ(fewer.err, "runnel topic create: topic 't' is in the data dir " + data_dir_ +
                           " with other settings: --partitions 1 (the topic has 2); create it "
                           "with the same settings (a broker restores it with them by itself), "
                           "or delete it first with: runnel --bus " +
                           bus_ + " topic delete t\n");
  RunResult memory = Runnel({"topic", "create", "t", "--partitions", "2", "--no-durable"});
  EXPECT_EQ(memory.exit_code, 1);
  EXPECT_NE(memory.err.find("with other settings: --no-durable on (the topic has off);"),
            std::string::npos)
      << memory.err;
  StartBroker();  // restores it as it was: every record is there
  RunResult c = Runnel(
      {"consume", "t", "--from", "earliest", "--idle-exit-ms", "300", "--format", "kv", "-k", ":"});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  std::vector<std::string> lines;
  for (size_t at = 0, nl; (nl = c.out.find('\n', at)) != std::string::npos; at = nl + 1) {
    lines.push_back(c.out.substr(at, nl - at));
  }
  std::sort(lines.begin(), lines.end());
  EXPECT_EQ(lines, (std::vector<std::string>{"k1:a", "k2:b", "k3:c", "k4:d"}));
  EXPECT_EQ(StopBroker(), 0);
}

// Without a bus and without a data dir named, delete does not create the bus
// to tombstone a topic in ./runnel-data (a mistyped --bus would): it says how.
TEST_F(CliTest, TopicDeleteWithoutABusNeedsTheDataDirNamed) {
  const std::string cwd = root_ + "/cwd";
  fs::create_directories(cwd + "/runnel-data/t");
  std::ofstream(cwd + "/runnel-data/t/topic.meta") << "partitions=1\n";
  RunResult r = RunProcess({"/bin/sh", "-c",
                            "cd '" + cwd + "' && unset RUNNEL_DATA_DIR && '" + RunnelPath() +
                                "' --bus " + bus_ + "x topic delete t"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.err, "runnel topic delete: bus '" + bus_ +
                       "x' does not exist; topic 't' has a log in " + cwd +
                       "/runnel-data: to delete it there, name that data dir: runnel --bus " +
                       bus_ + "x topic delete t --data-dir " + cwd + "/runnel-data\n");
  EXPECT_FALSE(fs::exists("/dev/shm/runnel." + bus_ + "x.dir"));
  EXPECT_FALSE(fs::exists(cwd + "/runnel-data/t/topic.deleted"));
}

// `bus remove --force` under a running broker: the broker notices, stops and
// exits 1, so that a broker of the bus made anew can open the logs (the old
// one ran on, kept them locked, and nothing was persisted again).
TEST_F(CliTest, ABrokerWhoseBusWasRemovedStopsAndTheNextOnePersists) {
  Child& old = StartBroker();
  CreateTopic("x");
  ASSERT_EQ(Runnel({"produce", "x"}, "a\nb\n").exit_code, 0);
  RunResult removed = Runnel({"bus", "remove", "--force"});
  ASSERT_EQ(removed.exit_code, 0) << removed.err;
  EXPECT_EQ(old.Wait(seconds(10)), 1);
  EXPECT_NE(old.err().find("runnel broker: bus '" + bus_ + "' was removed from /dev/shm"),
            std::string::npos)
      << old.err();
  StartBroker();  // restores x from its log
  RunResult more = Runnel({"produce", "x", "--timeout-ms", "5000"}, "c\n");
  EXPECT_EQ(more.exit_code, 0) << more.err;
  EXPECT_NE(more.err.find("all durable"), std::string::npos) << more.err;
  ASSERT_EQ(StopBroker(), 0);
  RunResult replay = RunProcess({RunnelPath(), "replay", data_dir_, "--format", "kv"});
  EXPECT_EQ(replay.out, "\ta\n\tb\n\tc\n");  // kv: no key, a tab, the value
}

TEST_F(CliTest, TopicDeletePurgeRemovesTheLogAtOnce) {
  StartBroker();
  CreateTopic("gone");
  CreateTopic("kept");
  ASSERT_EQ(Runnel({"produce", "gone"}, "old\n").exit_code, 0);
  ASSERT_EQ(Runnel({"produce", "kept"}, "k1\nk2\n").exit_code, 0);
  // With the broker running: waits for it to close the logs.
  RunResult del = Runnel({"topic", "delete", "gone", "--purge"});
  ASSERT_EQ(del.exit_code, 0) << del.err;
  EXPECT_FALSE(fs::exists(data_dir_ + "/gone"));
  std::vector<std::string> entries;
  for (const auto& e : fs::directory_iterator(data_dir_)) entries.push_back(e.path().filename());
  std::sort(entries.begin(), entries.end());
  // ~locks: the topic locks (TopicDirLock), which stay.
  EXPECT_EQ(entries, (std::vector<std::string>{"kept", "~locks"}));
  ASSERT_EQ(StopBroker(), 0);
  StartBroker();
  ExpectDeletedForGood(*this, bus_, data_dir_);
  EXPECT_EQ(StopBroker(), 0);
}

// ---- replay and inspect -------------------------------------------------------------------

TEST_F(CliTest, ReplayReadsTheDataDirWithNoBusOrBroker) {
  StartBroker();
  CreateTopic("replayed");
  RunResult p = Runnel({"produce", "replayed", "--delivery", "at-least-once", "-k", ":"},
                       "k0:zero\nk1:one\nk2:two\nk3:three\nk4:four\n");
  ASSERT_EQ(p.exit_code, 0) << p.err;
  ASSERT_EQ(StopBroker(), 0);
  ASSERT_TRUE(Bus::Remove(bus_).ok());

  // The data dir, the topic dir and the partition dir all work.
  for (const std::string& dir : {data_dir_, data_dir_ + "/replayed", data_dir_ + "/replayed/0"}) {
    RunResult r = RunProcess({RunnelPath(), "replay", dir});
    ASSERT_EQ(r.exit_code, 0) << dir << "\n" << r.err;
    EXPECT_EQ(r.out, "zero\none\ntwo\nthree\nfour\n") << dir;
  }
  RunResult range =
      RunProcess({RunnelPath(), "replay", data_dir_, "--topic", "replayed", "--partition", "0",
                  "--from", "1", "--to", "3", "--format", "kv", "-k", "="});
  ASSERT_EQ(range.exit_code, 0) << range.err;
  EXPECT_EQ(range.out, "k1=one\nk2=two\nk3=three\n");
  EXPECT_EQ(range.err, "");
  // Past the end: nothing, and it says so (exit 0).
  RunResult past = RunProcess({RunnelPath(), "replay", data_dir_ + "/replayed", "--from", "99"});
  EXPECT_EQ(past.exit_code, 0) << past.err;
  EXPECT_EQ(past.out, "");
  EXPECT_NE(past.err.find("replayed/0: no records at or after offset 99"), std::string::npos)
      << past.err;
  // With --to, the warning names the range it looked in.
  RunResult empty_range = RunProcess(
      {RunnelPath(), "replay", data_dir_ + "/replayed", "--from", "@4000000000000", "--to", "1"});
  EXPECT_EQ(empty_range.exit_code, 0) << empty_range.err;
  EXPECT_EQ(empty_range.out, "");
  EXPECT_NE(empty_range.err.find(
                "replayed/0: no records stamped at or after 4000000000000 ms up to offset 1\n"),
            std::string::npos)
      << empty_range.err;

  RunResult json = RunProcess({RunnelPath(), "replay", data_dir_, "--format", "json"});
  ASSERT_EQ(json.exit_code, 0);
  for (const std::string& line : Lines(json.out)) EXPECT_TRUE(IsJson(line)) << line;

  RunResult none = RunProcess({RunnelPath(), "replay", data_dir_, "--topic", "nope"});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_NE(none.err.find("replayed"), std::string::npos) << none.err;  // lists what exists
}

// A directory tree that only looks like a data dir (topic/<number>/...)
// is not verified as "clean": nothing there is a runnel log.
TEST_F(CliTest, ReplayOfADirectoryWithoutLogsFails) {
  const std::string dir = root_ + "/notdata";
  fs::create_directories(dir + "/postgresql/15");
  { std::ofstream(dir + "/postgresql/15/pg.conf") << "x"; }
  RunResult r = RunProcess({RunnelPath(), "replay", dir, "--verify"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find(dir + " holds no partition logs"), std::string::npos) << r.err;
}

TEST_F(CliTest, ReplayVerifyReportsDamageWithFileAndPosition) {
  StartBroker();
  CreateTopic("verified");
  std::vector<std::string> values;
  for (int i = 0; i < 100; ++i) values.push_back("value number " + std::to_string(i));
  RunResult p = Runnel({"produce", "verified", "--delivery", "at-least-once"}, Join(values));
  ASSERT_EQ(p.exit_code, 0) << p.err;
  ASSERT_EQ(StopBroker(), 0);

  RunResult clean = RunProcess({RunnelPath(), "replay", data_dir_, "--verify"});
  EXPECT_EQ(clean.exit_code, 0) << clean.out << clean.err;
  EXPECT_NE(clean.out.find("records 100"), std::string::npos) << clean.out;
  EXPECT_NE(clean.out.find("offsets 0..99"), std::string::npos) << clean.out;
  RunResult clean_json =
      RunProcess({RunnelPath(), "replay", data_dir_, "--verify", "--format", "json"});
  EXPECT_EQ(clean_json.exit_code, 0);
  EXPECT_TRUE(IsJson(clean_json.out)) << clean_json.out;

  // Flip one byte inside the value of a record in the middle of a copy.
  const std::string copy = root_ + "/copy";
  fs::copy(data_dir_, copy, fs::copy_options::recursive);
  const std::string segment = copy + "/verified/0/00000000000000000000.log";
  const std::size_t at = FlipByteIn(segment, "value number 50");
  ASSERT_NE(at, std::string::npos);
  RunResult damaged = RunProcess({RunnelPath(), "replay", copy, "--verify"});
  EXPECT_EQ(damaged.exit_code, 3) << damaged.out << damaged.err;
  EXPECT_NE(damaged.out.find("00000000000000000000.log at byte "), std::string::npos)
      << damaged.out;
  EXPECT_NE(damaged.out.find("crc"), std::string::npos) << damaged.out;
  EXPECT_NE(damaged.out.find("DAMAGED"), std::string::npos) << damaged.out;
  // The frame starts before the value: the reported position is within
  // 4 KiB before the flipped byte.
  ASSERT_NE(damaged.out.find(".log at byte "), std::string::npos) << damaged.out;
  const std::size_t reported = NumberAfter(damaged.out, ".log at byte ");
  EXPECT_LE(reported, at);
  EXPECT_GT(reported + 200, at);

  // Plain replay skips the damaged record, says where, and exits 3 too.
  RunResult read = RunProcess({RunnelPath(), "replay", copy});
  EXPECT_EQ(read.exit_code, 3);
  EXPECT_EQ(read.out.find("value number 50\n"), std::string::npos);
  EXPECT_NE(read.out.find("value number 51\n"), std::string::npos);
  EXPECT_NE(read.err.find("at byte " + std::to_string(reported)), std::string::npos) << read.err;

  // A partition that cannot be read at all (a segment of a later format
  // version): exit 1, and the summary does not call it clean.
  const std::string later = root_ + "/later";
  fs::copy(data_dir_, later, fs::copy_options::recursive);
  FileHeader h;
  h.version = 9u << 16;
  const auto header = EncodeFileHeader(h);
  {
    std::fstream f(later + "/verified/0/00000000000000000000.log",
                   std::ios::in | std::ios::out | std::ios::binary);
    f.write(reinterpret_cast<const char*>(header.data()), header.size());
  }
  RunResult unread = RunProcess({RunnelPath(), "replay", later, "--verify"});
  EXPECT_EQ(unread.exit_code, 1) << unread.out << unread.err;
  EXPECT_NE(unread.err.find("cannot verify"), std::string::npos) << unread.err;
  EXPECT_EQ(unread.out.find(": clean"), std::string::npos) << unread.out;
  EXPECT_NE(unread.out.find("1 partition could not be read"), std::string::npos) << unread.out;

  RunResult inspect = RunProcess({RunnelPath(), "inspect", segment});
  EXPECT_EQ(inspect.exit_code, 3) << inspect.out;
  EXPECT_NE(inspect.out.find("DAMAGE at byte " + std::to_string(reported)), std::string::npos)
      << inspect.out;

  // Cut inside the damaged record, at a length that is not a multiple of 8:
  // a torn tail that ends the file (it was printed as 2^64 - 6 bytes after
  // the data end).
  const std::size_t cut = at / 8 * 8 + 3;
  fs::resize_file(segment, cut);
  RunResult torn = RunProcess({RunnelPath(), "inspect", segment});
  EXPECT_EQ(torn.exit_code, 3) << torn.out;
  EXPECT_NE(torn.out.find("nothing valid after it: a torn tail"), std::string::npos) << torn.out;
  EXPECT_NE(torn.out.find("data ends at byte " + std::to_string(cut) + ", the end of the file"),
            std::string::npos)
      << torn.out;
}

// A broker killed during a segment roll leaves a last segment whose header
// was never written, and no time index for it. replay --verify and inspect
// call that a note, not damage (nothing was lost), and the broker completes
// the roll when it restarts.
// A partition directory removed by hand (with its records): verify and
// inspect said "clean", since they only looked at the directories there.
TEST_F(CliTest, VerifyAndInspectReportAPartitionDirectoryThatIsMissing) {
  StartBroker();
  CreateTopic("t", {"--partitions", "2"});
  ASSERT_EQ(Runnel({"produce", "t"}, "a\nb\nc\nd\n").exit_code, 0);
  ASSERT_EQ(StopBroker(), 0);
  fs::remove_all(data_dir_ + "/t/1");
  for (const std::string& dir : {data_dir_, data_dir_ + "/t"}) {
    RunResult v = RunProcess({RunnelPath(), "replay", dir, "--verify"});
    EXPECT_EQ(v.exit_code, 3) << v.out << v.err;
    EXPECT_NE(v.out.find("DAMAGE " + data_dir_ +
                         "/t/1: missing: the topic's settings (topic.meta) name this partition"),
              std::string::npos)
        << v.out;
    EXPECT_NE(v.out.find("summary: 2 partitions,"), std::string::npos) << v.out;
    RunResult i = RunProcess({RunnelPath(), "inspect", dir});
    EXPECT_EQ(i.exit_code, 3) << i.out << i.err;
    EXPECT_NE(i.out.find("DAMAGE topic t: partition 1: its log directory " + data_dir_ +
                         "/t/1 is missing"),
              std::string::npos)
        << i.out;
  }
  // Its only partition gone: the topic is still there to report (it said
  // the directory holds no logs, exit 1).
  fs::remove_all(data_dir_ + "/t/0");
  for (const std::string& dir : {data_dir_, data_dir_ + "/t"}) {
    RunResult v = RunProcess({RunnelPath(), "replay", dir, "--verify"});
    EXPECT_EQ(v.exit_code, 3) << v.out << v.err;
    EXPECT_NE(v.out.find("DAMAGE " + data_dir_ + "/t/0: missing"), std::string::npos) << v.out;
    RunResult i = RunProcess({RunnelPath(), "inspect", dir});
    EXPECT_EQ(i.exit_code, 3) << i.out << i.err;
    EXPECT_NE(i.out.find("DAMAGE topic t: partition 0: its log directory"), std::string::npos)
        << i.out;
  }
}

TEST_F(CliTest, ReplayVerifyTakesAnInterruptedRollForNoDamage) {
  StartBroker();
  CreateTopic("rolled");
  RunResult p = Runnel({"produce", "rolled", "--delivery", "at-least-once"}, "a\nb\nc\n");
  ASSERT_EQ(p.exit_code, 0) << p.err;
  ASSERT_EQ(StopBroker(), 0);
  const std::string dir = data_dir_ + "/rolled/0";
  { std::ofstream(dir + "/00000000000000000003.log", std::ios::binary) << std::string(4096, '\0'); }

  RunResult v = RunProcess({RunnelPath(), "replay", data_dir_, "--verify"});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  EXPECT_NE(v.out.find("note: 00000000000000000003.log: its header was never written"),
            std::string::npos)
      << v.out;
  EXPECT_NE(v.out.find("records 3"), std::string::npos) << v.out;
  EXPECT_EQ(v.out.find("DAMAGE"), std::string::npos) << v.out;
  RunResult i = RunProcess({RunnelPath(), "inspect", dir});
  EXPECT_EQ(i.exit_code, 0) << i.out << i.err;
  EXPECT_NE(i.out.find("note: 00000000000000000003.timeindex does not exist"), std::string::npos)
      << i.out;
  RunResult r = RunProcess({RunnelPath(), "replay", data_dir_});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "a\nb\nc\n");

  StartBroker();
  ASSERT_EQ(Runnel({"produce", "rolled", "--delivery", "at-least-once"}, "d\n").exit_code, 0);
  ASSERT_EQ(StopBroker(), 0);
  RunResult after = RunProcess({RunnelPath(), "replay", data_dir_, "--verify"});
  EXPECT_EQ(after.exit_code, 0) << after.out << after.err;
  EXPECT_EQ(after.out.find("note:"), std::string::npos) << after.out;
  EXPECT_NE(after.out.find("records 4"), std::string::npos) << after.out;
}

// A record damaged on disk costs a consumer that record alone: it reads the
// ones after it from disk too, and says which offsets were damaged.
TEST_F(CliTest, ConsumeSkipsARecordDamagedOnDiskAndSaysSo) {
  StartBroker();
  CreateTopic("d");
  std::vector<std::string> values;
  for (int i = 0; i < 100; ++i) values.push_back("value number " + std::to_string(i));
  RunResult p = Runnel({"produce", "d", "--delivery", "at-least-once"}, Join(values));
  ASSERT_EQ(p.exit_code, 0) << p.err;
  ASSERT_EQ(StopBroker(), 0);
  ASSERT_NE(FlipByteIn(data_dir_ + "/d/0/00000000000000000000.log", "value number 50"),
            std::string::npos);
  // Without the shared memory every record comes from disk.
  ASSERT_EQ(Runnel({"bus", "remove"}).exit_code, 0);
  StartBroker();
  RunResult c = Runnel({"consume", "d", "--from", "earliest", "--idle-exit-ms", "1000"});
  EXPECT_EQ(c.exit_code, 0) << c.err;
  values.erase(values.begin() + 50);
  EXPECT_EQ(c.out, Join(values));
  EXPECT_NE(c.err.find("lost 1 record (offsets 50..50): they are damaged on disk (see: runnel "
                       "replay " +
                       data_dir_ + "/d --verify)"),
            std::string::npos)
      << c.err;
  EXPECT_EQ(StopBroker(), 0);
}

// A log cut short below its checkpoint (durable records lost) stops that
// partition, with a message that says what to do; `broker --repair` cuts
// the log there and the partition continues.
TEST_F(CliTest, BrokerRepairContinuesALogThatLostDurableRecords) {
  const std::vector<std::string> values = ProduceThenCutTheLog("cut");
  ASSERT_EQ(Runnel({"bus", "remove"}).exit_code, 0);

  Child& broken = StartBroker();
  EXPECT_TRUE(broken.WaitForStderr("runnel broker --repair", seconds(10))) << broken.err();
  RunResult refused =
      Runnel({"produce", "cut", "--delivery", "at-least-once", "--timeout-ms", "2000"}, "more\n");
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("it found damaged data"), std::string::npos) << refused.err;
  RunResult describe = Runnel({"topic", "describe", "cut"});
  EXPECT_NE(describe.out.find("persist error: damaged log, offsets clashing with it, or a record "
                              "written over in shared memory: see the broker's output"),
            std::string::npos)
      << describe.out;
  // It stops with "more" unwritten: it says so, and fails. "more" got offset
  // 20, after every offset the checkpoint says was durable (the cut took 19).
  ASSERT_EQ(StopBroker(), 1);
  EXPECT_NE(broken.err().find("cut/0: 1 record (offsets 20..20) not written to disk (damaged "
                              "log, offsets clashing with it, or a record written over in shared "
                              "memory: see the broker's output); it stays in shared memory"),
            std::string::npos)
      << broken.err();

  // Removing the bus would drop "more": refused, unless forced.
  RunResult keep = Runnel({"bus", "remove"});
  EXPECT_EQ(keep.exit_code, 1);
  EXPECT_NE(keep.err.find("holds 1 record not written to disk:\n  cut/0: 1 record (offsets "
                          "20..20) (damaged log, offsets clashing with it, or a record written "
                          "over in shared memory: see the broker's output)\nstart a broker"),
            std::string::npos)
      << keep.err;
  ASSERT_EQ(Runnel({"bus", "remove", "--force"}).exit_code, 0);
  StartBroker({"--repair"});
  RunResult more =
      Runnel({"produce", "cut", "--delivery", "at-least-once", "--timeout-ms", "5000"}, "more\n");
  EXPECT_EQ(more.exit_code, 0) << more.err;
  RunResult c = Runnel({"consume", "cut", "--from", "earliest", "--idle-exit-ms", "1000"});
  EXPECT_EQ(c.exit_code, 0) << c.err;
  const std::vector<std::string> got = Lines(c.out);
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back(), "more");
  for (std::size_t i = 0; i + 1 < got.size(); ++i) EXPECT_EQ(got[i], values[i]);
  EXPECT_LT(got.size(), values.size() + 1);  // what followed the cut is gone
  EXPECT_EQ(StopBroker(), 0);
}

// Repaired while the bus's shared memory lives on: the ring continues past
// the records the cut removed, and the log marks the jump with padding, so
// it reads (and verifies) clean instead of out of sequence.
TEST_F(CliTest, BrokerRepairWithTheRingAliveLeavesALogThatVerifiesClean) {
  const std::vector<std::string> values = ProduceThenCutTheLog("cut");
  Child& repaired = StartBroker({"--repair"});
  EXPECT_TRUE(repaired.WaitForStderr("cut/0: recovery: dropped", seconds(10))) << repaired.err();
  EXPECT_TRUE(repaired.WaitForStderr(
      "cut/0: repair: offsets 19..19 were cut and may have been confirmed durable", seconds(10)))
      << repaired.err();
  RunResult more =
      Runnel({"produce", "cut", "--delivery", "at-least-once", "--timeout-ms", "5000"}, "more\n");
  EXPECT_EQ(more.exit_code, 0) << more.err;
  ASSERT_EQ(StopBroker(), 0);
  RunResult verify = RunProcess({RunnelPath(), "replay", data_dir_, "--verify"});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  // The cut record's offset is named, not passed over in silence.
  EXPECT_NE(verify.out.find("gaps 1: 1 offset not in the log"), std::string::npos) << verify.out;
  RunResult read = RunProcess({RunnelPath(), "replay", data_dir_});
  EXPECT_EQ(read.exit_code, 0) << read.err;
  EXPECT_NE(read.err.find("cut/0: offsets 19..19 are not in the log"), std::string::npos)
      << read.err;
  std::vector<std::string> expected(values.begin(), values.end() - 1);  // the cut took the last
  expected.push_back("more");
  EXPECT_EQ(read.out, Join(expected));
  // inspect counts the marker as a gap, as verify does, not as a record.
  RunResult inspect =
      RunProcess({RunnelPath(), "inspect", data_dir_ + "/cut/0/00000000000000000000.log"});
  EXPECT_EQ(inspect.exit_code, 0) << inspect.out << inspect.err;
  EXPECT_NE(inspect.out.find("offsets 19..19 are lost"), std::string::npos) << inspect.out;
  EXPECT_NE(inspect.out.find("records 20, padding frames 1, gaps 1 (1 offsets)"), std::string::npos)
      << inspect.out;
}

TEST_F(CliTest, ReplayIntoALiveTopic) {
  StartBroker();
  CreateTopic("source");
  RunResult p = Runnel({"produce", "source", "--delivery", "at-least-once"}, "a\nb\nc\n");
  ASSERT_EQ(p.exit_code, 0) << p.err;
  CreateTopic("copy");
  RunResult r = Runnel({"replay", data_dir_ + "/source", "--into", "copy"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  RunResult c = Runnel({"consume", "copy", "--from", "earliest", "--max", "3"});
  EXPECT_EQ(c.out, "a\nb\nc\n");
  EXPECT_EQ(StopBroker(), 0);
}

// Replaying a live topic into itself re-publishes the records it held when
// the replay started, once: the copies it writes land in the log it reads,
// and it used to read them too, never reaching the end.
TEST_F(CliTest, ReplayIntoTheTopicItReadsCopiesWhatWasThereOnce) {
  StartBroker();
  CreateTopic("loop", {"--partitions", "2"});
  std::string lines;
  std::vector<std::string> want;
  constexpr int kLines = 20000;
  for (int i = 0; i < kLines; ++i) {
    lines += std::to_string(i) + "\n";
    want.push_back(std::to_string(i));
    want.push_back(std::to_string(i));
  }
  std::sort(want.begin(), want.end());
  RunResult p = Runnel({"produce", "loop", "--delivery", "at-least-once"}, lines, seconds(30));
  ASSERT_EQ(p.exit_code, 0) << p.err;
  RunResult r = Runnel({"replay", data_dir_ + "/loop", "--into", "loop"}, "", seconds(30));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("republished 20000 records"), std::string::npos) << r.err;
  RunResult c = Runnel({"consume", "loop", "--from", "earliest", "--idle-exit-ms", "500"});
  std::vector<std::string> got = Lines(c.out);
  std::sort(got.begin(), got.end());
  EXPECT_TRUE(got == want) << got.size() << " records, want " << want.size() << "; " << c.err;
  EXPECT_EQ(StopBroker(), 0);
}

TEST_F(CliTest, InspectDescribesLogFilesAndSharedMemory) {
  StartBroker();
  CreateTopic("seen");
  RunResult p = Runnel({"produce", "seen", "--delivery", "at-least-once"}, "1\n2\n3\n");
  ASSERT_EQ(p.exit_code, 0) << p.err;
  const std::string part = data_dir_ + "/seen/0";
  RunResult seg = RunProcess({RunnelPath(), "inspect", part + "/00000000000000000000.log"});
  EXPECT_EQ(seg.exit_code, 0) << seg.out << seg.err;
  EXPECT_NE(seg.out.find("records 3"), std::string::npos) << seg.out;
  EXPECT_NE(seg.out.find("offsets 0..2"), std::string::npos) << seg.out;
  RunResult idx = RunProcess({RunnelPath(), "inspect", part + "/00000000000000000000.timeindex"});
  EXPECT_EQ(idx.exit_code, 0) << idx.out << idx.err;
  RunResult dir = RunProcess({RunnelPath(), "inspect", part});
  EXPECT_EQ(dir.exit_code, 0) << dir.out << dir.err;
  RunResult shm = RunProcess({RunnelPath(), "inspect", "/dev/shm/runnel." + bus_ + ".dir"});
  EXPECT_EQ(shm.exit_code, 0) << shm.out << shm.err;
  EXPECT_NE(shm.out.find("seen"), std::string::npos) << shm.out;
  EXPECT_NE(shm.out.find("broker: pid " + std::to_string(brokers_.back()->pid())),
            std::string::npos)
      << shm.out;
  EXPECT_EQ(StopBroker(), 0);
  RunResult cp = RunProcess({RunnelPath(), "inspect", part + "/checkpoint"});
  EXPECT_EQ(cp.exit_code, 0) << cp.out << cp.err;
  EXPECT_NE(cp.out.find("next_offset 3"), std::string::npos) << cp.out;
  RunResult missing = RunProcess({RunnelPath(), "inspect", root_ + "/nothing"});
  EXPECT_EQ(missing.exit_code, 1);
  // Leftovers of interrupted operations are runnel's, named as such; a file
  // that is not runnel's is said to be ignored.
  WriteFile(part + "/checkpoint.tmp", "x");
  WriteFile(part + "/00000000000000009999.timeindex", "");
  WriteFile(part + "/notes.txt", "mine");
  RunResult left = RunProcess({RunnelPath(), "inspect", part});
  EXPECT_EQ(left.exit_code, 0) << left.out << left.err;
  EXPECT_NE(left.out.find("leftover: checkpoint.tmp (an interrupted checkpoint write"),
            std::string::npos)
      << left.out;
  EXPECT_NE(left.out.find("leftover: 00000000000000009999.timeindex (a time index without its "
                          "segment"),
            std::string::npos)
      << left.out;
  EXPECT_NE(left.out.find("other file: notes.txt (not runnel's; ignored)"), std::string::npos)
      << left.out;
  EXPECT_EQ(left.out.find("other file: checkpoint.tmp"), std::string::npos) << left.out;

  // The settings file is read as a broker restoring the topic reads it.
  const std::string meta = data_dir_ + "/seen/topic.meta";
  RunResult good_meta = RunProcess({RunnelPath(), "inspect", meta});
  EXPECT_EQ(good_meta.exit_code, 0) << good_meta.out << good_meta.err;
  EXPECT_NE(good_meta.out.find("  valid\n"), std::string::npos) << good_meta.out;
  std::string text = ReadFile(meta);
  const std::size_t ring = text.find("ring_bytes=");
  ASSERT_NE(ring, std::string::npos) << text;
  text.replace(ring, text.find('\n', ring) - ring, "ring_bytes=3");
  WriteFile(meta, text);
  RunResult bad_meta = RunProcess({RunnelPath(), "inspect", meta});
  EXPECT_EQ(bad_meta.exit_code, 3) << bad_meta.out << bad_meta.err;
  EXPECT_NE(bad_meta.out.find("DAMAGE: " + meta + ": topic 'seen': ring_bytes"), std::string::npos)
      << bad_meta.out;
  RunResult topic_dir = RunProcess({RunnelPath(), "inspect", data_dir_ + "/seen"});
  EXPECT_EQ(topic_dir.exit_code, 3) << topic_dir.out << topic_dir.err;
  EXPECT_NE(topic_dir.out.find("DAMAGE topic seen: "), std::string::npos) << topic_dir.out;
}

// A settings file naming fewer partitions than have logs (edited or
// damaged): a broker would not restore the topic; inspect says why.
TEST_F(CliTest, InspectReportsPartitionLogsTheSettingsDoNotName) {
  StartBroker();
  CreateTopic("wide", {"--partitions", "2"});
  RunResult p = Runnel({"produce", "wide", "--delivery", "at-least-once"}, "a\nb\nc\nd\n");
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_EQ(StopBroker(), 0);
  const std::string meta = data_dir_ + "/wide/topic.meta";
  std::string text = ReadFile(meta);
  const std::size_t at = text.find("partitions=2\n");
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, 12, "partitions=1");
  WriteFile(meta, text);
  RunResult fewer = RunProcess({RunnelPath(), "inspect", data_dir_ + "/wide"});
  EXPECT_EQ(fewer.exit_code, 3) << fewer.out << fewer.err;
  EXPECT_NE(fewer.out.find("DAMAGE topic wide: partition 1 has a log in " + data_dir_ +
                           "/wide/1, but topic.meta says 1 partition:"),
            std::string::npos)
      << fewer.out;
}

// A FIFO where a file is expected: inspect waited for a writer for ever.
TEST_F(CliTest, InspectOfAFifoFailsAtOnce) {
  const std::string fifo = data_dir_ + ".fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  RunResult r = Runnel({"inspect", fifo}, "", std::chrono::seconds(10));
  ::unlink(fifo.c_str());
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find(fifo + " is not a regular file"), std::string::npos) << r.err;
}

// ---- stat ---------------------------------------------------------------------------

// GET `path` from 127.0.0.1:`port` over HTTP/1.0; the whole response, or
// "" if the connection failed.
std::string HttpGet(uint16_t port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return {};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string request = "GET " + path + " HTTP/1.0\r\nHost: localhost\r\n\r\n";
    if (::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buf[4096];
      for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) response.append(buf, n);
    }
  }
  ::close(fd);
  return response;
}

TEST_F(CliTest, BrokerWhoseDataDirIsAFileRefusesToStart) {
  const std::string file = root_ + "/afile";
  { std::ofstream(file) << "x"; }
  RunResult r = RunProcess({RunnelPath(), "--bus", bus_, "--data-dir", file, "broker"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("cannot use data dir " + file), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("active on bus"), std::string::npos) << r.err;
  // Nothing is left in /dev/shm (the bus was created, then abandoned).
  EXPECT_FALSE(fs::exists("/dev/shm/runnel." + bus_ + ".dir"));
  EXPECT_FALSE(fs::exists("/dev/shm/runnel." + bus_ + ".lock"));
  // Under a regular file too.
  RunResult under =
      RunProcess({RunnelPath(), "--bus", bus_, "--data-dir", file + "/sub", "broker"});
  EXPECT_EQ(under.exit_code, 1) << under.err;
  EXPECT_NE(under.err.find("with --data-dir"), std::string::npos) << under.err;
  EXPECT_FALSE(fs::exists("/dev/shm/runnel." + bus_ + ".dir"));
}

// The disk fills: producers are told that it is the disk, not a slow broker.
TEST_F(CliTest, AFullDiskIsNamedToProducers) {
  testing::ScopedTmpfs small(root_ + "/small", "size=1m");
  if (!small.mounted()) GTEST_SKIP() << small.error();
  const std::string& mnt = small.path();
  data_dir_ = mnt;
  StartBroker();
  CreateTopic("f", {"--segment-size", "256KiB", "--ring-size", "64KiB"});
  std::string lines;
  for (int i = 0; i < 20000; ++i) lines += std::string(96, 'a' + i % 26) + "\n";
  RunResult r = Runnel({"produce", "f", "--delivery", "at-least-once", "--timeout-ms", "1000"},
                       lines, seconds(60));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  // Whether the ring filled first (the send times out) or a wait for
  // durability ran out first, the message names the disk.
  EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("not keeping up"), std::string::npos) << r.err;
  // Stopped with records it could not write: it says so, and fails.
  Child& broker = *brokers_.back();
  EXPECT_EQ(StopBroker(), 1) << broker.err();
  EXPECT_NE(broker.err().find("not written to disk (No space left on device); they stay in "
                              "shared memory"),
            std::string::npos)
      << broker.err();
  brokers_.clear();  // before the unmount
}

// A disk with less room than one segment, most of it free: segments are
// preallocated whole, so it is full for the log. `topic create` warns, and
// the broker and producers say what to do (they said "free disk space" with
// the disk 86 % free).
TEST_F(CliTest, ADiskWithLessRoomThanASegmentIsNamedAsSuch) {
  testing::ScopedTmpfs small(root_ + "/small", "size=4m");
  if (!small.mounted()) GTEST_SKIP() << small.error();
  data_dir_ = small.path();
  StartBroker();
  RunResult created = Runnel({"topic", "create", "big", "--segment-size", "8MiB"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  EXPECT_NE(created.err.find("warning: " + data_dir_ +
                             " has 4 MiB free, and its 1 partition "
                             "take 8 MiB each at once for their first segment"),
            std::string::npos)
      << created.err;
  RunResult fits = Runnel({"topic", "create", "small", "--segment-size", "1MiB"});
  ASSERT_EQ(fits.exit_code, 0) << fits.err;
  EXPECT_EQ(fits.err, "");
  RunResult p =
      Runnel({"produce", "big", "--delivery", "at-least-once", "--timeout-ms", "1000"}, "hello\n");
  EXPECT_EQ(p.exit_code, 1) << p.err;
  EXPECT_NE(p.err.find("each new segment takes the topic's full segment size at once"),
            std::string::npos)
      << p.err;
  Child& broker = *brokers_.back();
  EXPECT_TRUE(
      broker.WaitForStderr("every new segment takes its full size (8 MiB) at once: free "
                           "at least that much, or re-create the topic with a smaller "
                           "--segment-size",
                           seconds(5)))
      << broker.err();
  EXPECT_EQ(StopBroker(), 1) << broker.err();  // "hello" is not written
  brokers_.clear();                            // before the unmount
}

// A disk that is full while produce runs and has space again within its
// --retries waits: produce waits for the ring to empty instead of failing
// at the first --timeout-ms (it ignored --retries there), and every record
// arrives once.
TEST_F(CliTest, ProduceWaitsOutAFullDiskWithinItsRetries) {
  testing::ScopedTmpfs small(root_ + "/small", "size=1m");
  if (!small.mounted()) GTEST_SKIP() << small.error();
  const std::string& mnt = small.path();
  data_dir_ = mnt;
  StartBroker();
  CreateTopic("f", {"--segment-size", "64KiB", "--ring-size", "64KiB"});
  {
    std::ofstream filler(mnt + "/filler", std::ios::binary);
    const std::string chunk(16 * 1024, 'f');
    while (filler.write(chunk.data(), static_cast<std::streamsize>(chunk.size()))) {
    }
  }
  std::string lines;
  constexpr int kLines = 3000;  // 300 KiB: more than the ring, more than the space left
  for (int i = 0; i < kLines; ++i)
    lines += std::to_string(100000 + i) + std::string(90, 'x') + "\n";
  std::thread freer([&] {
    std::this_thread::sleep_for(seconds(2));
    fs::remove(mnt + "/filler");
  });
  RunResult r = Runnel(
      {"produce", "f", "--delivery", "at-least-once", "--timeout-ms", "500", "--retries", "30"},
      lines, seconds(60));
  freer.join();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  RunResult all = Runnel({"consume", "f", "--from", "earliest", "--idle-exit-ms", "500"});
  // Compared whole, reported short (300 KiB of lines).
  EXPECT_TRUE(all.out == lines) << Lines(all.out).size() << " lines of " << kLines << "; "
                                << all.err;
  brokers_.clear();  // before the unmount
}

// A broker that starts while the disk is full cannot open the log of a new
// topic; it tries again every second and persists once there is space,
// without a restart (it used to stay failed until restarted).
TEST_F(CliTest, ABrokerThatCouldNotOpenALogForLackOfSpaceRetries) {
  testing::ScopedTmpfs small(root_ + "/small", "size=1m");
  if (!small.mounted()) GTEST_SKIP() << small.error();
  const std::string& mnt = small.path();
  {
    std::ofstream filler(mnt + "/filler", std::ios::binary);
    const std::string chunk(16 * 1024, 'f');
    while (filler.write(chunk.data(), static_cast<std::streamsize>(chunk.size()))) {
    }
  }
  data_dir_ = mnt;
  Child& broker = StartBroker();
  CreateTopic("f", {"--segment-size", "64KiB", "--ring-size", "64KiB"});
  RunResult full =
      Runnel({"produce", "f", "--delivery", "at-least-once", "--timeout-ms", "500"}, "a\nb\n");
  EXPECT_EQ(full.exit_code, 1) << full.err;
  EXPECT_NE(full.err.find("No space left on device"), std::string::npos) << full.err;
  fs::remove(mnt + "/filler");
  RunResult later =
      Runnel({"produce", "f", "--delivery", "at-least-once", "--timeout-ms", "10000"}, "c\nd\n");
  EXPECT_EQ(later.exit_code, 0) << later.err;
  EXPECT_TRUE(broker.WaitForStderr("f/0: log opened; persisting", seconds(5))) << broker.err();
  RunResult all = Runnel({"consume", "f", "--from", "earliest", "--idle-exit-ms", "300"});
  EXPECT_EQ(all.out, "a\nb\nc\nd\n") << all.err;
  brokers_.clear();  // before the unmount
}

TEST_F(CliTest, BrokerServesMetricsOnItsMetricsPort) {
  Child& b = StartBroker({"--metrics-port", "0"});
  const uint16_t port = static_cast<uint16_t>(NumberAfter(b.err(), "metrics at http://127.0.0.1:"));
  ASSERT_GT(port, 0) << b.err();
  CreateTopic("m", {"--partitions", "2"});
  ASSERT_EQ(Runnel({"produce", "m", "--partition", "1"}, "a\nb\nc\n").exit_code, 0);
  const std::string r = HttpGet(port, "/metrics");
  ASSERT_EQ(r.rfind("HTTP/1.1 200", 0), 0u) << r;
  EXPECT_NE(r.find("# TYPE runnel_partition_next_offset gauge\n"), std::string::npos) << r;
  EXPECT_NE(
      r.find("runnel_partition_next_offset{bus=\"" + bus_ + "\",topic=\"m\",partition=\"1\"} 3\n"),
      std::string::npos)
      << r;
  EXPECT_NE(r.find("runnel_broker_up{bus=\"" + bus_ + "\"} 1\n"), std::string::npos) << r;
  EXPECT_NE(r.find("# TYPE runnel_bus_claims_unblocked_total counter\n"), std::string::npos) << r;
  // The same families as stat --format prometheus.
  RunResult stat = Runnel({"stat", "--format", "prometheus", "--interval-ms", "10"});
  ASSERT_EQ(stat.exit_code, 0) << stat.err;
  for (const std::string& line : Lines(stat.out)) {
    if (line.rfind("# TYPE ", 0) == 0) {
      EXPECT_NE(r.find(line + "\n"), std::string::npos) << line;
    }
  }

  // A port in use: exit 1, saying so; a port out of range: usage error.
  RunResult busy = RunProcess({RunnelPath(), "--bus", bus_ + "x", "--data-dir", root_ + "/x",
                               "broker", "--metrics-port", std::to_string(port)});
  EXPECT_EQ(busy.exit_code, 1);
  EXPECT_NE(busy.err.find("cannot serve metrics on 127.0.0.1:" + std::to_string(port)),
            std::string::npos)
      << busy.err;
  // Refused before anything was made (a bus in /dev/shm and the data dir
  // were left behind).
  EXPECT_FALSE(std::filesystem::exists("/dev/shm/runnel." + bus_ + "x.dir"));
  EXPECT_FALSE(std::filesystem::exists(root_ + "/x"));
  (void)Bus::Remove(bus_ + "x");
  RunResult bad = Runnel({"broker", "--metrics-port", "65536"});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  // An address that is none: a usage error (999.1.1.1 was served on another
  // address, a name failed with a CivetWeb message about the port).
  // IPv6 too: the metrics server fails on it (after the bus was made).
  for (const char* address : {"999.1.1.1", "localhost", "127.0.0.1:80", "::1"}) {
    RunResult odd = Runnel({"broker", "--metrics-port", "0", "--metrics-address", address});
    EXPECT_EQ(odd.exit_code, 2) << address << ": " << odd.err;
    EXPECT_NE(odd.err.find("is not an IPv4 address"), std::string::npos) << odd.err;
  }
  EXPECT_EQ(StopBroker(), 0);
}

TEST_F(CliTest, StatFormats) {
  ASSERT_TRUE(Python());
  StartBroker();
  CreateTopic("watched", {"--partitions", "2"});
  RunResult p = Runnel({"produce", "watched"}, "a\nb\nc\n");
  ASSERT_EQ(p.exit_code, 0) << p.err;

  RunResult json = Runnel({"stat", "--format", "json", "--interval-ms", "100"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_TRUE(IsJson(json.out)) << json.out;
  EXPECT_NE(json.out.find("\"name\":\"watched\""), std::string::npos) << json.out;

  RunResult prom = Runnel({"stat", "--format", "prometheus", "--interval-ms", "100"});
  ASSERT_EQ(prom.exit_code, 0) << prom.err;
  EXPECT_NE(prom.out.find("# TYPE runnel_partition_next_offset gauge"), std::string::npos);
  EXPECT_NE(prom.out.find("# HELP runnel_partition_next_offset "), std::string::npos);
  EXPECT_NE(prom.out.find("runnel_partition_next_offset{bus=\"" + bus_ +
                          "\",topic=\"watched\",partition=\"0\"}"),
            std::string::npos)
      << prom.out;
  // Every sample line is NAME{LABELS} VALUE.
  for (const std::string& line : Lines(prom.out)) {
    if (line.empty() || line[0] == '#') continue;
    const std::size_t open = line.find('{');
    const std::size_t close = line.find("} ");
    ASSERT_NE(open, std::string::npos) << line;
    ASSERT_NE(close, std::string::npos) << line;
    EXPECT_EQ(line.find_first_not_of("abcdefghijklmnopqrstuvwxyz_"), open) << line;
    const std::string value = line.substr(close + 2);
    EXPECT_TRUE(value == "NaN" || value == "+Inf" || value == "-Inf" ||
                (!value.empty() && value.find_first_not_of("-0123456789.e+") == std::string::npos))
        << line;
  }

  RunResult table = Runnel({"stat", "--interval-ms", "100"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("topic watched"), std::string::npos) << table.out;

  Child watch(Argv({"stat", "--watch", "--format", "json", "--interval-ms", "100"}));
  std::this_thread::sleep_for(milliseconds(450));
  EXPECT_EQ(watch.Stop(SIGINT), 0);
  const std::vector<std::string> samples = Lines(watch.out());
  EXPECT_GE(samples.size(), 2u);
  for (const std::string& s : samples) EXPECT_TRUE(IsJson(s)) << s;
  EXPECT_EQ(StopBroker(), 0);
}

// The file in /dev/shm of partition 0's ring of `topic` on `bus`; empty if none.
std::string RingFileOf(const std::string& bus, const std::string& topic) {
  const std::string prefix = "runnel." + bus + "." + topic + ".0.";
  for (const auto& e : fs::directory_iterator("/dev/shm")) {
    if (e.path().filename().string().rfind(prefix, 0) == 0) return e.path().string();
  }
  return {};
}

// A topic the bus lists whose ring cannot be read (its file emptied by
// hand): stat names it and exits 1 (it was left out without a word, exit 0).
TEST_F(CliTest, StatNamesATopicItCannotRead) {
  CreateTopic("fine", {"--no-durable", "--ring-size", "64KiB"});
  CreateTopic("broken", {"--no-durable", "--ring-size", "64KiB"});
  const std::string ring = RingFileOf(bus_, "broken");
  ASSERT_FALSE(ring.empty());
  fs::remove(ring);
  std::ofstream(ring).close();  // empty
  RunResult r = Runnel({"stat", "--interval-ms", "10"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("cannot read topic 'broken'"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("topic fine"), std::string::npos) << r.out;
}

// A live topic whose ring file was removed by hand is not a deleted topic:
// stat named nothing and exited 0, produce said the topic was not found,
// and create said it created it (with "max record 0 B").
TEST_F(CliTest, ATopicWhoseRingFileWasRemovedIsNamedAsBroken) {
  CreateTopic("fine", {"--no-durable", "--ring-size", "64KiB"});
  CreateTopic("broken", {"--no-durable", "--ring-size", "64KiB"});
  const std::string ring = RingFileOf(bus_, "broken");
  ASSERT_FALSE(ring.empty());
  fs::remove(ring);
  const std::string missing = ring + ", the ring of topic 'broken' partition 0, is missing";
  RunResult stat = Runnel({"stat", "--interval-ms", "10"});
  EXPECT_EQ(stat.exit_code, 1) << stat.err;
  EXPECT_NE(stat.err.find("cannot read topic 'broken': " + missing), std::string::npos) << stat.err;
  EXPECT_NE(stat.out.find("topic fine"), std::string::npos) << stat.out;
  RunResult produce = Runnel({"produce", "broken"}, "x\n");
  EXPECT_EQ(produce.exit_code, 1);
  EXPECT_NE(produce.err.find(missing), std::string::npos) << produce.err;
  RunResult create = Runnel({"topic", "create", "broken", "--no-durable", "--ring-size", "64KiB"});
  EXPECT_EQ(create.exit_code, 1) << create.out;
  EXPECT_NE(create.err.find(missing), std::string::npos) << create.err;
  EXPECT_EQ(create.out, "");
}

}  // namespace
}  // namespace runnel::clitest
