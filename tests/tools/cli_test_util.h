// Helpers for the end-to-end tests of the `runnel` binary: run it as a user
// would (fork/exec, stdin/stdout/stderr pipes, exit codes), keep long-running
// children (brokers, consumers) that are always killed and reaped, and give
// each test its own bus and data dir, removed afterwards.

#ifndef RUNNEL_TESTS_TOOLS_CLI_TEST_UTIL_H_
#define RUNNEL_TESTS_TOOLS_CLI_TEST_UTIL_H_

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace runnel::clitest {

inline std::string RunnelPath() { return RUNNEL_BINARY_DIR "/tools/runnel"; }

struct RunResult {
  int exit_code = -1;  // 128 + signal if killed; -1 if it could not run
  std::string out;
  std::string err;
  bool timed_out = false;
};

// Runs argv[0] (a path, or a name looked up in PATH) with `input` on stdin,
// collecting stdout and stderr; kills it (SIGKILL) after `timeout`.
RunResult RunProcess(const std::vector<std::string>& argv, const std::string& input = "",
                     std::chrono::milliseconds timeout = std::chrono::seconds(30));

// A child that keeps running (a broker, a consumer): stdin is /dev/null,
// stdout and stderr are pipes read in the background... on demand.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv);
  ~Child();  // SIGKILL + reap if still running
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  int pid() const { return pid_; }
  // Reads stderr until it contains `text` or `timeout` passes.
  bool WaitForStderr(const std::string& text, std::chrono::milliseconds timeout);
  // Sends `sig` and waits for the exit; returns the exit code (128 + signal
  // if killed), or -1 on timeout (then it is SIGKILLed).
  int Stop(int sig, std::chrono::milliseconds timeout = std::chrono::seconds(20));
  // Waits for the exit without a signal.
  int Wait(std::chrono::milliseconds timeout);
  const std::string& err() const { return err_; }
  const std::string& out() const { return out_; }

 private:
  void Drain(int timeout_ms);
  int pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::string out_;
  std::string err_;
  std::optional<int> exit_code_;
};

// Python 3 for checking JSON with a real parser; nullopt if not installed.
std::optional<std::string> Python();

// True if `text` parses as one JSON document (python3's json module).
bool IsJson(const std::string& text);

// Splits on '\n' (no empty last element for a trailing newline).
std::vector<std::string> Lines(const std::string& text);

}  // namespace runnel::clitest

#endif  // RUNNEL_TESTS_TOOLS_CLI_TEST_UTIL_H_
